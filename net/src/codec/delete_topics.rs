//! DeleteTopics (API key 20).

use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest};

use super::{check_version, DecodeError, Reader};

/// DeleteTopics versions Sluice decodes.
pub const DELETE_TOPICS_VERSIONS: (i16, i16) = (1, 6);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 4;

/// Decodes a DeleteTopics request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<DeleteTopicsRequest, DecodeError> {
    check_version(ApiKey::DeleteTopics, version, DELETE_TOPICS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = DeleteTopicsRequest::default();
    // v6 replaced the list of names with a list of (name or id) entries.
    if version >= 6 {
        req.topics = r.array_v(flexible, |r| topic(r, flexible))?;
    } else {
        req.topic_names = r.array_v(flexible, |r| r.string_v(flexible))?;
    }
    req.timeout_ms = r.i32()?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader, flexible: bool) -> Result<DeleteTopicState, DecodeError> {
    let mut topic = DeleteTopicState::default();
    topic.name = r.nullable_string_v(flexible)?;
    topic.topic_id = r.uuid()?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}
