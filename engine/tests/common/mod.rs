//! Helpers shared by the engine's integration tests.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;

use glommio::LocalExecutorBuilder;
use sluice_engine::batch::BatchHeader;
use sluice_engine::compaction::{parse_records, record_area, NoCodecs};
use sluice_engine::log::LogConfig;
use sluice_engine::{BatchCache, MemStorage, PartitionLog};

/// Runs `body` on a fresh glommio executor and fails the test if it panics.
pub fn in_executor<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let handle = LocalExecutorBuilder::default()
        .spawn(body)
        .expect("start an executor");
    if handle.join().is_err() {
        panic!("the test body panicked (see above)");
    }
}

/// Opens (or creates) the log in `dir` on `storage`, with default settings
/// and a batch cache of `cache_bytes`.
pub async fn open_mem_log(
    storage: &MemStorage,
    dir: &str,
    cache_bytes: usize,
) -> Rc<PartitionLog<MemStorage>> {
    match PartitionLog::open(
        storage.clone(),
        PathBuf::from(dir),
        LogConfig::default(),
        BatchCache::new(cache_bytes),
    )
    .await
    {
        Ok(log) => log,
        Err(error) => panic!("opening {dir} failed: {error}"),
    }
}

/// How long a dropped log may take to be freed by its finishing tasks.
const DROP_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens (or creates) the log in `dir` with `config`, sharing `cache`.
pub async fn open_log_with(
    storage: &MemStorage,
    dir: &std::path::Path,
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

/// Opens (or creates) one log in each of `dirs` with `config`, sharing
/// `cache`.
pub async fn open_logs_in(
    storage: &MemStorage,
    dirs: impl Iterator<Item = PathBuf>,
    config: &LogConfig,
    cache: &Rc<BatchCache>,
) -> Vec<Rc<PartitionLog<MemStorage>>> {
    let mut logs = Vec::new();
    for dir in dirs {
        logs.push(open_log_with(storage, &dir, config, cache).await);
    }
    logs
}

/// Reads `log` (the log numbered `index`) from offset 0 up to `end` and
/// checks that the record at each offset holds `value(offset)`.
pub async fn check_values(
    log: &PartitionLog<MemStorage>,
    index: usize,
    end: i64,
    value: impl Fn(usize) -> Vec<u8>,
) {
    let mut offset = 0;
    while offset < end {
        let read = match log.read(offset, 1 << 20, end).await {
            Ok(read) => read,
            Err(error) => panic!("log {index}: reading at {offset} failed: {error}"),
        };
        assert!(
            read.next_offset > offset,
            "log {index}: no progress at {offset}"
        );
        for chunk in &read.chunks {
            let Ok(batches) = sluice_engine::batch::split_and_validate(chunk, usize::MAX) else {
                panic!("log {index}: a stored batch at {offset} is damaged");
            };
            for (_, stored) in batches {
                let expected = value(offset as usize);
                assert!(
                    stored
                        .windows(expected.len())
                        .any(|window| window == expected),
                    "log {index}, offset {offset}: the batch holds another value"
                );
                offset += 1;
            }
        }
    }
}

/// Drops a log and waits until its tasks let it go.
pub async fn drop_log(log: Rc<PartitionLog<MemStorage>>) {
    let weak = Rc::downgrade(&log);
    drop(log);
    let started = std::time::Instant::now();
    while weak.strong_count() > 0 {
        assert!(
            started.elapsed() < DROP_WAIT_MAX,
            "a dropped log is still held by its tasks"
        );
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Waits until everything appended to `log` is durable, closes it and
/// drops it: the log's files as a clean stop leaves them.
pub async fn close_durable(log: Rc<PartitionLog<MemStorage>>) {
    let leo = log.offsets().leo;
    if let Err(error) = log.wait_durable(leo).await {
        panic!("sync failed: {error}");
    }
    if let Err(error) = log.close().await {
        panic!("close failed: {error}");
    }
    drop_log(log).await;
}

/// Seeds from the environment variable `name`: `7,9,100..200`.
pub fn seeds_from_env(name: &str) -> Vec<u64> {
    let Ok(spec) = std::env::var(name) else {
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

/// xorshift64*: small, deterministic, good enough to pick operations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    pub fn percent(&mut self, chance: u64) -> bool {
        self.below(100) < chance
    }
}

/// A batch read back: its header and its records' keys and whole encoded
/// records.
pub type ReadBatch = (BatchHeader, Vec<(Vec<u8>, Vec<u8>)>);

/// Every batch of the log from its start, read `read_bytes` at a time; an
/// error says what could not be read or parsed, and where.
pub async fn read_all(
    log: &PartitionLog<MemStorage>,
    read_bytes: usize,
) -> Result<Vec<ReadBatch>, String> {
    let upper = log.offsets().leo;
    let mut offset = log.offsets().log_start;
    let mut batches = Vec::new();
    while offset < upper {
        let chunks = log
            .read(offset, read_bytes, upper)
            .await
            .map_err(|error| format!("read at {offset} failed: {error}"))?;
        if chunks.next_offset <= offset {
            return Err(format!("a read at {offset} made no progress"));
        }
        let joined: Vec<u8> = chunks
            .chunks
            .iter()
            .flat_map(|c| c.iter().copied())
            .collect();
        let mut at = 0;
        while at < joined.len() {
            let header = BatchHeader::parse(&joined[at..])
                .map_err(|error| format!("a batch header read at {offset}, byte {at}: {error}"))?;
            let Some(bytes) = joined.get(at..at + header.total_bytes()) else {
                return Err(format!("the batch at {} is cut short", header.base_offset));
            };
            let failed = |error| format!("records of the batch at {}: {error}", header.base_offset);
            let area = record_area(bytes, &header, &NoCodecs, usize::MAX).map_err(failed)?;
            let records = parse_records(&area, header.record_count).map_err(failed)?;
            let pairs = records
                .iter()
                .map(|record| {
                    (
                        record.key.unwrap_or_default().to_vec(),
                        record.bytes.to_vec(),
                    )
                })
                .collect();
            batches.push((header, pairs));
            at += header.total_bytes();
        }
        offset = chunks.next_offset;
    }
    Ok(batches)
}

/// Appends one batch of one keyed record; `producer` -1 for a producer
/// without idempotence, else its id (epoch 0, sequence 0).
pub fn append_keyed(log: &PartitionLog<MemStorage>, producer: i64, key: &[u8], value: &[u8]) {
    let bytes = bytes::Bytes::from(sluice_engine::batch::build_keyed_batch(
        sluice_engine::batch::BuildBatch {
            base_timestamp: sluice_engine::types::now_ms(),
            producer_id: producer,
            producer_epoch: if producer >= 0 { 0 } else { -1 },
            base_sequence: if producer >= 0 { 0 } else { -1 },
            attributes: 0,
        },
        &[(Some(key), Some(value))],
    ));
    let header = match sluice_engine::batch::validate(&bytes, usize::MAX) {
        Ok(header) => header,
        Err(error) => panic!("a built batch is invalid: {error}"),
    };
    if let Err(error) = log.append(&[(header, bytes)]) {
        panic!("append failed: {error}");
    }
}

/// A compacted log's settings (no retention), with `segment_bytes`
/// segments rolled by size only, every segment cleanable once sealed.
pub fn compacted_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: i64::MAX,
        retention_ms: -1,
        retention_bytes: -1,
        delete: false,
        compact: true,
        min_cleanable_dirty_ratio: 0.0,
        ..LogConfig::default()
    }
}
