//! The untyped model behind every generated `Model`: the definition rebuilt into
//! the IR and the kernel plan, the checkpoint packed, the runtime created from the
//! embedded shaders.

use std::path::Path;
use std::sync::Arc;

use effc_ir::{Options, Spec};
use effc_runtime::{CompiledModel, FeatureMap, Gpu, GpuError};
use effc_weights::Weights;

use crate::{Definition, Error, Naming, Precision};

/// A generated model on a GPU, without its type.
pub struct Engine {
    gpu: Arc<Gpu>,
    model: effc_ir::Model,
    compiled: CompiledModel,
    naming: Naming,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.model.name)
            .field("adapter", &self.gpu.adapter.name)
            .field("max_batch", &self.compiled.max_batch())
            .finish_non_exhaustive()
    }
}

fn stale(def: &Definition, what: String) -> Error {
    Error::Stale {
        model: def.name.to_string(),
        what,
    }
}

/// Rebuilds the IR a definition was generated from and checks that this version
/// of effc plans the same kernels.
pub(crate) fn rebuild(def: &Definition) -> Result<(effc_ir::Model, effc_plan::Plan), Error> {
    let spec = Spec::parse_model(def.spec_origin, def.spec, Some(def.name))
        .map_err(|d| stale(def, format!("its spec no longer builds: {d}")))?;
    let o = &def.overrides;
    let options = Options {
        resolution: o.resolution,
        padding: o.padding,
        bn_eps: o.bn_eps,
        classes: o.classes,
        features: o.features.map(<[usize]>::to_vec),
    };
    let model = effc_ir::Model::build(&spec, &options)
        .map_err(|d| stale(def, format!("its spec no longer builds: {d}")))?;
    let plan = effc_plan::plan_at(&model, def.precision);
    if plan.kernels.len() != def.kernels.len() {
        return Err(stale(
            def,
            format!(
                "it has {} kernels, this version plans {}",
                def.kernels.len(),
                plan.kernels.len()
            ),
        ));
    }
    for (k, d) in plan.kernels.iter().zip(def.kernels) {
        if def.precision == Precision::F16 && d.wgsl_packed.is_none() {
            return Err(stale(
                def,
                format!(
                    "kernel `{}` is stored at f16 but has no packed-half shader",
                    d.name
                ),
            ));
        }
        if k.name != d.name
            || k.grid != d.grid
            || k.workgroup != d.workgroup
            || k.weights_len != d.weights_len
        {
            return Err(stale(
                def,
                format!(
                    "kernel `{}` ({}x{} workgroups of {:?}, {} weights) is planned as `{}` ({}x{} of {:?}, {} weights)",
                    d.name, d.grid[0], d.grid[1], d.workgroup, d.weights_len,
                    k.name, k.grid[0], k.grid[1], k.workgroup, k.weights_len
                ),
            ));
        }
    }
    if plan.input_shape != def.input_shape || plan.output_len != def.output_len {
        return Err(stale(def, "its input or output shape differs".into()));
    }
    // Everything else the shaders rely on (weight layouts, bindings, tiles, buffers).
    let hash = plan.fingerprint();
    if hash != def.plan_hash {
        return Err(stale(
            def,
            format!(
                "its kernel plan (weight layouts, bindings, tiles, buffers) has fingerprint {}, this version plans {hash}",
                def.plan_hash
            ),
        ));
    }
    Ok((model, plan))
}

impl Engine {
    /// Rebuilds the model of `def`, reads and packs the checkpoint in `bytes`
    /// (named `source` in errors) and creates it on `gpu` for batches up to `max_batch`.
    pub fn new(
        def: &Definition,
        gpu: Arc<Gpu>,
        bytes: &[u8],
        source: &Path,
        naming: Option<Naming>,
        max_batch: usize,
    ) -> Result<Engine, Error> {
        let (model, plan) = rebuild(def)?;
        let weights = Weights::from_bytes(bytes, source, &model, naming)?;
        let packed = effc_plan::pack_weights(&plan, &model, weights.by_name(&model))?;
        // At f16, the spelling this adapter takes (native `f16`, else packed halves).
        let packed_halves = match def.precision {
            Precision::F32 => false,
            Precision::F16 => gpu.f16_spelling()? == effc_wgsl::Spelling::Packed,
        };
        let shaders: Vec<effc_wgsl::Shader> = def
            .kernels
            .iter()
            .map(|k| effc_wgsl::Shader {
                kernel: k.name.to_string(),
                file_name: k.file_name.to_string(),
                source: match (packed_halves, k.wgsl_packed) {
                    (true, Some(p)) => p.to_string(),
                    _ => k.wgsl.to_string(),
                },
            })
            .collect();
        let compiled = CompiledModel::new(gpu.clone(), plan, &shaders, &packed, max_batch)?;
        Ok(Engine {
            gpu,
            model,
            compiled,
            naming: weights.naming(),
        })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    pub fn max_batch(&self) -> usize {
        self.compiled.max_batch()
    }

    /// The checkpoint naming the weights were read in.
    pub fn naming(&self) -> Naming {
        self.naming
    }

    pub fn forward(&self, input: &[f32], batch: usize) -> Result<Vec<f32>, Error> {
        Ok(self.compiled.forward(input, batch)?)
    }

    pub fn upload(&self, input: &[f32], batch: usize) -> Result<(), Error> {
        Ok(self.compiled.upload(input, batch)?)
    }

    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, batch: usize) -> Result<(), Error> {
        if batch == 0 {
            return Err(GpuError::EmptyBatch.into());
        }
        if batch > self.compiled.max_batch() {
            return Err(GpuError::Batch {
                batch,
                max: self.compiled.max_batch(),
            }
            .into());
        }
        self.compiled.encode_batch(encoder, batch, None);
        Ok(())
    }

    pub fn read_output(&self, batch: usize) -> Result<Vec<f32>, Error> {
        if batch > self.compiled.max_batch() {
            return Err(GpuError::Batch {
                batch,
                max: self.compiled.max_batch(),
            }
            .into());
        }
        Ok(self.compiled.read_output(batch)?)
    }

    /// A backbone's feature levels of a batch, NCHW (see `CompiledModel::features`).
    pub fn features(&self, input: &[f32], batch: usize) -> Result<Vec<FeatureMap>, Error> {
        Ok(self.compiled.features(input, batch)?)
    }

    /// The feature levels of a forward recorded by [`Engine::encode`], once submitted.
    pub fn read_features(&self, batch: usize) -> Result<Vec<FeatureMap>, Error> {
        Ok(self.compiled.read_features(batch)?)
    }

    pub fn load_images<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Vec<f32>, Error> {
        let mut input =
            Vec::with_capacity(paths.len() * self.model.input.iter().product::<usize>());
        for p in paths {
            input.extend(effc_weights::load_image(p, &self.model)?);
        }
        Ok(input)
    }
}
