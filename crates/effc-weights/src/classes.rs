//! The ImageNet-1k class names, in class-index order (torchvision's list).

use std::sync::OnceLock;

const TEXT: &str = include_str!("../data/imagenet_classes.txt");

/// The 1000 ImageNet class names; `imagenet_classes()[i]` names logit `i`.
pub fn imagenet_classes() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| TEXT.lines().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousand_names_in_index_order() {
        let c = imagenet_classes();
        assert_eq!(c.len(), 1000);
        assert_eq!(c[0], "tench");
        assert_eq!(c[281], "tabby");
        assert_eq!(c[967], "espresso");
        assert_eq!(c[999], "toilet tissue");
    }
}
