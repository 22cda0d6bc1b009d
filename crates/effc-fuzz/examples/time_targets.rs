//! Times each fuzz target's body on files: how long one run of `effc_fuzz::<target>`
//! takes on each input, to find what makes a fuzzer slow.
//!
//! `cargo run --release -p effc-fuzz --example time_targets -- TARGET [FILE|DIR]...`
//! (default: the target's committed corpus, `fuzz/corpus/TARGET/`).

use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args
        .next()
        .expect("usage: time_targets TARGET [FILE|DIR]...");
    let (_, body) = effc_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .unwrap_or_else(|| panic!("no target `{target}`"));
    let mut paths: Vec<PathBuf> = args.map(PathBuf::from).collect();
    if paths.is_empty() {
        paths.push(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../fuzz/corpus/{target}")),
        );
    }
    let mut files = vec![];
    for p in paths {
        if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .map(|e| e.expect("a directory entry").path())
                .filter(|p| p.is_file())
                .collect();
            inner.sort();
            files.extend(inner);
        } else {
            files.push(p);
        }
    }
    // The first run builds the tiny model; keep it out of the numbers.
    body(b"");
    let mut total = 0.0;
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let reps = 5;
        let start = Instant::now();
        for _ in 0..reps {
            body(&data);
        }
        let each = start.elapsed().as_secs_f64() / reps as f64;
        total += each;
        println!(
            "{:10.3} ms  {:8} B  {}",
            each * 1e3,
            data.len(),
            f.display()
        );
    }
    println!(
        "{:10.3} ms  total over {} files ({:.0} runs/s)",
        total * 1e3,
        files.len(),
        files.len() as f64 / total
    );
}
