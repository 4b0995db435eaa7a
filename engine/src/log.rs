//! One partition's log: segments of record batches in Kafka's format, written
//! with direct I/O, read from the batch cache or from disk.
//!
//! Appends are synchronous: validation, offset assignment, producer checks and
//! the in-memory bookkeeping happen without an await, so appends to one
//! partition are ordered by the shard's single thread. The bytes then go to
//! disk through a per-partition writer task (write-behind), and durability is
//! a separate wait (`wait_durable`) served by a group-commit sync task: one
//! fdatasync covers every batch appended before it started.
//!
//! Direct-I/O writes cover whole 4 KiB pages. The writer copies staged bytes
//! into an aligned buffer, so the last, partial page is written padded and
//! rewritten by the next write. Writes of whole pages may be in flight
//! together (they touch disjoint pages); a write that rewrites a partial page
//! waits until nothing else is in flight.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::batch::{self, BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD, PATCHED_HEAD_BYTES};
use crate::cache::{BatchCache, CacheOwner, Eviction, GiveUp, ReadAheadGrant, ReadAheadHolder};
use crate::constants::*;
use crate::error::{AppendError, OpenError, ProducerError, ReadError, StorageError};
use crate::index::{OffsetEntry, SegmentIndex, TimeEntry};
use crate::notify::{Signal, Turn, Turns};
use crate::open_files::{FileHolder, FileRelease};
use crate::prefetch;
use crate::producer::{ProducerInfo, ProducerState, SequenceCheck};
use crate::recovery_point::{
    RecoveryPoint, RECOVERY_POINT_BYTES, RECOVERY_POINT_FILE, RECOVERY_POINT_INTERVAL_BYTES,
};
use crate::storage::{IoBuffer, Storage, StorageFile};
use crate::txn::{self, AbortedTxn, ControlRecord, TxnMarker};
use crate::types::{now_ms, LeaderEpoch, Offset};

/// How long the writer waits before retrying after a write error.
const WRITE_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Bytes read per request when serving a fetch from disk, at least.
const DISK_READ_BYTES_MIN: usize = 16 * 1024;

/// How much of a segment a timestamp lookup reads at a time while it walks
/// batch headers from the time index's entry: a read per header made a
/// lookup 30 to 60 disk reads (the time index has an entry per millisecond
/// at best, and a millisecond can hold dozens of batches).
const TIMESTAMP_SCAN_READ_BYTES: usize = 64 * 1024;

/// Bytes of one slab the patched heads of appended batches are cut from
/// (1,024 heads).
const HEAD_SLAB_BYTES: usize = 1024 * PATCHED_HEAD_BYTES;

thread_local! {
    /// The shard's current slab of patched heads. A head kept in its own
    /// allocation cost two per batch (the bytes, then the shared count
    /// made when the cache and the writer's queue each took a copy); cut
    /// from a slab, heads share one allocation, and a clone only counts.
    /// A slab lives as long as any head cut from it (16 KiB at most).
    static HEAD_SLAB: RefCell<bytes::BytesMut> = RefCell::new(bytes::BytesMut::new());
}

/// `head` as shared bytes cut from the shard's slab.
fn head_bytes(head: [u8; PATCHED_HEAD_BYTES]) -> Bytes {
    HEAD_SLAB.with(|slab| {
        let mut slab = slab.borrow_mut();
        if slab.capacity() < PATCHED_HEAD_BYTES {
            *slab = bytes::BytesMut::with_capacity(HEAD_SLAB_BYTES);
        }
        slab.extend_from_slice(&head);
        slab.split().freeze()
    })
}

/// Per-topic settings that shape a partition's log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// -1: keep forever.
    pub retention_ms: i64,
    /// -1: no size limit.
    pub retention_bytes: i64,
    pub index_interval_bytes: u32,
    pub max_message_bytes: u32,
    /// `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    /// Reserve each new segment's full size up front (`preallocate`; off by
    /// default, as in Kafka: the reservation is `segment.bytes` per
    /// partition, so 100 partitions of 1 GiB segments need 100 GiB free
    /// before a byte is written).
    pub preallocate: bool,
    /// Durable bytes of the active segment after which a new recovery point
    /// is written (bounds the recovery scan after a crash).
    pub recovery_point_interval_bytes: u64,
    /// `cleanup.policy` holds `delete`: retention removes old segments.
    pub delete: bool,
    /// `cleanup.policy` holds `compact`: the cleaner keeps the latest
    /// record of each key (see `log/compact.rs`).
    pub compact: bool,
    /// `min.cleanable.dirty.ratio`: the share of the cleanable log not yet
    /// cleaned at which a cleaning pass is due.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty records older than this make a pass
    /// due whatever the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a cleaned tombstone stays.
    pub delete_retention_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            retention_ms: RETENTION_MS_DEFAULT,
            retention_bytes: -1,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            max_message_bytes: MESSAGE_BYTES_MAX_DEFAULT,
            log_append_time: false,
            preallocate: false,
            recovery_point_interval_bytes: RECOVERY_POINT_INTERVAL_BYTES,
            delete: true,
            compact: false,
            min_cleanable_dirty_ratio: MIN_CLEANABLE_DIRTY_RATIO_DEFAULT,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
        }
    }
}

/// Which offset ListOffsets asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetQuery {
    Earliest,
    Latest,
    /// The first record with a timestamp at or after this.
    Timestamp(i64),
    /// The record with the largest timestamp.
    MaxTimestamp,
}

/// An offset found by [`PartitionLog::lookup`], with its timestamp (-1 if none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundOffset {
    pub offset: i64,
    pub timestamp: i64,
}

/// The result of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// The broker's timestamp for LogAppendTime topics, else -1.
    pub log_append_time: i64,
    /// The batch was a retry of one already in the log.
    pub duplicate: bool,
}

/// Batches read from the log: whole batches, in order, as slices. Cached
/// batches come as two slices (patched head, producer's bytes).
#[derive(Debug, Default)]
pub struct ReadChunks {
    pub chunks: Vec<Bytes>,
    pub bytes: usize,
    /// Offset after the last batch returned.
    pub next_offset: i64,
}

/// The offsets of a partition: `log_start <= lso <= hw <= leo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    pub log_start: i64,
    pub hw: i64,
    pub lso: i64,
    pub leo: i64,
    pub durable: i64,
}

struct CachedBatch {
    base_offset: i64,
    last_offset: i64,
    segment_base: i64,
    /// Position just after this batch in its segment.
    end_position: u64,
    head: Bytes,
    body: Bytes,
    sequence: u64,
}

impl CachedBatch {
    fn bytes(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

/// A piece of a segment's staged bytes.
enum Staged {
    /// A slice of a request frame, or bytes read back from the file.
    Frame(Bytes),
    /// The segment's own copy of its written partial page, in
    /// `Segment::tail_copies[tail_front]`; only ever the first piece.
    TailCopy,
}

struct Segment<F> {
    base_offset: i64,
    path: PathBuf,
    /// The open file, if open: the active segment's from its first write
    /// on, a sealed one's once read. The shard's budget of open files
    /// ([`crate::open_files::OpenFiles`]) may close it while idle; it is
    /// then opened again by path.
    file: Option<Rc<F>>,
    /// Which opening of `file` the shard's budget counts (0: not counted).
    file_generation: u64,
    /// The file was used since the budget's clock last passed it.
    file_used: Cell<bool>,
    /// The file exists on disk, so opening it again needs neither a
    /// directory sync nor a preallocation.
    file_created: bool,
    /// The file may be longer than `size`: a write padded the partial last
    /// page with zeros, and no truncation has cut it back since. Recovery
    /// leaves files at their logical size, so a log not written since it
    /// opened needs no truncation (and no reopening) when it closes.
    padded: bool,
    /// Logical size: every byte appended, written or not.
    size: u64,
    next_offset: i64,
    /// `None` for a sealed segment whose index files were not read yet.
    index: Option<SegmentIndex>,
    /// The index was read from its files rather than built from the batches,
    /// so an entry may point at the wrong place; see `distrust_index`.
    index_from_files: bool,
    /// The index files on disk may describe the file a cleaned copy
    /// replaced in memory (the copy's name and the files' removal are made
    /// off the shard, after the switch): the index is rebuilt from the
    /// batches, not read from those files.
    index_files_stale: bool,
    /// The producer state as of this segment's base offset, taken when it
    /// was rolled, until the previous segment's finalize writes it to disk
    /// as `<base>.snapshot`.
    start_producers: Option<ProducerState>,
    /// Transactions aborted by markers in this segment, in marker order
    /// (the `<base>.txnindex` entries).
    aborted: Vec<AbortedTxn>,
    bytes_since_index: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    created_ms: i64,
    /// Staged bytes from `queue_start` to `size`, in order.
    queue: VecDeque<Staged>,
    queue_start: u64,
    /// The two buffers `own_written_tail` copies the written partial page
    /// into, taking turns: the copy is made from the pieces staged before
    /// it, which may include the previous copy. Plain vectors rather than
    /// `Bytes`: freezing a reused buffer into `Bytes` allocated its shared
    /// header each time, one allocation per tail write.
    tail_copies: [Vec<u8>; 2],
    /// Which of `tail_copies` a `Staged::TailCopy` piece reads.
    tail_front: usize,
    /// Bytes handed to writes.
    issued: u64,
    /// Bytes below which every write has completed.
    written: u64,
    /// Completed writes above `written`, start -> end.
    completed: BTreeMap<u64, u64>,
    /// Bytes below which a durable write (`write_at_durable`, issued with
    /// nothing else in flight) made the file durable: a sync up to there
    /// has nothing left to do.
    durable_written: u64,
    /// The file's length as far as this process knows: its size when
    /// opened (after recovery's cut), then the padded end of the furthest
    /// write or zero fill issued, lowered only by a truncation. A write
    /// past it extends the file (see `next_writer_step`).
    file_end: u64,
    /// Writes in flight, a zero fill (`zeroing`) included.
    in_flight: usize,
    /// A write of zeros past `file_end` is in flight (see
    /// `ZERO_AHEAD_BYTES_MIN`): nothing else may be written past
    /// `file_end` until it completes.
    zeroing: bool,
    /// How many bytes the next zero fill writes.
    zero_window: u64,
    /// The segment's size and the log's syncs when zero filling was last
    /// decided on (see `zero_ahead`); `None` until its first write step
    /// after a completed write.
    zero_mark: Cell<Option<(u64, u64)>>,
    /// A zero fill failed (a full disk, say): this segment's writes extend
    /// the file as they come, as when nobody waits for syncs.
    zero_failed: bool,
    sealed: bool,
    finalized: bool,
}

impl<F> Segment<F> {
    fn new(dir: &Path, base_offset: i64) -> Segment<F> {
        Segment {
            base_offset,
            path: dir.join(segment_file_name(base_offset, "log")),
            file: None,
            file_generation: 0,
            file_used: Cell::new(false),
            file_created: false,
            padded: false,
            size: 0,
            next_offset: base_offset,
            index: Some(SegmentIndex::default()),
            index_from_files: false,
            index_files_stale: false,
            start_producers: None,
            aborted: Vec::new(),
            bytes_since_index: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            created_ms: now_ms(),
            queue: VecDeque::new(),
            queue_start: 0,
            tail_copies: [Vec::new(), Vec::new()],
            tail_front: 0,
            issued: 0,
            written: 0,
            completed: BTreeMap::new(),
            durable_written: 0,
            file_end: 0,
            in_flight: 0,
            zeroing: false,
            zero_window: ZERO_AHEAD_BYTES_MIN,
            zero_mark: Cell::new(None),
            zero_failed: false,
            sealed: false,
            finalized: false,
        }
    }

    /// The zeros to write past the file's end beside a write ending at
    /// `to`, while someone waits for this segment's syncs (`syncs` of the
    /// log so far): when the room already zero-filled ahead of `to` is
    /// under half the next fill, the next `zero_window` bytes, up to the
    /// segment's size limit. Only while syncs are frequent for the bytes
    /// appended (see `ZERO_AHEAD_BYTES_PER_SYNC_MAX`), decided again every
    /// `ZERO_AHEAD_BYTES_MIN` appended at least. Not before the segment's
    /// first write has completed, so that a file holding nothing but zeros
    /// is never left for recovery to take for a segment.
    fn zero_ahead(&self, to: u64, segment_bytes: u64, syncs: u64) -> Option<(u64, u64)> {
        if self.zeroing || self.zero_failed || self.sealed || self.written == 0 {
            return None;
        }
        let end = align_up(to);
        if self.file_end.saturating_sub(end) >= self.zero_window / 2 {
            return None;
        }
        // The log's syncs count since it opened: a new segment weighs
        // only those made while it is written.
        let Some((marked_size, marked_syncs)) = self.zero_mark.get() else {
            self.zero_mark.set(Some((self.size, syncs)));
            return None;
        };
        let appended = self.size.saturating_sub(marked_size);
        if appended < ZERO_AHEAD_BYTES_MIN {
            return None;
        }
        self.zero_mark.set(Some((self.size, syncs)));
        let synced = syncs.saturating_sub(marked_syncs);
        if appended > synced.saturating_mul(ZERO_AHEAD_BYTES_PER_SYNC_MAX) {
            return None;
        }
        let from = self.file_end.max(end);
        let until = (from + self.zero_window).min(align_up(segment_bytes));
        (until > from).then_some((from, until))
    }

    fn has_writer_work(&self) -> bool {
        self.issued < self.size || self.in_flight > 0 || (self.sealed && !self.finalized)
    }

    /// The bytes of staged `piece`.
    fn staged_bytes<'a>(&'a self, piece: &'a Staged) -> &'a [u8] {
        match piece {
            Staged::Frame(bytes) => bytes,
            Staged::TailCopy => &self.tail_copies[self.tail_front],
        }
    }

    /// Copies staged bytes `[from, to)` into `out` (which starts at `from`).
    fn copy_staged(&self, from: u64, to: u64, out: &mut [u8]) {
        assert!(from >= self.queue_start && to <= self.size && from <= to);
        let mut position = self.queue_start;
        for piece in &self.queue {
            let piece = self.staged_bytes(piece);
            let piece_end = position + piece.len() as u64;
            if piece_end > from && position < to {
                let start = from.max(position);
                let end = to.min(piece_end);
                let source = &piece[(start - position) as usize..(end - position) as usize];
                let target = (start - from) as usize;
                out[target..target + source.len()].copy_from_slice(source);
            }
            if piece_end >= to {
                break;
            }
            position = piece_end;
        }
    }

    fn write_completed(&mut self, start: u64, end: u64) {
        self.completed.insert(start, end);
        while let Some((&start, &end)) = self.completed.first_key_value() {
            // Writes overlap on the partial page they share, so a write
            // starting at or below `written` extends it.
            if start > self.written {
                break;
            }
            self.completed.remove(&start);
            self.written = self.written.max(end.min(self.size));
        }
        // Keep the partial page at `issued` staged: the next write rewrites it.
        let keep_from = align_down(self.written.min(self.issued));
        while let Some(front) = self.queue.front() {
            let front_end = self.queue_start + self.staged_bytes(front).len() as u64;
            if front_end > keep_from {
                break;
            }
            self.queue_start = front_end;
            self.queue.pop_front();
        }
        self.own_written_tail(keep_from);
    }

    /// Staged pieces are slices of the request frames the batches came in,
    /// and a slice keeps its whole frame (and the read buffer it was cut
    /// from) alive. The written pieces kept only for the partial page's
    /// rewrite are less than a page in all, but they held a frame per
    /// partition until that partition's next write: with many partitions
    /// that was most of the broker's memory, and every new request landed
    /// in freshly faulted pages. Copying those bytes out lets the frames go.
    fn own_written_tail(&mut self, keep_from: u64) {
        let written_end = self.written.min(self.issued);
        let mut wholly_written = 0;
        let mut end = self.queue_start;
        for piece in &self.queue {
            let piece_end = end + self.staged_bytes(piece).len() as u64;
            if piece_end > written_end {
                break;
            }
            end = piece_end;
            wholly_written += 1;
        }
        let already_owned =
            wholly_written == 1 && matches!(self.queue.front(), Some(Staged::TailCopy));
        if wholly_written == 0 || end <= keep_from || already_owned {
            return;
        }
        let len = (end - keep_from) as usize;
        // The other buffer: the copy reads the pieces, and the current copy
        // may be one of them. A page each at most (`keep_from` is the
        // written end's page), so sized once.
        let next = 1 - self.tail_front;
        let mut owned = std::mem::take(&mut self.tail_copies[next]);
        owned.clear();
        owned.reserve(len.max(IO_ALIGNMENT as usize));
        owned.resize(len, 0);
        self.copy_staged(keep_from, end, &mut owned);
        self.tail_copies[next] = owned;
        for _ in 0..wholly_written {
            self.queue.pop_front();
        }
        self.queue.push_front(Staged::TailCopy);
        self.tail_front = next;
        self.queue_start = keep_from;
    }
}

/// Whether the partial last page staged in `segment` must be written now
/// rather than held back. Every small append used to cost one O_DIRECT write
/// of its partial last page, so 100 partitions taking small batches rewrote
/// their tail pages 100,000 times a second (the disk took 240-410 MB/s of
/// writes for 80 MB/s acknowledged, keyed workload). Holding the tail back a
/// little lets it grow; nothing waits on it: acks=1 is answered at the
/// append and reads are served from the batch cache, while anything that
/// does wait (a sync, a roll, close) makes it due at once, as does a
/// chunk's worth of staged bytes.
fn tail_write_due<S: Storage>(inner: &Inner<S>, segment: &Segment<S::File>) -> bool {
    inner.syncer_running
        || inner.write_waiters > 0
        || inner.closed
        || inner.write_error.is_some()
        || segment.sealed
        || segment.size - segment.issued >= WRITE_CHUNK_BYTES_MIN as u64
}

/// Whether every segment up to `base` is written through, and `base`
/// itself up to `position` (a segment gone was retired whole, written).
fn written_through<S: Storage>(inner: &Inner<S>, base: i64, position: u64) -> bool {
    inner
        .segments
        .range(..=base)
        .all(|(&segment_base, segment)| {
            let end = if segment_base == base {
                position
            } else {
                segment.size
            };
            segment.written >= end
        })
}

/// Counts one [`PartitionLog::wait_written`] caller while it waits, and
/// stops counting it however the wait ends (its future may be dropped).
struct WriteWaiter<'a, S: Storage> {
    log: &'a PartitionLog<S>,
}

impl<S: Storage> Drop for WriteWaiter<'_, S> {
    fn drop(&mut self) {
        let mut inner = self.log.inner.borrow_mut();
        inner.write_waiters = inner.write_waiters.saturating_sub(1);
    }
}

fn align_down(value: u64) -> u64 {
    value - value % IO_ALIGNMENT
}

fn align_up(value: u64) -> u64 {
    align_down(value + IO_ALIGNMENT - 1)
}

/// `00000000000000000042.log`: Kafka's segment naming, base offset in 20 digits.
pub fn segment_file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

fn parse_segment_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// An idempotent producer's batch refused before its append with a
/// retriable error, and the error it got.
#[derive(Clone, Copy, Debug)]
struct RefusedBatch {
    epoch: i16,
    first_sequence: i32,
    error_code: i16,
    at_ms: i64,
}

/// [`ProducerError::BehindRefused`] if `header`'s batch comes after a
/// refused batch of its producer that was not retried yet: the producer
/// state expects the refused batch's sequence, or (a producer new here,
/// or at a new epoch) holds nothing of this epoch and the batch's
/// sequence is past the refused one.
fn behind_refused(
    refused: &HashMap<i64, RefusedBatch>,
    producers: &ProducerState,
    header: &BatchHeader,
) -> Option<ProducerError> {
    if refused.is_empty() || !header.has_producer_id() || header.base_sequence < 0 {
        return None;
    }
    let note = refused.get(&header.producer_id)?;
    let recent = now_ms().saturating_sub(note.at_ms) <= REFUSED_BATCH_KEPT_MS;
    if !recent || note.epoch != header.producer_epoch {
        return None;
    }
    let behind = match producers.expected_sequence(header.producer_id, header.producer_epoch) {
        Some(expected) => expected == note.first_sequence && header.base_sequence != expected,
        None => header.base_sequence > note.first_sequence,
    };
    behind.then_some(ProducerError::BehindRefused {
        refused_sequence: note.first_sequence,
        got: header.base_sequence,
        error_code: note.error_code,
    })
}

struct Inner<S: Storage> {
    config: LogConfig,
    segments: BTreeMap<i64, Segment<S::File>>,
    log_start: i64,
    hw: i64,
    leo: i64,
    durable: i64,
    leader_epoch: LeaderEpoch,
    /// The high watermark follows the log end (single replica) unless a
    /// replication layer sets it.
    hw_follows_leo: bool,
    cached: VecDeque<CachedBatch>,
    producers: ProducerState,
    /// The first offset of the producer state replayed at recovery.
    unwritten_bytes: usize,
    write_error: Option<String>,
    sync_failures: u64,
    /// A write or sync failed and was logged, and none has succeeded since:
    /// the retries of a full or failing disk log once, not every retry.
    write_failing: bool,
    writer_running: bool,
    /// A truncation is cutting the log: from when the writer went idle
    /// until every file it touches is consistent again. Appends meanwhile
    /// would land on state the truncation is about to reset (their batches
    /// dropped after they were answered, or written while the file is cut).
    truncating: bool,
    /// Truncations so far. A recovery point captured before one describes
    /// a log that no longer exists (its position may sit inside a batch
    /// written since): it must never be written after it.
    truncations: u64,
    /// A recovery point is being written: a truncation waits for it, since
    /// the file it writes would land after the truncation removed the old
    /// one.
    writing_recovery_point: bool,
    syncer_running: bool,
    sync_wanted: bool,
    /// Syncer rounds that ended in a sync (or found one done) so far:
    /// weighed against the bytes appended meanwhile to decide whether
    /// zeros are written ahead (`Segment::zero_ahead`).
    syncs: u64,
    /// Openings of segment files counted by the shard's budget so far; the
    /// last one names the segment's current file (`Segment::file_generation`).
    file_openings: u64,
    /// Callers of [`PartitionLog::wait_written`] waiting now: while any
    /// waits, the writer holds no tail back.
    write_waiters: usize,
    /// Producers with a transactional append between its coordinator
    /// check and the append itself, and how many markers for them (or
    /// truncations) happened meanwhile; see [`TxnGuard`].
    txn_guards: HashMap<i64, TxnGuardState>,
    /// Per producer id, its batch last refused before the append with a
    /// retriable error; see [`PartitionLog::note_refused`].
    refused: HashMap<i64, RefusedBatch>,
    closed: bool,
    /// The last recovery point written: segment base and position.
    recovery_point_at: Option<(i64, u64)>,
    /// Leader epochs and the offsets they start at, oldest first.
    epochs: Vec<(i32, i64)>,
    /// `epochs` changed since the leader-epoch checkpoint was last written
    /// (or its write failed): the next append, truncation or close writes it.
    epochs_dirty: bool,
    /// The cleaner checkpoint: offsets below it were cleaned (compacted
    /// logs only; see `log/compact.rs`).
    clean_end: i64,
    /// Segments the cleaner replaced so far: a read that found a segment's
    /// file before a replacement and its index after retries.
    compactions: u64,
    /// Where the batches after recent reads from disk start, newest last
    /// (at most `READ_CURSORS_MAX`).
    read_cursors: VecDeque<ReadCursor>,
}

/// Where a reader that went to disk finds its next batch: the batch at
/// `position` of the segment the key names has the key's base offset.
/// Positions hold until a truncation or a compaction rewrites the segment,
/// so a key names the counts of both it saw.
#[derive(Clone)]
struct ReadCursor {
    key: CursorKey,
    position: u64,
    /// The batches from `position` on, read before the reader asks.
    ahead: Option<Rc<ReadAhead>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CursorKey {
    next_offset: i64,
    segment_base: i64,
    truncations: u64,
    compactions: u64,
}

/// Batches read from disk ahead of a reader behind the cache: a consumer
/// with one fetch in flight (Kafka's clients have one per broker) would
/// otherwise wait for the disk in every fetch, and one that fell out of the
/// cache could not catch up with producers again.
struct ReadAhead {
    state: RefCell<AheadState>,
}

enum AheadState {
    Reading(ReadAheadGrant),
    /// Done, since the instant it holds.
    Ready(DiskRead, ReadAheadGrant, Instant),
    Empty,
}

impl ReadAhead {
    fn is_reading(&self) -> bool {
        matches!(*self.state.borrow(), AheadState::Reading(_))
    }

    /// The read, if it is done and holds batches.
    fn take(&self) -> Option<DiskRead> {
        let mut state = self.state.borrow_mut();
        match std::mem::replace(&mut *state, AheadState::Empty) {
            AheadState::Ready(read, _grant, _) => Some(read),
            reading @ AheadState::Reading(_) => {
                *state = reading;
                None
            }
            AheadState::Empty => None,
        }
    }

    fn finish(&self, read: Option<DiskRead>) {
        let mut state = self.state.borrow_mut();
        if let AheadState::Reading(grant) = std::mem::replace(&mut *state, AheadState::Empty) {
            if let Some(read) = read.filter(|read| read.chunks.bytes > 0) {
                *state = AheadState::Ready(read, grant, Instant::now());
            }
        }
    }
}

impl ReadAheadHolder for ReadAhead {
    fn give_up(&self, unclaimed_for: Duration) -> GiveUp {
        let mut state = self.state.borrow_mut();
        match *state {
            AheadState::Reading(_) => GiveUp::Busy,
            AheadState::Ready(_, _, since) if since.elapsed() < unclaimed_for => GiveUp::Busy,
            AheadState::Ready(..) => {
                *state = AheadState::Empty;
                GiveUp::Released
            }
            AheadState::Empty => GiveUp::Empty,
        }
    }
}

/// The batches of a read made ahead that a read at `offset` of `max_bytes`
/// below `upper` returns, and where they end; `None` if it returns none.
fn trim_read(
    read: DiskRead,
    start: u64,
    offset: i64,
    max_bytes: usize,
    upper: i64,
) -> Option<DiskRead> {
    let bytes = read.chunks.chunks.first()?;
    let mut at = 0usize;
    let mut next_offset = offset;
    while at + BATCH_HEADER_BYTES <= bytes.len() {
        let header = BatchHeader::parse(&bytes[at..]).ok()?;
        if at == 0 && header.base_offset != offset {
            return None;
        }
        let size = header.total_bytes();
        if header.base_offset >= upper || at + size > bytes.len() {
            break;
        }
        if at > 0 && at + size > max_bytes {
            break;
        }
        at += size;
        next_offset = header.last_offset() + 1;
    }
    (at > 0).then(|| DiskRead {
        chunks: ReadChunks {
            chunks: vec![bytes.slice(..at)],
            bytes: at,
            next_offset,
        },
        end: start + at as u64,
    })
}

/// What a read finds before it would need the disk.
enum InMemory {
    /// Out of range, or nothing visible past the offset yet.
    Answered(Result<ReadChunks, ReadError>),
    /// The batch cache holds the start of the read.
    Cached(ReadChunks),
    OnDisk,
}

impl<S: Storage> Inner<S> {
    /// How long the batch at `offset` in `segment_base`'s segment is, from
    /// an index in memory, when it starts at an index entry: see
    /// `SegmentIndex::extent_at`. Only where the index interval is within
    /// the shortest disk read, so that the extent of a batch shorter than
    /// the interval makes a read longer by at most the batch after it.
    fn batch_extent(
        &self,
        segment_base: i64,
        offset: i64,
        index: Option<&SegmentIndex>,
    ) -> Option<u64> {
        if self.config.index_interval_bytes as usize > DISK_READ_BYTES_MIN {
            return None;
        }
        let segment = self.segments.get(&segment_base)?;
        let index = index.or(segment.index.as_ref())?;
        let relative = u32::try_from(offset.checked_sub(segment_base)?).ok()?;
        index.extent_at(relative, segment.written)
    }

    /// The entry of `index` at or before `relative` in `segment_base`'s
    /// segment, and the extent of the batch at it (`batch_extent`).
    fn read_start_in(
        &self,
        segment_base: i64,
        relative: u32,
        index: &SegmentIndex,
    ) -> (OffsetEntry, Option<u64>) {
        let entry = index.entry_for(relative);
        let first_base = segment_base + i64::from(entry.relative_offset);
        (
            entry,
            self.batch_extent(segment_base, first_base, Some(index)),
        )
    }

    fn read_in_memory(&self, offset: i64, max_bytes: usize, upper: i64) -> InMemory {
        if offset < self.log_start || offset > self.leo {
            return InMemory::Answered(Err(ReadError::OffsetOutOfRange {
                log_start: self.log_start,
                log_end: self.leo,
            }));
        }
        let upper = upper.min(self.leo);
        if offset >= upper {
            return InMemory::Answered(Ok(ReadChunks {
                chunks: vec![],
                bytes: 0,
                next_offset: offset,
            }));
        }
        let cached = self
            .cached
            .front()
            .is_some_and(|front| front.base_offset <= offset);
        if cached {
            InMemory::Cached(read_cached(&self.cached, offset, max_bytes, upper))
        } else {
            InMemory::OnDisk
        }
    }

    fn active(&self) -> &Segment<S::File> {
        match self.segments.last_key_value() {
            Some((_, segment)) => segment,
            None => unreachable!("a log always has an active segment"),
        }
    }

    fn active_mut(&mut self) -> &mut Segment<S::File> {
        match self.segments.last_entry() {
            Some(entry) => entry.into_mut(),
            None => unreachable!("a log always has an active segment"),
        }
    }

    /// Appends are refused on a closed log and while writes are failing.
    fn check_writable(&self) -> Result<(), AppendError> {
        if self.closed {
            return Err(AppendError::Closed);
        }
        if self.truncating {
            return Err(AppendError::Truncating);
        }
        if let Some(error) = &self.write_error {
            return Err(AppendError::Storage(error.clone()));
        }
        Ok(())
    }

    /// The newest leader epoch the log holds batches of (or was told of).
    fn latest_epoch(&self) -> Option<i32> {
        self.epochs.last().map(|(epoch, _)| *epoch)
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than the
    /// latest epoch, as Kafka's leader-epoch cache does for every appended
    /// batch: entries starting at or after it are dropped (a new log's
    /// epoch-0 entry at offset 0 when the leader's first batch is of a later
    /// epoch), so start offsets stay strictly increasing.
    fn assign_epoch(&mut self, epoch: i32, start_offset: i64) {
        if epoch <= self.latest_epoch().unwrap_or(UNDEFINED_EPOCH) {
            return;
        }
        self.epochs.retain(|(_, start)| *start < start_offset);
        self.epochs.push((epoch, start_offset));
        self.leader_epoch = self.leader_epoch.max(LeaderEpoch(epoch));
        self.epochs_dirty = true;
    }

    fn check_offsets(&self) {
        assert!(
            self.log_start <= self.hw,
            "log start {} > hw {}",
            self.log_start,
            self.hw
        );
        assert!(self.hw <= self.leo, "hw {} > leo {}", self.hw, self.leo);
        assert!(
            self.durable <= self.leo,
            "durable {} > leo {}",
            self.durable,
            self.leo
        );
    }

    /// The active segment's state now, for a recovery point written once
    /// everything appended so far is durable.
    fn capture_recovery_point(&self) -> RecoveryCapture {
        let active = self.active();
        RecoveryCapture {
            point: RecoveryPoint {
                segment_base: active.base_offset,
                position: active.size,
                next_offset: active.next_offset,
                max_timestamp: active.max_timestamp,
                offset_of_max_timestamp: active.offset_of_max_timestamp,
                bytes_since_index: active.bytes_since_index,
            },
            index: active.index.clone().unwrap_or_default(),
            producers: self.producers.clone(),
            truncations: self.truncations,
        }
    }

    fn is_cached_batch_written(&self, batch: &CachedBatch) -> bool {
        match self.segments.get(&batch.segment_base) {
            Some(segment) => segment.written >= batch.end_position,
            // The segment was deleted: nothing to pin.
            None => true,
        }
    }
}

/// A partition's log on a storage backend.
pub struct PartitionLog<S: Storage> {
    dir: PathBuf,
    storage: S,
    cache: Rc<BatchCache>,
    inner: RefCell<Inner<S>>,
    /// Notified whenever writer, sync or append state changes.
    signal: Signal,
    /// Notified only when what a reader may see changes (appends, the high
    /// watermark, truncation, close): fetch waiters watch it, so the writer's
    /// and syncer's progress does not wake every long-polling fetch.
    data_signal: Signal,
    /// Produce requests' turns to append, in the order they reached the
    /// shard (see [`PartitionLog::take_append_turn`]).
    append_turns: Turns,
    /// Serialises `.txnindex` writes: each writes the segment's entries as
    /// they are when it starts, so the last one holds them all.
    txn_index_lock: glommio::sync::Semaphore,
    /// Held by whatever removes segment files (retention, truncation) and
    /// by a merge of cleaned segments from its commit point to its end, so
    /// that no segment's files go half-way through a merge. Not the
    /// `.txnindex` lock: a segment roll takes that one on the write path,
    /// and a merge holds its lock across directory syncs.
    removal_lock: glommio::sync::Semaphore,
    /// Serialises `leader-epoch-checkpoint` writes in the same way.
    epoch_checkpoint_lock: glommio::sync::Semaphore,
    weak_self: Weak<PartitionLog<S>>,
}

/// What the syncer found once the writes it waited for were done.
enum SyncTarget<F> {
    /// A durable write already covered the target: nothing to sync.
    Synced,
    Open(Rc<F>),
    /// The segment's file (at this path) was closed while idle.
    Closed(PathBuf),
    /// A write or sync failed, the log closed or a truncation cut the target.
    Failed,
}

/// What the writer task does next.
enum WriterStep<F> {
    Open {
        segment_base: i64,
        path: PathBuf,
    },
    Write {
        file: Rc<F>,
        segment_base: i64,
        from: u64,
        to: u64,
        wait: bool,
        /// Durable as it completes (`write_at_durable`).
        durable: bool,
        buffer_len: usize,
        /// Zeros to write past the file's end beside this write, `[from,
        /// until)` (see `ZERO_AHEAD_BYTES_MIN`).
        zero_ahead: Option<(u64, u64)>,
    },
    Finalize {
        segment_base: i64,
    },
    /// Only a partial last page of `segment_base` is left to write and
    /// nothing needs it yet: wait for more appends (see `TAIL_WRITE_DELAY`).
    HoldTail {
        segment_base: i64,
    },
    WaitInFlight,
    RetryLater,
    Idle,
}

impl<S: Storage> PartitionLog<S> {
    /// Opens (or creates) the log in `dir`, recovering after a crash: the
    /// last non-empty segment is scanned and cut at the first bad batch.
    pub async fn open(
        storage: S,
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<BatchCache>,
    ) -> Result<Rc<PartitionLog<S>>, OpenError> {
        storage
            .create_dir_all(&dir)
            .await
            .map_err(|error| StorageError::new("create directory", &dir, error))?;
        let names = storage
            .list_dir(&dir)
            .await
            .map_err(|error| StorageError::new("list", &dir, error))?;
        crate::storage::forget_doomed(&storage, &dir, &names);
        compact::forget_cleaned_copies(&storage, &dir, &names);
        let names = if compact::finish_swaps(&storage, &dir, &names, &config).await? {
            storage
                .list_dir(&dir)
                .await
                .map_err(|error| StorageError::new("list", &dir, error))?
        } else {
            names
        };
        let clean_end = compact::read_clean_end(&storage, &dir).await;
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|name| parse_segment_name(name))
            .collect();
        bases.sort_unstable();
        let checkpoint = read_log_start(&storage, &dir).await?;
        let mut segments: BTreeMap<i64, Segment<S::File>> = BTreeMap::new();
        for &base in &bases {
            let mut segment = Segment::new(&dir, base);
            segment.file_created = true;
            segment.index = None;
            segment.sealed = true;
            segment.finalized = true;
            segments.insert(base, segment);
        }
        let mut producers = ProducerState::default();
        let resume_point = load_recovery_point(&storage, &dir).await;
        // Recover from the last non-empty segment on; later empty ones are
        // dropped if they no longer follow on.
        let mut recovered_next: Option<i64> = None;
        let mut sizes = Vec::new();
        for &base in bases.iter().rev() {
            let path = dir.join(segment_file_name(base, "log"));
            let (file, size) = open_with_size(&storage, &path).await?;
            sizes.push((base, size));
            if size > 0 || base == bases[0] {
                let resume = match &resume_point {
                    Some((point, state))
                        if point.segment_base == base
                            && point.position > 0
                            && point.position <= size =>
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
                // Aborted transactions below the recovery point are in the
                // `.txnindex` written with it; the scan finds later ones.
                // Without a recovery point the scan finds them all.
                let mut aborted = match &start {
                    Some(start) => {
                        let mut entries = load_txn_index(&storage, &dir, base).await;
                        entries.retain(|entry| entry.last_offset < start.point.next_offset);
                        entries
                    }
                    None => Vec::new(),
                };
                let scanned = scan_segment(&file, &path, base, size, &config, start).await?;
                if scanned.valid_bytes < size {
                    if scanned.ends_in_zeros {
                        // Padding, zeros written ahead, or writes no sync
                        // covered: what a stop without a close leaves.
                        tracing::debug!(
                            path = %path.display(),
                            valid = scanned.valid_bytes,
                            size,
                            "log ends where zeros begin; cutting them"
                        );
                    } else {
                        tracing::warn!(
                            path = %path.display(),
                            valid = scanned.valid_bytes,
                            size,
                            "log ends at the first incomplete or corrupt batch; truncating"
                        );
                    }
                    file.truncate(scanned.valid_bytes)
                        .await
                        .map_err(|error| StorageError::new("truncate", &path, error))?;
                    file.sync()
                        .await
                        .map_err(|error| StorageError::new("sync", &path, error))?;
                }
                // The producer state as of this segment's start, and then
                // every batch the scan found in it.
                producers = match resumed_producers {
                    Some(state) => state,
                    None => load_producer_snapshot(&storage, &dir, base).await,
                };
                for (header, control) in &scanned.headers {
                    aborted.extend(record_batch(&mut producers, header, *control));
                }
                if let Some(segment) = segments.get_mut(&base) {
                    segment.aborted = aborted;
                    segment.size = scanned.valid_bytes;
                    segment.next_offset = scanned.next_offset;
                    segment.index = Some(scanned.index);
                    // Entries read from files are checked on use, like a
                    // sealed segment's.
                    segment.index_from_files = resumed;
                    segment.max_timestamp = scanned.max_timestamp;
                    segment.offset_of_max_timestamp = scanned.offset_of_max_timestamp;
                    segment.bytes_since_index = scanned.bytes_since_index;
                    segment.file = Some(Rc::new(file));
                    segment.written = scanned.valid_bytes;
                    segment.issued = scanned.valid_bytes;
                    // The file was cut back to this above if it was longer.
                    segment.file_end = scanned.valid_bytes;
                }
                recovered_next = Some(scanned.next_offset);
                break;
            }
        }
        // Empty segments after the recovered one that do not continue it
        // (their predecessor lost unsynced batches) are removed.
        if let Some(next) = recovered_next {
            let stale: Vec<i64> = segments
                .range(next.saturating_add(1)..)
                .map(|(&base, _)| base)
                .collect();
            for base in stale {
                if let Some(segment) = segments.remove(&base) {
                    // Its start snapshot describes offsets that are gone.
                    remove_segment_files(&storage, &dir, base, segment.file).await;
                }
            }
        }
        // Sealed segments: sizes from the file system, the last from the scan.
        let _ = sizes;
        for segment in segments.values_mut() {
            if segment.file.is_none() {
                let size = storage
                    .file_size(&segment.path)
                    .map_err(|error| StorageError::new("stat", &segment.path, error))?;
                segment.size = size;
                segment.written = size;
                segment.issued = size;
                // A sealed segment's aborted transactions: its `.txnindex`
                // was written when it was finalized, before any later
                // segment's file existed.
                segment.aborted = load_txn_index(&storage, &dir, segment.base_offset).await;
            }
        }
        let mut next_bases = segments
            .keys()
            .skip(1)
            .copied()
            .collect::<Vec<_>>()
            .into_iter();
        for segment in segments.values_mut() {
            match next_bases.next() {
                Some(next_base) if segment.file.is_none() => segment.next_offset = next_base,
                _ => {}
            }
        }
        if segments.is_empty() {
            let start = checkpoint.max(0);
            segments.insert(start, Segment::new(&dir, start));
        }
        let mut leo = match segments.last_key_value() {
            Some((_, last)) => last.next_offset,
            None => unreachable!("inserted above"),
        };
        if checkpoint > leo {
            // DeleteRecords moved the log start past everything that survived
            // a crash, so every surviving batch lies below the log start.
            // As Kafka does, the log starts afresh at the log start: offsets
            // below it are never handed out again, and the checkpoint stays
            // true (clamping the start to the log end in memory only would
            // let the next restart raise it over records appended meanwhile).
            tracing::warn!(
                dir = %dir.display(),
                log_start = checkpoint,
                leo,
                "log start is past the recovered log end; starting the log at the log start"
            );
            for (&base, segment) in segments.iter_mut() {
                remove_segment_files(&storage, &dir, base, segment.file.take()).await;
            }
            storage
                .sync_dir(&dir)
                .await
                .map_err(|error| StorageError::new("sync directory", &dir, error))?;
            segments.clear();
            segments.insert(checkpoint, Segment::new(&dir, checkpoint));
            leo = checkpoint;
            producers = ProducerState::default();
        }
        // The last segment is the active one: it takes appends again.
        if let Some(mut last) = segments.last_entry() {
            let last = last.get_mut();
            last.sealed = false;
            last.finalized = false;
            if last.index.is_none() && last.size == 0 {
                // Only an empty last segment skips the recovery scan. As the
                // active segment it must index its appends in memory; left
                // without an index it would add no entries, and its first
                // read would load the `.index` file that a truncation to this
                // segment's start left behind, pointing into old data.
                last.index = Some(SegmentIndex::default());
            }
            let staged_from = align_down(last.size);
            if staged_from < last.size {
                // The partial last page is rewritten by the next write, so
                // its bytes are staged again.
                if let Some(file) = &last.file {
                    let tail = file
                        .read_at(staged_from, (last.size - staged_from) as usize)
                        .await
                        .map_err(|error| StorageError::new("read", &last.path, error))?;
                    last.queue.push_back(Staged::Frame(tail));
                }
            }
            last.queue_start = staged_from;
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let log_start = checkpoint.max(first_base).min(leo);
        let epochs = match read_epoch_checkpoint(&storage, &dir).await? {
            Some(mut epochs) => {
                // The checkpoint is written when an epoch starts, before its
                // batches are durable: a crash can lose them, and an epoch
                // starting past the recovered log end would then answer
                // OffsetForLeaderEpoch with offsets the log does not hold
                // (Kafka's loader drops them too).
                let count = epochs.len();
                epochs.retain(|(_, start)| *start <= leo);
                if epochs.len() != count {
                    write_epoch_checkpoint(&storage, &dir, &epochs).await?;
                }
                epochs
            }
            None => {
                // A new log starts leader epoch 0 at its start.
                let epochs = vec![(0, log_start)];
                write_epoch_checkpoint(&storage, &dir, &epochs).await?;
                epochs
            }
        };
        // The recovery point on disk still names the log's end if nothing
        // followed it: closing without an append need not write it again
        // (a restart of 100,000 partitions then a stop rewrote 100,000 of
        // them, four synced files each).
        let recovery_point_at = resume_point.as_ref().and_then(|(point, _)| {
            let active = segments.values().next_back()?;
            (active.base_offset == point.segment_base && active.size == point.position)
                .then_some((point.segment_base, point.position))
        });
        let inner = Inner {
            config,
            segments,
            log_start,
            hw: leo,
            leo,
            durable: leo,
            leader_epoch: LeaderEpoch(epochs.last().map_or(0, |(epoch, _)| *epoch)),
            epochs,
            epochs_dirty: false,
            hw_follows_leo: true,
            cached: VecDeque::new(),
            producers,
            unwritten_bytes: 0,
            write_error: None,
            sync_failures: 0,
            write_failing: false,
            writer_running: false,
            truncating: false,
            truncations: 0,
            writing_recovery_point: false,
            syncer_running: false,
            syncs: 0,
            file_openings: 0,
            write_waiters: 0,
            sync_wanted: false,
            recovery_point_at,
            txn_guards: HashMap::new(),
            refused: HashMap::new(),
            closed: false,
            clean_end: clean_end.clamp(log_start, leo),
            compactions: 0,
            read_cursors: VecDeque::new(),
        };
        inner.check_offsets();
        let log = Rc::new_cyclic(|weak_self| PartitionLog {
            dir,
            storage,
            cache,
            inner: RefCell::new(inner),
            signal: Signal::new(),
            data_signal: Signal::new(),
            append_turns: Turns::new(),
            txn_index_lock: glommio::sync::Semaphore::new(1),
            removal_lock: glommio::sync::Semaphore::new(1),
            epoch_checkpoint_lock: glommio::sync::Semaphore::new(1),
            weak_self: weak_self.clone(),
        });
        // Recovery left the active segment's file open.
        let open: Vec<i64> = log
            .inner
            .borrow()
            .segments
            .values()
            .filter(|segment| segment.file.is_some())
            .map(|segment| segment.base_offset)
            .collect();
        for base in open {
            log.count_open_file(base);
        }
        Ok(log)
    }

    /// Counts segment `base`'s open file against the shard's budget of open
    /// files, unless it is counted already; closing idle files of this or
    /// other logs if that puts the shard over. Called with no borrow held.
    fn count_open_file(&self, base: i64) {
        let generation = {
            let mut inner = self.inner.borrow_mut();
            let generation = inner.file_openings + 1;
            let Some(segment) = inner.segments.get_mut(&base) else {
                return;
            };
            if segment.file.is_none() || segment.file_generation != 0 {
                return;
            }
            segment.file_generation = generation;
            inner.file_openings = generation;
            generation
        };
        let holder: Weak<dyn FileHolder> = self.weak_self.clone();
        self.cache.open_files().opened(holder, base, generation);
    }

    /// Opens segment `base`'s existing file at `path` again, once the
    /// shard's budget of open files has room for it, and keeps it as the
    /// segment's open file.
    async fn reopen_file(&self, base: i64, path: &Path) -> std::io::Result<Rc<S::File>> {
        let file = self.open_in_budget(path).await?;
        self.keep_open_file(base, Rc::clone(&file));
        Ok(file)
    }

    /// Opens the existing file at `path` once the shard's budget of open
    /// files has room for it; the caller keeps it (and counts it) or not.
    async fn open_in_budget(&self, path: &Path) -> std::io::Result<Rc<S::File>> {
        let room = self.cache.open_files().room().await;
        let file = Rc::new(self.storage.open(path, false).await?);
        drop(room);
        Ok(file)
    }

    /// Keeps `file` as segment `base`'s open file, replacing any other
    /// handle (whose holders keep it until they let go), and counts it.
    fn keep_open_file(&self, base: i64, file: Rc<S::File>) {
        {
            let mut inner = self.inner.borrow_mut();
            let Some(segment) = inner.segments.get_mut(&base) else {
                return;
            };
            segment.file = Some(file);
            segment.file_generation = 0;
            segment.file_created = true;
        }
        self.count_open_file(base);
    }

    /// Opens a new log in `dir`, which must hold none, starting at offset
    /// `start`: a follower whose leader's log starts past the end of its
    /// own replaces its log with this one (Kafka's truncate-fully-and-
    /// start-at), so that it can fetch from the leader's log start.
    pub async fn create_at(
        storage: S,
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<BatchCache>,
        start: i64,
    ) -> Result<Rc<PartitionLog<S>>, OpenError> {
        storage
            .create_dir_all(&dir)
            .await
            .map_err(|error| StorageError::new("create directory", &dir, error))?;
        let names = storage
            .list_dir(&dir)
            .await
            .map_err(|error| StorageError::new("list", &dir, error))?;
        if let Some(name) = names.iter().find(|name| parse_segment_name(name).is_some()) {
            return Err(OpenError::Foreign {
                path: dir.join(name),
                reason: "a new log was to start here, but a segment is left".into(),
            });
        }
        write_log_start(&storage, &dir, start).await?;
        PartitionLog::open(storage, dir, config, cache).await
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn offsets(&self) -> Offsets {
        let inner = self.inner.borrow();
        // Nothing at or after an open transaction's first batch is stable;
        // DeleteRecords may have moved the log start past it.
        let lso = match inner.producers.first_unstable_offset() {
            Some(first) => first.min(inner.hw).max(inner.log_start),
            None => inner.hw,
        };
        Offsets {
            log_start: inner.log_start,
            hw: inner.hw,
            lso,
            leo: inner.leo,
            durable: inner.durable,
        }
    }

    pub fn config(&self) -> LogConfig {
        self.inner.borrow().config.clone()
    }

    pub fn set_config(&self, config: LogConfig) {
        self.inner.borrow_mut().config = config;
    }

    /// Bytes held by the log's segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner
            .borrow()
            .segments
            .values()
            .map(|segment| segment.size)
            .sum()
    }

    pub fn segment_count(&self) -> usize {
        self.inner.borrow().segments.len()
    }

    /// A signal notified when the visible end (high watermark, last stable
    /// offset) may have moved or the log closed; fetch waiters use it to
    /// wake when data arrives.
    pub fn data_signal(&self) -> &Signal {
        &self.data_signal
    }

    /// Takes this partition's next turn to append. A produce request takes
    /// one for each of its partitions before it first awaits, and appends
    /// once the turn is granted: the checks before an append may wait (for
    /// write-behind room, for the transaction coordinator), and without
    /// turns a request that arrived later could append while an earlier one
    /// waited, storing one connection's records out of send order.
    pub fn take_append_turn(&self) -> Turn {
        self.append_turns.take()
    }

    /// Whether appends would be refused right now for lack of writer room.
    pub fn is_backlogged(&self) -> bool {
        self.inner.borrow().unwritten_bytes >= UNWRITTEN_BYTES_MAX
    }

    /// Waits until the writer has room (bounded write-behind), the log
    /// closes, or its writes fail: a full or failing disk frees no room
    /// until it recovers, and the waiting appends must be refused with
    /// [`PartitionLog::write_failure`] rather than wait for it.
    pub async fn wait_for_room(&self) {
        let this = self.weak_self.clone();
        self.signal
            .wait_for(move || match this.upgrade() {
                Some(log) => {
                    let inner = log.inner.borrow();
                    (inner.unwritten_bytes < UNWRITTEN_BYTES_MAX
                        || inner.closed
                        || inner.write_failing)
                        .then_some(())
                }
                None => Some(()),
            })
            .await
    }

    /// Why writes are failing, if the last write or sync failed and none
    /// has succeeded since (a full or failing disk).
    pub fn write_failure(&self) -> Option<String> {
        let inner = self.inner.borrow();
        inner.write_failing.then(|| {
            inner
                .write_error
                .clone()
                .unwrap_or_else(|| "the last write failed; retrying".to_string())
        })
    }

    /// Appends the batches of one produce request to this partition (all or
    /// nothing for validation; each batch is checked before any is appended).
    /// The batches are the producer's bytes; base offsets and the leader
    /// epoch are assigned here.
    pub fn append(&self, batches: &[(BatchHeader, Bytes)]) -> Result<Appended, AppendError> {
        let mut inner = self.inner.borrow_mut();
        inner.check_writable()?;
        let limit = inner.config.max_message_bytes as usize;
        let mut duplicate = None;
        // Several batches are checked against the state as each earlier one
        // leaves it (a copy, so a refusal changes nothing): checked against
        // the state before the append, the second batch of a producer
        // looked out of order, and a retried first batch followed by a new
        // one was not seen as a duplicate and was stored again.
        let mut scratch = (batches.len() > 1).then(|| inner.producers.clone());
        for (header, bytes) in batches {
            if bytes.len() > limit {
                return Err(AppendError::Batch(batch::BatchError::TooLarge {
                    bytes: bytes.len(),
                    limit,
                }));
            }
            if header.is_control() && txn::parse_control_batch(bytes).is_none() {
                return Err(AppendError::Batch(batch::BatchError::BadControlRecord));
            }
            let producers = scratch.as_ref().unwrap_or(&inner.producers);
            let checked = match producers.check(header) {
                // A retry of a stored batch is answered as such; a gap, or
                // a start a new producer may make, may be a refused batch.
                checked @ (Ok(SequenceCheck::Accept)
                | Err(ProducerError::OutOfOrderSequence { .. })) => {
                    match behind_refused(&inner.refused, producers, header) {
                        Some(error) => Err(error),
                        None => checked,
                    }
                }
                checked => checked,
            };
            let checked = checked.inspect_err(|error| {
                // Rare, and what makes a client bump its epoch and
                // renumber what it holds: worth a line for the operator,
                // with what the log remembers of that producer.
                tracing::info!(
                    dir = %self.dir.display(),
                    producer_id = header.producer_id,
                    epoch = header.producer_epoch,
                    base_sequence = header.base_sequence,
                    records = header.last_offset_delta + 1,
                    log_end = inner.leo,
                    remembered = ?producers.producers.get(&header.producer_id),
                    %error,
                    "produce refused by the producer state"
                );
            });
            match checked.map_err(AppendError::Producer)? {
                SequenceCheck::Accept => {}
                SequenceCheck::Duplicate { base_offset } if batches.len() > 1 => {
                    return Err(AppendError::Producer(ProducerError::DuplicateAmongOthers {
                        base_offset,
                    }));
                }
                SequenceCheck::Duplicate { base_offset } => {
                    duplicate = Some((base_offset, header.last_offset_delta));
                }
            }
            if let Some(scratch) = scratch.as_mut() {
                // The offset is only remembered for duplicate answers, which
                // a multi-batch append refuses; the sequence is what counts.
                scratch.record(header, header.base_offset);
            }
        }
        if let Some((base_offset, last_delta)) = duplicate {
            return Ok(Appended {
                base_offset: Offset(base_offset),
                last_offset: Offset(base_offset + i64::from(last_delta)),
                log_append_time: -1,
                duplicate: true,
            });
        }
        let now = now_ms();
        let mut first_offset = None;
        let mut log_append_time = -1;
        for (header, bytes) in batches {
            let base_offset = inner.leo;
            let epoch = inner.leader_epoch;
            let mut header = *header;
            header.base_offset = base_offset;
            let (head, body) = if inner.config.log_append_time {
                // The one case where the body changes: timestamp and CRC.
                let mut owned = bytes.to_vec();
                batch::stamp_log_append_time(&mut owned, now);
                header.max_timestamp = now;
                log_append_time = now;
                let owned = Bytes::from(owned);
                let head = head_bytes(batch::patched_head(&owned, Offset(base_offset), epoch));
                (head, owned.slice(PATCHED_HEAD_BYTES..))
            } else {
                let head = head_bytes(batch::patched_head(bytes, Offset(base_offset), epoch));
                (head, bytes.slice(PATCHED_HEAD_BYTES..))
            };
            self.append_stored(&mut inner, &header, bytes, head, body, now);
            first_offset.get_or_insert(base_offset);
            if !inner.refused.is_empty() && header.has_producer_id() {
                // Its refused batch came again, or the producer moved on.
                inner.refused.remove(&header.producer_id);
            }
        }
        let base_offset = first_offset.unwrap_or(inner.leo);
        let last_offset = inner.leo - 1;
        self.finish_append(inner);
        Ok(Appended {
            base_offset: Offset(base_offset),
            last_offset: Offset(last_offset),
            log_append_time,
            duplicate: false,
        })
    }

    /// Appends batches copied from this partition's leader (a follower's
    /// fetch), stored verbatim: they already carry the leader's offsets,
    /// partition leader epoch and CRC. Each must start at the log end as
    /// the one before it leaves it; a gap or an overlap is refused with
    /// [`AppendError::NotContiguous`] and nothing is appended. `header` must
    /// be the batch's own (from [`batch::split_and_validate`], which checks
    /// the CRC).
    ///
    /// The leader already checked sequences and sizes, so neither is checked
    /// here, but the producer state is built exactly as the leader's append
    /// builds it: should this replica become the leader, retries are still
    /// answered as duplicates and open transactions stay open. The high
    /// watermark does not move (the follower sets it from the leader's
    /// answer with [`PartitionLog::set_high_watermark`]). A batch of a
    /// leader epoch newer than the log's latest starts that epoch at its
    /// base offset, and the leader-epoch checkpoint is written before this
    /// returns; if that write fails, the batches stay appended and the
    /// error is returned (the next call, truncation or close writes it
    /// again).
    pub async fn append_replica(
        &self,
        batches: &[(BatchHeader, Bytes)],
    ) -> Result<Appended, AppendError> {
        // A truncation in progress (a newer leader's fetcher cutting this
        // log) decides where the log ends: these batches are checked
        // against that end, not staged on the one it is removing.
        let this = self.weak_self.clone();
        self.signal
            .wait_for(move || {
                let log = this.upgrade()?;
                let truncating = log.inner.borrow().truncating;
                (!truncating).then_some(())
            })
            .await;
        let (appended, epochs_dirty) = {
            let mut inner = self.inner.borrow_mut();
            inner.check_writable()?;
            let mut expected = inner.leo;
            for (header, bytes) in batches {
                check_replica_batch(header, bytes, expected)?;
                expected = header.last_offset() + 1;
            }
            // A follower's high watermark is the leader's, never its own
            // log end: a record is committed once the leader says so.
            inner.hw_follows_leo = false;
            let base_offset = inner.leo;
            let now = now_ms();
            for (header, bytes) in batches {
                inner.assign_epoch(header.leader_epoch, header.base_offset);
                // The stored bytes are the leader's, head included: no
                // patched copy, no copy at all.
                let head = bytes.slice(..PATCHED_HEAD_BYTES);
                let body = bytes.slice(PATCHED_HEAD_BYTES..);
                self.append_stored(&mut inner, header, bytes, head, body, now);
            }
            let appended = Appended {
                base_offset: Offset(base_offset),
                last_offset: Offset(inner.leo - 1),
                log_append_time: -1,
                duplicate: false,
            };
            let epochs_dirty = inner.epochs_dirty;
            self.finish_append(inner);
            (appended, epochs_dirty)
        };
        if epochs_dirty {
            self.persist_epochs()
                .await
                .map_err(|error| AppendError::Storage(error.to_string()))?;
        }
        Ok(appended)
    }

    /// Appends one batch whose stored bytes are `head` then `body` and whose
    /// `header` holds its final base offset: segment roll, indexes, staging
    /// for the writer, offsets, producer state and transaction index, and
    /// the batch cache. `bytes` are the batch as received (for its control
    /// record). Shared by the leader's and the follower's appends, so a
    /// follower's log and producer state are the ones its leader built.
    fn append_stored(
        &self,
        inner: &mut Inner<S>,
        header: &BatchHeader,
        bytes: &[u8],
        head: Bytes,
        body: Bytes,
        now: i64,
    ) {
        let base_offset = header.base_offset;
        let batch_bytes = bytes.len() as u64;
        let roll = {
            let active = inner.active();
            active.size > 0
                && (active.size + batch_bytes > inner.config.segment_bytes
                    || now - active.created_ms > inner.config.segment_ms)
        };
        if roll {
            inner.active_mut().sealed = true;
            let mut segment = Segment::new(&self.dir, base_offset);
            // Every batch before this one is recorded and none after: the
            // one moment the state as of the new segment's start is exact.
            segment.start_producers = Some(inner.producers.clone());
            inner.segments.insert(base_offset, segment);
        }
        let index_interval = u64::from(inner.config.index_interval_bytes);
        let segment_base;
        let end_position;
        {
            let active = inner.active_mut();
            segment_base = active.base_offset;
            let position = active.size;
            let relative = (base_offset - active.base_offset) as u32;
            if let Some(index) = active.index.as_mut() {
                if active.bytes_since_index >= index_interval
                    || index.offsets.is_empty() && position > 0
                {
                    index.offsets.push(OffsetEntry {
                        relative_offset: relative,
                        position: position as u32,
                    });
                    active.bytes_since_index = 0;
                }
                if header.max_timestamp > active.max_timestamp {
                    let last_relative = (header.last_offset() - active.base_offset) as u32;
                    let newer = index
                        .times
                        .last()
                        .is_none_or(|entry| entry.timestamp < header.max_timestamp);
                    if newer && active.bytes_since_index == 0 {
                        index.times.push(TimeEntry {
                            timestamp: header.max_timestamp,
                            relative_offset: last_relative,
                        });
                    }
                }
            }
            if header.max_timestamp > active.max_timestamp {
                active.max_timestamp = header.max_timestamp;
                active.offset_of_max_timestamp = header.last_offset();
            }
            active.bytes_since_index += batch_bytes;
            active.size += batch_bytes;
            active.next_offset = header.last_offset() + 1;
            end_position = active.size;
            active.queue.push_back(Staged::Frame(head.clone()));
            active.queue.push_back(Staged::Frame(body.clone()));
        }
        inner.unwritten_bytes += bytes.len();
        inner.leo = header.last_offset() + 1;
        if inner.hw_follows_leo {
            inner.hw = inner.leo;
        }
        let control = if header.is_control() {
            txn::parse_control_batch(bytes)
        } else {
            None
        };
        if control.is_some() && header.has_producer_id() {
            if let Some(guard) = inner.txn_guards.get_mut(&header.producer_id) {
                guard.ends += 1;
            }
        }
        if let Some(aborted) = record_batch(&mut inner.producers, header, control) {
            inner.active_mut().aborted.push(aborted);
        }
        let owner: Weak<dyn CacheOwner> = self.weak_self.clone();
        let sequence = self.cache.insert(owner, bytes.len());
        inner.cached.push_back(CachedBatch {
            base_offset,
            last_offset: header.last_offset(),
            segment_base,
            end_position,
            head,
            body,
            sequence,
        });
    }

    /// The end of every append: checks the offsets, starts the writer if it
    /// is idle, trims the cache and wakes waiters. Takes the borrow so that
    /// it ends before the writer is spawned and waiters run.
    fn finish_append(&self, mut inner: std::cell::RefMut<'_, Inner<S>>) {
        inner.check_offsets();
        let start_writer = !inner.writer_running;
        inner.writer_running = true;
        drop(inner);
        if start_writer {
            self.spawn_writer();
        }
        self.cache.trim();
        self.signal.notify();
        self.data_signal.notify();
    }

    /// Appends the control batch of `marker` (the transaction coordinator
    /// ending a transaction on this partition). As for any append, callers
    /// that must know it is durable then `wait_durable`.
    ///
    /// A marker whose producer epoch is older than the producer's is
    /// refused (`ProducerError::InvalidEpoch`); a newer epoch becomes the
    /// producer's. A marker of transaction version 2 or later at the
    /// producer's epoch is refused too while a transaction is open here
    /// (`ProducerError::MarkerEpochNotBumped`, KIP-1228): its coordinator
    /// ends a transaction at a bumped epoch. A marker for a producer with no
    /// transaction open here is still written (the coordinator sends markers
    /// to every partition it was told of): it moves the epoch and the
    /// coordinator epoch but ends nothing, so an abort adds no aborted-index
    /// entry.
    pub fn append_marker(&self, marker: TxnMarker) -> Result<Appended, AppendError> {
        if marker.bumps_epoch() {
            // Checked here, not in `append`: the version is the request's,
            // not the batch's, and a follower copying the leader's marker
            // has only the batch (the leader checked it).
            let inner = self.inner.borrow();
            inner.check_writable()?;
            inner
                .producers
                .check_bumped_marker(marker.producer_id, marker.producer_epoch)
                .map_err(AppendError::Producer)?;
        }
        let bytes = Bytes::from(txn::build_control_batch(&marker, now_ms()));
        let header = batch::validate(&bytes, usize::MAX)?;
        self.append(&[(header, bytes)])
    }

    /// Every aborted transaction with `last_offset >= from` and
    /// `first_offset < upper`, in marker order: what a read_committed fetch
    /// of `[from, upper)` returns so the consumer can drop aborted records.
    pub async fn aborted_txns(&self, from: i64, upper: i64) -> Result<Vec<AbortedTxn>, ReadError> {
        let inner = self.inner.borrow();
        let mut found = Vec::new();
        // Segments before the one holding `from` hold only markers below it.
        // Later segments may hold the marker of a transaction that started
        // below `upper`, so the scan goes on to the end (most segments have
        // no entries at all).
        let start = inner
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(&base, _)| base);
        for segment in inner.segments.range(start..).map(|(_, segment)| segment) {
            found.extend(
                segment
                    .aborted
                    .iter()
                    .filter(|entry| entry.last_offset >= from && entry.first_offset < upper),
            );
        }
        Ok(found)
    }

    /// The first offset of `producer_id`'s transaction open on this
    /// partition, if one is.
    pub fn ongoing_txn_first_offset(&self, producer_id: i64) -> Option<i64> {
        self.inner
            .borrow()
            .producers
            .ongoing_txn_first_offset(producer_id)
    }

    /// Starts guarding `producer_id`'s next transactional append: taken
    /// before asking the coordinator whether the partition is in the
    /// producer's transaction, checked right before appending. A marker for
    /// the producer (a timeout abort) landing in between would otherwise let
    /// the batch open a transaction that no marker ever ends.
    pub fn txn_guard(&self, producer_id: i64) -> TxnGuard<S> {
        let mut inner = self.inner.borrow_mut();
        let state = inner.txn_guards.entry(producer_id).or_default();
        state.holders += 1;
        TxnGuard {
            log: self.weak_self.clone(),
            producer_id,
            ends_seen: state.ends,
        }
    }

    /// Remembers that the batch with `header` (its request's first for
    /// this partition) was refused with the retriable `error_code` before
    /// being appended. A client pipelines up to five requests per
    /// partition: the ones sent after it find a sequence gap where the
    /// refused batch should be, and OUT_OF_ORDER_SEQUENCE_NUMBER for them
    /// makes librdkafka (2.12) bump its epoch and renumber every batch it
    /// holds for retry, on every partition, including batches another
    /// broker stored but never acknowledged: those are stored twice
    /// (librdkafka issue 4953). And if the producer is new here, a later
    /// batch is accepted ahead of the refused one, whose retry then finds
    /// the sequence moved past it. With the note, they get the refused
    /// batch's own error instead ([`ProducerError::BehindRefused`]), and
    /// the client retries all of them in order, with their sequences.
    pub fn note_refused(&self, header: &BatchHeader, error_code: i16) {
        if !header.has_producer_id() || header.base_sequence < 0 || header.is_control() {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        let now = now_ms();
        if let Some(earlier) = inner.refused.get(&header.producer_id) {
            // Refusals in a row (nothing of this producer appended since,
            // or the note would be gone): the gap starts at the first.
            let recent = now.saturating_sub(earlier.at_ms) <= REFUSED_BATCH_KEPT_MS;
            if recent
                && earlier.epoch == header.producer_epoch
                && earlier.first_sequence < header.base_sequence
            {
                return;
            }
        }
        if inner.refused.len() >= REFUSED_BATCHES_KEPT
            && !inner.refused.contains_key(&header.producer_id)
        {
            inner.refused.clear();
        }
        inner.refused.insert(
            header.producer_id,
            RefusedBatch {
                epoch: header.producer_epoch,
                first_sequence: header.base_sequence,
                error_code,
                at_ms: now,
            },
        );
    }

    /// Every producer this partition remembers (DescribeProducers).
    pub fn producers(&self) -> Vec<ProducerInfo> {
        self.inner.borrow().producers.describe()
    }

    fn spawn_writer(&self) {
        let Some(log) = self.weak_self.upgrade() else {
            return;
        };
        glommio::spawn_local(async move { log.run_writer().await }).detach();
    }

    /// The writer's next step. `may_hold`: whether a small tail may still be
    /// held back (false once it has waited `TAIL_WRITE_DELAY`).
    fn next_writer_step(&self, may_hold: bool) -> WriterStep<S::File> {
        let inner = self.inner.borrow();
        if inner.write_error.is_some() {
            return if inner.segments.values().any(|segment| segment.in_flight > 0) {
                WriterStep::WaitInFlight
            } else {
                WriterStep::RetryLater
            };
        }
        let Some(segment) = inner
            .segments
            .values()
            .find(|segment| segment.has_writer_work())
        else {
            return WriterStep::Idle;
        };
        segment.file_used.set(true);
        let Some(file) = segment.file.clone() else {
            if segment.in_flight == 0 {
                return WriterStep::Open {
                    segment_base: segment.base_offset,
                    path: segment.path.clone(),
                };
            }
            return WriterStep::WaitInFlight;
        };
        if segment.issued < segment.size {
            let start = align_down(segment.issued);
            let full_pages_end = align_down(segment.size);
            let aligned_start = segment.issued % IO_ALIGNMENT == 0;
            // Zeros being written past `file_end` would land on anything
            // written there meanwhile.
            let beyond_zeroing = |end: u64| segment.zeroing && align_up(end) > segment.file_end;
            let zero_ahead = |to: u64| {
                inner
                    .syncer_running
                    .then(|| segment.zero_ahead(to, inner.config.segment_bytes, inner.syncs))
                    .flatten()
            };
            if aligned_start
                && segment.in_flight < WRITES_IN_FLIGHT_MAX
                && full_pages_end >= start + WRITE_CHUNK_BYTES_MIN as u64
            {
                // Whole pages only: this write shares no page with any other.
                let to = full_pages_end.min(start + (WRITE_CHUNK_BYTES_MIN * 16) as u64);
                if beyond_zeroing(to) {
                    return WriterStep::WaitInFlight;
                }
                return WriterStep::Write {
                    file,
                    segment_base: segment.base_offset,
                    from: start,
                    to,
                    wait: false,
                    durable: false,
                    buffer_len: (to - start) as usize,
                    zero_ahead: zero_ahead(to),
                };
            }
            // A zero fill in flight lies past every write issued.
            if segment.in_flight == usize::from(segment.zeroing) {
                if may_hold && !tail_write_due(&inner, segment) {
                    return WriterStep::HoldTail {
                        segment_base: segment.base_offset,
                    };
                }
                let to = segment.size;
                if beyond_zeroing(to) {
                    return WriterStep::WaitInFlight;
                }
                return WriterStep::Write {
                    file,
                    segment_base: segment.base_offset,
                    from: start,
                    to,
                    wait: true,
                    // Someone waits for a sync: this write, issued with
                    // nothing else in flight on the segment, can be the
                    // sync (the syncer then finds it done). Only if it
                    // extends the file: ext4 hands such a write to an
                    // io_uring worker, which then syncs too. One inside the
                    // file it may complete during the submission, and then
                    // runs the sync (a device cache flush) on the shard's
                    // thread: seen, the shard asleep in `blkdev_issue_flush`
                    // under `io_uring_enter`. Those stay a write and an
                    // fdatasync, which io_uring always hands off.
                    durable: inner.syncer_running && align_up(to) > segment.file_end,
                    buffer_len: (align_up(to) - start) as usize,
                    zero_ahead: zero_ahead(to),
                };
            }
            return WriterStep::WaitInFlight;
        }
        if segment.in_flight > 0 {
            return WriterStep::WaitInFlight;
        }
        if segment.sealed && !segment.finalized {
            return WriterStep::Finalize {
                segment_base: segment.base_offset,
            };
        }
        WriterStep::Idle
    }

    async fn run_writer(self: Rc<Self>) {
        // Since when the writer has been holding back a small tail.
        let mut holding_since: Option<Instant> = None;
        loop {
            let may_hold = holding_since.is_none_or(|since| since.elapsed() < TAIL_WRITE_DELAY);
            let step = self.next_writer_step(may_hold);
            if !matches!(step, WriterStep::HoldTail { .. }) {
                holding_since = None;
            }
            match step {
                WriterStep::Idle => {
                    let mut inner = self.inner.borrow_mut();
                    // Re-check under the same borrow that clears the flag, so
                    // an append cannot slip between check and exit.
                    if inner
                        .segments
                        .values()
                        .any(|segment| segment.has_writer_work())
                    {
                        continue;
                    }
                    inner.writer_running = false;
                    drop(inner);
                    self.signal.notify();
                    return;
                }
                WriterStep::Open { segment_base, path } => {
                    if let Err(error) = self.create_segment_file(segment_base, &path).await {
                        self.writer_failed(error);
                    }
                }
                WriterStep::Write {
                    file,
                    segment_base,
                    from,
                    to,
                    wait,
                    durable,
                    buffer_len,
                    zero_ahead,
                } => {
                    let mut buffer = file.alloc(buffer_len);
                    {
                        let mut inner = self.inner.borrow_mut();
                        let Some(segment) = inner.segments.get_mut(&segment_base) else {
                            continue;
                        };
                        let data_len = (to - from) as usize;
                        let bytes = buffer.bytes_mut();
                        segment.copy_staged(from, to, &mut bytes[..data_len]);
                        bytes[data_len..].fill(0);
                        segment.issued = to;
                        segment.file_end = segment.file_end.max(align_up(to));
                        segment.padded |= to % IO_ALIGNMENT != 0;
                        segment.in_flight += 1;
                        if zero_ahead.is_some() {
                            segment.zeroing = true;
                            segment.in_flight += 1;
                        }
                    }
                    if let Some((zeros_from, zeros_until)) = zero_ahead {
                        let log = Rc::clone(&self);
                        let file = Rc::clone(&file);
                        glommio::spawn_local(async move {
                            let mut zeros = file.alloc((zeros_until - zeros_from) as usize);
                            zeros.bytes_mut().fill(0);
                            let result = file.write_at(zeros, zeros_from).await;
                            log.zero_fill_done(segment_base, zeros_until, result);
                        })
                        .detach();
                    }
                    let log = Rc::clone(&self);
                    // The O_DSYNC descriptor counts in the shard's
                    // open-file budget; without room the write syncs apart.
                    let room = durable
                        .then(|| self.cache.open_files().extra_descriptor())
                        .flatten();
                    let write = async move {
                        let result = if durable {
                            file.write_at_durable(buffer, from, room).await
                        } else {
                            file.write_at(buffer, from).await
                        };
                        log.write_done(segment_base, from, to, durable, result);
                    };
                    if wait {
                        write.await;
                    } else {
                        glommio::spawn_local(write).detach();
                    }
                }
                WriterStep::Finalize { segment_base } => {
                    if let Err(error) = self.finalize_segment(segment_base).await {
                        self.writer_failed(error);
                    }
                }
                WriterStep::HoldTail { segment_base } => {
                    let since = *holding_since.get_or_insert_with(Instant::now);
                    let this = Rc::downgrade(&self);
                    let due = self.signal.wait_for(move || match this.upgrade() {
                        Some(log) => {
                            let inner = log.inner.borrow();
                            inner
                                .segments
                                .get(&segment_base)
                                .is_none_or(|segment| tail_write_due(&inner, segment))
                                .then_some(())
                        }
                        None => Some(()),
                    });
                    let left = TAIL_WRITE_DELAY.saturating_sub(since.elapsed());
                    let _ = glommio::timer::timeout(left, async {
                        due.await;
                        Ok(())
                    })
                    .await;
                }
                WriterStep::WaitInFlight => {
                    let before = self.in_flight_total();
                    let this = Rc::downgrade(&self);
                    self.signal
                        .wait_for(move || match this.upgrade() {
                            Some(log) => (log.in_flight_total() < before).then_some(()),
                            None => Some(()),
                        })
                        .await;
                }
                WriterStep::RetryLater => {
                    glommio::timer::sleep(WRITE_RETRY_DELAY).await;
                    let mut inner = self.inner.borrow_mut();
                    if inner.closed {
                        inner.writer_running = false;
                        return;
                    }
                    // Rewind to what is known written and try again.
                    for segment in inner.segments.values_mut() {
                        segment.issued = segment.written;
                        segment.completed.clear();
                    }
                    inner.write_error = None;
                }
            }
        }
    }

    fn in_flight_total(&self) -> usize {
        self.inner
            .borrow()
            .segments
            .values()
            .map(|segment| segment.in_flight)
            .sum()
    }

    fn write_done(
        &self,
        segment_base: i64,
        from: u64,
        to: u64,
        durable: bool,
        result: std::io::Result<()>,
    ) {
        let mut inner = self.inner.borrow_mut();
        let Some(segment) = inner.segments.get_mut(&segment_base) else {
            return;
        };
        segment.in_flight -= 1;
        match result {
            Ok(()) => {
                let before = segment.written;
                segment.write_completed(from, to);
                if durable {
                    // Issued with nothing else in flight, so everything
                    // below `from` had completed: all of `..to` is durable.
                    segment.durable_written = segment.durable_written.max(to);
                }
                let advanced = segment.written - before;
                inner.unwritten_bytes = inner.unwritten_bytes.saturating_sub(advanced as usize);
                if inner.write_failing {
                    inner.write_failing = false;
                    tracing::debug!(dir = %self.dir.display(), "log writes succeed again");
                }
            }
            Err(error) => {
                let path = segment.path.clone();
                drop(inner);
                self.writer_failed(StorageError::new("write", path, error));
                return;
            }
        }
        drop(inner);
        self.cache.trim();
        self.signal.notify();
    }

    /// A zero fill ahead of `segment_base`'s writes ended; the segment's
    /// file now reaches `until` if it succeeded. A failure is not a write
    /// failure (no data was in it): the segment's writes extend the file
    /// again, as before the fills began.
    fn zero_fill_done(&self, segment_base: i64, until: u64, result: std::io::Result<()>) {
        let mut inner = self.inner.borrow_mut();
        let Some(segment) = inner.segments.get_mut(&segment_base) else {
            return;
        };
        segment.in_flight -= 1;
        segment.zeroing = false;
        match result {
            Ok(()) => {
                segment.file_end = segment.file_end.max(until);
                segment.padded = true;
                segment.zero_window = (segment.zero_window * 2).min(ZERO_AHEAD_BYTES_MAX);
            }
            Err(error) => {
                tracing::debug!(
                    path = %segment.path.display(),
                    %error,
                    "zero fill ahead of the writes failed; the segment's writes extend it"
                );
                segment.zero_failed = true;
            }
        }
        drop(inner);
        self.signal.notify();
    }

    fn writer_failed(&self, error: StorageError) {
        let mut inner = self.inner.borrow_mut();
        // Debug only: the broker logs a failing data directory once, not
        // once for each of its partitions (a failed disk holding a
        // thousand partitions is one event).
        if inner.write_failing {
            tracing::debug!(%error, "log write failed again");
        } else {
            tracing::debug!(%error, "log write failed; appends refused until a retry succeeds");
        }
        inner.write_failing = true;
        inner.write_error = Some(error.to_string());
        inner.sync_failures += 1;
        // Only the writer clears the error, after its retry delay. A sync can
        // fail while the writer is idle (nothing left to write): start it, or
        // appends would stay refused for good after one failed fdatasync.
        let start_writer = !inner.writer_running && !inner.closed;
        inner.writer_running |= start_writer;
        drop(inner);
        if start_writer {
            self.spawn_writer();
        }
        self.signal.notify();
    }

    async fn create_segment_file(
        &self,
        segment_base: i64,
        path: &Path,
    ) -> Result<(), StorageError> {
        let (preallocate, created) = {
            let inner = self.inner.borrow();
            let created = inner
                .segments
                .get(&segment_base)
                .is_some_and(|segment| segment.file_created);
            let preallocate = inner
                .config
                .preallocate
                .then_some(inner.config.segment_bytes);
            (preallocate, created)
        };
        if created {
            // Closed while idle to keep within the shard's open files.
            self.reopen_file(segment_base, path)
                .await
                .map_err(|error| StorageError::new("open", path, error))?;
            return Ok(());
        }
        let room = self.cache.open_files().room().await;
        let file = self
            .storage
            .open(path, true)
            .await
            .map_err(|error| StorageError::new("create", path, error))?;
        if let Some(bytes) = preallocate {
            // Reserving the whole segment keeps its extents contiguous; a
            // file system that cannot (tmpfs) simply does not.
            if let Err(error) = file.preallocate(bytes).await {
                tracing::debug!(%error, path = %path.display(), "segment preallocation skipped");
            }
        }
        self.storage
            .sync_dir(&self.dir)
            .await
            .map_err(|error| StorageError::new("sync directory", &self.dir, error))?;
        drop(room);
        self.keep_open_file(segment_base, Rc::new(file));
        Ok(())
    }

    /// A sealed segment is fully written: cut the file to its logical size,
    /// make it durable, write its indexes and the producer snapshot.
    async fn finalize_segment(&self, segment_base: i64) -> Result<(), StorageError> {
        let (file, path, size, index) = {
            let inner = self.inner.borrow();
            let Some(segment) = inner.segments.get(&segment_base) else {
                return Ok(());
            };
            let Some(file) = segment.file.clone() else {
                return Ok(());
            };
            let index = sealed_index(segment, segment.index.clone().unwrap_or_default());
            (file, segment.path.clone(), segment.size, index)
        };
        file.truncate(size)
            .await
            .map_err(|error| StorageError::new("truncate", &path, error))?;
        file.sync()
            .await
            .map_err(|error| StorageError::new("sync", &path, error))?;
        self.write_index_files(segment_base, &index, true).await?;
        // A sealed segment takes no more markers: its aborted transactions
        // are final, and durable before the next segment's file exists.
        self.persist_txn_index(segment_base).await?;
        let next = {
            let inner = self.inner.borrow();
            inner
                .segments
                .range(segment_base + 1..)
                .next()
                .map(|(&base, segment)| (base, segment.start_producers.clone()))
        };
        if let Some((next_base, Some(state))) = &next {
            // The producer state at the next segment's start, taken at the
            // roll: recovery and truncation replay one segment on top of it.
            // (Cutting the current state back to `next_base` instead would
            // lose what a producer that changed epoch since had before.)
            // Written before the next segment's file exists, so a segment on
            // disk always has its start state on disk too.
            write_producer_snapshot(&self.storage, &self.dir, *next_base, state).await?;
        }
        let mut inner = self.inner.borrow_mut();
        if let Some(segment) = inner.segments.get_mut(&segment_base) {
            segment.index = Some(index);
            segment.finalized = true;
        }
        if let Some((next_base, _)) = next {
            if let Some(segment) = inner.segments.get_mut(&next_base) {
                segment.start_producers = None;
            }
        }
        Ok(())
    }

    /// Writes a segment's `.index` and `.timeindex`; `durable`: synced,
    /// else (a cleaned segment's) only written, since a missing or damaged
    /// index is rebuilt from the segment's batches.
    async fn write_index_files(
        &self,
        segment_base: i64,
        index: &SegmentIndex,
        durable: bool,
    ) -> Result<(), StorageError> {
        let files = [
            ("index", "write index", index.encode_offsets()),
            ("timeindex", "write time index", index.encode_times()),
        ];
        for (extension, what, bytes) in files {
            let path = self.dir.join(segment_file_name(segment_base, extension));
            let written = if durable {
                self.storage.write_small_atomic(&path, &bytes).await
            } else {
                self.storage.write_small_unsynced(&path, &bytes).await
            };
            written.map_err(|error| StorageError::new(what, &path, error))?;
        }
        Ok(())
    }

    /// Writes the index files of a cleaned segment from `index` (scanned
    /// from its batches), with the last time entry a reload relies on;
    /// unsynced: the cleaner replaces many segments, and two fsyncs per
    /// file each (a journal commit and a device flush) stalled producers'
    /// writes on the same disk.
    async fn write_sealed_index(
        &self,
        segment_base: i64,
        index: SegmentIndex,
    ) -> Result<(), StorageError> {
        let index = {
            let inner = self.inner.borrow();
            let Some(segment) = inner.segments.get(&segment_base) else {
                return Ok(());
            };
            sealed_index(segment, index)
        };
        self.write_index_files(segment_base, &index, false).await
    }

    /// Writes `<base>.txnindex` with the segment's aborted transactions as
    /// they are now (removes it if there are none).
    async fn persist_txn_index(&self, base: i64) -> Result<(), StorageError> {
        let path = self.dir.join(segment_file_name(base, "txnindex"));
        let _permit =
            self.txn_index_lock.acquire_permit(1).await.map_err(|_| {
                StorageError::new("lock", &path, std::io::Error::other("log closed"))
            })?;
        let entries = match self.inner.borrow().segments.get(&base) {
            Some(segment) => segment.aborted.clone(),
            None => return Ok(()),
        };
        write_txn_index(&self.storage, &self.dir, base, &entries).await
    }

    /// Writes the active segment's index files, then the recovery point with
    /// the producer state as of it. Failure only costs a longer scan after a
    /// crash, so it is logged, not returned.
    async fn write_recovery_point(&self, capture: RecoveryCapture) {
        let base = capture.point.segment_base;
        {
            let mut inner = self.inner.borrow_mut();
            let still_active = inner
                .segments
                .get(&base)
                .is_some_and(|segment| !segment.sealed);
            if !still_active {
                // Sealing wrote the full index; a later recovery scans the new segment.
                return;
            }
            // Captured before a truncation (the syncer captures when its
            // round starts and writes after the sync): the point would name
            // a position inside what was written since, and a restart would
            // resume there, cut the log mid-batch, and claim offsets it does
            // not hold.
            if inner.truncating
                || inner.truncations != capture.truncations
                || inner.writing_recovery_point
            {
                return;
            }
            inner.writing_recovery_point = true;
        }
        let _writing = WritingRecoveryPoint { log: self };
        let written = async {
            let index_path = self.dir.join(segment_file_name(base, "index"));
            self.storage
                .write_small_atomic(&index_path, &capture.index.encode_offsets())
                .await
                .map_err(|error| StorageError::new("write index", &index_path, error))?;
            let time_path = self.dir.join(segment_file_name(base, "timeindex"));
            self.storage
                .write_small_atomic(&time_path, &capture.index.encode_times())
                .await
                .map_err(|error| StorageError::new("write time index", &time_path, error))?;
            // Entries past the point are harmless: recovery reads only
            // those below it and rebuilds the rest from the log.
            self.persist_txn_index(base).await?;
            write_recovery_point_file(&self.storage, &self.dir, &capture).await
        };
        match written.await {
            Ok(()) => {
                self.inner.borrow_mut().recovery_point_at = Some((base, capture.point.position));
            }
            Err(error) => tracing::warn!(%error, "writing the recovery point failed"),
        }
    }

    /// Resolves once everything appended so far is written to its segment
    /// file (handed to the kernel, not necessarily synced), so that killing
    /// the process can no longer lose it; fails if a write failed meanwhile.
    ///
    /// A follower calls it before its next fetch: the leader counts a
    /// follower's records as replicated (acks=all answered, the high
    /// watermark moved) once it fetches past them, and a tail still held
    /// back in memory (`TAIL_WRITE_DELAY`) would die with a `kill -9`.
    ///
    /// The wait is registered, and the writer told to end its hold, when
    /// this is called, not when the future is first polled: the waits of
    /// several logs made before any is awaited have their writes run
    /// together. Dropping the future withdraws the wait.
    pub fn wait_written(&self) -> impl Future<Output = Result<(), StorageError>> + '_ {
        let registered = {
            let mut inner = self.inner.borrow_mut();
            let active = inner.active();
            let (base, target) = (active.base_offset, active.size);
            (!written_through(&inner, base, target)).then(|| {
                inner.write_waiters += 1;
                (
                    WriteWaiter { log: self },
                    base,
                    target,
                    inner.sync_failures,
                    inner.truncations,
                )
            })
        };
        if registered.is_some() {
            // A writer holding back a partial page must write it now.
            self.signal.notify();
        }
        async move {
            let Some((_waiter, base, target, failures_before, truncations_before)) = registered
            else {
                return Ok(());
            };
            let this = self.weak_self.clone();
            let outcome = self
                .signal
                .wait_for(move || {
                    let log = this.upgrade()?;
                    let inner = log.inner.borrow();
                    if inner.sync_failures != failures_before || inner.closed {
                        Some(Err(()))
                    } else if inner.truncations != truncations_before
                        || written_through(&inner, base, target)
                    {
                        // A truncation cut what was waited for: nothing of
                        // it is left to acknowledge.
                        Some(Ok(()))
                    } else {
                        None
                    }
                })
                .await;
            outcome.map_err(|()| self.wait_failed("write"))
        }
    }

    /// Why a wait for a write or a sync ended without it: the write error
    /// the writer met, or the log closing under it.
    fn wait_failed(&self, what: &'static str) -> StorageError {
        let reason = self
            .inner
            .borrow()
            .write_error
            .clone()
            .unwrap_or_else(|| "log closed".into());
        StorageError::new(what, &self.dir, std::io::Error::other(reason))
    }

    /// Resolves when every offset below `offset_end` is on stable storage,
    /// or fails if a write or sync failed meanwhile.
    pub async fn wait_durable(&self, offset_end: i64) -> Result<(), StorageError> {
        let failures_before = {
            let mut inner = self.inner.borrow_mut();
            if inner.durable >= offset_end {
                return Ok(());
            }
            inner.sync_wanted = true;
            let start = !inner.syncer_running;
            inner.syncer_running = true;
            let failures = inner.sync_failures;
            drop(inner);
            if start {
                if let Some(log) = self.weak_self.upgrade() {
                    glommio::spawn_local(async move { log.run_syncer().await }).detach();
                }
                // A writer holding back a partial page must write it now.
                self.signal.notify();
            }
            failures
        };
        let this = self.weak_self.clone();
        let outcome = self
            .signal
            .wait_for(move || {
                let log = this.upgrade()?;
                let inner = log.inner.borrow();
                if inner.durable >= offset_end {
                    Some(Ok(()))
                } else if inner.sync_failures != failures_before || inner.closed {
                    Some(Err(()))
                } else {
                    None
                }
            })
            .await;
        outcome.map_err(|()| self.wait_failed("sync"))
    }

    /// The group-commit loop: each round syncs everything appended before it
    /// started, so concurrent waiters share one fdatasync.
    async fn run_syncer(self: Rc<Self>) {
        loop {
            let capture;
            let (target_offset, segment_base, target_position) = {
                let mut inner = self.inner.borrow_mut();
                if !inner.sync_wanted || inner.durable >= inner.leo || inner.closed {
                    inner.syncer_running = false;
                    drop(inner);
                    // A staged close waits for the syncer to end.
                    self.signal.notify();
                    return;
                }
                inner.sync_wanted = false;
                let active = inner.active();
                let interval = inner.config.recovery_point_interval_bytes;
                let due = match inner.recovery_point_at {
                    Some((base, position)) if base == active.base_offset => {
                        active.size >= position + interval
                    }
                    _ => active.size >= interval,
                };
                capture = due.then(|| inner.capture_recovery_point());
                (inner.leo, active.base_offset, active.size)
            };
            let (failures_before, truncations_before) = {
                let inner = self.inner.borrow();
                (inner.sync_failures, inner.truncations)
            };
            let this = Rc::downgrade(&self);
            let file = self
                .signal
                .wait_for(move || {
                    let log = this.upgrade()?;
                    let inner = log.inner.borrow();
                    if inner.sync_failures != failures_before || inner.closed {
                        return Some(SyncTarget::Failed);
                    }
                    if inner.truncations != truncations_before {
                        // The target was cut away: its offset and position
                        // now name other batches, or none (see below).
                        return Some(SyncTarget::Failed);
                    }
                    let segment = inner.segments.get(&segment_base)?;
                    if segment.written >= target_position {
                        if segment.durable_written >= target_position {
                            return Some(SyncTarget::Synced);
                        }
                        return Some(match &segment.file {
                            Some(file) => SyncTarget::Open(Rc::clone(file)),
                            None => SyncTarget::Closed(segment.path.clone()),
                        });
                    }
                    None
                })
                .await;
            // `Some(None)`: nothing left to sync.
            let file = match file {
                SyncTarget::Synced => Some(None),
                // Written, and closed since to keep within the shard's open
                // files: fdatasync through a new handle covers the same
                // inode's writes (a write-back error not yet reported is
                // reported to the new handle too).
                SyncTarget::Closed(path) => match self.reopen_file(segment_base, &path).await {
                    Ok(file) => Some(Some(file)),
                    Err(error) => {
                        self.writer_failed(StorageError::new("open", &path, error));
                        None
                    }
                },
                SyncTarget::Open(file) => Some(Some(file)),
                SyncTarget::Failed => None,
            };
            let Some(file) = file else {
                // The write failed, the segment went away or a truncation
                // cut the target; waiters were told through
                // `sync_failures`, or wait on. Try again if still wanted.
                let truncated = {
                    let mut inner = self.inner.borrow_mut();
                    inner.sync_wanted = true;
                    inner.truncations != truncations_before
                };
                if !truncated {
                    glommio::timer::sleep(WRITE_RETRY_DELAY).await;
                }
                continue;
            };
            let synced = match file {
                Some(file) => file.sync().await,
                None => Ok(()),
            };
            match synced {
                Ok(()) => {
                    {
                        // A truncation during the sync makes the target
                        // offset name batches appended since, which this
                        // sync may not cover: it counts for nothing, and
                        // the next round syncs them. (Raised here, the
                        // durable offset passed the log end after a
                        // follower's truncation and the offset check
                        // stopped the shard: the long fault schedule,
                        // seed 58.)
                        let mut inner = self.inner.borrow_mut();
                        inner.syncs += 1;
                        if inner.truncations == truncations_before {
                            inner.durable = inner.durable.max(target_offset);
                        } else {
                            inner.sync_wanted = true;
                        }
                    }
                    self.signal.notify();
                    if let Some(capture) = capture {
                        self.write_recovery_point(capture).await;
                    }
                }
                Err(error) => {
                    let path = self.dir.clone();
                    self.writer_failed(StorageError::new("sync", path, error));
                }
            }
            self.signal.notify();
        }
    }

    /// Reads whole batches starting with the one that holds `offset`, up to
    /// `max_bytes` (the first batch is returned whole even if larger), never
    /// past `upper` (exclusive; the high watermark for consumers).
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<ReadChunks, ReadError> {
        let mut out = self.read_retrying(offset, max_bytes, upper).await?;
        // A compacted log can hold stretches of batches whose records were
        // all removed (bare headers). A fetch answered with those alone
        // makes librdkafka take its fetch size for too small and double it,
        // and after ten such answers in a row it fails the partition with
        // MSG_SIZE_TOO_LARGE; so the read goes on into later segments until
        // it holds a record.
        let mut spanned = 0;
        while spanned < READ_SPAN_SEGMENTS_MAX
            && out.bytes < max_bytes
            && out.next_offset < upper
            && !out.chunks.is_empty()
            && !holds_records(&out.chunks)
        {
            let Ok(more) = self
                .read_retrying(out.next_offset, max_bytes - out.bytes, upper)
                .await
            else {
                break;
            };
            if more.chunks.is_empty() {
                break;
            }
            out.chunks.extend(more.chunks);
            out.bytes += more.bytes;
            out.next_offset = more.next_offset;
            spanned += 1;
        }
        Ok(out)
    }

    /// Asks the CPU to start loading the state [`PartitionLog::read_now`]
    /// and [`PartitionLog::offsets`] look at first (the borrow flag, the
    /// offsets, the cache's queue, the producer state), without reading
    /// it: see [`crate::prefetch`].
    pub fn prefetch_read_state(&self) {
        let start = self.inner.as_ptr().cast::<u8>().cast_const();
        prefetch::prefetch_line(std::ptr::from_ref(&self.inner).cast::<u8>());
        for offset in [
            std::mem::offset_of!(Inner<S>, hw),
            std::mem::offset_of!(Inner<S>, cached),
            std::mem::offset_of!(Inner<S>, producers),
        ] {
            prefetch::prefetch_line(start.wrapping_add(offset));
        }
    }

    /// [`PartitionLog::read`] when it can answer without waiting: the
    /// offset is out of range, nothing new is visible, or the batch cache
    /// holds what the read returns. `None` when the read needs the disk.
    /// A fetch of thousands of partitions reads most of them this way, and
    /// needs no task or heap allocation for them.
    pub fn read_now(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Option<Result<ReadChunks, ReadError>> {
        let inner = self.inner.borrow();
        let out = match inner.read_in_memory(offset, max_bytes, upper) {
            InMemory::Answered(answer) => return Some(answer),
            InMemory::Cached(out) => out,
            InMemory::OnDisk => return None,
        };
        // What `read` would go on reading past (bare headers of a compacted
        // stretch) is left to it.
        let goes_on = out.bytes < max_bytes
            && out.next_offset < upper.min(inner.leo)
            && !out.chunks.is_empty()
            && !holds_records(&out.chunks);
        if goes_on {
            return None;
        }
        self.cache.count_read(true);
        Some(Ok(out))
    }

    async fn read_retrying(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<ReadChunks, ReadError> {
        // A segment the cleaner replaces between this read taking its file
        // and its index would pair one file with the other's positions:
        // such a read starts again (a replacement is rare, so this ends).
        loop {
            let compactions = self.inner.borrow().compactions;
            let result = self.read_once(offset, max_bytes, upper).await;
            if result.is_ok() || self.inner.borrow().compactions == compactions {
                return result;
            }
        }
    }

    async fn read_once(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<ReadChunks, ReadError> {
        let disk = {
            let inner = self.inner.borrow();
            match inner.read_in_memory(offset, max_bytes, upper) {
                InMemory::Answered(answer) => return answer,
                InMemory::Cached(out) => {
                    self.cache.count_read(true);
                    return Ok(out);
                }
                InMemory::OnDisk => {}
            }
            let upper = upper.min(inner.leo);
            self.cache.count_read(false);
            let Some((&base, segment)) = inner.segments.range(..=offset).next_back() else {
                return Err(ReadError::OffsetOutOfRange {
                    log_start: inner.log_start,
                    log_end: inner.leo,
                });
            };
            let key = CursorKey {
                next_offset: offset,
                segment_base: base,
                truncations: inner.truncations,
                compactions: inner.compactions,
            };
            let known = inner
                .read_cursors
                .iter()
                .find(|known| known.key == key)
                .map(|known| (known.position, known.ahead.clone()));
            segment.file_used.set(true);
            (
                key,
                known,
                segment.file.clone(),
                segment.written,
                segment.path.clone(),
                upper,
                inner.batch_extent(base, offset, None),
            )
        };
        let (key, known, file, readable_end, path, upper, extent) = disk;
        let segment_base = key.segment_base;
        let file = match file {
            Some(file) => file,
            None => match self.segment_file(segment_base).await? {
                Some(file) => file,
                None => {
                    return Ok(ReadChunks {
                        chunks: vec![],
                        bytes: 0,
                        next_offset: offset,
                    })
                }
            },
        };
        let place = DiskPlace {
            key,
            file: &file,
            path: &path,
            readable_end,
            max_bytes,
        };
        if let Some((start, ahead)) = known {
            if let Some(ahead) = ahead {
                if ahead.is_reading() {
                    let reading = Rc::clone(&ahead);
                    self.signal
                        .wait_for(move || (!reading.is_reading()).then_some(()))
                        .await;
                }
                let read = ahead
                    .take()
                    .and_then(|read| trim_read(read, start, offset, max_bytes, upper));
                if let Some(read) = read {
                    self.cache.count_read_ahead();
                    return Ok(self.remember_read(&place, read));
                }
            }
            let from = DiskPosition {
                start,
                first_base: offset,
                readable_end,
                first_extent: extent,
            };
            // A place that does not hold the batch (it cannot happen while
            // the counts match) is forgotten, and the index decides.
            if let Ok(read) = read_from_disk(&*file, &path, from, offset, max_bytes, upper).await {
                return Ok(self.remember_read(&place, read));
            }
            self.inner
                .borrow_mut()
                .read_cursors
                .retain(|known| known.key != key);
        }
        let relative = u32::try_from(offset - segment_base).unwrap_or(u32::MAX);
        let mut read_start = self.read_start(segment_base, relative).await?;
        loop {
            let (entry, first_extent) = read_start;
            let first_base = segment_base + i64::from(entry.relative_offset);
            let start = u64::from(entry.position);
            let from = DiskPosition {
                start,
                first_base,
                readable_end,
                first_extent,
            };
            let result = read_from_disk(&*file, &path, from, offset, max_bytes, upper)
                .await
                .map(|read| self.remember_read(&place, read));
            if result.is_err() {
                // A wrong entry in an index file looks like damage; rebuilt
                // from the batches themselves, the index is right, and the
                // read tells real damage from a bad index.
                if let Some(rebuilt) = self.distrust_index(segment_base).await? {
                    read_start =
                        self.inner
                            .borrow()
                            .read_start_in(segment_base, relative, &rebuilt);
                    continue;
                }
            }
            return result;
        }
    }

    /// Keeps where the batch after a read from disk starts, for the reader's
    /// next read, starts reading it ahead, and returns the read's batches.
    fn remember_read(&self, place: &DiskPlace<'_, S::File>, read: DiskRead) -> ReadChunks {
        let DiskRead { chunks, end } = read;
        if chunks.bytes == 0 {
            return chunks;
        }
        let key = CursorKey {
            next_offset: chunks.next_offset,
            ..place.key
        };
        let ahead = self.read_ahead(place, key.next_offset, end);
        let mut inner = self.inner.borrow_mut();
        let cursors = &mut inner.read_cursors;
        cursors.retain(|known| {
            known.key.next_offset != place.key.next_offset
                && known.key.next_offset != key.next_offset
        });
        if cursors.len() >= READ_CURSORS_MAX {
            cursors.pop_front();
        }
        cursors.push_back(ReadCursor {
            key,
            position: end,
            ahead,
        });
        chunks
    }

    /// Starts reading the batches from `start` (base offset `offset`) of
    /// the segment, as much as the last read asked for, unless they are in
    /// the cache, not written yet, or the read-ahead budget is spent.
    fn read_ahead(
        &self,
        place: &DiskPlace<'_, S::File>,
        offset: i64,
        start: u64,
    ) -> Option<Rc<ReadAhead>> {
        if start + BATCH_HEADER_BYTES as u64 > place.readable_end {
            return None;
        }
        let cached = self
            .inner
            .borrow()
            .cached
            .front()
            .is_some_and(|front| front.base_offset <= offset);
        if cached {
            return None;
        }
        let len = (place.max_bytes.max(DISK_READ_BYTES_MIN) as u64).min(place.readable_end - start)
            as usize;
        let ahead = Rc::new(ReadAhead {
            state: RefCell::new(AheadState::Empty),
        });
        let holder: Weak<dyn ReadAheadHolder> = Rc::downgrade(&ahead) as Weak<dyn ReadAheadHolder>;
        let grant = self.cache.grant_read_ahead(holder, len)?;
        *ahead.state.borrow_mut() = AheadState::Reading(grant);
        let log = self.weak_self.clone();
        let file = Rc::clone(place.file);
        let path = place.path.to_path_buf();
        let from = DiskPosition {
            start,
            first_base: offset,
            readable_end: place.readable_end,
            first_extent: self
                .inner
                .borrow()
                .batch_extent(place.key.segment_base, offset, None),
        };
        let reading = Rc::clone(&ahead);
        let max_bytes = place.max_bytes;
        // The task runs up to its disk read at once, so the read is under
        // way when this returns.
        glommio::spawn_local(async move {
            let read = read_from_disk(&*file, &path, from, offset, max_bytes, i64::MAX).await;
            reading.finish(read.ok());
            if let Some(log) = log.upgrade() {
                log.signal.notify();
            }
        })
        .detach();
        Some(ahead)
    }

    /// Called when an index entry did not point at its batch. An index read
    /// from files is replaced by one scanned from the segment and returned;
    /// an index built from the batches is kept (`None`): the segment itself
    /// is damaged, and the caller reports that.
    async fn distrust_index(&self, segment_base: i64) -> Result<Option<SegmentIndex>, ReadError> {
        let from_files = {
            let inner = self.inner.borrow();
            inner
                .segments
                .get(&segment_base)
                .is_some_and(|segment| segment.index_from_files)
        };
        if !from_files {
            return Ok(None);
        }
        let path = self.dir.join(segment_file_name(segment_base, "index"));
        tracing::warn!(
            path = %path.display(),
            "index entry does not point at its batch; rebuilding the index"
        );
        self.scan_index(segment_base).await.map(Some)
    }

    /// Builds a segment's index by scanning its batches, and keeps it.
    async fn scan_index(&self, segment_base: i64) -> Result<SegmentIndex, ReadError> {
        let (file, path, size, compactions) = {
            let inner = self.inner.borrow();
            let Some(segment) = inner.segments.get(&segment_base) else {
                return Ok(SegmentIndex::default());
            };
            (
                segment.file.clone(),
                segment.path.clone(),
                segment.size,
                inner.compactions,
            )
        };
        let file = match file {
            Some(file) => file,
            None => Rc::new(self.storage.open(&path, false).await.map_err(|error| {
                ReadError::Storage(StorageError::new("open", &path, error).to_string())
            })?),
        };
        let config = self.config();
        let scanned = scan_segment(&*file, &path, segment_base, size, &config, None)
            .await
            .map_err(|error| ReadError::Storage(error.to_string()))?;
        let mut inner = self.inner.borrow_mut();
        // A cleaned copy that took the segment's place during the scan
        // has other positions: the scan is the caller's (whose read starts
        // again, the cleaner having been at work), not the segment's.
        if inner.compactions != compactions {
            return Ok(scanned.index);
        }
        if let Some(segment) = inner.segments.get_mut(&segment_base) {
            segment.index = Some(scanned.index.clone());
            segment.index_from_files = false;
            segment.max_timestamp = scanned.max_timestamp;
            segment.offset_of_max_timestamp = scanned.offset_of_max_timestamp;
        }
        Ok(scanned.index)
    }

    /// Where a read of `relative` in `segment_base`'s segment starts: the
    /// index entry at or before it, and the extent of the batch there (see
    /// `Inner::read_start_in`). Looked up in place when the index is in
    /// memory: a segment of 1 GiB has up to 262,144 entries (6 MiB with
    /// its time index), which [`PartitionLog::segment_index`] would copy
    /// for every read.
    async fn read_start(
        &self,
        segment_base: i64,
        relative: u32,
    ) -> Result<(OffsetEntry, Option<u64>), ReadError> {
        {
            let inner = self.inner.borrow();
            let in_memory = inner
                .segments
                .get(&segment_base)
                .and_then(|segment| segment.index.as_ref());
            if let Some(index) = in_memory {
                return Ok(inner.read_start_in(segment_base, relative, index));
            }
        }
        let index = self.segment_index(segment_base).await?;
        Ok(self
            .inner
            .borrow()
            .read_start_in(segment_base, relative, &index))
    }

    /// Loads a segment's index into memory if it is not there yet, without
    /// the copy [`PartitionLog::segment_index`] returns.
    async fn load_index(&self, segment_base: i64) -> Result<(), ReadError> {
        let loaded = self
            .inner
            .borrow()
            .segments
            .get(&segment_base)
            .is_none_or(|segment| segment.index.is_some());
        if !loaded {
            self.segment_index(segment_base).await?;
        }
        Ok(())
    }

    /// The index of a segment, loading (or rebuilding) it on first use.
    async fn segment_index(&self, segment_base: i64) -> Result<SegmentIndex, ReadError> {
        let (path, size, compactions, files_stale) = {
            let inner = self.inner.borrow();
            let Some(segment) = inner.segments.get(&segment_base) else {
                return Ok(SegmentIndex::default());
            };
            if let Some(index) = &segment.index {
                return Ok(index.clone());
            }
            (
                segment.path.clone(),
                segment.size,
                inner.compactions,
                segment.index_files_stale,
            )
        };
        if files_stale {
            return self.scan_index(segment_base).await;
        }
        let index_path = self.dir.join(segment_file_name(segment_base, "index"));
        let time_path = self.dir.join(segment_file_name(segment_base, "timeindex"));
        let index_bytes_max = size / 8 * crate::index::OFFSET_ENTRY_BYTES as u64 + 4096;
        let offsets = self.storage.read_small(&index_path, index_bytes_max).await;
        let times = self
            .storage
            .read_small(&time_path, index_bytes_max * 2)
            .await;
        let loaded = match (offsets, times) {
            (Ok(offsets), Ok(times)) => SegmentIndex::decode(&offsets, &times, size),
            _ => None,
        };
        // A sealed segment with batches has a last time entry; an empty
        // time index is one a crash cut short (a cleaned segment's index
        // files are written unsynced).
        let loaded = loaded.filter(|index| size == 0 || !index.times.is_empty());
        let Some(index) = loaded else {
            tracing::info!(path = %path.display(), "rebuilding a missing or damaged index");
            return self.scan_index(segment_base).await;
        };
        // A sealed segment's last time entry is its maximum (see
        // `finalize_segment`).
        let (max_timestamp, offset_of_max_timestamp) = match index.times.last() {
            Some(entry) => (
                entry.timestamp,
                segment_base + i64::from(entry.relative_offset),
            ),
            None => (-1, segment_base),
        };
        // Read from the files of a segment a cleaned copy has replaced
        // since: they point into the old file.
        if self.inner.borrow().compactions != compactions {
            return self.scan_index(segment_base).await;
        }
        let mut inner = self.inner.borrow_mut();
        if let Some(segment) = inner.segments.get_mut(&segment_base) {
            segment.index = Some(index.clone());
            segment.index_from_files = true;
            if segment.max_timestamp < max_timestamp {
                segment.max_timestamp = max_timestamp;
                segment.offset_of_max_timestamp = offset_of_max_timestamp;
            }
        }
        Ok(index)
    }

    /// A segment's file, opened if it is not open: a sealed segment's is
    /// needed only when read, and any segment's may have been closed while
    /// idle to keep within the shard's open files.
    async fn segment_file(&self, segment_base: i64) -> Result<Option<Rc<S::File>>, ReadError> {
        let (path, compactions) = {
            let inner = self.inner.borrow();
            let Some(segment) = inner.segments.get(&segment_base) else {
                return Ok(None);
            };
            if let Some(file) = &segment.file {
                segment.file_used.set(true);
                return Ok(Some(Rc::clone(file)));
            }
            (segment.path.clone(), inner.compactions)
        };
        let file = self.open_in_budget(&path).await.map_err(|error| {
            ReadError::Storage(StorageError::new("open", &path, error).to_string())
        })?;
        // A cleaned copy that took the segment's place during the open may
        // have left this handle on the file it replaced: it serves this
        // caller (whose read starts again, the cleaner having been at
        // work), and is not kept as the segment's.
        if self.inner.borrow().compactions == compactions {
            self.keep_open_file(segment_base, Rc::clone(&file));
        }
        Ok(Some(file))
    }

    /// ListOffsets: earliest, latest, by timestamp, max timestamp.
    pub async fn lookup(&self, query: OffsetQuery) -> Result<Option<FoundOffset>, ReadError> {
        match query {
            OffsetQuery::Earliest => Ok(Some(FoundOffset {
                offset: self.offsets().log_start,
                timestamp: -1,
            })),
            OffsetQuery::Latest => Ok(Some(FoundOffset {
                offset: self.offsets().hw,
                timestamp: -1,
            })),
            OffsetQuery::MaxTimestamp => {
                let bases: Vec<i64> = self.inner.borrow().segments.keys().copied().collect();
                for &base in &bases {
                    self.load_index(base).await?;
                }
                let inner = self.inner.borrow();
                let best = inner
                    .segments
                    .values()
                    .filter(|segment| segment.max_timestamp >= 0)
                    .max_by_key(|segment| {
                        (
                            segment.max_timestamp,
                            std::cmp::Reverse(segment.base_offset),
                        )
                    });
                Ok(best.map(|segment| FoundOffset {
                    offset: segment.offset_of_max_timestamp,
                    timestamp: segment.max_timestamp,
                }))
            }
            // As `read`: a segment replaced by the cleaner between taking its
            // index and reading its file makes the lookup start again.
            OffsetQuery::Timestamp(target) => loop {
                let compactions = self.inner.borrow().compactions;
                let result = self.lookup_timestamp(target).await;
                if result.is_ok() || self.inner.borrow().compactions == compactions {
                    return result;
                }
            },
        }
    }

    async fn lookup_timestamp(&self, target: i64) -> Result<Option<FoundOffset>, ReadError> {
        let bases: Vec<i64> = self.inner.borrow().segments.keys().copied().collect();
        let (log_start, hw) = {
            let inner = self.inner.borrow();
            (inner.log_start, inner.hw)
        };
        // The entry to scan from for `target`.
        let start_entry =
            |index: &SegmentIndex| index.entry_for(index.relative_offset_for_time(target));
        for base in bases {
            // Sealed segments' max timestamps come from their time indexes.
            self.load_index(base).await?;
            let (max_timestamp, written, path, next_offset) = {
                let inner = self.inner.borrow();
                let Some(segment) = inner.segments.get(&base) else {
                    continue;
                };
                (
                    segment.max_timestamp,
                    segment.written,
                    segment.path.clone(),
                    segment.next_offset,
                )
            };
            if max_timestamp < target || next_offset <= log_start {
                continue;
            }
            // Nothing of a new segment may be on disk yet (its file is created
            // by the writer, which may not have run): then only the cache
            // below can hold the answer.
            let file = if written >= BATCH_HEADER_BYTES as u64 {
                match self.segment_file(base).await? {
                    Some(file) => Some(file),
                    None => continue,
                }
            } else {
                None
            };
            let in_memory = self
                .inner
                .borrow()
                .segments
                .get(&base)
                .and_then(|segment| segment.index.as_ref().map(start_entry));
            let mut entry = match in_memory {
                Some(entry) => entry,
                None => start_entry(&self.segment_index(base).await?),
            };
            let mut position = u64::from(entry.position);
            // What was read last, and where in the segment it starts.
            let mut window = (0u64, Bytes::new());
            // Scan batch headers forward to the first batch reaching `target`.
            while position + BATCH_HEADER_BYTES as u64 <= written {
                // `written` covers a header, so the file was opened above.
                let Some(file) = file.as_ref() else {
                    break;
                };
                let (window_start, window_bytes) = &window;
                let window_end = window_start + window_bytes.len() as u64;
                if position < *window_start || position + BATCH_HEADER_BYTES as u64 > window_end {
                    let len = (TIMESTAMP_SCAN_READ_BYTES as u64).min(written - position) as usize;
                    let bytes = file.read_at(position, len).await.map_err(|error| {
                        ReadError::Storage(StorageError::new("read", &path, error).to_string())
                    })?;
                    window = (position, bytes);
                }
                let at = (position - window.0) as usize;
                let Ok(header) = BatchHeader::parse(&window.1[at..]) else {
                    break;
                };
                if position == u64::from(entry.position)
                    && (!is_plausible_header(&header)
                        || header.base_offset != base + i64::from(entry.relative_offset))
                {
                    // The index entry does not point at its batch (see `read`).
                    match self.distrust_index(base).await? {
                        Some(rebuilt) => {
                            entry = start_entry(&rebuilt);
                            position = u64::from(entry.position);
                            continue;
                        }
                        None => {
                            return Err(ReadError::Storage(format!(
                                "{}: no batch header at position {position}: segment damaged",
                                path.display()
                            )))
                        }
                    }
                }
                let end = position + header.total_bytes() as u64;
                if header.max_timestamp >= target
                    && header.last_offset() >= log_start
                    && header.base_offset < hw
                {
                    let bytes = if at + header.total_bytes() <= window.1.len() {
                        window.1.slice(at..at + header.total_bytes())
                    } else {
                        file.read_at(position, header.total_bytes())
                            .await
                            .map_err(|error| {
                                ReadError::Storage(
                                    StorageError::new("read", &path, error).to_string(),
                                )
                            })?
                    };
                    let found =
                        first_record_at_or_after(&bytes, &header, target).unwrap_or(FoundOffset {
                            offset: header.base_offset,
                            timestamp: header.max_timestamp,
                        });
                    let offset = found.offset.max(log_start);
                    return Ok(Some(FoundOffset {
                        offset,
                        timestamp: found.timestamp,
                    }));
                }
                position = end;
            }
            // Batches still only in memory (not yet on disk) are in the cache.
            let inner = self.inner.borrow();
            for cached in &inner.cached {
                let mut whole = cached.head.to_vec();
                whole.extend_from_slice(&cached.body);
                let Ok(header) = BatchHeader::parse(&whole) else {
                    continue;
                };
                // The same bounds as on disk: batches wholly below the log
                // start (DeleteRecords) or at or past the high watermark do
                // not count.
                if header.max_timestamp >= target
                    && header.last_offset() >= log_start
                    && header.base_offset < hw
                    && cached.end_position > written
                    && cached.segment_base == base
                {
                    let found =
                        first_record_at_or_after(&whole, &header, target).unwrap_or(FoundOffset {
                            offset: header.base_offset,
                            timestamp: header.max_timestamp,
                        });
                    return Ok(Some(FoundOffset {
                        offset: found.offset.max(log_start),
                        timestamp: found.timestamp,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Lets the high watermark follow the log end again: a leader alone in
    /// its ISR (or a partition with one replica) commits what it appends.
    pub fn follow_log_end(&self) {
        let mut inner = self.inner.borrow_mut();
        if inner.hw_follows_leo && inner.hw == inner.leo {
            return;
        }
        inner.hw_follows_leo = true;
        inner.hw = inner.leo;
        inner.check_offsets();
        drop(inner);
        self.signal.notify();
        self.data_signal.notify();
    }

    /// Whether the high watermark follows the log end (see
    /// [`PartitionLog::follow_log_end`]) rather than being set.
    pub fn high_watermark_follows_log_end(&self) -> bool {
        self.inner.borrow().hw_follows_leo
    }

    /// Moves the high watermark (replication); clamped to the log end.
    pub fn set_high_watermark(&self, hw: i64) {
        let mut inner = self.inner.borrow_mut();
        inner.hw_follows_leo = false;
        inner.hw = hw.clamp(inner.log_start, inner.leo);
        inner.check_offsets();
        drop(inner);
        self.signal.notify();
        self.data_signal.notify();
    }

    /// Starts a new leader epoch at the current log end and records it in
    /// `leader-epoch-checkpoint` (followers truncate by it).
    pub async fn set_leader_epoch(&self, epoch: LeaderEpoch) -> Result<(), StorageError> {
        {
            let mut inner = self.inner.borrow_mut();
            if epoch <= inner.leader_epoch && !inner.epochs.is_empty() {
                return Ok(());
            }
            inner.leader_epoch = epoch;
            let leo = inner.leo;
            inner.epochs.push((epoch.0, leo));
            inner.epochs_dirty = true;
        }
        self.persist_epochs().await
    }

    /// `(epoch, start offset)` pairs of the leader epochs of this log.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        self.inner.borrow().epochs.clone()
    }

    /// The newest leader epoch in the log's epoch list, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.inner.borrow().latest_epoch()
    }

    /// OffsetForLeaderEpoch: the end offset of `epoch` in this log and the
    /// epoch it belongs to, as Kafka's `LeaderEpochFileCache.endOffsetFor`
    /// answers. The latest epoch ends at the log end; an older one ends
    /// where the next newer epoch starts, reported under the newest epoch
    /// at or below the one asked for (or the one asked for, if it is older
    /// than every epoch here). An epoch newer than all, or an empty list,
    /// is answered `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let inner = self.inner.borrow();
        epoch_end_offset(&inner.epochs, inner.leo, epoch)
    }

    /// Writes `leader-epoch-checkpoint` with the epochs as they are once the
    /// previous write is done, so the last write holds the newest list.
    async fn persist_epochs(&self) -> Result<(), StorageError> {
        let path = self.dir.join(EPOCH_CHECKPOINT_FILE);
        let _permit = self
            .epoch_checkpoint_lock
            .acquire_permit(1)
            .await
            .map_err(|_| StorageError::new("lock", &path, std::io::Error::other("log closed")))?;
        let entries = {
            let mut inner = self.inner.borrow_mut();
            inner.epochs_dirty = false;
            inner.epochs.clone()
        };
        let written = write_epoch_checkpoint(&self.storage, &self.dir, &entries).await;
        if written.is_err() {
            self.inner.borrow_mut().epochs_dirty = true;
        }
        written
    }

    /// DeleteRecords: moves the log start forward (not past the high
    /// watermark). Whole segments below it are removed by retention.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, ReadError> {
        let new_start = {
            let mut inner = self.inner.borrow_mut();
            if offset > inner.hw || offset < 0 {
                return Err(ReadError::OffsetOutOfRange {
                    log_start: inner.log_start,
                    log_end: inner.hw,
                });
            }
            inner.log_start = inner.log_start.max(offset);
            inner.check_offsets();
            inner.log_start
        };
        write_log_start(&self.storage, &self.dir, new_start)
            .await
            .map_err(|error| ReadError::Storage(error.to_string()))?;
        self.drop_cached_before(new_start);
        Ok(new_start)
    }

    fn drop_cached_before(&self, offset: i64) {
        let mut inner = self.inner.borrow_mut();
        let mut released = 0;
        while inner
            .cached
            .front()
            .is_some_and(|front| front.last_offset < offset)
        {
            if let Some(front) = inner.cached.front() {
                if !inner.is_cached_batch_written(front) {
                    break;
                }
            }
            if let Some(batch) = inner.cached.pop_front() {
                released += batch.bytes();
            }
        }
        drop(inner);
        if released > 0 {
            self.cache.release(released);
        }
    }

    /// Removes every batch at or after the one holding `offset` (a follower
    /// truncating to its leader's log). Waits for the writer to go idle.
    pub async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        let this = self.weak_self.clone();
        self.signal
            .wait_for(move || {
                let log = this.upgrade()?;
                let inner = log.inner.borrow();
                (!inner.writer_running && !inner.truncating && !inner.writing_recovery_point)
                    .then_some(())
            })
            .await;
        // No await since the wait: the writer is still idle, and stays so
        // while appends are held off; no recovery point is being written,
        // and none captured before this one will be.
        let _truncating = Truncating::begin(self);
        let (leo, log_start) = {
            let inner = self.inner.borrow();
            (inner.leo, inner.log_start)
        };
        if offset >= leo {
            return Ok(());
        }
        // The recovery point may lie past the new end; a crash before the
        // next one is written then scans the segment from its start.
        let point_path = self.dir.join(RECOVERY_POINT_FILE);
        if self.storage.exists(&point_path) {
            self.storage
                .remove_file_off_shard(&point_path)
                .await
                .map_err(|error| StorageError::new("remove", &point_path, error))?;
        }
        self.inner.borrow_mut().recovery_point_at = None;
        let offset = offset.max(log_start);
        // Find the batch holding `offset`: its start is the new end.
        let bases: Vec<i64> = self
            .inner
            .borrow()
            .segments
            .range(..=offset)
            .map(|(&b, _)| b)
            .collect();
        let Some(&segment_base) = bases.last() else {
            return Ok(());
        };
        let index_error = |error: ReadError| {
            StorageError::new(
                "truncate",
                &self.dir,
                std::io::Error::other(error.to_string()),
            )
        };
        let mut index = self
            .segment_index(segment_base)
            .await
            .map_err(index_error)?;
        let from_files = {
            let inner = self.inner.borrow();
            inner
                .segments
                .get(&segment_base)
                .is_some_and(|segment| segment.index_from_files)
        };
        if from_files {
            // This segment becomes the active one, whose index must be right:
            // index files carry no checksum, so it is rebuilt from the
            // batches (truncation is rare; the segment is fully written).
            index = self.scan_index(segment_base).await.map_err(index_error)?;
        }
        let (file, path, size) = {
            let inner = self.inner.borrow();
            let Some(segment) = inner.segments.get(&segment_base) else {
                return Ok(());
            };
            (segment.file.clone(), segment.path.clone(), segment.size)
        };
        let file = match file {
            Some(file) => file,
            None => Rc::new(
                self.storage
                    .open(&path, false)
                    .await
                    .map_err(|error| StorageError::new("open", &path, error))?,
            ),
        };
        let relative = u32::try_from(offset - segment_base).unwrap_or(u32::MAX);
        // The segment's largest timestamp must be recomputed over what stays,
        // or ListOffsets(MaxTimestamp) would name a truncated offset. A time
        // index entry is the running maximum at its batch (one is added only
        // for a new maximum), so the scan starts at the last entry before the
        // cut, or at the segment start if there is none.
        let last_time_entry = index
            .times
            .iter()
            .rev()
            .find(|entry| entry.relative_offset < relative)
            .copied();
        let cut_search_from = u64::from(index.position_for(relative));
        let mut position = match last_time_entry {
            Some(entry) => {
                u64::from(index.position_for(entry.relative_offset)).min(cut_search_from)
            }
            None => 0,
        };
        let (mut max_timestamp, mut offset_of_max_timestamp) = match last_time_entry {
            Some(entry) => (
                entry.timestamp,
                segment_base + i64::from(entry.relative_offset),
            ),
            None => (-1, segment_base),
        };
        let mut new_leo = segment_base;
        while position + BATCH_HEADER_BYTES as u64 <= size {
            let head = file
                .read_at(position, BATCH_HEADER_BYTES)
                .await
                .map_err(|error| StorageError::new("read", &path, error))?;
            let Ok(header) = BatchHeader::parse(&head) else {
                break;
            };
            if header.last_offset() >= offset {
                // The cut starts at this batch. The index may have jumped
                // straight to it, so the new end comes from its own header,
                // not from the batches scanned before it (there may be none).
                new_leo = header.base_offset;
                break;
            }
            if header.max_timestamp > max_timestamp {
                max_timestamp = header.max_timestamp;
                offset_of_max_timestamp = header.last_offset();
            }
            new_leo = header.last_offset() + 1;
            position += header.total_bytes() as u64;
        }
        if position == 0 {
            new_leo = segment_base;
        }
        // Remove later segments, then cut this one.
        let later: Vec<Segment<S::File>> = {
            let mut inner = self.inner.borrow_mut();
            let keys: Vec<i64> = inner
                .segments
                .range(segment_base + 1..)
                .map(|(&b, _)| b)
                .collect();
            keys.into_iter()
                .filter_map(|base| inner.segments.remove(&base))
                .collect()
        };
        let removing = self.removal_lock.acquire_permit(1).await;
        let permit = self.txn_index_lock.acquire_permit(1).await;
        for segment in later {
            remove_segment_files(&self.storage, &self.dir, segment.base_offset, segment.file).await;
        }
        drop(permit);
        drop(removing);
        file.truncate(position)
            .await
            .map_err(|error| StorageError::new("truncate", &path, error))?;
        file.sync()
            .await
            .map_err(|error| StorageError::new("sync", &path, error))?;
        // The producer state as of the new end, rebuilt as recovery does: the
        // segment's start state and a replay of what stays in it. Cutting
        // the current state back cannot undo an epoch change, which clears a
        // producer's earlier batches: a fenced producer would be let back in.
        // (This reads the segment once; truncation is rare.)
        let mut producers = load_producer_snapshot(&self.storage, &self.dir, segment_base).await;
        let kept =
            scan_segment(&*file, &path, segment_base, position, &self.config(), None).await?;
        let mut aborted = Vec::new();
        for (header, control) in &kept.headers {
            aborted.extend(record_batch(&mut producers, header, *control));
        }
        let tail = if position % IO_ALIGNMENT != 0 {
            Some(
                file.read_at(align_down(position), (position % IO_ALIGNMENT) as usize)
                    .await
                    .map_err(|error| StorageError::new("read", &path, error))?,
            )
        } else {
            None
        };
        // The borrow ends with this block, before the checkpoint write awaits.
        let (released, lowered_start, epochs_dirty) = {
            let mut inner = self.inner.borrow_mut();
            let mut released = 0;
            while inner
                .cached
                .back()
                .is_some_and(|back| back.base_offset >= new_leo)
            {
                if let Some(batch) = inner.cached.pop_back() {
                    released += batch.bytes();
                }
            }
            if let Some(segment) = inner.segments.get_mut(&segment_base) {
                segment.file = Some(Rc::clone(&file));
                segment.padded = false;
                segment.file_end = position;
                segment.size = position;
                segment.written = position;
                segment.issued = position;
                segment.completed.clear();
                segment.durable_written = segment.durable_written.min(position);
                segment.next_offset = new_leo;
                segment.sealed = false;
                segment.finalized = false;
                segment.queue.clear();
                segment.queue_start = align_down(position);
                if let Some(tail) = tail {
                    segment.queue.push_back(Staged::Frame(tail));
                }
                if let Some(index) = segment.index.as_mut() {
                    index.truncate_from(u32::try_from(new_leo - segment_base).unwrap_or(u32::MAX));
                }
                segment.bytes_since_index = 0;
                segment.max_timestamp = max_timestamp;
                segment.offset_of_max_timestamp = offset_of_max_timestamp;
                segment.aborted = aborted;
            }
            inner.leo = new_leo;
            inner.clean_end = inner.clean_end.min(new_leo);
            inner.hw = inner.hw.min(new_leo);
            inner.durable = inner.durable.min(new_leo);
            let lowered_start = (inner.log_start > new_leo).then_some(new_leo);
            inner.log_start = inner.log_start.min(new_leo);
            inner.producers = producers;
            // Truncation may have cut a transaction's batches: guarded
            // appends must check with the coordinator again.
            for guard in inner.txn_guards.values_mut() {
                guard.ends += 1;
            }
            // Epochs that started in the part cut away are no longer in this
            // log: the leader's batches appended next start them again where
            // they really start, and OffsetForLeaderEpoch must not answer
            // from them meanwhile.
            let epoch_count = inner.epochs.len();
            inner.epochs.retain(|(_, start)| *start < new_leo);
            if inner.epochs.len() != epoch_count {
                inner.epochs_dirty = true;
            }
            inner.check_offsets();
            (released, lowered_start, inner.epochs_dirty)
        };
        // The file may have been opened for the truncation.
        self.count_open_file(segment_base);
        if released > 0 {
            self.cache.release(released);
        }
        self.signal.notify();
        self.data_signal.notify();
        // The segment's `.txnindex` loses the markers cut away; later
        // segments' went with their files.
        self.persist_txn_index(segment_base).await?;
        if let Some(start) = lowered_start {
            // Cutting the batch that holds the log start moves the start back
            // to that batch's base. The checkpoint must follow, or a restart
            // would bring the old, higher start back and hide the records
            // appended at the new one.
            write_log_start(&self.storage, &self.dir, start).await?;
        }
        if epochs_dirty {
            self.persist_epochs().await?;
        }
        Ok(())
    }

    /// Deletes whole sealed segments by `retention.ms`, `retention.bytes` and
    /// the log start offset. Returns how many were deleted. The active
    /// segment is never deleted.
    pub async fn enforce_retention(&self, now: i64) -> Result<usize, StorageError> {
        let bases: Vec<i64> = self.inner.borrow().segments.keys().copied().collect();
        for &base in &bases {
            // Sealed segments' max timestamps come from their time indexes.
            let _ = self.load_index(base).await;
        }
        let doomed: Vec<i64> = {
            let inner = self.inner.borrow();
            let mut total: i64 = inner
                .segments
                .values()
                .map(|segment| segment.size as i64)
                .sum();
            let mut doomed = Vec::new();
            let last_base = inner.active().base_offset;
            for segment in inner.segments.values() {
                if segment.base_offset == last_base || !segment.finalized {
                    break;
                }
                let by_start = segment.next_offset <= inner.log_start;
                // `cleanup.policy=compact` alone: only the log start removes.
                let retains = inner.config.delete;
                let by_size = retains
                    && inner.config.retention_bytes >= 0
                    && total - segment.size as i64 >= inner.config.retention_bytes;
                let by_time = retains
                    && inner.config.retention_ms >= 0
                    && segment.max_timestamp >= 0
                    && now - segment.max_timestamp > inner.config.retention_ms;
                if !(by_start || by_size || by_time) {
                    break;
                }
                total -= segment.size as i64;
                doomed.push(segment.base_offset);
            }
            doomed
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut open = Vec::with_capacity(doomed.len());
        let new_start = {
            let mut inner = self.inner.borrow_mut();
            for base in &doomed {
                open.push(inner.segments.remove(base).and_then(|segment| segment.file));
            }
            let first = inner.segments.keys().next().copied().unwrap_or(inner.leo);
            inner.log_start = inner.log_start.max(first);
            if inner.hw < inner.log_start {
                inner.hw = inner.log_start;
            }
            inner.check_offsets();
            inner.log_start
        };
        write_log_start(&self.storage, &self.dir, new_start).await?;
        // A `.txnindex` write in flight for a doomed segment finishes first,
        // so it cannot leave a file behind the removal.
        let removing = self.removal_lock.acquire_permit(1).await;
        let permit = self.txn_index_lock.acquire_permit(1).await;
        for (base, handle) in doomed.iter().zip(open) {
            remove_segment_files(&self.storage, &self.dir, *base, handle).await;
        }
        drop(permit);
        drop(removing);
        self.storage
            .sync_dir(&self.dir)
            .await
            .map_err(|error| StorageError::new("sync directory", &self.dir, error))?;
        self.drop_cached_before(new_start);
        Ok(doomed.len())
    }

    /// Writes everything, syncs, truncates the active segment to its logical
    /// size and writes its indexes: a clean stop needs no recovery scan.
    pub async fn close(&self) -> Result<(), StorageError> {
        if let Some(capture) = self.close_begin(true).await? {
            self.write_recovery_point(capture).await;
        }
        // A checkpoint write that failed after an append is retried here.
        if self.inner.borrow().epochs_dirty {
            self.persist_epochs().await?;
        }
        Ok(())
    }

    /// A clean close whose syncs are left to one sync of the whole file
    /// system, shared by every log closed with it: everything appended is
    /// written (not synced), a padded active segment cut back (not
    /// synced), and the recovery point and the indexes it relies on
    /// written to temp files. The caller then makes them durable in three
    /// steps: [`PartitionLog::sync_file_system`], [`PartitionLog::publish`]
    /// of the indexes, a sync again, the recovery point's, and a sync again.
    /// A crash at any point leaves either the old recovery point, which the
    /// data and the indexes (old or new: the same below it) still bear out,
    /// or the new one with all it names durable.
    ///
    /// Each log's own close made about 16 fsyncs (data, a padded page's
    /// cut, and each small file and its directory): 156,000 (io_uring
    /// tracepoints) for a stop of 10,000 written partitions, which took
    /// 10.8-11.4 s, and 2.5-3.3 s staged.
    pub async fn close_staged(&self) -> Result<StagedClose, StorageError> {
        let mut staged = StagedClose::default();
        if let Some(capture) = self.close_begin(false).await? {
            if let Err(error) = self.stage_recovery_point(capture, &mut staged).await {
                // As in the log's own close, this only costs a longer scan
                // at the next start (the old point stands).
                tracing::warn!(%error, "writing the recovery point failed");
                staged = StagedClose::default();
            }
        }
        if self.inner.borrow().epochs_dirty {
            self.persist_epochs().await?;
        }
        Ok(staged)
    }

    /// Opens the file system that holds this log, to sync it after a
    /// [`PartitionLog::close_staged`] of its logs; open it before them
    /// (see [`Storage::open_file_system`]).
    pub async fn open_file_system(&self) -> Result<S::FileSystem, StorageError> {
        self.storage
            .open_file_system(&self.dir)
            .await
            .map_err(|error| StorageError::new("open file system", &self.dir, error))
    }

    /// Syncs `file_system`, which holds this log (see
    /// [`PartitionLog::close_staged`]); one log per file system is enough.
    pub async fn sync_file_system(&self, file_system: &S::FileSystem) -> Result<(), StorageError> {
        self.storage
            .sync_file_system(file_system)
            .await
            .map_err(|error| StorageError::new("sync file system", &self.dir, error))
    }

    /// Renames a staged close's files of `step` over the ones they replace
    /// (see [`PartitionLog::close_staged`]). A step whose files are not all
    /// in place is not taken further: its recovery point stays unpublished,
    /// and a restart resumes from the old one.
    pub async fn publish(
        &self,
        staged: &mut StagedClose,
        step: PublishStep,
    ) -> Result<(), StorageError> {
        let renames = match step {
            PublishStep::Indexes => std::mem::take(&mut staged.indexes),
            PublishStep::RecoveryPoint => match staged.point.take() {
                Some(rename) if !staged.failed => vec![rename],
                _ => return Ok(()),
            },
        };
        if renames.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.storage.rename_all(renames).await {
            staged.failed = true;
            return Err(StorageError::new("rename", &self.dir, error));
        }
        if let (PublishStep::RecoveryPoint, Some(at)) = (step, staged.point_at) {
            self.inner.borrow_mut().recovery_point_at = Some(at);
        }
        Ok(())
    }

    /// What both closes do before the recovery point: `durable`, with the
    /// log's own syncs; else the writes only (see
    /// [`PartitionLog::close_staged`]). Returns the recovery point to
    /// write, if the log's end moved since the last one.
    async fn close_begin(&self, durable: bool) -> Result<Option<RecoveryCapture>, StorageError> {
        if durable {
            let leo = self.offsets().leo;
            self.wait_durable(leo).await?;
        } else {
            self.wait_written().await?;
        }
        let this = self.weak_self.clone();
        self.signal
            .wait_for(move || {
                let log = this.upgrade()?;
                let inner = log.inner.borrow();
                // The syncer's recovery point, if one is being written,
                // first: the one written below is the last word. Staged,
                // the syncer itself must be done too: a sync in flight
                // would write its own point after it.
                (!inner.writer_running
                    && !inner.writing_recovery_point
                    && (durable || !inner.syncer_running))
                    .then_some(())
            })
            .await;
        let (padded, file, path, size, active_base) = {
            let mut inner = self.inner.borrow_mut();
            inner.closed = true;
            let active = inner.active();
            (
                active.padded,
                active.file.clone(),
                active.path.clone(),
                active.size,
                active.base_offset,
            )
        };
        self.signal.notify();
        self.data_signal.notify();
        // Every write is done (waited for above; durable, or made so by the
        // staged close's sync): only a file a write padded past the log's
        // end needs cutting back, and the cut syncing.
        // Unwritten since the log opened, nothing does: a stop of 100,000
        // partitions after a restart without a write took 53 s, 22 s
        // without these truncations and syncs, and 0.9 s once the recovery
        // point (below) was not rewritten either.
        if padded {
            let file = match file {
                Some(file) => file,
                // Closed while idle to keep within the shard's open files.
                None => self
                    .reopen_file(active_base, &path)
                    .await
                    .map_err(|error| StorageError::new("open", &path, error))?,
            };
            file.truncate(size)
                .await
                .map_err(|error| StorageError::new("truncate", &path, error))?;
            if durable {
                file.sync()
                    .await
                    .map_err(|error| StorageError::new("sync", &path, error))?;
            }
        }
        // A recovery point at the end lets a restart skip the scan; one
        // already at the end (nothing appended since) is not written again,
        // and a log that never held a record has nothing to scan: 100,000
        // partitions created and stopped wrote (and synced) 100,000 files,
        // and the stop took 37 s.
        let inner = self.inner.borrow();
        let active = inner.active();
        let current = inner.recovery_point_at == Some((active.base_offset, active.size));
        let never_written = inner.leo == 0 && active.file.is_none();
        Ok((!current && !never_written).then(|| inner.capture_recovery_point()))
    }

    /// [`PartitionLog::write_recovery_point`] for a staged close: the same
    /// files, written to temp files for [`PartitionLog::publish`].
    async fn stage_recovery_point(
        &self,
        capture: RecoveryCapture,
        staged: &mut StagedClose,
    ) -> Result<(), StorageError> {
        let base = capture.point.segment_base;
        let aborted = match self.inner.borrow().segments.get(&base) {
            Some(segment) if !segment.sealed => segment.aborted.clone(),
            // Sealing wrote the full index; a later recovery scans on.
            _ => return Ok(()),
        };
        let mut files = vec![
            (
                self.dir.join(segment_file_name(base, "index")),
                capture.index.encode_offsets(),
            ),
            (
                self.dir.join(segment_file_name(base, "timeindex")),
                capture.index.encode_times(),
            ),
        ];
        let txn_path = self.dir.join(segment_file_name(base, "txnindex"));
        if aborted.is_empty() {
            // No aborted transactions, no file, as `write_txn_index` does.
            if self.storage.exists(&txn_path) {
                self.storage
                    .remove_file_off_shard(&txn_path)
                    .await
                    .map_err(|error| StorageError::new("remove", &txn_path, error))?;
            }
        } else {
            files.push((txn_path, txn::encode_txn_index(&aborted)));
        }
        for (path, bytes) in files {
            let temp = self
                .storage
                .write_small_staged(&path, &bytes)
                .await
                .map_err(|error| StorageError::new("write", &path, error))?;
            staged.indexes.push((temp, path));
        }
        let path = self.dir.join(RECOVERY_POINT_FILE);
        let temp = self
            .storage
            .write_small_staged(&path, &encode_recovery_point(&path, &capture)?)
            .await
            .map_err(|error| StorageError::new("write", &path, error))?;
        staged.point = Some((temp, path));
        staged.point_at = Some((base, capture.point.position));
        Ok(())
    }

    /// Deletes the whole log (topic deletion).
    pub async fn delete(&self) -> Result<(), StorageError> {
        let (released, open) = {
            let mut inner = self.inner.borrow_mut();
            inner.closed = true;
            let released: usize = inner.cached.iter().map(CachedBatch::bytes).sum();
            inner.cached.clear();
            // Shared, not taken: a task of the log still running may use
            // them; they are closed once the log lets go of them.
            let open: Vec<Rc<S::File>> = inner
                .segments
                .values()
                .filter_map(|segment| segment.file.clone())
                .collect();
            (released, open)
        };
        self.cache.release(released);
        self.signal.notify();
        self.data_signal.notify();
        // Set aside on a file-system thread: a rename waits for the file
        // system's write lock, which a frozen data directory holds.
        self.storage
            .retire_off_shard(&self.dir, true, open)
            .await
            .map_err(|error| StorageError::new("remove", &self.dir, error))
    }
}

impl<S: Storage> Drop for PartitionLog<S> {
    fn drop(&mut self) {
        // The cached batches go with the log. Their share of the shard's
        // budget must go back too: the cache skips the insertions of a dead
        // owner without releasing them, so a log closed and dropped (a
        // restart, a partition moving away) would otherwise count against
        // the budget forever and starve every other partition's cache.
        let released: usize = self
            .inner
            .get_mut()
            .cached
            .iter()
            .map(CachedBatch::bytes)
            .sum();
        if released > 0 {
            self.cache.release(released);
        }
    }
}

impl<S: Storage> CacheOwner for PartitionLog<S> {
    fn evict(&self, sequence: u64) -> Eviction {
        let mut inner = self.inner.borrow_mut();
        let Some(front) = inner.cached.front() else {
            return Eviction::Gone;
        };
        if front.sequence > sequence {
            return Eviction::Gone;
        }
        if !inner.is_cached_batch_written(front) {
            return Eviction::Pinned;
        }
        inner.cached.pop_front();
        Eviction::Evicted
    }
}

impl<S: Storage> FileHolder for PartitionLog<S> {
    fn close_idle_file(&self, segment_base: i64, generation: u64) -> FileRelease {
        // Asked while this log is borrowed further up the stack: busy.
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            return FileRelease::Busy;
        };
        // The syncer takes the active segment's file once its writes are
        // done; it would find it closed.
        let syncing =
            inner.syncer_running && inner.segments.keys().next_back() == Some(&segment_base);
        let Some(segment) = inner.segments.get_mut(&segment_base) else {
            return FileRelease::Gone;
        };
        if segment.file_generation != generation {
            return FileRelease::Gone;
        }
        let Some(file) = &segment.file else {
            return FileRelease::Gone;
        };
        if segment.file_used.replace(false) {
            return FileRelease::Used;
        }
        // Another holder (a write, a read, a sync, a truncation, the
        // cleaner) is using it; the writer's staged bytes and a pending
        // finalize need it next.
        if syncing || Rc::strong_count(file) > 1 || segment.has_writer_work() {
            return FileRelease::Busy;
        }
        segment.file = None;
        segment.file_generation = 0;
        FileRelease::Closed
    }
}

fn read_cached(
    cached: &VecDeque<CachedBatch>,
    offset: i64,
    max_bytes: usize,
    upper: i64,
) -> ReadChunks {
    let start = cached.partition_point(|batch| batch.last_offset < offset);
    // Counted first, so that the chunks are allocated once: grown a push
    // at a time, a read of a few dozen batches allocated six times.
    let mut count = 0;
    let mut bytes = 0;
    for batch in cached.iter().skip(start) {
        if batch.base_offset >= upper || (count > 0 && bytes + batch.bytes() > max_bytes) {
            break;
        }
        bytes += batch.bytes();
        count += 1;
    }
    let mut out = ReadChunks {
        chunks: Vec::with_capacity(2 * count),
        bytes: 0,
        next_offset: offset,
    };
    for batch in cached.iter().skip(start).take(count) {
        let size = batch.bytes();
        out.chunks.push(batch.head.clone());
        out.chunks.push(batch.body.clone());
        out.bytes += size;
        out.next_offset = batch.last_offset + 1;
    }
    out
}

/// Whether read chunks hold a data record. Chunks of cached batches (a
/// patched head, then the producer's bytes) always do: appends carry
/// records. Chunks read from disk are whole batches, walked by header.
fn holds_records(chunks: &[Bytes]) -> bool {
    for chunk in chunks {
        let mut at = 0;
        while at < chunk.len() {
            let Ok(header) = BatchHeader::parse(&chunk[at..]) else {
                return true;
            };
            if header.record_count > 0 && !header.is_control() {
                return true;
            }
            at += header.total_bytes().max(BATCH_HEADER_BYTES);
        }
    }
    false
}

/// Where a disk read starts: an index entry's position and the base offset
/// of the batch there, and the end of what is written in the segment.
struct DiskPosition {
    start: u64,
    first_base: i64,
    readable_end: u64,
    /// The size of the batch at `start` when the segment's index tells it
    /// (`Inner::batch_extent`): a batch larger than the reader's limit is
    /// then read in one go, not the limit's worth first and whole again.
    first_extent: Option<u64>,
}

/// The segment a read from disk is made in, and what the reader asked for.
struct DiskPlace<'a, F> {
    key: CursorKey,
    file: &'a Rc<F>,
    path: &'a Path,
    readable_end: u64,
    max_bytes: usize,
}

/// What a read from disk found: its batches, and the position after them.
struct DiskRead {
    chunks: ReadChunks,
    end: u64,
}

async fn read_from_disk<F: StorageFile>(
    file: &F,
    path: &Path,
    from: DiskPosition,
    offset: i64,
    max_bytes: usize,
    upper: i64,
) -> Result<DiskRead, ReadError> {
    let DiskPosition {
        start,
        first_base,
        readable_end,
        first_extent,
    } = from;
    let storage_error = |error: std::io::Error| {
        ReadError::Storage(StorageError::new("read", path, error).to_string())
    };
    let damaged = |position: u64, what: String| {
        let path = path.display();
        ReadError::Storage(format!(
            "{path}: {what} at position {position}: the segment is damaged"
        ))
    };
    let parse = |head: &[u8]| {
        BatchHeader::parse(head)
            .map_err(|error| ReadError::Storage(format!("{}: {error}", path.display())))
    };
    let mut position = start;
    // The batch at `start` has the base offset the index entry names.
    let mut next_base = Some(first_base);
    // What a read returns at least; the first batch is whole even if larger.
    let wanted = |position: u64| {
        let want = max_bytes.max(DISK_READ_BYTES_MIN) as u64;
        want.min(readable_end - position) as usize
    };
    // Skip batches before `offset`, reading headers only. In a sound segment
    // every header on the way is a real batch following the one before, and
    // one of them holds `offset`: the caller comes to the disk only for
    // batches already written there. Anything else is a torn or misdirected
    // write, reported as such; skipping over it would answer with nothing,
    // or with a later batch than asked for, and the consumer would never know.
    // When the batch at `start` is the one asked for (an exact index entry,
    // or where the reader's previous read ended), header and records come
    // in one read.
    let (first, bytes) = loop {
        if position + BATCH_HEADER_BYTES as u64 > readable_end {
            return Err(damaged(position, format!("no batch holds offset {offset}")));
        }
        let exact = next_base == Some(offset);
        let len = if exact {
            // The batch's own size when the index gave it (a batch is at
            // most `BATCH_BYTES_MAX`, and never past the written end).
            let extent = first_extent
                .filter(|_| position == start)
                .map_or(0, |extent| {
                    extent
                        .min(BATCH_BYTES_MAX as u64)
                        .min(readable_end - position) as usize
                });
            wanted(position).max(extent)
        } else {
            BATCH_HEADER_BYTES
        };
        let head = file.read_at(position, len).await.map_err(storage_error)?;
        let header = parse(&head)?;
        if !is_plausible_header(&header)
            || next_base.is_some_and(|base| base != header.base_offset)
            || position + header.total_bytes() as u64 > readable_end
        {
            return Err(damaged(position, "no batch header".into()));
        }
        if header.last_offset() >= offset {
            if header.base_offset > offset {
                let what = format!("the batch holding offset {offset} is missing");
                return Err(damaged(position, what));
            }
            if exact && head.len() >= header.total_bytes() {
                break (header, head);
            }
            let len = wanted(position).max(header.total_bytes());
            let bytes = file.read_at(position, len).await.map_err(storage_error)?;
            break (header, bytes);
        }
        next_base = Some(header.last_offset() + 1);
        position += header.total_bytes() as u64;
    };
    let mut out = ReadChunks {
        chunks: Vec::new(),
        bytes: 0,
        next_offset: offset,
    };
    let mut at = 0usize;
    let mut next_base = first.base_offset;
    while at + BATCH_HEADER_BYTES <= bytes.len() {
        let header = parse(&bytes[at..])?;
        if !is_plausible_header(&header) || header.base_offset != next_base {
            return Err(damaged(position + at as u64, "no batch header".into()));
        }
        let size = header.total_bytes();
        if header.base_offset >= upper {
            break;
        }
        if at + size > bytes.len() {
            // Past the end of the read (or of what is written) is normal
            // for a later batch; the first one was checked to fit.
            if at == 0 {
                return Err(damaged(
                    position,
                    "a batch runs past the written end".into(),
                ));
            }
            break;
        }
        if at > 0 && at + size > max_bytes {
            break;
        }
        // Checked when written and again when read back: a torn or
        // misdirected write shows here instead of reaching a consumer.
        let batch = &bytes[at..at + size];
        if batch::compute_crc(batch) != header.crc {
            return Err(ReadError::Storage(format!(
                "{}: batch at position {} fails its checksum",
                path.display(),
                position + at as u64
            )));
        }
        at += size;
        next_base = header.last_offset() + 1;
        out.next_offset = next_base;
    }
    if at > 0 {
        out.chunks.push(bytes.slice(..at));
        out.bytes = at;
    }
    Ok(DiskRead {
        chunks: out,
        end: position + at as u64,
    })
}

/// Whether a header read from disk can start a batch the log wrote: magic 2,
/// a length that covers the header, a non-negative offset delta.
fn is_plausible_header(header: &BatchHeader) -> bool {
    header.magic == batch::MAGIC_V2
        && header.batch_length >= (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32
        && header.last_offset_delta >= 0
}

/// What a recovery scan of one segment found.
struct Scanned {
    valid_bytes: u64,
    next_offset: i64,
    index: SegmentIndex,
    /// Every batch's header, with the marker of each control batch.
    headers: Vec<(BatchHeader, Option<ControlRecord>)>,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    bytes_since_index: u64,
    /// The scan stopped at a zeroed header: the padding of a last page,
    /// zeros written ahead of the writes, or a write a crash lost; not
    /// damage.
    ends_in_zeros: bool,
}

/// Where a scan resumes: a recovery point and the index below it.
struct ScanStart {
    point: RecoveryPoint,
    index: SegmentIndex,
}

/// Reads a segment batch by batch from the start; the log ends at the first
/// batch that is short, zeroed, out of sequence or fails its CRC.
async fn scan_segment<F: StorageFile>(
    file: &F,
    path: &Path,
    base_offset: i64,
    size: u64,
    config: &LogConfig,
    start: Option<ScanStart>,
) -> Result<Scanned, StorageError> {
    let mut scanned = Scanned {
        valid_bytes: 0,
        next_offset: base_offset,
        index: SegmentIndex::default(),
        headers: Vec::new(),
        max_timestamp: -1,
        offset_of_max_timestamp: base_offset,
        bytes_since_index: 0,
        ends_in_zeros: false,
    };
    let mut position = 0u64;
    if let Some(start) = start {
        // Everything before the recovery point is durable and indexed:
        // only what follows it needs reading.
        scanned.valid_bytes = start.point.position;
        scanned.next_offset = start.point.next_offset;
        scanned.index = start.index;
        scanned.max_timestamp = start.point.max_timestamp;
        scanned.offset_of_max_timestamp = start.point.offset_of_max_timestamp;
        scanned.bytes_since_index = start.point.bytes_since_index;
        position = start.point.position;
    }
    let mut buffer = Bytes::new();
    let mut buffer_start = position;
    loop {
        if position + LOG_OVERHEAD as u64 > size {
            break;
        }
        let buffered_end = buffer_start + buffer.len() as u64;
        if position + BATCH_HEADER_BYTES as u64 > buffered_end {
            let len = (RECOVERY_READ_BYTES as u64).min(size - position) as usize;
            buffer = file
                .read_at(position, len)
                .await
                .map_err(|error| StorageError::new("read", path, error))?;
            buffer_start = position;
        }
        let at = (position - buffer_start) as usize;
        scanned.ends_in_zeros = buffer
            .get(at..at + LOG_OVERHEAD)
            .is_some_and(|head| head.iter().all(|&byte| byte == 0));
        let Ok(header) = BatchHeader::parse(&buffer[at..]) else {
            break;
        };
        let total = header.total_bytes() as u64;
        if header.batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32
            || total > BATCH_BYTES_MAX as u64
            || position + total > size
            || header.base_offset != scanned.next_offset
            || header.magic != batch::MAGIC_V2
        {
            break;
        }
        if position + total > buffer_start + buffer.len() as u64 {
            let len = (RECOVERY_READ_BYTES as u64).max(total).min(size - position) as usize;
            buffer = file
                .read_at(position, len)
                .await
                .map_err(|error| StorageError::new("read", path, error))?;
            buffer_start = position;
        }
        let at = (position - buffer_start) as usize;
        let Some(bytes) = buffer.get(at..at + total as usize) else {
            break;
        };
        if batch::compute_crc(bytes) != header.crc || header.last_offset_delta < 0 {
            break;
        }
        if scanned.bytes_since_index >= u64::from(config.index_interval_bytes)
            || scanned.index.offsets.is_empty() && position > 0
        {
            scanned.index.offsets.push(OffsetEntry {
                relative_offset: (header.base_offset - base_offset) as u32,
                position: position as u32,
            });
            scanned.bytes_since_index = 0;
        }
        // The same rule as `append`: a time entry at an index point (or the
        // first batch) for a new maximum only, so every entry is the running
        // maximum at its batch, which truncation relies on.
        if scanned.bytes_since_index == 0 && header.max_timestamp > scanned.max_timestamp {
            scanned.index.times.push(TimeEntry {
                timestamp: header.max_timestamp,
                relative_offset: (header.last_offset() - base_offset) as u32,
            });
        }
        scanned.bytes_since_index += total;
        if header.max_timestamp > scanned.max_timestamp {
            scanned.max_timestamp = header.max_timestamp;
            scanned.offset_of_max_timestamp = header.last_offset();
        }
        scanned.next_offset = header.last_offset() + 1;
        let control = if header.is_control() {
            txn::parse_control_batch(bytes)
        } else {
            None
        };
        scanned.headers.push((header, control));
        position += total;
        scanned.valid_bytes = position;
        scanned.ends_in_zeros = false;
    }
    Ok(scanned)
}

/// Finds the first record at or after `target` inside an uncompressed batch;
/// compressed batches answer with their base offset (the engine never
/// decompresses).
fn first_record_at_or_after(
    batch: &[u8],
    header: &BatchHeader,
    target: i64,
) -> Option<FoundOffset> {
    if header.compression() != 0 || header.is_log_append_time() {
        return None;
    }
    let mut at = BATCH_HEADER_BYTES;
    for _ in 0..header.record_count {
        let (length, used) = read_varint(batch.get(at..)?)?;
        let body = at + used;
        let mut field = body + 1; // record attributes
        let (timestamp_delta, used) = read_varint(batch.get(field..)?)?;
        field += used;
        let (offset_delta, _) = read_varint(batch.get(field..)?)?;
        // Deltas are the producer's: a batch whose sums overflow holds no
        // answer.
        let timestamp = header.base_timestamp.checked_add(timestamp_delta)?;
        if timestamp >= target {
            return Some(FoundOffset {
                offset: header.base_offset.checked_add(offset_delta)?,
                timestamp,
            });
        }
        at = body + usize::try_from(length).ok()?;
    }
    None
}

fn read_varint(bytes: &[u8]) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Some((decoded, i + 1));
        }
    }
    None
}

/// A sealed segment's index as written to its files. Entries are added
/// only at index points, so the segment's largest timestamp may have none. A
/// last entry for it (as Kafka writes when it rolls) lets a reload find the
/// segment's max timestamp and its offset without a scan.
fn sealed_index<F>(segment: &Segment<F>, mut index: SegmentIndex) -> SegmentIndex {
    if segment.max_timestamp >= 0
        && index
            .times
            .last()
            .is_none_or(|entry| entry.timestamp < segment.max_timestamp)
    {
        index.times.push(TimeEntry {
            timestamp: segment.max_timestamp,
            relative_offset: (segment.offset_of_max_timestamp - segment.base_offset) as u32,
        });
    }
    index
}

/// Opens an existing file and reads its size.
async fn open_with_size<S: Storage>(
    storage: &S,
    path: &Path,
) -> Result<(S::File, u64), StorageError> {
    let file = storage
        .open(path, false)
        .await
        .map_err(|error| StorageError::new("open", path, error))?;
    let size = file
        .size()
        .await
        .map_err(|error| StorageError::new("stat", path, error))?;
    Ok((file, size))
}

/// Removes segment `base`'s files; `open` is the segment's handle if this
/// shard still holds it (see `Storage::retire_off_shard`). The renames that set them
/// aside are made off the shard's thread (see
/// [`Storage::remove_file_off_shard`]).
async fn remove_segment_files<S: Storage>(
    storage: &S,
    dir: &Path,
    base: i64,
    mut open: Option<Rc<S::File>>,
) {
    for extension in SEGMENT_FILE_EXTENSIONS {
        let path = dir.join(segment_file_name(base, extension));
        let removed = match open.take() {
            Some(handle) => storage.retire_off_shard(&path, false, vec![handle]).await,
            None => storage.remove_file_off_shard(&path).await,
        };
        if let Err(error) = removed {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%error, path = %path.display(), "could not remove segment file");
            }
        }
    }
    let snapshot = dir.join(segment_file_name(base, "snapshot"));
    let _ = storage.remove_file_off_shard(&snapshot).await;
}

/// A segment's files besides its producer snapshot, the log file first
/// (the one `open` handles are for).
const SEGMENT_FILE_EXTENSIONS: [&str; 4] = ["log", "index", "timeindex", "txnindex"];

const LOG_START_FILE: &str = "log-start-offset";
/// Magic of Sluice's small checkpoint files ("SLCK").
const CHECKPOINT_MAGIC: u32 = 0x534c_434b;
const CHECKPOINT_VERSION: u16 = 1;
/// The frame version of producer snapshots and recovery points whose
/// producer entries carry transaction state; version 1 frames (entries
/// without it) are still read.
const PRODUCER_SNAPSHOT_VERSION: u16 = 2;

/// Checkpoint layout: magic u32, version u16, payload length u32, payload,
/// CRC-32C of everything before it (u32). Big-endian.
fn encode_checkpoint(payload: &[u8]) -> Vec<u8> {
    encode_checkpoint_version(payload, CHECKPOINT_VERSION)
}

fn encode_checkpoint_version(payload: &[u8], version: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.extend_from_slice(&CHECKPOINT_MAGIC.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn decode_checkpoint(bytes: &[u8]) -> Option<&[u8]> {
    decode_checkpoint_version(bytes)
        .filter(|(version, _)| *version == CHECKPOINT_VERSION)
        .map(|(_, payload)| payload)
}

/// The frame's version and payload, whatever the version.
fn decode_checkpoint_version(bytes: &[u8]) -> Option<(u16, &[u8])> {
    if bytes.len() < 14 {
        return None;
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return None;
    }
    if body[..4] != CHECKPOINT_MAGIC.to_be_bytes() {
        return None;
    }
    let version = u16::from_be_bytes([body[4], body[5]]);
    let len = u32::from_be_bytes([body[6], body[7], body[8], body[9]]) as usize;
    body.get(10..)
        .filter(|payload| payload.len() == len)
        .map(|payload| (version, payload))
}

async fn read_log_start<S: Storage>(storage: &S, dir: &Path) -> Result<i64, OpenError> {
    let path = dir.join(LOG_START_FILE);
    if !storage.exists(&path) {
        return Ok(0);
    }
    let bytes = storage
        .read_small(&path, 64)
        .await
        .map_err(|error| StorageError::new("read", &path, error))?;
    match decode_checkpoint(&bytes).and_then(|payload| <[u8; 8]>::try_from(payload).ok()) {
        Some(word) => Ok(i64::from_be_bytes(word)),
        None => Err(OpenError::Foreign {
            path,
            reason: "bad checksum or format".into(),
        }),
    }
}

async fn write_log_start<S: Storage>(
    storage: &S,
    dir: &Path,
    offset: i64,
) -> Result<(), StorageError> {
    let path = dir.join(LOG_START_FILE);
    storage
        .write_small_atomic(&path, &encode_checkpoint(&offset.to_be_bytes()))
        .await
        .map_err(|error| StorageError::new("write", &path, error))
}

/// Producer state as of `offset` (every batch below it recorded), persisted
/// with rkyv in `<offset>.snapshot`, `offset` being a segment's base.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct ProducerSnapshot {
    offset: i64,
    producers: Vec<(i64, crate::producer::ProducerEntry)>,
}

impl ProducerSnapshot {
    fn of(offset: i64, state: &ProducerState) -> ProducerSnapshot {
        ProducerSnapshot {
            offset,
            producers: state
                .producers
                .iter()
                .map(|(id, entry)| (*id, entry.clone()))
                .collect(),
        }
    }
}

/// A producer entry as version 1 snapshots hold it (before transactions).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct ProducerEntryV1 {
    epoch: i16,
    batches: VecDeque<crate::producer::SequenceRange>,
    last_timestamp: i64,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct ProducerSnapshotV1 {
    offset: i64,
    producers: Vec<(i64, ProducerEntryV1)>,
}

/// Decodes a producer snapshot payload of frame `version`: the offset it is
/// as of and the state.
fn decode_producer_snapshot(version: u16, payload: &[u8]) -> Option<(i64, ProducerState)> {
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(payload);
    match version {
        PRODUCER_SNAPSHOT_VERSION => {
            let snapshot =
                rkyv::from_bytes::<ProducerSnapshot, rkyv::rancor::Error>(&aligned).ok()?;
            Some((
                snapshot.offset,
                ProducerState::from_entries(snapshot.producers),
            ))
        }
        CHECKPOINT_VERSION => {
            let snapshot =
                rkyv::from_bytes::<ProducerSnapshotV1, rkyv::rancor::Error>(&aligned).ok()?;
            let entries = snapshot.producers.into_iter().map(|(id, old)| {
                let entry = crate::producer::ProducerEntry {
                    epoch: old.epoch,
                    batches: old.batches,
                    last_timestamp: old.last_timestamp,
                    ..Default::default()
                };
                (id, entry)
            });
            Some((snapshot.offset, ProducerState::from_entries(entries)))
        }
        _ => None,
    }
}

async fn write_producer_snapshot<S: Storage>(
    storage: &S,
    dir: &Path,
    offset: i64,
    state: &ProducerState,
) -> Result<(), StorageError> {
    let path = dir.join(segment_file_name(offset, "snapshot"));
    let snapshot = ProducerSnapshot::of(offset, state);
    let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&snapshot).map_err(|error| {
        StorageError::new("encode", &path, std::io::Error::other(error.to_string()))
    })?;
    storage
        .write_small_atomic(
            &path,
            &encode_checkpoint_version(&payload, PRODUCER_SNAPSHOT_VERSION),
        )
        .await
        .map_err(|error| StorageError::new("write", &path, error))
}

/// The producer state as of the segment starting at `base`. Empty if there is
/// none: the log's first segment starts with no producers.
async fn load_producer_snapshot<S: Storage>(storage: &S, dir: &Path, base: i64) -> ProducerState {
    let path = dir.join(segment_file_name(base, "snapshot"));
    if !storage.exists(&path) {
        return ProducerState::default();
    }
    let Ok(bytes) = storage.read_small(&path, METADATA_SNAPSHOT_BYTES_MAX).await else {
        tracing::warn!(path = %path.display(), "producer snapshot unreadable; starting without it");
        return ProducerState::default();
    };
    let snapshot = decode_checkpoint_version(&bytes)
        .and_then(|(version, payload)| decode_producer_snapshot(version, payload));
    match snapshot {
        Some((offset, state)) if offset == base => state,
        _ => {
            // A damaged snapshot costs only duplicate detection for retries
            // that straddle the restart; the log itself is intact.
            tracing::warn!(path = %path.display(), "producer snapshot damaged; starting without it");
            ProducerState::default()
        }
    }
}

/// What a recovery point records, captured when its sync round starts.
/// What [`PartitionLog::close_staged`] leaves to publish: temp files and
/// the names they replace.
#[derive(Debug, Default)]
pub struct StagedClose {
    /// The index, time index and transaction index: renamed first.
    indexes: Vec<(PathBuf, PathBuf)>,
    /// The recovery point: renamed once the indexes are durable, since a
    /// restart trusts the index entries below it.
    point: Option<(PathBuf, PathBuf)>,
    /// Where the recovery point puts the log (`Inner::recovery_point_at`).
    point_at: Option<(i64, u64)>,
    /// A rename failed: the recovery point is not published.
    failed: bool,
}

impl StagedClose {
    /// Whether nothing is left to publish.
    pub fn is_empty(&self) -> bool {
        self.indexes.is_empty() && self.point.is_none()
    }
}

/// The renames of a [`StagedClose`], each step after a file-system sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishStep {
    Indexes,
    RecoveryPoint,
}

struct RecoveryCapture {
    point: RecoveryPoint,
    index: SegmentIndex,
    producers: ProducerState,
    /// `Inner::truncations` when it was captured.
    truncations: u64,
}

#[derive(Default)]
struct TxnGuardState {
    holders: u32,
    ends: u64,
}

/// See [`PartitionLog::txn_guard`]; dropping it ends the guard.
pub struct TxnGuard<S: Storage> {
    log: Weak<PartitionLog<S>>,
    producer_id: i64,
    ends_seen: u64,
}

impl<S: Storage> TxnGuard<S> {
    /// Whether a transactional append may go ahead: the producer's
    /// transaction is open here, or nothing ended it since the guard began.
    pub fn holds(&self) -> bool {
        let Some(log) = self.log.upgrade() else {
            return false;
        };
        let inner = log.inner.borrow();
        inner
            .producers
            .ongoing_txn_first_offset(self.producer_id)
            .is_some()
            || inner
                .txn_guards
                .get(&self.producer_id)
                .is_some_and(|state| state.ends == self.ends_seen)
    }
}

impl<S: Storage> Drop for TxnGuard<S> {
    fn drop(&mut self) {
        let Some(log) = self.log.upgrade() else {
            return;
        };
        let mut inner = log.inner.borrow_mut();
        if let Some(state) = inner.txn_guards.get_mut(&self.producer_id) {
            state.holders = state.holders.saturating_sub(1);
            if state.holders == 0 {
                inner.txn_guards.remove(&self.producer_id);
            }
        }
    }
}

/// Marks a log as being truncated for as long as it lives; dropping it (at
/// the end of the truncation, or on any error out of it) lets appends in
/// again and wakes the ones waiting.
struct Truncating<'a, S: Storage> {
    log: &'a PartitionLog<S>,
}

impl<'a, S: Storage> Truncating<'a, S> {
    fn begin(log: &'a PartitionLog<S>) -> Self {
        let mut inner = log.inner.borrow_mut();
        inner.truncating = true;
        inner.truncations += 1;
        Truncating { log }
    }
}

/// Marks a recovery point write in progress until dropped.
struct WritingRecoveryPoint<'a, S: Storage> {
    log: &'a PartitionLog<S>,
}

impl<S: Storage> Drop for WritingRecoveryPoint<'_, S> {
    fn drop(&mut self) {
        self.log.inner.borrow_mut().writing_recovery_point = false;
        self.log.signal.notify();
    }
}

impl<S: Storage> Drop for Truncating<'_, S> {
    fn drop(&mut self) {
        self.log.inner.borrow_mut().truncating = false;
        self.log.signal.notify();
    }
}

/// Replays one batch into the producer state, as `append` recorded it; an
/// abort marker's aborted-index entry is returned.
fn record_batch(
    producers: &mut ProducerState,
    header: &BatchHeader,
    control: Option<ControlRecord>,
) -> Option<AbortedTxn> {
    match control {
        Some(control) => producers.record_marker(header, header.base_offset, control),
        None => {
            producers.record(header, header.base_offset);
            None
        }
    }
}

/// Writes a segment's `<base>.txnindex`, or removes it when there are no
/// aborted transactions (most segments never have one).
async fn write_txn_index<S: Storage>(
    storage: &S,
    dir: &Path,
    base: i64,
    entries: &[AbortedTxn],
) -> Result<(), StorageError> {
    let path = dir.join(segment_file_name(base, "txnindex"));
    if entries.is_empty() {
        if storage.exists(&path) {
            storage
                .remove_file_off_shard(&path)
                .await
                .map_err(|error| StorageError::new("remove", &path, error))?;
        }
        return Ok(());
    }
    storage
        .write_small_atomic(&path, &txn::encode_txn_index(entries))
        .await
        .map_err(|error| StorageError::new("write transaction index", &path, error))
}

/// Reads a segment's `<base>.txnindex`; none if absent. A damaged file is
/// reported and read as empty: read_committed consumers of that segment
/// would then see aborted records, so it is logged loudly.
async fn load_txn_index<S: Storage>(storage: &S, dir: &Path, base: i64) -> Vec<AbortedTxn> {
    let path = dir.join(segment_file_name(base, "txnindex"));
    if !storage.exists(&path) {
        return Vec::new();
    }
    let decoded = storage
        .read_small(&path, TXN_INDEX_BYTES_MAX)
        .await
        .ok()
        .and_then(|bytes| txn::decode_txn_index(&bytes));
    match decoded {
        Some(entries) => entries,
        None => {
            tracing::error!(path = %path.display(), "transaction index damaged; ignoring it");
            Vec::new()
        }
    }
}

/// Writes `recovery-point`: the point (48 bytes) followed by the producer
/// state as of it (rkyv), in one checkpoint frame, replaced atomically.
async fn write_recovery_point_file<S: Storage>(
    storage: &S,
    dir: &Path,
    capture: &RecoveryCapture,
) -> Result<(), StorageError> {
    let path = dir.join(RECOVERY_POINT_FILE);
    storage
        .write_small_atomic(&path, &encode_recovery_point(&path, capture)?)
        .await
        .map_err(|error| StorageError::new("write", &path, error))
}

/// The bytes of `recovery-point` (at `path`) for `capture`.
fn encode_recovery_point(path: &Path, capture: &RecoveryCapture) -> Result<Vec<u8>, StorageError> {
    let snapshot = ProducerSnapshot::of(capture.point.next_offset, &capture.producers);
    let producers = rkyv::to_bytes::<rkyv::rancor::Error>(&snapshot).map_err(|error| {
        StorageError::new("encode", path, std::io::Error::other(error.to_string()))
    })?;
    let mut payload = capture.point.encode().to_vec();
    payload.extend_from_slice(&producers);
    Ok(encode_checkpoint_version(
        &payload,
        PRODUCER_SNAPSHOT_VERSION,
    ))
}

/// Reads `recovery-point`. Anything unreadable means "scan from the start".
async fn load_recovery_point<S: Storage>(
    storage: &S,
    dir: &Path,
) -> Option<(RecoveryPoint, ProducerState)> {
    let path = dir.join(RECOVERY_POINT_FILE);
    if !storage.exists(&path) {
        return None;
    }
    let bytes = storage
        .read_small(&path, METADATA_SNAPSHOT_BYTES_MAX)
        .await
        .ok()?;
    let (version, payload) = decode_checkpoint_version(&bytes)?;
    let point = RecoveryPoint::decode(payload.get(..RECOVERY_POINT_BYTES)?)?;
    let (offset, state) = decode_producer_snapshot(version, payload.get(RECOVERY_POINT_BYTES..)?)?;
    if offset != point.next_offset {
        return None;
    }
    Some((point, state))
}

/// The index files of a segment, if present and consistent with a segment
/// of `valid_bytes`.
async fn load_index_files<S: Storage>(
    storage: &S,
    dir: &Path,
    base: i64,
    valid_bytes: u64,
) -> Option<SegmentIndex> {
    let bytes_max = valid_bytes / 8 * crate::index::OFFSET_ENTRY_BYTES as u64 + IO_ALIGNMENT;
    let offsets = storage
        .read_small(&dir.join(segment_file_name(base, "index")), bytes_max)
        .await
        .ok()?;
    let times = storage
        .read_small(
            &dir.join(segment_file_name(base, "timeindex")),
            bytes_max * 2,
        )
        .await
        .ok()?;
    SegmentIndex::decode(&offsets, &times, valid_bytes)
}

/// Kafka's `UNDEFINED_EPOCH`: no leader epoch (OffsetForLeaderEpoch's
/// answer for an epoch this log cannot place).
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's `UNDEFINED_EPOCH_OFFSET`, answered with `UNDEFINED_EPOCH`.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// Kafka's `LeaderEpochFileCache.endOffsetFor` over `epochs` (oldest first,
/// epochs and start offsets increasing) of a log ending at `leo`; see
/// [`PartitionLog::end_offset_for_epoch`].
fn epoch_end_offset(epochs: &[(i32, i64)], leo: i64, requested: i32) -> (i32, i64) {
    let undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
    let Some(&(latest, _)) = epochs.last() else {
        return undefined;
    };
    if requested == UNDEFINED_EPOCH {
        return undefined;
    }
    if requested == latest {
        return (latest, leo);
    }
    let higher = epochs.partition_point(|(epoch, _)| *epoch <= requested);
    let Some(&(_, higher_start)) = epochs.get(higher) else {
        return undefined;
    };
    match higher.checked_sub(1).and_then(|floor| epochs.get(floor)) {
        Some(&(floor_epoch, _)) => (floor_epoch, higher_start),
        None => (requested, higher_start),
    }
}

/// Checks a batch copied from the leader before anything of its call is
/// appended. Its bytes are stored as they are, so they must start where
/// the log (or the batch before) ends, `expected`, and must be as long as
/// their header says; the header gives the offsets and the index entries.
fn check_replica_batch(
    header: &BatchHeader,
    bytes: &[u8],
    expected: i64,
) -> Result<(), AppendError> {
    if bytes.len() > BATCH_BYTES_MAX {
        return Err(AppendError::Batch(batch::BatchError::TooLarge {
            bytes: bytes.len(),
            limit: BATCH_BYTES_MAX,
        }));
    }
    if bytes.len() < BATCH_HEADER_BYTES || bytes.len() != header.total_bytes() {
        return Err(AppendError::Batch(batch::BatchError::BadLength {
            declared: header.total_bytes() as i64,
            present: bytes.len(),
        }));
    }
    if header.last_offset_delta < 0 {
        return Err(AppendError::Batch(batch::BatchError::BadRecordCount {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        }));
    }
    // The offset in the stored bytes is what a reader sees; the header's is
    // what the index records. Both must be the log end.
    let stored = BatchHeader::parse(bytes)?.base_offset;
    for got in [header.base_offset, stored] {
        if got != expected {
            return Err(AppendError::NotContiguous { expected, got });
        }
    }
    Ok(())
}

/// Kafka's `leader-epoch-checkpoint` file name.
const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// The checkpoint format version Kafka writes.
const EPOCH_CHECKPOINT_VERSION: &str = "0";
/// Most epoch entries read from a checkpoint (one per leader change).
const EPOCH_ENTRIES_MAX: usize = 1 << 20;

/// Kafka's text format: the version line, the entry count, then one
/// `epoch start_offset` line per entry.
async fn write_epoch_checkpoint<S: Storage>(
    storage: &S,
    dir: &Path,
    epochs: &[(i32, i64)],
) -> Result<(), StorageError> {
    let mut text = format!("{EPOCH_CHECKPOINT_VERSION}\n{}\n", epochs.len());
    for (epoch, start) in epochs {
        text.push_str(&format!("{epoch} {start}\n"));
    }
    let path = dir.join(EPOCH_CHECKPOINT_FILE);
    storage
        .write_small_atomic(&path, text.as_bytes())
        .await
        .map_err(|error| StorageError::new("write", &path, error))
}

async fn read_epoch_checkpoint<S: Storage>(
    storage: &S,
    dir: &Path,
) -> Result<Option<Vec<(i32, i64)>>, OpenError> {
    let path = dir.join(EPOCH_CHECKPOINT_FILE);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bytes = storage
        .read_small(&path, (EPOCH_ENTRIES_MAX * 32) as u64)
        .await
        .map_err(|error| StorageError::new("read", &path, error))?;
    let foreign = |reason: &str| OpenError::Foreign {
        path: path.clone(),
        reason: reason.to_string(),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| foreign("not text"))?;
    let mut lines = text.lines();
    if lines.next() != Some(EPOCH_CHECKPOINT_VERSION) {
        return Err(foreign("unknown leader-epoch-checkpoint version"));
    }
    let count: usize = lines
        .next()
        .and_then(|line| line.trim().parse().ok())
        .filter(|count| *count <= EPOCH_ENTRIES_MAX)
        .ok_or_else(|| foreign("bad entry count"))?;
    let mut epochs = Vec::with_capacity(count);
    for line in lines.take(count) {
        let mut fields = line.split_whitespace();
        let epoch = fields.next().and_then(|field| field.parse::<i32>().ok());
        let start = fields.next().and_then(|field| field.parse::<i64>().ok());
        match (epoch, start) {
            (Some(epoch), Some(start)) => epochs.push((epoch, start)),
            _ => return Err(foreign("bad epoch entry")),
        }
    }
    if epochs.len() != count {
        return Err(foreign("fewer entries than its count"));
    }
    Ok(Some(epochs))
}

/// The private readers above, reachable by the fuzz targets in `tests/fuzz/`.
mod compact;
pub use compact::{CompactionError, CompactionLimits, CompactionReport};

#[cfg(feature = "fuzzing")]
pub mod fuzz_api;

/// PLANTED DEFECT: a way to lose an acknowledged write, for proving that the
/// fault harness catches one (`tests/chaos-broken.sh`); never in a real build.
#[cfg(feature = "planted-defect-drop-acked")]
mod planted_defect;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{attributes, BuildBatch};
    use crate::cache::READ_AHEAD_KEEP;
    use crate::producer::{ProducerEntry, SequenceRange};
    use crate::storage::MemStorage;
    use crate::txn::TxnMarker;

    /// Stages `piece` on `segment` and completes its write; returns the
    /// allocations the completion made.
    fn stage_and_write(segment: &mut Segment<()>, piece: Bytes) -> u64 {
        let start = segment.size;
        segment.size += piece.len() as u64;
        segment.queue.push_back(Staged::Frame(piece));
        segment.issued = segment.size;
        let ((), allocations) =
            crate::counted_alloc::allocations_of(|| segment.write_completed(start, segment.size));
        allocations
    }

    #[test]
    fn tail_copies_reuse_their_buffers() {
        let mut segment: Segment<()> = Segment::new(Path::new("/data/t-0"), 0);
        let mut fronts = Vec::new();
        for (round, len) in TAIL_ROUNDS.into_iter().enumerate() {
            let allocations = stage_and_write(&mut segment, Bytes::from(vec![round as u8; len]));
            if round >= 2 {
                assert_eq!(
                    allocations, 0,
                    "round {round}: a tail write's copy allocated once both buffers existed"
                );
            }
            assert_eq!(segment.queue.len(), 1, "only the copied tail stays");
            assert!(matches!(segment.queue[0], Staged::TailCopy));
            let front = segment.staged_bytes(&segment.queue[0]);
            let mut expected = Vec::new();
            copy_bytes_of_rounds(&mut expected, round);
            assert_eq!(front, &expected[..], "the tail copy holds the staged bytes");
            fronts.push(front.as_ptr());
        }
        // Two buffers take turns.
        assert_eq!(fronts[2], fronts[0]);
        assert_eq!(fronts[3], fronts[1]);
        assert_eq!(fronts[4], fronts[2]);
        assert_ne!(fronts[0], fronts[1]);
    }

    /// The appends of `tail_copies_reuse_their_buffers`: all within one page.
    const TAIL_ROUNDS: [usize; 6] = [100, 200, 300, 400, 500, 600];

    /// The bytes `stage_and_write` staged in rounds 0..=last (all within
    /// the first page, so the whole of them is the tail).
    fn copy_bytes_of_rounds(out: &mut Vec<u8>, last: usize) {
        for (round, len) in TAIL_ROUNDS.into_iter().enumerate() {
            if round <= last {
                out.extend(std::iter::repeat_n(round as u8, len));
            }
        }
    }

    #[test]
    fn heads_cut_from_shared_slabs_keep_their_own_bytes() {
        // Three slabs' worth, so that heads of a full slab and of its
        // successor are both alive.
        let count = 3 * HEAD_SLAB_BYTES / PATCHED_HEAD_BYTES + 7;
        let wanted: Vec<[u8; PATCHED_HEAD_BYTES]> = (0..count)
            .map(|index| {
                let mut head = [0u8; PATCHED_HEAD_BYTES];
                head[..8].copy_from_slice(&(index as u64).to_be_bytes());
                head[8..].copy_from_slice(&(!(index as u64)).to_be_bytes());
                head
            })
            .collect();
        let heads: Vec<Bytes> = wanted.iter().map(|head| head_bytes(*head)).collect();
        let copies: Vec<Bytes> = heads.iter().step_by(3).cloned().collect();
        drop(copies);
        for (head, wanted) in heads.iter().zip(&wanted) {
            assert_eq!(&head[..], &wanted[..]);
        }
    }

    /// Enough for every batch of these tests to stay cached.
    const TEST_CACHE_BYTES: usize = 1 << 20;
    /// Bytes asked for per read in `read_all`.
    const TEST_READ_BYTES: usize = 1 << 20;

    fn run<F: std::future::Future<Output = ()> + 'static>(
        future: impl FnOnce() -> F + Send + 'static,
    ) {
        glommio::LocalExecutorBuilder::default()
            .spawn(future)
            .expect("executor starts")
            .join()
            .expect("test body completes");
    }

    async fn open_log(
        storage: &MemStorage,
        dir: &str,
        config: LogConfig,
    ) -> Rc<PartitionLog<MemStorage>> {
        PartitionLog::open(
            storage.clone(),
            PathBuf::from(dir),
            config,
            BatchCache::new(TEST_CACHE_BYTES),
        )
        .await
        .expect("log opens")
    }

    /// `bytes` as the leader stores them: its base offset and partition
    /// leader epoch written in.
    fn as_leader_stored(mut bytes: Vec<u8>, base_offset: i64, epoch: i32) -> (BatchHeader, Bytes) {
        let head = batch::patched_head(&bytes, Offset(base_offset), LeaderEpoch(epoch));
        bytes[..PATCHED_HEAD_BYTES].copy_from_slice(&head);
        let bytes = Bytes::from(bytes);
        let header = batch::validate(&bytes, usize::MAX).expect("still a valid batch");
        (header, bytes)
    }

    fn leader_batch(
        options: BuildBatch,
        base_offset: i64,
        epoch: i32,
        values: &[&[u8]],
    ) -> (BatchHeader, Bytes) {
        as_leader_stored(batch::build_batch_with(options, values), base_offset, epoch)
    }

    fn plain(base_offset: i64, epoch: i32, values: &[&[u8]]) -> (BatchHeader, Bytes) {
        leader_batch(BuildBatch::default(), base_offset, epoch, values)
    }

    fn concat(batches: &[(BatchHeader, Bytes)]) -> Vec<u8> {
        batches
            .iter()
            .flat_map(|(_, bytes)| bytes.iter().copied())
            .collect()
    }

    /// Every byte of the log from its start to its end, as reads return it.
    async fn read_all(log: &PartitionLog<MemStorage>) -> Vec<u8> {
        let offsets = log.offsets();
        let mut out = Vec::new();
        let mut next = offsets.log_start;
        while next < offsets.leo {
            let read = log
                .read(next, TEST_READ_BYTES, i64::MAX)
                .await
                .expect("read");
            assert!(read.next_offset > next, "read at {next} made no progress");
            for chunk in &read.chunks {
                out.extend_from_slice(chunk);
            }
            next = read.next_offset;
        }
        out
    }

    /// The `leader-epoch-checkpoint` on disk now.
    async fn checkpoint_text(storage: &MemStorage, dir: &str) -> String {
        let bytes = storage
            .read_small(&Path::new(dir).join(EPOCH_CHECKPOINT_FILE), 1024)
            .await
            .expect("checkpoint written");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn not_contiguous(result: Result<Appended, AppendError>) -> (i64, i64) {
        match result {
            Err(AppendError::NotContiguous { expected, got }) => (expected, got),
            other => panic!("expected NotContiguous, got {other:?}"),
        }
    }

    #[test]
    fn replica_batches_are_stored_verbatim_with_the_leaders_epochs() {
        run(|| async {
            let storage = MemStorage::new(1);
            let dir = "/data/replica-verbatim";
            let log = open_log(&storage, dir, LogConfig::default()).await;
            let first = vec![
                plain(0, 3, &[b"a", b"b", b"c"]),
                plain(3, 3, &[b"d", b"e"]),
                plain(5, 5, &[b"f"]),
            ];
            let appended = log.append_replica(&first).await.expect("contiguous");
            assert_eq!(appended.base_offset, Offset(0));
            assert_eq!(appended.last_offset, Offset(5));
            assert!(!appended.duplicate);
            // Written before the append returned, not at close.
            assert_eq!(checkpoint_text(&storage, dir).await, "0\n2\n3 0\n5 5\n");
            let second = vec![plain(6, 5, &[b"g", b"h"])];
            let appended = log.append_replica(&second).await.expect("contiguous");
            assert_eq!(appended.base_offset, Offset(6));
            assert_eq!(appended.last_offset, Offset(7));
            // The follower's high watermark is the leader's, not its log end.
            assert_eq!(log.offsets().leo, 8);
            assert_eq!(log.offsets().hw, 0);
            log.set_high_watermark(6);
            log.append_replica(&[plain(8, 5, &[b"i"])])
                .await
                .expect("contiguous");
            assert_eq!(log.offsets().hw, 6);
            assert_eq!(log.leader_epochs(), vec![(3, 0), (5, 5)]);
            assert_eq!(log.latest_epoch(), Some(5));

            let all: Vec<_> = first
                .iter()
                .chain(&second)
                .cloned()
                .chain([plain(8, 5, &[b"i"])])
                .collect();
            let expected = concat(&all);
            let stored = read_all(&log).await;
            assert_eq!(stored, expected);
            let read_back = batch::split_and_validate(&Bytes::from(stored), usize::MAX)
                .expect("batches read back validate");
            let placed: Vec<(i64, i32)> = read_back
                .iter()
                .map(|(header, _)| (header.base_offset, header.leader_epoch))
                .collect();
            assert_eq!(placed, vec![(0, 3), (3, 3), (5, 5), (6, 5), (8, 5)]);

            log.close().await.expect("close");
            drop(log);
            assert_eq!(checkpoint_text(&storage, dir).await, "0\n2\n3 0\n5 5\n");
            let reopened = open_log(&storage.snapshot(), dir, LogConfig::default()).await;
            assert_eq!(reopened.leader_epochs(), vec![(3, 0), (5, 5)]);
            assert_eq!(reopened.offsets().leo, 9);
            // Read from disk now: still the leader's bytes.
            assert_eq!(read_all(&reopened).await, expected);
            reopened
                .append_replica(&[plain(9, 6, &[b"j"])])
                .await
                .expect("continues at the log end");
            assert_eq!(reopened.leader_epochs(), vec![(3, 0), (5, 5), (6, 9)]);
        });
    }

    #[test]
    fn replica_gaps_and_overlaps_append_nothing() {
        run(|| async {
            let storage = MemStorage::new(2);
            let log = open_log(&storage, "/data/replica-gap", LogConfig::default()).await;
            let first = vec![plain(0, 2, &[b"a", b"b", b"c"])];
            log.append_replica(&first).await.expect("contiguous");
            // The second batch leaves a gap: the first, fine on its own, is
            // not appended either, nor is its newer epoch recorded.
            let gap = vec![plain(3, 4, &[b"d"]), plain(5, 4, &[b"e"])];
            assert_eq!(not_contiguous(log.append_replica(&gap).await), (4, 5));
            let overlap = vec![plain(2, 4, &[b"x"])];
            assert_eq!(not_contiguous(log.append_replica(&overlap).await), (3, 2));
            // A header that does not match its bytes' offset.
            let (mut header, bytes) = plain(2, 4, &[b"x"]);
            header.base_offset = 3;
            assert_eq!(
                not_contiguous(log.append_replica(&[(header, bytes)]).await),
                (3, 2)
            );
            assert_eq!(log.offsets().leo, 3);
            assert_eq!(log.leader_epochs(), vec![(2, 0)]);
            assert_eq!(read_all(&log).await, concat(&first));
            let next = vec![plain(3, 4, &[b"d"])];
            log.append_replica(&next).await.expect("contiguous");
            assert_eq!(log.leader_epochs(), vec![(2, 0), (4, 3)]);
            let all: Vec<_> = first.iter().chain(&next).cloned().collect();
            assert_eq!(read_all(&log).await, concat(&all));
        });
    }

    #[test]
    fn producer_state_built_by_replica_appends_carries_over_to_leading() {
        run(|| async {
            let storage = MemStorage::new(3);
            let log = open_log(&storage, "/data/replica-producers", LogConfig::default()).await;
            let producer = BuildBatch {
                producer_id: 7,
                producer_epoch: 0,
                base_sequence: 0,
                ..BuildBatch::default()
            };
            let values: &[&[u8]] = &[b"a", b"b", b"c"];
            log.append_replica(&[leader_batch(producer, 0, 1, values)])
                .await
                .expect("contiguous");
            // The producer retries with this replica, now the leader: its
            // own bytes, as it first sent them.
            let retry = Bytes::from(batch::build_batch_with(producer, values));
            let retry = batch::split_and_validate(&retry, usize::MAX).expect("valid");
            let appended = log.append(&retry).expect("a duplicate is answered");
            assert!(appended.duplicate);
            assert_eq!(appended.base_offset, Offset(0));
            assert_eq!(appended.last_offset, Offset(2));
            assert_eq!(log.offsets().leo, 3);
            let skipped = Bytes::from(batch::build_batch_with(
                BuildBatch {
                    base_sequence: 4,
                    ..producer
                },
                &[b"e"],
            ));
            let skipped = batch::split_and_validate(&skipped, usize::MAX).expect("valid");
            assert!(matches!(
                log.append(&skipped),
                Err(AppendError::Producer(ProducerError::OutOfOrderSequence {
                    expected: 3,
                    got: 4
                }))
            ));

            // A transaction opened on the leader stays open here until the
            // leader's marker ends it.
            let transactional = BuildBatch {
                producer_id: 9,
                producer_epoch: 2,
                base_sequence: 0,
                attributes: attributes::TRANSACTIONAL,
                ..BuildBatch::default()
            };
            log.append_replica(&[leader_batch(transactional, 3, 1, &[b"t"])])
                .await
                .expect("contiguous");
            log.set_high_watermark(4);
            assert_eq!(log.ongoing_txn_first_offset(9), Some(3));
            assert_eq!(log.offsets().lso, 3);
            let marker = TxnMarker {
                producer_id: 9,
                producer_epoch: 2,
                commit: false,
                coordinator_epoch: 0,
                transaction_version: 0,
            };
            let marker = as_leader_stored(txn::build_control_batch(&marker, 0), 4, 1);
            log.append_replica(&[marker]).await.expect("contiguous");
            log.set_high_watermark(5);
            assert_eq!(log.ongoing_txn_first_offset(9), None);
            assert_eq!(log.offsets().lso, 5);
            assert_eq!(
                log.aborted_txns(0, 5).await.expect("aborted index"),
                vec![AbortedTxn {
                    producer_id: 9,
                    first_offset: 3,
                    last_offset: 4,
                    last_stable_offset: 5,
                }]
            );
        });
    }

    #[test]
    fn end_offsets_for_epochs_follow_kafka() {
        let epochs = [(3, 0), (5, 5), (7, 10)];
        let leo = 12;
        // The latest epoch ends at the log end.
        assert_eq!(epoch_end_offset(&epochs, leo, 7), (7, 12));
        // Newer than every epoch here: unknown.
        assert_eq!(epoch_end_offset(&epochs, leo, 8), (-1, -1));
        // An epoch of the list ends where the next starts.
        assert_eq!(epoch_end_offset(&epochs, leo, 5), (5, 10));
        assert_eq!(epoch_end_offset(&epochs, leo, 3), (3, 5));
        // Between two epochs: the older one's end, under its number.
        assert_eq!(epoch_end_offset(&epochs, leo, 4), (3, 5));
        assert_eq!(epoch_end_offset(&epochs, leo, 6), (5, 10));
        // Older than every epoch: the asked epoch ends at the first start.
        assert_eq!(epoch_end_offset(&epochs, leo, 1), (1, 0));
        assert_eq!(
            epoch_end_offset(&epochs, leo, UNDEFINED_EPOCH),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );
        assert_eq!(
            epoch_end_offset(&[], leo, 3),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );

        run(|| async {
            let storage = MemStorage::new(4);
            let log = open_log(&storage, "/data/replica-epochs", LogConfig::default()).await;
            // A new log: epoch 0 from its start, ending at its end.
            assert_eq!(log.end_offset_for_epoch(0), (0, 0));
            log.append_replica(&[plain(0, 3, &[b"a", b"b"]), plain(2, 5, &[b"c"])])
                .await
                .expect("contiguous");
            assert_eq!(log.leader_epochs(), vec![(3, 0), (5, 2)]);
            assert_eq!(log.end_offset_for_epoch(5), (5, 3));
            assert_eq!(log.end_offset_for_epoch(4), (3, 2));
            assert_eq!(log.end_offset_for_epoch(2), (2, 0));
            assert_eq!(log.end_offset_for_epoch(6), (-1, -1));
            // Truncating everything away leaves no epochs.
            log.truncate_to(0).await.expect("truncate");
            assert_eq!(log.leader_epochs(), vec![]);
            assert_eq!(log.latest_epoch(), None);
            assert_eq!(log.end_offset_for_epoch(3), (-1, -1));
            log.append_replica(&[plain(0, 6, &[b"d"])])
                .await
                .expect("contiguous");
            assert_eq!(log.leader_epochs(), vec![(6, 0)]);
            assert_eq!(log.end_offset_for_epoch(6), (6, 1));
        });
    }

    /// A follower's truncation awaits between deciding where the log ends
    /// and cutting it. Appends that came in meanwhile were staged on the
    /// old end, answered, and then reset away by the truncation (or written
    /// while the file was being cut): a newer leader's fetcher truncating
    /// while an older one's batches were still being applied.
    #[test]
    fn appends_wait_for_a_truncation_in_progress() {
        /// Scheduler turns given to the other tasks: far more than they
        /// need to reach their next await on the in-memory disk.
        const TURNS: usize = 50;
        run(|| async {
            let storage = MemStorage::new(6);
            let log = open_log(&storage, "/data/truncate-race", LogConfig::default()).await;
            let kept = vec![plain(0, 3, &[b"a", b"b"])];
            let cut = vec![plain(2, 3, &[b"c"])];
            log.append_replica(&kept).await.expect("contiguous");
            log.append_replica(&cut).await.expect("contiguous");
            // Written out, so the truncation need not wait for the writer.
            log.wait_durable(3).await.expect("durable");
            // The truncation stops at this lock, half done.
            let held = log
                .txn_index_lock
                .acquire_permit(1)
                .await
                .expect("lock is open");
            let truncation = glommio::spawn_local({
                let log = Rc::clone(&log);
                async move { log.truncate_to(2).await }
            });
            for _ in 0..TURNS {
                futures_lite::future::yield_now().await;
            }
            // A leader's append is refused, retriably.
            let refused = log.append(&[plain(0, 4, &[b"new"])]);
            assert!(
                matches!(refused, Err(AppendError::Truncating)),
                "{refused:?}"
            );
            // An older leader's batch, continuing the end being cut, waits.
            let late = glommio::spawn_local({
                let log = Rc::clone(&log);
                async move { log.append_replica(&[plain(3, 3, &[b"late"])]).await }
            });
            for _ in 0..TURNS {
                futures_lite::future::yield_now().await;
            }
            assert_eq!(log.offsets().leo, 3, "nothing staged during the cut");
            drop(held);
            truncation.await.expect("truncate");
            let late = late.await;
            assert!(
                matches!(
                    late,
                    Err(AppendError::NotContiguous {
                        expected: 2,
                        got: 3
                    })
                ),
                "{late:?}"
            );
            assert_eq!(log.offsets().leo, 2);
            assert_eq!(read_all(&log).await, concat(&kept));
            // The log takes appends again where the truncation left it.
            log.append_replica(&[plain(2, 4, &[b"d"])])
                .await
                .expect("continues at 2");
            assert_eq!(log.offsets().leo, 3);
        });
    }

    /// The syncer captures a recovery point when its round starts and
    /// writes it after the sync; a truncation in between (a follower
    /// cutting what its new leader lacks) must not let that point be
    /// written, or a restart resumes inside a batch written since, cuts
    /// the log there and claims an offset it no longer holds (seen in the
    /// fault harness: a follower whose restarted log began its next fetch
    /// one offset late, and never caught up).
    #[test]
    fn a_recovery_point_captured_before_a_truncation_is_never_written() {
        run(|| async {
            let storage = MemStorage::new(11);
            let dir = "/data/stale-point";
            let config = LogConfig::default();
            let log = open_log(&storage, dir, config.clone()).await;
            let old = vec![plain(0, 1, &[b"a", b"b"]), plain(2, 1, &[b"c", b"d"])];
            log.append_replica(&old).await.expect("appends");
            log.wait_durable(4).await.expect("durable");
            let stale = log.inner.borrow().capture_recovery_point();
            assert_eq!(stale.point.next_offset, 4);

            log.truncate_to(2).await.expect("truncate");
            // A longer batch now covers where the old log ended.
            let big = vec![b'x'; 300];
            let new = vec![plain(2, 2, &[&big]), plain(3, 2, &[b"y", b"z"])];
            log.append_replica(&new)
                .await
                .expect("appends after the cut");
            log.wait_durable(5).await.expect("durable");
            log.write_recovery_point(stale).await;

            // A crash now: the log reopened from what is on disk holds
            // exactly what was appended, and ends where it did.
            let reopened = open_log(&storage.snapshot(), dir, config).await;
            assert_eq!(reopened.offsets().leo, 5);
            let all: Vec<_> = old[..1].iter().chain(&new).cloned().collect();
            assert_eq!(read_all(&reopened).await, concat(&all));
        });
    }

    /// A log whose batches are on disk only (a cache too small to keep
    /// any once written), with an index entry for its first batch alone,
    /// holding `count` one-record batches of `value_len` bytes.
    async fn log_on_disk_only(
        storage: &MemStorage,
        dir: &str,
        count: i64,
        value_len: usize,
    ) -> (Rc<PartitionLog<MemStorage>>, Vec<(BatchHeader, Bytes)>) {
        log_on_disk_with(storage, dir, count, value_len, BatchCache::new(0)).await
    }

    async fn log_on_disk_with(
        storage: &MemStorage,
        dir: &str,
        count: i64,
        value_len: usize,
        cache: Rc<BatchCache>,
    ) -> (Rc<PartitionLog<MemStorage>>, Vec<(BatchHeader, Bytes)>) {
        let config = LogConfig {
            index_interval_bytes: 1 << 20,
            ..LogConfig::default()
        };
        log_on_disk_configured(storage, dir, count, value_len, cache, config).await
    }

    /// `count` single-record batches of `value_len` bytes, appended and
    /// durable, in a log of `config`.
    async fn log_on_disk_configured(
        storage: &MemStorage,
        dir: &str,
        count: i64,
        value_len: usize,
        cache: Rc<BatchCache>,
        config: LogConfig,
    ) -> (Rc<PartitionLog<MemStorage>>, Vec<(BatchHeader, Bytes)>) {
        let log = PartitionLog::open(storage.clone(), PathBuf::from(dir), config, cache)
            .await
            .expect("log opens");
        let value = vec![b'v'; value_len];
        let batches: Vec<_> = (0..count)
            .map(|offset| plain(offset, 1, &[&value]))
            .collect();
        log.append_replica(&batches).await.expect("appends");
        log.wait_durable(count).await.expect("durable");
        (log, batches)
    }

    /// Lets detached tasks (read-ahead) run.
    async fn let_tasks_run() {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }

    /// A reader behind the cache finds each next batch read before it
    /// asks; each batch is read from disk once, and once the reader has
    /// caught up nothing read ahead is left held.
    #[test]
    fn a_reader_behind_the_cache_has_its_next_batches_read_ahead() {
        run(|| async {
            const BATCHES: i64 = 40;
            let storage = MemStorage::new(15);
            let cache = BatchCache::with_read_ahead(0, 1 << 20, READ_AHEAD_KEEP);
            let (log, batches) =
                log_on_disk_with(&storage, "/data/ahead", BATCHES, 200, Rc::clone(&cache)).await;
            let before = storage.reads();
            let mut out = Vec::new();
            for offset in 0..BATCHES {
                let read = log.read(offset, 1, i64::MAX).await.expect("read");
                assert_eq!(read.next_offset, offset + 1);
                out.extend_from_slice(&read.chunks.concat());
                let_tasks_run().await;
            }
            assert_eq!(out, concat(&batches));
            assert_eq!(cache.read_ahead_hits(), BATCHES as u64 - 1);
            assert_eq!(storage.reads() - before, BATCHES as u64);
            assert_eq!(cache.read_ahead_bytes(), 0);
        });
    }

    /// With the read-ahead budget spent, a new read-ahead is not made while
    /// the others are fresh, and takes back the oldest one left unclaimed
    /// past the keep time; that one's reader then reads from disk,
    /// correctly.
    #[test]
    fn a_full_read_ahead_budget_takes_back_only_unclaimed_ones() {
        run(|| async {
            const KEEP: Duration = Duration::from_millis(50);
            let storage = MemStorage::new(16);
            let budget = DISK_READ_BYTES_MIN;
            let cache = BatchCache::with_read_ahead(0, budget, KEEP);
            let mut logs = Vec::new();
            for name in ["/data/ahead-1", "/data/ahead-2", "/data/ahead-3"] {
                // Over 16 KiB each: one read-ahead fills the budget.
                logs.push(log_on_disk_with(&storage, name, 100, 200, Rc::clone(&cache)).await);
            }
            let [(first, first_batches), (second, _), (third, third_batches)] = &logs[..] else {
                unreachable!("three logs")
            };
            first.read(0, 1, i64::MAX).await.expect("read");
            let_tasks_run().await;
            let first_held = cache.read_ahead_bytes();
            assert!(
                first_held > 0,
                "the first log's next batches are read ahead"
            );
            // No room, and the first one's are fresh: none for the second.
            second.read(0, 1, i64::MAX).await.expect("read");
            let_tasks_run().await;
            assert_eq!(cache.read_ahead_bytes(), first_held);
            // Left unclaimed past the keep time, they make way for the third.
            glommio::timer::sleep(KEEP * 2).await;
            third.read(0, 1, i64::MAX).await.expect("read");
            let_tasks_run().await;
            assert!(cache.read_ahead_bytes() <= budget);
            let hits = cache.read_ahead_hits();
            let read = third.read(1, 1, i64::MAX).await.expect("read");
            assert_eq!(
                cache.read_ahead_hits(),
                hits + 1,
                "the third reader's were read ahead"
            );
            assert_eq!(read.chunks.concat(), third_batches[1].1.to_vec());
            let read = first.read(1, 1, i64::MAX).await.expect("read");
            assert_eq!(
                cache.read_ahead_hits(),
                hits + 1,
                "taken back: read from disk"
            );
            assert_eq!(read.chunks.concat(), first_batches[1].1.to_vec());
        });
    }

    /// A consumer reading a partition from disk in order: each read starts
    /// where the one before ended, in one read of the disk, instead of at
    /// the index entry before it and header by header from there.
    #[test]
    fn a_reader_going_on_from_disk_reads_the_disk_once_per_read() {
        run(|| async {
            const BATCHES: i64 = 40;
            let storage = MemStorage::new(13);
            let (log, batches) = log_on_disk_only(&storage, "/data/cursor", BATCHES, 200).await;
            let before = storage.reads();
            let mut out = Vec::new();
            for offset in 0..BATCHES {
                // One byte asked for: one batch returned per read.
                let read = log.read(offset, 1, i64::MAX).await.expect("read");
                assert_eq!(read.next_offset, offset + 1);
                for chunk in &read.chunks {
                    out.extend_from_slice(chunk);
                }
            }
            assert_eq!(out, concat(&batches));
            assert_eq!(storage.reads() - before, BATCHES as u64);
        });
    }

    /// A batch larger than what the reader asked for is sent whole (KIP-74).
    /// With the default index interval every such batch has an index entry
    /// and the next one too (or ends the segment), so the read knows its
    /// size: one read of the
    /// disk each, whether it starts at an index entry (reads in no order)
    /// or where the previous read ended (reads in order). Without the
    /// extent each read took the limit's worth first, then the batch again.
    #[test]
    fn a_batch_larger_than_the_limit_is_read_from_disk_once() {
        run(|| async {
            const BATCHES: i64 = 12;
            // Larger than the shortest disk read, so a read of the limit's
            // worth comes short of it.
            const VALUE_BYTES: usize = DISK_READ_BYTES_MIN + 4096;
            let storage = MemStorage::new(21);
            // The default index interval, an entry every 4 KiB of log.
            let (log, batches) = log_on_disk_configured(
                &storage,
                "/data/large",
                BATCHES,
                VALUE_BYTES,
                BatchCache::new(0),
                LogConfig::default(),
            )
            .await;
            // Every other batch, then the rest: each read starts at an index
            // entry (or the segment's start), none where one ended.
            let scattered: Vec<i64> = (0..BATCHES)
                .step_by(2)
                .chain((1..BATCHES).step_by(2))
                .collect();
            for pass in ["scattered", "in order"] {
                let offsets: Vec<i64> = if pass == "scattered" {
                    scattered.clone()
                } else {
                    (0..BATCHES).collect()
                };
                for offset in offsets {
                    let before = storage.reads();
                    let read = log.read(offset, 1, i64::MAX).await.expect("read");
                    assert_eq!(
                        read.chunks.concat(),
                        batches[offset as usize].1.to_vec(),
                        "{pass}: batch {offset}"
                    );
                    assert_eq!(read.next_offset, offset + 1);
                    // The last one too: it ends where the segment does.
                    assert_eq!(storage.reads() - before, 1, "{pass}: batch {offset}");
                }
            }
        });
    }

    /// A timestamp lookup walks the batch headers after its time index
    /// entry in reads of `TIMESTAMP_SCAN_READ_BYTES`, not one read per
    /// header, and still finds the first batch reaching the timestamp.
    #[test]
    fn a_timestamp_lookup_reads_the_headers_it_walks_together() {
        run(|| async {
            const BATCHES: i64 = 240;
            // Batches of each millisecond.
            const BATCHES_PER_MS: i64 = 40;
            const FIRST_MS: i64 = 1_000;
            let storage = MemStorage::new(22);
            let log = PartitionLog::open(
                storage.clone(),
                PathBuf::from("/data/times"),
                LogConfig::default(),
                BatchCache::new(0),
            )
            .await
            .expect("log opens");
            let value = vec![b't'; 1000];
            let batches: Vec<_> = (0..BATCHES)
                .map(|offset| {
                    let options = BuildBatch {
                        base_timestamp: FIRST_MS + offset / BATCHES_PER_MS,
                        ..BuildBatch::default()
                    };
                    leader_batch(options, offset, 1, &[&value])
                })
                .collect();
            log.append_replica(&batches).await.expect("appends");
            log.wait_durable(BATCHES).await.expect("durable");
            // Lookups see only what is below the high watermark.
            log.set_high_watermark(BATCHES);
            for ms in 0..BATCHES / BATCHES_PER_MS {
                let before = storage.reads();
                let found = log
                    .lookup(OffsetQuery::Timestamp(FIRST_MS + ms))
                    .await
                    .expect("lookup")
                    .expect("found");
                assert_eq!(found.offset, ms * BATCHES_PER_MS, "millisecond {ms}");
                assert_eq!(found.timestamp, FIRST_MS + ms);
                // However far back the walk starts (here the segment's
                // start: the time index has no entry before these
                // milliseconds, see the README), it reads the headers in
                // windows: the bytes up to the batch found, a window at a
                // time, and one more read where a header or the batch
                // found crosses a window's end. A read per header made it
                // 2, 42, 82, ... 202 reads.
                let reads = storage.reads() - before;
                let walked = (ms * BATCHES_PER_MS + 1) as usize * batches[0].1.len();
                let bound = (walked / TIMESTAMP_SCAN_READ_BYTES + 2) as u64;
                assert!(
                    reads <= bound,
                    "millisecond {ms}: {reads} reads, more than {bound}"
                );
            }
        });
    }

    /// A truncation moves the batches after it: where a reader's next batch
    /// was is forgotten, and the read finds the new batch there.
    #[test]
    fn a_truncation_moves_where_readers_go_on() {
        run(|| async {
            let storage = MemStorage::new(14);
            let cache = BatchCache::with_read_ahead(0, 1 << 20, READ_AHEAD_KEEP);
            let (log, old) = log_on_disk_with(&storage, "/data/cursor-cut", 10, 100, cache).await;
            for offset in 0..5 {
                log.read(offset, 1, i64::MAX).await.expect("read");
            }
            // Batch 5 is read ahead, then cut away.
            let_tasks_run().await;
            log.truncate_to(3).await.expect("truncate");
            // Longer batches: batch 5 no longer starts where it did.
            let value = vec![b'w'; 300];
            let new: Vec<_> = (3..8).map(|offset| plain(offset, 2, &[&value])).collect();
            log.append_replica(&new)
                .await
                .expect("appends after the cut");
            log.wait_durable(8).await.expect("durable");
            let read = log.read(5, 1, i64::MAX).await.expect("read");
            assert_eq!(read.chunks.concat(), new[2].1.to_vec());
            let all: Vec<_> = old[..3].iter().chain(&new).cloned().collect();
            assert_eq!(read_all(&log).await, concat(&all));
        });
    }

    /// A sync in flight across a truncation: the offset it was to make
    /// durable was cut away and the log now ends before it. Counting the
    /// sync raised the durable offset past the log end, and the next
    /// append's offset check stopped the shard (the long fault schedule,
    /// seed 58: a follower truncating while its syncer ran).
    #[test]
    fn a_sync_across_a_truncation_does_not_count() {
        run(|| async {
            let storage = MemStorage::new(12);
            let log = open_log(&storage, "/data/sync-truncate", LogConfig::default()).await;
            let old = vec![plain(0, 1, &[b"a", b"b"]), plain(2, 1, &[b"c", b"d"])];
            log.append_replica(&old).await.expect("appends");
            // Written (the new segment file synced with it) before any sync
            // is held: the truncation waits for an idle writer.
            glommio::timer::sleep(Duration::from_millis(20)).await;
            storage.hold_next_sync();
            let waiting = {
                let log = Rc::clone(&log);
                glommio::spawn_local(async move { log.wait_durable(4).await })
            };
            // Long enough for the syncer to start its sync.
            glommio::timer::sleep(Duration::from_millis(20)).await;
            assert_eq!(log.offsets().durable, 0, "the sync is held");
            log.truncate_to(2).await.expect("truncate");
            log.append_replica(&[plain(2, 2, &[b"x"])])
                .await
                .expect("appends after the cut");
            storage.release_sync();
            log.wait_durable(3).await.expect("durable");
            let offsets = log.offsets();
            assert!(
                offsets.durable <= offsets.leo,
                "durable {} past the log end {}",
                offsets.durable,
                offsets.leo
            );
            log.append_replica(&[plain(3, 2, &[b"y"])])
                .await
                .expect("appends on");
            log.wait_durable(4).await.expect("durable");
            drop(waiting);
        });
    }

    /// A sync waited for while the writer still holds a partial page back
    /// is that page's durable write when the write extends the file: the
    /// syncer finds it done and syncs nothing. A write inside the file (a
    /// small batch rewriting the padded last page) stays a write and an
    /// fdatasync. Either way what was waited for survives a power loss.
    #[test]
    fn durable_writes_go_through_zeros_written_ahead() {
        /// Appends of a page each, waited for one at a time: every tail
        /// write reaches a new page.
        const PAGE_APPENDS: i64 = 6;
        /// Small appends after them, inside the last page.
        const SMALL_APPENDS: i64 = 3;
        /// Zero fills the appends above may start (see below).
        const ZERO_FILLS_MAX: u64 = 2;
        /// Page appends before the zeros: past `ZERO_AHEAD_BYTES_MIN`.
        const WARM_UP_APPENDS: usize = 20;
        run(|| async {
            let storage = MemStorage::new(13);
            let dir = "/data/durable-write";
            let path = Path::new(dir).join(segment_file_name(0, "log"));
            let log = open_log(&storage, dir, LogConfig::default()).await;
            let mut batches = Vec::new();
            let mut append_and_wait = |value: Vec<u8>| {
                let log = Rc::clone(&log);
                let offset = batches.len() as i64;
                let batch = plain(offset, 1, &[&value]);
                batches.push(batch.clone());
                async move {
                    log.append_replica(std::slice::from_ref(&batch))
                        .await
                        .expect("appends");
                    log.wait_durable(offset + 1).await.expect("durable");
                }
            };
            let counts = |storage: &MemStorage| {
                (
                    storage.file_syncs(),
                    storage.durable_writes(),
                    storage.extending_writes(),
                )
            };
            // The first append creates the segment file (and syncs its
            // directory): its write extends the file and is the sync.
            let before_first = storage.durable_writes();
            append_and_wait(b"first".to_vec()).await;
            assert_eq!(
                storage.durable_writes() - before_first,
                1,
                "the first write, which extends the file, is a durable write"
            );
            // The next writes extend the file too, until enough is appended
            // to weigh the syncs against (`ZERO_AHEAD_BYTES_MIN`): a sync
            // for each page is frequent enough, so zeros are written past
            // the file's end beside a write. From then on every waited-for
            // write lands inside the file, on blocks already written, and
            // is synced apart.
            for _ in 0..WARM_UP_APPENDS {
                append_and_wait(vec![b's'; IO_ALIGNMENT as usize]).await;
            }
            let before = counts(&storage);
            for _ in 0..PAGE_APPENDS {
                append_and_wait(vec![b'p'; IO_ALIGNMENT as usize]).await;
            }
            for _ in 0..SMALL_APPENDS {
                append_and_wait(b"small".to_vec()).await;
            }
            let after = counts(&storage);
            let logical = log.size_bytes();
            let on_disk = storage.file_size(&path).expect("segment file");
            assert!(
                on_disk > align_up(logical),
                "the file reaches past the log ({on_disk} bytes for {logical})"
            );
            let appends = (PAGE_APPENDS + SMALL_APPENDS) as u64;
            let (syncs, durable_writes, extending) =
                (after.0 - before.0, after.1 - before.1, after.2 - before.2);
            // Only the zero fills extend the file: each fill doubles the
            // next one's size (64, 128 KiB), and so the room wanted before
            // a fill; the appends here need at most two. Without them every
            // page append would extend it.
            assert_eq!(durable_writes, 0, "durable writes ({syncs} fdatasyncs)");
            assert!(
                extending <= ZERO_FILLS_MAX,
                "{extending} writes extended the file, more than the zero fills"
            );
            assert_eq!(syncs, appends, "one fdatasync per waited-for append");
            let crashed = storage.crash();
            drop(log);
            let log = open_log(&crashed, dir, LogConfig::default()).await;
            assert_eq!(
                read_all(&log).await,
                concat(&batches),
                "what was waited for survives a power loss"
            );
            assert_eq!(
                crashed.file_size(&path).expect("segment file"),
                logical,
                "recovery cuts the zeros after the last batch"
            );
            // Appends go on at the right offsets, and a close leaves the
            // file at the log's size.
            let next = plain(batches.len() as i64, 1, &[b"after"]);
            log.append_replica(std::slice::from_ref(&next))
                .await
                .expect("appends after recovery");
            log.wait_durable(batches.len() as i64 + 1)
                .await
                .expect("durable");
            batches.push(next);
            let logical = log.size_bytes();
            log.close().await.expect("closes");
            drop(log);
            assert_eq!(crashed.file_size(&path).expect("segment file"), logical);
            let log = open_log(&crashed, dir, LogConfig::default()).await;
            assert_eq!(read_all(&log).await, concat(&batches));
        });
    }

    #[test]
    fn syncs_of_much_data_each_write_no_zeros_ahead() {
        /// Bytes of each batch's value.
        const VALUE_BYTES: usize = 32 * 1024;
        /// Batches appended between two waits for a sync: 128 KiB a sync,
        /// past `ZERO_AHEAD_BYTES_PER_SYNC_MAX`.
        const BATCHES_PER_SYNC: i64 = 4;
        /// Batches appended in all: about 1 MiB.
        const BATCHES: i64 = 32;
        run(|| async {
            let storage = MemStorage::new(17);
            let dir = "/data/rare-syncs";
            let path = Path::new(dir).join(segment_file_name(0, "log"));
            let log = open_log(&storage, dir, LogConfig::default()).await;
            let value = vec![b'v'; VALUE_BYTES];
            for offset in 0..BATCHES {
                let batch = plain(offset, 1, &[&value]);
                log.append_replica(std::slice::from_ref(&batch))
                    .await
                    .expect("appends");
                if (offset + 1) % BATCHES_PER_SYNC == 0 {
                    log.wait_durable(offset + 1).await.expect("durable");
                }
            }
            let logical = log.size_bytes();
            let on_disk = storage.file_size(&path).expect("segment file");
            assert!(
                on_disk <= align_up(logical),
                "zeros written ahead of syncs of {} KiB each: {on_disk} bytes for {logical}",
                BATCHES_PER_SYNC as usize * VALUE_BYTES / 1024
            );
        });
    }

    #[test]
    fn replica_appends_continue_after_truncation() {
        run(|| async {
            let storage = MemStorage::new(5);
            let dir = "/data/replica-truncate";
            // Small segments: the batches below span several.
            let config = LogConfig {
                segment_bytes: SEGMENT_BYTES_MIN,
                ..LogConfig::default()
            };
            let log = open_log(&storage, dir, config.clone()).await;
            let big = [b'x'; 700];
            let producer = BuildBatch {
                producer_id: 7,
                producer_epoch: 0,
                base_sequence: 0,
                ..BuildBatch::default()
            };
            let kept = vec![
                plain(0, 3, &[&big, &big]),
                plain(2, 3, &[&big]),
                plain(3, 5, &[&big, &big]),
            ];
            let cut = vec![
                leader_batch(producer, 5, 5, &[&big]),
                plain(6, 5, &[&big, &big]),
            ];
            log.append_replica(&kept).await.expect("contiguous");
            log.append_replica(&cut).await.expect("contiguous");
            assert!(log.segment_count() > 1);
            assert_eq!(log.leader_epochs(), vec![(3, 0), (5, 3)]);
            assert!(log.producers().iter().any(|info| info.producer_id == 7));
            log.set_high_watermark(7);

            // In the middle of epoch 5: epoch 5 stays, from where it started.
            log.truncate_to(5).await.expect("truncate");
            let offsets = log.offsets();
            assert_eq!((offsets.leo, offsets.hw), (5, 5));
            assert_eq!(log.leader_epochs(), vec![(3, 0), (5, 3)]);
            assert!(log.producers().iter().all(|info| info.producer_id != 7));
            assert_eq!(read_all(&log).await, concat(&kept));

            let other = vec![plain(5, 5, &[b"other"]), plain(6, 7, &[&big, b"y"])];
            log.append_replica(&other).await.expect("continues at 5");
            assert_eq!(log.leader_epochs(), vec![(3, 0), (5, 3), (7, 6)]);
            assert_eq!(log.end_offset_for_epoch(5), (5, 6));
            assert_eq!(log.end_offset_for_epoch(7), (7, 8));
            assert_eq!(log.offsets().hw, 5);
            let all: Vec<_> = kept.iter().chain(&other).cloned().collect();
            assert_eq!(read_all(&log).await, concat(&all));

            // Before epoch 5 started: its entry goes, on disk too.
            log.truncate_to(2).await.expect("truncate");
            assert_eq!(log.offsets().leo, 2);
            assert_eq!(log.leader_epochs(), vec![(3, 0)]);
            assert_eq!(log.end_offset_for_epoch(5), (-1, -1));
            assert_eq!(checkpoint_text(&storage, dir).await, "0\n1\n3 0\n");
            log.close().await.expect("close");
            drop(log);
            let reopened = open_log(&storage.snapshot(), dir, config).await;
            assert_eq!(reopened.leader_epochs(), vec![(3, 0)]);
            assert_eq!(reopened.offsets().leo, 2);
            assert_eq!(read_all(&reopened).await, concat(&kept[..1]));
            let last = vec![plain(2, 8, &[b"z"])];
            reopened
                .append_replica(&last)
                .await
                .expect("continues at 2");
            assert_eq!(reopened.leader_epochs(), vec![(3, 0), (8, 2)]);
            let all: Vec<_> = kept[..1].iter().chain(&last).cloned().collect();
            assert_eq!(read_all(&reopened).await, concat(&all));
        });
    }

    #[test]
    fn a_log_created_at_an_offset_takes_replica_batches_from_there() {
        run(|| async {
            let storage = MemStorage::new(5);
            let dir = PathBuf::from("/data/created-at");
            let log = PartitionLog::create_at(
                storage.clone(),
                dir.clone(),
                LogConfig::default(),
                BatchCache::new(TEST_CACHE_BYTES),
                500,
            )
            .await
            .expect("created");
            let offsets = log.offsets();
            assert_eq!((offsets.log_start, offsets.leo), (500, 500));
            let batches = vec![plain(500, 4, &[b"a", b"b"]), plain(502, 4, &[b"c"])];
            log.append_replica(&batches)
                .await
                .expect("continues at 500");
            assert_eq!(log.offsets().leo, 503);
            assert_eq!(read_all(&log).await, concat(&batches));
            log.close().await.expect("close");
            drop(log);
            let reopened = open_log(
                &storage.snapshot(),
                "/data/created-at",
                LogConfig::default(),
            )
            .await;
            assert_eq!(reopened.offsets().log_start, 500);
            assert_eq!(reopened.offsets().leo, 503);
            assert!(
                PartitionLog::create_at(
                    storage.clone(),
                    dir,
                    LogConfig::default(),
                    BatchCache::new(TEST_CACHE_BYTES),
                    9,
                )
                .await
                .is_err(),
                "a directory with a log is refused"
            );
        });
    }

    /// Snapshots written before transactions existed (frame version 1) are
    /// still read, with no open transaction; new ones round-trip the
    /// transaction state.
    #[test]
    fn producer_snapshots_of_both_versions_decode() {
        let range = SequenceRange {
            first_sequence: 3,
            last_sequence: 5,
            base_offset: 40,
        };
        let old = ProducerSnapshotV1 {
            offset: 100,
            producers: vec![(
                7,
                ProducerEntryV1 {
                    epoch: 2,
                    batches: VecDeque::from([range]),
                    last_timestamp: 99,
                },
            )],
        };
        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&old).expect("encode");
        let frame = encode_checkpoint_version(&payload, CHECKPOINT_VERSION);
        let (version, payload) = decode_checkpoint_version(&frame).expect("frame");
        let (offset, state) = decode_producer_snapshot(version, payload).expect("decode");
        assert_eq!(offset, 100);
        let entry = &state.producers[&7];
        assert_eq!(entry.epoch, 2);
        assert_eq!(entry.batches, VecDeque::from([range]));
        assert_eq!(entry.txn_first_offset, None);
        assert_eq!(entry.coordinator_epoch, -1);
        assert_eq!(state.first_unstable_offset(), None);

        let current = ProducerState::from_entries([(
            9,
            ProducerEntry {
                epoch: 4,
                txn_first_offset: Some(77),
                coordinator_epoch: 3,
                ..ProducerEntry::default()
            },
        )]);
        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&ProducerSnapshot::of(80, &current))
            .expect("encode");
        let frame = encode_checkpoint_version(&payload, PRODUCER_SNAPSHOT_VERSION);
        let (version, payload) = decode_checkpoint_version(&frame).expect("frame");
        let (offset, state) = decode_producer_snapshot(version, payload).expect("decode");
        assert_eq!(offset, 80);
        assert_eq!(state, current);
        assert_eq!(state.first_unstable_offset(), Some(77));
        // The log-start checkpoint reader accepts version 1 frames only.
        assert!(decode_checkpoint(&frame).is_none());
    }

    /// A delta of a record as one varint byte (zigzag), as `read_varint`
    /// reads it: small enough that it takes the place of the zero delta
    /// `build_batch` wrote without moving a byte after it.
    fn one_byte_varint(delta: i8) -> u8 {
        let zigzag = (i64::from(delta) << 1) ^ (i64::from(delta) >> 63);
        u8::try_from(zigzag)
            .ok()
            .filter(|byte| *byte < 0x80)
            .expect("a delta within -64..=63")
    }

    /// A stored one-record batch whose record carries the given timestamp
    /// and offset deltas. The deltas are the producer's and the base offset
    /// lies outside the CRC, so a log may hold any of these.
    fn batch_with_deltas(
        base_offset: i64,
        base_timestamp: i64,
        timestamp_delta: i8,
        offset_delta: i8,
    ) -> (BatchHeader, Bytes) {
        let mut bytes = batch::build_batch(base_timestamp, &[b"v"]);
        // The record: its length (one byte for so short a record), the
        // attributes byte, then the two deltas.
        let timestamp_delta_at = BATCH_HEADER_BYTES + 2;
        let deltas = [
            (timestamp_delta_at, timestamp_delta),
            (timestamp_delta_at + 1, offset_delta),
        ];
        for (at, delta) in deltas {
            assert_eq!(bytes[at], 0, "build_batch wrote a zero delta at {at}");
            bytes[at] = one_byte_varint(delta);
        }
        let crc = batch::compute_crc(&bytes);
        bytes[batch::CRC_AT..batch::ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        as_leader_stored(bytes, base_offset, 0)
    }

    /// Found by fuzzing: ListOffsets by timestamp added a batch's base
    /// offset and a record's offset delta unchecked, and overflowed.
    #[test]
    fn a_record_offset_past_the_offset_range_is_no_timestamp_answer() {
        let (header, bytes) = batch_with_deltas(i64::MAX - 1, 1_000, 0, 1);
        assert_eq!(
            first_record_at_or_after(&bytes, &header, 1_000),
            Some(FoundOffset {
                offset: i64::MAX,
                timestamp: 1_000
            })
        );
        for (base_offset, offset_delta) in [(i64::MAX, 1), (i64::MIN, -1)] {
            let (header, bytes) = batch_with_deltas(base_offset, 1_000, 0, offset_delta);
            assert_eq!(first_record_at_or_after(&bytes, &header, 1_000), None);
        }
    }

    /// Found by fuzzing: the same lookup added a batch's base timestamp and
    /// a record's timestamp delta unchecked, and overflowed.
    #[test]
    fn a_record_timestamp_past_the_timestamp_range_is_no_timestamp_answer() {
        let (header, bytes) = batch_with_deltas(5, i64::MAX - 1, 1, 0);
        assert_eq!(
            first_record_at_or_after(&bytes, &header, i64::MAX),
            Some(FoundOffset {
                offset: 5,
                timestamp: i64::MAX
            })
        );
        for (base_timestamp, timestamp_delta) in [(i64::MAX, 1), (i64::MIN, -1)] {
            let (header, bytes) = batch_with_deltas(5, base_timestamp, timestamp_delta, 0);
            for target in [i64::MIN, 0, i64::MAX] {
                assert_eq!(first_record_at_or_after(&bytes, &header, target), None);
            }
        }
    }
}
