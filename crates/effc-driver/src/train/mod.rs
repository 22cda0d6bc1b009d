//! What `effc train` runs: its recipe and the engines effc-train's loop steps on.
//!
//! - [`job`]: [`job::TrainRequest`] into effc-train's `Job`, once the caller has
//!   declared the files it writes;
//! - [`recipe`]: [`recipe::RecipeRequest`] (what was asked, flag by flag) into
//!   effc-train's `Recipe`, the spec's `training` section merged, every range
//!   checked; `--freeze`, the data's name and the checkpoint directory, checked
//!   (shared by `effc train` and `effc scale --grid --train-on`);
//! - [`engine`]: where training steps (`--device` as `effc run` chooses, the CPU
//!   reference executor for frozen layers without one), with the note to show;
//! - [`gpu`]: [`gpu::GpuEngine`], the loop's steps on effc-runtime's
//!   [`GpuTrainer`](effc_runtime::train::GpuTrainer), and [`gpu::rule`],
//!   effc-train's optimizer as the GPU update's rule.

pub mod gpu;
pub mod job;
pub mod recipe;

use effc_train::trainer::{Cpu, Engine};

use crate::device::{choose, Chosen, Device};
use crate::Error;

/// Where `effc train` steps: `device` as `effc run` chooses it (the CPU there is
/// the reference executor), except that without a `device` and with frozen
/// layers (`freeze`) it is the CPU, which the GPU step does not do yet. With
/// the note to show.
pub fn engine(device: Option<Device>, freeze: bool) -> Result<(Box<dyn Engine>, String), Error> {
    if device.is_none() && freeze {
        return Ok((
            Box::new(Cpu),
            "training on the CPU reference executor (--freeze, which the GPU step does not do yet)"
                .into(),
        ));
    }
    Ok(match choose(device, effc_plan::Precision::F32)? {
        Chosen::Gpu { gpu, note } => {
            let note = format!(
                "training on the GPU: {}",
                note.trim_start_matches("running on ")
            );
            (Box::new(gpu::GpuEngine::new(gpu)), note)
        }
        Chosen::Cpu { note } | Chosen::Reference { note } => (Box::new(Cpu), cpu_note(&note)),
    })
}

/// The note of a CPU choice (`running on … (why)`) for training: the reason kept.
fn cpu_note(note: &str) -> String {
    let why = note
        .split_once(" (")
        .map_or(String::new(), |(_, w)| format!(" ({w}"));
    format!("training on the CPU reference executor{why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_note_keeps_the_reason_and_names_the_reference_executor() {
        assert_eq!(
            cpu_note("running on effc's CPU backend (no hardware GPU; llvmpipe available with --device gpu)"),
            "training on the CPU reference executor (no hardware GPU; llvmpipe available with --device gpu)"
        );
        assert_eq!(
            cpu_note("running on a CPU"),
            "training on the CPU reference executor"
        );
    }

    #[test]
    fn frozen_layers_without_a_device_train_on_the_cpu() {
        let (_, note) = engine(None, true).unwrap();
        assert!(note.contains("--freeze"), "{note}");
        let (_, note) = engine(Some(Device::Reference), false).unwrap();
        assert!(
            note.starts_with("training on the CPU reference executor"),
            "{note}"
        );
    }
}
