//! Pictures of results: the threshold trade-off of `eval --sweep` (Pd against Fa, IoU and false
//! targets per frame against the threshold, the operating point marked) and the per-stage
//! latency histograms of `run`.
//!
//! Drawn with plotters into an RGB buffer and written with the `image` crate; text uses an
//! embedded DejaVu Sans (registered once), so plotting needs no system fonts.

use crate::eval::metrics::Metrics;
use crate::image_io::write_rgb_png;
use crate::stream::stats::Histogram;
use anyhow::{anyhow, bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// Size of a sweep plot (three panels side by side).
pub const SWEEP_SIZE: (u32, u32) = (1500, 500);
/// Size of a latency plot (six panels, 3 × 2).
pub const LATENCY_SIZE: (u32, u32) = (1200, 700);
/// The colour of the operating-point markers.
pub const OPERATING_POINT: RGBColor = BLACK;

/// One evaluated set across thresholds.
pub struct SweepSeries {
    /// The set's name, for the legend.
    pub name: String,
    /// True when the set has masks (IoU is then meaningful).
    pub masks: bool,
    /// (threshold, metrics), in increasing threshold.
    pub points: Vec<(f32, Metrics)>,
}

/// The colour of series `i` (the same in every panel).
pub fn series_colour(i: usize) -> RGBColor {
    const COLOURS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(23, 190, 207),
    ];
    COLOURS[i % COLOURS.len()]
}

fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // The embedded font is a valid TTF; if it were not, text would be missing, not the plot.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Draws into a white `size` canvas and writes it to `path` as PNG.
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<()> {
    register_font();
    let mut buf = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
    }
    let img = image::RgbImage::from_raw(size.0, size.1, buf).ok_or_else(|| anyhow!("plot buffer size"))?;
    write_rgb_png(path, &img)
}

/// Plots a threshold sweep: Pd against Fa (sets with targets), IoU against the threshold (sets
/// with masks) and false targets per frame against the threshold (every set). `operating` is
/// the threshold to mark (the weights' operating point).
pub fn sweep(path: &Path, title: &str, series: &[SweepSeries], operating: Option<f32>) -> Result<()> {
    if series.iter().all(|s| s.points.len() < 2) {
        bail!(
            "--plot {}: a curve needs at least two thresholds (--sweep 0.3,0.5,0.7,...)",
            path.display()
        );
    }
    render(path, SWEEP_SIZE, |root| {
        let e = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e}", path.display());
        let root = root.titled(title, ("sans-serif", 22)).map_err(e)?;
        let panels = root.split_evenly((1, 3));
        pd_fa_panel(&panels[0], series, operating)?;
        threshold_panel(
            &panels[1],
            "IoU against threshold",
            "IoU",
            series,
            operating,
            false,
            |s, m| s.masks.then_some(m.iou),
        )?;
        threshold_panel(
            &panels[2],
            "False targets per frame against threshold",
            "false targets / frame",
            series,
            operating,
            true,
            |_, m| Some(m.false_targets_per_frame),
        )
    })
}

type Panel<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn pd_fa_panel(area: &Panel, series: &[SweepSeries], operating: Option<f32>) -> Result<()> {
    let e = |e: DrawingAreaErrorKind<_>| anyhow!("{e}");
    let with_targets: Vec<(usize, &SweepSeries)> = series
        .iter()
        .enumerate()
        .filter(|(_, s)| s.points.iter().any(|(_, m)| m.targets > 0))
        .collect();
    let fa_max = with_targets
        .iter()
        .flat_map(|(_, s)| s.points.iter().map(|(_, m)| m.fa * 1e6))
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption("Pd against Fa", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..fa_max * 1.08, 0.0..1.02)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("Fa (×1e-6)")
        .y_desc("Pd")
        .draw()
        .map_err(e)?;
    for (i, s) in with_targets {
        let colour = series_colour(i);
        let pts: Vec<(f64, f64)> = s.points.iter().map(|(_, m)| (m.fa * 1e6, m.pd)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
            .map_err(e)?;
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled())))
            .map_err(e)?;
        let marked = s.points.iter().filter(|(t, _)| Some(*t) == operating);
        chart
            .draw_series(marked.map(|(_, m)| Circle::new((m.fa * 1e6, m.pd), 7, OPERATING_POINT.stroke_width(2))))
            .map_err(e)?;
    }
    Ok(())
}

fn threshold_panel(
    area: &Panel,
    caption: &str,
    y_desc: &str,
    series: &[SweepSeries],
    operating: Option<f32>,
    legend: bool,
    value: impl Fn(&SweepSeries, &Metrics) -> Option<f64>,
) -> Result<()> {
    let e = |e: DrawingAreaErrorKind<_>| anyhow!("{e}");
    let curves: Vec<(usize, Vec<(f64, f64)>)> = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let pts = s
                .points
                .iter()
                .filter_map(|(t, m)| value(s, m).map(|v| (*t as f64, v)))
                .collect();
            (i, pts)
        })
        .filter(|(_, pts): &(usize, Vec<(f64, f64)>)| !pts.is_empty())
        .collect();
    let caption = if curves.is_empty() {
        format!("{caption} (no set has this)")
    } else {
        caption.to_string()
    };
    // Head room above the curves for the legend.
    let y_max = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(if curves.is_empty() { 1.0 } else { 1e-3f64 }, f64::max)
        * if legend { 1.0 + 0.12 * series.len() as f64 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..1.0, 0.0..y_max * 1.08)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("threshold")
        .y_desc(y_desc)
        .draw()
        .map_err(e)?;
    if let Some(t) = operating {
        let t = t as f64;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(t, 0.0), (t, y_max * 1.08)],
                6,
                4,
                OPERATING_POINT.stroke_width(1),
            ))
            .map_err(e)?;
    }
    for (i, pts) in curves {
        let colour = series_colour(i);
        let line = chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
            .map_err(e)?;
        if legend {
            line.label(series[i].name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        }
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled())))
            .map_err(e)?;
    }
    if legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

/// Plots latency histograms, one panel per (name, histogram), in milliseconds on a log axis,
/// with the median and the 99th percentile marked.
pub fn latency(path: &Path, title: &str, panels: &[(&str, &Histogram)]) -> Result<()> {
    if panels.iter().all(|(_, h)| h.is_empty()) {
        bail!("--plot {}: no frame was timed, nothing to plot", path.display());
    }
    render(path, LATENCY_SIZE, |root| {
        let e = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e}", path.display());
        let root = root.titled(title, ("sans-serif", 22)).map_err(e)?;
        let cols = 3;
        let rows = panels.len().div_ceil(cols);
        for ((name, h), area) in panels.iter().zip(root.split_evenly((rows, cols))) {
            histogram_panel(&area, name, h)?;
        }
        Ok(())
    })
}

/// `v` with 3 significant digits and no trailing zeros (axis labels).
fn significant(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Bins per decade in the plotted histogram (the statistics keep 100).
const PLOT_BINS_PER_DECADE: u32 = 20;

fn histogram_panel(area: &Panel, name: &str, h: &Histogram) -> Result<()> {
    let e = |e: DrawingAreaErrorKind<_>| anyhow!("{e}");
    let bars = h.coarse_bins_ms(PLOT_BINS_PER_DECADE);
    if bars.is_empty() {
        return Ok(());
    }
    let lo = bars.first().map_or(1e-3, |b| b.0).max(1e-4);
    let hi = bars.last().map_or(1.0, |b| b.1);
    let top = bars.iter().map(|b| b.2).max().unwrap_or(1);
    let caption = format!(
        "{name}: p50 {} ms, p99 {} ms",
        significant(h.quantile(0.5) * 1e3),
        significant(h.quantile(0.99) * 1e3)
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(lo * 0.9..hi * 1.05, 0u64..top + top / 10 + 1)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("ms")
        .y_desc("frames")
        .x_labels(6)
        .x_label_formatter(&|v| significant(*v))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(
            bars.iter()
                .map(|&(a, b, c)| Rectangle::new([(a, 0), (b, c)], series_colour(0).mix(0.8).filled())),
        )
        .map_err(e)?;
    for (q, colour) in [(0.5, OPERATING_POINT), (0.99, series_colour(1))] {
        let x = h.quantile(q) * 1e3;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x, 0), (x, top + top / 10)],
                5,
                3,
                colour.stroke_width(2),
            ))
            .map_err(e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(pd: f64, fa: f64, iou: f64, ft: f64) -> Metrics {
        Metrics {
            iou,
            pd,
            fa,
            targets: 10,
            false_targets_per_frame: ft,
            ..Default::default()
        }
    }

    fn count(img: &image::RgbImage, c: RGBColor) -> usize {
        img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count()
    }

    #[test]
    fn a_sweep_plot_draws_each_curve_and_the_operating_point() {
        let dir = std::env::temp_dir().join(format!("srsnet-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sweep.png");
        let series = vec![SweepSeries {
            name: "set".into(),
            masks: true,
            points: vec![
                (0.3, metrics(0.95, 80e-6, 0.5, 2.0)),
                (0.5, metrics(0.9, 40e-6, 0.6, 1.0)),
                (0.7, metrics(0.8, 10e-6, 0.55, 0.2)),
            ],
        }];
        sweep(&path, "test", &series, Some(0.5)).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), SWEEP_SIZE);
        // Three panels of one curve each: hundreds of pixels of the series colour.
        assert!(count(&img, series_colour(0)) > 300, "{}", count(&img, series_colour(0)));
        // A single threshold is no curve.
        let one = vec![SweepSeries {
            name: "set".into(),
            masks: true,
            points: vec![(0.5, metrics(0.9, 40e-6, 0.6, 1.0))],
        }];
        let err = sweep(&path, "test", &one, None).unwrap_err().to_string();
        assert!(err.contains("at least two thresholds"), "{err}");
        let err = sweep(&dir.join("missing/dir/x.png"), "t", &series, None).unwrap_err();
        assert!(format!("{err:#}").contains("missing/dir/x.png"), "{err:#}");
    }

    #[test]
    fn axis_labels_have_three_significant_digits() {
        assert_eq!(significant(0.23000000000000004), "0.23");
        assert_eq!(significant(39.36), "39.4");
        assert_eq!(significant(1234.6), "1235");
        assert_eq!(significant(0.000123456), "0.000123");
        assert_eq!(significant(2.0), "2");
    }

    #[test]
    fn a_latency_plot_has_a_bar_per_populated_bin() {
        let mut h = Histogram::default();
        for i in 0..200 {
            h.add(0.004 + 0.002 * (i % 5) as f64);
        }
        let bins = h.coarse_bins_ms(PLOT_BINS_PER_DECADE);
        assert_eq!(bins.iter().map(|b| b.2).sum::<u64>(), 200);
        assert!(bins.iter().all(|b| b.0 < b.1 && b.0 >= 3.0 && b.1 <= 14.0), "{bins:?}");
        let dir = std::env::temp_dir().join(format!("srsnet-plot-lat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latency.png");
        latency(&path, "test", &[("inference", &h)]).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), LATENCY_SIZE);
        let err = latency(&path, "t", &[("inference", &Histogram::default())]).unwrap_err();
        assert!(err.to_string().contains("nothing to plot"), "{err}");
    }
}
