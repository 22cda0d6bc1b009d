//! The printed IR of every built-in model, at its default resolution.

use effc_ir::{Model, Options, Spec};

#[test]
fn every_builtin_ir() {
    for name in effc_catalog::names() {
        let spec = Spec::builtin(name).unwrap_or_else(|e| panic!("{name}: {}", e.render(false)));
        let m = Model::build(&spec, &Options::default())
            .unwrap_or_else(|e| panic!("{name}: {}", e.render(false)));
        insta::assert_snapshot!(format!("ir_{name}"), m.render());
    }
}

#[test]
fn options_override_the_spec() {
    let spec = Spec::builtin("b0").unwrap();
    let m = Model::build(
        &spec,
        &Options {
            resolution: Some(97),
            padding: Some(effc_ir::PaddingMode::Symmetric),
            bn_eps: Some(1e-5),
            classes: Some(0),
            features: None,
        },
    )
    .unwrap();
    assert_eq!(m.input, [3, 97, 97]);
    assert_eq!(m.stem.conv.out_hw, (49, 49));
    assert_eq!(m.output_shape(), [1280, 1, 1]);
    assert!(m.classifier.is_none());
    assert_eq!(m.param_count(), 5_288_548 - 1_281_000);
}
