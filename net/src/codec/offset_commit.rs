//! OffsetCommit (API key 8): consumers recording their positions.

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest};

use super::{check_version, DecodeError, Reader};

/// OffsetCommit versions Sluice decodes; v10 names topics by id (KIP-848).
pub const OFFSET_COMMIT_VERSIONS: (i16, i16) = (2, 10);

/// First version that names topics by id.
const TOPIC_ID_MIN: i16 = 10;

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 8;

/// Decodes an OffsetCommit request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<OffsetCommitRequest, DecodeError> {
    check_version(ApiKey::OffsetCommit, version, OFFSET_COMMIT_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = OffsetCommitRequest::default();
    req.group_id = r.string_v(flexible)?;
    req.generation_id_or_member_epoch = r.i32()?;
    req.member_id = r.string_v(flexible)?;
    if version >= 7 {
        req.group_instance_id = r.nullable_string_v(flexible)?;
    }
    if version <= 4 {
        req.retention_time_ms = r.i64()?;
    }
    req.topics = r.array_v(flexible, |r| topic(r, version, flexible))?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(
    r: &mut Reader,
    version: i16,
    flexible: bool,
) -> Result<OffsetCommitRequestTopic, DecodeError> {
    let mut topic = OffsetCommitRequestTopic::default();
    if version >= TOPIC_ID_MIN {
        topic.topic_id = r.uuid()?;
    } else {
        topic.name = r.string_v(flexible)?;
    }
    topic.partitions = r.array_v(flexible, |r| partition(r, version, flexible))?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn partition(
    r: &mut Reader,
    version: i16,
    flexible: bool,
) -> Result<OffsetCommitRequestPartition, DecodeError> {
    let mut partition = OffsetCommitRequestPartition::default();
    partition.partition_index = r.i32()?;
    partition.committed_offset = r.i64()?;
    if version >= 6 {
        partition.committed_leader_epoch = r.i32()?;
    }
    partition.committed_metadata = r.nullable_string_v(flexible)?;
    r.tagged_fields_v(flexible, &mut partition.unknown_tagged_fields)?;
    Ok(partition)
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
        let mut partition = OffsetCommitRequestPartition::default();
        partition.partition_index = 3;
        partition.committed_offset = 42;
        partition.committed_leader_epoch = 7;
        partition.committed_metadata = Some("meta".to_string().into());
        let mut topic = OffsetCommitRequestTopic::default();
        topic.name = kafka_protocol::messages::TopicName(NAME_OF_ID_LENGTH.to_string().into());
        topic.partitions = vec![partition];
        let mut request = OffsetCommitRequest::default();
        request.group_id = kafka_protocol::messages::GroupId("group".to_string().into());
        request.generation_id_or_member_epoch = 5;
        request.member_id = "member".to_string().into();
        request.topics = vec![topic];
        let mut v9 = BytesMut::new();
        request.encode(&mut v9, 9).expect("encodes");
        let id = Uuid::from_u128(0x00aa_bbcc_ddee_ff00_1122_3344_5566_7788);
        let v10 = name_to_id(&v9, &id);

        let mut r = Reader::new(Bytes::from(v10));
        let decoded = decode(&mut r, 10).expect("decodes");
        assert!(r.finish().is_ok());
        let mut expected = request;
        expected.topics[0].name = Default::default();
        expected.topics[0].topic_id = id;
        assert_eq!(decoded, expected);
        // And v9 still reads the name.
        let mut r = Reader::new(v9.freeze());
        let decoded = decode(&mut r, 9).expect("decodes");
        assert_eq!(decoded.topics[0].name.0.as_str(), NAME_OF_ID_LENGTH);
    }
}
