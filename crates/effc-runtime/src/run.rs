//! Running a [`CompiledModel`]: uploading a batch, recording its dispatches chunk by
//! chunk (one helper records a kernel's dispatch, for forwards, profiling and
//! tuning alike) and reading results back.

use std::sync::PoisonError;

use effc_plan::TensorKind;

use crate::{CompiledModel, GpuError};

impl CompiledModel {
    /// Runs a batch: `input` is NCHW f32 (`batch × 3 × H × W`); returns
    /// `batch × output_len` values (logits, the embedding, or per image every
    /// feature level of a backbone; [`CompiledModel::features`] splits them).
    pub fn forward(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, GpuError> {
        self.upload(input, batch)?;
        self.run_uploaded(batch, "effc forward")
    }

    /// Records, submits and reads back a whole forward of `batch` images already
    /// uploaded.
    pub(crate) fn run_uploaded(&self, batch: usize, label: &str) -> Result<Vec<f32>, GpuError> {
        let mut encoder = self.encoder(label);
        self.encode_batch(&mut encoder, batch, None);
        self.gpu.queue.submit([encoder.finish()]);
        self.read_output(batch)
    }

    pub(crate) fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// Converts NCHW input to the plan's padded NHWC and writes it to the GPU.
    pub fn upload(&self, input: &[f32], batch: usize) -> Result<(), GpuError> {
        let [c, h, w] = self.plan.input_shape;
        if batch == 0 {
            return Err(GpuError::EmptyBatch);
        }
        if batch > self.max_batch {
            return Err(GpuError::Batch {
                batch,
                max: self.max_batch,
            });
        }
        let expected = batch * c * h * w;
        if input.len() != expected {
            return Err(GpuError::InputShape {
                got: input.len(),
                expected,
                batch,
                shape: format!("{c}x{h}x{w}"),
            });
        }
        let c4 = self.plan.tensors[self.plan.input].c4 * 4;
        // Every value of the batch is written below, so a panic elsewhere while it
        // was held leaves nothing to recover.
        let mut buf = self.scratch.lock().unwrap_or_else(PoisonError::into_inner);
        let per = h * w * c4;
        for n in 0..batch {
            let dst = &mut buf[n * per..(n + 1) * per];
            for ch in 0..c4 {
                for p in 0..h * w {
                    dst[p * c4 + ch] = if ch < c {
                        input[(n * c + ch) * h * w + p]
                    } else {
                        0.0
                    };
                }
            }
        }
        // Stored at the plan's precision: f16 plans get the input rounded to halves
        // here (clamped to ±65504), and read it as halves.
        let elem = self.plan.tensors[self.plan.input].elem;
        let stored = effc_plan::precision::encode(elem, &buf[..batch * per]);
        self.gpu
            .queue
            .write_buffer(&self.input_all, 0, &stored.bytes);
        Ok(())
    }

    /// Records a whole forward of `batch` images (already uploaded) into `encoder`:
    /// per chunk, copy its input in, every dispatch, copy its output out. With
    /// `timestamps`, each kernel of the first chunk writes begin/end timestamps at
    /// query index `2·kernel`.
    pub fn encode_batch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        batch: usize,
        timestamps: Option<&wgpu::QuerySet>,
    ) {
        let in_bytes = self.plan.tensors[self.plan.input].bytes as u64;
        let in_slot = &self.slots[self.plan.tensors[self.plan.input].slot.index()];
        // What is copied out: the output, or every feature level of a backbone, each
        // to its own region of `batch` images (see `read_features`).
        let mut outs = vec![];
        let mut region = 0;
        for t in self.plan.output_tensors() {
            let t = &self.plan.tensors[t];
            outs.push((&self.slots[t.slot.index()], t.bytes as u64, region));
            region += t.bytes as u64 * batch as u64;
        }
        let mut start = 0;
        while start < batch {
            let n = self.chunk.min(batch - start);
            encoder.copy_buffer_to_buffer(
                &self.input_all,
                start as u64 * in_bytes,
                in_slot,
                0,
                n as u64 * in_bytes,
            );
            self.encode_dispatches(encoder, n, if start == 0 { timestamps } else { None });
            // Output sizes are whole f32s, so copies are 4-byte aligned.
            for &(slot, bytes, region) in &outs {
                encoder.copy_buffer_to_buffer(
                    slot,
                    0,
                    &self.output_all,
                    region + start as u64 * bytes,
                    n as u64 * bytes,
                );
            }
            start += n;
        }
    }

    /// Records the dispatches of one chunk of `n` images (input already in its buffer)
    /// into `encoder`, in one compute pass (or one pass per kernel with timestamps).
    pub fn encode_dispatches(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        n: usize,
        timestamps: Option<&wgpu::QuerySet>,
    ) {
        match timestamps {
            None => {
                let mut pass = begin_pass(encoder, "effc", None);
                for i in 0..self.plan.kernels.len() {
                    self.dispatch(&mut pass, i, n);
                }
            }
            Some(qs) => {
                for (i, k) in self.plan.kernels.iter().enumerate() {
                    let mut pass = begin_pass(encoder, &k.name, Some((qs, 2 * i as u32)));
                    self.dispatch(&mut pass, i, n);
                }
            }
        }
    }

    /// Records one kernel alone (for timing kernels one by one).
    pub fn encode_kernel(&self, encoder: &mut wgpu::CommandEncoder, kernel: usize, n: usize) {
        let mut pass = begin_pass(encoder, &self.plan.kernels[kernel].name, None);
        self.dispatch(&mut pass, kernel, n);
    }

    /// Records kernel `i` for `n` images into `pass`: the only place a dispatch is
    /// recorded.
    fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>, i: usize, n: usize) {
        let k = &self.plan.kernels[i];
        pass.set_pipeline(&self.pipelines[i]);
        pass.set_bind_group(0, &self.bind_groups[i], &[]);
        pass.dispatch_workgroups(k.grid[0], k.grid[1], n as u32);
    }

    /// Waits for the GPU and reads back the output of `batch` images (a backbone's:
    /// per image, its levels one after another, each NCHW).
    pub fn read_output(&self, batch: usize) -> Result<Vec<f32>, GpuError> {
        if self.plan.is_backbone() {
            return Ok(crate::features::per_image(&self.read_features(batch)?));
        }
        let bytes = (batch * self.plan.output_len * 4) as u64;
        self.gpu
            .read_back(&self.output_all, bytes, "running the model", "the output")
    }

    /// Reads a whole tensor of the plan from the last chunk run, NHWC with padded
    /// channels, `n` images, as f32 whatever its storage (for debugging where two
    /// implementations part).
    pub fn read_tensor(&self, tensor: usize, n: usize) -> Result<Vec<f32>, GpuError> {
        let t = &self.plan.tensors[tensor];
        let size = (t.bytes * n) as u64;
        let staging = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.encoder("readback");
        encoder.copy_buffer_to_buffer(&self.slots[t.slot.index()], 0, &staging, 0, size);
        self.gpu.queue.submit([encoder.finish()]);
        let bytes: Vec<u8> = self.gpu.read_back(
            &staging,
            size,
            "reading a tensor",
            &format!("tensor `{}`", t.name),
        )?;
        Ok(effc_plan::precision::decode(t.elem, &bytes))
    }

    /// Whether a tensor is an activation that survives until the end of a forward
    /// (not reused by a later one) — meaningful to read back with [`Self::read_tensor`].
    pub fn tensor_kind(&self, tensor: usize) -> TensorKind {
        self.plan.tensors[tensor].kind
    }
}

/// Begins a compute pass; with `timestamps` `(set, i)` it writes timestamps `i`
/// (beginning) and `i + 1` (end) of the set.
fn begin_pass<'e>(
    encoder: &'e mut wgpu::CommandEncoder,
    label: &str,
    timestamps: Option<(&wgpu::QuerySet, u32)>,
) -> wgpu::ComputePass<'e> {
    encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: timestamps.map(|(query_set, i)| wgpu::ComputePassTimestampWrites {
            query_set,
            beginning_of_pass_write_index: Some(i),
            end_of_pass_write_index: Some(i + 1),
        }),
    })
}
