//! effc's CPU backend in the browser: [`effc_cpu`] behind a small C ABI, compiled
//! for `wasm32-unknown-unknown` with `+simd128` (the kernels' [`effc_cpu::Isa::Simd128`]
//! path) and shipped by `effc compile --target web` as `effc-cpu.wasm`, the
//! fallback `model.js` runs where WebGPU is missing (or when asked).
//!
//! What reaches it is what the site already has: `plan.json` (the [`Plan`]
//! serialized, read back with [`Plan::from_json`], which validates it) and
//! `weights.bin` (the packed weights in kernel order after its header, the format
//! `effc_codegen::web` writes; its model, fingerprint, precision and every
//! kernel's name and length are checked against the plan). The plan travels
//! rather than being rebuilt here because it is exactly what the weights were
//! packed for (tuning included), and rebuilding it would need the spec, the
//! catalog and the parser inside the wasm module.
//!
//! The ABI (every function `extern "C"`, no wasm-bindgen): `effc_alloc`/`effc_free`
//! for the bytes JavaScript copies in; `effc_create(plan, weights, max_batch)` → a
//! session handle, or null with the reason in the message buffer
//! (`effc_message_ptr`/`effc_message_len`); `effc_input(s)` (room for `max_batch`
//! NCHW f32 images), `effc_forward(s, batch)` → 0, or -1 with the reason;
//! `effc_output(s)` (`batch · effc_output_len(s)` f32); `effc_info(s)` (JSON in the
//! message buffer: ISA, threads, sizes); `effc_destroy(s)`. Nothing panics across
//! it: every input error is a message.
//!
//! The same functions are built for the host too (an rlib), where the tests call
//! them.

use std::sync::Mutex;

use effc_cpu::{CpuError, CpuModel};
use effc_plan::{Plan, Precision};
use serde::Deserialize;

/// The magic bytes that start `weights.bin` (`effc_codegen::web::WEIGHTS_MAGIC`;
/// the tests check they agree).
pub const WEIGHTS_MAGIC: &[u8; 8] = b"EFFCWEB\0";
/// The version of `weights.bin` read here (`effc_codegen::web::WEIGHTS_VERSION`).
pub const WEIGHTS_VERSION: u32 = 2;

/// One model ready to run, with its input and output buffers.
pub struct Session {
    model: CpuModel,
    input: Vec<f32>,
    output: Vec<f32>,
}

#[derive(Deserialize)]
struct Header {
    model: String,
    fingerprint: String,
    precision: Precision,
    kernels: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    offset: usize,
    bytes: usize,
}

/// The packed weights of `plan` (one vector per kernel) from `weights.bin`.
pub fn read_weights(plan: &Plan, bin: &[u8]) -> Result<Vec<Vec<f32>>, String> {
    let bad = |what: String| Err(format!("weights.bin: {what}"));
    if bin.len() < 16 || &bin[..8] != WEIGHTS_MAGIC {
        return bad("not an effc web weights file (no EFFCWEB header)".into());
    }
    let version = u32::from_le_bytes(bin[8..12].try_into().expect("4 bytes"));
    if version != WEIGHTS_VERSION {
        return bad(format!(
            "version {version}, this runtime reads version {WEIGHTS_VERSION}: compile the site again"
        ));
    }
    let hlen = u32::from_le_bytes(bin[12..16].try_into().expect("4 bytes")) as usize;
    let Some(json) = bin.get(16..16 + hlen) else {
        return bad(format!(
            "its header claims {hlen} bytes, the file has {}",
            bin.len()
        ));
    };
    let h: Header = match serde_json::from_slice(json) {
        Ok(h) => h,
        Err(e) => return bad(format!("unreadable header: {e}")),
    };
    if h.model != plan.model {
        return bad(format!(
            "holds model `{}`, the plan is `{}`",
            h.model, plan.model
        ));
    }
    if h.fingerprint != plan.fingerprint() {
        return bad(format!(
            "packed for plan {}, this plan is {}: compile the site again",
            h.fingerprint,
            plan.fingerprint()
        ));
    }
    if h.precision != Precision::F32 {
        return bad(format!(
            "stores {} weights; the wasm CPU backend reads f32",
            h.precision.name()
        ));
    }
    if h.kernels.len() != plan.kernels.len() {
        return bad(format!(
            "{} kernels, the plan has {}",
            h.kernels.len(),
            plan.kernels.len()
        ));
    }
    let data = &bin[(16 + hlen).next_multiple_of(4).min(bin.len())..];
    let mut out = Vec::with_capacity(plan.kernels.len());
    for (k, e) in plan.kernels.iter().zip(&h.kernels) {
        if e.name != k.name || e.bytes != k.weights_len * 4 {
            return bad(format!(
                "kernel `{}` of {} bytes where the plan has `{}` of {} bytes",
                e.name,
                e.bytes,
                k.name,
                k.weights_len * 4
            ));
        }
        let Some(bytes) = e
            .offset
            .checked_add(e.bytes)
            .and_then(|end| data.get(e.offset..end))
        else {
            return bad(format!(
                "kernel `{}` lies past the end of the file ({} data bytes)",
                k.name,
                data.len()
            ));
        };
        out.push(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect(),
        );
    }
    Ok(out)
}

impl Session {
    /// A session from `plan.json` and `weights.bin` for at most `max_batch` images.
    pub fn new(plan_json: &[u8], weights_bin: &[u8], max_batch: usize) -> Result<Session, String> {
        let plan = Plan::from_json(plan_json).map_err(|e| format!("plan.json: {e}"))?;
        if plan.precision != Precision::F32 {
            return Err(format!(
                "the wasm CPU backend runs f32 plans only; `{}` stores {} (compile it without --precision f16, or use WebGPU)",
                plan.model,
                plan.precision.name()
            ));
        }
        let per_image = plan.input_shape.iter().product::<usize>();
        // The batch's buffers first: too large a max batch is a message, not an
        // abort when memory cannot grow.
        let input = zeros(max_batch, per_image, "input")?;
        let output = zeros(max_batch, plan.output_len, "output")?;
        let weights = read_weights(&plan, weights_bin)?;
        let model = CpuModel::new(plan, weights, max_batch, 1).map_err(message)?;
        Ok(Session {
            input,
            output,
            model,
        })
    }

    /// Runs the first `batch` images of the input buffer into the output buffer.
    pub fn forward(&mut self, batch: usize) -> Result<(), String> {
        if batch == 0 || batch > self.model.max_batch() {
            return Err(format!(
                "a batch of {batch} images; this model takes 1 to {}",
                self.model.max_batch()
            ));
        }
        let per = self.input.len() / self.model.max_batch();
        let n = self.model.output_len();
        self.model
            .forward_into(
                &self.input[..batch * per],
                batch,
                &mut self.output[..batch * n],
            )
            .map_err(message)
    }

    /// The input buffer: `max_batch` images, NCHW f32, one after another.
    pub fn input(&mut self) -> &mut [f32] {
        &mut self.input
    }

    /// The output buffer: `output_len` values per image.
    pub fn output(&self) -> &[f32] {
        &self.output
    }

    pub fn model(&self) -> &CpuModel {
        &self.model
    }

    /// What runs, as JSON: `{"isa", "threads", "maxBatch", "inputLen", "outputLen"}`.
    pub fn info(&self) -> String {
        serde_json::json!({
            "isa": self.model.isa().name(),
            "threads": self.model.threads(),
            "maxBatch": self.model.max_batch(),
            "inputLen": self.input.len() / self.model.max_batch(),
            "outputLen": self.model.output_len(),
        })
        .to_string()
    }
}

/// `batch · per` zeros, or why there is no room for them.
fn zeros(batch: usize, per: usize, what: &str) -> Result<Vec<f32>, String> {
    let too_big = || {
        format!("no memory for the {what} of a batch of {batch} images ({per} values each); use a smaller maxBatch")
    };
    let n = batch.checked_mul(per).ok_or_else(too_big)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| too_big())?;
    v.resize(n, 0.0);
    Ok(v)
}

fn message(e: CpuError) -> String {
    match e {
        CpuError::Unsupported { model, what } => {
            format!("the wasm CPU backend cannot run `{model}`: {what}")
        }
        e => e.to_string(),
    }
}

/// The last error or info message (one module instance runs one thing at a time).
static MESSAGE: Mutex<String> = Mutex::new(String::new());

fn set_message(m: String) {
    *MESSAGE.lock().unwrap_or_else(|p| p.into_inner()) = m;
}

/// `len` bytes for JavaScript to write into (null if memory cannot grow that far).
#[no_mangle]
pub extern "C" fn effc_alloc(len: usize) -> *mut u8 {
    let mut v: Vec<u8> = Vec::new();
    if v.try_reserve_exact(len.max(1)).is_err() {
        set_message(format!("out of memory: {len} bytes"));
        return std::ptr::null_mut();
    }
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

/// Frees what [`effc_alloc`] returned.
///
/// # Safety
/// `ptr` came from `effc_alloc(len)` and is not used after.
#[no_mangle]
pub unsafe extern "C" fn effc_free(ptr: *mut u8, len: usize) {
    if !ptr.is_null() {
        // SAFETY: the caller's contract: effc_alloc reserved exactly len.max(1).
        drop(unsafe { Vec::from_raw_parts(ptr, 0, len.max(1)) });
    }
}

/// Reads `len` bytes at `ptr` (empty for a null or zero-length pointer).
///
/// # Safety
/// `ptr` is valid for reads of `len` bytes.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// A session from `plan.json` and `weights.bin` (copied in with [`effc_alloc`];
/// JavaScript may free them after), or null with the reason in the message.
///
/// # Safety
/// Each pointer is valid for reads of its length.
#[no_mangle]
pub unsafe extern "C" fn effc_create(
    plan: *const u8,
    plan_len: usize,
    weights: *const u8,
    weights_len: usize,
    max_batch: usize,
) -> *mut Session {
    // SAFETY: the caller's contract.
    let (plan, weights) = unsafe { (bytes(plan, plan_len), bytes(weights, weights_len)) };
    match Session::new(plan, weights, max_batch) {
        Ok(s) => Box::into_raw(Box::new(s)),
        Err(e) => {
            set_message(e);
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// `s` came from [`effc_create`] and was not destroyed.
#[no_mangle]
pub unsafe extern "C" fn effc_destroy(s: *mut Session) {
    if !s.is_null() {
        // SAFETY: the caller's contract.
        drop(unsafe { Box::from_raw(s) });
    }
}

/// Where to write the input: room for `max_batch` NCHW f32 images.
///
/// # Safety
/// `s` is a live session.
#[no_mangle]
pub unsafe extern "C" fn effc_input(s: *mut Session) -> *mut f32 {
    // SAFETY: the caller's contract.
    unsafe { (*s).input().as_mut_ptr() }
}

/// Runs the first `batch` images of the input: 0, or -1 with the reason in the
/// message.
///
/// # Safety
/// `s` is a live session.
#[no_mangle]
pub unsafe extern "C" fn effc_forward(s: *mut Session, batch: usize) -> i32 {
    // SAFETY: the caller's contract.
    match unsafe { (*s).forward(batch) } {
        Ok(()) => 0,
        Err(e) => {
            set_message(e);
            -1
        }
    }
}

/// The output: `output_len` f32 per image of the last forward.
///
/// # Safety
/// `s` is a live session.
#[no_mangle]
pub unsafe extern "C" fn effc_output(s: *const Session) -> *const f32 {
    // SAFETY: the caller's contract.
    unsafe { (*s).output().as_ptr() }
}

/// Values per image in the output.
///
/// # Safety
/// `s` is a live session.
#[no_mangle]
pub unsafe extern "C" fn effc_output_len(s: *const Session) -> usize {
    // SAFETY: the caller's contract.
    unsafe { (*s).model().output_len() }
}

/// Puts [`Session::info`] in the message and returns its length.
///
/// # Safety
/// `s` is a live session.
#[no_mangle]
pub unsafe extern "C" fn effc_info(s: *const Session) -> usize {
    // SAFETY: the caller's contract.
    let info = unsafe { (*s).info() };
    let n = info.len();
    set_message(info);
    n
}

/// The message (UTF-8): the last error, or the last [`effc_info`].
#[no_mangle]
pub extern "C" fn effc_message_ptr() -> *const u8 {
    MESSAGE.lock().unwrap_or_else(|p| p.into_inner()).as_ptr()
}

/// The message's length in bytes.
#[no_mangle]
pub extern "C" fn effc_message_len() -> usize {
    MESSAGE.lock().unwrap_or_else(|p| p.into_inner()).len()
}
