//! The partition log under disk faults, injected through `MemStorage`:
//! write errors (EIO, ENOSPC) and failed syncs refuse appends or durability
//! for as long as they last and never touch data already appended; torn
//! writes at a crash end the log at the first bad batch; a misdirected write
//! is caught by the read-side checksum instead of reaching a consumer; and
//! damaged index files are rebuilt. (Batch validation itself, bad CRC, magic,
//! length and count, is unit-tested in `batch.rs`.)

mod common;

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::in_executor;
use sluice_engine::batch::{self, LENGTH_AT, LOG_OVERHEAD};
use sluice_engine::log::{segment_file_name, FoundOffset, LogConfig, OffsetQuery};
use sluice_engine::storage::{Fault, MemStorage, Storage, StorageFile};
use sluice_engine::{AppendError, BatchCache, LeaderEpoch, Offset, PartitionLog, ReadError};

/// The writer retries a failed write every 100 ms; a fault queued this many
/// times therefore lasts several retries.
const FAULT_REPEATS: usize = 4;
/// How long a cleared fault may take to stop refusing appends.
const RECOVERY_WAIT_MAX: Duration = Duration::from_secs(5);
/// Pause between append attempts while a fault lasts.
const RETRY_POLL: Duration = Duration::from_millis(10);
/// Batches appended before a fault.
const BATCHES_BEFORE_FAULT: usize = 20;
/// Crash rounds of the torn-write test.
const TORN_WRITE_ROUNDS: u64 = 40;
/// Largest payload of one test batch.
const PAYLOAD_BYTES_MAX: u64 = 12 * 1024;
/// How far the misdirected writes land from their target, in bytes.
const MISDIRECT_DISTANCES: [i64; 8] = [4096, -4096, 512, -512, 8192, 12 * 1024, 1, 61];
/// Timestamps start here.
const TIMESTAMP_START: i64 = 1_700_000_000_000;

/// xorshift64*, deterministic per seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// A batch as the log must store it.
#[derive(Clone, Debug)]
struct Stored {
    base: i64,
    last: i64,
    timestamp: i64,
    bytes: Vec<u8>,
}

fn dir() -> PathBuf {
    PathBuf::from("/data/faults-0")
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        segment_ms: i64::MAX,
        retention_ms: -1,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

async fn open(
    storage: &MemStorage,
    config: &LogConfig,
    cache_bytes: usize,
) -> Rc<PartitionLog<MemStorage>> {
    match PartitionLog::open(
        storage.clone(),
        dir(),
        config.clone(),
        BatchCache::new(cache_bytes),
    )
    .await
    {
        Ok(log) => log,
        Err(error) => panic!("open failed: {error}"),
    }
}

/// Builds a batch of a few records with random payloads.
fn build(rng: &mut Rng, timestamp: i64) -> Vec<u8> {
    let records = 1 + rng.below(4) as usize;
    let size = 1 + rng.below(PAYLOAD_BYTES_MAX) as usize;
    let payload: Vec<u8> = (0..size).map(|_| rng.next() as u8).collect();
    let values: Vec<&[u8]> = payload.chunks(size.div_ceil(records)).collect();
    batch::build_batch(timestamp, &values)
}

/// Appends one batch; on success returns it as the log must store it.
fn try_append(
    log: &PartitionLog<MemStorage>,
    built: &[u8],
    timestamp: i64,
) -> Result<Stored, AppendError> {
    let set = Bytes::copy_from_slice(built);
    let batches = batch::split_and_validate(&set, usize::MAX).expect("a built batch is valid");
    let appended = log.append(&batches)?;
    let base = appended.base_offset.0;
    let mut bytes = built.to_vec();
    let head = batch::patched_head(built, Offset(base), LeaderEpoch(0));
    bytes[..head.len()].copy_from_slice(&head);
    Ok(Stored {
        base,
        last: appended.last_offset.0,
        timestamp,
        bytes,
    })
}

fn append(log: &PartitionLog<MemStorage>, rng: &mut Rng, timestamp: i64) -> Stored {
    let built = build(rng, timestamp);
    match try_append(log, &built, timestamp) {
        Ok(stored) => stored,
        Err(error) => panic!("append failed without a fault: {error}"),
    }
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let length = i32::from_be_bytes(
            data[at + LENGTH_AT..at + LENGTH_AT + 4]
                .try_into()
                .expect("4 bytes"),
        );
        let end = at + LOG_OVERHEAD + length as usize;
        assert!(
            length > 0 && end <= data.len(),
            "a read returned a partial batch"
        );
        out.push(&data[at..end]);
        at = end;
    }
    out
}

/// Reads `offset` and returns the batches, or the error.
async fn read_at(
    log: &PartitionLog<MemStorage>,
    offset: i64,
    max_bytes: usize,
) -> Result<Vec<Vec<u8>>, ReadError> {
    let chunks = log.read(offset, max_bytes, i64::MAX).await?;
    let data: Vec<u8> = chunks
        .chunks
        .iter()
        .flat_map(|chunk| chunk.iter().copied())
        .collect();
    Ok(split(&data).into_iter().map(<[u8]>::to_vec).collect())
}

/// Every batch of `expected` is in the log, byte for byte, read both batch by
/// batch and in large sequential reads, and nothing follows it.
async fn check_log(log: &PartitionLog<MemStorage>, expected: &[Stored], context: &str) {
    let leo = expected.last().map_or(0, |last| last.last + 1);
    assert_eq!(log.offsets().leo, leo, "{context}: log end");
    for stored in expected {
        let batches = match read_at(log, stored.base, 1).await {
            Ok(batches) => batches,
            Err(error) => panic!("{context}: read at {} failed: {error}", stored.base),
        };
        assert!(
            batches.first() == Some(&stored.bytes),
            "{context}: batch at {} differs",
            stored.base
        );
    }
    let mut offset = expected.first().map_or(0, |first| first.base);
    let mut at = 0;
    while offset < leo {
        let batches = match read_at(log, offset, 256 * 1024).await {
            Ok(batches) => batches,
            Err(error) => panic!("{context}: read at {offset} failed: {error}"),
        };
        assert!(
            !batches.is_empty(),
            "{context}: read at {offset} returned nothing below the log end"
        );
        for found in batches {
            assert!(
                found == expected[at].bytes,
                "{context}: sequential read: batch at {} differs",
                expected[at].base
            );
            offset = expected[at].last + 1;
            at += 1;
        }
    }
    assert_eq!(at, expected.len());
    let tail = read_at(log, leo, usize::MAX)
        .await
        .expect("a read at the log end");
    assert!(tail.is_empty(), "{context}: data past the log end");
}

/// A write fault (EIO or ENOSPC) lasting several retries: the write behind
/// fails, waiters are told, appends are refused with a storage error while it
/// lasts, reads keep returning the old data, and once it clears appends work
/// again and everything accepted becomes durable.
async fn write_fault_refuses_appends_then_recovers(fault: Fault, message: &'static str) {
    let mut rng = Rng::new(11);
    let storage = MemStorage::new(1);
    // No cache: reads of written data go to the disk.
    let log = open(&storage, &small_config(), 0).await;
    let mut expected = Vec::new();
    for at in 0..BATCHES_BEFORE_FAULT {
        expected.push(append(&log, &mut rng, TIMESTAMP_START + at as i64));
    }
    log.wait_durable(log.offsets().leo)
        .await
        .expect("durable before the fault");
    for _ in 0..FAULT_REPEATS {
        storage.inject(fault);
    }
    // Accepted: the write happens behind the append, and fails.
    expected.push(append(&log, &mut rng, TIMESTAMP_START + 100));
    let leo = log.offsets().leo;
    match log.wait_durable(leo).await {
        Ok(()) => panic!("wait_durable succeeded although the write failed"),
        Err(error) => assert!(error.to_string().contains(message), "{error}"),
    }
    let refused = try_append(
        &log,
        &build(&mut rng, TIMESTAMP_START + 101),
        TIMESTAMP_START + 101,
    );
    match refused {
        Err(AppendError::Storage(reason)) => {
            assert!(
                reason.contains(message),
                "refusal does not say why: {reason}"
            )
        }
        other => panic!("an append during a write fault must be refused, got {other:?}"),
    }
    // Everything appended, written or not, stays readable and identical.
    check_log(&log, &expected, "during the fault").await;
    let started = Instant::now();
    let mut refusals = 0;
    loop {
        let timestamp = TIMESTAMP_START + 200 + refusals;
        match try_append(&log, &build(&mut rng, timestamp), timestamp) {
            Ok(stored) => {
                expected.push(stored);
                break;
            }
            Err(AppendError::Storage(_)) => refusals += 1,
            Err(other) => panic!("unexpected refusal: {other}"),
        }
        assert!(
            started.elapsed() < RECOVERY_WAIT_MAX,
            "appends still refused after the fault cleared"
        );
        glommio::timer::sleep(RETRY_POLL).await;
    }
    assert!(
        refusals > 0,
        "the fault lasts several retries, appends must be refused meanwhile"
    );
    for at in 0..5 {
        expected.push(append(&log, &mut rng, TIMESTAMP_START + 300 + at));
    }
    log.wait_durable(log.offsets().leo)
        .await
        .expect("durable once the fault cleared");
    check_log(&log, &expected, "after the fault").await;
    // Durable means durable: a power loss now keeps everything.
    let crashed = storage.crash();
    drop(log);
    let log = open(&crashed, &small_config(), 0).await;
    check_log(&log, &expected, "after a crash").await;
}

#[test]
fn write_eio_refuses_appends_until_it_clears() {
    in_executor(|| {
        write_fault_refuses_appends_then_recovers(Fault::WriteEio, "Input/output error")
    });
}

#[test]
fn disk_full_refuses_appends_until_space_returns() {
    in_executor(|| {
        write_fault_refuses_appends_then_recovers(Fault::WriteNoSpace, "No space left on device")
    });
}

/// A failed fdatasync fails the waiters of that round; a later wait syncs
/// again and succeeds, appends are accepted again, and the data is durable.
#[test]
fn failed_sync_fails_the_wait_and_a_later_wait_succeeds() {
    in_executor(|| async {
        let mut rng = Rng::new(12);
        let storage = MemStorage::new(2);
        let log = open(&storage, &small_config(), 1 << 20).await;
        let mut expected = Vec::new();
        for at in 0..BATCHES_BEFORE_FAULT {
            expected.push(append(&log, &mut rng, TIMESTAMP_START + at as i64));
        }
        storage.inject(Fault::SyncEio);
        let leo = log.offsets().leo;
        assert!(
            log.wait_durable(leo).await.is_err(),
            "a failed sync must fail its waiters"
        );
        assert!(
            log.offsets().durable < leo,
            "a failed sync must not advance the durable offset"
        );
        log.wait_durable(leo).await.expect("a later sync succeeds");
        assert!(log.offsets().durable >= leo);
        // Appends are accepted again once the writer has retried.
        let started = Instant::now();
        loop {
            let timestamp = TIMESTAMP_START + 100;
            match try_append(&log, &build(&mut rng, timestamp), timestamp) {
                Ok(stored) => {
                    expected.push(stored);
                    break;
                }
                Err(AppendError::Storage(_)) => {}
                Err(other) => panic!("unexpected refusal: {other}"),
            }
            assert!(
                started.elapsed() < RECOVERY_WAIT_MAX,
                "appends refused for good after one failed sync"
            );
            glommio::timer::sleep(RETRY_POLL).await;
        }
        log.wait_durable(log.offsets().leo).await.expect("durable");
        let crashed = storage.crash();
        drop(log);
        let log = open(&crashed, &small_config(), 0).await;
        check_log(&log, &expected, "after a crash").await;
    });
}

/// Crashes with unsynced writes that land whole, torn at a sector, or not at
/// all: recovery keeps every acknowledged batch, ends the log at the first
/// bad batch (the file is cut there), and the log takes appends again.
#[test]
fn torn_writes_at_a_crash_end_the_log_at_the_first_bad_batch() {
    in_executor(|| async {
        for round in 0..TORN_WRITE_ROUNDS {
            let mut rng = Rng::new(100 + round);
            let storage = MemStorage::new(round);
            let config = LogConfig {
                segment_bytes: 256 * 1024,
                ..small_config()
            };
            let log = open(&storage, &config, 1 << 20).await;
            let mut expected = Vec::new();
            let mut durable = 0;
            let batches = 10 + rng.below(60);
            for at in 0..batches {
                expected.push(append(&log, &mut rng, TIMESTAMP_START + at as i64));
                match rng.below(10) {
                    0 => {
                        durable = log.offsets().leo;
                        log.wait_durable(durable).await.expect("durable");
                    }
                    1 => futures_lite::future::yield_now().await,
                    _ => {}
                }
            }
            for _ in 0..rng.below(4) {
                futures_lite::future::yield_now().await;
            }
            let crashed = storage.crash();
            drop(log);
            let log = open(&crashed, &config, 0).await;
            let leo = log.offsets().leo;
            assert!(
                leo >= durable,
                "round {round}: acknowledged data lost ({leo} < {durable})"
            );
            let kept = expected.partition_point(|stored| stored.last < leo);
            assert!(
                kept == expected.len() || expected[kept].base == leo,
                "round {round}: the log ends inside a batch"
            );
            expected.truncate(kept);
            check_log(&log, &expected, &format!("round {round}, recovered")).await;
            // The last segment's file ends exactly at its last good batch.
            let last_base = expected
                .iter()
                .rev()
                .map(|stored| stored.base)
                .find(|&base| crashed.exists(&dir().join(segment_file_name(base, "log"))));
            if let Some(base) = last_base {
                let in_segment: u64 = expected
                    .iter()
                    .filter(|stored| stored.base >= base)
                    .map(|stored| stored.bytes.len() as u64)
                    .sum();
                let path = dir().join(segment_file_name(base, "log"));
                assert_eq!(
                    crashed.file_size(&path).expect("size"),
                    in_segment,
                    "round {round}: file not cut"
                );
            }
            // And appends continue right after it.
            let next = append(&log, &mut rng, TIMESTAMP_START + 1_000);
            assert_eq!(next.base, leo);
            expected.push(next);
            log.wait_durable(log.offsets().leo).await.expect("durable");
            check_log(
                &log,
                &expected,
                &format!("round {round}, appended after recovery"),
            )
            .await;
        }
    });
}

/// Hand-made damage in the active segment: whatever follows the first bad
/// batch is not part of the log, even when valid batches follow it.
#[test]
fn recovery_stops_at_the_first_bad_batch_even_if_good_ones_follow() {
    in_executor(|| async {
        // Each case damages the fourth of six batches.
        type Damage = fn(&mut Vec<u8>);
        let cases: [(&str, Damage); 5] = [
            ("torn at a sector", |batch| {
                batch.truncate(512.min(batch.len() - 1))
            }),
            ("a flipped bit", |batch| {
                let at = batch.len() / 2;
                batch[at] ^= 0x10;
            }),
            ("zeroed", |batch| {
                batch.iter_mut().for_each(|byte| *byte = 0)
            }),
            ("out of sequence", |batch| {
                batch[..8].copy_from_slice(&7_777i64.to_be_bytes())
            }),
            ("wrong magic", |batch| batch[16] = 1),
        ];
        for (name, damage) in cases {
            let mut rng = Rng::new(7);
            let storage = MemStorage::new(3);
            let path = dir().join(segment_file_name(0, "log"));
            let mut expected = Vec::new();
            let mut file_bytes = Vec::new();
            let mut offset = 0;
            for at in 0..6 {
                let built = build(&mut rng, TIMESTAMP_START + at);
                let records = i64::from(
                    batch::BatchHeader::parse(&built)
                        .expect("header")
                        .last_offset_delta,
                ) + 1;
                let mut bytes = built.clone();
                let head = batch::patched_head(&built, Offset(offset), LeaderEpoch(0));
                bytes[..head.len()].copy_from_slice(&head);
                let stored = Stored {
                    base: offset,
                    last: offset + records - 1,
                    timestamp: 0,
                    bytes,
                };
                offset += records;
                let mut on_disk = stored.bytes.clone();
                if at == 3 {
                    damage(&mut on_disk);
                } else if at < 3 {
                    expected.push(stored);
                }
                file_bytes.extend_from_slice(&on_disk);
            }
            storage.create_dir_all(&dir()).await.expect("mkdir");
            let file = storage.open(&path, true).await.expect("create");
            file.write_at(file_bytes, 0).await.expect("write");
            file.sync().await.expect("sync");
            let log = open(&storage, &small_config(), 0).await;
            let good: u64 = expected
                .iter()
                .map(|stored| stored.bytes.len() as u64)
                .sum();
            assert_eq!(
                log.offsets().leo,
                expected.last().map_or(0, |last| last.last + 1),
                "{name}"
            );
            assert_eq!(
                storage.file_size(&path).expect("size"),
                good,
                "{name}: the file is cut at the bad batch"
            );
            check_log(&log, &expected, name).await;
        }
    });
}

/// A write that lands elsewhere on the disk leaves old bytes where the log
/// expects new ones (and new bytes where old ones were). With no cache, every
/// read then either fails its checksum or returns exactly the right batches,
/// never others; and if the segment on disk differs from what was appended,
/// some read must notice.
#[test]
fn misdirected_writes_are_caught_on_read() {
    in_executor(|| async {
        let mut failures = Vec::new();
        for (round, by) in MISDIRECT_DISTANCES.into_iter().enumerate() {
            let mut rng = Rng::new(300 + round as u64);
            let storage = MemStorage::new(round as u64);
            let config = LogConfig {
                segment_bytes: 1 << 20,
                ..small_config()
            };
            let log = open(&storage, &config, 0).await;
            let mut expected = Vec::new();
            for at in 0..BATCHES_BEFORE_FAULT {
                expected.push(append(&log, &mut rng, TIMESTAMP_START + at as i64));
            }
            log.wait_durable(log.offsets().leo).await.expect("durable");
            storage.inject(Fault::MisdirectWrite { by });
            for at in 0..BATCHES_BEFORE_FAULT {
                expected.push(append(&log, &mut rng, TIMESTAMP_START + 100 + at as i64));
            }
            // The disk reports success: the log cannot know yet.
            log.wait_durable(log.offsets().leo).await.expect("durable");
            let mut caught = 0;
            for (at, stored) in expected.iter().enumerate() {
                for max_bytes in [1, 64 * 1024] {
                    match read_at(&log, stored.base, max_bytes).await {
                        Err(ReadError::Storage(_)) => caught += 1,
                        Err(other) => {
                            failures.push(format!("by {by}: read at {}: {other}", stored.base))
                        }
                        Ok(batches) => {
                            if batches.is_empty() {
                                failures.push(format!(
                                    "by {by}: read at {} returned nothing",
                                    stored.base
                                ));
                            }
                            for (number, found) in batches.iter().enumerate() {
                                if expected
                                    .get(at + number)
                                    .is_none_or(|wanted| *found != wanted.bytes)
                                {
                                    failures.push(format!(
                                        "by {by}: read at {} returned wrong data as its batch {number}",
                                        stored.base
                                    ));
                                }
                            }
                        }
                    }
                }
            }
            let path = dir().join(segment_file_name(0, "log"));
            let appended: Vec<u8> = expected
                .iter()
                .flat_map(|stored| stored.bytes.iter().copied())
                .collect();
            let file = storage.open(&path, false).await.expect("open the segment");
            let on_disk = file
                .read_at(0, appended.len())
                .await
                .expect("read the segment");
            if on_disk != appended[..] && caught == 0 {
                failures.push(format!(
                    "by {by}: the segment is damaged, yet every read succeeded"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "misdirected writes:\n{}",
            failures.join("\n")
        );
    });
}

/// Damaged `.index` / `.timeindex` files of sealed segments: reads and
/// lookups by time still find every batch, the index being rebuilt from the
/// segment itself.
#[test]
fn damaged_index_files_are_rebuilt() {
    in_executor(|| async {
        let mut rng = Rng::new(21);
        let storage = MemStorage::new(4);
        let config = small_config();
        let log = open(&storage, &config, 0).await;
        let mut expected = Vec::new();
        for at in 0..150 {
            expected.push(append(&log, &mut rng, TIMESTAMP_START + 10 * at));
        }
        log.close().await.expect("close");
        drop(log);
        let names = storage.list_dir(&dir()).await.expect("list");
        let mut sealed: Vec<i64> = names
            .iter()
            .filter_map(|name| name.strip_suffix(".index"))
            .filter_map(|digits| digits.parse().ok())
            .collect();
        sealed.sort_unstable();
        assert!(
            sealed.len() >= 5,
            "the test needs several sealed segments, got {}",
            sealed.len()
        );
        type Damage = fn(&mut Vec<u8>, &mut Rng);
        let damages: [(&str, &str, Damage); 8] = [
            ("index", "cut short", |bytes, _| {
                bytes.truncate(bytes.len().saturating_sub(3))
            }),
            ("index", "random bytes", |bytes, rng| {
                bytes.iter_mut().for_each(|byte| *byte = rng.next() as u8)
            }),
            ("index", "entries swapped", |bytes, _| {
                if bytes.len() >= 16 {
                    bytes.rotate_left(8)
                }
            }),
            ("index", "positions shifted", |bytes, _| {
                // Still ordered and inside the segment: plausible, but wrong.
                for entry in bytes.chunks_mut(8) {
                    let position =
                        u32::from_be_bytes(entry[4..8].try_into().expect("4 bytes")) + 13;
                    entry[4..8].copy_from_slice(&position.to_be_bytes());
                }
            }),
            ("index", "emptied", |bytes, _| bytes.clear()),
            ("index", "removed", |_, _| {}),
            ("timeindex", "random bytes", |bytes, rng| {
                bytes.iter_mut().for_each(|byte| *byte = rng.next() as u8)
            }),
            ("timeindex", "removed", |_, _| {}),
        ];
        for (extension, name, damage) in damages {
            let damaged = storage.snapshot();
            for &base in &sealed {
                let path = dir().join(segment_file_name(base, extension));
                if name == "removed" {
                    damaged.remove_file(&path).expect("remove index");
                    continue;
                }
                let mut bytes = damaged
                    .read_small(&path, 1 << 20)
                    .await
                    .expect("read index");
                damage(&mut bytes, &mut rng);
                damaged
                    .write_small_atomic(&path, &bytes)
                    .await
                    .expect("write index");
            }
            let log = open(&damaged, &config, 0).await;
            check_log(&log, &expected, &format!("{extension} {name}")).await;
            for stored in &expected {
                let found = log.lookup(OffsetQuery::Timestamp(stored.timestamp)).await;
                let found = match found {
                    Ok(found) => found,
                    Err(error) => panic!("{extension} {name}: lookup failed: {error}"),
                };
                assert_eq!(
                    found,
                    Some(FoundOffset {
                        offset: stored.base,
                        timestamp: stored.timestamp
                    }),
                    "{extension} {name}: lookup of batch {}",
                    stored.base
                );
            }
            let last = expected.last().expect("batches");
            let max = log.lookup(OffsetQuery::MaxTimestamp).await.expect("lookup");
            assert_eq!(
                max,
                Some(FoundOffset {
                    offset: last.last,
                    timestamp: last.timestamp
                }),
                "{extension} {name}"
            );
        }
    });
}
