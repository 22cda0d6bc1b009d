//! A backbone's feature levels ([`effc_plan::features`]): each level's buffer is
//! copied out chunk by chunk into its own region of the output buffer (`batch`
//! images, padded NHWC, as the GPU wrote them), and converted to NCHW once, at
//! read-back.

use crate::{CompiledModel, GpuError};

/// One feature level of a batch: NCHW f32.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureMap {
    /// timm's level: reduction `2^(level+1)`.
    pub level: usize,
    /// Input pixels per output pixel, per side.
    pub reduction: usize,
    /// `[batch, channels, height, width]`.
    pub shape: [usize; 4],
    pub data: Vec<f32>,
}

impl FeatureMap {
    /// Image `n`'s values, CHW.
    pub fn image(&self, n: usize) -> &[f32] {
        let per = self.shape[1] * self.shape[2] * self.shape[3];
        &self.data[n * per..(n + 1) * per]
    }
}

impl CompiledModel {
    /// Runs a batch through a backbone (`input` NCHW f32, `batch × 3 × H × W`) and
    /// returns its feature levels in level order, NCHW. A model without feature
    /// levels is an error.
    pub fn features(&self, input: &[f32], batch: usize) -> Result<Vec<FeatureMap>, GpuError> {
        self.no_levels()?;
        self.upload(input, batch)?;
        let mut encoder = self.encoder("effc features");
        self.encode_batch(&mut encoder, batch, None);
        self.gpu.queue.submit([encoder.finish()]);
        self.read_features(batch)
    }

    /// Waits for the GPU and reads back the feature levels of `batch` images (a
    /// forward recorded by [`CompiledModel::encode_batch`]), NCHW.
    pub fn read_features(&self, batch: usize) -> Result<Vec<FeatureMap>, GpuError> {
        self.no_levels()?;
        if batch > self.max_batch {
            return Err(GpuError::Batch {
                batch,
                max: self.max_batch,
            });
        }
        let bytes = (batch * self.plan.output_bytes()) as u64;
        let raw: Vec<u8> = self.gpu.read_back(
            &self.output_all,
            bytes,
            "running the model",
            "the feature levels",
        )?;
        // Each level is stored as its tensor is (f16 in an f16 plan), one after another.
        let mut at = 0;
        Ok(self
            .plan
            .features
            .iter()
            .map(|f| {
                let t = &self.plan.tensors[f.tensor];
                let c4 = t.c4 * 4;
                let len = batch * f.h * f.w * c4;
                let end = at + len * t.elem.bytes();
                let values = effc_plan::precision::decode(t.elem, &raw[at..end]);
                let data = nhwc_to_nchw(&values, batch, f.h * f.w, f.channels, c4);
                at = end;
                FeatureMap {
                    level: f.level,
                    reduction: f.reduction,
                    shape: f.shape(batch),
                    data,
                }
            })
            .collect())
    }

    fn no_levels(&self) -> Result<(), GpuError> {
        if self.plan.is_backbone() {
            Ok(())
        } else {
            Err(GpuError::NoFeatures {
                model: self.plan.model.clone(),
            })
        }
    }
}

/// `batch` images of `pixels` pixels, NHWC with `padded` channels per pixel → NCHW
/// with the first `c` channels.
pub(crate) fn nhwc_to_nchw(
    src: &[f32],
    batch: usize,
    pixels: usize,
    c: usize,
    padded: usize,
) -> Vec<f32> {
    let mut out = vec![0.0; batch * c * pixels];
    for n in 0..batch {
        let img = &src[n * pixels * padded..(n + 1) * pixels * padded];
        let dst = &mut out[n * c * pixels..(n + 1) * c * pixels];
        for (p, px) in img.chunks_exact(padded).enumerate() {
            for (ch, &v) in px[..c].iter().enumerate() {
                dst[ch * pixels + p] = v;
            }
        }
    }
    out
}

/// The levels of a batch as one vector, image by image: per image, each level's
/// CHW values in level order (what [`CompiledModel::forward`] returns).
pub(crate) fn per_image(levels: &[FeatureMap]) -> Vec<f32> {
    let batch = levels.first().map_or(0, |l| l.shape[0]);
    let mut out = Vec::with_capacity(levels.iter().map(|l| l.data.len()).sum());
    for n in 0..batch {
        for l in levels {
            out.extend_from_slice(l.image(n));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_nhwc_becomes_nchw() {
        // 2 images, 3 pixels, 2 real channels padded to 4: value = n·100 + p·10 + ch.
        let mut src = vec![];
        for n in 0..2 {
            for p in 0..3 {
                for ch in 0..4 {
                    src.push(if ch < 2 {
                        (n * 100 + p * 10 + ch) as f32
                    } else {
                        -1.0
                    });
                }
            }
        }
        let got = nhwc_to_nchw(&src, 2, 3, 2, 4);
        assert_eq!(
            got,
            vec![0., 10., 20., 1., 11., 21., 100., 110., 120., 101., 111., 121.]
        );
    }

    #[test]
    fn per_image_interleaves_levels() {
        let level = |level, c, data: Vec<f32>| FeatureMap {
            level,
            reduction: 2 << level,
            shape: [2, c, 1, 1],
            data,
        };
        let levels = [level(1, 1, vec![1., 2.]), level(2, 2, vec![3., 4., 5., 6.])];
        assert_eq!(levels[1].image(1), [5., 6.]);
        assert_eq!(per_image(&levels), vec![1., 3., 4., 2., 5., 6.]);
    }
}
