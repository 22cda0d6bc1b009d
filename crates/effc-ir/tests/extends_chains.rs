//! Long `extends` chains: resolved in linear time and memory, and a chain past the
//! limit gives one error, at the model that went too deep, naming the limit and
//! the chain.

use effc_ir::spec::MAX_EXTENDS_CHAIN;
use effc_ir::Spec;

fn chain(n: usize) -> String {
    let mut text = String::from("model m0 extends b0 { width = 1.0 }\n");
    for i in 1..n {
        text.push_str(&format!("model m{i} extends m{} {{ }}\n", i - 1));
    }
    text
}

#[test]
fn a_chain_within_the_limit_resolves() {
    // m0 extends b0: b0 is the chain's first model, so m62 is model 64.
    let specs = Spec::parse_all("c.enet", &chain(MAX_EXTENDS_CHAIN - 1)).unwrap();
    assert_eq!(specs.len(), MAX_EXTENDS_CHAIN - 1);
    assert_eq!(specs.last().unwrap().base.as_deref(), Some("m61"));
    assert!(Spec::parse("c.enet", &chain(MAX_EXTENDS_CHAIN - 1)).is_ok());
}

#[test]
fn seventy_models_give_one_error_at_the_model_too_deep() {
    let text = chain(70);
    for result in [
        Spec::parse_all("c.enet", &text).map(|_| ()),
        Spec::parse("c.enet", &text).map(|_| ()),
    ] {
        let d = result.unwrap_err();
        assert_eq!(d.0.len(), 1, "{}", d.render(false));
        let e = &d.0[0];
        assert!(
            e.message
                .contains("model `m63` is model 65 of its chain, at most 64"),
            "{}",
            e.message
        );
        // At `extends m62` on the 64th line.
        assert_eq!(e.position().unwrap(), "c.enet:64:19");
        let help = e.help.as_deref().unwrap();
        assert!(
            help.contains("m63 -> m62 -> m61 -> m60 -> ... -> m1 -> m0 -> b0"),
            "{help}"
        );
    }
}

#[test]
fn a_hundred_thousand_models_are_resolved_in_linear_time() {
    let text = chain(100_000);
    let d = Spec::parse_all("c.enet", &text).unwrap_err();
    assert_eq!(d.0.len(), 1, "{}", d);
    let d = Spec::parse("c.enet", &text).unwrap_err();
    assert_eq!(d.0.len(), 1, "{}", d);
}

#[test]
fn an_error_in_a_base_is_reported_once() {
    let text =
        "model a extends b0 { width = oops }\nmodel b extends a { }\nmodel c extends b { }\n";
    let d = Spec::parse_all("c.enet", text).unwrap_err();
    assert_eq!(d.0.len(), 1, "{}", d);
    assert_eq!(d.0[0].position().unwrap(), "c.enet:1:30");
}
