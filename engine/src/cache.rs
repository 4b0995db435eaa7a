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

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

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
}

impl BatchCache {
    pub fn new(budget_bytes: usize) -> Rc<BatchCache> {
        Rc::new(BatchCache {
            budget_bytes,
            used_bytes: Cell::new(0),
            insertions: RefCell::new(VecDeque::new()),
            next_sequence: Cell::new(0),
            reads_from_cache: Cell::new(0),
            reads_from_disk: Cell::new(0),
        })
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
