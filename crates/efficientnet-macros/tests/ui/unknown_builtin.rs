efficientnet_macros::efficientnet!("v2-ss");

fn main() {}
