//! Three `sluice` processes form one cluster over their controller ports:
//! a three-voter metadata quorum. librdkafka sees three brokers with their
//! racks, topics are placed over all three with leaders balanced, records
//! produced through one broker reach each partition's leader and are read
//! back through another, and the metadata survives killing the whole
//! cluster with kill -9. A killed broker is fenced, its partitions move to
//! another replica of their ISR, and once it is back in sync the controller
//! gives it its preferred leaderships back.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{
    admin_options, produce_all, read_all, start_cluster_with, wait_until, Record, Stop, TestBroker,
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
    // once caught up, and every leader is an in-sync replica.
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
        76,
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

/// `sluice ARGS --bootstrap BROKER`: its standard output; it must succeed.
fn cli(broker: &TestBroker, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--bootstrap", &broker.bootstrap()])
        .output()
        .expect("running sluice");
    assert!(
        output.status.success(),
        "sluice {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
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
