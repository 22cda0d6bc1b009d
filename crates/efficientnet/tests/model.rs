//! `efficientnet!` end to end on a wgpu adapter (llvmpipe here): each form of the
//! macro, the generated constants against the IR, outputs against timm's (Lite0
//! with its real checkpoint) and against the CPU reference executor (custom specs
//! with random weights), the `encode` path, and the loader's errors.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use effc_ir::{Model as Ir, Naming, Options, PaddingMode, Spec};
use effc_testkit::{assert_close, checkpoint_bytes, fixtures, ramp, read_tensors};
use efficientnet::{efficientnet, Error, GpuError, Network};

efficientnet!("lite0");
efficientnet!("lite0", name = backbone, classes = 0, max_batch = 2);
efficientnet!(
    "b0",
    name = b0_torch,
    resolution = 256,
    padding = symmetric,
    bn_eps = 1e-5,
    classes = 0,
    max_batch = 3
);
efficientnet!(file = "tests/specs/tiny.enet");
efficientnet!("lite0", name = lite0_half, precision = f16, max_batch = 2);
efficientnet!(
    spec = r#"
        model wide extends tiny_base { width = 1.5 }
        model tiny_base {
            resolution = 48
            classes = 7
            activation = relu6
            blocks {
                r1_k3_s1_e1_i16_o16
                r2_k3_s2_e3_i16_o24_se0.5
            }
        }
    "#,
    model = "tiny_base",
    padding = symmetric
);

fn lite0_weights() -> PathBuf {
    fixtures().join("lite0/efficientnet-lite0.safetensors")
}

fn tensors(path: PathBuf) -> HashMap<String, Vec<f32>> {
    read_tensors(path)
        .into_iter()
        .map(|(k, (_, v))| (k, v))
        .collect()
}

/// The IR a generated module was built from, rebuilt from its own constants.
fn ir_of(def: &efficientnet::Definition) -> Ir {
    let spec = Spec::parse_model(def.spec_origin, def.spec, Some(def.name)).unwrap();
    let o = def.overrides;
    let opts = Options {
        resolution: o.resolution,
        padding: o.padding.map(|p| match p {
            efficientnet::Padding::Same => PaddingMode::Same,
            efficientnet::Padding::Symmetric => PaddingMode::Symmetric,
        }),
        bn_eps: o.bn_eps,
        classes: o.classes,
        features: o.features.map(<[usize]>::to_vec),
    };
    Ir::build(&spec, &opts).unwrap()
}

/// Random weights for `model` as a safetensors checkpoint in effc naming, and the
/// CPU reference executor's output for `input`.
fn random_checkpoint_and_reference(model: &Ir, input: &[f32], batch: usize) -> (Vec<u8>, Vec<f32>) {
    let w = effc_weights::Weights::random(model, 7);
    let reference = effc_reference::Executor::new(model, &w)
        .unwrap()
        .run(input, batch)
        .unwrap()
        .data;
    (checkpoint_bytes(model, &w), reference)
}

/// The error of opening `def`'s engine on `bytes` (which must fail).
fn engine_error(def: &efficientnet::Definition, bytes: &[u8]) -> Error {
    let gpu: Arc<efficientnet::Gpu> = efficientnet::default_gpu().unwrap();
    let path = std::path::Path::new("<bytes>");
    efficientnet::__private::Engine::new(def, gpu, bytes, path, None, 1).unwrap_err()
}

#[test]
fn constants_equal_the_ir() {
    for (def, name) in [
        (&lite0::DEFINITION, "lite0"),
        (&b0_torch::DEFINITION, "b0"),
        (&tiny::DEFINITION, "tiny"),
        (&tiny_base::DEFINITION, "tiny_base"),
    ] {
        let ir = ir_of(def);
        assert_eq!(def.name, name);
        assert_eq!(def.input_shape, ir.input, "{name}");
        assert_eq!(def.parameters, ir.cost().params, "{name}");
        assert_eq!(def.macs, ir.cost().macs, "{name}");
        assert_eq!(def.classes, ir.classes, "{name}");
        let plan = effc_plan::plan(&ir);
        assert_eq!(def.kernels.len(), plan.kernels.len(), "{name}");
        for (k, p) in def.kernels.iter().zip(&plan.kernels) {
            assert_eq!(
                (k.name, k.grid, k.workgroup),
                (p.name.as_str(), p.grid, p.workgroup)
            );
            assert!(k.wgsl.contains(&format!("// effc kernel `{}`", p.name)));
        }
    }
    assert_eq!(lite0::PARAMETERS, 4_652_008, "timm's tf_efficientnet_lite0");
    assert_eq!(lite0::INPUT_SHAPE, [3, 224, 224]);
    assert_eq!(lite0::OUTPUT_LEN, 1000);
    assert_eq!(lite0::MAX_BATCH, 8);
    assert_eq!(lite0::KERNELS.len(), lite0::DISPATCHES);
    assert_eq!(lite0::kernels::STEM.name, "stem");
    assert_eq!(lite0::MEAN, [0.5; 3]);
    // Overrides reach the IR.
    assert_eq!(b0_torch::INPUT_SHAPE, [3, 256, 256]);
    assert_eq!(b0_torch::CLASSES, 0);
    assert_eq!(b0_torch::OUTPUT_LEN, b0_torch::EMBEDDING_LEN);
    assert_eq!(b0_torch::MAX_BATCH, 3);
    assert_eq!(
        b0_torch::PARAMETERS,
        5_288_548 - 1_281_000,
        "b0 without its classifier"
    );
    assert_eq!(
        b0_torch::DEFINITION.overrides,
        efficientnet::Overrides {
            resolution: Some(256),
            padding: Some(efficientnet::Padding::Symmetric),
            bn_eps: Some(1e-5),
            classes: Some(0),
            features: None,
        }
    );
    assert_eq!(ir_of(&b0_torch::DEFINITION).bn_eps, 1e-5);
    // `model = …` picked the base, not the last model of the text.
    assert_eq!(tiny_base::INPUT_SHAPE, [3, 48, 48]);
    assert_eq!(tiny_base::CLASSES, 7);
    assert_eq!(tiny::SPEC_ORIGIN, "tests/specs/tiny.enet");
    assert!(tiny::SPEC.contains("model tiny {"));
    assert_eq!(<tiny::Model as Network>::DEFINITION.name, "tiny");
}

#[test]
fn lite0_matches_timm_on_both_photos_and_encode_matches_forward() {
    let exp = tensors(fixtures().join("lite0/expected.safetensors"));
    let model = lite0::Model::load(lite0_weights()).unwrap();
    assert_eq!(model.naming(), Naming::Tf);
    let mut input = exp["input.chelsea"].clone();
    input.extend(&exp["input.coffee"]);
    let got = model.forward(&input, 2).unwrap();
    assert_close("lite0 chelsea", &got[..1000], &exp["logits.chelsea"]);
    assert_close("lite0 coffee", &got[1000..], &exp["logits.coffee"]);

    // The same through the caller's own command encoder.
    model.upload(&input, 2).unwrap();
    let gpu = model.gpu();
    let mut encoder = gpu
        .device
        .create_command_encoder(&efficientnet::wgpu::CommandEncoderDescriptor { label: None });
    model.encode(&mut encoder, 2).unwrap();
    gpu.queue.submit([encoder.finish()]);
    assert_eq!(model.read_output(2).unwrap(), got);

    // Preprocessing the photo gives the fixture's input.
    let images = model
        .load_images(&[fixtures().join("images/chelsea.png")])
        .unwrap();
    assert_close("chelsea preprocessed", &images, &exp["input.chelsea"]);
}

/// `precision = f16`: half the weight bytes, and timm's logits within 1e-2 of their
/// largest in each spelling the adapter has (the loader picks one per adapter;
/// forced here), with the same top-1 as f32.
#[test]
fn f16_lite0_matches_timm_in_both_spellings() {
    use efficientnet::{Gpu, Precision, Spelling};
    assert_eq!(lite0_half::PRECISION, Precision::F16);
    assert_eq!(lite0::PRECISION, Precision::F32);
    const { assert!(lite0_half::WEIGHT_BYTES * 2 == lite0::WEIGHT_BYTES) };
    const { assert!(lite0_half::ACTIVATION_BYTES * 100 <= lite0::ACTIVATION_BYTES * 52) };
    assert!(lite0_half::KERNELS
        .iter()
        .all(|k| k.wgsl.contains("enable f16;")
            && k.wgsl_packed.is_some_and(|p| !p.contains("enable f16;"))));
    assert!(lite0::KERNELS.iter().all(|k| k.wgsl_packed.is_none()));

    let exp = tensors(fixtures().join("lite0/expected.safetensors"));
    let mut input = exp["input.chelsea"].clone();
    input.extend(&exp["input.coffee"]);
    let mut ran = 0;
    for spelling in [Spelling::Native, Spelling::Packed] {
        let mut gpu = Gpu::new().unwrap();
        if let Err(e) = gpu.force_f16_spelling(spelling) {
            eprintln!("skipping the {} spelling: {e}", spelling.name());
            continue;
        }
        let model = lite0_half::Model::loader()
            .gpu(Arc::new(gpu))
            .load(lite0_weights())
            .unwrap();
        let got = model.forward(&input, 2).unwrap();
        for (i, image) in ["chelsea", "coffee"].iter().enumerate() {
            let want = &exp[&format!("logits.{image}")];
            let part = &got[i * 1000..(i + 1) * 1000];
            effc_testkit::assert_close_within(
                &format!("lite0 f16 {} {image}", spelling.name()),
                part,
                want,
                1e-2,
            );
            let top = |v: &[f32]| efficientnet::top_k(v, 1)[0].class;
            assert_eq!(top(part), top(want), "{image}: top-1");
        }
        ran += 1;
    }
    assert!(ran >= 1, "no f16 spelling on this adapter");
}

#[test]
fn backbone_features_times_the_classifier_are_the_logits() {
    let exp = tensors(fixtures().join("lite0/expected.safetensors"));
    let ckpt = tensors(lite0_weights());
    let model = backbone::Model::loader()
        .gpu(efficientnet::default_gpu().unwrap())
        .load(lite0_weights())
        .unwrap();
    assert_eq!(model.max_batch(), 2);
    let features = model.forward(&exp["input.chelsea"], 1).unwrap();
    assert_eq!(features.len(), backbone::EMBEDDING_LEN);
    let (w, b) = (&ckpt["_fc.weight"], &ckpt["_fc.bias"]);
    let logits: Vec<f32> = (0..1000)
        .map(|o| {
            let row = &w[o * 1280..(o + 1) * 1280];
            b[o] + row.iter().zip(&features).map(|(a, f)| a * f).sum::<f32>()
        })
        .collect();
    assert_close(
        "lite0 features · classifier",
        &logits,
        &exp["logits.chelsea"],
    );
}

#[test]
fn custom_specs_match_the_reference_executor() {
    // A spec file.
    let ir = ir_of(&tiny::DEFINITION);
    let input = ramp(3 * 64 * 64 * 2);
    let (bytes, want) = random_checkpoint_and_reference(&ir, &input, 2);
    let model = tiny::Model::from_bytes(&bytes).unwrap();
    assert_eq!(model.naming(), Naming::Effc);
    assert_close("tiny (file)", &model.forward(&input, 2).unwrap(), &want);

    // An inline spec, with symmetric padding and a model chosen by name.
    let ir = ir_of(&tiny_base::DEFINITION);
    assert_eq!(ir.padding, PaddingMode::Symmetric);
    let input = ramp(3 * 48 * 48);
    let (bytes, want) = random_checkpoint_and_reference(&ir, &input, 1);
    let model = tiny_base::Model::loader()
        .naming(Naming::Effc)
        .max_batch(1)
        .from_bytes(&bytes)
        .unwrap();
    assert_close(
        "tiny_base (inline)",
        &model.forward(&input, 1).unwrap(),
        &want,
    );
}

#[test]
fn loader_errors_name_the_problem() {
    let gpu = efficientnet::default_gpu().unwrap();
    // Another model's checkpoint.
    let err = lite0::Model::loader()
        .gpu(gpu.clone())
        .load(fixtures().join("b0/weights.f16.safetensors"))
        .unwrap_err();
    assert!(matches!(err, Error::Weights(_)), "{err}");
    assert!(err.to_string().contains("lite0"), "{err}");
    // No such file.
    let err = tiny::Model::load("/nonexistent/w.safetensors").unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/w.safetensors"),
        "{err}"
    );
    // Not a checkpoint.
    let err = tiny::Model::from_bytes(b"not a checkpoint").unwrap_err();
    assert!(matches!(err, Error::Weights(_)), "{err}");
    // A batch beyond max_batch, an empty one, a wrong input size.
    let ir = ir_of(&tiny::DEFINITION);
    let (bytes, _) = random_checkpoint_and_reference(&ir, &ramp(3 * 64 * 64), 1);
    let model = tiny::Model::loader()
        .max_batch(2)
        .from_bytes(&bytes)
        .unwrap();
    let err = model.forward(&ramp(3 * 64 * 64 * 3), 3).unwrap_err();
    assert!(
        matches!(err, Error::Gpu(GpuError::Batch { batch: 3, max: 2 })),
        "{err}"
    );
    let mut encoder = gpu
        .device
        .create_command_encoder(&efficientnet::wgpu::CommandEncoderDescriptor { label: None });
    assert!(matches!(
        model.encode(&mut encoder, 0),
        Err(Error::Gpu(GpuError::EmptyBatch))
    ));
    assert!(matches!(
        model.encode(&mut encoder, 3),
        Err(Error::Gpu(GpuError::Batch { .. }))
    ));
    let err = model.forward(&ramp(10), 1).unwrap_err();
    assert!(
        matches!(err, Error::Gpu(GpuError::InputShape { .. })),
        "{err}"
    );
}

#[test]
fn a_definition_from_another_version_is_refused() {
    // The definition of `tiny` with one kernel's grid changed, as if generated by
    // an effc that plans differently.
    let mut kernels = tiny::KERNELS.to_vec();
    kernels[1].grid[1] += 1;
    let def = efficientnet::Definition {
        kernels: Box::leak(kernels.into_boxed_slice()),
        ..tiny::DEFINITION
    };
    let ir = ir_of(&tiny::DEFINITION);
    let (bytes, _) = random_checkpoint_and_reference(&ir, &ramp(3 * 64 * 64), 1);
    let err = engine_error(&def, &bytes);
    assert!(matches!(err, Error::Stale { .. }), "{err}");
    assert!(err.to_string().contains(tiny::KERNELS[1].name), "{err}");
}

#[test]
fn weights_packed_in_another_layout_are_refused() {
    // A definition generated from a plan whose first depthwise kernel stores its
    // bias before its taps: the same length, the same kernels, names, grids and
    // workgroups, but packed weights that its shaders would misread.
    let ir = ir_of(&tiny::DEFINITION);
    let plan = effc_plan::plan(&ir);
    let mut other = plan.clone();
    let k = other
        .kernels
        .iter_mut()
        .find(|k| k.kind() == "depthwise")
        .unwrap();
    let (taps, bias) = (k.layout.sections[0].clone(), k.layout.sections[1].clone());
    k.layout.sections = vec![
        effc_plan::Section {
            offset: 0,
            ..bias.clone()
        },
        effc_plan::Section {
            offset: bias.len,
            ..taps
        },
    ];
    assert_eq!(other.validate(), Ok(()));
    assert_eq!(other.weight_bytes(), plan.weight_bytes());
    // Packing follows the layout it is given: the bytes differ.
    let (bytes, _) = random_checkpoint_and_reference(&ir, &ramp(3 * 64 * 64), 1);
    let weights =
        effc_weights::Weights::from_bytes(&bytes, std::path::Path::new("<bytes>"), &ir, None)
            .unwrap();
    let packed = effc_plan::pack_weights(&plan, &ir, weights.by_name(&ir)).unwrap();
    let repacked = effc_plan::pack_weights(&other, &ir, weights.by_name(&ir)).unwrap();
    assert_eq!(packed.len(), repacked.len());
    assert_ne!(packed, repacked);
    // The load check refuses it.
    let def = efficientnet::Definition {
        plan_hash: Box::leak(other.fingerprint().into_boxed_str()),
        ..tiny::DEFINITION
    };
    let err = engine_error(&def, &bytes);
    assert!(matches!(err, Error::Stale { .. }), "{err}");
    assert!(err.to_string().contains(&other.fingerprint()), "{err}");
    assert!(
        err.to_string().contains(tiny::DEFINITION.plan_hash),
        "{err}"
    );
}
