//! Leader elections an operator asks for (ElectLeaders), driven by the real
//! `sluice` CLI against a real three-broker cluster whose automatic leader
//! rebalance is off, checked with librdkafka's metadata.
//!
//! Preferred: a broker that is the preferred leader of some partitions is
//! killed with kill -9; its partitions move to other replicas; restarted, it
//! catches up and rejoins every ISR, yet leads nothing (no automatic
//! rebalance). `sluice cluster elect-leaders` gives it its partitions back,
//! as every broker's metadata shows, and an acks=all producer goes on
//! writing. A second run finds nothing to do (ELECTION_NOT_NEEDED, exit 0);
//! unknown topics and partitions are reported as UNKNOWN_TOPIC_OR_PARTITION
//! (exit 1). On the wire, at every version, through a broker that is not the
//! active controller (so the request is forwarded), an unknown election type
//! is INVALID_REQUEST.
//!
//! Unclean: a two-replica partition loses its follower, then, with only its
//! leader holding the newest records, its leader too. When the follower
//! returns, the partition stays offline: the preferred election refuses
//! (PREFERRED_LEADER_NOT_AVAILABLE), the unclean one makes the follower the
//! leader, which serves what it has and takes new writes; the records only
//! the lost leader held are gone, as KIP-460 warns.

mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::thread;
use std::time::Duration;

use common::{
    admin_options, indexed_value, produce_all, read_all, start_cluster_with, wait_for, wait_until,
    Record, Stop, TestBroker, WireClient,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{ApiKey, ElectLeadersRequest, ElectLeadersResponse};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use serde_json::Value;

const NODES: usize = 3;
/// The automatic preferred-leader rebalance is off: elections are the
/// operator's.
const CLUSTER_ARGS: &[&str] = &["--leader-imbalance-check-interval-ms", "0"];
const TOPIC: &str = "elect";
const PARTITIONS: i32 = 6;
/// The two-replica topic of the unclean election.
const FRAGILE: &str = "fragile";
/// Records written at each stage.
const RECORDS: usize = 200;
const VALUE_BYTES: usize = 100;
/// Bound for metadata to show a change, and for a broker to catch up.
const METADATA_TIMEOUT: Duration = Duration::from_secs(60);
const METADATA_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long leadership must stay away from the restarted broker to show
/// that nothing but the operator moves it back: many rounds of the
/// controller's liveness check (100 ms), which would run the rebalance.
const NO_REBALANCE_WAIT: Duration = Duration::from_secs(3);
/// A topic no test creates.
const ABSENT_TOPIC: &str = "no-such-topic";
/// A partition index past the test topic's partitions.
const ABSENT_PARTITION: i32 = 99;
/// Kafka's error names and codes checked here.
const ELECTION_NOT_NEEDED: &str = "ELECTION_NOT_NEEDED";
const UNKNOWN_TOPIC_OR_PARTITION: &str = "UNKNOWN_TOPIC_OR_PARTITION";
const PREFERRED_LEADER_NOT_AVAILABLE: &str = "PREFERRED_LEADER_NOT_AVAILABLE";
const CODE_UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const CODE_INVALID_REQUEST: i16 = 42;
const CODE_ELECTION_NOT_NEEDED: i16 = 84;
/// An election type Kafka does not define.
const UNKNOWN_ELECTION_TYPE: i8 = 9;
/// ElectLeaders versions Sluice serves; the top-level error code is v1+.
const VERSIONS: std::ops::RangeInclusive<i16> = 0..=2;
const TOP_LEVEL_ERROR_VERSION_MIN: i16 = 1;

/// `sluice ARGS --bootstrap BROKER`.
fn cli(broker: &TestBroker, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--bootstrap", &broker.bootstrap()])
        .output()
        .expect("running sluice")
}

/// The standard output of a CLI run that must succeed.
fn cli_ok(broker: &TestBroker, args: &[&str]) -> String {
    let output = cli(broker, args);
    assert!(
        output.status.success(),
        "sluice {args:?} failed: stdout {} stderr {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// (stdout, stderr) of a CLI run that must fail with status 1.
fn cli_refused(broker: &TestBroker, args: &[&str]) -> (String, String) {
    let output = cli(broker, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(1),
        "sluice {args:?}: stdout {stdout} stderr {stderr}"
    );
    (stdout, stderr)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

/// (partition, leader, replicas, isr) of every partition of `topic`, as
/// one broker tells librdkafka.
type Layout = Vec<(i32, i32, Vec<i32>, Vec<i32>)>;

fn layout(broker: &TestBroker, topic: &str) -> Result<Layout, String> {
    let consumer = broker.consumer(&[]);
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_POLL_INTERVAL * 20)
        .map_err(|error| error.to_string())?;
    let found = metadata
        .topics()
        .iter()
        .find(|found| found.name() == topic)
        .ok_or("no such topic")?;
    let mut layout: Layout = found
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
    Ok(layout)
}

/// Waits until `broker` shows a layout of `topic` that `wanted` accepts.
fn wait_for_layout(
    broker: &TestBroker,
    topic: &str,
    what: &str,
    wanted: impl Fn(&Layout) -> bool,
) -> Layout {
    wait_for(what, METADATA_TIMEOUT, METADATA_POLL_INTERVAL, || {
        let seen = layout(broker, topic)?;
        if wanted(&seen) {
            Ok(seen)
        } else {
            Err(format!("{seen:?}"))
        }
    })
}

/// Every partition led by its first (preferred) replica.
fn preferred_lead(layout: &Layout) -> bool {
    layout
        .iter()
        .all(|(_, leader, replicas, _)| replicas.first() == Some(leader))
}

fn broker_ids(broker: &TestBroker) -> BTreeSet<i32> {
    let consumer = broker.consumer(&[]);
    match consumer.fetch_metadata(None, METADATA_POLL_INTERVAL * 20) {
        Ok(metadata) => metadata.brokers().iter().map(|node| node.id()).collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// The broker with node id `id` (index `id - 1`, as the cluster starts them).
fn index_of(id: i32) -> usize {
    usize::try_from(id - 1).expect("node ids start at 1")
}

fn start_cluster() -> Vec<TestBroker> {
    let brokers = start_cluster_with(NODES, CLUSTER_ARGS);
    let everyone: BTreeSet<i32> = (1..=NODES as i32).collect();
    for broker in &brokers {
        wait_until("every broker lists all three", METADATA_TIMEOUT, || {
            broker_ids(broker) == everyone
        });
    }
    brokers
}

fn create(broker: &TestBroker, topic: NewTopic<'_>) {
    let admin = broker.admin();
    let results = futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
        .expect("CreateTopics answered");
    assert!(results[0].is_ok(), "creating a topic: {:?}", results[0]);
}

/// Records `from..from + count`, spread over `partitions`.
fn records(from: usize, count: usize, partitions: i32) -> Vec<Record> {
    (from..from + count)
        .map(|index| {
            let partition = i32::try_from(index).expect("a small index") % partitions;
            Record::with_value(partition, indexed_value(index, VALUE_BYTES))
        })
        .collect()
}

/// The indexes of every record of `topic`, partition by partition.
fn read_indexes(broker: &TestBroker, topic: &str, partitions: i32) -> Vec<usize> {
    read_all(broker, topic, partitions)
        .into_values()
        .flatten()
        .map(|record| record.value_index())
        .collect()
}

/// One result row of the CLI's table: the line of `topic`'s `partition`.
fn row<'a>(text: &'a str, topic: &str, partition: i32) -> &'a str {
    text.lines()
        .find(|line| {
            let mut columns = line.split_whitespace();
            columns.next() == Some(topic) && columns.next() == Some(&partition.to_string())
        })
        .unwrap_or_else(|| panic!("no row for {topic}-{partition}:\n{text}"))
}

/// A topic's partitions with their error codes, as ElectLeaders answers.
type TopicCodes = (String, Vec<(i32, i16)>);

/// ElectLeaders straight to `broker` at `version`: each named topic's
/// partitions with their error codes, and the top-level error code.
fn elect_on_wire(
    broker: &TestBroker,
    version: i16,
    election_type: i8,
    topics: &[(&str, &[i32])],
) -> (i16, Vec<TopicCodes>) {
    let mut request = ElectLeadersRequest::default();
    request.election_type = election_type;
    request.topic_partitions = Some(
        topics
            .iter()
            .map(|(name, partitions)| {
                let mut topic = TopicPartitions::default();
                topic.topic = common::text(name).into();
                topic.partitions = partitions.to_vec();
                topic
            })
            .collect(),
    );
    let response: ElectLeadersResponse =
        WireClient::new(broker).call(ApiKey::ElectLeaders, version, &request);
    let results = response
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
        .collect();
    (response.error_code, results)
}

#[test]
fn an_operator_gives_leadership_back_to_the_preferred_replicas() {
    let mut brokers = start_cluster();
    create(
        &brokers[0],
        NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(NODES as i32)),
    );
    let placed = wait_for_layout(&brokers[0], TOPIC, "the new topic", |layout| {
        layout.len() == PARTITIONS as usize
            && preferred_lead(layout)
            && layout.iter().all(|(_, _, _, isr)| isr.len() == NODES)
    });
    produce_all(
        &brokers[0],
        TOPIC,
        &[("acks", "all")],
        &records(0, RECORDS, PARTITIONS),
    );

    // The victim is not the active controller, so that its kill moves
    // leaderships without a controller election as well.
    let controller = common::quorum_leader(&brokers[0]);
    let victim = (1..=NODES as i32)
        .find(|id| *id != controller)
        .expect("a broker that is not the controller");
    let preferred_by_victim: Vec<i32> = placed
        .iter()
        .filter(|(_, _, replicas, _)| replicas.first() == Some(&victim))
        .map(|(partition, _, _, _)| *partition)
        .collect();
    assert!(
        !preferred_by_victim.is_empty(),
        "broker {victim} is the preferred leader of some partition: {placed:?}"
    );
    // A survivor, whose metadata shows the moves.
    let observer = (index_of(victim) + 1) % NODES;

    brokers[index_of(victim)].stop(Stop::Kill);
    wait_for_layout(
        &brokers[observer],
        TOPIC,
        "leadership moved off the killed broker",
        |layout| {
            layout.iter().all(|(_, leader, _, isr)| {
                *leader >= 0 && *leader != victim && !isr.contains(&victim)
            })
        },
    );
    brokers[index_of(victim)].start_again();
    wait_for_layout(
        &brokers[observer],
        TOPIC,
        "the restarted broker back in every ISR",
        |layout| layout.iter().all(|(_, _, _, isr)| isr.contains(&victim)),
    );
    // Nothing but the operator gives it its leaderships back.
    thread::sleep(NO_REBALANCE_WAIT);
    let away = layout(&brokers[observer], TOPIC).expect("metadata");
    for (partition, leader, _, _) in &away {
        if preferred_by_victim.contains(partition) {
            assert_ne!(
                *leader, victim,
                "partition {partition} went back by itself: {away:?}"
            );
        }
    }

    let answer = json(&cli_ok(
        &brokers[observer],
        &["cluster", "elect-leaders", "--json"],
    ));
    assert_eq!(answer["election_type"], "preferred", "{answer}");
    assert_eq!(answer["failed"], 0, "{answer}");
    let results = answer["results"].as_array().expect("results");
    let mine: Vec<&Value> = results
        .iter()
        .filter(|result| result["topic"] == TOPIC)
        .collect();
    assert_eq!(mine.len(), PARTITIONS as usize, "{answer}");
    for result in mine {
        let partition = result["partition"].as_i64().expect("a partition") as i32;
        if preferred_by_victim.contains(&partition) {
            assert_eq!(result["elected"], true, "{result}");
            assert_eq!(result["error"], Value::Null, "{result}");
        } else {
            assert_eq!(result["elected"], false, "{result}");
            assert_eq!(result["error"]["name"], ELECTION_NOT_NEEDED, "{result}");
        }
    }
    for broker in &brokers {
        wait_for_layout(
            broker,
            TOPIC,
            "every partition led by its preferred replica",
            preferred_lead,
        );
    }
    produce_all(
        &brokers[observer],
        TOPIC,
        &[("acks", "all")],
        &records(RECORDS, RECORDS, PARTITIONS),
    );
    let mut read = read_indexes(&brokers[index_of(victim)], TOPIC, PARTITIONS);
    read.sort_unstable();
    assert_eq!(read, (0..2 * RECORDS).collect::<Vec<usize>>());

    // Nothing left to do: every partition needs no election, and that is
    // not a failure.
    let again = cli_ok(
        &brokers[observer],
        &["cluster", "elect-leaders", "--topic", TOPIC],
    );
    for partition in 0..PARTITIONS {
        assert!(
            row(&again, TOPIC, partition).contains(ELECTION_NOT_NEEDED),
            "{again}"
        );
    }
    assert!(
        again.contains(&format!(
            "0 leader(s) elected, {PARTITIONS} partition(s) needed none, 0 failed"
        )),
        "{again}"
    );

    // Unknown topics and partitions are errors, reported per partition.
    let (stdout, stderr) = cli_refused(
        &brokers[observer],
        &[
            "cluster",
            "elect-leaders",
            "--topic",
            ABSENT_TOPIC,
            "--partition",
            "0",
        ],
    );
    assert!(
        row(&stdout, ABSENT_TOPIC, 0).contains(UNKNOWN_TOPIC_OR_PARTITION),
        "{stdout}"
    );
    assert!(stderr.contains(UNKNOWN_TOPIC_OR_PARTITION), "{stderr}");
    let absent_partition = ABSENT_PARTITION.to_string();
    let (stdout, _) = cli_refused(
        &brokers[observer],
        &[
            "cluster",
            "elect-leaders",
            "--topic",
            TOPIC,
            "--partition",
            &absent_partition,
        ],
    );
    assert!(
        row(&stdout, TOPIC, ABSENT_PARTITION).contains(UNKNOWN_TOPIC_OR_PARTITION),
        "{stdout}"
    );
    let (_, stderr) = cli_refused(
        &brokers[observer],
        &["cluster", "elect-leaders", "--topic", ABSENT_TOPIC],
    );
    assert!(stderr.contains(UNKNOWN_TOPIC_OR_PARTITION), "{stderr}");

    // The wire, through a broker that forwards to the active controller.
    let controller = common::quorum_leader(&brokers[observer]);
    let forwarder = (1..=NODES as i32)
        .find(|id| *id != controller)
        .expect("a broker that is not the controller");
    let forwarder = &brokers[index_of(forwarder)];
    for version in VERSIONS {
        let (top, results) = elect_on_wire(
            forwarder,
            version,
            0,
            &[(TOPIC, &[0]), (ABSENT_TOPIC, &[0])],
        );
        assert_eq!(top, 0, "v{version}");
        assert_eq!(
            results,
            vec![
                (TOPIC.to_string(), vec![(0, CODE_ELECTION_NOT_NEEDED)]),
                (
                    ABSENT_TOPIC.to_string(),
                    vec![(0, CODE_UNKNOWN_TOPIC_OR_PARTITION)]
                ),
            ],
            "v{version}"
        );
        if version >= TOP_LEVEL_ERROR_VERSION_MIN {
            let (top, results) = elect_on_wire(
                forwarder,
                version,
                UNKNOWN_ELECTION_TYPE,
                &[(TOPIC, &[0, 1])],
            );
            assert_eq!(top, CODE_INVALID_REQUEST, "v{version}");
            assert_eq!(
                results,
                vec![(
                    TOPIC.to_string(),
                    vec![(0, CODE_INVALID_REQUEST), (1, CODE_INVALID_REQUEST)]
                )],
                "v{version}"
            );
        }
    }
}

#[test]
fn an_unclean_election_revives_a_partition_whose_isr_is_gone() {
    let mut brokers = start_cluster();
    // The bystander stays up throughout; the other two hold the replicas.
    let bystander = common::quorum_leader(&brokers[0]);
    let mut holders = (1..=NODES as i32).filter(|id| *id != bystander);
    let (leader, follower) = match (holders.next(), holders.next()) {
        (Some(leader), Some(follower)) => (leader, follower),
        _ => panic!("three brokers, one controller"),
    };
    let watcher = index_of(bystander);
    let assignment: &[&[i32]] = &[&[leader, follower]];
    create(
        &brokers[0],
        NewTopic::new(FRAGILE, 1, TopicReplication::Variable(assignment)),
    );
    wait_for_layout(&brokers[watcher], FRAGILE, "the new topic", |layout| {
        layout == &vec![(0, leader, vec![leader, follower], vec![leader, follower])]
    });
    produce_all(
        &brokers[watcher],
        FRAGILE,
        &[("acks", "all")],
        &records(0, RECORDS, 1),
    );

    // The follower goes: the leader alone is in sync and takes records
    // that only it holds.
    brokers[index_of(follower)].stop(Stop::Kill);
    wait_for_layout(
        &brokers[watcher],
        FRAGILE,
        "the follower out of the ISR",
        |layout| layout == &vec![(0, leader, vec![leader, follower], vec![leader])],
    );
    produce_all(
        &brokers[watcher],
        FRAGILE,
        &[("acks", "all")],
        &records(RECORDS, RECORDS, 1),
    );
    // Then the leader goes too; the follower returns (with the bystander a
    // majority of the quorum again), and the partition has no live ISR
    // member.
    brokers[index_of(leader)].stop(Stop::Kill);
    brokers[index_of(follower)].start_again();
    let offline = wait_for_layout(
        &brokers[watcher],
        FRAGILE,
        "the partition offline",
        |layout| layout.first().is_some_and(|(_, leader, _, _)| *leader < 0),
    );
    assert_eq!(
        offline[0].3,
        vec![leader],
        "the lost leader stays on record"
    );

    let (stdout, _) = cli_refused(
        &brokers[watcher],
        &["cluster", "elect-leaders", "--topic", FRAGILE],
    );
    assert!(
        row(&stdout, FRAGILE, 0).contains(PREFERRED_LEADER_NOT_AVAILABLE),
        "{stdout}"
    );
    let answer = json(&cli_ok(
        &brokers[watcher],
        &[
            "cluster",
            "elect-leaders",
            "--type",
            "unclean",
            "--topic",
            FRAGILE,
            "--json",
        ],
    ));
    assert_eq!(answer["election_type"], "unclean", "{answer}");
    assert_eq!(answer["results"][0]["elected"], true, "{answer}");
    wait_for_layout(
        &brokers[watcher],
        FRAGILE,
        "the follower leading alone",
        |layout| layout == &vec![(0, follower, vec![leader, follower], vec![follower])],
    );
    let again = cli_ok(
        &brokers[watcher],
        &[
            "cluster",
            "elect-leaders",
            "--type",
            "unclean",
            "--topic",
            FRAGILE,
        ],
    );
    assert!(
        row(&again, FRAGILE, 0).contains(ELECTION_NOT_NEEDED),
        "{again}"
    );

    // It takes new writes; what only the lost leader held is gone.
    produce_all(
        &brokers[watcher],
        FRAGILE,
        &[("acks", "all")],
        &records(2 * RECORDS, RECORDS, 1),
    );
    let read = read_indexes(&brokers[watcher], FRAGILE, 1);
    let expected: Vec<usize> = (0..RECORDS).chain(2 * RECORDS..3 * RECORDS).collect();
    assert_eq!(read, expected);
}
