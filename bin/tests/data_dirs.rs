//! Several data directories (`log_dirs`, Kafka's `log.dirs`): partitions
//! spread over them, each in one; DescribeLogDirs reports each directory
//! with the partitions it holds; a restart finds every partition where it
//! was; a full directory (a small loop-mounted file system, so this test
//! needs root, as CI runs it) refuses only its own partitions' records
//! with KAFKA_STORAGE_ERROR; and a list naming a directory twice, or two
//! copies of one partition, is refused at start with one line.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;

use kafka_protocol::messages::{ApiKey, DescribeLogDirsRequest, DescribeLogDirsResponse};

use common::disk::{partitions_in, Freeze, KeptFull, SmallDisk};
use common::{
    indexed_value, produce_all, raw_connect, read_all, receive_response, send_request,
    slowest_metadata_answer, Record, Stop, TestBroker, TrackedProducer, SHARDS,
};

const TOPIC: &str = "spread";
const PARTITIONS: i32 = 8;
const MESSAGES: usize = 800;
const DESCRIBE_LOG_DIRS_VERSION: i16 = 4;
const KAFKA_STORAGE_ERROR: i16 = 56;
const LOG_DIR_NOT_FOUND: i16 = 57;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// Directories removed when dropped.
struct Disks(PathBuf);

impl Disks {
    fn new(name: &str) -> Disks {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let root = std::env::temp_dir().join(format!(
            "sluice-it-dirs-{name}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&root).expect("a temp dir");
        Disks(root)
    }

    fn dir(&self, index: usize) -> PathBuf {
        self.0.join(format!("disk{index}"))
    }

    fn list(&self, count: usize) -> String {
        (0..count)
            .map(|index| self.dir(index).display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Disks {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// DescribeLogDirs of every topic, as the broker answers it.
fn describe_log_dirs(broker: &TestBroker) -> DescribeLogDirsResponse {
    let mut stream = raw_connect(broker.address());
    let mut request = DescribeLogDirsRequest::default();
    // Null: every topic (an empty list would ask for none).
    request.topics = None;
    send_request(
        &mut stream,
        ApiKey::DescribeLogDirs,
        DESCRIBE_LOG_DIRS_VERSION,
        1,
        &request,
    );
    receive_response(
        &mut stream,
        ApiKey::DescribeLogDirs,
        DESCRIBE_LOG_DIRS_VERSION,
        1,
    )
}

/// DescribeLogDirs: each directory reported, with the partitions of
/// `topic` it holds (none for an offline one; a move's future replica is
/// not held yet).
fn described(broker: &TestBroker, topic: &str) -> BTreeMap<String, Vec<i32>> {
    described_as(broker, topic, false)
}

/// The future replicas (copies being made by a move) of `topic`, by
/// directory.
fn moving_into(broker: &TestBroker, topic: &str) -> BTreeMap<String, Vec<i32>> {
    described_as(broker, topic, true)
}

fn described_as(broker: &TestBroker, topic: &str, future: bool) -> BTreeMap<String, Vec<i32>> {
    let response = describe_log_dirs(broker);
    response
        .results
        .iter()
        .map(|result| {
            if result.error_code == KAFKA_STORAGE_ERROR {
                // Offline: reported with nothing in it.
                assert!(result.topics.is_empty());
                return (result.log_dir.to_string(), Vec::new());
            }
            assert_eq!(result.error_code, 0, "{}", result.log_dir.as_str());
            assert!(result.total_bytes > 0 && result.usable_bytes > 0);
            let mut partitions: Vec<i32> = result
                .topics
                .iter()
                .filter(|entry| entry.name.0.as_str() == topic)
                .flat_map(|entry| {
                    entry
                        .partitions
                        .iter()
                        .filter(|p| p.is_future_key == future)
                        .map(|p| p.partition_index)
                })
                .collect();
            partitions.sort();
            (result.log_dir.to_string(), partitions)
        })
        .collect()
}

fn records() -> Vec<Record> {
    (0..MESSAGES)
        .map(|index| {
            Record::with_value(
                index as i32 % PARTITIONS,
                format!("record-{index}").into_bytes(),
            )
        })
        .collect()
}

#[test]
fn partitions_spread_over_every_data_directory_and_stay_there() {
    let disks = Disks::new("spread");
    let list = disks.list(2);
    let mut broker = TestBroker::start_with(&["--log-dirs", &list]);
    broker.create_topic(TOPIC, PARTITIONS);
    produce_all(&broker, TOPIC, &[("acks", "all")], &records());

    let first = partitions_in(&disks.dir(0), TOPIC);
    let second = partitions_in(&disks.dir(1), TOPIC);
    eprintln!("disk0 {first:?}, disk1 {second:?}");
    // Each shard balances its own partitions: within one per shard.
    assert_eq!(first.len() + second.len(), PARTITIONS as usize);
    assert!(
        first.len().abs_diff(second.len()) <= SHARDS,
        "{first:?} / {second:?}"
    );
    assert!(first.iter().all(|partition| !second.contains(partition)));

    let expected: BTreeMap<String, Vec<i32>> = BTreeMap::from([
        (disks.dir(0).display().to_string(), first.clone()),
        (disks.dir(1).display().to_string(), second.clone()),
    ]);
    assert_eq!(described(&broker, TOPIC), expected);

    // A restart (kill -9) finds each partition where it was, with its
    // records; a topic made after it spreads too.
    broker.restart(Stop::Kill);
    assert_eq!(partitions_in(&disks.dir(0), TOPIC), first);
    assert_eq!(partitions_in(&disks.dir(1), TOPIC), second);
    let read = read_all(&broker, TOPIC, PARTITIONS);
    let total: usize = read.values().map(Vec::len).sum();
    assert_eq!(total, MESSAGES);
    assert_eq!(described(&broker, TOPIC), expected);
    broker.create_topic("later", PARTITIONS);
    let later = (
        partitions_in(&disks.dir(0), "later").len(),
        partitions_in(&disks.dir(1), "later").len(),
    );
    assert_eq!(later.0 + later.1, PARTITIONS as usize);
    assert!(
        (first.len() + later.0).abs_diff(second.len() + later.1) <= SHARDS,
        "{later:?}"
    );
}

/// Exit status of a broker refusing its settings, and of one refusing to
/// start on what it found.
const BAD_SETTING: i32 = 2;
const CANNOT_START: i32 = 1;

/// Runs `sluice` expecting it to refuse to start with exit status
/// `status`; returns its last line.
fn refused(args: &[&str], status: i32) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--pin-shards",
            "false",
        ])
        .args(args)
        .env("SLUICE_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("running sluice");
    let text = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(status), "{text}");
    let last = text.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("sluice: "), "{text}");
    last
}

#[test]
fn a_bad_list_of_data_directories_is_refused_with_one_line() {
    let disks = Disks::new("bad");
    let twice = format!("{},{}", disks.dir(0).display(), disks.dir(0).display());
    let line = refused(&["--log-dirs", &twice], BAD_SETTING);
    assert!(line.contains("listed twice"), "{line}");

    // The same partition in both directories (as a copy by hand would
    // leave it): which copy is current cannot be told.
    let list = disks.list(2);
    let mut broker = TestBroker::start_with(&["--log-dirs", &list]);
    broker.create_topic("orders", 4);
    broker.stop(Stop::Term);
    let (from, to) = if disks.dir(0).join("orders-3").is_dir() {
        (disks.dir(0), disks.dir(1))
    } else {
        (disks.dir(1), disks.dir(0))
    };
    assert!(from.join("orders-3").is_dir());
    fs::create_dir_all(to.join("orders-3")).expect("a second copy");
    for entry in fs::read_dir(from.join("orders-3"))
        .expect("the partition")
        .flatten()
    {
        fs::copy(entry.path(), to.join("orders-3").join(entry.file_name())).expect("copying");
    }
    let line = refused(&["--log-dirs", &list], CANNOT_START);
    assert!(
        line.contains("orders-3") && line.contains("two data directories"),
        "{line}"
    );

    // A directory that cannot be made (under a file).
    let blocker = disks.0.join("file");
    fs::write(&blocker, b"x").expect("a file");
    let under_file = format!("{},{}", disks.dir(0).display(), blocker.join("d").display());
    let line = refused(&["--log-dirs", &under_file], CANNOT_START);
    assert!(line.contains(&blocker.display().to_string()), "{line}");
}

/// The small directory's file system: big enough for a topic's segments,
/// small enough to fill at once.
const SMALL_DISK_BYTES: u64 = 64 * 1024 * 1024;
/// Each record takes new blocks, so none fits on the full disk.
const RECORD_BYTES: usize = 64 * 1024;
const FULL_ROUNDS: usize = 40;

#[test]
fn a_full_data_directory_fails_only_its_own_partitions() {
    let disks = Disks::new("full");
    fs::create_dir_all(disks.dir(0)).expect("the first directory");
    // The second directory is a small file system of its own; the first
    // holds the metadata and stays healthy.
    let small = SmallDisk::mount(&disks.dir(1), SMALL_DISK_BYTES);
    let list = disks.list(2);
    let broker = TestBroker::start_with(&["--log-dirs", &list]);
    let partitions = 4;
    broker.create_topic(TOPIC, partitions);
    let on_small = partitions_in(small.mount_point(), TOPIC);
    assert!(
        !on_small.is_empty() && on_small.len() < partitions as usize,
        "{on_small:?}"
    );

    let full = KeptFull::fill(&small.mount_point().join(".ballast"));
    let mut producer = TrackedProducer::new(
        &broker,
        TOPIC,
        &[
            ("acks", "all"),
            ("retries", "0"),
            ("request.timeout.ms", "30000"),
        ],
    );
    let sent = FULL_ROUNDS * partitions as usize;
    for index in 0..sent {
        producer.send(&Record::with_value(
            index as i32 % partitions,
            indexed_value(index, RECORD_BYTES),
        ));
    }
    producer.flush();
    let reports = producer.reports();
    let mut refused_on_small = 0;
    for (index, report) in reports.iter().enumerate() {
        let partition = index as i32 % partitions;
        match report {
            Some(Ok(_)) => {}
            Some(Err(error)) if on_small.contains(&partition) => {
                assert!(
                    error.contains("KafkaStorageError"),
                    "record {index} to the full directory failed with {error}"
                );
                refused_on_small += 1;
            }
            Some(Err(error)) => {
                panic!("record {index} to partition {partition}, on the healthy directory, failed: {error}")
            }
            None => panic!("record {index} has no delivery report after flush"),
        }
    }
    assert!(refused_on_small > 0, "the full directory took every record");
    let acknowledged: Vec<usize> = reports
        .iter()
        .enumerate()
        .filter(|(_, report)| matches!(report, Some(Ok(_))))
        .map(|(index, _)| index)
        .collect();
    drop(producer);

    // Space back: every partition takes records again (an idempotent
    // producer, so a batch its writer's own retry already wrote is not
    // written twice).
    full.free();
    let mut after = TrackedProducer::new(
        &broker,
        TOPIC,
        &[("acks", "all"), ("enable.idempotence", "true")],
    );
    for partition in 0..partitions {
        after.send(&Record::with_value(
            partition,
            indexed_value(sent + partition as usize, RECORD_BYTES),
        ));
    }
    after.flush();
    for (partition, report) in after.reports().iter().enumerate() {
        assert!(
            matches!(report, Some(Ok(_))),
            "partition {partition} after the space came back: {report:?}"
        );
    }
    drop(after);

    // Every acknowledged record is there, once, in order.
    let stored = read_all(&broker, TOPIC, partitions);
    let mut all: Vec<usize> = Vec::new();
    for (partition, records) in &stored {
        let indexes: Vec<usize> = records.iter().map(Record::value_index).collect();
        assert!(
            indexes.windows(2).all(|pair| pair[0] < pair[1]),
            "partition {partition} holds {indexes:?}"
        );
        all.extend(indexes);
    }
    all.sort();
    for index in &acknowledged {
        assert!(
            all.binary_search(index).is_ok(),
            "acknowledged record {index} is missing"
        );
    }
    for index in sent..sent + partitions as usize {
        assert!(
            all.binary_search(&index).is_ok(),
            "record {index} is missing"
        );
    }
    drop(broker);
}

/// Every record of one partition, from its start to its high watermark.
fn read_partition(broker: &TestBroker, topic: &str, partition: i32) -> Vec<Record> {
    let consumer = broker.consumer(&[]);
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, CLIENT_TIMEOUT)
        .expect("the partition's watermarks");
    let wanted = usize::try_from(high - low).expect("watermarks in order");
    common::consume(
        &consumer,
        topic,
        &[partition],
        rdkafka::Offset::Beginning,
        CLIENT_TIMEOUT,
        |records| records.len() >= wanted,
    )
}

/// Sends of the failing-directory test: one to each partition in turn,
/// this far apart, with the disk failing part way.
const FAILING_ROUNDS: usize = 150;
const FAILING_SEND_INTERVAL: Duration = Duration::from_millis(10);
/// Into the sends, when the disk fails (once it has taken records).
const FAILING_AFTER: Duration = Duration::from_millis(500);
const FAILING_RECORD_BYTES: usize = 1024;
/// One watermark query or read of the failing-directory test.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// What the broker logs, once, when a data directory starts failing.
const DIR_FAILING_LINE: &str = "data directory failing";

#[test]
fn a_failing_data_directory_takes_only_its_partitions_offline() {
    let disks = Disks::new("failing");
    fs::create_dir_all(disks.dir(0)).expect("the first directory");
    // The second directory is a file system of its own, which dies under
    // load: from then on every I/O on it fails with EIO.
    let small = SmallDisk::mount(&disks.dir(1), SMALL_DISK_BYTES);
    let list = disks.list(2);
    let broker = TestBroker::start_with(&["--log-dirs", &list]);
    let partitions = 4;
    broker.create_topic(TOPIC, partitions);
    let on_failing = partitions_in(small.mount_point(), TOPIC);
    assert!(
        !on_failing.is_empty() && on_failing.len() < partitions as usize,
        "{on_failing:?}"
    );

    let mut producer = TrackedProducer::new(
        &broker,
        TOPIC,
        &[
            ("acks", "all"),
            ("retries", "0"),
            ("linger.ms", "0"),
            ("request.timeout.ms", "30000"),
        ],
    );
    let sent = FAILING_ROUNDS * partitions as usize;
    // The disk fails once it has taken records (a loaded machine may take
    // a while to deliver the first), a while into the sends.
    let fail_after = Instant::now() + FAILING_AFTER;
    let mut failed = false;
    for index in 0..sent {
        if !failed && Instant::now() >= fail_after {
            let taken = producer
                .reports()
                .iter()
                .enumerate()
                .any(|(index, report)| {
                    matches!(report, Some(Ok(_)))
                        && on_failing.contains(&(index as i32 % partitions))
                });
            if taken {
                small.fail();
                failed = true;
            }
        }
        producer.send(&Record::with_value(
            index as i32 % partitions,
            indexed_value(index, FAILING_RECORD_BYTES),
        ));
        std::thread::sleep(FAILING_SEND_INTERVAL);
    }
    assert!(failed, "the sends ended before the disk failed");
    producer.flush();
    let reports = producer.reports();
    let (mut refused, mut taken_before) = (0, 0);
    for (index, report) in reports.iter().enumerate() {
        let partition = index as i32 % partitions;
        match report {
            Some(Ok(_)) if on_failing.contains(&partition) => taken_before += 1,
            Some(Ok(_)) => {}
            Some(Err(error)) if on_failing.contains(&partition) => {
                assert!(
                    error.contains("KafkaStorageError"),
                    "record {index} to the failed directory failed with {error}"
                );
                refused += 1;
            }
            Some(Err(error)) => panic!(
                "record {index} to partition {partition}, on the working directory, failed: {error}"
            ),
            None => panic!("record {index} has no delivery report after flush"),
        }
    }
    assert!(refused > 0, "the failed directory took every record");
    assert!(
        taken_before > 0,
        "the directory took nothing before it failed"
    );
    drop(producer);

    // DescribeLogDirs reports the failed directory as Kafka reports an
    // offline one, and the other as working.
    let response = describe_log_dirs(&broker);
    let codes: BTreeMap<String, i16> = response
        .results
        .iter()
        .map(|result| (result.log_dir.to_string(), result.error_code))
        .collect();
    let failed_dir = small.mount_point().display().to_string();
    let working_dir = disks.dir(0).display().to_string();
    assert_eq!(
        codes.get(&failed_dir),
        Some(&KAFKA_STORAGE_ERROR),
        "{codes:?}"
    );
    assert_eq!(codes.get(&working_dir), Some(&0), "{codes:?}");

    // The failure is logged once for the directory, not once per
    // partition.
    common::wait_until("the failed directory logged", CLIENT_TIMEOUT, || {
        broker.log().contains(DIR_FAILING_LINE)
    });
    let logged = broker.log().matches(DIR_FAILING_LINE).count();
    assert_eq!(logged, 1, "the failure was logged {logged} times");

    // The working directory keeps serving: more records, and a new topic,
    // whose partitions all go to the directory that works.
    let mut after = TrackedProducer::new(&broker, TOPIC, &[("acks", "all")]);
    let working: Vec<i32> = (0..partitions)
        .filter(|p| !on_failing.contains(p))
        .collect();
    for (offset, partition) in working.iter().enumerate() {
        after.send(&Record::with_value(
            *partition,
            indexed_value(sent + offset, FAILING_RECORD_BYTES),
        ));
    }
    after.flush();
    for report in after.reports() {
        assert!(matches!(report, Some(Ok(_))), "{report:?}");
    }
    drop(after);
    let fresh = "after-the-failure";
    broker.create_topic(fresh, partitions);
    assert_eq!(partitions_in(small.mount_point(), fresh), Vec::<i32>::new());
    assert_eq!(
        partitions_in(&disks.dir(0), fresh),
        (0..partitions).collect::<Vec<_>>()
    );

    // Every record acknowledged on the working directory is there, once,
    // in send order.
    let acknowledged: Vec<usize> = reports
        .iter()
        .enumerate()
        .filter(|(index, report)| {
            matches!(report, Some(Ok(_))) && working.contains(&(*index as i32 % partitions))
        })
        .map(|(index, _)| index)
        .collect();
    let mut stored: Vec<usize> = Vec::new();
    for partition in &working {
        let records = read_partition(&broker, TOPIC, *partition);
        let indexes: Vec<usize> = records.iter().map(Record::value_index).collect();
        assert!(
            indexes.windows(2).all(|pair| pair[0] < pair[1]),
            "partition {partition} holds {indexes:?}"
        );
        stored.extend(indexes);
    }
    stored.sort();
    let mut expected = acknowledged;
    expected.extend(sent..sent + working.len());
    expected.sort();
    assert_eq!(stored, expected);
    drop(broker);
}

#[test]
fn a_missing_data_directory_is_refused_unless_the_operator_says_so() {
    let disks = Disks::new("missing");
    let list = disks.list(2);
    let mut broker = TestBroker::start_with(&["--log-dirs", &list]);
    broker.create_topic(TOPIC, PARTITIONS);
    produce_all(&broker, TOPIC, &[("acks", "all")], &records());
    broker.stop(Stop::Term);
    drop(broker);
    let kept_on_first = partitions_in(&disks.dir(0), TOPIC);
    let on_second = partitions_in(&disks.dir(1), TOPIC);
    assert!(!on_second.is_empty());

    // The second disk "not mounted": its mount point is there, empty.
    let away = disks.0.join("disk1-away");
    fs::rename(disks.dir(1), &away).expect("moving the directory away");
    fs::create_dir_all(disks.dir(1)).expect("an empty mount point");
    let line = refused(&["--log-dirs", &list], CANNOT_START);
    let second = disks.dir(1).display().to_string();
    assert!(
        line.contains(&second) && line.contains("missing or empty"),
        "{line}"
    );
    // Not there at all: the same.
    fs::remove_dir(disks.dir(1)).expect("removing the mount point");
    let line = refused(&["--log-dirs", &list], CANNOT_START);
    assert!(line.contains(&second), "{line}");
    // Nothing was made in its place.
    assert!(!disks.dir(1).exists());

    // Told to, the broker starts without it: the first directory's
    // partitions keep their records, the directory is reported offline.
    let broker = TestBroker::start_with(&[
        "--log-dirs",
        &list,
        "--start-without-missing-log-dirs",
        "true",
    ]);
    let stored = read_all(&broker, TOPIC, PARTITIONS);
    for partition in &kept_on_first {
        assert_eq!(
            stored[partition].len(),
            MESSAGES / PARTITIONS as usize,
            "partition {partition}"
        );
    }
    let response = describe_log_dirs(&broker);
    let offline: Vec<&str> = response
        .results
        .iter()
        .filter(|result| result.error_code == KAFKA_STORAGE_ERROR)
        .map(|result| result.log_dir.as_str())
        .collect();
    assert_eq!(offline, [second.as_str()]);
    drop(broker);

    // The disk back while its partitions were made anew on the first: two
    // copies, refused rather than one picked.
    fs::rename(&away, disks.dir(1)).expect("moving the directory back");
    let line = refused(&["--log-dirs", &list], CANNOT_START);
    assert!(line.contains("two data directories"), "{line}");
}

/// Records in the partition before the move starts: 32 MiB, so that the
/// copy takes far longer than a DescribeLogDirs round trip.
const MOVE_BACKLOG: usize = 8_000;
/// Records sent while the move runs, at most.
const MOVE_LOAD_MAX: usize = 20_000;
const MOVE_RECORD_BYTES: usize = 4096;

/// AlterReplicaLogDirs of one partition to `dir`; the partition's code.
fn alter_replica_log_dir(broker: &TestBroker, dir: &Path, topic: &str, partition: i32) -> i16 {
    use kafka_protocol::messages::alter_replica_log_dirs_request::{
        AlterReplicaLogDir, AlterReplicaLogDirTopic,
    };
    use kafka_protocol::messages::{AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse};
    const VERSION: i16 = 2;
    let mut wanted = AlterReplicaLogDirTopic::default();
    wanted.name = kafka_protocol::messages::TopicName(common::text(topic));
    wanted.partitions = vec![partition];
    let mut target = AlterReplicaLogDir::default();
    target.path = common::text(&dir.display().to_string());
    target.topics = vec![wanted];
    let mut request = AlterReplicaLogDirsRequest::default();
    request.dirs = vec![target];
    let mut stream = raw_connect(broker.address());
    send_request(
        &mut stream,
        ApiKey::AlterReplicaLogDirs,
        VERSION,
        1,
        &request,
    );
    let response: AlterReplicaLogDirsResponse =
        receive_response(&mut stream, ApiKey::AlterReplicaLogDirs, VERSION, 1);
    assert_eq!(response.results.len(), 1);
    assert_eq!(response.results[0].partitions.len(), 1);
    response.results[0].partitions[0].error_code
}

#[test]
fn a_partition_moves_to_another_directory_under_load_with_nothing_lost() {
    let disks = Disks::new("move");
    let list = disks.list(2);
    let broker = TestBroker::start_with(&["--log-dirs", &list]);
    broker.create_topic(TOPIC, 2);
    let from = if partitions_in(&disks.dir(0), TOPIC).contains(&0) {
        0
    } else {
        1
    };
    let to = 1 - from;

    // Errors first: a directory the broker does not have, a partition it
    // does not know.
    assert_eq!(
        alter_replica_log_dir(&broker, &disks.0.join("elsewhere"), TOPIC, 0),
        LOG_DIR_NOT_FOUND
    );
    assert_eq!(
        alter_replica_log_dir(&broker, &disks.dir(to), "no-such-topic", 0),
        UNKNOWN_TOPIC_OR_PARTITION
    );

    let mut producer = TrackedProducer::new(
        &broker,
        TOPIC,
        &[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("linger.ms", "1"),
        ],
    );
    let mut sent = 0;
    let mut send = |producer: &mut TrackedProducer, count: usize| {
        for _ in 0..count {
            producer.send(&Record::with_value(
                0,
                indexed_value(sent, MOVE_RECORD_BYTES),
            ));
            sent += 1;
        }
    };
    send(&mut producer, MOVE_BACKLOG);
    producer.flush();

    assert_eq!(alter_replica_log_dir(&broker, &disks.dir(to), TOPIC, 0), 0);
    // Under way: the copy is listed in the target as a future replica, the
    // partition itself still in its directory.
    let target = disks.dir(to).display().to_string();
    assert_eq!(moving_into(&broker, TOPIC).get(&target), Some(&vec![0]));
    assert!(described(&broker, TOPIC)[&disks.dir(from).display().to_string()].contains(&0));
    // Producing on while it moves, until DescribeLogDirs shows it moved.
    let started = std::time::Instant::now();
    let mut during = 0;
    loop {
        send(&mut producer, 10);
        during += 10;
        std::thread::sleep(std::time::Duration::from_millis(5));
        let moved = described(&broker, TOPIC)
            .get(&target)
            .is_some_and(|partitions| partitions.contains(&0));
        if moved || during >= MOVE_LOAD_MAX {
            break;
        }
    }
    producer.flush();
    eprintln!(
        "moved in {} ms with {during} records sent meanwhile",
        started.elapsed().as_millis()
    );
    assert!(partitions_in(&disks.dir(to), TOPIC).contains(&0));
    assert!(!partitions_in(&disks.dir(from), TOPIC).contains(&0));
    assert!(moving_into(&broker, TOPIC).values().all(Vec::is_empty));
    for (index, report) in producer.reports().iter().enumerate() {
        assert!(matches!(report, Some(Ok(_))), "record {index}: {report:?}");
    }
    drop(producer);

    // Every record once, in order, before and after a restart (which
    // finds the partition in its new directory).
    let check = |broker: &TestBroker| {
        let stored = read_all(broker, TOPIC, 2);
        let indexes: Vec<usize> = stored[&0].iter().map(Record::value_index).collect();
        assert_eq!(indexes, (0..sent).collect::<Vec<_>>());
    };
    check(&broker);
    let mut broker = broker;
    broker.restart(Stop::Kill);
    check(&broker);
    assert!(partitions_in(&disks.dir(to), TOPIC).contains(&0));
}

/// How long the second directory stays frozen while the first is probed.
const FROZEN_PROBE_FOR: Duration = Duration::from_secs(6);
/// Time given the creation and the deletion to reach the shards before
/// the probes start.
const FROZEN_AHEAD: Duration = Duration::from_secs(1);
/// A request for the healthy directory's partitions, or one that needs no
/// disk, is answered within this while the other directory is frozen.
const FROZEN_ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// Connections each probe sends a Metadata request on: placed over the
/// shards, so that every shard is asked.
const FROZEN_PROBE_CONNECTIONS: usize = 6;

/// Records for the healthy directory's partitions and Metadata requests
/// over every shard, for `FROZEN_PROBE_FOR` while the file system at
/// `frozen` is frozen and `operation` (started once it is) waits on it;
/// each must be answered within `FROZEN_ANSWER_WITHIN`. Returns what the
/// operation returned once the disk thawed.
fn probe_while_frozen<T: Send + 'static>(
    broker: &TestBroker,
    frozen: &Path,
    healthy: &[i32],
    sent: &mut usize,
    operation: impl FnOnce() -> T + Send + 'static,
) -> T {
    let waiting = {
        // Declared after the broker: dropped (thawed) first, also when an
        // assertion fails, so the broker can be stopped.
        let _freeze = Freeze::new(frozen);
        let waiting = std::thread::spawn(operation);
        std::thread::sleep(FROZEN_AHEAD);
        let mut producer = TrackedProducer::new(broker, TOPIC, &[("acks", "1")]);
        let mut correlation = 0;
        let sent_before = *sent;
        let frozen_at = Instant::now();
        while frozen_at.elapsed() < FROZEN_PROBE_FOR {
            let slowest =
                slowest_metadata_answer(broker, TOPIC, FROZEN_PROBE_CONNECTIONS, &mut correlation);
            assert!(
                slowest <= FROZEN_ANSWER_WITHIN,
                "a Metadata request took {slowest:?} with the other directory frozen"
            );
            let started = Instant::now();
            for &partition in healthy {
                producer.send(&Record::with_value(
                    partition,
                    format!("frozen-{sent}").into_bytes(),
                ));
                *sent += 1;
            }
            producer.flush();
            let took = started.elapsed();
            assert!(
                took <= FROZEN_ANSWER_WITHIN,
                "records for the healthy directory took {took:?} with the other frozen"
            );
        }
        assert_eq!(
            producer.acknowledged(),
            *sent - sent_before,
            "records for the healthy directory"
        );
        eprintln!(
            "other directory frozen for {:?}: {} records acknowledged, {correlation} metadata answers",
            frozen_at.elapsed(),
            *sent - sent_before
        );
        assert!(
            !waiting.is_finished(),
            "the operation on the frozen directory finished before the thaw"
        );
        waiting
    };
    waiting.join().expect("the operation's thread")
}

/// A data directory whose file system stops taking writes (frozen, as
/// `fsfreeze` and snapshot tools freeze one; a stalled volume looks the
/// same) holds up only its own partitions. While it is frozen, a topic is
/// created with partitions in it, and (frozen again) a topic with
/// partitions in it is deleted: creating a partition's directory and
/// setting a deleted one aside wait for the file system, and made on a
/// shard's thread they stopped that shard, every partition and connection
/// of it. Every shard must keep answering, and keep taking records for the
/// partitions of the healthy directory; after each thaw the creation or
/// the deletion finishes.
#[test]
fn a_frozen_data_directory_holds_up_only_its_own_partitions() {
    let disks = Disks::new("frozen");
    fs::create_dir_all(disks.dir(0)).expect("the first directory");
    let small = SmallDisk::mount(&disks.dir(1), SMALL_DISK_BYTES);
    let list = disks.list(2);
    let broker = TestBroker::start_with(&["--log-dirs", &list]);
    broker.create_topic(TOPIC, PARTITIONS);
    broker.create_topic("doomed", PARTITIONS);
    produce_all(&broker, "doomed", &[("acks", "all")], &records());
    let healthy = partitions_in(&disks.dir(0), TOPIC);
    assert!(
        healthy.len() >= SHARDS && !partitions_in(small.mount_point(), "doomed").is_empty(),
        "the partitions spread over both directories: {healthy:?}"
    );
    let options = || {
        AdminOptions::new()
            .operation_timeout(Some(CLIENT_TIMEOUT))
            .request_timeout(Some(CLIENT_TIMEOUT))
    };
    let mut sent = 0;

    let admin = broker.admin();
    let created = probe_while_frozen(
        &broker,
        small.mount_point(),
        &healthy,
        &mut sent,
        move || {
            let topic = NewTopic::new("fresh", PARTITIONS, TopicReplication::Fixed(1));
            futures_lite::future::block_on(admin.create_topics(&[topic], &options()))
        },
    );
    let created = created.expect("CreateTopics answered");
    assert!(
        created.iter().all(Result::is_ok),
        "creating a topic across the frozen directory: {created:?}"
    );
    let fresh: Vec<Record> = (0..PARTITIONS)
        .map(|partition| Record::with_value(partition, b"after the thaw".to_vec()))
        .collect();
    produce_all(&broker, "fresh", &[("acks", "all")], &fresh);
    let on_small = partitions_in(small.mount_point(), "fresh");
    assert!(
        !on_small.is_empty(),
        "the new topic has partitions on the thawed directory"
    );
    let read = read_all(&broker, "fresh", PARTITIONS);
    assert_eq!(read.values().map(Vec::len).sum::<usize>(), fresh.len());

    let admin = broker.admin();
    let deleted = probe_while_frozen(
        &broker,
        small.mount_point(),
        &healthy,
        &mut sent,
        move || futures_lite::future::block_on(admin.delete_topics(&["doomed"], &options())),
    );
    let deleted = deleted.expect("DeleteTopics answered");
    assert!(
        deleted.iter().all(Result::is_ok),
        "deleting a topic on the frozen directory: {deleted:?}"
    );
    common::wait_until(
        "the deleted topic's directories gone",
        CLIENT_TIMEOUT,
        || {
            partitions_in(&disks.dir(0), "doomed").is_empty()
                && partitions_in(small.mount_point(), "doomed").is_empty()
        },
    );
    let read = read_all(&broker, TOPIC, PARTITIONS);
    assert_eq!(read.values().map(Vec::len).sum::<usize>(), sent);
}
