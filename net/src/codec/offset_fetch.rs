//! OffsetFetch (API key 9): consumers reading back committed positions.

use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{ApiKey, OffsetFetchRequest};

use super::{check_version, DecodeError, Reader};

/// OffsetFetch versions Sluice decodes; v10 names topics by id (KIP-848).
pub const OFFSET_FETCH_VERSIONS: (i16, i16) = (1, 10);

/// First version that names topics by id.
const TOPIC_ID_MIN: i16 = 10;

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
    group.topics = r.compact_nullable_array(|r| group_topic(r, version))?;
    r.tagged_fields(&mut group.unknown_tagged_fields)?;
    Ok(group)
}

fn group_topic(r: &mut Reader, version: i16) -> Result<OffsetFetchRequestTopics, DecodeError> {
    let mut topic = OffsetFetchRequestTopics::default();
    if version >= TOPIC_ID_MIN {
        topic.topic_id = r.uuid()?;
    } else {
        topic.name = r.compact_string()?.into();
    }
    topic.partition_indexes = r.compact_array(Reader::i32)?;
    r.tagged_fields(&mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::protocol::Encodable;
    use uuid::Uuid;

    use crate::codec::by_id::{name_to_id, NAME_OF_ID_LENGTH};

    /// v10's bytes are v9's with each topic's name replaced by its id (the
    /// kafka-protocol crate stops at v9): a v9 request with a 15-byte name,
    /// its name's bytes swapped for an id, decodes at v10 to the same
    /// request with the id and no name.
    #[test]
    fn v10_reads_topic_ids_where_v9_has_names() {
        let mut topic = OffsetFetchRequestTopics::default();
        topic.name = kafka_protocol::messages::TopicName(NAME_OF_ID_LENGTH.to_string().into());
        topic.partition_indexes = vec![0, 4];
        let mut group = OffsetFetchRequestGroup::default();
        group.group_id = kafka_protocol::messages::GroupId("group".to_string().into());
        group.member_id = Some("member".to_string().into());
        group.member_epoch = 3;
        group.topics = Some(vec![topic]);
        let mut everything = OffsetFetchRequestGroup::default();
        everything.group_id = kafka_protocol::messages::GroupId("all".to_string().into());
        everything.topics = None;
        let mut request = OffsetFetchRequest::default();
        request.groups = vec![group, everything];
        request.require_stable = true;
        let mut v9 = BytesMut::new();
        request.encode(&mut v9, 9).expect("encodes");
        let id = Uuid::from_u128(0x1020_3040_5060_7080_90a0_b0c0_d0e0_f000);
        let v10 = name_to_id(&v9, &id);

        let mut r = Reader::new(Bytes::from(v10));
        let decoded = decode(&mut r, 10).expect("decodes");
        assert!(r.finish().is_ok());
        let mut expected = request;
        if let Some(topics) = expected.groups[0].topics.as_mut() {
            topics[0].name = Default::default();
            topics[0].topic_id = id;
        }
        assert_eq!(decoded, expected);
    }
}
