efficientnet_macros::efficientnet!("b0", padding = valid);

fn main() {}
