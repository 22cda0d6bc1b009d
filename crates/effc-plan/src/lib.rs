//! Passes from the IR to a kernel plan: which fused GPU kernels run, in which order,
//! on which tensors, where each tensor lives, and how each kernel's weights are packed.
//!
//! - [`fuse`]: the fusion pass, IR → [`Plan`] (kernels over tensors);
//! - [`layout`]: where each part of a kernel's packed weights lives;
//! - [`memory`]: the memory plan, tensors → buffers ("slots") by liveness;
//! - [`pack`]: BN folding and weight packing for each kernel, from a checkpoint's tensors;
//! - [`tune`]: tiles measured on an adapter, per kernel shape, instead of the cost models.
//!
//! Every decision (fusion, layout, tiling, buffer reuse) is made here, as plain data
//! that prints and can be tested; the WGSL emitter and the runtime only follow it.
//! This crate does no I/O and knows nothing of wgpu.

pub mod fuse;
pub mod layout;
pub mod memory;
pub mod pack;
pub mod tune;

pub use fuse::{
    dw_tiles, gemm_probe, gemm_tiles, plan, plan_tuned, ALoad, DwOp, DwTiles, Epilogue, GemmOp,
    GemmTiles, HeadOp, Kernel, Op, Plan, SeOp, TensorDesc, TensorId, TensorKind,
};
pub use layout::{ElemType, Section, WeightLayout};
pub use memory::Slot;
pub use pack::{fold_bn, pack_weights, PackError};
pub use tune::Tuning;
