//! Times the CPU backend on a built-in model with random weights: median
//! latency and milliseconds per kernel kind (one profiled forward per run).
//!
//! `cargo run --release -p effc-cpu --example profile -- [MODEL] [BATCH] [THREADS] [RUNS]`
//! (defaults b0 1 1 20); `EFFC_CPU_ISA` chooses the kernels' ISA. For numbers
//! to compare with other frameworks use `effc bench --device cpu` (bench/cpu.sh).

use std::time::Instant;

use effc_cpu::CpuModel;
use effc_ir::{Model, Options, Spec};
use effc_weights::Weights;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let name = arg(0, "b0");
    let num = |i: usize, d: &str| -> usize {
        arg(i, d)
            .parse()
            .unwrap_or_else(|e| panic!("argument {}: {e}", i + 1))
    };
    let (batch, threads, runs) = (num(1, "1"), num(2, "1"), num(3, "20"));
    let spec = Spec::builtin(&name).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let m =
        Model::build(&spec, &Options::default()).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let w = Weights::random(&m, 1);
    let cm = CpuModel::compile(&m, w.by_name(&m), batch, threads).unwrap_or_else(|e| panic!("{e}"));
    let x: Vec<f32> = (0..batch * m.input.iter().product::<usize>())
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
        .collect();
    let mut out = vec![0.0; batch * cm.output_len()];
    for _ in 0..3 {
        cm.forward_into(&x, batch, &mut out).unwrap();
    }
    // CPU time of the forwards alone (all the process's threads, from
    // /proc/self/task/*/schedstat): on a loaded machine wall time also counts
    // the time other processes held the cores.
    let cpu0 = cpu_ns();
    for _ in 0..runs {
        cm.forward_into(&x, batch, &mut out).unwrap();
    }
    let cpu_ms = cpu_ns().map(|t| (t - cpu0.unwrap_or(t)) as f64 / 1e6 / runs as f64);
    let mut times = vec![];
    let mut kinds: Vec<(&'static str, Vec<f64>)> = vec![];
    let mut per_kernel: Vec<Vec<f64>> = vec![];
    for _ in 0..runs {
        let s = Instant::now();
        cm.forward_into(&x, batch, &mut out).unwrap();
        times.push(s.elapsed().as_secs_f64() * 1e3);
        let mut per: Vec<(&'static str, f64)> = vec![];
        let prof = cm.profile(&x, batch).unwrap();
        per_kernel.resize(prof.len(), vec![]);
        for (v, t) in per_kernel.iter_mut().zip(&prof) {
            v.push(t.time.as_secs_f64() * 1e3);
        }
        for t in prof {
            match per.iter_mut().find(|(k, _)| *k == t.kind) {
                Some((_, ms)) => *ms += t.time.as_secs_f64() * 1e3,
                None => per.push((t.kind, t.time.as_secs_f64() * 1e3)),
            }
        }
        for (k, ms) in per {
            match kinds.iter_mut().find(|(n, _)| *n == k) {
                Some((_, v)) => v.push(ms),
                None => kinds.push((k, vec![ms])),
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{name} batch {batch} threads {} isa {}: median {:.2} ms wall, {} ms CPU per forward",
        cm.threads(),
        cm.isa(),
        median(&mut times),
        cpu_ms.map_or("?".into(), |t| format!("{t:.2}")),
    );
    for (k, v) in &mut kinds {
        println!("  {k:<12} {:.2} ms", median(v));
    }
    let prof = cm.profile(&x, batch).unwrap();
    let mut rows: Vec<(f64, usize)> = per_kernel
        .iter_mut()
        .enumerate()
        .map(|(i, v)| (median(v), i))
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("slowest kernels:");
    for &(ms, i) in rows.iter().take(12) {
        let t = &prof[i];
        println!(
            "  {:<22} {:<10} {ms:.3} ms {:.1} GFLOP/s",
            t.name,
            t.kind,
            t.flops as f64 / ms / 1e6
        );
    }
}

/// Nanoseconds the process' threads have run, where Linux says.
fn cpu_ns() -> Option<u64> {
    let mut total = 0;
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}
