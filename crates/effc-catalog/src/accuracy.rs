//! Published ImageNet top-1 accuracy of the official weights of each built-in model,
//! with where each number is printed. effc does not train: these are the authors'
//! figures for their checkpoints (evaluated at the model's resolution), which
//! `effc list` shows and `effc pick` ranks by.
//!
//! Every number here was checked against the named source. Different weights of the
//! same architecture have different accuracies (AdvProp and Noisy Student weights of
//! B0–B7 are more accurate than the paper's); the first entry of a model is the one
//! its built-in stands for, the others are alternatives with the same shapes.

/// What the weights were trained on before ImageNet-1k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pretraining {
    /// ImageNet-1k (ILSVRC2012) only.
    ImageNet1k,
    /// ImageNet-21k, then fine-tuned on ImageNet-1k.
    ImageNet21k,
    /// Noisy Student: ImageNet-1k plus pseudo-labelled JFT-300M images.
    Jft,
}

impl Pretraining {
    pub fn label(self) -> &'static str {
        match self {
            Pretraining::ImageNet1k => "in1k",
            Pretraining::ImageNet21k => "in21k",
            Pretraining::Jft => "jft",
        }
    }
}

/// One published accuracy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Accuracy {
    /// The built-in model.
    pub model: &'static str,
    /// ImageNet-1k validation top-1, percent.
    pub top1: f64,
    /// Which weights: the training recipe and where the checkpoint is.
    pub weights: &'static str,
    pub pretraining: Pretraining,
    /// Where the number is printed.
    pub source: &'static str,
}

const V1: &str = "Tan & Le 2019, EfficientNet, arXiv:1905.11946 v5, Table 2";
const V1_WEIGHTS: &str =
    "AutoAugment (the paper's; TF checkpoints, timm `tf_efficientnet_bN.aa_in1k`)";
const ADVPROP: &str = "Xie et al. 2019, AdvProp, arXiv:1911.09665, §5 (B8)";
const NOISY: &str = "Xie et al. 2020, Noisy Student, arXiv:1911.04252, Table 2";
const LITE: &str = "tensorflow/tpu models/official/efficientnet/lite/README.md (FP32)";
const V2_README: &str = "google/automl efficientnetv2/README.md";

const fn acc(
    model: &'static str,
    top1: f64,
    weights: &'static str,
    pretraining: Pretraining,
    source: &'static str,
) -> Accuracy {
    Accuracy {
        model,
        top1,
        weights,
        pretraining,
        source,
    }
}

use Pretraining::{ImageNet1k as In1k, ImageNet21k, Jft};

/// Every published accuracy, in catalog order; a model's first entry is its own.
pub const ACCURACY: &[Accuracy] = &[
    acc("b0", 77.1, V1_WEIGHTS, In1k, V1),
    acc("b1", 79.1, V1_WEIGHTS, In1k, V1),
    acc("b2", 80.1, V1_WEIGHTS, In1k, V1),
    acc("b3", 81.6, V1_WEIGHTS, In1k, V1),
    acc("b4", 82.9, V1_WEIGHTS, In1k, V1),
    acc("b5", 83.6, V1_WEIGHTS, In1k, V1),
    acc("b6", 84.0, V1_WEIGHTS, In1k, V1),
    acc("b7", 84.3, V1_WEIGHTS, In1k, V1),
    acc(
        "b8",
        85.5,
        "AdvProp (the only B8 weights; inputs normalized to [-1, 1]; timm `tf_efficientnet_b8.ap_in1k`)",
        In1k,
        ADVPROP,
    ),
    acc(
        "l2",
        88.4,
        "Noisy Student at 800 px (timm `tf_efficientnet_l2.ns_jft_in1k`)",
        Jft,
        NOISY,
    ),
    acc("lite0", 75.1, "TF EfficientNet-Lite checkpoint", In1k, LITE),
    acc("lite1", 76.7, "TF EfficientNet-Lite checkpoint", In1k, LITE),
    acc("lite2", 77.6, "TF EfficientNet-Lite checkpoint", In1k, LITE),
    acc("lite3", 79.8, "TF EfficientNet-Lite checkpoint", In1k, LITE),
    acc("lite4", 81.5, "TF EfficientNet-Lite checkpoint", In1k, LITE),
    acc(
        "v2-b0",
        78.7,
        "automl checkpoint `efficientnetv2-b0`",
        In1k,
        V2_README,
    ),
    acc(
        "v2-b1",
        79.8,
        "automl checkpoint `efficientnetv2-b1`",
        In1k,
        V2_README,
    ),
    acc(
        "v2-b2",
        80.5,
        "automl checkpoint `efficientnetv2-b2`",
        In1k,
        V2_README,
    ),
    acc(
        "v2-b3",
        82.1,
        "automl checkpoint `efficientnetv2-b3`",
        In1k,
        V2_README,
    ),
    acc(
        "v2-s",
        83.9,
        "automl checkpoint `efficientnetv2-s` (ImageNet-1k)",
        In1k,
        V2_README,
    ),
    acc(
        "v2-m",
        85.2,
        "automl checkpoint `efficientnetv2-m` (ImageNet-1k)",
        In1k,
        V2_README,
    ),
    acc(
        "v2-l",
        85.7,
        "automl checkpoint `efficientnetv2-l` (ImageNet-1k)",
        In1k,
        V2_README,
    ),
    acc(
        "v2-xl",
        87.2,
        "automl checkpoint `efficientnetv2-xl-21k-ft1k` (published only pretrained on ImageNet-21k)",
        ImageNet21k,
        V2_README,
    ),
    acc(
        "b0-pytorch",
        77.692,
        "torchvision `EfficientNet_B0_Weights.IMAGENET1K_V1` (measured by torchvision)",
        In1k,
        "pytorch.org/vision, torchvision.models.efficientnet_b0",
    ),
    // Alternatives with the same architecture.
    acc(
        "v2-s",
        84.9,
        "automl checkpoint `efficientnetv2-s-21k-ft1k`",
        ImageNet21k,
        V2_README,
    ),
    acc(
        "v2-m",
        86.2,
        "automl checkpoint `efficientnetv2-m-21k-ft1k`",
        ImageNet21k,
        V2_README,
    ),
    acc(
        "v2-l",
        86.9,
        "automl checkpoint `efficientnetv2-l-21k-ft1k`",
        ImageNet21k,
        V2_README,
    ),
];

/// The published accuracy of a built-in model's own weights.
pub fn accuracy(model: &str) -> Option<&'static Accuracy> {
    ACCURACY.iter().find(|a| a.model == model)
}

/// Every published accuracy of a built-in model's architecture, its own first.
pub fn accuracies(model: &str) -> impl Iterator<Item = &'static Accuracy> + '_ {
    ACCURACY.iter().filter(move |a| a.model == model)
}

/// The family of a built-in model: `v1` (B0–B8, L2), `lite` or `v2`.
pub fn family(model: &str) -> Option<&'static str> {
    let name = crate::names().find(|n| *n == model)?;
    Some(if name.starts_with("lite") {
        "lite"
    } else if name.starts_with("v2-") {
        "v2"
    } else {
        "v1"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_has_its_own_accuracy_first() {
        for name in crate::names() {
            let a = accuracy(name).unwrap_or_else(|| panic!("{name} has no accuracy"));
            assert!(a.top1 > 70.0 && a.top1 < 90.0, "{name}: {}", a.top1);
            assert!(!a.source.is_empty() && !a.weights.is_empty());
        }
        for a in ACCURACY {
            assert!(
                crate::source(a.model).is_some(),
                "{} is not built in",
                a.model
            );
        }
        // Bigger models of a family are more accurate.
        for fam in [
            &["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "l2"][..],
            &["lite0", "lite1", "lite2", "lite3", "lite4"],
            &[
                "v2-b0", "v2-b1", "v2-b2", "v2-b3", "v2-s", "v2-m", "v2-l", "v2-xl",
            ],
        ] {
            for w in fam.windows(2) {
                assert!(accuracy(w[0]).unwrap().top1 < accuracy(w[1]).unwrap().top1);
            }
        }
        assert_eq!(accuracies("v2-l").count(), 2);
        assert_eq!(family("lite3"), Some("lite"));
        assert_eq!(family("v2-xl"), Some("v2"));
        assert_eq!(family("b0-pytorch"), Some("v1"));
        assert_eq!(family("nope"), None);
    }
}
