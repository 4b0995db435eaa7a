//! The broker's shutdown closes its logs with a staged close: their writes
//! and small files share three syncs of the whole file system instead of
//! a dozen fsyncs per log. A crash at any step of it keeps every record
//! that was durable before, and every record once the first sync is done,
//! and leaves logs that open and read back.

mod common;

use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use common::{check_values, drop_log, in_executor, open_logs_in};
use sluice_engine::batch;
use sluice_engine::log::LogConfig;
use sluice_engine::{BatchCache, MemStorage, PartitionLog, PublishStep, StagedClose};

const LOGS: usize = 5;
/// Records appended and closed the usual way before the staged close.
const EARLIER: usize = 6;
/// Records appended after that, then closed staged.
const LATER: usize = 9;
/// Small segments, so that the later records roll a segment or two.
const SEGMENT_BYTES: u64 = 4096;
const VALUE_BYTES: usize = 700;
const CACHE_BYTES: usize = 1 << 20;
const TIMESTAMP_START: i64 = 1_700_000_000_000;
/// The steps of a staged close, in order (see `close_staged_up_to`).
const STEPS: usize = 6;
/// Seeds of the crash's choice of which unsynced writes survive.
const CRASH_SEEDS: u64 = 12;

fn value(log: usize, offset: usize) -> Vec<u8> {
    let mut value = vec![(log * 31 + offset) as u8; VALUE_BYTES];
    value[..16]
        .copy_from_slice(&[(log as u64).to_be_bytes(), (offset as u64).to_be_bytes()].concat());
    value
}

/// The logs, each in its own directory, with small segments.
async fn open_all(
    storage: &MemStorage,
    cache: &Rc<BatchCache>,
) -> Vec<Rc<PartitionLog<MemStorage>>> {
    let config = LogConfig {
        segment_bytes: SEGMENT_BYTES,
        ..LogConfig::default()
    };
    let dirs = (0..LOGS).map(|log| PathBuf::from(format!("/data/staged-{log}")));
    open_logs_in(storage, dirs, &config, cache).await
}

fn append(logs: &[Rc<PartitionLog<MemStorage>>], offsets: std::ops::Range<usize>) {
    for (index, log) in logs.iter().enumerate() {
        for offset in offsets.clone() {
            let set = Bytes::from(batch::build_batch(
                TIMESTAMP_START + offset as i64,
                &[&value(index, offset)],
            ));
            let batches =
                batch::split_and_validate(&set, usize::MAX).expect("a built batch is valid");
            if let Err(error) = log.append(&batches) {
                panic!("log {index}: appending offset {offset} failed: {error}");
            }
        }
    }
}

/// Checks that log `index` holds exactly its values for offsets below its
/// end, and returns that end.
async fn check_log(log: &PartitionLog<MemStorage>, index: usize) -> i64 {
    let end = log.offsets().leo;
    check_values(log, index, end, |offset| value(index, offset)).await;
    end
}

/// Runs the first `steps` of a staged close of `logs`, as the broker's
/// shutdown does: stage every log, sync, publish the indexes, sync,
/// publish the recovery points, sync.
async fn close_staged_up_to(logs: &[Rc<PartitionLog<MemStorage>>], steps: usize) {
    let file_system = match logs[0].open_file_system().await {
        Ok(file_system) => file_system,
        Err(error) => panic!("opening the file system failed: {error}"),
    };
    let mut staged: Vec<StagedClose> = Vec::new();
    for (index, log) in logs.iter().enumerate() {
        match log.close_staged().await {
            Ok(files) => staged.push(files),
            Err(error) => panic!("log {index}: the staged close failed: {error}"),
        }
    }
    let publish = [
        None,
        Some(PublishStep::Indexes),
        None,
        Some(PublishStep::RecoveryPoint),
        None,
    ];
    for step in publish.into_iter().take(steps.saturating_sub(1)) {
        match step {
            Some(step) => {
                for (log, files) in logs.iter().zip(staged.iter_mut()) {
                    if let Err(error) = log.publish(files, step).await {
                        panic!("publishing {step:?} failed: {error}");
                    }
                }
            }
            None => {
                if let Err(error) = logs[0].sync_file_system(&file_system).await {
                    panic!("the file system's sync failed: {error}");
                }
            }
        }
    }
}

/// How `logs` are closed before a restart.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Close {
    /// Each log's own `close()`, with its own syncs.
    Own,
    /// The first `steps` of a staged close.
    Staged { steps: usize },
}

/// Appends to fresh logs, closes them as `close` says, and returns the
/// segment reads their reopening after a crash made, and the file and
/// file-system syncs the close made.
async fn reads_to_reopen(close: Close) -> (u64, u64, u64) {
    let storage = MemStorage::new(3);
    let cache = BatchCache::new(CACHE_BYTES);
    let logs = open_all(&storage, &cache).await;
    append(&logs, 0..EARLIER + LATER);
    // Rolled segments are finalized (synced) as the writes reach the
    // next segment: that is the writer's work, not the close's.
    for (index, log) in logs.iter().enumerate() {
        if let Err(error) = log.wait_written().await {
            panic!("log {index}: writing failed: {error}");
        }
    }
    let (file_syncs, fs_syncs) = (storage.file_syncs(), storage.file_system_syncs());
    match close {
        Close::Own => {
            for (index, log) in logs.iter().enumerate() {
                if let Err(error) = log.close().await {
                    panic!("log {index}: closing failed: {error}");
                }
            }
        }
        Close::Staged { steps } => close_staged_up_to(&logs, steps).await,
    }
    let syncs = (
        storage.file_syncs() - file_syncs,
        storage.file_system_syncs() - fs_syncs,
    );
    for log in logs {
        drop_log(log).await;
    }
    let restarted = storage.crash();
    let reopened = open_all(&restarted, &cache).await;
    let reads = restarted.reads();
    for (index, log) in reopened.iter().enumerate() {
        assert_eq!(
            check_log(log, index).await,
            (EARLIER + LATER) as i64,
            "{close:?}, log {index}"
        );
    }
    (reads, syncs.0, syncs.1)
}

#[test]
fn a_staged_close_makes_no_fsync_of_its_own_and_needs_no_scan() {
    in_executor(|| async {
        let (own_reads, own_syncs, _) = reads_to_reopen(Close::Own).await;
        let (reads, file_syncs, fs_syncs) = reads_to_reopen(Close::Staged { steps: STEPS }).await;
        assert!(own_syncs >= LOGS as u64, "each log's own close syncs");
        assert_eq!(
            file_syncs, 0,
            "the staged close synced files or directories itself"
        );
        assert_eq!(fs_syncs, 3, "syncs of the file system");
        assert_eq!(
            reads, own_reads,
            "opening after a staged close read more than after the logs' own closes"
        );
        // Without its recovery points published, opening scans from the
        // ones before: the reads above tell a scan apart.
        let (unpublished_reads, ..) = reads_to_reopen(Close::Staged { steps: STEPS - 2 }).await;
        assert!(
            unpublished_reads > own_reads,
            "a scan read no more than a resumed open ({unpublished_reads} reads)"
        );
    });
}

#[test]
fn a_crash_at_any_step_of_a_staged_close_keeps_what_was_durable() {
    for steps in 0..=STEPS {
        for seed in 0..CRASH_SEEDS {
            in_executor(move || async move {
                let storage = MemStorage::new(seed * 101 + steps as u64);
                let cache = BatchCache::new(CACHE_BYTES);
                let logs = open_all(&storage, &cache).await;
                append(&logs, 0..EARLIER);
                for (index, log) in logs.iter().enumerate() {
                    if let Err(error) = log.close().await {
                        panic!("log {index}: closing failed: {error}");
                    }
                }
                for log in logs {
                    drop_log(log).await;
                }
                let logs = open_all(&storage, &cache).await;
                // One write per record, so that a crash can keep some of
                // them and lose others, leaving holes.
                for offset in EARLIER..EARLIER + LATER {
                    append(&logs, offset..offset + 1);
                    for (index, log) in logs.iter().enumerate() {
                        if let Err(error) = log.wait_written().await {
                            panic!("log {index}: writing failed: {error}");
                        }
                    }
                }
                close_staged_up_to(&logs, steps).await;
                for log in logs {
                    drop_log(log).await;
                }
                let restarted = storage.crash();
                let reopened = open_all(&restarted, &cache).await;
                for (index, log) in reopened.iter().enumerate() {
                    let end = check_log(log, index).await;
                    assert!(
                        end >= EARLIER as i64,
                        "steps {steps}, seed {seed}, log {index}: {end} records left of the {EARLIER} durable ones"
                    );
                    if steps >= 2 {
                        assert_eq!(
                            end,
                            (EARLIER + LATER) as i64,
                            "steps {steps}, seed {seed}, log {index}: records lost after the file system's sync"
                        );
                    }
                }
            });
        }
    }
}
