//! Partition reassignment driven by the real `sluice` CLI against a real
//! three-broker cluster: a single-partition topic with two replicas, written
//! by an idempotent acks=all librdkafka producer before and while
//! `sluice topic reassign --wait` moves it onto the broker that held no
//! replica of it. Afterwards every broker's metadata and
//! `sluice topic describe` show the new replicas, and with the one old
//! replica that stays stopped, the new replicas alone serve every record,
//! in the order sent. Refusals come back as clear errors with exit status 1:
//! cancelling when nothing is in progress, and moving onto a broker that
//! does not exist. `sluice cluster rebalance` spreads a topic squeezed onto
//! two brokers over all three, replicas and preferred leaders alike, and
//! then has nothing more to do.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    admin_options, indexed_value, read_all, start_cluster_with, wait_for, wait_until, Record, Stop,
    TestBroker, TrackedProducer,
};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use serde_json::Value;

const NODES: usize = 3;
const TOPIC: &str = "moving";
const PARTITION: i32 = 0;
const REPLICATION_FACTOR: i32 = 2;
/// Records written before the move starts.
const RECORDS_BEFORE: usize = 3_000;
/// Bound on all records written: the producer writes from before the move
/// until after it, however long it takes, but never more than this.
const RECORDS_MAX: usize = 100_000;
/// Large enough that the new replica has a few megabytes to copy.
const VALUE_BYTES: usize = 1_000;
/// While the move runs, the producer sends this many records, then pauses
/// for [`PRODUCE_PAUSE`], so that its records spread over the move.
const RECORDS_PER_PAUSE: usize = 50;
const PRODUCE_PAUSE: Duration = Duration::from_millis(20);
/// Bound for metadata to agree across the brokers, and for a new leader.
const METADATA_TIMEOUT: Duration = Duration::from_secs(60);
const METADATA_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Bound for one CLI run, `--wait` included (the CLI's own bound is longer:
/// the test should fail well before it).
const CLI_TIMEOUT: Duration = Duration::from_secs(300);
/// Kafka's error names the CLI prints for the refusals checked here.
const NO_REASSIGNMENT_IN_PROGRESS: &str = "NO_REASSIGNMENT_IN_PROGRESS";
const INVALID_REPLICA_ASSIGNMENT: &str = "INVALID_REPLICA_ASSIGNMENT";
/// A broker id no test cluster has.
const ABSENT_BROKER: i32 = 99;

/// Starts `sluice ARGS --bootstrap BROKER` with its output piped.
fn spawn_cli(broker: &TestBroker, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--bootstrap", &broker.bootstrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the sluice CLI")
}

/// Waits for a CLI process (killing it after [`CLI_TIMEOUT`]) and collects
/// its output.
fn finish_cli(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("polling the CLI") {
            Some(status) => break status,
            None if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`sluice {what}` did not finish within {CLI_TIMEOUT:?}");
            }
        }
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_end(&mut stdout).expect("reading stdout");
    }
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_end(&mut stderr).expect("reading stderr");
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

fn cli(broker: &TestBroker, args: &[&str]) -> Output {
    finish_cli(spawn_cli(broker, args), &args.join(" "))
}

/// The standard output of a CLI run that must succeed.
fn cli_ok(broker: &TestBroker, args: &[&str]) -> String {
    let output = cli(broker, args);
    assert!(
        output.status.success(),
        "sluice {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The standard error of a CLI run that must fail with status 1.
fn cli_refused(broker: &TestBroker, args: &[&str]) -> String {
    let output = cli(broker, args);
    assert_eq!(
        output.status.code(),
        Some(1),
        "sluice {args:?}: stdout {} stderr {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

fn ids(value: &Value) -> Vec<i32> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|id| id.as_i64().expect("a broker id") as i32)
        .collect()
}

fn id_list(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// (leader, replicas, isr) of the partition as `broker` tells librdkafka.
fn partition_state(broker: &TestBroker) -> Result<(i32, Vec<i32>, Vec<i32>), String> {
    let consumer = broker.consumer(&[]);
    let metadata = consumer
        .fetch_metadata(Some(TOPIC), METADATA_POLL_INTERVAL * 20)
        .map_err(|error| error.to_string())?;
    let topic = metadata
        .topics()
        .iter()
        .find(|topic| topic.name() == TOPIC)
        .ok_or("no such topic")?;
    let partition = topic
        .partitions()
        .iter()
        .find(|partition| partition.id() == PARTITION)
        .ok_or("no such partition")?;
    Ok((
        partition.leader(),
        partition.replicas().to_vec(),
        partition.isr().to_vec(),
    ))
}

fn broker_ids(broker: &TestBroker) -> BTreeSet<i32> {
    let consumer = broker.consumer(&[]);
    match consumer.fetch_metadata(None, METADATA_POLL_INTERVAL * 20) {
        Ok(metadata) => metadata.brokers().iter().map(|node| node.id()).collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn record(index: usize) -> Record {
    Record::with_value(PARTITION, indexed_value(index, VALUE_BYTES))
}

/// Sends records `from`, `from + 1`, ... at a steady pace until `stop` is
/// set (or [`RECORDS_MAX`] in all are sent); returns how many records in all
/// were sent.
fn produce_steadily(producer: &Mutex<TrackedProducer>, stop: &AtomicBool, from: usize) -> usize {
    let mut next = from;
    while !stop.load(Ordering::Relaxed) && next < RECORDS_MAX {
        {
            let mut producer = producer.lock().expect("the producer");
            for _ in 0..RECORDS_PER_PAUSE {
                producer.send(&record(next));
                next += 1;
            }
        }
        thread::sleep(PRODUCE_PAUSE);
    }
    next
}

fn create_topic(broker: &TestBroker) {
    let admin = broker.admin();
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(REPLICATION_FACTOR));
    let results = futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
        .expect("CreateTopics answered");
    assert!(results[0].is_ok(), "creating {TOPIC}: {:?}", results[0]);
}

#[test]
fn a_partition_moves_to_a_new_broker_under_load_without_losing_a_record() {
    let mut brokers = start_cluster_with(NODES, &[]);
    let everyone: BTreeSet<i32> = (1..=NODES as i32).collect();
    for broker in &brokers {
        wait_until("every broker lists all three", METADATA_TIMEOUT, || {
            broker_ids(broker) == everyone
        });
    }
    create_topic(&brokers[0]);
    let (_, old_replicas, _) = wait_for(
        "the new topic's metadata",
        METADATA_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            partition_state(&brokers[0]).and_then(|state| {
                if state.1.len() == REPLICATION_FACTOR as usize {
                    Ok(state)
                } else {
                    Err(format!("{state:?}"))
                }
            })
        },
    );
    let newcomer = *everyone
        .iter()
        .find(|id| !old_replicas.contains(id))
        .expect("one broker holds no replica");
    // The newcomer leads; of the old replicas, the first stays and the
    // second goes.
    let (kept, dropped) = (old_replicas[0], old_replicas[1]);
    let target = vec![newcomer, kept];
    let index_of = |id: i32| (id - 1) as usize;

    // A balanced topic gives an empty plan.
    let plan = json(&cli_ok(
        &brokers[0],
        &[
            "cluster",
            "rebalance",
            "--topic",
            TOPIC,
            "--dry-run",
            "--json",
        ],
    ));
    assert_eq!(plan["reassignments"], Value::Array(Vec::new()), "{plan}");

    // Nothing is being moved: cancelling is refused, clearly.
    let refusal = cli_refused(
        &brokers[0],
        &["topic", "reassign", TOPIC, "--partition", "0", "--cancel"],
    );
    assert!(refusal.contains(NO_REASSIGNMENT_IN_PROGRESS), "{refusal}");
    let listed = cli_ok(&brokers[0], &["topic", "reassignments"]);
    assert!(listed.contains("No reassignments in progress"), "{listed}");
    // So is a move onto a broker that does not exist.
    let absent = id_list(&[ABSENT_BROKER, kept]);
    let refusal = cli_refused(
        &brokers[0],
        &[
            "topic",
            "reassign",
            TOPIC,
            "--partition",
            "0",
            "--replicas",
            &absent,
        ],
    );
    assert!(refusal.contains(INVALID_REPLICA_ASSIGNMENT), "{refusal}");

    let mut producer = TrackedProducer::for_cluster(
        &brokers,
        TOPIC,
        &[("acks", "all"), ("enable.idempotence", "true")],
    );
    for index in 0..RECORDS_BEFORE {
        producer.send(&record(index));
    }
    producer.flush();
    assert_eq!(producer.acknowledged(), RECORDS_BEFORE);

    // From here on the producer writes all along, from a thread of its own.
    let producer = Arc::new(Mutex::new(producer));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let producer = Arc::clone(&producer);
        let stop = Arc::clone(&stop);
        thread::spawn(move || produce_steadily(&producer, &stop, RECORDS_BEFORE))
    };
    let acknowledged = || producer.lock().expect("the producer").acknowledged();
    let target_text = id_list(&target);
    let move_args = [
        "topic",
        "reassign",
        TOPIC,
        "--partition",
        "0",
        "--replicas",
        target_text.as_str(),
        "--wait",
        "--json",
    ];
    let before_move = acknowledged();
    let moved = cli(&brokers[0], &move_args);
    let after_move = acknowledged();
    assert!(
        moved.status.success(),
        "the move failed: {}",
        String::from_utf8_lossy(&moved.stderr)
    );
    assert!(
        after_move > before_move,
        "no record was acknowledged while the partition moved"
    );
    let report = json(&String::from_utf8_lossy(&moved.stdout));
    assert_eq!(report["finished"], Value::Bool(true), "{report}");
    let reported: BTreeSet<i32> = ids(&report["replicas"]).into_iter().collect();
    let wanted: BTreeSet<i32> = target.iter().copied().collect();
    assert_eq!(reported, wanted, "{report}");
    let isr: BTreeSet<i32> = ids(&report["isr"]).into_iter().collect();
    assert!(!isr.is_empty() && isr.is_subset(&wanted), "{report}");

    // A little more on the new replicas, then everything must be delivered.
    wait_until(
        "records acknowledged after the move",
        METADATA_TIMEOUT,
        || acknowledged() > after_move + RECORDS_PER_PAUSE,
    );
    stop.store(true, Ordering::Relaxed);
    let total = load.join().expect("the producing thread panicked");
    let producer = producer.lock().expect("the producer");
    producer.flush();
    let failed: Vec<(usize, String)> = producer
        .reports()
        .into_iter()
        .enumerate()
        .filter_map(|(index, report)| match report {
            Some(Err(error)) => Some((index, error)),
            _ => None,
        })
        .collect();
    assert!(failed.is_empty(), "undelivered records: {failed:?}");
    assert_eq!(producer.acknowledged(), total);
    drop(producer);

    // Every broker's metadata shows the new replicas, as does the CLI.
    for broker in &brokers {
        wait_for(
            "the new replicas in every broker's metadata",
            METADATA_TIMEOUT,
            METADATA_POLL_INTERVAL,
            || {
                let state = partition_state(broker)?;
                let replicas: BTreeSet<i32> = state.1.iter().copied().collect();
                if replicas == wanted {
                    Ok(())
                } else {
                    Err(format!("{state:?}"))
                }
            },
        );
    }
    let described = cli_ok(&brokers[index_of(newcomer)], &["topic", "describe", TOPIC]);
    let row = described
        .lines()
        .find(|line| line.split_whitespace().next() == Some("0"))
        .unwrap_or_else(|| panic!("partition 0 missing:\n{described}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    let shown: BTreeSet<i32> = columns[2]
        .split(',')
        .map(|id| id.parse().expect("a broker id"))
        .collect();
    assert_eq!(shown, wanted, "{described}");
    let listed = cli_ok(&brokers[0], &["topic", "reassignments", TOPIC]);
    assert!(listed.contains("No reassignments in progress"), "{listed}");

    // The old replica that stayed goes away: the newcomer alone must serve
    // every record, in the order sent.
    brokers[index_of(kept)].stop(Stop::Term);
    let reader = &brokers[index_of(newcomer)];
    wait_for(
        "the newcomer to lead the partition",
        METADATA_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || match partition_state(reader)? {
            (leader, _, _) if leader == newcomer => Ok(()),
            state => Err(format!("{state:?}")),
        },
    );
    let read = read_all(reader, TOPIC, 1);
    let records = &read[&PARTITION];
    let indexes: Vec<usize> = records.iter().map(Record::value_index).collect();
    assert_eq!(
        indexes.len(),
        total,
        "records read back from the new replica"
    );
    assert!(
        indexes.iter().copied().eq(0..total),
        "records out of order or duplicated: first differences {:?}",
        indexes
            .iter()
            .enumerate()
            .filter(|(position, index)| *position != **index)
            .take(5)
            .collect::<Vec<_>>()
    );
    // The dropped broker is still up and part of the cluster; it simply no
    // longer holds the partition.
    brokers[index_of(dropped)].assert_running();
}

/// Replica and preferred-leader counts by broker of `topic`, as `broker`
/// tells librdkafka.
fn spread(broker: &TestBroker, topic: &str) -> Result<(Vec<usize>, Vec<usize>), String> {
    let consumer = broker.consumer(&[]);
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_POLL_INTERVAL * 20)
        .map_err(|error| error.to_string())?;
    let found = metadata
        .topics()
        .iter()
        .find(|found| found.name() == topic)
        .ok_or("no such topic")?;
    let mut replicas = vec![0; NODES];
    let mut leaders = vec![0; NODES];
    for partition in found.partitions() {
        for (position, id) in partition.replicas().iter().enumerate() {
            let slot = usize::try_from(id - 1).map_err(|_| format!("broker id {id}"))?;
            *replicas.get_mut(slot).ok_or(format!("broker id {id}"))? += 1;
            if position == 0 {
                leaders[slot] += 1;
            }
        }
    }
    Ok((replicas, leaders))
}

#[test]
fn rebalance_spreads_a_skewed_topic_over_every_broker() {
    const SKEWED: &str = "skewed";
    const PARTITIONS: i32 = 3;
    let brokers = start_cluster_with(NODES, &[]);
    let everyone: BTreeSet<i32> = (1..=NODES as i32).collect();
    for broker in &brokers {
        wait_until("every broker lists all three", METADATA_TIMEOUT, || {
            broker_ids(broker) == everyone
        });
    }
    let admin = brokers[0].admin();
    let topic = NewTopic::new(
        SKEWED,
        PARTITIONS,
        TopicReplication::Fixed(REPLICATION_FACTOR),
    );
    let results = futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
        .expect("CreateTopics answered");
    assert!(results[0].is_ok(), "creating {SKEWED}: {:?}", results[0]);
    // Every partition onto brokers 1 and 2, led by 1: broker 3 holds nothing.
    for partition in 0..PARTITIONS {
        let index = partition.to_string();
        cli_ok(
            &brokers[0],
            &[
                "topic",
                "reassign",
                SKEWED,
                "--partition",
                &index,
                "--replicas",
                "1,2",
                "--wait",
            ],
        );
    }
    let skewed = (vec![3, 3, 0], vec![3, 0, 0]);
    wait_for(
        "the skewed layout",
        METADATA_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || match spread(&brokers[0], SKEWED)? {
            found if found == skewed => Ok(()),
            found => Err(format!("{found:?}")),
        },
    );

    // A dry run plans the two moves broker 3 needs and changes nothing.
    let dry = json(&cli_ok(
        &brokers[0],
        &[
            "cluster",
            "rebalance",
            "--topic",
            SKEWED,
            "--dry-run",
            "--json",
        ],
    ));
    assert_eq!(dry["moved_replicas"], Value::from(2), "{dry}");
    assert_eq!(spread(&brokers[0], SKEWED), Ok(skewed));

    let done = json(&cli_ok(
        &brokers[1],
        &[
            "cluster",
            "rebalance",
            "--topic",
            SKEWED,
            "--wait",
            "--json",
        ],
    ));
    assert_eq!(done["waited"], Value::Bool(true), "{done}");
    assert_eq!(done["reassignments"], dry["reassignments"], "{done}");
    let even = (vec![2, 2, 2], vec![1, 1, 1]);
    for broker in &brokers {
        wait_for(
            "every broker's metadata to show the even spread",
            METADATA_TIMEOUT,
            METADATA_POLL_INTERVAL,
            || match spread(broker, SKEWED)? {
                found if found == even => Ok(()),
                found => Err(format!("{found:?}")),
            },
        );
    }
    let again = json(&cli_ok(
        &brokers[2],
        &[
            "cluster",
            "rebalance",
            "--topic",
            SKEWED,
            "--dry-run",
            "--json",
        ],
    ));
    assert_eq!(again["reassignments"], Value::Array(Vec::new()), "{again}");
}
