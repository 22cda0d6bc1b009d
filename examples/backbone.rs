//! EfficientNet-Lite0 as a detection or segmentation backbone: `features = [1, 2,
//! 3, 4]` ends the model at its feature maps of strides 4, 8, 16 and 32 (timm's
//! `features_only=True, out_indices=(1, 2, 3, 4)`), what an FPN, EfficientDet's
//! BiFPN or a segmentation head reads. Nothing after the last level runs (no head,
//! no classifier).
//!
//! ```sh
//! cargo run --release --example backbone -- tests/fixtures/images/chelsea.png
//! ```
//!
//! Prints the feature info, then each image's levels: shape, mean and max.

use std::process::ExitCode;

efficientnet::efficientnet!("lite0", name = backbone, features = [1, 2, 3, 4]);

mod common;
use common::LITE0_WEIGHTS as WEIGHTS;

fn main() -> ExitCode {
    common::on_images("backbone", |images| {
        for f in backbone::FEATURE_INFO {
            println!(
                "level {}: {} channels, reduction {}, from {}",
                f.level, f.channels, f.reduction, f.block_path
            );
        }
        let model = backbone::Model::loader()
            .max_batch(images.len())
            .load(WEIGHTS)?;
        let input = model.load_images(images)?;
        let levels = model.features(&input, images.len())?;
        for (n, image) in images.iter().enumerate() {
            println!("{}", image.display());
            for l in &levels {
                let x = l.image(n);
                let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
                let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let [_, c, h, w] = l.shape;
                println!(
                    "  level {}: {c}x{h}x{w} (stride {}), mean {mean:.4}, max {max:.4}",
                    l.level, l.reduction
                );
            }
        }
        Ok(())
    })
}
