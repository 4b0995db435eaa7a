//! Entry points for the coverage-guided fuzz targets in `tests/fuzz/`
//! (built only with the `fuzzing` feature; normal builds do not have it).
//!
//! The readers of a partition directory are private async functions over a
//! [`Storage`]. Rather than copy their parsing into pure functions, which
//! could drift from what recovery runs, [`recover`] lays the fuzzer's bytes
//! out as files on a [`MemStorage`] and calls the real readers in the order
//! [`PartitionLog::open`] does. `MemStorage` never waits, so each future is
//! driven to completion by `block_on` without a glommio executor.

use futures_lite::future::block_on;

use super::*;
use crate::storage::MemStorage;

/// The base offset of the one segment [`recover`] lays out: the first
/// segment of a new log, the one every partition has.
pub const SEGMENT_BASE: i64 = 0;

/// `MemStorage` draws torn-write lengths from this seed; no faults are
/// injected here, so any value does.
const FUZZ_STORAGE_SEED: u64 = 1;

/// The files of one partition directory; `None` leaves a file out, as a
/// partition that never wrote it would.
#[derive(Clone, Debug, Default)]
pub struct LogDirFiles {
    pub segment: Vec<u8>,
    pub offset_index: Option<Vec<u8>>,
    pub time_index: Option<Vec<u8>>,
    pub txn_index: Option<Vec<u8>>,
    pub producer_snapshot: Option<Vec<u8>>,
    pub recovery_point: Option<Vec<u8>>,
    pub log_start: Option<Vec<u8>>,
    pub epoch_checkpoint: Option<Vec<u8>>,
}

/// What recovery made of the files, so a target can check it for sense.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub log_start: i64,
    pub valid_bytes: u64,
    pub next_offset: i64,
    pub batches: usize,
    pub producers: usize,
    pub aborted: usize,
    pub epochs: Option<Vec<(i32, i64)>>,
    pub resumed: bool,
}

/// Recovers the segment at [`SEGMENT_BASE`] from `files` with the readers
/// and in the order of [`PartitionLog::open`]; `Err` is a refusal the broker
/// would report (a foreign or damaged file), never a bug.
pub fn recover(files: &LogDirFiles) -> Result<Recovered, String> {
    block_on(recover_async(files))
}

async fn recover_async(files: &LogDirFiles) -> Result<Recovered, String> {
    let storage = MemStorage::new(FUZZ_STORAGE_SEED);
    let dir = PathBuf::from("/fuzz/topic-0");
    let put = |name: String, bytes: &Option<Vec<u8>>| {
        let storage = storage.clone();
        let path = dir.join(name);
        let bytes = bytes.clone();
        async move {
            if let Some(bytes) = bytes {
                storage
                    .write_small_atomic(&path, &bytes)
                    .await
                    .map_err(|error| error.to_string())?;
            }
            Ok::<(), String>(())
        }
    };
    let base = SEGMENT_BASE;
    put(segment_file_name(base, "log"), &Some(files.segment.clone())).await?;
    put(segment_file_name(base, "index"), &files.offset_index).await?;
    put(segment_file_name(base, "timeindex"), &files.time_index).await?;
    put(segment_file_name(base, "txnindex"), &files.txn_index).await?;
    put(
        segment_file_name(base, "snapshot"),
        &files.producer_snapshot,
    )
    .await?;
    put(RECOVERY_POINT_FILE.to_string(), &files.recovery_point).await?;
    put(LOG_START_FILE.to_string(), &files.log_start).await?;
    put(EPOCH_CHECKPOINT_FILE.to_string(), &files.epoch_checkpoint).await?;

    let log_start = read_log_start(&storage, &dir)
        .await
        .map_err(|error| error.to_string())?;
    let resume_point = load_recovery_point(&storage, &dir).await;
    let path = dir.join(segment_file_name(base, "log"));
    let file = storage
        .open(&path, false)
        .await
        .map_err(|error| error.to_string())?;
    let size = file.size().await.map_err(|error| error.to_string())?;
    // The same conditions as `open` for resuming from a recovery point.
    let resume = match &resume_point {
        Some((point, state))
            if point.segment_base == base && point.position > 0 && point.position <= size =>
        {
            load_index_files(&storage, &dir, base, point.position)
                .await
                .map(|index| {
                    (
                        ScanStart {
                            point: *point,
                            index,
                        },
                        state.clone(),
                    )
                })
        }
        _ => None,
    };
    let resumed = resume.is_some();
    let (start, resumed_producers) = match resume {
        Some((start, state)) => (Some(start), Some(state)),
        None => (None, None),
    };
    let mut aborted = match &start {
        Some(start) => {
            let mut entries = load_txn_index(&storage, &dir, base).await;
            entries.retain(|entry| entry.last_offset < start.point.next_offset);
            entries
        }
        None => Vec::new(),
    };
    let config = LogConfig::default();
    let scanned = scan_segment(&file, &path, base, size, &config, start)
        .await
        .map_err(|error| error.to_string())?;
    let mut producers = match resumed_producers {
        Some(state) => state,
        None => load_producer_snapshot(&storage, &dir, base).await,
    };
    for (header, control) in &scanned.headers {
        aborted.extend(record_batch(&mut producers, header, *control));
    }
    let epochs = read_epoch_checkpoint(&storage, &dir)
        .await
        .map_err(|error| error.to_string())?;
    Ok(Recovered {
        log_start,
        valid_bytes: scanned.valid_bytes,
        next_offset: scanned.next_offset,
        batches: scanned.headers.len(),
        producers: producers.producers.len(),
        aborted: aborted.len(),
        epochs,
        resumed,
    })
}

/// [`first_record_at_or_after`] as ListOffsets-by-timestamp calls it on a
/// stored batch; `batch` must have passed [`batch::validate`], as every
/// stored batch has.
pub fn find_record_at_or_after(batch: &[u8], target: i64) -> Option<FoundOffset> {
    let header = batch::validate(batch, usize::MAX).ok()?;
    first_record_at_or_after(batch, &header, target)
}

/// Frames `payload` the way `log-start-offset`, `recovery-point` and the
/// producer snapshots are framed, so a target can build valid files.
pub fn encode_checkpoint_frame(payload: &[u8], version: u16) -> Vec<u8> {
    encode_checkpoint_version(payload, version)
}

/// The frame version of producer snapshots and recovery points.
pub const PRODUCER_SNAPSHOT_FRAME_VERSION: u16 = PRODUCER_SNAPSHOT_VERSION;
