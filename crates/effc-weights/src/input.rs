//! Images as network inputs, preprocessed the way timm evaluates:
//! the shorter side resized to `resolution / CROP_PCT` with Pillow's bicubic
//! filter, a center crop of `resolution`, `x / 255`, `(x − mean) / std`.
//!
//! The resize reimplements Pillow's `Image.resize(.., BICUBIC)` (Resample.c):
//! a separable, antialiased (support widened by the downscale factor) cubic
//! filter with a = −0.5, coefficients in 22-bit fixed point, the horizontal pass
//! first and both passes rounded to 8 bits. The result equals Pillow's byte for
//! byte. Only the output pixels inside the crop are computed.

use std::path::Path;

use effc_ir::Model;
use image::{ImageDecoder, RgbImage};

use crate::error::Error;

/// The fraction of the resized image that the center crop keeps (timm's default).
pub const CROP_PCT: f64 = 0.875;

/// Images with more pixels than this are refused before they are decoded:
/// Pillow's decompression-bomb limit (`2 * Image.MAX_IMAGE_PIXELS`), past which
/// timm's loader refuses a file too. A few hundred bytes of JPEG or PNG can
/// declare 65535 × 65535 pixels; decoding is linear in the declared size, so
/// this bounds a file's cost (about 0.7 GB and a few seconds for a gray JPEG at
/// the limit) whatever its length.
pub const MAX_IMAGE_PIXELS: u64 = 2 * 89_478_485;

/// Pillow's fixed-point precision for 8-bit images: `32 − 8 − 2`.
const PRECISION_BITS: u32 = 22;

/// Reads a PNG or JPEG file (a regular file, read whole through
/// `effc_files::read`) and preprocesses it for `model`: a CHW f32 tensor of
/// `3 × resolution × resolution`, normalized with the model's mean and std.
pub fn load_image(path: impl AsRef<Path>, model: &Model) -> Result<Vec<f32>, Error> {
    let path = path.as_ref();
    let bytes = effc_files::read(path, effc_files::Input::IMAGE)?;
    image_from_bytes(&bytes, path, model)
}

/// As [`load_image`], from the file's bytes; `path` names it in errors.
pub fn image_from_bytes(bytes: &[u8], path: &Path, model: &Model) -> Result<Vec<f32>, Error> {
    let image = decode_image(bytes, path)?;
    Ok(preprocess(&image, model.resolution, model.mean, model.std))
}

/// Decodes a PNG or JPEG file's bytes to RGB8 (gray replicated into the three
/// channels), with the checks of [`load_image`]; `path` names it in errors.
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<RgbImage, Error> {
    if bytes.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
            expected: "a PNG or JPEG image",
        });
    }
    let bad = |cause| Error::Image {
        path: path.to_path_buf(),
        cause,
    };
    // As `ImageReader::open` does: the extension's format, unless the bytes say
    // otherwise.
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    if let Ok(format) = image::ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    let reader = reader
        .with_guessed_format()
        .map_err(|e| bad(image::ImageError::IoError(e)))?;
    // The header only: the size is checked before a pixel is decoded.
    let decoder = reader.into_decoder().map_err(bad)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS {
        return Err(Error::ImageTooLarge {
            path: path.to_path_buf(),
            width,
            height,
        });
    }
    // What `ImageReader::decode` checks: the decoded buffer within the default
    // allocation limit (512 MiB).
    image::Limits::default()
        .reserve(decoder.total_bytes())
        .map_err(bad)?;
    Ok(to_rgb8(
        image::DynamicImage::from_decoder(decoder).map_err(bad)?,
    ))
}

/// The image as RGB8: an RGB8 image's own buffer, gray replicated into the three
/// channels (what `image` does, through a float conversion 4× slower), anything
/// else converted by `image`.
fn to_rgb8(image: image::DynamicImage) -> RgbImage {
    match image {
        image::DynamicImage::ImageLuma8(gray) => {
            let (w, h) = gray.dimensions();
            let rgb = gray.into_raw().into_iter().flat_map(|l| [l; 3]).collect();
            RgbImage::from_raw(w, h, rgb).expect("3 bytes for each gray pixel")
        }
        other => other.into_rgb8(),
    }
}

/// Preprocesses an RGB image: shorter side to `resolution / CROP_PCT` (Pillow
/// bicubic), center crop `resolution × resolution`, `(x/255 − mean) / std`.
/// Returns CHW f32. An image without pixels gives zeros (the normalized black).
pub fn preprocess(image: &RgbImage, resolution: usize, mean: [f64; 3], std: [f64; 3]) -> Vec<f32> {
    let size = resolution;
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut bytes = vec![0u8; 3 * size * size];
    if w > 0 && h > 0 && size > 0 {
        // As timm/torchvision compute it: Python's round() rounds half to even.
        let scale = (size as f64 / CROP_PCT) / w.min(h) as f64;
        let new_w = ((w as f64 * scale).round_ties_even() as usize).max(size);
        let new_h = ((h as f64 * scale).round_ties_even() as usize).max(size);
        let (left, top) = ((new_w - size) / 2, (new_h - size) / 2);
        bytes = resize_crop(image, (new_w, new_h), (left, top), size);
    }
    let mut out = vec![0f32; 3 * size * size];
    for c in 0..3 {
        let (m, s) = (mean[c] as f32, std[c] as f32);
        for i in 0..size * size {
            out[c * size * size + i] = (bytes[i * 3 + c] as f32 / 255.0 - m) / s;
        }
    }
    out
}

/// Pillow's bicubic kernel, a = −0.5.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// The taps of one output pixel: first input index, fixed-point weights.
struct Taps {
    first: usize,
    weights: Vec<i64>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for resizing `in_size`
/// to `out_size`, for the output indices `from..from + count`.
fn taps(in_size: usize, out_size: usize, from: usize, count: usize) -> Vec<Taps> {
    const SUPPORT: f64 = 2.0;
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = SUPPORT * filterscale;
    (from..from + count)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's (int) cast truncates toward zero; negatives clamp to 0 anyway.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let k: Vec<f64> = (xmin..xmax.max(xmin))
                .map(|x| bicubic((x as f64 - center + 0.5) * ss))
                .collect();
            let ww: f64 = k.iter().sum();
            let weights = k
                .iter()
                .map(|&v| {
                    let v = if ww != 0.0 { v / ww } else { v };
                    let f = v * (1u64 << PRECISION_BITS) as f64;
                    (if v < 0.0 { f - 0.5 } else { f + 0.5 }) as i64
                })
                .collect();
            Taps {
                first: xmin,
                weights,
            }
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes `image` to `new_size` and returns the `size × size` window at
/// `origin`, HWC u8: the same bytes as Pillow's resize followed by crop.
fn resize_crop(
    image: &RgbImage,
    new_size: (usize, usize),
    origin: (usize, usize),
    size: usize,
) -> Vec<u8> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let src = image.as_raw();
    let half = 1i64 << (PRECISION_BITS - 1);
    let htaps = taps(w, new_size.0, origin.0, size);
    let vtaps = taps(h, new_size.1, origin.1, size);
    // Source rows the vertical pass reads.
    let y0 = vtaps.iter().map(|t| t.first).min().unwrap_or(0);
    let y1 = vtaps
        .iter()
        .map(|t| t.first + t.weights.len())
        .max()
        .unwrap_or(0);
    // Horizontal pass (Pillow does it first), rounded to u8.
    let mut tmp = vec![0u8; (y1 - y0) * size * 3];
    for y in y0..y1 {
        for (j, t) in htaps.iter().enumerate() {
            for c in 0..3 {
                let mut acc = half;
                for (x, &k) in t.weights.iter().enumerate() {
                    acc += src[(y * w + t.first + x) * 3 + c] as i64 * k;
                }
                tmp[((y - y0) * size + j) * 3 + c] = clip8(acc);
            }
        }
    }
    // Vertical pass.
    let mut out = vec![0u8; size * size * 3];
    for (i, t) in vtaps.iter().enumerate() {
        for j in 0..size {
            for c in 0..3 {
                let mut acc = half;
                for (y, &k) in t.weights.iter().enumerate() {
                    acc += tmp[((t.first + y - y0) * size + j) * 3 + c] as i64 * k;
                }
                out[(i * size + j) * 3 + c] = clip8(acc);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_sum_to_one_and_identity_is_exact() {
        for (i, o) in [(451, 385), (300, 256), (100, 300), (7, 7)] {
            for t in taps(i, o, 0, o) {
                let s: i64 = t.weights.iter().sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= t.weights.len() as i64);
            }
        }
        // Same size: every output pixel is its input pixel.
        let img = RgbImage::from_fn(9, 5, |x, y| image::Rgb([x as u8 * 20, y as u8 * 40, 7]));
        let out = resize_crop(&img, (9, 5), (2, 0), 5);
        for i in 0..5 {
            for j in 0..5 {
                assert_eq!(
                    &out[(i * 5 + j) * 3..][..3],
                    &img.get_pixel(j as u32 + 2, i as u32).0
                );
            }
        }
    }

    #[test]
    fn gray_to_rgb_is_what_image_does() {
        let gray = image::GrayImage::from_fn(16, 17, |x, y| image::Luma([(x * 17 + y) as u8]));
        let ours = to_rgb8(image::DynamicImage::ImageLuma8(gray.clone()));
        assert_eq!(ours, image::DynamicImage::ImageLuma8(gray).to_rgb8());
        let rgba = image::RgbaImage::from_fn(3, 2, |x, y| image::Rgba([x as u8, y as u8, 9, 128]));
        let ours = to_rgb8(image::DynamicImage::ImageRgba8(rgba.clone()));
        assert_eq!(ours, image::DynamicImage::ImageRgba8(rgba).to_rgb8());
    }

    #[test]
    fn a_flat_image_stays_flat() {
        let img = RgbImage::from_pixel(40, 30, image::Rgb([10, 128, 250]));
        let x = preprocess(&img, 16, [0.0; 3], [1.0; 3]);
        assert_eq!(x.len(), 3 * 16 * 16);
        for (c, want) in [10u8, 128, 250].into_iter().enumerate() {
            assert!(x[c * 256..(c + 1) * 256]
                .iter()
                .all(|&v| v == want as f32 / 255.0));
        }
    }

    #[test]
    fn an_image_without_pixels_gives_the_normalized_black() {
        let img = RgbImage::new(0, 0);
        let x = preprocess(&img, 4, [0.5; 3], [0.5; 3]);
        assert!(x.iter().all(|&v| v == -1.0));
    }
}
