//! Narrow error types per operation. Each carries what failed and where; the
//! protocol layer maps them to Kafka error codes in one function.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::batch::BatchError;

/// An I/O failure with the operation and path it happened on.
#[derive(Debug)]
pub struct StorageError {
    pub operation: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl StorageError {
    pub fn new(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError {
            operation,
            path: path.into(),
            source,
        }
    }

    pub fn is_disk_full(&self) -> bool {
        crate::storage::is_disk_full(&self.source)
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.operation,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for StorageError {}

/// Why an idempotent producer's batch was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProducerError {
    /// The batch's epoch is older than the producer's current one.
    InvalidEpoch { current: i16, got: i16 },
    /// A marker of a transaction version that bumps the epoch at every
    /// transaction end (KIP-1228) carrying the producer's current epoch
    /// while a transaction of that epoch is open: not the bumped epoch
    /// that ends it, so a late or duplicate marker of an earlier one.
    MarkerEpochNotBumped { current: i16, got: i16 },
    /// The sequence is not the next one expected.
    OutOfOrderSequence { expected: i32, got: i32 },
    /// A retried batch came together with other batches: a duplicate is
    /// answered with the offset it was first stored at, which one answer
    /// for several batches cannot carry, so nothing is appended.
    DuplicateAmongOthers { base_offset: i64 },
    /// The batch follows one of the same producer and epoch that was
    /// refused before its append with the retriable `error_code` and not
    /// retried yet (see `PartitionLog::note_refused`): it gets that error.
    BehindRefused {
        refused_sequence: i32,
        got: i32,
        error_code: i16,
    },
}

impl fmt::Display for ProducerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProducerError::InvalidEpoch { current, got } => {
                write!(
                    f,
                    "producer epoch {got} is older than the current epoch {current}"
                )
            }
            ProducerError::MarkerEpochNotBumped { current, got } => write!(
                f,
                "marker epoch {got} is not above the epoch {current} of the open transaction \
                 (transaction version 2 ends a transaction at a bumped epoch)"
            ),
            ProducerError::OutOfOrderSequence { expected, got } => {
                write!(f, "sequence {got} is out of order, expected {expected}")
            }
            ProducerError::BehindRefused {
                refused_sequence,
                got,
                error_code,
            } => write!(
                f,
                "sequence {got} follows sequence {refused_sequence}, refused with error \
                 {error_code}: that batch must be retried first"
            ),
            ProducerError::DuplicateAmongOthers { base_offset } => write!(
                f,
                "a batch already stored at offset {base_offset} came with other batches"
            ),
        }
    }
}

/// Why an append failed. Nothing was appended in any case.
#[derive(Debug)]
pub enum AppendError {
    Batch(BatchError),
    Producer(ProducerError),
    /// The log cannot write right now (disk full, I/O error); the log stays
    /// readable, and appends resume once the writer succeeds again.
    Storage(String),
    /// The partition is being deleted or closed.
    Closed,
    /// A batch copied from the leader does not start where the log (or the
    /// batch before it) ends. A replica keeps the leader's offsets, so a gap
    /// or an overlap means the follower fetched from the wrong offset: it
    /// must truncate or fetch again from its log end.
    NotContiguous {
        expected: i64,
        got: i64,
    },
    /// A follower's truncation to its leader's log is cutting this log: it
    /// is changing roles, so a leader's append is refused (the client
    /// retries, as during any leadership move).
    Truncating,
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::Batch(error) => write!(f, "invalid batch: {error}"),
            AppendError::Producer(error) => write!(f, "producer check failed: {error}"),
            AppendError::Storage(error) => write!(f, "storage unavailable: {error}"),
            AppendError::Closed => write!(f, "partition is closed"),
            AppendError::Truncating => {
                write!(f, "partition is being truncated to its leader's log")
            }
            AppendError::NotContiguous { expected, got } => write!(
                f,
                "replica batch starts at offset {got}, the log ends at {expected}"
            ),
        }
    }
}

impl std::error::Error for AppendError {}

impl From<BatchError> for AppendError {
    fn from(error: BatchError) -> Self {
        AppendError::Batch(error)
    }
}

/// Why a read failed.
#[derive(Debug)]
pub enum ReadError {
    /// The offset is before the log start or after the log end.
    OffsetOutOfRange { log_start: i64, log_end: i64 },
    /// The disk returned bytes that fail their checksum, or an I/O error.
    Storage(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::OffsetOutOfRange { log_start, log_end } => {
                write!(f, "offset outside the log [{log_start}, {log_end}]")
            }
            ReadError::Storage(error) => write!(f, "storage read failed: {error}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Why opening a log or the data directory failed. Displayed as the one line
/// the operator sees, so it names the path and the fix.
#[derive(Debug)]
pub enum OpenError {
    Storage(StorageError),
    /// A file that should be ours is not in a format we recognise.
    Foreign {
        path: PathBuf,
        reason: String,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Storage(error) => write!(f, "{error}"),
            OpenError::Foreign { path, reason } => write!(
                f,
                "{} is not a Sluice data file ({reason}); point --data-dir at a Sluice data \
                 directory or an empty one",
                path.display()
            ),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<StorageError> for OpenError {
    fn from(error: StorageError) -> Self {
        OpenError::Storage(error)
    }
}
