efficientnet_macros::efficientnet!("b0", resolutoin = 256);

fn main() {}
