//! PLANTED DEFECT, for testing the fault harness only: built only with the
//! `planted-defect-drop-acked` feature, which no real build turns on.
//!
//! One produce batch is acknowledged and lost: the batch that would hold
//! offset [`LOST_OFFSET`] of partition [`LOST_PARTITION`] of a client topic
//! (not `__`-prefixed) goes through `PartitionLog::append_and_lose` instead
//! of the append. The producer gets its offsets and no error; no replica
//! holds the batch. The next batch then takes those offsets, so that leader
//! loses no other. Each broker process loses at most one batch, so in the
//! fault harness's run exactly one is lost, unless the partition's
//! leadership moves in the milliseconds before the next batch is appended.
//! `tests/chaos-broken.sh` runs the fault harness against this broker and
//! passes only if the harness reports the lost write.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use sluice_engine::batch::BatchHeader;
use sluice_engine::{AppendError, Appended};

use super::Log;

/// The partition whose batch is lost: every topic has a partition 0.
const LOST_PARTITION: i32 = 0;
/// The offset whose batch is lost: far enough in that the fault harness's
/// workload has run for some seconds (about 100 records a second go to each
/// of its partitions) and faults have begun.
const LOST_OFFSET: i64 = 1_000;

/// Set once this process has lost its batch: it loses only one.
static LOST: AtomicBool = AtomicBool::new(false);

/// The leader's append of a client's batches to `topic`/`partition`, which
/// loses one batch (see the module).
pub(super) fn append(
    topic: &str,
    partition: i32,
    log: &Log,
    batches: &[(BatchHeader, Bytes)],
) -> Result<Appended, AppendError> {
    let leo = log.offsets().leo;
    // Validated batches: every count is at least 1 and fits an i32.
    let records: i64 = batches
        .iter()
        .map(|(header, _)| i64::from(header.last_offset_delta) + 1)
        .sum();
    let holds_lost_offset = leo <= LOST_OFFSET && LOST_OFFSET < leo + records;
    if topic.starts_with("__")
        || partition != LOST_PARTITION
        || !holds_lost_offset
        // Claimed before losing, so that two shards at once do not both
        // lose one.
        || LOST
            .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return log.append(batches);
    }
    match log.append_and_lose(batches) {
        Some(appended) => {
            tracing::warn!(
                topic,
                partition,
                base_offset = appended.base_offset.0,
                last_offset = appended.last_offset.0,
                "PLANTED DEFECT (planted-defect-drop-acked): acknowledging this batch and losing it"
            );
            Ok(appended)
        }
        None => {
            // Not one a producer would miss (a retry, a transaction's, a
            // refused one): appended as usual; if the offset is still free
            // after it, the next batch to hold it is lost instead.
            LOST.store(false, Ordering::Relaxed);
            log.append(batches)
        }
    }
}
