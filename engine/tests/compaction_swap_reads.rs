//! Reads while the cleaner puts its copies in place. A copy takes a
//! segment's place in memory first and its name on disk later, off the
//! shard's thread; meanwhile the old segment's index files are still on
//! disk and describe the old file. A reader that loads a segment's index in
//! that window must not take those files for the copy's, and every read
//! returns whole batches with the records appended at their offsets.

mod common;

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;

use common::{append_keyed, compacted_config, in_executor, open_log_with, read_all};
use sluice_engine::compaction::NoCodecs;
use sluice_engine::log::{CompactionLimits, PartitionLog};
use sluice_engine::storage::MemStorage;
use sluice_engine::BatchCache;

/// Keys written again and again, so that cleaning moves nearly every batch.
const KEYS: usize = 5;
const BATCHES: usize = 2_000;
const VALUE_BYTES: usize = 100;
const SEGMENT_BYTES: u64 = 8 * 1024;
/// Smaller than the log: reads go to the segment files, not the cache.
const CACHE_BYTES: usize = 16 * 1024;
const READ_BYTES: usize = 4 * 1024;
const KEY_MAP_ENTRIES: usize = 1 << 16;
/// Full reads of the log made while the pass runs, at most: the reader
/// stops with the pass.
const READS_MAX: usize = 10_000;

fn append(log: &PartitionLog<MemStorage>, batch: usize) {
    let key = format!("key-{}", batch % KEYS);
    append_keyed(log, -1, key.as_bytes(), &value_of(batch));
}

fn value_of(batch: usize) -> Vec<u8> {
    let mut value = format!("value-{batch}-").into_bytes();
    value.resize(VALUE_BYTES, b'.');
    value
}

/// Reads the whole log and checks that each batch holds the record
/// appended at its offset; returns the offsets of the records read, or
/// what is wrong.
async fn check_read(log: &PartitionLog<MemStorage>) -> Result<Vec<bool>, String> {
    let batches = read_all(log, READ_BYTES).await?;
    let mut seen = vec![false; BATCHES];
    let mut previous = -1;
    for (header, records) in &batches {
        if header.base_offset <= previous {
            return Err(format!(
                "the batch at {} follows one at {previous}",
                header.base_offset
            ));
        }
        previous = header.base_offset;
        // The cleaner leaves a run of removed batches as one batch without
        // records, so that their offsets stay accounted for.
        if records.is_empty() {
            continue;
        }
        let batch = header.base_offset as usize;
        let key = format!("key-{}", batch % KEYS).into_bytes();
        let value = value_of(batch);
        let holds = records.iter().any(|(k, record)| {
            *k == key && record.windows(value.len()).any(|bytes| bytes == value)
        });
        match seen.get_mut(batch) {
            Some(slot) if holds => *slot = true,
            _ => {
                return Err(format!(
                    "the batch at {} does not hold the record appended there",
                    header.base_offset
                ))
            }
        }
    }
    Ok(seen)
}

#[test]
fn reads_during_swaps_see_only_appended_records() {
    reads_during_a_pass(false);
}

#[test]
fn reads_during_merges_see_only_appended_records() {
    reads_during_a_pass(true);
}

/// Reads the log over and over while a pass cleans it, each segment
/// replaced on its own (`swap_in`) or merged with the next ones
/// (`merge_in`).
fn reads_during_a_pass(merge_segments: bool) {
    in_executor(move || async move {
        let config = compacted_config(SEGMENT_BYTES);
        let storage = MemStorage::new(1);
        let dir = Path::new("/data/swap-reads-0");
        let cache = BatchCache::new(CACHE_BYTES);
        let log = open_log_with(&storage, dir, &config, &cache).await;
        for batch in 0..BATCHES {
            append(&log, batch);
        }
        common::close_durable(log).await;
        // Opened again, the sealed segments' indexes are read from their
        // files on first use.
        let cache = BatchCache::new(CACHE_BYTES);
        let log = open_log_with(&storage, dir, &config, &cache).await;
        let limits = CompactionLimits {
            key_map_entries_max: KEY_MAP_ENTRIES,
            // Unthrottled, so that the pass yields only where it waits.
            io_bytes_per_second: 0,
            merge_segments,
        };
        let done = Rc::new(Cell::new(false));
        let cleaner = {
            let (log, done) = (Rc::clone(&log), Rc::clone(&done));
            glommio::spawn_local(async move {
                let report = log
                    .compact(sluice_engine::types::now_ms(), &limits, &NoCodecs)
                    .await;
                done.set(true);
                report
            })
        };
        // What each read saw: a record the pass keeps must be in every one.
        let mut reads: Vec<Vec<bool>> = Vec::new();
        while !done.get() && reads.len() < READS_MAX {
            match check_read(&log).await {
                Ok(seen) => reads.push(seen),
                Err(error) => panic!("read {} while the cleaner ran: {error}", reads.len()),
            }
            futures_lite::future::yield_now().await;
        }
        let report = match cleaner.await {
            Ok(Some(report)) => report,
            Ok(None) => panic!("no pass was due"),
            Err(error) => panic!("the pass failed: {error}"),
        };
        assert!(
            report.segments_rewritten > 10,
            "only {} segments rewritten",
            report.segments_rewritten
        );
        assert!(reads.len() > 1, "the reader never ran while the pass did");
        let kept = match check_read(&log).await {
            Ok(kept) => kept,
            Err(error) => panic!("after the pass: {error}"),
        };
        let kept_count = kept.iter().filter(|&&kept| kept).count();
        assert!(
            kept_count < BATCHES / 2,
            "{kept_count} of {BATCHES} records left after the pass"
        );
        for (read, seen) in reads.iter().enumerate() {
            if let Some(missing) = (0..BATCHES).find(|&offset| kept[offset] && !seen[offset]) {
                panic!("read {read} during the pass missed the record at {missing}, which the pass keeps");
            }
        }
        common::drop_log(log).await;
    });
}
