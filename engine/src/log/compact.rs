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
//! offset; then every cleanable segment from the log start to the end of
//! that part is rewritten without the records the map supersedes. Only
//! sealed segments entirely below the last stable offset and the high
//! watermark are cleanable, and not those younger than
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
use crate::constants::{BATCH_BYTES_MAX, IO_ALIGNMENT};
use crate::error::StorageError;
use crate::producer::ProducerState;
use crate::storage::{IoBuffer, Storage, StorageFile};
use crate::txn::AbortedTxn;

/// Bytes the cleaner reads from a segment at a time.
const CLEANER_READ_BYTES: usize = 1 << 20;
/// Bytes the cleaner reads or writes between two turns it gives the shard's
/// other task queues (see `Throttle::account`).
const CLEANER_YIELD_BYTES: usize = 64 * 1024;
/// Bytes of a cleaned segment gathered before they are written.
const CLEANER_WRITE_BYTES: usize = 1 << 20;
/// The cleaner checkpoint: the end of the part of the log already cleaned.
pub(super) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// The suffix of a cleaned copy of a segment before it replaces the segment.
pub(super) const CLEANED_SUFFIX: &str = ".cleaned";

/// How much a cleaning pass may use.
#[derive(Clone, Copy, Debug)]
pub struct CompactionLimits {
    /// Keys the map of the dirty part holds (see `KEY_MAP_ENTRY_BYTES`).
    /// When it fills, the pass cleans up to the end of the segment it was
    /// reading and the next pass goes on from there.
    pub key_map_entries_max: usize,
    /// Bytes read and written per second, at most; 0: no limit.
    pub io_bytes_per_second: u64,
}

/// What a cleaning pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments looked at, and those rewritten (a segment with nothing to
    /// remove is left as it is).
    pub segments_cleaned: usize,
    pub segments_rewritten: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    /// Transaction markers removed (counted in `records_removed` too).
    pub markers_removed: u64,
    /// The cleaner checkpoint after the pass.
    pub clean_end: i64,
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
        self.since_yield += bytes;
        if self.bytes_per_second > 0 {
            let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_second as f64);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                glommio::timer::sleep(due - elapsed).await;
                self.since_yield = 0;
            }
        }
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
}

impl<F: StorageFile> SegmentBatches<F> {
    async fn fill(&mut self, len: usize) -> Result<(), CompactionError> {
        let len = (len.max(CLEANER_READ_BYTES) as u64).min(self.size - self.position) as usize;
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
        if crate::batch::compute_crc(bytes) != header.crc {
            return Err(damaged(self.position, "a batch failing its checksum"));
        }
        let bytes = self.buffer.slice(at..at + total);
        self.position += total as u64;
        Ok(Some((header, bytes)))
    }
}

/// Writes a cleaned segment copy in large aligned writes.
struct CleanedFile<F: StorageFile> {
    file: F,
    path: std::path::PathBuf,
    pending: Vec<u8>,
    /// Bytes written so far (a multiple of the I/O alignment).
    written: u64,
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

    /// Writes what is left, cuts the padding and makes the copy durable.
    async fn finish(mut self) -> Result<u64, CompactionError> {
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
        Ok(len)
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
        self.compaction_plan(now).await.map(|plan| plan.dirty_ratio)
    }

    async fn compaction_plan(&self, now: i64) -> Option<Plan> {
        let bases: Vec<i64> = {
            let inner = self.inner.borrow();
            if !inner.config.compact {
                return None;
            }
            inner.segments.keys().copied().collect()
        };
        // Sealed segments' max timestamps come from their time indexes.
        for &base in bases.iter().rev().skip(1) {
            let _ = self.segment_index(base).await;
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
        if dirty == 0 {
            return None;
        }
        Some(Plan {
            segments,
            first_dirty,
            log_start: inner.log_start,
            dirty_ratio: dirty as f64 / total.max(1) as f64,
            overdue,
        })
    }

    /// Runs one cleaning pass if the log is dirty enough
    /// (`min.cleanable.dirty.ratio`) or has waited too long
    /// (`max.compaction.lag.ms`); `Ok(None)` if it was not due.
    pub async fn compact(
        &self,
        now: i64,
        limits: &CompactionLimits,
        codec: &dyn RecordCodec,
    ) -> Result<Option<CompactionReport>, CompactionError> {
        let Some(plan) = self.compaction_plan(now).await else {
            return Ok(None);
        };
        let ratio_min = self.inner.borrow().config.min_cleanable_dirty_ratio;
        if plan.dirty_ratio < ratio_min && !plan.overdue {
            return Ok(None);
        }
        self.compact_with(plan, now, limits, codec).await.map(Some)
    }

    async fn compact_with(
        &self,
        plan: Plan,
        now: i64,
        limits: &CompactionLimits,
        codec: &dyn RecordCodec,
    ) -> Result<CompactionReport, CompactionError> {
        let mut throttle = Throttle::new(limits.io_bytes_per_second);
        let plan_end = plan.segments.last().map_or(plan.first_dirty, |s| s.2);
        let aborted = self
            .aborted_txns(plan.log_start, plan_end)
            .await
            .map_err(|error| CompactionError(error.to_string()))?;
        // Phase 1: the latest offset of every key of the dirty part.
        let mut keys = KeyMap::new(limits.key_map_entries_max);
        let mut end = plan.first_dirty;
        for &(base, size, next) in plan.segments.iter().filter(|s| s.2 > plan.first_dirty) {
            if keys.is_full() {
                break;
            }
            let mut batches = self.segment_batches(base, size).await?;
            while let Some((header, bytes)) = batches.next().await? {
                if header.is_control() || is_aborted(&aborted, &header) {
                    continue;
                }
                let area = record_area(&bytes, &header, codec, BATCH_BYTES_MAX)
                    .map_err(|error| self.record_error(base, &header, error))?;
                let records = parse_records(&area, header.record_count)
                    .map_err(|error| self.record_error(base, &header, error))?;
                for record in records {
                    let offset = header.base_offset.saturating_add(record.offset_delta);
                    if let (Some(key), true) = (record.key, offset >= plan.first_dirty) {
                        keys.insert(key, offset);
                    }
                }
                throttle.account(bytes.len()).await;
            }
            end = next;
        }
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
        // Producer -> whether this pass kept a batch of its open
        // transaction, reset at each of its markers.
        let mut txn_kept: HashMap<i64, bool> = HashMap::new();
        let mut report = CompactionReport::default();
        for &(base, size, _) in plan.segments.iter().filter(|s| s.2 <= end) {
            report.segments_cleaned += 1;
            report.bytes_before += size;
            let cleaned_path = self.dir.join(format!(
                "{}{CLEANED_SUFFIX}",
                segment_file_name(base, "log")
            ));
            // The copy is started at the first batch that changes: most
            // segments of a log cleaned before have nothing to remove, and
            // writing them out only to delete the copy would cost the
            // shard's producers a segment of writes each.
            let mut copy: Option<CleanedFile<S::File>> = None;
            // Bytes at the start of the segment that stay as they are.
            let mut untouched = 0u64;
            let mut removed = 0u64;
            let mut run: Option<EmptyRun> = None;
            // Transactions open where this segment starts (loaded on its
            // first marker): see the module's documentation.
            let mut open_at_start: Option<ProducerState> = None;
            let mut removed_markers: Vec<i64> = Vec::new();
            let mut batches = self.segment_batches(base, size).await?;
            while let Some((header, bytes)) = batches.next().await? {
                let fate = if header.is_control() {
                    let kept_data = txn_kept.remove(&header.producer_id).unwrap_or(false);
                    let expired = header.base_offset < plan.first_dirty
                        && now.saturating_sub(header.max_timestamp) > delete_retention_ms;
                    if kept_data || !expired {
                        Fate::Whole
                    } else {
                        if open_at_start.is_none() {
                            open_at_start = Some(
                                super::load_producer_snapshot(&self.storage, &self.dir, base).await,
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
                            Some(run) if header.last_offset() - run.base <= i64::from(i32::MAX) => {
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
                throttle.account(bytes.len()).await;
            }
            let Some(mut copy) = copy else {
                debug_assert_eq!(removed, 0);
                report.bytes_after += size;
                continue;
            };
            flush_run(&mut copy, run.take(), &mut throttle).await?;
            let new_size = copy.finish().await?;
            if !removed_markers.is_empty() {
                self.forget_aborted(base, &removed_markers).await?;
            }
            if self.swap_in(base, size, new_size, &cleaned_path).await? {
                report.segments_rewritten += 1;
                report.records_removed += removed;
                report.bytes_after += new_size;
            } else {
                report.bytes_after += size;
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
        let _ = self.storage.remove_file_at_once(cleaned_path);
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

    /// Puts the cleaned copy in place of segment `base` if the segment is
    /// still the one cleaned (retention, DeleteRecords or a truncation may
    /// have removed or cut it meanwhile); returns whether it did.
    async fn swap_in(
        &self,
        base: i64,
        size: u64,
        new_size: u64,
        cleaned_path: &std::path::Path,
    ) -> Result<bool, CompactionError> {
        let released = {
            let mut inner = self.inner.borrow_mut();
            let unchanged = !inner.closed
                && !inner.truncating
                && inner
                    .segments
                    .get(&base)
                    .is_some_and(|segment| segment.finalized && segment.size == size);
            if !unchanged {
                drop(inner);
                let _ = self.storage.remove_file_at_once(cleaned_path);
                return Ok(false);
            }
            // Index files of the old segment would point into the new one:
            // gone first, so that a crash at any point leaves a segment
            // whose index is rebuilt from its own batches.
            for extension in ["index", "timeindex"] {
                let path = self.dir.join(segment_file_name(base, extension));
                if let Err(error) = self.storage.remove_file_at_once(&path) {
                    if error.kind() != std::io::ErrorKind::NotFound {
                        return Err(StorageError::new("remove", &path, error).into());
                    }
                }
            }
            let Some(segment) = inner.segments.get_mut(&base) else {
                unreachable!("checked above");
            };
            self.storage
                .rename(cleaned_path, &segment.path)
                .map_err(|error| StorageError::new("rename", cleaned_path, error))?;
            segment.size = new_size;
            segment.written = new_size;
            segment.issued = new_size;
            segment.file = None;
            segment.index = None;
            segment.index_from_files = false;
            segment.max_timestamp = -1;
            segment.offset_of_max_timestamp = base;
            inner.compactions += 1;
            // Cached batches of this segment (and of older ones) are
            // copies of what was replaced, with positions in the old file.
            let mut released = 0;
            while inner
                .cached
                .front()
                .is_some_and(|front| front.segment_base <= base)
            {
                if let Some(batch) = inner.cached.pop_front() {
                    released += batch.bytes();
                }
            }
            released
        };
        if released > 0 {
            self.cache.release(released);
        }
        self.storage
            .sync_dir(&self.dir)
            .await
            .map_err(|error| StorageError::new("sync directory", &self.dir, error))?;
        // Index files again, so that a restart does not scan the segment.
        let index = self
            .scan_index(base)
            .await
            .map_err(|error| CompactionError(error.to_string()))?;
        self.write_sealed_index(base, index).await?;
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
