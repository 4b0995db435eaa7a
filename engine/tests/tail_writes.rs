//! Small appends share their writes: the writer holds back a write that
//! would only rewrite the partial last page (up to `TAIL_WRITE_DELAY`), so a
//! trickle of small batches costs a few writes, not one per batch, and a
//! sync writes what was held back.

mod common;

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::in_executor;
use sluice_engine::batch;
use sluice_engine::constants::TAIL_WRITE_DELAY;
use sluice_engine::log::LogConfig;
use sluice_engine::{BatchCache, MemStorage, PartitionLog};

/// Small batches appended one after the other.
const APPENDS: usize = 60;
/// Pause after each append, so the writer gets to run in between.
const PAUSE: Duration = Duration::from_micros(200);
/// Bytes of each record's value.
const VALUE_BYTES: usize = 100;
/// Batch cache of the test log.
const CACHE_BYTES: usize = 8 << 20;
/// Timestamps start here.
const TIMESTAMP_START: i64 = 1_700_000_000_000;

async fn open(storage: &MemStorage) -> Rc<PartitionLog<MemStorage>> {
    let dir = PathBuf::from("/data/tail-0");
    match PartitionLog::open(
        storage.clone(),
        dir,
        LogConfig::default(),
        BatchCache::new(CACHE_BYTES),
    )
    .await
    {
        Ok(log) => log,
        Err(error) => panic!("open failed: {error}"),
    }
}

fn append(log: &PartitionLog<MemStorage>, index: usize) {
    let value = vec![index as u8; VALUE_BYTES];
    let built = batch::build_batch(TIMESTAMP_START + index as i64, &[&value]);
    let set = Bytes::from(built);
    let batches = batch::split_and_validate(&set, usize::MAX).expect("a built batch is valid");
    if let Err(error) = log.append(&batches) {
        panic!("append {index} failed: {error}");
    }
}

#[test]
fn small_appends_share_writes_and_a_sync_flushes_them() {
    in_executor(|| async {
        let storage = MemStorage::new(1);
        let log = open(&storage).await;
        let writes_before = storage.writes();
        let started = Instant::now();
        for index in 0..APPENDS {
            append(&log, index);
            glommio::timer::sleep(PAUSE).await;
        }
        let elapsed = started.elapsed();
        let writes = storage.writes() - writes_before;
        // One write per delay that passed, plus the file's first write and
        // one at the end; without the delay the writer wrote after every
        // append (APPENDS writes).
        let allowed = (elapsed.as_micros() / TAIL_WRITE_DELAY.as_micros()) as u64 + 2;
        assert!(
            writes <= allowed,
            "{writes} writes for {APPENDS} small appends in {elapsed:?} (at most {allowed})"
        );

        // What is held back is still read (from the cache).
        let read = match log.read(APPENDS as i64 - 1, 1, i64::MAX).await {
            Ok(read) => read,
            Err(error) => panic!("read of the last batch failed: {error}"),
        };
        assert!(
            read.chunks.iter().map(|chunk| chunk.len()).sum::<usize>() > 0,
            "the last batch is not readable"
        );

        // A sync writes what was held back: all of it survives a crash.
        let leo = log.offsets().leo;
        assert_eq!(leo, APPENDS as i64);
        if let Err(error) = log.wait_durable(leo).await {
            panic!("wait_durable failed: {error}");
        }
        let crashed = storage.crash();
        let reopened = open(&crashed).await;
        assert_eq!(
            reopened.offsets().leo,
            leo,
            "a crash after the sync lost batches"
        );
    });
}
