//! Every version of every group API the broker advertises, on the wire:
//! requests encoded with kafka-protocol's encoders at each version, answers
//! decoded with its decoders (so a field a version lacks, or a wrong
//! encoding, fails here). librdkafka uses only some versions; this covers
//! the rest. ApiVersions must advertise exactly these ranges (KIP-848's
//! APIs are covered by `groups_consumer_protocol.rs`).

mod common;
mod groups_support;

use std::net::TcpStream;

use bytes::Bytes;
use common::{raw_connect, receive_response, send_request, TestBroker};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

const TOPIC: &str = "wire";
const PARTITIONS: i32 = 2;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

struct Client {
    stream: TcpStream,
    correlation: i32,
}

impl Client {
    fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        self.correlation += 1;
        send_request(&mut self.stream, key, version, self.correlation, request);
        receive_response(&mut self.stream, key, version, self.correlation)
    }
}

fn join_request(group: &str, member: &str, version: i16) -> JoinGroupRequest {
    let mut request = JoinGroupRequest::default();
    request.group_id = GroupId(text(group));
    request.session_timeout_ms = 10_000;
    if version >= 1 {
        request.rebalance_timeout_ms = 10_000;
    }
    request.member_id = text(member);
    request.protocol_type = text("consumer");
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = text("range");
    protocol.metadata = Bytes::from_static(b"\x00\x00\x00\x00\x00\x01\x00\x04wire\xff\xff\xff\xff");
    request.protocols = vec![protocol];
    request
}

/// Joins a one-member group at `version` (with the KIP-394 round trip from
/// v4); returns (member id, generation).
fn join(client: &mut Client, group: &str, version: i16) -> (String, i32) {
    let mut response: JoinGroupResponse = client.call(
        ApiKey::JoinGroup,
        version,
        &join_request(group, "", version),
    );
    if version >= 4 {
        assert_eq!(response.error_code, 79, "MEMBER_ID_REQUIRED at v{version}");
        let member = response.member_id.to_string();
        response = client.call(
            ApiKey::JoinGroup,
            version,
            &join_request(group, &member, version),
        );
    }
    assert_eq!(response.error_code, 0, "JoinGroup v{version}");
    assert_eq!(response.generation_id, 1, "JoinGroup v{version}");
    assert_eq!(response.leader, response.member_id, "JoinGroup v{version}");
    assert_eq!(response.members.len(), 1);
    assert_eq!(
        response.protocol_name.as_ref().map(|name| name.as_str()),
        Some("range")
    );
    (response.member_id.to_string(), response.generation_id)
}

fn sync(
    client: &mut Client,
    group: &str,
    member: &str,
    generation: i32,
    version: i16,
) -> SyncGroupResponse {
    let mut request = SyncGroupRequest::default();
    request.group_id = GroupId(text(group));
    request.generation_id = generation;
    request.member_id = text(member);
    if version >= 5 {
        request.protocol_type = Some(text("consumer"));
        request.protocol_name = Some(text("range"));
    }
    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = text(member);
    assignment.assignment = Bytes::from_static(b"assignment");
    request.assignments = vec![assignment];
    client.call(ApiKey::SyncGroup, version, &request)
}

fn stable_group(client: &mut Client, group: &str) -> (String, i32) {
    let (member, generation) = join(client, group, 5);
    let synced = sync(client, group, &member, generation, 3);
    assert_eq!(synced.error_code, 0);
    (member, generation)
}

fn commit_request(group: &str, version: i16, offset: i64) -> OffsetCommitRequest {
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(text(group));
    request.generation_id_or_member_epoch = -1;
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(text(TOPIC));
    let mut partition = OffsetCommitRequestPartition::default();
    partition.partition_index = 0;
    partition.committed_offset = offset;
    partition.committed_metadata = Some(text("wire"));
    if version >= 6 {
        partition.committed_leader_epoch = 0;
    }
    topic.partitions = vec![partition];
    request.topics = vec![topic];
    request
}

#[test]
fn every_advertised_group_api_version_answers() {
    let broker: TestBroker = groups_support::group_broker();
    broker.create_topic(TOPIC, PARTITIONS);
    let mut client = Client {
        stream: raw_connect(broker.address()),
        correlation: 0,
    };

    // ApiVersions advertises the classic group APIs and KIP-848's.
    let versions: ApiVersionsResponse =
        client.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let range = |key: ApiKey| {
        versions
            .api_keys
            .iter()
            .find(|api| api.api_key == key as i16)
            .map(|api| (api.min_version, api.max_version))
    };
    let expected = [
        (ApiKey::FindCoordinator, (0, 6)),
        (ApiKey::JoinGroup, (0, 9)),
        (ApiKey::SyncGroup, (0, 5)),
        (ApiKey::Heartbeat, (0, 4)),
        (ApiKey::LeaveGroup, (0, 5)),
        // v10 (topic ids) has bytes the kafka-protocol crate cannot write;
        // kafka_4_2.rs exercises it.
        (ApiKey::OffsetCommit, (2, 10)),
        (ApiKey::OffsetFetch, (1, 10)),
        (ApiKey::OffsetDelete, (0, 0)),
        (ApiKey::DescribeGroups, (0, 6)),
        (ApiKey::ListGroups, (0, 5)),
        (ApiKey::DeleteGroups, (0, 2)),
    ];
    for (key, versions) in expected {
        assert_eq!(range(key), Some(versions), "{key:?}");
    }
    assert_eq!(range(ApiKey::ConsumerGroupHeartbeat), Some((0, 1)));
    assert_eq!(range(ApiKey::ConsumerGroupDescribe), Some((0, 1)));

    // Asking for `__consumer_offsets` by name creates it as the coordinator
    // does (50 partitions, internal), not as a one-partition auto-created
    // topic; clients cannot write to it.
    let mut metadata = MetadataRequest::default();
    let mut wanted = metadata_request::MetadataRequestTopic::default();
    wanted.name = Some(TopicName(text("__consumer_offsets")));
    metadata.topics = Some(vec![wanted]);
    metadata.allow_auto_topic_creation = true;
    let response: MetadataResponse = client.call(ApiKey::Metadata, 9, &metadata);
    let offsets_topic = &response.topics[0];
    assert_eq!(
        (
            offsets_topic.error_code,
            offsets_topic.partitions.len(),
            offsets_topic.is_internal
        ),
        (0, 50, true)
    );
    let mut produce = ProduceRequest::default();
    produce.acks = 1;
    produce.timeout_ms = 5000;
    let mut topic_data = produce_request::TopicProduceData::default();
    topic_data.name = TopicName(text("__consumer_offsets"));
    let mut partition_data = produce_request::PartitionProduceData::default();
    partition_data.index = 0;
    partition_data.records = Some(Bytes::from(sluice_engine::batch::build_batch(
        0,
        &[b"forged"],
    )));
    topic_data.partition_data = vec![partition_data];
    produce.topic_data = vec![topic_data];
    let response: ProduceResponse = client.call(ApiKey::Produce, 8, &produce);
    assert_eq!(
        response.responses[0].partition_responses[0].error_code, 17,
        "INVALID_TOPIC_EXCEPTION"
    );

    // FindCoordinator: this broker, for groups; no transaction coordinator.
    let port = i32::from(broker.address().port());
    for version in 0..=6 {
        let mut request = FindCoordinatorRequest::default();
        if version >= 4 {
            request.coordinator_keys = vec![text("a"), text("b")];
        } else {
            request.key = text("a");
        }
        let response: FindCoordinatorResponse =
            client.call(ApiKey::FindCoordinator, version, &request);
        if version >= 4 {
            assert_eq!(response.coordinators.len(), 2);
            for coordinator in &response.coordinators {
                assert_eq!(
                    (
                        coordinator.error_code,
                        coordinator.node_id.0,
                        coordinator.port
                    ),
                    (0, 1, port)
                );
            }
        } else {
            assert_eq!(
                (response.error_code, response.node_id.0, response.port),
                (0, 1, port),
                "v{version}"
            );
        }
        if version >= 1 {
            request.key_type = 1;
            let response: FindCoordinatorResponse =
                client.call(ApiKey::FindCoordinator, version, &request);
            let answer = if version >= 4 {
                let coordinator = &response.coordinators[0];
                (
                    coordinator.error_code,
                    coordinator.node_id.0,
                    coordinator.port,
                )
            } else {
                (response.error_code, response.node_id.0, response.port)
            };
            assert_eq!(
                answer,
                (0, 1, port),
                "transactions: this node coordinates them at v{version}"
            );
            // Share groups (key type 2, v6) are not run: INVALID_REQUEST,
            // with no node.
            request.key_type = 2;
            let response: FindCoordinatorResponse =
                client.call(ApiKey::FindCoordinator, version, &request);
            let (error, node) = if version >= 4 {
                (
                    response.coordinators[0].error_code,
                    response.coordinators[0].node_id.0,
                )
            } else {
                (response.error_code, response.node_id.0)
            };
            assert_eq!((error, node), (42, -1), "share groups at v{version}");
        }
    }

    for version in 0..=9 {
        join(&mut client, &format!("join-v{version}"), version);
    }
    for version in 0..=5 {
        let group = format!("sync-v{version}");
        let (member, generation) = join(&mut client, &group, 5);
        let response = sync(&mut client, &group, &member, generation, version);
        assert_eq!(
            (response.error_code, response.assignment.as_ref()),
            (0, &b"assignment"[..]),
            "v{version}"
        );
        if version >= 5 {
            assert_eq!(
                response.protocol_name.as_ref().map(|name| name.as_str()),
                Some("range")
            );
        }
    }
    let (member, generation) = stable_group(&mut client, "beating");
    for version in 0..=4 {
        let mut request = HeartbeatRequest::default();
        request.group_id = GroupId(text("beating"));
        request.generation_id = generation;
        request.member_id = text(&member);
        let response: HeartbeatResponse = client.call(ApiKey::Heartbeat, version, &request);
        assert_eq!(response.error_code, 0, "v{version}");
        request.generation_id = generation + 1;
        let response: HeartbeatResponse = client.call(ApiKey::Heartbeat, version, &request);
        assert_eq!(response.error_code, 22, "ILLEGAL_GENERATION at v{version}");
    }
    for version in 0..=5 {
        let group = format!("leave-v{version}");
        let (member, _) = stable_group(&mut client, &group);
        let mut request = LeaveGroupRequest::default();
        request.group_id = GroupId(text(&group));
        if version >= 3 {
            let mut identity = MemberIdentity::default();
            identity.member_id = text(&member);
            let mut unknown = MemberIdentity::default();
            unknown.member_id = text("nobody");
            request.members = vec![identity, unknown];
        } else {
            request.member_id = text(&member);
        }
        let response: LeaveGroupResponse = client.call(ApiKey::LeaveGroup, version, &request);
        assert_eq!(response.error_code, 0, "v{version}");
        if version >= 3 {
            let errors: Vec<i16> = response
                .members
                .iter()
                .map(|member| member.error_code)
                .collect();
            assert_eq!(errors, vec![0, 25], "v{version}");
        }
    }
    for version in 2..=9 {
        let group = format!("commit-v{version}");
        let response: OffsetCommitResponse = client.call(
            ApiKey::OffsetCommit,
            version,
            &commit_request(&group, version, 42),
        );
        assert_eq!(response.topics[0].partitions[0].error_code, 0, "v{version}");
        let mut unknown = commit_request(&group, version, 1);
        unknown.topics[0].name = TopicName(text("no-such-topic"));
        let response: OffsetCommitResponse = client.call(ApiKey::OffsetCommit, version, &unknown);
        assert_eq!(
            response.topics[0].partitions[0].error_code, 3,
            "UNKNOWN_TOPIC_OR_PARTITION at v{version}"
        );
        let mut large = commit_request(&group, version, 1);
        large.topics[0].partitions[0].committed_metadata = Some(text(&"m".repeat(4097)));
        let response: OffsetCommitResponse = client.call(ApiKey::OffsetCommit, version, &large);
        assert_eq!(
            response.topics[0].partitions[0].error_code, 12,
            "OFFSET_METADATA_TOO_LARGE at v{version}"
        );
    }
    for version in 1..=9 {
        let mut request = OffsetFetchRequest::default();
        if version >= 8 {
            let mut group = OffsetFetchRequestGroup::default();
            group.group_id = GroupId(text("commit-v5"));
            let mut topic = OffsetFetchRequestTopics::default();
            topic.name = TopicName(text(TOPIC));
            topic.partition_indexes = vec![0, 1];
            group.topics = Some(vec![topic]);
            let mut all = OffsetFetchRequestGroup::default();
            all.group_id = GroupId(text("commit-v6"));
            all.topics = None;
            request.groups = vec![group, all];
        } else {
            request.group_id = GroupId(text("commit-v5"));
            let mut topic = OffsetFetchRequestTopic::default();
            topic.name = TopicName(text(TOPIC));
            topic.partition_indexes = vec![0, 1];
            request.topics = Some(vec![topic]);
        }
        let response: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, version, &request);
        let offsets: Vec<(i32, i64, String)> = if version >= 8 {
            assert_eq!(response.groups.len(), 2);
            assert_eq!(
                response.groups[1].topics[0].partitions.len(),
                1,
                "null topics: everything committed"
            );
            response.groups[0].topics[0]
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition_index,
                        p.committed_offset,
                        p.metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        } else {
            response.topics[0]
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition_index,
                        p.committed_offset,
                        p.metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        };
        assert_eq!(
            offsets,
            vec![(0, 42, "wire".to_string()), (1, -1, String::new())],
            "v{version}"
        );
    }
    for version in 0..=5 {
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![GroupId(text("beating")), GroupId(text("never-existed"))];
        let response: DescribeGroupsResponse =
            client.call(ApiKey::DescribeGroups, version, &request);
        let described: Vec<(i16, String, usize)> = response
            .groups
            .iter()
            .map(|group| {
                (
                    group.error_code,
                    group.group_state.to_string(),
                    group.members.len(),
                )
            })
            .collect();
        assert_eq!(
            described,
            vec![(0, "Stable".to_string(), 1), (0, "Dead".to_string(), 0)],
            "v{version}"
        );
        assert_eq!(
            response.groups[0].members[0].member_assignment.as_ref(),
            b"assignment"
        );
    }
    for version in 0..=5 {
        let mut request = ListGroupsRequest::default();
        if version >= 4 {
            request.states_filter = vec![text("Stable")];
        }
        let response: ListGroupsResponse = client.call(ApiKey::ListGroups, version, &request);
        assert_eq!(response.error_code, 0);
        let names: Vec<String> = response
            .groups
            .iter()
            .map(|group| group.group_id.to_string())
            .collect();
        assert!(
            names.contains(&"beating".to_string()),
            "v{version}: {names:?}"
        );
        if version >= 4 {
            assert!(
                !names.contains(&"commit-v2".to_string()),
                "an Empty group passed the Stable filter"
            );
        } else {
            assert!(
                names.contains(&"commit-v2".to_string()),
                "v{version}: {names:?}"
            );
        }
    }
    let mut request = OffsetDeleteRequest::default();
    request.group_id = GroupId(text("commit-v3"));
    let mut topic = OffsetDeleteRequestTopic::default();
    topic.name = TopicName(text(TOPIC));
    let mut partition = OffsetDeleteRequestPartition::default();
    partition.partition_index = 0;
    topic.partitions = vec![partition];
    request.topics = vec![topic.clone()];
    let response: OffsetDeleteResponse = client.call(ApiKey::OffsetDelete, 0, &request);
    assert_eq!(
        (
            response.error_code,
            response.topics[0].partitions[0].error_code
        ),
        (0, 0)
    );
    request.group_id = GroupId(text("beating"));
    let response: OffsetDeleteResponse = client.call(ApiKey::OffsetDelete, 0, &request);
    assert_eq!(
        response.topics[0].partitions[0].error_code, 86,
        "GROUP_SUBSCRIBED_TO_TOPIC"
    );
    request.group_id = GroupId(text("never-existed"));
    let response: OffsetDeleteResponse = client.call(ApiKey::OffsetDelete, 0, &request);
    assert_eq!(response.error_code, 69, "GROUP_ID_NOT_FOUND");
    for version in 0..=2 {
        let mut request = DeleteGroupsRequest::default();
        request.groups_names = vec![
            GroupId(text(&format!("commit-v{}", version + 2))),
            GroupId(text("beating")),
        ];
        let response: DeleteGroupsResponse = client.call(ApiKey::DeleteGroups, version, &request);
        let errors: Vec<i16> = response
            .results
            .iter()
            .map(|result| result.error_code)
            .collect();
        assert_eq!(errors, vec![0, 68], "v{version}: deleted, NON_EMPTY_GROUP");
    }
}
