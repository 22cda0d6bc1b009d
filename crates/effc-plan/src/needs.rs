//! What a plan needs of an adapter, as data: the largest of each quantity a
//! WebGPU limit bounds, with the kernel (or tensor) that needs it. The native
//! `effc_runtime::fit` and the web runtime's `fit` compare these numbers with the
//! adapter's limits; neither recomputes them from the kernels.

use serde::Serialize;

use crate::plan::Plan;

/// The largest value of one quantity, and what needs it (a kernel, or for
/// activations the largest tensor).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Largest<T> {
    pub value: T,
    pub by: String,
}

/// What a plan needs of an adapter, per image where it scales with the batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterNeeds {
    /// The largest weights binding (bytes): `maxStorageBufferBindingSize`.
    pub weights_binding: Largest<u64>,
    /// Storage buffers one kernel binds: `maxStorageBuffersPerShaderStage`.
    pub storage_buffers: Largest<u32>,
    /// Workgroups in x or y of one kernel's grid (z is the batch):
    /// `maxComputeWorkgroupsPerDimension`.
    pub workgroups: Largest<u32>,
    /// Each dimension of the largest workgroup: `maxComputeWorkgroupSize{X,Y,Z}`.
    pub workgroup_size: [Largest<u32>; 3],
    /// Invocations in one workgroup: `maxComputeInvocationsPerWorkgroup`.
    pub invocations: Largest<u32>,
    /// The largest activation buffer for one image (bytes, at least 4), named by
    /// the largest tensor (a slot is as large as its largest tensor).
    pub activation_per_image: Largest<u64>,
    /// Bytes of one image's input and output (the whole batch is one buffer each).
    pub input_per_image: u64,
    pub output_per_image: u64,
}

fn largest<T: Ord + Copy + Default>(plan: &Plan, f: impl Fn(&crate::Kernel) -> T) -> Largest<T> {
    let mut best = Largest {
        value: T::default(),
        by: String::new(),
    };
    for k in &plan.kernels {
        let v = f(k);
        if v > best.value || best.by.is_empty() {
            best = Largest {
                value: v,
                by: k.name.clone(),
            };
        }
    }
    best
}

impl Plan {
    /// What this plan needs of an adapter (see [`AdapterNeeds`]).
    pub fn adapter_needs(&self) -> AdapterNeeds {
        let per_image = self
            .slots
            .iter()
            .map(|s| s.bytes as u64)
            .max()
            .unwrap_or(0)
            .max(4);
        let tensor = self
            .tensors
            .iter()
            .max_by_key(|t| t.bytes)
            .map(|t| t.name.clone())
            .unwrap_or_default();
        AdapterNeeds {
            weights_binding: largest(self, |k| k.layout.bytes() as u64),
            storage_buffers: largest(self, |k| k.bindings.len() as u32),
            workgroups: largest(self, |k| k.grid[0].max(k.grid[1])),
            workgroup_size: [0, 1, 2].map(|i| largest(self, |k| k.workgroup[i])),
            invocations: largest(self, |k| k.workgroup.iter().product::<u32>()),
            activation_per_image: Largest {
                value: per_image,
                by: tensor,
            },
            input_per_image: self.tensors[self.input].bytes as u64,
            output_per_image: self.output_bytes() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn needs_are_the_largest_of_the_kernels() {
        let opts = effc_ir::Options {
            resolution: Some(64),
            ..Default::default()
        };
        let m = effc_ir::Model::build(&effc_ir::Spec::builtin("lite0").unwrap(), &opts).unwrap();
        let plan = crate::plan(&m);
        let n = plan.adapter_needs();
        let max = |f: &dyn Fn(&crate::Kernel) -> u64| plan.kernels.iter().map(f).max().unwrap();
        assert_eq!(n.weights_binding.value, max(&|k| k.layout.bytes() as u64));
        assert_eq!(n.weights_binding.by, "classifier");
        assert_eq!(
            n.invocations.value as u64,
            max(&|k| k.workgroup.iter().product::<u32>() as u64)
        );
        assert_eq!(
            n.activation_per_image.value,
            plan.slots.iter().map(|s| s.bytes as u64).max().unwrap()
        );
        assert_eq!(n.input_per_image, plan.tensors[plan.input].bytes as u64);
        let json = serde_json::to_value(&n).unwrap();
        assert!(json["weightsBinding"]["value"].is_u64(), "{json}");
    }
}
