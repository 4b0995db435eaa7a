//! # sluice-engine
//!
//! The storage engine of Sluice: partition logs in Kafka's on-disk format,
//! written with direct I/O on glommio executors, one shard per core.
//!
//! - [`batch`]: Kafka v2 record batches: layout, validation (CRC-32C, magic,
//!   lengths, counts) without decompression, the broker-owned header fields.
//! - [`log::PartitionLog`]: segments, indexes, write-behind direct-I/O
//!   appends, group-commit durability, reads from the batch cache or disk,
//!   retention, truncation, crash recovery; a follower's verbatim appends
//!   of its leader's batches and the leader-epoch cache
//!   (OffsetForLeaderEpoch).
//! - [`txn`]: transaction markers (control batches) and the aborted-transaction
//!   index; the log keeps each producer's open transaction and the last
//!   stable offset it implies.
//! - [`cache::BatchCache`]: the per-shard memory budget for recent batches.
//! - [`open_files::OpenFiles`]: the per-shard budget of open segment files.
//! - [`storage`]: the backend trait, the DMA backend and a fault-injecting
//!   in-memory disk for tests.
//! - [`metadata`]: topics and configs on disk behind [`metadata::MetadataStore`].
//! - [`shard`]: executors, `shard_for`, and the cross-shard [`shard::Mesh`].
//!
//! The engine knows nothing of sockets or of the Kafka wire protocol beyond
//! the record-batch header it validates.

pub mod batch;
pub mod cache;
pub mod compaction;
pub mod constants;
pub mod error;
pub mod index;
pub mod log;
pub mod metadata;
pub mod notify;
pub mod open_files;
pub mod prefetch;
pub mod producer;
pub mod recovery_point;
pub mod shard;
pub mod storage;
pub mod txn;
pub mod types;
pub mod wake_watch;

pub use cache::BatchCache;
pub use error::{AppendError, OpenError, ProducerError, ReadError, StorageError};
pub use log::{
    Appended, LogConfig, OffsetQuery, Offsets, PartitionLog, PublishStep, ReadChunks, StagedClose,
    TxnGuard, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET,
};
pub use metadata::{
    BrokerInfo, ClusterMetadata, Endpoint, FileMetadataStore, MetadataStore, PartitionState,
    QuotaEntity, QuotaName, QuotaValue, QuotaValues, ScramCredentials, StoredAcl, StoredScram,
    TopicMetadata,
};
pub use producer::ProducerInfo;
pub use shard::{shard_for, Mesh, ShardPlan, TopicShards};
pub use storage::{finish_deletions, DmaStorage, IoBuffer, MemStorage, Storage, StorageFile};
pub use txn::{AbortedTxn, ControlType, TxnMarker};
pub use types::{LeaderEpoch, Offset, ProducerId, ShardId, TopicPartition};

/// Counts the heap allocations a piece of code makes on the calling thread,
/// for tests of paths meant to allocate nothing in steady state.
#[cfg(test)]
pub(crate) mod counted_alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    struct Counting;

    fn note() {
        // `try_with`: a thread's own teardown may allocate after its
        // locals are gone.
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
    }

    // SAFETY: every call is passed on to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note();
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note();
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note();
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// Runs `f` and returns its result with the allocations it made.
    pub(crate) fn allocations_of<R>(f: impl FnOnce() -> R) -> (R, u64) {
        let before = ALLOCATIONS.with(Cell::get);
        let result = f();
        (result, ALLOCATIONS.with(Cell::get) - before)
    }
}
