//! EfficientNet-Lite0 as an image embedding: `classes = 0` ends the model at
//! its embedding, the pooled head (1280 values per image), e.g. for retrieval or a classifier of your own. The
//! classifier's tensors in the checkpoint are skipped.
//!
//! ```sh
//! cargo run --release --example embedding -- tests/fixtures/images/chelsea.png tests/fixtures/images/coffee.png
//! ```
//!
//! Prints each image's embedding statistics and the cosine similarity of every pair.

use std::process::ExitCode;

efficientnet::efficientnet!("lite0", name = backbone, classes = 0);

mod common;
use common::LITE0_WEIGHTS as WEIGHTS;

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(f64::MIN_POSITIVE)
}

fn main() -> ExitCode {
    common::on_images("embedding", |images| {
        let model = backbone::Model::loader()
            .max_batch(images.len())
            .load(WEIGHTS)?;
        let input = model.load_images(images)?;
        let features = model.forward(&input, images.len())?;
        let rows: Vec<&[f32]> = features.chunks(backbone::EMBEDDING_LEN).collect();
        for (image, f) in images.iter().zip(&rows) {
            let mean = f.iter().sum::<f32>() / f.len() as f32;
            let max = f.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let active = f.iter().filter(|v| **v > 0.0).count();
            println!(
                "{}: {}-value embedding, mean {mean:.4}, max {max:.4}, {active} positive",
                image.display(),
                f.len()
            );
        }
        for i in 0..rows.len() {
            for j in i + 1..rows.len() {
                println!(
                    "cosine({}, {}) = {:.4}",
                    images[i].display(),
                    images[j].display(),
                    cosine(rows[i], rows[j])
                );
            }
        }
        Ok(())
    })
}
