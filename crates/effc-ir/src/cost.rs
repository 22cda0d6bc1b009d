//! The cost model (parameters, multiply-accumulates, activation memory) and the
//! readable printout of the IR.

use std::fmt::Write;

use serde::Serialize;

use crate::model::{BlockKind, Conv2d, ConvBn, Model, Pad};

/// One row of the layer table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerRow {
    /// Canonical layer name (`blocks.1.0.expand.conv`).
    pub name: String,
    /// What it computes (`conv`, `dwconv`, `bn`, `se.reduce`, `add`, `pool`, `linear`).
    pub op: &'static str,
    /// Activation applied after it, if any (`swish`, `sigmoid`, ...).
    pub act: Option<&'static str>,
    pub in_shape: [usize; 3],
    pub out_shape: [usize; 3],
    pub kernel: usize,
    pub stride: usize,
    pub pad: Pad,
    pub groups: usize,
    pub params: u64,
    pub macs: u64,
}

/// Totals for one image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cost {
    /// Trainable parameters.
    pub params: u64,
    /// BN running statistics (not trainable, but in every checkpoint).
    pub buffers: u64,
    /// Multiply-accumulates of convs and the classifier.
    pub macs: u64,
    /// Sum of every layer output (f32 bytes), what an unfused executor writes.
    pub activation_bytes: u64,
    /// The most f32 bytes live at once in a layer-by-layer execution
    /// (layer input, layer output and a block input kept for its residual).
    pub peak_activation_bytes: u64,
    /// The largest single activation tensor (f32 bytes).
    pub largest_activation_bytes: u64,
}

fn numel(s: [usize; 3]) -> u64 {
    crate::model::mul(&s)
}

fn conv_row(name: String, c: &Conv2d) -> LayerRow {
    LayerRow {
        name,
        op: if c.is_depthwise() { "dwconv" } else { "conv" },
        act: None,
        in_shape: [c.in_ch, c.in_hw.0, c.in_hw.1],
        out_shape: [c.out_ch, c.out_hw.0, c.out_hw.1],
        kernel: c.kernel,
        stride: c.stride,
        pad: c.pad,
        groups: c.groups,
        params: c.params(),
        macs: c.macs(),
    }
}

fn bn_row(name: String, cb: &ConvBn) -> LayerRow {
    let s = cb.out_shape();
    LayerRow {
        name,
        op: "bn",
        act: cb.act.map(|a| a.name()),
        in_shape: s,
        out_shape: s,
        kernel: 0,
        stride: 0,
        pad: Pad::default(),
        groups: 0,
        params: 2 * cb.bn.channels as u64,
        macs: 0,
    }
}

fn simple(
    name: String,
    op: &'static str,
    act: Option<&'static str>,
    in_shape: [usize; 3],
    out_shape: [usize; 3],
    params: u64,
    macs: u64,
) -> LayerRow {
    LayerRow {
        name,
        op,
        act,
        in_shape,
        out_shape,
        kernel: 0,
        stride: 0,
        pad: Pad::default(),
        groups: 0,
        params,
        macs,
    }
}

impl Model {
    /// Every layer, in execution order.
    pub fn layers(&self) -> Vec<LayerRow> {
        let mut rows = vec![];
        let cb = |rows: &mut Vec<LayerRow>, prefix: String, c: &ConvBn| {
            rows.push(conv_row(format!("{prefix}.conv"), &c.conv));
            rows.push(bn_row(format!("{prefix}.bn"), c));
        };
        cb(&mut rows, "stem".into(), &self.stem);
        for b in self.blocks() {
            let p = b.path();
            if let Some(e) = &b.expand {
                cb(&mut rows, format!("{p}.expand"), e);
            }
            cb(&mut rows, format!("{p}.{}", b.conv_name()), &b.conv);
            if let Some(se) = &b.se {
                let c = se.channels;
                let r = se.reduced;
                let hw = b.conv.conv.out_hw;
                // (op, activation, input, output, parameters, MACs)
                let se_rows = [
                    (
                        "se.reduce",
                        Some(se.act.name()),
                        [c, hw.0, hw.1],
                        [r, 1, 1],
                        c * r + r,
                        c * r,
                    ),
                    (
                        "se.expand",
                        Some("sigmoid"),
                        [r, 1, 1],
                        [c, 1, 1],
                        c * r + c,
                        c * r,
                    ),
                    ("se.scale", None, [c, hw.0, hw.1], [c, hw.0, hw.1], 0, 0),
                ];
                for (op, act, i, o, params, macs) in se_rows {
                    let (params, macs) = (params as u64, macs as u64);
                    rows.push(simple(format!("{p}.{op}"), op, act, i, o, params, macs));
                }
            }
            if let Some(pr) = &b.project {
                cb(&mut rows, format!("{p}.project"), pr);
            }
            if b.residual {
                rows.push(simple(
                    format!("{p}.add"),
                    "add",
                    None,
                    b.out_shape,
                    b.out_shape,
                    0,
                    0,
                ));
            }
        }
        cb(&mut rows, "head".into(), &self.head);
        let h = self.head.out_shape();
        rows.push(simple("pool".into(), "pool", None, h, [h[0], 1, 1], 0, 0));
        if let Some(l) = &self.classifier {
            rows.push(simple(
                "classifier".into(),
                "linear",
                None,
                [l.in_features, 1, 1],
                [l.out_features, 1, 1],
                (l.in_features * l.out_features + l.out_features) as u64,
                (l.in_features * l.out_features) as u64,
            ));
        }
        rows
    }

    /// Parameters, MACs and activation memory for one image.
    pub fn cost(&self) -> Cost {
        let params = self.params();
        let trainable: u64 = params
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.numel() as u64)
            .sum();
        let buffers: u64 = params
            .iter()
            .filter(|p| !p.trainable)
            .map(|p| p.numel() as u64)
            .sum();
        let rows = self.layers();
        let macs = rows.iter().map(|r| r.macs).sum();
        // Memory: BN, activation, SE scale and add work in place, so only convs,
        // pool and linear write a new tensor.
        let writes = |r: &LayerRow| matches!(r.op, "conv" | "dwconv" | "pool" | "linear");
        let activation_bytes = 4 * rows
            .iter()
            .filter(|r| writes(r))
            .map(|r| numel(r.out_shape))
            .sum::<u64>();
        let largest = 4 * rows
            .iter()
            .map(|r| numel(r.out_shape).max(numel(r.in_shape)))
            .max()
            .unwrap_or(0);
        let mut peak = 4 * (numel(self.input) + numel(self.stem.out_shape()));
        for b in self.blocks() {
            let keep = if b.residual { numel(b.in_shape) } else { 0 };
            let mut cur = b.in_shape;
            let mut step = |c: &ConvBn| {
                let out = c.out_shape();
                peak = peak.max(4 * (numel(cur) + numel(out) + keep));
                cur = out;
            };
            if let Some(e) = &b.expand {
                step(e);
            }
            step(&b.conv);
            if let Some(p) = &b.project {
                step(p);
            }
        }
        let h = self.head.out_shape();
        peak = peak.max(4 * (numel(self.head.conv.in_hw_shape()) + numel(h)));
        Cost {
            params: trainable,
            buffers,
            macs,
            activation_bytes,
            peak_activation_bytes: peak,
            largest_activation_bytes: largest,
        }
    }

    /// The readable printout: settings, stages, every layer, totals.
    pub fn render(&self) -> String {
        let mut o = String::new();
        self.render_settings(&mut o);
        let _ = writeln!(o);
        self.render_stages(&mut o);
        let _ = writeln!(o);
        self.render_layers(&mut o);
        let _ = writeln!(o);
        self.render_totals(&mut o);
        o
    }

    /// The settings: name, scaling, input, conventions, output, training schedule.
    fn render_settings(&self, o: &mut String) {
        let _ = writeln!(
            *o,
            "model {}{}",
            self.name,
            self.base
                .as_ref()
                .map(|b| format!(" (extends {b})"))
                .unwrap_or_default()
        );
        let phi = self
            .phi
            .map(|[p, a, b, g]| format!(" (phi {p}: alpha {a}, beta {b}, gamma {g})"))
            .unwrap_or_default();
        let _ = writeln!(
            *o,
            "  scaling     width {}, depth {}, rounding {}{phi}",
            fmt_f(self.width),
            fmt_f(self.depth),
            match self.rounding {
                crate::Rounding::V1 => "v1 (multiple of 8, 10% guard)",
                crate::Rounding::V2 => "v2 (multiple of 8)",
            }
        );
        let _ = writeln!(
            *o,
            "  input       {} (CHW), resolution {}",
            shape(self.input),
            self.resolution
        );
        let _ = writeln!(*o, "  normalize   mean {:?}, std {:?}", self.mean, self.std);
        let _ = writeln!(
            *o,
            "  convention  padding {}, bn_eps {}, activation {}",
            self.padding,
            fmt_f(self.bn_eps),
            self.activation
        );
        let _ = writeln!(
            *o,
            "  output      {} ({}), dropout {}, drop_path {}",
            shape(self.output_shape()),
            if self.classes > 0 {
                format!("{} classes", self.classes)
            } else {
                "embedding".into()
            },
            fmt_f(self.dropout),
            fmt_f(self.drop_path)
        );
        let sched = self.training.schedule(self.dropout);
        if !sched.is_empty() {
            let parts: Vec<String> = sched
                .iter()
                .map(|s| {
                    let mut t = format!("{}px", s.size);
                    if let Some(r) = s.randaugment {
                        t += &format!(" ra{}", fmt_f(r));
                    }
                    if let Some(m) = s.mixup {
                        t += &format!(" mixup{}", fmt_f(m));
                    }
                    t += &format!(" drop{}", fmt_f(s.dropout));
                    t
                })
                .collect();
            let eval = self.training.eval_size.unwrap_or(self.resolution);
            let _ = writeln!(*o, "  training    {} (eval {eval}px)", parts.join(" | "));
        }
    }

    /// One row per stage, between the stem and the head.
    fn render_stages(&self, o: &mut String) {
        let _ = writeln!(
            *o,
            "{:<6} {:<34} {:<6} {:>4} {:>2} {:>2} {:>4} {:>5} {:>12} {:>12} {:>12} {:>15}",
            "stage",
            "block string",
            "type",
            "reps",
            "k",
            "s",
            "e",
            "se",
            "channels",
            "output",
            "params",
            "MACs"
        );
        let _ = writeln!(
            *o,
            "{:<6} {:<34} {:<6} {:>4} {:>2} {:>2} {:>4} {:>5} {:>12} {:>12} {:>12} {:>15}",
            "stem",
            "",
            "conv",
            "",
            3,
            2,
            "",
            "",
            format!("3->{}", self.stem.conv.out_ch),
            shape(self.stem.out_shape()),
            group(self.stem.conv.params() + 2 * self.stem.bn.channels as u64),
            group(self.stem.conv.macs())
        );
        for s in &self.stages {
            let params: u64 = s.blocks.iter().map(|b| b.params()).sum();
            let macs: u64 = s.blocks.iter().map(|b| b.macs()).sum();
            let out = s.blocks.last().map_or([0; 3], |b| b.out_shape);
            let _ = writeln!(
                *o,
                "{:<6} {:<34} {:<6} {:>4} {:>2} {:>2} {:>4} {:>5} {:>12} {:>12} {:>12} {:>15}",
                s.index,
                s.text,
                if s.kind == BlockKind::FusedMBConv {
                    "fused"
                } else {
                    "mb"
                },
                s.repeats,
                s.kernel,
                s.stride,
                fmt_f(s.expand_ratio),
                s.se.map(fmt_f).unwrap_or_else(|| "-".into()),
                format!("{}->{}", s.in_ch, s.out_ch),
                shape(out),
                group(params),
                group(macs)
            );
        }
        let hp = self.head.conv.params()
            + 2 * self.head.bn.channels as u64
            + self.classifier.as_ref().map_or(0, |l| {
                (l.in_features * l.out_features + l.out_features) as u64
            });
        let hm = self.head.conv.macs()
            + self
                .classifier
                .as_ref()
                .map_or(0, |l| (l.in_features * l.out_features) as u64);
        let _ = writeln!(
            *o,
            "{:<6} {:<34} {:<6} {:>4} {:>2} {:>2} {:>4} {:>5} {:>12} {:>12} {:>12} {:>15}",
            "head",
            "",
            "conv",
            "",
            1,
            1,
            "",
            "",
            format!("{}->{}", self.head.conv.in_ch, self.head.conv.out_ch),
            shape(self.output_shape()),
            group(hp),
            group(hm)
        );
    }

    /// One row per layer: op, shapes, kernel, stride, padding, groups, cost.
    fn render_layers(&self, o: &mut String) {
        let _ = writeln!(
            *o,
            "{:<30} {:<18} {:>13} {:>13} {:>2} {:>2} {:>11} {:>6} {:>11} {:>14}",
            "layer", "op", "input", "output", "k", "s", "pad t,b,l,r", "groups", "params", "MACs"
        );
        for r in self.layers() {
            let op = match r.act {
                Some(a) => format!("{}+{a}", r.op),
                None => r.op.to_string(),
            };
            let (k, s, pad, g) = if r.kernel > 0 {
                (
                    r.kernel.to_string(),
                    r.stride.to_string(),
                    format!(
                        "{},{},{},{}",
                        r.pad.top, r.pad.bottom, r.pad.left, r.pad.right
                    ),
                    r.groups.to_string(),
                )
            } else {
                (String::new(), String::new(), String::new(), String::new())
            };
            let _ = writeln!(
                *o,
                "{:<30} {:<18} {:>13} {:>13} {:>2} {:>2} {:>11} {:>6} {:>11} {:>14}",
                r.name,
                op,
                shape(r.in_shape),
                shape(r.out_shape),
                k,
                s,
                pad,
                g,
                group(r.params),
                group(r.macs)
            );
        }
    }

    /// Totals: blocks, parameters, MACs, activation memory.
    fn render_totals(&self, o: &mut String) {
        let cost = self.cost();
        let nblocks = self.blocks().count();
        let _ = writeln!(*o, "blocks       {nblocks} in {} stages", self.stages.len());
        let _ = writeln!(
            *o,
            "params       {} (+ {} BN running statistics)",
            group(cost.params),
            group(cost.buffers)
        );
        let _ = writeln!(
            *o,
            "MACs         {} ({:.3} G, batch 1)",
            group(cost.macs),
            cost.macs as f64 / 1e9
        );
        let _ = writeln!(
            *o,
            "activations  {} written, peak {} live, largest tensor {} (f32, batch 1)",
            bytes(cost.activation_bytes),
            bytes(cost.peak_activation_bytes),
            bytes(cost.largest_activation_bytes)
        );
    }
}

impl Conv2d {
    /// Input shape, CHW.
    pub fn in_hw_shape(&self) -> [usize; 3] {
        [self.in_ch, self.in_hw.0, self.in_hw.1]
    }
}

/// `1x2x3`
pub fn shape(s: [usize; 3]) -> String {
    format!("{}x{}x{}", s[0], s[1], s[2])
}

/// `1,234,567`
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A float, short: at most 6 decimals, trailing zeros dropped (`1`, `1.1`, `0.001`, `1e-5`).
pub fn fmt_f(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-4 {
        return format!("{v:e}");
    }
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Bytes in KiB/MiB/GiB.
pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f >= K * K * K {
        format!("{:.2} GiB", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.2} MiB", f / (K * K))
    } else if f >= K {
        format!("{:.1} KiB", f / K)
    } else {
        format!("{n} B")
    }
}
