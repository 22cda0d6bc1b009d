//! An exponential moving average of every tensor (weights and BN running
//! statistics), as timm's `ModelEmaV2`: `ema = d·ema + (1 − d)·value` after
//! each step. The papers use `d = 0.9999`.

use effc_reference::train::Real;

#[derive(Clone, Debug)]
pub struct Ema<T> {
    pub decay: f64,
    pub values: Vec<Vec<T>>,
}

impl<T: Real> Ema<T> {
    /// Starts from a copy of `values`.
    pub fn new(decay: f64, values: &[Vec<T>]) -> Ema<T> {
        Ema {
            decay,
            values: values.to_vec(),
        }
    }

    pub fn update(&mut self, values: &[Vec<T>]) {
        let d = self.decay;
        for (e, v) in self.values.iter_mut().zip(values) {
            for (e, &v) in e.iter_mut().zip(v) {
                *e = T::from_f64(d * e.to_f64() + (1.0 - d) * v.to_f64());
            }
        }
    }
}
