//! The tiles a model's kernels use on an adapter: what `effc tune` cached there,
//! or the cost model's.

use effc_plan::Tuning;
use effc_runtime::tune::load_tuning;
use effc_runtime::Gpu;

use crate::progress::Progress;
use crate::TuningChoice;

/// The tiles cached for this adapter (unless `choice` is the cost model), and a
/// line saying which tiles are used. A cache that cannot be read, and unusable
/// entries in it, are warnings; the cost model's tiles are used instead.
/// `model` is how the user named the model, for the hint to run `effc tune`.
pub fn cached(
    gpu: &Gpu,
    choice: TuningChoice,
    model: &str,
    progress: &dyn Progress,
) -> (Tuning, String) {
    let hint = format!("`effc tune {model}` measures them on this adapter");
    if choice == TuningChoice::CostModel {
        return (Tuning::default(), format!("cost model (--untuned; {hint})"));
    }
    match load_tuning(&gpu.adapter) {
        Ok(Some((t, path, dropped))) => {
            for key in dropped {
                progress.warn(&format!(
                    "{}: ignoring unusable tiles for `{key}`",
                    path.display()
                ));
            }
            let line = format!("tuned on this adapter ({})", path.display());
            (t, line)
        }
        Ok(None) => (Tuning::default(), format!("cost model ({hint})")),
        Err(e) => {
            progress.warn(&format!("{e}; using the cost model's tiles"));
            (Tuning::default(), format!("cost model ({hint})"))
        }
    }
}
