efficientnet_macros::efficientnet!("b0", file = "specs/stage_mismatch.enet");

fn main() {}
