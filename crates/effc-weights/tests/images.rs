//! Image preprocessing against the fixtures' inputs (made with Pillow and timm's
//! recipe), and the errors a bad image file gives.

use std::path::PathBuf;

use effc_ir::{Model, Options, Spec};
use effc_weights::{load_image, Error};
use safetensors::SafeTensors;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn model(name: &str) -> Model {
    let spec = Spec::builtin(name).expect("built-in models resolve");
    Model::build(&spec, &Options::default()).expect("built-in models build")
}

/// `tensor`'s first image from an expected-outputs file, as f32.
fn expected(file: &str, tensor: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixtures().join(file)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(tensor).unwrap();
    let n = 3 * 224 * 224;
    t.data()[..4 * n]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Pillow's resize is reproduced byte for byte, so the inputs are equal up to
/// the last bit of the f32 normalization (which timm does in f32 too).
#[test]
fn inputs_equal_pillow_and_timm() {
    let lite0 = model("lite0");
    let b0 = model("b0");
    for (file, tensor, image, m) in [
        (
            "lite0/expected.safetensors",
            "input.chelsea",
            "chelsea",
            &lite0,
        ),
        (
            "lite0/expected.safetensors",
            "input.coffee",
            "coffee",
            &lite0,
        ),
        ("b0/expected.safetensors", "input", "chelsea", &b0),
        ("v2-b0/expected.safetensors", "input", "chelsea", &b0),
    ] {
        let want = expected(file, tensor);
        let got = load_image(fixtures().join(format!("images/{image}.png")), m).unwrap();
        let d = max_diff(&got, &want);
        eprintln!("{file} {tensor}: max |diff| = {d:e}");
        assert!(d <= 1e-6, "{file} {tensor}: max |diff| {d}");
    }
}

fn message(e: Error, dir: &std::path::Path) -> String {
    e.to_string().replace(dir.to_str().unwrap(), "[TMP]")
}

#[test]
fn bad_image_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("b0");
    let png = std::fs::read(fixtures().join("images/chelsea.png")).unwrap();

    let missing = dir.path().join("missing.png");
    insta::assert_snapshot!(
        "image_missing",
        message(load_image(&missing, &m).unwrap_err(), dir.path())
    );

    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &png[..png.len() / 2]).unwrap();
    insta::assert_snapshot!(
        "image_truncated",
        message(load_image(&truncated, &m).unwrap_err(), dir.path())
    );

    let garbage = dir.path().join("garbage.jpg");
    std::fs::write(
        &garbage,
        b"this is not an image, only text pretending to be one",
    )
    .unwrap();
    insta::assert_snapshot!(
        "image_garbage",
        message(load_image(&garbage, &m).unwrap_err(), dir.path())
    );

    let mut corrupt = png.clone();
    // Damage the IHDR chunk's CRC: the header parses, the checksum fails.
    corrupt[29] ^= 0xff;
    let corrupt_path = dir.path().join("corrupt.png");
    std::fs::write(&corrupt_path, &corrupt).unwrap();
    insta::assert_snapshot!(
        "image_corrupt",
        message(load_image(&corrupt_path, &m).unwrap_err(), dir.path())
    );

    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    insta::assert_snapshot!(
        "image_empty",
        message(load_image(&empty, &m).unwrap_err(), dir.path())
    );
}

/// A JPEG decodes and preprocesses too (compression moves pixels a little).
#[test]
fn jpeg_files_load() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("lite0");
    let img = image::open(fixtures().join("images/coffee.png")).unwrap();
    let path = dir.path().join("coffee.jpg");
    img.to_rgb8().save(&path).unwrap();
    let got = load_image(&path, &m).unwrap();
    let want = expected("lite0/expected.safetensors", "input.coffee");
    let mean_abs = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / got.len() as f32;
    assert!(mean_abs < 0.05, "mean |diff| {mean_abs}");
}

/// A small JPEG whose header declares `width × height` pixels (its SOF0 segment
/// patched; the scan is the original 8 × 8 one, so the file is truncated).
fn jpeg_declaring(width: u16, height: u16) -> Vec<u8> {
    let gray = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 30 + y) as u8]));
    let mut bytes = std::io::Cursor::new(vec![]);
    gray.write_to(&mut bytes, image::ImageFormat::Jpeg).unwrap();
    let mut bytes = bytes.into_inner();
    let sof = bytes.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
    // FF C0, length (2), precision (1), height (2), width (2).
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

/// A decompression bomb (found by the `image` fuzzer: 508 bytes declaring
/// 1031 × 62721 gray pixels took 1 s and 0.3 GB; at 65000 × 7000 it took 7 s
/// and 1.8 GB) is refused from its header, before a pixel is decoded.
#[test]
fn an_image_declaring_too_many_pixels_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("b0");
    // 65535 × 2731 is the smallest 65535-wide image past the limit.
    for (w, h) in [(65000, 7000), (65535, 2731), (2731, 65535)] {
        assert!(u64::from(w) * u64::from(h) > effc_weights::MAX_IMAGE_PIXELS);
        let path = dir.path().join(format!("bomb-{w}x{h}.jpg"));
        std::fs::write(&path, jpeg_declaring(w, h)).unwrap();
        let e = load_image(&path, &m).unwrap_err();
        assert!(
            matches!(e, Error::ImageTooLarge { width, height, .. } if (width, height) == (w.into(), h.into())),
            "{e}"
        );
    }
    let path = dir.path().join("bomb.jpg");
    std::fs::write(&path, jpeg_declaring(65000, 7000)).unwrap();
    insta::assert_snapshot!(
        "image_too_large",
        message(load_image(&path, &m).unwrap_err(), dir.path())
    );
    // The same file at its real size loads.
    let path = dir.path().join("small.jpg");
    std::fs::write(&path, jpeg_declaring(8, 8)).unwrap();
    assert_eq!(load_image(&path, &m).unwrap().len(), 3 * 224 * 224);
}
