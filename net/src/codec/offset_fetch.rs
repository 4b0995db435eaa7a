//! OffsetFetch (API key 9): consumers reading back committed positions.

use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{ApiKey, OffsetFetchRequest};

use super::{check_version, DecodeError, Reader};

/// OffsetFetch versions Sluice decodes.
pub const OFFSET_FETCH_VERSIONS: (i16, i16) = (1, 9);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 6;

/// Decodes an OffsetFetch request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<OffsetFetchRequest, DecodeError> {
    check_version(ApiKey::OffsetFetch, version, OFFSET_FETCH_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = OffsetFetchRequest::default();
    // v8 replaced the single group with a batch of groups.
    if version <= 7 {
        req.group_id = r.string_v(flexible)?;
        // Null topics (v2+) ask for every partition the group has committed.
        req.topics = r.nullable_array_v(flexible, |r| topic(r, flexible))?;
    } else {
        req.groups = r.compact_array(|r| group(r, version))?;
    }
    if version >= 7 {
        req.require_stable = r.bool()?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader, flexible: bool) -> Result<OffsetFetchRequestTopic, DecodeError> {
    let mut topic = OffsetFetchRequestTopic::default();
    topic.name = r.string_v(flexible)?;
    topic.partition_indexes = r.array_v(flexible, Reader::i32)?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

/// A group entry, which only exists in the (flexible) versions 8 and up.
fn group(r: &mut Reader, version: i16) -> Result<OffsetFetchRequestGroup, DecodeError> {
    let mut group = OffsetFetchRequestGroup::default();
    group.group_id = r.compact_string()?.into();
    if version >= 9 {
        group.member_id = r.compact_nullable_string()?;
        group.member_epoch = r.i32()?;
    }
    group.topics = r.compact_nullable_array(group_topic)?;
    r.tagged_fields(&mut group.unknown_tagged_fields)?;
    Ok(group)
}

fn group_topic(r: &mut Reader) -> Result<OffsetFetchRequestTopics, DecodeError> {
    let mut topic = OffsetFetchRequestTopics::default();
    topic.name = r.compact_string()?.into();
    topic.partition_indexes = r.compact_array(Reader::i32)?;
    r.tagged_fields(&mut topic.unknown_tagged_fields)?;
    Ok(topic)
}
