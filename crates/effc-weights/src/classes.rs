//! The ImageNet-1k class names, in class-index order (torchvision's list).

use std::sync::OnceLock;

const TEXT: &str = include_str!("../data/imagenet_classes.txt");

/// The 1000 ImageNet class names; `imagenet_classes()[i]` names logit `i`.
pub fn imagenet_classes() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| TEXT.lines().collect())
}

/// The `k` most probable classes of one row of logits: (class, softmax
/// probability), most probable first, ties to the lower class. The softmax is
/// computed in f64 after subtracting the largest logit. The one top-k of effc:
/// `effc run`, `efficientnet::top_k` and the reference executor's tests use it.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| exps[b].total_cmp(&exps[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|i| (i, (exps[i] / sum) as f32))
        .collect()
}

/// The name of class `i` of a classifier with `classes` outputs: ImageNet's
/// when it has 1000, else `class i`.
pub fn class_name(i: usize, classes: usize) -> String {
    let names = imagenet_classes();
    if classes == names.len() {
        names
            .get(i)
            .map_or_else(|| format!("class {i}"), |n| n.to_string())
    } else {
        format!("class {i}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_a_softmax_in_order() {
        let top = top_k(&[1.0, 3.0, 2.0, 3.0], 3);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 3, 2]);
        let all: f32 = top_k(&[1.0, 3.0, 2.0, 3.0], 9).iter().map(|t| t.1).sum();
        assert!((all - 1.0).abs() < 1e-6);
        assert_eq!(class_name(285, 1000), "Egyptian cat");
        assert_eq!(class_name(2, 10), "class 2");
    }

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
