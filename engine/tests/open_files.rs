//! A shard keeps at most its budget of segment files open: with more
//! partitions written than that, idle files are closed and opened again on
//! use, and nothing written, synced or read goes wrong for it.

mod common;

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::{check_values, drop_log, in_executor, open_log_with, open_logs_in};
use sluice_engine::batch;
use sluice_engine::log::LogConfig;
use sluice_engine::{BatchCache, MemStorage, PartitionLog};

/// Logs on the shard, each written to: six times the budget.
const LOGS: usize = 24;
/// Segment files the shard may keep open.
const OPEN_FILES_MAX: usize = 4;
/// Rounds of one append to every log.
const ROUNDS: usize = 24;
/// Small segments, so that logs roll and reads go to older segments.
const SEGMENT_BYTES: u64 = 4096;
const VALUE_BYTES: usize = 300;
/// No batch cache: every read goes to the segment files.
const CACHE_BYTES: usize = 0;
/// Time for the logs' writer and syncer tasks to let go of their handles.
const SETTLE: Duration = Duration::from_millis(20);
const TIMESTAMP_START: i64 = 1_700_000_000_000;
/// A wait for writes or a sync that takes longer has hung.
const WAIT_MAX: Duration = Duration::from_secs(10);

fn value(log: usize, round: usize) -> Vec<u8> {
    let mut value = vec![(log * 7 + round) as u8; VALUE_BYTES];
    value[..8].copy_from_slice(&((log * 1000 + round) as u64).to_be_bytes());
    value
}

fn append(log: &PartitionLog<MemStorage>, index: usize, round: usize) {
    let built = batch::build_batch(TIMESTAMP_START + round as i64, &[&value(index, round)]);
    let set = Bytes::from(built);
    let batches = batch::split_and_validate(&set, usize::MAX).expect("a built batch is valid");
    if let Err(error) = log.append(&batches) {
        panic!("append to log {index} in round {round} failed: {error}");
    }
}

fn dir(index: usize) -> PathBuf {
    PathBuf::from(format!("/data/t-{index}"))
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_BYTES,
        ..LogConfig::default()
    }
}

async fn open_all(
    storage: &MemStorage,
    cache: &Rc<BatchCache>,
) -> Vec<Rc<PartitionLog<MemStorage>>> {
    open_logs_in(storage, (0..LOGS).map(dir), &config(), cache).await
}

/// Reads log `index` whole and checks it holds the values of `rounds`.
async fn check_log(log: &PartitionLog<MemStorage>, index: usize, rounds: usize) {
    check_values(log, index, rounds as i64, |offset| value(index, offset)).await;
}

/// Runs `future`, failing the test if it takes longer than `WAIT_MAX`.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    let bounded = glommio::timer::timeout(WAIT_MAX, async { Ok(future.await) }).await;
    match bounded {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {WAIT_MAX:?}"),
    }
}

async fn settle() {
    glommio::timer::sleep(SETTLE).await;
}

/// Appends `round` to every log and waits for the writes; then squeezes
/// the budget to none for a moment, so that every file is closed.
async fn write_and_close_all(
    logs: &[Rc<PartitionLog<MemStorage>>],
    round: usize,
    cache: &BatchCache,
    storage: &MemStorage,
) {
    for (index, log) in logs.iter().enumerate() {
        append(log, index, round);
        if let Err(error) = within("a write", log.wait_written()).await {
            panic!("log {index}: {error}");
        }
    }
    settle().await;
    // One pass asks every file twice: to clear its use, then to close.
    cache.open_files().set_max(0);
    assert_eq!(storage.open_handles(), 0, "idle files left open");
    cache.open_files().set_max(OPEN_FILES_MAX);
}

#[test]
fn more_logs_than_open_files_write_sync_read_and_recover() {
    in_executor(|| async {
        let storage = MemStorage::new(11);
        let cache = BatchCache::new(CACHE_BYTES);
        cache.open_files().set_max(OPEN_FILES_MAX);
        let logs = open_all(&storage, &cache).await;
        for round in 0..ROUNDS {
            for (index, log) in logs.iter().enumerate() {
                append(log, index, round);
            }
            // Some logs wait for durability, others only for their writes.
            for (index, log) in logs.iter().enumerate() {
                let leo = log.offsets().leo;
                let waited = if (index + round) % 3 == 0 {
                    within("a sync", log.wait_durable(leo)).await
                } else {
                    within("a write", log.wait_written()).await
                };
                if let Err(error) = waited {
                    panic!("log {index}, round {round}: {error}");
                }
            }
            // Reads of older segments open their files again.
            let index = round % LOGS;
            check_log(&logs[index], index, round + 1).await;
            settle().await;
            // Asked again, the budget closes every idle file over it.
            cache.open_files().set_max(OPEN_FILES_MAX);
            assert!(
                storage.open_handles() <= OPEN_FILES_MAX,
                "round {round}: {} files open, budget {OPEN_FILES_MAX}",
                storage.open_handles()
            );
        }
        assert!(
            cache.open_files().closed_for_room() > 0,
            "no file was closed for room"
        );
        for (index, log) in logs.iter().enumerate() {
            check_log(log, index, ROUNDS).await;
        }

        // Written, closed for room, and only then synced: the sync opens
        // the file again, and a crash keeps it all.
        write_and_close_all(&logs, ROUNDS, &cache, &storage).await;
        for (index, log) in logs.iter().enumerate() {
            let leo = log.offsets().leo;
            let synced = within("a sync of a closed file", log.wait_durable(leo)).await;
            if let Err(error) = synced {
                panic!("syncing log {index} after its file was closed: {error}");
            }
        }
        let crashed = storage.crash();
        let recache = BatchCache::new(CACHE_BYTES);
        recache.open_files().set_max(OPEN_FILES_MAX);
        let recovered = open_all(&crashed, &recache).await;
        for (index, log) in recovered.iter().enumerate() {
            assert_eq!(
                log.offsets().leo,
                ROUNDS as i64 + 1,
                "log {index} after a crash"
            );
            check_log(log, index, ROUNDS + 1).await;
        }

        // One more round, then a clean stop: closing makes every write
        // durable, opening the files closed for room again, so a crash
        // right after loses nothing.
        write_and_close_all(&recovered, ROUNDS + 1, &recache, &crashed).await;
        for (index, log) in recovered.iter().enumerate() {
            if let Err(error) = within("a close", log.close()).await {
                panic!("closing log {index}: {error}");
            }
        }
        let crashed_again = crashed.crash();
        let again = open_all(&crashed_again, &BatchCache::new(CACHE_BYTES)).await;
        for (index, log) in again.iter().enumerate() {
            assert_eq!(
                log.offsets().leo,
                ROUNDS as i64 + 2,
                "log {index} after a stop and a crash"
            );
            check_log(log, index, ROUNDS + 2).await;
        }
    });
}

/// A log closed with nothing appended since it opened has nothing to cut
/// or record: it neither opens its segment file again (closed for room
/// meanwhile) nor rewrites its recovery point and indexes.
#[test]
fn a_log_closed_without_appends_since_it_opened_writes_nothing() {
    in_executor(|| async {
        let storage = MemStorage::new(5);
        let cache = BatchCache::new(CACHE_BYTES);
        let log = open_log_with(&storage, &dir(0), &config(), &cache).await;
        for round in 0..3 {
            append(&log, 0, round);
        }
        if let Err(error) = within("a close", log.close()).await {
            panic!("closing: {error}");
        }
        drop_log(log).await;
        let reopened = open_log_with(&storage, &dir(0), &config(), &cache).await;
        assert_eq!(reopened.offsets().leo, 3);
        cache.open_files().set_max(0);
        assert_eq!(storage.open_handles(), 0, "the idle file was not closed");
        cache.open_files().set_max(OPEN_FILES_MAX);
        let small_writes = storage.small_writes();
        if let Err(error) = within("a close", reopened.close()).await {
            panic!("closing again: {error}");
        }
        assert_eq!(
            storage.small_writes(),
            small_writes,
            "the recovery point or indexes were written again"
        );
        assert_eq!(
            storage.open_handles(),
            0,
            "the segment file was opened again"
        );
        check_log(&reopened, 0, 3).await;
    });
}
