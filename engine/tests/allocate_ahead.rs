//! Segment files are allocated ahead of their writes (`ALLOCATE_AHEAD_BYTES`),
//! so a file is longer than its log: a kill leaves zeros after the last
//! batch, which a restart cuts, and a segment holding nothing but such
//! zeros (allocated, its first write lost) is taken for an empty one.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::{in_executor, open_mem_log};
use sluice_engine::batch::{self, BuildBatch};
use sluice_engine::constants::{ALLOCATE_AHEAD_BYTES, IO_ALIGNMENT};
use sluice_engine::log::segment_file_name;
use sluice_engine::storage::{Storage, StorageFile};
use sluice_engine::{MemStorage, PartitionLog};

const DIR: &str = "/data/ahead-0";
const PRODUCER_ID: i64 = 7;
/// Batches appended before the kill.
const BATCHES: usize = 20;
/// Bytes of each record's value.
const VALUE_BYTES: usize = 300;
/// Batch cache of the test log.
const CACHE_BYTES: usize = 8 << 20;
/// Timestamps start here.
const TIMESTAMP_START: i64 = 1_700_000_000_000;

/// Appends an idempotent producer's batch `index` (its sequence); returns
/// whether the log took it for a retry of one it holds.
fn append(log: &PartitionLog<MemStorage>, index: usize) -> bool {
    let value = vec![index as u8; VALUE_BYTES];
    let built = batch::build_batch_with(
        BuildBatch {
            producer_id: PRODUCER_ID,
            producer_epoch: 0,
            base_sequence: index as i32,
            base_timestamp: TIMESTAMP_START + index as i64,
            ..BuildBatch::default()
        },
        &[&value],
    );
    let set = Bytes::from(built);
    let batches = batch::split_and_validate(&set, usize::MAX).expect("a built batch is valid");
    match log.append(&batches) {
        Ok(appended) => appended.duplicate,
        Err(error) => panic!("append {index} failed: {error}"),
    }
}

/// Every record of the log from offset 0, checked against what was appended.
async fn check_all(log: &PartitionLog<MemStorage>, count: usize) {
    let mut offset = 0i64;
    while (offset as usize) < count {
        let read = match log.read(offset, 1 << 20, i64::MAX).await {
            Ok(read) => read,
            Err(error) => panic!("reading at {offset} failed: {error}"),
        };
        let bytes: Vec<u8> = read
            .chunks
            .iter()
            .flat_map(|chunk| chunk.to_vec())
            .collect();
        assert!(!bytes.is_empty(), "nothing read at offset {offset}");
        let mut at = 0;
        while at < bytes.len() {
            let header = match batch::BatchHeader::parse(&bytes[at..]) {
                Ok(header) => header,
                Err(error) => panic!("a bad batch at offset {offset}: {error:?}"),
            };
            assert_eq!(header.base_offset, offset, "batches out of order");
            let end = at + header.total_bytes();
            let value = vec![offset as u8; VALUE_BYTES];
            assert!(
                bytes[at..end]
                    .windows(VALUE_BYTES)
                    .any(|w| w == value.as_slice()),
                "the record at offset {offset} does not hold what was appended"
            );
            offset += 1;
            at = end;
        }
    }
}

async fn file_len(storage: &MemStorage, path: &Path) -> u64 {
    match storage.file_size(path) {
        Ok(size) => size,
        Err(error) => panic!("stat {} failed: {error}", path.display()),
    }
}

#[test]
fn a_kill_leaves_allocated_zeros_that_a_restart_cuts() {
    in_executor(|| async {
        let storage = MemStorage::new(3);
        let log = open_mem_log(&storage, DIR, CACHE_BYTES).await;
        for index in 0..BATCHES {
            append(&log, index);
        }
        if let Err(error) = log.wait_written().await {
            panic!("wait_written failed: {error}");
        }
        let logical = log.size_bytes();
        let killed = storage.snapshot();
        let path = Path::new(DIR).join(segment_file_name(0, "log"));
        let on_disk = file_len(&killed, &path).await;
        assert!(
            on_disk >= logical + ALLOCATE_AHEAD_BYTES - IO_ALIGNMENT,
            "the file ({on_disk} bytes) was not allocated ahead of its {logical} bytes of batches"
        );

        let reopened = open_mem_log(&killed, DIR, CACHE_BYTES).await;
        assert_eq!(reopened.offsets().leo, BATCHES as i64);
        assert_eq!(reopened.size_bytes(), logical);
        assert_eq!(
            file_len(&killed, &path).await,
            logical,
            "recovery left the zeros after the last batch"
        );
        // Appends go on where the log ends, not after the zeros.
        append(&reopened, BATCHES);
        if let Err(error) = reopened.wait_durable(BATCHES as i64 + 1).await {
            panic!("wait_durable failed: {error}");
        }
        check_all(&reopened, BATCHES + 1).await;
        let again = open_mem_log(&killed.snapshot(), DIR, CACHE_BYTES).await;
        assert_eq!(again.offsets().leo, BATCHES as i64 + 1);
        check_all(&again, BATCHES + 1).await;
    });
}

#[test]
fn a_last_segment_of_only_zeros_is_taken_for_an_empty_one() {
    in_executor(|| async {
        let storage = MemStorage::new(4);
        let log = open_mem_log(&storage, DIR, CACHE_BYTES).await;
        for index in 0..BATCHES {
            append(&log, index);
        }
        if let Err(error) = log.close().await {
            panic!("close failed: {error}");
        }
        drop(log);
        // The next segment's file, allocated and never written: what a
        // kill right after a roll's allocation leaves.
        let next = Path::new(DIR).join(segment_file_name(BATCHES as i64, "log"));
        let file = match storage.open(&next, true).await {
            Ok(file) => file,
            Err(error) => panic!("creating {} failed: {error}", next.display()),
        };
        if let Err(error) = file.allocate(ALLOCATE_AHEAD_BYTES).await {
            panic!("allocate failed: {error}");
        }
        drop(file);

        let reopened = open_mem_log(&storage, DIR, CACHE_BYTES).await;
        assert_eq!(
            reopened.offsets().leo,
            BATCHES as i64,
            "the log does not end where the segment before the zeros ends"
        );
        check_all(&reopened, BATCHES).await;
        // The producer state came back with the log: a retry of the last
        // batch is known (rebuilding it from the empty segment's missing
        // snapshot would forget the producer).
        assert!(
            append(&reopened, BATCHES - 1),
            "the retried batch was stored again: the producer state was lost"
        );
        assert!(!append(&reopened, BATCHES));
        if let Err(error) = reopened.wait_durable(BATCHES as i64 + 1).await {
            panic!("wait_durable failed: {error}");
        }
        check_all(&reopened, BATCHES + 1).await;
    });
}
