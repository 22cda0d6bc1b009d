//! Training augmentation beyond the crop and flip: RandAugment and
//! mixup/CutMix, as timm implements them (`timm.data.auto_augment`,
//! `timm.data.mixup`), drawing from effc's seeded [`Rng`] so a run, and a
//! resumed one, sees the same images.
//!
//! **RandAugment** (`rand-m9-mstd0.5`, timm's config string): `n` ops (2)
//! chosen uniformly with replacement from timm's `_RAND_TRANSFORMS`, each
//! applied with probability `p` (0.5) at magnitude `m` drawn from a normal of
//! standard deviation `mstd` around `m` (uniform in `[0, m]` for `mstdinf`) and
//! clamped to `[0, mmax]` (10). Each op maps the magnitude to its argument as
//! timm's `LEVEL_TO_ARG` does (`m/10` of: 30° rotation, 0.3 shear, 0.45 of the
//! size for translation, all with a random sign; 4 bits kept for posterize,
//! 256 for the solarize threshold, 110 added below 128 for solarize-add, an
//! enhancement factor `1.8·m/10 + 0.1` for colour, contrast, brightness and
//! sharpness) and the pixels as PIL does (`ImageOps`, `ImageEnhance`, the
//! affine `Image.transform` with the model's mean as fill colour). timm picks
//! bilinear or bicubic at random for the geometric ops; effc always resamples
//! bilinearly. Posterize at magnitude below 2.5 keeps 0 bits: black, as Pillow
//! did before it started refusing 0 (Pillow 13 raises, so timm fails there).
//! Checked against timm on PIL in `tests/augment.rs` (fixture by
//! `tests/fixtures/train/make_augment_fixtures.py`): the colour ops exactly,
//! the geometric ones within 1 level.
//!
//! **Mixup / CutMix** (timm's `Mixup`, batch mode): with probability `prob`
//! the batch is mixed with its reverse (image `i` with image `n − 1 − i`):
//! CutMix with probability `switch_prob` when both are on, else mixup;
//! `λ ~ Beta(α, α)`; CutMix pastes a box of area `1 − λ` (clipped at the edges,
//! λ corrected to the area pasted); the targets are `λ·y_i + (1 − λ)·y_{n−1−i}`
//! of the one-hot labels with the label smoothing folded in (`1 − s + s/C` on,
//! `s/C` off), so each sums to 1 and the loss takes them without smoothing.

use effc_reference::train::Rng;
use image::RgbImage;

/// timm's RandAugment op list (`_RAND_TRANSFORMS`), in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    AutoContrast,
    Equalize,
    Invert,
    Rotate,
    Posterize,
    Solarize,
    SolarizeAdd,
    Color,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateXRel,
    TranslateYRel,
}

pub const OPS: [Op; 15] = [
    Op::AutoContrast,
    Op::Equalize,
    Op::Invert,
    Op::Rotate,
    Op::Posterize,
    Op::Solarize,
    Op::SolarizeAdd,
    Op::Color,
    Op::Contrast,
    Op::Brightness,
    Op::Sharpness,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateXRel,
    Op::TranslateYRel,
];

/// timm's `_LEVEL_DENOM`: magnitude 10 is an op's full strength.
const LEVEL_DENOM: f64 = 10.0;

/// RandAugment's settings (timm's `rand-m9-mstd0.5` is `m 9, mstd 0.5`, `n 2`, `p 0.5`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandAugment {
    pub n: usize,
    pub magnitude: f64,
    pub magnitude_std: f64,
    /// The largest magnitude (timm's `mmax`, 10 by default).
    pub magnitude_max: f64,
    /// Each op's probability of being applied.
    pub prob: f64,
}

impl Default for RandAugment {
    fn default() -> Self {
        RandAugment {
            n: 2,
            magnitude: 9.0,
            magnitude_std: 0.5,
            magnitude_max: LEVEL_DENOM,
            prob: 0.5,
        }
    }
}

impl RandAugment {
    /// timm's config string: `rand` then `-`-separated `mM`, `nN`, `mstdS`
    /// (`mstdinf` or above 100: uniform), `mmaxX`, `pP`, with timm's defaults
    /// (m 10, n 2, mstd 0, mmax 10, p 0.5); `inc1` (the increasing ops) is refused.
    pub fn parse(s: &str) -> Result<RandAugment, String> {
        let mut parts = s.split('-');
        if parts.next() != Some("rand") {
            return Err(format!(
                "--randaug `{s}`: a RandAugment config starts with `rand` (timm's form, as `rand-m9-mstd0.5`)"
            ));
        }
        let mut ra = RandAugment {
            magnitude: LEVEL_DENOM,
            magnitude_std: 0.0,
            ..RandAugment::default()
        };
        for part in parts {
            let num = |key: &str| -> Result<f64, String> {
                let v = &part[key.len()..];
                let x: f64 = if v == "inf" {
                    f64::INFINITY
                } else {
                    v.parse()
                        .map_err(|_| format!("--randaug `{s}`: `{part}`: `{v}` is not a number"))?
                };
                if x.is_nan() || x < 0.0 {
                    return Err(format!("--randaug `{s}`: `{part}` must not be negative"));
                }
                Ok(x)
            };
            if let Some(key) = ["mstd", "mmax", "inc", "m", "n", "p"]
                .into_iter()
                .find(|k| part.starts_with(k))
            {
                let v = num(key)?;
                match key {
                    "mstd" if v > 100.0 => ra.magnitude_std = f64::INFINITY,
                    "mstd" => ra.magnitude_std = v,
                    "mmax" => ra.magnitude_max = v,
                    "inc" if v != 0.0 => {
                        return Err(format!(
                            "--randaug `{s}`: `inc1` (timm's increasing-severity ops) is not supported; leave it out"
                        ))
                    }
                    "inc" => {}
                    "m" if v.is_finite() => ra.magnitude = v,
                    "n" if v.fract() == 0.0 && v.is_finite() => ra.n = v as usize,
                    "p" if v <= 1.0 => ra.prob = v,
                    _ => return Err(format!("--randaug `{s}`: `{part}` is out of range")),
                }
            } else {
                return Err(format!(
                    "--randaug `{s}`: unknown part `{part}` (known: mM, nN, mstdS, mmaxX, pP, inc0)"
                ));
            }
        }
        Ok(ra)
    }

    /// Applies `n` ops to `img` in place; `fill` is the colour geometric ops
    /// bring in at the edges (timm: the mean, `round(255·mean)`).
    pub fn apply(&self, img: &mut RgbImage, fill: [u8; 3], rng: &mut Rng) {
        for _ in 0..self.n {
            let op = OPS[(rng.next_u64() % OPS.len() as u64) as usize];
            if self.prob < 1.0 && rng.uniform() > self.prob {
                continue;
            }
            let mut m = self.magnitude;
            if self.magnitude_std == f64::INFINITY {
                m *= rng.uniform();
            } else if self.magnitude_std > 0.0 {
                m += normal(rng) * self.magnitude_std;
            }
            let m = m.min(self.magnitude_max).max(0.0);
            let arg = level_arg(op, m, rng);
            *img = apply_op(img, op, arg, fill);
        }
    }
}

/// A standard normal draw (Box–Muller).
pub fn normal(rng: &mut Rng) -> f64 {
    let u1 = rng.uniform();
    let u2 = rng.uniform();
    (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `-v` or `v` with probability ½ each (timm's `_randomly_negate`).
fn negate(v: f64, rng: &mut Rng) -> f64 {
    if rng.uniform() > 0.5 {
        -v
    } else {
        v
    }
}

/// An op's argument at magnitude `m` (timm's `LEVEL_TO_ARG`); 0 for the ops without one.
pub fn level_arg(op: Op, m: f64, rng: &mut Rng) -> f64 {
    let l = m / LEVEL_DENOM;
    match op {
        Op::AutoContrast | Op::Equalize | Op::Invert => 0.0,
        Op::Rotate => negate(l * 30.0, rng),
        Op::Posterize => (l * 4.0).trunc(),
        Op::Solarize => (l * 256.0).trunc(),
        Op::SolarizeAdd => (l * 110.0).trunc(),
        Op::Color | Op::Contrast | Op::Brightness | Op::Sharpness => l * 1.8 + 0.1,
        Op::ShearX | Op::ShearY => negate(l * 0.3, rng),
        Op::TranslateXRel | Op::TranslateYRel => negate(l * 0.45, rng),
    }
}

/// `op` with argument `arg` (see [`level_arg`]), as PIL computes it.
pub fn apply_op(img: &RgbImage, op: Op, arg: f64, fill: [u8; 3]) -> RgbImage {
    let (w, h) = (img.width() as f64, img.height() as f64);
    match op {
        Op::AutoContrast => per_channel_lut(img, autocontrast_lut),
        Op::Equalize => per_channel_lut(img, equalize_lut),
        Op::Invert => lut(img, |v| 255 - v),
        Op::Posterize => {
            let bits = arg as u32;
            if bits >= 8 {
                return img.clone();
            }
            let mask = !((1u32 << (8 - bits)) - 1) as u8;
            lut(img, |v| v & mask)
        }
        Op::Solarize => {
            let t = arg as i64;
            lut(img, |v| if (v as i64) < t { v } else { 255 - v })
        }
        Op::SolarizeAdd => {
            let add = arg as i64;
            lut(img, |v| {
                if v < 128 {
                    (v as i64 + add).min(255) as u8
                } else {
                    v
                }
            })
        }
        Op::Color => {
            let gray = RgbImage::from_fn(img.width(), img.height(), |x, y| {
                let l = luma(img.get_pixel(x, y).0);
                image::Rgb([l; 3])
            });
            blend(&gray, img, arg as f32)
        }
        Op::Contrast => {
            let n = (img.width() as u64 * img.height() as u64).max(1);
            let sum: u64 = img.pixels().map(|p| luma(p.0) as u64).sum();
            let mean = (sum as f64 / n as f64 + 0.5) as u8;
            let deg = RgbImage::from_pixel(img.width(), img.height(), image::Rgb([mean; 3]));
            blend(&deg, img, arg as f32)
        }
        Op::Brightness => {
            let black = RgbImage::new(img.width(), img.height());
            blend(&black, img, arg as f32)
        }
        Op::Sharpness => blend(&smooth(img), img, arg as f32),
        Op::Rotate => {
            // PIL's `Image.rotate` (counter-clockwise by `arg` degrees about the centre).
            let a = -arg.to_radians();
            let r15 = |v: f64| (v * 1e15).round() / 1e15;
            let (c, s) = (r15(a.cos()), r15(a.sin()));
            let (cx, cy) = (w / 2.0, h / 2.0);
            let m = [c, s, c * -cx + s * -cy + cx, -s, c, -s * -cx + c * -cy + cy];
            affine(img, m, fill)
        }
        Op::ShearX => affine(img, [1.0, arg, 0.0, 0.0, 1.0, 0.0], fill),
        Op::ShearY => affine(img, [1.0, 0.0, 0.0, arg, 1.0, 0.0], fill),
        Op::TranslateXRel => affine(img, [1.0, 0.0, arg * w, 0.0, 1.0, 0.0], fill),
        Op::TranslateYRel => affine(img, [1.0, 0.0, 0.0, 0.0, 1.0, arg * h], fill),
    }
}

fn lut(img: &RgbImage, f: impl Fn(u8) -> u8) -> RgbImage {
    let table: Vec<u8> = (0..=255u8).map(f).collect();
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for v in &mut p.0 {
            *v = table[*v as usize];
        }
    }
    out
}

fn per_channel_lut(img: &RgbImage, make: fn(&[u64; 256]) -> [u8; 256]) -> RgbImage {
    let mut hist = [[0u64; 256]; 3];
    for p in img.pixels() {
        for c in 0..3 {
            hist[c][p.0[c] as usize] += 1;
        }
    }
    let tables = [make(&hist[0]), make(&hist[1]), make(&hist[2])];
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for c in 0..3 {
            p.0[c] = tables[c][p.0[c] as usize];
        }
    }
    out
}

/// `ImageOps.autocontrast` (no cutoff): the channel's range stretched to 0–255.
fn autocontrast_lut(h: &[u64; 256]) -> [u8; 256] {
    let mut t = [0u8; 256];
    let lo = (0..256).find(|&i| h[i] > 0).unwrap_or(0);
    let hi = (0..256).rev().find(|&i| h[i] > 0).unwrap_or(0);
    for (i, v) in t.iter_mut().enumerate() {
        *v = if hi <= lo {
            i as u8
        } else {
            let scale = 255.0 / (hi - lo) as f64;
            let offset = -(lo as f64) * scale;
            ((i as f64 * scale + offset) as i64).clamp(0, 255) as u8
        };
    }
    t
}

/// `ImageOps.equalize`: the channel's histogram flattened.
fn equalize_lut(h: &[u64; 256]) -> [u8; 256] {
    let mut t = [0u8; 256];
    let used: Vec<u64> = h.iter().copied().filter(|&c| c > 0).collect();
    let identity = |t: &mut [u8; 256]| {
        for (i, v) in t.iter_mut().enumerate() {
            *v = i as u8;
        }
    };
    if used.len() <= 1 {
        identity(&mut t);
        return t;
    }
    let step = (used.iter().sum::<u64>() - used[used.len() - 1]) / 256;
    if step == 0 {
        identity(&mut t);
        return t;
    }
    let mut n = step / 2;
    for (i, v) in t.iter_mut().enumerate() {
        *v = (n / step).min(255) as u8;
        n += h[i];
    }
    t
}

/// PIL's RGB → L: `(19595·R + 38470·G + 7471·B + 2¹⁵) >> 16`.
fn luma(p: [u8; 3]) -> u8 {
    ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8
}

/// `Image.blend(a, b, alpha)`: `a + alpha·(b − a)` in f32, truncated (clipped
/// when `alpha` is outside `[0, 1]`).
fn blend(a: &RgbImage, b: &RgbImage, alpha: f32) -> RgbImage {
    let mut out = a.clone();
    for (o, q) in out.pixels_mut().zip(b.pixels()) {
        for c in 0..3 {
            let (x, y) = (o.0[c] as i32, q.0[c] as i32);
            let v = x as f32 + alpha * (y - x) as f32;
            o.0[c] = if (0.0..=1.0).contains(&alpha) {
                v as u8
            } else if v <= 0.0 {
                0
            } else if v >= 255.0 {
                255
            } else {
                v as u8
            };
        }
    }
    out
}

/// `ImageFilter.SMOOTH` (3×3 `[1 1 1; 1 5 1; 1 1 1]/13`), the border kept as is.
fn smooth(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let mut out = img.clone();
    if w < 3 || h < 3 {
        return out;
    }
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            for c in 0..3 {
                let mut s = 0f32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let k = if dx == 1 && dy == 1 { 5.0 } else { 1.0 } / 13.0;
                        s += k * img.get_pixel(x + dx - 1, y + dy - 1).0[c] as f32;
                    }
                }
                out.get_pixel_mut(x, y).0[c] = clip8(s + 0.5);
            }
        }
    }
    out
}

fn clip8(v: f32) -> u8 {
    if v <= 0.0 {
        0
    } else if v >= 255.0 {
        255
    } else {
        v as u8
    }
}

/// PIL's `Image.transform(size, AFFINE, m, BILINEAR, fillcolor)`: output pixel
/// centre `(x + ½, y + ½)` samples the input at `(m0·x + m1·y + m2, m3·x + m4·y + m5)`;
/// outside the input, `fill`.
fn affine(img: &RgbImage, m: [f64; 6], fill: [u8; 3]) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let (xo, yo) = (x as f64 + 0.5, y as f64 + 0.5);
        let xin = m[0] * xo + m[1] * yo + m[2];
        let yin = m[3] * xo + m[4] * yo + m[5];
        if xin < 0.0 || xin >= w as f64 || yin < 0.0 || yin >= h as f64 {
            return image::Rgb(fill);
        }
        let (xs, ys) = (xin - 0.5, yin - 0.5);
        let (x0, y0) = (xs.floor() as i64, ys.floor() as i64);
        let (dx, dy) = (xs - x0 as f64, ys - y0 as f64);
        let cx = |x: i64| x.clamp(0, w - 1) as u32;
        let row = |y: i64, c: usize| -> f64 {
            let a = img.get_pixel(cx(x0), y as u32).0[c] as f64;
            let b = img.get_pixel(cx(x0 + 1), y as u32).0[c] as f64;
            a + (b - a) * dx
        };
        let mut px = [0u8; 3];
        for (c, p) in px.iter_mut().enumerate() {
            let v1 = row(y0.clamp(0, h - 1), c);
            let v2 = if y0 + 1 >= 0 && y0 + 1 < h {
                row(y0 + 1, c)
            } else {
                v1
            };
            let v = v1 + (v2 - v1) * dy;
            *p = v.round().clamp(0.0, 255.0) as u8;
        }
        image::Rgb(px)
    })
}

/// timm's fill colour for the geometric ops: `round(255·mean)` per channel
/// (Python's rounding, half to even).
pub fn fill_of(mean: [f64; 3]) -> [u8; 3] {
    mean.map(|m| (255.0 * m).round_ties_even().clamp(0.0, 255.0) as u8)
}

/// Mixup/CutMix settings (timm's `Mixup`, batch mode).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mixup {
    /// Mixup's α (0: off).
    pub mixup_alpha: f64,
    /// CutMix's α (0: off).
    pub cutmix_alpha: f64,
    /// The probability a batch is mixed at all.
    pub prob: f64,
    /// With both on, the probability of CutMix rather than mixup.
    pub switch_prob: f64,
}

/// A gamma(`a`, 1) draw (Marsaglia–Tsang; `a < 1` by boosting).
fn gamma(a: f64, rng: &mut Rng) -> f64 {
    if a < 1.0 {
        let u = rng.uniform();
        return gamma(a + 1.0, rng) * (1.0 - u).powf(1.0 / a);
    }
    let d = a - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = 1.0 - rng.uniform();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Beta(`a`, `a`) draw.
pub fn beta(a: f64, rng: &mut Rng) -> f64 {
    let x = gamma(a, rng);
    let y = gamma(a, rng);
    if x + y > 0.0 {
        x / (x + y)
    } else {
        0.5
    }
}

/// What [`Mixup::apply`] did to a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Mixed {
    /// `[n, classes]`, each row summing to 1.
    pub targets: Vec<f32>,
    /// The weight of each image's own label.
    pub lam: f64,
    /// The CutMix box `(top, bottom, left, right)`, when CutMix was used.
    pub cutmix_box: Option<(usize, usize, usize, usize)>,
}

impl Mixup {
    pub fn enabled(&self) -> bool {
        self.prob > 0.0 && (self.mixup_alpha > 0.0 || self.cutmix_alpha > 0.0)
    }

    /// Mixes the NCHW batch `x` (`n` images of `c × h × w`) in place and returns
    /// the soft targets of `labels` with label smoothing `smoothing` folded in.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        x: &mut [f32],
        labels: &[usize],
        [c, h, w]: [usize; 3],
        classes: usize,
        smoothing: f64,
        rng: &mut Rng,
    ) -> Mixed {
        let n = labels.len();
        let (mut lam, mut use_cutmix) = (1.0, false);
        if self.enabled() && rng.uniform() < self.prob {
            let a = if self.mixup_alpha > 0.0 && self.cutmix_alpha > 0.0 {
                use_cutmix = rng.uniform() < self.switch_prob;
                if use_cutmix {
                    self.cutmix_alpha
                } else {
                    self.mixup_alpha
                }
            } else if self.mixup_alpha > 0.0 {
                self.mixup_alpha
            } else {
                use_cutmix = true;
                self.cutmix_alpha
            };
            lam = beta(a, rng);
        }
        let mut cutmix_box = None;
        let img = c * h * w;
        if lam < 1.0 {
            let orig = x.to_vec();
            if use_cutmix {
                let ratio = (1.0 - lam).sqrt();
                let (ch, cw) = ((h as f64 * ratio) as i64, (w as f64 * ratio) as i64);
                let cy = (rng.next_u64() % h.max(1) as u64) as i64;
                let cx = (rng.next_u64() % w.max(1) as u64) as i64;
                let clip = |v: i64, hi: usize| v.clamp(0, hi as i64) as usize;
                let (yl, yh) = (clip(cy - ch / 2, h), clip(cy + ch / 2, h));
                let (xl, xh) = (clip(cx - cw / 2, w), clip(cx + cw / 2, w));
                for i in 0..n {
                    let j = n - 1 - i;
                    for ch in 0..c {
                        for y in yl..yh {
                            let row = ch * h * w + y * w;
                            x[i * img + row + xl..i * img + row + xh]
                                .copy_from_slice(&orig[j * img + row + xl..j * img + row + xh]);
                        }
                    }
                }
                lam = 1.0 - ((yh - yl) * (xh - xl)) as f64 / (h * w) as f64;
                cutmix_box = Some((yl, yh, xl, xh));
            } else {
                let (a, b) = (lam as f32, (1.0 - lam) as f32);
                for i in 0..n {
                    let j = n - 1 - i;
                    for k in 0..img {
                        x[i * img + k] = orig[i * img + k] * a + orig[j * img + k] * b;
                    }
                }
            }
        }
        let off = smoothing / classes as f64;
        let on = 1.0 - smoothing + off;
        let mut targets = vec![0f32; n * classes];
        for i in 0..n {
            let (own, other) = (labels[i], labels[n - 1 - i]);
            for k in 0..classes {
                let y1 = if k == own { on } else { off };
                let y2 = if k == other { on } else { off };
                targets[i * classes + k] = (y1 * lam + y2 * (1.0 - lam)) as f32;
            }
        }
        Mixed {
            targets,
            lam,
            cutmix_box,
        }
    }
}
