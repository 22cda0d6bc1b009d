//! `&'static str` fields of a deserialized plan (binding and weight-section
//! names, section descriptions): each distinct string is leaked once per process
//! and shared by every plan read after, so reading plans again and again does not
//! grow memory. The fields stay `&'static str` because every plan built here names
//! them with literals.

use std::collections::HashSet;
use std::sync::Mutex;

use serde::{Deserialize, Deserializer};

/// `&'static str` under another name: serde borrows fields spelled `&str` from
/// the input (which a plan read from a buffer cannot), not those spelled so.
pub(crate) type Static = &'static str;

static STRINGS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);

/// `s` as a `&'static str`: the one leaked copy of an equal string.
pub(crate) fn intern(s: &str) -> &'static str {
    let mut set = STRINGS.lock().unwrap_or_else(|p| p.into_inner());
    let set = set.get_or_insert_with(HashSet::new);
    if let Some(&v) = set.get(s) {
        return v;
    }
    let v: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(v);
    v
}

/// `#[serde(deserialize_with)]` for a `&'static str` field.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let s = String::deserialize(d)?;
    Ok(intern(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy() {
        let a = intern(&String::from("intern-test-src"));
        let b = intern(&String::from("intern-test-src"));
        assert_eq!(a, "intern-test-src");
        assert!(std::ptr::eq(a, b));
        assert!(!std::ptr::eq(a, intern("intern-test-dst")));
    }
}
