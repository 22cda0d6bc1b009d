//! The plan of a backbone (b0, feature levels 1–4), as `effc inspect --kernels`
//! prints it.

use effc_ir::{Model, Options, Spec};

#[test]
fn b0_features_plan() {
    let opts = Options {
        features: Some(vec![1, 2, 3, 4]),
        ..Options::default()
    };
    let m = Model::build(&Spec::builtin("b0").unwrap(), &opts).unwrap();
    let p = effc_plan::plan(&m);
    assert_eq!(p.validate(), Ok(()));
    insta::assert_snapshot!("b0_features_1_2_3_4", p.to_string());
}
