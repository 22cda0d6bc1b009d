efficientnet_macros::efficientnet!(spec = "model tiny { blocks { r1_k4_s1_e1_i32_o16 } }");

fn main() {}
