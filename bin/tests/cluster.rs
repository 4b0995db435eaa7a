//! Three `sluice` processes form one cluster over their controller ports:
//! a three-voter metadata quorum. librdkafka sees three brokers with their
//! racks, topics are placed over all three with leaders balanced, records
//! produced through one broker reach each partition's leader and are read
//! back through another, and the metadata survives killing the whole
//! cluster with kill -9. A killed broker is fenced, its partitions move to
//! another replica of their ISR, and once it is back in sync the controller
//! gives it its preferred leaderships back. Topics created while the
//! active controller is killed are each created or refused with a
//! retriable error, and every broker ends with the same topics. A voter
//! left alone (two of three killed) never leads the quorum by itself and
//! answers admin writes NOT_CONTROLLER until the others are back.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{
    admin_options, cli, free_ports, produce_all, read_all, start_cluster_with, wait_until, Record,
    Stop, TestBroker,
};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;

const NODES: usize = 3;
const TOPIC: &str = "spread";
const PARTITIONS: i32 = 12;
const RECORDS: usize = 600;
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the controller gives leadership back to preferred replicas
/// here (Kafka's default is five minutes; the test waits for it).
const LEADER_REBALANCE_INTERVAL_MS: u64 = 1000;

fn start_cluster() -> Vec<TestBroker> {
    let interval = LEADER_REBALANCE_INTERVAL_MS.to_string();
    start_cluster_with(
        NODES,
        &["--leader-imbalance-check-interval-ms", interval.as_str()],
    )
}

/// (partition, leader, replicas, isr) of every partition, as one broker
/// tells librdkafka.
type Layout = Vec<(i32, i32, Vec<i32>, Vec<i32>)>;

fn layout(broker: &TestBroker) -> Layout {
    let consumer = broker.consumer(&[]);
    let metadata = consumer
        .fetch_metadata(Some(TOPIC), METADATA_TIMEOUT)
        .expect("metadata");
    let topic = &metadata.topics()[0];
    let mut layout: Layout = topic
        .partitions()
        .iter()
        .map(|partition| {
            (
                partition.id(),
                partition.leader(),
                partition.replicas().to_vec(),
                partition.isr().to_vec(),
            )
        })
        .collect();
    layout.sort();
    layout
}

fn broker_ids(broker: &TestBroker) -> BTreeSet<i32> {
    let consumer = broker.consumer(&[]);
    match consumer.fetch_metadata(None, METADATA_TIMEOUT) {
        Ok(metadata) => metadata.brokers().iter().map(|node| node.id()).collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// DescribeQuorum on every broker: the leader answers with the three
/// voters and how far each has replicated; the others name that leader.
fn check_quorum_description(brokers: &[TestBroker]) {
    let mut leaders = BTreeSet::new();
    let mut answered_by_leader = 0;
    for broker in brokers {
        let response = common::describe_quorum(broker, 2);
        let partition = &response.topics[0].partitions[0];
        leaders.insert(partition.leader_id.0);
        assert_eq!(
            response.nodes.len(),
            NODES,
            "v2 lists the voters' endpoints"
        );
        if partition.error_code == 0 {
            answered_by_leader += 1;
            let voters: BTreeSet<i32> = partition
                .current_voters
                .iter()
                .map(|voter| voter.replica_id.0)
                .collect();
            assert_eq!(voters, (1..=NODES as i32).collect::<BTreeSet<i32>>());
            assert!(partition.high_watermark > 0);
            assert!(partition
                .current_voters
                .iter()
                .all(|voter| voter.log_end_offset > 0));
        } else {
            assert_eq!(partition.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
        }
    }
    assert_eq!(answered_by_leader, 1, "exactly the leader answers");
    assert_eq!(
        leaders.len(),
        1,
        "every node names the same leader: {leaders:?}"
    );
}

/// Produces `RECORDS` records over every partition with acks=all.
fn produce_records(broker: &TestBroker) {
    let records: Vec<Record> = (0..RECORDS)
        .map(|index| {
            Record::with_value(
                index as i32 % PARTITIONS,
                format!("record-{index}").into_bytes(),
            )
        })
        .collect();
    produce_all(broker, TOPIC, &[("acks", "all")], &records);
}

fn create(broker: &TestBroker, name: &str, partitions: i32, replicas: i32) -> RDKafkaErrorCode {
    let admin = broker.admin();
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replicas));
    let results = futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
        .expect("CreateTopics answered");
    match &results[0] {
        Ok(_) => RDKafkaErrorCode::NoError,
        Err((_, code)) => *code,
    }
}

#[test]
fn three_brokers_form_one_cluster_and_place_replicas_across_it() {
    let mut brokers = start_cluster();
    let everyone: BTreeSet<i32> = (1..=NODES as i32).collect();
    for broker in &brokers {
        wait_until("every broker lists all three", METADATA_TIMEOUT, || {
            broker_ids(broker) == everyone
        });
    }

    check_quorum_description(&brokers);

    assert_eq!(
        create(&brokers[0], "too-wide", 1, 4),
        RDKafkaErrorCode::InvalidReplicationFactor
    );
    assert_eq!(
        create(&brokers[0], TOPIC, PARTITIONS, 3),
        RDKafkaErrorCode::NoError
    );
    let first = layout(&brokers[0]);
    assert_eq!(first.len(), PARTITIONS as usize);
    let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
    for (partition, leader, replicas, isr) in &first {
        let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
        assert_eq!(
            distinct, everyone,
            "partition {partition} replicas {replicas:?}"
        );
        assert_eq!(*leader, replicas[0], "partition {partition}");
        // A new partition's replicas are all in sync (its log is empty).
        let in_sync: BTreeSet<i32> = isr.iter().copied().collect();
        assert_eq!(in_sync, everyone, "partition {partition} ISR {isr:?}");
        *leaders.entry(*leader).or_default() += 1;
    }
    assert_eq!(
        leaders.values().copied().collect::<Vec<_>>(),
        vec![4, 4, 4],
        "leaders are balanced: {leaders:?}"
    );
    for broker in &brokers[1..] {
        wait_until("the same layout on every broker", METADATA_TIMEOUT, || {
            layout(broker) == first
        });
    }

    produce_records(&brokers[0]);
    let read = read_all(&brokers[1], TOPIC, PARTITIONS);
    let count: usize = read.values().map(Vec::len).sum();
    assert_eq!(count, RECORDS);

    check_admin_output(&brokers[2], &first);

    // SLUICE_METADATA_TOPICS=N creates N more topics, one CreateTopics
    // request each (for the README's metadata-write figures); 20 by default.
    let extra: usize = std::env::var("SLUICE_METADATA_TOPICS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let admin = brokers[0].admin();
    let started = Instant::now();
    for index in 0..extra {
        let name = format!("many-{index}");
        let topic = NewTopic::new(&name, 1, TopicReplication::Fixed(3));
        let results =
            futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
                .expect("CreateTopics answered");
        assert!(results[0].is_ok(), "{name}: {:?}", results[0]);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{extra} topics created one request at a time in {} ms: {:.0} topics/s",
        elapsed.as_millis(),
        extra as f64 / elapsed.as_secs_f64()
    );

    // The whole cluster killed at once: the metadata is intact after. Each
    // restarted broker's previous process is fenced before it registers
    // again (it may have lost an unwritten tail), which takes it out of
    // the ISRs and may move leaderships: its partitions' followers rejoin
    // once caught up, and every leader is an in-sync replica. Topic ids,
    // partition counts, replication factors and a topic's own configs are
    // part of what must come back.
    cli(
        &brokers[0],
        &[
            "topic",
            "alter-config",
            TOPIC,
            "--set",
            "retention.ms=86400000",
        ],
    );
    let topics_before = topics_json(&brokers[0]);
    let configs_before = configs_json(&brokers[0]);
    assert_eq!(
        configs_before["retention.ms"], "86400000",
        "{configs_before}"
    );
    for broker in &mut brokers {
        broker.stop(Stop::Kill);
    }
    for broker in &mut brokers {
        broker.launch();
    }
    for broker in &mut brokers {
        broker.await_listening();
    }
    let placed: Vec<(i32, Vec<i32>)> = first
        .iter()
        .map(|(partition, _, replicas, _)| (*partition, replicas.clone()))
        .collect();
    for broker in &brokers {
        wait_until("the layout after kill -9 of all", METADATA_TIMEOUT, || {
            let now = layout(broker);
            let same_replicas = now
                .iter()
                .map(|(partition, _, replicas, _)| (*partition, replicas.clone()))
                .eq(placed.iter().cloned());
            same_replicas
                && now.iter().all(|(_, leader, replicas, isr)| {
                    isr.len() == replicas.len() && isr.contains(leader)
                })
        });
    }
    let read = read_all(&brokers[2], TOPIC, PARTITIONS);
    let count: usize = read.values().map(Vec::len).sum();
    assert_eq!(count, RECORDS, "records after the whole cluster was killed");
    for broker in &brokers {
        assert_eq!(
            topics_json(broker),
            topics_before,
            "topics after kill -9 of all"
        );
        assert_eq!(
            configs_json(broker),
            configs_before,
            "configs after kill -9 of all"
        );
    }
}

/// Every topic that is not internal as `sluice topic list --json` through
/// `broker` shows it: names, topic ids, partition counts, replication
/// factors. (Internal topics appear when first used, e.g. by a consumer.)
fn topics_json(broker: &TestBroker) -> Vec<serde_json::Value> {
    let listed = cli(broker, &["topic", "list", "--json"]);
    let value: serde_json::Value =
        serde_json::from_str(&listed).unwrap_or_else(|error| panic!("{error}: {listed}"));
    let topics = value["topics"]
        .as_array()
        .unwrap_or_else(|| panic!("no topic list: {listed}"));
    topics
        .iter()
        .filter(|topic| topic["internal"] != serde_json::Value::Bool(true))
        .cloned()
        .collect()
}

/// The configs set on [`TOPIC`] itself, as `sluice topic describe --json`
/// through `broker` shows them.
fn configs_json(broker: &TestBroker) -> serde_json::Value {
    let described = cli(broker, &["topic", "describe", TOPIC, "--json"]);
    let value: serde_json::Value =
        serde_json::from_str(&described).unwrap_or_else(|error| panic!("{error}: {described}"));
    value["configs"].clone()
}

/// The partitions (leader, isr) one broker reports, by partition.
fn leaders(broker: &TestBroker) -> BTreeMap<i32, i32> {
    layout(broker)
        .into_iter()
        .map(|(partition, leader, _, _)| (partition, leader))
        .collect()
}

#[test]
fn a_killed_broker_is_fenced_and_leads_again_after_restart() {
    let mut brokers = start_cluster();
    let everyone: BTreeSet<i32> = (1..=NODES as i32).collect();
    for broker in &brokers {
        wait_until("every broker lists all three", METADATA_TIMEOUT, || {
            broker_ids(broker) == everyone
        });
    }
    assert_eq!(
        create(&brokers[0], TOPIC, PARTITIONS, 3),
        RDKafkaErrorCode::NoError
    );
    let before = leaders(&brokers[0]);
    produce_records(&brokers[0]);
    // SLUICE_FAILOVER_KILLS=N kills N brokers in turn (for the figures in
    // the README); one by default.
    let kills: usize = std::env::var("SLUICE_FAILOVER_KILLS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1);
    let mut fenced_ms = Vec::new();
    let mut elected_ms = Vec::new();
    let mut restored_ms = Vec::new();
    for kill in 0..kills {
        let victim = (kill % NODES) as i32 + 1;
        let observer = &brokers[victim as usize % NODES];
        let controller_before = common::quorum_leader(observer);
        // kill -9: fenced (gone from the broker list) and its partitions
        // led by another replica.
        let killed_at = Instant::now();
        brokers[victim as usize - 1].stop(Stop::Kill);
        let observer = &brokers[victim as usize % NODES];
        let survivors: BTreeSet<i32> = everyone
            .iter()
            .copied()
            .filter(|id| *id != victim)
            .collect();
        if controller_before == victim {
            wait_until("a new controller", Duration::from_secs(20), || {
                let leader = common::quorum_leader(observer);
                leader >= 0 && leader != victim
            });
            elected_ms.push(killed_at.elapsed().as_millis() as u64);
        }
        wait_until("the killed broker fenced", Duration::from_secs(20), || {
            broker_ids(observer) == survivors
        });
        fenced_ms.push(killed_at.elapsed().as_millis() as u64);
        wait_until("new leaders", Duration::from_secs(20), || {
            let now = leaders(observer);
            before.iter().all(|(partition, leader)| {
                let current = now[partition];
                if *leader == victim {
                    current >= 0 && current != victim
                } else {
                    current == *leader
                }
            })
        });
        // Restarted, it registers again, catches up, rejoins the ISR and
        // gets its preferred leaderships back, with every record.
        let restarted_at = Instant::now();
        brokers[victim as usize - 1].start_again();
        let observer = &brokers[victim as usize % NODES];
        wait_until("leaders restored", Duration::from_secs(20), || {
            leaders(observer) == before
        });
        restored_ms.push(restarted_at.elapsed().as_millis() as u64);
        for broker in &brokers {
            wait_until(
                "leaders restored everywhere",
                Duration::from_secs(20),
                || leaders(broker) == before,
            );
        }
    }
    let summary = |name: &str, values: &mut Vec<u64>| {
        values.sort_unstable();
        if let (Some(median), Some(worst)) = (values.get(values.len() / 2), values.last()) {
            eprintln!(
                "{name}: median {median} ms, worst {worst} ms over {}",
                values.len()
            );
        }
    };
    summary("kill -9 to fenced (seen in Metadata)", &mut fenced_ms);
    summary(
        "kill -9 of the controller to a new one (DescribeQuorum)",
        &mut elected_ms,
    );
    summary(
        "restart to leading again (process start included)",
        &mut restored_ms,
    );
    let read = read_all(&brokers[1], TOPIC, PARTITIONS);
    let count: usize = read.values().map(Vec::len).sum();
    assert_eq!(count, RECORDS, "records after the leaders came back");

    // Each fencing and each return bumped the leader epoch of broker 1's
    // partitions: a client that sends an older epoch is fenced, a newer one
    // is unknown, the current one is served.
    let epoch = 2 * kills.div_ceil(NODES) as i32;
    let (&partition, _) = before
        .iter()
        .find(|(_, leader)| **leader == 1)
        .expect("broker 1 leads a partition");
    assert_eq!(
        list_offsets_code(&brokers[0], partition, epoch - 1),
        74,
        "FENCED_LEADER_EPOCH"
    );
    assert_eq!(
        list_offsets_code(&brokers[0], partition, epoch + 1),
        75,
        "UNKNOWN_LEADER_EPOCH"
    );
    assert_eq!(list_offsets_code(&brokers[0], partition, epoch), 0);
}

/// The error code of ListOffsets (latest) for one partition of `TOPIC` sent
/// with `epoch` as the client's current leader epoch.
fn list_offsets_code(broker: &TestBroker, partition: i32, epoch: i32) -> i16 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse, TopicName};
    let mut wanted = ListOffsetsPartition::default();
    wanted.partition_index = partition;
    wanted.current_leader_epoch = epoch;
    wanted.timestamp = -1;
    let mut topic = ListOffsetsTopic::default();
    topic.name = TopicName(common::text(TOPIC));
    topic.partitions = vec![wanted];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    request.topics = vec![topic];
    let response: ListOffsetsResponse =
        common::WireClient::new(broker).call(ApiKey::ListOffsets, 7, &request);
    response.topics[0].partitions[0].error_code
}

/// `sluice cluster info` shows the three brokers with racks, the
/// controller and the quorum's voters; `sluice topic describe` shows each
/// partition's leader, replicas and ISR as Metadata does.
fn check_admin_output(broker: &TestBroker, layout: &Layout) {
    let info = cli(broker, &["cluster", "info"]);
    assert!(info.contains("Brokers:     3"), "{info}");
    for node in 1..=NODES {
        assert!(info.contains(&format!("rack-{node}")), "{info}");
    }
    assert!(info.contains("controller"), "{info}");
    assert!(info.contains("Quorum:      leader"), "{info}");
    let voters = info
        .lines()
        .skip_while(|line| !line.starts_with("VOTER"))
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .count();
    assert_eq!(voters, NODES, "{info}");
    let described = cli(broker, &["topic", "describe", TOPIC]);
    for (partition, leader, replicas, isr) in layout {
        let row = described
            .lines()
            .find(|line| line.split_whitespace().next() == Some(&partition.to_string()))
            .unwrap_or_else(|| panic!("partition {partition} missing:\n{described}"));
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(columns[1], leader.to_string(), "{row}");
        let list = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        assert_eq!(columns[2], list(replicas), "{row}");
        assert_eq!(columns[3], list(isr), "{row}");
    }
}

#[test]
fn admin_requests_and_consumer_groups_work_through_any_broker() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
    use rdkafka::consumer::{BaseConsumer, CommitMode};
    use rdkafka::{Message as _, Offset, TopicPartitionList};

    let brokers = start_cluster();
    let everyone: BTreeSet<i32> = (1..=NODES as i32).collect();
    for broker in &brokers {
        wait_until("every broker lists all three", METADATA_TIMEOUT, || {
            broker_ids(broker) == everyone
        });
    }
    // Sent straight to each broker rather than routed by a client to the
    // active controller: the others forward it.
    for (index, broker) in brokers.iter().enumerate() {
        let mut topic = CreatableTopic::default();
        topic.name = TopicName(common::text(&format!("direct-{index}")));
        topic.num_partitions = 2;
        topic.replication_factor = -1;
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![topic];
        request.timeout_ms = 10_000;
        let response: CreateTopicsResponse =
            common::WireClient::new(broker).call(ApiKey::CreateTopics, 7, &request);
        assert_eq!(
            response.topics[0].error_code,
            0,
            "CreateTopics through broker {}: {:?}",
            index + 1,
            response.topics[0].error_message
        );
    }

    assert_eq!(
        create(&brokers[0], TOPIC, PARTITIONS, 1),
        RDKafkaErrorCode::NoError
    );
    produce_records(&brokers[0]);
    let consumer: BaseConsumer = brokers[1].consumer(&[("group.id", "across-the-cluster")]);
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut read = 0;
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    while read < RECORDS {
        assert!(
            Instant::now() < deadline,
            "read {read} of {RECORDS} in the group"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                assert_eq!(message.topic(), TOPIC);
                next.insert(message.partition(), message.offset() + 1);
                read += 1;
            }
            Some(Err(error)) => panic!("consumer error: {error}"),
            None => {}
        }
    }
    let mut positions = TopicPartitionList::new();
    for (partition, offset) in &next {
        positions
            .add_partition_offset(TOPIC, *partition, Offset::Offset(*offset))
            .expect("position");
    }
    consumer
        .commit(&positions, CommitMode::Sync)
        .expect("commit");
    drop(consumer);

    // Another member, through another broker, finds the group's coordinator
    // and its committed offsets.
    let other: BaseConsumer = brokers[2].consumer(&[("group.id", "across-the-cluster")]);
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(TOPIC, partition);
    }
    let committed = other
        .committed_offsets(partitions, METADATA_TIMEOUT)
        .expect("committed offsets");
    let total: i64 = committed
        .elements()
        .iter()
        .map(|element| match element.offset() {
            Offset::Offset(offset) => offset,
            other => panic!("partition {} committed {other:?}", element.partition()),
        })
        .sum();
    assert_eq!(total, RECORDS as i64);
}

/// A broker that is not a voter (an observer) joins a running cluster:
/// every broker lists it, replicas are placed on it, it serves produce and
/// fetch for the partitions it leads and forwards admin requests, it keeps
/// following the metadata across a failover of the active controller, and
/// it is fenced when killed and registers again when restarted.
#[test]
fn a_broker_that_is_not_a_voter_follows_the_quorum() {
    const OBSERVER: i32 = NODES as i32 + 1;
    let mut brokers = start_cluster();
    let observer = common::start_observer(&brokers, OBSERVER, &[]);
    let everyone: BTreeSet<i32> = (1..=OBSERVER).collect();
    for broker in brokers.iter().chain(std::iter::once(&observer)) {
        wait_until("every broker lists all four", METADATA_TIMEOUT, || {
            broker_ids(broker) == everyone
        });
    }
    // Created through the observer: its request goes to the active
    // controller; with four brokers, RF=2 places replicas on it.
    assert_eq!(
        create(&observer, TOPIC, PARTITIONS, 2),
        RDKafkaErrorCode::NoError
    );
    wait_until(
        "the observer sees the topic placed",
        METADATA_TIMEOUT,
        || layout(&observer).len() == PARTITIONS as usize,
    );
    let placed = layout(&observer);
    assert_eq!(placed, layout(&brokers[0]), "the same metadata everywhere");
    let on_observer = placed
        .iter()
        .filter(|(_, _, replicas, _)| replicas.contains(&OBSERVER))
        .count();
    let led_by_observer = placed
        .iter()
        .filter(|(_, leader, _, _)| *leader == OBSERVER)
        .count();
    assert!(
        on_observer >= PARTITIONS as usize / 4 && led_by_observer > 0,
        "replicas spread over all four brokers: {placed:?}"
    );
    produce_records(&observer);
    let read = read_all(&observer, TOPIC, PARTITIONS);
    assert_eq!(read.values().map(Vec::len).sum::<usize>(), RECORDS);

    // kill -9 of the active controller: the observer follows the new one.
    let controller = common::quorum_leader(&brokers[0]);
    assert!((1..=NODES as i32).contains(&controller));
    brokers[controller as usize - 1].stop(Stop::Kill);
    wait_until(
        "the observer names a new controller",
        Duration::from_secs(20),
        || {
            let leader = common::quorum_leader(&observer);
            leader >= 0 && leader != controller
        },
    );
    assert_eq!(
        create(&observer, "after-failover", 2, 2),
        RDKafkaErrorCode::NoError,
        "admin requests through the observer reach the new controller"
    );
    brokers[controller as usize - 1].start_again();

    // kill -9 of the observer: fenced, then back after a restart.
    let mut observer = observer;
    observer.stop(Stop::Kill);
    let voters: BTreeSet<i32> = (1..=NODES as i32).collect();
    wait_until("the observer fenced", Duration::from_secs(20), || {
        broker_ids(&brokers[0]) == voters
    });
    observer.start_again();
    wait_until(
        "the observer registered again",
        Duration::from_secs(20),
        || broker_ids(&brokers[0]) == everyone && broker_ids(&observer) == everyone,
    );
    let read = read_all(&observer, TOPIC, PARTITIONS);
    assert_eq!(
        read.values().map(Vec::len).sum::<usize>(),
        RECORDS,
        "every record is still there after the restarts"
    );
}

/// How long each thread of the creation test keeps creating topics after
/// the kill at most; a new controller takes about a second.
const CREATE_AFTER_KILL_MAX: Duration = Duration::from_secs(30);
/// Creations (over both threads) before the kill, and by each thread after
/// it: enough to show the writes went on under the new controller.
const CREATED_BEFORE_KILL: usize = 20;
const CREATED_AFTER_KILL: usize = 10;
/// Pause between one thread's creations, so the controller dies while
/// requests are in flight rather than between two bursts.
const CREATE_PAUSE: Duration = Duration::from_millis(10);
/// The broker's wait for a forwarded or quorum write, as a client sets it.
const CREATE_TIMEOUT_MS: i32 = 5_000;
/// Kafka error codes a CreateTopics may fail with while the controller
/// changes: the client tries again (REQUEST_TIMED_OUT, NOT_CONTROLLER).
const RETRIABLE_CREATE_CODES: [i16; 2] = [7, 41];

/// What one creation thread saw: each topic's name, whether the controller
/// had been killed before it was sent, when the answer came, and the
/// outcome (`Ok` or the error).
type Creations = Vec<(String, bool, Instant, Result<(), String>)>;

/// Every topic of the cluster as one broker lists it: name → (topic id,
/// each partition's replicas).
type TopicImage = BTreeMap<String, (String, Vec<Vec<i32>>)>;

fn topic_image(broker: &TestBroker) -> Result<TopicImage, String> {
    use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
    // A null topic list asks for every topic (an empty one for none).
    let mut request = MetadataRequest::default();
    request.topics = None;
    let response: MetadataResponse =
        common::WireClient::new(broker).call(ApiKey::Metadata, 12, &request);
    let mut image = BTreeMap::new();
    for topic in &response.topics {
        if topic.error_code != 0 {
            return Err(format!(
                "topic {:?}: error {}",
                topic.name, topic.error_code
            ));
        }
        let name = topic
            .name
            .as_ref()
            .map(|name| name.0.to_string())
            .ok_or("a topic without a name")?;
        let mut partitions: Vec<(i32, Vec<i32>)> = topic
            .partitions
            .iter()
            .map(|partition| {
                (
                    partition.partition_index,
                    partition.replica_nodes.iter().map(|id| id.0).collect(),
                )
            })
            .collect();
        partitions.sort();
        image.insert(
            name,
            (
                topic.topic_id.to_string(),
                partitions
                    .into_iter()
                    .map(|(_, replicas)| replicas)
                    .collect(),
            ),
        );
    }
    Ok(image)
}

/// Creates topics `<prefix>-<n>` (1 partition × 2 replicas, so that two
/// brokers can hold them) one per request until `stop`, noting for each
/// whether `killed` was already set when it was sent.
fn create_until(
    stop: &std::sync::atomic::AtomicBool,
    killed: &std::sync::atomic::AtomicBool,
    created: &std::sync::atomic::AtomicUsize,
    mut create: impl FnMut(&str) -> Result<(), String>,
    prefix: &str,
) -> Creations {
    use std::sync::atomic::Ordering;
    let mut seen = Vec::new();
    for index in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let name = format!("{prefix}-{index}");
        let after_kill = killed.load(Ordering::SeqCst);
        let outcome = create(&name);
        if outcome.is_ok() {
            created.fetch_add(1, Ordering::SeqCst);
        }
        seen.push((name, after_kill, Instant::now(), outcome));
        std::thread::sleep(CREATE_PAUSE);
    }
    seen
}

/// kill -9 of the active controller while topics are being created, one per
/// request, by two clients at once: librdkafka's admin client (which sends
/// CreateTopics to the controller it learned from Metadata, and follows a
/// new one) and a raw connection to a broker that stays up (which forwards
/// each request to the controller). Every creation succeeds or fails with a
/// retriable error, creations succeed again under the new controller, and
/// once the killed broker is back all three brokers list the same topics
/// with the same ids and replicas, including every topic whose creation
/// succeeded.
#[test]
fn the_active_controller_killed_while_topics_are_created() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let mut brokers = start_cluster();
    let everyone: BTreeSet<i32> = (1..=NODES as i32).collect();
    for broker in &brokers {
        wait_until("every broker lists all three", METADATA_TIMEOUT, || {
            broker_ids(broker) == everyone
        });
    }
    let mut controller = -1;
    wait_until("an active controller", METADATA_TIMEOUT, || {
        controller = common::quorum_leader(&brokers[0]);
        controller > 0
    });
    let survivor = controller as usize % NODES;

    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicUsize::new(0));
    let admin_thread = {
        let (stop, killed, created) = (stop.clone(), killed.clone(), created.clone());
        let mut config = brokers[0].client_config();
        config.set("bootstrap.servers", common::cluster_bootstrap(&brokers));
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
            config.create().expect("admin client");
        std::thread::spawn(move || {
            let options = rdkafka::admin::AdminOptions::new()
                .operation_timeout(Some(Duration::from_millis(CREATE_TIMEOUT_MS as u64)))
                .request_timeout(Some(Duration::from_millis(2 * CREATE_TIMEOUT_MS as u64)));
            let create = |name: &str| {
                let topic = NewTopic::new(name, 1, TopicReplication::Fixed(2));
                match futures_lite::future::block_on(admin.create_topics([&topic], &options)) {
                    Ok(results) => match &results[..] {
                        [Ok(_)] => Ok(()),
                        [Err((_, code))] => Err(format!("{code:?}")),
                        other => Err(format!("{} results", other.len())),
                    },
                    Err(error) => Err(format!("request: {error}")),
                }
            };
            create_until(&stop, &killed, &created, create, "admin")
        })
    };
    let wire_thread = {
        let (stop, killed, created) = (stop.clone(), killed.clone(), created.clone());
        let mut client = common::WireClient::new(&brokers[survivor]);
        std::thread::spawn(move || {
            let create = |name: &str| {
                let mut topic = CreatableTopic::default();
                topic.name = TopicName(common::text(name));
                topic.num_partitions = 1;
                topic.replication_factor = 2;
                let mut request = CreateTopicsRequest::default();
                request.topics = vec![topic];
                request.timeout_ms = CREATE_TIMEOUT_MS;
                let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request);
                match response.topics[0].error_code {
                    0 => Ok(()),
                    code => Err(format!("code {code}")),
                }
            };
            create_until(&stop, &killed, &created, create, "wire")
        })
    };

    wait_until(
        "topics created before the kill",
        common::CLIENT_TIMEOUT,
        || created.load(Ordering::SeqCst) >= CREATED_BEFORE_KILL,
    );
    killed.store(true, Ordering::SeqCst);
    let killed_at = Instant::now();
    brokers[controller as usize - 1].stop(Stop::Kill);
    let created_at_kill = created.load(Ordering::SeqCst);
    wait_until(
        "creations under the new controller",
        CREATE_AFTER_KILL_MAX,
        || created.load(Ordering::SeqCst) >= created_at_kill + 2 * CREATED_AFTER_KILL,
    );
    stop.store(true, Ordering::SeqCst);
    let admin_seen = admin_thread.join().expect("admin thread");
    let wire_seen = wire_thread.join().expect("wire thread");
    let new_controller = common::quorum_leader(&brokers[survivor]);
    assert!(
        new_controller > 0 && new_controller != controller,
        "a new controller: {new_controller} (killed {controller})"
    );

    // Every outcome is a success or an error a client retries.
    for (name, _, _, outcome) in &admin_seen {
        if let Err(error) = outcome {
            let retriable = ["NotController", "RequestTimedOut", "OperationTimedOut"]
                .iter()
                .any(|code| error.contains(code))
                || error.starts_with("request:");
            assert!(retriable, "admin creation of {name}: {error}");
        }
    }
    for (name, _, _, outcome) in &wire_seen {
        if let Err(error) = outcome {
            let retriable = RETRIABLE_CREATE_CODES
                .iter()
                .any(|code| error == &format!("code {code}"));
            assert!(retriable, "forwarded creation of {name}: {error}");
        }
    }
    let mut first_after_kill = Vec::new();
    for (what, seen) in [("admin", &admin_seen), ("forwarded", &wire_seen)] {
        let first = seen
            .iter()
            .filter(|(_, after_kill, _, outcome)| *after_kill && outcome.is_ok())
            .map(|(_, _, done, _)| done.duration_since(killed_at).as_millis())
            .min();
        let Some(first) = first else {
            panic!("no {what} creation succeeded after the kill: {seen:?}");
        };
        first_after_kill.push(first);
    }

    // The killed broker comes back, and all three converge on one image
    // that holds every topic whose creation succeeded.
    brokers[controller as usize - 1].start_again();
    let images = common::wait_for(
        "the same topics on every broker",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let images = brokers
                .iter()
                .map(topic_image)
                .collect::<Result<Vec<_>, String>>()?;
            if images.windows(2).all(|pair| pair[0] == pair[1]) {
                Ok(images)
            } else {
                let counts: Vec<usize> = images.iter().map(BTreeMap::len).collect();
                Err(format!("topic counts {counts:?}"))
            }
        },
    );
    let image = &images[0];
    // Each error seen, how often, and how many of those topics exist all
    // the same (the write committed but its answer was lost with the
    // controller).
    let mut failed: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (name, _, _, outcome) in admin_seen.iter().chain(&wire_seen) {
        match outcome {
            Ok(()) => {
                let (_, partitions) = image
                    .get(name)
                    .unwrap_or_else(|| panic!("{name} was created but is gone"));
                assert_eq!(partitions.len(), 1, "{name}");
                assert_eq!(partitions[0].len(), 2, "{name}: two replicas");
            }
            Err(error) => {
                let entry = failed.entry(error.clone()).or_default();
                entry.0 += 1;
                entry.1 += usize::from(image.contains_key(name.as_str()));
            }
        }
    }
    // Only topics the clients asked for exist, each once.
    for name in image.keys() {
        assert!(
            name.starts_with("admin-") || name.starts_with("wire-") || name.starts_with("__"),
            "unexpected topic {name}"
        );
    }
    eprintln!(
        "controller {controller} killed; {} admin and {} forwarded creations; failed \
         (count, of which created after all): {failed:?}; first success after the kill (admin, forwarded): {first_after_kill:?} ms \
         under controller {new_controller}; {} topics on every broker",
        admin_seen.len(),
        wire_seen.len(),
        image.len()
    );
}

const NOT_CONTROLLER: i16 = 41;
const REQUEST_TIMED_OUT: i16 = 7;

/// One CreateTopics (v5) of a 1-partition, 1-replica topic sent on the wire
/// to `broker`, answered with the topic's error code.
fn raw_create_topic_code(broker: &TestBroker, name: &str) -> i16 {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(common::text(name));
    topic.num_partitions = 1;
    topic.replication_factor = 1;
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 5_000;
    let response: CreateTopicsResponse =
        common::WireClient::new(broker).call(ApiKey::CreateTopics, 5, &request);
    response
        .topics
        .first()
        .map(|topic| topic.error_code)
        .expect("an answer for the topic")
}

/// The longest an admin write may go unanswered while the quorum has no
/// majority: the controller's own write timeout (30 s) plus librdkafka's
/// retries within its 30 s request timeout, with room for a loaded machine.
const NO_QUORUM_ANSWER_BOUND: Duration = Duration::from_secs(75);
/// How long the lone survivor is watched for electing itself: many election
/// timeouts (0.5-1 s each).
const LONE_VOTER_WATCH: Duration = Duration::from_secs(6);
const LONE_VOTER_POLL: Duration = Duration::from_millis(200);
/// For the two killed voters to be back and the quorum to have a leader.
const QUORUM_BACK_TIMEOUT: Duration = Duration::from_secs(60);

/// A quorum that has lost its majority: two of the three voters killed -9.
/// The survivor never leads the metadata quorum alone, and an admin write
/// sent to it gets a retriable error instead of hanging; once the two are
/// back, a leader is elected and admin writes succeed again.
#[test]
fn a_quorum_without_its_majority_takes_no_admin_writes_until_it_is_back() {
    let mut brokers = start_cluster();
    assert_eq!(
        create(&brokers[0], "before-outage", 1, 3),
        RDKafkaErrorCode::NoError
    );
    let leader = common::quorum_leader(&brokers[0]);
    // A voter that is not the quorum leader survives; the leader and the
    // other voter are killed.
    let survivor = (0..NODES)
        .find(|index| *index as i32 + 1 != leader)
        .expect("a voter other than the leader");
    let survivor_id = survivor as i32 + 1;
    let killed: Vec<usize> = (0..NODES).filter(|index| *index != survivor).collect();
    for index in &killed {
        brokers[*index].stop(Stop::Kill);
    }

    let watch_until = Instant::now() + LONE_VOTER_WATCH;
    while Instant::now() < watch_until {
        let named = common::quorum_leader(&brokers[survivor]);
        assert_ne!(
            named, survivor_id,
            "broker {survivor_id} made itself the quorum leader without a majority"
        );
        std::thread::sleep(LONE_VOTER_POLL);
    }

    let sent = Instant::now();
    let admin = brokers[survivor].admin();
    let topic = NewTopic::new("during-outage", 1, TopicReplication::Fixed(1));
    // librdkafka may give up on the whole request (its own timeout) or
    // pass on the broker's error for the topic: both are answers.
    let code = match futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
    {
        Ok(results) => match &results[0] {
            Ok(_) => RDKafkaErrorCode::NoError,
            Err((_, code)) => *code,
        },
        Err(rdkafka::error::KafkaError::AdminOp(code)) => code,
        Err(other) => panic!("CreateTopics without a quorum failed oddly: {other}"),
    };
    let waited = sent.elapsed();
    assert!(
        matches!(
            code,
            RDKafkaErrorCode::NotController
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::OperationTimedOut
        ),
        "CreateTopics without a quorum answered {code:?}, not a retriable error"
    );
    assert!(
        waited < NO_QUORUM_ANSWER_BOUND,
        "CreateTopics without a quorum took {waited:?}"
    );
    eprintln!("without a quorum, librdkafka's CreateTopics ended {code:?} after {waited:?}");
    // The broker's own answer, without librdkafka's retries in between.
    let sent = Instant::now();
    let raw = raw_create_topic_code(&brokers[survivor], "during-outage-raw");
    let waited = sent.elapsed();
    assert!(
        raw == NOT_CONTROLLER || raw == REQUEST_TIMED_OUT,
        "CreateTopics without a quorum answered error code {raw}"
    );
    assert!(
        waited < NO_QUORUM_ANSWER_BOUND,
        "CreateTopics without a quorum took {waited:?}"
    );
    eprintln!(
        "without a quorum, the broker answered CreateTopics with code {raw} after {waited:?}"
    );

    for index in &killed {
        brokers[*index].start_again();
    }
    wait_until("a quorum leader again", QUORUM_BACK_TIMEOUT, || {
        common::quorum_leader(&brokers[survivor]) > 0
    });
    wait_until("CreateTopics succeeds again", QUORUM_BACK_TIMEOUT, || {
        create(&brokers[survivor], "after-outage", 1, 3) == RDKafkaErrorCode::NoError
    });
    let names: BTreeSet<String> = topics_json(&brokers[survivor])
        .iter()
        .filter_map(|topic| topic["name"].as_str().map(str::to_string))
        .collect();
    assert!(
        names.contains("before-outage") && names.contains("after-outage"),
        "{names:?}"
    );
    assert!(
        !names.contains("during-outage") && !names.contains("during-outage-raw"),
        "a topic created without a quorum: {names:?}"
    );
}

/// A controller port still held when the broker starts (as this node's
/// previous process holds it for a moment after exiting, until the kernel
/// has torn down its io_uring rings) is waited for, as the client port is:
/// the broker starts once the port is free, and serves.
#[test]
fn a_controller_port_held_for_a_moment_is_waited_for() {
    const HELD: Duration = Duration::from_secs(2);
    /// Ports tried for the one held: a port found free can be taken by
    /// another process before this test binds it again (seen once in CI).
    const PORT_TRIES: usize = 5;
    let (address, holder) = (0..PORT_TRIES)
        .find_map(|_| {
            let address = format!("127.0.0.1:{}", free_ports(1)[0]);
            let holder = std::net::TcpListener::bind(&address).ok()?;
            Some((address, holder))
        })
        .expect("holding a controller port");
    let release = std::thread::spawn(move || {
        std::thread::sleep(HELD);
        drop(holder);
    });
    let voters = format!("1@{address}");
    let started = Instant::now();
    let broker = TestBroker::start_with(&[
        "--node-id",
        "1",
        "--controller-listen",
        &address,
        "--controller-voters",
        &voters,
    ]);
    release.join().expect("the holder thread");
    assert!(
        started.elapsed() >= HELD,
        "the broker started while its controller port was held"
    );
    broker.create_topic("after-a-held-port", 1);
}
