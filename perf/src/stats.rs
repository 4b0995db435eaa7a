//! Latency histograms and the summaries drawn from them.
//!
//! Latencies are recorded in nanoseconds in HdrHistograms with three
//! significant digits (0.1% error at every magnitude) up to
//! [`LATENCY_NANOS_MAX`]; anything slower is clamped to that bound rather
//! than dropped, so a pathological stall still shows as the maximum.
//! Every executor records into its own histograms; they are merged at the
//! end (and per reporting interval), which HdrHistogram does exactly.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::clock::NANOS_PER_SEC;

/// Largest latency recorded exactly (ten minutes).
pub const LATENCY_NANOS_MAX: u64 = 600 * NANOS_PER_SEC;
/// HdrHistogram precision.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Points of a percentile curve per decade of `1 / (1 - p)`.
const CURVE_POINTS_PER_DECADE: u32 = 20;
/// The curve runs to 99.999%, i.e. five decades.
const CURVE_DECADES: u32 = 5;

/// An empty latency histogram.
pub fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, LATENCY_NANOS_MAX, SIGNIFICANT_DIGITS) {
        Ok(histogram) => histogram,
        Err(error) => panic!("histogram bounds are constants and valid: {error:?}"),
    }
}

/// Records one latency, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, nanos: u64) {
    histogram.saturating_record(nanos.clamp(1, LATENCY_NANOS_MAX));
}

/// Records one latency `count` times, clamped as [`record`] does.
pub fn record_n(histogram: &mut Histogram<u64>, nanos: u64, count: u64) {
    histogram.saturating_record_n(nanos.clamp(1, LATENCY_NANOS_MAX), count);
}

/// Adds `from` into `into`. Both were made by [`histogram`], so the bounds
/// agree and the merge is exact.
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if let Err(error) = into.add(from) {
        panic!("histograms made with the same bounds always merge: {error:?}");
    }
}

fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1_000.0
}

/// The latency summary printed and stored for one histogram.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let at = |quantile: f64| micros(histogram.value_at_quantile(quantile));
        Percentiles {
            count: histogram.len(),
            mean_us: histogram.mean() / 1_000.0,
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            p9999_us: at(0.9999),
            max_us: micros(histogram.max()),
        }
    }

    /// The values in the order they are printed, for checks.
    #[cfg(test)]
    pub fn ordered(&self) -> [f64; 6] {
        [
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.p9999_us,
            self.max_us,
        ]
    }
}

/// The percentile curve of a histogram, as `[percentile, microseconds]`
/// points evenly spaced in `log10(1 / (1 - p))` from p = 0 to 99.999%,
/// followed by the maximum at 100%. This is what the plots draw.
pub fn curve(histogram: &Histogram<u64>) -> Vec<[f64; 2]> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let steps = CURVE_POINTS_PER_DECADE * CURVE_DECADES;
    let mut points: Vec<[f64; 2]> = (0..=steps)
        .map(|step| {
            let decades = f64::from(step) / f64::from(CURVE_POINTS_PER_DECADE);
            let quantile = 1.0 - 10f64.powf(-decades);
            [
                quantile * 100.0,
                micros(histogram.value_at_quantile(quantile)),
            ]
        })
        .collect();
    points.push([100.0, micros(histogram.max())]);
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_histograms_equal_one_histogram_of_all_samples() {
        let mut left = histogram();
        let mut right = histogram();
        let mut all = histogram();
        for index in 1..=10_000u64 {
            let sample = index * 7_919 % 5_000_000 + 1;
            if index % 3 == 0 {
                record(&mut left, sample);
            } else {
                record(&mut right, sample);
            }
            record(&mut all, sample);
        }
        let mut merged = histogram();
        merge(&mut merged, &left);
        merge(&mut merged, &right);
        assert_eq!(merged.len(), all.len());
        assert_eq!(Percentiles::of(&merged), Percentiles::of(&all));
        assert_eq!(curve(&merged), curve(&all));
    }

    #[test]
    fn percentiles_are_ordered_and_clamped() {
        let mut latencies = histogram();
        for index in 1..=100_000u64 {
            record(&mut latencies, index * 1_000);
        }
        record(&mut latencies, u64::MAX);
        record(&mut latencies, 0);
        let summary = Percentiles::of(&latencies);
        assert!(
            summary.ordered().windows(2).all(|pair| pair[0] <= pair[1]),
            "{summary:?}"
        );
        // The clamped outlier is the maximum, within HdrHistogram's precision.
        assert!((summary.max_us - micros(LATENCY_NANOS_MAX)).abs() / summary.max_us < 0.001);
        assert!(
            (summary.p50_us - 50_000.0).abs() / 50_000.0 < 0.001,
            "{}",
            summary.p50_us
        );
        let curve = curve(&latencies);
        assert!(curve
            .windows(2)
            .all(|pair| pair[0][0] < pair[1][0] && pair[0][1] <= pair[1][1]));
        assert_eq!(curve.last().map(|point| point[0]), Some(100.0));
    }

    #[test]
    fn empty_histograms_summarise_to_zero() {
        assert_eq!(Percentiles::of(&histogram()), Percentiles::default());
        assert!(curve(&histogram()).is_empty());
    }
}
