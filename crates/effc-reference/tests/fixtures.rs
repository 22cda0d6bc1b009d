//! The reference executor against timm (tests/fixtures): logits of B0 in both
//! conventions, V2-B0 and the real Lite0 weights, and every stage's features.
//! Tolerance (tests/fixtures/README.md): max|got − want| ≤ 1e-3 · max|want|.

use effc_ir::{Model, Options, PaddingMode, Spec};
use effc_reference::{Error, Executor, Tap, Tensor};
use effc_weights::top_k;
use effc_weights::{load_image, Weights};

use effc_testkit::fixtures;

fn model_with(name: &str, opts: Options) -> Model {
    let spec = Spec::builtin(name).unwrap_or_else(|e| panic!("{}", e.render(false)));
    Model::build(&spec, &opts).unwrap_or_else(|e| panic!("{}", e.render(false)))
}

fn model(name: &str) -> Model {
    model_with(name, Options::default())
}

fn executor(m: &Model, weights: &str) -> Executor {
    let w = Weights::load(fixtures().join(weights), m, None).unwrap_or_else(|e| panic!("{e}"));
    Executor::new(m, &w).unwrap()
}

/// A tensor of an expected-outputs file (f32).
fn expected(file: &str, name: &str) -> Tensor {
    let (shape, data) = effc_testkit::read_tensor(fixtures().join(file), name);
    Tensor { shape, data }
}

/// max|got − want| / max|want|.
fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.shape, want.shape);
    effc_testkit::rel_err(&got.data, &want.data)
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    effc_testkit::assert_close(what, &got.data, &want.data);
}

#[test]
fn b0_logits_in_both_conventions() {
    let input = expected("b0/expected.safetensors", "input");
    let weights = "b0/weights.f16.safetensors";
    let tf = executor(&model("b0"), weights);
    let pt = executor(&model("b0-pytorch"), weights);
    let got_tf = tf.run(&input.data, 2).unwrap();
    let got_pt = pt.run(&input.data, 2).unwrap();
    let want_tf = expected("b0/expected.safetensors", "logits.tf_efficientnet_b0");
    let want_pt = expected("b0/expected.safetensors", "logits.efficientnet_b0");
    assert_close("b0 (same padding, eps 1e-3)", &got_tf, &want_tf);
    assert_close(
        "b0-pytorch (symmetric padding, eps 1e-5)",
        &got_pt,
        &want_pt,
    );
    // The tolerance separates the conventions: each misses the other's logits.
    assert!(rel_err(&got_tf, &want_pt) > 1e-2);
    assert!(rel_err(&got_pt, &want_tf) > 1e-2);
}

/// Padding alone (eps kept) already misses: the fixture can tell them apart.
#[test]
fn b0_with_the_wrong_padding_misses() {
    let input = expected("b0/expected.safetensors", "input");
    let m = model_with(
        "b0",
        Options {
            padding: Some(PaddingMode::Symmetric),
            ..Default::default()
        },
    );
    let got = executor(&m, "b0/weights.f16.safetensors")
        .run(&input.data, 2)
        .unwrap();
    let want = expected("b0/expected.safetensors", "logits.tf_efficientnet_b0");
    assert!(rel_err(&got, &want) > 1e-2);
}

fn check_features(dir: &str, timm_name: &str, m: &Model) {
    let file = format!("{dir}/expected.safetensors");
    let input = expected(&file, "input");
    let ex = executor(m, &format!("{dir}/weights.f16.safetensors"));
    let image0 = &input.data[..input.data.len() / 2];
    let mut taps = vec![Tap::Stem];
    taps.extend((0..m.stages.len()).map(Tap::Stage));
    taps.push(Tap::Head);
    let got = ex.run_taps(image0, 1, &taps).unwrap();
    for (tap, got) in taps.iter().zip(&got) {
        let name = match tap {
            Tap::Stem => "stem".to_string(),
            Tap::Stage(i) => format!("stage{i}"),
            Tap::Head => "head".to_string(),
            _ => unreachable!("only these taps are asked for"),
        };
        let want = expected(&file, &format!("features.{timm_name}.{name}"));
        assert_close(&format!("{dir} {name}"), got, &want);
    }
    // Asking for one tap gives the same as asking for all.
    let head = ex.run_until(image0, 1, Tap::Head).unwrap();
    assert_eq!(&head, got.last().unwrap());
}

#[test]
fn b0_features_of_every_stage() {
    check_features("b0", "tf_efficientnet_b0", &model("b0"));
}

#[test]
fn v2_b0_logits_and_features() {
    let m = model("v2-b0");
    let input = expected("v2-b0/expected.safetensors", "input");
    let got = executor(&m, "v2-b0/weights.f16.safetensors")
        .run(&input.data, 2)
        .unwrap();
    let want = expected("v2-b0/expected.safetensors", "logits.tf_efficientnetv2_b0");
    assert_close("v2-b0", &got, &want);
    check_features("v2-b0", "tf_efficientnetv2_b0", &m);
}

#[test]
fn lite0_logits_and_classes_of_real_images() {
    let m = model("lite0");
    let ex = executor(&m, "lite0/efficientnet-lite0.safetensors");
    for (image, accept) in [("chelsea", &[281, 282, 285][..]), ("coffee", &[967][..])] {
        let input = expected("lite0/expected.safetensors", &format!("input.{image}"));
        let want = expected("lite0/expected.safetensors", &format!("logits.{image}"));
        assert_close(
            &format!("lite0 {image}"),
            &ex.run(&input.data, 1).unwrap(),
            &want,
        );

        let x = load_image(fixtures().join(format!("images/{image}.png")), &m).unwrap();
        let logits = ex.run(&x, 1).unwrap();
        let top = top_k(&logits.data, 5);
        let names: Vec<String> = top
            .iter()
            .map(|(c, p)| format!("{} {p:.3}", effc_weights::imagenet_classes()[*c]))
            .collect();
        eprintln!("{image}: {}", names.join(", "));
        assert!(accept.contains(&top[0].0), "{image}: top-5 {names:?}");
    }
}

#[test]
fn batch_images_are_independent_and_deterministic() {
    let input = expected("b0/expected.safetensors", "input");
    let ex = executor(&model("lite0"), "lite0/efficientnet-lite0.safetensors");
    let both = ex.run_until(&input.data, 2, Tap::Stage(3)).unwrap();
    let half = input.data.len() / 2;
    let first = ex.run_until(&input.data[..half], 1, Tap::Stage(3)).unwrap();
    let second = ex.run_until(&input.data[half..], 1, Tap::Stage(3)).unwrap();
    assert_eq!(both.shape, [2, 80, 14, 14]);
    assert_eq!(both.data[..both.data.len() / 2], first.data[..]);
    assert_eq!(both.data[both.data.len() / 2..], second.data[..]);
}

#[test]
fn features_without_a_classifier_are_the_pooled_head() {
    let input = expected("lite0/expected.safetensors", "input.coffee");
    let with = executor(&model("lite0"), "lite0/efficientnet-lite0.safetensors");
    let m = model_with(
        "lite0",
        Options {
            classes: Some(0),
            ..Default::default()
        },
    );
    let without = executor(&m, "lite0/efficientnet-lite0.safetensors");
    let features = without.run(&input.data, 1).unwrap();
    assert_eq!(features.shape, [1, 1280]);
    assert_eq!(
        features,
        with.run_until(&input.data, 1, Tap::Embedding).unwrap()
    );
    // The embedding is the head's mean over pixels.
    let head = with.run_until(&input.data, 1, Tap::Head).unwrap();
    for (c, &f) in features.data.iter().enumerate() {
        let mean = head.data[c * 49..(c + 1) * 49]
            .iter()
            .map(|&v| v as f64)
            .sum::<f64>()
            / 49.0;
        assert!((mean as f32 - f).abs() <= 1e-6 * mean.abs().max(1.0) as f32);
    }
}

#[test]
fn refusals() {
    let m = model("b0");
    let w = Weights::random(&m, 7);
    let ex = Executor::new(&m, &w).unwrap();
    let x = vec![0.0; 3 * 224 * 224];
    assert!(matches!(
        ex.run(&x, 2),
        Err(Error::InputSize {
            expected: 301056,
            got: 150528,
            ..
        })
    ));
    let e = ex.run_until(&x, 1, Tap::Stage(7)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "model `b0` has no such stage: Stage(7) does not exist (it has 7)"
    );
    assert!(ex.run_until(&x, 1, Tap::Block(16)).is_err());
    assert!(ex.run_until(&x, 1, Tap::Block(15)).is_ok());

    let features = model_with(
        "b0",
        Options {
            classes: Some(0),
            ..Default::default()
        },
    );
    let e = Executor::new(&features, &Weights::random(&features, 1))
        .unwrap()
        .run_until(&x, 1, Tap::Logits)
        .unwrap_err();
    assert_eq!(e, Error::NoClassifier { model: "b0".into() });

    // Weights made for B1 do not run B0.
    let b1 = model("b1");
    let e = Executor::new(&m, &Weights::random(&b1, 1)).unwrap_err();
    let Error::WeightsDontFit { problems, .. } = &e else {
        panic!("{e}");
    };
    assert!(
        problems.contains(&"`blocks.1.0.expand.conv.weight` is missing".to_string()),
        "{e}"
    );
    assert!(e.to_string().starts_with(
        "the weights (from `random (seed 1)`, checked against model `b1`) do not fit model `b0`: "
    ));
}
