//! TxnOffsetCommit (API key 28): offsets committed as part of a transaction.

use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{ApiKey, TxnOffsetCommitRequest};

use super::{check_version, DecodeError, Reader};

/// TxnOffsetCommit versions Sluice decodes.
pub const TXN_OFFSET_COMMIT_VERSIONS: (i16, i16) = (0, 5);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 3;

/// Decodes a TxnOffsetCommit request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<TxnOffsetCommitRequest, DecodeError> {
    check_version(ApiKey::TxnOffsetCommit, version, TXN_OFFSET_COMMIT_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = TxnOffsetCommitRequest::default();
    req.transactional_id = r.string_v(flexible)?;
    req.group_id = r.string_v(flexible)?;
    req.producer_id = r.i64()?.into();
    req.producer_epoch = r.i16()?;
    // The group-membership fields (KIP-447) arrived together with the flexible encoding.
    if version >= 3 {
        req.generation_id = r.i32()?;
        req.member_id = r.compact_string()?;
        req.group_instance_id = r.compact_nullable_string()?;
    }
    req.topics = r.array_v(flexible, |r| topic(r, version, flexible))?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(
    r: &mut Reader,
    version: i16,
    flexible: bool,
) -> Result<TxnOffsetCommitRequestTopic, DecodeError> {
    let mut topic = TxnOffsetCommitRequestTopic::default();
    topic.name = r.string_v(flexible)?;
    topic.partitions = r.array_v(flexible, |r| partition(r, version, flexible))?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn partition(
    r: &mut Reader,
    version: i16,
    flexible: bool,
) -> Result<TxnOffsetCommitRequestPartition, DecodeError> {
    let mut partition = TxnOffsetCommitRequestPartition::default();
    partition.partition_index = r.i32()?;
    partition.committed_offset = r.i64()?;
    if version >= 2 {
        partition.committed_leader_epoch = r.i32()?;
    }
    partition.committed_metadata = r.nullable_string_v(flexible)?;
    r.tagged_fields_v(flexible, &mut partition.unknown_tagged_fields)?;
    Ok(partition)
}
