//! One `effc train` run from resolved settings: the data, the initial weights
//! (from scratch as timm, or a checkpoint with the classifier replaced), the
//! schedule (progressive or not), checkpoints, the outputs. The CLI parses
//! flags and declares files (the output policy); everything else is here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use effc_files::{FileKind, OutputFile, Outputs};
use effc_ir::{Layer, Model, Naming};
use effc_weights::Weights;
use serde::Serialize;

use crate::augment::{Mixup, RandAugment};
use crate::data::{self, Batch, Source};
use crate::progressive::{self, Stage};
use crate::schedule::Decay;
use crate::trainer::{self, Data, Engine, Eval, Event, Recipe, State, TrainError};

/// What to train on.
#[derive(Clone, Debug)]
pub enum DataChoice {
    Source(Source),
    /// A safetensors file with `input` (NCHW f32) and `labels` (int64).
    Input(PathBuf),
}

/// Where the initial weights come from.
#[derive(Clone, Debug)]
pub struct From {
    pub path: PathBuf,
    pub naming: Option<Naming>,
    /// The model the checkpoint was made for (the same network with its own
    /// number of classes), used when its classifier does not fit.
    pub as_made: Model,
}

/// A resolved run.
pub struct Job {
    /// The network at its evaluation resolution.
    pub model: Model,
    /// Builds the network at another resolution (progressive stages).
    pub at_size: Box<dyn Fn(usize) -> Result<Model, String>>,
    pub data: DataChoice,
    pub from: Option<From>,
    pub recipe: Recipe,
    pub epochs: Option<u64>,
    pub steps: Option<u64>,
    pub progressive: bool,
    pub out: Option<OutputFile>,
    pub checkpoints: Option<CheckpointDir>,
    pub save_grads: Option<OutputFile>,
    /// JSON lines, one per step and one per epoch (rewritten whole each epoch).
    pub log: Option<OutputFile>,
    /// A checkpoint file, or a directory whose latest checkpoint of this run
    /// is resumed.
    pub resume: Option<PathBuf>,
    pub eval_batch: usize,
    /// Set (by a SIGINT or SIGTERM handler) to stop after the current step,
    /// with a checkpoint.
    pub stop: Option<Arc<AtomicBool>>,
}

/// Where checkpoints go: a directory (created at the first checkpoint) of
/// `step-NNNNNNNN.safetensors` files. Each file is declared to the output
/// policy (`files`, holding the command's inputs and outputs) when it is
/// written, so no checkpoint replaces an input or another output; once a
/// checkpoint is written, the one this run wrote before it is removed (never
/// a file the run did not write, such as the checkpoint it resumed from).
#[derive(Clone, Debug)]
pub struct CheckpointDir {
    pub dir: PathBuf,
    pub files: Outputs,
}

/// The file name of the checkpoint after `step` steps.
pub fn checkpoint_name(step: u64) -> String {
    format!("step-{step:08}.safetensors")
}

/// The step a checkpoint's file name states (`step-N.safetensors`).
fn named_step(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

/// Writes checkpoints into a [`CheckpointDir`], keeping the latest this run wrote.
struct Saver {
    dir: PathBuf,
    files: Outputs,
    /// The last checkpoint this run wrote: its step and path.
    written: Option<(u64, PathBuf)>,
}

impl Saver {
    fn new(c: &CheckpointDir) -> Saver {
        Saver {
            dir: c.dir.clone(),
            files: c.files.clone(),
            written: None,
        }
    }

    /// Writes the checkpoint of `state` (unless this step's is written) and
    /// returns its path; removes the one written before.
    fn save(
        &mut self,
        model: &Model,
        state: &State,
        fp: &str,
        history: &[String],
        show: &mut dyn FnMut(Progress),
    ) -> Result<PathBuf, TrainError> {
        if let Some((step, p)) = &self.written {
            if *step == state.step {
                return Ok(p.clone());
            }
        }
        match FileKind::at(&self.dir) {
            Some(FileKind::Directory) => {}
            None => std::fs::create_dir(&self.dir).map_err(|e| {
                TrainError::Bad(format!(
                    "--checkpoints `{}`: cannot create the directory: {e}",
                    self.dir.display()
                ))
            })?,
            Some(kind) => {
                return Err(TrainError::Bad(format!(
                    "--checkpoints `{}` is {kind}, not a directory",
                    self.dir.display()
                )))
            }
        }
        let path = self.dir.join(checkpoint_name(state.step));
        let file = self
            .files
            .file("--checkpoints", &path)
            .map_err(|e| TrainError::Bad(e.to_string()))?;
        write(
            &file,
            &trainer::checkpoint_with_history(model, state, fp, history),
        )?;
        if let Some((_, old)) = self.written.replace((state.step, path.clone())) {
            if let Err(e) = std::fs::remove_file(&old) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    show(Progress::Note(format!(
                        "warning: cannot remove the previous checkpoint {}: {e}",
                        old.display()
                    )));
                }
            }
        }
        Ok(path)
    }
}

/// The checkpoint `--resume PATH` names: PATH itself when it is a file; in a
/// directory, the `step-N.safetensors` of the highest step that this run
/// (`fingerprint`) wrote. Read whole (and checked) by [`trainer::resume`].
fn find_checkpoint(
    path: &std::path::Path,
    model: &Model,
    recipe: &Recipe,
    fingerprint: &str,
) -> Result<(PathBuf, (State, Vec<String>)), TrainError> {
    let load = |p: &std::path::Path| -> Result<(State, Vec<String>), TrainError> {
        let bytes = effc_files::read(p, effc_files::Input::CHECKPOINT)
            .map_err(|e| TrainError::Bad(e.to_string()))?;
        let state = trainer::resume(model, recipe, &bytes, &p.display().to_string(), fingerprint)?;
        Ok((state, trainer::checkpoint_history(&bytes)))
    };
    if FileKind::at(path) != Some(FileKind::Directory) {
        return Ok((path.to_path_buf(), load(path)?));
    }
    let entries = std::fs::read_dir(path).map_err(|e| {
        TrainError::Bad(format!(
            "--resume `{}`: cannot list the directory: {e}",
            path.display()
        ))
    })?;
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Some((named_step(&name)?, e.path()))
        })
        .filter(|(_, p)| FileKind::at(p) == Some(FileKind::Regular))
        .collect();
    found.sort();
    let Some(latest) = found.last().map(|(_, p)| p.clone()) else {
        return Err(TrainError::Bad(format!(
            "--resume `{}`: the directory holds no checkpoint (`step-N.safetensors`, written by `effc train` every epoch and on Ctrl-C)",
            path.display()
        )));
    };
    let mut first_refusal = None;
    for (_, p) in found.iter().rev() {
        match load(p) {
            Ok(state) => return Ok((p.clone(), state)),
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    let why = first_refusal.map_or(String::new(), |e| e.to_string());
    Err(TrainError::Bad(format!(
        "--resume `{}`: none of its {} checkpoints is of this run; the latest, {}, is refused:\n{why}",
        path.display(),
        found.len(),
        latest.display()
    )))
}

/// What `--dry-run` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub model: String,
    pub data: String,
    pub train_images: usize,
    pub val_images: usize,
    pub classes: usize,
    pub batch: usize,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    pub optimizer: String,
    pub lr: f64,
    pub weight_decay: f64,
    pub schedule: String,
    /// The learning rate at the first step, the end of warmup, the middle and the last step.
    pub lr_at: Vec<(u64, f64)>,
    pub label_smoothing: f64,
    pub dropout: f64,
    pub drop_path: f64,
    pub bn_momentum: f64,
    pub ema: Option<f64>,
    /// The training transforms: crop and flip, RandAugment, mixup/CutMix.
    pub augmentation: String,
    pub stages: Vec<Stage>,
}

/// The loaded data, and its description.
fn load_data(job: &Job) -> Result<(Data, String), TrainError> {
    match &job.data {
        DataChoice::Source(s) => {
            let splits = data::open(s, job.recipe.seed)?;
            let desc = format!(
                "{} ({} images), validation {} ({} images)",
                splits.train.name,
                splits.train.len(),
                splits.val.name,
                splits.val.len()
            );
            let classes = job.model.classifier.as_ref().map_or(0, |c| c.out_features);
            if splits.train.classes.len() != classes {
                return Err(TrainError::Bad(format!(
                    "the data has {} classes ({}), but `{}` has {classes}: give --classes {}",
                    splits.train.classes.len(),
                    preview(&splits.train.classes),
                    job.model.name,
                    splits.train.classes.len()
                )));
            }
            Ok((
                Data::Set {
                    train: Arc::new(splits.train),
                    val: Arc::new(splits.val),
                },
                desc,
            ))
        }
        DataChoice::Input(p) => {
            let b = read_input(p, &job.model)?;
            let desc = format!(
                "the fixed batch in {} ({} images)",
                p.display(),
                b.labels.len()
            );
            Ok((Data::Fixed(b), desc))
        }
    }
}

fn preview(names: &[String]) -> String {
    let mut s: Vec<String> = names.iter().take(4).map(|n| format!("`{n}`")).collect();
    if names.len() > 4 {
        s.push("…".into());
    }
    s.join(", ")
}

/// `input` (NCHW f32 at the model's size) and `labels` (int64) of a safetensors file.
pub fn read_input(path: &std::path::Path, model: &Model) -> Result<Batch, TrainError> {
    let bad = |why: String| TrainError::Bad(format!("{}: {why}", path.display()));
    let bytes = effc_files::read(path, effc_files::Input::TENSORS)
        .map_err(|e| TrainError::Bad(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let x = st
        .tensor("input")
        .map_err(|_| bad("no tensor `input` (NCHW f32)".into()))?;
    let l = st
        .tensor("labels")
        .map_err(|_| bad("no tensor `labels` (int64, one per image)".into()))?;
    let [c, h, w] = model.input;
    let shape = x.shape();
    if x.dtype() != safetensors::Dtype::F32 || shape.len() != 4 || shape[1..] != [c, h, w] {
        return Err(bad(format!(
            "`input` is {:?} {shape:?}; `{}` trains on F32 [N, {c}, {h}, {w}] (--resolution changes H and W)",
            x.dtype(),
            model.name
        )));
    }
    if l.dtype() != safetensors::Dtype::I64 || l.shape() != [shape[0]] {
        return Err(bad(format!(
            "`labels` is {:?} {:?}; expected I64 [{}]",
            l.dtype(),
            l.shape(),
            shape[0]
        )));
    }
    let input: Vec<f32> = x
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if input.iter().any(|v| !v.is_finite()) {
        return Err(bad("`input` has NaN or infinite values".into()));
    }
    let classes = model.classifier.as_ref().map_or(0, |c| c.out_features) as i64;
    let labels: Vec<i64> = l
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    if let Some((i, v)) = labels
        .iter()
        .enumerate()
        .find(|(_, &v)| v < 0 || v >= classes)
    {
        return Err(bad(format!(
            "label {i} is {v}; `{}` has classes 0..={}",
            model.name,
            classes - 1
        )));
    }
    Ok(Batch {
        input,
        labels: labels.into_iter().map(|v| v as usize).collect(),
    })
}

/// The initial values, what they are, and the naming outputs use: the
/// checkpoint's (as detected or given), timm's from scratch.
fn initial(job: &Job) -> Result<(Vec<Vec<f32>>, String, Naming), TrainError> {
    let model = &job.model;
    let Some(f) = &job.from else {
        let what = format!(
            "from scratch (timm's initialization, seed {})",
            job.recipe.seed
        );
        return Ok((
            crate::init::init(model, job.recipe.seed),
            what,
            Naming::Timm,
        ));
    };
    let load = |m: &Model| Weights::load(&f.path, m, f.naming);
    match load(model) {
        Ok(w) => {
            let values = model
                .params()
                .iter()
                .map(|p| w.get(&p.key).expect("loaded weights fit").to_vec())
                .collect();
            Ok((values, format!("from {}", f.path.display()), w.naming()))
        }
        Err(first) => {
            // The checkpoint may be this network with another classifier.
            let Ok(w) = load(&f.as_made) else {
                return Err(first.into());
            };
            let mut rng = effc_reference::train::Rng::new(job.recipe.seed);
            let values = model
                .params()
                .iter()
                .map(|p| match p.key.layer {
                    Layer::Classifier => crate::init::init_tensor(p, false, &mut rng),
                    _ => w
                        .get(&p.key)
                        .expect("the same network but the classifier")
                        .to_vec(),
                })
                .collect();
            let old = f.as_made.classifier.as_ref().map_or(0, |c| c.out_features);
            let new = model.classifier.as_ref().map_or(0, |c| c.out_features);
            let what = format!("from {}, its {old}-class classifier replaced by a new {new}-class one (timm's init)", f.path.display());
            Ok((values, what, w.naming()))
        }
    }
}

/// Everything that must match for `--resume`: the model, the data, the length
/// of the run and the whole recipe (seed included, from which the data order,
/// each sample's augmentation and each step's dropout derive).
fn fingerprint(job: &Job, total: u64, data: &str) -> String {
    format!(
        "model {} at {}, {data}, {total} steps, progressive {}, {:?}",
        job.model.name, job.model.resolution, job.progressive, job.recipe
    )
}

fn stage_list(job: &Job, total: u64) -> Result<Vec<Stage>, TrainError> {
    if !job.progressive {
        return Ok(vec![Stage {
            from: 0,
            to: total,
            size: job.recipe.size,
            dropout: job.recipe.step.dropout.unwrap_or(job.model.dropout),
            randaugment: None,
            mixup: None,
        }]);
    }
    progressive::stages(&job.model.training, job.model.dropout, total).ok_or_else(|| {
        TrainError::Bad(format!(
            "`{}` states no progressive learning (`training {{ size = .. }}` in its spec); leave out --progressive",
            job.model.name
        ))
    })
}

/// The plan of the run (`--dry-run`), without training.
pub fn plan(job: &Job) -> Result<Plan, TrainError> {
    let (data, desc) = load_data(job)?;
    let (train_images, val_images) = match &data {
        Data::Set { train, val } => (train.len(), val.len()),
        Data::Fixed(b) => (b.labels.len(), 0),
    };
    let spe = trainer::steps_per_epoch(&data, job.recipe.batch);
    let total = total_steps(job, spe)?;
    let sched = trainer::schedule(&job.recipe, spe, total);
    let warm = sched.warmup.ceil() as u64;
    let mut at: Vec<u64> = vec![0, warm, total / 2, total.saturating_sub(1)];
    at.dedup();
    let r = &job.recipe;
    Ok(Plan {
        model: job.model.name.clone(),
        data: desc,
        train_images,
        val_images,
        classes: job.model.classifier.as_ref().map_or(0, |c| c.out_features),
        batch: r.batch,
        steps_per_epoch: spe,
        total_steps: total,
        optimizer: r.optimizer.name().to_string(),
        lr: r.lr,
        weight_decay: r.weight_decay,
        schedule: match r.decay {
            Decay::Cosine { min_lr } => format!(
                "warmup {} epochs from {}, cosine to {min_lr}",
                r.warmup_epochs, r.warmup_lr
            ),
            Decay::Exponential { rate, every } => format!(
                "warmup {} epochs from {}, ×{rate} every {every} epochs",
                r.warmup_epochs, r.warmup_lr
            ),
            Decay::Constant => format!(
                "warmup {} epochs from {}, constant",
                r.warmup_epochs, r.warmup_lr
            ),
        },
        lr_at: at.into_iter().map(|t| (t, sched.lr(t))).collect(),
        label_smoothing: r.step.label_smoothing,
        dropout: r.step.dropout.unwrap_or(job.model.dropout),
        drop_path: r.step.drop_path.unwrap_or(job.model.drop_path),
        bn_momentum: r.step.bn_momentum,
        ema: r.ema,
        augmentation: augmentation(r),
        stages: stage_list(job, total)?,
    })
}

/// What the training transforms are, in words.
fn augmentation(r: &Recipe) -> String {
    if !r.augment {
        return "none (`effc run`'s preprocessing)".into();
    }
    let mut s = format!("random-resized crop (scale {}–1) and flip", r.min_scale);
    if let Some(ra) = &r.randaugment {
        s += &format!(
            ", RandAugment {} ops at magnitude {} (std {}, max {}, probability {})",
            ra.n, ra.magnitude, ra.magnitude_std, ra.magnitude_max, ra.prob
        );
    }
    if let Some(m) = r.mixup.filter(|m| m.enabled()) {
        s += &format!(
            ", mixup α {} / CutMix α {} (probability {}, switch {})",
            m.mixup_alpha, m.cutmix_alpha, m.prob, m.switch_prob
        );
    }
    s
}

fn total_steps(job: &Job, spe: u64) -> Result<u64, TrainError> {
    if spe == 0 {
        return Err(TrainError::Bad(format!(
            "the training split has fewer images than one batch of {}: lower --batch",
            job.recipe.batch
        )));
    }
    let total = match (job.steps, job.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) => e * spe,
        (None, None) => spe,
    };
    if total == 0 {
        return Err(TrainError::Bad(
            "nothing to train: --steps or --epochs is 0".into(),
        ));
    }
    Ok(total)
}

/// Progress for the caller to show.
pub enum Progress<'a> {
    Note(String),
    /// A resumed run's history: the log lines of the steps and epochs before
    /// its checkpoint (JSON objects, as `--log` writes them).
    History(&'a [String]),
    Step {
        step: u64,
        total: u64,
        epoch: u64,
        stage: usize,
        size: usize,
        loss: f64,
        lr: f64,
        images_per_s: f64,
    },
    Epoch {
        epoch: u64,
        eval: Option<Eval>,
        ema_eval: Option<Eval>,
        checkpoint: Option<&'a std::path::Path>,
    },
}

fn write(file: &OutputFile, bytes: &[u8]) -> Result<(), TrainError> {
    file.write(bytes)
        .map_err(|e| TrainError::Bad(e.to_string()))
}

/// Runs the job on the CPU reference executor; returns the final state.
pub fn run(job: &Job, show: &mut dyn FnMut(Progress)) -> Result<State, TrainError> {
    run_on(job, &mut trainer::Cpu, show)
}

/// Runs the job with its steps on `engine`; returns the final state. Every
/// stage is checked with the engine ([`Engine::check`]) before training starts.
pub fn run_on(
    job: &Job,
    engine: &mut dyn Engine,
    show: &mut dyn FnMut(Progress),
) -> Result<State, TrainError> {
    let (data, desc) = load_data(job)?;
    let spe = trainer::steps_per_epoch(&data, job.recipe.batch);
    let total = total_steps(job, spe)?;
    let stages = stage_list(job, total)?;
    let mut stage_models = vec![];
    for (si, stage) in stages.iter().enumerate() {
        let model = if stage.size == job.model.resolution {
            job.model.clone()
        } else {
            (job.at_size)(stage.size).map_err(TrainError::Bad)?
        };
        let recipe = stage_recipe(job, &stages, si, stage.from, &mut |_| {});
        let batch = trainer::batch_images(&data, &recipe);
        engine.check(&model, batch, &trainer::step_config(&recipe))?;
        stage_models.push(model);
    }
    let fp = fingerprint(job, total, &desc);
    show(Progress::Note(format!("data: {desc}")));
    let mut saver = job.checkpoints.as_ref().map(Saver::new);
    let (mut state, naming, mut log_lines) = start(job, total, &fp, saver.as_mut(), show)?;
    if !log_lines.is_empty() {
        show(Progress::History(&log_lines));
    }
    for (si, stage) in stages.iter().enumerate() {
        if state.step >= stage.to {
            continue;
        }
        let model = &stage_models[si];
        let recipe = stage_recipe(job, &stages, si, state.step, show);
        let mut events = Events {
            job,
            stage: si,
            size: stage.size,
            fp: &fp,
            naming,
            log_lines: &mut log_lines,
            saver: saver.as_mut(),
            total,
        };
        let stop = stage.to - state.step;
        trainer::train_on(
            engine,
            model,
            &job.model,
            &data,
            &recipe,
            &mut state,
            total,
            Some(stop),
            job.eval_batch,
            &mut |e| events.on(e, show),
        )?;
    }
    write_output(job, &state, naming, show)?;
    Ok(state)
}

/// The state training starts from: a resumed checkpoint, or the initial
/// weights (`--from`, else timm's initialization); and the naming to write in.
fn start(
    job: &Job,
    total: u64,
    fp: &str,
    saver: Option<&mut Saver>,
    show: &mut dyn FnMut(Progress),
) -> Result<(State, Naming, Vec<String>), TrainError> {
    let naming = job
        .from
        .as_ref()
        .and_then(|f| f.naming)
        .unwrap_or(Naming::Timm);
    match &job.resume {
        Some(p) => {
            let (found, (s, history)) = find_checkpoint(p, &job.model, &job.recipe, fp)?;
            if let Some(saver) = saver {
                // No checkpoint of this run may replace the one it resumes from.
                saver
                    .files
                    .input("the --resume checkpoint", &found)
                    .map_err(|e| TrainError::Bad(e.to_string()))?;
            }
            show(Progress::Note(format!(
                "resuming from {} at step {} of {total}",
                found.display(),
                s.step
            )));
            Ok((s, naming, history))
        }
        None => {
            let (values, what, naming) = initial(job)?;
            show(Progress::Note(format!("weights: {what}")));
            Ok((State::new(&job.model, values, &job.recipe)?, naming, vec![]))
        }
    }
}

/// The recipe of stage `si` (its size, and with `--progressive` its
/// regularization), announced when the stage begins.
fn stage_recipe(
    job: &Job,
    stages: &[Stage],
    si: usize,
    step: u64,
    show: &mut dyn FnMut(Progress),
) -> Recipe {
    let stage = &stages[si];
    let mut recipe = job.recipe.clone();
    recipe.size = stage.size;
    if job.progressive {
        recipe.step.dropout = Some(stage.dropout);
        let mut extra = String::new();
        if let (Some(m), true) = (stage.randaugment, recipe.augment) {
            // The papers' magnitudes reach 15 (TF's RandAugment): the clamp moves with them.
            let base = recipe.randaugment.unwrap_or(RandAugment {
                magnitude_std: 0.0,
                ..RandAugment::default()
            });
            recipe.randaugment = Some(RandAugment {
                magnitude: m,
                magnitude_max: base.magnitude_max.max(m),
                ..base
            });
            extra += &format!(", RandAugment magnitude {m:.2}");
        }
        if let (Some(a), true) = (stage.mixup, recipe.augment) {
            let base = recipe.mixup.unwrap_or(Mixup {
                mixup_alpha: 0.0,
                cutmix_alpha: 0.0,
                prob: 1.0,
                switch_prob: 0.5,
            });
            recipe.mixup = Some(Mixup {
                mixup_alpha: a,
                ..base
            });
            extra += &format!(", mixup α {a:.2}");
        }
        if stages.len() > 1 && step == stage.from {
            show(Progress::Note(format!(
                "stage {} of {}: steps {}..{}, size {}, dropout {:.3}{extra}",
                si + 1,
                stages.len(),
                stage.from,
                stage.to,
                stage.size,
                stage.dropout,
            )));
        }
    }
    recipe
}

/// What each training event does: log lines, checkpoints, the first step's
/// gradients, progress.
struct Events<'a> {
    job: &'a Job,
    stage: usize,
    size: usize,
    fp: &'a str,
    naming: Naming,
    log_lines: &'a mut Vec<String>,
    saver: Option<&'a mut Saver>,
    total: u64,
}

impl Events<'_> {
    fn stopped(&self) -> bool {
        self.job
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// Writes the checkpoint (and the log) of an interrupted run; the error to return.
    fn interrupt(&mut self, state: &State, show: &mut dyn FnMut(Progress)) -> TrainError {
        if let Some(l) = &self.job.log {
            if let Err(e) = write(l, (self.log_lines.join("\n") + "\n").as_bytes()) {
                return e;
            }
        }
        let (checkpoint, dir) = match self.saver.as_deref_mut() {
            Some(s) => match s.save(&self.job.model, state, self.fp, self.log_lines, show) {
                Ok(p) => (Some(p), Some(s.dir.clone())),
                Err(e) => return e,
            },
            None => (None, None),
        };
        TrainError::Interrupted {
            step: state.step,
            total: self.total,
            checkpoint,
            dir,
        }
    }

    fn on(&mut self, e: Event, show: &mut dyn FnMut(Progress)) -> Result<(), TrainError> {
        let (job, si, size, naming) = (self.job, self.stage, self.size, self.naming);
        let fp = self.fp;
        let log_lines = &mut *self.log_lines;
        match e {
            Event::Step {
                step,
                total,
                epoch,
                loss,
                lr,
                images_per_s,
                mut state,
                epoch_end,
            } => {
                log_lines.push(
                    serde_json::json!({"step": step, "epoch": epoch, "stage": si, "size": size,
                    "loss": loss, "lr": lr, "images_per_s": images_per_s})
                    .to_string(),
                );
                show(Progress::Step {
                    step,
                    total,
                    epoch,
                    stage: si,
                    size,
                    loss,
                    lr,
                    images_per_s,
                });
                // At an epoch's end the epoch's event checkpoints and stops.
                if !epoch_end && self.stopped() {
                    let state = state.get()?;
                    return Err(self.interrupt(state, show));
                }
            }
            Event::FirstGrads { grads, values } => {
                if let Some(f) = &job.save_grads {
                    let t: Vec<Vec<f32>> = grads
                        .iter()
                        .zip(values)
                        .map(|(g, v)| if g.is_empty() { v.clone() } else { g.clone() })
                        .collect();
                    let meta = HashMap::from([(
                    "content".to_string(),
                    "the first step's loss gradient of every parameter; BN running statistics after that step".to_string(),
                )]);
                    write(
                        f,
                        &trainer::weights_bytes(&job.model, &t, naming, Some(meta)),
                    )?;
                    show(Progress::Note(format!(
                        "wrote the first step's gradients to {}",
                        f.path().display()
                    )));
                }
            }
            Event::Epoch {
                epoch,
                state,
                eval,
                ema_eval,
            } => {
                log_lines.push(
                    serde_json::json!({"epoch": epoch, "step": state.step, "validation": eval,
                    "ema_validation": ema_eval})
                    .to_string(),
                );
                let checkpoint = match self.saver.as_deref_mut() {
                    Some(s) => Some(s.save(&job.model, state, fp, log_lines, show)?),
                    None => None,
                };
                if let Some(l) = &job.log {
                    write(l, (log_lines.join("\n") + "\n").as_bytes())?;
                }
                show(Progress::Epoch {
                    epoch,
                    eval,
                    ema_eval,
                    checkpoint: checkpoint.as_deref(),
                });
                if self.stopped() {
                    return Err(self.interrupt(state, show));
                }
            }
        }
        Ok(())
    }
}

/// Writes the trained weights (their EMA when kept) to `-o`.
fn write_output(
    job: &Job,
    state: &State,
    naming: Naming,
    show: &mut dyn FnMut(Progress),
) -> Result<(), TrainError> {
    if let Some(out) = &job.out {
        let (values, what) = match &state.ema {
            Some(e) => (e.values.as_slice(), "the EMA of the weights"),
            None => (state.params.values(), "the weights"),
        };
        let meta = HashMap::from([
            ("model".to_string(), job.model.name.clone()),
            (
                "trained_by".to_string(),
                format!("effc train, {} steps", state.step),
            ),
        ]);
        write(
            out,
            &trainer::weights_bytes(&job.model, values, naming, Some(meta)),
        )?;
        show(Progress::Note(format!(
            "wrote {what} to {} ({naming} naming)",
            out.path().display()
        )));
    }
    Ok(())
}
