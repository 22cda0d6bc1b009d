//! `effc run --features`: a backbone's feature levels. Both devices give, per
//! image, every level's CHW values one after another (the GPU's `forward`); here
//! they become one NCHW tensor per level, saved as `features.<level>` and
//! summarized per image (shape, mean, max).

use effc_plan::{FeatureOutput, Plan};

use crate::output::outln;
use crate::Failure;

/// The reference executor's levels of `n` images, image by image (as the GPU's
/// `forward` gives them).
pub fn cpu_forward(
    ex: &effc_reference::Executor,
    part: &[f32],
    n: usize,
) -> Result<Vec<f32>, Failure> {
    let levels = ex.features(part, n)?;
    let mut out = Vec::with_capacity(levels.iter().map(|l| l.data.len()).sum());
    for i in 0..n {
        for l in &levels {
            let per = l.data.len() / n;
            out.extend_from_slice(&l.data[i * per..(i + 1) * per]);
        }
    }
    Ok(out)
}

/// Per level, its NCHW values for the whole batch, from per-image output.
pub fn split(plan: &Plan, output: &[f32], batch: usize) -> Vec<(FeatureOutput, Vec<f32>)> {
    let per_image = plan.output_len;
    let mut at = 0;
    plan.features
        .iter()
        .map(|f| {
            let len = f.len();
            let mut data = Vec::with_capacity(batch * len);
            for image in output.chunks(per_image).take(batch) {
                data.extend_from_slice(&image[at..at + len]);
            }
            at += len;
            (*f, data)
        })
        .collect()
}

/// Writes every level as `features.<level>`, NCHW f32.
pub fn save(
    file: &effc_driver::files::OutputFile,
    levels: &[(FeatureOutput, Vec<f32>)],
    batch: usize,
) -> Result<(), Failure> {
    let names: Vec<String> = levels
        .iter()
        .map(|(f, _)| format!("features.{}", f.level))
        .collect();
    let bytes: Vec<Vec<u8>> = levels
        .iter()
        .map(|(_, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = vec![];
    for ((name, (f, _)), b) in names.iter().zip(levels).zip(&bytes) {
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            f.shape(batch).to_vec(),
            b,
        )
        .map_err(|e| format!("cannot build tensor `{name}`: {e}"))?;
        views.push((name.as_str(), view));
    }
    let out = safetensors::serialize(views, None)
        .map_err(|e| format!("cannot serialize the feature levels: {e}"))?;
    Ok(file.write(&out)?)
}

/// Each image's levels: shape, reduction, mean and max (JSON: one object per
/// image, `{"image", "levels": [{"level", "shape", "reduction", "mean", "max"}]}`).
pub fn print(
    levels: &[(FeatureOutput, Vec<f32>)],
    labels: &[String],
    json: bool,
    saved: bool,
) -> Result<(), Failure> {
    let stats = |f: &FeatureOutput, d: &[f32], i: usize| {
        let img = &d[i * f.len()..(i + 1) * f.len()];
        let mean = img.iter().map(|&v| v as f64).sum::<f64>() / img.len().max(1) as f64;
        let max = img.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (mean, max)
    };
    if json {
        let v: Vec<_> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let levels: Vec<_> = levels
                    .iter()
                    .map(|(f, d)| {
                        let (mean, max) = stats(f, d, i);
                        serde_json::json!({
                            "level": f.level,
                            "shape": [f.channels, f.h, f.w],
                            "reduction": f.reduction,
                            "mean": mean,
                            "max": max,
                        })
                    })
                    .collect();
                serde_json::json!({"image": l, "levels": levels})
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (i, l) in labels.iter().enumerate() {
        outln!("{l}");
        for (f, d) in levels {
            let (mean, max) = stats(f, d, i);
            outln!(
                "  level {}  {:<12} reduction {:>2}  mean {mean:.4}  max {max:.4}",
                f.level,
                format!("{}x{}x{}", f.channels, f.h, f.w),
                f.reduction
            );
        }
    }
    if !saved {
        eprintln!("note: the model ends at feature levels; --save writes them (`features.<level>`, NCHW f32)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_image_output_splits_into_nchw_levels() {
        let opts = effc_ir::Options {
            resolution: Some(32),
            features: Some(vec![3, 4]),
            ..Default::default()
        };
        let m = effc_ir::Model::build(&effc_ir::Spec::builtin("b0").unwrap(), &opts).unwrap();
        let plan = effc_plan::plan(&m);
        let (a, b) = (plan.features[0].len(), plan.features[1].len());
        assert_eq!((a, b), (112 * 2 * 2, 320));
        // Image i's level-3 values are 10·i, its level-4 values 10·i + 1.
        let mut out = vec![];
        for i in 0..2 {
            out.extend(std::iter::repeat_n(10.0 * i as f32, a));
            out.extend(std::iter::repeat_n(10.0 * i as f32 + 1.0, b));
        }
        let levels = split(&plan, &out, 2);
        assert_eq!(levels[0].1.len(), 2 * a);
        assert_eq!((levels[0].1[a - 1], levels[0].1[a]), (0.0, 10.0));
        assert_eq!((levels[1].1[b - 1], levels[1].1[b]), (1.0, 11.0));
    }
}
