//! `sluice-txn-bench`: transactional produce throughput and commit latency
//! against the real `sluice` binary, driven by librdkafka's transactional
//! producer, for transactions spanning 1, 10 and 100 partitions; next to a
//! raw fdatasync baseline measured in the same run on the same directory
//! (a commit needs at least three durable writes: the PrepareCommit state,
//! the markers, and the data before them).
//!
//! ```text
//! sluice-txn-bench --sluice target/release/sluice --dir /tmp/txn-bench \
//!     [--seconds 10] [--partitions 1,10,100] [--records-per-partition 10] [--record-bytes 512]
//!     [--linger-ms 1]
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};

/// How long client calls may take before the run is declared failed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// One slice of waiting for delivery reports before a commit; the slice
/// always runs to its end, so it bounds what the wait adds to a transaction.
const DELIVERY_POLL: Duration = Duration::from_millis(1);
/// Bytes written before each fdatasync of the baseline.
const BASELINE_WRITE_BYTES: usize = 4096;

/// The given percentiles (0–100) of `values`, nearest rank.
fn percentiles(values: &mut [f64], wanted: &[f64]) -> Vec<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    wanted
        .iter()
        .map(|pct| {
            if values.is_empty() {
                return f64::NAN;
            }
            let rank = ((pct / 100.0) * values.len() as f64).ceil() as usize;
            values[rank.clamp(1, values.len()) - 1]
        })
        .collect()
}

fn parse_args(raw: &[String]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let mut iter = raw.iter();
    while let Some(flag) = iter.next() {
        if let Some(name) = flag.strip_prefix("--") {
            map.insert(name.to_string(), iter.next().cloned().unwrap_or_default());
        }
    }
    map
}

fn arg<T: std::str::FromStr>(args: &HashMap<String, String>, name: &str, default: T) -> T {
    args.get(name)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The broker process; killed when dropped.
struct Broker {
    child: Child,
    bootstrap: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker(binary: &str, dir: &std::path::Path) -> Result<Broker, String> {
    let mut child = Command::new(binary)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0", "--pin-shards", "false"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(
            std::fs::File::create(dir.join("broker.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .map_err(|error| format!("starting {binary}: {error}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let bootstrap = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(address) = line.strip_prefix("sluice listening on ") {
                    break address.trim().to_string();
                }
            }
            _ => return Err("the broker exited before listening".into()),
        }
    };
    // Keep draining stdout so the broker never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Broker { child, bootstrap })
}

/// Raw fdatasync latency of small writes in `dir`: (p50, p99) in µs.
fn fdatasync_baseline(dir: &std::path::Path, seconds: f64) -> Result<(f64, f64, usize), String> {
    let path = dir.join("fdatasync-baseline");
    let mut file = std::fs::File::create(&path).map_err(|error| error.to_string())?;
    let block = vec![7u8; BASELINE_WRITE_BYTES];
    let mut samples = Vec::new();
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < end {
        let started = Instant::now();
        file.write_all(&block).map_err(|error| error.to_string())?;
        file.sync_data().map_err(|error| error.to_string())?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let _ = std::fs::remove_file(&path);
    let count = samples.len();
    let pcts = percentiles(&mut samples, &[50.0, 99.0]);
    Ok((pcts[0], pcts[1], count))
}

struct RunResult {
    partitions: i32,
    transactions: usize,
    records_per_second: f64,
    mib_per_second: f64,
    commit_p50_ms: f64,
    commit_p99_ms: f64,
    txn_p50_ms: f64,
}

fn run(
    bootstrap: &str,
    partitions: i32,
    records_per_partition: usize,
    record_bytes: usize,
    seconds: f64,
    linger_ms: u64,
) -> Result<RunResult, String> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4");
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|error| error.to_string())?;
    let topic = format!("txn-bench-{partitions}");
    // Preallocated segments would reserve a gigabyte per partition.
    let new_topic = NewTopic::new(&topic, partitions, TopicReplication::Fixed(1))
        .set("preallocate", "false")
        .set("segment.bytes", "67108864");
    let created =
        futures_lite::future::block_on(admin.create_topics([&new_topic], &AdminOptions::new()))
            .map_err(|error| error.to_string())?;
    for outcome in created {
        outcome.map_err(|(name, error)| format!("creating {name}: {error}"))?;
    }
    let mut producer_config = config.clone();
    producer_config
        .set("transactional.id", format!("txn-bench-{partitions}"))
        .set("linger.ms", linger_ms.to_string());
    // A BaseProducer: commit_transaction serves the delivery reports itself
    // (a ThreadedProducer's polling thread adds up to its poll interval to
    // every commit).
    let producer: BaseProducer<DefaultProducerContext> = producer_config
        .create()
        .map_err(|error| error.to_string())?;
    producer
        .init_transactions(CLIENT_TIMEOUT)
        .map_err(|error| error.to_string())?;
    let payload = vec![b'x'; record_bytes];
    let mut commit_ms = Vec::new();
    let mut txn_ms = Vec::new();
    let mut records = 0usize;
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(seconds);
    while Instant::now() < end {
        let began = Instant::now();
        producer
            .begin_transaction()
            .map_err(|error| error.to_string())?;
        for partition in 0..partitions {
            for _ in 0..records_per_partition {
                let mut record = BaseRecord::<(), [u8]>::to(&topic)
                    .partition(partition)
                    .payload(&payload[..]);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((error, returned)) => {
                            if !matches!(
                                error,
                                rdkafka::error::KafkaError::MessageProduction(
                                    rdkafka::types::RDKafkaErrorCode::QueueFull
                                )
                            ) {
                                return Err(error.to_string());
                            }
                            record = returned;
                            producer.poll(Duration::from_millis(1));
                        }
                    }
                }
                records += 1;
            }
        }
        // Serve the delivery reports here: rdkafka's BaseProducer::flush
        // (which commit_transaction calls first) polls in 100 ms slices that
        // always run to their end, adding 100 ms to every commit.
        let flushing = Instant::now();
        while producer.in_flight_count() > 0 {
            if flushing.elapsed() > CLIENT_TIMEOUT {
                return Err("records not delivered within the client timeout".to_string());
            }
            producer.poll(DELIVERY_POLL);
        }
        let committing = Instant::now();
        producer
            .commit_transaction(CLIENT_TIMEOUT)
            .map_err(|error| error.to_string())?;
        commit_ms.push(committing.elapsed().as_secs_f64() * 1e3);
        txn_ms.push(began.elapsed().as_secs_f64() * 1e3);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let transactions = commit_ms.len();
    let commit = percentiles(&mut commit_ms, &[50.0, 99.0]);
    let txn = percentiles(&mut txn_ms, &[50.0]);
    Ok(RunResult {
        partitions,
        transactions,
        records_per_second: records as f64 / elapsed,
        mib_per_second: (records * record_bytes) as f64 / elapsed / (1024.0 * 1024.0),
        commit_p50_ms: commit[0],
        commit_p99_ms: commit[1],
        txn_p50_ms: txn[0],
    })
}

fn main() -> std::process::ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = parse_args(&raw);
    let binary: String = arg(&args, "sluice", "target/release/sluice".to_string());
    let dir = PathBuf::from(arg(&args, "dir", "/tmp/sluice-txn-bench".to_string()));
    let seconds: f64 = arg(&args, "seconds", 10.0);
    let records_per_partition: usize = arg(&args, "records-per-partition", 10);
    let record_bytes: usize = arg(&args, "record-bytes", 512);
    let linger_ms: u64 = arg(&args, "linger-ms", 1);
    let partitions: Vec<i32> = arg(&args, "partitions", "1,10,100".to_string())
        .split(',')
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(error) = std::fs::create_dir_all(&dir) {
        eprintln!("creating {}: {error}", dir.display());
        return std::process::ExitCode::FAILURE;
    }
    let outcome = (|| -> Result<(), String> {
        let (sync_p50, sync_p99, syncs) = fdatasync_baseline(&dir, seconds.min(5.0))?;
        println!(
            "raw fdatasync of {BASELINE_WRITE_BYTES} B writes: p50 {:.0} µs, p99 {:.0} µs ({syncs} syncs)",
            sync_p50, sync_p99
        );
        let broker = start_broker(&binary, &dir)?;
        println!(
            "{:>10} {:>8} {:>12} {:>8} {:>14} {:>14} {:>12}",
            "partitions",
            "txns",
            "records/s",
            "MiB/s",
            "commit p50 ms",
            "commit p99 ms",
            "txn p50 ms"
        );
        for count in partitions {
            let result = run(
                &broker.bootstrap,
                count,
                records_per_partition,
                record_bytes,
                seconds,
                linger_ms,
            )?;
            println!(
                "{:>10} {:>8} {:>12.0} {:>8.2} {:>14.2} {:>14.2} {:>12.2}",
                result.partitions,
                result.transactions,
                result.records_per_second,
                result.mib_per_second,
                result.commit_p50_ms,
                result.commit_p99_ms,
                result.txn_p50_ms
            );
        }
        drop(broker);
        Ok(())
    })();
    match outcome {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&dir);
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "sluice-txn-bench: {error} (broker log in {})",
                dir.join("broker.log").display()
            );
            std::process::ExitCode::FAILURE
        }
    }
}
