//! The front end never panics: random text, and the built-in specs mutated at
//! random (characters inserted, deleted, replaced; numbers changed), go through
//! parsing, resolution, IR building, parameter naming and printing, and either
//! work or give diagnostics that render.

use effc_ir::{Model, Naming, Options, Spec};
use proptest::prelude::*;

fn exercise(text: &str, resolution: Option<usize>) {
    let result = Spec::parse("fuzz.enet", text).and_then(|s| {
        Model::build(
            &s,
            &Options {
                resolution,
                ..Default::default()
            },
        )
    });
    match result {
        Ok(m) => {
            // Keep the work bounded: only small networks are printed in full.
            if m.blocks().count() <= 200 {
                let _ = m.render();
                for n in Naming::ALL {
                    let _ = m.named_params(n);
                }
            }
            let _ = m.cost();
        }
        Err(d) => {
            assert!(!d.is_empty());
            let _ = d.render(false);
        }
    }
}

fn catalog_text() -> impl Strategy<Value = String> {
    let sources: Vec<&'static str> = effc_catalog::MODELS.iter().map(|(_, s)| *s).collect();
    prop::sample::select(sources).prop_map(str::to_string)
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
    Number(usize, u32),
}

fn edit() -> impl Strategy<Value = Edit> {
    let ch = prop::sample::select(vec![
        '{', '}', '=', '_', '.', ',', '[', ']', '0', '1', '9', 'k', 's', 'e', 'r', 'o', 'i', '#',
        '\n', ' ', '"', '-', 'é', 'x',
    ]);
    prop_oneof![
        3 => (any::<usize>(), 0u32..2_000).prop_map(|(p, n)| Edit::Number(p, n)),
        1 => (any::<usize>(), ch.clone()).prop_map(|(p, c)| Edit::Insert(p, c)),
        1 => any::<usize>().prop_map(Edit::Delete),
        1 => (any::<usize>(), ch).prop_map(|(p, c)| Edit::Replace(p, c)),
        1 => (any::<usize>(), 0u32..100_000).prop_map(|(p, n)| Edit::Number(p, n)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let n = chars.len().max(1);
        match *e {
            Edit::Insert(p, c) => chars.insert(p % (chars.len() + 1), c),
            Edit::Delete(p) if !chars.is_empty() => {
                chars.remove(p % n);
            }
            Edit::Replace(p, c) if !chars.is_empty() => chars[p % n] = c,
            Edit::Number(p, v) => {
                // Replace the run of digits at or after p with another number.
                if let Some(start) = (p % n..chars.len()).find(|&i| chars[i].is_ascii_digit()) {
                    let end = (start..chars.len())
                        .find(|&i| !chars[i].is_ascii_digit())
                        .unwrap_or(chars.len());
                    chars.splice(start..end, v.to_string().chars());
                }
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn random_text(text in "\\PC{0,200}") {
        exercise(&text, None);
    }

    #[test]
    fn random_tokens(text in "(model|extends|blocks|training|[a-z_]{1,6}|[0-9.]{1,4}|[{}=\\[\\],_]|\\s){0,60}") {
        exercise(&text, None);
    }

    #[test]
    fn mutated_builtins(base in catalog_text(), edits in prop::collection::vec(edit(), 1..4), res in prop::option::of(1usize..600)) {
        let text = apply(&base, &edits);
        exercise(&text, res);
    }
}
