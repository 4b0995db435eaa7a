//! One Produce request naming partitions of several shards, in no order,
//! with a topic that does not exist and a partition past a topic's end:
//! each partition's answer sits where the request named it, each batch
//! lands in the partition it was sent to, and the refused ones take
//! nothing. The broker splits such a request by owner shard and merges the
//! shards' answers back into request order; a slip there would answer one
//! partition with another's offset or error.

mod common;

use std::collections::BTreeSet;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use sluice_engine::batch::build_batch;
use sluice_engine::shard_for;

use common::{produce_partition_answers, read_all, text, TestBroker, WireClient, SHARDS};

/// A version that names topics by name (v13 names them by id); how the
/// answers are merged does not depend on the version.
const PRODUCE_VERSION: i16 = 9;
const PRODUCE_TIMEOUT_MS: i32 = 10_000;
const SPREAD: &str = "spread";
const SPREAD_PARTITIONS: i32 = 8;
const OTHER: &str = "other";
const MISSING: &str = "missing";
/// Partitions of `spread` named, in this order (not the partitions' own).
const NAMED: [i32; 4] = [5, 0, 3, 1];
/// A partition `spread` does not have.
const PAST_THE_END: i32 = 42;
const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// The value of record `index` of a batch sent to `partition` of `topic`.
fn value(topic: &str, partition: i32, round: usize, index: usize) -> Vec<u8> {
    format!("{topic}/{partition}/{round}/{index}").into_bytes()
}

/// Partition data holding `count` records for `partition` of `topic`.
fn partition(topic: &str, partition: i32, round: usize, count: usize) -> PartitionProduceData {
    let values: Vec<Vec<u8>> = (0..count)
        .map(|index| value(topic, partition, round, index))
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(Bytes::from(build_batch(0, &refs)));
    data
}

fn topic(name: &str, partitions: Vec<PartitionProduceData>) -> TopicProduceData {
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(text(name));
    topic.partition_data = partitions;
    topic
}

/// How many records round 0 sends to the `n`th partition named: all
/// different, so that the next round's base offsets tell the partitions
/// apart.
fn first_round_count(n: usize) -> usize {
    n + 1
}

/// The request of `round`: `spread`'s partitions in `NAMED` order, one past
/// its end, a missing topic, then `other`.
fn request(round: usize) -> ProduceRequest {
    let count = |n: usize| if round == 0 { first_round_count(n) } else { 1 };
    let mut spread: Vec<PartitionProduceData> = NAMED
        .iter()
        .enumerate()
        .map(|(n, &index)| partition(SPREAD, index, round, count(n)))
        .collect();
    spread.push(partition(SPREAD, PAST_THE_END, round, 1));
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = PRODUCE_TIMEOUT_MS;
    request.topic_data = vec![
        topic(SPREAD, spread),
        topic(MISSING, vec![partition(MISSING, 0, round, 1)]),
        topic(OTHER, vec![partition(OTHER, 0, round, count(NAMED.len()))]),
    ];
    request
}

/// A topic's answer: its name, and each partition's index, error code and
/// base offset.
type TopicAnswer = (String, Vec<(i32, i16, i64)>);

/// The answer, topic by topic in its order.
fn answered(response: &ProduceResponse) -> Vec<TopicAnswer> {
    response
        .responses
        .iter()
        .map(|topic| (topic.name.0.to_string(), produce_partition_answers(topic)))
        .collect()
}

#[test]
fn a_request_over_several_shards_is_answered_in_its_own_order() {
    let broker = TestBroker::start();
    broker.create_topic(SPREAD, SPREAD_PARTITIONS);
    broker.create_topic(OTHER, 1);
    // The named partitions are led by more than one shard, or the merge
    // would not be exercised.
    let shards: BTreeSet<u16> = NAMED
        .iter()
        .map(|&index| shard_for(SPREAD, index, SHARDS).0)
        .collect();
    assert!(shards.len() > 1, "the named partitions are on one shard");

    let mut client = WireClient::new(&broker);
    let expected = |base: &dyn Fn(usize) -> i64| {
        let mut spread: Vec<(i32, i16, i64)> = NAMED
            .iter()
            .enumerate()
            .map(|(n, &index)| (index, NONE, base(n)))
            .collect();
        spread.push((PAST_THE_END, UNKNOWN_TOPIC_OR_PARTITION, -1));
        vec![
            (SPREAD.to_string(), spread),
            (
                MISSING.to_string(),
                vec![(0, UNKNOWN_TOPIC_OR_PARTITION, -1)],
            ),
            (OTHER.to_string(), vec![(0, NONE, base(NAMED.len()))]),
        ]
    };
    let first: ProduceResponse = client.call(ApiKey::Produce, PRODUCE_VERSION, &request(0));
    assert_eq!(answered(&first), expected(&|_| 0), "the first request");
    // Each partition took a different number of records the first time,
    // so the second request's base offsets name each one.
    let second: ProduceResponse = client.call(ApiKey::Produce, PRODUCE_VERSION, &request(1));
    assert_eq!(
        answered(&second),
        expected(&|n| first_round_count(n) as i64),
        "the second request"
    );

    // What each partition holds: its own records, in order, and nothing
    // for partitions not named.
    let stored = read_all(&broker, SPREAD, SPREAD_PARTITIONS);
    for index in 0..SPREAD_PARTITIONS {
        let values: Vec<Vec<u8>> = stored
            .get(&index)
            .map(|records| records.iter().filter_map(|r| r.value.clone()).collect())
            .unwrap_or_default();
        let wanted: Vec<Vec<u8>> = match NAMED.iter().position(|&named| named == index) {
            Some(n) => (0..first_round_count(n))
                .map(|i| value(SPREAD, index, 0, i))
                .chain(std::iter::once(value(SPREAD, index, 1, 0)))
                .collect(),
            None => Vec::new(),
        };
        assert_eq!(values, wanted, "partition {index} of {SPREAD}");
    }
    let other = read_all(&broker, OTHER, 1);
    let values: Vec<Vec<u8>> = other
        .get(&0)
        .map(|records| records.iter().filter_map(|r| r.value.clone()).collect())
        .unwrap_or_default();
    let wanted: Vec<Vec<u8>> = (0..first_round_count(NAMED.len()))
        .map(|i| value(OTHER, 0, 0, i))
        .chain(std::iter::once(value(OTHER, 0, 1, 0)))
        .collect();
    assert_eq!(values, wanted, "{OTHER}");
}
