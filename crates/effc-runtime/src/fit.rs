//! [`fit()`]: whether a plan fits an adapter's limits, and how a batch is cut into
//! chunks so that every activation buffer fits one storage binding. Pure: it reads
//! the plan and a `wgpu::Limits`, creates nothing, and is tested without an adapter.

use std::fmt;

use effc_plan::Plan;
use thiserror::Error;

/// How a plan is laid out on an adapter: the images per chunk and the size of
/// every buffer [`crate::CompiledModel`] creates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fit {
    /// Images per chunk: as many as every activation buffer can bind at once, at
    /// most the max batch (a batch runs in `ceil(batch / chunk)` passes).
    pub chunk: usize,
    /// Bytes of each kernel's weights buffer, in kernel order.
    pub weight_buffers: Vec<u64>,
    /// Bytes of each activation slot's buffer (one chunk of images).
    pub slot_buffers: Vec<u64>,
    /// Bytes of the buffer the whole max batch's input is uploaded to.
    pub input_buffer: u64,
    /// Bytes of the buffer the whole max batch's output is read back from.
    pub output_buffer: u64,
}

/// What of a plan exceeds which limit of the adapter.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FitError {
    #[error("the batch must be at least 1 image")]
    EmptyBatch,
    #[error("the weights of kernel `{kernel}` take {}, more than the adapter's largest storage binding ({})", Bytes(*bytes), Bytes(*max))]
    Weights {
        kernel: String,
        bytes: u64,
        max: u64,
    },
    #[error("kernel `{kernel}` binds {count} storage buffers, the adapter allows {max}")]
    StorageBuffers {
        kernel: String,
        count: u32,
        max: u32,
    },
    #[error("kernel `{kernel}` needs {count} workgroups in one dimension, the adapter allows {max} per dimension")]
    Workgroups {
        kernel: String,
        count: u32,
        max: u32,
    },
    #[error("kernel `{kernel}` has workgroups of {size} invocations in {axis}, the adapter allows {}x{}x{}", max[0], max[1], max[2])]
    WorkgroupSize {
        kernel: String,
        /// `x`, `y` or `z`.
        axis: char,
        size: u32,
        max: [u32; 3],
    },
    #[error(
        "kernel `{kernel}` uses {threads} invocations per workgroup, the adapter allows {max}"
    )]
    Invocations {
        kernel: String,
        threads: u32,
        max: u32,
    },
    #[error("activation `{tensor}` takes {} for one image, more than the adapter's largest storage binding ({}); use a smaller resolution", Bytes(*bytes), Bytes(*max))]
    Activation {
        tensor: String,
        bytes: u64,
        max: u64,
    },
    #[error("the {which} of a batch of {batch} images takes {}, more than the adapter's largest buffer ({}); a max batch of {fits} fits", Bytes(*bytes), Bytes(*max))]
    BatchBuffer {
        /// `input` or `output`.
        which: &'static str,
        batch: usize,
        bytes: u64,
        max: u64,
        fits: usize,
    },
}

/// A byte count for people: `512 B`, `4.9 MiB`, `2.4 GiB` (powers of 1024, one
/// decimal).
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = self.0 as f64;
        let mut u = 0;
        while v >= 1024.0 && u + 1 < UNITS.len() {
            v /= 1024.0;
            u += 1;
        }
        if u == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{v:.1} {}", UNITS[u])
        }
    }
}

/// What creating a [`crate::CompiledModel`] of `plan` and running batches of
/// `batch` images allocate on the host, in bytes, named: the weights packed in
/// f32 (BN folded), at f16 each kernel's halves for its upload, the staging of a
/// batch's input and output; on a software adapter (whose device memory is host
/// memory) also the device's weights and activation buffers.
pub fn host_memory(plan: &Plan, batch: usize, software: bool) -> Vec<(String, u64)> {
    let packed: u64 = plan
        .kernels
        .iter()
        .map(|k| (k.weights_len as u64).saturating_mul(4))
        .sum();
    let b = batch as u64;
    let io = (plan.tensors[plan.input].bytes as u64 + plan.output_bytes() as u64).saturating_mul(b);
    let mut v = vec![
        ("packed weights for the GPU".to_string(), packed),
        (format!("input and output staging, batch {batch}"), io),
    ];
    if !plan.precision.is_f32() {
        let largest = plan.kernels.iter().map(|k| k.layout.bytes() as u64).max();
        v.push((
            format!("{} copy of one kernel's weights", plan.precision),
            largest.unwrap_or(0),
        ));
    }
    if software {
        let slots: u64 = plan.slots.iter().map(|s| s.bytes as u64).sum();
        v.push((
            "software adapter: device weights".into(),
            plan.weight_bytes() as u64,
        ));
        v.push((
            format!("software adapter: activation buffers, batch {batch}"),
            slots.saturating_mul(b).saturating_add(io),
        ));
    }
    v
}

/// The kernel and the value of a need beyond `max`.
fn over<T: PartialOrd + Copy>(need: &effc_plan::Largest<T>, max: T) -> Option<(String, T)> {
    (need.value > max).then(|| (need.by.clone(), need.value))
}

/// Every buffer is at least this large (wgpu refuses empty bindings).
const MIN_BUFFER: u64 = 16;

/// Checks every kernel of `plan` (weights binding, storage buffers, workgroups and
/// their size) and every buffer against `limits`, and chooses the chunk for a
/// model created for batches up to `max_batch`. The first limit exceeded is the
/// error.
pub fn fit(plan: &Plan, limits: &wgpu::Limits, max_batch: usize) -> Result<Fit, FitError> {
    if max_batch == 0 {
        return Err(FitError::EmptyBatch);
    }
    let max_binding = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let max_wg = limits.max_compute_workgroups_per_dimension;
    let max_size = [
        limits.max_compute_workgroup_size_x,
        limits.max_compute_workgroup_size_y,
        limits.max_compute_workgroup_size_z,
    ];
    // What the plan needs, as the plan states it (`Plan::adapter_needs`; the web
    // runtime compares the same numbers).
    let needs = plan.adapter_needs();
    if let Some((kernel, bytes)) = over(&needs.weights_binding, max_binding) {
        let max = max_binding;
        return Err(FitError::Weights { kernel, bytes, max });
    }
    let max = limits.max_storage_buffers_per_shader_stage;
    if let Some((kernel, count)) = over(&needs.storage_buffers, max) {
        return Err(FitError::StorageBuffers { kernel, count, max });
    }
    if let Some((kernel, count)) = over(&needs.workgroups, max_wg) {
        let max = max_wg;
        return Err(FitError::Workgroups { kernel, count, max });
    }
    if let Some(d) = (0..3).find(|&d| needs.workgroup_size[d].value > max_size[d]) {
        let n = &needs.workgroup_size[d];
        return Err(FitError::WorkgroupSize {
            kernel: n.by.clone(),
            axis: ['x', 'y', 'z'][d],
            size: n.value,
            max: max_size,
        });
    }
    let max = limits.max_compute_invocations_per_workgroup;
    if let Some((kernel, threads)) = over(&needs.invocations, max) {
        return Err(FitError::Invocations {
            kernel,
            threads,
            max,
        });
    }
    let per_image = needs.activation_per_image.value;
    if per_image > max_binding {
        return Err(FitError::Activation {
            tensor: needs.activation_per_image.by.clone(),
            bytes: per_image,
            max: max_binding,
        });
    }
    let chunk = ((max_binding / per_image) as usize)
        .min(max_batch)
        .min(max_wg as usize)
        .max(1);
    // The input and output of the whole batch are copied in and out chunk by chunk.
    let batch_buffer = |which: &'static str, per: u64| {
        let bytes = (per * max_batch as u64).div_ceil(4) * 4;
        if bytes > limits.max_buffer_size {
            Err(FitError::BatchBuffer {
                which,
                batch: max_batch,
                bytes,
                max: limits.max_buffer_size,
                fits: (limits.max_buffer_size / per.max(1)) as usize,
            })
        } else {
            Ok(bytes)
        }
    };
    let input_buffer = batch_buffer("input", needs.input_per_image)?;
    // A backbone copies out every feature level.
    let output_buffer = batch_buffer("output", needs.output_per_image)?;
    Ok(Fit {
        chunk,
        weight_buffers: plan
            .kernels
            .iter()
            .map(|k| (k.layout.bytes() as u64).max(MIN_BUFFER))
            .collect(),
        slot_buffers: plan
            .slots
            .iter()
            .map(|s| (s.bytes as u64 * chunk as u64).max(MIN_BUFFER))
            .collect(),
        input_buffer,
        output_buffer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use effc_ir::{Model, Options, Spec};

    fn plan_of(name: &str, resolution: Option<usize>) -> Plan {
        let spec = Spec::builtin(name).unwrap();
        let options = Options {
            resolution,
            ..Default::default()
        };
        effc_plan::plan(&Model::build(&spec, &options).unwrap())
    }

    /// The largest activation slot of one image, in bytes.
    fn per_image(plan: &Plan) -> u64 {
        plan.slots.iter().map(|s| s.bytes as u64).max().unwrap()
    }

    fn max_weights(plan: &Plan) -> (String, u64) {
        plan.kernels
            .iter()
            .map(|k| (k.name.clone(), k.weights_len as u64 * 4))
            .max_by_key(|k| k.1)
            .unwrap()
    }

    /// WebGPU's default limits (what every adapter offers at least).
    fn limits() -> wgpu::Limits {
        wgpu::Limits::default()
    }

    #[test]
    fn a_small_batch_runs_in_one_chunk() {
        let plan = plan_of("b0", Some(448));
        let fit = fit(&plan, &limits(), 4).unwrap();
        assert_eq!(fit.chunk, 4);
        assert_eq!(fit.weight_buffers.len(), plan.kernels.len());
        for (k, &b) in plan.kernels.iter().zip(&fit.weight_buffers) {
            assert_eq!(b, (k.weights_len as u64 * 4).max(16), "{}", k.name);
        }
        for (s, &b) in plan.slots.iter().zip(&fit.slot_buffers) {
            assert_eq!(b, (s.bytes as u64 * 4).max(16));
        }
        assert_eq!(fit.input_buffer, 4 * plan.tensors[plan.input].bytes as u64);
        assert_eq!(
            fit.output_buffer,
            4 * plan.tensors[plan.output].bytes as u64
        );
    }

    #[test]
    fn the_chunk_is_what_the_largest_binding_holds() {
        let plan = plan_of("b0", Some(448));
        let one = per_image(&plan);
        for (binding, max_batch, chunk) in [
            (2 * one, 5, 2),
            (2 * one + one / 2, 5, 2),
            (5 * one, 5, 5),
            (9 * one, 5, 5),
            (one, 5, 1),
            (3 * one, 1, 1),
        ] {
            let lim = wgpu::Limits {
                max_storage_buffer_binding_size: binding,
                ..limits()
            };
            let fit = fit(&plan, &lim, max_batch).unwrap();
            assert_eq!(fit.chunk, chunk, "binding {binding}, max batch {max_batch}");
            let largest = *fit.slot_buffers.iter().max().unwrap();
            assert_eq!(largest, one * chunk as u64);
            assert!(largest <= binding);
        }
        // A smaller max buffer size bounds the binding too.
        let lim = wgpu::Limits {
            max_buffer_size: 3 * one,
            ..limits()
        };
        assert_eq!(fit(&plan, &lim, 8).unwrap().chunk, 3);
    }

    #[test]
    fn the_chunk_is_at_most_the_workgroups_of_the_batch_dimension() {
        let plan = plan_of("b0", Some(32));
        let largest_grid = plan.kernels.iter().flat_map(|k| k.grid).max().unwrap();
        let lim = wgpu::Limits {
            max_compute_workgroups_per_dimension: largest_grid,
            ..limits()
        };
        let fit = fit(&plan, &lim, largest_grid as usize + 7).unwrap();
        assert_eq!(fit.chunk, largest_grid as usize);
    }

    #[test]
    fn an_activation_too_big_even_for_one_image() {
        // At 448 pixels b0's activations outgrow its largest weights.
        let plan = plan_of("b0", Some(448));
        let one = per_image(&plan);
        assert!(max_weights(&plan).1 < one - 4);
        let lim = wgpu::Limits {
            max_storage_buffer_binding_size: one - 4,
            ..limits()
        };
        let err = fit(&plan, &lim, 1).unwrap_err();
        let largest = plan.tensors.iter().max_by_key(|t| t.bytes).unwrap();
        assert_eq!(
            err,
            FitError::Activation {
                tensor: largest.name.clone(),
                bytes: one,
                max: one - 4
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("MiB") && msg.contains(&largest.name), "{msg}");
        assert!(msg.contains("smaller resolution"), "{msg}");
        // One image fits exactly.
        let lim = wgpu::Limits {
            max_storage_buffer_binding_size: one,
            ..limits()
        };
        assert_eq!(fit(&plan, &lim, 4).unwrap().chunk, 1);
    }

    #[test]
    fn weights_too_big_for_a_binding() {
        let plan = plan_of("b0", Some(448));
        let (kernel, bytes) = max_weights(&plan);
        let lim = wgpu::Limits {
            max_storage_buffer_binding_size: bytes - 4,
            ..limits()
        };
        let err = fit(&plan, &lim, 1).unwrap_err();
        assert_eq!(
            err,
            FitError::Weights {
                kernel: kernel.clone(),
                bytes,
                max: bytes - 4
            }
        );
        assert!(err.to_string().contains(&format!("kernel `{kernel}`")));
    }

    #[test]
    fn kernels_beyond_the_compute_limits() {
        let plan = plan_of("lite0", Some(64));
        // The error names the kernel that needs the most (the first of equals):
        // the number the adapter would have to allow.
        let most = |need: &dyn Fn(&effc_plan::Kernel) -> u32| {
            let max = plan.kernels.iter().map(need).max().unwrap();
            plan.kernels
                .iter()
                .find(|k| need(k) == max)
                .map(|k| k.name.clone())
                .unwrap()
        };
        let err = fit(
            &plan,
            &wgpu::Limits {
                max_storage_buffers_per_shader_stage: 2,
                ..limits()
            },
            1,
        )
        .unwrap_err();
        let kernel = most(&|k| k.bindings.len() as u32);
        assert!(
            matches!(&err, FitError::StorageBuffers { kernel: k, max: 2, .. } if *k == kernel),
            "{err}"
        );

        let err = fit(
            &plan,
            &wgpu::Limits {
                max_compute_workgroups_per_dimension: 1,
                ..limits()
            },
            1,
        )
        .unwrap_err();
        let kernel = most(&|k| k.grid[0].max(k.grid[1]));
        assert!(
            matches!(&err, FitError::Workgroups { kernel: k, max: 1, .. } if *k == kernel),
            "{err}"
        );

        let err = fit(
            &plan,
            &wgpu::Limits {
                max_compute_workgroup_size_x: 1,
                ..limits()
            },
            1,
        )
        .unwrap_err();
        let kernel = most(&|k| k.workgroup[0]);
        assert!(
            matches!(&err, FitError::WorkgroupSize { kernel: k, .. } if *k == kernel),
            "{err}"
        );

        let err = fit(
            &plan,
            &wgpu::Limits {
                max_compute_invocations_per_workgroup: 16,
                ..limits()
            },
            1,
        )
        .unwrap_err();
        let kernel = most(&|k| k.workgroup.iter().product::<u32>());
        assert!(
            matches!(&err, FitError::Invocations { kernel: k, max: 16, .. } if *k == kernel),
            "{err}"
        );
        assert!(
            err.to_string().contains("invocations per workgroup"),
            "{err}"
        );
    }

    #[test]
    fn a_batch_too_big_for_the_input_buffer() {
        let plan = plan_of("b0", Some(448));
        let one = per_image(&plan);
        let input = plan.tensors[plan.input].bytes as u64;
        assert!(input < one);
        let lim = wgpu::Limits {
            max_buffer_size: one,
            ..limits()
        };
        let fits = (one / input) as usize;
        assert_eq!(
            fit(&plan, &lim, fits).unwrap().input_buffer,
            fits as u64 * input
        );
        let err = fit(&plan, &lim, fits + 1).unwrap_err();
        assert_eq!(
            err,
            FitError::BatchBuffer {
                which: "input",
                batch: fits + 1,
                bytes: (fits as u64 + 1) * input,
                max: one,
                fits
            }
        );
        assert!(err
            .to_string()
            .contains(&format!("a max batch of {fits} fits")));
    }

    #[test]
    fn no_batch_is_an_error() {
        let plan = plan_of("lite0", Some(64));
        assert_eq!(fit(&plan, &limits(), 0), Err(FitError::EmptyBatch));
    }
}
