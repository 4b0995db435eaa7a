//! DeleteRecords (API key 21): advancing a partition's log start offset.

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest};

use super::{check_version, DecodeError, Reader};

/// DeleteRecords versions Sluice decodes.
pub const DELETE_RECORDS_VERSIONS: (i16, i16) = (0, 2);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 2;

/// Decodes a DeleteRecords request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<DeleteRecordsRequest, DecodeError> {
    check_version(ApiKey::DeleteRecords, version, DELETE_RECORDS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = DeleteRecordsRequest::default();
    req.topics = r.array_v(flexible, |r| topic(r, flexible))?;
    req.timeout_ms = r.i32()?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader, flexible: bool) -> Result<DeleteRecordsTopic, DecodeError> {
    let mut topic = DeleteRecordsTopic::default();
    topic.name = r.string_v(flexible)?;
    topic.partitions = r.array_v(flexible, |r| partition(r, flexible))?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn partition(r: &mut Reader, flexible: bool) -> Result<DeleteRecordsPartition, DecodeError> {
    let mut partition = DeleteRecordsPartition::default();
    partition.partition_index = r.i32()?;
    partition.offset = r.i64()?;
    r.tagged_fields_v(flexible, &mut partition.unknown_tagged_fields)?;
    Ok(partition)
}
