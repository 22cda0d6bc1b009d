//! Compile speed of the whole pipeline, in process: `.enet` text → IR → kernel
//! plan → validated WGSL → host code, as the macro expands it (tokens) and as
//! `effc compile` writes it (prettyplease-formatted `model.rs`).
//! `cargo bench -p effc-codegen --bench pipeline`

use criterion::{criterion_group, criterion_main, Criterion};
use effc_codegen::{CodegenOptions, Generated, Shaders};
use effc_driver::ModelRequest;

fn generate(name: &str, shaders: Shaders) -> Generated {
    let opts = CodegenOptions {
        format: shaders == Shaders::IncludeStr,
        shaders,
        ..CodegenOptions::default()
    };
    ModelRequest::builtin(name)
        .generate(&opts, false)
        .expect("built-ins compile")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("enet_to_host_code");
    g.sample_size(20);
    for name in ["b0", "v2-s", "v2-xl"] {
        g.bench_function(format!("{name}/macro_tokens"), |b| {
            b.iter(|| {
                let generated = generate(name, Shaders::Inline);
                generated.module_tokens().into_iter().count()
            })
        });
        g.bench_function(format!("{name}/model_rs"), |b| {
            b.iter(|| {
                let generated = generate(name, Shaders::IncludeStr);
                generated.file().len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
