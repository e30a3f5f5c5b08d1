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
    /// Picture size in pixels, the legend column on the right included.
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
            // 1200 px of charts plus the legend column.
            size: (1200 + LEGEND_COLUMN, 900),
        }
    }
}

/// Width of the column right of the charts that holds the legend, so the legend never hides
/// a data line (issue 12: it used to sit inside the plotting areas).
pub const LEGEND_COLUMN: u32 = 260;

/// Stroke of the frame drawn around each plotting area (the rectangle the data lines live
/// in); a test reads the frames back from the SVG to check the legend stays outside.
pub const PLOT_FRAME: RGBColor = RGBColor(0x40, 0x40, 0x40);

/// Stroke of the legend's box.
pub const LEGEND_BORDER: RGBColor = RGBColor(0x20, 0x20, 0x20);

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

/// A plotting area in canvas pixels: `(x0..x1, y0..y1)`.
type PixelRect = (std::ops::Range<i32>, std::ops::Range<i32>);

fn draw<DB: DrawingBackend>(report: &Report, opts: &PlotOptions, backend: DB) -> DrawResult
where
    DB::ErrorType: 'static,
{
    // `canvas` keeps absolute pixel coordinates: frames and legend are drawn on it.
    let canvas = backend.into_drawing_area();
    canvas.fill(&WHITE)?;
    let root = canvas.titled(&report.scenario.describe(), ("sans-serif", 18))?;
    let charts_width = opts.size.0.saturating_sub(LEGEND_COLUMN).max(1);
    let (charts, _legend_column) = root.split_horizontally(charts_width);
    let (top, bottom) = charts.split_vertically(opts.size.1 as f64 * 0.5);
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
        chart.draw_series(LineSeries::new(pts, color.stroke_width(width)))?;
    }
    let top_area = chart.plotting_area().get_pixel_range();

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
        chart.draw_series(LineSeries::new(pts, color.stroke_width(width)))?;
    }
    let bottom_area = chart.plotting_area().get_pixel_range();

    for (xs, ys) in [&top_area, &bottom_area] {
        canvas.draw(&Rectangle::new(
            [(xs.start, ys.start), (xs.end, ys.end)],
            PLOT_FRAME.stroke_width(1),
        ))?;
    }
    draw_legend(&canvas, report, charts_width as i32, &top_area)?;
    canvas.present()?;
    Ok(())
}

/// The legend, one entry per policy in table order, in the column right of the charts: its
/// left edge is past every plotting area, its top level with the upper chart's.
fn draw_legend<DB: DrawingBackend>(
    canvas: &DrawingArea<DB, plotters::coord::Shift>,
    report: &Report,
    left: i32,
    top_area: &PixelRect,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    const ROW: i32 = 22;
    const PAD: i32 = 10;
    let x0 = left + PAD;
    let x1 = left + LEGEND_COLUMN as i32 - PAD;
    let y0 = top_area.1.start;
    let rows = report.series.len() as i32;
    let y1 = y0 + 2 * PAD + ROW * (rows + 1);
    canvas.draw(&Rectangle::new([(x0, y0), (x1, y1)], WHITE.filled()))?;
    canvas.draw(&Rectangle::new(
        [(x0, y0), (x1, y1)],
        LEGEND_BORDER.stroke_width(1),
    ))?;
    let title = ("sans-serif", 14).into_font().style(FontStyle::Bold);
    canvas.draw(&Text::new("policies", (x0 + PAD, y0 + PAD), title))?;
    for (i, s) in report.series.iter().enumerate() {
        let color = COLORS[s.policy as usize % COLORS.len()];
        let y = y0 + PAD + ROW * (i as i32 + 1) + ROW / 2;
        canvas.draw(&PathElement::new(
            vec![(x0 + PAD, y), (x0 + PAD + 28, y)],
            color.stroke_width(if s.policy == crate::PolicyKind::Ours { 3 } else { 2 }),
        ))?;
        canvas.draw(&Text::new(
            s.policy.name(),
            (x0 + PAD + 36, y - 7),
            ("sans-serif", 14).into_font(),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{run, PolicyKind, Scenario};
    use std::time::Duration;

    /// `(x, y, width, height)` of every `<rect>` whose `stroke` is `color`.
    fn rects_stroked(svg: &str, color: RGBColor) -> Vec<(f64, f64, f64, f64)> {
        let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
        svg.split("<rect")
            .skip(1)
            .map(|r| &r[..r.find("/>").unwrap_or(r.len())])
            .filter(|r| r.contains(&stroke))
            .map(|r| {
                let num = |name: &str| -> f64 {
                    let key = format!(" {name}=\"");
                    let at = r.find(&key).unwrap_or_else(|| panic!("no {name} in <rect{r}")) + key.len();
                    r[at..r[at..].find('"').map_or(r.len(), |e| at + e)]
                        .parse()
                        .unwrap_or_else(|e| panic!("{name} of <rect{r}: {e}"))
                };
                (num("x"), num("y"), num("width"), num("height"))
            })
            .collect()
    }

    fn overlap(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
        a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
    }

    #[test]
    fn legend_box_lies_outside_both_plotting_areas_and_inside_the_canvas() {
        let report = run(
            &Scenario::outage(300, 30, Duration::from_secs(30)),
            &PolicyKind::ALL,
            1,
        );
        let opts = PlotOptions::for_report(&report);
        let svg = render_svg(&report, &opts).unwrap();
        let frames = rects_stroked(&svg, PLOT_FRAME);
        assert_eq!(frames.len(), 2, "one frame per chart:\n{frames:?}");
        let legends = rects_stroked(&svg, LEGEND_BORDER);
        assert_eq!(legends.len(), 1, "one legend box: {legends:?}");
        let legend = legends[0];
        let (w, h) = (f64::from(opts.size.0), f64::from(opts.size.1));
        for frame in &frames {
            assert!(
                frame.2 > 300.0 && frame.3 > 200.0,
                "a real plotting area: {frame:?}"
            );
            assert!(
                !overlap(legend, *frame),
                "legend {legend:?} overlaps plotting area {frame:?}"
            );
        }
        assert!(
            legend.0 >= 0.0 && legend.1 >= 0.0 && legend.0 + legend.2 <= w && legend.1 + legend.3 <= h,
            "legend {legend:?} inside the {w} x {h} canvas"
        );
        // Every policy is named inside the legend box.
        for p in PolicyKind::ALL {
            let at = svg
                .find(&format!(">\n{}\n</text>", p.name()))
                .unwrap_or_else(|| panic!("{} not in the legend", p.name()));
            let tag = &svg[svg[..at].rfind("<text").unwrap_or(0)..at];
            let attr = |name: &str| -> f64 {
                let key = format!(" {name}=\"");
                let i = tag.find(&key).unwrap_or_else(|| panic!("{tag}")) + key.len();
                tag[i..i + tag[i..].find('"').unwrap_or(0)].parse().unwrap()
            };
            let (x, y) = (attr("x"), attr("y"));
            // A generous text width (0.7 em per character) must still end inside the box.
            let right = x + 0.7 * attr("font-size") * p.name().chars().count() as f64;
            assert!(
                x > legend.0 && right < legend.0 + legend.2 && y > legend.1 && y < legend.1 + legend.3,
                "{} at ({x}, {y}) outside the legend box {legend:?}",
                p.name()
            );
        }
    }

    #[test]
    fn overlap_check_catches_a_legend_inside_the_plot() {
        // The check above is only as good as `overlap`: the old layout put the legend in the
        // plotting area's upper-right corner.
        let frame = (65.0, 60.0, 1115.0, 350.0);
        assert!(overlap((950.0, 70.0, 220.0, 180.0), frame));
        assert!(!overlap((1210.0, 60.0, 240.0, 200.0), frame));
    }
}
