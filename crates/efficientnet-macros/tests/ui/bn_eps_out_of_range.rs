efficientnet_macros::efficientnet!("b0", bn_eps = 1.5);

fn main() {}
