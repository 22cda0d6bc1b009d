//! Shared test helpers, for effc's tests only (`publish = false`, a dev-dependency).
//!
//! - [`spec`]: the one file-driven harness of `tests/specs/**/*.enet`. Every spec
//!   states in its header which checks it takes (`# check: ir plan wgsl gpu`) and
//!   their parameters (`# batch: 2`, `# expect-error: 6:21`, `# expect-params: N`);
//!   each crate's test runs the checks it owns on the specs that ask for them.
//! - [`close`]: the closeness rule of `tests/fixtures/README.md`
//!   (max|got − want| ≤ 1e-3 · max|want|) and the error it measures.
//! - [`data`]: fixtures' paths, f32 safetensors files, seeded inputs, random
//!   checkpoints.
//! - [`http`]: a raw HTTP/1.1 request for the tests of `effc serve`.
//! - [`train`]: the training-step fixtures of `tests/fixtures/train`.

pub mod close;
pub mod data;
pub mod http;
pub mod spec;
pub mod train;

pub use close::{assert_close, assert_close_within, rel_err};
pub use data::{
    checkpoint_bytes, fashion_mnist, fixtures, ramp, read_tensor, read_tensors, root, seeded,
};
pub use spec::{Check, Header, SpecCase};
