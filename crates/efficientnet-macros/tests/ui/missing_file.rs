efficientnet_macros::efficientnet!(file = "specs/no_such_model.enet");

fn main() {}
