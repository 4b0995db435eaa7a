//! Idempotent-producer state of one partition: per producer id, its epoch
//! and the last few batches' sequence ranges, so retries are recognised as
//! duplicates and gaps as out-of-order; and for transactional producers the
//! first offset of the transaction open on this partition, which holds the
//! last stable offset back until a commit or abort marker ends it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::batch::BatchHeader;
use crate::constants::PRODUCER_BATCHES_KEPT;
use crate::error::ProducerError;
use crate::txn::{AbortedTxn, ControlRecord, ControlType};

/// One remembered batch of a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SequenceRange {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
}

/// What the log knows of one producer.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<SequenceRange>,
    pub last_timestamp: i64,
    /// The offset of the first batch of this producer's transaction open on
    /// this partition, if one is.
    pub txn_first_offset: Option<i64>,
    /// The coordinator epoch of the last marker written for it, else -1.
    pub coordinator_epoch: i32,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: 0,
            batches: VecDeque::new(),
            last_timestamp: -1,
            txn_first_offset: None,
            coordinator_epoch: -1,
        }
    }
}

/// One producer as DescribeProducers reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// -1 if no batch with a sequence is remembered.
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// The coordinator epoch of the last marker, or -1.
    pub coordinator_epoch: i32,
    /// The first offset of the open transaction, or -1.
    pub current_txn_start_offset: i64,
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
    /// First offset -> producer id of every open transaction, derived from
    /// `producers`: its first key bounds the last stable offset.
    ongoing: BTreeMap<i64, i64>,
}

impl ProducerState {
    /// A state of these entries (a snapshot read back).
    pub fn from_entries(entries: impl IntoIterator<Item = (i64, ProducerEntry)>) -> ProducerState {
        let producers: HashMap<i64, ProducerEntry> = entries.into_iter().collect();
        let ongoing = producers
            .iter()
            .filter_map(|(&id, entry)| entry.txn_first_offset.map(|first| (first, id)))
            .collect();
        ProducerState { producers, ongoing }
    }

    /// The first offset of the earliest open transaction: nothing at or
    /// after it is stable.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// The first offset of `producer_id`'s open transaction, if any.
    pub fn ongoing_txn_first_offset(&self, producer_id: i64) -> Option<i64> {
        self.producers
            .get(&producer_id)
            .and_then(|entry| entry.txn_first_offset)
    }

    /// Every producer, ordered by id, as DescribeProducers reports them.
    pub fn describe(&self) -> Vec<ProducerInfo> {
        let mut infos: Vec<ProducerInfo> = self
            .producers
            .iter()
            .map(|(&producer_id, entry)| ProducerInfo {
                producer_id,
                producer_epoch: entry.epoch,
                last_sequence: entry.batches.back().map_or(-1, |batch| batch.last_sequence),
                last_timestamp: entry.last_timestamp,
                coordinator_epoch: entry.coordinator_epoch,
                current_txn_start_offset: entry.txn_first_offset.unwrap_or(-1),
            })
            .collect();
        infos.sort_unstable_by_key(|info| info.producer_id);
        infos
    }

    /// Checks a batch without changing anything.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, ProducerError> {
        if header.is_control() && header.has_producer_id() {
            // A marker fences: an older epoch than the producer's is a
            // zombie coordinator's or producer's; a newer one is the epoch
            // the coordinator bumped at the transaction's end.
            if let Some(entry) = self.producers.get(&header.producer_id) {
                if header.producer_epoch < entry.epoch {
                    return Err(ProducerError::InvalidEpoch {
                        current: entry.epoch,
                        got: header.producer_epoch,
                    });
                }
            }
            return Ok(SequenceCheck::Accept);
        }
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

    /// The sequence the next batch of `producer_id` at `epoch` must start
    /// with, if this partition remembers a batch of that producer and
    /// epoch.
    pub fn expected_sequence(&self, producer_id: i64, epoch: i16) -> Option<i32> {
        let entry = self.producers.get(&producer_id)?;
        if entry.epoch != epoch {
            return None;
        }
        entry
            .batches
            .back()
            .map(|batch| next_sequence(batch.last_sequence))
    }

    /// What a marker of a transaction version that bumps the epoch at every
    /// transaction end (KIP-1228, [`crate::TxnMarker::bumps_epoch`]) must
    /// pass besides [`ProducerState::check`]: its epoch is the bumped one,
    /// above that of the transaction it ends, so one at the producer's
    /// current epoch while a transaction is open here is late or a
    /// duplicate, and would end the open transaction it does not belong
    /// to. At that epoch with no transaction open it is a retry of a marker
    /// already written (a coordinator that lost the answer, or reloaded a
    /// decided transaction and writes its markers again): accepted, ending
    /// nothing, as Kafka does (KAFKA-19999), since refusing it would leave
    /// that coordinator retrying for good. An older epoch is `check`'s
    /// refusal.
    pub fn check_bumped_marker(&self, producer_id: i64, epoch: i16) -> Result<(), ProducerError> {
        match self.producers.get(&producer_id) {
            Some(entry) if epoch == entry.epoch && entry.txn_first_offset.is_some() => {
                Err(ProducerError::MarkerEpochNotBumped {
                    current: entry.epoch,
                    got: epoch,
                })
            }
            _ => Ok(()),
        }
    }

    /// Records an appended batch. A transactional data batch opens the
    /// producer's transaction on this partition (or extends it); a control
    /// batch goes through [`ProducerState::record_marker`] instead, or, if
    /// its marker could not be read, only moves the epoch here.
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
        if header.is_transactional() && !header.is_control() && entry.txn_first_offset.is_none() {
            // Kept across an epoch change: only a marker ends a transaction,
            // and dropping it would expose records never committed.
            entry.txn_first_offset = Some(base_offset);
            self.ongoing.insert(base_offset, header.producer_id);
        }
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

    /// Records an appended control batch at `offset` holding `control`:
    /// the producer's epoch becomes the marker's, and its transaction on
    /// this partition ends. An abort of a transaction that had batches here
    /// returns its aborted-index entry; a marker with no open transaction
    /// (the coordinator writes markers to every partition it was told of,
    /// data or not) ends nothing and returns `None`.
    pub fn record_marker(
        &mut self,
        header: &BatchHeader,
        offset: i64,
        control: ControlRecord,
    ) -> Option<AbortedTxn> {
        if !header.has_producer_id() {
            return None;
        }
        self.record(header, offset);
        let entry = self.producers.entry(header.producer_id).or_default();
        entry.coordinator_epoch = control.coordinator_epoch;
        let first_offset = entry.txn_first_offset.take()?;
        self.ongoing.remove(&first_offset);
        match control.control_type {
            ControlType::Commit => None,
            ControlType::Abort => Some(AbortedTxn {
                producer_id: header.producer_id,
                first_offset,
                last_offset: offset,
                // As Kafka: the first offset still unstable once this one
                // ended, or just past the marker if none.
                last_stable_offset: self.first_unstable_offset().unwrap_or(offset + 1),
            }),
        }
    }

    /// Forgets batches at or after `offset` (log truncation), and
    /// transactions that started there.
    pub fn truncate_from(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|batch| batch.base_offset < offset);
            if entry.txn_first_offset.is_some_and(|first| first >= offset) {
                entry.txn_first_offset = None;
            }
        }
        self.ongoing.retain(|&first, _| first < offset);
        self.producers
            .retain(|_, entry| !entry.batches.is_empty() || entry.txn_first_offset.is_some());
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

    /// KIP-1228: a transaction version 2 marker at the epoch of the
    /// transaction open here is refused; the bumped epoch ends it, and the
    /// same epoch again once it ended is a retry, accepted.
    #[test]
    fn a_bumped_marker_must_be_above_the_open_transactions_epoch() {
        let mut state = ProducerState::default();
        assert_eq!(state.check_bumped_marker(7, 3), Ok(()), "unknown producer");
        let values: [&[u8]; 1] = [b"v"];
        let data = validate(
            &build_batch_with(
                BuildBatch {
                    producer_id: 7,
                    producer_epoch: 3,
                    base_sequence: 0,
                    attributes: crate::batch::attributes::TRANSACTIONAL,
                    ..BuildBatch::default()
                },
                &values,
            ),
            usize::MAX,
        )
        .unwrap();
        state.record(&data, 10);
        assert_eq!(
            state.check_bumped_marker(7, 3),
            Err(ProducerError::MarkerEpochNotBumped { current: 3, got: 3 })
        );
        assert_eq!(state.check_bumped_marker(7, 4), Ok(()));
        assert_eq!(state.check_bumped_marker(8, 3), Ok(()), "another producer");
        let marker = crate::txn::TxnMarker {
            producer_id: 7,
            producer_epoch: 4,
            commit: true,
            coordinator_epoch: 0,
            transaction_version: crate::txn::TxnMarker::EPOCH_BUMP_TRANSACTION_VERSION,
        };
        let bytes = crate::txn::build_control_batch(&marker, 11);
        let control = crate::txn::parse_control_batch(&bytes).unwrap();
        state.record_marker(&validate(&bytes, usize::MAX).unwrap(), 11, control);
        assert_eq!(state.check_bumped_marker(7, 4), Ok(()), "a retry");
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
