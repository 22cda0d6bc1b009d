//! The compile report (`report.md`, `report.json`): layers, parameters, MACs,
//! kernels, dispatches and memory, from the IR and the kernel plan.

use std::fmt::Write;

use effc_ir::cost::{bytes, group, shape};
use effc_ir::LayerRow;
use serde::Serialize;

use crate::Generated;

/// One kernel of the plan, as the report lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelRow {
    pub name: String,
    pub kind: &'static str,
    /// The IR layers it implements.
    pub layers: Vec<String>,
    /// Output tensor, HxWxC, when it writes one.
    pub output: Option<[usize; 3]>,
    pub workgroup: [u32; 3],
    /// Workgroups per image (x, y); z is the batch.
    pub grid: [u32; 2],
    pub weight_bytes: usize,
    /// Floating-point operations per image.
    pub flops: u64,
    pub wgsl: String,
}

/// What `effc compile` reports about a model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub model: String,
    pub spec: String,
    /// CHW.
    pub input: [usize; 3],
    pub classes: usize,
    pub output_len: usize,
    /// Trainable parameters.
    pub params: u64,
    /// BN running statistics (in checkpoints, folded away on the GPU).
    pub bn_buffers: u64,
    /// Multiply-accumulates per image.
    pub macs: u64,
    pub kernels_count: usize,
    /// How weights and activations are stored on the GPU (`f32`, `f16`); every
    /// byte count below is at this precision.
    pub precision: effc_plan::Precision,
    /// Compute dispatches per forward.
    pub dispatches: usize,
    /// Layer-by-layer execution: the most activation bytes live at once, per image.
    pub ir_peak_activation_bytes: u64,
    /// Activation buffers of the kernel plan, per image (after reuse by liveness).
    pub gpu_activation_bytes: usize,
    pub gpu_activation_buffers: usize,
    /// The same for `max_batch` images.
    pub max_batch: usize,
    pub gpu_activation_bytes_max_batch: usize,
    /// Packed weights (BN folded, channels padded to 4).
    pub gpu_weight_bytes: usize,
    pub kernels: Vec<KernelRow>,
    pub layers: Vec<LayerRow>,
}

impl Report {
    pub fn new(g: &Generated) -> Report {
        let m = &g.model;
        let plan = &g.plan;
        let cost = m.cost();
        let kernels = plan
            .kernels
            .iter()
            .zip(&g.shaders)
            .map(|(k, s)| KernelRow {
                name: k.name.clone(),
                kind: k.kind(),
                layers: k.layers.clone(),
                output: k.tensors_written().next().map(|t| {
                    let t = &plan.tensors[t];
                    [t.h, t.w, t.c]
                }),
                workgroup: k.workgroup,
                grid: k.grid,
                weight_bytes: k.layout.bytes(),
                flops: k.flops(),
                wgsl: s.file_name.clone(),
            })
            .collect();
        Report {
            model: m.name.clone(),
            spec: g.spec_origin.clone(),
            input: m.input,
            classes: m.classes,
            output_len: plan.output_len,
            params: cost.params,
            bn_buffers: cost.buffers,
            macs: cost.macs,
            kernels_count: plan.kernels.len(),
            precision: plan.precision,
            dispatches: plan.dispatches(),
            ir_peak_activation_bytes: cost.peak_activation_bytes,
            gpu_activation_bytes: plan.activation_bytes(1),
            gpu_activation_buffers: plan.slots.len(),
            max_batch: g.max_batch,
            gpu_activation_bytes_max_batch: plan.activation_bytes(g.max_batch),
            gpu_weight_bytes: plan.weight_bytes(),
            kernels,
            layers: m.layers(),
        }
    }

    /// Pretty-printed JSON.
    pub fn json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).expect("the report is plain data")
    }

    /// Markdown: a summary table, the kernels, the layers.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# effc compile report: `{}`\n", self.model);
        let _ = writeln!(o, "| | |\n| --- | --- |");
        let rows = [
            ("spec", format!("`{}`", self.spec)),
            ("input", format!("{} (CHW)", shape(self.input))),
            (
                "output",
                if self.classes > 0 {
                    format!("{} logits", self.output_len)
                } else {
                    format!("{}-value embedding (no classifier)", self.output_len)
                },
            ),
            ("parameters", group(self.params)),
            (
                "BN statistics",
                format!("{} (folded into the weights)", group(self.bn_buffers)),
            ),
            ("MACs per image", group(self.macs)),
            ("layers", self.layers.len().to_string()),
            ("kernels", self.kernels_count.to_string()),
            ("dispatches per forward", self.dispatches.to_string()),
            (
                "storage precision (GPU)",
                match self.precision {
                    effc_plan::Precision::F32 => "f32".to_string(),
                    effc_plan::Precision::F16 => {
                        "f16 (sums in f32; shaders native and packed)".to_string()
                    }
                },
            ),
            (
                "activation memory per image (GPU)",
                format!(
                    "{} in {} buffers",
                    bytes(self.gpu_activation_bytes as u64),
                    self.gpu_activation_buffers
                ),
            ),
            (
                "activation memory at max batch",
                format!(
                    "{} ({} images)",
                    bytes(self.gpu_activation_bytes_max_batch as u64),
                    self.max_batch
                ),
            ),
            (
                "peak activations, layer by layer (f32)",
                bytes(self.ir_peak_activation_bytes),
            ),
            ("packed weights (GPU)", bytes(self.gpu_weight_bytes as u64)),
        ];
        for (k, v) in rows {
            let _ = writeln!(o, "| {k} | {v} |");
        }
        let _ = writeln!(o, "\n## Kernels\n");
        let _ = writeln!(
            o,
            "| # | kernel | kind | output (HxWxC) | workgroups | workgroup | weights | MFLOP | implements |"
        );
        let _ = writeln!(
            o,
            "| ---: | --- | --- | --- | --- | --- | ---: | ---: | --- |"
        );
        for (i, k) in self.kernels.iter().enumerate() {
            let out = k
                .output
                .map(|[h, w, c]| format!("{h}x{w}x{c}"))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "| {i} | [`{}`]({}) | {} | {out} | {}x{}xN | {}x{}x{} | {} | {:.1} | {} |",
                k.name,
                k.wgsl,
                k.kind,
                k.grid[0],
                k.grid[1],
                k.workgroup[0],
                k.workgroup[1],
                k.workgroup[2],
                bytes(k.weight_bytes as u64),
                k.flops as f64 / 1e6,
                k.layers.join(", ")
            );
        }
        let _ = writeln!(o, "\n## Layers\n");
        let _ = writeln!(
            o,
            "| layer | op | act | input | output | k | s | params | MACs |"
        );
        let _ = writeln!(
            o,
            "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: |"
        );
        for l in &self.layers {
            let ks = |v: usize| if v == 0 { String::new() } else { v.to_string() };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                l.name,
                l.op,
                l.act.unwrap_or(""),
                shape(l.in_shape),
                shape(l.out_shape),
                ks(l.kernel),
                ks(l.stride),
                group(l.params),
                group(l.macs)
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::builtin;
    use crate::{CodegenOptions, Precision};

    #[test]
    fn report_totals_match_the_ir_and_plan() {
        let g = builtin("b0", Precision::F32, &CodegenOptions::default());
        let r = g.report();
        assert_eq!(r.params, 5_288_548, "timm's efficientnet_b0");
        assert_eq!(r.kernels.len(), g.plan.kernels.len());
        assert_eq!(r.dispatches, g.plan.kernels.len());
        assert_eq!(
            r.layers.iter().map(|l| l.macs).sum::<u64>(),
            r.macs,
            "MACs are the layers' sum"
        );
        let md = r.markdown();
        assert!(md.contains("| parameters | 5,288,548 |"), "{md}");
        assert!(md.contains("[`stem`](stem.wgsl)"), "{md}");
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["params"], 5_288_548);
        assert_eq!(v["kernels"][0]["name"], "stem");
        assert_eq!(v["layers"].as_array().unwrap().len(), r.layers.len());
    }
}
