//! Times the reference executor: `cargo run --release -p effc-reference --example bench -- [model] [batch] [runs]`
//! (defaults: b0, 1, 20). Random weights, so any built-in runs; the model's own resolution.

use std::time::Instant;

use effc_ir::{Model, Options, Spec};
use effc_reference::{Executor, Tap};
use effc_weights::Weights;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("b0", String::as_str);
    let batch: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let runs: usize = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20)
        .max(1);
    let spec = match Spec::builtin(name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}", e.render(false));
            std::process::exit(2);
        }
    };
    let model: Model = match Model::build(&spec, &Options::default()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{}", e.render(false));
            std::process::exit(2);
        }
    };
    let weights = Weights::random(&model, 0);
    let ex = Executor::new(&model, &weights).expect("random weights are made for this model");
    let res = model.resolution;
    let input: Vec<f32> = (0..batch * 3 * res * res)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    ex.run(&input, batch)
        .expect("the input has the model's shape");
    let time = |tap: Option<Tap>| {
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                match tap {
                    Some(tap) => drop(ex.run_until(&input, batch, tap)),
                    None => drop(ex.run(&input, batch)),
                }
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        (times[runs / 2], times[0])
    };
    let (median, best) = time(None);
    let gmacs = model.cost().macs as f64 * batch as f64 / 1e9;
    println!(
        "{name} @{res} batch {batch}, {} threads: median {median:.1} ms, best {best:.1} ms over {runs} runs \
         ({gmacs:.2} GMAC, {:.1} GMAC/s)",
        rayon::current_num_threads(),
        gmacs / (median / 1e3)
    );
    let mut prev = 0.0;
    let mut taps = vec![("stem", Tap::Stem)];
    let names: Vec<String> = (0..model.stages.len())
        .map(|i| format!("stage{i}"))
        .collect();
    for (i, n) in names.iter().enumerate() {
        taps.push((n, Tap::Stage(i)));
    }
    taps.push(("head", Tap::Head));
    for (n, tap) in taps {
        let (m, _) = time(Some(tap));
        println!("  up to {n:7} {m:7.1} ms (+{:.1})", m - prev);
        prev = m;
    }
}
