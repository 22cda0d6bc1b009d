//! A model from a user-written `.enet` file: `examples/lite0-192.enet`, Lite0's
//! architecture at 192x192, classifying with Lite0's ImageNet checkpoint.
//!
//! ```sh
//! cargo run --release --example custom_spec -- tests/fixtures/images/chelsea.png
//! ```

use std::process::ExitCode;

// `file` is relative to the directory of the crate that calls the macro
// (crates/efficientnet for this example). Editing the file recompiles the example.
efficientnet::efficientnet!(file = "../../examples/lite0-192.enet", name = small);

mod common;
use common::LITE0_WEIGHTS as WEIGHTS;

fn main() -> ExitCode {
    common::on_images("custom_spec", |images| {
        println!(
            "model `{}` from {}: input {:?}, {} parameters, {:.0} M multiply-accumulates, {} dispatches",
            small::NAME,
            small::SPEC_ORIGIN,
            small::INPUT_SHAPE,
            small::PARAMETERS,
            small::MACS as f64 / 1e6,
            small::DISPATCHES
        );
        let model = small::Model::loader()
            .max_batch(images.len())
            .load(WEIGHTS)?;
        let input = model.load_images(images)?;
        let logits = model.forward(&input, images.len())?;
        for (image, row) in images.iter().zip(logits.chunks(small::OUTPUT_LEN)) {
            let top = efficientnet::top_k(row, 3);
            let shown: Vec<String> = top
                .iter()
                .map(|p| format!("{} {:.1}%", p.name, 100.0 * p.prob))
                .collect();
            println!("{}: {}", image.display(), shown.join(", "));
        }
        Ok(())
    })
}
