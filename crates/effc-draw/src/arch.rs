//! The architecture figure: written as SVG directly, so every element is one the
//! figure needs (one `<g class="stage">` per stage, one `<rect>` per block).

use std::fmt::Write;

use effc_ir::{BlockKind, Model, Stage};

/// Font of every label.
use crate::chart::FONT;
/// Approximate advance of one character of the 10 px labels.
const CHAR_W: f64 = 6.6;
const LINE_H: f64 = 13.0;
const GAP: f64 = 16.0;
const SLAB_GAP: f64 = 2.0;
const MARGIN: f64 = 16.0;

/// Fill colours, light to dark as the papers' figures use them.
const CONV: &str = "#d9d9d9";
const MBCONV1: &str = "#c6dbef";
const MBCONV: &str = "#6baed6";
const FUSED1: &str = "#fdd0a2";
const FUSED: &str = "#fd8d3c";
const INPUT: &str = "#f7f7f7";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `5288548` → `5.29 M`.
fn si(v: u64) -> String {
    let v = v as f64;
    if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v}")
    }
}

/// One column of the figure: slabs (height, width, fill) and the lines under it.
struct Column {
    class: &'static str,
    id: String,
    title: String,
    slabs: Vec<(f64, f64, &'static str)>,
    lines: Vec<String>,
}

impl Column {
    fn slabs_width(&self) -> f64 {
        self.slabs.iter().map(|s| s.1).sum::<f64>()
            + SLAB_GAP * (self.slabs.len().saturating_sub(1)) as f64
    }
    fn width(&self) -> f64 {
        let text = self
            .lines
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0) as f64;
        self.slabs_width().max(text * CHAR_W)
    }
}

fn stage_kind(s: &Stage) -> (String, &'static str) {
    let e = s.expand_ratio;
    let e_txt = if e.fract() == 0.0 {
        format!("{e:.0}")
    } else {
        format!("{e}")
    };
    match s.kind {
        BlockKind::MBConv if e == 1.0 => ("MBConv1".into(), MBCONV1),
        BlockKind::MBConv => (format!("MBConv{e_txt}"), MBCONV),
        BlockKind::FusedMBConv if e == 1.0 => ("Fused-MBConv1".into(), FUSED1),
        BlockKind::FusedMBConv => (format!("Fused-MBConv{e_txt}"), FUSED),
    }
}

/// The architecture of `m` as an SVG document.
pub fn architecture(m: &Model) -> String {
    // Heights: feature-map size at a fixed scale (smaller for inputs above 430 px,
    // so that the figure stays under ~260 px tall); widths: √channels.
    let scale = (0.6f64).min(260.0 / m.resolution as f64);
    let cols = columns(m, scale);
    let tallest = cols
        .iter()
        .flat_map(|c| c.slabs.iter().map(|s| s.0))
        .fold(0.0, f64::max);
    let lines = cols.iter().map(|c| c.lines.len()).max().unwrap_or(0) as f64;
    let title_h = 44.0;
    let axis_y = MARGIN + title_h + tallest / 2.0;
    let labels_y = MARGIN + title_h + tallest + 16.0;
    let legend_y = labels_y + lines * LINE_H + 14.0;
    let width: f64 =
        2.0 * MARGIN + cols.iter().map(Column::width).sum::<f64>() + GAP * (cols.len() - 1) as f64;
    let width = width.max(560.0);
    let height = legend_y + 20.0 + MARGIN;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="{FONT}">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let c = m.cost();
    let title = format!(
        "{}: {}×{} input, {} parameters, {} MACs",
        m.name,
        m.resolution,
        m.resolution,
        si(c.params),
        si(c.macs)
    );
    let phi = match m.phi {
        Some([phi, a, b, g]) => format!(" (φ = {phi}, α = {a}, β = {b}, γ = {g})"),
        None => String::new(),
    };
    let sub = format!(
        "width ×{}, depth ×{}{}; {} blocks in {} stages",
        trim(m.width),
        trim(m.depth),
        phi,
        m.blocks().count(),
        m.stages.len()
    );
    let _ = writeln!(
        svg,
        r#"<text x="{MARGIN}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        MARGIN + 12.0,
        esc(&title)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{MARGIN}" y="{}" font-size="11" fill="#444">{}</text>"##,
        MARGIN + 30.0,
        esc(&sub)
    );
    // The data path, behind the slabs.
    let _ = writeln!(
        svg,
        r##"<line x1="{MARGIN}" y1="{axis_y:.1}" x2="{:.1}" y2="{axis_y:.1}" stroke="#888" stroke-width="1"/>"##,
        width - MARGIN
    );
    draw_columns(&mut svg, &cols, axis_y, labels_y);
    draw_legend(&mut svg, legend_y, scale);
    svg.push_str("</svg>\n");
    svg
}

/// One column per part of the network: input, stem, each stage (a slab per
/// block), head, pooling and classifier.
fn columns(m: &Model, scale: f64) -> Vec<Column> {
    let h = |px: usize| (px as f64 * scale).max(4.0);
    let w = |c: usize| 2.0 + (c as f64).sqrt() * 0.8;
    let shape = |s: [usize; 3]| format!("{}×{}×{}", s[1], s[2], s[0]);

    let mut cols = vec![Column {
        class: "input",
        id: "input".into(),
        title: "input".into(),
        slabs: vec![(h(m.resolution), w(3).max(8.0), INPUT)],
        lines: vec!["input".into(), shape(m.input)],
    }];
    let stem = &m.stem.conv;
    cols.push(Column {
        class: "stem",
        id: "stem".into(),
        title: format!("stem: Conv{0}×{0}, stride {1}", stem.kernel, stem.stride),
        slabs: vec![(h(stem.out_hw.0), w(stem.out_ch), CONV)],
        lines: vec![
            format!("Conv{0}×{0}", stem.kernel),
            format!("s{}", stem.stride),
            shape([stem.out_ch, stem.out_hw.0, stem.out_hw.1]),
        ],
    });
    for s in &m.stages {
        let (kind, fill) = stage_kind(s);
        let se = if s.se.is_some() { ", SE" } else { "" };
        let out = s
            .blocks
            .last()
            .map(|b| b.out_shape)
            .unwrap_or([s.out_ch, 0, 0]);
        cols.push(Column {
            class: "stage",
            id: format!("stage{}", s.index + 1),
            title: format!(
                "stage {}: {} k{}×{}{}, {} blocks, stride {}, output {}",
                s.index + 1,
                kind,
                s.kernel,
                s.kernel,
                se,
                s.repeats,
                s.stride,
                shape(out)
            ),
            slabs: s
                .blocks
                .iter()
                .map(|b| (h(b.out_shape[1]), w(b.out_ch), fill))
                .collect(),
            lines: vec![
                kind,
                format!("k{0}×{0}{1}", s.kernel, se),
                format!("×{}", s.repeats),
                shape(out),
            ],
        });
    }
    let head = &m.head.conv;
    cols.push(Column {
        class: "head",
        id: "head".into(),
        title: format!("head: Conv1×1 to {} channels", head.out_ch),
        slabs: vec![(h(head.out_hw.0), w(head.out_ch), CONV)],
        lines: vec![
            "Conv1×1".into(),
            shape([head.out_ch, head.out_hw.0, head.out_hw.1]),
        ],
    });
    cols.push(Column {
        class: "classifier",
        id: "classifier".into(),
        title: match &m.classifier {
            Some(c) => format!(
                "global pooling and a {} → {} classifier",
                c.in_features, c.out_features
            ),
            None => format!("global pooling: {} features", head.out_ch),
        },
        slabs: vec![(h(1).max(10.0), 8.0, CONV)],
        lines: match &m.classifier {
            Some(c) => vec!["Pool, FC".into(), format!("{}", c.out_features)],
            None => vec!["Pool".into(), format!("{}", head.out_ch)],
        },
    });

    cols
}

/// The columns along the data path, each with its slabs and label lines.
fn draw_columns(svg: &mut String, cols: &[Column], axis_y: f64, labels_y: f64) {
    let mut x = MARGIN;
    for col in cols {
        let cw = col.width();
        let _ = writeln!(
            *svg,
            r#"<g class="{}" id="{}"><title>{}</title>"#,
            col.class,
            col.id,
            esc(&col.title)
        );
        let mut sx = x + (cw - col.slabs_width()) / 2.0;
        for (sh, sw, fill) in &col.slabs {
            let _ = writeln!(
                svg,
                r#"<rect x="{sx:.1}" y="{:.1}" width="{sw:.1}" height="{sh:.1}" fill="{fill}" stroke="black" stroke-width="0.6"/>"#,
                axis_y - sh / 2.0
            );
            sx += sw + SLAB_GAP;
        }
        for (i, line) in col.lines.iter().enumerate() {
            let weight = if i == 0 && col.class == "stage" {
                r#" font-weight="bold""#
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle"{weight}>{}</text>"#,
                x + cw / 2.0,
                labels_y + i as f64 * LINE_H,
                esc(line)
            );
        }
        let _ = writeln!(*svg, "</g>");
        x += cw + GAP;
    }
}

/// The legend of slab colours, and what a slab's size means.
fn draw_legend(svg: &mut String, legend_y: f64, scale: f64) {
    // Legend.
    let mut lx = MARGIN;
    for (fill, label) in [
        (CONV, "conv"),
        (MBCONV1, "MBConv1"),
        (MBCONV, "MBConv (expanded)"),
        (FUSED1, "Fused-MBConv1"),
        (FUSED, "Fused-MBConv (expanded)"),
    ] {
        let _ = writeln!(
            *svg,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{fill}" stroke="black" stroke-width="0.6"/><text x="{:.1}" y="{:.1}" font-size="10">{label}</text>"#,
            legend_y - 9.0,
            lx + 14.0,
            legend_y
        );
        lx += 14.0 + label.len() as f64 * CHAR_W + 14.0;
    }
    let _ = writeln!(
        *svg,
        r##"<text x="{MARGIN}" y="{:.1}" font-size="10" fill="#444">one slab per block; height: feature-map size (1 px = {:.2} pixels), width: √channels</text>"##,
        legend_y + 16.0,
        1.0 / scale
    );
}

/// `1.0` → `1`, `1.2000000000000002` → `1.2`, `1.4641` → `1.464`.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(si(5_288_548), "5.29 M");
        assert_eq!(si(385_000_000), "385.00 M");
        assert_eq!(si(1_500_000_000), "1.50 G");
        assert_eq!(trim(1.2000000000000002), "1.2");
        assert_eq!(trim(1.0), "1");
        assert_eq!(esc("a<b>&\""), "a&lt;b&gt;&amp;&quot;");
    }
}
