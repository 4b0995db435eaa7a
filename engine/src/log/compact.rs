//! Log compaction of a partition's sealed segments (`cleanup.policy=compact`),
//! as Kafka's log cleaner defines it: the latest record of every key stays,
//! older records of the same key go, records without a key go, tombstones
//! go once they have stayed through one cleaning and `delete.retention.ms`,
//! records of aborted transactions go. A transaction marker goes on the same
//! terms as a tombstone, and only once no batch of its transaction is left
//! and the transaction began in the marker's own segment: a replay of that
//! segment from its start snapshot (a truncation) must not find the
//! transaction open with no marker to close it.
//!
//! A pass has two phases. The dirty part of the log (the cleanable segments
//! after the cleaner checkpoint) is read to map each key to its latest
//! offset (the shard reads it; the batches' CRCs, records and keys are
//! checked, parsed and hashed on a background thread that runs only in the
//! CPU's idle time, see `note_keys`); then every cleanable segment from the
//! log start to the end of that part is rewritten without the records the
//! map supersedes. Only sealed segments entirely below the last stable
//! offset and the high watermark are cleanable, and not those younger than
//! `min.compaction.lag.ms`.
//!
//! A segment is replaced whole and atomically: the cleaned copy is written
//! beside it as `<base>.log.cleaned` and synced, the old index files are
//! removed, and a rename puts the copy in place. A crash before the rename
//! leaves the old segment (the copy is removed at the next open); one after
//! it leaves the new one. Either way the segment has no index files, and
//! its first read rebuilds them from its batches.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{segment_file_name, PartitionLog};
use crate::batch::{BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD};
use crate::compaction::{
    empty_batch, parse_records, record_area, rewrite_batch, KeyMap, RecordCodec,
};
use crate::constants::{ALLOCATE_AHEAD_BYTES, BATCH_BYTES_MAX, IO_ALIGNMENT};
use crate::error::StorageError;
use crate::producer::ProducerState;
use crate::storage::{IoBuffer, Storage, StorageFile};
use crate::txn::AbortedTxn;

/// Bytes the cleaner reads from a segment at a time. Each read or write
/// holds the disk for its length, and a producer's write queued behind it
/// waits that long: under the compacted fixed-rate load on the slow disk,
/// reads and writes of 256 KiB instead of 1 MiB brought producers' ack p99
/// from 23.8–26.3 to 18.6–23.6 ms (four runs each, alternated).
const CLEANER_READ_BYTES: usize = 256 * 1024;
/// Most batch places a pass keeps from its first phase (see `BatchPlace`):
/// about 9 MiB. Past it, the rest of the dirty part is read again whole.
const CLEANER_PLACES_MAX: usize = 128 * 1024;
/// A gap between two batches the second phase must read that is read
/// through rather than skipped: one read of a few KiB more costs less than
/// a second read.
const CLEANER_READ_GAP_BYTES: u64 = 16 * 1024;
/// Bytes the cleaner reads or writes between two turns it gives the shard's
/// other task queues (see `Throttle::account`).
const CLEANER_YIELD_BYTES: usize = 64 * 1024;
/// Bytes of a cleaned segment gathered before they are written (see
/// `CLEANER_READ_BYTES` for the size).
const CLEANER_WRITE_BYTES: usize = 256 * 1024;
/// Bytes of batches the first phase hands to the background at a time (see
/// `note_keys`): enough that a hand-off, two thread wake-ups, is small
/// beside the work it carries.
const CLEANER_NOTE_BYTES: usize = 256 * 1024;
/// The first phase lost its key map: never expected, but a pass must not go
/// on with an empty map, which would empty every batch of the dirty part.
const KEY_MAP_MISSING: &str = "the first phase lost its key map";
/// What a batch failing its CRC is called in the cleaner's error.
const CRC_FAILED: &str = "a batch failing its checksum";
/// The cleaner checkpoint: the end of the part of the log already cleaned.
pub(super) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// The suffix of a cleaned copy of a segment before it replaces the segment.
pub(super) const CLEANED_SUFFIX: &str = ".cleaned";
/// The suffix of a complete cleaned copy that replaces several segments
/// (`<base>.log.swap`): from its rename to this name on, the merge is
/// decided, and an open after a crash finishes it.
pub(super) const SWAP_SUFFIX: &str = ".swap";

/// How much a cleaning pass may use.
#[derive(Clone, Copy, Debug)]
pub struct CompactionLimits {
    /// Keys the map of the dirty part holds (see `KEY_MAP_ENTRY_BYTES`).
    /// When it fills, the pass cleans up to the end of the segment it was
    /// reading and the next pass goes on from there.
    pub key_map_entries_max: usize,
    /// Bytes read and written per second, at most; 0: no limit.
    pub io_bytes_per_second: u64,
    /// Merge neighbouring cleaned segments that fit one (see `may_merge`).
    pub merge_segments: bool,
}

/// What a cleaning pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments looked at, and those rewritten (a segment with nothing to
    /// remove is left as it is).
    pub segments_cleaned: usize,
    pub segments_rewritten: usize,
    /// Segments that ceased to exist because their cleaned records were
    /// merged into the segment before them.
    pub segments_merged: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    /// Transaction markers removed (counted in `records_removed` too).
    pub markers_removed: u64,
    /// The cleaner checkpoint after the pass.
    pub clean_end: i64,
    /// Bytes the pass read and wrote, as its I/O limit counts them.
    pub io_bytes: u64,
}

/// Why a cleaning pass stopped. The log itself is untouched by a failed
/// pass: each segment is replaced only once its copy is complete.
#[derive(Debug)]
pub struct CompactionError(pub String);

impl std::fmt::Display for CompactionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CompactionError {}

impl From<StorageError> for CompactionError {
    fn from(error: StorageError) -> Self {
        CompactionError(error.to_string())
    }
}

/// The cleanable segments of a log and where its dirty part starts.
#[derive(Debug)]
struct Plan {
    /// Base offset, size and next offset of each cleanable segment, in order.
    segments: Vec<(i64, u64, i64)>,
    first_dirty: i64,
    log_start: i64,
    dirty_ratio: f64,
    /// `max.compaction.lag.ms` has passed for the oldest dirty segment.
    overdue: bool,
    /// Two neighbouring cleanable segments fit one (see `may_merge`).
    mergeable: bool,
}

/// Holds the cleaner to a byte rate and lets the shard's other tasks run.
struct Throttle {
    bytes_per_second: u64,
    started: Instant,
    bytes: u64,
    /// Bytes handled since the cleaner last let the shard's other task
    /// queues run.
    since_yield: usize,
}

impl Throttle {
    fn new(bytes_per_second: u64) -> Throttle {
        Throttle {
            bytes_per_second,
            started: Instant::now(),
            bytes: 0,
            since_yield: 0,
        }
    }

    async fn account(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        if self.bytes_per_second > 0 {
            let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_second as f64);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                glommio::timer::sleep(due - elapsed).await;
                self.since_yield = 0;
                glommio::yield_if_needed().await;
                return;
            }
        }
        self.handled(bytes).await;
    }

    /// Work weighed as `bytes` handled that is not I/O (a batch passed over
    /// unread): it counts towards the shard's next turn, not the limit.
    async fn handled(&mut self, bytes: usize) {
        self.since_yield += bytes;
        if self.since_yield >= CLEANER_YIELD_BYTES {
            // glommio yields a queue only once its preemption timer fired,
            // which let a pass run for milliseconds while produce and fetch
            // requests of the shard waited; so the cleaner hands the shard
            // over itself, often.
            self.since_yield = 0;
            glommio::executor().yield_task_queue_now().await;
        } else {
            glommio::yield_if_needed().await;
        }
    }
}

/// Reads a sealed segment batch by batch, checking each one's CRC.
struct SegmentBatches<F> {
    file: Rc<F>,
    path: std::path::PathBuf,
    size: u64,
    position: u64,
    buffer: Bytes,
    buffer_start: u64,
    /// Where the bytes wanted next end: a read goes no further unless the
    /// batch at `position` does (the segment's size when reading it all).
    span_end: u64,
    /// Each batch's CRC is checked here; off where the caller checks it
    /// elsewhere (the first phase, in the background: see `note_keys`).
    check_crc: bool,
}

impl<F: StorageFile> SegmentBatches<F> {
    async fn fill(&mut self, len: usize) -> Result<(), CompactionError> {
        let wanted = (CLEANER_READ_BYTES as u64).min(self.span_end.saturating_sub(self.position));
        let len = wanted.max(len as u64).min(self.size - self.position) as usize;
        self.buffer = self
            .file
            .read_at(self.position, len)
            .await
            .map_err(|error| StorageError::new("read", &self.path, error))?;
        self.buffer_start = self.position;
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<(BatchHeader, Bytes)>, CompactionError> {
        if self.position >= self.size {
            return Ok(None);
        }
        let path = self.path.clone();
        let damaged = |position: u64, what: &str| {
            CompactionError(format!(
                "{}: {what} at position {position}: the segment is damaged",
                path.display()
            ))
        };
        if self.position + BATCH_HEADER_BYTES as u64 > self.size {
            return Err(damaged(self.position, "a partial batch header"));
        }
        if self.position + BATCH_HEADER_BYTES as u64 > self.buffer_start + self.buffer.len() as u64
        {
            self.fill(BATCH_HEADER_BYTES).await?;
        }
        let at = (self.position - self.buffer_start) as usize;
        let header = BatchHeader::parse(&self.buffer[at..])
            .map_err(|error| damaged(self.position, &error.to_string()))?;
        let total = header.total_bytes();
        if header.batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32
            || total > BATCH_BYTES_MAX
            || self.position + total as u64 > self.size
        {
            return Err(damaged(self.position, "an implausible batch header"));
        }
        if self.position + total as u64 > self.buffer_start + self.buffer.len() as u64 {
            self.fill(total).await?;
        }
        let at = (self.position - self.buffer_start) as usize;
        let Some(bytes) = self.buffer.get(at..at + total) else {
            return Err(damaged(self.position, "a short read"));
        };
        if self.check_crc && crate::batch::compute_crc(bytes) != header.crc {
            return Err(damaged(self.position, CRC_FAILED));
        }
        let bytes = self.buffer.slice(at..at + total);
        self.position += total as u64;
        Ok(Some((header, bytes)))
    }
}

/// A chunk of the dirty part's batches for the background to note in the
/// key map, with what it needs to do so away from the shard.
struct NoteKeys {
    keys: KeyMap,
    /// Each batch with its position in the segment.
    batches: Vec<(u64, BatchHeader, Bytes)>,
    aborted: std::sync::Arc<[AbortedTxn]>,
    first_dirty: i64,
    codec: &'static (dyn RecordCodec + Sync),
    /// The segment's file, for errors.
    path: std::path::PathBuf,
}

/// Checks each batch's CRC and notes the offset of each keyed record of the
/// dirty part as its key's latest. Runs in the background (off the shard's
/// thread, in the CPU's idle time): it touches every byte of the dirty
/// part, most of which the second phase then passes over unread, and in a
/// profile of the compacted fixed-rate workload it was about as much CPU
/// as all the cleaner's work left on the shard.
fn note_keys(job: NoteKeys) -> Result<KeyMap, CompactionError> {
    let NoteKeys {
        mut keys,
        batches,
        aborted,
        first_dirty,
        codec,
        path,
    } = job;
    for (position, header, bytes) in &batches {
        if crate::batch::compute_crc(bytes) != header.crc {
            return Err(CompactionError(format!(
                "{}: {CRC_FAILED} at position {position}: the segment is damaged",
                path.display()
            )));
        }
        if header.is_control() || is_aborted(&aborted, header) {
            continue;
        }
        let records = record_area(bytes, header, codec, BATCH_BYTES_MAX).and_then(|area| {
            let records = parse_records(&area, header.record_count)?;
            for record in records {
                let offset = header.base_offset.saturating_add(record.offset_delta);
                if let (Some(key), true) = (record.key, offset >= first_dirty) {
                    keys.insert(key, offset);
                }
            }
            Ok(())
        });
        if let Err(error) = records {
            return Err(CompactionError(format!(
                "{}: batch at offset {}: {error}",
                path.display(),
                header.base_offset
            )));
        }
    }
    Ok(keys)
}

/// Where the first phase found a batch of the dirty part, with its header.
/// In a log whose keys are written again and again, most batches of the
/// dirty part hold only records a later record of the same key supersedes;
/// the second phase empties those from their places without reading them a
/// second time, and reads only the batches that may keep a record.
#[derive(Clone, Copy)]
struct BatchPlace {
    position: u64,
    header: BatchHeader,
}

/// The places of the batches of each dirty segment the first phase read,
/// by segment base, at most `CLEANER_PLACES_MAX` in all.
#[derive(Default)]
struct DirtyPlaces {
    segments: HashMap<i64, Vec<BatchPlace>>,
    count: usize,
    /// The budget ran out: segments from there on keep no places.
    full: bool,
}

/// Whether a batch's offsets hold one of the key map's latest offsets
/// (`latest` sorted): only then may a record of it stay.
fn holds_latest(latest: &[i64], header: &BatchHeader) -> bool {
    let at = latest.partition_point(|&offset| offset < header.base_offset);
    latest
        .get(at)
        .is_some_and(|&offset| offset <= header.last_offset())
}

/// The second phase's walk through one segment: every batch read, or, for a
/// segment the first phase placed, only the batches `must_read` asks for.
struct CleanWalk<F> {
    batches: SegmentBatches<F>,
    places: Option<Vec<BatchPlace>>,
    at: usize,
}

impl<F: StorageFile> CleanWalk<F> {
    /// The next batch and its bytes; no bytes for a batch passed over
    /// unread, which `must_read` said holds no record that stays.
    async fn next(
        &mut self,
        must_read: &impl Fn(&BatchHeader) -> bool,
    ) -> Result<Option<(BatchHeader, Option<Bytes>)>, CompactionError> {
        let Some(places) = &self.places else {
            let batch = self.batches.next().await?;
            return Ok(batch.map(|(header, bytes)| (header, Some(bytes))));
        };
        let Some(place) = places.get(self.at).copied() else {
            return Ok(None);
        };
        self.at += 1;
        if !must_read(&place.header) {
            return Ok(Some((place.header, None)));
        }
        let batches = &mut self.batches;
        let end = place.position + place.header.total_bytes() as u64;
        if end > batches.buffer_start + batches.buffer.len() as u64 {
            // One read for this batch and those after it that must be read
            // too, through gaps of at most `CLEANER_READ_GAP_BYTES`.
            let mut span_end = end;
            for next in &places[self.at..] {
                if next.position > span_end + CLEANER_READ_GAP_BYTES
                    || next.position - place.position >= CLEANER_READ_BYTES as u64
                {
                    break;
                }
                if must_read(&next.header) {
                    span_end = next.position + next.header.total_bytes() as u64;
                }
            }
            batches.span_end = span_end;
        }
        batches.position = place.position;
        match batches.next().await? {
            Some((header, bytes)) if header == place.header => Ok(Some((header, Some(bytes)))),
            _ => Err(CompactionError(format!(
                "{}: the batch at position {} changed during the pass",
                batches.path.display(),
                place.position
            ))),
        }
    }
}

/// Writes a cleaned segment copy in large aligned writes.
struct CleanedFile<F: StorageFile> {
    file: F,
    path: std::path::PathBuf,
    pending: Vec<u8>,
    /// Bytes written so far (a multiple of the I/O alignment).
    written: u64,
    /// The file's size as allocations ahead of the writes left it (see
    /// `ALLOCATE_AHEAD_BYTES`; `finish` cuts what is left of it).
    allocated: u64,
    /// An allocation failed: the writes extend the file instead.
    allocation_refused: bool,
}

impl<F: StorageFile> CleanedFile<F> {
    fn len(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    async fn push(&mut self, bytes: &[u8], throttle: &mut Throttle) -> Result<(), CompactionError> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= CLEANER_WRITE_BYTES {
            let whole = self.pending.len() - self.pending.len() % IO_ALIGNMENT as usize;
            self.write(whole).await?;
            throttle.account(whole).await;
        }
        Ok(())
    }

    /// Writes the first `len` pending bytes, padded to the alignment.
    async fn write(&mut self, len: usize) -> Result<(), CompactionError> {
        let padded = len.next_multiple_of(IO_ALIGNMENT as usize);
        let end = self.written + padded as u64;
        if end > self.allocated && !self.allocation_refused {
            let ahead = end + ALLOCATE_AHEAD_BYTES;
            match self.file.allocate(ahead).await {
                Ok(()) => self.allocated = ahead,
                Err(error) => {
                    tracing::debug!(%error, path = %self.path.display(), "allocating ahead failed; the cleaned copy's writes extend it");
                    self.allocation_refused = true;
                }
            }
        }
        let mut buffer = self.file.alloc(padded);
        let target = buffer.bytes_mut();
        target[..len].copy_from_slice(&self.pending[..len]);
        target[len..].fill(0);
        self.file
            .write_at(buffer, self.written)
            .await
            .map_err(|error| StorageError::new("write", &self.path, error))?;
        self.pending.drain(..len);
        self.written += len as u64;
        Ok(())
    }

    /// Writes what is left, cuts the padding and makes the copy durable;
    /// returns its size and the open file.
    async fn finish(mut self) -> Result<(u64, F), CompactionError> {
        let len = self.len();
        if !self.pending.is_empty() {
            let rest = self.pending.len();
            self.write(rest).await?;
        }
        self.file
            .truncate(len)
            .await
            .map_err(|error| StorageError::new("truncate", &self.path, error))?;
        self.file
            .sync()
            .await
            .map_err(|error| StorageError::new("sync", &self.path, error))?;
        Ok((len, self.file))
    }
}

/// What a cleaning pass does with one batch.
enum Fate {
    /// Copied as it is.
    Whole,
    /// Replaced by a copy holding fewer records.
    Rewritten(Vec<u8>),
    /// Nothing of it stays but its offsets, in a run of bare headers.
    Emptied,
}

/// Batches of removed records waiting to become one bare header.
struct EmptyRun {
    base: i64,
    last: i64,
    leader_epoch: i32,
    timestamp: i64,
}

fn is_aborted(aborted: &[AbortedTxn], header: &BatchHeader) -> bool {
    header.is_transactional()
        && aborted.iter().any(|txn| {
            txn.producer_id == header.producer_id
                && txn.first_offset <= header.base_offset
                && header.base_offset < txn.last_offset
        })
}

impl<S: Storage> PartitionLog<S> {
    /// The part of the log not cleaned yet, as a share of its cleanable
    /// bytes (`None`: not compacted, or nothing cleanable).
    pub async fn dirty_ratio(&self, now: i64) -> Option<f64> {
        self.compaction_plan(now, false)
            .await
            .map(|plan| plan.dirty_ratio)
    }

    /// `merge`: neighbours that would merge make a pass due.
    async fn compaction_plan(&self, now: i64, merge: bool) -> Option<Plan> {
        let bases: Vec<i64> = {
            let inner = self.inner.borrow();
            if !inner.config.compact {
                return None;
            }
            inner.segments.keys().copied().collect()
        };
        // Sealed segments' max timestamps come from their time indexes.
        for &base in bases.iter().rev().skip(1) {
            let _ = self.load_index(base).await;
        }
        let offsets = self.offsets();
        let upper = offsets.lso.min(offsets.hw);
        let inner = self.inner.borrow();
        if inner.closed || inner.truncating {
            return None;
        }
        let config = &inner.config;
        let active_base = inner.active().base_offset;
        let mut segments = Vec::new();
        for segment in inner.segments.values() {
            if segment.base_offset == active_base
                || !segment.finalized
                || segment.next_offset > upper
            {
                break;
            }
            if config.min_compaction_lag_ms > 0
                && segment.max_timestamp >= 0
                && now.saturating_sub(segment.max_timestamp) < config.min_compaction_lag_ms
            {
                break;
            }
            if segment.next_offset <= inner.log_start {
                continue;
            }
            segments.push((segment.base_offset, segment.size, segment.next_offset));
        }
        let first_dirty = inner.clean_end.max(inner.log_start);
        let (mut dirty, mut total) = (0u64, 0u64);
        let mut overdue = false;
        for &(base, size, next) in &segments {
            total += size;
            if next > first_dirty {
                if dirty == 0 {
                    let max_timestamp = inner.segments.get(&base).map_or(-1, |s| s.max_timestamp);
                    overdue = max_timestamp >= 0
                        && now.saturating_sub(max_timestamp) > config.max_compaction_lag_ms;
                }
                dirty += size;
            }
        }
        // Segments a pass would merge make one due, dirty or not: the pass
        // that cleaned them weighed them at their sizes before cleaning,
        // and without a further pass they would stay apart until new
        // records made the log dirty again.
        let mergeable = merge
            && segments.windows(2).any(|pair| {
                let ((base, bytes, _), (_, next_bytes, next_end)) = (pair[0], pair[1]);
                may_merge(
                    bytes,
                    bytes,
                    next_bytes,
                    next_end - base,
                    config.segment_bytes,
                )
            });
        if dirty == 0 && !mergeable {
            return None;
        }
        Some(Plan {
            segments,
            first_dirty,
            log_start: inner.log_start,
            dirty_ratio: dirty as f64 / total.max(1) as f64,
            overdue,
            mergeable,
        })
    }

    /// Runs one cleaning pass if the log is dirty enough
    /// (`min.cleanable.dirty.ratio`), has waited too long
    /// (`max.compaction.lag.ms`) or has segments to merge; `Ok(None)` if it
    /// was not due.
    pub async fn compact(
        &self,
        now: i64,
        limits: &CompactionLimits,
        codec: &'static (dyn RecordCodec + Sync),
    ) -> Result<Option<CompactionReport>, CompactionError> {
        let Some(plan) = self.compaction_plan(now, limits.merge_segments).await else {
            return Ok(None);
        };
        let ratio_min = self.inner.borrow().config.min_cleanable_dirty_ratio;
        if plan.dirty_ratio < ratio_min && !plan.overdue && !plan.mergeable {
            return Ok(None);
        }
        self.compact_with(plan, now, limits, codec).await.map(Some)
    }

    async fn compact_with(
        &self,
        plan: Plan,
        now: i64,
        limits: &CompactionLimits,
        codec: &'static (dyn RecordCodec + Sync),
    ) -> Result<CompactionReport, CompactionError> {
        let mut throttle = Throttle::new(limits.io_bytes_per_second);
        let plan_end = plan.segments.last().map_or(plan.first_dirty, |s| s.2);
        let aborted = self
            .aborted_txns(plan.log_start, plan_end)
            .await
            .map_err(|error| CompactionError(error.to_string()))?;
        // Phase 1: the latest offset of every key of the dirty part. The
        // shard reads; checking, parsing and hashing the batches is done in
        // the background (see `note_keys`), a chunk at a time, while the
        // shard reads the next chunk.
        let aborted_shared: std::sync::Arc<[AbortedTxn]> = aborted.as_slice().into();
        let mut keys = Some(KeyMap::new(limits.key_map_entries_max));
        // The chunk in the background, which holds the map meanwhile.
        let mut noting = None;
        let mut places = DirtyPlaces::default();
        let mut end = plan.first_dirty;
        for &(base, size, next) in plan.segments.iter().filter(|s| s.2 > plan.first_dirty) {
            if let Some(pending) = noting.take() {
                keys = Some(pending.await?);
            }
            if keys.as_ref().is_some_and(KeyMap::is_full) {
                break;
            }
            let mut batches = self.segment_batches(base, size).await?;
            batches.check_crc = false;
            let mut segment_places = Vec::new();
            let mut chunk: Vec<(u64, BatchHeader, Bytes)> = Vec::new();
            let mut chunk_bytes = 0usize;
            loop {
                let position = batches.position;
                let batch = batches.next().await?;
                let last = batch.is_none();
                if let Some((header, bytes)) = batch {
                    if !places.full {
                        if places.count + segment_places.len() < CLEANER_PLACES_MAX {
                            segment_places.push(BatchPlace { position, header });
                        } else {
                            places.full = true;
                        }
                    }
                    let len = bytes.len();
                    chunk_bytes += len;
                    chunk.push((position, header, bytes));
                    throttle.account(len).await;
                }
                if (last && !chunk.is_empty()) || chunk_bytes >= CLEANER_NOTE_BYTES {
                    if let Some(pending) = noting.take() {
                        keys = Some(pending.await?);
                    }
                    let map = keys
                        .take()
                        .ok_or_else(|| CompactionError(KEY_MAP_MISSING.into()))?;
                    let job = NoteKeys {
                        keys: map,
                        batches: std::mem::take(&mut chunk),
                        aborted: std::sync::Arc::clone(&aborted_shared),
                        first_dirty: plan.first_dirty,
                        codec,
                        path: batches.path.clone(),
                    };
                    chunk_bytes = 0;
                    noting = Some(crate::storage::in_background(move || note_keys(job)));
                }
                if last {
                    break;
                }
            }
            if !places.full {
                places.count += segment_places.len();
                places.segments.insert(base, segment_places);
            }
            end = next;
        }
        let keys = match noting.take() {
            Some(pending) => pending.await?,
            None => keys.ok_or_else(|| CompactionError(KEY_MAP_MISSING.into()))?,
        };
        // Phase 2: every cleanable segment up to `end`, rewritten.
        let delete_retention_ms = self.inner.borrow().config.delete_retention_ms;
        // A producer's last batch stays, emptied or not, with its producer
        // id, epoch and sequence: a follower or a recovery rebuilding the
        // producer state from the log finds them there, as in Kafka. Other
        // emptied batches join runs of bare headers.
        let last_batches: std::collections::HashSet<i64> = self
            .inner
            .borrow()
            .producers
            .producers
            .values()
            .filter_map(|entry| entry.batches.back().map(|batch| batch.base_offset))
            .collect();
        let keep = |header: &BatchHeader, record: &crate::compaction::RecordView<'_>| {
            let Some(key) = record.key else {
                return false;
            };
            let offset = header.base_offset.saturating_add(record.offset_delta);
            if keys.latest(key).is_some_and(|latest| latest > offset) {
                return false;
            }
            // A tombstone stays through the pass that first cleans it, and
            // then for `delete.retention.ms`, so that a consumer reading
            // the log from the start meanwhile still sees the delete.
            let expired = offset < plan.first_dirty
                && now.saturating_sub(header.max_timestamp) > delete_retention_ms;
            !(record.tombstone && expired)
        };
        // A batch of the dirty part none of whose offsets is a key's latest
        // holds only superseded records: every key of a placed segment is in
        // the map, records without a key go, and tombstones and markers of
        // the dirty part are not yet old enough to go. Batches that take part
        // in transactions or keep a producer's sequence are read, as are
        // those before the dirty part, whose records the map may not cover.
        let latest = {
            let mut latest: Vec<i64> = keys.offsets().collect();
            latest.sort_unstable();
            latest
        };
        let must_read = |header: &BatchHeader| {
            header.base_offset < plan.first_dirty
                || header.is_control()
                || header.is_transactional()
                || last_batches.contains(&header.base_offset)
                || holds_latest(&latest, header)
        };
        // Producer -> whether this pass kept a batch of its open
        // transaction, reset at each of its markers.
        let mut txn_kept: HashMap<i64, bool> = HashMap::new();
        let mut report = CompactionReport::default();
        let cleanable: Vec<(i64, u64, i64)> = plan
            .segments
            .iter()
            .copied()
            .filter(|s| s.2 <= end)
            .collect();
        let segment_bytes = self.inner.borrow().config.segment_bytes;
        let mut next = 0;
        while next < cleanable.len() {
            let group_start = next;
            let (group_base, first_bytes, _) = cleanable[group_start];
            let cleaned_path = self.dir.join(format!(
                "{}{CLEANED_SUFFIX}",
                segment_file_name(group_base, "log")
            ));
            // A segment's copy is started at the first batch that changes:
            // most segments of a log cleaned before have nothing to remove,
            // and writing them out only to delete the copy would cost the
            // shard's producers a segment of writes each. The segments that
            // follow join the copy while it has room for them (see
            // `may_merge`), which starts it if no batch changed.
            let mut copy: Option<CleanedFile<S::File>> = None;
            let mut group_removed = 0u64;
            loop {
                let (base, size, _) = cleanable[next];
                report.segments_cleaned += 1;
                report.bytes_before += size;
                // Bytes at the start of the segment that stay as they are.
                let mut untouched = 0u64;
                let mut removed = 0u64;
                let mut run: Option<EmptyRun> = None;
                // Transactions open where this segment starts (loaded on its
                // first marker): see the module's documentation.
                let mut open_at_start: Option<ProducerState> = None;
                let mut removed_markers: Vec<i64> = Vec::new();
                let mut walk = CleanWalk {
                    batches: self.segment_batches(base, size).await?,
                    places: places.segments.remove(&base),
                    at: 0,
                };
                while let Some((header, read)) = walk.next(&must_read).await? {
                    let superseded = read.is_none();
                    let bytes = read.unwrap_or_default();
                    let fate = if superseded {
                        removed += u64::from(header.record_count.max(0).unsigned_abs());
                        Fate::Emptied
                    } else if header.is_control() {
                        let kept_data = txn_kept.remove(&header.producer_id).unwrap_or(false);
                        let expired = header.base_offset < plan.first_dirty
                            && now.saturating_sub(header.max_timestamp) > delete_retention_ms;
                        if kept_data || !expired {
                            Fate::Whole
                        } else {
                            if open_at_start.is_none() {
                                open_at_start = Some(
                                    super::load_producer_snapshot(&self.storage, &self.dir, base)
                                        .await,
                                );
                            }
                            let opened_before = open_at_start.as_ref().is_some_and(|state| {
                                state.ongoing_txn_first_offset(header.producer_id).is_some()
                            });
                            if opened_before {
                                Fate::Whole
                            } else {
                                removed += u64::from(header.record_count.max(0).unsigned_abs());
                                report.markers_removed += 1;
                                removed_markers.push(header.base_offset);
                                Fate::Emptied
                            }
                        }
                    } else {
                        let area = record_area(&bytes, &header, codec, BATCH_BYTES_MAX)
                            .map_err(|error| self.record_error(base, &header, error))?;
                        let records = parse_records(&area, header.record_count)
                            .map_err(|error| self.record_error(base, &header, error))?;
                        let aborted = is_aborted(&aborted, &header);
                        let kept: Vec<_> = records
                            .iter()
                            .filter(|record| !aborted && keep(&header, record))
                            .copied()
                            .collect();
                        removed += (records.len() - kept.len()) as u64;
                        let fate = if kept.len() == records.len() {
                            Fate::Whole
                        } else if kept.is_empty() && !last_batches.contains(&header.base_offset) {
                            Fate::Emptied
                        } else {
                            let batch =
                                rewrite_batch(&bytes, &header, &kept, codec).map_err(|error| {
                                    self.record_error(
                                        base,
                                        &header,
                                        crate::compaction::RecordError::Codec(error),
                                    )
                                })?;
                            Fate::Rewritten(batch)
                        };
                        if header.is_transactional() {
                            // A batch that stays with its producer id (whole,
                            // rewritten, or emptied as its producer's last)
                            // keeps its transaction's marker.
                            *txn_kept.entry(header.producer_id).or_default() |=
                                !matches!(fate, Fate::Emptied);
                        }
                        fate
                    };
                    let copy = match &mut copy {
                        Some(copy) => copy,
                        None if matches!(fate, Fate::Whole) => {
                            untouched += bytes.len() as u64;
                            throttle.account(bytes.len()).await;
                            continue;
                        }
                        None => copy.insert(
                            self.start_copy(base, &cleaned_path, untouched, &mut throttle)
                                .await?,
                        ),
                    };
                    match fate {
                        Fate::Emptied => {
                            // Joins the run of emptied batches before it.
                            match &mut run {
                                Some(run)
                                    if header.last_offset() - run.base <= i64::from(i32::MAX) =>
                                {
                                    run.last = header.last_offset();
                                    run.leader_epoch = header.leader_epoch;
                                    run.timestamp = run.timestamp.max(header.max_timestamp);
                                }
                                _ => {
                                    flush_run(copy, run.take(), &mut throttle).await?;
                                    run = Some(EmptyRun {
                                        base: header.base_offset,
                                        last: header.last_offset(),
                                        leader_epoch: header.leader_epoch,
                                        timestamp: header.max_timestamp,
                                    });
                                }
                            }
                        }
                        Fate::Whole => {
                            flush_run(copy, run.take(), &mut throttle).await?;
                            copy.push(&bytes, &mut throttle).await?;
                        }
                        Fate::Rewritten(batch) => {
                            flush_run(copy, run.take(), &mut throttle).await?;
                            copy.push(&batch, &mut throttle).await?;
                        }
                    }
                    if superseded {
                        // A long run of them costs the shard time too.
                        throttle.handled(BATCH_HEADER_BYTES).await;
                    } else {
                        throttle.account(bytes.len()).await;
                    }
                }
                if let Some(copy) = &mut copy {
                    flush_run(copy, run.take(), &mut throttle).await?;
                }
                if !removed_markers.is_empty() {
                    self.forget_aborted(base, &removed_markers).await?;
                }
                group_removed += removed;
                next += 1;
                let Some(&(_, next_bytes, next_end)) = cleanable.get(next) else {
                    break;
                };
                // Bytes the merged segment holds so far: the copy, or the first
                // segment untouched.
                let held = copy.as_ref().map_or(first_bytes, |copy| copy.len());
                if !may_merge(
                    first_bytes,
                    held,
                    next_bytes,
                    next_end - group_base,
                    segment_bytes,
                ) {
                    break;
                }
                if copy.is_none() {
                    copy = Some(
                        self.start_copy(group_base, &cleaned_path, first_bytes, &mut throttle)
                            .await?,
                    );
                }
            }
            let group = &cleanable[group_start..next];
            let group_bytes: u64 = group.iter().map(|s| s.1).sum();
            let Some(copy) = copy else {
                debug_assert_eq!(group_removed, 0);
                report.bytes_after += group_bytes;
                continue;
            };
            let (new_size, file) = copy.finish().await?;
            let swapped = if group.len() > 1 {
                self.merge_in(group, new_size, file, &cleaned_path).await?
            } else {
                self.swap_in(group_base, group_bytes, new_size, file, &cleaned_path)
                    .await?
            };
            if swapped {
                report.segments_rewritten += 1;
                report.segments_merged += group.len() - 1;
                report.records_removed += group_removed;
                report.bytes_after += new_size;
            } else {
                report.bytes_after += group_bytes;
            }
        }
        let path = self.dir.join(CLEANER_CHECKPOINT_FILE);
        self.storage
            .write_small_atomic(&path, &super::encode_checkpoint(&end.to_be_bytes()))
            .await
            .map_err(|error| StorageError::new("write", &path, error))?;
        {
            let mut inner = self.inner.borrow_mut();
            inner.clean_end = inner.clean_end.max(end).min(inner.leo);
        }
        report.clean_end = end;
        report.io_bytes = throttle.bytes;
        Ok(report)
    }

    fn record_error(
        &self,
        base: i64,
        header: &BatchHeader,
        error: crate::compaction::RecordError,
    ) -> CompactionError {
        CompactionError(format!(
            "{}: batch at offset {}: {error}",
            self.dir.join(segment_file_name(base, "log")).display(),
            header.base_offset
        ))
    }

    async fn segment_batches(
        &self,
        base: i64,
        size: u64,
    ) -> Result<SegmentBatches<S::File>, CompactionError> {
        let path = self.dir.join(segment_file_name(base, "log"));
        let file = self
            .segment_file(base)
            .await
            .map_err(|error| CompactionError(error.to_string()))?
            .ok_or_else(|| CompactionError(format!("{}: segment removed", path.display())))?;
        Ok(SegmentBatches {
            file,
            path,
            size,
            position: 0,
            buffer: Bytes::new(),
            buffer_start: 0,
            span_end: size,
            check_crc: true,
        })
    }

    /// Starts the cleaned copy of segment `base` with the segment's first
    /// `untouched` bytes, which stay as they are.
    async fn start_copy(
        &self,
        base: i64,
        cleaned_path: &std::path::Path,
        untouched: u64,
        throttle: &mut Throttle,
    ) -> Result<CleanedFile<S::File>, CompactionError> {
        // A copy an earlier pass left (a failed swap): its name is needed.
        if self.storage.exists(cleaned_path) {
            let _ = self.storage.remove_file_off_shard(cleaned_path).await;
        }
        let file = self
            .storage
            .open(cleaned_path, true)
            .await
            .map_err(|error| StorageError::new("create", cleaned_path, error))?;
        let mut copy = CleanedFile {
            file,
            path: cleaned_path.to_path_buf(),
            pending: Vec::new(),
            written: 0,
            allocated: 0,
            allocation_refused: false,
        };
        let original = self.segment_batches(base, untouched).await?;
        let mut position = 0u64;
        while position < untouched {
            let len = (CLEANER_READ_BYTES as u64).min(untouched - position) as usize;
            let bytes = original
                .file
                .read_at(position, len)
                .await
                .map_err(|error| StorageError::new("read", &original.path, error))?;
            if bytes.len() != len {
                return Err(CompactionError(format!(
                    "{}: a short read at position {position}",
                    original.path.display()
                )));
            }
            position += len as u64;
            copy.push(&bytes, throttle).await?;
            throttle.account(len).await;
        }
        Ok(copy)
    }

    /// Drops the aborted-transaction entries of removed markers from
    /// segment `base`, in memory and in its `.txnindex`, before the copy
    /// without those markers replaces it. A read_committed consumer given an
    /// entry skips its producer's transactional batches until it meets the
    /// abort marker; with the marker gone it would skip that producer's
    /// later, committed transactions too. The other order is harmless: a
    /// marker is removed only once no batch of its transaction is left, so
    /// the old segment read without the entry shows no aborted record.
    async fn forget_aborted(&self, base: i64, markers: &[i64]) -> Result<(), CompactionError> {
        let path = self.dir.join(segment_file_name(base, "txnindex"));
        let _permit =
            self.txn_index_lock.acquire_permit(1).await.map_err(|_| {
                StorageError::new("lock", &path, std::io::Error::other("log closed"))
            })?;
        let entries = {
            let mut inner = self.inner.borrow_mut();
            let Some(segment) = inner.segments.get_mut(&base) else {
                return Ok(());
            };
            if !segment
                .aborted
                .iter()
                .any(|entry| markers.contains(&entry.last_offset))
            {
                return Ok(());
            }
            segment
                .aborted
                .retain(|entry| !markers.contains(&entry.last_offset));
            segment.aborted.clone()
        };
        super::write_txn_index(&self.storage, &self.dir, base, &entries).await?;
        Ok(())
    }

    /// Puts the cleaned copy (`file`, at `cleaned_path`) in place of segment
    /// `base` if the segment is still the one cleaned (retention,
    /// DeleteRecords or a truncation may have removed or cut it meanwhile);
    /// returns whether it did.
    ///
    /// Memory takes the copy first, read through the handle that wrote it;
    /// then, off the shard's thread, the old index files go and the copy
    /// takes the segment's name. The removal lock is held throughout, so
    /// retention and truncation, which take it to remove or cut files,
    /// wait for the name. Until then the handle is not closed for room (its
    /// path would open the old file) and the index is rebuilt from the
    /// batches, not read from the old files.
    async fn swap_in(
        &self,
        base: i64,
        size: u64,
        new_size: u64,
        file: S::File,
        cleaned_path: &std::path::Path,
    ) -> Result<bool, CompactionError> {
        self.forget_recovery_point_in(&[base]).await?;
        let permit = self.removal_lock.acquire_permit(1).await.map_err(|_| {
            StorageError::new("lock", cleaned_path, std::io::Error::other("log closed"))
        })?;
        if !self.group_unchanged(&[(base, size, 0)]) {
            let _ = self
                .storage
                .retire_off_shard(cleaned_path, false, vec![Rc::new(file)])
                .await;
            return Ok(false);
        }
        let (old, path, released) = {
            let mut inner = self.inner.borrow_mut();
            let Some(segment) = inner.segments.get_mut(&base) else {
                unreachable!("checked by group_unchanged");
            };
            let old = segment.file.replace(Rc::new(file));
            segment.file_generation = 0;
            segment.index_files_stale = true;
            segment.size = new_size;
            segment.written = new_size;
            segment.issued = new_size;
            segment.index = None;
            segment.index_from_files = false;
            segment.max_timestamp = -1;
            segment.offset_of_max_timestamp = base;
            let path = segment.path.clone();
            inner.compactions += 1;
            (old, path, self.release_cached_through(&mut inner, base))
        };
        // Index files of the old segment would point into the new one:
        // gone first, so that a crash at any point leaves a segment whose
        // index is rebuilt from its own batches. On an error the copy stays
        // the segment's, held open, until the log closes; the old file
        // keeps the name, and a restart reads that.
        remove_index_files(&self.storage, &self.dir, base).await?;
        self.storage
            .replace_off_shard(cleaned_path, &path, old)
            .await
            .map_err(|error| StorageError::new("rename", cleaned_path, error))?;
        self.names_settled(base);
        drop(permit);
        self.settle_replaced(base, released).await?;
        Ok(true)
    }

    /// The copy that replaced segment `base` has the segment's name: its
    /// handle may be closed for room, and its index files are its own.
    fn names_settled(&self, base: i64) {
        if let Some(segment) = self.inner.borrow_mut().segments.get_mut(&base) {
            segment.index_files_stale = false;
        }
        self.count_open_file(base);
    }

    /// After segment `base` was replaced: gives the cache back the bytes of
    /// its dropped batches, makes the directory durable, and writes the
    /// segment's index files again, so that a restart does not scan it.
    async fn settle_replaced(&self, base: i64, released: usize) -> Result<(), CompactionError> {
        if released > 0 {
            self.cache.release(released);
        }
        self.storage
            .sync_dir(&self.dir)
            .await
            .map_err(|error| StorageError::new("sync directory", &self.dir, error))?;
        let index = self
            .scan_index(base)
            .await
            .map_err(|error| CompactionError(error.to_string()))?;
        self.write_sealed_index(base, index).await?;
        Ok(())
    }
}

/// Whether the next segment joins the cleaned copy of the segments before
/// it, as Kafka's cleaner merges them: the copy (`held` bytes so far) and
/// the next segment's size before cleaning (`next_bytes`) must fit one
/// segment (`segment.bytes`, so positions still fit the index's 32 bits),
/// the merged offsets must span at most `i32::MAX` (relative offsets), and
/// neither the first segment nor the next may be empty (an empty segment's
/// base may lie past the last batch of the merged copy, where an open
/// finishing the merge would not count it as merged). Counting the copy
/// after cleaning, not the segments before it, lets one pass fold a run of
/// mostly removed segments into one. Without merging, a compacted topic
/// keeps a segment for every one it ever rolled, however little each keeps.
fn may_merge(
    first_bytes: u64,
    held: u64,
    next_bytes: u64,
    offsets_spanned: i64,
    segment_bytes: u64,
) -> bool {
    first_bytes > 0
        && next_bytes > 0
        && held.saturating_add(next_bytes) <= segment_bytes
        && offsets_spanned <= i64::from(i32::MAX)
}

impl<S: Storage> PartitionLog<S> {
    /// Whether every segment of `group` is still there, sealed, at the size
    /// it was cleaned at, and the log neither closed nor truncating.
    fn group_unchanged(&self, group: &[(i64, u64, i64)]) -> bool {
        let inner = self.inner.borrow();
        !inner.closed
            && !inner.truncating
            && group.iter().all(|&(base, size, _)| {
                inner
                    .segments
                    .get(&base)
                    .is_some_and(|segment| segment.finalized && segment.size == size)
            })
    }

    /// Removes the recovery point if it names a segment about to be replaced
    /// by its cleaned copy: a restart would resume its scan at a position
    /// in the old file, which in the copy falls in the middle of another
    /// batch, and would cut the segment there. Removed before the copy takes
    /// the segment's place, as a truncation does; without it, a restart
    /// that recovers this segment scans it from its start.
    async fn forget_recovery_point_in(&self, bases: &[i64]) -> Result<(), CompactionError> {
        let path = self.dir.join(super::RECOVERY_POINT_FILE);
        if !self.storage.exists(&path) {
            return Ok(());
        }
        if let Some((point, _)) = super::load_recovery_point(&self.storage, &self.dir).await {
            if !bases.contains(&point.segment_base) {
                return Ok(());
            }
        }
        if let Err(error) = self.storage.remove_file_off_shard(&path).await {
            if error.kind() != std::io::ErrorKind::NotFound {
                return Err(StorageError::new("remove", &path, error).into());
            }
        }
        let mut inner = self.inner.borrow_mut();
        if inner
            .recovery_point_at
            .is_some_and(|(base, _)| bases.contains(&base))
        {
            inner.recovery_point_at = None;
        }
        Ok(())
    }

    /// Drops cached batches of segments up to `last_base`: they are copies of
    /// what a cleaning replaced, with positions in the old files. Returns the
    /// bytes to give back to the cache.
    fn release_cached_through(&self, inner: &mut super::Inner<S>, last_base: i64) -> usize {
        let mut released = 0;
        while inner
            .cached
            .front()
            .is_some_and(|front| front.segment_base <= last_base)
        {
            if let Some(batch) = inner.cached.pop_front() {
                released += batch.bytes();
            }
        }
        released
    }

    /// Puts the cleaned copy of several segments in place of them all if
    /// they are still the ones cleaned; returns whether it did.
    ///
    /// The copy is renamed to `<base>.log.swap` and the directory synced:
    /// that is the point from which the merge happens even across a crash
    /// (`finish_swaps` at the next open completes it). Then the first
    /// segment takes the merged `.txnindex`, the other segments' files go,
    /// and the swap file becomes `<base>.log`. The removal lock is held
    /// throughout, so retention and truncation, which take it to remove
    /// files, cannot remove a segment's files half-way through. No other
    /// task writes a sealed segment's `.txnindex`, so the merge does not
    /// take that file's lock, which a roll on the write path waits for.
    async fn merge_in(
        &self,
        group: &[(i64, u64, i64)],
        new_size: u64,
        file: S::File,
        cleaned_path: &std::path::Path,
    ) -> Result<bool, CompactionError> {
        let base = group[0].0;
        let swap_path = self
            .dir
            .join(format!("{}{SWAP_SUFFIX}", segment_file_name(base, "log")));
        let permit = self.removal_lock.acquire_permit(1).await.map_err(|_| {
            StorageError::new("lock", cleaned_path, std::io::Error::other("log closed"))
        })?;
        if !self.group_unchanged(group) {
            let _ = self
                .storage
                .retire_off_shard(cleaned_path, false, vec![Rc::new(file)])
                .await;
            return Ok(false);
        }
        let bases: Vec<i64> = group.iter().map(|s| s.0).collect();
        self.forget_recovery_point_in(&bases).await?;
        self.storage
            .rename_off_shard(cleaned_path, &swap_path)
            .await
            .map_err(|error| StorageError::new("rename", cleaned_path, error))?;
        self.storage
            .sync_dir(&self.dir)
            .await
            .map_err(|error| StorageError::new("sync directory", &self.dir, error))?;
        // Retention or a truncation may have changed the segments in memory
        // while the directory synced; their files are all still there (the
        // lock is held), so the merge can still be called off.
        if !self.group_unchanged(group) {
            let _ = self
                .storage
                .retire_off_shard(&swap_path, false, vec![Rc::new(file)])
                .await;
            return Ok(false);
        }
        let last_base = group[group.len() - 1].0;
        // The replaced segments' handles, closed before their files go.
        let mut open = Vec::with_capacity(group.len());
        let (aborted, released) = {
            let mut inner = self.inner.borrow_mut();
            let mut aborted = Vec::new();
            let mut next_offset = base;
            for &(segment_base, _, _) in &group[1..] {
                if let Some(merged) = inner.segments.remove(&segment_base) {
                    aborted.extend(merged.aborted);
                    next_offset = merged.next_offset;
                    open.extend(merged.file.map(|handle| (segment_base, handle)));
                }
            }
            let Some(segment) = inner.segments.get_mut(&base) else {
                unreachable!("checked by group_unchanged");
            };
            // The merged copy is read through the handle that wrote it until
            // the swap file takes the segment's name: its path names the old
            // segment until then.
            let first = segment.file.replace(Rc::new(file));
            open.extend(first.map(|handle| (base, handle)));
            // Not closed for room before the swap: reopened by its path, it
            // would be the old segment. Counted once the swap is done.
            segment.file_generation = 0;
            segment.size = new_size;
            segment.written = new_size;
            segment.issued = new_size;
            segment.next_offset = next_offset;
            // The first segment's entries come before the merged ones'.
            aborted.splice(0..0, segment.aborted.drain(..));
            segment.aborted = aborted.clone();
            segment.index = None;
            segment.index_from_files = false;
            segment.index_files_stale = true;
            segment.max_timestamp = -1;
            segment.offset_of_max_timestamp = base;
            inner.compactions += 1;
            (aborted, self.release_cached_through(&mut inner, last_base))
        };
        complete_swap(&self.storage, &self.dir, &bases, &aborted, open).await?;
        self.names_settled(base);
        drop(permit);
        self.settle_replaced(base, released).await?;
        Ok(true)
    }
}

async fn flush_run<F: StorageFile>(
    copy: &mut CleanedFile<F>,
    run: Option<EmptyRun>,
    throttle: &mut Throttle,
) -> Result<(), CompactionError> {
    let Some(run) = run else {
        return Ok(());
    };
    let header = empty_batch(run.base, run.last, run.leader_epoch, run.timestamp)
        .map_err(|error| CompactionError(error.to_string()))?;
    copy.push(&header, throttle).await
}

/// Removes cleaned copies a crash left before they replaced their segment.
pub(super) fn forget_cleaned_copies<S: Storage>(
    storage: &S,
    dir: &std::path::Path,
    names: &[String],
) {
    for name in names.iter().filter(|name| name.ends_with(CLEANED_SUFFIX)) {
        let path = dir.join(name);
        if let Err(error) = storage.remove_file_at_once(&path) {
            tracing::warn!(%error, path = %path.display(), "could not remove an unfinished cleaned segment");
        }
    }
}

/// Finishes replacing segments `bases` (ascending) by `<bases[0]>.log.swap`:
/// the first segment takes `aborted` as its `.txnindex`, its stale index
/// files and every file of the other segments go, and the swap file takes
/// the first segment's name. `open` holds the replaced segments' handles
/// this shard still has, by base. Each step may be repeated after a crash.
async fn complete_swap<S: Storage>(
    storage: &S,
    dir: &std::path::Path,
    bases: &[i64],
    aborted: &[AbortedTxn],
    mut open: Vec<(i64, Rc<S::File>)>,
) -> Result<(), StorageError> {
    let Some(&base) = bases.first() else {
        return Ok(());
    };
    let mut handle_of = |segment: i64| {
        let at = open.iter().position(|&(of, _)| of == segment)?;
        Some(open.swap_remove(at).1)
    };
    super::write_txn_index(storage, dir, base, aborted).await?;
    // Index files of the first segment would point into the merged one.
    remove_index_files(storage, dir, base).await?;
    for &merged in &bases[1..] {
        super::remove_segment_files(storage, dir, merged, handle_of(merged)).await;
    }
    let swap_path = dir.join(format!("{}{SWAP_SUFFIX}", segment_file_name(base, "log")));
    storage
        .replace_off_shard(
            &swap_path,
            &dir.join(segment_file_name(base, "log")),
            handle_of(base),
        )
        .await
        .map_err(|error| StorageError::new("rename", &swap_path, error))?;
    Ok(())
}

/// Removes segment `base`'s offset and time index files, which would point
/// into a copy taking its place. Set aside before the copy takes the
/// segment's name (a crash after this leaves a segment whose index is
/// rebuilt from its batches), deleted later: even a small file's removal
/// waits for its discard here.
async fn remove_index_files<S: Storage>(
    storage: &S,
    dir: &std::path::Path,
    base: i64,
) -> Result<(), StorageError> {
    for extension in ["index", "timeindex"] {
        let path = dir.join(segment_file_name(base, extension));
        if let Err(error) = storage.remove_file_off_shard(&path).await {
            if error.kind() != std::io::ErrorKind::NotFound {
                return Err(StorageError::new("remove", &path, error));
            }
        }
    }
    Ok(())
}

/// Completes merges a crash interrupted after their swap file was in place
/// (see `merge_in`); returns whether there was one. The segments a swap
/// file replaces are those whose base lies within its offsets. If the first
/// of them is gone, retention removed the group before the merge finished,
/// and the swap file goes instead.
pub(super) async fn finish_swaps<S: Storage>(
    storage: &S,
    dir: &std::path::Path,
    names: &[String],
    config: &super::LogConfig,
) -> Result<bool, StorageError> {
    let mut bases: Vec<i64> = names
        .iter()
        .filter_map(|name| super::parse_segment_name(name))
        .collect();
    bases.sort_unstable();
    let mut found = false;
    for name in names {
        let Some(base) = name
            .strip_suffix(SWAP_SUFFIX)
            .and_then(super::parse_segment_name)
        else {
            continue;
        };
        found = true;
        let swap_path = dir.join(name);
        if !bases.contains(&base) {
            tracing::warn!(path = %swap_path.display(), "merged segment outlived its first segment; removing it");
            storage
                .remove_file_at_once(&swap_path)
                .map_err(|error| StorageError::new("remove", &swap_path, error))?;
            continue;
        }
        let (file, size) = super::open_with_size(storage, &swap_path).await?;
        let scanned = super::scan_segment(&file, &swap_path, base, size, config, None).await?;
        drop(file);
        if scanned.valid_bytes < size {
            tracing::warn!(
                path = %swap_path.display(),
                valid = scanned.valid_bytes,
                size,
                "merged segment damaged after its batches"
            );
        }
        let replaced: Vec<i64> = bases
            .iter()
            .copied()
            .filter(|&other| other >= base && other < scanned.next_offset)
            .collect();
        let mut aborted: Vec<AbortedTxn> = Vec::new();
        for &segment in &replaced {
            for entry in super::load_txn_index(storage, dir, segment).await {
                // An interrupted completion may have written the merged
                // index already.
                if !aborted.contains(&entry) {
                    aborted.push(entry);
                }
            }
        }
        aborted.sort_by_key(|entry| entry.last_offset);
        tracing::info!(path = %swap_path.display(), segments = replaced.len(), "finishing a merge of cleaned segments");
        complete_swap(storage, dir, &replaced, &aborted, Vec::new()).await?;
    }
    if found {
        storage
            .sync_dir(dir)
            .await
            .map_err(|error| StorageError::new("sync directory", dir, error))?;
    }
    Ok(found)
}

/// The cleaner checkpoint, or 0 (nothing cleaned) if there is none or it
/// does not read back: the next pass then cleans the whole log again, which
/// costs time but loses nothing.
pub(super) async fn read_clean_end<S: Storage>(storage: &S, dir: &std::path::Path) -> i64 {
    let path = dir.join(CLEANER_CHECKPOINT_FILE);
    if !storage.exists(&path) {
        return 0;
    }
    let bytes = match storage
        .read_small(&path, CLEANER_CHECKPOINT_BYTES_MAX)
        .await
    {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "cleaner checkpoint unreadable; cleaning from the log start");
            return 0;
        }
    };
    match super::decode_checkpoint(&bytes).and_then(|payload| <[u8; 8]>::try_from(payload).ok()) {
        Some(word) => i64::from_be_bytes(word),
        None => {
            tracing::warn!(path = %path.display(), "cleaner checkpoint damaged; cleaning from the log start");
            0
        }
    }
}

/// A cleaner checkpoint is one framed offset; anything larger is not one.
const CLEANER_CHECKPOINT_BYTES_MAX: u64 = 64;
