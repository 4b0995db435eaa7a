//! Running a workload: topics, worker executors, producers and consumers,
//! the timeline (warm-up, measured window, drain), live progress.
//!
//! Producers and consumers are spread round-robin over `threads` glommio
//! executors (unpinned: the broker pins its own shards). Each executor
//! records into its own histograms and counters and merges them at the
//! end; once per reporting interval it sends its interval histograms to the
//! main thread, which prints the live progress line from them and from
//! shared counters. The main thread owns the clock of the run: it starts
//! everyone at the same instant once all clients are connected and every
//! consumer sits at the log end, so nothing produced is missed.
//!
//! Timeline: `start` → warm-up → `measure_start` → measured window →
//! `measure_end` (producers stop) → drain (consumers read everything that
//! was acknowledged, or give up after `drain_timeout`). Only messages whose
//! intended send time lies in the measured window count toward latency and
//! produce throughput; consume throughput counts what was consumed inside
//! the window.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use hdrhistogram::Histogram;
use sluice_net::glommio_client::{
    Acks, Assignment, ClientConfig, Cluster, Compression, Consumer, ConsumerConfig, Delivery,
    Message, NewTopic, Producer, ProducerConfig, StartOffset, TopicHandle,
};

use crate::clock::{self, NANOS_PER_MILLI, NANOS_PER_SEC};
use crate::cpu;
use crate::nudge;
use crate::payload::{self, KeyChooser};
use crate::rate::{split_rate, Schedule};
use crate::report::IntervalSample;
use crate::stats::{self, Percentiles};
use crate::workload::Workload;
use sluice_engine::wake_watch::{spawn_watched, Timing, WakeWatch};

/// Shares of the producer and consumer task queues of a worker: equal, so
/// neither side can starve the other of its executor.
const QUEUE_SHARES: usize = 1000;
/// How often consumers ask the scheduler to preempt other tasks: they time
/// end-to-end latency, so they must not wait behind a long producer burst.
const CONSUMER_PREEMPTION: Duration = Duration::from_millis(1);
/// Shortest pause of the scheduled load generator (see `produce_scheduled`).
const SCHEDULE_TICK_MIN: Duration = Duration::from_micros(100);
/// Messages a producer sends between checks for preemption, so a producer
/// running flat out still lets the executor's other tasks (senders,
/// consumers, timers) run.
const SENDS_BETWEEN_YIELDS: u32 = 64;
/// glommio's preemption timer for worker executors: how long one task may
/// run before `yield_if_needed` gives way. Short, because latency is what
/// is being measured.
const PREEMPT_TIMER: Duration = Duration::from_micros(500);
/// Gap between "everyone is ready" and the common start, so every worker
/// sees the start time before it arrives.
const START_DELAY: Duration = Duration::from_millis(200);
/// How often waiting workers look at the shared state.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// How long connecting every client and creating topics may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);
/// Errors kept per worker for the report (the rest are only counted).
const ERRORS_KEPT_MAX: usize = 5;
/// Kafka's TOPIC_ALREADY_EXISTS: fine when a peer's CLI created it.
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// Set by SIGINT/SIGTERM: the run stops early but still cleans up (the
/// started broker and its data directory).
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Routes SIGINT and SIGTERM to [`INTERRUPTED`].
pub fn handle_signals() {
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// How long producers may take to finish after the window closes: they
/// flush what they hold, and a stuck request fails after the client's
/// request timeout.
const PRODUCER_FINISH_TIMEOUT: Duration = Duration::from_secs(90);

/// Which client library drives the producers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// `sluice_net::glommio_client`.
    Sluice,
    /// librdkafka through the `rdkafka` crate (feature `rdkafka`).
    Rdkafka,
}

impl ClientKind {
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Sluice => "sluice-glommio",
            ClientKind::Rdkafka => "librdkafka",
        }
    }
}

/// How to run a workload.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub workload: Workload,
    pub bootstrap: String,
    pub threads: usize,
    pub report_interval: Duration,
    pub drain_timeout: Duration,
    /// Prefix of the topic names, unique per run.
    pub topic_prefix: String,
    pub client: ClientKind,
    /// Delete the topics afterwards (for long-lived external brokers).
    pub delete_topics: bool,
    /// Print the progress lines.
    pub verbose: bool,
    /// The broker's processes (several for a cluster on this machine), to
    /// account for their CPU use separately; empty when unknown.
    pub broker_pids: Vec<u32>,
    /// `--tls-ca`: connect over TLS (an SSL listener), trusting the CAs of
    /// this PEM file, with `tls` made from it (the librdkafka producers
    /// read the file themselves).
    #[cfg_attr(not(feature = "rdkafka"), allow(dead_code))]
    pub tls_ca: Option<std::path::PathBuf>,
    pub tls: Option<sluice_net::tls::ClientTls>,
}

impl RunOptions {
    /// The client settings every connection of the run starts from.
    fn client_config(&self) -> ClientConfig {
        let mut client = ClientConfig::new(&self.bootstrap);
        client.tls = self.tls.clone();
        client
    }
}

/// What a run measured.
pub struct Measured {
    pub ack: Histogram<u64>,
    /// The round trip of each acknowledged record's Produce request (see
    /// `Delivery::round_trip`); empty for clients that do not report it.
    pub request: Histogram<u64>,
    pub e2e: Histogram<u64>,
    /// Acknowledged in the measured window (by intended send time).
    pub produced_messages: u64,
    pub produced_bytes: u64,
    /// Consumed during the measured window.
    pub consumed_messages: u64,
    pub consumed_bytes: u64,
    /// Whole-run totals, warm-up and drain included.
    pub total_sent: u64,
    pub total_acked: u64,
    pub total_failed: u64,
    pub total_consumed: u64,
    /// Seconds the produce and consume figures are rates over: the measured
    /// window, or in backlog mode the produce and the catch-up phases.
    pub produce_secs: f64,
    pub consume_secs: f64,
    /// CPU use during the measured window.
    pub cpu: cpu::Usage,
    pub intervals: Vec<IntervalSample>,
    pub errors: Vec<String>,
}

/// State shared by the main thread and the workers.
pub(crate) struct Shared {
    /// Start of the run in clock nanoseconds; 0 until set.
    start: AtomicU64,
    pub(crate) measure_start: AtomicU64,
    pub(crate) measure_end: AtomicU64,
    ready: AtomicUsize,
    producers_done: AtomicUsize,
    stop_consumers: AtomicBool,
    /// Backlog mode: consumers start reading once this is set.
    consumers_go: AtomicBool,
    /// End-to-end latency is meaningful (not in backlog mode, where it
    /// would measure how long records were made to wait).
    record_e2e: bool,
    abort: AtomicBool,
    pub(crate) sent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) acked_bytes: AtomicU64,
    pub(crate) failed: AtomicU64,
    consumed: AtomicU64,
    consumed_bytes: AtomicU64,
    pub(crate) errors: Mutex<Vec<String>>,
}

impl Shared {
    pub(crate) fn note_error(&self, error: String) {
        if let Ok(mut errors) = self.errors.lock() {
            if errors.len() < ERRORS_KEPT_MAX {
                errors.push(error);
            }
        }
    }

    pub(crate) fn in_window(&self, nanos: u64) -> bool {
        nanos >= self.measure_start.load(Ordering::Relaxed)
            && nanos < self.measure_end.load(Ordering::Relaxed)
    }
}

/// One producer's share of the work.
#[derive(Clone, Debug)]
pub(crate) struct ProducerPlan {
    pub(crate) topic: String,
    pub(crate) index: u32,
    /// Messages per second; 0 = as fast as possible.
    pub(crate) rate: u64,
    /// Backlog mode: messages to send, then stop.
    pub(crate) limit: Option<u64>,
}

/// One consumer's share of the work.
#[derive(Clone, Debug)]
struct ConsumerPlan {
    topic: String,
    partitions: Vec<i32>,
}

/// Interval histograms one worker sends to the main thread.
pub(crate) struct IntervalReport {
    pub(crate) ack: Histogram<u64>,
    pub(crate) e2e: Histogram<u64>,
}

/// What one worker hands back.
#[derive(Default)]
pub(crate) struct WorkerResult {
    pub(crate) ack: Option<Histogram<u64>>,
    pub(crate) request: Option<Histogram<u64>>,
    pub(crate) e2e: Option<Histogram<u64>>,
    pub(crate) produced_messages: u64,
    pub(crate) produced_bytes: u64,
    pub(crate) consumed_messages: u64,
    pub(crate) consumed_bytes: u64,
}

/// Histograms and window counters of one executor.
struct Recorder {
    ack: Histogram<u64>,
    ack_interval: Histogram<u64>,
    request: Histogram<u64>,
    e2e: Histogram<u64>,
    e2e_interval: Histogram<u64>,
    produced_messages: u64,
    produced_bytes: u64,
    consumed_messages: u64,
    consumed_bytes: u64,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            ack: stats::histogram(),
            ack_interval: stats::histogram(),
            request: stats::histogram(),
            e2e: stats::histogram(),
            e2e_interval: stats::histogram(),
            produced_messages: 0,
            produced_bytes: 0,
            consumed_messages: 0,
            consumed_bytes: 0,
        }
    }
}

/// Creates the workload's topics and waits for their leaders.
fn create_topics(options: &RunOptions) -> Result<Vec<String>, String> {
    let workload = &options.workload;
    let names: Vec<String> = (0..workload.topics)
        .map(|index| format!("{}-{index}", options.topic_prefix))
        .collect();
    let client = options.client_config();
    let configs: Vec<(String, String)> = workload
        .topic_config
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let partitions = workload.partitions_per_topic;
    // The workload's, not a constant: 1 for a single-node broker, more only
    // when the broker under test is a cluster that can place the replicas.
    let replication_factor = workload.replication_factor;
    let topics = names.clone();
    let created = LocalExecutorBuilder::new(Placement::Unbound)
        .name("perf-setup")
        .spawn(move || async move {
            let cluster = Cluster::connect(client)
                .await
                .map_err(|error| error.to_string())?;
            let new_topics: Vec<NewTopic> = topics
                .iter()
                .map(|name| NewTopic {
                    name: name.clone(),
                    partitions,
                    replication_factor,
                    configs: configs.clone(),
                })
                .collect();
            let results = cluster
                .create_topics(&new_topics)
                .await
                .map_err(|error| error.to_string())?;
            for result in results {
                if result.error_code != 0 && result.error_code != TOPIC_ALREADY_EXISTS {
                    return Err(format!(
                        "creating topic {} failed: {} ({})",
                        result.name,
                        sluice_net::glommio_client::error::error_name(result.error_code),
                        result.error_message.unwrap_or_default()
                    ));
                }
            }
            for name in &topics {
                let info = cluster
                    .wait_for_topic(name)
                    .await
                    .map_err(|error| error.to_string())?;
                if info.partitions.len() != partitions as usize {
                    return Err(format!(
                        "topic {name} has {} partitions, the workload wants {partitions}",
                        info.partitions.len()
                    ));
                }
            }
            Ok(())
        })
        .map_err(|error| format!("cannot start an executor: {error}"))?
        .join()
        .map_err(|error| format!("setup executor failed: {error}"))?;
    created.map(|()| names)
}

/// Deletes the run's topics (best effort).
fn delete_topics(client: ClientConfig, names: Vec<String>) {
    let outcome = LocalExecutorBuilder::new(Placement::Unbound)
        .name("perf-cleanup")
        .spawn(move || async move {
            let cluster = Cluster::connect(client)
                .await
                .map_err(|error| error.to_string())?;
            cluster
                .delete_topics(&names)
                .await
                .map(drop)
                .map_err(|error| error.to_string())
        });
    match outcome.map(|handle| handle.join()) {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => eprintln!("warning: deleting the run's topics failed: {error}"),
        _ => eprintln!("warning: deleting the run's topics failed"),
    }
}

fn producer_config(workload: &Workload, mut client: ClientConfig, name: String) -> ProducerConfig {
    client.client_id = name;
    let mut config = ProducerConfig::new(client);
    // Both were validated with the workload.
    config.acks = Acks::parse(&workload.acks).unwrap_or(Acks::Leader);
    config.compression = Compression::from_name(&workload.compression).unwrap_or_default();
    config.batch_bytes = workload.batch_size;
    config.linger = Duration::from_secs_f64(workload.linger_ms / 1e3);
    config.in_flight_max = workload.max_in_flight;
    config.buffer_memory_bytes = workload.buffer_memory;
    config.idempotence = workload.idempotence;
    config.request_bytes_max = config.request_bytes_max.max(workload.batch_size + 1024);
    config
}

fn consumer_config(workload: &Workload, mut client: ClientConfig, name: String) -> ConsumerConfig {
    client.client_id = name;
    let mut config = ConsumerConfig::new(client);
    config.fetch_min_bytes = workload.fetch_min_bytes;
    config.fetch_max_wait = Duration::from_millis(workload.fetch_max_wait_ms);
    config.pipeline_depth = workload.fetch_pipeline_depth;
    config.fetch_sessions = workload.fetch_sessions;
    config
}

/// Waits (on an executor) until `ready` says so.
async fn wait_until(mut ready: impl FnMut() -> bool) {
    while !ready() {
        glommio::timer::sleep(POLL_INTERVAL).await;
    }
}

/// One producer as the load generator drives it.
struct Generated {
    producer: Rc<Producer<u64>>,
    topic: TopicHandle,
    plan: ProducerPlan,
    keys: KeyChooser,
    schedule: Schedule,
    /// Next message to send.
    index: u64,
}

impl Generated {
    /// Sends one message with intended send time `intended`; false when the
    /// producer refused it (closed or failed).
    async fn send(&mut self, intended: u64, filler: &[u8], shared: &Shared) -> bool {
        let stamp = payload::timestamp_prefix(intended);
        let message = Message {
            partition: None,
            key: self.keys.next_key(),
            value: &[&stamp, filler],
            timestamp_ms: Some((intended / NANOS_PER_MILLI) as i64),
        };
        match self.producer.send(self.topic, message, intended).await {
            Ok(()) => {
                self.index += 1;
                true
            }
            Err(error) => {
                shared.note_error(format!("send: {error}"));
                false
            }
        }
    }

    /// Messages to send in total (backlog mode) or unbounded.
    fn limit(&self) -> u64 {
        self.plan.limit.unwrap_or(u64::MAX)
    }
}

/// A producer without a rate: sends as fast as the producer accepts
/// (bounded by its `buffer.memory`) until the window ends or its share of
/// the backlog is sent. Each burst is stamped with one clock reading (a
/// burst takes microseconds; reading the clock per message costs more than
/// it tells).
async fn produce_unlimited(mut generated: Generated, shared: Arc<Shared>, filler: Rc<Vec<u8>>) {
    let end = match generated.plan.limit {
        Some(_) => u64::MAX,
        None => shared.measure_end.load(Ordering::Relaxed),
    };
    let limit = generated.limit();
    'run: loop {
        let now = clock::now_nanos();
        if now >= end || generated.index >= limit || shared.abort.load(Ordering::Relaxed) {
            break;
        }
        let burst_end = (generated.index + u64::from(SENDS_BETWEEN_YIELDS)).min(limit);
        let burst_start = generated.index;
        while generated.index < burst_end {
            if !generated.send(now, &filler, &shared).await {
                break 'run;
            }
        }
        shared
            .sent
            .fetch_add(generated.index - burst_start, Ordering::Relaxed);
        glommio::yield_if_needed().await;
    }
}

/// Drives every scheduled producer of one executor from a single timer.
///
/// Each message is sent at (or, when the generator or the producer fell
/// behind, as soon as possible after) its intended time, and its latency
/// counts from the intended time. One wake-up serves all producers and
/// sends everything due; wake-ups are at least [`SCHEDULE_TICK_MIN`] apart,
/// because on a two-core machine a timer per producer per message costs
/// more CPU than the brokers under test (measured: ~120 µs of client CPU
/// per wake-up, mostly context switches). The tick's delay is part of the
/// measured latency, as it should be.
async fn produce_scheduled(
    mut producers: Vec<Generated>,
    shared: Arc<Shared>,
    filler: Rc<Vec<u8>>,
) {
    let end = shared.measure_end.load(Ordering::Relaxed);
    loop {
        let now = clock::now_nanos();
        // A wake-up that comes after `end` still sends what was due before
        // it (the schedule puts exactly rate × duration messages in the
        // window); the loop ends once nothing is due before `end`.
        if shared.abort.load(Ordering::Relaxed) || producers.is_empty() {
            break;
        }
        let mut next = u64::MAX;
        let mut failed = Vec::new();
        for (position, generated) in producers.iter_mut().enumerate() {
            let due = generated
                .schedule
                .due(now)
                .min(generated.schedule.due(end.saturating_sub(1)))
                .min(generated.limit());
            let first = generated.index;
            while generated.index < due {
                let intended = generated.schedule.intended(generated.index);
                if !generated.send(intended, &filler, &shared).await {
                    failed.push(position);
                    break;
                }
                if (generated.index - first) % u64::from(SENDS_BETWEEN_YIELDS) == 0 {
                    glommio::yield_if_needed().await;
                }
            }
            shared
                .sent
                .fetch_add(generated.index - first, Ordering::Relaxed);
            if generated.index < generated.limit() {
                next = next.min(generated.schedule.intended(generated.index));
            }
        }
        for position in failed.into_iter().rev() {
            producers.swap_remove(position);
        }
        if next >= end {
            break;
        }
        let wake = next.max(now + SCHEDULE_TICK_MIN.as_nanos() as u64);
        let wait = clock::instant_at(wake).saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            glommio::timer::sleep(wait).await;
        }
    }
}

/// Reads records until told to stop, timing each from the timestamp in its
/// payload.
async fn consume_loop(
    consumer: Rc<Consumer>,
    shared: Arc<Shared>,
    recorder: Rc<RefCell<Recorder>>,
) {
    while let Some(chunk) = consumer.poll().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                shared.note_error(format!("fetch: {error}"));
                continue;
            }
        };
        let mut messages = 0u64;
        let mut bytes = 0u64;
        for batch in chunk.batches() {
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    shared.note_error(format!("consume: {error}"));
                    break;
                }
            };
            if batch.is_control() {
                continue;
            }
            let now = clock::now_nanos();
            let counted = shared.in_window(now);
            let mut recorder = recorder.borrow_mut();
            let recorder = &mut *recorder;
            for record in batch.records() {
                let Ok(record) = record else {
                    shared.note_error("consume: malformed record".to_string());
                    break;
                };
                let value = record.value.unwrap_or_default();
                messages += 1;
                bytes += value.len() as u64;
                if counted {
                    recorder.consumed_messages += 1;
                    recorder.consumed_bytes += value.len() as u64;
                }
                if !shared.record_e2e {
                    continue;
                }
                if let Some(sent_at) = payload::read_timestamp(value) {
                    let latency = now.saturating_sub(sent_at);
                    stats::record(&mut recorder.e2e_interval, latency);
                    if shared.in_window(sent_at) {
                        stats::record(&mut recorder.e2e, latency);
                    }
                }
            }
        }
        shared.consumed.fetch_add(messages, Ordering::Relaxed);
        shared.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The delivery callback: acknowledgement latency per record.
fn on_delivery(
    shared: &Arc<Shared>,
    recorder: &Rc<RefCell<Recorder>>,
    message_bytes: u64,
    timed: bool,
) -> impl FnMut(Delivery<'_, u64>) + 'static {
    let shared = Arc::clone(shared);
    let recorder = Rc::clone(recorder);
    move |delivery: Delivery<'_, u64>| {
        let count = delivery.tokens.len() as u64;
        if let Err(error) = &delivery.result {
            shared.failed.fetch_add(count, Ordering::Relaxed);
            shared.note_error(format!("produce: {error}"));
            return;
        }
        let now = clock::now_nanos();
        let mut timed_in_window = 0;
        let mut recorder = recorder.borrow_mut();
        let recorder = &mut *recorder;
        for intended in &delivery.tokens {
            let latency = now.saturating_sub(*intended);
            if timed {
                stats::record(&mut recorder.ack_interval, latency);
            }
            if shared.in_window(*intended) {
                if timed {
                    stats::record(&mut recorder.ack, latency);
                    timed_in_window += 1;
                }
                recorder.produced_messages += 1;
                recorder.produced_bytes += message_bytes;
            }
        }
        // Once per record the ack latency counted, so that the two
        // distributions weigh requests alike.
        if let Some(round_trip) = delivery.round_trip.filter(|_| timed_in_window > 0) {
            stats::record_n(
                &mut recorder.request,
                round_trip.as_nanos() as u64,
                timed_in_window,
            );
        }
        shared.acked.fetch_add(count, Ordering::Relaxed);
        shared
            .acked_bytes
            .fetch_add(count * message_bytes, Ordering::Relaxed);
    }
}

/// Keeps the main thread's accounting right if a worker panics: it would
/// otherwise wait forever for a worker that will never report.
struct WorkerGuard {
    shared: Arc<Shared>,
    ready: std::cell::Cell<bool>,
    done: std::cell::Cell<bool>,
}

impl WorkerGuard {
    fn ready(&self) {
        if !self.ready.replace(true) {
            self.shared.ready.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn done(&self) {
        if !self.done.replace(true) {
            self.shared.producers_done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if !self.done.get() {
            self.shared.abort.store(true, Ordering::Relaxed);
            self.shared
                .note_error("a worker stopped unexpectedly".to_string());
        }
        self.ready();
        self.done();
        // A worker that ended early must not hold consumers of others back.
        self.shared.stop_consumers.store(true, Ordering::Relaxed);
    }
}

/// One worker executor's life.
async fn worker(
    id: usize,
    options: RunOptions,
    producers: Vec<ProducerPlan>,
    consumers: Vec<ConsumerPlan>,
    shared: Arc<Shared>,
    reports: mpsc::Sender<IntervalReport>,
    nudge: Arc<nudge::Slot>,
) -> WorkerResult {
    // glommio 0.9's first timer on an executor can fire tens of ms late:
    // take that hit before anything is measured.
    glommio::timer::sleep(POLL_INTERVAL).await;
    let workload = &options.workload;
    let guard = WorkerGuard {
        shared: Arc::clone(&shared),
        ready: std::cell::Cell::new(false),
        done: std::cell::Cell::new(false),
    };
    let recorder = Rc::new(RefCell::new(Recorder::new()));
    // Producers and consumers run in task queues of equal shares: a
    // worker full of producers sending flat out must not starve the
    // consumers sharing its core (with one queue, 25 producers left 2
    // consumers 4% of the throughput), and consumers ask for frequent
    // preemption because they time end-to-end latency.
    let executor = glommio::executor();
    let producer_queue = executor.create_task_queue(
        Shares::Static(QUEUE_SHARES),
        Latency::NotImportant,
        "producers",
    );
    let consumer_queue = executor.create_task_queue(
        Shares::Static(QUEUE_SHARES),
        Latency::Matters(CONSUMER_PREEMPTION),
        "consumers",
    );
    let consumer_setup = {
        let options = options.clone();
        let shared = Arc::clone(&shared);
        let consumers = consumers.clone();
        async move {
            let workload = &options.workload;
            let mut consumer_handles = Vec::new();
            for (index, plan) in consumers.iter().enumerate() {
                let name = format!("sluice-perf-consumer-{id}-{index}");
                let consumer =
                    Consumer::new(consumer_config(workload, options.client_config(), name))
                        .await
                        .map_err(|error| format!("consumer: {error}"))?;
                let assignments: Vec<Assignment> = plan
                    .partitions
                    .iter()
                    .map(|partition| Assignment {
                        topic: plan.topic.clone(),
                        partition: *partition,
                        start: StartOffset::Latest,
                    })
                    .collect();
                if shared.record_e2e {
                    consumer
                        .assign(&assignments)
                        .await
                        .map_err(|error| format!("assign: {error}"))?;
                    consumer_handles.push((Rc::new(consumer), Vec::new()));
                } else {
                    // Backlog mode: fix the start now, fetch after producing.
                    let positions = consumer
                        .positions(&assignments)
                        .await
                        .map_err(|error| format!("positions: {error}"))?;
                    consumer_handles.push((Rc::new(consumer), positions));
                }
            }
            Ok::<_, String>(consumer_handles)
        }
    };
    let producer_setup = {
        let options = options.clone();
        let shared = Arc::clone(&shared);
        let recorder = Rc::clone(&recorder);
        let producers = producers.clone();
        async move {
            let workload = &options.workload;
            let timed = workload.acks != "0";
            let mut producer_handles = Vec::new();
            for plan in &producers {
                let name = format!("sluice-perf-producer-{}", plan.index);
                let callback = on_delivery(&shared, &recorder, workload.message_size as u64, timed);
                let producer = Producer::new(
                    producer_config(workload, options.client_config(), name),
                    callback,
                )
                .await
                .map_err(|error| format!("producer: {error}"))?;
                let topic = producer
                    .topic(&plan.topic)
                    .await
                    .map_err(|error| format!("producer: {error}"))?;
                producer_handles.push((Rc::new(producer), topic, plan.clone()));
            }
            Ok::<_, String>(producer_handles)
        }
    };
    let setup = async {
        let consumers = glommio::spawn_local_into(consumer_setup, consumer_queue)
            .map_err(|error| format!("cannot spawn: {error}"))?
            .await?;
        let producers = glommio::spawn_local_into(producer_setup, producer_queue)
            .map_err(|error| format!("cannot spawn: {error}"))?
            .await?;
        Ok::<_, String>((consumers, producers))
    };
    let (consumer_handles, producer_handles) = match setup.await {
        Ok(handles) => handles,
        Err(error) => {
            shared.note_error(error);
            shared.abort.store(true, Ordering::Relaxed);
            return WorkerResult::default();
        }
    };
    guard.ready();
    wait_until(|| {
        shared.start.load(Ordering::Relaxed) != 0 || shared.abort.load(Ordering::Relaxed)
    })
    .await;
    let start = shared.start.load(Ordering::Relaxed);
    if start != 0 {
        let wait = clock::instant_at(start).saturating_duration_since(Instant::now());
        glommio::timer::sleep(wait).await;
    }

    let consuming: Result<Vec<_>, _> = consumer_handles
        .iter()
        .map(|(consumer, positions)| {
            let consumer = Rc::clone(consumer);
            let positions = positions.clone();
            let shared = Arc::clone(&shared);
            let recorder = Rc::clone(&recorder);
            glommio::spawn_local_into(
                async move {
                    if !positions.is_empty() {
                        wait_until(|| {
                            shared.consumers_go.load(Ordering::Relaxed)
                                || shared.stop_consumers.load(Ordering::Relaxed)
                        })
                        .await;
                        if let Err(error) = consumer.assign(&positions).await {
                            shared.note_error(format!("assign: {error}"));
                            return;
                        }
                    }
                    consume_loop(consumer, shared, recorder).await;
                },
                consumer_queue,
            )
        })
        .collect::<Result<_, _>>();
    let consuming: Vec<_> = match consuming {
        Ok(tasks) => tasks,
        Err(error) => {
            shared.note_error(format!("cannot spawn a consumer: {error}"));
            shared.abort.store(true, Ordering::Relaxed);
            return WorkerResult::default();
        }
    };
    // glommio 0.9 can park a worker while tasks are runnable (see
    // `nudge`): the nudger thread wakes this task, which ends such a sleep.
    let nudged = {
        let shared = Arc::clone(&shared);
        glommio::spawn_local(async move {
            nudge
                .serve(|| shared.stop_consumers.load(Ordering::Relaxed))
                .await
        })
    };
    let interval = options.report_interval;
    let reporter = {
        let recorder = Rc::clone(&recorder);
        let shared = Arc::clone(&shared);
        glommio::spawn_local(async move {
            while !shared.stop_consumers.load(Ordering::Relaxed) {
                glommio::timer::sleep(interval).await;
                let mut recorder = recorder.borrow_mut();
                let report = IntervalReport {
                    ack: std::mem::replace(&mut recorder.ack_interval, stats::histogram()),
                    e2e: std::mem::replace(&mut recorder.e2e_interval, stats::histogram()),
                };
                if reports.send(report).is_err() {
                    return;
                }
            }
        })
    };
    let filler = Rc::new(payload::filler(
        workload.payload,
        workload.message_size,
        0x5eed,
    ));
    let start = shared.start.load(Ordering::Relaxed);
    let mut scheduled = Vec::new();
    let mut producing = Vec::new();
    for (producer, topic, plan) in &producer_handles {
        let generated = Generated {
            producer: Rc::clone(producer),
            topic: *topic,
            plan: plan.clone(),
            keys: KeyChooser::new(
                workload.key_distribution,
                workload.keys,
                u64::from(plan.index) + 1,
            ),
            schedule: Schedule::new(start, plan.rate),
            index: 0,
        };
        if generated.schedule.is_unlimited() {
            producing.push(glommio::spawn_local_into(
                produce_unlimited(generated, Arc::clone(&shared), Rc::clone(&filler)),
                producer_queue,
            ));
        } else {
            scheduled.push(generated);
        }
    }
    if !scheduled.is_empty() {
        producing.push(glommio::spawn_local_into(
            produce_scheduled(scheduled, Arc::clone(&shared), Rc::clone(&filler)),
            producer_queue,
        ));
    }
    for task in producing {
        match task {
            Ok(task) => task.await,
            Err(error) => shared.note_error(format!("cannot spawn a producer: {error}")),
        }
    }
    for (producer, _, _) in &producer_handles {
        producer.close().await;
    }
    guard.done();
    wait_until(|| shared.stop_consumers.load(Ordering::Relaxed)).await;
    for (consumer, _) in &consumer_handles {
        consumer.close();
    }
    for task in consuming {
        task.await;
    }
    reporter.await;
    nudged.await;
    drop(producer_handles);
    drop(consumer_handles);
    let recorder = recorder.borrow();
    WorkerResult {
        ack: Some(recorder.ack.clone()),
        request: Some(recorder.request.clone()),
        e2e: Some(recorder.e2e.clone()),
        produced_messages: recorder.produced_messages,
        produced_bytes: recorder.produced_bytes,
        consumed_messages: recorder.consumed_messages,
        consumed_bytes: recorder.consumed_bytes,
    }
}

/// Splits a topic's partitions over its consumers.
fn consumer_plans(workload: &Workload, topics: &[String]) -> Vec<ConsumerPlan> {
    let mut plans = Vec::new();
    for topic in topics {
        let consumers = workload
            .consumers_per_topic
            .min(workload.partitions_per_topic as u32);
        for consumer in 0..consumers {
            let partitions: Vec<i32> = (0..workload.partitions_per_topic)
                .filter(|partition| *partition as u32 % consumers == consumer)
                .collect();
            plans.push(ConsumerPlan {
                topic: topic.clone(),
                partitions,
            });
        }
    }
    plans
}

pub(crate) fn producer_plans(workload: &Workload, topics: &[String]) -> Vec<ProducerPlan> {
    let total = u64::from(workload.producers());
    let mut plans = Vec::new();
    for topic in topics {
        for _ in 0..workload.producers_per_topic {
            let index = plans.len() as u32;
            let rate = if workload.producer_rate == 0 {
                0
            } else {
                split_rate(workload.producer_rate, total, u64::from(index))
            };
            let limit = (workload.consume_backlog_mb > 0).then(|| {
                let messages =
                    workload.consume_backlog_mb * 1_000_000 / workload.message_size as u64;
                split_rate(messages, total, u64::from(index))
            });
            plans.push(ProducerPlan {
                topic: topic.clone(),
                index,
                rate,
                limit,
            });
        }
    }
    plans
}

/// Prints one progress line and returns its sample.
fn progress(
    options: &RunOptions,
    shared: &Shared,
    elapsed: f64,
    seconds: f64,
    previous: &mut [u64; 5],
    reports: &mpsc::Receiver<IntervalReport>,
) -> IntervalSample {
    let now = [
        shared.acked.load(Ordering::Relaxed),
        shared.acked_bytes.load(Ordering::Relaxed),
        shared.consumed.load(Ordering::Relaxed),
        shared.consumed_bytes.load(Ordering::Relaxed),
        crate::cpu::stolen_ms(),
    ];
    let rate = |index: usize| (now[index] - previous[index]) as f64 / seconds.max(1e-9);
    let mut ack = stats::histogram();
    let mut e2e = stats::histogram();
    while let Ok(report) = reports.try_recv() {
        stats::merge(&mut ack, &report.ack);
        stats::merge(&mut e2e, &report.e2e);
    }
    let ack = Percentiles::of(&ack);
    let e2e = Percentiles::of(&e2e);
    // The interval's phase is the phase of its middle.
    let phase = if options.workload.consume_backlog_mb > 0 {
        if shared.consumers_go.load(Ordering::Relaxed) {
            "consume"
        } else {
            "produce"
        }
    } else if elapsed - seconds / 2.0 < options.workload.warmup_secs as f64 {
        "warm-up"
    } else {
        "measure"
    };
    let sample = IntervalSample {
        t_secs: elapsed,
        phase: phase.to_string(),
        produce_msg_per_sec: rate(0),
        produce_mb_per_sec: rate(1) / 1e6,
        consume_msg_per_sec: rate(2),
        consume_mb_per_sec: rate(3) / 1e6,
        ack_p50_us: ack.p50_us,
        ack_p99_us: ack.p99_us,
        ack_max_us: ack.max_us,
        e2e_p50_us: e2e.p50_us,
        e2e_p99_us: e2e.p99_us,
        e2e_max_us: e2e.max_us,
        stolen_ms: now[4].saturating_sub(previous[4]),
    };
    if options.verbose {
        let backlog = shared.sent.load(Ordering::Relaxed).saturating_sub(now[0]);
        println!(
            "[{:>6.1}s {:<7}] produce {:>10.0} msg/s {:>8.1} MB/s | consume {:>10.0} msg/s {:>8.1} MB/s | \
             ack p50/p99/max {:>7.2} {:>7.2} {:>8.2} ms | e2e p50/p99/max {:>7.2} {:>7.2} {:>8.2} ms | unacked {} | stolen {} ms",
            elapsed,
            phase,
            sample.produce_msg_per_sec,
            sample.produce_mb_per_sec,
            sample.consume_msg_per_sec,
            sample.consume_mb_per_sec,
            ack.p50_us / 1e3,
            ack.p99_us / 1e3,
            ack.max_us / 1e3,
            e2e.p50_us / 1e3,
            e2e.p99_us / 1e3,
            e2e.max_us / 1e3,
            backlog,
            sample.stolen_ms,
        );
    }
    *previous = now;
    sample
}

/// Runs a workload against `options.bootstrap` and returns what it measured.
pub fn run(options: &RunOptions) -> Result<Measured, String> {
    let workload = &options.workload;
    workload.validate()?;
    let topics = create_topics(options)?;
    let producers = producer_plans(workload, &topics);
    let consumers = consumer_plans(workload, &topics);
    let threads = options.threads.max(1);
    let shared = Arc::new(Shared {
        start: AtomicU64::new(0),
        measure_start: AtomicU64::new(u64::MAX),
        measure_end: AtomicU64::new(u64::MAX),
        ready: AtomicUsize::new(0),
        producers_done: AtomicUsize::new(0),
        stop_consumers: AtomicBool::new(false),
        consumers_go: AtomicBool::new(false),
        record_e2e: workload.consume_backlog_mb == 0,
        abort: AtomicBool::new(false),
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        acked_bytes: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        consumed_bytes: AtomicU64::new(0),
        errors: Mutex::new(Vec::new()),
    });
    let (report_sender, reports) = mpsc::channel();
    let slots: Vec<Arc<nudge::Slot>> = (0..threads).map(|_| Arc::default()).collect();
    let nudger = nudge::Nudger::start(slots.clone())?;
    // The nudger ends a sleep with runnable tasks queued once the run has
    // started; the wake watch also covers setup, before the nudge task
    // exists (where a 10,000-partition run once sat for four minutes).
    let watch = WakeWatch::start("perf-worker", threads, Timing::default())?;
    let mut handles = Vec::new();
    let mut rdkafka_threads = Vec::new();
    for (thread, slot) in slots.iter().enumerate() {
        let mine_producers: Vec<ProducerPlan> = if options.client == ClientKind::Sluice {
            producers
                .iter()
                .filter(|plan| plan.index as usize % threads == thread)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let mine_consumers: Vec<ConsumerPlan> = consumers
            .iter()
            .enumerate()
            .filter(|(index, _)| index % threads == thread)
            .map(|(_, plan)| plan.clone())
            .collect();
        let worker_options = options.clone();
        let worker_shared = Arc::clone(&shared);
        let sender = report_sender.clone();
        let slot = Arc::clone(slot);
        let heartbeat = watch
            .heartbeat(thread)
            .ok_or_else(|| format!("no heartbeat for worker {thread}"))?;
        let handle = spawn_watched(
            LocalExecutorBuilder::new(Placement::Unbound).preempt_timer(PREEMPT_TIMER),
            format!("perf-worker-{thread}"),
            heartbeat,
            move || {
                worker(
                    thread,
                    worker_options,
                    mine_producers,
                    mine_consumers,
                    worker_shared,
                    sender,
                    slot,
                )
            },
        )
        .map_err(|error| format!("cannot start a worker executor: {error}"))?;
        handles.push(handle);
    }
    let mut workers = threads;
    if options.client == ClientKind::Rdkafka {
        rdkafka_threads =
            crate::rdkafka_driver::start(options, &producers, &shared, report_sender.clone())?;
        workers += rdkafka_threads.len();
    }
    drop(report_sender);

    // Start everyone together once all clients are set up.
    let setup_deadline = Instant::now() + SETUP_TIMEOUT;
    while shared.ready.load(Ordering::Relaxed) < workers {
        if Instant::now() > setup_deadline {
            shared.abort.store(true, Ordering::Relaxed);
            return Err("clients did not connect within the setup timeout".to_string());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    let aborted = shared.abort.load(Ordering::Relaxed);
    let start = clock::now_nanos() + START_DELAY.as_nanos() as u64;
    let backlog = workload.consume_backlog_mb > 0;
    // In backlog mode every message counts: the "window" is the whole run.
    let (measure_start, measure_end) = if backlog {
        (start, u64::MAX)
    } else {
        let measure_start = start + workload.warmup_secs * NANOS_PER_SEC;
        (
            measure_start,
            measure_start + workload.duration_secs * NANOS_PER_SEC,
        )
    };
    shared.measure_start.store(measure_start, Ordering::Relaxed);
    shared
        .measure_end
        .store(if aborted { start } else { measure_end }, Ordering::Relaxed);
    shared.start.store(start, Ordering::Relaxed);

    let mut intervals = Vec::new();
    let mut previous = [0, 0, 0, 0, crate::cpu::stolen_ms()];
    let mut last = start;
    let interval = options.report_interval.as_nanos() as u64;
    // Backlog mode: when producing ended (consumers start) and when the
    // consumers had read everything.
    let mut produced_at: Option<u64> = None;
    let mut consumed_at: Option<u64> = None;
    // CPU counters at the start and the end of the measured window.
    let mut cpu_before: Option<cpu::Sample> = None;
    let mut cpu_after: Option<cpu::Sample> = None;
    if !aborted {
        std::thread::sleep(clock::instant_at(start).saturating_duration_since(Instant::now()));
        loop {
            std::thread::sleep(POLL_INTERVAL);
            let now = clock::now_nanos();
            if INTERRUPTED.load(Ordering::Relaxed) {
                shared.abort.store(true, Ordering::Relaxed);
                shared.note_error("interrupted".to_string());
            }
            if backlog {
                if produced_at.is_none() && shared.producers_done.load(Ordering::Relaxed) >= workers
                {
                    produced_at = Some(now);
                    shared.consumers_go.store(true, Ordering::Relaxed);
                }
                let caught_up =
                    shared.consumed.load(Ordering::Relaxed) >= shared.acked.load(Ordering::Relaxed);
                if consumed_at.is_none() && produced_at.is_some() && caught_up {
                    consumed_at = Some(now);
                }
            }
            let drain_over = produced_at
                .is_some_and(|at| now.saturating_sub(at) > options.drain_timeout.as_nanos() as u64);
            let finished = shared.abort.load(Ordering::Relaxed)
                || if backlog {
                    consumed_at.is_some() || drain_over
                } else {
                    now >= measure_end
                };
            if cpu_before.is_none() && now >= measure_start {
                cpu_before = Some(cpu::sample(&options.broker_pids));
            }
            if finished && cpu_after.is_none() {
                cpu_after = Some(cpu::sample(&options.broker_pids));
            }
            if now >= last + interval || finished {
                let at = if backlog { now } else { now.min(measure_end) };
                let elapsed = (at - start) as f64 / 1e9;
                let seconds = (at - last) as f64 / 1e9;
                intervals.push(progress(
                    options,
                    &shared,
                    elapsed,
                    seconds,
                    &mut previous,
                    &reports,
                ));
                last = at;
            }
            if finished {
                break;
            }
        }
    }

    // Drain: wait for producers to finish, then for consumers to catch up.
    let finish_deadline = Instant::now() + PRODUCER_FINISH_TIMEOUT;
    while shared.producers_done.load(Ordering::Relaxed) < workers {
        if Instant::now() > finish_deadline || INTERRUPTED.load(Ordering::Relaxed) {
            // Worker threads are left behind; the process exits soon.
            shared.abort.store(true, Ordering::Relaxed);
            shared.stop_consumers.store(true, Ordering::Relaxed);
            if options.delete_topics {
                delete_topics(options.client_config(), topics);
            }
            return Err(format!(
                "producers did not finish within {} s of the end of the run (is the broker stuck?); errors: {}",
                PRODUCER_FINISH_TIMEOUT.as_secs(),
                shared.errors.lock().map(|errors| errors.join("; ")).unwrap_or_default()
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    let drain_deadline = Instant::now() + options.drain_timeout;
    if !consumers.is_empty() && !backlog {
        while shared.consumed.load(Ordering::Relaxed) < shared.acked.load(Ordering::Relaxed)
            && Instant::now() < drain_deadline
            && !INTERRUPTED.load(Ordering::Relaxed)
        {
            std::thread::sleep(POLL_INTERVAL);
        }
    }
    let (produce_secs, consume_secs) = match (backlog, produced_at) {
        (true, Some(produced)) => {
            let consumed = consumed_at.unwrap_or_else(clock::now_nanos);
            (
                (produced - start) as f64 / 1e9,
                (consumed - produced) as f64 / 1e9,
            )
        }
        _ => (workload.duration_secs as f64, workload.duration_secs as f64),
    };
    shared.stop_consumers.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for handle in handles {
        match handle.join() {
            Ok(Ok(result)) => results.push(result),
            Ok(Err(error)) => return Err(format!("a worker executor failed: {error}")),
            Err(_) => return Err("a worker executor panicked".to_string()),
        }
    }
    // Every executor has ended: nothing is left to wake.
    drop(nudger);
    let interrupts = watch.interrupts();
    drop(watch);
    if interrupts > 0 {
        eprintln!(
            "note: the wake watch interrupted {interrupts} worker executor sleep(s) with work stranded (heartbeat overdue)"
        );
    }
    for thread in rdkafka_threads {
        results.push(
            thread
                .join()
                .map_err(|_| "an rdkafka producer thread panicked".to_string())?,
        );
    }
    while let Ok(report) = reports.try_recv() {
        drop(report);
    }

    let mut ack = stats::histogram();
    let mut request = stats::histogram();
    let mut e2e = stats::histogram();
    let mut measured = Measured {
        ack: stats::histogram(),
        request: stats::histogram(),
        e2e: stats::histogram(),
        produced_messages: 0,
        produced_bytes: 0,
        consumed_messages: 0,
        consumed_bytes: 0,
        total_sent: shared.sent.load(Ordering::Relaxed),
        total_acked: shared.acked.load(Ordering::Relaxed),
        total_failed: shared.failed.load(Ordering::Relaxed),
        total_consumed: shared.consumed.load(Ordering::Relaxed),
        produce_secs,
        consume_secs,
        cpu: match (&cpu_before, &cpu_after) {
            (Some(before), Some(after)) => cpu::usage(before, after),
            _ => cpu::Usage::default(),
        },
        intervals,
        errors: shared
            .errors
            .lock()
            .map(|errors| errors.clone())
            .unwrap_or_default(),
    };
    for result in results {
        if let Some(histogram) = &result.ack {
            stats::merge(&mut ack, histogram);
        }
        if let Some(histogram) = &result.request {
            stats::merge(&mut request, histogram);
        }
        if let Some(histogram) = &result.e2e {
            stats::merge(&mut e2e, histogram);
        }
        measured.produced_messages += result.produced_messages;
        measured.produced_bytes += result.produced_bytes;
        measured.consumed_messages += result.consumed_messages;
        measured.consumed_bytes += result.consumed_bytes;
    }
    measured.ack = ack;
    measured.request = request;
    measured.e2e = e2e;
    if options.delete_topics {
        delete_topics(options.client_config(), topics);
    }
    if aborted {
        return Err(format!(
            "the run could not start: {}",
            measured.errors.join("; ")
        ));
    }
    Ok(measured)
}

#[cfg(feature = "rdkafka")]
pub(crate) fn mark_ready(shared: &Shared) {
    shared.ready.fetch_add(1, Ordering::Relaxed);
}

#[cfg(feature = "rdkafka")]
pub(crate) fn mark_producers_done(shared: &Shared) {
    shared.producers_done.fetch_add(1, Ordering::Relaxed);
}

/// For drivers outside this module: the common start, once set.
#[cfg(feature = "rdkafka")]
pub(crate) fn start_of(shared: &Shared) -> u64 {
    shared.start.load(Ordering::Relaxed)
}

#[cfg(feature = "rdkafka")]
pub(crate) fn aborted(shared: &Shared) -> bool {
    shared.abort.load(Ordering::Relaxed)
}
