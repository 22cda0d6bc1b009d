//! `effc train`: flags in, files declared under the output policy, progress out;
//! the run itself is `effc_train::job`.

use std::path::PathBuf;
use std::process::ExitCode;

use effc_driver::files::{OutputFile, Outputs};
use effc_driver::train::job::{TrainOutputs, TrainRequest};
use effc_driver::train::recipe::{self, OptimizerChoice, RecipeRequest, ScheduleChoice};
use effc_driver::Device;
use effc_ir::Naming;
use effc_train::job::{self, CheckpointDir, DataChoice, Job, Progress};
use effc_train::trainer::Engine;

use crate::common::ModelArgs;
use crate::output::outln;
use crate::{fail, Failure};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Sgd,
    Nesterov,
    Rmsproptf,
    Adamw,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Sched {
    Cosine,
    Exponential,
    Constant,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Where to write the trained weights (safetensors, f32; the EMA with --ema).
    #[arg(
        long,
        short,
        value_name = "OUT.safetensors",
        required_unless_present = "dry_run"
    )]
    output: Option<PathBuf>,
    /// The data: an image folder (one subdirectory per class; train/ and val/ when
    /// present), `fashion-mnist[=DIR]` or `mnist=DIR` (IDX files).
    #[arg(
        long,
        value_name = "DIR|fashion-mnist[=DIR]",
        required_unless_present = "input",
        conflicts_with = "input"
    )]
    data: Option<String>,
    /// Train on the fixed batch of a safetensors file (`input` NCHW f32, `labels`
    /// int64) instead of a data set; one step unless --steps.
    #[arg(long, value_name = "X.safetensors")]
    input: Option<PathBuf>,
    /// Write the first step's loss gradient of every parameter, and the BN running
    /// statistics after it, in the naming of --from (timm from scratch).
    #[arg(long, value_name = "G.safetensors")]
    save_grads: Option<PathBuf>,
    /// Start from a checkpoint (any naming effc reads); with --classes its classifier
    /// is replaced by a new one.
    #[arg(long, value_name = "CKPT")]
    from: Option<PathBuf>,
    /// Freeze the stem (`stem`) or the stem and stages 0..=K (timm's `blocks.0` ..
    /// `blocks.K`): no gradient or update there, BN in eval mode (as timm users
    /// fine-tune).
    #[arg(long, value_name = "stem|K")]
    freeze: Option<String>,
    /// The naming of --from (detected when absent).
    #[arg(long, value_name = "effc|timm|torchvision|tf")]
    naming: Option<Naming>,
    /// Epochs (passes over the training split; default 1).
    #[arg(long, value_name = "N", conflicts_with = "steps")]
    epochs: Option<u64>,
    /// Update steps, instead of --epochs.
    #[arg(long, value_name = "N")]
    steps: Option<u64>,
    /// Images per step (default 32, or the spec's `batch` with --spec-recipe).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    batch: Option<u32>,
    #[command(flatten)]
    recipe: RecipeArgs,
    /// Progressive learning (EfficientNetV2 Algorithm 1) from the spec's `training` settings.
    #[arg(long)]
    progressive: bool,
    /// Print the schedule (steps, learning rates, stages) and stop.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: print JSON.
    #[arg(long)]
    json: bool,
    /// Write JSON lines: one per step (loss, lr, images/s, stage, size) and one per
    /// epoch (validation top-1, top-5, loss; the EMA's).
    #[arg(long, value_name = "FILE.jsonl")]
    log: Option<PathBuf>,
    /// Draw the loss and validation-accuracy curves, with the stage boundaries,
    /// as SVG (rewritten after every epoch).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// The directory training checkpoints go in (`step-N.safetensors`, every epoch
    /// and on Ctrl-C; the latest kept; default: OUT's name with `.ckpt` for its
    /// extension, `out.ckpt/` for `-o out.safetensors`).
    #[arg(long, value_name = "DIR")]
    checkpoints: Option<PathBuf>,
    /// Continue a run from its latest checkpoint in DIR (or from the checkpoint
    /// FILE), with the same model, data and flags: the result equals the
    /// uninterrupted run's bit for bit.
    #[arg(long, value_name = "DIR|FILE")]
    resume: Option<PathBuf>,
    /// Where to train: `gpu` (effc's training kernels on any adapter wgpu finds,
    /// a software one too), or `cpu` / `reference`, both the CPU reference executor
    /// (effc's fast CPU backend has no backward pass yet). Default: `gpu` where a
    /// hardware GPU is present (or a WGPU_* variable such as WGPU_BACKEND asks for one),
    /// else `cpu`; `cpu` with --freeze, which the GPU step does not do yet.
    /// With `gpu`, validation runs effc's inference kernels there too. Checkpoints
    /// resume on either device.
    #[arg(long, value_name = "gpu|cpu|reference")]
    device: Option<Device>,
    /// Images per forward in validation.
    #[arg(long, default_value_t = 64, value_name = "N")]
    eval_batch: usize,
}

/// The flags of a training recipe, shared by `effc train` and `effc scale --grid
/// --train-on` (every grid point trains with the same recipe).
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub(crate) struct RecipeArgs {
    /// Train with the recipe the spec's `training` section states (the built-ins:
    /// the papers': RMSpropTF, 0.256 per 4096 images decayed by 0.97 every 2.4
    /// epochs, 5 warmup epochs, BN momentum 0.01, EMA 0.9999, 350 epochs); a flag
    /// given beside it still wins. Without it, each flag's default below.
    #[arg(long)]
    pub(crate) spec_recipe: bool,
    /// Learning rate (default: the papers' 0.016 per 256 images, scaled to the batch).
    #[arg(long, value_name = "LR")]
    lr: Option<f64>,
    /// [default: rmsproptf]
    #[arg(long, value_enum)]
    optimizer: Option<Opt>,
    /// Momentum of SGD (RMSpropTF uses 0.9).
    #[arg(long, default_value_t = 0.9, value_name = "M")]
    momentum: f64,
    /// Weight decay (not on BN parameters and biases unless --decay-all) [default: 1e-5].
    #[arg(long, value_name = "WD")]
    weight_decay: Option<f64>,
    #[arg(long)]
    decay_all: bool,
    /// [default: cosine]; exponential: 0.97 every 2.4 epochs (the papers')
    #[arg(long, value_enum)]
    schedule: Option<Sched>,
    /// Warmup epochs: the learning rate rises linearly from --warmup-lr to --lr (as
    /// timm) [default: 0].
    #[arg(long, value_name = "EPOCHS")]
    warmup: Option<f64>,
    #[arg(long, default_value_t = 1e-6, value_name = "LR")]
    warmup_lr: f64,
    /// [default: 0.1]
    #[arg(long, value_name = "S")]
    label_smoothing: Option<f64>,
    /// Dropout before the classifier (default: the model's).
    #[arg(long, value_name = "P")]
    dropout: Option<f64>,
    /// Stochastic-depth rate; block j of N drops with rate·j/N (default: the model's).
    #[arg(long, value_name = "P")]
    drop_path: Option<f64>,
    /// BN running-statistics momentum, PyTorch's convention: new = (1 − m)·old + m·batch
    /// (TF's decay 0.99 is 0.01) [default: 0.1].
    #[arg(long, value_name = "M")]
    bn_momentum: Option<f64>,
    /// Keep an exponential moving average of the weights (the papers: 0.9999);
    /// evaluated each epoch (what `effc scale --train-on` ranks) and written to `effc train`'s -o.
    #[arg(long, value_name = "DECAY")]
    ema: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No random-resized crop and flip, RandAugment or mixup: train on `effc run`'s
    /// preprocessing.
    #[arg(long, conflicts_with_all = ["randaug", "mixup", "cutmix"])]
    no_augment: bool,
    /// RandAugment, as timm's config string: `rand-m9-mstd0.5` (2 ops at magnitude 9
    /// ± 0.5, each with probability 0.5); also `nN`, `mmaxX`, `pP`.
    #[arg(long, value_name = "rand-mM[-nN][-mstdS]")]
    randaug: Option<String>,
    /// Mixup's α (timm's --mixup, 0.8 in its recipes); the label smoothing is folded
    /// into the mixed targets.
    #[arg(long, value_name = "ALPHA")]
    mixup: Option<f64>,
    /// CutMix's α (timm's --cutmix, 1.0); with --mixup too, each batch is one or the
    /// other (--mixup-switch).
    #[arg(long, value_name = "ALPHA")]
    cutmix: Option<f64>,
    /// The probability a batch is mixed (timm's --mixup-prob).
    #[arg(long, default_value_t = 1.0, value_name = "P")]
    mixup_prob: f64,
    /// With --mixup and --cutmix, the probability of CutMix (timm's --mixup-switch-prob).
    #[arg(long, default_value_t = 0.5, value_name = "P")]
    mixup_switch: f64,
    /// The smallest area fraction the random-resized crop keeps (timm's --scale).
    #[arg(long, default_value_t = 0.08, value_name = "S")]
    scale: f64,
}

/// Only the recipe's flags, to tell whether any was given.
#[derive(clap::Parser)]
struct RecipeOnly {
    #[command(flatten)]
    recipe: RecipeArgs,
}

impl RecipeArgs {
    /// Whether every flag has its default (none was given).
    pub(crate) fn is_default(&self) -> bool {
        use clap::Parser;
        RecipeOnly::try_parse_from(["effc"]).is_ok_and(|d| &d.recipe == self)
    }

    /// What the flags ask of the recipe.
    pub(crate) fn request(&self) -> RecipeRequest {
        RecipeRequest {
            spec_recipe: self.spec_recipe,
            lr: self.lr,
            optimizer: self.optimizer.map(|o| match o {
                Opt::Sgd => OptimizerChoice::Sgd,
                Opt::Nesterov => OptimizerChoice::Nesterov,
                Opt::Rmsproptf => OptimizerChoice::RmspropTf,
                Opt::Adamw => OptimizerChoice::AdamW,
            }),
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            decay_all: self.decay_all,
            schedule: self.schedule.map(|s| match s {
                Sched::Cosine => ScheduleChoice::Cosine,
                Sched::Exponential => ScheduleChoice::Exponential,
                Sched::Constant => ScheduleChoice::Constant,
            }),
            warmup: self.warmup,
            warmup_lr: self.warmup_lr,
            label_smoothing: self.label_smoothing,
            dropout: self.dropout,
            drop_path: self.drop_path,
            bn_momentum: self.bn_momentum,
            ema: self.ema,
            seed: self.seed,
            augment: !self.no_augment,
            randaug: self.randaug.clone(),
            mixup: self.mixup,
            cutmix: self.cutmix,
            mixup_prob: self.mixup_prob,
            mixup_switch: self.mixup_switch,
            scale: self.scale,
        }
    }
}

fn ckpt_dir(out: &std::path::Path) -> PathBuf {
    out.with_extension("ckpt")
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    check_args(&args)?;
    let request = args.model.request();
    let mut files = Outputs::new();
    request.declare_inputs(&mut files).map_err(fail)?;
    for (role, p) in [
        ("the --from checkpoint", &args.from),
        ("the --input tensors", &args.input),
        ("the --resume checkpoint", &args.resume),
    ] {
        if let Some(p) = p {
            files.input(role, p)?;
        }
    }
    let (out, checkpoint, save_grads, log) = outputs(&args, &mut files)?;
    let plot = match (&args.plot, args.dry_run) {
        (Some(p), false) => Some(files.file("--plot", p)?),
        _ => None,
    };
    let data = match (&args.data, &args.input) {
        (_, Some(p)) => DataChoice::Input(p.clone()),
        (Some(d), None) => DataChoice::Source(recipe::source(d)),
        (None, None) => unreachable!("clap requires --data or --input"),
    };
    let train = TrainRequest {
        model: request,
        data,
        from: args.from.clone(),
        naming: args.naming,
        recipe: args.recipe.request(),
        batch: args.batch.map(|b| b as usize),
        freeze: args.freeze.clone(),
        epochs: args.epochs,
        steps: args.steps,
        progressive: args.progressive,
        resume: args.resume.clone(),
        eval_batch: args.eval_batch,
    };
    let job = train
        .job(TrainOutputs {
            out,
            checkpoints: checkpoint.map(|dir| CheckpointDir {
                dir,
                files: files.clone(),
            }),
            save_grads,
            log,
        })
        .map_err(fail)?;
    if args.dry_run {
        let plan = job::plan(&job)?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print_plan(&plan)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (mut engine, note) = engine(&args)?;
    let job = Job {
        stop: Some(stop_on_signals()?),
        ..job
    };
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut monitor = Monitor::new(terminal, plot, job.model.name.clone());
    monitor.show(Progress::Note(note));
    let result = job::run_on(&job, engine.as_mut(), &mut |p| monitor.show(p));
    match result {
        Ok(_) => {
            monitor.finish()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ effc_train::trainer::TrainError::Interrupted { .. }) => {
            monitor.finish()?;
            eprintln!("{e}");
            // 128 + SIGINT, as a shell reports a process Ctrl-C ended.
            Ok(ExitCode::from(130))
        }
        Err(e) => {
            if let Some(b) = &monitor.bar {
                b.abandon();
            }
            Err(e.into())
        }
    }
}

/// A flag that SIGINT (Ctrl-C) and SIGTERM set: training stops after the
/// current step and writes a checkpoint. A second signal ends the process at
/// once (exit status 130).
fn stop_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, Failure> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }
    Ok(stop)
}

/// Where the steps run (`effc run`'s choice of device, the CPU meaning the
/// reference executor), and the note saying so.
fn engine(args: &Args) -> Result<(Box<dyn Engine>, String), Failure> {
    effc_driver::train::engine(args.device, args.freeze.is_some()).map_err(fail)
}

/// What the flags refuse before anything is read.
fn check_args(args: &Args) -> Result<(), Failure> {
    if args.device == Some(Device::Gpu) && args.freeze.is_some() {
        return Err("--freeze is not supported with --device gpu yet (the GPU training step has no eval-mode BN or partial backward); train with --device cpu, or drop --freeze".into());
    }
    if args.model.features.is_some() {
        return Err(
            "--features: a backbone has no classifier to train; train the classifier model".into(),
        );
    }
    Ok(())
}

/// The files the run writes (none for a dry run), declared to the output policy.
#[allow(clippy::type_complexity)]
fn outputs(
    args: &Args,
    files: &mut Outputs,
) -> Result<
    (
        Option<OutputFile>,
        Option<PathBuf>,
        Option<OutputFile>,
        Option<OutputFile>,
    ),
    Failure,
> {
    Ok(if args.dry_run {
        (None, None, None, None)
    } else {
        let o = args
            .output
            .as_ref()
            .expect("clap requires -o without --dry-run");
        let out = files.file("-o", o)?;
        let c = args.checkpoints.clone().unwrap_or_else(|| ckpt_dir(o));
        recipe::check_checkpoint_dir(&c, o).map_err(fail)?;
        let grads = args
            .save_grads
            .as_ref()
            .map(|p| files.file("--save-grads", p))
            .transpose()?;
        let log = args
            .log
            .as_ref()
            .map(|p| files.file("--log", p))
            .transpose()?;
        (Some(out), Some(c), grads, log)
    })
}

/// What `effc train` shows and keeps while it runs: on a terminal an indicatif
/// progress bar (step, images/s, loss, learning rate, stage) with the notes
/// printed above it; otherwise plain lines (the first steps, every 50th, the
/// last, and at least one every 10 s). With `--plot`, the loss and accuracy
/// curves, rewritten after each epoch (and at the end) through the output policy.
struct Monitor {
    bar: Option<indicatif::ProgressBar>,
    terminal: bool,
    last_line: std::time::Instant,
    step: u64,
    total: u64,
    plot: Option<OutputFile>,
    title: String,
    losses: Vec<(f64, f64)>,
    val_loss: Vec<(f64, f64)>,
    top1: Vec<(f64, f64)>,
    top5: Vec<(f64, f64)>,
    ema_top1: Vec<(f64, f64)>,
    stages: Vec<(f64, String)>,
    stage: Option<usize>,
}

impl Monitor {
    fn new(terminal: bool, plot: Option<OutputFile>, title: String) -> Monitor {
        Monitor {
            bar: None,
            terminal,
            last_line: std::time::Instant::now(),
            step: 0,
            total: 0,
            plot,
            title,
            losses: vec![],
            val_loss: vec![],
            top1: vec![],
            top5: vec![],
            ema_top1: vec![],
            stages: vec![],
            stage: None,
        }
    }

    fn line(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None => eprintln!("{s}"),
        }
    }

    fn record_step(&mut self, step: u64, stage: usize, size: usize, loss: f64) {
        self.step = step;
        self.losses.push((step as f64, loss));
        if self.stage != Some(stage) {
            self.stage = Some(stage);
            self.stages.push((
                step.saturating_sub(1) as f64,
                format!("stage {} (size {size})", stage + 1),
            ));
        }
    }

    fn record_eval(
        &mut self,
        eval: Option<effc_train::trainer::Eval>,
        ema: Option<effc_train::trainer::Eval>,
    ) {
        let at = self.step as f64;
        if let Some(e) = eval {
            self.val_loss.push((at, e.loss));
            self.top1.push((at, 100.0 * e.top1));
            self.top5.push((at, 100.0 * e.top5));
        }
        if let Some(e) = ema {
            self.ema_top1.push((at, 100.0 * e.top1));
        }
    }

    fn show(&mut self, p: Progress) {
        match p {
            Progress::Note(s) => self.line(&s),
            Progress::History(lines) => {
                let eval = |v: &serde_json::Value| -> Option<effc_train::trainer::Eval> {
                    Some(effc_train::trainer::Eval {
                        top1: v.get("top1")?.as_f64()?,
                        top5: v.get("top5")?.as_f64()?,
                        loss: v.get("loss")?.as_f64()?,
                        images: v.get("images")?.as_u64()? as usize,
                    })
                };
                for l in lines {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                        continue;
                    };
                    if v.get("validation").is_some() {
                        self.record_eval(eval(&v["validation"]), eval(&v["ema_validation"]));
                    } else if let (Some(step), Some(loss)) =
                        (v["step"].as_u64(), v["loss"].as_f64())
                    {
                        let stage = v["stage"].as_u64().unwrap_or(0) as usize;
                        let size = v["size"].as_u64().unwrap_or(0) as usize;
                        self.record_step(step, stage, size, loss);
                    }
                }
            }
            Progress::Step {
                step,
                total,
                epoch,
                stage,
                size,
                loss,
                lr,
                images_per_s,
            } => {
                self.total = total;
                self.record_step(step, stage, size, loss);
                let msg = format!(
                    "epoch {epoch}  stage {}  size {size}  loss {loss:.4}  lr {lr:.3e}  {images_per_s:.1} img/s",
                    stage + 1
                );
                if self.terminal {
                    let bar = self.bar.get_or_insert_with(|| {
                        let b = indicatif::ProgressBar::new(total);
                        b.set_style(
                            indicatif::ProgressStyle::with_template(
                                "[{bar:30}] {pos}/{len} {msg} ({elapsed} < {eta})",
                            )
                            .expect("a valid template")
                            .progress_chars("=> "),
                        );
                        b
                    });
                    bar.set_position(step);
                    bar.set_message(msg);
                } else if step == total
                    || step <= 3
                    || step.is_multiple_of(50)
                    || self.last_line.elapsed().as_secs() >= 10
                {
                    self.last_line = std::time::Instant::now();
                    eprintln!("step {step}/{total}  {msg}");
                }
            }
            Progress::Epoch {
                epoch,
                eval,
                ema_eval,
                checkpoint,
            } => {
                let show = |e: effc_train::trainer::Eval| {
                    format!(
                        "top-1 {:.2}%  top-5 {:.2}%  loss {:.4} ({} images)",
                        100.0 * e.top1,
                        100.0 * e.top5,
                        e.loss,
                        e.images
                    )
                };
                if let Some(e) = eval {
                    self.line(&format!("epoch {epoch}: validation {}", show(e)));
                }
                if let Some(e) = ema_eval {
                    self.line(&format!("epoch {epoch}: validation (EMA) {}", show(e)));
                }
                self.record_eval(eval, ema_eval);
                if let Some(c) = checkpoint {
                    self.line(&format!("epoch {epoch}: checkpoint {}", c.display()));
                }
                if let Err(e) = self.write_plot() {
                    self.line(&format!("warning: {}", e.message));
                }
            }
        }
    }

    /// Writes the curves so far to `--plot`.
    fn write_plot(&self) -> Result<(), Failure> {
        let Some(f) = &self.plot else {
            return Ok(());
        };
        let curve = |name: &str, points: &[(f64, f64)]| {
            (!points.is_empty()).then(|| effc_draw::Curve {
                name: name.to_string(),
                points: points.to_vec(),
            })
        };
        let c = effc_draw::Curves {
            title: format!("{}: {} of {} steps", self.title, self.step, self.total),
            loss: [
                curve("training loss", &self.losses),
                curve("validation loss", &self.val_loss),
            ]
            .into_iter()
            .flatten()
            .collect(),
            accuracy: [
                curve("top-1", &self.top1),
                curve("top-5", &self.top5),
                curve("top-1 (EMA)", &self.ema_top1),
            ]
            .into_iter()
            .flatten()
            .collect(),
            stages: self.stages.clone(),
            total: self.total as f64,
        };
        let svg = effc_draw::curves(&c).map_err(|e| format!("--plot: {e}"))?;
        f.write(svg.as_bytes())?;
        Ok(())
    }

    /// Ends the bar (its last state stays on screen) and writes the plot.
    fn finish(&self) -> Result<(), Failure> {
        if let Some(b) = &self.bar {
            b.abandon();
        }
        if self.plot.is_some() && self.losses.is_empty() {
            eprintln!("--plot: this run took no steps; no curves drawn");
            return Ok(());
        }
        self.write_plot()?;
        if let Some(f) = &self.plot {
            eprintln!("wrote the training curves to {}", f.path().display());
        }
        Ok(())
    }
}

fn print_plan(p: &job::Plan) -> Result<(), Failure> {
    outln!("effc train {} (dry run)", p.model);
    outln!("  data          {}", p.data);
    outln!("  classes       {}", p.classes);
    outln!(
        "  steps         {} per epoch (batch {}), {} in all",
        p.steps_per_epoch,
        p.batch,
        p.total_steps
    );
    outln!(
        "  optimizer     {}, lr {}, weight decay {}",
        p.optimizer,
        p.lr,
        p.weight_decay
    );
    outln!("  schedule      {}", p.schedule);
    let at: Vec<String> = p
        .lr_at
        .iter()
        .map(|(t, lr)| format!("step {t}: {lr:.4e}"))
        .collect();
    outln!("  lr            {}", at.join(", "));
    outln!(
        "  regularizers  label smoothing {}, dropout {}, drop path {}, BN momentum {}, EMA {}",
        p.label_smoothing,
        p.dropout,
        p.drop_path,
        p.bn_momentum,
        p.ema.map_or("none".into(), |d| d.to_string())
    );
    outln!("  augmentation  {}", p.augmentation);
    if p.stages.len() > 1 {
        outln!("  stages        steps          size  dropout  randaugment  mixup");
        for (i, s) in p.stages.iter().enumerate() {
            let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
            outln!(
                "    {:<11} {:>6}..{:<6} {:>4}  {:>7.3}  {:>11}  {:>5}",
                i + 1,
                s.from,
                s.to,
                s.size,
                s.dropout,
                opt(s.randaugment),
                opt(s.mixup)
            );
        }
    }
    Ok(())
}
