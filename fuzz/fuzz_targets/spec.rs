#![no_main]
//! `cargo +nightly fuzz run spec`: the body is `effc_fuzz::spec`, which the corpus
//! replay test (`crates/effc-fuzz/tests/replay.rs`) also runs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| effc_fuzz::spec(data));
