//! [`Gpu`]: an open device on the adapter [`crate::adapter`] chose, the errors it
//! reports, waiting for it and reading buffers back.

use std::sync::{Arc, Mutex, PoisonError};

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
}

impl Gpu {
    /// Chooses an adapter (see [`crate::adapter`]) and opens a device on it, with
    /// all of its limits and timestamp queries where it has them.
    pub fn new() -> Result<Gpu, GpuError> {
        pollster::block_on(async {
            let (adapter, summary) = adapter::choose().await?;
            Self::open(adapter, summary).await
        })
    }

    async fn open(adapter: wgpu::Adapter, summary: AdapterSummary) -> Result<Gpu, GpuError> {
        let limits = adapter.limits();
        let mut features = wgpu::Features::empty();
        if adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
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
