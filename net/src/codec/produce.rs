//! Produce (API key 0): record batches from producers.
//!
//! Record sets are returned as slices of the request frame, never copied, because they are
//! by far the largest part of the request and are written to the log as they are.

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest};

use super::{check_version, DecodeError, Reader};

/// Produce versions Sluice decodes (v3 is the first with the v2 record-batch format).
/// v12 has v11's layout; the bump tells the broker the client runs transaction
/// version 2 (KIP-890), so a transactional batch adds its partition. v13 names
/// topics by id instead of by name (KIP-516).
pub const PRODUCE_VERSIONS: (i16, i16) = (3, 13);

/// First version that names topics by id.
const TOPIC_ID_MIN: i16 = 13;

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 9;

/// Decodes a Produce request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<ProduceRequest, DecodeError> {
    check_version(ApiKey::Produce, version, PRODUCE_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = ProduceRequest::default();
    req.transactional_id = r.nullable_string_v(flexible)?;
    req.acks = r.i16()?;
    req.timeout_ms = r.i32()?;
    req.topic_data = r.array_v(flexible, |r| topic(r, version, flexible))?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader, version: i16, flexible: bool) -> Result<TopicProduceData, DecodeError> {
    let mut topic = TopicProduceData::default();
    if version >= TOPIC_ID_MIN {
        topic.topic_id = r.uuid()?;
    } else {
        topic.name = r.string_v(flexible)?;
    }
    topic.partition_data = r.array_v(flexible, |r| partition(r, flexible))?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn partition(r: &mut Reader, flexible: bool) -> Result<PartitionProduceData, DecodeError> {
    let mut partition = PartitionProduceData::default();
    partition.index = r.i32()?;
    partition.records = r.nullable_bytes_v(flexible)?;
    r.tagged_fields_v(flexible, &mut partition.unknown_tagged_fields)?;
    Ok(partition)
}
