fn main() {
    let a: Vec<String> = std::env::args().collect();
    let m = effc_ir::load(&a[1], &Default::default())
        .map_err(|e| e.render(false))
        .unwrap();
    print!("{}", m.render());
}
