//! Medians over repeated runs.
//!
//! One run on a shared machine says little: a neighbour's burst moves a
//! tail percentile by an order of magnitude. `sluice-perf summarize` groups
//! result files by label and reports, per group, the median of every figure
//! together with its spread (min–max), and the median of each run's ratio to
//! the baseline measured in that same run, so a figure is never compared
//! with a limit measured at another time.

use std::fmt::Write as _;

use crate::cpu::Usage;
use crate::report::RunResult;
use crate::stats::Percentiles;

/// One figure over the runs of a group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` when there are no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        // The mean of the two middle values for an even count, as usual.
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        } else {
            sorted[middle]
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

/// The runs of one label.
pub struct Group<'a> {
    pub label: &'a str,
    pub runs: Vec<&'a RunResult>,
}

/// Groups results by label, in order of first appearance.
pub fn group(results: &[RunResult]) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for result in results {
        match groups.iter_mut().find(|group| group.label == result.label) {
            Some(group) => group.runs.push(result),
            None => groups.push(Group {
                label: &result.label,
                runs: vec![result],
            }),
        }
    }
    groups
}

fn spread_of(runs: &[&RunResult], figure: impl Fn(&RunResult) -> Option<f64>) -> Option<Spread> {
    let values: Vec<f64> = runs.iter().filter_map(|run| figure(run)).collect();
    Spread::of(&values)
}

/// `median (min–max)`, or `—` when no run has the figure.
fn cell(spread: Option<Spread>, scale: f64, decimals: usize) -> String {
    match spread {
        Some(spread) if spread.min == spread.max => {
            format!("{:.decimals$}", spread.median * scale)
        }
        Some(spread) => format!(
            "{:.decimals$} ({:.decimals$}–{:.decimals$})",
            spread.median * scale,
            spread.min * scale,
            spread.max * scale
        ),
        None => "—".to_string(),
    }
}

/// A latency figure is absent when the run recorded none.
fn latency(value: f64, count: u64) -> Option<f64> {
    (count > 0).then_some(value)
}

fn ratio(value: f64, limit: f64) -> Option<f64> {
    (limit > 0.0).then_some(value / limit)
}

/// The CPU beside a group's latency figures: the clients', the broker's
/// (where its pid was known) and what the hypervisor took (steal), in
/// cores over each run's measured window.
fn cpu_cells(usages: &[&Usage]) -> [String; 3] {
    let spread = |figure: fn(&Usage) -> Option<f64>| {
        let values: Vec<f64> = usages.iter().filter_map(|usage| figure(usage)).collect();
        Spread::of(&values)
    };
    [
        cell(spread(|usage| Some(usage.client_cores)), 1.0, 2),
        cell(spread(|usage| usage.broker_cores), 1.0, 2),
        cell(spread(|usage| Some(usage.stolen_cores)), 1.0, 3),
    ]
}

/// A Markdown table with one row per label: medians and (min–max) spreads.
pub fn markdown(results: &[RunResult]) -> String {
    const MS: f64 = 1e-3;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| run | runs | produce MB/s | × loopback | consume MB/s | × loopback | ack p50 ms | ack p99 ms | e2e p50 ms | e2e p99 ms | e2e p99.9 ms | ack p99 − fdatasync p99 ms | request trip p99 − fdatasync p99 ms | client cores | broker cores | stolen cores |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for group in group(results) {
        let runs = &group.runs;
        let loopback = |run: &RunResult| run.baseline.as_ref().map(|b| b.loopback_mb_per_sec);
        let durable = runs
            .iter()
            .all(|run| matches!(run.workload.acks.as_str(), "all" | "-1"));
        // p99 of a latency over the fdatasync p99 the run's baseline measured.
        let over_fsync = |latency: fn(&RunResult) -> &Percentiles| {
            if !durable {
                return "—".to_string();
            }
            cell(
                spread_of(runs, |run| {
                    let fsync = run.baseline.as_ref()?.fdatasync_p99_us;
                    let latency = latency(run);
                    (fsync > 0.0 && latency.count > 0).then_some(latency.p99_us - fsync)
                }),
                MS,
                2,
            )
        };
        let fsync_margin = over_fsync(|run| &run.ack_latency);
        let request_margin = over_fsync(|run| &run.request_latency);
        let usages: Vec<&Usage> = runs.iter().map(|run| &run.cpu).collect();
        let [client_cores, broker_cores, stolen_cores] = cpu_cells(&usages);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            group.label,
            runs.len(),
            cell(spread_of(runs, |run| Some(run.produce.mb_per_sec)), 1.0, 0),
            cell(
                spread_of(runs, |run| ratio(run.produce.mb_per_sec, loopback(run)?)),
                1.0,
                2
            ),
            cell(
                spread_of(runs, |run| (run.consume.messages > 0)
                    .then_some(run.consume.mb_per_sec)),
                1.0,
                0
            ),
            cell(
                spread_of(runs, |run| {
                    if run.consume.messages == 0 {
                        return None;
                    }
                    ratio(run.consume.mb_per_sec, loopback(run)?)
                }),
                1.0,
                2
            ),
            cell(
                spread_of(runs, |run| latency(
                    run.ack_latency.p50_us,
                    run.ack_latency.count
                )),
                MS,
                2
            ),
            cell(
                spread_of(runs, |run| latency(
                    run.ack_latency.p99_us,
                    run.ack_latency.count
                )),
                MS,
                2
            ),
            cell(
                spread_of(runs, |run| latency(
                    run.e2e_latency.p50_us,
                    run.e2e_latency.count
                )),
                MS,
                2
            ),
            cell(
                spread_of(runs, |run| latency(
                    run.e2e_latency.p99_us,
                    run.e2e_latency.count
                )),
                MS,
                2
            ),
            cell(
                spread_of(runs, |run| latency(
                    run.e2e_latency.p999_us,
                    run.e2e_latency.count
                )),
                MS,
                2
            ),
            fsync_margin,
            request_margin,
            client_cores,
            broker_cores,
            stolen_cores,
        );
    }
    let _ = writeln!(
        out,
        "\nMedians over the runs of each label, (min–max) when they differ; ratios are each run's figure over the baseline measured in that run."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let odd = Spread::of(&[5.0, 1.0, 3.0]).map(|s| (s.median, s.min, s.max));
        assert_eq!(odd, Some((3.0, 1.0, 5.0)));
        let even = Spread::of(&[4.0, 1.0, 3.0, 2.0]).map(|s| s.median);
        assert_eq!(even, Some(2.5));
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN]), None);
    }

    /// Client, broker and stolen cores come out as spreads; runs without
    /// a broker pid leave the broker's cell empty.
    #[test]
    fn cpu_is_summarized_beside_the_latencies() {
        let usage = |client_cores: f64, broker_cores: Option<f64>, stolen_cores: f64| Usage {
            client_cores,
            broker_cores,
            stolen_cores,
            ..Usage::default()
        };
        let (a, b, c) = (
            usage(0.8, Some(1.0), 0.0),
            usage(0.9, Some(1.1), 0.002),
            usage(0.85, Some(0.9), 0.001),
        );
        assert_eq!(
            cpu_cells(&[&a, &b, &c]),
            [
                "0.85 (0.80–0.90)".to_string(),
                "1.00 (0.90–1.10)".to_string(),
                "0.001 (0.000–0.002)".to_string()
            ]
        );
        let external = usage(0.5, None, 0.0);
        assert_eq!(
            cpu_cells(&[&external]),
            ["0.50".to_string(), "—".to_string(), "0.000".to_string()]
        );
    }

    #[test]
    fn cells_show_spread_only_when_runs_differ() {
        assert_eq!(cell(Spread::of(&[2.0, 2.0]), 1.0, 1), "2.0");
        assert_eq!(cell(Spread::of(&[1.0, 2.0, 9.0]), 1.0, 1), "2.0 (1.0–9.0)");
        assert_eq!(cell(None, 1.0, 1), "—");
    }
}
