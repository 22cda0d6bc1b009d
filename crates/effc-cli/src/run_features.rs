//! `effc run --features`: a backbone's levels per image, printed (the driver
//! splits, saves and summarizes them).

use effc_driver::run::LevelSummary;

use crate::output::outln;
use crate::Failure;

/// Each image's levels: shape, reduction, mean and max (JSON: one object per
/// image, `{"image", "levels": [{"level", "shape", "reduction", "mean", "max"}]}`).
pub fn print(
    images: &[Vec<LevelSummary>],
    labels: &[String],
    json: bool,
    saved: bool,
) -> Result<(), Failure> {
    if json {
        let v: Vec<_> = labels
            .iter()
            .zip(images)
            .map(|(l, levels)| serde_json::json!({"image": l, "levels": levels}))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (l, levels) in labels.iter().zip(images) {
        outln!("{l}");
        for s in levels {
            let [c, h, w] = s.shape;
            outln!(
                "  level {}  {:<12} reduction {:>2}  mean {:.4}  max {:.4}",
                s.level,
                format!("{c}x{h}x{w}"),
                s.reduction,
                s.mean,
                s.max
            );
        }
    }
    if !saved {
        eprintln!("note: the model ends at feature levels; --save writes them (`features.<level>`, NCHW f32)");
    }
    Ok(())
}
