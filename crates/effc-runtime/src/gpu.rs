//! [`Gpu`]: an open device on the adapter [`crate::adapter`] chose, the errors it
//! reports, waiting for it and reading buffers back.

use std::sync::{Arc, Mutex, PoisonError};

use effc_plan::{Plan, Precision};
use effc_wgsl::{Shader, Spelling};

use crate::adapter::{self, AdapterSummary};
use crate::pipelines::PipelineCache;
use crate::GpuError;

/// An open GPU device.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    /// The adapter's limits; [`crate::fit()`] checks models against them.
    pub limits: wgpu::Limits,
    lost: Arc<Mutex<Option<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
    /// Pipelines shared by every model compiled on this device.
    pub(crate) pipelines: PipelineCache,
    /// How f16 storage can be spelled here: the device has `shader-f16` (native),
    /// the adapter has the packed-half built-ins (packed); and the spelling forced
    /// by `EFFC_F16` or [`Gpu::force_f16_spelling`].
    f16_native: bool,
    f16_packed: bool,
    f16_forced: Option<Spelling>,
}

/// The environment variable that forces an f16 spelling: `native`, `packed` or
/// `auto` (the default: native where the device has it).
pub const F16_ENV: &str = "EFFC_F16";

impl Gpu {
    /// Chooses an adapter (see [`crate::adapter`]) and opens a device on it, with
    /// all of its limits and timestamp queries where it has them.
    pub fn new() -> Result<Gpu, GpuError> {
        pollster::block_on(async {
            let (adapter, summary) = adapter::choose().await?;
            Self::open(adapter, summary).await
        })
    }

    /// The process's shared device: opened by [`Gpu::new`] on the first call, the
    /// same one after (a failure is returned and the next call tries again).
    pub fn shared() -> Result<std::sync::Arc<Gpu>, GpuError> {
        static SHARED: std::sync::Mutex<Option<std::sync::Arc<Gpu>>> = std::sync::Mutex::new(None);
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = &*shared {
            return Ok(g.clone());
        }
        let g = std::sync::Arc::new(Gpu::new()?);
        *shared = Some(g.clone());
        Ok(g)
    }

    async fn open(adapter: wgpu::Adapter, summary: AdapterSummary) -> Result<Gpu, GpuError> {
        let limits = adapter.limits();
        let mut features = wgpu::Features::empty();
        for wanted in [wgpu::Features::TIMESTAMP_QUERY, wgpu::Features::SHADER_F16] {
            if adapter.features().contains(wanted) {
                features |= wanted;
            }
        }
        let f16_packed = adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32);
        let f16_forced = match std::env::var(F16_ENV) {
            Err(_) => None,
            Ok(v) if v.is_empty() || v == "auto" => None,
            Ok(v) => Some(v.parse::<Spelling>().map_err(|e| GpuError::F16 {
                adapter: summary.to_string(),
                message: format!("{F16_ENV}: {e}, or auto"),
            })?),
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("effc"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::Device {
                adapter: summary.to_string(),
                message: e.to_string(),
            })?;
        let lost = Arc::new(Mutex::new(None));
        let errors = Arc::new(Mutex::new(Vec::new()));
        {
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, msg| {
                *lost.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(format!("{reason:?}: {msg}"));
            });
        }
        {
            let errors = errors.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                errors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(e.to_string());
            }));
        }
        Ok(Gpu {
            device,
            queue,
            adapter: summary,
            limits,
            lost,
            errors,
            pipelines: PipelineCache::default(),
            f16_native: features.contains(wgpu::Features::SHADER_F16),
            f16_packed,
            f16_forced,
        })
    }

    /// Forces the spelling of f16 storage for models compiled on this device from
    /// now on (the API counterpart of `EFFC_F16`); fails if the adapter lacks it.
    pub fn force_f16_spelling(&mut self, spelling: Spelling) -> Result<(), GpuError> {
        self.f16_forced = Some(spelling);
        self.f16_spelling().map(|_| ())
    }

    /// How f16 storage is spelled on this device: the forced spelling, else native
    /// where the device has `shader-f16`, else packed halves.
    pub fn f16_spelling(&self) -> Result<Spelling, GpuError> {
        let has = |s| match s {
            Spelling::Native => self.f16_native,
            Spelling::Packed => self.f16_packed,
        };
        let chosen = match self.f16_forced {
            Some(s) => Some(s).filter(|&s| has(s)),
            None => [Spelling::Native, Spelling::Packed]
                .into_iter()
                .find(|&s| has(s)),
        };
        chosen.ok_or_else(|| GpuError::F16 {
            adapter: self.adapter.to_string(),
            message: match self.f16_forced {
                Some(Spelling::Native) => "it has no shader-f16 feature (try packed)".into(),
                _ => "it has neither shader-f16 nor the packed-half built-ins \
                      (pack2x16float); use --precision f32"
                    .into(),
            },
        })
    }

    /// Emits and validates the shaders of `plan` as this device needs them (f16
    /// storage in [`Gpu::f16_spelling`]).
    pub fn shaders(&self, plan: &Plan) -> Result<Vec<Shader>, GpuError> {
        Ok(match plan.precision {
            Precision::F32 => effc_wgsl::compile(plan)?,
            Precision::F16 => effc_wgsl::compile_as(plan, self.f16_spelling()?)?,
        })
    }

    /// Fails with the first error the device reported since the last check.
    pub fn check(&self, during: &str) -> Result<(), GpuError> {
        if let Some(l) = self
            .lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Err(GpuError::Lost(l));
        }
        let mut errs = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        if !errs.is_empty() {
            let message = errs.join("\n");
            errs.clear();
            return Err(GpuError::Validation {
                during: during.into(),
                message,
            });
        }
        Ok(())
    }

    /// Whether the device can time kernels with timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Waits until the GPU has done everything submitted, then [`Gpu::check`]s.
    pub(crate) fn wait(&self, during: &str) -> Result<(), GpuError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Wait {
                during: during.into(),
                message: e.to_string(),
            })?;
        self.check(during)
    }

    /// Waits for the GPU (`during` says what it was doing) and reads the first
    /// `bytes` of a `MAP_READ` buffer (`what` names it in errors); unmaps it after.
    pub(crate) fn read_back<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        bytes: u64,
        during: &str,
        what: &str,
    ) -> Result<Vec<T>, GpuError> {
        let failed = |message: String| GpuError::ReadBack {
            what: what.into(),
            message,
        };
        let slice = buffer.slice(0..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait(during)?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => return Err(failed("the buffer was never mapped".into())),
        }
        let values = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| failed(e.to_string()))?;
            bytemuck::pod_collect_to_vec(&view)
        };
        buffer.unmap();
        Ok(values)
    }
}
