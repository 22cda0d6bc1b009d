//! Training EfficientNets with effc. The forward and backward pass of a step
//! are the CPU reference executor's ([`effc_reference::train`]); this crate
//! adds what turns gradients into a trained model:
//!
//! - [`optim`]: SGD (momentum, Nesterov), RMSpropTF (timm's `rmsproptf`, the
//!   papers' optimizer), AdamW, with timm's default weight-decay mask (no decay
//!   on BN parameters and biases);
//! - [`schedule`]: warmup, then cosine, exponential (the papers' 0.97 every 2.4
//!   epochs) or constant learning rate, as timm's schedulers compute them;
//! - [`ema`]: an exponential moving average of the weights (timm's `ModelEmaV2`).
//!
//! Each is checked against `torch.optim` and timm by
//! `tests/fixtures/train/make_optim_fixtures.py`.

pub mod augment;
pub mod data;
pub mod ema;
pub mod init;
pub mod job;
pub mod optim;
pub mod progressive;
pub mod schedule;
pub mod trainer;
