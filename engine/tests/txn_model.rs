//! Model-based property test of the partition's transaction state.
//!
//! Random sequences of transactional and plain appends, commit and abort
//! markers (with the producer's epoch, a bumped one, or a stale one that must
//! be fenced; of transaction version 0 or 2), DeleteRecords and retention,
//! truncations, clean restarts and power losses through
//! `MemStorage::crash` run against `PartitionLog<MemStorage>` and against a
//! plain model: the list of batches in the log, the log start (DeleteRecords)
//! and the first offset retention kept. From those alone the
//! model derives, by its own replay, every producer's epoch and open
//! transaction, the aborted transactions with their last stable offsets, and
//! the last stable offset of the partition. After every operation the log's
//! `offsets().lso`, `aborted_txns` over random ranges,
//! `ongoing_txn_first_offset` and `producers()` must agree with it, whatever
//! restarts, crashes and truncations happened in between.
//!
//! Runs are deterministic per seed. `SLUICE_TXN_MODEL_SEEDS` adds seeds: a
//! comma separated list of numbers and `start..end` ranges. A failing run
//! prints its seed and its last operations.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use glommio::LocalExecutorBuilder;
use sluice_engine::batch::{self, attributes, BuildBatch};
use sluice_engine::log::{LogConfig, PartitionLog};
use sluice_engine::storage::{MemStorage, Storage};
use sluice_engine::{AbortedTxn, AppendError, BatchCache, ProducerError, ProducerInfo, TxnMarker};

/// Seeds every run of `cargo test` covers.
const SEEDS_DEFAULT: std::ops::Range<u64> = 1..25;
/// Operations per seed.
const OPERATIONS_PER_RUN: usize = 400;
/// Transactional producers, with ids from this one on.
const PRODUCERS: i64 = 4;
const PRODUCER_ID_FIRST: i64 = 5000;
/// Records in one data batch, at most.
const BATCH_RECORDS_MAX: i64 = 5;
/// Bytes of one record value, at most: segments of a few pages roll often.
const VALUE_BYTES_MAX: i64 = 600;
/// Segment sizes drawn per run.
const SEGMENT_BYTES_MIN: i64 = 4096;
const SEGMENT_BYTES_MAX: i64 = 32 * 1024;
/// How long a dropped log may take to be freed by its finishing tasks.
const DROP_WAIT_MAX: Duration = Duration::from_secs(2);
/// Operations kept in the trace printed when a run fails.
const TRACE_LINES_MAX: usize = 40;
const TIMESTAMP_START: i64 = 1_700_000_000_000;

/// xorshift64*: small, deterministic, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn between(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    fn percent(&mut self, chance: u64) -> bool {
        self.below(100) < chance
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A batch without a producer id.
    Plain,
    /// An idempotent or transactional producer's data batch.
    Data {
        producer_id: i64,
        epoch: i16,
        last_sequence: i32,
        transactional: bool,
    },
    Marker {
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    },
}

#[derive(Clone, Copy, Debug)]
struct ModelBatch {
    base: i64,
    last: i64,
    kind: Kind,
}

/// What the model derives for one producer.
#[derive(Clone, Copy, Debug, Default)]
struct ModelProducer {
    epoch: i16,
    /// The next sequence in `epoch`.
    next_sequence: i32,
    txn_first_offset: Option<i64>,
    coordinator_epoch: i32,
}

/// Everything the model derives from its batches.
struct Derived {
    producers: HashMap<i64, ModelProducer>,
    aborted: Vec<AbortedTxn>,
}

struct Model {
    batches: Vec<ModelBatch>,
    leo: i64,
    durable: i64,
    log_start: i64,
    /// Retention deleted every segment below this offset, and their
    /// aborted-transaction entries with them (producer state stays).
    deleted_below: i64,
}

impl Model {
    /// Replays the batches from scratch, as Kafka defines transactions.
    fn derive(&self) -> Derived {
        let mut producers: HashMap<i64, ModelProducer> = HashMap::new();
        let mut aborted = Vec::new();
        for batch in &self.batches {
            match batch.kind {
                Kind::Plain => {}
                Kind::Data {
                    producer_id,
                    epoch,
                    last_sequence,
                    transactional,
                    ..
                } => {
                    let entry = producers.entry(producer_id).or_insert(ModelProducer {
                        coordinator_epoch: -1,
                        ..Default::default()
                    });
                    entry.epoch = epoch;
                    entry.next_sequence = last_sequence + 1;
                    if transactional && entry.txn_first_offset.is_none() {
                        entry.txn_first_offset = Some(batch.base);
                    }
                }
                Kind::Marker {
                    producer_id,
                    epoch,
                    commit,
                    coordinator_epoch,
                } => {
                    let entry = producers.entry(producer_id).or_insert(ModelProducer {
                        coordinator_epoch: -1,
                        ..Default::default()
                    });
                    if entry.epoch != epoch {
                        entry.next_sequence = 0;
                    }
                    entry.epoch = epoch;
                    entry.coordinator_epoch = coordinator_epoch;
                    if let Some(first) = entry.txn_first_offset.take() {
                        if !commit {
                            let still_open = producers
                                .values()
                                .filter_map(|producer| producer.txn_first_offset)
                                .min();
                            if batch.base < self.deleted_below {
                                continue;
                            }
                            aborted.push(AbortedTxn {
                                producer_id,
                                first_offset: first,
                                last_offset: batch.base,
                                last_stable_offset: still_open.unwrap_or(batch.base + 1),
                            });
                        }
                    }
                }
            }
        }
        Derived { producers, aborted }
    }

    fn lso(&self, derived: &Derived) -> i64 {
        derived
            .producers
            .values()
            .filter_map(|producer| producer.txn_first_offset)
            .min()
            .unwrap_or(self.leo)
            .min(self.leo)
            .max(self.log_start)
    }

    fn push(&mut self, records: i64, kind: Kind) -> ModelBatch {
        let batch = ModelBatch {
            base: self.leo,
            last: self.leo + records - 1,
            kind,
        };
        self.batches.push(batch);
        self.leo = batch.last + 1;
        batch
    }

    /// Keeps the batches below `leo`, which must be a batch boundary.
    fn cut_to(&mut self, leo: i64) {
        self.batches.retain(|batch| batch.last < leo);
        let end = self.batches.last().map_or(0, |batch| batch.last + 1);
        assert_eq!(end, leo, "the log was cut inside a batch");
        self.leo = leo;
        self.durable = self.durable.min(leo);
        self.log_start = self.log_start.min(leo);
    }
}

/// The last operations, printed if the run panics.
struct Trace {
    seed: u64,
    lines: Vec<String>,
}

impl Trace {
    fn push(&mut self, line: String) {
        if self.lines.len() == TRACE_LINES_MAX {
            self.lines.remove(0);
        }
        self.lines.push(line);
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "txn model run with seed {} failed; last operations:",
                self.seed
            );
            for line in &self.lines {
                eprintln!("  {line}");
            }
        }
    }
}

struct Run {
    rng: Rng,
    trace: Trace,
    model: Model,
    storage: MemStorage,
    dir: PathBuf,
    config: LogConfig,
    cache: Rc<BatchCache>,
    log: Rc<PartitionLog<MemStorage>>,
    timestamp: i64,
}

async fn open(
    storage: &MemStorage,
    dir: &Path,
    config: &LogConfig,
    cache: &Rc<BatchCache>,
) -> Rc<PartitionLog<MemStorage>> {
    match PartitionLog::open(
        storage.clone(),
        dir.to_path_buf(),
        config.clone(),
        Rc::clone(cache),
    )
    .await
    {
        Ok(log) => log,
        Err(error) => panic!("opening the log failed: {error}"),
    }
}

async fn drop_log(log: Rc<PartitionLog<MemStorage>>) {
    let weak: Weak<PartitionLog<MemStorage>> = Rc::downgrade(&log);
    drop(log);
    let started = std::time::Instant::now();
    while weak.strong_count() > 0 {
        assert!(
            started.elapsed() < DROP_WAIT_MAX,
            "a dropped log is still held by its tasks"
        );
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

impl Run {
    fn pick_producer(&mut self) -> i64 {
        PRODUCER_ID_FIRST + self.rng.below(PRODUCERS as u64) as i64
    }

    fn data_batch(&mut self, records: i64, options: BuildBatch) -> Bytes {
        let size = self.rng.between(1, VALUE_BYTES_MAX) as usize;
        let value = vec![b'x'; size];
        let values: Vec<&[u8]> = (0..records).map(|_| value.as_slice()).collect();
        self.timestamp += 1;
        Bytes::from(batch::build_batch_with(
            BuildBatch {
                base_timestamp: self.timestamp,
                ..options
            },
            &values,
        ))
    }

    fn append_bytes(&mut self, bytes: Bytes) -> Result<sluice_engine::Appended, AppendError> {
        let header = batch::validate(&bytes, usize::MAX).expect("built batches are valid");
        self.log.append(&[(header, bytes)])
    }

    /// A producer's next data batch: transactional mostly, sometimes only
    /// idempotent, sometimes from a re-initialised producer (a new epoch).
    fn produce(&mut self) {
        let producer_id = self.pick_producer();
        let derived = self.model.derive();
        let known = derived.producers.get(&producer_id).copied();
        let (mut epoch, mut sequence) = known.map_or((0, 0), |p| (p.epoch, p.next_sequence));
        if known.is_some() && self.rng.percent(5) {
            epoch += 1;
            sequence = 0;
        }
        let transactional = self.rng.percent(85);
        let records = self.rng.between(1, BATCH_RECORDS_MAX);
        let bytes = self.data_batch(
            records,
            BuildBatch {
                producer_id,
                producer_epoch: epoch,
                base_sequence: sequence,
                attributes: if transactional {
                    attributes::TRANSACTIONAL
                } else {
                    0
                },
                ..BuildBatch::default()
            },
        );
        let appended = match self.append_bytes(bytes) {
            Ok(appended) => appended,
            Err(error) => panic!("producer {producer_id} epoch {epoch} seq {sequence}: {error}"),
        };
        let batch = self.model.push(
            records,
            Kind::Data {
                producer_id,
                epoch,
                last_sequence: sequence + records as i32 - 1,
                transactional,
            },
        );
        self.trace.push(format!(
            "data pid {producer_id} epoch {epoch} seq {sequence} txn {transactional} -> {}..={}",
            batch.base, batch.last
        ));
        assert_eq!(appended.base_offset.0, batch.base);
        assert_eq!(appended.last_offset.0, batch.last);
    }

    fn plain(&mut self) {
        let records = self.rng.between(1, BATCH_RECORDS_MAX);
        let bytes = self.data_batch(records, BuildBatch::default());
        let appended = self.append_bytes(bytes).expect("plain append");
        let batch = self.model.push(records, Kind::Plain);
        self.trace
            .push(format!("plain -> {}..={}", batch.base, batch.last));
        assert_eq!(appended.base_offset.0, batch.base);
    }

    /// A coordinator ends a transaction: with the producer's epoch, a bumped
    /// one, or (to be fenced) an older one; of transaction version 0 or 2,
    /// where a version 2 marker at the epoch of a transaction open here is
    /// not the bumped one that ends it, and is refused (KIP-1228).
    fn marker(&mut self) {
        let producer_id = self.pick_producer();
        let derived = self.model.derive();
        let producer = derived.producers.get(&producer_id);
        let current = producer.map(|p| p.epoch);
        let open = producer.is_some_and(|p| p.txn_first_offset.is_some());
        let (epoch, fenced) = match (current, self.rng.below(10)) {
            (Some(epoch), 0) if epoch > 0 => (epoch - 1, true),
            (Some(epoch), 1..=3) => (epoch + 1, false),
            (Some(epoch), _) => (epoch, false),
            (None, _) => (self.rng.between(0, 3) as i16, false),
        };
        let transaction_version = if self.rng.percent(50) {
            TxnMarker::EPOCH_BUMP_TRANSACTION_VERSION
        } else {
            0
        };
        let not_bumped = transaction_version >= TxnMarker::EPOCH_BUMP_TRANSACTION_VERSION
            && current == Some(epoch)
            && open;
        let marker = TxnMarker {
            producer_id,
            producer_epoch: epoch,
            commit: self.rng.percent(50),
            coordinator_epoch: self.rng.between(0, 5) as i32,
            transaction_version,
        };
        self.trace.push(format!(
            "marker {marker:?} (fenced {fenced}, not bumped {not_bumped})"
        ));
        match self.log.append_marker(marker) {
            Ok(appended) => {
                assert!(!fenced, "a marker with a stale epoch was accepted");
                assert!(
                    !not_bumped,
                    "a version 2 marker at the open transaction's epoch was accepted"
                );
                let batch = self.model.push(
                    1,
                    Kind::Marker {
                        producer_id,
                        epoch,
                        commit: marker.commit,
                        coordinator_epoch: marker.coordinator_epoch,
                    },
                );
                assert_eq!(appended.base_offset.0, batch.base);
                assert_eq!(appended.last_offset.0, batch.base);
            }
            Err(AppendError::Producer(ProducerError::InvalidEpoch { current, got })) => {
                assert!(fenced, "marker refused: epoch {got} < {current}");
            }
            Err(AppendError::Producer(ProducerError::MarkerEpochNotBumped { current, got })) => {
                assert!(
                    not_bumped,
                    "marker refused: epoch {got} not above {current}"
                );
            }
            Err(error) => panic!("marker append failed: {error}"),
        }
    }

    async fn wait_durable(&mut self) {
        let leo = self.model.leo;
        self.log.wait_durable(leo).await.expect("wait durable");
        self.model.durable = leo;
        self.trace.push(format!("durable {leo}"));
    }

    /// Cuts the log at the batch holding a random offset.
    async fn truncate(&mut self) {
        if self.model.batches.is_empty() {
            return;
        }
        let at = self.rng.below(self.model.batches.len() as u64) as usize;
        let batch = self.model.batches[at];
        if batch.last < self.model.log_start {
            return;
        }
        let offset = self
            .rng
            .between(batch.base.max(self.model.log_start), batch.last);
        self.trace
            .push(format!("truncate to {offset} (batch {}..)", batch.base));
        self.log.truncate_to(offset).await.expect("truncate");
        self.model.cut_to(batch.base);
    }

    /// DeleteRecords up to a durable offset (so a crash cannot leave the
    /// log start past the recovered end), then retention by log start.
    async fn delete_and_retain(&mut self) {
        let leo = self.model.leo;
        self.log.wait_durable(leo).await.expect("durable");
        self.model.durable = leo;
        if self.rng.percent(70) {
            let offset = self.rng.between(self.model.log_start, leo);
            let start = self
                .log
                .delete_records_before(offset)
                .await
                .expect("delete records");
            self.model.log_start = self.model.log_start.max(offset);
            assert_eq!(start, self.model.log_start, "log start after DeleteRecords");
        }
        let deleted = self
            .log
            .enforce_retention(TIMESTAMP_START)
            .await
            .expect("retention");
        let listed = self.first_listed_segment().await;
        self.trace.push(format!(
            "delete records to {}, retention deleted {deleted} segments, first segment {listed}",
            self.model.log_start
        ));
        self.model.deleted_below = listed;
        self.model.log_start = self.model.log_start.max(listed);
    }

    /// The base offset of the first segment file on disk.
    async fn first_listed_segment(&self) -> i64 {
        let names = self
            .storage
            .list_dir(&self.dir)
            .await
            .expect("list the log");
        names
            .iter()
            .filter_map(|name| name.strip_suffix(".log"))
            .filter_map(|digits| digits.parse::<i64>().ok())
            .min()
            .unwrap_or(self.model.leo)
    }

    async fn clean_restart(&mut self) {
        self.trace.push("clean restart".into());
        self.log.close().await.expect("close");
        self.model.durable = self.model.leo;
        let storage = self.storage.snapshot();
        self.reopen(storage).await;
        assert_eq!(
            self.log.offsets().leo,
            self.model.leo,
            "leo after a clean restart"
        );
    }

    async fn crash_restart(&mut self) {
        self.trace.push("crash restart".into());
        let storage = self.storage.crash();
        self.reopen(storage).await;
        let leo = self.log.offsets().leo;
        self.trace.push(format!(
            "  recovered leo {leo} (model leo {}, durable {})",
            self.model.leo, self.model.durable
        ));
        assert!(
            leo >= self.model.durable,
            "acknowledged offsets lost: {leo} < {}",
            self.model.durable
        );
        assert!(leo <= self.model.leo, "recovery invented offsets");
        self.model.cut_to(leo);
    }

    async fn reopen(&mut self, storage: MemStorage) {
        let log = open(&storage, &self.dir, &self.config, &self.cache).await;
        let old = std::mem::replace(&mut self.log, log);
        self.storage = storage;
        drop_log(old).await;
    }

    async fn yield_some(&mut self) {
        for _ in 0..self.rng.between(1, 8) {
            futures_lite::future::yield_now().await;
        }
    }

    /// The log's transaction state must be the model's.
    async fn verify(&mut self) {
        let derived = self.model.derive();
        let offsets = self.log.offsets();
        assert_eq!(offsets.leo, self.model.leo, "log end");
        assert_eq!(offsets.log_start, self.model.log_start, "log start");
        assert_eq!(offsets.lso, self.model.lso(&derived), "last stable offset");
        for id in PRODUCER_ID_FIRST..PRODUCER_ID_FIRST + PRODUCERS {
            let expected = derived
                .producers
                .get(&id)
                .and_then(|producer| producer.txn_first_offset);
            assert_eq!(
                self.log.ongoing_txn_first_offset(id),
                expected,
                "open transaction of producer {id}"
            );
        }
        let described: BTreeMap<i64, ProducerInfo> = self
            .log
            .producers()
            .into_iter()
            .map(|info| (info.producer_id, info))
            .collect();
        for (id, producer) in &derived.producers {
            let Some(info) = described.get(id) else {
                panic!("producer {id} is not described");
            };
            assert_eq!(
                info.producer_epoch, producer.epoch,
                "epoch of producer {id}"
            );
            assert_eq!(
                info.current_txn_start_offset,
                producer.txn_first_offset.unwrap_or(-1),
                "described transaction start of producer {id}"
            );
            assert_eq!(
                info.coordinator_epoch, producer.coordinator_epoch,
                "coordinator epoch of producer {id}"
            );
        }
        // Every range, and a few random ones.
        let all = self
            .log
            .aborted_txns(0, i64::MAX)
            .await
            .expect("aborted transactions");
        assert_eq!(all, derived.aborted, "all aborted transactions");
        for _ in 0..4 {
            let from = self.rng.between(0, self.model.leo);
            let upper = self.rng.between(from, self.model.leo + 1);
            let expected: Vec<AbortedTxn> = derived
                .aborted
                .iter()
                .filter(|txn| txn.last_offset >= from && txn.first_offset < upper)
                .copied()
                .collect();
            let found = self
                .log
                .aborted_txns(from, upper)
                .await
                .expect("aborted transactions");
            assert_eq!(found, expected, "aborted transactions in [{from}, {upper})");
        }
    }
}

async fn run(seed: u64) {
    let mut rng = Rng::new(seed);
    let config = LogConfig {
        segment_bytes: rng.between(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX) as u64,
        segment_ms: i64::MAX,
        retention_ms: -1,
        retention_bytes: -1,
        index_interval_bytes: 1024,
        preallocate: false,
        // Small intervals so crash restarts resume from recovery points.
        recovery_point_interval_bytes: if rng.percent(60) {
            rng.between(1, 16 * 1024) as u64
        } else {
            LogConfig::default().recovery_point_interval_bytes
        },
        ..LogConfig::default()
    };
    let cache = BatchCache::new(256 * 1024 * 1024);
    let storage = MemStorage::new(seed);
    let dir = PathBuf::from("/data/txn-model-0");
    let log = open(&storage, &dir, &config, &cache).await;
    let mut trace = Trace {
        seed,
        lines: Vec::new(),
    };
    trace.push(format!("config {config:?}"));
    let mut run = Run {
        rng,
        trace,
        model: Model {
            batches: Vec::new(),
            leo: 0,
            durable: 0,
            log_start: 0,
            deleted_below: 0,
        },
        storage,
        dir,
        config,
        cache,
        log,
        timestamp: TIMESTAMP_START,
    };
    for _ in 0..OPERATIONS_PER_RUN {
        match run.rng.below(100) {
            0..=39 => run.produce(),
            40..=47 => run.plain(),
            48..=67 => run.marker(),
            68..=77 => run.wait_durable().await,
            78..=80 => run.truncate().await,
            92..=94 => run.delete_and_retain().await,
            81..=85 => run.clean_restart().await,
            86..=91 => run.crash_restart().await,
            _ => run.yield_some().await,
        }
        run.verify().await;
    }
    run.crash_restart().await;
    run.verify().await;
}

/// Seeds from `SLUICE_TXN_MODEL_SEEDS`: `7,9,100..200`.
fn extra_seeds() -> Vec<u64> {
    let Ok(spec) = std::env::var("SLUICE_TXN_MODEL_SEEDS") else {
        return Vec::new();
    };
    let mut seeds = Vec::new();
    for part in spec
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        match part.split_once("..") {
            Some((start, end)) => {
                let start: u64 = start.parse().expect("bad range start");
                let end: u64 = end.parse().expect("bad range end");
                seeds.extend(start..end);
            }
            None => seeds.push(part.parse().expect("bad seed")),
        }
    }
    seeds
}

#[test]
fn transaction_state_agrees_with_model() {
    let mut seeds: Vec<u64> = SEEDS_DEFAULT.collect();
    seeds.extend(extra_seeds());
    for seed in seeds {
        let handle = LocalExecutorBuilder::default()
            .name("txn-model")
            .spawn(move || run(seed))
            .expect("start an executor");
        if handle.join().is_err() {
            panic!("txn model run with seed {seed} failed (SLUICE_TXN_MODEL_SEEDS={seed})");
        }
    }
}

/// An aborted transaction's index entry lives in the segment of its marker:
/// it is read back from `.txnindex` after a restart and leaves with the
/// segment when retention deletes it (here after DeleteRecords).
#[test]
fn aborted_index_follows_its_segment() {
    let handle = LocalExecutorBuilder::default()
        .name("txn-retention")
        .spawn(|| async {
            let config = LogConfig {
                segment_bytes: 4096,
                segment_ms: i64::MAX,
                retention_ms: -1,
                retention_bytes: -1,
                preallocate: false,
                ..LogConfig::default()
            };
            let cache = BatchCache::new(64 * 1024 * 1024);
            let storage = MemStorage::new(1);
            let dir = PathBuf::from("/data/txn-retention-0");
            let log = open(&storage, &dir, &config, &cache).await;
            let value = vec![b'v'; 1000];
            let data = |producer_id: i64, sequence: i32, transactional: bool| {
                let bytes = Bytes::from(batch::build_batch_with(
                    BuildBatch {
                        base_timestamp: TIMESTAMP_START,
                        producer_id,
                        producer_epoch: 0,
                        base_sequence: sequence,
                        attributes: if transactional {
                            attributes::TRANSACTIONAL
                        } else {
                            0
                        },
                    },
                    &[value.as_slice()],
                ));
                let header = batch::validate(&bytes, usize::MAX).expect("valid");
                (header, bytes)
            };
            let first = log
                .append(&[data(1, 0, true)])
                .expect("append")
                .base_offset
                .0;
            assert_eq!(
                log.offsets().lso,
                first,
                "an open transaction holds the LSO"
            );
            log.append(&[data(1, 1, true)]).expect("append");
            let abort = TxnMarker {
                producer_id: 1,
                producer_epoch: 0,
                commit: false,
                coordinator_epoch: 0,
                transaction_version: 0,
            };
            let marker = log.append_marker(abort).expect("marker").base_offset.0;
            // A second abort ends nothing: no entry with a made-up start.
            log.append_marker(abort).expect("marker");
            let expected = vec![AbortedTxn {
                producer_id: 1,
                first_offset: first,
                last_offset: marker,
                last_stable_offset: marker + 1,
            }];
            assert_eq!(
                log.aborted_txns(0, i64::MAX).await.expect("aborted"),
                expected
            );
            assert_eq!(log.offsets().lso, log.offsets().hw);
            // A stale epoch is fenced.
            let stale = TxnMarker {
                producer_epoch: -1,
                ..abort
            };
            assert!(matches!(
                log.append_marker(stale),
                Err(AppendError::Producer(ProducerError::InvalidEpoch { .. }))
            ));
            for sequence in 0..12 {
                log.append(&[data(2, sequence, false)]).expect("append");
            }
            let leo = log.offsets().leo;
            log.wait_durable(leo).await.expect("durable");
            // Let the writer seal and finalize the rolled segments.
            for _ in 0..50 {
                glommio::timer::sleep(Duration::from_millis(2)).await;
            }
            assert!(log.segment_count() > 2);
            let marker_base = sluice_engine::log::segment_file_name(0, "txnindex");
            assert!(
                sluice_engine::storage::Storage::exists(&storage, &dir.join(&marker_base)),
                "the sealed segment's .txnindex is on disk"
            );
            log.close().await.expect("close");
            drop_log(log).await;
            let storage = storage.snapshot();
            let log = open(&storage, &dir, &config, &cache).await;
            assert_eq!(
                log.aborted_txns(0, i64::MAX).await.expect("aborted"),
                expected,
                "read back from the .txnindex"
            );
            assert!(log
                .aborted_txns(marker + 1, i64::MAX)
                .await
                .expect("aborted")
                .is_empty());
            assert!(log
                .aborted_txns(0, first)
                .await
                .expect("aborted")
                .is_empty());
            let hw = log.offsets().hw;
            log.delete_records_before(hw).await.expect("delete records");
            let deleted = log
                .enforce_retention(TIMESTAMP_START)
                .await
                .expect("retention");
            assert!(deleted > 0);
            assert!(log
                .aborted_txns(0, i64::MAX)
                .await
                .expect("aborted")
                .is_empty());
            assert!(!sluice_engine::storage::Storage::exists(
                &storage,
                &dir.join(&marker_base)
            ));
            log.close().await.expect("close");
            drop_log(log).await;
        })
        .expect("start an executor");
    assert!(handle.join().is_ok(), "the retention scenario failed");
}

/// A transactional append's guard (taken before the coordinator check) is
/// voided by a marker for its producer, and only by one for its producer,
/// unless the producer's transaction is open on the partition.
#[test]
fn txn_guard_is_voided_by_the_producers_marker() {
    let handle = LocalExecutorBuilder::default()
        .name("txn-guard")
        .spawn(|| async {
            let config = LogConfig {
                preallocate: false,
                ..LogConfig::default()
            };
            let cache = BatchCache::new(64 * 1024 * 1024);
            let storage = MemStorage::new(1);
            let dir = PathBuf::from("/data/txn-guard-0");
            let log = open(&storage, &dir, &config, &cache).await;
            let data = |producer_id: i64, sequence: i32| {
                let bytes = Bytes::from(batch::build_batch_with(
                    BuildBatch {
                        base_timestamp: TIMESTAMP_START,
                        producer_id,
                        producer_epoch: 0,
                        base_sequence: sequence,
                        attributes: attributes::TRANSACTIONAL,
                    },
                    &[b"v".as_slice()],
                ));
                let header = batch::validate(&bytes, usize::MAX).expect("valid");
                (header, bytes)
            };
            let abort = |producer_id: i64| TxnMarker {
                producer_id,
                producer_epoch: 0,
                commit: false,
                coordinator_epoch: 0,
                transaction_version: 0,
            };
            // Nothing happened meanwhile: the guard holds.
            let quiet = log.txn_guard(1);
            assert!(quiet.holds());
            drop(quiet);
            // Another producer's marker does not void it.
            let guard = log.txn_guard(1);
            log.append(&[data(2, 0)]).expect("append");
            log.append_marker(abort(2)).expect("marker");
            assert!(guard.holds(), "another producer's marker voided the guard");
            // Its own marker (a timeout abort) does.
            log.append_marker(abort(1)).expect("marker");
            assert!(
                !guard.holds(),
                "the producer's own marker left the guard holding"
            );
            drop(guard);
            // Once its transaction is open here, the guard holds again.
            let open_guard = log.txn_guard(1);
            log.append(&[data(1, 0)]).expect("append");
            log.append_marker(abort(3)).expect("marker");
            assert!(open_guard.holds());
            drop(open_guard);
            // A fresh guard starts from the current count.
            assert!(log.txn_guard(1).holds());
            log.close().await.expect("close");
            drop_log(log).await;
        })
        .expect("start an executor");
    handle.join().expect("txn guard test");
}
