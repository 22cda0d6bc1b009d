//! One training step (forward, backward, SGD update) of a built-in on the
//! GPU path and on the CPU reference, side by side in one run, alternating:
//! `cargo run --release -p effc-runtime --example train_step -- b0 64 4 5`
//! (model, resolution, batch, timed steps). Prints each side's median step time;
//! with `EFFC_TRAIN_PROFILE=1` also the GPU path's time per kernel kind.

use std::sync::Arc;
use std::time::Instant;

use effc_ir::{Model, Options, Spec};
use effc_reference::train::{step, Params, Rng, StepConfig, Target};
use effc_runtime::train::{GpuTrainer, Rule, Update};
use effc_runtime::Gpu;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let name = arg(0, "b0");
    let res: usize = arg(1, "64").parse()?;
    let batch: usize = arg(2, "4").parse()?;
    let runs: usize = arg(3, "5").parse::<usize>()?.max(1);
    let spec = Spec::builtin(&name).map_err(|e| e.render(false))?;
    let opts = Options {
        resolution: Some(res),
        classes: Some(10),
        ..Options::default()
    };
    let model = Model::build(&spec, &opts).map_err(|e| e.render(false))?;
    let weights = effc_weights::Weights::random(&model, 1);
    let mut cpu = Params::<f32>::from_weights(&model, &weights)?;
    let gpu = Arc::new(Gpu::new()?);
    let cfg = StepConfig::default();
    let params = model.params();
    let decay: Vec<bool> = params.iter().map(|p| p.trainable).collect();
    let mut t = GpuTrainer::new(
        gpu.clone(),
        &model,
        cpu.values(),
        batch,
        &cfg,
        Some(Update {
            rule: Rule::Sgd {
                momentum: 0.9,
                nesterov: true,
            },
            weight_decay: 1e-5,
            decay: decay.clone(),
            ema: None,
        }),
    )?;
    let mut opt = effc_train::optim::Optimizer::<f32>::new(
        effc_train::optim::Kind::Sgd {
            momentum: 0.9,
            nesterov: true,
        },
        1e-5,
        decay,
    );
    let mut r = Rng::new(0);
    let input: Vec<f32> = (0..batch * 3 * res * res)
        .map(|_| (r.uniform() * 2.0 - 1.0) as f32)
        .collect();
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    let (mut tg, mut tc) = (vec![], vec![]);
    // Step 0 of each side is a warm-up, untimed.
    for i in 0..=runs {
        let s = Instant::now();
        t.step(
            &input,
            Target::Labels(&labels),
            &mut Rng::new(i as u64),
            Some(0.01),
        )?;
        let g = s.elapsed().as_secs_f64();
        let s = Instant::now();
        let out = step(
            &model,
            &mut cpu,
            &input,
            batch,
            Target::Labels(&labels),
            &cfg,
            &mut Rng::new(i as u64),
        )?;
        opt.step(cpu.values_mut(), &out.grads, 0.01);
        let c = s.elapsed().as_secs_f64();
        if i > 0 {
            tg.push(g);
            tc.push(c);
        }
    }
    let (g, c) = (median(tg), median(tc));
    println!(
        "{name} {res}px batch {batch}, {} dispatches/step, on {}:",
        t.plan().forward.len() + t.plan().backward.len() + 1,
        gpu.adapter
    );
    println!(
        "  GPU path {:.1} ms/step ({:.1} img/s); CPU reference {:.1} ms/step ({:.1} img/s); GPU/CPU time {:.2}",
        g * 1e3,
        batch as f64 / g,
        c * 1e3,
        batch as f64 / c,
        g / c
    );
    println!(
        "  arena {:.1} MiB, parameters {:.1} MiB",
        t.plan().arena_len as f64 * 4.0 / (1 << 20) as f64,
        t.plan().param_len as f64 * 4.0 / (1 << 20) as f64
    );
    if std::env::var_os("EFFC_TRAIN_PROFILE").is_some() {
        println!("  per kernel kind (each dispatch alone, wall-clock):");
        for (kind, secs, n) in t.profile_kinds()? {
            println!(
                "    {:<12} {:>8.1} ms  {n} dispatches",
                kind.name(),
                secs * 1e3
            );
        }
    }
    Ok(())
}
