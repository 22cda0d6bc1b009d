//! Where the fixtures are, reading them, and deterministic inputs and weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use effc_ir::Model;
use effc_weights::Weights;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// `tests/fixtures` of the workspace.
pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// Every tensor of a safetensors file of f32 tensors: name → (shape, values).
/// Panics naming the file and tensor when it cannot be read or is not f32.
pub fn read_tensors(path: impl AsRef<Path>) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(
                view.dtype(),
                safetensors::Dtype::F32,
                "{}: {name} is not f32",
                path.display()
            );
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

/// One tensor of [`read_tensors`]; panics naming what is missing.
pub fn read_tensor(path: impl AsRef<Path>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let path = path.as_ref();
    read_tensors(path)
        .remove(name)
        .unwrap_or_else(|| panic!("{}: no tensor {name}", path.display()))
}

/// `n` deterministic pseudo-random values in [-2, 2) (xorshift from `seed`).
pub fn seeded(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// `n` values in [-1, 1) that vary without repeating soon (a cheap image-like input).
pub fn ramp(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// `weights` of `model` as a safetensors checkpoint in effc's own naming.
pub fn checkpoint_bytes(model: &Model, weights: &Weights) -> Vec<u8> {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .params()
        .iter()
        .map(|p| {
            let v = weights
                .get(&p.key)
                .unwrap_or_else(|| panic!("no weights for {}", p.name));
            (
                p.name.clone(),
                p.shape.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .expect("a tensor's bytes match its shape");
            (n.clone(), view)
        })
        .collect();
    safetensors::serialize(views, None).expect("a checkpoint serializes")
}

/// Where Debian's `dataset-fashion-mnist` puts Fashion-MNIST's IDX files.
pub const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Fashion-MNIST's directory when it is installed. Without it a test skips (says
/// so, returns `None`), except under `CI=true`, where `.ci/run` installs it and its
/// absence fails the test.
pub fn fashion_mnist() -> Option<PathBuf> {
    let dir = Path::new(FASHION_MNIST);
    if dir.join("train-images-idx3-ubyte.gz").exists() {
        return Some(dir.to_path_buf());
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{} is missing: apt-get install dataset-fashion-mnist",
        dir.display()
    );
    eprintln!(
        "skipped: {} is missing (apt-get install dataset-fashion-mnist)",
        dir.display()
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_inputs_are_deterministic_and_in_range() {
        let a = seeded(1000, 3);
        assert_eq!(a, seeded(1000, 3));
        assert_ne!(a, seeded(1000, 4));
        assert!(a.iter().all(|v| (-2.0..2.0).contains(v)));
        let r = ramp(2000);
        assert!(r.iter().all(|v| (-1.0..1.0).contains(v)));
    }

    #[test]
    fn fixtures_are_found() {
        assert!(fixtures().join("README.md").is_file());
    }
}
