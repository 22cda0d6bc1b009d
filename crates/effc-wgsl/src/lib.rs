//! The WGSL backend: each kernel of a [`Plan`] spelled as one compute shader, shapes
//! as constants, with a header comment naming the layers it implements. Every
//! decision (fusion, tiling, layout) was made by the plan; this crate only spells it.
//!
//! [`compile`] emits every kernel and validates it with naga; a shader that fails
//! validation is a compiler bug, reported with the kernel's name.

use std::fmt;

use effc_plan::{Kernel, Op, Plan};

mod depthwise;
mod gemm;
mod half;
mod reduce;
pub mod train;
mod writer;

pub use half::Spelling;

/// One generated shader.
#[derive(Clone, Debug, PartialEq)]
pub struct Shader {
    /// The kernel's name (`blocks.1.0.expand`).
    pub kernel: String,
    /// A file name for it (`blocks_1_0_expand.wgsl`).
    pub file_name: String,
    pub source: String,
}

/// A generated shader that naga rejects: a bug in effc, not in the user's spec.
#[derive(Clone, Debug)]
pub struct CompileError {
    pub kernel: String,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "internal compiler error: the WGSL generated for kernel `{}` does not validate (please report this):\n{}",
            self.kernel, self.message
        )
    }
}

impl std::error::Error for CompileError {}

/// Emits and validates the shaders of every kernel of a plan, in dispatch order
/// (f16 storage, if the plan has it, in the default [`Spelling`], packed).
pub fn compile(plan: &Plan) -> Result<Vec<Shader>, CompileError> {
    compile_as(plan, Spelling::default())
}

/// [`compile`], with f16 storage spelled `spelling` (f32 plans ignore it).
pub fn compile_as(plan: &Plan, spelling: Spelling) -> Result<Vec<Shader>, CompileError> {
    let shaders = emit_all_as(plan, spelling);
    validate_all(&shaders)?;
    Ok(shaders)
}

/// The shaders of every kernel of a plan, in dispatch order, not yet validated
/// (see [`validate_all`]; [`compile`] does both).
pub fn emit_all(plan: &Plan) -> Vec<Shader> {
    emit_all_as(plan, Spelling::default())
}

/// [`emit_all`], with f16 storage spelled `spelling`.
pub fn emit_all_as(plan: &Plan, spelling: Spelling) -> Vec<Shader> {
    plan.kernels
        .iter()
        .map(|k| Shader {
            kernel: k.name.clone(),
            file_name: file_name(&k.name),
            source: emit_as(plan, k, spelling),
        })
        .collect()
}

/// Validates shaders with naga; the first failure in dispatch order.
pub fn validate_all(shaders: &[Shader]) -> Result<(), CompileError> {
    validate_while(shaders, || ()).0
}

/// Validates shaders with naga on every core while the calling thread runs `work`
/// (and then helps validate): for work that does not need the result, such as
/// writing host code. Returns the first failure in dispatch order, and `work`'s result.
pub fn validate_while<R>(
    shaders: &[Shader],
    work: impl FnOnce() -> R,
) -> (Result<(), CompileError>, R) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    // Kernels whose code is the same (the blocks of a stage after its first, say)
    // differ only in their comments: each distinct body is validated once.
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<&Shader> = shaders
        .iter()
        .filter(|s| seen.insert(body(&s.source)))
        .collect();
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<(usize, CompileError)>> = Mutex::new(None);
    let drain = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(s) = distinct.get(i) else { break };
        if let Err(message) = validate(&s.source) {
            let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
            if f.as_ref().is_none_or(|(j, _)| i < *j) {
                let kernel = s.kernel.clone();
                *f = Some((i, CompileError { kernel, message }));
            }
        }
    };
    let helpers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(distinct.len())
        .saturating_sub(1);
    let result = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..helpers.max(1)).map(|_| scope.spawn(drain)).collect();
        let result = work();
        drain();
        for w in workers {
            if w.join().is_err() {
                let message = "the WGSL validator panicked".to_string();
                let kernel = "?".to_string();
                let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
                f.get_or_insert((usize::MAX, CompileError { kernel, message }));
            }
        }
        result
    });
    let failure = failure.into_inner().unwrap_or_else(|p| p.into_inner());
    match failure {
        Some((_, e)) => (Err(e), result),
        None => (Ok(()), result),
    }
}

/// A shader's code without its header comment: kernels with equal bodies compile
/// to the same pipeline.
pub fn body(source: &str) -> &str {
    let mut rest = source;
    while rest.starts_with("//") {
        rest = rest.split_once('\n').map_or("", |(_, r)| r);
    }
    rest
}

/// `blocks.1.0.expand` → `blocks_1_0_expand.wgsl`
pub fn file_name(kernel: &str) -> String {
    format!("{}.wgsl", kernel.replace(['.', '-'], "_"))
}

/// Parses and validates a WGSL module with naga (native f16 and the packed-half
/// built-ins allowed: which one the adapter has is the runtime's choice of
/// [`Spelling`]).
pub fn validate(source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let mut v = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::SHADER_FLOAT16
            | naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
    );
    v.validate(&module).map_err(|e| e.emit_to_string(source))?;
    Ok(())
}

/// The WGSL of one kernel: the header and bindings, then its kind's body
/// (`kernels/*.wgsl`) with the constants and variants the plan decides.
pub fn emit(plan: &Plan, k: &Kernel) -> String {
    emit_as(plan, k, Spelling::default())
}

/// [`emit`], with f16 storage spelled `spelling` (see [`Spelling`]): the same
/// body, its loads and stores of f16 bindings converted.
pub fn emit_as(plan: &Plan, k: &Kernel, spelling: Spelling) -> String {
    let mut o = String::new();
    writer::header(&mut o, plan, k, spelling);
    let mut body = String::new();
    match &k.op {
        Op::Gemm(g) => gemm::gemm(&mut body, plan, k, g),
        Op::Depthwise(d) => depthwise::depthwise(&mut body, k, d),
        Op::Se(s) => reduce::se(&mut body, plan, k, s),
        Op::Classifier(h) => reduce::classifier(&mut body, k, h),
    }
    let half = writer::f16_bindings(plan, k);
    if half.is_empty() {
        o.push_str(&body);
    } else {
        o.push_str(&half::rewrite(&body, &half));
    }
    o
}
