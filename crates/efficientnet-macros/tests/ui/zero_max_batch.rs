efficientnet_macros::efficientnet!("lite0", max_batch = 0);

fn main() {}
