//! Writes the seed corpora of the fuzz targets into `fuzz/corpus/<target>/`:
//! `spec`: the catalog's specs and `tests/specs/**/*.enet`; `checkpoint`: small
//! safetensors files for the tiny model (each naming; F32, F16, BF16, F64; one
//! with a missing tensor, one with a wrong shape); `image`: the fixture images
//! shrunk to a few pixels, as PNG and JPEG, and gray and RGBA variants.
//!
//! Run from the repository root: `cargo run -p effc-fuzz --example make_seeds`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use effc_ir::Naming;
use effc_weights::Weights;
use safetensors::tensor::{Dtype, TensorView};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = root().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn specs() {
    for (name, text) in effc_catalog::MODELS {
        write("spec", &format!("catalog-{name}.enet"), text.as_bytes());
    }
    for kind in ["ok", "err"] {
        let dir = root().join("tests/specs").join(kind);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "enet"))
        {
            let name = f.file_name().unwrap().to_string_lossy();
            write(
                "spec",
                &format!("{kind}-{name}"),
                &std::fs::read(f).unwrap(),
            );
        }
    }
}

fn encode(dtype: Dtype, values: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F64 => values
            .iter()
            .flat_map(|v| (*v as f64).to_le_bytes())
            .collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => unreachable!(),
    }
}

fn checkpoint(naming: Naming, dtype: Dtype, edit: Option<&str>) -> Vec<u8> {
    let model = effc_fuzz::tiny_model();
    let weights = Weights::random(model, 7);
    let names: HashMap<_, _> = model
        .named_params(naming)
        .into_iter()
        .map(|(n, p)| (p.key, n))
        .collect();
    let mut data = vec![];
    for (i, p) in model.params().iter().enumerate() {
        if edit == Some("missing") && i == 3 {
            continue;
        }
        let mut shape = p.shape.clone();
        let mut values = weights.get(&p.key).unwrap().to_vec();
        if edit == Some("shape") && i == 0 {
            shape[0] += 1;
            values.extend(std::iter::repeat_n(0.0, values.len() / p.shape[0]));
        }
        data.push((names[&p.key].clone(), dtype, shape, encode(dtype, &values)));
    }
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn checkpoints() {
    for n in Naming::ALL {
        write(
            "checkpoint",
            &format!("tiny-{n}-f32.safetensors"),
            &checkpoint(n, Dtype::F32, None),
        );
    }
    for (d, name) in [
        (Dtype::F16, "f16"),
        (Dtype::BF16, "bf16"),
        (Dtype::F64, "f64"),
    ] {
        write(
            "checkpoint",
            &format!("tiny-timm-{name}.safetensors"),
            &checkpoint(Naming::Timm, d, None),
        );
    }
    write(
        "checkpoint",
        "tiny-missing.safetensors",
        &checkpoint(Naming::Effc, Dtype::F32, Some("missing")),
    );
    write(
        "checkpoint",
        "tiny-shape.safetensors",
        &checkpoint(Naming::Effc, Dtype::F32, Some("shape")),
    );
}

fn images() {
    use image::imageops::FilterType;
    use image::{DynamicImage, ImageFormat};
    for (file, size) in [("chelsea.png", (12, 8)), ("coffee.png", (7, 9))] {
        let img = image::open(root().join("tests/fixtures/images").join(file)).unwrap();
        let small = img.resize_exact(size.0, size.1, FilterType::Triangle);
        let stem = Path::new(file)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let variants = [
            ("rgb", DynamicImage::ImageRgb8(small.to_rgb8())),
            ("gray", DynamicImage::ImageLuma8(small.to_luma8())),
            ("rgba", DynamicImage::ImageRgba8(small.to_rgba8())),
        ];
        for (kind, v) in variants {
            for (format, ext) in [(ImageFormat::Png, "png"), (ImageFormat::Jpeg, "jpg")] {
                if format == ImageFormat::Jpeg && kind == "rgba" {
                    continue; // JPEG has no alpha
                }
                let mut bytes = std::io::Cursor::new(vec![]);
                v.write_to(&mut bytes, format).unwrap();
                write("image", &format!("{stem}-{kind}.{ext}"), bytes.get_ref());
            }
        }
    }
}

fn main() {
    specs();
    checkpoints();
    images();
}
