//! Passes from the IR to a kernel plan: which fused GPU kernels run, in which order,
//! on which tensors, where each tensor lives, and how each kernel's weights are packed.
//!
//! - [`plan`]: the plan's types ([`Plan`], [`Kernel`], [`Op`], tensors, bindings);
//!   [`print`] prints it, [`validate`] checks its invariants;
//! - [`tiles`]: tile types, their cost models and the candidates worth measuring;
//! - [`fuse`]: the fusion pass, IR → [`Plan`] (kernels over tensors);
//! - [`layout`]: where each part of a kernel's packed weights lives;
//! - [`features`]: a backbone's feature levels (what it writes, invariant 10);
//! - [`memory`]: the memory plan, tensors → buffers ("slots") by liveness;
//! - [`precision`]: f32 or f16 storage, and converting values to it;
//! - [`pack`]: BN folding and weight packing for each kernel, from a checkpoint's tensors;
//! - [`tune`]: tiles measured on an adapter, per kernel shape, instead of the cost models;
//! - [`needs`]: what a plan needs of an adapter ([`AdapterNeeds`]), as data the native
//!   and the web runtime compare with the adapter's limits.
//!
//! Modules depend one way: `tiles`, `layout` ← `plan` ← `memory`, `tune`, `validate`,
//! `print`, `pack` ← `fuse`.
//!
//! Every decision (fusion, layout, tiling, buffer reuse) is made here, as plain data
//! that prints and can be tested; the WGSL emitter and the runtime only follow it.
//! This crate does no I/O and knows nothing of wgpu.

pub mod features;
pub mod fuse;
mod intern;
pub mod layout;
pub mod memory;
pub mod needs;
pub mod pack;
pub mod plan;
pub mod precision;
pub mod print;
pub mod probe;
pub mod tiles;
pub mod tune;
pub mod validate;

pub use features::FeatureOutput;
pub use fuse::{plan, plan_at, plan_tuned, plan_with};
pub use layout::{ElemType, Section, WeightLayout};
pub use needs::{AdapterNeeds, Largest};
pub use pack::{check_folding, fold_bn, pack_weights, PackError};
pub use plan::{
    ALoad, Binding, ClassifierOp, DwOp, Epilogue, GemmOp, Kernel, Op, Plan, SeOp, Slot, SlotId,
    Source, TensorDesc, TensorId, TensorKind,
};
pub use precision::{Encoded, Precision};
pub use probe::gemm_probe;
pub use tiles::{dw_tiles, gemm_tiles, DwTiles, GemmTiles, Tiles};
pub use tune::Tuning;
