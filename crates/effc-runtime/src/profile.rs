//! Timing: whole forwards, and each kernel (timestamp queries where the adapter has
//! them, otherwise each kernel dispatched alone).

use std::time::Instant;

use crate::{CompiledModel, GpuError};

/// How kernel times were measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelTiming {
    /// GPU timestamps around each kernel's pass, within one forward.
    Timestamps,
    /// Each kernel dispatched alone, repeated, timed on the host.
    Alone,
}

impl CompiledModel {
    /// Wall time of one whole forward of `batch` images (upload excluded, read-back
    /// included), in milliseconds. The input must have been uploaded.
    pub fn time_forward(&self, batch: usize) -> Result<f64, GpuError> {
        let t = Instant::now();
        self.run_uploaded(batch, "effc bench")?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    }

    /// Milliseconds per kernel for one chunk of `batch` images (at most
    /// [`CompiledModel::chunk`]), the median of `reps` measurements.
    pub fn time_kernels(
        &self,
        batch: usize,
        reps: usize,
        prefer: Option<KernelTiming>,
    ) -> Result<(KernelTiming, Vec<f64>), GpuError> {
        let n = batch.min(self.chunk).max(1);
        let reps = reps.max(1);
        let use_ts = match prefer {
            Some(KernelTiming::Alone) => false,
            _ => self.gpu.has_timestamps(),
        };
        let k = self.plan.kernels.len();
        let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(reps); k];
        if use_ts {
            let qs = self.gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("effc timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * k as u32,
            });
            let size = (16 * k) as u64;
            let resolve = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps read"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let period = self.gpu.queue.get_timestamp_period() as f64;
            for _ in 0..reps {
                let mut encoder = self.encoder("effc profile");
                self.encode_dispatches(&mut encoder, n, Some(&qs));
                encoder.resolve_query_set(&qs, 0..2 * k as u32, &resolve, 0);
                encoder.copy_buffer_to_buffer(&resolve, 0, &read, 0, size);
                self.gpu.queue.submit([encoder.finish()]);
                let ts: Vec<u64> =
                    self.gpu
                        .read_back(&read, size, "profiling kernels", "the timestamps")?;
                for (i, s) in samples.iter_mut().enumerate() {
                    s.push(ts[2 * i + 1].saturating_sub(ts[2 * i]) as f64 * period / 1e6);
                }
            }
        } else {
            for (i, s) in samples.iter_mut().enumerate() {
                for _ in 0..reps {
                    let t = Instant::now();
                    let mut encoder = self.encoder("effc profile");
                    self.encode_kernel(&mut encoder, i, n);
                    self.gpu.queue.submit([encoder.finish()]);
                    self.gpu.wait("profiling kernels")?;
                    s.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        let timing = if use_ts {
            KernelTiming::Timestamps
        } else {
            KernelTiming::Alone
        };
        Ok((
            timing,
            samples.into_iter().map(|mut s| median(&mut s)).collect(),
        ))
    }
}

/// The median of a sample (sorts it).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
