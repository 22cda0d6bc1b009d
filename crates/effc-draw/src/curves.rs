//! The training curves of `effc train --plot`: the loss (per step, and the
//! validation loss per epoch) above, the validation accuracy below, both
//! against the update step, with the progressive stages' boundaries drawn as
//! dashed vertical lines labelled with the stage's image size.

use plotters::prelude::*;

use crate::chart::{DrawError, COLORS, FONT};

/// One named line of `(step, value)` points.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// What to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct Curves {
    pub title: String,
    /// The upper panel: losses.
    pub loss: Vec<Curve>,
    /// The lower panel: accuracies, in percent.
    pub accuracy: Vec<Curve>,
    /// Where a stage begins (step) and its label.
    pub stages: Vec<(f64, String)>,
    /// The run's length in steps (the x axis ends there).
    pub total: f64,
}

const STAGE: RGBColor = RGBColor(120, 120, 120);

/// The curves as an SVG document (800 × 640).
pub fn curves(c: &Curves) -> Result<String, DrawError> {
    let all = c.loss.iter().chain(&c.accuracy).flat_map(|s| &s.points);
    if all.clone().next().is_none() {
        return Err(DrawError::Empty(c.title.clone()));
    }
    if let Some((x, y)) = all.clone().find(|(x, y)| !(x.is_finite() && y.is_finite())) {
        return Err(DrawError::Plot(format!(
            "a point is not finite: ({x}, {y})"
        )));
    }
    let err = |e: &dyn std::fmt::Display| DrawError::Plot(e.to_string());
    let x1 = c.total.max(1.0);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (800, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let root = root.titled(&c.title, (FONT, 18)).map_err(|e| err(&e))?;
        let (top, bottom) = root.split_vertically(300);
        for (area, series, y_label, percent) in [
            (&top, &c.loss, "loss", false),
            (&bottom, &c.accuracy, "validation accuracy (%)", true),
        ] {
            let ys: Vec<f64> = series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .collect();
            let (mut y0, mut y1) = if ys.is_empty() {
                (0.0, 1.0)
            } else {
                let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let pad = ((hi - lo) * 0.08).max(1e-3);
                (lo - pad, hi + pad)
            };
            if percent {
                (y0, y1) = (y0.max(0.0), y1.min(100.0).max(y0 + 1.0));
            }
            let mut ch = ChartBuilder::on(area)
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(0f64..x1, y0..y1)
                .map_err(|e| err(&e))?;
            ch.configure_mesh()
                .x_desc("step")
                .y_desc(y_label)
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 13))
                .light_line_style(WHITE.mix(0.0))
                .bold_line_style(BLACK.mix(0.08))
                .draw()
                .map_err(|e| err(&e))?;
            for (x, label) in &c.stages {
                let dashes = (0..24).map(|i| {
                    let a = y0 + (y1 - y0) * i as f64 / 24.0;
                    let b = y0 + (y1 - y0) * (i as f64 + 0.5) / 24.0;
                    PathElement::new(vec![(*x, a), (*x, b)], STAGE.stroke_width(1))
                });
                ch.draw_series(dashes).map_err(|e| err(&e))?;
                ch.draw_series(std::iter::once(
                    EmptyElement::at((*x, y1))
                        + Text::new(label.clone(), (4, 4), (FONT, 11).into_font().color(&STAGE)),
                ))
                .map_err(|e| err(&e))?;
            }
            for (i, s) in series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                ch.draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(if s.points.len() > 50 { 1 } else { 2 }),
                ))
                .map_err(|e| err(&e))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
                if s.points.len() <= 50 {
                    ch.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(|e| err(&e))?;
                }
            }
            if !series.is_empty() {
                ch.configure_series_labels()
                    .position(if percent {
                        SeriesLabelPosition::LowerRight
                    } else {
                        SeriesLabelPosition::UpperRight
                    })
                    .label_font((FONT, 12))
                    .background_style(WHITE.mix(0.9))
                    .border_style(BLACK.mix(0.3))
                    .draw()
                    .map_err(|e| err(&e))?;
            }
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(out)
}
