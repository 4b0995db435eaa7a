//! `sluice-perf`: the latency and throughput benchmark suite for Sluice and
//! any other Kafka-compatible broker.
//!
//! Design notes:
//! - Workloads are TOML files ([`workload`]) modelled on the
//!   OpenMessaging Benchmark set; flags override durations and rates.
//! - Producers are open-loop with coordinated-omission correction
//!   ([`rate`]): latency counts from each message's intended send time.
//!   Produce-ack latency comes from the delivery callback, end-to-end
//!   latency from the send timestamp every payload carries ([`payload`]),
//!   both into HdrHistograms ([`stats`]).
//! - Clients are `sluice_net::glommio_client` on a few unpinned glommio
//!   executors ([`driver`]), or librdkafka producers for comparison
//!   ([`rdkafka_driver`], feature `rdkafka`).
//! - Every run carries its baselines ([`baseline`]: fio, iperf3) and ends
//!   with a table, a JSON result file and an SVG percentile plot
//!   ([`report`], [`plot`]); `compare` puts several results on one plot.
//! - Without `--bootstrap`, a Sluice broker is started with a temporary
//!   data directory and stopped afterwards ([`local_broker`]).

mod baseline;
mod clock;
mod cpu;
mod driver;
mod local_broker;
mod nudge;
mod payload;
mod plot;
mod rate;
mod rdkafka_driver;
mod report;
mod stats;
mod summary;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use baseline::Baseline;
use driver::{ClientKind, RunOptions};
use local_broker::LocalBroker;
use report::{Context, RunResult};
use workload::Workload;

const USAGE: &str = "\
sluice-perf: latency and throughput benchmarks for Kafka-compatible brokers

USAGE:
  sluice-perf run --workload FILE [options]
      Runs a workload and writes a table, DIR/NAME.json and DIR/NAME.svg.
      --bootstrap HOST:PORT   broker to test (default: start a Sluice broker with a temporary
                              data directory)
      --sluice-bin PATH       broker binary to start (default target/release/sluice)
      --shards N              shards of the started broker (default 2)
      --broker-arg ARG        extra argument for the started broker (repeatable)
      --broker-name NAME      name of the broker under test, for labels (default sluice / external)
      --broker-pid PID        pid of an external broker on this machine, to report its CPU use
                              (repeatable: the nodes of a local cluster are summed)
      --label TEXT            label of this run in tables and plots
      --client sluice|rdkafka producer client (rdkafka needs the `rdkafka` feature)
      --tls-ca PEM            connect over TLS (an SSL listener), trusting the CAs in PEM; for
                              the started broker, also pass its --listener-security-protocol SSL
                              and --ssl-keystore-location as --broker-arg
      --warmup SECS --duration SECS --rate MSG_PER_SEC (0 = max)
      --rate-of RESULT.json[:FRACTION]  produce at FRACTION (default 0.5) of the rate that
                              run measured (e.g. latency at half of this session's peak)
      --producers-per-topic N --consumers-per-topic N --partitions N --message-size BYTES
      --replication-factor N  replicas per partition of created topics (above 1 needs a cluster
                              of that many brokers as --bootstrap)
      --acks 0|1|all --compression none|gzip|snappy|lz4|zstd --batch-size BYTES --linger-ms MS
      --max-in-flight N --fetch-pipeline-depth N
      --fetch-sessions true|false  consumers fetch in incremental fetch sessions (KIP-227;
                              default true, as Kafka's Java consumer)
      --backlog-mb MB         consume-from-backlog mode with this backlog (0 = tail the producers)
      --threads N             client executors (default: the workload's client_threads, else
                              the number of cores, up to 4)
      --report-interval SECS  progress line interval (default 2)
      --drain-timeout SECS    how long consumers may take to catch up (default 30)
      --baseline auto|none|FILE  measure the machine's limits now (default), skip, or load them
      --baseline-secs N       seconds per baseline test (default 5)
      --out DIR               where results go (default perf-results)
      --topic-prefix NAME     topics are NAME-0, NAME-1, ... (default: unique per run); existing
                              topics of the right size are used as they are
      --keep-topics           do not delete the run's topics on an external broker
      --quiet                 no progress lines

  sluice-perf compare A.json B.json ... [--out PREFIX] [--title TEXT]
      One table and one plot (PREFIX.svg, default compare.svg) for several results.

  sluice-perf summarize A.json B.json ...
      Medians (and min–max) over repeated runs, grouped by label, as a Markdown table.

  sluice-perf baseline [--dir DIR] [--secs N] [--out FILE]
      Measures disk O_DIRECT write bandwidth, fdatasync latency (fio) and loopback TCP
      bandwidth (iperf3); perf/baseline.sh installs the tools.
";

/// Default run lengths are short: this suite must be usable on a laptop or
/// a two-core CI box (overridable per workload and by flags).
const THREADS_DEFAULT_MAX: usize = 4;
const REPORT_INTERVAL_SECS_DEFAULT: f64 = 2.0;
const DRAIN_TIMEOUT_SECS_DEFAULT: u64 = 30;
/// Share of a measured peak that `--rate-of` runs at when none is given:
/// the latency target is stated at half of the peak.
const RATE_OF_FRACTION_DEFAULT: f64 = 0.5;
const LOCAL_SHARDS_DEFAULT: &str = "2";
/// Settings of a started broker: retention runs every second, so topics
/// with `retention.bytes` (as the throughput workloads set) stay within a
/// laptop's disk during a run.
const LOCAL_BROKER_ARGS: &[&str] = &["--retention-check-interval-ms", "1000"];

/// glibc serves allocations above its mmap threshold (128 KiB at first)
/// with a fresh mapping each time: every fetch response and batch buffer
/// would cost page faults and kernel page zeroing, charged to the client.
/// Large thresholds keep such buffers in the heap for reuse.
const MALLOC_MMAP_THRESHOLD_BYTES: libc::c_int = 256 * 1024 * 1024;
const MALLOC_TRIM_THRESHOLD_BYTES: libc::c_int = 512 * 1024 * 1024;

fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD_BYTES);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    driver::handle_signals();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("compare") => compare(&args[1..]),
        Some("summarize") => summarize(&args[1..]),
        Some("baseline") => baseline_command(&args[1..]),
        Some("--help" | "-h" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("expected a command\n\n{USAGE}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sluice-perf: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Flags as `--name value` pairs (repeatable) and `--switch`es.
struct Flags {
    pairs: Vec<(String, String)>,
    switches: Vec<String>,
    positional: Vec<String>,
}

const SWITCHES: &[&str] = &["keep-topics", "quiet"];

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, String> {
        let mut flags = Flags {
            pairs: Vec::new(),
            switches: Vec::new(),
            positional: Vec::new(),
        };
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            match arg.strip_prefix("--") {
                Some(name) if SWITCHES.contains(&name) => flags.switches.push(name.to_string()),
                Some(name) => {
                    let value = iter
                        .next()
                        .ok_or_else(|| format!("--{name} needs a value"))?;
                    flags.pairs.push((name.to_string(), value.clone()));
                }
                None => flags.positional.push(arg.clone()),
            }
        }
        Ok(flags)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    }

    fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|switch| switch == name)
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        self.get(name)
            .map(|value| {
                value
                    .parse()
                    .map_err(|_| format!("--{name} {value}: not a number"))
            })
            .transpose()
    }

    fn check_known(&self, known: &[&str]) -> Result<(), String> {
        for (name, _) in &self.pairs {
            if !known.contains(&name.as_str()) {
                return Err(format!("unknown flag --{name}; see `sluice-perf --help`"));
            }
        }
        Ok(())
    }
}

const RUN_FLAGS: &[&str] = &[
    "workload",
    "bootstrap",
    "sluice-bin",
    "shards",
    "broker-arg",
    "broker-name",
    "label",
    "client",
    "tls-ca",
    "warmup",
    "duration",
    "rate",
    "rate-of",
    "producers-per-topic",
    "consumers-per-topic",
    "partitions",
    "replication-factor",
    "message-size",
    "acks",
    "compression",
    "batch-size",
    "linger-ms",
    "threads",
    "report-interval",
    "drain-timeout",
    "baseline",
    "baseline-secs",
    "out",
    "topic-prefix",
    "backlog-mb",
    "broker-pid",
    "max-in-flight",
    "fetch-pipeline-depth",
    "fetch-sessions",
];

/// Applies command-line overrides to a workload.
fn override_workload(workload: &mut Workload, flags: &Flags) -> Result<(), String> {
    if let Some(value) = flags.number("warmup")? {
        workload.warmup_secs = value;
    }
    if let Some(value) = flags.number("duration")? {
        workload.duration_secs = value;
    }
    if let Some(value) = flags.number("rate")? {
        workload.producer_rate = value;
    }
    if let Some(spec) = flags.get("rate-of") {
        workload.producer_rate = rate_of(spec)?;
    }
    if let Some(value) = flags.number("producers-per-topic")? {
        workload.producers_per_topic = value;
    }
    if let Some(value) = flags.number("consumers-per-topic")? {
        workload.consumers_per_topic = value;
    }
    if let Some(value) = flags.number("threads")? {
        workload.client_threads = Some(value);
    }
    if let Some(value) = flags.number("partitions")? {
        workload.partitions_per_topic = value;
    }
    if let Some(value) = flags.number("replication-factor")? {
        workload.replication_factor = value;
    }
    if let Some(value) = flags.number("message-size")? {
        workload.message_size = value;
    }
    if let Some(value) = flags.number("batch-size")? {
        workload.batch_size = value;
    }
    if let Some(value) = flags.number("max-in-flight")? {
        workload.max_in_flight = value;
    }
    if let Some(value) = flags.number("fetch-pipeline-depth")? {
        workload.fetch_pipeline_depth = value;
    }
    if let Some(value) = flags.get("fetch-sessions") {
        workload.fetch_sessions = match value {
            "true" => true,
            "false" => false,
            other => {
                return Err(format!(
                    "--fetch-sessions takes true or false, not {other:?}"
                ))
            }
        };
    }
    if let Some(value) = flags.number("backlog-mb")? {
        workload.consume_backlog_mb = value;
    }
    if let Some(value) = flags.number("linger-ms")? {
        workload.linger_ms = value;
    }
    if let Some(value) = flags.get("acks") {
        workload.acks = value.to_string();
    }
    if let Some(value) = flags.get("compression") {
        workload.compression = value.to_string();
    }
    workload.validate()
}

/// `--rate-of RESULT.json[:FRACTION]`: a fraction (default one half) of the
/// produce rate an earlier run measured, so a latency run can be made at a
/// known share of the peak of the same machine and session.
fn rate_of(spec: &str) -> Result<u64, String> {
    let (path, fraction) = match spec.rsplit_once(':') {
        Some((path, fraction)) => {
            let fraction: f64 = fraction
                .parse()
                .ok()
                .filter(|fraction: &f64| *fraction > 0.0 && *fraction <= 1.0)
                .ok_or_else(|| {
                    format!("--rate-of {spec}: the fraction after ':' must be in (0, 1]")
                })?;
            (path, fraction)
        }
        None => (spec, RATE_OF_FRACTION_DEFAULT),
    };
    let peak = report::RunResult::read(Path::new(path))?
        .produce
        .msg_per_sec;
    let rate = (peak * fraction).round();
    if rate < 1.0 {
        return Err(format!(
            "--rate-of {spec}: that run produced {peak:.0} msg/s, too little to take a share of"
        ));
    }
    Ok(rate as u64)
}

/// Every `--broker-pid`: the nodes of a cluster running on this machine
/// are one broker under test, so their CPU is reported together.
fn broker_pids(flags: &Flags) -> Result<Vec<u32>, String> {
    flags
        .all("broker-pid")
        .iter()
        .map(|pid| {
            pid.parse()
                .map_err(|_| format!("--broker-pid {pid}: not a process id"))
        })
        .collect()
}

fn safe_file_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_plot(path: &Path, title: &str, results: &[RunResult]) -> Result<(), String> {
    let panel = |title: &'static str, pick: fn(&RunResult) -> &Vec<[f64; 2]>| plot::Panel {
        title,
        series: results
            .iter()
            .map(|result| plot::Series {
                label: &result.label,
                points: pick(result),
            })
            .collect(),
    };
    let figure = plot::svg(
        title,
        &[
            panel("produce acknowledgement latency", |result| {
                &result.ack_curve
            }),
            panel("end-to-end latency (produce to consume)", |result| {
                &result.e2e_curve
            }),
        ],
    );
    std::fs::write(path, figure)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn run(args: &[String]) -> Result<(), String> {
    let flags = Flags::parse(args)?;
    flags.check_known(RUN_FLAGS)?;
    let workload_path = flags.get("workload").ok_or("run needs --workload FILE")?;
    let mut workload = Workload::load(Path::new(workload_path))?;
    override_workload(&mut workload, &flags)?;
    let client = match flags.get("client").unwrap_or("sluice") {
        "sluice" => ClientKind::Sluice,
        "rdkafka" => ClientKind::Rdkafka,
        other => return Err(format!("--client {other}: expected sluice or rdkafka")),
    };
    let threads = match workload.client_threads {
        Some(threads) => threads,
        None => std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .min(THREADS_DEFAULT_MAX),
    };
    // The result file says how many executors the run had.
    workload.client_threads = Some(threads);
    let tls_ca = flags.get("tls-ca").map(PathBuf::from);
    let out_dir = PathBuf::from(flags.get("out").unwrap_or("perf-results"));
    std::fs::create_dir_all(&out_dir)
        .map_err(|error| format!("cannot create {}: {error}", out_dir.display()))?;

    // The broker under test.
    let mut local = None;
    let (bootstrap, broker_name) = match flags.get("bootstrap") {
        Some(bootstrap) => (
            bootstrap.to_string(),
            flags.get("broker-name").unwrap_or("external").to_string(),
        ),
        None => {
            let binary = PathBuf::from(flags.get("sluice-bin").unwrap_or("target/release/sluice"));
            let mut broker_args = vec![
                "--shards".to_string(),
                flags
                    .get("shards")
                    .unwrap_or(LOCAL_SHARDS_DEFAULT)
                    .to_string(),
            ];
            broker_args.extend(LOCAL_BROKER_ARGS.iter().map(|arg| arg.to_string()));
            broker_args.extend(flags.all("broker-arg"));
            let broker = LocalBroker::start(&binary, &std::env::temp_dir(), &broker_args)?;
            println!(
                "started {} on {} (data in {})",
                binary.display(),
                broker.address,
                broker.data_dir.display()
            );
            let address = broker.address.clone();
            local = Some(broker);
            (
                address,
                flags.get("broker-name").unwrap_or("sluice").to_string(),
            )
        }
    };

    // The machine's limits, in the same session.
    let baseline_secs = flags
        .number("baseline-secs")?
        .unwrap_or(baseline::BASELINE_SECS_DEFAULT);
    let baseline: Option<Baseline> = match flags.get("baseline").unwrap_or("auto") {
        "none" => None,
        "auto" => {
            let dir = local
                .as_ref()
                .map(|broker| broker.data_dir.clone())
                .unwrap_or_else(baseline::default_dir);
            println!("measuring baselines ({baseline_secs} s per test; --baseline none skips) ...");
            let measured = baseline::measure(&dir, baseline_secs);
            print!("{}", measured.describe());
            Some(measured)
        }
        file => {
            let text = std::fs::read_to_string(file)
                .map_err(|error| format!("cannot read {file}: {error}"))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|error| format!("{file} is not a baseline file: {error}"))?,
            )
        }
    };

    let label = flags
        .get("label")
        .map(str::to_string)
        .unwrap_or_else(|| format!("{broker_name}: {}", workload.name));
    let started = clock::now_nanos() / clock::NANOS_PER_SEC;
    let options = RunOptions {
        workload: workload.clone(),
        bootstrap: bootstrap.clone(),
        threads,
        report_interval: Duration::from_secs_f64(
            flags
                .number::<f64>("report-interval")?
                .unwrap_or(REPORT_INTERVAL_SECS_DEFAULT)
                .max(0.1),
        ),
        drain_timeout: Duration::from_secs(
            flags
                .number("drain-timeout")?
                .unwrap_or(DRAIN_TIMEOUT_SECS_DEFAULT),
        ),
        topic_prefix: flags
            .get("topic-prefix")
            .map(str::to_string)
            .unwrap_or_else(|| format!("perf-{started}-{}", safe_file_name(&workload.name))),
        client,
        delete_topics: local.is_none() && !flags.has("keep-topics"),
        verbose: !flags.has("quiet"),
        broker_pids: match &local {
            Some(broker) => broker.pid().into_iter().collect(),
            None => broker_pids(&flags)?,
        },
        tls_ca: tls_ca.clone(),
        tls: tls_ca
            .as_deref()
            .map(|ca| sluice_net::tls::client_config(ca, None))
            .transpose()?,
    };
    let timeline = if workload.consume_backlog_mb > 0 {
        format!(
            "{} MB backlog, then catch-up consume",
            workload.consume_backlog_mb
        )
    } else {
        format!(
            "{} s warm-up, {} s measured",
            workload.warmup_secs, workload.duration_secs
        )
    };
    println!(
        "running {} against {bootstrap} ({broker_name}) with the {} client: {timeline}",
        workload.name,
        client.name(),
    );
    let measured = driver::run(&options);
    let stopped = local.as_mut().map(LocalBroker::stop).transpose();
    let measured = measured?;
    if let Err(error) = stopped {
        eprintln!("warning: {error}");
    }
    let broker_description = match &local {
        Some(_) => format!("{broker_name} (started by sluice-perf)"),
        None => broker_name.clone(),
    };
    drop(local);
    let result = RunResult::new(
        &workload,
        &measured,
        Context {
            label,
            broker: broker_description,
            bootstrap,
            client: client.name().to_string(),
            baseline,
        },
    );
    print!("{}", report::table(&result));
    let stem = out_dir.join(format!(
        "{}-{}-{started}",
        safe_file_name(&broker_name),
        safe_file_name(&workload.name)
    ));
    let json = stem.with_extension("json");
    let svg = stem.with_extension("svg");
    result.write(&json)?;
    write_plot(
        &svg,
        &format!("{} — {}", workload.name, result.label),
        std::slice::from_ref(&result),
    )?;
    println!("\nwrote {} and {}", json.display(), svg.display());
    Ok(())
}

fn compare(args: &[String]) -> Result<(), String> {
    let flags = Flags::parse(args)?;
    flags.check_known(&["out", "title"])?;
    if flags.positional.is_empty() {
        return Err("compare needs result files".to_string());
    }
    let results: Vec<RunResult> = flags
        .positional
        .iter()
        .map(|path| RunResult::read(Path::new(path)))
        .collect::<Result<_, _>>()?;
    print!("{}", report::compare_table(&results));
    let prefix = PathBuf::from(flags.get("out").unwrap_or("compare"));
    let svg = prefix.with_extension("svg");
    let title = flags.get("title").unwrap_or("latency percentiles");
    write_plot(&svg, title, &results)?;
    println!("wrote {}", svg.display());
    Ok(())
}

fn summarize(args: &[String]) -> Result<(), String> {
    let flags = Flags::parse(args)?;
    flags.check_known(&[])?;
    if flags.positional.is_empty() {
        return Err("summarize needs result files".to_string());
    }
    let results: Vec<RunResult> = flags
        .positional
        .iter()
        .map(|path| RunResult::read(Path::new(path)))
        .collect::<Result<_, _>>()?;
    print!("{}", summary::markdown(&results));
    Ok(())
}

fn baseline_command(args: &[String]) -> Result<(), String> {
    let flags = Flags::parse(args)?;
    flags.check_known(&["dir", "secs", "out"])?;
    let dir = flags
        .get("dir")
        .map(PathBuf::from)
        .unwrap_or_else(baseline::default_dir);
    let seconds = flags
        .number("secs")?
        .unwrap_or(baseline::BASELINE_SECS_DEFAULT);
    let measured = baseline::measure(&dir, seconds);
    print!("{}", measured.describe());
    if let Some(out) = flags.get("out") {
        let text = serde_json::to_string_pretty(&measured).map_err(|error| error.to_string())?;
        std::fs::write(out, text).map_err(|error| format!("cannot write {out}: {error}"))?;
        println!("wrote {out}");
    }
    Ok(())
}
