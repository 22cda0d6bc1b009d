//! The charts of `effc pick --plot` and `effc scale --plot`: a quantity (accuracy,
//! MACs) against measured latency, drawn with plotters' SVG backend. Latency is on
//! a log axis (models span orders of magnitude); each series (a family, or the
//! candidates of a search) is joined by a line in order of latency, as in the
//! papers' Figure 1.

use plotters::prelude::*;

/// A chart that could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    #[error("nothing to plot: {0}")]
    Empty(String),
    #[error("drawing the chart: {0}")]
    Plot(String),
}

/// One model.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub label: String,
    /// Latency, ms (> 0).
    pub x: f64,
    pub y: f64,
    /// Within every budget.
    pub meets: bool,
    /// The one recommended (at most one per chart).
    pub chosen: bool,
}

/// Points drawn in one colour and joined by a line.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

/// A budget: a vertical line at a latency, or a horizontal one at a y value.
#[derive(Clone, Debug, PartialEq)]
pub enum Budget {
    X(f64, String),
    Y(f64, String),
}

/// What to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub budgets: Vec<Budget>,
    /// A line under the chart (e.g. the models that could not be timed).
    pub note: Option<String>,
}

/// The series' colours (of every chart and curve plot), in order.
pub(crate) const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];
const BUDGET: RGBColor = RGBColor(214, 39, 40);
const BUDGET_Y: RGBColor = RGBColor(123, 50, 148);
pub(crate) const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";

/// The chart as an SVG document (800 × 520).
pub fn chart(c: &Chart) -> Result<String, DrawError> {
    let pts: Vec<&Point> = c.series.iter().flat_map(|s| &s.points).collect();
    let ((x0, x1), (y0, y1)) = extent(c, &pts)?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (800, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(plot)?;
        let (area, foot) = root.split_vertically(c.note.as_ref().map_or(520, |_| 496));
        let mut ch = ChartBuilder::on(&area)
            .caption(&c.title, (FONT, 18))
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d((x0..x1).log_scale().with_key_points(ticks(x0, x1)), y0..y1)
            .map_err(plot)?;
        ch.configure_mesh()
            .x_desc(&c.x_label)
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&|v| short(*v))
            .y_desc(&c.y_label)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.08))
            .draw()
            .map_err(plot)?;
        draw_budgets(&mut ch, &c.budgets, (x0, x1), (y0, y1))?;
        draw_series(&mut ch, &c.series)?;
        draw_labels(&mut ch, &pts)?;
        ch.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(plot)?;
        if let Some(note) = &c.note {
            foot.draw(&Text::new(note.clone(), (14, 4), (FONT, 11).into_font()))
                .map_err(plot)?;
        }
        root.present().map_err(plot)?;
    }
    Ok(out)
}

/// A plotters error as ours.
fn plot(e: impl std::fmt::Display) -> DrawError {
    DrawError::Plot(e.to_string())
}

/// The axes' ranges: every point and budget inside, with room around them.
/// Refuses an empty chart and a point without a finite positive latency.
type Extent = ((f64, f64), (f64, f64));
fn extent(c: &Chart, pts: &[&Point]) -> Result<Extent, DrawError> {
    if pts.is_empty() {
        return Err(DrawError::Empty(c.title.clone()));
    }
    if let Some(p) = pts
        .iter()
        .find(|p| !(p.x > 0.0 && p.x.is_finite() && p.y.is_finite()))
    {
        return Err(DrawError::Plot(format!(
            "`{}` has no finite positive latency ({} ms)",
            p.label, p.x
        )));
    }
    let mut xs: Vec<f64> = pts.iter().map(|p| p.x).collect();
    let mut ys: Vec<f64> = pts.iter().map(|p| p.y).collect();
    for b in &c.budgets {
        match b {
            Budget::X(v, _) if *v > 0.0 => xs.push(*v),
            Budget::Y(v, _) => ys.push(*v),
            _ => {}
        }
    }
    let (x0, x1) = bounds(&xs);
    let (y0, y1) = bounds(&ys);
    // Log axis: a factor of 1.25 on each side; linear: 8% of the span.
    let pad = ((y1 - y0) * 0.08).max(y1.abs() * 0.01).max(1e-9);
    Ok(((x0 / 1.25, x1 * 1.25), (y0 - pad, y1 + pad)))
}

/// The budgets, as lines across the whole chart.
fn draw_budgets<DB: DrawingBackend, X, Y>(
    ch: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    budgets: &[Budget],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> Result<(), DrawError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for b in budgets {
        let (line, label, color) = match b {
            Budget::X(v, l) => (vec![(*v, y0), (*v, y1)], l, BUDGET),
            Budget::Y(v, l) => (vec![(x0, *v), (x1, *v)], l, BUDGET_Y),
        };
        ch.draw_series(LineSeries::new(line, color.stroke_width(2)))
            .map_err(plot)?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    Ok(())
}

/// Each series in its colour: a line in the caller's order (model size, φ), as
/// the papers join a family, and a circle per point, filled when it meets every
/// budget.
fn draw_series<DB: DrawingBackend, X, Y>(
    ch: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    series: &[Series],
) -> Result<(), DrawError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let line: Vec<(f64, f64)> = s.points.iter().map(|p| (p.x, p.y)).collect();
        ch.draw_series(LineSeries::new(line, color.mix(0.6).stroke_width(1)))
            .map_err(plot)?
            .label(s.name.clone())
            .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
        ch.draw_series(s.points.iter().map(|p| {
            let style = if p.meets {
                color.filled()
            } else {
                color.stroke_width(1)
            };
            EmptyElement::at((p.x, p.y)) + Circle::new((0, 0), 4, style)
        }))
        .map_err(plot)?;
    }
    Ok(())
}

/// Labels, the chosen model's first; one that would overlap a label already
/// placed is left out (its point stays). The chosen point is ringed.
fn draw_labels<DB: DrawingBackend, X, Y>(
    ch: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    pts: &[&Point],
) -> Result<(), DrawError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let mut order: Vec<&Point> = pts.to_vec();
    order.sort_by_key(|p| !p.chosen);
    let mut placed: Vec<(i32, i32, i32)> = vec![];
    for p in order {
        let (px, py) = ch.backend_coord(&(p.x, p.y));
        let (x, y, w) = (
            px + 6,
            py - 12,
            (p.label.chars().count() as f64 * 6.5) as i32,
        );
        if placed
            .iter()
            .any(|&(qx, qy, qw)| x < qx + qw && qx < x + w && (y - qy).abs() < 12)
        {
            continue;
        }
        placed.push((x, y, w));
        ch.draw_series(std::iter::once(
            EmptyElement::at((p.x, p.y))
                + Text::new(p.label.clone(), (6, -12), (FONT, 11).into_font()),
        ))
        .map_err(plot)?;
    }
    if let Some(p) = pts.iter().find(|p| p.chosen) {
        ch.draw_series(std::iter::once(
            EmptyElement::at((p.x, p.y))
                + Circle::new((0, 0), 8, BUDGET.stroke_width(2))
                + Text::new(
                    "chosen".to_string(),
                    (10, 4),
                    (FONT, 11).into_font().color(&BUDGET),
                ),
        ))
        .map_err(plot)?;
    }
    Ok(())
}

/// The smallest and largest value, made a non-empty interval.
fn bounds(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi > lo {
        (lo, hi)
    } else {
        let d = (lo.abs() * 0.1).max(1e-6);
        (lo - d, hi + d)
    }
}

/// Axis numbers without needless digits: 100, 2.5, 0.25.
fn short(v: f64) -> String {
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Ticks of a log axis: 1, 2 and 5 times the powers of ten in `[lo, hi]`, thinned to
/// at most 8.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut t = vec![];
    let mut p = 10f64.powf(lo.log10().floor());
    while p <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = p * m;
            if v >= lo && v <= hi {
                t.push(v);
            }
        }
        p *= 10.0;
    }
    if t.len() < 3 {
        // Within a factor of 5: ten evenly spaced values.
        let step = (hi - lo) / 6.0;
        let mag = 10f64.powf(step.log10().floor());
        let step = (step / mag).ceil() * mag;
        t = (1..)
            .map(|i| (lo / step).floor() * step + i as f64 * step)
            .take_while(|&v| v <= hi)
            .filter(|&v| v >= lo)
            .collect();
    }
    while t.len() > 8 {
        t = t.into_iter().step_by(2).collect();
    }
    t
}
