//! A backbone's feature levels. Both devices give, per image, every level's CHW
//! values one after another (the GPU's `forward`); here they become one NCHW
//! tensor per level, saved as `features.<level>` and summarized per image.

use effc_plan::{FeatureOutput, Plan};
use serde::Serialize;

use crate::files::OutputFile;
use crate::Error;

/// One level of one image: its shape, reduction, mean and max.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LevelSummary {
    pub level: usize,
    /// Channels, height, width.
    pub shape: [usize; 3],
    pub reduction: usize,
    pub mean: f64,
    pub max: f32,
}

/// The reference executor's levels of `n` images, image by image (as the GPU's
/// `forward` gives them).
pub(crate) fn cpu_forward(
    ex: &effc_reference::Executor,
    part: &[f32],
    n: usize,
) -> Result<Vec<f32>, Error> {
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

/// Image `i`'s summary of every level.
pub(crate) fn summary(levels: &[(FeatureOutput, Vec<f32>)], i: usize) -> Vec<LevelSummary> {
    levels
        .iter()
        .map(|(f, d)| {
            let img = &d[i * f.len()..(i + 1) * f.len()];
            let mean = img.iter().map(|&v| v as f64).sum::<f64>() / img.len().max(1) as f64;
            let max = img.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            LevelSummary {
                level: f.level,
                shape: [f.channels, f.h, f.w],
                reduction: f.reduction,
                mean,
                max,
            }
        })
        .collect()
}

/// Writes every level as `features.<level>`, NCHW f32.
pub(crate) fn save(
    file: &OutputFile,
    levels: &[(FeatureOutput, Vec<f32>)],
    batch: usize,
) -> Result<(), Error> {
    let tensors: Vec<(String, &[f32], Vec<usize>)> = levels
        .iter()
        .map(|(f, d)| {
            (
                format!("features.{}", f.level),
                d.as_slice(),
                f.shape(batch).to_vec(),
            )
        })
        .collect();
    let out = super::tensors::serialize(&tensors)?;
    Ok(file.write(&out)?)
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
        let s = summary(&levels, 1);
        assert_eq!((s[0].mean, s[1].max), (10.0, 11.0));
    }
}
