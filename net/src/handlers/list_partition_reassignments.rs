//! ListPartitionReassignments: the reassignments in progress, read from this
//! broker's metadata image. A null topic list asks for every one; otherwise
//! only the named partitions are reported, and (as Kafka does) names of
//! unknown topics or partitions and partitions not being moved are skipped
//! rather than answered with an error. A topic with nothing to report is
//! left out; partitions named twice are reported once.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, RequestHeader,
    TopicName,
};
use sluice_engine::{ClusterMetadata, PartitionState};

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::codec::list_partition_reassignments::LIST_PARTITION_REASSIGNMENTS_VERSIONS;
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = LIST_PARTITION_REASSIGNMENTS_VERSIONS;

fn broker_ids(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().copied().map(BrokerId).collect()
}

fn ongoing_partition(index: i32, state: &PartitionState) -> OngoingPartitionReassignment {
    let mut ongoing = OngoingPartitionReassignment::default();
    ongoing.partition_index = index;
    // While a move runs `replicas` is the union of the old and new sets,
    // which is what Kafka reports as the partition's replicas.
    ongoing.replicas = broker_ids(&state.replicas);
    ongoing.adding_replicas = broker_ids(&state.adding);
    ongoing.removing_replicas = broker_ids(&state.removing);
    ongoing
}

/// The reassignments in progress in `metadata`, by topic name and then
/// partition: all of them, or those of the `requested` partitions.
fn ongoing(
    metadata: &ClusterMetadata,
    requested: Option<&[ListPartitionReassignmentsTopics]>,
) -> Vec<OngoingTopicReassignment> {
    // Topic name -> the partitions to look at (None: all of them).
    let wanted: BTreeMap<&str, Option<BTreeSet<i32>>> = match requested {
        None => metadata
            .topics
            .keys()
            .map(|name| (name.as_str(), None))
            .collect(),
        Some(topics) => {
            let mut wanted: BTreeMap<&str, Option<BTreeSet<i32>>> = BTreeMap::new();
            for topic in topics {
                wanted
                    .entry(topic.name.0.as_str())
                    .or_insert_with(|| Some(BTreeSet::new()))
                    .get_or_insert_with(BTreeSet::new)
                    .extend(topic.partition_indexes.iter().copied());
            }
            wanted
        }
    };
    let mut out = Vec::new();
    for (name, partitions) in wanted {
        let Some(topic) = metadata.topics.get(name) else {
            continue;
        };
        let found: Vec<OngoingPartitionReassignment> = match partitions {
            None => topic
                .placement
                .iter()
                .zip(0..)
                .filter(|(state, _)| state.reassigning())
                .map(|(state, index)| ongoing_partition(index, state))
                .collect(),
            Some(indexes) => indexes
                .into_iter()
                .filter_map(|index| {
                    let state = metadata.partition(name, index)?;
                    state.reassigning().then(|| ongoing_partition(index, state))
                })
                .collect(),
        };
        if found.is_empty() {
            continue;
        }
        let mut answer = OngoingTopicReassignment::default();
        answer.name = TopicName(str_bytes(name));
        answer.partitions = found;
        out.push(answer);
    }
    out
}

fn respond(
    metadata: &ClusterMetadata,
    request: &ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let mut response = ListPartitionReassignmentsResponse::default();
    response.error_code = code::NONE;
    response.error_message = None;
    response.topics = ongoing(metadata, request.topics.as_deref());
    response
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: ListPartitionReassignmentsRequest,
) -> Option<Pieces> {
    let response = if session.may_on_cluster(broker, Operation::Describe) {
        respond(&broker.metadata(), &request)
    } else {
        let mut response = ListPartitionReassignmentsResponse::default();
        response.error_code = code::CLUSTER_AUTHORIZATION_FAILED;
        response
    };
    Some(encode(&response, header.request_api_version))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::{Decodable, StrBytes};
    use sluice_engine::TopicMetadata;

    use super::*;

    fn settled() -> PartitionState {
        PartitionState {
            replicas: vec![1, 2],
            isr: vec![1, 2],
            leader: 1,
            ..PartitionState::default()
        }
    }

    fn moving(adding: i32, removing: i32) -> PartitionState {
        PartitionState {
            replicas: vec![adding, 2, removing],
            isr: vec![removing, 2],
            leader: removing,
            adding: vec![adding],
            removing: vec![removing],
            ..PartitionState::default()
        }
    }

    fn topic(name: &str, placement: Vec<PartitionState>) -> (String, TopicMetadata) {
        let metadata = TopicMetadata {
            name: name.to_string(),
            id: [1; 16],
            partitions: placement.len() as i32,
            configs: BTreeMap::new(),
            placement,
        };
        (name.to_string(), metadata)
    }

    /// "a": partitions 1 and 3 moving; "b": none; "c": partition 0 moving.
    fn metadata() -> ClusterMetadata {
        ClusterMetadata {
            topics: BTreeMap::from([
                topic("a", vec![settled(), moving(3, 1), settled(), moving(4, 1)]),
                topic("b", vec![settled()]),
                topic("c", vec![moving(3, 1)]),
            ]),
            ..ClusterMetadata::default()
        }
    }

    fn summary(topics: &[OngoingTopicReassignment]) -> Vec<(String, i32, Vec<i32>, i32, i32)> {
        topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(move |partition| {
                    (
                        topic.name.0.to_string(),
                        partition.partition_index,
                        partition.replicas.iter().map(|id| id.0).collect(),
                        partition.adding_replicas[0].0,
                        partition.removing_replicas[0].0,
                    )
                })
            })
            .collect()
    }

    fn asked(topics: &[(&str, &[i32])]) -> Vec<ListPartitionReassignmentsTopics> {
        topics
            .iter()
            .map(|(name, partitions)| {
                let mut topic = ListPartitionReassignmentsTopics::default();
                topic.name = StrBytes::from_string(name.to_string()).into();
                topic.partition_indexes = partitions.to_vec();
                topic
            })
            .collect()
    }

    #[test]
    fn all_reassignments_when_no_topics_are_named() {
        let found = ongoing(&metadata(), None);
        assert_eq!(
            summary(&found),
            vec![
                ("a".to_string(), 1, vec![3, 2, 1], 3, 1),
                ("a".to_string(), 3, vec![4, 2, 1], 4, 1),
                ("c".to_string(), 0, vec![3, 2, 1], 3, 1),
            ]
        );
        assert!(ongoing(&ClusterMetadata::default(), None).is_empty());
    }

    #[test]
    fn only_named_partitions_and_unknown_ones_are_skipped() {
        let topics = asked(&[
            ("c", &[0, 0, 5]),
            ("a", &[3, 0, -1, 99]),
            ("b", &[0]),
            ("missing", &[0]),
            ("a", &[3]),
        ]);
        let found = ongoing(&metadata(), Some(&topics));
        assert_eq!(
            summary(&found),
            vec![
                ("a".to_string(), 3, vec![4, 2, 1], 4, 1),
                ("c".to_string(), 0, vec![3, 2, 1], 3, 1),
            ]
        );
        assert!(ongoing(&metadata(), Some(&[])).is_empty());
    }

    #[test]
    fn the_response_encodes_and_decodes() {
        let mut request = ListPartitionReassignmentsRequest::default();
        request.topics = None;
        let response = respond(&metadata(), &request);
        assert_eq!(response.error_message, None);
        let pieces = encode(&response, VERSIONS.1);
        assert_eq!(pieces.len(), 1);
        let decoded =
            ListPartitionReassignmentsResponse::decode(&mut pieces[0].clone(), VERSIONS.1)
                .expect("decodes");
        assert_eq!(decoded, response);
    }
}
