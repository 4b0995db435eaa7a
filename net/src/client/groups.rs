//! Consumer-group admin calls (`sluice group ...`): listing, describing and
//! deleting groups, and reading and committing their offsets.
//!
//! ListGroups goes to every broker (each lists the groups it coordinates);
//! everything about one group goes to that group's coordinator, found with
//! FindCoordinator. Commits are "simple" commits, as Kafka's admin tools
//! make them: generation -1 and no member id, which a broker accepts only
//! while the group has no members.

use bytes::Buf;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::admin::Admin;
use super::connection::Connection;
use super::error::{ClientError, KafkaError};

/// FindCoordinator's key type for a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// FindCoordinator takes a batch of keys (`coordinator_keys`) from v4 on.
const FIND_COORDINATOR_BATCH_VERSION_MIN: i16 = 4;
/// ListGroups filters by state from v4 on.
const LIST_GROUPS_STATES_VERSION_MIN: i16 = 4;
/// The highest ConsumerProtocolAssignment version `kafka-protocol` decodes;
/// newer versions only add fields at the end, so they decode as this one.
const ASSIGNMENT_VERSION_MAX: i16 = 3;

/// COORDINATOR_LOAD_IN_PROGRESS and COORDINATOR_NOT_AVAILABLE: the
/// coordinator is starting up; asking again shortly usually succeeds.
const COORDINATOR_RETRIABLE: [i16; 2] = [14, 15];
/// How often FindCoordinator is retried on a retriable error.
const FIND_COORDINATOR_ATTEMPTS: u32 = 5;
const FIND_COORDINATOR_BACKOFF_MS: u64 = 200;

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

fn text(value: &StrBytes) -> String {
    value.as_str().to_string()
}

/// A group as ListGroups reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    /// `None` from brokers whose ListGroups version predates states (v4).
    pub state: Option<String>,
}

/// A member of a described group.
#[derive(Clone, Debug)]
pub struct GroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// `(topic, partitions)` from the consumer-protocol assignment; empty
    /// for other protocol types or before the first assignment.
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// DescribeGroups' answer for one group.
#[derive(Clone, Debug)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    /// The chosen assignor (e.g. `range`), empty while none is chosen.
    pub protocol: String,
    pub members: Vec<GroupMember>,
}

/// A group's committed offset for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    /// The committed offset, or the broker's error for this partition.
    pub offset: Result<i64, KafkaError>,
    pub metadata: Option<String>,
}

/// Decodes a consumer-protocol assignment (version prefix, then the body).
fn decode_assignment(bytes: &[u8]) -> Vec<(String, Vec<i32>)> {
    let mut buffer = bytes::Bytes::copy_from_slice(bytes);
    if buffer.remaining() < 2 {
        return Vec::new();
    }
    let version = buffer.get_i16().clamp(0, ASSIGNMENT_VERSION_MAX);
    match ConsumerProtocolAssignment::decode(&mut buffer, version) {
        Ok(assignment) => assignment
            .assigned_partitions
            .into_iter()
            .map(|assigned| (text(&assigned.topic.0), assigned.partitions))
            .collect(),
        // Not a consumer-protocol assignment: show no partitions.
        Err(_) => Vec::new(),
    }
}

impl Admin {
    /// The node id of the coordinator of `group`.
    pub fn find_coordinator(&mut self, group: &str) -> Result<i32, ClientError> {
        let mut attempt = 1;
        loop {
            match self.find_coordinator_once(group) {
                Err(ClientError::Broker(error))
                    if COORDINATOR_RETRIABLE.contains(&error.code)
                        && attempt < FIND_COORDINATOR_ATTEMPTS =>
                {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(
                        FIND_COORDINATOR_BACKOFF_MS,
                    ));
                }
                other => return other,
            }
        }
    }

    fn find_coordinator_once(&mut self, group: &str) -> Result<i32, ClientError> {
        let connection = self.bootstrap();
        let version = connection.version(ApiKey::FindCoordinator)?;
        let mut request = FindCoordinatorRequest::default();
        request.key_type = KEY_TYPE_GROUP;
        if version >= FIND_COORDINATOR_BATCH_VERSION_MIN {
            request.coordinator_keys = vec![StrBytes::from_string(group.to_string())];
        } else {
            request.key = StrBytes::from_string(group.to_string());
        }
        let response = connection.send(&request, version)?;
        if version < FIND_COORDINATOR_BATCH_VERSION_MIN {
            KafkaError::check(
                response.error_code,
                response.error_message.as_ref().map(text),
            )?;
            return Ok(response.node_id.0);
        }
        let coordinator = response
            .coordinators
            .iter()
            .find(|coordinator| coordinator.key.as_str() == group)
            .ok_or_else(|| ClientError::Protocol {
                address: connection.address().to_string(),
                api: ApiKey::FindCoordinator,
                message: format!("no coordinator for group '{group}'"),
            })?;
        KafkaError::check(
            coordinator.error_code,
            coordinator.error_message.as_ref().map(text),
        )?;
        Ok(coordinator.node_id.0)
    }

    /// A connection to the coordinator of `group`.
    fn coordinator(&mut self, group: &str) -> Result<&mut Connection, ClientError> {
        let node_id = self.find_coordinator(group)?;
        self.connection_to(node_id)
    }

    /// The groups of every broker, optionally only those in one of `states`
    /// (case-insensitive, e.g. `Empty`, `Stable`). Sorted by group id.
    pub fn list_groups(&mut self, states: &[String]) -> Result<Vec<GroupListing>, ClientError> {
        let brokers = self.metadata(Some(&[]))?.brokers;
        let mut groups: Vec<GroupListing> = Vec::new();
        for broker in brokers {
            let connection = self.connection_to(broker.node_id)?;
            let version = connection.version(ApiKey::ListGroups)?;
            let mut request = ListGroupsRequest::default();
            if version >= LIST_GROUPS_STATES_VERSION_MIN {
                request.states_filter = states
                    .iter()
                    .map(|state| StrBytes::from_string(state.clone()))
                    .collect();
            }
            let response = connection.send(&request, version)?;
            KafkaError::check(response.error_code, None)?;
            for listed in response.groups {
                let listing = GroupListing {
                    group_id: text(&listed.group_id.0),
                    protocol_type: text(&listed.protocol_type),
                    state: (version >= LIST_GROUPS_STATES_VERSION_MIN)
                        .then(|| text(&listed.group_state)),
                };
                if !groups.contains(&listing) {
                    groups.push(listing);
                }
            }
        }
        // Older brokers ignore the filter (and report no states): filter
        // here as well, keeping groups of unknown state only when unfiltered.
        if !states.is_empty() {
            groups.retain(|group| {
                group.state.as_ref().is_some_and(|state| {
                    states
                        .iter()
                        .any(|wanted| wanted.eq_ignore_ascii_case(state))
                })
            });
        }
        groups.sort_by(|left, right| left.group_id.cmp(&right.group_id));
        Ok(groups)
    }

    /// Describes one group. A group the coordinator does not know is
    /// reported as state `Dead` with no members, as Kafka does.
    pub fn describe_group(&mut self, group: &str) -> Result<GroupDescription, ClientError> {
        let connection = self.coordinator(group)?;
        let version = connection.version(ApiKey::DescribeGroups)?;
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![group_id(group)];
        let response = connection.send(&request, version)?;
        let described = response
            .groups
            .into_iter()
            .find(|described| described.group_id.0.as_str() == group)
            .ok_or_else(|| ClientError::Protocol {
                address: connection.address().to_string(),
                api: ApiKey::DescribeGroups,
                message: format!("no result for group '{group}'"),
            })?;
        KafkaError::check(
            described.error_code,
            described.error_message.as_ref().map(text),
        )?;
        let consumer = described.protocol_type.as_str() == "consumer";
        let members = described
            .members
            .iter()
            .map(|member| GroupMember {
                member_id: text(&member.member_id),
                group_instance_id: member.group_instance_id.as_ref().map(text),
                client_id: text(&member.client_id),
                client_host: text(&member.client_host),
                assignment: if consumer {
                    decode_assignment(&member.member_assignment)
                } else {
                    Vec::new()
                },
            })
            .collect();
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: text(&described.group_state),
            protocol_type: text(&described.protocol_type),
            protocol: text(&described.protocol_data),
            members,
        })
    }

    /// Deletes one group; the broker refuses groups that still have members
    /// (NON_EMPTY_GROUP).
    pub fn delete_group(&mut self, group: &str) -> Result<(), ClientError> {
        let connection = self.coordinator(group)?;
        let version = connection.version(ApiKey::DeleteGroups)?;
        let mut request = DeleteGroupsRequest::default();
        request.groups_names = vec![group_id(group)];
        let response = connection.send(&request, version)?;
        let result = response
            .results
            .iter()
            .find(|result| result.group_id.0.as_str() == group)
            .ok_or_else(|| ClientError::Protocol {
                address: connection.address().to_string(),
                api: ApiKey::DeleteGroups,
                message: format!("no result for group '{group}'"),
            })?;
        KafkaError::check(result.error_code, None)?;
        Ok(())
    }

    /// Every offset `group` has committed, sorted by topic and partition.
    pub fn committed_offsets(&mut self, group: &str) -> Result<Vec<CommittedOffset>, ClientError> {
        let connection = self.coordinator(group)?;
        let version = connection.version(ApiKey::OffsetFetch)?;
        let mut request = OffsetFetchRequest::default();
        request.group_id = group_id(group);
        // All topics: allowed from v2, where the client's range starts.
        request.topics = None;
        let response = connection.send(&request, version)?;
        KafkaError::check(response.error_code, None)?;
        let mut offsets: Vec<CommittedOffset> = response
            .topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|partition| CommittedOffset {
                    topic: text(&topic.name.0),
                    partition: partition.partition_index,
                    offset: KafkaError::check(partition.error_code, None)
                        .map(|()| partition.committed_offset),
                    metadata: partition.metadata.as_ref().map(text),
                })
            })
            .collect();
        offsets.sort_by(|left, right| {
            (&left.topic, left.partition).cmp(&(&right.topic, right.partition))
        });
        Ok(offsets)
    }

    /// Commits `offsets` (`(topic, partition, offset)`) for `group` as a
    /// simple commit. The first partition error is returned as `Err`.
    pub fn commit_offsets(
        &mut self,
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), ClientError> {
        let connection = self.coordinator(group)?;
        let version = connection.version(ApiKey::OffsetCommit)?;
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for (topic, partition, offset) in offsets {
            let mut committed = OffsetCommitRequestPartition::default();
            committed.partition_index = *partition;
            committed.committed_offset = *offset;
            committed.committed_leader_epoch = -1;
            committed.committed_metadata = Some(StrBytes::from_static_str(""));
            match topics
                .iter_mut()
                .find(|known| known.name.0.as_str() == topic)
            {
                Some(known) => known.partitions.push(committed),
                None => {
                    let mut new_topic = OffsetCommitRequestTopic::default();
                    new_topic.name = TopicName(StrBytes::from_string(topic.clone()));
                    new_topic.partitions = vec![committed];
                    topics.push(new_topic);
                }
            }
        }
        let mut request = OffsetCommitRequest::default();
        request.group_id = group_id(group);
        request.generation_id_or_member_epoch = -1;
        request.member_id = StrBytes::from_static_str("");
        // v2-v4: keep the broker's retention.
        request.retention_time_ms = -1;
        request.topics = topics;
        let response = connection.send(&request, version)?;
        for topic in &response.topics {
            for partition in &topic.partitions {
                KafkaError::check(partition.error_code, None)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn decodes_consumer_assignments() {
        let mut partitions = TopicPartition::default();
        partitions.topic = TopicName(StrBytes::from_static_str("t"));
        partitions.partitions = vec![0, 2];
        let mut assignment = ConsumerProtocolAssignment::default();
        assignment.assigned_partitions = vec![partitions];
        let mut buffer = bytes::BytesMut::new();
        buffer.put_i16(1);
        assignment
            .encode(&mut buffer, 1)
            .expect("encode a test assignment");
        assert_eq!(
            decode_assignment(&buffer),
            vec![("t".to_string(), vec![0, 2])]
        );
        assert!(decode_assignment(&[]).is_empty());
        assert!(decode_assignment(&[0, 0, 1]).is_empty());
    }
}
