//! AlterPartitionReassignments: starts or cancels moves of partitions to new
//! replica sets. The controller validates and carries out each entry; this
//! handler only refuses what Kafka refuses before asking it:
//!
//! * a partition named twice in one request (every mention gets
//!   INVALID_REQUEST, as the two wishes cannot both be honoured);
//! * with v1's `allow_replication_factor_change = false` (KIP-860), a target
//!   whose size differs from the partition's current target replica count
//!   (INVALID_REPLICATION_FACTOR). The check reads this broker's metadata
//!   image; a partition it does not know yet is left to the controller.
//!
//! The rest goes to the controller in one call. If that call cannot be made
//! (the shard mesh failed, or the answer does not match the question), the
//! response carries a top-level error and every partition carries it too, so
//! that clients reading either level see the failure.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, RequestHeader,
};
use sluice_engine::ClusterMetadata;

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{Broker, ControllerRequest, Reassignment, ReassignmentOutcome, ShardResponse};
use crate::codec::alter_partition_reassignments::ALTER_PARTITION_REASSIGNMENTS_VERSIONS;
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = ALTER_PARTITION_REASSIGNMENTS_VERSIONS;

/// What the handler decided for one partition of the request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    /// Asked of the controller: the index of its entry in [`Plan::asked`].
    Asked(usize),
    /// Refused here, without asking the controller.
    Refused(ReassignmentOutcome),
}

/// The request split into what the controller is asked and what is refused
/// here; `verdicts[t][p]` answers the request's topic `t`, partition `p`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    asked: Vec<Reassignment>,
    verdicts: Vec<Vec<Verdict>>,
}

fn refused(error_code: i16, message: String) -> Verdict {
    Verdict::Refused(ReassignmentOutcome {
        error_code,
        error_message: Some(message),
    })
}

/// Splits `request` into controller entries and local refusals, checking
/// replication-factor changes against `metadata`.
fn plan(request: &AlterPartitionReassignmentsRequest, metadata: &ClusterMetadata) -> Plan {
    let mut mentions: BTreeMap<(&str, i32), usize> = BTreeMap::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            *mentions
                .entry((topic.name.0.as_str(), partition.partition_index))
                .or_default() += 1;
        }
    }
    let mut result = Plan::default();
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        let mut verdicts = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let index = partition.partition_index;
            let target: Option<Vec<i32>> = partition
                .replicas
                .as_ref()
                .map(|replicas| replicas.iter().map(|id| id.0).collect());
            let verdict = if mentions.get(&(name, index)).copied().unwrap_or(0) > 1 {
                refused(
                    code::INVALID_REQUEST,
                    format!("Partition {name}-{index} appears more than once in the request."),
                )
            } else if let Some(message) = replication_factor_change(
                request.allow_replication_factor_change,
                metadata,
                name,
                index,
                target.as_deref(),
            ) {
                refused(code::INVALID_REPLICATION_FACTOR, message)
            } else {
                result.asked.push(Reassignment {
                    topic: name.to_string(),
                    partition: index,
                    replicas: target,
                });
                Verdict::Asked(result.asked.len() - 1)
            };
            verdicts.push(verdict);
        }
        result.verdicts.push(verdicts);
    }
    result
}

/// Why a reassignment is refused under KIP-860, if it is: changes of the
/// replication factor were not allowed and `target` has another size than the
/// replicas the partition is (or is being moved) to. Cancelling changes no
/// target, so it is never refused here.
fn replication_factor_change(
    allowed: bool,
    metadata: &ClusterMetadata,
    topic: &str,
    partition: i32,
    target: Option<&[i32]>,
) -> Option<String> {
    if allowed {
        return None;
    }
    let target = target?;
    let current = metadata
        .partition(topic, partition)?
        .target_replicas()
        .len();
    (target.len() != current).then(|| {
        format!(
            "The replication factor of {topic}-{partition} would change from {current} to {}, \
             but the request does not allow replication factor changes.",
            target.len()
        )
    })
}

/// Builds the response from the plan and the controller's answers (`None`
/// when the controller could not be asked, or answered something else).
/// What the partitions asked of the controller get when it did not answer.
fn unreachable() -> ReassignmentOutcome {
    ReassignmentOutcome {
        error_code: code::UNKNOWN_SERVER_ERROR,
        error_message: Some("The controller could not be asked.".to_string()),
    }
}

/// The answer: `outcomes` are the controller's for the partitions asked of
/// it, or the one error all of them (and the request) get.
fn respond(
    request: &AlterPartitionReassignmentsRequest,
    plan: &Plan,
    outcomes: Result<&[ReassignmentOutcome], ReassignmentOutcome>,
) -> AlterPartitionReassignmentsResponse {
    let mut response = AlterPartitionReassignmentsResponse::default();
    response.allow_replication_factor_change = request.allow_replication_factor_change;
    response.error_code = code::NONE;
    response.error_message = None;
    let failed = outcomes.as_ref().err().cloned();
    if let Some(failed) = &failed {
        response.error_code = failed.error_code;
        response.error_message = failed.error_message.as_deref().map(str_bytes);
    }
    let fallback = failed.unwrap_or_else(unreachable);
    let outcomes = outcomes.ok();
    response.responses = request
        .topics
        .iter()
        .zip(&plan.verdicts)
        .map(|(topic, verdicts)| {
            let mut answer = ReassignableTopicResponse::default();
            answer.name = topic.name.clone();
            answer.partitions = topic
                .partitions
                .iter()
                .zip(verdicts)
                .map(|(partition, verdict)| {
                    let outcome = match verdict {
                        Verdict::Refused(outcome) => outcome,
                        Verdict::Asked(index) => outcomes
                            .and_then(|outcomes| outcomes.get(*index))
                            .unwrap_or(&fallback),
                    };
                    let mut result = ReassignablePartitionResponse::default();
                    result.partition_index = partition.partition_index;
                    result.error_code = outcome.error_code;
                    result.error_message = outcome.error_message.as_deref().map(str_bytes);
                    result
                })
                .collect();
            answer
        })
        .collect();
    response
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: AlterPartitionReassignmentsRequest,
) -> Option<Pieces> {
    if !session.may_on_cluster(broker, Operation::Alter) {
        let mut response = AlterPartitionReassignmentsResponse::default();
        response.error_code = code::CLUSTER_AUTHORIZATION_FAILED;
        response.error_message = Some(str_bytes(
            "Reassigning partitions takes ALTER on the cluster.",
        ));
        return Some(encode(&response, header.request_api_version));
    }
    let plan = plan(&request, &broker.metadata());
    let answered = if plan.asked.is_empty() {
        Ok(Vec::new())
    } else {
        let count = plan.asked.len();
        let call = ControllerRequest::AlterReassignments(plan.asked.clone());
        match broker
            .controller_call_within(call, request.timeout_ms)
            .await
        {
            Some(Some(ShardResponse::Reassignments(outcomes))) if outcomes.len() == count => {
                Ok(outcomes)
            }
            // Kafka's answer once the request's timeout passes; the
            // controller's change goes on and may still take effect.
            None => Err(ReassignmentOutcome {
                error_code: code::REQUEST_TIMED_OUT,
                error_message: Some(
                    "The reassignment was not done within the request's timeout.".to_string(),
                ),
            }),
            Some(other) => {
                tracing::warn!(
                    ?other,
                    count,
                    "the controller did not answer AlterPartitionReassignments"
                );
                Err(unreachable())
            }
        }
    };
    let response = respond(&request, &plan, answered.as_deref().map_err(Clone::clone));
    Some(encode(&response, header.request_api_version))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::protocol::{Decodable, StrBytes};
    use sluice_engine::{PartitionState, TopicMetadata};

    use super::*;

    /// Topic "t" with two partitions on brokers [1, 2]; partition 1 is being
    /// moved to [3, 2] (so its replicas are the union [3, 2, 1]).
    fn metadata() -> ClusterMetadata {
        let settled = PartitionState {
            replicas: vec![1, 2],
            isr: vec![1, 2],
            leader: 1,
            ..PartitionState::default()
        };
        let moving = PartitionState {
            replicas: vec![3, 2, 1],
            isr: vec![1, 2],
            leader: 1,
            adding: vec![3],
            removing: vec![1],
            ..PartitionState::default()
        };
        let topic = TopicMetadata {
            name: "t".to_string(),
            id: [7; 16],
            partitions: 2,
            configs: BTreeMap::new(),
            placement: vec![settled, moving],
        };
        ClusterMetadata {
            topics: BTreeMap::from([("t".to_string(), topic)]),
            ..ClusterMetadata::default()
        }
    }

    fn partition(index: i32, replicas: Option<&[i32]>) -> ReassignablePartition {
        let mut partition = ReassignablePartition::default();
        partition.partition_index = index;
        partition.replicas = replicas.map(|ids| ids.iter().copied().map(BrokerId).collect());
        partition
    }

    fn request(
        allow: bool,
        topics: Vec<(&str, Vec<ReassignablePartition>)>,
    ) -> AlterPartitionReassignmentsRequest {
        let mut request = AlterPartitionReassignmentsRequest::default();
        request.allow_replication_factor_change = allow;
        request.topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                let mut topic = ReassignableTopic::default();
                topic.name = StrBytes::from_string(name.to_string()).into();
                topic.partitions = partitions;
                topic
            })
            .collect();
        request
    }

    fn codes(response: &AlterPartitionReassignmentsResponse) -> Vec<Vec<(i32, i16)>> {
        response
            .responses
            .iter()
            .map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| (partition.partition_index, partition.error_code))
                    .collect()
            })
            .collect()
    }

    fn ok() -> ReassignmentOutcome {
        ReassignmentOutcome {
            error_code: code::NONE,
            error_message: None,
        }
    }

    #[test]
    fn entries_go_to_the_controller_in_order_and_answers_come_back_in_place() {
        let request = request(
            true,
            vec![
                (
                    "t",
                    vec![partition(0, Some(&[3, 1, 2])), partition(1, None)],
                ),
                ("other", vec![partition(4, Some(&[2]))]),
            ],
        );
        let plan = plan(&request, &metadata());
        let asked: Vec<(&str, i32, Option<Vec<i32>>)> = plan
            .asked
            .iter()
            .map(|entry| {
                (
                    entry.topic.as_str(),
                    entry.partition,
                    entry.replicas.clone(),
                )
            })
            .collect();
        assert_eq!(
            asked,
            vec![
                ("t", 0, Some(vec![3, 1, 2])),
                ("t", 1, None),
                ("other", 4, Some(vec![2])),
            ]
        );
        let unknown = ReassignmentOutcome {
            error_code: code::UNKNOWN_TOPIC_OR_PARTITION,
            error_message: Some("no such topic".to_string()),
        };
        let response = respond(&request, &plan, Ok(&[ok(), ok(), unknown]));
        assert_eq!(response.error_code, code::NONE);
        assert_eq!(response.error_message, None);
        assert_eq!(
            codes(&response),
            vec![
                vec![(0, code::NONE), (1, code::NONE)],
                vec![(4, code::UNKNOWN_TOPIC_OR_PARTITION)]
            ]
        );
        assert_eq!(
            response.responses[1].partitions[0]
                .error_message
                .as_ref()
                .map(|text| text.as_str()),
            Some("no such topic")
        );
        assert_eq!(response.responses[0].partitions[0].error_message, None);
    }

    #[test]
    fn duplicate_partitions_are_invalid_requests_and_not_asked() {
        let request = request(
            true,
            vec![
                ("t", vec![partition(0, Some(&[1, 3])), partition(1, None)]),
                ("t", vec![partition(0, None)]),
            ],
        );
        let plan = plan(&request, &metadata());
        assert_eq!(plan.asked.len(), 1);
        assert_eq!(plan.asked[0].partition, 1);
        let response = respond(&request, &plan, Ok(&[ok()]));
        assert_eq!(
            codes(&response),
            vec![
                vec![(0, code::INVALID_REQUEST), (1, code::NONE)],
                vec![(0, code::INVALID_REQUEST)]
            ]
        );
    }

    #[test]
    fn kip_860_refuses_replication_factor_changes_when_not_allowed() {
        // Partition 0 has two replicas; partition 1 is being moved to [3, 2],
        // so its target has two replicas, not the three of the union.
        for (index, replicas, expected) in [
            (0, Some(&[2, 3][..]), None),
            (
                0,
                Some(&[1, 2, 3][..]),
                Some(code::INVALID_REPLICATION_FACTOR),
            ),
            (
                1,
                Some(&[3, 2, 1][..]),
                Some(code::INVALID_REPLICATION_FACTOR),
            ),
            (1, Some(&[1, 3][..]), None),
            (1, None, None),
            (9, Some(&[1][..]), None),
        ] {
            let single = request(false, vec![("t", vec![partition(index, replicas)])]);
            let verdict = &plan(&single, &metadata()).verdicts[0][0];
            let code = match verdict {
                Verdict::Refused(outcome) => Some(outcome.error_code),
                Verdict::Asked(_) => None,
            };
            assert_eq!(code, expected, "partition {index} to {replicas:?}");
            // Allowed, nothing is refused.
            let allowed = request(true, vec![("t", vec![partition(index, replicas)])]);
            assert!(matches!(
                plan(&allowed, &metadata()).verdicts[0][0],
                Verdict::Asked(0)
            ));
        }
    }

    #[test]
    fn an_unreachable_controller_is_an_error_at_the_top_and_for_what_was_asked() {
        let request = request(
            true,
            vec![(
                "t",
                vec![
                    partition(0, Some(&[1, 3])),
                    partition(0, None),
                    partition(1, None),
                ],
            )],
        );
        let plan = plan(&request, &metadata());
        let response = respond(&request, &plan, Err(unreachable()));
        assert_eq!(response.error_code, code::UNKNOWN_SERVER_ERROR);
        assert!(response.error_message.is_some());
        // Local refusals keep their own code; the asked entry gets the
        // top-level error.
        assert_eq!(
            codes(&response),
            vec![vec![
                (0, code::INVALID_REQUEST),
                (0, code::INVALID_REQUEST),
                (1, code::UNKNOWN_SERVER_ERROR)
            ]]
        );
    }

    #[test]
    fn the_response_encodes_and_decodes_at_every_version() {
        for version in VERSIONS.0..=VERSIONS.1 {
            let request = request(
                version == 0,
                vec![(
                    "t",
                    vec![partition(0, Some(&[1, 2, 3])), partition(1, None)],
                )],
            );
            let plan = plan(&request, &metadata());
            let outcomes: Vec<ReassignmentOutcome> = plan.asked.iter().map(|_| ok()).collect();
            let response = respond(&request, &plan, Ok(&outcomes));
            let pieces = encode(&response, version);
            assert_eq!(pieces.len(), 1, "v{version} encodes");
            let mut body = BytesMut::new();
            body.extend_from_slice(&pieces[0]);
            let decoded = AlterPartitionReassignmentsResponse::decode(&mut body.freeze(), version)
                .expect("decodes");
            assert_eq!(decoded, response, "v{version}");
        }
    }
}
