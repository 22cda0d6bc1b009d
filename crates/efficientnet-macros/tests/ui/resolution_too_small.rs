// B0 halves the resolution five times: 16 pixels end at 1x1, 8 do not fit.
efficientnet_macros::efficientnet!("b0", resolution = 8);

fn main() {}
