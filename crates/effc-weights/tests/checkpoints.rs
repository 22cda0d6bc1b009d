//! Checkpoints: every naming and dtype loads to the same values; every kind of
//! broken file gives one clear error (snapshots). Broken files are made from the
//! real fixtures in a temporary directory.

use std::path::{Path, PathBuf};

use effc_ir::{Model, Naming, Options, Spec};
use effc_weights::{Error, Weights};
use safetensors::{Dtype, SafeTensors, View};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn model_with(name: &str, opts: Options) -> Model {
    let spec = Spec::builtin(name).unwrap_or_else(|e| panic!("{}", e.render(false)));
    Model::build(&spec, &opts).unwrap_or_else(|e| panic!("{}", e.render(false)))
}

fn model(name: &str) -> Model {
    model_with(name, Options::default())
}

/// One tensor of a checkpoint being written.
#[derive(Clone)]
struct T {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &T {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.data).into()
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn read(path: &Path) -> Vec<T> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<T> = st
        .iter()
        .map(|(n, v)| T {
            name: n.to_string(),
            dtype: v.dtype(),
            shape: v.shape().to_vec(),
            data: v.data().to_vec(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn b0_tensors() -> Vec<T> {
    read(&fixtures().join("b0/weights.f16.safetensors"))
}

fn write(dir: &Path, file: &str, tensors: &[T]) -> PathBuf {
    let bytes = safetensors::serialize(tensors.iter().map(|t| (t.name.as_str(), t)), None).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn values(t: &T) -> Vec<f32> {
    match t.dtype {
        Dtype::F16 => t
            .data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F32 => t
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        d => panic!("test helper reads f16 and f32, not {d:?}"),
    }
}

fn encode(v: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::F64 => v.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect(),
        Dtype::F16 => v
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::BF16 => v
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::I64 => v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect(),
        d => panic!("test helper writes no {d:?}"),
    }
}

fn with_dtype(t: &T, dtype: Dtype) -> T {
    T {
        dtype,
        data: encode(&values(t), dtype),
        ..t.clone()
    }
}

/// The error's message, with the temporary directory's path replaced.
fn message(r: Result<Weights, Error>, dir: &Path) -> String {
    match r {
        Ok(_) => panic!("a broken checkpoint loaded"),
        Err(e) => e.to_string().replace(dir.to_str().unwrap(), "[TMP]"),
    }
}

// ---------------------------------------------------------------- loading

#[test]
fn timm_f16_checkpoint_loads_every_tensor() {
    let m = model("b0");
    let w = Weights::load(fixtures().join("b0/weights.f16.safetensors"), &m, None).unwrap();
    assert_eq!(w.naming(), Naming::Timm);
    assert_eq!(w.len(), m.params().len());
    assert!(w.ignored().is_empty());
    // Values are the f16 values, exactly.
    let tensors = b0_tensors();
    for (name, p) in m.named_params(Naming::Timm) {
        let t = tensors.iter().find(|t| t.name == name).unwrap();
        assert_eq!(w.get(&p.key).unwrap(), values(t).as_slice(), "{name}");
    }
}

#[test]
fn every_naming_and_float_dtype_loads_the_same_values() {
    let m = model("b0");
    let dir = tempfile::tempdir().unwrap();
    let reference = Weights::load(fixtures().join("b0/weights.f16.safetensors"), &m, None).unwrap();
    let timm = b0_tensors();
    for (naming, dtype) in [
        (Naming::Torchvision, Dtype::F32),
        (Naming::Tf, Dtype::F64),
        (Naming::Effc, Dtype::F16),
        (Naming::Timm, Dtype::BF16),
    ] {
        let renamed: Vec<T> = m
            .named_params(Naming::Timm)
            .into_iter()
            .map(|(timm_name, p)| {
                let t = timm.iter().find(|t| t.name == timm_name).unwrap();
                T {
                    name: m.param_name(naming, &p),
                    ..with_dtype(t, dtype)
                }
            })
            .collect();
        let path = write(dir.path(), &format!("{naming}.safetensors"), &renamed);
        let w = Weights::load(&path, &m, None).unwrap();
        assert_eq!(w.naming(), naming);
        for p in m.params() {
            let (got, want) = (w.get(&p.key).unwrap(), reference.get(&p.key).unwrap());
            if dtype == Dtype::BF16 {
                // bf16 keeps 8 bits of mantissa.
                for (g, r) in got.iter().zip(want) {
                    assert!((g - r).abs() <= r.abs() / 128.0, "{}: {g} vs {r}", p.name);
                }
            } else {
                assert_eq!(got, want, "{} in {naming} {dtype:?}", p.name);
            }
        }
        // Requesting the naming gives the same.
        assert_eq!(
            Weights::load(&path, &m, Some(naming)).unwrap().naming(),
            naming
        );
    }
}

#[test]
fn lite0_checkpoint_is_detected_as_tf_naming() {
    let m = model("lite0");
    let w = Weights::load(
        fixtures().join("lite0/efficientnet-lite0.safetensors"),
        &m,
        None,
    )
    .unwrap();
    assert_eq!(w.naming(), Naming::Tf);
    assert_eq!(w.len(), m.params().len());
}

#[test]
fn bookkeeping_tensors_and_an_unused_classifier_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = b0_tensors();
    tensors.push(T {
        name: "bn1.num_batches_tracked".into(),
        dtype: Dtype::I64,
        shape: vec![],
        data: 7i64.to_le_bytes().to_vec(),
    });
    let path = write(dir.path(), "counters.safetensors", &tensors);
    let w = Weights::load(&path, &model("b0"), None).unwrap();
    assert_eq!(w.ignored(), ["bn1.num_batches_tracked"]);

    let features = model_with(
        "b0",
        Options {
            classes: Some(0),
            ..Default::default()
        },
    );
    let w = Weights::load(&path, &features, None).unwrap();
    assert_eq!(
        w.ignored(),
        [
            "bn1.num_batches_tracked",
            "classifier.bias",
            "classifier.weight"
        ]
    );
    assert_eq!(w.len(), features.params().len());
}

// ---------------------------------------------------------------- broken files

#[test]
fn missing_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = b0_tensors();
    t.retain(|t| t.name != "blocks.1.0.conv_dw.weight" && t.name != "bn2.running_var");
    let path = write(dir.path(), "missing.safetensors", &t);
    insta::assert_snapshot!(message(
        Weights::load(&path, &model("b0"), None),
        dir.path()
    ));
}

#[test]
fn unexpected_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = b0_tensors();
    let extra = |name: &str, shape: Vec<usize>| T {
        name: name.into(),
        dtype: Dtype::F16,
        data: vec![0; 2 * shape.iter().product::<usize>()],
        shape,
    };
    t.push(extra("blocks.7.0.conv_pw.weight", vec![8, 320, 1, 1]));
    t.push(extra("head.fc.bias", vec![1000]));
    let path = write(dir.path(), "extra.safetensors", &t);
    insta::assert_snapshot!(message(
        Weights::load(&path, &model("b0"), None),
        dir.path()
    ));
}

#[test]
fn wrong_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = b0_tensors();
    for t in &mut t {
        let shape = match t.name.as_str() {
            "conv_stem.weight" => vec![32, 3, 5, 5],
            "blocks.2.1.se.conv_reduce.weight" => vec![6, 240],
            _ => continue,
        };
        t.data = vec![0; 2 * shape.iter().product::<usize>()];
        t.shape = shape;
    }
    let path = write(dir.path(), "shapes.safetensors", &t);
    insta::assert_snapshot!(message(
        Weights::load(&path, &model("b0"), None),
        dir.path()
    ));
}

#[test]
fn wrong_dtype_and_non_finite_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = b0_tensors();
    for t in &mut t {
        match t.name.as_str() {
            "bn1.running_var" => *t = with_dtype(t, Dtype::I64),
            "classifier.bias" => {
                t.data[0..2].copy_from_slice(&half::f16::NAN.to_le_bytes());
                t.data[8..10].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
            }
            _ => {}
        }
    }
    let path = write(dir.path(), "dtype.safetensors", &t);
    insta::assert_snapshot!(message(
        Weights::load(&path, &model("b0"), None),
        dir.path()
    ));
}

/// A BN variance at or below -eps is an error listed like a NaN, not a NaN later.
#[test]
fn negative_running_variance() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = b0_tensors();
    for t in &mut t {
        match t.name.as_str() {
            "bn1.running_var" => {
                t.data[0..2].copy_from_slice(&half::f16::from_f32(-0.5).to_le_bytes())
            }
            "blocks.1.0.bn3.running_var" => {
                t.data[2..4].copy_from_slice(&half::f16::from_f32(-1.0).to_le_bytes());
                t.data[4..6].copy_from_slice(&half::f16::from_f32(-2.0).to_le_bytes());
            }
            _ => {}
        }
    }
    let path = write(dir.path(), "variance.safetensors", &t);
    let m = message(Weights::load(&path, &model("b0"), None), dir.path());
    assert!(m.contains("2 variances at or below -eps"), "{m}");
    insta::assert_snapshot!(m);
}

#[test]
fn truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixtures().join("b0/weights.f16.safetensors")).unwrap();
    let path = dir.path().join("truncated.safetensors");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    insta::assert_snapshot!(message(
        Weights::load(&path, &model("b0"), None),
        dir.path()
    ));
    // Cut inside the header.
    std::fs::write(&path, &bytes[..100]).unwrap();
    insta::assert_snapshot!(
        "truncated_in_header",
        message(Weights::load(&path, &model("b0"), None), dir.path())
    );
    std::fs::write(&path, &bytes[..5]).unwrap();
    insta::assert_snapshot!(
        "truncated_in_length",
        message(Weights::load(&path, &model("b0"), None), dir.path())
    );
}

#[test]
fn garbage_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = 40u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{\"conv_stem.weight\": this is not JSON!!!");
    bytes.extend_from_slice(&[0; 64]);
    let path = dir.path().join("garbage.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    insta::assert_snapshot!(message(
        Weights::load(&path, &model("b0"), None),
        dir.path()
    ));
    // Some other file entirely: its first 8 bytes read as a huge header length.
    let path = dir.path().join("readme.safetensors");
    std::fs::write(
        &path,
        "# Not weights\n\nA text file that someone renamed.\n",
    )
    .unwrap();
    insta::assert_snapshot!(
        "garbage_text_file",
        message(Weights::load(&path, &model("b0"), None), dir.path())
    );
}

#[test]
fn empty_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.safetensors");
    std::fs::write(&path, b"").unwrap();
    insta::assert_snapshot!(message(
        Weights::load(&path, &model("b0"), None),
        dir.path()
    ));
    let path = dir.path().join("nowhere.safetensors");
    insta::assert_snapshot!(
        "missing_file",
        message(Weights::load(&path, &model("b0"), None), dir.path())
    );
}

#[test]
fn unknown_layout() {
    let dir = tempfile::tempdir().unwrap();
    let t: Vec<T> = [
        "encoder.layer0.weight",
        "encoder.layer1.weight",
        "decoder.weight",
    ]
    .into_iter()
    .map(|n| T {
        name: n.into(),
        dtype: Dtype::F32,
        shape: vec![2],
        data: vec![0; 8],
    })
    .collect();
    let path = write(dir.path(), "bert.safetensors", &t);
    insta::assert_snapshot!(message(
        Weights::load(&path, &model("b0"), None),
        dir.path()
    ));
}

/// Lite0's weights (TF naming, no squeeze-excitation) given to B0.
#[test]
fn another_models_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixtures().join("lite0/efficientnet-lite0.safetensors");
    let msg = message(Weights::load(&path, &model("b0"), None), dir.path())
        .replace(fixtures().to_str().unwrap(), "[FIXTURES]");
    insta::assert_snapshot!(msg);
}

/// V2-B0's weights given to B0: hundreds of problems, one error, and the model they fit.
#[test]
fn another_families_weights() {
    let path = fixtures().join("v2-b0/weights.f16.safetensors");
    let Err(Error::Mismatch(m)) = Weights::load(&path, &model("b0"), None) else {
        panic!("v2-b0 weights loaded into b0");
    };
    assert_eq!(m.naming, Naming::Timm);
    assert_eq!(m.fits, [("v2-b0".to_string(), Naming::Timm)]);
    let total = m.missing.len() + m.unexpected.len() + m.wrong_shape.len();
    let text = m.to_string();
    // Every problem is a line of its own.
    assert_eq!(text.lines().count(), 1 + total + 1, "{text}");
    assert!(text.ends_with("help: these are the weights of another model: they fit the built-in `v2-b0` (timm naming)"), "{text}");
}

/// A requested naming that is not the file's: the error says which it looks like.
#[test]
fn requested_naming_that_is_not_the_files() {
    let path = fixtures().join("b0/weights.f16.safetensors");
    let m = model("b0");
    let Err(Error::Mismatch(e)) = Weights::load(&path, &m, Some(Naming::Torchvision)) else {
        panic!("timm weights loaded as torchvision");
    };
    assert_eq!(e.missing.len(), m.params().len());
    assert_eq!(e.unexpected.len(), m.params().len());
    assert_eq!(e.looks_like, Some(Naming::Timm));
    let text = e.to_string();
    assert!(text.starts_with(&format!(
        "checkpoint `{}` (torchvision naming, requested) does not fit model `b0`: 311 missing tensors, 311 unexpected tensors",
        path.display()
    )), "{text}");
    assert!(
        text.ends_with("\nhelp: the file's names are in the timm naming; request timm, or leave the naming to detection"),
        "{text}"
    );
}
