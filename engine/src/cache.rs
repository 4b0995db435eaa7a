//! The per-shard batch cache: recent batches of every partition on the shard,
//! held as `Bytes` slices of the frames they arrived in, so tailing consumers
//! and followers (on any shard) are served without a disk read or a copy.
//!
//! Each partition keeps its cached batches as a contiguous tail of its log;
//! the shard keeps one queue of insertions across partitions and a byte
//! budget. Over budget, the oldest insertion's partition drops its oldest
//! batch. For an append-only log, least recently appended is least recently
//! used for tailing readers; readers of old data go to disk. A batch not yet
//! written to disk is pinned: the budget may be exceeded until the writer
//! catches up, and the writer's own bound (`UNWRITTEN_BYTES_MAX`) caps that.
//!
//! Readers behind the cache get their next batches read from disk before
//! they ask (`PartitionLog::read`); the cache grants those reads their
//! memory from a budget of its own, a quarter of the batch budget. When a
//! new one does not fit, read-aheads done and left unclaimed for
//! `READ_AHEAD_KEEP` are taken back, oldest first; fresh ones stay and the
//! new one is not made. (Taking back the oldest regardless would, with more
//! partitions being read than the budget holds, drop each just before its
//! reader came for it, and every batch would be read twice.)

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::open_files::OpenFiles;

/// Something that holds cached batches and can give up its oldest one.
pub trait CacheOwner {
    /// Drops the cached batch with sequence `sequence` if it is still the
    /// oldest and already on disk. Returns `Evicted` if dropped, `Gone` if it
    /// was already dropped, `Pinned` if it must stay.
    fn evict(&self, sequence: u64) -> Eviction;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    Evicted,
    Gone,
    Pinned,
}

/// Bytes read ahead for a reader, which the cache may take back.
pub trait ReadAheadHolder {
    /// Drops the bytes read ahead if the read is done and they have waited
    /// for their reader at least `unclaimed_for`.
    fn give_up(&self, unclaimed_for: Duration) -> GiveUp;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// The bytes were dropped.
    Released,
    /// The read is still in flight, or done too recently; its bytes stay.
    Busy,
    /// Nothing is held (taken by the reader, or the read failed).
    Empty,
}

/// Memory granted to one read-ahead, given back when dropped.
pub struct ReadAheadGrant {
    cache: Weak<BatchCache>,
    bytes: usize,
}

impl Drop for ReadAheadGrant {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.upgrade() {
            let used = cache.read_ahead_used.get();
            cache.read_ahead_used.set(used.saturating_sub(self.bytes));
        }
    }
}

/// The share of the batch budget read-ahead may hold besides it: 1/4.
const READ_AHEAD_SHARE_DIVISOR: usize = 4;

/// How long bytes read ahead wait for their reader before another read-ahead
/// may take their memory: a consumer reading from disk comes back within
/// its fetch round trip (Kafka's `fetch.max.wait.ms` is 500 ms by default).
pub const READ_AHEAD_KEEP: Duration = Duration::from_secs(2);

/// Holders listed before the list is swept of dropped ones, at least.
const READ_AHEAD_HOLDERS_SWEEP_MIN: usize = 1024;

struct Insertion {
    owner: Weak<dyn CacheOwner>,
    sequence: u64,
    bytes: usize,
}

/// One shard's cache accounting.
pub struct BatchCache {
    budget_bytes: usize,
    used_bytes: Cell<usize>,
    insertions: RefCell<VecDeque<Insertion>>,
    next_sequence: Cell<u64>,
    /// Log reads served from the cache and from disk, for the hit ratio
    /// the metrics report.
    reads_from_cache: Cell<u64>,
    reads_from_disk: Cell<u64>,
    read_ahead_budget: usize,
    read_ahead_used: Cell<usize>,
    /// Every read-ahead granted, oldest first; dropped ones are swept out
    /// once the list passes `read_ahead_sweep_at`.
    read_aheads: RefCell<VecDeque<Weak<dyn ReadAheadHolder>>>,
    read_ahead_sweep_at: Cell<usize>,
    read_ahead_keep: Duration,
    /// Disk reads served from what was read ahead.
    read_ahead_hits: Cell<u64>,
    /// The shard's other budget every log draws on: its open segment
    /// files, a cache of descriptors.
    open_files: OpenFiles,
}

impl BatchCache {
    /// A cache of `budget_bytes` of batches, and a quarter of that for
    /// read-ahead.
    pub fn new(budget_bytes: usize) -> Rc<BatchCache> {
        BatchCache::with_read_ahead(
            budget_bytes,
            budget_bytes / READ_AHEAD_SHARE_DIVISOR,
            READ_AHEAD_KEEP,
        )
    }

    /// `read_ahead_keep`: how long bytes read ahead are kept for their
    /// reader against newer read-aheads.
    pub fn with_read_ahead(
        budget_bytes: usize,
        read_ahead_bytes: usize,
        read_ahead_keep: Duration,
    ) -> Rc<BatchCache> {
        Rc::new(BatchCache {
            budget_bytes,
            used_bytes: Cell::new(0),
            insertions: RefCell::new(VecDeque::new()),
            next_sequence: Cell::new(0),
            reads_from_cache: Cell::new(0),
            reads_from_disk: Cell::new(0),
            read_ahead_budget: read_ahead_bytes,
            read_ahead_used: Cell::new(0),
            read_aheads: RefCell::new(VecDeque::new()),
            read_ahead_sweep_at: Cell::new(READ_AHEAD_HOLDERS_SWEEP_MIN),
            read_ahead_keep,
            read_ahead_hits: Cell::new(0),
            open_files: OpenFiles::default(),
        })
    }

    /// Memory for `bytes` read ahead by `holder`, if the read-ahead budget
    /// has room, or taking back read-aheads left unclaimed makes it.
    pub fn grant_read_ahead(
        self: &Rc<Self>,
        holder: Weak<dyn ReadAheadHolder>,
        bytes: usize,
    ) -> Option<ReadAheadGrant> {
        if bytes > self.read_ahead_budget {
            return None;
        }
        // Each listed holder is asked at most once.
        let mut asks = self.read_aheads.borrow().len();
        while self.read_ahead_used.get() + bytes > self.read_ahead_budget {
            if asks == 0 {
                return None;
            }
            asks -= 1;
            let oldest = self.read_aheads.borrow_mut().pop_front()?;
            let Some(listed) = oldest.upgrade() else {
                continue;
            };
            if listed.give_up(self.read_ahead_keep) == GiveUp::Busy {
                self.read_aheads.borrow_mut().push_back(oldest);
            }
        }
        self.read_ahead_used.set(self.read_ahead_used.get() + bytes);
        let mut listed = self.read_aheads.borrow_mut();
        listed.push_back(holder);
        if listed.len() > self.read_ahead_sweep_at.get() {
            listed.retain(|holder| holder.strong_count() > 0);
            self.read_ahead_sweep_at
                .set((2 * listed.len()).max(READ_AHEAD_HOLDERS_SWEEP_MIN));
        }
        Some(ReadAheadGrant {
            cache: Rc::downgrade(self),
            bytes,
        })
    }

    /// The shard's open segment files (unbounded until `set_max`).
    pub fn open_files(&self) -> &OpenFiles {
        &self.open_files
    }

    /// Counts one read served from what was read ahead.
    pub fn count_read_ahead(&self) {
        self.read_ahead_hits
            .set(self.read_ahead_hits.get().wrapping_add(1));
    }

    /// Reads served from what was read ahead so far.
    pub fn read_ahead_hits(&self) -> u64 {
        self.read_ahead_hits.get()
    }

    /// Bytes read ahead and held now.
    pub fn read_ahead_bytes(&self) -> usize {
        self.read_ahead_used.get()
    }

    /// Counts one log read, served from the cache or from disk.
    pub fn count_read(&self, from_cache: bool) {
        let counter = if from_cache {
            &self.reads_from_cache
        } else {
            &self.reads_from_disk
        };
        counter.set(counter.get().wrapping_add(1));
    }

    /// Log reads served from the cache and from disk so far.
    pub fn reads(&self) -> (u64, u64) {
        (self.reads_from_cache.get(), self.reads_from_disk.get())
    }

    /// Accounts a new batch of `bytes` and returns its sequence number.
    pub fn insert(&self, owner: Weak<dyn CacheOwner>, bytes: usize) -> u64 {
        let sequence = self.next_sequence.get();
        self.next_sequence.set(sequence + 1);
        self.used_bytes.set(self.used_bytes.get() + bytes);
        self.insertions.borrow_mut().push_back(Insertion {
            owner,
            sequence,
            bytes,
        });
        sequence
    }

    /// A partition dropped batches on its own (truncation, deletion).
    pub fn release(&self, bytes: usize) {
        let used = self.used_bytes.get();
        assert!(bytes <= used, "cache released more than it holds");
        self.used_bytes.set(used - bytes);
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes.get()
    }

    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    /// Evicts oldest batches until within budget or the oldest is pinned.
    pub fn trim(&self) {
        while self.used_bytes.get() > self.budget_bytes {
            let Some(oldest) = self.insertions.borrow_mut().pop_front() else {
                return;
            };
            let Some(owner) = oldest.owner.upgrade() else {
                continue;
            };
            match owner.evict(oldest.sequence) {
                Eviction::Evicted => self.release(oldest.bytes),
                Eviction::Gone => {}
                Eviction::Pinned => {
                    self.insertions.borrow_mut().push_front(oldest);
                    return;
                }
            }
        }
    }
}
