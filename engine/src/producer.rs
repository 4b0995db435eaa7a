//! Idempotent-producer state of one partition: per producer id, its epoch
//! and the last few batches' sequence ranges, so retries are recognised as
//! duplicates and gaps as out-of-order.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;
use crate::constants::PRODUCER_BATCHES_KEPT;
use crate::error::ProducerError;

/// One remembered batch of a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SequenceRange {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
}

/// What the log knows of one producer.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<SequenceRange>,
    pub last_timestamp: i64,
}

/// The outcome of checking a batch against the producer state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Accept,
    /// A retry of a batch already in the log at `base_offset`: answer success
    /// without appending.
    Duplicate { base_offset: i64 },
}

/// Sequence numbers wrap from i32::MAX to 0, as in Kafka.
fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

fn last_sequence_of(header: &BatchHeader) -> i32 {
    let last = i64::from(header.base_sequence) + i64::from(header.last_offset_delta);
    (last % (i64::from(i32::MAX) + 1)) as i32
}

/// All producers of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerState {
    pub producers: HashMap<i64, ProducerEntry>,
}

impl ProducerState {
    /// Checks a batch without changing anything.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, ProducerError> {
        if !header.has_producer_id() || header.base_sequence < 0 {
            return Ok(SequenceCheck::Accept);
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            // Unknown producer: its state may have been removed with old
            // segments, so any sequence starts it (Kafka does the same).
            return Ok(SequenceCheck::Accept);
        };
        if header.producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                current: entry.epoch,
                got: header.producer_epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            // A new epoch restarts the sequence at zero.
            if header.base_sequence != 0 {
                return Err(ProducerError::OutOfOrderSequence {
                    expected: 0,
                    got: header.base_sequence,
                });
            }
            return Ok(SequenceCheck::Accept);
        }
        let last_sequence = last_sequence_of(header);
        for batch in &entry.batches {
            if batch.first_sequence == header.base_sequence && batch.last_sequence == last_sequence
            {
                return Ok(SequenceCheck::Duplicate {
                    base_offset: batch.base_offset,
                });
            }
        }
        let expected = match entry.batches.back() {
            Some(batch) => next_sequence(batch.last_sequence),
            None => return Ok(SequenceCheck::Accept),
        };
        if header.base_sequence != expected {
            return Err(ProducerError::OutOfOrderSequence {
                expected,
                got: header.base_sequence,
            });
        }
        Ok(SequenceCheck::Accept)
    }

    /// Records an appended batch.
    pub fn record(&mut self, header: &BatchHeader, base_offset: i64) {
        if !header.has_producer_id() {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = header.max_timestamp;
        if header.base_sequence < 0 {
            return;
        }
        if entry.batches.len() == PRODUCER_BATCHES_KEPT {
            entry.batches.pop_front();
        }
        entry.batches.push_back(SequenceRange {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence_of(header),
            base_offset,
        });
    }

    /// Forgets batches at or after `offset` (log truncation).
    pub fn truncate_from(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|batch| batch.base_offset < offset);
        }
        self.producers.retain(|_, entry| !entry.batches.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build_batch_with, validate, BuildBatch};

    fn header(producer_id: i64, epoch: i16, sequence: i32, records: usize) -> BatchHeader {
        let values: Vec<&[u8]> = (0..records).map(|_| b"v".as_slice()).collect();
        let batch = build_batch_with(
            BuildBatch {
                producer_id,
                producer_epoch: epoch,
                base_sequence: sequence,
                ..BuildBatch::default()
            },
            &values,
        );
        validate(&batch, usize::MAX).unwrap()
    }

    #[test]
    fn sequences_duplicates_and_gaps() {
        let mut state = ProducerState::default();
        let first = header(7, 0, 0, 3);
        assert_eq!(state.check(&first), Ok(SequenceCheck::Accept));
        state.record(&first, 100);
        assert_eq!(
            state.check(&first),
            Ok(SequenceCheck::Duplicate { base_offset: 100 })
        );
        let gap = header(7, 0, 5, 1);
        assert_eq!(
            state.check(&gap),
            Err(ProducerError::OutOfOrderSequence {
                expected: 3,
                got: 5
            })
        );
        let next = header(7, 0, 3, 1);
        assert_eq!(state.check(&next), Ok(SequenceCheck::Accept));
        state.record(&next, 103);
        let old_epoch = header(7, -1, 4, 1);
        assert!(matches!(
            state.check(&old_epoch),
            Err(ProducerError::InvalidEpoch { .. })
        ));
        let new_epoch = header(7, 1, 0, 1);
        assert_eq!(state.check(&new_epoch), Ok(SequenceCheck::Accept));
    }

    #[test]
    fn keeps_only_the_last_five() {
        let mut state = ProducerState::default();
        for sequence in 0..8 {
            state.record(&header(1, 0, sequence, 1), i64::from(sequence));
        }
        assert_eq!(state.producers[&1].batches.len(), PRODUCER_BATCHES_KEPT);
        assert!(state.check(&header(1, 0, 0, 1)).is_err());
        assert_eq!(
            state.check(&header(1, 0, 7, 1)),
            Ok(SequenceCheck::Duplicate { base_offset: 7 })
        );
    }
}
