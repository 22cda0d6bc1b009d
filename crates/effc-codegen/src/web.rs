//! The browser host: `effc compile --target web` writes a static site whose
//! `model.js` runs the same plan as the Rust host, on WebGPU.
//!
//! The facts the two hosts share (kernels, bindings, buffer slots, grids,
//! workgroup sizes, the per-image sizes the batch is chunked by) come from the
//! [`Plan`] here, as JSON data at the top of `model.js`; the rest of `model.js` is
//! the fixed runtime `web/runtime.js`, which computes only what depends on the
//! browser's adapter (its limits, hence the chunk size). The shaders are the
//! `.wgsl` files `effc_wgsl` wrote, fetched beside `model.js`.
//!
//! `weights.bin` is the weights packed as the kernels read them, after a header:
//! the 8 bytes `EFFCWEB\0`, a little-endian u32 version ([`WEIGHTS_VERSION`]), a
//! u32 length of the JSON header that follows (model name, plan fingerprint,
//! precision, and per kernel its name, byte offset and byte length), zero padding
//! to a multiple of 4 bytes, then the data: each kernel's values little endian, as
//! f32, or at f16 as halves (rounded from the BN-folded f32 values, clamped to
//! ±65504: `effc_plan::precision::encode`). `model.js` refuses a file whose magic,
//! version, model or fingerprint differ from its own plan.
//!
//! At f16 every kernel has two shaders, `<kernel>.wgsl` (native `f16`) and
//! `<kernel>.packed.wgsl` (halves in `u32`s); `model.js` requests `shader-f16` where
//! the adapter has it and fetches the packed spelling elsewhere.

use serde::Serialize;
use serde_json::json;

use crate::Generated;

/// The magic bytes that start `weights.bin`.
pub const WEIGHTS_MAGIC: &[u8; 8] = b"EFFCWEB\0";
/// The version of `weights.bin`'s layout.
pub const WEIGHTS_VERSION: u32 = 2;

const RUNTIME: &str = include_str!("../web/runtime.js");
const INDEX: &str = include_str!("../web/index.html");
/// The types of `model.js` (the same for every model), for TypeScript users.
const TYPES: &str = include_str!("../web/model.d.ts");

/// One file of the site: its name in the output directory and its bytes.
#[derive(Clone, Debug)]
pub struct SiteFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

#[derive(Serialize)]
struct WeightsHeader<'a> {
    model: &'a str,
    fingerprint: String,
    precision: effc_plan::Precision,
    kernels: Vec<WeightsEntry<'a>>,
}

#[derive(Serialize)]
struct WeightsEntry<'a> {
    name: &'a str,
    /// Bytes from the start of the data.
    offset: usize,
    bytes: usize,
}

/// Why a site was not written.
#[derive(Debug, Clone, PartialEq)]
pub struct WebError(pub String);

impl std::fmt::Display for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WebError {}

/// The plan as the JSON data `model.js` is parameterized with.
pub fn plan_json(g: &Generated, class_names: &[&str]) -> serde_json::Value {
    let plan = &g.plan;
    let m = &g.model;
    let cost = m.cost();
    let input = &plan.tensors[plan.input];
    let output = &plan.tensors[plan.output];
    let kernels: Vec<serde_json::Value> = plan
        .kernels
        .iter()
        .zip(&g.shaders)
        .enumerate()
        .map(|(i, (k, s))| {
            let bindings: Vec<serde_json::Value> = k
                .bindings
                .iter()
                .map(|b| match b.tensor {
                    None => json!({ "weights": true, "write": false }),
                    Some(t) => json!({ "slot": plan.tensors[t].slot, "write": b.write }),
                })
                .collect();
            json!({
                "name": k.name,
                "kind": k.kind(),
                "shader": s.file_name,
                "shaderPacked": g.packed_shaders.get(i).map(|p| &p.file_name),
                "workgroup": k.workgroup,
                "grid": k.grid,
                "weightBytes": k.layout.bytes(),
                "bindings": bindings,
            })
        })
        .collect();
    let names: &[&str] = if class_names.len() == m.classes {
        class_names
    } else {
        &[]
    };
    json!({
        "name": plan.model,
        "fingerprint": plan.fingerprint(),
        "weightsVersion": WEIGHTS_VERSION,
        "precision": plan.precision,
        "inputShape": plan.input_shape,
        "inputC4": input.c4,
        "resolution": m.resolution,
        "classes": m.classes,
        "embedding": m.embedding_len(),
        "outputLen": plan.output_len,
        "parameters": cost.params,
        "macs": cost.macs,
        "mean": m.mean,
        "std": m.std,
        "crop": 0.875,
        "maxBatch": g.max_batch,
        "slots": plan.slots.iter().map(|s| s.bytes).collect::<Vec<_>>(),
        // What the plan needs of an adapter: fit() and requiredLimits() compare
        // these numbers with the adapter's limits (effc_plan::AdapterNeeds).
        "needs": plan.adapter_needs(),
        "input": { "slot": input.slot, "bytes": input.bytes },
        "output": { "slot": output.slot, "bytes": output.bytes },
        "weightBytes": plan.weight_bytes(),
        "kernels": kernels,
        "classNames": names,
    })
}

/// `model.js`: the plan as data, then the runtime.
pub fn model_js(g: &Generated, class_names: &[&str]) -> String {
    // JSON is JavaScript since ES2019 even with U+2028/U+2029 in strings; they
    // are escaped anyway, so no engine ever sees a raw line separator.
    let data = serde_json::to_string(&plan_json(g, class_names))
        .expect("plain data")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    format!(
        "// effc: EfficientNet `{}` for WebGPU. Generated by `effc compile --target web`; do not edit.\n\
         const PLAN = {data};\n\n{RUNTIME}",
        effc_ir::names::in_comment(&g.plan.model)
    )
}

/// `weights.bin` from the packed weights (one `Vec` per kernel, from
/// `effc_plan::pack_weights`).
pub fn weights_bin(g: &Generated, packed: &[Vec<f32>]) -> Result<Vec<u8>, WebError> {
    plan_weights_bin(&g.plan, packed)
}

/// [`weights_bin`] for a plan.
pub fn plan_weights_bin(plan: &effc_plan::Plan, packed: &[Vec<f32>]) -> Result<Vec<u8>, WebError> {
    if packed.len() != plan.kernels.len() {
        return Err(WebError(format!(
            "{} packed weight arrays for the {} kernels of `{}`",
            packed.len(),
            plan.kernels.len(),
            plan.model
        )));
    }
    let mut entries = vec![];
    let mut data = Vec::with_capacity(plan.weight_bytes());
    for (k, w) in plan.kernels.iter().zip(packed) {
        if w.len() != k.weights_len {
            return Err(WebError(format!(
                "kernel `{}`: {} packed weights, its layout has {}",
                k.name,
                w.len(),
                k.weights_len
            )));
        }
        let stored = effc_plan::precision::encode(k.layout.elem, w);
        entries.push(WeightsEntry {
            name: &k.name,
            offset: data.len(),
            bytes: stored.bytes.len(),
        });
        data.extend_from_slice(&stored.bytes);
    }
    let header = serde_json::to_vec(&WeightsHeader {
        model: &plan.model,
        fingerprint: plan.fingerprint(),
        precision: plan.precision,
        kernels: entries,
    })
    .expect("plain data");
    let mut out = Vec::with_capacity(16 + header.len() + 4 + data.len());
    out.extend_from_slice(WEIGHTS_MAGIC);
    out.extend_from_slice(&WEIGHTS_VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&data);
    Ok(out)
}

/// Whether the web runtime runs this plan: a backbone (`--features`) is refused,
/// since `model.js` reads back one output tensor and knows only classes.
pub fn supports(plan: &effc_plan::Plan) -> Result<(), WebError> {
    if !plan.is_backbone() {
        return Ok(());
    }
    let levels: Vec<String> = plan.features.iter().map(|f| f.level.to_string()).collect();
    Err(WebError(format!(
        "`{}` ends at feature levels {} (a backbone): the web target does not run backbones yet (model.js reads back one output and classifies it); compile it with `--target rust`, or drop --features",
        plan.model,
        levels.join(", ")
    )))
}

/// The CPU backend's module, as the site names it.
pub const CPU_WASM: &str = "effc-cpu.wasm";
/// The plan serialized ([`effc_plan::Plan::from_json`] reads it), for the CPU
/// backend's module.
pub const PLAN_JSON: &str = "plan.json";

/// Every file of the site: the shaders, `model.js`, `index.html`,
/// `weights.bin` when weights are given, and the CPU backend (`cpu_wasm`, the
/// `effc-wasm` module, as `effc-cpu.wasm` with the plan as `plan.json`) when given.
pub fn site(
    g: &Generated,
    packed: Option<&[Vec<f32>]>,
    class_names: &[&str],
    cpu_wasm: Option<&[u8]>,
) -> Result<Vec<SiteFile>, WebError> {
    supports(&g.plan)?;
    let mut files: Vec<SiteFile> = g
        .shaders
        .iter()
        .chain(&g.packed_shaders)
        .map(|s| SiteFile {
            name: s.file_name.clone(),
            bytes: s.source.clone().into_bytes(),
        })
        .collect();
    files.push(SiteFile {
        name: "model.js".into(),
        bytes: model_js(g, class_names).into_bytes(),
    });
    files.push(SiteFile {
        name: "model.d.ts".into(),
        bytes: TYPES.as_bytes().to_vec(),
    });
    let title = html_escape(&g.plan.model);
    files.push(SiteFile {
        name: "index.html".into(),
        bytes: INDEX.replace("{{MODEL}}", &title).into_bytes(),
    });
    if let Some(p) = packed {
        files.push(SiteFile {
            name: "weights.bin".into(),
            bytes: weights_bin(g, p)?,
        });
    }
    if let Some(wasm) = cpu_wasm {
        files.push(SiteFile {
            name: CPU_WASM.into(),
            bytes: wasm.to_vec(),
        });
        files.push(SiteFile {
            name: PLAN_JSON.into(),
            bytes: serde_json::to_vec(&g.plan).expect("a plan is plain data"),
        });
    }
    Ok(files)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::builtin;
    use crate::{CodegenOptions, Precision};

    fn b0() -> Generated {
        builtin("b0", Precision::F32, &CodegenOptions::default())
    }

    #[test]
    fn weights_bin_has_the_header_and_the_data_in_kernel_order() {
        let g = b0();
        let packed: Vec<Vec<f32>> = g
            .plan
            .kernels
            .iter()
            .enumerate()
            .map(|(i, k)| vec![i as f32; k.weights_len])
            .collect();
        let bin = weights_bin(&g, &packed).unwrap();
        assert_eq!(&bin[..8], WEIGHTS_MAGIC);
        assert_eq!(
            u32::from_le_bytes(bin[8..12].try_into().unwrap()),
            WEIGHTS_VERSION
        );
        let hlen = u32::from_le_bytes(bin[12..16].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bin[16..16 + hlen]).unwrap();
        assert_eq!(header["model"], "b0");
        assert_eq!(header["fingerprint"], g.plan.fingerprint());
        let start = (16 + hlen).div_ceil(4) * 4;
        assert_eq!(bin.len(), start + g.plan.weight_bytes());
        let last = g.plan.kernels.len() - 1;
        let e = &header["kernels"][last];
        let off = start + e["offset"].as_u64().unwrap() as usize;
        let v = f32::from_le_bytes(bin[off..off + 4].try_into().unwrap());
        assert_eq!(v, last as f32);
    }

    #[test]
    fn weights_of_the_wrong_length_are_refused() {
        let g = b0();
        let mut packed: Vec<Vec<f32>> = g
            .plan
            .kernels
            .iter()
            .map(|k| vec![0.0; k.weights_len])
            .collect();
        packed[3].pop();
        let e = weights_bin(&g, &packed).unwrap_err();
        assert!(e.0.contains(&g.plan.kernels[3].name), "{e}");
        assert!(weights_bin(&g, &packed[1..]).is_err());
    }

    #[test]
    fn model_js_carries_the_plan() {
        let g = b0();
        let js = model_js(&g, &[]);
        let line = js.lines().nth(1).unwrap();
        let data = line
            .strip_prefix("const PLAN = ")
            .and_then(|l| l.strip_suffix(';'))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["fingerprint"], g.plan.fingerprint());
        assert_eq!(v["kernels"].as_array().unwrap().len(), g.plan.kernels.len());
        assert_eq!(v["kernels"][0]["bindings"][0]["weights"], true);
        assert_eq!(v["slots"].as_array().unwrap().len(), g.plan.slots.len());
        assert!(js.contains("export async function load("));
        let files = site(&g, None, &[], None).unwrap();
        assert!(files.iter().all(|f| f.name != "weights.bin"));
        assert!(files.iter().any(|f| f.name == "index.html"));
        assert!(files
            .iter()
            .all(|f| f.name != CPU_WASM && f.name != PLAN_JSON));
        let files = site(&g, None, &[], Some(b"\0asm")).unwrap();
        let file = |name: &str| &files.iter().find(|f| f.name == name).unwrap().bytes;
        assert_eq!(file(CPU_WASM), b"\0asm");
        assert_eq!(effc_plan::Plan::from_json(file(PLAN_JSON)).unwrap(), g.plan);
    }

    #[test]
    fn at_f16_weights_are_halves_and_every_shader_has_two_spellings() {
        let g = builtin("b0", Precision::F16, &CodegenOptions::default());
        let f32_bytes = b0().plan.weight_bytes();
        assert_eq!(g.plan.weight_bytes() * 2, f32_bytes);
        let packed: Vec<Vec<f32>> = g
            .plan
            .kernels
            .iter()
            .map(|k| vec![1.5; k.weights_len])
            .collect();
        let bin = weights_bin(&g, &packed).unwrap();
        let hlen = u32::from_le_bytes(bin[12..16].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bin[16..16 + hlen]).unwrap();
        assert_eq!(header["precision"], "f16");
        let start = (16 + hlen).div_ceil(4) * 4;
        assert_eq!(bin.len(), start + g.plan.weight_bytes());
        // 1.5 as a half is 0x3e00.
        assert_eq!(&bin[start..start + 2], &[0x00, 0x3e]);
        let e = &header["kernels"][1];
        assert_eq!(
            e["bytes"].as_u64().unwrap() as usize,
            g.plan.kernels[1].layout.bytes()
        );

        let v = plan_json(&g, &[]);
        assert_eq!(v["precision"], "f16");
        let k0 = &v["kernels"][0];
        assert_eq!(k0["shader"], "stem.wgsl");
        assert_eq!(k0["shaderPacked"], "stem.packed.wgsl");
        let files = site(&g, None, &[], None).unwrap();
        let wgsl = files.iter().filter(|f| f.name.ends_with(".wgsl")).count();
        assert_eq!(wgsl, 2 * g.plan.kernels.len());
        let stem = |name: &str| {
            let f = files.iter().find(|f| f.name == name).unwrap();
            String::from_utf8(f.bytes.clone()).unwrap()
        };
        assert!(stem("stem.wgsl").contains("enable f16;"));
        assert!(!stem("stem.packed.wgsl").contains("enable f16;"));
        assert!(stem("stem.packed.wgsl").contains("unpack2x16float"));
    }
}
