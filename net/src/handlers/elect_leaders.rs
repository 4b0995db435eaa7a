//! ElectLeaders: moves partitions' leadership to their preferred replicas,
//! or elects a live replica outside the ISR for partitions that have no live
//! in-sync one (see `broker/elect.rs` for the rules). The controller makes
//! the elections; this handler checks the election type, asks it in one call
//! and shapes its answer.
//!
//! As in Kafka, a request the controller cannot serve (an unknown election
//! type, or a metadata change that was not made) is answered with the error
//! at the top level (v1+) and on every partition named, so that clients
//! reading either level see it. The request's `timeout_ms` is not used: the
//! controller bounds its metadata write itself, and answers once every shard
//! of its node has applied the change.

use std::rc::Rc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, RequestHeader};

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{
    Broker, ControllerRequest, ElectionOutcome, ElectionTopic, ElectionType, ShardResponse,
};
use crate::codec::elect_leaders::{ELECTION_TYPE_VERSION_MIN, ELECT_LEADERS_VERSIONS};
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = ELECT_LEADERS_VERSIONS;

/// The first version whose response has a top-level error code: the one
/// that brought election types, whose unknown values it reports.
const TOP_LEVEL_ERROR_VERSION_MIN: i16 = ELECTION_TYPE_VERSION_MIN;

/// The partitions a request names, for the controller; `None` for all.
fn asked(request: &ElectLeadersRequest) -> Option<Vec<ElectionTopic>> {
    request.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .map(|topic| ElectionTopic {
                topic: topic.topic.0.to_string(),
                partitions: topic.partitions.clone(),
            })
            .collect()
    })
}

/// How many partitions a request names (none when it names all).
fn named(request: &ElectLeadersRequest) -> usize {
    request
        .topic_partitions
        .iter()
        .flatten()
        .map(|topic| topic.partitions.len())
        .sum()
}

fn partition_result(partition: i32, error_code: i16, message: Option<&str>) -> PartitionResult {
    let mut result = PartitionResult::default();
    result.partition_id = partition;
    result.error_code = error_code;
    result.error_message = message.map(str_bytes);
    result
}

/// The response to `request` at `version` from the controller's outcomes
/// (one per partition named, in order; or for a request naming all, one
/// per partition that needed an election, grouped by topic), or from the
/// error that kept it from making any election.
fn respond(
    request: &ElectLeadersRequest,
    version: i16,
    answer: Result<&[ElectionOutcome], (i16, &str)>,
) -> ElectLeadersResponse {
    let mut response = ElectLeadersResponse::default();
    if let Err((error_code, _)) = answer {
        if version >= TOP_LEVEL_ERROR_VERSION_MIN {
            response.error_code = error_code;
        }
    }
    let Some(topics) = &request.topic_partitions else {
        // A request naming all partitions: the answer names them.
        let outcomes = answer.unwrap_or_default();
        let mut results: Vec<ReplicaElectionResult> = Vec::new();
        for outcome in outcomes {
            let result = partition_result(
                outcome.partition,
                outcome.error_code,
                outcome.error_message.as_deref(),
            );
            match results.last_mut() {
                Some(last) if last.topic.0.as_str() == outcome.topic => {
                    last.partition_result.push(result)
                }
                _ => {
                    let mut topic = ReplicaElectionResult::default();
                    topic.topic = str_bytes(&outcome.topic).into();
                    topic.partition_result = vec![result];
                    results.push(topic);
                }
            }
        }
        response.replica_election_results = results;
        return response;
    };
    let mut index = 0;
    response.replica_election_results = topics
        .iter()
        .map(|topic| {
            let mut result = ReplicaElectionResult::default();
            result.topic = topic.topic.clone();
            result.partition_result = topic
                .partitions
                .iter()
                .map(|&partition| {
                    let outcome = answer.map(|outcomes| outcomes.get(index));
                    index += 1;
                    match outcome {
                        Ok(Some(outcome)) => partition_result(
                            partition,
                            outcome.error_code,
                            outcome.error_message.as_deref(),
                        ),
                        Ok(None) => partition_result(
                            partition,
                            code::UNKNOWN_SERVER_ERROR,
                            Some("The controller did not answer for this partition."),
                        ),
                        Err((error_code, message)) => {
                            partition_result(partition, error_code, Some(message))
                        }
                    }
                })
                .collect();
            result
        })
        .collect();
    response
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: ElectLeadersRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    if !session.may_on_cluster(broker, Operation::Alter) {
        let message = "Electing leaders takes ALTER on the cluster.";
        let response = respond(
            &request,
            version,
            Err((code::CLUSTER_AUTHORIZATION_FAILED, message)),
        );
        return Some(encode(&response, version));
    }
    let Some(election) = ElectionType::from_id(request.election_type) else {
        let message = format!("Unknown election type {}.", request.election_type);
        let response = respond(&request, version, Err((code::INVALID_REQUEST, &message)));
        return Some(encode(&response, version));
    };
    let call = ControllerRequest::ElectLeaders {
        election,
        topics: asked(&request),
    };
    let count = named(&request);
    let all = request.topic_partitions.is_none();
    let response = match broker
        .controller_call_within(call, request.timeout_ms)
        .await
    {
        Some(Some(ShardResponse::Elections(Ok(outcomes)))) if all || outcomes.len() == count => {
            respond(&request, version, Ok(&outcomes))
        }
        Some(Some(ShardResponse::Elections(Err((error_code, message))))) => {
            respond(&request, version, Err((error_code, &message)))
        }
        // Kafka's answer once the request's timeout passes; the elections
        // go on and may still take effect.
        None => respond(
            &request,
            version,
            Err((
                code::REQUEST_TIMED_OUT,
                "The elections were not done within the request's timeout.",
            )),
        ),
        Some(other) => {
            tracing::warn!(?other, count, "the controller did not answer ElectLeaders");
            respond(
                &request,
                version,
                Err((
                    code::UNKNOWN_SERVER_ERROR,
                    "The controller could not be asked.",
                )),
            )
        }
    };
    Some(encode(&response, version))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::protocol::{Decodable, StrBytes};

    use super::*;

    /// Kafka's ELECTION_NOT_NEEDED, as the controller answers it.
    const ELECTION_NOT_NEEDED: i16 = 84;

    fn request(election_type: i8, topics: Option<Vec<(&str, Vec<i32>)>>) -> ElectLeadersRequest {
        let mut request = ElectLeadersRequest::default();
        request.election_type = election_type;
        request.topic_partitions = topics.map(|topics| {
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    let mut topic = TopicPartitions::default();
                    topic.topic = StrBytes::from_string(name.to_string()).into();
                    topic.partitions = partitions;
                    topic
                })
                .collect()
        });
        request
    }

    fn outcome(topic: &str, partition: i32, error_code: i16) -> ElectionOutcome {
        ElectionOutcome {
            topic: topic.to_string(),
            partition,
            error_code,
            error_message: (error_code != code::NONE).then(|| "why".to_string()),
        }
    }

    fn codes(response: &ElectLeadersResponse) -> Vec<(String, Vec<(i32, i16)>)> {
        response
            .replica_election_results
            .iter()
            .map(|topic| {
                (
                    topic.topic.0.to_string(),
                    topic
                        .partition_result
                        .iter()
                        .map(|partition| (partition.partition_id, partition.error_code))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn named_partitions_get_the_controllers_outcomes_in_place() {
        // The same topic twice stays two entries, as asked.
        let asked = request(
            0,
            Some(vec![("t", vec![1, 0]), ("u", vec![]), ("t", vec![2])]),
        );
        assert_eq!(named(&asked), 3);
        let outcomes = [
            outcome("t", 1, code::NONE),
            outcome("t", 0, ELECTION_NOT_NEEDED),
            outcome("t", 2, code::UNKNOWN_TOPIC_OR_PARTITION),
        ];
        let response = respond(&asked, 2, Ok(&outcomes));
        assert_eq!(response.error_code, code::NONE);
        assert_eq!(
            codes(&response),
            vec![
                ("t".into(), vec![(1, code::NONE), (0, ELECTION_NOT_NEEDED)]),
                ("u".into(), vec![]),
                ("t".into(), vec![(2, code::UNKNOWN_TOPIC_OR_PARTITION)]),
            ]
        );
        let first = &response.replica_election_results[0].partition_result;
        assert_eq!(first[0].error_message, None);
        assert_eq!(
            first[1].error_message.as_ref().map(|text| text.as_str()),
            Some("why")
        );
    }

    #[test]
    fn all_partitions_are_grouped_by_topic_from_the_answer() {
        let everything = request(1, None);
        assert_eq!(asked(&everything), None);
        let outcomes = [
            outcome("a", 0, code::NONE),
            outcome("a", 3, code::NONE),
            outcome("b", 1, 83),
        ];
        let response = respond(&everything, 1, Ok(&outcomes));
        assert_eq!(
            codes(&response),
            vec![
                ("a".into(), vec![(0, code::NONE), (3, code::NONE)]),
                ("b".into(), vec![(1, 83)]),
            ]
        );
    }

    #[test]
    fn a_failure_is_reported_at_the_top_from_v1_and_on_every_partition() {
        let asked = request(1, Some(vec![("t", vec![0, 1])]));
        for version in VERSIONS.0..=VERSIONS.1 {
            let response = respond(&asked, version, Err((code::NOT_CONTROLLER, "moved")));
            let top = if version >= TOP_LEVEL_ERROR_VERSION_MIN {
                code::NOT_CONTROLLER
            } else {
                code::NONE
            };
            assert_eq!(response.error_code, top, "v{version}");
            assert_eq!(
                codes(&response),
                vec![(
                    "t".into(),
                    vec![(0, code::NOT_CONTROLLER), (1, code::NOT_CONTROLLER)]
                )]
            );
        }
        let everything = respond(&request(0, None), 2, Err((code::INVALID_REQUEST, "bad")));
        assert_eq!(everything.error_code, code::INVALID_REQUEST);
        assert!(everything.replica_election_results.is_empty());
    }

    #[test]
    fn a_short_answer_fails_the_partitions_left_without_one() {
        let asked = request(0, Some(vec![("t", vec![0, 1])]));
        let response = respond(&asked, 2, Ok(&[outcome("t", 0, code::NONE)]));
        assert_eq!(
            codes(&response),
            vec![(
                "t".into(),
                vec![(0, code::NONE), (1, code::UNKNOWN_SERVER_ERROR)]
            )]
        );
    }

    #[test]
    fn the_response_encodes_and_decodes_at_every_version() {
        let asked = request(0, Some(vec![("t", vec![0, 1])]));
        let outcomes = [outcome("t", 0, code::NONE), outcome("t", 1, 80)];
        for version in VERSIONS.0..=VERSIONS.1 {
            for answer in [Ok(&outcomes[..]), Err((code::INVALID_REQUEST, "bad"))] {
                let response = respond(&asked, version, answer);
                let pieces = encode(&response, version);
                assert_eq!(pieces.len(), 1, "v{version} encodes");
                let mut body = BytesMut::new();
                body.extend_from_slice(&pieces[0]);
                let decoded =
                    ElectLeadersResponse::decode(&mut body.freeze(), version).expect("decodes");
                assert_eq!(decoded, response, "v{version}");
            }
        }
    }
}
