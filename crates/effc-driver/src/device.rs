//! Where a model runs: a hardware GPU by default, else effc's CPU backend (the
//! fused plan on the CPU, `effc-cpu`); a software adapter (a CPU emulating a GPU,
//! such as Mesa's llvmpipe) only when asked for, with `--device gpu` or a `WGPU_*`
//! variable, because the CPU backend is faster on the same CPU. The reference
//! executor (the oracle) stays reachable as `--device reference`.

use std::sync::Arc;

use effc_plan::Precision;
use effc_runtime::{Gpu, GpuError};

use crate::Error;

/// The device a user asks for (`--device`). More backends join as variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The compiled WGSL kernels on a wgpu adapter (a software one too).
    Gpu,
    /// effc's CPU backend: the fused plan executed on the CPU (`effc-cpu`).
    Cpu,
    /// The reference executor (plain f32 code on the CPU, the oracle).
    Reference,
}

impl Device {
    /// Every device, with its name and what it is (for `--help` and errors).
    pub const ALL: [(Device, &'static str, &'static str); 3] = [
        (
            Device::Gpu,
            "gpu",
            "the compiled WGSL kernels on a wgpu adapter (a software one too)",
        ),
        (
            Device::Cpu,
            "cpu",
            "effc's CPU backend: the fused plan on the CPU (f32)",
        ),
        (
            Device::Reference,
            "reference",
            "the reference executor (plain f32 code on the CPU, the oracle)",
        ),
    ];

    pub fn name(self) -> &'static str {
        Device::ALL
            .iter()
            .find(|(d, _, _)| *d == self)
            .map_or("?", |(_, n, _)| n)
    }
}

impl std::str::FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Device, String> {
        Device::ALL
            .iter()
            .find(|(_, n, _)| *n == s)
            .map(|(d, _, _)| *d)
            .ok_or_else(|| {
                let names: Vec<&str> = Device::ALL.iter().map(|(_, n, _)| *n).collect();
                format!("unknown device `{s}`: {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The device chosen, opened, and why (a line for the user, e.g. on stderr).
pub enum Chosen {
    Gpu {
        gpu: Arc<Gpu>,
        note: String,
    },
    /// effc's CPU backend (`effc-cpu`).
    Cpu {
        note: String,
    },
    /// The reference executor.
    Reference {
        note: String,
    },
}

impl Chosen {
    /// Which device was used and why: `running on <adapter>`, `running on the
    /// CPU reference executor (no hardware GPU; ...)`.
    pub fn note(&self) -> &str {
        match self {
            Chosen::Gpu { note, .. } | Chosen::Cpu { note } | Chosen::Reference { note } => note,
        }
    }

    pub fn gpu(&self) -> Option<&Arc<Gpu>> {
        match self {
            Chosen::Gpu { gpu, .. } => Some(gpu),
            Chosen::Cpu { .. } | Chosen::Reference { .. } => None,
        }
    }
}

/// The backend names `WGPU_BACKEND` takes (wgpu's, comma-separated).
const BACKENDS: [&str; 11] = [
    "vulkan", "vk", "dx12", "d3d12", "metal", "mtl", "opengl", "gles", "gl", "webgpu", "noop",
];

/// Checks `WGPU_BACKEND`: wgpu ignores a name it does not know, which silently
/// leaves no backend at all.
pub fn check_env() -> Result<(), Error> {
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
    Err(Error::Environment(format!(
        "WGPU_BACKEND=`{v}`: unknown backend {}; valid values (comma-separated): vulkan, dx12, metal, gl, webgpu, noop (or vk, d3d12, mtl, opengl, gles)",
        unknown
            .iter()
            .map(|b| format!("`{b}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Whether the user named an adapter or backend through wgpu's variables.
fn asked_for_gpu() -> bool {
    std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("WGPU_"))
}

/// Whether wgpu reports the adapter as a CPU (a software rasterizer).
pub fn is_software(gpu: &Gpu) -> bool {
    gpu.adapter.device_type.eq_ignore_ascii_case("cpu")
}

/// Opens the GPU (checking `WGPU_BACKEND` first), for commands that need one.
pub fn open_gpu() -> Result<Arc<Gpu>, Error> {
    check_env()?;
    Ok(Arc::new(Gpu::new()?))
}

/// Chooses the device for `requested`. f16 storage is a GPU format (the
/// CPU backend and the reference executor compute in f32): at [`Precision::F16`]
/// the default is the GPU, a software adapter too, and the CPU devices are refused.
pub fn choose(requested: Option<Device>, precision: Precision) -> Result<Chosen, Error> {
    check_env()?;
    let gpu = |gpu: Gpu| {
        let note = format!("running on {}", gpu.adapter);
        Chosen::Gpu {
            gpu: Arc::new(gpu),
            note,
        }
    };
    if precision == Precision::F16 {
        return match requested {
            Some(Device::Cpu) => Err(Error::Usage(
                "--precision f16 stores weights and activations as halves on a GPU; effc's CPU backend (like the CPU reference executor) computes in f32 (drop --device cpu, or use --precision f32)".into(),
            )),
            Some(Device::Reference) => Err(Error::Usage(
                "--precision f16 stores weights and activations as halves on a GPU; the CPU reference executor computes in f32 (drop --device reference, or use --precision f32)".into(),
            )),
            _ => Ok(gpu(Gpu::new()?)),
        };
    }
    match requested {
        Some(Device::Cpu) => Ok(Chosen::Cpu {
            note: "running on effc's CPU backend (--device cpu)".into(),
        }),
        Some(Device::Reference) => Ok(Chosen::Reference {
            note: "running on the CPU reference executor (--device reference)".into(),
        }),
        Some(Device::Gpu) => Ok(gpu(Gpu::new()?)),
        None if asked_for_gpu() => Ok(gpu(Gpu::new()?)),
        None => match Gpu::new() {
            Ok(g) if is_software(&g) => Ok(Chosen::Cpu {
                note: format!(
                    "running on effc's CPU backend (no hardware GPU; {} available with --device gpu)",
                    g.adapter.name
                ),
            }),
            Ok(g) => Ok(gpu(g)),
            Err(
                e @ (GpuError::NoAdapter(_) | GpuError::NoCompute(_) | GpuError::Device { .. }),
            ) => Ok(Chosen::Cpu {
                note: format!("running on effc's CPU backend ({e})"),
            }),
            Err(e) => Err(e.into()),
        },
    }
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

    #[test]
    fn device_names_round_trip() {
        for (d, n, _) in Device::ALL {
            assert_eq!(n.parse::<Device>(), Ok(d));
            assert_eq!(d.to_string(), n);
        }
        assert!("tpu"
            .parse::<Device>()
            .unwrap_err()
            .contains("gpu, cpu, reference"));
    }
}
