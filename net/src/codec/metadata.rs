//! Metadata (API key 3): topic and broker discovery.

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest};

use super::{check_version, DecodeError, Reader};

/// Metadata versions Sluice decodes.
pub const METADATA_VERSIONS: (i16, i16) = (0, 12);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 9;

/// Decodes a Metadata request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<MetadataRequest, DecodeError> {
    check_version(ApiKey::Metadata, version, METADATA_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = MetadataRequest::default();
    // A null topic list means "all topics" (v1+), so it stays distinct from an empty list.
    req.topics = r.nullable_array_v(flexible, |r| topic(r, version, flexible))?;
    if version >= 4 {
        req.allow_auto_topic_creation = r.bool()?;
    }
    if (8..=10).contains(&version) {
        req.include_cluster_authorized_operations = r.bool()?;
    }
    if version >= 8 {
        req.include_topic_authorized_operations = r.bool()?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(
    r: &mut Reader,
    version: i16,
    flexible: bool,
) -> Result<MetadataRequestTopic, DecodeError> {
    let mut topic = MetadataRequestTopic::default();
    if version >= 10 {
        topic.topic_id = r.uuid()?;
    }
    // From v10 a topic may be named by id alone, so the name is nullable.
    topic.name = r.nullable_string_v(flexible)?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}
