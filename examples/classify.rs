//! Classifies images with EfficientNet-Lite0, compiled to WGSL by `efficientnet!`.
//!
//! ```sh
//! cargo run --release --example classify -- tests/fixtures/images/chelsea.png
//! ```
//!
//! Weights: `tests/fixtures/lite0/efficientnet-lite0.safetensors` (the official
//! ImageNet-trained Lite0, TF-port naming), or the file `--weights PATH` names.

use std::path::PathBuf;
use std::process::ExitCode;

// `mod lite0`: the model's constants, its kernels' WGSL and `lite0::Model`.
efficientnet::efficientnet!("lite0");

const DEFAULT_WEIGHTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/lite0/efficientnet-lite0.safetensors"
);

fn main() -> ExitCode {
    let mut weights = PathBuf::from(DEFAULT_WEIGHTS);
    let mut images = vec![];
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if a == "--weights" {
            match args.next() {
                Some(w) => weights = w.into(),
                None => return usage("--weights needs a path"),
            }
        } else {
            images.push(PathBuf::from(a));
        }
    }
    if images.is_empty() {
        return usage("no images given");
    }
    match run(&weights, &images) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("{problem}\nusage: classify [--weights W.safetensors] IMAGE...");
    ExitCode::from(2)
}

fn run(weights: &PathBuf, images: &[PathBuf]) -> Result<(), efficientnet::Error> {
    // Buffers for the whole batch, so that all images run in one forward.
    let model = lite0::Model::loader()
        .max_batch(images.len())
        .load(weights)?;
    let input = model.load_images(images)?;
    let logits = model.forward(&input, images.len())?;
    eprintln!(
        "{} ({} parameters, {} kernels) on {}",
        lite0::NAME,
        lite0::PARAMETERS,
        lite0::DISPATCHES,
        model.gpu().adapter
    );
    for (image, row) in images.iter().zip(logits.chunks(lite0::OUTPUT_LEN)) {
        println!("{}", image.display());
        for (rank, p) in efficientnet::top_k(row, 5).iter().enumerate() {
            println!(
                "  {}. {:6.2}%  {:>4}  {}",
                rank + 1,
                100.0 * p.prob,
                p.class,
                p.name
            );
        }
    }
    Ok(())
}
