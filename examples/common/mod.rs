//! What the lite0 examples share: the checkpoint they load, their command line
//! (image paths) and how they end.

use std::path::PathBuf;
use std::process::ExitCode;

/// EfficientNet-Lite0's ImageNet checkpoint, in the test fixtures.
pub const LITE0_WEIGHTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/lite0/efficientnet-lite0.safetensors"
);

/// Runs `body` on the images named on the command line: exit status 2 with the
/// usage line when there are none, 1 with the error when `body` fails.
pub fn on_images(
    example: &str,
    body: impl FnOnce(&[PathBuf]) -> Result<(), efficientnet::Error>,
) -> ExitCode {
    let images: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if images.is_empty() {
        eprintln!("usage: {example} IMAGE...");
        return ExitCode::from(2);
    }
    match body(&images) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
