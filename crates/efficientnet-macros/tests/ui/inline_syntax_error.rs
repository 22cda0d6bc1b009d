efficientnet_macros::efficientnet!(spec = r#"
model tiny extends b0 {
    width = 0.5
    depth = = 1.2
}
"#);

fn main() {}
