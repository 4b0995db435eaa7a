//! Misconfigured brokers are turned away with one line, not a hang and not
//! a takeover: a second process started with the node id of a live broker
//! (an observer's id, or a voter's with its controller port), and a broker
//! that is not a voter started on the data directory of another cluster,
//! or on a voter's. The live cluster keeps its brokers and keeps working.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{
    admin_options, free_ports, produce_all, read_all, start_observer, wait_for, Record, Stop,
    TestBroker, SHARDS,
};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};

/// How long a refused process may take to exit. A second broker with a
/// live broker's id is refused for three broker sessions (4.5 s by
/// default: `DUPLICATE_REGISTRATION_SESSIONS`, which lets a broker
/// restarted at once after kill -9 wait out its old session) after it
/// started; the rest is start-up on a loaded 2-core machine.
const EXIT_WAIT: Duration = Duration::from_secs(30);
/// Generous bound for the cluster's own waits.
const WAIT: Duration = Duration::from_secs(30);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
const TOPIC: &str = "still-working";
const PARTITIONS: i32 = 4;
const RECORDS: usize = 40;

/// Starts `nodes` voters (node ids 1..=nodes) and returns them with their
/// `controller_voters` list.
fn start_voters(nodes: usize) -> (Vec<TestBroker>, String) {
    let ports = free_ports(nodes);
    let listed = ports
        .iter()
        .enumerate()
        .map(|(index, port)| format!("{}@127.0.0.1:{port}", index + 1))
        .collect::<Vec<_>>()
        .join(",");
    let args: Vec<Vec<String>> = ports
        .iter()
        .enumerate()
        .map(|(index, port)| {
            vec![
                "--node-id".into(),
                (index + 1).to_string(),
                "--controller-listen".into(),
                format!("127.0.0.1:{port}"),
                "--controller-voters".into(),
                listed.clone(),
            ]
        })
        .collect();
    (TestBroker::start_together(&args), listed)
}

/// The live brokers one broker lists, with their ports.
fn registered(consumer: &BaseConsumer) -> Result<BTreeMap<i32, u16>, String> {
    let metadata = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(|error| error.to_string())?;
    Ok(metadata
        .brokers()
        .iter()
        .map(|broker| (broker.id(), broker.port() as u16))
        .collect())
}

/// Waits until `consumer`'s broker lists exactly `everyone`.
fn wait_for_brokers(consumer: &BaseConsumer, everyone: &BTreeMap<i32, u16>, what: &str) {
    wait_for(
        what,
        WAIT,
        Duration::from_millis(100),
        || match registered(consumer) {
            Ok(brokers) if brokers == *everyone => Ok(()),
            Ok(brokers) => Err(format!("{brokers:?}")),
            Err(error) => Err(error),
        },
    );
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let path =
            std::env::temp_dir().join(format!("sluice-dup-{name}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).expect("a temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child killed if the test fails while it runs.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a refused process ended.
struct Refused {
    status: ExitStatus,
    /// Its stderr's last line: the error, when it stopped with one.
    last_line: String,
    ran: Duration,
}

/// Runs `sluice` with `args` (and a Kafka port of its own unless `args`
/// name one) until it exits, at most [`EXIT_WAIT`], calling `meanwhile`
/// every 100 ms.
fn run_to_exit(args: &[&str], mut meanwhile: impl FnMut()) -> Refused {
    let logs = TempDir::new("log");
    let log_path = logs.0.join("stderr.log");
    let log = fs::File::create(&log_path).expect("a log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    if !args.contains(&"--listen") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    command
        .args(["--shards", &SHARDS.to_string(), "--pin-shards", "false"])
        .args(args)
        .env("SLUICE_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    let started = Instant::now();
    let mut child = Running(command.spawn().expect("starting sluice"));
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("waiting for sluice") {
            break status;
        }
        let text = || fs::read_to_string(&log_path).unwrap_or_default();
        assert!(
            started.elapsed() < EXIT_WAIT,
            "sluice {args:?} still runs after {EXIT_WAIT:?}; its log:\n{}",
            text()
        );
        meanwhile();
        std::thread::sleep(Duration::from_millis(100));
    };
    let ran = started.elapsed();
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let last_line = text.lines().last().unwrap_or_default().to_string();
    Refused {
        status,
        last_line,
        ran,
    }
}

/// Asserts that the process failed (exit status 1) with one line naming
/// every one of `expected`.
fn assert_refused(outcome: &Refused, what: &str, expected: &[&str]) {
    eprintln!(
        "{what}: exited with {} after {} ms: {}",
        outcome.status,
        outcome.ran.as_millis(),
        outcome.last_line
    );
    assert_eq!(
        outcome.status.code(),
        Some(1),
        "{what}: {}",
        outcome.last_line
    );
    assert!(
        outcome.last_line.starts_with("sluice: "),
        "{what}: the last line is not the error: {}",
        outcome.last_line
    );
    for part in expected {
        assert!(
            outcome.last_line.contains(part),
            "{what}: the error does not say {part:?}: {}",
            outcome.last_line
        );
    }
}

#[test]
fn a_second_broker_with_a_live_brokers_id_exits_and_the_cluster_keeps_working() {
    const OBSERVER: i32 = 4;
    let (voters, listed) = start_voters(3);
    let observer = start_observer(&voters, OBSERVER, &[]);
    let port = observer.address().port();
    let consumer = voters[0].consumer(&[]);
    let everyone: BTreeMap<i32, u16> = voters
        .iter()
        .enumerate()
        .map(|(index, voter)| (index as i32 + 1, voter.address().port()))
        .chain([(OBSERVER, port)])
        .collect();
    wait_for_brokers(&consumer, &everyone, "all four brokers registered");

    // A second process as node 4, a broker that is not a voter like the
    // first. Meanwhile node 4 stays the first process: listed at its port
    // every time (neither taken over nor fenced in between).
    let data = TempDir::new("second");
    let data_dir = data.0.join("data");
    let mut checks = 0;
    let outcome = run_to_exit(
        &[
            "--node-id",
            "4",
            "--controller-voters",
            &listed,
            "--data-dir",
            &data_dir.display().to_string(),
        ],
        || {
            if let Ok(brokers) = registered(&consumer) {
                assert_eq!(brokers, everyone, "the brokers while a second node 4 runs");
                checks += 1;
            }
        },
    );
    assert_refused(
        &outcome,
        "a second node 4",
        &[
            "node id 4",
            &format!(":{port}"),
            "DUPLICATE_BROKER_REGISTRATION",
        ],
    );
    assert!(checks > 0, "the broker list was never read meanwhile");

    // A second process as voter 2 on this host: its controller port is
    // taken (not shared, as SO_REUSEPORT would have it).
    let voter_2 = listed
        .split(',')
        .find_map(|voter| voter.strip_prefix("2@"))
        .expect("voter 2 listed")
        .to_string();
    let data = TempDir::new("voter");
    let data_dir = data.0.join("data");
    let outcome = run_to_exit(
        &[
            "--node-id",
            "2",
            "--controller-listen",
            &voter_2,
            "--controller-voters",
            &listed,
            "--data-dir",
            &data_dir.display().to_string(),
        ],
        || {},
    );
    assert_refused(
        &outcome,
        "a second voter 2",
        &["cannot bind the controller port", "of node 2"],
    );

    // And on the first node 4's Kafka port (which its shards share through
    // SO_REUSEPORT, and a copy of its settings would have joined).
    let data = TempDir::new("port");
    let data_dir = data.0.join("data");
    let outcome = run_to_exit(
        &[
            "--node-id",
            "5",
            "--controller-voters",
            &listed,
            "--listen",
            &observer.address().to_string(),
            "--data-dir",
            &data_dir.display().to_string(),
        ],
        || {},
    );
    assert_refused(
        &outcome,
        "a broker on node 4's Kafka port",
        &["another process listens there already"],
    );

    // The cluster as it was, and working: a topic with replicas on the
    // observer, records through it.
    assert_eq!(registered(&consumer), Ok(everyone.clone()));
    let admin = observer.admin();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(2));
    let created = futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
        .expect("CreateTopics answered");
    assert!(created[0].is_ok(), "{created:?}");
    let records: Vec<Record> = (0..RECORDS)
        .map(|index| Record::with_value(index as i32 % PARTITIONS, format!("r{index}").into()))
        .collect();
    produce_all(&observer, TOPIC, &[("acks", "all")], &records);
    let read = read_all(&voters[0], TOPIC, PARTITIONS);
    assert_eq!(read.values().map(Vec::len).sum::<usize>(), RECORDS);
    assert!(
        !observer.log().contains("registration refused"),
        "the live node 4 was never refused"
    );

    // The same node 4 killed and restarted at once (a crash, not a second
    // process): it gets its id back once its old process's session is
    // over, and serves (start-up waits for its registration).
    let mut observer = observer;
    observer.stop(Stop::Kill);
    let restarted_at = Instant::now();
    observer.start_again();
    let restarted = restarted_at.elapsed();
    let everyone: BTreeMap<i32, u16> = everyone
        .into_iter()
        .map(|(id, port)| {
            (
                id,
                if id == OBSERVER {
                    observer.address().port()
                } else {
                    port
                },
            )
        })
        .collect();
    wait_for_brokers(
        &consumer,
        &everyone,
        "node 4 registered again at its new port",
    );
    eprintln!(
        "node 4 killed and restarted at once: registered and serving {} ms after the restart",
        restarted.as_millis()
    );
    let read = read_all(&observer, TOPIC, PARTITIONS);
    assert_eq!(read.values().map(Vec::len).sum::<usize>(), RECORDS);
}

fn cluster_id(broker: &TestBroker) -> String {
    broker
        .consumer(&[])
        .client()
        .fetch_cluster_id(METADATA_TIMEOUT)
        .expect("a cluster id")
}

#[test]
fn a_broker_on_another_clusters_data_directory_exits() {
    let (cluster_a, _) = start_voters(1);
    let mut observer = start_observer(&cluster_a, 2, &[]);
    let consumer = cluster_a[0].consumer(&[]);
    wait_for(
        "the observer registered",
        WAIT,
        Duration::from_millis(100),
        || match registered(&consumer) {
            Ok(brokers) if brokers.contains_key(&2) => Ok(()),
            seen => Err(format!("{seen:?}")),
        },
    );
    let a = cluster_id(&cluster_a[0]);
    assert!(
        observer.data_dir().join("meta/cluster-id").exists(),
        "the observer recorded its cluster"
    );
    assert!(observer.stop(Stop::Term), "the observer stopped cleanly");

    let (cluster_b, listed_b) = start_voters(1);
    let b = cluster_id(&cluster_b[0]);
    assert_ne!(a, b);
    let outcome = run_to_exit(
        &[
            "--node-id",
            "2",
            "--controller-voters",
            &listed_b,
            "--data-dir",
            &observer.data_dir().display().to_string(),
        ],
        || {},
    );
    assert_refused(
        &outcome,
        "an observer on cluster A's data joining cluster B",
        &[
            &format!("belongs to cluster {a}"),
            &format!("are of cluster {b}"),
            &listed_b,
        ],
    );
    let consumer_b = cluster_b[0].consumer(&[]);
    assert_eq!(
        registered(&consumer_b).map(|brokers| brokers.into_keys().collect::<Vec<_>>()),
        Ok(vec![1]),
        "cluster B never had it registered"
    );

    // A voter's data directory, for a broker that is not a voter (a voter
    // left out of controller_voters).
    let mut cluster_a = cluster_a;
    assert!(
        cluster_a[0].stop(Stop::Term),
        "voter 1 of A stopped cleanly"
    );
    let voter_dir = cluster_a[0].data_dir();
    let outcome = run_to_exit(
        &[
            "--node-id",
            "5",
            "--controller-voters",
            &listed_b,
            "--data-dir",
            &voter_dir.display().to_string(),
        ],
        || {},
    );
    assert_refused(
        &outcome,
        "a broker that is not a voter on a voter's data",
        &["holds a metadata quorum voter's log", "node 5"],
    );
}
