//! What a cleaning pass reads. Its first phase reads the dirty part of the
//! log for the latest offset of each key; its second reads again only the
//! batches that may keep a record, and empties the others from what the
//! first phase saw. A producer's last batch is read and stays, with its
//! producer id and sequence, though a later record supersedes every record
//! of it.

mod common;

use std::path::Path;

use common::{append_keyed as append, compacted_config, in_executor, open_log_with, read_all};
use sluice_engine::compaction::NoCodecs;
use sluice_engine::log::CompactionLimits;
use sluice_engine::storage::MemStorage;
use sluice_engine::BatchCache;

/// Keys written again and again: nearly every batch is superseded.
const KEYS: usize = 4;
const BATCHES: usize = 3_000;
const VALUE_BYTES: usize = 200;
const SEGMENT_BYTES: u64 = 16 * 1024;
const CACHE_BYTES: usize = 64 * 1024;
const READ_BYTES: usize = 64 * 1024;
/// The idempotent producer whose only batch a later record supersedes.
const PRODUCER: i64 = 7;
/// Batches of distinct keys written last: about three segments.
const FILLERS: usize = 200;
const KEY_MAP_ENTRIES: usize = 1 << 16;

fn value_of(batch: usize) -> Vec<u8> {
    let mut value = format!("value-{batch}-").into_bytes();
    value.resize(VALUE_BYTES, b'.');
    value
}

#[test]
fn a_pass_reads_superseded_batches_once() {
    in_executor(|| async {
        let config = compacted_config(SEGMENT_BYTES);
        let storage = MemStorage::new(1);
        let cache = BatchCache::new(CACHE_BYTES);
        let log = open_log_with(&storage, Path::new("/data/reads-0"), &config, &cache).await;
        append(&log, PRODUCER, b"key-0", &value_of(0));
        for batch in 1..BATCHES {
            append(
                &log,
                -1,
                format!("key-{}", batch % KEYS).as_bytes(),
                &value_of(batch),
            );
        }
        // Records of keys of their own, a few segments' worth, so that the
        // latest record of each key above lies in a segment the pass cleans.
        for filler in 0..FILLERS {
            append(
                &log,
                -1,
                format!("filler-{filler}").as_bytes(),
                &value_of(filler),
            );
        }
        let leo = log.offsets().leo;
        if let Err(error) = log.wait_durable(leo).await {
            panic!("sync failed: {error}");
        }
        let limits = limits();
        let report = match log
            .compact(sluice_engine::types::now_ms(), &limits, &NoCodecs)
            .await
        {
            Ok(Some(report)) => report,
            Ok(None) => panic!("no pass was due"),
            Err(error) => panic!("the pass failed: {error}"),
        };
        // Everything cleanable was dirty: the first phase read it all once.
        // Reading it all again in the second would make this twice.
        assert!(
            report.io_bytes < report.bytes_before + report.bytes_before / 4,
            "the pass handled {} bytes of {} cleanable: the superseded batches were read again",
            report.io_bytes,
            report.bytes_before
        );
        assert!(
            report.records_removed as usize > BATCHES / 2,
            "only {} records removed",
            report.records_removed
        );
        let batches = match read_all(&log, READ_BYTES).await {
            Ok(batches) => batches,
            Err(error) => panic!("{error}"),
        };
        let kept = batches
            .iter()
            .find(|(header, _)| header.producer_id == PRODUCER);
        match kept {
            Some((header, _)) => assert_eq!(
                (header.base_offset, header.base_sequence),
                (0, 0),
                "the producer's last batch moved or lost its sequence"
            ),
            None => panic!("the producer's last batch is gone: its sequence with it"),
        }
        // The latest value of each key is there.
        for batch in BATCHES - KEYS..BATCHES {
            let key = format!("key-{}", batch % KEYS).into_bytes();
            let value = value_of(batch);
            assert!(
                batches
                    .iter()
                    .flat_map(|(_, records)| records)
                    .any(|(k, record)| *k == key
                        && record.windows(value.len()).any(|bytes| bytes == value)),
                "the latest value of {} is gone",
                String::from_utf8_lossy(&key)
            );
        }
        common::drop_log(log).await;
    });
}

/// A batch of the dirty part that fails its CRC stops the pass, though
/// every record of it is superseded and the second phase would pass it over
/// unread: the first phase checks each batch it reads.
#[test]
fn a_damaged_batch_of_the_dirty_part_stops_the_pass() {
    in_executor(|| async {
        let dir = Path::new("/data/damaged-0");
        let config = compacted_config(SEGMENT_BYTES);
        let storage = MemStorage::new(2);
        let log = open_log_with(&storage, dir, &config, &BatchCache::new(CACHE_BYTES)).await;
        // Every key is written again later, so no batch of the first
        // segments holds a key's latest record.
        append_cycling(&log);
        common::close_durable(log).await;
        // A byte of the first batch's value in the second segment.
        let segment = damage(&storage, dir, 1, None).await;
        let log = open_log_with(&storage, dir, &config, &BatchCache::new(CACHE_BYTES)).await;
        the_pass_fails_on(&log, &segment).await;
        common::drop_log(log).await;
    });
}

/// A batch of the part cleaned before that fails its CRC stops the next
/// pass: the first phase does not read that part, the second reads it
/// again and checks each batch it reads.
#[test]
fn a_damaged_batch_of_the_clean_part_stops_the_pass() {
    in_executor(|| async {
        let dir = Path::new("/data/damaged-1");
        let config = compacted_config(SEGMENT_BYTES);
        let storage = MemStorage::new(2);
        let log = open_log_with(&storage, dir, &config, &BatchCache::new(CACHE_BYTES)).await;
        // Keys written once, then keys written again and again: the first
        // segment keeps its batches whole through the first pass.
        for batch in 0..DAMAGE_BATCHES {
            let key = if batch < DAMAGE_BATCHES / 4 {
                format!("once-{batch}")
            } else {
                format!("key-{}", batch % KEYS)
            };
            append(&log, -1, key.as_bytes(), &value_of(batch));
        }
        let limits = limits();
        let leo = log.offsets().leo;
        if let Err(error) = log.wait_durable(leo).await {
            panic!("sync failed: {error}");
        }
        match log
            .compact(sluice_engine::types::now_ms(), &limits, &NoCodecs)
            .await
        {
            Ok(Some(report)) => assert!(report.records_removed > 0, "{report:?}"),
            Ok(None) => panic!("no first pass was due"),
            Err(error) => panic!("the first pass failed: {error}"),
        }
        // A new dirty part, for a second pass.
        append_cycling(&log);
        common::close_durable(log).await;
        // A byte of the first batch's value in the first segment, which the
        // first pass left whole.
        let segment = damage(&storage, dir, 0, Some(b"once-0")).await;
        let log = open_log_with(&storage, dir, &config, &BatchCache::new(CACHE_BYTES)).await;
        the_pass_fails_on(&log, &segment).await;
        common::drop_log(log).await;
    });
}

/// Segments the damaged-batch tests need: a few, sealed.
const DAMAGE_SEGMENTS_MIN: usize = 4;
/// Batches the damaged-batch tests write: a few segments' worth.
const DAMAGE_BATCHES: usize = 400;
/// Where in its segment the damaged-batch test flips a byte: within the
/// first batch's value, past its header and the record's key.
const DAMAGE_AT: usize = 120;

/// Flips a byte of the first batch's value (at `DAMAGE_AT`) in the
/// `index`th segment of `dir`, after checking that the batch holds `key`
/// where one is given; returns the segment's file name.
async fn damage(storage: &MemStorage, dir: &Path, index: usize, key: Option<&[u8]>) -> String {
    use sluice_engine::storage::Storage;
    let names = match storage.list_dir(dir).await {
        Ok(names) => names,
        Err(error) => panic!("list failed: {error}"),
    };
    let mut segments: Vec<String> = names.into_iter().filter(|n| n.ends_with(".log")).collect();
    segments.sort();
    assert!(
        segments.len() >= DAMAGE_SEGMENTS_MIN,
        "the test needs several sealed segments, got {}",
        segments.len()
    );
    let segment = segments.swap_remove(index);
    let path = dir.join(&segment);
    let mut bytes = match storage.read_small(&path, SEGMENT_BYTES * 2).await {
        Ok(bytes) => bytes,
        Err(error) => panic!("read failed: {error}"),
    };
    if let Some(key) = key {
        assert!(
            bytes[..DAMAGE_AT]
                .windows(key.len())
                .any(|window| window == key),
            "the segment's first batch is not the one expected"
        );
    }
    bytes[DAMAGE_AT] ^= 0x5a;
    if let Err(error) = storage.write_small_atomic(&path, &bytes).await {
        panic!("write failed: {error}");
    }
    segment
}

/// A pass over the log fails, on a batch of `segment` failing its CRC.
async fn the_pass_fails_on(log: &sluice_engine::log::PartitionLog<MemStorage>, segment: &str) {
    let limits = limits();
    match log
        .compact(sluice_engine::types::now_ms(), &limits, &NoCodecs)
        .await
    {
        Err(error) => {
            let error = error.to_string();
            assert!(
                error.contains("checksum") && error.contains(segment),
                "the pass failed for another reason: {error}"
            );
        }
        Ok(report) => panic!("the pass went through a damaged batch: {report:?}"),
    }
}

/// Appends `DAMAGE_BATCHES` batches cycling through `KEYS` keys: each key
/// is written again and again.
fn append_cycling(log: &sluice_engine::log::PartitionLog<MemStorage>) {
    for batch in 0..DAMAGE_BATCHES {
        append(
            log,
            -1,
            format!("key-{}", batch % KEYS).as_bytes(),
            &value_of(batch),
        );
    }
}

/// What every pass of these tests may use: no I/O limit, a map for all keys.
fn limits() -> CompactionLimits {
    CompactionLimits {
        key_map_entries_max: KEY_MAP_ENTRIES,
        io_bytes_per_second: 0,
        merge_segments: true,
    }
}
