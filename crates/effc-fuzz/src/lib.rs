//! The bodies of effc's fuzz targets, one function per target.
//!
//! `fuzz/` (a `cargo fuzz` crate outside the workspace) calls these on the
//! fuzzer's inputs; `tests/replay.rs` calls them on every file of the committed
//! corpora (`fuzz/corpus/<target>/`), so CI replays the corpora without a nightly
//! toolchain. A target body never panics on any input: a panic is a bug.

use std::io::Write;
use std::sync::OnceLock;

use effc_ir::{Model, Naming, Options, Spec};
use effc_weights::Weights;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The fuzz targets, by the name of their `fuzz/fuzz_targets/*.rs` file and corpus.
pub const TARGETS: &[(&str, Target)] =
    &[("spec", spec), ("checkpoint", checkpoint), ("image", image)];

/// Spec inputs larger than this are not run (the fuzzer's own cap is smaller).
const MAX_SPEC_BYTES: usize = 1 << 16;

/// Models with more blocks than this are built but not planned or printed, to keep
/// one run short; the IR's limits already bound their size.
const MAX_PLANNED_BLOCKS: usize = 400;

/// Images declaring more pixels than this, but not more than effc reads at all
/// ([`effc_weights::MAX_IMAGE_PIXELS`], refused from the header), are not run:
/// decoding is linear in the declared size, so a few hundred bytes declaring
/// 60 million pixels take seconds under ASAN and the fuzzer would stall on them.
const MAX_FUZZED_PIXELS: u64 = 1 << 22;

/// The small model the `checkpoint` and `image` targets load their inputs against:
/// every kind of tensor (stem, expansion, depthwise, SE, projection, head,
/// classifier, BN statistics) with as few channels as can be, so that a whole
/// f32 checkpoint (the `checkpoint` seeds) is a few KB and the fuzzer's
/// mutations land mostly in the header rather than in weight values.
pub const TINY_SPEC: &str = "\
model tiny {
    resolution = 32
    stem = 4
    head = 8
    classes = 3
    blocks {
        r1_k3_s1_e1_i4_o4_se0.25
        r1_k3_s2_e2_i4_o8
    }
}
";

/// The tiny model of [`TINY_SPEC`], built once.
pub fn tiny_model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let spec = Spec::parse("<tiny>", TINY_SPEC).expect("the tiny spec is valid");
        Model::build(&spec, &Options::default()).expect("the tiny model builds")
    })
}

/// `spec`: the bytes as a `.enet` text through the front end: parse, resolve every
/// model (as `effc check` does), build the IR, plan the kernels; print the IR and
/// render the diagnostics.
pub fn spec(data: &[u8]) {
    if data.len() > MAX_SPEC_BYTES {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Spec::parse_all("fuzz.enet", text) {
        Ok(specs) => {
            assert!(!specs.is_empty(), "parse_all succeeded with no model");
            for s in &specs {
                match Model::build(s, &Options::default()) {
                    Ok(m) => exercise_model(&m),
                    Err(d) => check_diagnostics(&d),
                }
            }
        }
        Err(d) => check_diagnostics(&d),
    }
}

fn exercise_model(m: &Model) {
    let _ = m.cost();
    if m.blocks().count() > MAX_PLANNED_BLOCKS {
        return;
    }
    let _ = m.render();
    for n in Naming::ALL {
        let _ = m.named_params(n);
    }
    let plan = effc_plan::plan(m);
    let _ = format!("{plan:?}");
}

fn check_diagnostics(d: &effc_syntax::Diagnostics) {
    assert!(!d.is_empty(), "an error without a diagnostic");
    let rendered = d.render(false);
    assert!(
        !rendered.trim().is_empty(),
        "a diagnostic rendered as nothing"
    );
    let _ = d.to_string();
}

/// `checkpoint`: the bytes as a safetensors file loaded against [`tiny_model`], with
/// the naming detected and with each naming forced.
pub fn checkpoint(data: &[u8]) {
    let model = tiny_model();
    for naming in std::iter::once(None).chain(Naming::ALL.iter().copied().map(Some)) {
        match Weights::from_bytes(data, "fuzz.safetensors", model, naming) {
            Ok(w) => {
                for p in model.params() {
                    let values = w.get(&p.key);
                    assert_eq!(values.map(<[f32]>::len), Some(p.numel()), "{}", p.name);
                    assert!(
                        values.unwrap_or(&[]).iter().all(|v| v.is_finite()),
                        "{}",
                        p.name
                    );
                }
            }
            Err(e) => {
                assert!(!e.to_string().is_empty(), "an empty error message");
            }
        }
    }
}

/// `image`: the bytes as an image file, read by `effc_weights::load_image` (the
/// function `effc run` uses: decoding, then preprocessing) for [`tiny_model`];
/// not run for sizes between [`MAX_FUZZED_PIXELS`] and `MAX_IMAGE_PIXELS`.
pub fn image(data: &[u8]) {
    let model = tiny_model();
    let path = std::env::temp_dir().join(format!("effc-fuzz-image-{}", std::process::id()));
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(data));
    if written.is_err() {
        return;
    }
    let declared = image::ImageReader::open(&path)
        .ok()
        .and_then(|r| r.with_guessed_format().ok())
        .and_then(|r| r.into_dimensions().ok());
    if let Some((w, h)) = declared {
        let pixels = u64::from(w) * u64::from(h);
        if pixels > MAX_FUZZED_PIXELS && pixels <= effc_weights::MAX_IMAGE_PIXELS {
            return;
        }
    }
    match effc_weights::load_image(&path, model) {
        Ok(x) => {
            assert_eq!(x.len(), 3 * model.resolution * model.resolution);
            assert!(x.iter().all(|v| v.is_finite()), "a non-finite input value");
        }
        Err(e) => assert!(!e.to_string().is_empty(), "an empty error message"),
    }
}
