//! The training kernels: forward in train mode, backward, and the fused
//! optimizer update, each one WGSL compute shader per *kind* of operation.
//!
//! Unlike the inference kernels (shapes baked in as constants, one shader per
//! planned kernel), a training kernel reads its shapes and buffer offsets from
//! a uniform struct at a dynamic offset, so one pipeline per kind serves every
//! layer of every model: a training step of b0 has a few hundred dispatches but
//! only [`Kind::ALL`] pipelines to compile (the first version favours few,
//! simple, unfused kernels over speed; fusion and tiling come with the training
//! plan).
//!
//! Every kernel but [`Kind::Update`] binds the same four things:
//! `prm` (the flat parameter buffer, in `Model::params` order, f32), `grd` (the
//! flat gradient buffer, same layout), `buf` (the arena holding every
//! activation, saved tensor and gradient of the step) and the uniform `p`.
//! Offsets are element indices into those buffers; `NONE` (`0xffffffff`) marks
//! an absent optional operand.
//!
//! Determinism: no kernel uses atomics; every sum is taken in a fixed order,
//! either sequentially by one invocation or by a fixed tree over one workgroup
//! (BN statistics and BN backward's two per-channel sums), so two runs give the
//! same bits.
//!
//! Elementwise kernels are dispatched as a 2-D grid of 64-wide workgroups:
//! invocation `g.x + g.y·xs` handles item `i < n`. Per-channel reductions
//! ([`Kind::BnStats`], [`Kind::BnBwdSums`]) run one workgroup per channel,
//! workgroup `w.x + w.y·xs`.

mod kernels;

/// The workgroup width of every training kernel.
pub const WORKGROUP: u32 = 64;

/// An absent optional offset.
pub const NONE: u32 = u32::MAX;

/// Activation codes shared by the kernels' `act` fields.
pub mod act {
    pub const NONE: u32 = 0;
    pub const SWISH: u32 = 1;
    pub const RELU: u32 = 2;
    pub const RELU6: u32 = 3;
    pub const SIGMOID: u32 = 4;
}

/// The optimizer codes of [`Kind::Update`]'s `kind` field.
pub mod optimizer {
    pub const SGD: u32 = 0;
    pub const RMSPROP_TF: u32 = 1;
    pub const ADAMW: u32 = 2;
}

/// What a kernel kind does per invocation, for the dispatch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grid {
    /// One invocation per item.
    Items,
    /// One 64-invocation workgroup per item.
    Groups,
}

/// One kind of training kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Dense (groups 1) convolution, NHWC, weights `[out, in, k, k]`.
    ConvFwd,
    /// Depthwise convolution, weights `[c, 1, k, k]`.
    DwFwd,
    /// BN batch statistics per channel (mean, 1/√(σ²+ε)) and the running update.
    BnStats,
    /// `act(γ·(z − μ)·istd + β)`.
    BnAct,
    /// Mean over each image's pixels, `[n·hw, c]` → `[n, c]`.
    Pool,
    /// `y = act(x·Wᵀ + b)`, optionally saving the pre-activation.
    Linear,
    /// Elementwise product.
    Mul,
    /// SE's multiply: `y = x·gate[image, channel]`.
    SeMul,
    /// `y = h·scale[image] + skip` (either optional): residual and drop path.
    Residual,
    /// Softmax cross-entropy against a target distribution per row; writes the
    /// per-row loss and the logits' gradient.
    Loss,
    /// `dW = dyᵀ·x`, `db = Σ dy`, `dx = dy·W` (then ×mask or ×act′).
    LinearBwd,
    /// Each pixel gets its image's `dp/hw`.
    PoolBwd,
    /// BN backward's per-channel `Σdy` and `Σdy·x̂` (through the activation).
    BnBwdSums,
    /// BN backward's data gradient from the two sums.
    BnBwdDz,
    /// Dense convolution's weight gradient.
    ConvBwdW,
    /// Dense convolution's data gradient (plus an optional added gradient).
    ConvBwdX,
    /// Depthwise weight gradient.
    DwBwdW,
    /// Depthwise data gradient (plus an optional added gradient).
    DwBwdX,
    /// SE's gate gradient before the sigmoid: `Σ_px dy·x · g(1 − g)`.
    SeGate,
    /// SE's data gradient: `dy·gate + dpooled/hw`.
    SeBwdX,
    /// The fused optimizer update (SGD, RMSpropTF, AdamW) and EMA over the flat
    /// parameter buffer.
    Update,
}

impl Kind {
    pub const ALL: [Kind; 21] = [
        Kind::ConvFwd,
        Kind::DwFwd,
        Kind::BnStats,
        Kind::BnAct,
        Kind::Pool,
        Kind::Linear,
        Kind::Mul,
        Kind::SeMul,
        Kind::Residual,
        Kind::Loss,
        Kind::LinearBwd,
        Kind::PoolBwd,
        Kind::BnBwdSums,
        Kind::BnBwdDz,
        Kind::ConvBwdW,
        Kind::ConvBwdX,
        Kind::DwBwdW,
        Kind::DwBwdX,
        Kind::SeGate,
        Kind::SeBwdX,
        Kind::Update,
    ];

    pub fn name(self) -> &'static str {
        kernels::of(self).0
    }

    /// The fields of the kernel's uniform struct after `n` and `xs`, in order;
    /// every field is a `u32` (floats are their bits).
    pub fn fields(self) -> &'static [&'static str] {
        kernels::of(self).1
    }

    pub fn grid(self) -> Grid {
        match self {
            Kind::BnStats | Kind::BnBwdSums => Grid::Groups,
            _ => Grid::Items,
        }
    }

    /// The WGSL of the kernel.
    pub fn source(self) -> String {
        let (name, fields, body) = kernels::of(self);
        let mut o =
            format!("// effc training kernel `{name}`\n\nstruct P {{\n    n: u32,\n    xs: u32,\n");
        for f in fields {
            o.push_str(&format!("    {f}: u32,\n"));
        }
        o.push_str("}\n\n");
        if self == Kind::Update {
            o.push_str(kernels::UPDATE_BINDINGS);
        } else {
            o.push_str(kernels::BINDINGS);
        }
        o.push_str(kernels::COMMON);
        o.push_str(&body);
        o
    }
}

/// Uniform words of one dispatch of `kind`: `n`, `xs` (filled at dispatch),
/// then `fields` by name. Panics if a field is missing or unknown: a bug in the
/// caller, caught by its tests.
pub fn words(kind: Kind, n: u32, fields: &[(&str, u32)]) -> Vec<u32> {
    let names = kind.fields();
    let mut w = vec![n, 0];
    for name in names {
        let v = fields
            .iter()
            .find(|(f, _)| f == name)
            .unwrap_or_else(|| panic!("kernel {}: field `{name}` not given", kind.name()));
        w.push(v.1);
    }
    for (f, _) in fields {
        assert!(names.contains(f), "kernel {}: no field `{f}`", kind.name());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_training_kernel_validates() {
        for k in Kind::ALL {
            let src = k.source();
            if let Err(e) = crate::validate(&src) {
                panic!("{}:\n{e}\n{src}", k.name());
            }
        }
    }

    #[test]
    fn uniforms_fit_a_256_byte_slot() {
        for k in Kind::ALL {
            assert!((2 + k.fields().len()) * 4 <= 256, "{}", k.name());
        }
    }

    #[test]
    fn words_follow_the_struct() {
        let w = words(Kind::Mul, 7, &[("y", 3), ("x", 1), ("m", 2)]);
        assert_eq!(w, vec![7, 0, 1, 2, 3]);
    }

    #[test]
    #[should_panic(expected = "field `m` not given")]
    fn a_missing_field_is_caught() {
        words(Kind::Mul, 7, &[("y", 3), ("x", 1)]);
    }
}
