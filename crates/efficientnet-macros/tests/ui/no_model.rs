efficientnet_macros::efficientnet!(classes = 10);

fn main() {}
