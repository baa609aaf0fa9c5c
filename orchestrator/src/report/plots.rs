//! The plots of the HTML report, drawn with plotters into SVG strings and embedded inline.
//!
//! - a strip plot of the per-boot values of a metric, A against B, with each side's median;
//! - the pooled latency histograms of A and B overlaid, on log axes (latency buckets grow
//!   geometrically, and an RT regression lives in the sparse tail buckets);
//! - the failure rates per test and arch as bars with their 95 % Wilson interval whiskers.
//!
//! plotters is built without a font backend, so its text is SVG `<text>` that the browser
//! sets in whatever sans-serif it has: no font file is read or embedded. The SVG namespace
//! declaration is dropped: inside HTML the `<svg>` element needs none, and the report must
//! hold no URL at all. Nothing here may panic on odd data: plotters asserts on NaN or empty
//! ranges, so every range is made finite, ordered and non-empty first.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::escape::{attr, one_line};
use super::figures::{self, number};
use super::ReportError;
use crate::stats::{Counts, Interval};

/// Colours of the two sides, shared with the HTML legend.
pub(super) const A_RGB: (u8, u8, u8) = (31, 119, 180);
pub(super) const B_RGB: (u8, u8, u8) = (230, 115, 0);
const A_COLOR: RGBColor = RGBColor(A_RGB.0, A_RGB.1, A_RGB.2);
const B_COLOR: RGBColor = RGBColor(B_RGB.0, B_RGB.1, B_RGB.2);
const INK: RGBColor = RGBColor(40, 40, 40);

const FONT: &str = "sans-serif";

/// Size of one metric plot; two sit side by side in a 1400-pixel window.
const METRIC_SIZE: (u32, u32) = (640, 300);

fn fail<E: std::fmt::Display>(e: E) -> ReportError {
    ReportError::Render {
        format: "html",
        why: format!("draw a plot: {e}"),
    }
}

/// Draws with `draw` into a fresh SVG of `size` and returns it ready to inline in HTML.
fn svg(
    size: (u32, u32),
    label: &str,
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), ReportError>,
) -> Result<String, ReportError> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(fail)?;
        draw(&root)?;
        root.present().map_err(fail)?;
    }
    let inline = buf.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1);
    Ok(inline.replacen(
        "<svg ",
        &format!(
            "<svg class=\"plot\" role=\"img\" aria-label=\"{}\" ",
            attr(label)
        ),
        1,
    ))
}

/// The finite values of `xs`.
fn finite(xs: &[f64]) -> Vec<f64> {
    xs.iter().copied().filter(|x| x.is_finite()).collect()
}

/// A padded, non-empty linear range around `xs` (which are finite).
fn linear_span(xs: &[f64]) -> (f64, f64) {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else if lo != 0.0 {
        lo.abs() * 0.1
    } else {
        1.0
    };
    (lo - pad, hi + pad)
}

/// An axis tick: whole numbers without decimals, others with about three digits.
fn tick(x: f64) -> String {
    if x.abs() >= 1.0 && x.fract() == 0.0 && x.abs() < 1e6 {
        format!("{x:.0}")
    } else {
        number(x)
    }
}

/// A share of samples on a log axis: `50%`, `0.1%`, `0.001%`.
fn share_tick(y: f64) -> String {
    format!("{}%", figures::param(y * 100.0))
}

/// A small deterministic offset for the `i`th point of a strip, in (−0.25, 0.25): the
/// golden-ratio sequence spreads points evenly without a random generator, so the same
/// report always draws the same picture.
fn jitter(i: usize) -> f64 {
    (((i as f64) + 1.0) * 0.618_033_988_749_895).fract() * 0.5 - 0.25
}

/// Strip plot of the per-boot values of A and B, with each side's median as a bar; the rows
/// are named `A` and `B` in the sides' colours. `None` when neither side has a value.
pub(super) fn strip(
    title: &str,
    unit: &str,
    values_a: &[f64],
    values_b: &[f64],
) -> Result<Option<String>, ReportError> {
    let (a, b) = (finite(values_a), finite(values_b));
    if a.is_empty() && b.is_empty() {
        return Ok(None);
    }
    let all: Vec<f64> = a.iter().chain(&b).copied().collect();
    let (lo, hi) = linear_span(&all);
    let title = one_line(title);
    let x_desc = if unit.is_empty() {
        "value per run".to_owned()
    } else {
        format!("value per run ({unit})")
    };
    let drawn =
        svg(METRIC_SIZE, &title, |root| {
            let mut chart = ChartBuilder::on(root)
                .caption(&title, (FONT, 16))
                .margin(12)
                .x_label_area_size(44)
                .y_label_area_size(70)
                .build_cartesian_2d(lo..hi, -0.5f64..1.5f64)
                .map_err(fail)?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(0)
                .x_labels(8)
                .x_label_formatter(&|x| tick(*x))
                .x_desc(x_desc.as_str())
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 13))
                .draw()
                .map_err(fail)?;
            let sides = [("A", &a, A_COLOR, 1.0), ("B", &b, B_COLOR, 0.0)];
            for (name, values, color, row) in sides {
                chart
                    .draw_series(values.iter().enumerate().map(|(i, &v)| {
                        Circle::new((v, row + jitter(i)), 4, color.mix(0.55).filled())
                    }))
                    .map_err(fail)?;
                if let Some(m) = figures::median(values) {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(m, row - 0.38), (m, row + 0.38)],
                            INK.stroke_width(3),
                        )))
                        .map_err(fail)?;
                }
                // Side names sit in the label area, left of their row.
                let (x, y) = chart.backend_coord(&(lo, row));
                let style = (FONT, 13)
                    .into_text_style(root)
                    .color(&color)
                    .pos(Pos::new(HPos::Right, VPos::Center));
                let text = format!("{name} (n={})", values.len());
                root.draw(&Text::new(text, (x - 8, y), style))
                    .map_err(fail)?;
            }
            Ok(())
        })?;
    Ok(Some(drawn))
}

/// Bucket edges for display on a log axis: the lower and upper edge of each bucket bound
/// in `bounds` (sorted, unique). A bound of 0 is drawn as 1; an overflow bucket whose
/// bound is absurdly far out (`u64::MAX`) is drawn as wide as a doubling.
fn edges(bounds: &[u64]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(bounds.len());
    for &b in bounds {
        let mut hi = (b as f64).max(1.0);
        let lo = match out.last() {
            Some(&(_, prev)) => {
                if hi > prev * 1000.0 {
                    hi = prev * 2.0;
                }
                prev
            }
            None => hi / 2.0,
        };
        out.push((lo, hi.max(lo * 1.01)));
    }
    out
}

/// Overlaid latency histograms of A and B, as shares of each side's samples, both axes
/// logarithmic. `None` when neither side has a sample.
pub(super) fn histogram(
    title: &str,
    unit: &str,
    hist_a: &[(u64, u64)],
    hist_b: &[(u64, u64)],
) -> Result<Option<String>, ReportError> {
    let mut bounds: Vec<u64> = hist_a.iter().chain(hist_b).map(|(b, _)| *b).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let share = |h: &[(u64, u64)]| -> Vec<f64> {
        let total: u64 = h.iter().map(|(_, c)| c).sum();
        bounds
            .iter()
            .map(|b| {
                let n: u64 = h.iter().filter(|(x, _)| x == b).map(|(_, c)| c).sum();
                if total == 0 {
                    0.0
                } else {
                    n as f64 / total as f64
                }
            })
            .collect()
    };
    let (sa, sb) = (share(hist_a), share(hist_b));
    let smallest = sa
        .iter()
        .chain(&sb)
        .copied()
        .filter(|s| *s > 0.0)
        .fold(f64::INFINITY, f64::min);
    if !smallest.is_finite() {
        return Ok(None);
    }
    let edges = edges(&bounds);
    let (x_lo, x_hi) = match (edges.first(), edges.last()) {
        (Some(f), Some(l)) => (f.0, l.1),
        _ => return Ok(None),
    };
    let floor = (smallest / 2.0).min(0.5);
    let title = one_line(title);
    let x_desc = if unit.is_empty() {
        "bucket upper bound (log)".to_owned()
    } else {
        format!("bucket upper bound, {unit} (log)")
    };
    let drawn = svg(METRIC_SIZE, &title, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(&title, (FONT, 16))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), (floor..1.0f64).log_scale())
            .map_err(fail)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|x| tick(*x))
            .y_label_formatter(&|y| share_tick(*y))
            .x_desc(x_desc.as_str())
            .y_desc("share of samples (log)")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()
            .map_err(fail)?;
        for (shares, color) in [(&sa, A_COLOR), (&sb, B_COLOR)] {
            let bars = edges
                .iter()
                .zip(shares.iter())
                .filter(|(_, s)| **s > 0.0)
                .map(|(&(lo, hi), &s)| (lo, hi, s));
            chart
                .draw_series(bars.clone().map(|(lo, hi, s)| {
                    Rectangle::new([(lo, floor), (hi, s)], color.mix(0.3).filled())
                }))
                .map_err(fail)?;
            chart
                .draw_series(bars.map(|(lo, hi, s)| {
                    Rectangle::new([(lo, floor), (hi, s)], color.stroke_width(2))
                }))
                .map_err(fail)?;
        }
        Ok(())
    })?;
    Ok(Some(drawn))
}

/// One bar pair of the failure-rate chart.
pub(super) struct RateRow {
    pub label: String,
    pub a: Counts,
    pub b: Counts,
    pub interval_a: Interval,
    pub interval_b: Interval,
}

/// Failure rates of A and B per test and arch: horizontal bars with Wilson whiskers.
pub(super) fn rates(rows: &[RateRow]) -> Result<Option<String>, ReportError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let n = rows.len();
    let top = rows
        .iter()
        .flat_map(|r| {
            [
                r.interval_a.upper,
                r.interval_b.upper,
                r.a.rate(),
                r.b.rate(),
            ]
        })
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max);
    let x_max = (top * 100.0 * 1.15).clamp(5.0, 100.0);
    let label_chars = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0);
    let label_w = (label_chars as u32 * 7 + 24).clamp(80, 340);
    let height = 110 + 52 * n as u32;
    let title = "Failure rate per test and arch (bars: observed; whiskers: 95% Wilson interval)";
    let drawn = svg((1100, height), title, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 16))
            .margin(14)
            .margin_right(70)
            .x_label_area_size(44)
            .y_label_area_size(label_w)
            .build_cartesian_2d(0.0..x_max, 0.0..n as f64)
            .map_err(fail)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(10)
            .max_light_lines(2)
            .x_label_formatter(&|x| format!("{}%", figures::param(*x)))
            .x_desc("failure rate: (fail + kernel-crash + hang) / runs")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()
            .map_err(fail)?;
        for (i, r) in rows.iter().enumerate() {
            let band = (n - 1 - i) as f64;
            let sides = [
                ("A", r.a, r.interval_a, A_COLOR, band + 0.52, band + 0.88),
                ("B", r.b, r.interval_b, B_COLOR, band + 0.12, band + 0.48),
            ];
            for (name, counts, iv, color, y0, y1) in sides {
                let mid = (y0 + y1) / 2.0;
                let rate = counts.rate() * 100.0;
                let (lo, hi) = (
                    (iv.lower * 100.0).clamp(0.0, x_max),
                    (iv.upper * 100.0).clamp(0.0, x_max),
                );
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(0.0, y0), (rate.min(x_max), y1)],
                        color.mix(0.8).filled(),
                    )))
                    .map_err(fail)?;
                let cap = 0.1;
                chart
                    .draw_series([
                        PathElement::new(vec![(lo, mid), (hi, mid)], INK.stroke_width(2)),
                        PathElement::new(
                            vec![(lo, mid - cap), (lo, mid + cap)],
                            INK.stroke_width(2),
                        ),
                        PathElement::new(
                            vec![(hi, mid - cap), (hi, mid + cap)],
                            INK.stroke_width(2),
                        ),
                    ])
                    .map_err(fail)?;
                let (px, py) = chart.backend_coord(&(hi.max(rate).min(x_max), mid));
                let style = (FONT, 12)
                    .into_text_style(root)
                    .color(&INK)
                    .pos(Pos::new(HPos::Left, VPos::Center));
                let label = format!("{name} {}", figures::counts(counts));
                root.draw(&Text::new(label, (px + 6, py), style))
                    .map_err(fail)?;
            }
            let (x, y) = chart.backend_coord(&(0.0, band + 0.5));
            let style = (FONT, 13)
                .into_text_style(root)
                .color(&INK)
                .pos(Pos::new(HPos::Right, VPos::Center));
            root.draw(&Text::new(one_line(&r.label), (x - 8, y), style))
                .map_err(fail)?;
        }
        Ok(())
    })?;
    Ok(Some(drawn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_holds_text_and_no_url() {
        let s = strip("wake <us>", "us", &[1.0, 2.0, 3.0], &[2.0, 3.0, 4.0])
            .expect("draws")
            .expect("has values");
        assert!(s.starts_with("<svg class=\"plot\""), "{s}");
        assert!(s.contains("<text"), "text is SVG text, no font needed");
        assert!(s.contains("wake &lt;us&gt;"));
        assert!(!s.contains("http"), "no namespace URL: {s}");
    }

    #[test]
    fn odd_data_does_not_panic() {
        // Identical values, NaNs, one empty side, a zero bucket, an overflow bucket.
        assert!(strip("t", "", &[5.0, 5.0], &[]).expect("draws").is_some());
        assert!(strip("t", "", &[f64::NAN], &[]).expect("draws").is_none());
        assert!(strip("t", "", &[0.0], &[0.0]).expect("draws").is_some());
        let h = histogram("h", "us", &[(0, 1), (8, 3), (u64::MAX, 1)], &[]).expect("draws");
        assert!(h.is_some());
        assert!(histogram("h", "us", &[(8, 0)], &[])
            .expect("draws")
            .is_none());
        let zero = Interval {
            lower: 0.0,
            upper: 0.0,
        };
        let row = RateRow {
            label: "t / x86_64".into(),
            a: Counts::new(0, 0),
            b: Counts::new(1, 1),
            interval_a: zero,
            interval_b: Interval {
                lower: 0.2,
                upper: 1.0,
            },
        };
        assert!(rates(&[row]).expect("draws").is_some());
    }

    #[test]
    fn ticks_read_cleanly() {
        assert_eq!(tick(1000.0), "1000");
        assert_eq!(tick(1.0), "1");
        assert_eq!(tick(82.5), "82.5");
        assert_eq!(share_tick(0.5), "50%");
        assert_eq!(share_tick(0.00001), "0.001%");
    }

    #[test]
    fn overflow_buckets_stay_on_the_page() {
        let e = edges(&[0, 10, 100, u64::MAX]);
        assert_eq!(e[0], (0.5, 1.0));
        assert_eq!(e[1], (1.0, 10.0));
        assert_eq!(e[3], (100.0, 200.0));
    }
}
