//! `efficientnet!(.., features = [..])`: a backbone's typed levels on a wgpu adapter
//! (llvmpipe here) against timm `features_only=True` (tests/fixtures/features).

use std::path::PathBuf;

use efficientnet::{efficientnet, FeatureInfo};

efficientnet!(
    "b0",
    name = b0_levels,
    resolution = 64,
    features = [4, 1, 2, 3],
    max_batch = 2
);

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/features/b0")
}

fn tensor(st: &safetensors::SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap();
    let data = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (t.shape().to_vec(), data)
}

#[test]
fn feature_info_names_each_level() {
    assert_eq!(
        b0_levels::FEATURE_INFO[3],
        FeatureInfo {
            level: 4,
            channels: 320,
            reduction: 32,
            height: 2,
            width: 2,
            block: 15,
            block_path: "blocks.6.0",
        }
    );
    let levels: Vec<(usize, usize)> = b0_levels::FEATURE_INFO
        .iter()
        .map(|f| (f.level, f.channels))
        .collect();
    assert_eq!(levels, [(1, 24), (2, 40), (3, 112), (4, 320)]);
    // No head, no classifier: two dispatches fewer than b0.
    assert_eq!(b0_levels::DISPATCHES, 64);
    assert_eq!(
        b0_levels::OUTPUT_LEN,
        24 * 16 * 16 + 40 * 8 * 8 + 112 * 4 * 4 + 320 * 2 * 2
    );
}

#[test]
fn levels_match_timm_and_encode_matches_features() {
    let bytes = std::fs::read(dir().join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, input) = tensor(&st, "input");
    let model = b0_levels::Model::load(dir().join("weights.f16.safetensors")).unwrap();
    let got = model.features(&input, 2).unwrap();
    assert_eq!(got.len(), 4);
    for (map, info) in got.iter().zip(b0_levels::FEATURE_INFO) {
        assert_eq!(map.level, info.level);
        assert_eq!(map.shape, [2, info.channels, info.height, info.width]);
        let (shape, want) = tensor(&st, &format!("features.{}", info.level));
        assert_eq!(map.shape.as_slice(), shape.as_slice());
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = map
            .data
            .iter()
            .zip(&want)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 1e-3 * scale,
            "level {}: {err} > 1e-3 x {scale}",
            map.level
        );
    }
    // The same forward recorded into our own encoder.
    model.upload(&input, 2).unwrap();
    let gpu = model.gpu();
    let mut encoder = gpu
        .device
        .create_command_encoder(&efficientnet::wgpu::CommandEncoderDescriptor { label: None });
    model.encode(&mut encoder, 2).unwrap();
    gpu.queue.submit([encoder.finish()]);
    assert_eq!(model.read_features(2).unwrap(), got);
}
