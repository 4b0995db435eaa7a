//! PLANTED DEFECT, for testing the fault harness only: built only with the
//! `planted-defect-drop-acked` feature, which no real build turns on.
//!
//! [`PartitionLog::append_and_lose`] takes a batch the way an append does
//! (producer checks, its sequence recorded, offsets named) and then stores
//! nothing: an acknowledged write lost. `tests/chaos-broken.sh` builds a
//! broker with it and expects the fault harness (`bin/tests/chaos.rs`) to
//! report the lost write; a harness that passes on this broker proves
//! nothing.
//!
//! The batch's sequence is recorded, so the producer's next batch is in
//! order and neither it nor a retry of this one gets an error: an
//! idempotent acks=all producer cannot tell. The log end does not move, so
//! the next batch takes the offsets this one was given, and no follower
//! ever sees it: nothing is left to read anywhere.

use super::*;

impl<S: Storage> PartitionLog<S> {
    /// PLANTED DEFECT (see the module): answers one new, non-transactional
    /// client batch as appended at the log end without storing it. `None`
    /// when an append would refuse the batch or answer it as a duplicate,
    /// or when it is not exactly one such batch: the caller appends it
    /// normally then.
    pub fn append_and_lose(&self, batches: &[(BatchHeader, Bytes)]) -> Option<Appended> {
        let mut inner = self.inner.borrow_mut();
        let [(header, bytes)] = batches else {
            return None;
        };
        let accepted = inner.check_writable().is_ok()
            && bytes.len() <= inner.config.max_message_bytes as usize
            && !header.is_control()
            && !header.is_transactional()
            && header.has_producer_id()
            && matches!(inner.producers.check(header), Ok(SequenceCheck::Accept));
        if !accepted {
            return None;
        }
        let base_offset = inner.leo;
        let mut header = *header;
        header.base_offset = base_offset;
        // What `append_stored` records for it, and nothing of the rest.
        inner.producers.record(&header, base_offset);
        Some(Appended {
            base_offset: Offset(base_offset),
            last_offset: Offset(header.last_offset()),
            log_append_time: if inner.config.log_append_time {
                now_ms()
            } else {
                -1
            },
            duplicate: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BuildBatch;
    use crate::storage::MemStorage;

    /// Enough for every batch of this test to stay cached.
    const TEST_CACHE_BYTES: usize = 1 << 20;
    /// Bytes asked for by the read that looks for the lost batch.
    const TEST_READ_BYTES: usize = 1 << 20;
    const PRODUCER_ID: i64 = 7;

    fn producer_batch(base_sequence: i32, value: &[u8]) -> Vec<(BatchHeader, Bytes)> {
        let bytes = Bytes::from(batch::build_batch_with(
            BuildBatch {
                producer_id: PRODUCER_ID,
                producer_epoch: 0,
                base_sequence,
                ..BuildBatch::default()
            },
            &[value],
        ));
        batch::split_and_validate(&bytes, usize::MAX).expect("a valid batch")
    }

    /// The lost batch is answered like an append, its retry as a duplicate,
    /// the producer's next batch is in order and takes its offset, and
    /// nothing of it can be read.
    #[test]
    fn the_lost_batch_is_acknowledged_and_gone() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let log = PartitionLog::open(
                    MemStorage::new(1),
                    PathBuf::from("/data/planted"),
                    LogConfig::default(),
                    BatchCache::new(TEST_CACHE_BYTES),
                )
                .await
                .expect("log opens");
                log.append(&producer_batch(0, b"kept")).expect("appended");
                let lost = log
                    .append_and_lose(&producer_batch(1, b"lost"))
                    .expect("taken and lost");
                assert_eq!((lost.base_offset, lost.last_offset), (Offset(1), Offset(1)));
                assert_eq!(log.offsets().leo, 1);
                let retry = log.append(&producer_batch(1, b"lost")).expect("answered");
                assert!(retry.duplicate);
                assert_eq!(retry.base_offset, Offset(1));
                let next = log.append(&producer_batch(2, b"next")).expect("in order");
                assert_eq!(next.base_offset, Offset(1));
                let read = log
                    .read(0, TEST_READ_BYTES, log.offsets().leo)
                    .await
                    .expect("read");
                let stored = Bytes::from(read.chunks.concat());
                let sequences: Vec<i32> = batch::split_and_validate(&stored, usize::MAX)
                    .expect("whole batches")
                    .iter()
                    .map(|(header, _)| header.base_sequence)
                    .collect();
                assert_eq!(sequences, vec![0, 2]);
            })
            .expect("executor starts")
            .join()
            .expect("test body completes");
    }
}
