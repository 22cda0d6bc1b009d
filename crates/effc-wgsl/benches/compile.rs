//! Compile speed: the whole pipeline from `.enet` text to validated WGSL
//! (parse, resolve, scale, plan, emit, naga), in process.
//! `cargo bench -p effc-wgsl --bench compile`

use criterion::{criterion_group, criterion_main, Criterion};
use effc_ir::{Model, Options, Spec};

fn pipeline(name: &str) -> usize {
    let spec = Spec::builtin(name).expect("built-ins resolve");
    let model = Model::build(&spec, &Options::default()).expect("built-ins build");
    let plan = effc_plan::plan(&model);
    effc_wgsl::compile(&plan).expect("built-ins compile").len()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("enet_to_wgsl");
    g.sample_size(20);
    for name in ["b0", "v2-s", "v2-xl", "l2"] {
        g.bench_function(name, |b| b.iter(|| pipeline(std::hint::black_box(name))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
