efficientnet_macros::efficientnet!(file = "specs/stage_mismatch.enet");

fn main() {}
