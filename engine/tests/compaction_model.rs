//! Model-based test of log compaction.
//!
//! Random keyed appends (plain, idempotent and transactional batches, with
//! tombstones and records without keys), commit and abort markers, cleaning
//! passes, clean restarts, power losses (`MemStorage::crash`, also while a
//! pass waits on the sync of its cleaned copy) run against
//! `PartitionLog<MemStorage>` and a model: every record ever appended and
//! how its transaction ended. After each step the whole stable log is read
//! back as a `read_committed` consumer would, and:
//! - every record read is the model's record at that offset (nothing
//!   invented, nothing moved), offsets only rise;
//! - the latest committed value of every key is there (a tombstone may be
//!   gone once cleaned and expired);
//! - below the cleaner checkpoint no record is superseded, keyless or
//!   aborted: compaction happened;
//! - a read may start at any offset, also one whose record was removed.
//!
//! Deterministic per seed; `SLUICE_COMPACTION_MODEL_SEEDS` adds seeds.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::{drop_log, open_log_with, Rng};
use glommio::LocalExecutorBuilder;
use sluice_engine::batch::{self, attributes, BatchHeader, BuildBatch, BATCH_HEADER_BYTES};
use sluice_engine::compaction::{parse_records, NoCodecs};
use sluice_engine::log::{CompactionLimits, LogConfig, PartitionLog};
use sluice_engine::storage::MemStorage;
use sluice_engine::{BatchCache, TxnMarker};

const SEEDS_DEFAULT: std::ops::Range<u64> = 1..21;
const OPERATIONS_PER_RUN: usize = 300;
/// Distinct keys: few, so that most records are superseded.
const KEYS: u64 = 24;
const RECORDS_PER_BATCH_MAX: i64 = 4;
const VALUE_BYTES_MAX: i64 = 300;
const SEGMENT_BYTES_MIN: i64 = 4096;
const SEGMENT_BYTES_MAX: i64 = 16 * 1024;
const TRANSACTIONAL_PRODUCERS: [i64; 2] = [9000, 9001];
const IDEMPOTENT_PRODUCER: i64 = 9100;
const DELETE_RETENTION_MS: i64 = 10_000;
const TRACE_LINES_MAX: usize = 40;
/// Bytes asked of one read while reading the whole log back.
const READ_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq)]
struct Record {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    /// The producer of a transactional record.
    txn: Option<i64>,
}

/// How each transaction ended, by its producer and first offset.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Open,
    Committed,
    Aborted,
}

#[derive(Default)]
struct Model {
    /// Every data record appended, by offset (markers are not records).
    records: BTreeMap<i64, Record>,
    /// Transactions: (producer, first offset) -> (marker offset, outcome).
    txns: BTreeMap<(i64, i64), (i64, Outcome)>,
    /// Open transaction of each producer: its first offset.
    open: BTreeMap<i64, i64>,
    leo: i64,
    durable: i64,
    /// The cleaner checkpoint of the last pass that completed.
    clean_end: i64,
    /// The next sequence of each idempotent or transactional producer.
    sequences: BTreeMap<i64, i32>,
}

impl Model {
    fn outcome(&self, offset: i64, producer: i64) -> Outcome {
        self.txns
            .range(..=(producer, offset))
            .next_back()
            .filter(|((id, first), (marker, _))| {
                *id == producer && *first <= offset && offset < *marker
            })
            .map_or(Outcome::Open, |(_, (_, outcome))| *outcome)
    }

    /// Whether a record counts for compaction and for a committed reader.
    fn visible(&self, offset: i64, record: &Record) -> bool {
        match record.txn {
            None => true,
            Some(producer) => self.outcome(offset, producer) == Outcome::Committed,
        }
    }

    /// The stable end: nothing at or after an open transaction's start.
    fn lso(&self) -> i64 {
        self.open
            .values()
            .copied()
            .min()
            .unwrap_or(self.leo)
            .min(self.leo)
    }

    /// Forgets what a crash lost: offsets from `leo` on.
    fn cut_to(&mut self, leo: i64) {
        self.records.retain(|offset, _| *offset < leo);
        self.txns.retain(|(_, first), _| *first < leo);
        for (_, (marker, outcome)) in self.txns.iter_mut() {
            if *marker >= leo {
                *outcome = Outcome::Open;
                *marker = i64::MAX;
            }
        }
        self.open = self
            .txns
            .iter()
            .filter(|(_, (_, outcome))| *outcome == Outcome::Open)
            .map(|((producer, first), _)| (*producer, *first))
            .collect();
        self.leo = leo;
        self.durable = self.durable.min(leo);
        self.clean_end = self.clean_end.min(leo);
    }
}

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
            eprintln!("compaction model, seed {}; last operations:", self.seed);
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
    /// Records the passes removed, over the run.
    records_removed: u64,
    markers_removed: u64,
    /// Segments the passes merged into the one before them.
    segments_merged: u64,
}

impl Run {
    fn records(&mut self, txn: Option<i64>) -> Vec<Record> {
        let count = self.rng.between(1, RECORDS_PER_BATCH_MAX);
        (0..count)
            .map(|_| {
                let key = if self.rng.percent(4) {
                    None
                } else {
                    Some(format!("key-{}", self.rng.below(KEYS)).into_bytes())
                };
                let value = if self.rng.percent(12) {
                    None
                } else {
                    let len = self.rng.between(1, VALUE_BYTES_MAX) as usize;
                    let fill = b'a' + self.rng.below(26) as u8;
                    Some(vec![fill; len])
                };
                Record { key, value, txn }
            })
            .collect()
    }

    /// Appends a batch: plain, from the idempotent producer, or a
    /// transactional one (opening the producer's transaction if needed).
    fn produce(&mut self) {
        let kind = self.rng.below(10);
        let (producer, txn) = match kind {
            0..=4 => (-1, None),
            5..=6 => (IDEMPOTENT_PRODUCER, None),
            _ => {
                let producer = TRANSACTIONAL_PRODUCERS[self.rng.below(2) as usize];
                (producer, Some(producer))
            }
        };
        let records = self.records(txn);
        let sequence = if producer >= 0 {
            *self.model.sequences.entry(producer).or_insert(0)
        } else {
            -1
        };
        self.timestamp += self.rng.between(1, 50);
        let pairs: Vec<batch::KeyValue<'_>> = records
            .iter()
            .map(|record| (record.key.as_deref(), record.value.as_deref()))
            .collect();
        let bytes = Bytes::from(batch::build_keyed_batch(
            BuildBatch {
                base_timestamp: self.timestamp,
                producer_id: producer,
                producer_epoch: if producer >= 0 { 0 } else { -1 },
                base_sequence: sequence,
                attributes: if txn.is_some() {
                    attributes::TRANSACTIONAL
                } else {
                    0
                },
            },
            &pairs,
        ));
        let header = batch::validate(&bytes, usize::MAX).expect("built batches are valid");
        let appended = match self.log.append(&[(header, bytes)]) {
            Ok(appended) => appended,
            Err(error) => panic!("append failed: {error}"),
        };
        let base = self.model.leo;
        assert_eq!(appended.base_offset.0, base, "append offset");
        self.trace.push(format!(
            "produce {} records at {base} (producer {producer}, txn {txn:?})",
            records.len()
        ));
        if producer >= 0 {
            self.model
                .sequences
                .insert(producer, sequence + records.len() as i32);
        }
        if let Some(producer) = txn {
            if let std::collections::btree_map::Entry::Vacant(open) =
                self.model.open.entry(producer)
            {
                open.insert(base);
                self.model
                    .txns
                    .insert((producer, base), (i64::MAX, Outcome::Open));
            }
        }
        for (delta, record) in records.into_iter().enumerate() {
            self.model.records.insert(base + delta as i64, record);
        }
        self.model.leo = base + i64::from(header.last_offset_delta) + 1;
    }

    fn marker(&mut self) {
        let producer = TRANSACTIONAL_PRODUCERS[self.rng.below(2) as usize];
        let Some(&first) = self.model.open.get(&producer) else {
            return;
        };
        let commit = self.rng.percent(60);
        let marker = TxnMarker {
            producer_id: producer,
            producer_epoch: 0,
            commit,
            coordinator_epoch: 0,
            transaction_version: 0,
        };
        match self.log.append_marker(marker) {
            Ok(appended) => {
                let offset = appended.base_offset.0;
                assert_eq!(offset, self.model.leo, "marker offset");
                let outcome = if commit {
                    Outcome::Committed
                } else {
                    Outcome::Aborted
                };
                self.model.txns.insert((producer, first), (offset, outcome));
                self.model.open.remove(&producer);
                self.model.leo += 1;
                self.trace.push(format!(
                    "marker {outcome:?} at {offset} for {producer} from {first}"
                ));
            }
            Err(error) => panic!("marker refused: {error}"),
        }
    }

    async fn wait_durable(&mut self) {
        let leo = self.model.leo;
        self.log.wait_durable(leo).await.expect("wait durable");
        self.model.durable = leo;
    }

    /// A cleaning pass, at a time that may let tombstones expire.
    async fn compact(&mut self) {
        let expire = self.rng.percent(50);
        self.compact_at(expire).await;
    }

    /// A cleaning pass; `expire`: late enough for tombstones and markers
    /// cleaned before to go.
    async fn compact_at(&mut self, expire: bool) {
        let now = self.timestamp + if expire { DELETE_RETENTION_MS * 2 } else { 0 };
        let limits = CompactionLimits {
            key_map_entries_max: if self.rng.percent(20) { 4 } else { 1 << 16 },
            io_bytes_per_second: 0,
            merge_segments: true,
        };
        match self.log.compact(now, &limits, &NoCodecs).await {
            Ok(Some(report)) => {
                self.trace.push(format!("compacted at {now}: {report:?}"));
                assert!(
                    report.bytes_after <= report.bytes_before,
                    "compaction grew the log"
                );
                self.model.clean_end = self.model.clean_end.max(report.clean_end);
                self.records_removed += report.records_removed;
                self.segments_merged += report.segments_merged as u64;
                self.markers_removed += report.markers_removed;
            }
            Ok(None) => self.trace.push("compaction not due".into()),
            Err(error) => panic!("compaction failed: {error}"),
        }
    }

    /// A power loss during a pass: while it waits for its cleaned copy to
    /// be synced (the copy is incomplete on the crashed disk), or for the
    /// directory sync after its first rename (a segment just replaced, or
    /// segments being merged, their swap file just in place).
    async fn crash_during_compaction(&mut self) {
        let at_rename = self.rng.percent(50);
        if at_rename {
            self.storage.hold_next_sync_dir();
        } else {
            self.storage.hold_next_sync();
        }
        let log = Rc::clone(&self.log);
        let limits = CompactionLimits {
            key_map_entries_max: 1 << 16,
            io_bytes_per_second: 0,
            merge_segments: true,
        };
        let now = self.timestamp;
        let task = glommio::spawn_local(async move { log.compact(now, &limits, &NoCodecs).await });
        for _ in 0..self.rng.between(1, 6) {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        let crashed = self.storage.crash();
        self.storage.release_sync();
        if let Err(error) = task.await {
            panic!("compaction failed: {error}");
        }
        self.trace.push(format!(
            "crash during compaction ({})",
            if at_rename {
                "at a rename"
            } else {
                "at a sync"
            }
        ));
        self.reopen_crashed(crashed).await;
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
        let crashed = self.storage.crash();
        self.reopen_crashed(crashed).await;
    }

    async fn reopen_crashed(&mut self, crashed: MemStorage) {
        self.reopen(crashed).await;
        let leo = self.log.offsets().leo;
        self.trace.push(format!(
            "  recovered leo {leo} (model {}, durable {})",
            self.model.leo, self.model.durable
        ));
        assert!(
            leo >= self.model.durable,
            "acknowledged offsets lost: {leo} < {}",
            self.model.durable
        );
        assert!(leo <= self.model.leo, "recovery invented offsets");
        self.model.cut_to(leo);
        // Sequences past the cut were never stored: producers resume there.
        self.resume_sequences();
    }

    /// After a crash the producers' next sequences are what the log kept.
    fn resume_sequences(&mut self) {
        let described: BTreeMap<i64, i32> = self
            .log
            .producers()
            .into_iter()
            .map(|info| (info.producer_id, info.last_sequence + 1))
            .collect();
        for producer in TRANSACTIONAL_PRODUCERS
            .iter()
            .chain([IDEMPOTENT_PRODUCER].iter())
        {
            match described.get(producer) {
                Some(next) => self.model.sequences.insert(*producer, *next),
                None => self.model.sequences.remove(producer),
            };
        }
    }

    async fn reopen(&mut self, storage: MemStorage) {
        let log = open_log_with(&storage, &self.dir, &self.config, &self.cache).await;
        let old = std::mem::replace(&mut self.log, log);
        self.storage = storage;
        drop_log(old).await;
    }

    /// Reads the stable log back, batch by batch, from `from`.
    async fn read_from(&mut self, from: i64, upper: i64) -> Vec<(BatchHeader, Bytes)> {
        let mut batches = Vec::new();
        let mut offset = from;
        while offset < upper {
            let chunks = match self.log.read(offset, READ_BYTES, upper).await {
                Ok(chunks) => chunks,
                Err(error) => panic!("read at {offset} failed: {error}"),
            };
            assert!(
                chunks.next_offset > offset,
                "a read at {offset} made no progress"
            );
            let mut joined = Vec::new();
            for chunk in &chunks.chunks {
                joined.extend_from_slice(chunk);
            }
            let mut at = 0;
            while at < joined.len() {
                let header = BatchHeader::parse(&joined[at..]).expect("batch header");
                let end = at + header.total_bytes();
                assert_eq!(
                    batch::compute_crc(&joined[at..end]),
                    header.crc,
                    "batch crc"
                );
                batches.push((header, Bytes::copy_from_slice(&joined[at..end])));
                at = end;
            }
            offset = chunks.next_offset;
        }
        batches
    }

    async fn verify(&mut self) {
        let offsets = self.log.offsets();
        assert_eq!(offsets.leo, self.model.leo, "log end");
        let lso = self.model.lso();
        assert_eq!(offsets.lso, lso, "last stable offset");
        let batches = self.read_from(offsets.log_start, lso).await;
        let mut next = offsets.log_start;
        let mut seen: BTreeMap<i64, Record> = BTreeMap::new();
        let mut markers: BTreeSet<i64> = BTreeSet::new();
        for (header, bytes) in &batches {
            assert_eq!(header.base_offset, next, "batches do not follow on");
            next = header.last_offset() + 1;
            if header.is_control() {
                markers.insert(header.base_offset);
                continue;
            }
            let records = parse_records(&bytes[BATCH_HEADER_BYTES..], header.record_count)
                .expect("records parse");
            let mut previous = -1;
            for view in records {
                assert!(
                    view.offset_delta > previous,
                    "offsets within a batch do not rise"
                );
                previous = view.offset_delta;
                let offset = header.base_offset + view.offset_delta;
                let Some(expected) = self.model.records.get(&offset) else {
                    panic!("record at {offset} was never appended");
                };
                let got = Record {
                    key: view.key.map(<[u8]>::to_vec),
                    value: if view.tombstone {
                        None
                    } else {
                        Some(view_value(view.bytes))
                    },
                    txn: expected.txn,
                };
                assert_eq!(&got, expected, "record at {offset}");
                seen.insert(offset, got);
            }
        }
        // A transaction with a record left keeps its marker: without it a
        // reader could not tell the record committed, and a replay would
        // leave the transaction open.
        for (offset, record) in &seen {
            if let Some(producer) = record.txn {
                let marker = self
                    .model
                    .txns
                    .range(..=(producer, *offset))
                    .next_back()
                    .map(|(_, (marker, _))| *marker);
                // Only markers below the end of what was read can be seen.
                assert!(
                    marker.is_some_and(|marker| marker >= next || markers.contains(&marker)),
                    "the marker of the transaction of the record at {offset} is gone"
                );
            }
        }
        // Every aborted transaction a read_committed fetch is told of has its
        // marker, or the consumer would drop that producer's later batches.
        let aborted = self
            .log
            .aborted_txns(offsets.log_start, lso)
            .await
            .expect("aborted transactions");
        for entry in aborted.iter().filter(|entry| entry.last_offset < lso) {
            assert!(
                markers.contains(&entry.last_offset),
                "aborted transaction {entry:?} listed without its marker"
            );
        }
        // The latest visible record of each key below the stable end stays.
        let mut latest: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (offset, record) in self.model.records.range(..lso) {
            if let (Some(key), true) = (&record.key, self.model.visible(*offset, record)) {
                latest.insert(key.clone(), *offset);
            }
        }
        for (key, offset) in &latest {
            let record = &self.model.records[offset];
            if record.value.is_some() {
                assert!(
                    seen.contains_key(offset),
                    "latest value of {} at {offset} is gone",
                    String::from_utf8_lossy(key)
                );
            }
        }
        // Below the checkpoint the cleaner has been: only latest records.
        let clean_end = self.model.clean_end.min(lso);
        let mut latest_below: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (offset, record) in self.model.records.range(..clean_end) {
            if let (Some(key), true) = (&record.key, self.model.visible(*offset, record)) {
                latest_below.insert(key.clone(), *offset);
            }
        }
        for (offset, record) in seen.range(..clean_end) {
            let Some(key) = &record.key else {
                panic!("a record without a key at {offset} survived cleaning");
            };
            assert!(
                self.model.visible(*offset, record),
                "an aborted record at {offset} survived cleaning"
            );
            assert_eq!(
                latest_below.get(key),
                Some(offset),
                "a superseded record at {offset} survived cleaning"
            );
        }
        // Reads may start anywhere, also where records were removed.
        if lso > offsets.log_start {
            let from = self.rng.between(offsets.log_start, lso - 1);
            let tail = self.read_from(from, lso).await;
            let first = tail
                .first()
                .expect("a read below the stable end returns a batch");
            assert!(
                first.0.base_offset <= from && from <= first.0.last_offset(),
                "read at {from} started at batch {}..={}",
                first.0.base_offset,
                first.0.last_offset()
            );
        }
    }
}

/// The value of a record (its bytes from the length varint on), which the
/// engine's view does not cut out.
fn view_value(record: &[u8]) -> Vec<u8> {
    let mut at = 0;
    let (_, used) = varint(&record[at..]);
    at += used + 1; // length, attributes
    let (_, used) = varint(&record[at..]);
    at += used; // timestamp delta
    let (_, used) = varint(&record[at..]);
    at += used; // offset delta
    let (key_len, used) = varint(&record[at..]);
    at += used + key_len.max(0) as usize;
    let (value_len, used) = varint(&record[at..]);
    at += used;
    record[at..at + value_len.max(0) as usize].to_vec()
}

fn varint(bytes: &[u8]) -> (i64, usize) {
    let mut value: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (((value >> 1) as i64) ^ -((value & 1) as i64), i + 1);
        }
    }
    panic!("bad varint");
}

/// Runs one seed; returns the markers its passes removed and the segments
/// they merged.
async fn run(seed: u64) -> (u64, u64) {
    let mut rng = Rng::new(seed);
    let config = LogConfig {
        segment_bytes: rng.between(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX) as u64,
        segment_ms: i64::MAX,
        retention_ms: -1,
        retention_bytes: -1,
        index_interval_bytes: 1024,
        delete: false,
        compact: true,
        min_cleanable_dirty_ratio: if rng.percent(50) { 0.0 } else { 0.5 },
        delete_retention_ms: DELETE_RETENTION_MS,
        ..LogConfig::default()
    };
    let cache = BatchCache::new(if rng.percent(50) {
        256 * 1024 * 1024
    } else {
        64 * 1024
    });
    let storage = MemStorage::new(seed);
    let dir = PathBuf::from("/data/compaction-model-0");
    let log = open_log_with(&storage, &dir, &config, &cache).await;
    let mut trace = Trace {
        seed,
        lines: Vec::new(),
    };
    trace.push(format!("config {config:?}"));
    let mut run = Run {
        rng,
        trace,
        model: Model::default(),
        storage,
        dir,
        config,
        cache,
        log,
        // Markers take the wall clock's time: data batches do too.
        timestamp: sluice_engine::types::now_ms(),
        records_removed: 0,
        markers_removed: 0,
        segments_merged: 0,
    };
    let mut compactions = 0;
    for _ in 0..OPERATIONS_PER_RUN {
        match run.rng.below(100) {
            0..=54 => run.produce(),
            55..=64 => run.marker(),
            65..=74 => run.wait_durable().await,
            75..=86 => {
                run.wait_durable().await;
                run.compact().await;
                compactions += 1;
            }
            87..=90 => run.clean_restart().await,
            91..=95 => run.crash_restart().await,
            _ => {
                run.wait_durable().await;
                run.crash_during_compaction().await;
            }
        }
        run.verify().await;
    }
    // Close every transaction, clean twice (tombstones expire on the
    // second pass), and check the result once more.
    for producer in TRANSACTIONAL_PRODUCERS {
        if run.model.open.contains_key(&producer) {
            let marker = TxnMarker {
                producer_id: producer,
                producer_epoch: 0,
                commit: true,
                coordinator_epoch: 0,
                transaction_version: 0,
            };
            let appended = run.log.append_marker(marker).expect("final marker");
            let first = run.model.open.remove(&producer).expect("open");
            run.model.txns.insert(
                (producer, first),
                (appended.base_offset.0, Outcome::Committed),
            );
            run.model.leo += 1;
        }
    }
    run.wait_durable().await;
    run.compact_at(true).await;
    run.verify().await;
    run.compact_at(true).await;
    run.verify().await;
    assert!(compactions > 0, "the run never compacted");
    assert!(
        run.records_removed > 0,
        "no pass of the run removed a record"
    );
    eprintln!(
        "seed {seed}: {compactions} passes removed {} records, {} of them markers, and merged {} segments",
        run.records_removed, run.markers_removed, run.segments_merged
    );
    (run.markers_removed, run.segments_merged)
}

#[test]
fn compaction_agrees_with_model() {
    let mut seeds: Vec<u64> = SEEDS_DEFAULT.collect();
    seeds.extend(common::seeds_from_env("SLUICE_COMPACTION_MODEL_SEEDS"));
    let (mut markers_removed, mut segments_merged) = (0, 0);
    for seed in seeds {
        let handle = LocalExecutorBuilder::default()
            .name("compaction-model")
            .spawn(move || run(seed))
            .expect("start an executor");
        match handle.join() {
            Ok((markers, merged)) => {
                markers_removed += markers;
                segments_merged += merged;
            }
            Err(_) => panic!("compaction model run with seed {seed} failed (SLUICE_COMPACTION_MODEL_SEEDS={seed})"),
        }
    }
    // Markers go only on narrow terms; the seeds must still reach them.
    assert!(markers_removed > 0, "no pass of any seed removed a marker");
    assert!(segments_merged > 0, "no pass of any seed merged segments");
}
