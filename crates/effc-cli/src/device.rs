//! Where `effc run` and `effc bench` run a model: a hardware GPU by default, else
//! the CPU reference executor; a software adapter (a CPU emulating a GPU, such as
//! Mesa's llvmpipe) only when asked for, with `--device gpu` or a `WGPU_*`
//! variable, because the reference executor is faster on the same CPU.

use std::sync::Arc;

use clap::ValueEnum;
use effc_plan::Precision;
use effc_runtime::{Gpu, GpuError};

use crate::Failure;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The compiled WGSL kernels on a wgpu adapter (a software one too).
    Gpu,
    /// The reference executor (plain f32 code on the CPU).
    Cpu,
}

/// The device chosen, the GPU opened.
pub enum Choice {
    Gpu(Arc<Gpu>),
    Cpu,
}

/// The backend names `WGPU_BACKEND` takes (wgpu's, comma-separated).
const BACKENDS: [&str; 11] = [
    "vulkan", "vk", "dx12", "d3d12", "metal", "mtl", "opengl", "gles", "gl", "webgpu", "noop",
];

/// Checks `WGPU_BACKEND`: wgpu ignores a name it does not know, which silently
/// leaves no backend at all.
pub fn check_env() -> Result<(), Failure> {
    let Some(v) = std::env::var_os("WGPU_BACKEND") else {
        return Ok(());
    };
    let v = v.to_string_lossy();
    let unknown: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|b| !BACKENDS.contains(&b.to_ascii_lowercase().as_str()))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(format!(
        "WGPU_BACKEND=`{v}`: unknown backend {}; valid values (comma-separated): vulkan, dx12, metal, gl, webgpu, noop (or vk, d3d12, mtl, opengl, gles)",
        unknown
            .iter()
            .map(|b| format!("`{b}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .into())
}

/// Whether the user named an adapter or backend through wgpu's variables.
fn asked_for_gpu() -> bool {
    std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("WGPU_"))
}

/// Whether wgpu reports the adapter as a CPU (a software rasterizer).
pub fn is_software(gpu: &Gpu) -> bool {
    gpu.adapter.device_type.eq_ignore_ascii_case("cpu")
}

/// Chooses the device for `requested` and says on stderr which was used. f16
/// storage is a GPU format (the reference executor computes in f32): at
/// [`Precision::F16`] the default is the GPU, a software adapter too, and
/// `--device cpu` is refused.
pub fn choose(requested: Option<Device>, precision: Precision) -> Result<Choice, Failure> {
    check_env()?;
    if precision == Precision::F16 {
        return match requested {
            Some(Device::Cpu) => Err(
                "--precision f16 stores weights and activations as halves on a GPU; the CPU reference executor computes in f32 (drop --device cpu, or use --precision f32)"
                    .into(),
            ),
            _ => open_gpu(),
        };
    }
    match requested {
        Some(Device::Cpu) => {
            eprintln!("note: running on the CPU reference executor (--device cpu)");
            Ok(Choice::Cpu)
        }
        Some(Device::Gpu) => open_gpu(),
        None if asked_for_gpu() => open_gpu(),
        None => match Gpu::new() {
            Ok(gpu) if is_software(&gpu) => {
                eprintln!(
                    "note: running on the CPU reference executor (no hardware GPU; {} available with --device gpu)",
                    gpu.adapter.name
                );
                Ok(Choice::Cpu)
            }
            Ok(gpu) => {
                eprintln!("note: running on {}", gpu.adapter);
                Ok(Choice::Gpu(Arc::new(gpu)))
            }
            Err(
                e @ (GpuError::NoAdapter(_) | GpuError::NoCompute(_) | GpuError::Device { .. }),
            ) => {
                eprintln!("note: running on the CPU reference executor ({e})");
                Ok(Choice::Cpu)
            }
            Err(e) => Err(e.into()),
        },
    }
}

fn open_gpu() -> Result<Choice, Failure> {
    let gpu = Gpu::new()?;
    eprintln!("note: running on {}", gpu.adapter);
    Ok(Choice::Gpu(Arc::new(gpu)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wgpu_backend_names() {
        // The parser wgpu uses knows every name of the list.
        for b in BACKENDS {
            assert!(
                !wgpu::Backends::from_comma_list(b).is_empty(),
                "wgpu does not know `{b}`"
            );
        }
        assert!(wgpu::Backends::from_comma_list("nonsense").is_empty());
    }
}
