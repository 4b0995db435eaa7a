//! Small appends share their writes: the writer holds back a write that
//! would only rewrite the partial last page (up to `TAIL_WRITE_DELAY`), so a
//! trickle of small batches costs a few writes, not one per batch, and a
//! sync writes what was held back.

mod common;

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{in_executor, open_mem_log};
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
    open_mem_log(storage, "/data/tail-0", CACHE_BYTES).await
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

/// A byte buffer that records when it is freed.
struct Frame {
    bytes: Vec<u8>,
    freed: Arc<AtomicBool>,
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        self.freed.store(true, Ordering::SeqCst);
    }
}

/// Bytes of the request frame the batch is cut from, beyond the batch.
const FRAME_SLACK_BYTES: usize = 1 << 20;

/// A written batch does not keep the request frame it came in alive, even
/// while its partial last page stays staged for the next write: the staged
/// bytes are slices of the frame, and one kept per partition held most of a
/// many-partition broker's memory.
#[test]
fn a_written_small_batch_frees_its_request_frame() {
    in_executor(|| async {
        let storage = MemStorage::new(3);
        // A cache too small to keep the batch once it is written.
        let log = match PartitionLog::open(
            storage.clone(),
            PathBuf::from("/data/frame-0"),
            LogConfig::default(),
            BatchCache::new(1),
        )
        .await
        {
            Ok(log) => log,
            Err(error) => panic!("open failed: {error}"),
        };
        let freed = Arc::new(AtomicBool::new(false));
        {
            let mut bytes = batch::build_batch(TIMESTAMP_START, &[&[7u8; VALUE_BYTES]]);
            let batch_len = bytes.len();
            bytes.resize(batch_len + FRAME_SLACK_BYTES, 0);
            let frame = Bytes::from_owner(Frame {
                bytes,
                freed: Arc::clone(&freed),
            });
            let set = frame.slice(..batch_len);
            let batches =
                batch::split_and_validate(&set, usize::MAX).expect("a built batch is valid");
            if let Err(error) = log.append(&batches) {
                panic!("append failed: {error}");
            }
        }
        assert!(
            !freed.load(Ordering::SeqCst),
            "the frame was freed before its batch was written"
        );
        if let Err(error) = log.wait_durable(1).await {
            panic!("wait_durable failed: {error}");
        }
        assert!(
            freed.load(Ordering::SeqCst),
            "the written batch still holds its request frame"
        );
        // The bytes kept for the partial page are still right: the next
        // append rewrites that page, and both batches read back after a
        // crash that follows a sync.
        append(&log, 1);
        if let Err(error) = log.wait_durable(2).await {
            panic!("wait_durable failed: {error}");
        }
        let crashed = storage.crash();
        let reopened = match PartitionLog::open(
            crashed,
            PathBuf::from("/data/frame-0"),
            LogConfig::default(),
            BatchCache::new(CACHE_BYTES),
        )
        .await
        {
            Ok(log) => log,
            Err(error) => panic!("reopen failed: {error}"),
        };
        assert_eq!(reopened.offsets().leo, 2, "a synced batch was lost");
        let read = match reopened.read(0, usize::MAX, i64::MAX).await {
            Ok(read) => read,
            Err(error) => panic!("read failed: {error}"),
        };
        let first = read
            .chunks
            .first()
            .map(|chunk| chunk.to_vec())
            .unwrap_or_default();
        assert!(
            first.len() > VALUE_BYTES
                && first[..]
                    .windows(VALUE_BYTES)
                    .any(|w| w == [7u8; VALUE_BYTES]),
            "the first batch's bytes did not survive the rewrite of its page"
        );
    });
}

/// `wait_written` returns only once a held-back tail is in its file: a
/// follower waits for it before its next fetch tells the leader that the
/// records are replicated, and a process killed right after (the disk as it
/// is, nothing in the process's memory) must still hold them. (That it ends
/// the hold at once rather than waiting it out is not asserted: on a loaded
/// machine the clock cannot tell the two apart.)
#[test]
fn wait_written_writes_a_held_back_tail_before_it_returns() {
    in_executor(|| async {
        let storage = MemStorage::new(2);
        let log = open(&storage).await;
        append(&log, 0);
        // Let the writer write the first batch (the file's first write is
        // never held back) and start holding the next.
        if let Err(error) = log.wait_written().await {
            panic!("wait_written failed: {error}");
        }
        append(&log, 1);
        glommio::timer::sleep(PAUSE).await;
        let before = storage.snapshot();
        if let Err(error) = log.wait_written().await {
            panic!("wait_written failed: {error}");
        }
        let after = storage.snapshot();

        // The premise: before the wait the second batch was only in
        // memory, so a kill then would have lost it.
        assert_eq!(
            open(&before).await.offsets().leo,
            1,
            "the tail was not held back, so this test shows nothing"
        );
        assert_eq!(
            open(&after).await.offsets().leo,
            2,
            "a kill after wait_written lost the batch it waited for"
        );
    });
}
