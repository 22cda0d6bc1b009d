//! The built-in models: one `.enet` source per model, embedded at compile time.
//!
//! This crate only holds text. It parses nothing; `effc-ir` resolves a built-in
//! name (and `extends NAME` of a built-in) through [`source`]. [`accuracy`] holds
//! the published ImageNet accuracy of each built-in's official weights, as data.

pub mod accuracy;
pub use accuracy::{accuracy, Accuracy, Pretraining};

/// Every built-in model, in catalog order: (name, `.enet` source).
pub const MODELS: &[(&str, &str)] = &[
    ("b0", include_str!("../models/b0.enet")),
    ("b1", include_str!("../models/b1.enet")),
    ("b2", include_str!("../models/b2.enet")),
    ("b3", include_str!("../models/b3.enet")),
    ("b4", include_str!("../models/b4.enet")),
    ("b5", include_str!("../models/b5.enet")),
    ("b6", include_str!("../models/b6.enet")),
    ("b7", include_str!("../models/b7.enet")),
    ("b8", include_str!("../models/b8.enet")),
    ("l2", include_str!("../models/l2.enet")),
    ("lite0", include_str!("../models/lite0.enet")),
    ("lite1", include_str!("../models/lite1.enet")),
    ("lite2", include_str!("../models/lite2.enet")),
    ("lite3", include_str!("../models/lite3.enet")),
    ("lite4", include_str!("../models/lite4.enet")),
    ("v2-b0", include_str!("../models/v2-b0.enet")),
    ("v2-b1", include_str!("../models/v2-b1.enet")),
    ("v2-b2", include_str!("../models/v2-b2.enet")),
    ("v2-b3", include_str!("../models/v2-b3.enet")),
    ("v2-s", include_str!("../models/v2-s.enet")),
    ("v2-m", include_str!("../models/v2-m.enet")),
    ("v2-l", include_str!("../models/v2-l.enet")),
    ("v2-xl", include_str!("../models/v2-xl.enet")),
    ("b0-pytorch", include_str!("../models/b0-pytorch.enet")),
];

/// The `.enet` source of a built-in model, by name (`b0`, `v2-s`, `lite3`, ...).
pub fn source(name: &str) -> Option<&'static str> {
    MODELS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The names of all built-in models.
pub fn names() -> impl Iterator<Item = &'static str> {
    MODELS.iter().map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_model_is_named_in_its_file() {
        for (name, src) in super::MODELS {
            assert!(src.contains(&format!("model {name} ")), "{name}");
        }
        assert_eq!(super::MODELS.len(), 24);
    }
}
