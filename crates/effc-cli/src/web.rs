//! `effc compile --target web`: the static site of `effc_codegen::web`, with the
//! checkpoint packed into `weights.bin`.

use std::path::Path;
use std::process::ExitCode;

use effc_codegen::Generated;
use effc_ir::Model;
use effc_weights::Weights;

use crate::Failure;

pub fn write_site(
    generated: &Generated,
    model: &Model,
    weights: Option<&Path>,
    out: &Path,
) -> Result<ExitCode, Failure> {
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
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create `{}`: {e}", out.display()))?;
    for f in &files {
        let path = out.join(&f.name);
        std::fs::write(&path, &f.bytes)
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    }
    let size = |name: &str| {
        files
            .iter()
            .find(|f| f.name == name)
            .map(|f| format!("{:.1} MiB", f.bytes.len() as f64 / (1024.0 * 1024.0)))
    };
    println!(
        "{}: web site ({} shaders, model.js {}{}) written to {}{}",
        generated.plan.model,
        generated.shaders.len(),
        size("model.js").unwrap_or_default(),
        size("weights.bin")
            .map(|s| format!(", weights.bin {s}"))
            .unwrap_or_default(),
        out.display(),
        if packed.is_none() {
            "; no --weights: load() needs a weights.bin"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
