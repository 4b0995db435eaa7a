//! Consumer-group figures with a real client against the real broker:
//! start a `sluice` binary, then with librdkafka (the `rdkafka` crate)
//! measure
//!
//! * rebalance time, join to stable: N consumers subscribe at once to a
//!   topic of 2·N partitions; the time until every one of them owns exactly
//!   two partitions and together all of them, for the classic protocol
//!   (JoinGroup/SyncGroup, client-side `range`) and the KIP-848 consumer
//!   protocol (server-side `uniform`);
//! * synchronous commit throughput and latency from many consumers of one
//!   group, against a baseline in the same run: the same threads doing
//!   ListOffsets round trips (librdkafka's watermark query: two ListOffsets
//!   per call), with fetching paused so neither waits behind a Fetch.
//!
//! usage: sluice-group-bench [--sluice PATH] [--members 10,100] [--runs 5]
//!        [--commit-consumers 100] [--commit-seconds 10]
//!
//! Prints medians and p99s (with few runs p99 is the maximum).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// How long one rebalance may take before the run is reported as failed.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Poll timeout of the consumer threads.
const POLL_MS: u64 = 20;

struct Options {
    sluice: String,
    members: Vec<usize>,
    runs: usize,
    commit_consumers: usize,
    commit_seconds: u64,
}

fn options() -> Options {
    let mut options = Options {
        sluice: "target/release/sluice".to_string(),
        members: vec![10, 100],
        runs: 5,
        commit_consumers: 100,
        commit_seconds: 10,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut index = 0;
    while index + 1 < args.len() {
        let value = &args[index + 1];
        match args[index].as_str() {
            "--sluice" => options.sluice = value.clone(),
            "--members" => {
                options.members = value.split(',').filter_map(|n| n.parse().ok()).collect()
            }
            "--runs" => options.runs = value.parse().unwrap_or(options.runs),
            "--commit-consumers" => {
                options.commit_consumers = value.parse().unwrap_or(options.commit_consumers)
            }
            "--commit-seconds" => {
                options.commit_seconds = value.parse().unwrap_or(options.commit_seconds)
            }
            other => panic!("unknown argument {other}"),
        }
        index += 2;
    }
    options
}

struct Broker {
    child: Child,
    bootstrap: String,
    dir: std::path::PathBuf,
}

impl Broker {
    fn start(sluice: &str) -> Broker {
        let dir = std::env::temp_dir().join(format!("sluice-group-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench directory");
        let mut child = Command::new(sluice)
            .args(["--data-dir"])
            .arg(dir.join("data"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "2",
                "--pin-shards",
                "false",
                "--group-initial-rebalance-delay-ms",
                "0",
                "--group-consumer-heartbeat-interval-ms",
                "250",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting sluice");
        let stdout = child.stdout.take().expect("stdout");
        let mut bootstrap = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("broker stdout");
            if let Some(address) = line.strip_prefix("sluice listening on ") {
                bootstrap = address.trim().to_string();
                break;
            }
        }
        assert!(!bootstrap.is_empty(), "the broker did not start");
        Broker {
            child,
            bootstrap,
            dir,
        }
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("broker.address.family", "v4")
            .set("log_level", "3");
        config
    }

    fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results = futures_block(admin.create_topics(&[topic], &AdminOptions::new()))
            .expect("create_topics");
        for result in results {
            result.expect("topic created");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Drives a future to completion on this thread (the admin client's
/// futures complete from librdkafka's threads).
fn futures_block<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
    fn clone(_: *const ()) -> RawWaker {
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    // SAFETY: the vtable's functions ignore the data pointer.
    let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A consumer thread: subscribes, polls, publishes its assignment size;
/// in the commit phase it commits (or, for the baseline, lists offsets) in
/// a loop and records latencies.
struct Members {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    sizes: Vec<Arc<AtomicUsize>>,
    latencies: Arc<Mutex<Vec<Vec<Duration>>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

const PHASE_POLL: usize = 0;
const PHASE_COMMIT: usize = 1;
const PHASE_BASELINE: usize = 2;

impl Members {
    fn start(
        broker: &Broker,
        group: &str,
        topic: &str,
        count: usize,
        consumer_protocol: bool,
    ) -> Members {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(PHASE_POLL));
        let latencies = Arc::new(Mutex::new(vec![Vec::new(), Vec::new()]));
        let mut sizes = Vec::new();
        let mut threads = Vec::new();
        for index in 0..count {
            let mut config = broker.config();
            config
                .set("group.id", group)
                .set("client.id", format!("bench-{index}"))
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest");
            if consumer_protocol {
                config.set("group.protocol", "consumer");
            } else {
                config
                    .set("session.timeout.ms", "30000")
                    .set("heartbeat.interval.ms", "250");
            }
            let size = Arc::new(AtomicUsize::new(0));
            sizes.push(Arc::clone(&size));
            let (stop, phase, latencies) = (
                Arc::clone(&stop),
                Arc::clone(&phase),
                Arc::clone(&latencies),
            );
            let topic = topic.to_string();
            threads.push(thread::spawn(move || {
                let consumer: BaseConsumer = config.create().expect("consumer");
                consumer.subscribe(&[&topic]).expect("subscribe");
                let mut mine = [Vec::new(), Vec::new()];
                let mut counter = 0i64;
                let mut paused = false;
                while !stop.load(Ordering::SeqCst) {
                    let _ = consumer.poll(Duration::from_millis(POLL_MS));
                    let assignment = consumer.assignment().unwrap_or_default();
                    size.store(assignment.count(), Ordering::SeqCst);
                    let current = phase.load(Ordering::SeqCst);
                    if current == PHASE_POLL || assignment.count() == 0 {
                        continue;
                    }
                    let Some(first) = assignment.elements().first().map(|e| e.partition()) else {
                        continue;
                    };
                    if !paused {
                        // No fetches in flight: librdkafka would queue the
                        // baseline's ListOffsets behind a long-polling Fetch
                        // on the same connection (responses come in order).
                        paused = consumer.pause(&assignment).is_ok();
                    }
                    let started = Instant::now();
                    let ok = if current == PHASE_COMMIT {
                        counter += 1;
                        let mut list = TopicPartitionList::new();
                        for element in assignment.elements() {
                            let _ = list.add_partition_offset(
                                &topic,
                                element.partition(),
                                Offset::Offset(counter),
                            );
                        }
                        consumer.commit(&list, CommitMode::Sync).is_ok()
                    } else {
                        consumer
                            .fetch_watermarks(&topic, first, Duration::from_secs(10))
                            .is_ok()
                    };
                    if ok {
                        mine[current - 1].push(started.elapsed());
                    }
                }
                if let Ok(mut all) = latencies.lock() {
                    for (slot, values) in all.iter_mut().zip(mine) {
                        slot.extend(values);
                    }
                }
            }));
        }
        Members {
            stop,
            phase,
            sizes,
            latencies,
            threads,
        }
    }

    /// Whether every member owns exactly `each` partitions.
    fn stable(&self, each: usize) -> bool {
        self.sizes
            .iter()
            .all(|size| size.load(Ordering::SeqCst) == each)
    }

    fn stop(mut self) -> Vec<Vec<Duration>> {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        std::mem::take(&mut *self.latencies.lock().expect("latencies"))
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn summary(mut values: Vec<Duration>) -> String {
    values.sort();
    format!(
        "median {:>8.1} ms  p99 {:>8.1} ms  (n={})",
        percentile(&values, 0.5).as_secs_f64() * 1e3,
        percentile(&values, 0.99).as_secs_f64() * 1e3,
        values.len()
    )
}

fn main() {
    let options = options();
    let broker = Broker::start(&options.sluice);
    println!(
        "sluice-group-bench: broker {} ({})",
        options.sluice, broker.bootstrap
    );
    println!(
        "machine: {} CPUs online, shared and noisy (other builds may run)",
        thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    for &count in &options.members {
        let topic = format!("rebalance-{count}");
        broker.create_topic(&topic, 2 * count as i32);
        for (name, consumer_protocol) in [("classic", false), ("consumer", true)] {
            let mut times = Vec::new();
            for run in 0..options.runs {
                let group = format!("{name}-{count}-{run}");
                let started = Instant::now();
                let members = Members::start(&broker, &group, &topic, count, consumer_protocol);
                let deadline = started + SETTLE_TIMEOUT;
                while !members.stable(2) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(5));
                }
                let elapsed = started.elapsed();
                let settled = members.stable(2);
                members.stop();
                if settled {
                    times.push(elapsed);
                } else {
                    println!(
                        "  {name} {count} members run {run}: not stable in {SETTLE_TIMEOUT:?}"
                    );
                }
            }
            println!(
                "rebalance join→stable  {name:<8} {count:>4} members: {}",
                summary(times)
            );
        }
    }

    let count = options.commit_consumers;
    let topic = "commits";
    broker.create_topic(topic, 2 * count as i32);
    let members = Members::start(&broker, "committers", topic, count, false);
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !members.stable(2) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let seconds = Duration::from_secs(options.commit_seconds);
    members.phase.store(PHASE_BASELINE, Ordering::SeqCst);
    thread::sleep(seconds);
    members.phase.store(PHASE_COMMIT, Ordering::SeqCst);
    thread::sleep(seconds);
    members.phase.store(PHASE_POLL, Ordering::SeqCst);
    let latencies = members.stop();
    let rate = |values: &Vec<Duration>| values.len() as f64 / seconds.as_secs_f64();
    let (commits, baseline) = (&latencies[0], &latencies[1]);
    println!(
        "sync commits (2 partitions each) from {count} consumers: {:>8.0}/s  {}",
        rate(commits),
        summary(commits.clone())
    );
    println!(
        "baseline ListOffsets round trips, same threads:         {:>8.0}/s  {}",
        rate(baseline),
        summary(baseline.clone())
    );
    if rate(baseline) > 0.0 {
        println!(
            "commit rate / baseline rate: {:.2}",
            rate(commits) / rate(baseline)
        );
    }
}
