//! Initial weights as timm's EfficientNet initializes them (`_init_weight_goog`):
//! convs `N(0, √(2/fan_out))` with `fan_out = k·k·out/groups`, BN weight 1 and
//! bias 0, running mean 0 and variance 1, the classifier uniform in
//! `±1/√out_features` with bias 0, SE convs (biased) as convs with bias 0.

use effc_ir::{Layer, Model, Param, Tensor};
use effc_reference::train::Rng;

fn is_bn(layer: Layer) -> bool {
    matches!(
        layer,
        Layer::StemBn | Layer::ExpandBn | Layer::ConvBn | Layer::ProjectBn | Layer::HeadBn
    )
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u1 = 1.0 - rng.uniform();
    let u2 = rng.uniform();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The initial value of one tensor (a convolution's groups from its shape).
pub fn init_tensor(p: &Param, depthwise: bool, rng: &mut Rng) -> Vec<f32> {
    let n = p.numel();
    match (p.key.layer, p.key.tensor) {
        (l, Tensor::Weight) if is_bn(l) => vec![1.0; n],
        (_, Tensor::RunningVar) => vec![1.0; n],
        (_, Tensor::Bias | Tensor::RunningMean) => vec![0.0; n],
        (Layer::Classifier, Tensor::Weight) => {
            let r = 1.0 / (p.shape[0] as f64).sqrt();
            (0..n)
                .map(|_| (r * (2.0 * rng.uniform() - 1.0)) as f32)
                .collect()
        }
        (_, Tensor::Weight) => {
            // [out, in/groups, k, k]; depthwise: groups = out.
            let (out, k) = (p.shape[0], p.shape[2] * p.shape[3]);
            let fan_out = if depthwise { k } else { k * out };
            let std = (2.0 / fan_out as f64).sqrt();
            (0..n).map(|_| (std * normal(rng)) as f32).collect()
        }
    }
}

/// Every tensor of `model` in `Model::params` order.
pub fn init(model: &Model, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    model
        .params()
        .iter()
        .map(|p| {
            let depthwise = p.key.layer == Layer::Conv
                && p.key
                    .block
                    .is_some_and(|(s, i, _)| model.stages[s].blocks[i].conv.conv.is_depthwise());
            init_tensor(p, depthwise, &mut rng)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use effc_ir::{Options, Spec};

    #[test]
    fn statistics_as_timm() {
        let model = Model::build(&Spec::builtin("b0").unwrap(), &Options::default()).unwrap();
        let values = init(&model, 3);
        for (p, v) in model.params().iter().zip(&values) {
            assert_eq!(v.len(), p.numel(), "{}", p.name);
            if p.name == "blocks.5.0.expand.conv.weight" {
                // 1x1, 112 → 672 (fan_out 672): std √(2/672).
                let var = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / v.len() as f64;
                assert!(
                    (var.sqrt() / (2.0f64 / 672.0).sqrt() - 1.0).abs() < 0.01,
                    "{var}"
                );
            }
            if p.name == "blocks.5.0.dw.conv.weight" {
                // depthwise 5x5: fan_out 25.
                let var = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / v.len() as f64;
                assert!(
                    (var.sqrt() / (2.0f64 / 25.0).sqrt() - 1.0).abs() < 0.05,
                    "{var}"
                );
            }
            if p.name == "classifier.weight" {
                let r = 1.0 / 1000f32.sqrt();
                assert!(v.iter().all(|x| x.abs() <= r));
            }
        }
    }
}
