//! ListOffsets answers carry the right leader epoch (v4+) on a partition
//! whose leadership has moved, as Kafka answers them: the log end with the
//! partition's current leader epoch, any other offset with the epoch of
//! the batch that holds it. librdkafka keeps that epoch with a consumer's
//! position and, after the next leader change, asks OffsetForLeaderEpoch
//! where it ends (KIP-320): an older epoch than the true one reads as a
//! truncated log, and the consumer is moved back to re-read old records.

mod common;

use std::time::{Duration, Instant};

use common::{
    admin_options, produce_all, start_cluster_with, text, wait_for, Record, Stop, TestBroker,
    WireClient,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

const NODES: usize = 3;
/// No automatic preferred-leader moves: leadership changes only when the
/// test kills a leader.
const CLUSTER_ARGS: &[&str] = &["--leader-imbalance-check-interval-ms", "0"];
const TOPIC: &str = "epochs";
const PARTITION: i32 = 0;
/// Records written under each of the first two leaders, and after the last
/// leader change.
const RECORDS_PER_LEADER: usize = 5;
const NEW_RECORDS: usize = 3;
/// Metadata v12 has leader epochs.
const METADATA_VERSION: i16 = 12;
/// ListOffsets v7 has max-timestamp lookups (KIP-734) and leader epochs.
const LIST_OFFSETS_VERSION: i16 = 7;
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// Bound for a killed leader's partition to move (its fencing, then an
/// election), and for a restarted broker to be in sync again.
const LEADER_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Bound for the consumer to find its start and to read the new records.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);
/// Time given to the consumer to look up where the log ends.
const START_LOOKUP: Duration = Duration::from_secs(3);
/// How long the consumer keeps polling after the new records, so that a
/// move back to older records would show.
const SETTLE: Duration = Duration::from_secs(2);

/// (leader, leader epoch, ISR size) of the partition, as `broker` says.
fn leadership(broker: &TestBroker) -> (i32, i32, usize) {
    let mut topic = MetadataRequestTopic::default();
    topic.name = Some(TopicName(text(TOPIC)));
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![topic]);
    let response: MetadataResponse =
        WireClient::new(broker).call(ApiKey::Metadata, METADATA_VERSION, &request);
    response.topics[0]
        .partitions
        .iter()
        .find(|partition| partition.partition_index == PARTITION)
        .map_or((-1, -1, 0), |partition| {
            (
                partition.leader_id.0,
                partition.leader_epoch,
                partition.isr_nodes.len(),
            )
        })
}

/// Waits until `asked` names a leader other than `not` with every replica
/// in sync; returns (leader, leader epoch).
fn wait_for_leader(asked: &TestBroker, not: i32) -> (i32, i32) {
    wait_for(
        &format!("a leader other than {not} with a full ISR"),
        LEADER_TIMEOUT,
        POLL_INTERVAL,
        || match leadership(asked) {
            (leader, epoch, in_sync) if leader >= 0 && leader != not && in_sync == NODES => {
                Ok((leader, epoch))
            }
            seen => Err(format!("{seen:?}")),
        },
    )
}

/// ListOffsets for `timestamp` from the leader: (offset, leader epoch).
fn list_offset(leader: &TestBroker, timestamp: i64) -> (i64, i32) {
    let mut partition = ListOffsetsPartition::default();
    partition.partition_index = PARTITION;
    partition.current_leader_epoch = -1;
    partition.timestamp = timestamp;
    let mut topic = ListOffsetsTopic::default();
    topic.name = TopicName(text(TOPIC));
    topic.partitions = vec![partition];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    request.topics = vec![topic];
    let response: ListOffsetsResponse =
        WireClient::new(leader).call(ApiKey::ListOffsets, LIST_OFFSETS_VERSION, &request);
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, 0, "ListOffsets {timestamp}");
    (answer.offset, answer.leader_epoch)
}

/// Waits until `asked` names a leader other than the killed `killed`,
/// calling `meanwhile` at every poll.
fn wait_for_move(asked: &TestBroker, killed: i32, mut meanwhile: impl FnMut()) {
    wait_for(
        &format!("the partition of killed leader {killed} to move"),
        LEADER_TIMEOUT,
        POLL_INTERVAL,
        || {
            meanwhile();
            match leadership(asked) {
                (leader, ..) if leader >= 0 && leader != killed => Ok(()),
                seen => Err(format!("{seen:?}")),
            }
        },
    );
}

fn produce(broker: &TestBroker, prefix: &str, count: usize) {
    let records: Vec<Record> = (0..count)
        .map(|index| Record::with_value(PARTITION, format!("{prefix}-{index}").into_bytes()))
        .collect();
    produce_all(broker, TOPIC, &[("acks", "all")], &records);
}

fn broker_of(node: i32) -> usize {
    usize::try_from(node - 1).expect("node ids start at 1")
}

#[test]
fn list_offsets_name_the_epochs_and_a_consumer_stays_put_across_a_leader_change() {
    let mut brokers = start_cluster_with(NODES, CLUSTER_ARGS);
    let admin = brokers[0].admin();
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(NODES as i32));
    let created = futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
        .expect("CreateTopics answered");
    assert!(created[0].is_ok(), "{created:?}");
    let (first_leader, first_epoch) = wait_for_leader(&brokers[0], -1);
    produce(&brokers[0], "first", RECORDS_PER_LEADER);

    // A second leader, and records under it.
    let index = broker_of(first_leader);
    brokers[index].stop(Stop::Kill);
    let survivor = (index + 1) % NODES;
    wait_for_move(&brokers[survivor], first_leader, || {});
    brokers[index].start_again();
    let (second_leader, second_epoch) = wait_for_leader(&brokers[survivor], first_leader);
    assert!(second_epoch > first_epoch, "{second_epoch} > {first_epoch}");
    produce(&brokers[survivor], "second", RECORDS_PER_LEADER);

    let leader = &brokers[broker_of(second_leader)];
    let end = (RECORDS_PER_LEADER * 2) as i64;
    assert_eq!(list_offset(leader, LATEST), (end, second_epoch), "latest");
    assert_eq!(list_offset(leader, EARLIEST), (0, first_epoch), "earliest");
    assert_eq!(
        list_offset(leader, MAX_TIMESTAMP),
        (end - 1, second_epoch),
        "max timestamp: the last record, written under the second leader"
    );

    // A consumer starting at the end, idle while the leader changes again.
    let consumer: BaseConsumer = leader
        .client_config()
        .set("group.id", "offset-epochs")
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, PARTITION, Offset::End)
        .expect("adding the partition");
    consumer.assign(&assignment).expect("assign");
    // librdkafka reports no position before it has read a message, so the
    // consumer is given time to look up its start (a ListOffsets round
    // trip, milliseconds here); nothing may arrive meanwhile.
    let looked_up = Instant::now();
    while looked_up.elapsed() < START_LOOKUP {
        if let Some(outcome) = consumer.poll(POLL_INTERVAL) {
            panic!(
                "nothing was produced, yet the consumer got {:?}",
                outcome.map(|m| m.offset())
            );
        }
    }
    let second = broker_of(second_leader);
    brokers[second].stop(Stop::Kill);
    let asked = (second + 1) % NODES;
    // The consumer's client keeps running meanwhile.
    wait_for_move(&brokers[asked], second_leader, || {
        let _ = consumer.poll(Duration::ZERO);
    });
    produce(&brokers[asked], "new", NEW_RECORDS);

    let mut read: Vec<(i64, String)> = Vec::new();
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let mut settled_at: Option<Instant> = None;
    while settled_at.is_none_or(|at| at.elapsed() < SETTLE) {
        assert!(Instant::now() < deadline, "read so far: {read:?}");
        match consumer.poll(POLL_INTERVAL) {
            Some(Ok(message)) => read.push((
                message.offset(),
                String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            )),
            // librdkafka reports the killed broker's connection failing
            // here too; it is not the consumer's failure.
            Some(Err(error)) => eprintln!("consumer event: {error}"),
            None => {}
        }
        if read.len() >= NEW_RECORDS && settled_at.is_none() {
            settled_at = Some(Instant::now());
        }
    }
    let expected: Vec<(i64, String)> = (0..NEW_RECORDS)
        .map(|index| (end + index as i64, format!("new-{index}")))
        .collect();
    assert_eq!(
        read, expected,
        "after the leader change the consumer reads on from where it was, nothing older"
    );
}
