//! Result files and tables.
//!
//! A run's JSON file holds everything needed to reproduce and compare it:
//! the workload, the broker and client, the machine, the baselines
//! measured in the same session, throughput, the latency summaries and
//! percentile curves, and the per-interval samples. `compare` reads any
//! number of them back.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::baseline::Baseline;
use crate::driver::Measured;
use crate::stats::{self, Percentiles};
use crate::workload::Workload;

/// Bumped when the JSON layout changes incompatibly.
pub const RESULT_FORMAT_VERSION: u32 = 1;

/// One progress interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalSample {
    pub t_secs: f64,
    pub phase: String,
    pub produce_msg_per_sec: f64,
    pub produce_mb_per_sec: f64,
    pub consume_msg_per_sec: f64,
    pub consume_mb_per_sec: f64,
    pub ack_p50_us: f64,
    pub ack_p99_us: f64,
    pub ack_max_us: f64,
    pub e2e_p50_us: f64,
    pub e2e_p99_us: f64,
    pub e2e_max_us: f64,
    /// CPU time the hypervisor took from the machine in this interval,
    /// summed over its CPUs (steal; 10 ms steps): a stall with steal
    /// beside it may be the host's, not the broker's.
    #[serde(default)]
    pub stolen_ms: u64,
}

/// The machine a run happened on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub memory_gib: f64,
}

impl Machine {
    pub fn detect() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                line.strip_prefix("model name")
                    .and_then(|rest| rest.split(':').nth(1))
            })
            .map(|model| model.trim().to_string())
            .unwrap_or_default();
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.split_whitespace()
                    .next()
                    .and_then(|kib| kib.parse().ok())
            })
            .unwrap_or(0.0);
        Machine {
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            cpu_model,
            cores: crate::cpu::cpus_or_affinity(crate::cpu::machine_cpus()) as usize,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            memory_gib: memory_kib / (1024.0 * 1024.0),
        }
    }
}

/// Throughput over the measured window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub messages: u64,
    pub bytes: u64,
    pub msg_per_sec: f64,
    pub mb_per_sec: f64,
}

impl Throughput {
    fn new(messages: u64, bytes: u64, seconds: f64) -> Throughput {
        Throughput {
            messages,
            bytes,
            msg_per_sec: messages as f64 / seconds,
            mb_per_sec: bytes as f64 / seconds / 1e6,
        }
    }
}

/// Whole-run counts, warm-up and drain included.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub consumed: u64,
}

/// Everything one run produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub format_version: u32,
    /// Short name for tables and legends (e.g. "sluice 4p").
    pub label: String,
    pub started_unix_secs: u64,
    pub workload: Workload,
    /// "sluice (started by sluice-perf)" or the broker name given.
    pub broker: String,
    pub bootstrap: String,
    pub client: String,
    pub machine: Machine,
    pub baseline: Option<Baseline>,
    /// Seconds the produce rates are over (the measured window; in backlog
    /// mode the produce phase).
    pub measured_secs: f64,
    /// Seconds the consume rates are over (in backlog mode the catch-up).
    pub consume_secs: f64,
    pub produce: Throughput,
    pub consume: Throughput,
    pub ack_latency: Percentiles,
    /// The Produce requests' round trips, weighted per record (see
    /// `Measured::request`); empty (count 0) for clients that do not report
    /// them and in results written before they were recorded.
    #[serde(default)]
    pub request_latency: Percentiles,
    pub e2e_latency: Percentiles,
    /// `[percentile, microseconds]` points, see `stats::curve`.
    pub ack_curve: Vec<[f64; 2]>,
    pub e2e_curve: Vec<[f64; 2]>,
    pub totals: Totals,
    /// CPU use during the measured window (cores).
    pub cpu: crate::cpu::Usage,
    pub intervals: Vec<IntervalSample>,
    pub errors: Vec<String>,
}

/// Who ran what, for the result file.
pub struct Context {
    pub label: String,
    pub broker: String,
    pub bootstrap: String,
    pub client: String,
    pub baseline: Option<Baseline>,
}

impl RunResult {
    pub fn new(workload: &Workload, measured: &Measured, context: Context) -> RunResult {
        let seconds = measured.produce_secs;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or(0);
        RunResult {
            format_version: RESULT_FORMAT_VERSION,
            label: context.label,
            started_unix_secs: started,
            workload: workload.clone(),
            broker: context.broker,
            bootstrap: context.bootstrap,
            client: context.client,
            machine: Machine::detect(),
            baseline: context.baseline,
            measured_secs: seconds,
            consume_secs: measured.consume_secs,
            produce: Throughput::new(measured.produced_messages, measured.produced_bytes, seconds),
            consume: Throughput::new(
                measured.consumed_messages,
                measured.consumed_bytes,
                measured.consume_secs,
            ),
            ack_latency: Percentiles::of(&measured.ack),
            request_latency: Percentiles::of(&measured.request),
            e2e_latency: Percentiles::of(&measured.e2e),
            ack_curve: stats::curve(&measured.ack),
            e2e_curve: stats::curve(&measured.e2e),
            totals: Totals {
                sent: measured.total_sent,
                acked: measured.total_acked,
                failed: measured.total_failed,
                consumed: measured.total_consumed,
            },
            cpu: measured.cpu.clone(),
            intervals: measured.intervals.clone(),
            errors: measured.errors.clone(),
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|error| error.to_string())?;
        std::fs::write(path, text)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    }

    pub fn read(path: &Path) -> Result<RunResult, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let result: RunResult = serde_json::from_str(&text)
            .map_err(|error| format!("{} is not a result file: {error}", path.display()))?;
        if result.format_version != RESULT_FORMAT_VERSION {
            return Err(format!(
                "{} has result format {}, this tool reads {RESULT_FORMAT_VERSION}",
                path.display(),
                result.format_version
            ));
        }
        Ok(result)
    }
}

fn ms(micros: f64) -> String {
    if micros == 0.0 {
        "-".to_string()
    } else if micros < 10_000.0 {
        format!("{:.3}", micros / 1e3)
    } else {
        format!("{:.1}", micros / 1e3)
    }
}

fn latency_row(out: &mut String, name: &str, latency: &Percentiles) {
    let _ = writeln!(
        out,
        "  {name:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
        ms(latency.p50_us),
        ms(latency.p90_us),
        ms(latency.p99_us),
        ms(latency.p999_us),
        ms(latency.p9999_us),
        ms(latency.max_us),
        ms(latency.mean_us),
        latency.count
    );
}

/// The summary table printed at the end of a run.
pub fn table(result: &RunResult) -> String {
    let mut out = String::new();
    let workload = &result.workload;
    let _ = writeln!(
        out,
        "\n== {} ({}) against {} [{}], client {}",
        workload.name, result.label, result.broker, result.bootstrap, result.client
    );
    let _ = writeln!(
        out,
        "   {} topic(s) x {} partitions x {} replica(s), {} B messages, keys {:?}, {} producer(s), {} consumer(s), rate {}, acks={}, {}; {} s measured after {} s warm-up",
        workload.topics,
        workload.partitions_per_topic,
        workload.replication_factor,
        workload.message_size,
        workload.key_distribution,
        workload.producers(),
        workload.consumers(),
        if workload.producer_rate == 0 { "max".to_string() } else { format!("{} msg/s", workload.producer_rate) },
        workload.acks,
        workload.compression,
        workload.duration_secs,
        workload.warmup_secs,
    );
    if workload.consume_backlog_mb > 0 {
        let _ = writeln!(
            out,
            "   backlog mode: {} MB produced in {:.1} s, then consumed in {:.1} s",
            workload.consume_backlog_mb, result.measured_secs, result.consume_secs
        );
    }
    let machine = &result.machine;
    let _ = writeln!(
        out,
        "   machine: {} cores ({}), {:.1} GiB, kernel {}",
        machine.cores, machine.cpu_model, machine.memory_gib, machine.kernel
    );
    let _ = writeln!(
        out,
        "\n  {:<16} {:>14} {:>10}",
        "throughput", "msg/s", "MB/s"
    );
    for (name, throughput) in [("produce", &result.produce), ("consume", &result.consume)] {
        let _ = writeln!(
            out,
            "  {name:<16} {:>14.0} {:>10.1}",
            throughput.msg_per_sec, throughput.mb_per_sec
        );
    }
    let _ = writeln!(
        out,
        "\n  {:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "latency (ms)", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean", "count"
    );
    latency_row(&mut out, "produce ack", &result.ack_latency);
    if result.request_latency.count > 0 {
        latency_row(&mut out, "  request trip", &result.request_latency);
    }
    latency_row(&mut out, "end-to-end", &result.e2e_latency);
    if let Some(baseline) = &result.baseline {
        out.push('\n');
        out.push_str(&baseline.describe());
        let _ = writeln!(out, "\n  ratios to the machine's limits:");
        if baseline.loopback_mb_per_sec > 0.0 {
            let _ = writeln!(
                out,
                "    produce / loopback TCP  {:.2}   consume / loopback TCP  {:.2}",
                result.produce.mb_per_sec / baseline.loopback_mb_per_sec,
                result.consume.mb_per_sec / baseline.loopback_mb_per_sec
            );
        }
        if baseline.disk_write_mb_per_sec > 0.0 {
            let _ = writeln!(
                out,
                "    produce / disk O_DIRECT write  {:.2}",
                result.produce.mb_per_sec / baseline.disk_write_mb_per_sec
            );
        }
        let durable = matches!(result.workload.acks.as_str(), "all" | "-1");
        if durable && baseline.fdatasync_p99_us > 0.0 && result.ack_latency.count > 0 {
            let _ = writeln!(
                out,
                "    produce-ack p99 - fdatasync p99  {:+.3} ms",
                (result.ack_latency.p99_us - baseline.fdatasync_p99_us) / 1e3
            );
            if result.request_latency.count > 0 {
                let _ = writeln!(
                    out,
                    "    request-trip p99 - fdatasync p99  {:+.3} ms",
                    (result.request_latency.p99_us - baseline.fdatasync_p99_us) / 1e3
                );
            }
        }
    }
    let cpu = &result.cpu;
    let broker = cpu
        .broker_cores
        .map(|cores| format!("broker {cores:.2}, "))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\n  cpu during the window (cores): clients {:.2}, {broker}other processes {:.2}, idle {:.2}, stolen by the hypervisor {:.3}",
        cpu.client_cores, cpu.other_cores, cpu.idle_cores, cpu.stolen_cores
    );
    if let (Some(io), Some(cpu_wait)) = (cpu.io_pressure_pct, cpu.cpu_pressure_pct) {
        let _ = writeln!(
            out,
            "  pressure during the window: some task waited for I/O {io:.0}% and for a CPU {cpu_wait:.0}% of the time"
        );
    }
    if let Some(line) = worst_interval_line(&result.intervals) {
        let _ = writeln!(out, "{line}");
    }
    if cpu.other_cores > crate::cpu::OTHER_CORES_WARNING {
        let _ = writeln!(
            out,
            "  WARNING: other processes used {:.2} cores during the window; the figures are low by that much",
            cpu.other_cores
        );
    }
    let _ = writeln!(
        out,
        "\n  totals: sent {}, acknowledged {}, failed {}, consumed {}",
        result.totals.sent, result.totals.acked, result.totals.failed, result.totals.consumed
    );
    for error in &result.errors {
        let _ = writeln!(out, "  error: {error}");
    }
    out
}

/// The measured interval with the highest ack p99, and the hypervisor's
/// steal in it and over the run: a stall with steal beside it may be the
/// host's rather than the broker's. `None` without measured intervals.
fn worst_interval_line(intervals: &[IntervalSample]) -> Option<String> {
    let measured: Vec<&IntervalSample> = intervals
        .iter()
        .filter(|interval| interval.phase != "warm-up")
        .collect();
    let worst = measured
        .iter()
        .max_by(|a, b| a.ack_p99_us.total_cmp(&b.ack_p99_us))?;
    let stolen_intervals = measured.iter().filter(|i| i.stolen_ms > 0).count();
    Some(format!(
        "  worst interval: ack p99 {:.2} ms (max {:.2}) ending at {:.0} s, {} ms stolen in it; \
         steal in {stolen_intervals} of {} intervals",
        worst.ack_p99_us / 1e3,
        worst.ack_max_us / 1e3,
        worst.t_secs,
        worst.stolen_ms,
        measured.len()
    ))
}

/// One run's CPU for the comparison: client, broker and stolen cores over
/// the measured window, and the broker's CPU-µs per message produced ("-"
/// where the broker's pid was not known, as for a broker run elsewhere).
fn cpu_columns(usage: &crate::cpu::Usage, msg_per_sec: f64) -> [String; 4] {
    let broker = usage.broker_cores;
    let per_message = broker
        .filter(|_| msg_per_sec > 0.0)
        .map_or("-".to_string(), |cores| {
            format!("{:.1}", cores * 1e6 / msg_per_sec)
        });
    [
        format!("{:.2}", usage.client_cores),
        broker.map_or("-".to_string(), |cores| format!("{cores:.2}")),
        format!("{:.3}", usage.stolen_cores),
        per_message,
    ]
}

/// One table comparing several results.
pub fn compare_table(results: &[RunResult]) -> String {
    let mut out = String::new();
    let width = results
        .iter()
        .map(|result| result.label.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "{:<width$}  {:>11} {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>6} {:>6} {:>6} {:>8}",
        "run",
        "produce/s",
        "MB/s",
        "ack p50",
        "p99",
        "p99.9",
        "max",
        "e2e p50",
        "p99",
        "p99.9",
        "max",
        "client",
        "broker",
        "stolen",
        "µs/msg",
    );
    for result in results {
        let ack = &result.ack_latency;
        let e2e = &result.e2e_latency;
        let cpu = cpu_columns(&result.cpu, result.produce.msg_per_sec);
        let _ = writeln!(
            out,
            "{:<width$}  {:>11.0} {:>8.1} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>6} {:>6} {:>6} {:>8}",
            result.label,
            result.produce.msg_per_sec,
            result.produce.mb_per_sec,
            ms(ack.p50_us),
            ms(ack.p99_us),
            ms(ack.p999_us),
            ms(ack.max_us),
            ms(e2e.p50_us),
            ms(e2e.p99_us),
            ms(e2e.p999_us),
            ms(e2e.max_us),
            cpu[0],
            cpu[1],
            cpu[2],
            cpu[3],
        );
    }
    let _ = writeln!(
        out,
        "(latencies in ms; throughput over each run's measured window; client, broker and stolen \
         in cores over that window; µs/msg: the broker's CPU per message produced)"
    );
    if let Some(first) = results.first() {
        if results.len() > 1 && first.produce.msg_per_sec > 0.0 {
            let _ = writeln!(out, "\nthroughput relative to {}:", first.label);
            for result in &results[1..] {
                let _ = writeln!(
                    out,
                    "  {:<width$} {:.2}x",
                    result.label,
                    result.produce.msg_per_sec / first.produce.msg_per_sec
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{cpu_columns, worst_interval_line, IntervalSample, Machine};
    use crate::cpu::Usage;

    /// The comparison's CPU columns: cores, and the broker's CPU per
    /// message; a broker whose pid was not known leaves both of its cells
    /// empty.
    #[test]
    fn compare_shows_cpu_and_broker_cost_per_message() {
        let usage = Usage {
            client_cores: 0.84,
            broker_cores: Some(0.5),
            stolen_cores: 0.0021,
            ..Usage::default()
        };
        assert_eq!(
            cpu_columns(&usage, 20_000.0),
            ["0.84", "0.50", "0.002", "25.0"].map(String::from)
        );
        let external = Usage {
            broker_cores: None,
            ..usage.clone()
        };
        assert_eq!(
            cpu_columns(&external, 20_000.0),
            ["0.84", "-", "0.002", "-"].map(String::from)
        );
        assert_eq!(cpu_columns(&usage, 0.0)[3], "-");
    }

    /// The worst measured interval is named with its steal; warm-up
    /// intervals do not count.
    #[test]
    fn the_worst_interval_is_named_with_its_steal() {
        let interval = |t_secs: f64, phase: &str, ack_p99_ms: f64, stolen_ms: u64| IntervalSample {
            t_secs,
            phase: phase.to_string(),
            ack_p99_us: ack_p99_ms * 1e3,
            ack_max_us: ack_p99_ms * 2e3,
            stolen_ms,
            ..IntervalSample::default()
        };
        assert_eq!(worst_interval_line(&[]), None);
        let line = worst_interval_line(&[
            interval(2.0, "warm-up", 90.0, 0),
            interval(4.0, "measure", 1.5, 0),
            interval(6.0, "measure", 36.0, 20),
            interval(8.0, "measure", 2.0, 10),
        ])
        .expect("measured intervals");
        assert_eq!(
            line,
            "  worst interval: ack p99 36.00 ms (max 72.00) ending at 6 s, 20 ms stolen in it; \
             steal in 2 of 3 intervals"
        );
    }

    /// The machine line counts the machine's CPUs even when the process is
    /// held to fewer of them, as `perf/cleaner-cost.sh` holds its clients.
    #[test]
    fn machine_cores_ignore_the_affinity() {
        let listed = std::fs::read_to_string("/proc/stat")
            .unwrap_or_default()
            .lines()
            .filter(|line| {
                line.strip_prefix("cpu")
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count();
        // SAFETY: the set is a plain bit mask owned by this frame; the
        // calls change only this thread's affinity, restored below.
        let (held, before) = unsafe {
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut before);
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            let first = (0..libc::CPU_SETSIZE as usize)
                .find(|&cpu| libc::CPU_ISSET(cpu, &before))
                .unwrap_or(0);
            libc::CPU_SET(first, &mut one);
            let held = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
            (held, before)
        };
        assert_eq!(held, 0, "this thread could not be held to one CPU");
        let machine = Machine::detect();
        // SAFETY: as above.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &before);
        }
        assert_eq!(machine.cores, listed);
    }
}
