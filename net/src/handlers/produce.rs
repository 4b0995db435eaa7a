//! Produce: split per owner shard (one mesh message per shard), append
//! there, merge the answers in request order. acks=0 gets no response;
//! acks=all waits for the group-commit fdatasync.
//!
//! Transactional batches need the request's transactional id: without it
//! the whole request is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED
//! before anything is appended, as Kafka does. The version travels with each
//! entry because it decides how a transaction's first batch in a partition
//! is checked (KIP-890): below v12 the partition must already be in the
//! transaction, from v12 the leader adds it.
//!
//! From v10 a partition answered NOT_LEADER_OR_FOLLOWER names its current
//! leader and the response carries that leader's endpoint (KIP-951, see
//! `leader_hints`). From v13 topics come and go by id (KIP-516), the same
//! id on every broker, and an id no topic has is UNKNOWN_TOPIC_ID.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ProduceRequest, ProduceResponse, RequestHeader, TopicName,
};
use sluice_engine::batch;
use smallvec::{smallvec, SmallVec};

use super::leader_hints::{wants_hint, LeaderHints};
use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{
    ask_shards_for_vectors, Broker, ProduceEntry, ProduceOutcome, ShardLists, ShardRequest,
    ShardResponse, PRODUCE_ENTRIES, PRODUCE_OUTCOMES,
};
use crate::codec;
use crate::errors::code;
use crate::quota::PRODUCER_BYTE_RATE;
use crate::reuse::Spares;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (3, 13);

/// First version whose client backs off itself when throttled (KIP-219):
/// the response goes at once and the connection is muted instead.
const THROTTLE_MUTE_VERSION: i16 = 6;

/// Partitions of a request whose shards are kept without an allocation
/// (producers send a batch for each partition with data; beyond this the
/// list goes to the heap).
const OWNERS_INLINE: usize = 64;

/// `owners`' mark for a partition refused before any shard saw it.
const NOT_APPENDED: u16 = u16::MAX;

/// First version that names topics by id.
const TOPIC_ID_VERSION: i16 = 13;

/// First version whose responses carry leader hints (KIP-951): a partition's
/// `CurrentLeader` and the response's `NodeEndpoints`, both tagged fields.
const LEADER_HINTS_VERSION: i16 = 10;

/// Whether the first batch of a partition's records is transactional, as
/// Kafka decides it for the whole request (only the first batch of each
/// partition is looked at). Records too short for a header, or of another
/// magic, are left to validation.
fn first_batch_is_transactional(records: &[u8]) -> bool {
    if records.get(batch::MAGIC_AT).copied() != Some(batch::MAGIC_V2 as u8) {
        return false;
    }
    match records.get(batch::ATTRIBUTES_AT..batch::ATTRIBUTES_AT + 2) {
        Some(&[high, low]) => {
            i16::from_be_bytes([high, low]) & batch::attributes::TRANSACTIONAL != 0
        }
        _ => false,
    }
}

/// Kafka's answer to transactional records without a transactional id, or
/// with one the sender may not write: every partition `error_code`,
/// nothing appended; with acks=0 there is no response, so the connection
/// is closed.
fn refuse_every_partition(
    header: &RequestHeader,
    request: &ProduceRequest,
    error_code: i16,
) -> Pieces {
    if request.acks == 0 {
        return Pieces::new();
    }
    let mut response = ProduceResponse::default();
    response.responses = request
        .topic_data
        .iter()
        .map(|topic| {
            let mut topic_response = TopicProduceResponse::default();
            topic_response.name = topic.name.clone();
            topic_response.topic_id = topic.topic_id;
            topic_response.partition_responses = topic
                .partition_data
                .iter()
                .map(|partition| {
                    let mut partition_response = PartitionProduceResponse::default();
                    partition_response.index = partition.index;
                    partition_response.error_code = error_code;
                    partition_response.base_offset = -1;
                    partition_response.log_append_time_ms = -1;
                    if header.request_api_version >= 5 {
                        partition_response.log_start_offset = -1;
                    }
                    partition_response
                })
                .collect();
            topic_response
        })
        .collect();
    encode(&response, header.request_api_version)
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    mut request: ProduceRequest,
) -> Option<Pieces> {
    // A request pipelined behind one that was throttled starts when the
    // throttle time is over, as if the connection had not been read
    // meanwhile (Kafka reads one request of a connection at a time). It is
    // measured before anything awaits, so the next pipelined request sees
    // its throttle.
    session.wait_unmuted().await;
    let throttle_time_ms = throttle(broker, session, header, &request).await;
    // From v13 topics come by id: each is named from the metadata image,
    // so that everything below works by name; an id no topic has is
    // UNKNOWN_TOPIC_ID for each of its partitions.
    let unknown_ids = name_topics_by_id(broker, header.request_api_version, &mut request);
    let transactional_records = request.topic_data.iter().any(|topic| {
        topic.partition_data.iter().any(|partition| {
            partition
                .records
                .as_deref()
                .is_some_and(first_batch_is_transactional)
        })
    });
    // Transactional records need a transactional id the sender may WRITE,
    // as Kafka checks before any partition.
    let transactional_id_refused = match request.transactional_id.as_deref() {
        None => transactional_records,
        Some(id) => !session.may_on_transactional_id(broker, Operation::Write, id),
    };
    if transactional_id_refused {
        broker.metrics.request_failed(ApiKey::Produce as i16);
        return Some(refuse_every_partition(
            header,
            &request,
            code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        ));
    }
    let acks = request.acks;
    let valid_acks = (-1..=1).contains(&acks);
    // Per partition, in request order (topic by topic): its outcome, and
    // the shard it is appended on (`NOT_APPENDED` when refused here). One
    // flat vector and inline arrays, so that a request costs an allocation
    // per shard it touches rather than several per topic and shard.
    let partitions = request
        .topic_data
        .iter()
        .map(|t| t.partition_data.len())
        .sum();
    let mut outcomes = PRODUCE_OUTCOMES.with(|spares| spares.take(partitions));
    let mut owners: SmallVec<[u16; OWNERS_INLINE]> = SmallVec::with_capacity(partitions);
    let mut counts: ShardLists<usize> = smallvec![0; broker.shards()];
    for (topic_index, topic) in request.topic_data.iter().enumerate() {
        let name = topic.name.0.as_str();
        for partition in &topic.partition_data {
            let mut outcome = ProduceOutcome {
                base_offset: -1,
                log_append_time: -1,
                log_start_offset: -1,
                ..Default::default()
            };
            let mut owner = NOT_APPENDED;
            if !valid_acks {
                outcome.error_code = code::INVALID_REQUIRED_ACKS;
            } else if unknown_ids.get(topic_index).copied().unwrap_or(false) {
                outcome.error_code = code::UNKNOWN_TOPIC_ID;
            } else if !session.may_on_topic(broker, Operation::Write, name) {
                outcome.error_code = code::TOPIC_AUTHORIZATION_FAILED;
            } else if name == crate::groups::OFFSETS_TOPIC || name == crate::txn::TXN_TOPIC {
                // Only the coordinators write their records there, as Kafka
                // refuses client writes to internal topics.
                outcome.error_code = code::INVALID_TOPIC_EXCEPTION;
            } else {
                outcome.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                let known =
                    broker.metadata().topics.get(name).is_some_and(|meta| {
                        partition.index >= 0 && partition.index < meta.partitions
                    });
                if known {
                    owner = broker.owner(name, partition.index).0;
                    counts[usize::from(owner)] += 1;
                }
            }
            outcomes.push(outcome);
            owners.push(owner);
        }
    }
    let mut per_shard: ShardLists<Vec<ProduceEntry>> = counts
        .iter()
        .map(|&count| match count {
            0 => Vec::new(),
            _ => PRODUCE_ENTRIES.with(|spares| spares.take(count)),
        })
        .collect();
    let placed = request.topic_data.iter().flat_map(|topic| {
        topic
            .partition_data
            .iter()
            .map(move |partition| (topic, partition))
    });
    for ((topic, partition), &owner) in placed.zip(&owners) {
        if owner == NOT_APPENDED {
            continue;
        }
        per_shard[usize::from(owner)].push(ProduceEntry {
            topic: topic.name.0.clone(),
            partition: partition.index,
            records: partition.records.clone(),
            transactional_id: request.transactional_id.as_ref().map(|id| id.0.clone()),
            version: header.request_api_version,
        });
    }
    // Each shard answers its entries in the order they were given, which
    // is request order: the answers are dealt back by walking `owners`.
    let timeout_ms = request.timeout_ms;
    let mut results = ask_shards_for_vectors(
        broker,
        per_shard,
        |entries| ShardRequest::Produce {
            entries,
            acks,
            timeout_ms,
        },
        |response| match response {
            ShardResponse::Produce(outcomes) => Some(outcomes),
            _ => None,
        },
    )
    .await;
    // Each shard's answers are read in order, taken out of its vector,
    // which is then kept for reuse.
    let mut read: ShardLists<usize> = smallvec![0; results.len()];
    for (outcome, &owner) in outcomes.iter_mut().zip(&owners) {
        if owner == NOT_APPENDED {
            continue;
        }
        let shard = usize::from(owner);
        let answer = results
            .get_mut(shard)
            .and_then(Option::as_mut)
            .and_then(|answers| answers.get_mut(read[shard]));
        match answer {
            Some(result) => {
                *outcome = std::mem::take(result);
                read[shard] += 1;
            }
            None => outcome.error_code = code::NOT_LEADER_OR_FOLLOWER,
        }
    }
    for answers in results.into_iter().flatten() {
        PRODUCE_OUTCOMES.with(|spares| spares.give(answers));
    }
    count_traffic(broker, &request, &outcomes);
    let version = header.request_api_version;
    if acks == 0 {
        PRODUCE_OUTCOMES.with(|spares| spares.give(outcomes));
        codec::produce::recycle(&mut request);
        return None;
    }
    // Looked up only when some partition needs a hint, so that successful
    // requests cost nothing more; and in the image as of the answer, not of
    // the request, so that a hint names the leader the partition has now.
    let hinted = outcomes
        .iter()
        .any(|outcome| wants_hint(outcome.error_code));
    let mut hints = (version >= LEADER_HINTS_VERSION && hinted)
        .then(|| LeaderHints::new(broker.metadata(), session.live_brokers(broker)));
    let mut response = response(version, &request, &outcomes, hints.as_mut());
    // Kafka answers the longer of the byte-rate and request-time throttles;
    // Produce carries its throttle last, so its time is charged here rather
    // than written in afterwards (`crate::request_quota`).
    let request_throttle =
        session.charge_request_time(broker, header.client_id.as_deref().unwrap_or_default());
    session.mute(request_throttle);
    let request_throttle_ms = i32::try_from(request_throttle.as_millis()).unwrap_or(i32::MAX);
    response.throttle_time_ms = throttle_time_ms.max(request_throttle_ms);
    let encoded = encode(&response, version);
    recycle_response(&mut response);
    PRODUCE_OUTCOMES.with(|spares| spares.give(outcomes));
    codec::produce::recycle(&mut request);
    Some(encoded)
}

/// Records the request's record bytes against the sender's producer quota
/// (Kafka counts the whole request; the records are nearly all of it) and
/// throttles the connection when it is over: `throttle_time_ms` to answer.
/// With acks=0 there is no answer to carry it, so the connection is muted
/// whatever the version, as Kafka does.
async fn throttle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: &ProduceRequest,
) -> i32 {
    let bytes: usize = request
        .topic_data
        .iter()
        .flat_map(|topic| &topic.partition_data)
        .map(|partition| partition.records.as_ref().map_or(0, Bytes::len))
        .sum();
    let identity = (
        session.quota_user(),
        header.client_id.as_deref().unwrap_or(""),
    );
    let throttle = broker.record_quota(
        &broker.metadata(),
        PRODUCER_BYTE_RATE,
        identity,
        bytes as f64,
    );
    let mute_version = if request.acks == 0 {
        0
    } else {
        THROTTLE_MUTE_VERSION
    };
    session
        .throttle(throttle, header.request_api_version, mute_version)
        .await
}

/// The metrics of an answered produce: the record bytes of every partition
/// that took its records, per topic, and the request as failed when any
/// partition was refused.
fn count_traffic(broker: &Broker, request: &ProduceRequest, outcomes: &[ProduceOutcome]) {
    let mut failed = false;
    for (topic, topic_outcomes) in by_topic(request, outcomes) {
        let mut bytes = 0;
        for (partition, outcome) in topic.partition_data.iter().zip(topic_outcomes) {
            if outcome.error_code == code::NONE {
                bytes += partition.records.as_ref().map_or(0, Bytes::len) as u64;
            } else {
                failed = true;
            }
        }
        if bytes > 0 {
            broker.metrics.bytes_in(topic.name.0.as_str(), bytes);
        }
    }
    if failed {
        broker.metrics.request_failed(ApiKey::Produce as i16);
    }
}

/// Each topic of `request` with its partitions' outcomes, taken from the
/// flat list of outcomes in request order.
fn by_topic<'a>(
    request: &'a ProduceRequest,
    outcomes: &'a [ProduceOutcome],
) -> impl Iterator<Item = (&'a TopicProduceData, &'a [ProduceOutcome])> {
    let mut rest = outcomes;
    request.topic_data.iter().map(move |topic| {
        let (mine, tail) = rest.split_at(topic.partition_data.len().min(rest.len()));
        rest = tail;
        (topic, mine)
    })
}

/// Names each topic of a v13+ request from its id (KIP-516); says, per
/// topic, whether its id names no topic. Older versions come by name.
fn name_topics_by_id(broker: &Broker, version: i16, request: &mut ProduceRequest) -> Vec<bool> {
    if version < TOPIC_ID_VERSION {
        return Vec::new();
    }
    let metadata = broker.metadata();
    request
        .topic_data
        .iter_mut()
        .map(
            |topic| match broker.topic_by_id(&metadata, topic.topic_id.as_bytes()) {
                Some(meta) => {
                    topic.name = TopicName(str_bytes(&meta.name));
                    false
                }
                None => true,
            },
        )
        .collect()
}

thread_local! {
    /// Encoded responses' lists, for the next response (`crate::reuse`).
    static TOPIC_RESPONSES: Spares<TopicProduceResponse> = const { Spares::new() };
    static PARTITION_RESPONSES: Spares<PartitionProduceResponse> = const { Spares::new() };
}

/// Gives an encoded response's lists back for the next response.
fn recycle_response(response: &mut ProduceResponse) {
    let mut topics = std::mem::take(&mut response.responses);
    for topic in topics.iter_mut() {
        let partitions = std::mem::take(&mut topic.partition_responses);
        PARTITION_RESPONSES.with(|spares| spares.give(partitions));
    }
    TOPIC_RESPONSES.with(|spares| spares.give(topics));
}

/// The answer to `request`, one partition per outcome in request order.
/// With `hints` (v10+), a partition that lost or never had its leader here
/// names the current one, and the response lists the leaders' endpoints.
fn response(
    version: i16,
    request: &ProduceRequest,
    outcomes: &[ProduceOutcome],
    hints: Option<&mut LeaderHints>,
) -> ProduceResponse {
    // Older versions have no field for a hint: their bytes stay as they were.
    let mut hints = hints.filter(|_| version >= LEADER_HINTS_VERSION);
    let mut response = ProduceResponse::default();
    response.responses = TOPIC_RESPONSES.with(|spares| spares.take(request.topic_data.len()));
    for (topic, topic_outcomes) in by_topic(request, outcomes) {
        let mut topic_response = TopicProduceResponse::default();
        // The version's encoder writes the one it has.
        topic_response.name = topic.name.clone();
        topic_response.topic_id = topic.topic_id;
        topic_response.partition_responses =
            PARTITION_RESPONSES.with(|spares| spares.take(topic.partition_data.len()));
        for (partition, outcome) in topic.partition_data.iter().zip(topic_outcomes) {
            let mut partition_response = PartitionProduceResponse::default();
            partition_response.index = partition.index;
            partition_response.error_code = outcome.error_code;
            partition_response.base_offset = outcome.base_offset;
            partition_response.log_append_time_ms = outcome.log_append_time;
            if version >= 5 {
                partition_response.log_start_offset = outcome.log_start_offset;
            }
            if version >= 8 {
                partition_response.error_message = outcome.error_message.as_deref().map(str_bytes);
                partition_response.record_errors = outcome
                    .record_errors
                    .iter()
                    .map(|(index, message)| {
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(*index)
                            .with_batch_index_error_message(Some(str_bytes(message)))
                    })
                    .collect();
            }
            let hint = hints.as_deref_mut().and_then(|hints| {
                hints.for_error(outcome.error_code, topic.name.0.as_str(), partition.index)
            });
            if let Some(leader) = hint {
                let mut current = LeaderIdAndEpoch::default();
                current.leader_id = BrokerId(leader.leader_id);
                current.leader_epoch = leader.leader_epoch;
                partition_response.current_leader = current;
            }
            topic_response.partition_responses.push(partition_response);
        }
        response.responses.push(topic_response);
    }
    if let Some(hints) = hints {
        response.node_endpoints = hints
            .endpoints()
            .map(|broker| {
                let mut endpoint = NodeEndpoint::default();
                endpoint.node_id = BrokerId(broker.id);
                endpoint.host = str_bytes(&broker.host);
                endpoint.port = i32::from(broker.port);
                endpoint.rack = broker.rack.as_deref().map(str_bytes);
                endpoint
            })
            .collect();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::txn_produce_error;
    use crate::handlers::leader_hints::tests::{broker_info, hints};
    use bytes::BytesMut;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Decodable, Encodable};
    use sluice_engine::batch::{build_batch, build_batch_with, BuildBatch};

    /// A request for partitions 0 to 3 of `t`, and their outcomes: 0 and 1
    /// not led here (leaders 2 and 3, of which 3 is not live), 2 appended,
    /// 3 refused for a reason that is not leadership.
    fn request_and_outcomes() -> (ProduceRequest, Vec<ProduceOutcome>) {
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(str_bytes("t"));
        topic.partition_data = (0..4)
            .map(|index| {
                let mut partition = PartitionProduceData::default();
                partition.index = index;
                partition
            })
            .collect();
        let mut request = ProduceRequest::default();
        request.acks = -1;
        request.topic_data = vec![topic];
        let outcome = |error_code, base_offset| ProduceOutcome {
            error_code,
            base_offset,
            log_append_time: -1,
            log_start_offset: -1,
            error_message: None,
            record_errors: Vec::new(),
        };
        let outcomes = vec![
            outcome(code::NOT_LEADER_OR_FOLLOWER, -1),
            outcome(code::NOT_LEADER_OR_FOLLOWER, -1),
            outcome(code::NONE, 42),
            outcome(code::NOT_ENOUGH_REPLICAS, -1),
        ];
        (request, outcomes)
    }

    fn encoded(response: &ProduceResponse, version: i16) -> Vec<u8> {
        let mut buffer = BytesMut::new();
        response
            .encode(&mut buffer, version)
            .unwrap_or_else(|e| panic!("v{version}: {e}"));
        buffer.to_vec()
    }

    #[test]
    fn leader_hints_are_encoded_from_v10_only() {
        let (request, outcomes) = request_and_outcomes();
        for version in VERSIONS.0..=VERSIONS.1 {
            let mut hints = hints();
            let hinted = response(version, &request, &outcomes, Some(&mut hints));
            let plain = response(version, &request, &outcomes, None);
            let bytes = encoded(&hinted, version);
            if version < LEADER_HINTS_VERSION {
                assert_eq!(bytes, encoded(&plain, version), "v{version} unchanged");
                continue;
            }
            let decoded = ProduceResponse::decode(&mut Bytes::from(bytes.clone()), version)
                .unwrap_or_else(|e| panic!("v{version}: {e}"));
            let leaders: Vec<(i32, i32)> = decoded.responses[0]
                .partition_responses
                .iter()
                .map(|p| (p.current_leader.leader_id.0, p.current_leader.leader_epoch))
                .collect();
            // Partitions without a leadership error carry the default,
            // which is left out of the tagged fields.
            assert_eq!(
                leaders,
                vec![(2, 5), (3, 7), (-1, -1), (-1, -1)],
                "v{version}"
            );
            // Only the live leader named is listed, with what Metadata says.
            assert_eq!(decoded.node_endpoints.len(), 1, "v{version}");
            let endpoint = &decoded.node_endpoints[0];
            let expected = broker_info(2, None);
            assert_eq!(endpoint.node_id.0, expected.id);
            assert_eq!(endpoint.host.as_str(), expected.host);
            assert_eq!(endpoint.port, i32::from(expected.port));
            assert_eq!(endpoint.rack, None);
            // Partition 0's tagged fields as the schema lays them out: one
            // field, tag 0, 9 bytes (leader id, epoch, the struct's empty
            // tagged fields), then the partition's end.
            let partition_tags = [1, 0, 9, 0, 0, 0, 2, 0, 0, 0, 5, 0];
            assert!(
                bytes
                    .windows(partition_tags.len())
                    .any(|w| w == partition_tags),
                "v{version}: {bytes:?}"
            );
            // The response's tagged fields end it: NodeEndpoints, tag 0.
            let host = expected.host.as_bytes();
            let mut tail = vec![1, 0, (1 + 4 + 1 + host.len() + 4 + 1 + 1) as u8, 2];
            tail.extend_from_slice(&expected.id.to_be_bytes());
            tail.push(host.len() as u8 + 1);
            tail.extend_from_slice(host);
            tail.extend_from_slice(&i32::from(expected.port).to_be_bytes());
            tail.extend_from_slice(&[0, 0]); // null rack, endpoint tags
            assert!(bytes.ends_with(&tail), "v{version}: {bytes:?}");
        }
    }

    #[test]
    fn without_a_leadership_error_v10_is_unchanged() {
        let (request, mut outcomes) = request_and_outcomes();
        outcomes[0].error_code = code::NONE;
        outcomes[1].error_code = code::KAFKA_STORAGE_ERROR;
        for version in LEADER_HINTS_VERSION..=VERSIONS.1 {
            let mut hints = hints();
            let hinted = response(version, &request, &outcomes, Some(&mut hints));
            let plain = response(version, &request, &outcomes, None);
            assert_eq!(encoded(&hinted, version), encoded(&plain, version));
            assert!(hinted.node_endpoints.is_empty());
        }
    }

    #[test]
    fn only_a_v2_transactional_first_batch_counts() {
        let transactional = build_batch_with(
            BuildBatch {
                producer_id: 7,
                producer_epoch: 0,
                base_sequence: 0,
                attributes: batch::attributes::TRANSACTIONAL,
                ..BuildBatch::default()
            },
            &[b"x"],
        );
        assert!(first_batch_is_transactional(&transactional));
        assert!(!first_batch_is_transactional(&build_batch(0, &[b"x"])));
        // Too short for the attributes, or another magic: left to validation.
        assert!(!first_batch_is_transactional(
            &transactional[..batch::ATTRIBUTES_AT + 1]
        ));
        assert!(!first_batch_is_transactional(&[]));
        let mut old_magic = transactional.clone();
        old_magic[batch::MAGIC_AT] = 1;
        assert!(!first_batch_is_transactional(&old_magic));
    }

    #[test]
    fn coordinator_answers_become_kafkas_produce_errors() {
        let error = |version, coordinator| txn_produce_error(version, coordinator).0;
        for version in [3, 9, 11, 12] {
            assert_eq!(
                error(version, code::PRODUCER_FENCED),
                code::INVALID_PRODUCER_EPOCH
            );
            for retriable in [
                code::COORDINATOR_LOAD_IN_PROGRESS,
                code::COORDINATOR_NOT_AVAILABLE,
                code::NOT_COORDINATOR,
            ] {
                assert_eq!(error(version, retriable), code::NOT_ENOUGH_REPLICAS);
            }
            assert_eq!(
                error(version, code::INVALID_PRODUCER_ID_MAPPING),
                code::INVALID_PRODUCER_ID_MAPPING
            );
        }
        assert_eq!(
            error(10, code::TRANSACTION_ABORTABLE),
            code::INVALID_TXN_STATE
        );
        assert_eq!(
            error(11, code::TRANSACTION_ABORTABLE),
            code::TRANSACTION_ABORTABLE
        );
        assert_eq!(
            error(11, code::CONCURRENT_TRANSACTIONS),
            code::NOT_ENOUGH_REPLICAS
        );
        assert_eq!(
            error(12, code::CONCURRENT_TRANSACTIONS),
            code::CONCURRENT_TRANSACTIONS
        );
    }
}
