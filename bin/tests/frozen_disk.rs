//! A data disk that stops taking writes for a while: its file system frozen
//! (`FIFREEZE`, what snapshot tools and `fsfreeze` do; a stalled network or
//! cloud volume looks the same to the broker). Every produce request still
//! gets an answer, a success or Kafka's timeout error, within its timeout
//! (as do DeleteTopics, OffsetCommit, InitProducerId, ElectLeaders,
//! AlterPartitionReassignments, CreatePartitions of several topics (within
//! one timeout, not one per topic), and Metadata and FindCoordinator requests
//! that create a topic);
//! requests that need no disk are answered throughout; and once the disk
//! thaws, producing works again and nothing acknowledged is lost.
//!
//! The data directory is a small ext4 file system on a loop device, so this
//! test needs root (as CI runs it).

mod common;

use std::time::{Duration, Instant};

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey,
    CreatePartitionsRequest, CreatePartitionsResponse, ElectLeadersRequest, ElectLeadersResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, InitProducerIdRequest,
    InitProducerIdResponse, OffsetCommitRequest, OffsetCommitResponse, TopicName,
};
use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use common::disk::{Freeze, SmallDisk};
use common::{
    create_topic, indexed_value, produce_all, raw_connect, raw_metadata, read_all,
    slowest_metadata_answer, text, wait_until, Record, TestBroker, TrackedProducer, WireClient,
    CLIENT_TIMEOUT,
};

const DISK_BYTES: u64 = 256 * 1024 * 1024;
const RECORD_BYTES: usize = 16 * 1024;
/// Small segments, so that the records sent while the disk is frozen roll
/// several of them: a roll creates a file, which a frozen file system
/// makes wait.
const SEGMENT_BYTES: &str = "262144";
const PARTITIONS: i32 = 2;
/// Records acknowledged before the freeze.
const BEFORE_RECORDS: usize = 100;
/// Records sent while the disk is frozen, by each producer: more than
/// several segments' worth.
const FROZEN_RECORDS: usize = 200;
/// The produce requests' own timeout (`request.timeout.ms`, which
/// librdkafka sends as the Produce request's timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// librdkafka's own give-up time: a message the broker never answered is
/// reported "Message timed out" after this, which the test tells apart
/// from the broker's REQUEST_TIMED_OUT.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(40);
/// How long the disk stays frozen at least: several request timeouts.
const FROZEN_FOR: Duration = Duration::from_secs(12);
/// How long it stays frozen at most, waiting for answers still due (a
/// slow machine): well below `MESSAGE_TIMEOUT`, so that an answer missing
/// then is one the broker never gave.
const FROZEN_FOR_MAX: Duration = Duration::from_secs(30);
/// A request that needs no disk must be answered within this while the
/// disk is frozen.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// Connections a metadata request is sent on: placed over the shards, so
/// that every shard is asked.
const PROBE_CONNECTIONS: usize = 6;

/// An offset commit on the frozen disk is answered within this: the
/// coordinator's 5 s write timeout (`offsets.commit.timeout.ms`) and some
/// room. (librdkafka retries a commit answered REQUEST_TIMED_OUT, so the
/// commit is sent raw: the broker's own answer is what is timed.)
const COMMIT_ANSWER_WITHIN: Duration = Duration::from_secs(8);
/// The OffsetCommit version sent.
const OFFSET_COMMIT_VERSION: i16 = 8;
/// Kafka's error codes the test expects.
const NONE: i16 = 0;
const REQUEST_TIMED_OUT: i16 = 7;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const LEADER_NOT_AVAILABLE: i16 = 5;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// The FindCoordinator version sent (one that takes a list of keys).
const FIND_COORDINATOR_VERSION: i16 = 4;
/// FindCoordinator's key type of a transactional id.
const TRANSACTION_KEY_TYPE: i8 = 1;

/// Asks for the coordinator of a transactional id; its error code.
fn find_transaction_coordinator(wire: &mut WireClient) -> i16 {
    let mut request = FindCoordinatorRequest::default();
    request.key_type = TRANSACTION_KEY_TYPE;
    request.coordinator_keys = vec![text("frozen-transactions")];
    let response: FindCoordinatorResponse =
        wire.call(ApiKey::FindCoordinator, FIND_COORDINATOR_VERSION, &request);
    response
        .coordinators
        .first()
        .map_or(response.error_code, |coordinator| coordinator.error_code)
}
/// An InitProducerId that needs a new block of ids, or a Metadata request
/// that auto-creates a topic, is answered within this: the broker's 2 s
/// wait for the metadata write, then a retriable error, and some room.
const INIT_ANSWER_WITHIN: Duration = Duration::from_secs(4);
/// The InitProducerId version sent.
const INIT_PRODUCER_ID_VERSION: i16 = 4;

/// An idempotent (not transactional) producer's InitProducerId; its error
/// code.
fn init_producer_id(wire: &mut WireClient) -> i16 {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = -1;
    request.producer_id = (-1).into();
    request.producer_epoch = -1;
    let response: InitProducerIdResponse =
        wire.call(ApiKey::InitProducerId, INIT_PRODUCER_ID_VERSION, &request);
    response.error_code
}

/// Commits `offset` for partition 0 of `frozen` as a simple consumer
/// (no generation); the partition's error code.
fn commit_offset(wire: &mut WireClient, offset: i64) -> i16 {
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(text("frozen-group"));
    request.generation_id_or_member_epoch = -1;
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(text("frozen"));
    let mut partition = OffsetCommitRequestPartition::default();
    partition.committed_offset = offset;
    topic.partitions = vec![partition];
    request.topics = vec![topic];
    let response: OffsetCommitResponse =
        wire.call(ApiKey::OffsetCommit, OFFSET_COMMIT_VERSION, &request);
    response.topics[0].partitions[0].error_code
}

/// The `timeout_ms` of the ElectLeaders and AlterPartitionReassignments
/// sent while the controller waits on the frozen disk (for the deletion
/// begun before them), and how soon after it they must be answered.
const CONTROLLER_TIMEOUT_MS: i32 = 1_000;
const CONTROLLER_ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// How long the deletion is given to reach the controller before the
/// requests that must queue behind it are sent.
const DELETION_AHEAD: Duration = Duration::from_secs(1);
/// The versions sent (ElectLeaders with a top-level error code).
const ELECT_LEADERS_VERSION: i16 = 2;
const ALTER_REASSIGNMENTS_VERSION: i16 = 0;
/// ElectLeaders' preferred-leader election.
const PREFERRED_ELECTION: i8 = 0;

/// A preferred-leader election for partition 0 of `frozen`; the top-level
/// error code.
fn elect_leaders(wire: &mut WireClient) -> i16 {
    let mut topic = TopicPartitions::default();
    topic.topic = TopicName(text("frozen"));
    topic.partitions = vec![0];
    let mut request = ElectLeadersRequest::default();
    request.election_type = PREFERRED_ELECTION;
    request.topic_partitions = Some(vec![topic]);
    request.timeout_ms = CONTROLLER_TIMEOUT_MS;
    let response: ElectLeadersResponse =
        wire.call(ApiKey::ElectLeaders, ELECT_LEADERS_VERSION, &request);
    response.error_code
}

/// Cancels a reassignment of partition 0 of `frozen` (there is none; a
/// cancellation is always the controller's to answer); the partition's
/// error code.
fn cancel_reassignment(wire: &mut WireClient) -> i16 {
    let mut partition = ReassignablePartition::default();
    partition.partition_index = 0;
    partition.replicas = None;
    let mut topic = ReassignableTopic::default();
    topic.name = TopicName(text("frozen"));
    topic.partitions = vec![partition];
    let mut request = AlterPartitionReassignmentsRequest::default();
    request.timeout_ms = CONTROLLER_TIMEOUT_MS;
    request.topics = vec![topic];
    let response: AlterPartitionReassignmentsResponse = wire.call(
        ApiKey::AlterPartitionReassignments,
        ALTER_REASSIGNMENTS_VERSION,
        &request,
    );
    response
        .responses
        .first()
        .and_then(|topic| topic.partitions.first())
        .map_or(response.error_code, |partition| partition.error_code)
}

/// Topics grown by one CreatePartitions while the controller is busy: more
/// timeouts' worth than `CONTROLLER_ANSWER_WITHIN` holds, so a request
/// that waited one timeout per topic would be answered too late.
const GROWN_TOPICS: [&str; 4] = ["grown-a", "grown-b", "grown-c", "grown-d"];
const CREATE_PARTITIONS_VERSION: i16 = 3;
/// What `create_partitions` reports when its topics got different errors.
const MIXED_ERRORS: i16 = i16::MIN + 1;

/// One CreatePartitions growing every topic of `GROWN_TOPICS` to two
/// partitions; the error code they share.
fn create_partitions(wire: &mut WireClient) -> i16 {
    let mut request = CreatePartitionsRequest::default();
    request.timeout_ms = CONTROLLER_TIMEOUT_MS;
    request.topics = GROWN_TOPICS
        .iter()
        .map(|name| {
            let mut topic = CreatePartitionsTopic::default();
            topic.name = TopicName(text(name));
            topic.count = 2;
            topic
        })
        .collect();
    let response: CreatePartitionsResponse = wire.call(
        ApiKey::CreatePartitions,
        CREATE_PARTITIONS_VERSION,
        &request,
    );
    assert_eq!(response.results.len(), GROWN_TOPICS.len());
    let first = response.results[0].error_code;
    if response
        .results
        .iter()
        .all(|result| result.error_code == first)
    {
        first
    } else {
        MIXED_ERRORS
    }
}

/// What `auto_creating` reports when the answer names no topic at all
/// (no Kafka error code has this value).
const NO_TOPIC_ANSWERED: i16 = i16::MIN;

/// A request made on a thread of its own: its error code, and how long
/// its answer took.
type Timed = std::thread::JoinHandle<(i16, Duration)>;

fn timed(request: impl FnOnce() -> i16 + Send + 'static) -> Timed {
    std::thread::spawn(move || {
        let started = Instant::now();
        let error = request();
        (error, started.elapsed())
    })
}

/// `what` was answered (the disk still frozen) within `within`, with one
/// of the `allowed` error codes.
fn check_answer(what: &str, request: Timed, within: Duration, allowed: &[i16]) {
    assert!(
        request.is_finished(),
        "{what} unanswered while the disk was frozen"
    );
    let Ok((error, took)) = request.join() else {
        panic!("the thread of {what} panicked");
    };
    eprintln!("{what}, disk frozen: error {error} in {took:?}");
    assert!(
        took <= within,
        "{what} took {took:?} on the frozen disk (error {error})"
    );
    assert!(
        allowed.contains(&error),
        "{what} on the frozen disk: error {error} in {took:?}"
    );
}

fn record(partition: i32, index: usize) -> Record {
    Record::with_value(partition, indexed_value(index, RECORD_BYTES))
}

fn producer(broker: &TestBroker, acks: &str) -> TrackedProducer {
    let request_timeout = REQUEST_TIMEOUT.as_millis().to_string();
    let message_timeout = MESSAGE_TIMEOUT.as_millis().to_string();
    TrackedProducer::new(
        broker,
        "frozen",
        &[
            ("acks", acks),
            ("retries", "0"),
            ("request.timeout.ms", &request_timeout),
            ("message.timeout.ms", &message_timeout),
        ],
    )
}

#[test]
fn a_frozen_disk_gets_every_produce_answered_and_loses_nothing() {
    let mut disk = None;
    let broker = TestBroker::start_prepared(None, &[], |data_dir| {
        disk = Some(SmallDisk::mount(data_dir, DISK_BYTES));
    });
    let disk = disk.as_ref().expect("the disk was mounted");
    create_topic(
        &broker.admin(),
        "frozen",
        PARTITIONS,
        &[("segment.bytes", SEGMENT_BYTES)],
    );
    // A topic whose partitions have no segment file yet: their first
    // write creates it, while the disk is frozen.
    create_topic(&broker.admin(), "fresh", PARTITIONS, &[]);
    // A topic deleted while the disk is frozen: its directories are
    // renamed aside, which waits for the file system.
    create_topic(&broker.admin(), "doomed", PARTITIONS, &[]);
    for name in GROWN_TOPICS {
        create_topic(&broker.admin(), name, 1, &[]);
    }
    produce_all(
        &broker,
        "doomed",
        &[("acks", "all")],
        &[record(0, 0), record(1, 1)],
    );
    // A group's offsets, committed once before the freeze (which creates
    // the offsets topic) and once while the disk is frozen.
    // librdkafka's commit finds the coordinator first, which creates the
    // offsets topic.
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("frozen", 0, Offset::Offset(1))
        .expect("an offset to commit");
    broker
        .consumer(&[("group.id", "frozen-group")])
        .commit(&offsets, CommitMode::Sync)
        .expect("an offset commit before the freeze");
    let mut committer = WireClient::new(&broker);
    assert_eq!(
        commit_offset(&mut committer, 1),
        NONE,
        "a raw offset commit before the freeze"
    );
    let mut acknowledged: Vec<(i32, usize)> = Vec::new();
    let mut next = 0;

    let mut before = producer(&broker, "all");
    for _ in 0..BEFORE_RECORDS {
        before.send(&record(next as i32 % PARTITIONS, next));
        next += 1;
    }
    before.flush();
    for (index, report) in before.reports().iter().enumerate() {
        match report {
            Some(Ok((partition, _))) => acknowledged.push((*partition, index)),
            other => panic!("record {index} before the freeze: {other:?}"),
        }
    }
    drop(before);

    let mut correlation = 0;
    let frozen_from = next;
    let (durable_outcomes, fast_outcomes, slowest) = {
        // Declared after the broker: dropped (thawed) first, also when an
        // assertion fails, so the broker can be stopped.
        let freeze = Freeze::new(disk.mount_point());
        let frozen_at = Instant::now();
        let mut durable = producer(&broker, "all");
        let mut fast = producer(&broker, "1");
        let mut fresh = TrackedProducer::new(&broker, "fresh", &[("acks", "1")]);
        for index in 0..PARTITIONS as usize {
            fresh.send(&record(index as i32, index));
        }
        for _ in 0..FROZEN_RECORDS {
            durable.send(&record(next as i32 % PARTITIONS, next));
            next += 1;
            fast.send(&record(next as i32 % PARTITIONS, next));
            next += 1;
        }
        let admin = broker.admin();
        let deleting = std::thread::spawn(move || {
            let options = AdminOptions::new()
                .operation_timeout(Some(REQUEST_TIMEOUT))
                .request_timeout(Some(MESSAGE_TIMEOUT));
            futures_lite::future::block_on(admin.delete_topics(&["doomed"], &options))
        });
        // A Metadata request that auto-creates a topic: the creation's
        // metadata write waits for the thaw.
        let creating_address = broker.address();
        let auto_creating = timed(move || {
            let mut stream = raw_connect(creating_address);
            let answer = raw_metadata(&mut stream, Some(vec!["auto-created"]), true, 1);
            answer
                .topics
                .first()
                .map_or(NO_TOPIC_ANSWERED, |topic| topic.error_code)
        });
        // The first FindCoordinator for a transactional id: it creates
        // `__transaction_state`, whose metadata write waits for the thaw.
        let mut finder = WireClient::new(&broker);
        let finding = timed(move || find_transaction_coordinator(&mut finder));
        // An idempotent producer's first InitProducerId on this broker:
        // the id block it draws from is written to the metadata first.
        let mut initiator = WireClient::new(&broker);
        let initiating = timed(move || init_producer_id(&mut initiator));
        let committing = timed(move || commit_offset(&mut committer, 2));
        // Requests for the controller, which is busy with the deletion
        // until the thaw: each waits only its own timeout.
        std::thread::sleep(DELETION_AHEAD);
        let mut elector = WireClient::new(&broker);
        let electing = timed(move || elect_leaders(&mut elector));
        let mut reassigner = WireClient::new(&broker);
        let reassigning = timed(move || cancel_reassignment(&mut reassigner));
        let mut grower = WireClient::new(&broker);
        let growing = timed(move || create_partitions(&mut grower));
        let mut slowest = Duration::ZERO;
        let answered = |producer: &TrackedProducer| producer.reports().iter().all(Option::is_some);
        while frozen_at.elapsed() < FROZEN_FOR
            || (frozen_at.elapsed() < FROZEN_FOR_MAX
                && !(answered(&durable)
                    && deleting.is_finished()
                    && committing.is_finished()
                    && initiating.is_finished()
                    && auto_creating.is_finished()
                    && finding.is_finished()
                    && electing.is_finished()
                    && reassigning.is_finished()
                    && growing.is_finished()))
        {
            slowest = slowest.max(slowest_metadata_answer(
                &broker,
                "frozen",
                PROBE_CONNECTIONS,
                &mut correlation,
            ));
            std::thread::sleep(Duration::from_millis(200));
        }
        // Every produce sent while frozen has been answered by now: each
        // was sent several request timeouts ago.
        let outcomes = (durable.reports(), fast.reports(), slowest);
        // acks=1 is answered at the append, before any write: also for a
        // partition whose first segment file is still to be created.
        for (index, report) in fresh.reports().iter().enumerate() {
            assert!(
                matches!(report, Some(Ok(_))),
                "acks=1 record {index} to a new partition, disk frozen: {report:?}"
            );
        }
        assert!(
            deleting.is_finished(),
            "DeleteTopics unanswered {:?} into the freeze",
            frozen_at.elapsed()
        );
        // Answered within its timeout: deleted, or Kafka's timeout error
        // (the deletion then goes on, and ends once the disk thaws).
        match deleting.join() {
            Ok(Ok(results)) => match results.as_slice() {
                [Ok(_)] | [Err((_, RDKafkaErrorCode::RequestTimedOut))] => {}
                other => panic!("DeleteTopics, disk frozen: {other:?}"),
            },
            other => panic!("DeleteTopics, disk frozen: {other:?}"),
        }
        // The coordinator gives up on a write after 5 s
        // (`offsets.commit.timeout.ms`), and says so.
        check_answer(
            "an offset commit",
            committing,
            COMMIT_ANSWER_WITHIN,
            &[REQUEST_TIMED_OUT],
        );
        check_answer(
            "an InitProducerId",
            initiating,
            INIT_ANSWER_WITHIN,
            &[NONE, COORDINATOR_LOAD_IN_PROGRESS],
        );
        check_answer(
            "a FindCoordinator creating the transaction topic",
            finding,
            INIT_ANSWER_WITHIN,
            &[NONE, COORDINATOR_NOT_AVAILABLE],
        );
        check_answer(
            "a Metadata request auto-creating a topic",
            auto_creating,
            INIT_ANSWER_WITHIN,
            &[NONE, LEADER_NOT_AVAILABLE],
        );
        check_answer(
            "an ElectLeaders",
            electing,
            CONTROLLER_ANSWER_WITHIN,
            &[REQUEST_TIMED_OUT],
        );
        check_answer(
            "an AlterPartitionReassignments",
            reassigning,
            CONTROLLER_ANSWER_WITHIN,
            &[REQUEST_TIMED_OUT],
        );
        check_answer(
            "a CreatePartitions of several topics",
            growing,
            CONTROLLER_ANSWER_WITHIN,
            &[REQUEST_TIMED_OUT],
        );
        drop(freeze);
        fresh.flush();
        durable.flush();
        fast.flush();
        outcomes
    };
    assert!(
        slowest <= ANSWER_WITHIN,
        "a metadata request took {slowest:?} while the disk was frozen"
    );
    let mut timed_out = 0;
    for (name, outcomes, first, acks_all) in [
        ("acks=all", &durable_outcomes, frozen_from, true),
        ("acks=1", &fast_outcomes, frozen_from + 1, false),
    ] {
        for (index, outcome) in outcomes.iter().enumerate() {
            let value_index = first + 2 * index;
            match outcome {
                Some(Ok((partition, _))) => {
                    assert!(
                        !acks_all,
                        "{name} record {value_index} acknowledged while the disk was frozen"
                    );
                    acknowledged.push((*partition, value_index));
                }
                Some(Err(error)) => {
                    assert!(
                        error.contains("RequestTimedOut") || error.contains("timed out"),
                        "{name} record {value_index} failed with {error}"
                    );
                    assert!(
                        !error.contains("Message timed out"),
                        "{name} record {value_index} was never answered by the broker: {error}"
                    );
                    timed_out += 1;
                }
                None => panic!(
                    "{name} record {value_index} had no answer {FROZEN_FOR_MAX:?} into the freeze"
                ),
            }
        }
    }
    assert!(timed_out > 0, "no produce waited on the frozen disk");
    eprintln!("{timed_out} acks=all produces timed out; slowest metadata answer {slowest:?}");

    // Thawed: producing works again.
    let mut after = producer(&broker, "all");
    let after_from = next;
    for _ in 0..BEFORE_RECORDS {
        after.send(&record(next as i32 % PARTITIONS, next));
        next += 1;
    }
    after.flush();
    for (index, report) in after.reports().iter().enumerate() {
        match report {
            Some(Ok((partition, _))) => acknowledged.push((*partition, after_from + index)),
            other => panic!("record {} after the thaw: {other:?}", after_from + index),
        }
    }
    drop(after);

    // The id block's write went on: once thawed, an InitProducerId gets
    // an id.
    let mut initiator = WireClient::new(&broker);
    wait_until("an InitProducerId after the thaw", CLIENT_TIMEOUT, || {
        init_producer_id(&mut initiator) == NONE
    });
    let consumer = broker.consumer(&[]);
    wait_until("the deleted topic to go", CLIENT_TIMEOUT, || {
        consumer
            .fetch_metadata(None, CLIENT_TIMEOUT)
            .is_ok_and(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .all(|topic| topic.name() != "doomed")
            })
    });

    // Nothing acknowledged is lost, nothing is stored twice or out of order.
    let fresh = read_all(&broker, "fresh", PARTITIONS);
    for partition in 0..PARTITIONS {
        let indexes: Vec<usize> = fresh
            .get(&partition)
            .map(|records| records.iter().map(Record::value_index).collect())
            .unwrap_or_default();
        assert_eq!(indexes, [partition as usize], "fresh partition {partition}");
    }
    let stored = read_all(&broker, "frozen", PARTITIONS);
    for partition in 0..PARTITIONS {
        let indexes: Vec<usize> = stored
            .get(&partition)
            .map(|records| records.iter().map(Record::value_index).collect())
            .unwrap_or_default();
        for pair in indexes.windows(2) {
            assert!(
                pair[0] < pair[1],
                "partition {partition} holds record {} after record {}",
                pair[1],
                pair[0]
            );
        }
        for (_, index) in acknowledged.iter().filter(|(p, _)| *p == partition) {
            assert!(
                indexes.binary_search(index).is_ok(),
                "acknowledged record {index} is missing from partition {partition}"
            );
        }
    }
}
