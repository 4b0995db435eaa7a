//! OffsetDelete (API key 47).

use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest};

use super::{check_version, DecodeError, Reader};

/// OffsetDelete versions Sluice decodes; the only version is not flexible.
pub const OFFSET_DELETE_VERSIONS: (i16, i16) = (0, 0);

/// Decodes an OffsetDelete request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<OffsetDeleteRequest, DecodeError> {
    check_version(ApiKey::OffsetDelete, version, OFFSET_DELETE_VERSIONS)?;
    let mut req = OffsetDeleteRequest::default();
    req.group_id = r.string()?.into();
    req.topics = r.array(topic)?;
    Ok(req)
}

fn topic(r: &mut Reader) -> Result<OffsetDeleteRequestTopic, DecodeError> {
    let mut topic = OffsetDeleteRequestTopic::default();
    topic.name = r.string()?.into();
    topic.partitions = r.array(|r| {
        let mut partition = OffsetDeleteRequestPartition::default();
        partition.partition_index = r.i32()?;
        Ok(partition)
    })?;
    Ok(topic)
}
