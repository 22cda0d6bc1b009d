#![no_main]
//! `cargo +nightly fuzz run image`: the body is `effc_fuzz::image`, which the corpus
//! replay test (`crates/effc-fuzz/tests/replay.rs`) also runs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| effc_fuzz::image(data));
