//! Every bound the engine enforces, in one place. Names put the qualifier last
//! (`segment_bytes_max`, not `max_segment_bytes`) so related bounds sort together.

/// The unit of direct I/O: offsets, lengths and buffers of O_DIRECT writes are
/// multiples of it.
pub const IO_ALIGNMENT: u64 = 4096;

/// A write to disk is issued once this many bytes of whole pages are staged,
/// so the device sees large sequential writes when load allows.
pub const WRITE_CHUNK_BYTES_MIN: usize = 64 * 1024;

/// How far ahead of its writes the cleaner allocates a cleaned copy (an
/// fallocate that also sets the file's size; `finish` cuts what is left).
/// fio on this project's slow test disk, 256 KiB O_DIRECT writes through
/// io_uring, sequential and page-aligned as the cleaner's are: into such a
/// file none of 1,024 writes went to an io_uring worker thread, while every
/// one did when it extended the file or landed past a size kept by
/// `FALLOC_FL_KEEP_SIZE` (590 against 406 MiB/s). The partition writer
/// does not do this: each of its writes rewrites the partial page the last
/// one left, so it spans a written block and unwritten ones, which ext4
/// does not take as an overwrite (fio, writes each starting 4 KiB before
/// the last one ended: 1,023 of 1,024 handed off); in a broker that
/// allocated its segments ahead, the writes were handed off just the same
/// (README, "Allocation ahead of the writes").
pub const ALLOCATE_AHEAD_BYTES: u64 = 1 << 20;

/// How far ahead of a partition's writes its active segment is filled with
/// zeros while someone waits for its syncs (acks=all), at first: the reach
/// doubles with each fill up to `ZERO_AHEAD_BYTES_MAX`, so a partition
/// written slowly spends little disk on zeros. A write into blocks already
/// written, inside the file's size, changes none of the file's metadata:
/// ext4 takes it without an io_uring worker, and the fdatasync after it
/// writes the data and flushes the device cache, with no inode to write.
/// fio on this project's test disk (4 KiB writes through io_uring, one
/// job): an O_DSYNC append took p50 165, p99 204 µs; an overwrite of
/// zeros and its fdatasync 48 + 34 µs at the median (README, "Segments
/// zero-filled ahead of durable writes").
pub const ZERO_AHEAD_BYTES_MIN: u64 = 64 * 1024;

/// The furthest a segment is zero-filled ahead of its writes: the zeros are
/// written once more as data, so a partition taking durable writes writes
/// up to twice its bytes, and a file is at most this much longer than its
/// log until it is sealed or closed (which cut it back).
pub const ZERO_AHEAD_BYTES_MAX: u64 = 1 << 20;

/// Zeros are written ahead only while a partition's syncs cover at most
/// this many bytes appended each: a sync after an extending write writes
/// the inode, and the block bitmap and group descriptor when it allocated,
/// a few pages of metadata, which zeros written once more than the data
/// save only when each sync covers little data. At 10,000 msg/s of 1 KiB
/// over 100 partitions (about 3 KiB a sync) the zeros took 0.10-0.14 ms
/// off the ack p50; at the maximum rate zero-filling every partition cut
/// acks=all throughput from 859-884 to 797-806 MB/s, the disk writing each
/// byte twice, and with this bound no segment was zero-filled there.
pub const ZERO_AHEAD_BYTES_PER_SYNC_MAX: u64 = 16 * 1024;

/// Longest the writer holds back a write smaller than `WRITE_CHUNK_BYTES_MIN`
/// that would rewrite a partial page, waiting for more appends to fill it. A
/// sync, a roll, close, or a follower about to fetch again
/// (`PartitionLog::wait_written`) ends the wait at once, so only acks=0/1
/// data on a leader waits; a kill -9 loses up to this much of it. 50 ms
/// (dd1ad14) cut file-extending writes 7-fold (README, "Tail writes") but
/// widened that loss tenfold, so it stays short.
pub const TAIL_WRITE_DELAY: std::time::Duration = std::time::Duration::from_millis(5);

/// How many direct-I/O writes one partition keeps in flight at once.
pub const WRITES_IN_FLIGHT_MAX: usize = 4;

/// Bytes a partition may hold appended but not yet written to disk before
/// `append` pushes back on the producer.
pub const UNWRITTEN_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Kafka's default `segment.bytes`.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// Smallest `segment.bytes` accepted (Kafka's own lower limit is 14 bytes; one
/// page keeps the aligned writer simple and is far below any useful size).
pub const SEGMENT_BYTES_MIN: u64 = IO_ALIGNMENT;
/// Largest `segment.bytes`: positions inside a segment are stored as u32 in the
/// offset index, as in Kafka.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

/// Kafka's default `segment.ms` (7 days).
pub const SEGMENT_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;

/// Kafka's default `index.interval.bytes`: one offset-index entry per this
/// many bytes of log.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;

/// Kafka's default `retention.ms` (7 days); -1 means unlimited.
pub const RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's default `delete.retention.ms`: a cleaned tombstone stays a day.
pub const DELETE_RETENTION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;
/// Kafka's default `min.cleanable.dirty.ratio`.
pub const MIN_CLEANABLE_DIRTY_RATIO_DEFAULT: f64 = 0.5;

/// Kafka's default `max.message.bytes` / `message.max.bytes` (1 MiB plus the
/// record-batch overhead).
pub const MESSAGE_BYTES_MAX_DEFAULT: u32 = 1_048_588;

/// The largest record batch the engine accepts whatever the topic says; it
/// keeps one batch inside one segment and inside one direct-I/O staging area.
pub const BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Bytes read from disk per request while scanning a segment during recovery.
pub const RECOVERY_READ_BYTES: usize = 1024 * 1024;

/// Default memory budget of one shard's batch cache.
pub const BATCH_CACHE_BYTES_DEFAULT: usize = 256 * 1024 * 1024;

/// Entries of producer state kept per producer and partition (Kafka keeps the
/// last five batches so that up to five in-flight requests can be retried).
pub const PRODUCER_BATCHES_KEPT: usize = 5;

/// Producers per partition whose refused batch is remembered (see
/// `PartitionLog::note_refused`); past it, a new note replaces them all.
pub const REFUSED_BATCHES_KEPT: usize = 1024;

/// How long a refused batch is remembered: Kafka's default
/// `delivery.timeout.ms`, after which a client has given the batch up.
pub const REFUSED_BATCH_KEPT_MS: i64 = 120_000;

/// A segment's `.txnindex` larger than this is refused as damaged (a million
/// aborted transactions in one segment).
pub const TXN_INDEX_BYTES_MAX: u64 = 34 * 1024 * 1024;

/// Capacity of each bounded cross-shard channel.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// A metadata snapshot larger than this is refused as corrupt rather than read.
pub const METADATA_SNAPSHOT_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Space kept free for metadata snapshots on a full disk (the snapshot of
/// 10,000 topics with a few configs each is about 1 MiB; the old snapshot
/// stays until the new one replaces it).
pub const METADATA_RESERVE_BYTES: usize = 16 * 1024 * 1024;

/// Longest topic name Kafka allows.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Most partitions one topic may have (Kafka has no hard limit; this keeps a
/// single request from asking for millions of directories).
pub const TOPIC_PARTITIONS_MAX: i32 = 100_000;

/// Most shards one process runs.
pub const SHARDS_MAX: usize = 256;

/// Removed files and trees queued for the deletion thread (its queue's
/// slots are allocated up front, ~40 bytes each). Deleting a topic queues
/// one tree per partition; beyond the bound a shard deletes the file itself.
pub const DELETIONS_QUEUED_MAX: usize = 16_384;

const _: () = assert!((WRITE_CHUNK_BYTES_MIN as u64).is_multiple_of(IO_ALIGNMENT));
const _: () = assert!(UNWRITTEN_BYTES_MAX >= 2 * WRITE_CHUNK_BYTES_MIN);
const _: () = assert!(SEGMENT_BYTES_MIN.is_multiple_of(IO_ALIGNMENT));
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!((BATCH_BYTES_MAX as u64) < SEGMENT_BYTES_MAX);
const _: () = assert!(MESSAGE_BYTES_MAX_DEFAULT as usize <= BATCH_BYTES_MAX);

/// Segments one read may go on into while what it found holds no record
/// (a compacted log's stretches of emptied batches); see `PartitionLog::read`.
pub const READ_SPAN_SEGMENTS_MAX: usize = 64;

/// Readers of one partition whose next place on disk the log remembers
/// (`PartitionLog::read`): a consumer reading from disk in order then
/// starts each read at its batch, in one read, instead of at the index
/// entry before it and header by header from there. More readers than this
/// (consumer groups reading one partition at once) take turns evicting the
/// oldest place; each costs about 40 bytes, kept only for partitions read
/// from disk.
pub const READ_CURSORS_MAX: usize = 4;

/// Plain threads that run the file-system calls a shard must not make
/// itself (see `storage::off_shard`): enough that one call stuck on a
/// stalled disk leaves others running.
pub const FS_THREADS: usize = 4;

/// File-system calls queued for those threads; beyond the bound a shard
/// makes the call itself.
pub const FS_CALLS_QUEUED_MAX: usize = 4_096;

/// Threads of the background pool (`storage::in_background`), which runs
/// only in the CPU's idle time: the cleaner's parsing and key hashing of
/// the dirty part. Two let a host with idle cores clean two logs at once.
pub const BACKGROUND_THREADS: usize = 2;

/// Calls queued for the background pool; beyond the bound a shard does the
/// work itself. A cleaner has at most one call queued at a time.
pub const BACKGROUND_CALLS_QUEUED_MAX: usize = 1_024;

/// How long a call may wait in the background pool's queue before its
/// shard takes it back and does the work itself: the pool runs only in the
/// CPU's idle time, which a broker whose cores are all busy may not have
/// for minutes. A cleaning pass hands the pool 256 KiB of batches at a
/// time, so with no idle CPU at all the pass still notes keys at about
/// 2.5 MB/s per shard instead of stopping.
pub const BACKGROUND_START_WAIT_MAX: std::time::Duration = std::time::Duration::from_millis(100);

/// A small file (checkpoint, snapshot, index) up to this size is read on
/// the shard's thread: a page or two, where the hand-off to a file-system
/// thread would cost about as much as the read. Larger ones (the indexes
/// of large segments) are read on a file-system thread.
pub const READ_INLINE_BYTES_MAX: u64 = 64 * 1024;

/// How often each executor's heartbeat task advances its count for the
/// wake watch (`wake_watch`): the timer that an executor asleep through its
/// own wake-ups misses.
pub const WAKE_WATCH_BEAT: std::time::Duration = std::time::Duration::from_millis(50);

/// A heartbeat this much overdue, with its thread asleep in `io_uring_enter`,
/// means the executor slept through the timer: the watch interrupts the
/// sleep. Five beats, so a thread descheduled for a moment on a loaded
/// machine is not taken for one (it is not asleep in the kernel then).
pub const WAKE_WATCH_STALL_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// How often the watch thread looks at the heartbeats.
pub const WAKE_WATCH_CHECK: std::time::Duration = std::time::Duration::from_millis(50);
