//! ConsumerGroupHeartbeat (API key 68): the KIP-848 consumer-group protocol.

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{ApiKey, ConsumerGroupHeartbeatRequest};

use super::{check_version, DecodeError, Reader};

/// ConsumerGroupHeartbeat versions Sluice decodes; every version is flexible.
pub const CONSUMER_GROUP_HEARTBEAT_VERSIONS: (i16, i16) = (0, 1);

/// Decodes a ConsumerGroupHeartbeat request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<ConsumerGroupHeartbeatRequest, DecodeError> {
    check_version(
        ApiKey::ConsumerGroupHeartbeat,
        version,
        CONSUMER_GROUP_HEARTBEAT_VERSIONS,
    )?;
    let mut req = ConsumerGroupHeartbeatRequest::default();
    req.group_id = r.compact_string()?.into();
    req.member_id = r.compact_string()?;
    req.member_epoch = r.i32()?;
    // The nullable fields below mean "unchanged since the last heartbeat" when null.
    req.instance_id = r.compact_nullable_string()?;
    req.rack_id = r.compact_nullable_string()?;
    req.rebalance_timeout_ms = r.i32()?;
    req.subscribed_topic_names =
        r.compact_nullable_array(|r| r.compact_string().map(Into::into))?;
    if version >= 1 {
        req.subscribed_topic_regex = r.compact_nullable_string()?;
    }
    req.server_assignor = r.compact_nullable_string()?;
    req.topic_partitions = r.compact_nullable_array(topic_partitions)?;
    r.tagged_fields(&mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic_partitions(r: &mut Reader) -> Result<TopicPartitions, DecodeError> {
    let mut topic = TopicPartitions::default();
    topic.topic_id = r.uuid()?;
    topic.partitions = r.compact_array(Reader::i32)?;
    r.tagged_fields(&mut topic.unknown_tagged_fields)?;
    Ok(topic)
}
