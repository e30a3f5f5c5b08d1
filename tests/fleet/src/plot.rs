//! SVG plots of a [`Report`]'s time series: offered load (as a multiple of capacity) and
//! granted devices (as a share of entitled devices) over time, one line per policy.
//!
//! Uses plotters' SVG backend only: text is written as SVG `<text>` and laid out by the
//! viewer, so no font files are needed.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Report;
use crate::scenario::ScenarioKind;

/// Which part of the run to draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlotOptions {
    /// First second shown.
    pub from_sec: usize,
    /// Last second shown (exclusive); clipped to the series.
    pub to_sec: usize,
    /// Picture size in pixels.
    pub size: (u32, u32),
}

impl PlotOptions {
    /// A window that shows what matters: the boot storm's first 10 minutes (its hourly echo
    /// is in the table and the CSV); for an outage, 1 min before it to 20 min after it.
    pub fn for_report(report: &Report) -> Self {
        let len = report.series.first().map_or(0, |s| s.granted.len());
        let (from_sec, to_sec) = match report.scenario.kind {
            ScenarioKind::BootStorm { .. } => (0, 600),
            ScenarioKind::Outage { start, duration } => (
                (start.as_secs() as usize).saturating_sub(60),
                (start + duration).as_secs() as usize + 20 * 60,
            ),
        };
        PlotOptions {
            from_sec,
            to_sec: to_sec.min(len),
            size: (1200, 900),
        }
    }
}

const COLORS: [RGBColor; 8] = [
    RGBColor(0xd6, 0x27, 0x28), // ours: red, drawn last (on top)
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2), // ours, N = 16
];

/// Renders the report's series as an SVG document.
pub fn render_svg(report: &Report, opts: &PlotOptions) -> Result<String, String> {
    let mut svg = String::new();
    draw(report, opts, SVGBackend::with_string(&mut svg, opts.size)).map_err(|e| e.to_string())?;
    Ok(svg)
}

/// Writes the report's series as an SVG file.
pub fn write_svg(report: &Report, path: &Path, opts: &PlotOptions) -> Result<(), String> {
    let svg = render_svg(report, opts)?;
    std::fs::write(path, svg).map_err(|e| format!("{}: {e}", path.display()))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw<DB: DrawingBackend>(report: &Report, opts: &PlotOptions, backend: DB) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let root = backend.into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&report.scenario.describe(), ("sans-serif", 18))?;
    let (top, bottom) = root.split_vertically(opts.size.1 as f64 * 0.5);
    let cap = f64::from(report.scenario.capacity);
    let from = opts.from_sec;
    let to = opts.to_sec.max(from + 1);
    let x_range = from as f64..to as f64;

    // Offered load / C. Boot storms reach tens of C: a log axis keeps 1x visible.
    let peak = report
        .series
        .iter()
        .flat_map(|s| s.offered.get(from..to.min(s.offered.len())).unwrap_or(&[]))
        .copied()
        .max()
        .unwrap_or(0);
    let y_max = (f64::from(peak) / cap).max(1.5) * 1.1;
    // Half a request per second is the floor: a zero-load second sits on the axis.
    let y_min = (0.5 / cap).min(0.01);
    let outage = report
        .scenario
        .outage_window()
        .map(|(s, e)| (s.as_secs_f64(), e.as_secs_f64()));
    let secs = |x: &f64| format!("{x:.0}");
    let x_desc = if outage.is_some() {
        "simulated time (s); grey band: outage"
    } else {
        "simulated time (s)"
    };
    let mut chart = ChartBuilder::on(&top)
        .margin(10)
        .caption(
            "offered load / capacity (requests arriving per 1 s bucket)",
            ("sans-serif", 15),
        )
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(x_range.clone(), (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("offered / C (log)")
        .x_label_formatter(&secs)
        .draw()?;
    if let Some((s, e)) = outage {
        chart.draw_series([Rectangle::new([(s, y_min), (e, y_max)], BLACK.mix(0.08).filled())])?;
    }
    chart.draw_series(LineSeries::new(
        [(from as f64, 1.0), (to as f64, 1.0)],
        BLACK.mix(0.5),
    ))?;
    for s in report.series.iter().rev() {
        let color = COLORS[s.policy as usize % COLORS.len()];
        let width = if s.policy == crate::PolicyKind::Ours { 2 } else { 1 };
        let pts =
            (from..to.min(s.offered.len())).map(|t| (t as f64, (f64::from(s.offered[t]) / cap).max(y_min)));
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(width)))?
            .label(s.policy.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;

    // Granted share of entitled devices, zoomed on the range the lines use (10 % steps).
    let entitled = f64::from(report.rows.first().map_or(1, |r| r.entitled.max(1)));
    let lowest = report
        .series
        .iter()
        .flat_map(|s| s.granted.get(from..to.min(s.granted.len())).unwrap_or(&[]))
        .map(|&g| f64::from(g) / entitled)
        .fold(1.0f64, f64::min);
    let g_min = ((lowest * 10.0).floor() / 10.0 - 0.02).max(0.0);
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .caption("entitled devices granted (share)", ("sans-serif", 15))
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(x_range, g_min..1.01f64)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("granted / entitled")
        .x_label_formatter(&secs)
        .draw()?;
    if let Some((s, e)) = outage {
        chart.draw_series([Rectangle::new([(s, g_min), (e, 1.01)], BLACK.mix(0.08).filled())])?;
    }
    for s in report.series.iter().rev() {
        let color = COLORS[s.policy as usize % COLORS.len()];
        let width = if s.policy == crate::PolicyKind::Ours { 2 } else { 1 };
        let pts = (from..to.min(s.granted.len())).map(|t| (t as f64, f64::from(s.granted[t]) / entitled));
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(width)))?
            .label(s.policy.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
