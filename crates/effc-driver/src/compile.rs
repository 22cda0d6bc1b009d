//! `effc compile`: a model's kernels, host code and report written into a
//! directory effc owns (`--target rust`), or its static web site (`--target web`,
//! with the checkpoint packed into `weights.bin`).

use std::path::PathBuf;

use effc_codegen::{CodegenOptions, Generated, Shaders};
use effc_ir::Model;
use effc_weights::Weights;
use serde::Serialize;

use crate::files::{OutputDir, Outputs};
use crate::{Error, ModelRequest};

/// The most kernels `effc compile` writes (one `.wgsl` file each). The largest
/// built-in model has a few hundred; a spec beyond this is refused before anything
/// is generated.
pub const MAX_KERNELS: usize = 4096;

/// What to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Rust host code (`model.rs`) for the `efficientnet` crate, the shaders,
    /// `plan.txt`, the report and its picture.
    Rust,
    /// A static web site running the model on WebGPU.
    Web,
}

/// A compile: the model (with precision and, for the web, weights), where to.
#[derive(Clone, Debug)]
pub struct CompileRequest {
    pub model: ModelRequest,
    pub target: Target,
    /// The output directory (created if needed).
    pub out: PathBuf,
    /// Write into a directory effc did not write, overwriting files of the same names.
    pub force: bool,
    /// The largest batch the generated `model.rs` runs.
    pub max_batch: usize,
}

/// What was written.
#[derive(Clone, Debug, Serialize)]
pub struct CompileReport {
    pub model: String,
    pub target: Target,
    pub dir: PathBuf,
    pub kernels: usize,
    pub dispatches: usize,
    pub precision: effc_plan::Precision,
    /// Bytes of each file written that the summary names (`model.js`, `weights.bin`).
    pub model_js_bytes: Option<usize>,
    pub weights_bin_bytes: Option<usize>,
    /// Files of the previous output that this one no longer has, removed.
    pub removed: Vec<String>,
}

/// Compiles `req.model`: every refusal (an input in the directory, a directory
/// effc does not own, too many kernels, a backbone for the web, weights that do
/// not fit) comes before anything is written.
pub fn compile(req: &CompileRequest) -> Result<CompileReport, Error> {
    // Before anything is generated: a directory effc does not own is refused,
    // as is one holding an input.
    let mut files = Outputs::new();
    req.model.declare_inputs(&mut files)?;
    let mut out = files.dir("-o", &req.out, req.force)?;
    // Resolve and build first, for the same diagnostics as every other command.
    let resolved = req.model.resolve()?;
    let model = resolved.model.clone();
    let kernels = resolved.plan().kernels.len();
    if kernels > MAX_KERNELS {
        return Err(Error::TooBig(format!(
            "model `{}` has {kernels} kernels; effc compile writes at most {MAX_KERNELS} (one .wgsl file each): fewer blocks, or `effc check`/`effc inspect` to examine the spec",
            model.name
        )));
    }
    let opts = CodegenOptions {
        max_batch: req.max_batch,
        module: None,
        shaders: Shaders::IncludeStr,
        format: true,
    };
    let generated = resolved.generate(&opts, false)?;
    let (js, bin) = match req.target {
        Target::Web => write_site(&generated, &model, req, &mut out)?,
        Target::Rust => {
            if req.model.weights.is_some() {
                return Err(Error::Usage(
                    "--weights is for `--target web` (the Rust host loads its checkpoint at run time)"
                        .into(),
                ));
            }
            write_rust(&generated, &model, &mut out)?;
            (None, None)
        }
    };
    let written = out.finish()?;
    Ok(CompileReport {
        model: model.name.clone(),
        target: req.target,
        dir: req.out.clone(),
        kernels: generated.shaders.len(),
        dispatches: generated.plan.dispatches(),
        precision: generated.plan.precision,
        model_js_bytes: js,
        weights_bin_bytes: bin,
        removed: written.removed,
    })
}

/// Stages one `.wgsl` file per kernel, `plan.txt`, `model.rs`, `report.md` /
/// `report.json` and `architecture.svg`, which the report shows.
fn write_rust(generated: &Generated, model: &Model, out: &mut OutputDir) -> Result<(), Error> {
    for sh in generated.shaders.iter().chain(&generated.packed_shaders) {
        out.write(&sh.file_name, sh.source.as_str())?;
    }
    out.write("plan.txt", generated.plan.to_string())?;
    out.write("model.rs", generated.file())?;
    let report = generated.report();
    // The report links the architecture picture, written beside it.
    out.write("architecture.svg", effc_draw::architecture(model))?;
    let md = report.markdown();
    let md = match md.split_once("\n\n") {
        Some((title, rest)) => format!(
            "{title}\n\n![architecture of {}](architecture.svg)\n\n{rest}",
            model.name
        ),
        None => md,
    };
    out.write("report.md", md)?;
    out.write("report.json", report.json())?;
    Ok(())
}

/// The browser's CPU backend (`effc-wasm` for wasm32 with SIMD128), built by
/// `build.rs`.
const CPU_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/effc-cpu.wasm"));

/// Stages the site of `effc_codegen::web`, with the checkpoint packed into
/// `weights.bin`; returns the sizes of `model.js` and `weights.bin`.
fn write_site(
    generated: &Generated,
    model: &Model,
    req: &CompileRequest,
    out: &mut OutputDir,
) -> Result<(Option<usize>, Option<usize>), Error> {
    let web = |e: effc_codegen::web::WebError| Error::Usage(e.to_string());
    // A plan the web runtime cannot run is refused before anything is read.
    effc_codegen::web::supports(&generated.plan).map_err(web)?;
    // The checkpoint is read and packed before anything is written.
    let packed = match &req.model.weights {
        Some(w) => {
            let weights = Weights::load(&w.path, model, None)?;
            Some(effc_plan::pack_weights(
                &generated.plan,
                model,
                weights.by_name(model),
            )?)
        }
        None => None,
    };
    let names = effc_weights::imagenet_classes();
    let files = effc_codegen::web::site(generated, packed.as_deref(), names, Some(CPU_WASM))
        .map_err(web)?;
    let size = |name: &str| files.iter().find(|f| f.name == name).map(|f| f.bytes.len());
    let (js, bin) = (size("model.js"), size("weights.bin"));
    for f in files {
        out.write(&f.name, f.bytes)?;
    }
    Ok((js, bin))
}
