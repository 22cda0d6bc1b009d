efficientnet_macros::efficientnet!("b0", precision = f8);

fn main() {}
