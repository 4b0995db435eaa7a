//! Latency-percentile plots as self-contained SVG.
//!
//! The x axis is the percentile on the usual HdrHistogram scale,
//! `log10(1 / (1 - p))`, so 90%, 99%, 99.9% ... are evenly spaced and the
//! tail gets the room it deserves; the maximum sits at the right edge. The
//! y axis is latency on a log scale, so a 100 µs median and a 50 ms tail
//! are both readable. Written by hand (a few polylines and labels) rather
//! than with a plotting library, to keep the suite's dependencies small.

use std::fmt::Write as _;

/// A named curve of `[percentile, microseconds]` points.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: &'a [[f64; 2]],
}

/// One chart of the figure.
pub struct Panel<'a> {
    pub title: &'a str,
    pub series: Vec<Series<'a>>,
}

const WIDTH: f64 = 1000.0;
const PANEL_HEIGHT: f64 = 420.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 230.0;
const MARGIN_TOP: f64 = 50.0;
const MARGIN_BOTTOM: f64 = 50.0;
/// Where the maximum is drawn, in decades (99.999% is at 5).
const MAX_DECADES: f64 = 5.6;
/// Percentile ticks: label and decades.
const X_TICKS: [(&str, f64); 7] = [
    ("0%", 0.0),
    ("90%", 1.0),
    ("99%", 2.0),
    ("99.9%", 3.0),
    ("99.99%", 4.0),
    ("99.999%", 5.0),
    ("max", MAX_DECADES),
];
/// Line colours (colour-blind friendly palette).
const COLOURS: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442",
];

fn decades(percentile: f64) -> f64 {
    if percentile >= 100.0 {
        MAX_DECADES
    } else {
        (-(1.0 - percentile / 100.0).log10()).clamp(0.0, MAX_DECADES)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn latency_label(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.0} ms")
    } else if ms >= 0.001 {
        format!("{:.0} µs", ms * 1000.0)
    } else {
        format!("{:.0} ns", ms * 1e6)
    }
}

fn panel(out: &mut String, panel: &Panel<'_>, top: f64) {
    let plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_height = PANEL_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let left = MARGIN_LEFT;
    let plot_top = top + MARGIN_TOP;
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="16" font-weight="bold">{}</text>"#,
        left,
        top + 28.0,
        escape(panel.title)
    );
    // Latency range in log10(ms), whole decades around the data.
    let values = panel
        .series
        .iter()
        .flat_map(|series| series.points.iter().map(|point| point[1] / 1e3));
    let (low, high) = values
        .filter(|ms| *ms > 0.0)
        .fold((f64::MAX, f64::MIN), |(low, high), ms| {
            (low.min(ms.log10()), high.max(ms.log10()))
        });
    if low > high {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="14">no samples</text>"#,
            left + 20.0,
            plot_top + 40.0
        );
        return;
    }
    let low = low.floor();
    let high = high.ceil().max(low + 1.0);
    let x = |percentile: f64| left + decades(percentile) / MAX_DECADES * plot_width;
    let y = |ms: f64| {
        plot_top + plot_height - (ms.max(1e-9).log10() - low) / (high - low) * plot_height
    };
    let _ = writeln!(
        out,
        r##"<rect x="{left:.1}" y="{plot_top:.1}" width="{plot_width:.1}" height="{plot_height:.1}" fill="none" stroke="#444"/>"##
    );
    for (label, at) in X_TICKS {
        let position = left + at / MAX_DECADES * plot_width;
        let _ = writeln!(
            out,
            r##"<line x1="{position:.1}" y1="{plot_top:.1}" x2="{position:.1}" y2="{:.1}" stroke="#ddd"/><text x="{position:.1}" y="{:.1}" font-size="12" text-anchor="middle">{label}</text>"##,
            plot_top + plot_height,
            plot_top + plot_height + 18.0
        );
    }
    let mut exponent = low;
    while exponent <= high {
        let ms = 10f64.powf(exponent);
        let position = y(ms);
        let _ = writeln!(
            out,
            r##"<line x1="{left:.1}" y1="{position:.1}" x2="{:.1}" y2="{position:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"##,
            left + plot_width,
            left - 6.0,
            position + 4.0,
            latency_label(ms)
        );
        exponent += 1.0;
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">percentile</text>"#,
        left + plot_width / 2.0,
        plot_top + plot_height + 38.0
    );
    for (index, series) in panel.series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<String> = series
            .points
            .iter()
            .filter(|point| point[1] > 0.0)
            .map(|point| format!("{:.1},{:.1}", x(point[0]), y(point[1] / 1e3)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let legend_y = plot_top + 16.0 + index as f64 * 20.0;
        let legend_x = left + plot_width + 14.0;
        let _ = writeln!(
            out,
            r#"<line x1="{legend_x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{legend_y:.1}" font-size="12">{}</text>"#,
            legend_y - 4.0,
            legend_x + 20.0,
            legend_y - 4.0,
            legend_x + 26.0,
            escape(series.label)
        );
    }
}

/// An SVG figure with one panel per entry, stacked.
pub fn svg(title: &str, panels: &[Panel<'_>]) -> String {
    let height = 40.0 + PANEL_HEIGHT * panels.len() as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{MARGIN_LEFT}" y="26" font-size="18">{}</text>"#,
        escape(title)
    );
    for (index, entry) in panels.iter().enumerate() {
        panel(&mut out, entry, 40.0 + index as f64 * PANEL_HEIGHT);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_and_survives_empty_ones() {
        let curve = [
            [0.0, 100.0],
            [90.0, 200.0],
            [99.0, 1_000.0],
            [100.0, 50_000.0],
        ];
        let figure = svg(
            "a <test> & more",
            &[
                Panel {
                    title: "ack",
                    series: vec![
                        Series {
                            label: "one",
                            points: &curve,
                        },
                        Series {
                            label: "two",
                            points: &curve,
                        },
                    ],
                },
                Panel {
                    title: "e2e",
                    series: vec![Series {
                        label: "none",
                        points: &[],
                    }],
                },
            ],
        );
        assert!(figure.starts_with("<svg"));
        assert!(figure.trim_end().ends_with("</svg>"));
        // The panel without samples says so instead of drawing.
        assert_eq!(figure.matches("<polyline").count(), 2);
        assert!(figure.contains("no samples"));
        assert!(figure.contains("a &lt;test&gt; &amp; more"));
        assert!(figure.contains("99.9%"));
        assert!(!figure.contains("NaN") && !figure.contains("inf"));
    }

    #[test]
    fn percentile_scale_spaces_nines_evenly() {
        assert!((decades(90.0) - 1.0).abs() < 1e-9);
        assert!((decades(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(decades(100.0), MAX_DECADES);
        assert_eq!(decades(0.0), 0.0);
    }
}
