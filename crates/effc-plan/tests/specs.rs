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
