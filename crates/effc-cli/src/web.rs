//! `effc compile --target web`: the static site of `effc_codegen::web`, with the
//! checkpoint packed into `weights.bin`, written through [`OutputDir`] as the Rust
//! target is.

use std::path::Path;
use std::process::ExitCode;

use effc_codegen::Generated;
use effc_ir::Model;
use effc_weights::Weights;

use effc_driver::files::OutputDir;

use crate::output::outln;
use crate::Failure;

pub fn write_site(
    generated: &Generated,
    model: &Model,
    weights: Option<&Path>,
    mut out: OutputDir,
    dir: &Path,
) -> Result<ExitCode, Failure> {
    // A plan the web runtime cannot run is refused before anything is read or written.
    effc_codegen::web::supports(&generated.plan).map_err(|e| Failure::from(e.to_string()))?;
    // The checkpoint is read and packed before anything is written.
    let packed = match weights {
        Some(p) => {
            let w = Weights::load(p, model, None)?;
            Some(effc_plan::pack_weights(
                &generated.plan,
                model,
                w.by_name(model),
            )?)
        }
        None => None,
    };
    let names = effc_weights::imagenet_classes();
    let files = effc_codegen::web::site(generated, packed.as_deref(), names)
        .map_err(|e| Failure::from(e.to_string()))?;
    let size = |name: &str| {
        files
            .iter()
            .find(|f| f.name == name)
            .map(|f| format!("{:.1} MiB", f.bytes.len() as f64 / (1024.0 * 1024.0)))
    };
    let (js, bin) = (size("model.js"), size("weights.bin"));
    let dir = dir.display();
    for f in files {
        out.write(&f.name, f.bytes)?;
    }
    let written = out.finish()?;
    crate::compile::note_removed(&written);
    outln!(
        "{}: web site ({} shaders, model.js {}{}, index.html) written to {dir}{}",
        generated.plan.model,
        generated.shaders.len(),
        js.unwrap_or_default(),
        bin.as_ref()
            .map(|s| format!(", weights.bin {s}"))
            .unwrap_or_default(),
        if bin.is_none() {
            "; no --weights: load() needs a weights.bin"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
