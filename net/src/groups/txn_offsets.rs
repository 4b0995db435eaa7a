//! TxnOffsetCommit: offsets committed inside a transaction.
//!
//! The offsets are appended to the group's offsets partition as a
//! transactional batch of the producer (so the partition's LSO covers them
//! and read_committed readers of `__consumer_offsets` skip them until the
//! end) and held as pending per producer id. The transaction coordinator
//! writes the producer's marker into this partition and then tells this
//! coordinator ([`GroupCoordinator::txn_marker`]): on commit the pending
//! offsets become the group's committed offsets, on abort they are dropped.
//! Replay does the same with the control batches it meets.

use std::rc::Rc;

use kafka_protocol::messages::TxnOffsetCommitRequest;

use super::group::Group;
use super::offsets::{check_commit_member, CommitOutcome};
use super::records::{self, KeyedRecord, OffsetValue};
use super::{now_ms, write_error_code, GroupCoordinator, WriteError, Written, OFFSETS_TOPIC};
use crate::broker::Broker;
use crate::constants::OFFSET_METADATA_BYTES_MAX;
use crate::errors::code;
use sluice_engine::{batch, AppendError};

/// First TxnOffsetCommit version that carries the member's generation and
/// id (KIP-447), which are then checked as OffsetCommit checks them.
const MEMBER_CHECK_VERSION: i16 = 3;

/// One offset committed in a transaction that has not ended.
#[derive(Clone, Debug)]
pub struct PendingOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub value: OffsetValue,
}

impl GroupCoordinator {
    pub(super) async fn txn_commit(
        &self,
        broker: &Rc<Broker>,
        request: TxnOffsetCommitRequest,
        version: i16,
    ) -> CommitOutcome {
        let whole = |error_code| CommitOutcome {
            topics: request
                .topics
                .iter()
                .map(|topic| vec![error_code; topic.partitions.len()])
                .collect(),
        };
        let group_id = request.group_id.to_string();
        let partition = match self.check_partition(broker, &group_id) {
            Ok(partition) => partition,
            Err(error_code) => return whole(error_code),
        };
        if let Err(error_code) = self.wait_for_room(broker, &group_id, partition).await {
            return whole(error_code);
        }
        let (mut outcome, written) =
            match self.txn_commit_now(broker, partition, &group_id, &request, version) {
                Ok(result) => result,
                Err(error_code) => return whole(error_code),
            };
        if let Some((end, positions)) = written {
            if let Err(error) = self.wait_written(broker, partition, end).await {
                let error_code = write_error_code(&error, Written::Offsets);
                for (topic, partition) in positions {
                    outcome.topics[topic][partition] = error_code;
                }
            }
        }
        outcome
    }

    #[allow(clippy::type_complexity)]
    fn txn_commit_now(
        &self,
        broker: &Broker,
        partition: i32,
        group_id: &str,
        request: &TxnOffsetCommitRequest,
        version: i16,
    ) -> Result<(CommitOutcome, Option<(i64, Vec<(usize, usize)>)>), i16> {
        let metadata = broker.metadata();
        let mut groups = self.groups.borrow_mut();
        let member_id = request.member_id.as_str();
        let checked = version >= MEMBER_CHECK_VERSION
            && (request.generation_id >= 0
                || !member_id.is_empty()
                || request.group_instance_id.is_some());
        if checked {
            match groups.get_mut(group_id) {
                None => return Err(code::ILLEGAL_GENERATION),
                Some(group) => check_commit_member(
                    group,
                    request.generation_id,
                    member_id,
                    request.group_instance_id.as_ref().map(|id| id.as_str()),
                )?,
            }
        }
        let now = now_ms();
        let mut outcome = CommitOutcome::default();
        let mut records = Vec::new();
        let mut committed = Vec::new();
        for (topic_index, topic) in request.topics.iter().enumerate() {
            let name = topic.name.0.as_str();
            let known = metadata.topics.get(name);
            let mut errors = Vec::with_capacity(topic.partitions.len());
            for (partition_index, entry) in topic.partitions.iter().enumerate() {
                let metadata_text = entry
                    .committed_metadata
                    .as_ref()
                    .map(|text| text.as_str())
                    .unwrap_or("");
                if !known.is_some_and(|meta| {
                    entry.partition_index >= 0 && entry.partition_index < meta.partitions
                }) {
                    errors.push(code::UNKNOWN_TOPIC_OR_PARTITION);
                } else if metadata_text.len() > OFFSET_METADATA_BYTES_MAX {
                    errors.push(code::OFFSET_METADATA_TOO_LARGE);
                } else {
                    let value = OffsetValue {
                        offset: entry.committed_offset,
                        leader_epoch: entry.committed_leader_epoch,
                        metadata: metadata_text.to_string(),
                        commit_timestamp: now,
                        expire_timestamp: -1,
                    };
                    records.push(KeyedRecord {
                        key: records::offset_key(group_id, name, entry.partition_index),
                        value: Some(records::encode_offset_value(&value)),
                    });
                    committed.push((
                        (topic_index, partition_index),
                        PendingOffset {
                            group: group_id.to_string(),
                            topic: name.to_string(),
                            partition: entry.partition_index,
                            value,
                        },
                    ));
                    errors.push(code::NONE);
                }
            }
            outcome.topics.push(errors);
        }
        if records.is_empty() {
            return Ok((outcome, None));
        }
        let producer = (request.producer_id.0, request.producer_epoch);
        let end = match self.append_txn_now(broker, partition, &records, producer) {
            Ok(end) => end,
            Err(error) => {
                let error_code = match &error {
                    WriteError::Append(AppendError::Producer(_)) => code::PRODUCER_FENCED,
                    _ => write_error_code(&error, Written::Offsets),
                };
                for ((topic, partition), _) in committed {
                    outcome.topics[topic][partition] = error_code;
                }
                return Ok((outcome, None));
            }
        };
        if !groups.contains_key(group_id) {
            groups.insert(
                group_id.to_string(),
                Group::new(group_id.to_string(), partition, now),
            );
        }
        let mut positions = Vec::with_capacity(committed.len());
        let mut pending = self.pending_txn.borrow_mut();
        let held = pending.entry((partition, producer.0)).or_default();
        for (position, offset) in committed {
            held.push(offset);
            positions.push(position);
        }
        Ok((outcome, Some((end, positions))))
    }

    /// Appends a transactional batch of `producer` now (no await).
    fn append_txn_now(
        &self,
        broker: &Broker,
        partition: i32,
        records: &[KeyedRecord],
        producer: (i64, i16),
    ) -> Result<i64, WriteError> {
        let log = broker
            .log(OFFSETS_TOPIC, partition)
            .ok_or(WriteError::NotCoordinator)?;
        let limit = log.config().max_message_bytes as usize;
        if records::batch_bytes_bound(records) > limit.max(batch::BATCH_HEADER_BYTES) {
            return Err(WriteError::TooLarge);
        }
        let bytes = records::build_batch_for(records, now_ms(), Some(producer));
        let header = batch::validate(&bytes, usize::MAX)
            .map_err(|error| WriteError::Append(AppendError::Batch(error)))?;
        let appended = log.append(&[(header, bytes)]).map_err(WriteError::Append)?;
        Ok(appended.last_offset.0 + 1)
    }

    /// A marker for `producer_id` is in offsets partition `partition`.
    pub(crate) fn txn_marker(&self, partition: i32, producer_id: i64, commit: bool) {
        let Some(held) = self
            .pending_txn
            .borrow_mut()
            .remove(&(partition, producer_id))
        else {
            return;
        };
        if !commit {
            return;
        }
        let now = now_ms();
        let mut groups = self.groups.borrow_mut();
        for offset in held {
            let group = groups
                .entry(offset.group.clone())
                .or_insert_with(|| Group::new(offset.group.clone(), partition, now));
            group
                .offsets
                .insert((offset.topic, offset.partition), offset.value);
        }
    }

    /// Whether an offset of `group` for the partition waits for a
    /// transaction to end (KIP-447: OffsetFetch with require_stable answers
    /// UNSTABLE_OFFSET_COMMIT for it).
    pub fn has_pending_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.pending_txn.borrow().values().any(|held| {
            held.iter().any(|offset| {
                offset.group == group && offset.topic == topic && offset.partition == partition
            })
        })
    }
}
