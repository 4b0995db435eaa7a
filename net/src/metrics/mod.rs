//! Broker metrics, read by the admin port's thread without stopping a
//! shard.
//!
//! Two kinds of figures, kept two ways:
//! - **Counters a request bumps** (requests, errors and durations per
//!   Kafka API) are atomics in a [`ShardMetrics`] per shard. Only the shard
//!   that owns it writes them, so each is a plain load and store (no locked
//!   instruction), and each API's counters sit on cache lines of their own,
//!   so the admin thread's reads never share a line another shard writes.
//! - **Figures that live on a shard** (per-partition offsets and sizes,
//!   bytes per topic, committed offsets, batch-cache and executor figures)
//!   are gathered by the shard itself every
//!   [`METRICS_PUBLISH_INTERVAL`](crate::constants::METRICS_PUBLISH_INTERVAL)
//!   into an immutable [`ShardSnapshot`] that the admin thread clones an
//!   `Arc` of. A plain thread cannot wake a glommio executor, so asking a
//!   shard at scrape time would need a poll loop on every shard anyway;
//!   publishing on a timer costs each shard one walk over its partitions
//!   per interval whatever the scrape rate, and a scrape never waits on a
//!   shard: a stalled shard shows as a growing snapshot age, not as a
//!   stalled scrape.
//!
//! [`exposition`] writes both as Prometheus text.

pub mod exposition;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sluice_engine::ShardId;

use crate::constants::{METRICS_API_KEYS_MAX, REQUEST_DURATION_BUCKETS_MICROS};

/// Adds to a counter only its own shard writes: a load and a store instead
/// of a locked read-modify-write, which readers on other threads see whole
/// (every access is atomic) if a moment late.
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// Adds a duration to a histogram's sum and its bucket (counts per bucket,
/// not cumulative); returns it in microseconds.
fn record_duration(
    sum_micros: &AtomicU64,
    buckets: &[AtomicU64; REQUEST_DURATION_BUCKETS_MICROS.len()],
    took: Duration,
) -> u64 {
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    bump(sum_micros, micros);
    let bucket = REQUEST_DURATION_BUCKETS_MICROS.partition_point(|bound| *bound < micros);
    if let Some(count) = buckets.get(bucket) {
        bump(count, 1);
    }
    micros
}

/// The metrics of the whole process: one [`ShardMetrics`] per shard that
/// has started, and whether the broker is ready. Shared through the broker
/// configuration with every shard and with the admin port.
#[derive(Default)]
pub struct Metrics {
    /// By shard index. Locked when a shard starts and once per scrape.
    shards: Mutex<Vec<Option<Arc<ShardMetrics>>>>,
    ready: AtomicBool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics of `shard`, made on first use; called by the shard, so
    /// its counters are allocated on its own core's memory.
    pub fn register(&self, shard: ShardId) -> Arc<ShardMetrics> {
        let mut shards = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
        let index = usize::from(shard.0);
        if shards.len() <= index {
            shards.resize(index + 1, None);
        }
        Arc::clone(shards[index].get_or_insert_with(|| Arc::new(ShardMetrics::new(shard))))
    }

    /// Every started shard's metrics, in shard order.
    pub fn shards(&self) -> Vec<Arc<ShardMetrics>> {
        let shards = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
        shards.iter().flatten().cloned().collect()
    }

    /// Data loaded and listeners up (`true`): `/ready` answers 200; or
    /// shutting down (`false`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// One Kafka API's counters on one shard. Aligned so that no two APIs or
/// shards share a cache line (128: the adjacent-line prefetcher pairs
/// lines).
#[repr(align(128))]
#[derive(Default)]
struct ApiCounters {
    started: AtomicU64,
    finished: AtomicU64,
    errors: AtomicU64,
    duration_micros: AtomicU64,
    /// Requests per duration bucket, not cumulative: one bump each.
    buckets: [AtomicU64; REQUEST_DURATION_BUCKETS_MICROS.len()],
}

/// How long the requests of one shard waited between being decoded (their
/// handler task spawned) and that task's first run: queueing behind other
/// tasks of the shard, the thread descheduled, or the shard asleep with the
/// task runnable (glommio 0.9 can park with tasks queued, see
/// docs/architecture.md). Kafka's `RequestQueueTimeMs` says the same for
/// its request queue. The request-duration histogram starts after it.
#[repr(align(128))]
#[derive(Default)]
struct QueueCounters {
    count: AtomicU64,
    micros: AtomicU64,
    max_micros: AtomicU64,
    /// Requests per bucket, not cumulative, as `ApiCounters::buckets`.
    buckets: [AtomicU64; REQUEST_DURATION_BUCKETS_MICROS.len()],
}

/// What a shard's queue counters held when read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueTotals {
    pub count: u64,
    pub micros: u64,
    pub max_micros: u64,
    pub buckets: [u64; REQUEST_DURATION_BUCKETS_MICROS.len()],
}

/// What one API's counters held when read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiTotals {
    pub started: u64,
    pub finished: u64,
    pub errors: u64,
    pub duration_micros: u64,
    /// Requests per bucket of `REQUEST_DURATION_BUCKETS_MICROS`, not
    /// cumulative; the rest took longer than the last bound.
    pub buckets: [u64; REQUEST_DURATION_BUCKETS_MICROS.len()],
}

impl ApiTotals {
    /// Adds another shard's totals.
    pub fn add(&mut self, other: &ApiTotals) {
        self.started += other.started;
        self.finished += other.finished;
        self.errors += other.errors;
        self.duration_micros += other.duration_micros;
        for (sum, count) in self.buckets.iter_mut().zip(other.buckets) {
            *sum += count;
        }
    }
}

/// The counts of a shard's connections that connections are spread by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tally {
    /// Client connections the shard serves now.
    Connections,
    /// Of those, the ones that have fetched (consumers, followers): they
    /// carry the response bytes, so they are spread on their own.
    Fetching,
}

impl Tally {
    pub const ALL: [Tally; 2] = [Tally::Connections, Tally::Fetching];
}

/// One shard's metrics: written by that shard only, read by anyone.
pub struct ShardMetrics {
    pub shard: ShardId,
    /// By Kafka api key.
    apis: Box<[ApiCounters]>,
    queue: QueueCounters,
    /// Client connections this shard serves now.
    connections: AtomicU64,
    /// Of those, the ones that have fetched (consumers, followers): they
    /// carry the response bytes, so they are spread on their own.
    fetching: AtomicU64,
    /// Its client listeners are up and it is not stopping: other shards
    /// may hand it connections.
    accepting: AtomicBool,
    snapshot: Mutex<Arc<ShardSnapshot>>,
}

impl ShardMetrics {
    fn new(shard: ShardId) -> ShardMetrics {
        ShardMetrics {
            shard,
            apis: (0..METRICS_API_KEYS_MAX)
                .map(|_| ApiCounters::default())
                .collect(),
            queue: QueueCounters::default(),
            connections: AtomicU64::new(0),
            fetching: AtomicU64::new(0),
            accepting: AtomicBool::new(false),
            snapshot: Mutex::default(),
        }
    }

    fn api(&self, api_key: i16) -> Option<&ApiCounters> {
        usize::try_from(api_key)
            .ok()
            .and_then(|index| self.apis.get(index))
    }

    /// A request of `api_key` was decoded and its handler started.
    pub fn request_started(&self, api_key: i16) {
        if let Some(api) = self.api(api_key) {
            bump(&api.started, 1);
        }
    }

    /// A request of `api_key` was answered (or dropped) after `took`.
    pub fn request_finished(&self, api_key: i16, took: Duration) {
        let Some(api) = self.api(api_key) else {
            return;
        };
        record_duration(&api.duration_micros, &api.buckets, took);
        // Last, so that a reader that sees it counted sees its duration too
        // (a moment's skew either way only blurs one scrape).
        bump(&api.finished, 1);
    }

    /// A request's handler ran for the first time, `waited` after it was
    /// spawned.
    pub fn request_dequeued(&self, waited: Duration) {
        let queue = &self.queue;
        let micros = record_duration(&queue.micros, &queue.buckets, waited);
        if micros > queue.max_micros.load(Ordering::Relaxed) {
            queue.max_micros.store(micros, Ordering::Relaxed);
        }
        bump(&queue.count, 1);
    }

    fn tally_count(&self, tally: Tally) -> &AtomicU64 {
        match tally {
            Tally::Connections => &self.connections,
            Tally::Fetching => &self.fetching,
        }
    }

    /// A connection joined (`true`) or left one of this shard's tallies.
    pub fn count(&self, tally: Tally, joined: bool) {
        // Read-modify-write: a shard handing a connection over counts it on
        // the shard that will serve it.
        step(self.tally_count(tally), joined);
    }

    /// The connections in one of this shard's tallies now.
    pub fn counted(&self, tally: Tally) -> u64 {
        self.tally_count(tally).load(Ordering::Relaxed)
    }

    /// Whether other shards may hand this one connections (see `accepting`).
    pub fn set_accepting(&self, accepting: bool) {
        self.accepting.store(accepting, Ordering::Release);
    }

    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// The queue counters as they are now.
    pub fn queue_totals(&self) -> QueueTotals {
        let queue = &self.queue;
        let mut totals = QueueTotals {
            count: queue.count.load(Ordering::Relaxed),
            micros: queue.micros.load(Ordering::Relaxed),
            max_micros: queue.max_micros.load(Ordering::Relaxed),
            buckets: [0; REQUEST_DURATION_BUCKETS_MICROS.len()],
        };
        for (total, count) in totals.buckets.iter_mut().zip(&queue.buckets) {
            *total = count.load(Ordering::Relaxed);
        }
        totals
    }

    /// A request of `api_key` was answered with an error (see
    /// `ShardRecorder::request_failed` for which count).
    pub fn request_failed(&self, api_key: i16) {
        if let Some(api) = self.api(api_key) {
            bump(&api.errors, 1);
        }
    }

    /// The counters of `api_key` as they are now.
    pub fn api_totals(&self, api_key: i16) -> ApiTotals {
        let Some(api) = self.api(api_key) else {
            return ApiTotals::default();
        };
        // Finished before started: a request counted finished was counted
        // started before, so in-flight never reads negative.
        let finished = api.finished.load(Ordering::Relaxed);
        let mut totals = ApiTotals {
            started: api.started.load(Ordering::Relaxed),
            finished,
            errors: api.errors.load(Ordering::Relaxed),
            duration_micros: api.duration_micros.load(Ordering::Relaxed),
            buckets: [0; REQUEST_DURATION_BUCKETS_MICROS.len()],
        };
        for (total, count) in totals.buckets.iter_mut().zip(&api.buckets) {
            *total = count.load(Ordering::Relaxed);
        }
        totals
    }

    /// Replaces the published snapshot. Never blocks the shard: if the
    /// admin thread holds the lock this moment (it only clones an `Arc`
    /// under it), the snapshot is dropped and the next interval's goes out.
    pub fn publish(&self, snapshot: ShardSnapshot) -> bool {
        match self.snapshot.try_lock() {
            Ok(mut published) => {
                *published = Arc::new(snapshot);
                true
            }
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                *poisoned.into_inner() = Arc::new(snapshot);
                true
            }
            Err(std::sync::TryLockError::WouldBlock) => false,
        }
    }

    /// The last published snapshot (an empty one before the first).
    pub fn snapshot(&self) -> Arc<ShardSnapshot> {
        Arc::clone(&self.snapshot.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One partition's gauges, as its shard last saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionGauges {
    pub topic: String,
    pub partition: i32,
    pub log_start: i64,
    pub high_watermark: i64,
    pub log_end: i64,
    pub size_bytes: u64,
    /// This broker leads the partition.
    pub leader: bool,
    /// Led here with fewer in-sync replicas than replicas.
    pub under_replicated: bool,
}

/// Record-batch bytes of one topic through one shard's connections:
/// accepted by Produce, and returned by consumers' Fetch (followers'
/// fetches are replication, not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopicTraffic {
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A group's committed offset for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The executor's own figures, summed since the shard started (glommio
/// hands them out as differences since the last time they were asked).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExecutorFigures {
    /// Time spent running tasks and polling for I/O (not spinning or
    /// parked). Wall-clock time: it includes moments the kernel ran
    /// another thread on the shard's core.
    pub busy: Duration,
    /// CPU time the kernel charged the shard's thread, user and system:
    /// what the shard took from the machine, whoever else wanted the core.
    pub cpu: Duration,
    pub tasks_executed: u64,
    /// File reads and writes submitted to io_uring, and their bytes.
    pub file_reads: u64,
    pub file_read_bytes: u64,
    pub file_writes: u64,
    pub file_write_bytes: u64,
}

/// The log cleaner's work on one shard, summed since the shard started.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CleanerFigures {
    /// Cleaning passes that rewrote, merged or checked segments.
    pub passes: u64,
    /// Bytes the passes read and wrote (what `log_cleaner_io_max_bytes_per_second`
    /// limits).
    pub io_bytes: u64,
    /// Bytes of log the passes removed, and records.
    pub bytes_removed: u64,
    pub records_removed: u64,
    /// Time the shard ran the cleaner's task queue: the shard's time the
    /// cleaner took from produce and fetch.
    pub busy: Duration,
}

/// What a shard publishes every interval.
#[derive(Clone, Debug, Default)]
pub struct ShardSnapshot {
    /// When it was made; `None` for the empty one before the first.
    pub made: Option<Instant>,
    pub partitions: Vec<PartitionGauges>,
    pub topics: Vec<(String, TopicTraffic)>,
    pub committed: Vec<CommittedOffset>,
    pub cache_used_bytes: u64,
    pub cache_budget_bytes: u64,
    /// Log reads served from the batch cache, from disk, and from what
    /// was read from disk ahead of the reader, since start.
    pub reads_from_cache: u64,
    pub reads_from_disk: u64,
    pub reads_ahead: u64,
    /// Bytes read ahead and held for readers now.
    pub read_ahead_bytes: u64,
    /// Segment files counted open, the most kept open, and the idle ones
    /// closed to stay within that since start.
    pub segment_files_open: u64,
    pub segment_files_max: u64,
    pub segment_files_closed_for_room: u64,
    pub executor: ExecutorFigures,
    pub cleaner: CleanerFigures,
    /// Partitions without a leader in the metadata image; given by shard 0
    /// only, so that it is counted once.
    pub offline_partitions: Option<u64>,
}

/// A shard's side of the metrics, kept on the shard: its shared counters,
/// and the figures it publishes with its snapshot.
pub struct ShardRecorder {
    shared: Arc<ShardMetrics>,
    /// Whether anyone reads the figures (the admin port is on): without a
    /// reader no snapshot is made, so the per-topic counts, which only a
    /// snapshot prunes of deleted topics, are not kept at all.
    published: bool,
    /// Bytes per topic through this shard's connections; cumulative, and
    /// only for topics that still exist (pruned when a snapshot is made).
    topics: RefCell<HashMap<String, TopicTraffic>>,
    executor: Cell<ExecutorFigures>,
    cleaner: Cell<CleanerFigures>,
    /// The task queue the cleaner runs in, once it runs.
    cleaner_queue: Cell<Option<glommio::TaskQueueHandle>>,
}

impl ShardRecorder {
    pub fn new(shared: Arc<ShardMetrics>, published: bool) -> ShardRecorder {
        ShardRecorder {
            shared,
            published,
            topics: RefCell::default(),
            executor: Cell::default(),
            cleaner: Cell::default(),
            cleaner_queue: Cell::default(),
        }
    }

    pub fn shared(&self) -> &ShardMetrics {
        &self.shared
    }

    /// The shared counters, to hold past a borrow of the recorder.
    pub fn shared_arc(&self) -> Arc<ShardMetrics> {
        Arc::clone(&self.shared)
    }

    /// Counts an answer that carries a non-zero error code. Which answers
    /// are looked at: Produce and Fetch (an error code on any partition, or
    /// on the whole request); for the other APIs only a request answered by
    /// closing the connection. Reading every API's error fields would mean
    /// walking each encoded response.
    pub fn request_failed(&self, api_key: i16) {
        self.shared.request_failed(api_key);
    }

    fn traffic(&self, topic: &str, add: impl FnOnce(&mut TopicTraffic)) {
        if !self.published {
            return;
        }
        let mut topics = self.topics.borrow_mut();
        match topics.get_mut(topic) {
            Some(traffic) => add(traffic),
            None => {
                let mut traffic = TopicTraffic::default();
                add(&mut traffic);
                topics.insert(topic.to_string(), traffic);
            }
        }
    }

    /// Record-batch bytes a produce appended to `topic`.
    pub fn bytes_in(&self, topic: &str, bytes: u64) {
        self.traffic(topic, |traffic| traffic.bytes_in += bytes);
    }

    /// Record-batch bytes a consumer's fetch returned from `topic`.
    pub fn bytes_out(&self, topic: &str, bytes: u64) {
        self.traffic(topic, |traffic| traffic.bytes_out += bytes);
    }

    /// The per-topic bytes, dropping topics `exists` says are gone.
    pub fn topic_traffic(&self, exists: impl Fn(&str) -> bool) -> Vec<(String, TopicTraffic)> {
        let mut topics = self.topics.borrow_mut();
        topics.retain(|topic, _| exists(topic));
        let mut traffic: Vec<(String, TopicTraffic)> = topics
            .iter()
            .map(|(topic, traffic)| (topic.clone(), *traffic))
            .collect();
        traffic.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        traffic
    }

    /// The cleaner runs in `queue` (its own, so that its time is its own).
    pub fn set_cleaner_queue(&self, queue: glommio::TaskQueueHandle) {
        self.cleaner_queue.set(Some(queue));
    }

    /// One cleaning pass: its bytes of I/O and what it removed.
    pub fn cleaner_pass(&self, io_bytes: u64, bytes_removed: u64, records_removed: u64) {
        let mut figures = self.cleaner.get();
        figures.passes += 1;
        figures.io_bytes += io_bytes;
        figures.bytes_removed += bytes_removed;
        figures.records_removed += records_removed;
        self.cleaner.set(figures);
    }

    /// Adds the cleaner queue's run time since the last call and returns
    /// the totals. Only this recorder asks glommio for it: glommio resets a
    /// queue's figures on every read.
    pub fn cleaner_figures(&self) -> CleanerFigures {
        let mut figures = self.cleaner.get();
        if let Some(queue) = self.cleaner_queue.get() {
            if let Ok(stats) = glommio::executor().task_queue_stats(queue) {
                figures.busy += stats.runtime();
            }
        }
        self.cleaner.set(figures);
        figures
    }

    /// Adds the executor's figures since the last call and returns the
    /// totals. Only this recorder asks glommio for them: glommio resets
    /// them on every read.
    pub fn executor_figures(&self) -> ExecutorFigures {
        let executor = glommio::executor();
        let stats = executor.executor_stats();
        let io = executor.io_stats().all_rings();
        let mut figures = self.executor.get();
        figures.busy += stats.total_runtime();
        figures.tasks_executed += stats.tasks_executed();
        let (reads, read_bytes) = io.file_reads();
        let (writes, write_bytes) = io.file_writes();
        figures.file_reads += reads;
        figures.file_read_bytes += read_bytes;
        figures.file_writes += writes;
        figures.file_write_bytes += write_bytes;
        // A total the kernel keeps, not a figure since the last call.
        if let Some(cpu) = thread_cpu_time() {
            figures.cpu = cpu;
        }
        self.executor.set(figures);
        figures
    }
}

/// The calling thread's CPU time so far, user and system; `None` where
/// the kernel does not answer.
fn thread_cpu_time() -> Option<Duration> {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid timespec for the call to fill.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    if status != 0 {
        return None;
    }
    let seconds = u64::try_from(time.tv_sec).ok()?;
    let nanos = u32::try_from(time.tv_nsec).ok()?;
    Some(Duration::new(seconds, nanos))
}

/// Counts one up or down; down never wraps below zero.
fn step(count: &AtomicU64, up: bool) {
    if up {
        count.fetch_add(1, Ordering::Relaxed);
    } else {
        let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
            Some(open.saturating_sub(1))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index of the bucket whose upper bound is `micros`.
    fn bucket(micros: u64) -> usize {
        match REQUEST_DURATION_BUCKETS_MICROS
            .iter()
            .position(|bound| *bound == micros)
        {
            Some(index) => index,
            None => panic!("no bucket ends at {micros} us"),
        }
    }

    #[test]
    fn queue_waits_are_bucketed_and_the_longest_is_kept() {
        let metrics = Metrics::default();
        let shard = metrics.register(ShardId(0));
        shard.request_dequeued(Duration::from_micros(40));
        shard.request_dequeued(Duration::from_millis(120));
        shard.request_dequeued(Duration::from_millis(3));
        let totals = shard.queue_totals();
        assert_eq!(totals.count, 3);
        assert_eq!(totals.micros, 40 + 120_000 + 3_000);
        assert_eq!(totals.max_micros, 120_000);
        assert_eq!(totals.buckets[bucket(50)], 1, "40 us is within 50 us");
        assert_eq!(totals.buckets[bucket(5_000)], 1, "3 ms is within 5 ms");
        assert_eq!(
            totals.buckets[bucket(250_000)],
            1,
            "120 ms is within 250 ms"
        );
        let text = exposition::render(
            &metrics,
            &exposition::ProcessFigures::default(),
            Instant::now(),
        );
        assert!(text.contains("sluice_request_queue_seconds_max{shard=\"0\"} 0.12\n"));
        assert!(text.contains("sluice_request_queue_seconds_bucket{shard=\"0\",le=\"0.0001\"} 1\n"));
        assert!(text.contains("sluice_request_queue_seconds_bucket{shard=\"0\",le=\"0.1\"} 2\n"));
        assert!(text.contains("sluice_request_queue_seconds_bucket{shard=\"0\",le=\"0.25\"} 3\n"));
    }

    #[test]
    fn durations_fall_in_the_first_bucket_that_holds_them() {
        let metrics = Metrics::default();
        let shard = metrics.register(ShardId(1));
        shard.request_started(0);
        shard.request_finished(0, Duration::from_micros(100));
        shard.request_started(0);
        shard.request_finished(0, Duration::from_micros(101));
        shard.request_started(0);
        shard.request_finished(0, Duration::from_secs(60));
        shard.request_started(0);
        let totals = shard.api_totals(0);
        assert_eq!(totals.started, 4);
        assert_eq!(totals.finished, 3);
        assert_eq!(totals.buckets[bucket(100)], 1, "100 us is within 100 us");
        assert_eq!(totals.buckets[bucket(150)], 1, "101 us is past 100 us");
        assert_eq!(
            totals.buckets.iter().sum::<u64>(),
            2,
            "60 s is past the last bound"
        );
        assert_eq!(totals.duration_micros, 60_000_201);
        // Keys outside the table are ignored, not a panic.
        shard.request_started(-1);
        shard.request_finished(i16::MAX, Duration::ZERO);
        assert_eq!(metrics.shards().len(), 1);
    }

    #[test]
    fn every_implemented_api_has_counters() {
        for (key, _) in crate::handlers::IMPLEMENTED {
            assert!((*key as i16 as usize) < METRICS_API_KEYS_MAX, "{key:?}");
        }
    }

    #[test]
    fn a_snapshot_replaces_the_last() {
        let metrics = Metrics::default();
        let shard = metrics.register(ShardId(0));
        assert!(shard.snapshot().made.is_none());
        let snapshot = ShardSnapshot {
            made: Some(Instant::now()),
            cache_used_bytes: 7,
            ..ShardSnapshot::default()
        };
        assert!(shard.publish(snapshot));
        assert_eq!(shard.snapshot().cache_used_bytes, 7);
        assert!(Arc::ptr_eq(&metrics.register(ShardId(0)), &shard));
    }
}
