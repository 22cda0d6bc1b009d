//! `effc scale BASE --grid --train-on DATA`: the paper's step 1 for real. Each
//! grid point is the base scaled with its α, β, γ at φ = 1, trained from
//! scratch (timm's initialization) with the same seed, recipe and number of
//! steps on the CPU reference executor (effc-train), then evaluated on the
//! validation split; the points are ranked by top-1 (ties: fewer MACs).

use std::sync::Arc;
use std::time::Instant;

use effc_ir::scale::{self as ir_scale, Coefficients};
use effc_ir::{Model, Options, Spec};
use effc_train::data::{self, Source};
use effc_train::trainer::{self, Data, Eval, Event, Recipe, State, TrainError};
use serde::Serialize;

use super::grid::GridRow;
use crate::progress::Progress;
use crate::Error;

/// The most training steps a grid may take in all (points × steps per point),
/// checked before anything trains.
pub const TRAIN_GRID_MAX_STEPS: u64 = 20_000;

/// How every point is trained.
#[derive(Clone, Debug)]
pub struct GridTraining {
    pub data: Source,
    /// The recipe of every point; its `size` is replaced by each point's resolution.
    pub recipe: Recipe,
    /// Passes over the (subset of the) training split; one when neither is given.
    pub epochs: Option<u64>,
    /// Update steps per point, instead of `epochs`.
    pub steps: Option<u64>,
    /// Train on this many images of the training split (a seeded draw).
    pub train_subset: Option<usize>,
    /// Evaluate on this many images of the validation split (a seeded draw).
    pub val_subset: Option<usize>,
    /// Images per forward in evaluation.
    pub eval_batch: usize,
}

/// What training one point reached.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trained {
    /// The point's input size (the base's scaled by γ).
    pub resolution: usize,
    pub params: u64,
    pub macs: u64,
    pub steps: u64,
    /// On the validation split, of the final weights (their EMA when kept).
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    /// Wall time to train and evaluate the point.
    pub seconds: f64,
}

/// What every point was trained on, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct TrainingSummary {
    pub data: String,
    pub train_images: usize,
    pub val_images: usize,
    pub steps_per_point: u64,
    pub batch: usize,
    pub lr: f64,
    pub optimizer: String,
    pub seed: u64,
}

/// The splits (each cut to its subset), checked against the base's classes.
fn load(t: &GridTraining, base: &Spec) -> Result<(Data, TrainingSummary), Error> {
    let seed = t.recipe.seed;
    let splits = data::open(&t.data, seed).map_err(|e| Error::Usage(format!("--train-on: {e}")))?;
    let cut = |d: data::Dataset, n: Option<usize>, salt: u64| match n {
        Some(n) if n < d.len() => d.subset(n, seed ^ salt),
        _ => d,
    };
    let train = cut(splits.train, t.train_subset, 0);
    let val = cut(splits.val, t.val_subset, 1);
    if val.is_empty() {
        return Err(Error::Usage(format!(
            "--train-on: `{}` has no validation images to rank the points by",
            val.name
        )));
    }
    if train.classes.len() != base.classes {
        return Err(Error::Usage(format!(
            "--train-on: the data has {} classes, but `{}` has {}: give --classes {}",
            train.classes.len(),
            base.name,
            base.classes,
            train.classes.len()
        )));
    }
    let batch = t.recipe.batch;
    let spe = (train.len() / batch.max(1)) as u64;
    if spe == 0 {
        return Err(Error::Usage(format!(
            "--train-on: {} has {} images, fewer than one batch of {batch}: lower --train-batch or raise --train-subset",
            train.name,
            train.len()
        )));
    }
    let steps = match (t.steps, t.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) => e.saturating_mul(spe),
        (None, None) => spe,
    };
    if steps == 0 {
        return Err(Error::Usage(
            "nothing to train: --steps or --epochs is 0".into(),
        ));
    }
    let summary = TrainingSummary {
        data: format!("{}, validation {}", train.name, val.name),
        train_images: train.len(),
        val_images: val.len(),
        steps_per_point: steps,
        batch,
        lr: t.recipe.lr,
        optimizer: t.recipe.optimizer.name().to_string(),
        seed,
    };
    Ok((
        Data::Set {
            train: Arc::new(train),
            val: Arc::new(val),
        },
        summary,
    ))
}

/// Trains every point of `rows` (the base scaled at φ = 1 by each), fills in
/// what each reached and ranks them: top-1 first, then fewer MACs.
pub(super) fn train_points(
    t: &GridTraining,
    base: &Spec,
    rows: &mut [GridRow],
    progress: &dyn Progress,
) -> Result<TrainingSummary, Error> {
    if t.recipe.batch == 0 {
        return Err(Error::Usage("--train-batch must be at least 1".into()));
    }
    let (data, summary) = load(t, base)?;
    let steps = summary.steps_per_point;
    let points = rows.len() as u64;
    if points.saturating_mul(steps) > TRAIN_GRID_MAX_STEPS {
        return Err(Error::Usage(format!(
            "{points} grid points × {steps} steps each = {} training steps, over the limit of {TRAIN_GRID_MAX_STEPS} (points × steps): use a coarser --step, fewer --steps or --epochs, or a smaller --train-subset",
            points.saturating_mul(steps)
        )));
    }
    progress.note(&format!(
        "training {points} points, {steps} steps each (batch {}), on {}",
        summary.batch, summary.data
    ));
    progress.start(points * steps);
    for (i, row) in rows.iter_mut().enumerate() {
        let c = row.point.coefficients;
        progress.message(&format!(
            "point {} of {points}: α {} β {} γ {}",
            i + 1,
            c.alpha,
            c.beta,
            c.gamma
        ));
        let trained = train_point(t, base, &c, &data, steps, progress)?;
        progress.note(&format!(
            "point {} of {points}: α {} β {} γ {} ({} px, {} params, MACs ×{:.3}): top-1 {:.2}%, loss {:.4}, {:.1} s",
            i + 1,
            c.alpha,
            c.beta,
            c.gamma,
            trained.resolution,
            trained.params,
            row.point.macs_ratio,
            100.0 * trained.top1,
            trained.loss,
            trained.seconds
        ));
        row.trained = Some(trained);
    }
    progress.finish();
    rank(rows);
    Ok(summary)
}

/// Best top-1 first; equal top-1, fewer MACs first (stable otherwise).
pub(super) fn rank(rows: &mut [GridRow]) {
    let top1 = |r: &GridRow| r.trained.as_ref().map_or(f64::NEG_INFINITY, |t| t.top1);
    rows.sort_by(|a, b| {
        top1(b)
            .total_cmp(&top1(a))
            .then(a.point.macs_ratio.total_cmp(&b.point.macs_ratio))
    });
}

fn train_error(c: &Coefficients, e: TrainError) -> Error {
    Error::Invalid(format!(
        "training the point α {} β {} γ {}: {e}",
        c.alpha, c.beta, c.gamma
    ))
}

/// One point: built at φ = 1, initialized as timm does with the recipe's seed,
/// trained `steps` steps and evaluated.
fn train_point(
    t: &GridTraining,
    base: &Spec,
    c: &Coefficients,
    data: &Data,
    steps: u64,
    progress: &dyn Progress,
) -> Result<Trained, Error> {
    let started = Instant::now();
    let model = Model::build(&ir_scale::scaled(base, 1.0, c), &Options::default())?;
    let recipe = Recipe {
        size: model.resolution,
        ..t.recipe.clone()
    };
    let values = effc_train::init::init(&model, recipe.seed);
    let mut state = State::new(&model, values, &recipe).map_err(|e| train_error(c, e))?;
    let mut last: Option<(Option<Eval>, Option<Eval>)> = None;
    trainer::train(
        &model,
        &model,
        data,
        &recipe,
        &mut state,
        steps,
        None,
        t.eval_batch.max(1),
        &mut |e| {
            match e {
                Event::Step { .. } => progress.inc(1),
                Event::Epoch { eval, ema_eval, .. } => last = Some((eval, ema_eval)),
                Event::FirstGrads { .. } => {}
            }
            Ok(())
        },
    )
    .map_err(|e| train_error(c, e))?;
    // The last step ends with a validation; the EMA's when one is kept.
    let eval = match last {
        Some((_, Some(ema))) => ema,
        Some((Some(e), None)) => e,
        _ => {
            return Err(Error::Internal(format!(
                "the point α {} β {} γ {} was trained without a validation",
                c.alpha, c.beta, c.gamma
            )))
        }
    };
    let cost = model.cost();
    Ok(Trained {
        resolution: model.resolution,
        params: cost.params,
        macs: cost.macs,
        steps: state.step,
        top1: eval.top1,
        top5: eval.top5,
        loss: eval.loss,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `--plot` with `--train-on`: top-1 against the MACs ratio of every point, the
/// best circled.
pub(super) fn chart(base_name: &str, rows: &[GridRow], s: &TrainingSummary) -> effc_draw::Chart {
    let points = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let t = r.trained.as_ref()?;
            let c = r.point.coefficients;
            Some(effc_draw::Point {
                label: format!("α{} β{} γ{}", c.alpha, c.beta, c.gamma),
                x: r.point.macs_ratio,
                y: 100.0 * t.top1,
                meets: true,
                chosen: i == 0,
            })
        })
        .collect();
    effc_draw::Chart {
        title: format!(
            "{base_name} at φ = 1 for each α, β, γ: top-1 after {} steps against MACs",
            s.steps_per_point
        ),
        x_label: "MACs of φ = 1 over the base's (log scale)".into(),
        y_label: "validation top-1 (%)".into(),
        series: vec![effc_draw::Series {
            name: format!("{base_name}, α·β²·γ² ≈ 2"),
            points,
        }],
        budgets: vec![],
        note: Some(format!("{}; seed {}", s.data, s.seed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;
    use crate::scale::{grid, GridReport, GridRequest};
    use crate::ModelRequest;
    use effc_ir::scale::GridPoint;
    use effc_reference::train::StepConfig;
    use effc_train::optim::Kind;
    use effc_train::schedule::Decay;

    /// 12 px, 10 classes (Fashion-MNIST's), width = depth = 1.
    const TINY: &str = "
model tiny {
    resolution = 12
    stem       = 8
    head       = 16
    classes    = 10
    blocks {
        r1_k3_s1_e1_i8_o8_c1
        r1_k3_s2_e2_i8_o16_se0.25
    }
}";

    fn recipe() -> Recipe {
        Recipe {
            batch: 8,
            lr: 0.01,
            optimizer: Kind::adamw(),
            weight_decay: 1e-5,
            decay_all: false,
            decay: Decay::Cosine { min_lr: 0.0 },
            warmup_epochs: 0.0,
            warmup_lr: 0.0,
            step: StepConfig {
                label_smoothing: 0.1,
                ..StepConfig::default()
            },
            ema: None,
            seed: 5,
            augment: true,
            min_scale: 0.08,
            size: 0,
            randaugment: None,
            mixup: None,
        }
    }

    fn request(data: Source, steps: u64) -> GridRequest {
        GridRequest {
            base: ModelRequest::inline(TINY),
            base_arg: "tiny".into(),
            // α, β, γ: (1.25, 1, 1.25), (1.25, 1.25, 1), (2, 1, 1).
            step: 0.25,
            measure: false,
            batch: 1,
            train: Some(GridTraining {
                data,
                recipe: recipe(),
                epochs: None,
                steps: Some(steps),
                train_subset: Some(48),
                val_subset: Some(40),
                eval_batch: 16,
            }),
            plot: None,
        }
    }

    fn fashion_mnist() -> Option<Source> {
        effc_testkit::fashion_mnist().map(Source::FashionMnist)
    }

    #[test]
    fn every_point_is_trained_ranked_and_the_same_for_the_seed() {
        let Some(fm) = fashion_mnist() else { return };
        let r = grid(&request(fm.clone(), 2), &Silent).unwrap();
        assert_eq!(r.points.len(), 3);
        assert!(r.accuracy.is_none());
        let s = r.training.as_ref().unwrap();
        assert_eq!(
            (s.train_images, s.val_images, s.steps_per_point),
            (48, 40, 2)
        );
        for w in r.points.windows(2) {
            let (a, b) = (
                w[0].trained.as_ref().unwrap(),
                w[1].trained.as_ref().unwrap(),
            );
            assert!(
                a.top1 > b.top1
                    || (a.top1 == b.top1 && w[0].point.macs_ratio <= w[1].point.macs_ratio),
                "not ranked: {a:?} before {b:?}"
            );
        }
        for p in &r.points {
            let t = p.trained.as_ref().unwrap();
            assert!((0.0..=1.0).contains(&t.top1) && t.loss.is_finite(), "{t:?}");
            assert_eq!(t.steps, 2);
            // γ = 1.25 gives round(12·1.25) = 15 px.
            let want = if p.point.coefficients.gamma == 1.25 {
                15
            } else {
                12
            };
            assert_eq!(t.resolution, want);
        }
        // Everything but the wall time is the seed's.
        let strip = |r: &GridReport| -> Vec<(GridPoint, Trained)> {
            r.points
                .iter()
                .map(|p| {
                    let t = p.trained.clone().unwrap();
                    (p.point.clone(), Trained { seconds: 0.0, ..t })
                })
                .collect()
        };
        let again = grid(&request(fm, 2), &Silent).unwrap();
        assert_eq!(strip(&r), strip(&again));
    }

    #[test]
    fn a_grid_over_the_step_limit_is_refused_before_training() {
        let Some(fm) = fashion_mnist() else { return };
        let steps = TRAIN_GRID_MAX_STEPS / 3 + 1;
        let e = grid(&request(fm, steps), &Silent).unwrap_err().to_string();
        assert!(
            e.contains(&format!("3 grid points × {steps} steps each")) && e.contains("limit"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_data_set_or_other_classes_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Source::FashionMnist(dir.path().join("none"));
        let e = grid(&request(missing, 2), &Silent).unwrap_err().to_string();
        assert!(e.starts_with("--train-on: ") && e.contains("none"), "{e}");
        let Some(fm) = fashion_mnist() else { return };
        let mut req = request(fm, 2);
        req.base.options.classes = Some(3);
        let e = grid(&req, &Silent).unwrap_err().to_string();
        assert!(
            e.contains("the data has 10 classes") && e.contains("has 3"),
            "{e}"
        );
    }

    #[test]
    fn ranking_is_by_top1_then_fewer_macs() {
        let row = |macs_ratio: f64, top1: f64| GridRow {
            point: GridPoint {
                coefficients: ir_scale::PAPER,
                flops_factor: 2.0,
                macs_ratio,
            },
            latency_ratio: None,
            trained: Some(Trained {
                resolution: 1,
                params: 1,
                macs: 1,
                steps: 1,
                top1,
                top5: 1.0,
                loss: 0.0,
                seconds: 0.0,
            }),
        };
        let mut rows = vec![row(2.0, 0.5), row(1.5, 0.7), row(1.9, 0.7), row(1.8, 0.5)];
        rank(&mut rows);
        let got: Vec<f64> = rows.iter().map(|r| r.point.macs_ratio).collect();
        assert_eq!(got, [1.5, 1.9, 1.8, 2.0]);
    }
}
