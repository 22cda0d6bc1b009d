//! The `plan` check of the spec harness (`effc_testkit::spec`): every spec taking
//! `plan` plans into a valid plan ([`effc_plan::Plan::validate`]) whose printout (kernels,
//! bindings, grids, layouts, memory) is snapshotted.

use effc_testkit::spec::{cases_with, Check};

#[test]
fn plans_of_specs() {
    for case in cases_with(Check::Plan) {
        let plan = effc_plan::plan(&case.model());
        if let Err(e) = plan.validate() {
            panic!("{}: invalid plan: {e}", case.name);
        }
        let mut s = insta::Settings::clone_current();
        s.set_snapshot_suffix(&case.file);
        s.set_input_file(&case.path);
        s.set_prepend_module_to_snapshot(false);
        s.bind(|| insta::assert_snapshot!("plan", plan.to_string()));
    }
}

/// Every spec's plan, at f32 and f16, reads back from its JSON equal to itself
/// (the web site's `plan.json` is how the wasm CPU backend gets its plan), and
/// broken JSON or a broken plan is an error naming what is wrong.
#[test]
fn plans_read_back_from_json() {
    use effc_plan::{plan_with, Plan, Precision, Tuning};
    let mut n = 0;
    for case in cases_with(Check::Plan) {
        for precision in [Precision::F32, Precision::F16] {
            let plan = plan_with(&case.model(), &Tuning::default(), precision);
            let json = serde_json::to_vec(&plan).unwrap();
            let back = Plan::from_json(&json).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(back, plan, "{}", case.name);
            assert_eq!(back.fingerprint(), plan.fingerprint());
            n += 1;
        }
    }
    assert!(n >= 2);
    let case = &cases_with(Check::Plan)[0];
    let plan = effc_plan::plan(&case.model());
    let e = Plan::from_json(b"{\"model\": 3}").unwrap_err();
    assert!(
        e.starts_with("not an effc plan: ") && e.contains("column"),
        "{e}"
    );
    let mut broken = plan.clone();
    broken.output = effc_plan::TensorId(plan.tensors.len() + 5);
    let e = Plan::from_json(&serde_json::to_vec(&broken).unwrap()).unwrap_err();
    assert!(e.contains("inconsistent"), "{e}");
}
