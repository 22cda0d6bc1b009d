//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/*`) through the same
//! functions the fuzz targets call, so CI checks every input the fuzzers kept
//! (and every crash they found, kept as a regression input) without nightly Rust.

use std::path::PathBuf;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../fuzz/corpus/{target}"))
}

#[test]
fn every_corpus_file_runs_without_panicking() {
    for (target, body) in effc_fuzz::TARGETS {
        let dir = corpus(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(
            files.len() >= 3,
            "{target}: only {} corpus files",
            files.len()
        );
        for f in &files {
            let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let run = std::panic::catch_unwind(|| body(&data));
            assert!(run.is_ok(), "{target}: {} panicked", f.display());
        }
    }
}
