//! The KIP-848 consumer-group records of `__consumer_offsets`, in Kafka's
//! schemas: keys 3–8 (non-flexible: INT16 key type, STRING group id, and a
//! STRING member id for the per-member records) and flexible value v0 (an
//! INT16 version, compact strings and arrays, UUIDs, tagged fields). The
//! layouts are drawn in `docs/format.md`.
//!
//! Sluice writes no rack information and no tagged fields; on reading,
//! tagged fields (newer optional data) are skipped.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;

use super::records::RecordError;
use crate::codec::Reader;

/// Key type of a consumer group's epoch.
pub const METADATA_KEY: i16 = 3;
/// Key type of the group's subscribed-topic metadata.
pub const PARTITION_METADATA_KEY: i16 = 4;
/// Key type of a member's subscription and settings.
pub const MEMBER_METADATA_KEY: i16 = 5;
/// Key type of the target assignment's epoch.
pub const TARGET_ASSIGNMENT_METADATA_KEY: i16 = 6;
/// Key type of one member's target assignment.
pub const TARGET_ASSIGNMENT_MEMBER_KEY: i16 = 7;
/// Key type of one member's current assignment and epoch.
pub const CURRENT_MEMBER_ASSIGNMENT_KEY: i16 = 8;
/// The only value version of every consumer-group value schema.
pub const VALUE_VERSION: i16 = 0;

/// A topic id.
pub type TopicId = [u8; 16];
/// Partitions by topic id, ordered so records and answers are stable.
pub type Assignment = BTreeMap<TopicId, BTreeSet<i32>>;

/// Which consumer-group record a key names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerKey {
    Metadata,
    PartitionMetadata,
    Member(String),
    TargetMetadata,
    TargetMember(String),
    CurrentAssignment(String),
}

/// A member's subscription and settings (ConsumerGroupMemberMetadataValue).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberMetadata {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
}

/// One subscribed topic as the group last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMetadata {
    pub id: TopicId,
    pub name: String,
    pub partitions: i32,
}

/// Kafka's member states (the INT8 of the current-assignment record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    /// Waiting for the member to give up partitions.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still own.
    UnreleasedPartitions,
}

impl MemberState {
    pub fn code(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        }
    }

    fn from_code(code: i8) -> MemberState {
        match code {
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            // Unknown states (127) reconcile again from scratch, which
            // Stable does on the next heartbeat.
            _ => MemberState::Stable,
        }
    }
}

/// A member's epoch and current assignment
/// (ConsumerGroupCurrentMemberAssignmentValue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentAssignment {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
}

impl Default for CurrentAssignment {
    fn default() -> Self {
        CurrentAssignment {
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
        }
    }
}

fn put_string(out: &mut BytesMut, text: &str) {
    assert!(text.len() <= i16::MAX as usize, "key string too long");
    out.put_i16(text.len() as i16);
    out.put_slice(text.as_bytes());
}

fn put_unsigned_varint(out: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn put_compact_string(out: &mut BytesMut, text: &str) {
    put_unsigned_varint(out, text.len() as u32 + 1);
    out.put_slice(text.as_bytes());
}

fn put_compact_nullable_string(out: &mut BytesMut, text: Option<&str>) {
    match text {
        Some(text) => put_compact_string(out, text),
        None => put_unsigned_varint(out, 0),
    }
}

fn put_array_length(out: &mut BytesMut, length: usize) {
    put_unsigned_varint(out, length as u32 + 1);
}

/// No tagged fields.
fn put_no_tags(out: &mut BytesMut) {
    put_unsigned_varint(out, 0);
}

/// The key of a consumer-group record.
pub fn key(group: &str, which: &ConsumerKey) -> Bytes {
    let mut out = BytesMut::new();
    let (kind, member) = match which {
        ConsumerKey::Metadata => (METADATA_KEY, None),
        ConsumerKey::PartitionMetadata => (PARTITION_METADATA_KEY, None),
        ConsumerKey::Member(member) => (MEMBER_METADATA_KEY, Some(member)),
        ConsumerKey::TargetMetadata => (TARGET_ASSIGNMENT_METADATA_KEY, None),
        ConsumerKey::TargetMember(member) => (TARGET_ASSIGNMENT_MEMBER_KEY, Some(member)),
        ConsumerKey::CurrentAssignment(member) => (CURRENT_MEMBER_ASSIGNMENT_KEY, Some(member)),
    };
    out.put_i16(kind);
    put_string(&mut out, group);
    if let Some(member) = member {
        put_string(&mut out, member);
    }
    out.freeze()
}

/// Decodes the rest of a key whose type (`kind`) was read already: the
/// group id and which record it is. `None` for a type that is not a
/// consumer-group record.
pub fn decode_key(
    kind: i16,
    reader: &mut Reader,
) -> Result<Option<(String, ConsumerKey)>, RecordError> {
    let group =
        |reader: &mut Reader| -> Result<String, RecordError> { Ok(reader.string()?.to_string()) };
    let decoded = match kind {
        METADATA_KEY => (group(reader)?, ConsumerKey::Metadata),
        PARTITION_METADATA_KEY => (group(reader)?, ConsumerKey::PartitionMetadata),
        TARGET_ASSIGNMENT_METADATA_KEY => (group(reader)?, ConsumerKey::TargetMetadata),
        MEMBER_METADATA_KEY | TARGET_ASSIGNMENT_MEMBER_KEY | CURRENT_MEMBER_ASSIGNMENT_KEY => {
            let group = group(reader)?;
            let member = reader.string()?.to_string();
            let which = match kind {
                MEMBER_METADATA_KEY => ConsumerKey::Member(member),
                TARGET_ASSIGNMENT_MEMBER_KEY => ConsumerKey::TargetMember(member),
                _ => ConsumerKey::CurrentAssignment(member),
            };
            (group, which)
        }
        _ => return Ok(None),
    };
    Ok(Some(decoded))
}

fn start_value() -> BytesMut {
    let mut out = BytesMut::new();
    out.put_i16(VALUE_VERSION);
    out
}

fn read_version(reader: &mut Reader) -> Result<(), RecordError> {
    let version = reader.i16()?;
    if version != VALUE_VERSION {
        return Err(RecordError::UnknownVersion(version));
    }
    Ok(())
}

fn skip_tags(reader: &mut Reader) -> Result<(), RecordError> {
    reader.tagged_fields(&mut Default::default())?;
    Ok(())
}

/// ConsumerGroupMetadataValue: the group epoch.
pub fn encode_metadata(epoch: i32) -> Bytes {
    let mut out = start_value();
    out.put_i32(epoch);
    put_no_tags(&mut out);
    out.freeze()
}

pub fn decode_metadata(bytes: Bytes) -> Result<i32, RecordError> {
    let mut reader = Reader::new(bytes);
    read_version(&mut reader)?;
    let epoch = reader.i32()?;
    skip_tags(&mut reader)?;
    Ok(epoch)
}

/// ConsumerGroupTargetAssignmentMetadataValue: the assignment epoch.
pub fn encode_target_metadata(epoch: i32) -> Bytes {
    encode_metadata(epoch)
}

pub fn decode_target_metadata(bytes: Bytes) -> Result<i32, RecordError> {
    decode_metadata(bytes)
}

/// ConsumerGroupPartitionMetadataValue: the subscribed topics (no racks).
pub fn encode_partition_metadata(epoch: i32, topics: &[TopicMetadata]) -> Bytes {
    let mut out = start_value();
    out.put_i32(epoch);
    put_array_length(&mut out, topics.len());
    for topic in topics {
        out.put_slice(&topic.id);
        put_compact_string(&mut out, &topic.name);
        out.put_i32(topic.partitions);
        // PartitionRacks: none.
        put_array_length(&mut out, 0);
        put_no_tags(&mut out);
    }
    put_no_tags(&mut out);
    out.freeze()
}

pub fn decode_partition_metadata(bytes: Bytes) -> Result<Vec<TopicMetadata>, RecordError> {
    let mut reader = Reader::new(bytes);
    read_version(&mut reader)?;
    let _epoch = reader.i32()?;
    let topics = reader.compact_array(|reader| {
        let id = *reader.uuid()?.as_bytes();
        let name = reader.compact_string()?.to_string();
        let partitions = reader.i32()?;
        reader.compact_array(|reader| {
            let _partition = reader.i32()?;
            reader.compact_array(|reader| reader.compact_string())?;
            reader.tagged_fields(&mut Default::default())
        })?;
        reader.tagged_fields(&mut Default::default())?;
        Ok(TopicMetadata {
            id,
            name,
            partitions,
        })
    })?;
    skip_tags(&mut reader)?;
    Ok(topics)
}

/// ConsumerGroupMemberMetadataValue.
pub fn encode_member(member: &MemberMetadata) -> Bytes {
    let mut out = start_value();
    put_compact_nullable_string(&mut out, member.instance_id.as_deref());
    put_compact_nullable_string(&mut out, member.rack_id.as_deref());
    put_compact_string(&mut out, &member.client_id);
    put_compact_string(&mut out, &member.client_host);
    put_array_length(&mut out, member.subscribed_topic_names.len());
    for name in &member.subscribed_topic_names {
        put_compact_string(&mut out, name);
    }
    put_compact_nullable_string(&mut out, member.subscribed_topic_regex.as_deref());
    out.put_i32(member.rebalance_timeout_ms);
    put_compact_nullable_string(&mut out, member.server_assignor.as_deref());
    put_no_tags(&mut out);
    out.freeze()
}

fn optional(text: Option<StrBytes>) -> Option<String> {
    text.map(|text| text.to_string())
}

pub fn decode_member(bytes: Bytes) -> Result<MemberMetadata, RecordError> {
    let mut reader = Reader::new(bytes);
    read_version(&mut reader)?;
    let instance_id = optional(reader.compact_nullable_string()?);
    let rack_id = optional(reader.compact_nullable_string()?);
    let client_id = reader.compact_string()?.to_string();
    let client_host = reader.compact_string()?.to_string();
    let subscribed_topic_names =
        reader.compact_array(|reader| Ok(reader.compact_string()?.to_string()))?;
    let subscribed_topic_regex = optional(reader.compact_nullable_string()?);
    let rebalance_timeout_ms = reader.i32()?;
    let server_assignor = optional(reader.compact_nullable_string()?);
    // Tag 0 (ClassicMemberMetadata) belongs to members that joined with
    // the classic protocol, which Sluice does not mix in; it is skipped.
    skip_tags(&mut reader)?;
    Ok(MemberMetadata {
        instance_id,
        rack_id,
        client_id,
        client_host,
        subscribed_topic_names,
        subscribed_topic_regex,
        rebalance_timeout_ms,
        server_assignor,
    })
}

fn put_assignment(out: &mut BytesMut, assignment: &Assignment) {
    put_array_length(out, assignment.len());
    for (topic, partitions) in assignment {
        out.put_slice(topic);
        put_array_length(out, partitions.len());
        for partition in partitions {
            out.put_i32(*partition);
        }
        put_no_tags(out);
    }
}

fn read_assignment(reader: &mut Reader) -> Result<Assignment, RecordError> {
    let topics = reader.compact_array(|reader| {
        let id = *reader.uuid()?.as_bytes();
        let partitions = reader.compact_array(|reader| reader.i32())?;
        // Tag 0 of the current assignment (per-partition assignment
        // epochs) is optional and skipped.
        reader.tagged_fields(&mut Default::default())?;
        Ok((id, partitions))
    })?;
    let mut assignment = Assignment::new();
    for (id, partitions) in topics {
        assignment.entry(id).or_default().extend(partitions);
    }
    Ok(assignment)
}

/// ConsumerGroupTargetAssignmentMemberValue.
pub fn encode_target_member(assignment: &Assignment) -> Bytes {
    let mut out = start_value();
    put_assignment(&mut out, assignment);
    put_no_tags(&mut out);
    out.freeze()
}

pub fn decode_target_member(bytes: Bytes) -> Result<Assignment, RecordError> {
    let mut reader = Reader::new(bytes);
    read_version(&mut reader)?;
    let assignment = read_assignment(&mut reader)?;
    skip_tags(&mut reader)?;
    Ok(assignment)
}

/// ConsumerGroupCurrentMemberAssignmentValue.
pub fn encode_current(current: &CurrentAssignment) -> Bytes {
    let mut out = start_value();
    out.put_i32(current.member_epoch);
    out.put_i32(current.previous_member_epoch);
    out.put_i8(current.state.code());
    put_assignment(&mut out, &current.assigned);
    put_assignment(&mut out, &current.pending_revocation);
    put_no_tags(&mut out);
    out.freeze()
}

pub fn decode_current(bytes: Bytes) -> Result<CurrentAssignment, RecordError> {
    let mut reader = Reader::new(bytes);
    read_version(&mut reader)?;
    let member_epoch = reader.i32()?;
    let previous_member_epoch = reader.i32()?;
    let state = MemberState::from_code(reader.i8()?);
    let assigned = read_assignment(&mut reader)?;
    let pending_revocation = read_assignment(&mut reader)?;
    skip_tags(&mut reader)?;
    Ok(CurrentAssignment {
        member_epoch,
        previous_member_epoch,
        state,
        assigned,
        pending_revocation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let member = MemberMetadata {
            instance_id: Some("i".into()),
            rack_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            subscribed_topic_names: vec!["a".into(), "b".into()],
            subscribed_topic_regex: Some("x.*".into()),
            rebalance_timeout_ms: 3000,
            server_assignor: Some("uniform".into()),
        };
        assert_eq!(decode_member(encode_member(&member)), Ok(member));
        let mut assigned = Assignment::new();
        assigned.insert([1; 16], BTreeSet::from([0, 3]));
        let current = CurrentAssignment {
            member_epoch: 7,
            previous_member_epoch: 6,
            state: MemberState::UnrevokedPartitions,
            assigned: assigned.clone(),
            pending_revocation: BTreeMap::from([([2; 16], BTreeSet::from([9]))]),
        };
        assert_eq!(decode_current(encode_current(&current)), Ok(current));
        assert_eq!(
            decode_target_member(encode_target_member(&assigned)),
            Ok(assigned)
        );
        let topics = vec![TopicMetadata {
            id: [3; 16],
            name: "t".into(),
            partitions: 12,
        }];
        assert_eq!(
            decode_partition_metadata(encode_partition_metadata(4, &topics)),
            Ok(topics)
        );
        assert_eq!(decode_metadata(encode_metadata(9)), Ok(9));
        // A cut value is an error, not a panic.
        let bytes = encode_current(&CurrentAssignment::default());
        assert!(decode_current(bytes.slice(..bytes.len() - 2)).is_err());
    }

    #[test]
    fn keys_carry_type_group_and_member() {
        let bytes = key("g", &ConsumerKey::CurrentAssignment("m".into()));
        assert_eq!(&bytes[..], &[0, 8, 0, 1, b'g', 0, 1, b'm']);
        let mut reader = Reader::new(bytes.slice(2..));
        assert_eq!(
            decode_key(8, &mut reader),
            Ok(Some((
                "g".into(),
                ConsumerKey::CurrentAssignment("m".into())
            )))
        );
    }
}
