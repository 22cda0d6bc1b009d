//! Learning-rate schedules as timm's schedulers compute them (stepped per
//! update, `t_in_epochs = False`): a linear warmup from `warmup_lr` over the
//! first `warmup` steps, then the decay, evaluated at the step itself or, with
//! `warmup_prefix`, at the steps since the warmup ended (timm's `warmup_prefix`:
//! `create_scheduler_v2` passes `False` by default; `StepLRScheduler` alone
//! defaults to `True`).

/// What follows the warmup.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decay {
    /// timm's `CosineLRScheduler` (one cycle): `min + ½(base − min)(1 + cos(π·t/total))`,
    /// `min` from step `total` on.
    Cosine { min_lr: f64 },
    /// timm's `StepLRScheduler`: `base · rate^⌊t/every⌋` (the papers: 0.97 every 2.4 epochs).
    Exponential { rate: f64, every: f64 },
    /// `base` throughout.
    Constant,
}

/// A schedule over update steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub base_lr: f64,
    /// Warmup steps, and the learning rate warmup starts from.
    pub warmup: f64,
    pub warmup_lr: f64,
    /// Whether the decay starts counting after the warmup.
    pub warmup_prefix: bool,
    pub decay: Decay,
    /// The cosine's length in steps (timm's `t_initial`).
    pub total: f64,
}

impl Schedule {
    /// The learning rate of update step `t` (0-based).
    pub fn lr(&self, t: u64) -> f64 {
        let t = t as f64;
        if t < self.warmup {
            return self.warmup_lr + t * (self.base_lr - self.warmup_lr) / self.warmup;
        }
        let t = if self.warmup_prefix {
            t - self.warmup
        } else {
            t
        };
        match self.decay {
            Decay::Cosine { min_lr } if t < self.total => {
                min_lr
                    + 0.5
                        * (self.base_lr - min_lr)
                        * (1.0 + (std::f64::consts::PI * t / self.total).cos())
            }
            Decay::Cosine { min_lr } => min_lr,
            Decay::Exponential { rate, every } => self.base_lr * rate.powf((t / every).floor()),
            Decay::Constant => self.base_lr,
        }
    }
}
