//! An idempotent producer's batch is stored once, however it comes back:
//! alone (answered with its first offset) or together with new batches in
//! one append (refused whole, nothing stored twice). Several new batches of
//! one producer in one append are each checked after the one before.

mod common;

use std::rc::Rc;

use bytes::Bytes;
use common::{in_executor, open_mem_log};
use sluice_engine::batch::{self, BatchHeader, BuildBatch};
use sluice_engine::{AppendError, MemStorage, PartitionLog, ProducerError};

const PRODUCER_ID: i64 = 42;
/// Batch cache of the test log.
const CACHE_BYTES: usize = 8 << 20;

async fn open(storage: &MemStorage) -> Rc<PartitionLog<MemStorage>> {
    open_mem_log(storage, "/data/idempotent-0", CACHE_BYTES).await
}

/// The producer's batch with sequence `sequence` (one record).
fn batch(sequence: i32) -> (BatchHeader, Bytes) {
    let built = batch::build_batch_with(
        BuildBatch {
            producer_id: PRODUCER_ID,
            producer_epoch: 0,
            base_sequence: sequence,
            ..BuildBatch::default()
        },
        &[format!("record {sequence}").as_bytes()],
    );
    let bytes = Bytes::from(built);
    let mut batches = batch::split_and_validate(&bytes, usize::MAX).expect("a built batch");
    batches.remove(0)
}

#[test]
fn a_retried_batch_is_never_stored_twice() {
    in_executor(|| async {
        let storage = MemStorage::new(1);
        let log = open(&storage).await;
        let first = log.append(&[batch(0)]).expect("the first batch");
        assert_eq!((first.base_offset.0, first.duplicate), (0, false));

        // The retry alone: answered with where it is, nothing appended.
        let retry = log.append(&[batch(0)]).expect("the retry");
        assert_eq!((retry.base_offset.0, retry.duplicate), (0, true));
        assert_eq!(log.offsets().leo, 1);

        // The retry together with the next batch: refused whole (it was
        // stored a second time, with the new batch after it).
        match log.append(&[batch(0), batch(1)]) {
            Err(AppendError::Producer(ProducerError::DuplicateAmongOthers { base_offset })) => {
                assert_eq!(base_offset, 0)
            }
            other => panic!("a retry among new batches was answered {other:?}"),
        }
        assert_eq!(log.offsets().leo, 1, "a refused append stored something");

        // Two new batches in one append: the second follows the first (it
        // was refused as out of order, checked against the state before).
        let both = log
            .append(&[batch(1), batch(2)])
            .expect("two new batches in order");
        assert_eq!((both.base_offset.0, both.last_offset.0), (1, 2));
        // A gap is still out of order.
        match log.append(&[batch(3), batch(5)]) {
            Err(AppendError::Producer(ProducerError::OutOfOrderSequence { expected, got })) => {
                assert_eq!((expected, got), (4, 5))
            }
            other => panic!("a gap among new batches was answered {other:?}"),
        }
        assert_eq!(log.offsets().leo, 3);
        // The last batch of the good pair, retried alone, is a duplicate.
        let retry = log.append(&[batch(2)]).expect("the retry of batch 2");
        assert_eq!((retry.base_offset.0, retry.duplicate), (2, true));
    });
}
