//! The admin CLI against the real broker: each scenario starts `sluice` on
//! port 0 with its own data directory and runs `sluice topic ...`,
//! `sluice group ...` and `sluice cluster ...` as separate processes, checking their exit status,
//! their human output and that their `--json` output parses.
//!
//! Self-contained on purpose (no `common/` harness): the CLI is a client of
//! any Kafka broker, and these tests only need a broker process to talk to.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;
use sluice_net::client::{Admin, ClientOptions, ConfigResource, ConfigSource};

/// How long the broker may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the broker may take to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound for producing the test messages on a loaded 2-core machine.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for one librdkafka metadata, offsets or config request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The listening line `sluice` prints on stdout once it accepts connections.
const LISTENING_PREFIX: &str = "sluice listening on ";

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// A running broker process and the directory it owns; dropping it stops
/// the broker (SIGTERM, then SIGKILL) and removes the directory.
struct Broker {
    child: Child,
    root: PathBuf,
    address: String,
}

impl Broker {
    fn start() -> Broker {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |time| time.as_nanos());
        let root = std::env::temp_dir().join(format!(
            "sluice-admin-cli-{}-{nanos}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&root).unwrap_or_else(|error| panic!("{}: {error}", root.display()));
        let log = fs::File::create(root.join("broker.log")).expect("create the broker log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--data-dir")
            .arg(root.join("data"))
            .args(["--listen", "127.0.0.1:0", "--shards", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn the sluice broker");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, listening) = mpsc::channel();
        // Reads stdout to its end, so the broker never blocks on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let address = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match listening.recv_timeout(left) {
                Ok(line) => {
                    if let Some(address) = line.strip_prefix(LISTENING_PREFIX) {
                        break address.trim().to_string();
                    }
                }
                Err(_) => {
                    let log = fs::read_to_string(root.join("broker.log")).unwrap_or_default();
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = fs::remove_dir_all(&root);
                    panic!("the broker did not start; its log:\n{log}");
                }
            }
        };
        Broker {
            child,
            root,
            address,
        }
    }

    /// Runs `sluice ARGS --bootstrap ADDRESS`.
    fn cli(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--bootstrap", &self.address]);
        sluice(&all)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process by its pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            let log = fs::read_to_string(self.root.join("broker.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "broker log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// One finished CLI process.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    fn ok(self, what: &str) -> String {
        assert_eq!(
            self.code,
            Some(0),
            "{what}: stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self.stdout
    }

    /// Asserts success and parses stdout as JSON.
    fn json(self, what: &str) -> Value {
        let stdout = self.ok(what);
        serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{what}: {error}:\n{stdout}"))
    }
}

fn sluice(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the sluice CLI");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Produces `count` messages to one partition with librdkafka.
fn produce(address: &str, topic: &str, partition: i32, count: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("message.timeout.ms", "30000")
        .create()
        .expect("create a librdkafka producer");
    for index in 0..count {
        let payload = format!("message {index}");
        let record = BaseRecord::<(), _>::to(topic)
            .partition(partition)
            .payload(&payload);
        if let Err((error, _)) = producer.send(record) {
            panic!("queueing a message failed: {error}");
        }
    }
    producer.flush(PRODUCE_TIMEOUT).expect("flush the producer");
}

/// The partition rows of `topic describe` output, as whitespace-split cells.
fn partition_rows(describe: &str) -> Vec<Vec<String>> {
    describe
        .lines()
        .skip_while(|line| !line.starts_with("PARTITION"))
        .skip(1)
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn topic_lifecycle() {
    let broker = Broker::start();

    let created = broker
        .cli(&["topic", "create", "orders", "--partitions", "3"])
        .ok("create");
    assert_eq!(
        created,
        "Created topic 'orders' with 3 partition(s) and replication factor 1.\n"
    );
    let json = broker.cli(&[
        "topic",
        "create",
        "events",
        "--config",
        "retention.ms=3600000",
        "--json",
    ]);
    let json = json.json("create --json");
    assert_eq!(json["name"], "events");
    assert_eq!(
        json["partitions"], 1,
        "the broker's default partition count"
    );
    assert!(json["topic_id"].is_string(), "{json}");

    // The duplicate is the broker's refusal: one line, exit status 1.
    let duplicate = broker.cli(&["topic", "create", "orders"]);
    assert_eq!(duplicate.code, Some(1));
    assert_eq!(
        duplicate.stderr,
        "sluice: create topic 'orders' failed: TOPIC_ALREADY_EXISTS (36): \
         Topic 'orders' already exists.\n"
    );
    assert!(duplicate.stdout.is_empty());

    let list = broker.cli(&["topic", "list"]).ok("list");
    assert_eq!(
        list,
        "TOPIC   PARTITIONS  REPLICATION-FACTOR\n\
         events  1           1\n\
         orders  3           1\n"
    );
    let json = broker.cli(&["topic", "list", "--json"]).json("list --json");
    let names: Vec<&str> = json["topics"]
        .as_array()
        .expect("topics array")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["events", "orders"]);
    assert_eq!(json["topics"][1]["partitions"], 3);

    produce(&broker.address, "orders", 0, 3);
    produce(&broker.address, "orders", 2, 5);

    let describe = broker.cli(&["topic", "describe", "orders"]).ok("describe");
    assert!(
        describe.starts_with("Topic:              orders\n"),
        "{describe}"
    );
    assert!(describe.contains("Partitions:         3\n"), "{describe}");
    assert!(
        describe.contains("Configs:            (none set on the topic)\n"),
        "{describe}"
    );
    let rows = partition_rows(&describe);
    let offsets: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|row| (row[0].as_str(), row[4].as_str(), row[5].as_str()))
        .collect();
    assert_eq!(
        offsets,
        [("0", "0", "3"), ("1", "0", "0"), ("2", "0", "5")],
        "{describe}"
    );
    // One node: it leads every partition and is the only replica and ISR member.
    assert!(
        rows.iter().all(|row| row[1] == row[2] && row[2] == row[3]),
        "{describe}"
    );

    let json = broker
        .cli(&["topic", "describe", "orders", "--json"])
        .json("describe --json");
    let partitions = json["partitions"].as_array().expect("partitions array");
    assert_eq!(partitions.len(), 3);
    let latest: Vec<i64> = partitions
        .iter()
        .filter_map(|p| p["latest_offset"].as_i64())
        .collect();
    assert_eq!(latest, [3, 0, 5]);
    assert!(partitions
        .iter()
        .all(|p| p["earliest_offset"] == 0 && p["isr"].as_array().is_some()));
    assert_eq!(json["configs"], serde_json::json!({}));

    // Overrides show; defaults inherited from the broker do not.
    let altered = broker
        .cli(&[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=86400000",
            "--set",
            "segment.ms=600000",
        ])
        .ok("alter-config --set");
    assert_eq!(
        altered,
        "Altered configs of topic 'orders': set retention.ms=86400000, segment.ms=600000.\n"
    );
    let describe = broker
        .cli(&["topic", "describe", "orders"])
        .ok("describe after alter");
    assert!(
        describe.contains("Configs:\n    retention.ms = 86400000\n    segment.ms   = 600000\n"),
        "{describe}"
    );
    let json = broker
        .cli(&[
            "topic",
            "alter-config",
            "orders",
            "--delete",
            "segment.ms",
            "--json",
        ])
        .json("alter-config --delete");
    assert_eq!(json["deleted"], serde_json::json!(["segment.ms"]));
    let json = broker
        .cli(&["topic", "describe", "orders", "--json"])
        .json("describe after delete");
    assert_eq!(
        json["configs"],
        serde_json::json!({ "retention.ms": "86400000" })
    );
    // The config given at creation is an override too.
    let json = broker
        .cli(&["topic", "describe", "events", "--json"])
        .json("describe events");
    assert_eq!(
        json["configs"],
        serde_json::json!({ "retention.ms": "3600000" })
    );

    let invalid = broker.cli(&[
        "topic",
        "alter-config",
        "orders",
        "--set",
        "retention.ms=soon",
    ]);
    assert_eq!(invalid.code, Some(1), "{}", invalid.stderr);
    assert!(
        invalid
            .stderr
            .starts_with("sluice: alter configs of topic 'orders' failed: INVALID_CONFIG (40)"),
        "{}",
        invalid.stderr
    );

    assert_eq!(
        broker.cli(&["topic", "delete", "orders"]).ok("delete"),
        "Deleted topic 'orders'.\n"
    );
    let list = broker.cli(&["topic", "list"]).ok("list after delete");
    assert!(!list.contains("orders"), "{list}");
    assert!(list.contains("events"), "{list}");
    let json = broker
        .cli(&["topic", "delete", "events", "--json"])
        .json("delete --json");
    assert_eq!(json["deleted"], "events");
    assert_eq!(
        broker.cli(&["topic", "list"]).ok("empty list"),
        "No topics.\n"
    );
    let json = broker
        .cli(&["topic", "list", "--json"])
        .json("empty list --json");
    assert_eq!(json["topics"], serde_json::json!([]));

    let missing = broker.cli(&["topic", "describe", "orders"]);
    assert_eq!(missing.code, Some(1));
    assert_eq!(
        missing.stderr,
        "sluice: describe topic 'orders' failed: UNKNOWN_TOPIC_OR_PARTITION (3): \
         Topic 'orders' does not exist.\n"
    );
    let missing = broker.cli(&["topic", "delete", "orders"]);
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("UNKNOWN_TOPIC_OR_PARTITION (3)"),
        "{}",
        missing.stderr
    );
}

/// Bound for the group consumer's polls and for the group to settle.
const GROUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The rows of `group describe` for `topic`, as whitespace-split cells.
fn group_rows(describe: &str, topic: &str) -> Vec<Vec<String>> {
    describe
        .lines()
        .skip_while(|line| !line.starts_with("TOPIC"))
        .skip(1)
        .map(|line| {
            line.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|cells| cells.first().map(String::as_str) == Some(topic))
        .collect()
}

/// `(partition, current offset, log end offset, lag)` from `group describe`.
fn group_offsets(describe: &str, topic: &str) -> Vec<(String, String, String, String)> {
    group_rows(describe, topic)
        .into_iter()
        .map(|cells| {
            (
                cells[1].clone(),
                cells[2].clone(),
                cells[3].clone(),
                cells[4].clone(),
            )
        })
        .collect()
}

/// The `GROUP STATE` pairs of `group list`.
fn listed_groups(list: &str) -> Vec<(String, String)> {
    list.lines()
        .skip(1)
        .filter_map(|line| {
            let mut cells = line.split_whitespace();
            Some((cells.next()?.to_string(), cells.next()?.to_string()))
        })
        .collect()
}

#[test]
fn group_commands() {
    let broker = Broker::start();
    broker
        .cli(&["topic", "create", "clicks", "--partitions", "2"])
        .ok("create");
    produce(&broker.address, "clicks", 0, 5);
    produce(&broker.address, "clicks", 1, 3);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", "g1")
        .set("client.id", "cli-test")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("create a librdkafka consumer");
    consumer.subscribe(&["clicks"]).expect("subscribe");
    let deadline = Instant::now() + GROUP_TIMEOUT;
    let mut received = 0;
    while received < 8 {
        assert!(Instant::now() < deadline, "only {received} of 8 messages");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                assert_eq!(message.topic(), "clicks");
                received += 1;
            }
            Some(Err(error)) => panic!("consumer error: {error}"),
            None => {}
        }
    }
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit synchronously");

    // While the consumer is a member, the group is not empty: describe shows
    // it, and the broker refuses a simple commit.
    let live = broker.cli(&["group", "describe", "g1"]).ok("describe live");
    assert!(live.contains("State:          Stable"), "{live}");
    assert!(live.contains("cli-test"), "{live}");
    assert!(live.contains("clicks:0,1"), "{live}");
    let refused = broker.cli(&[
        "group",
        "reset-offsets",
        "g1",
        "--topic",
        "clicks",
        "--to-earliest",
        "--execute",
    ]);
    assert_eq!(refused.code, Some(1), "{}", refused.stdout);
    assert!(
        refused
            .stderr
            .starts_with("sluice: reset offsets of group 'g1' failed: "),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("active members"),
        "{}",
        refused.stderr
    );

    consumer.unsubscribe();
    drop(consumer);
    // Two more messages after the commit: partition 0 lags by 2.
    produce(&broker.address, "clicks", 0, 2);

    let deadline = Instant::now() + GROUP_TIMEOUT;
    loop {
        let list = broker.cli(&["group", "list"]).ok("list");
        if listed_groups(&list).contains(&("g1".to_string(), "Empty".to_string())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "g1 did not become Empty:\n{list}"
        );
        thread::sleep(Duration::from_millis(200));
    }
    let empty_only = broker
        .cli(&["group", "list", "--state", "Empty"])
        .ok("list --state Empty");
    assert!(empty_only.contains("g1"), "{empty_only}");
    let stable_only = broker
        .cli(&["group", "list", "--state", "Stable"])
        .ok("list --state Stable");
    assert!(!stable_only.contains("g1"), "{stable_only}");

    let describe = broker.cli(&["group", "describe", "g1"]).ok("describe");
    assert!(describe.contains("State:          Empty"), "{describe}");
    assert!(describe.contains("Members:        0"), "{describe}");
    let pair = |a: &str, b: &str, c: &str, d: &str| {
        (a.to_string(), b.to_string(), c.to_string(), d.to_string())
    };
    assert_eq!(
        group_offsets(&describe, "clicks"),
        vec![pair("0", "5", "7", "2"), pair("1", "3", "3", "0")],
        "{describe}"
    );

    // Without --execute: only the plan.
    let plan = broker
        .cli(&[
            "group",
            "reset-offsets",
            "g1",
            "--topic",
            "clicks",
            "--to-earliest",
        ])
        .ok("reset dry run");
    assert!(plan.contains("Dry run"), "{plan}");
    let describe = broker.cli(&["group", "describe", "g1"]).ok("describe");
    assert_eq!(
        group_offsets(&describe, "clicks"),
        vec![pair("0", "5", "7", "2"), pair("1", "3", "3", "0")],
        "{describe}"
    );

    let reset = broker
        .cli(&[
            "group",
            "reset-offsets",
            "g1",
            "--topic",
            "clicks",
            "--to-earliest",
            "--execute",
        ])
        .ok("reset");
    assert!(reset.contains("Committed the new offsets"), "{reset}");
    let describe = broker.cli(&["group", "describe", "g1"]).ok("describe");
    assert_eq!(
        group_offsets(&describe, "clicks"),
        vec![pair("0", "0", "7", "7"), pair("1", "0", "3", "3")],
        "{describe}"
    );

    let to_offset = broker
        .cli(&[
            "group",
            "reset-offsets",
            "g1",
            "--topic",
            "clicks",
            "--to-offset",
            "4",
            "--execute",
            "--json",
        ])
        .json("reset --to-offset --json");
    assert_eq!(to_offset["executed"], true, "{to_offset}");
    // Clamped to partition 1's log end offset.
    let new_offsets: Vec<i64> = to_offset["partitions"]
        .as_array()
        .expect("partitions array")
        .iter()
        .map(|partition| partition["new_offset"].as_i64().expect("new_offset"))
        .collect();
    assert_eq!(new_offsets, [4, 3], "{to_offset}");

    let json = broker
        .cli(&["group", "describe", "g1", "--json"])
        .json("describe --json");
    assert_eq!(json["group_id"], "g1");
    assert_eq!(json["state"], "Empty");
    assert_eq!(json["members"].as_array().map(Vec::len), Some(0), "{json}");
    let offsets = json["offsets"].as_array().expect("offsets array");
    assert_eq!(offsets.len(), 2, "{json}");
    assert_eq!(offsets[0]["topic"], "clicks");
    assert_eq!(offsets[0]["committed_offset"], 4);
    assert_eq!(offsets[0]["log_end_offset"], 7);
    assert_eq!(offsets[0]["lag"], 3);
    assert_eq!(offsets[1]["committed_offset"], 3);
    assert_eq!(offsets[1]["lag"], 0);
    let list = broker.cli(&["group", "list", "--json"]).json("list --json");
    let groups = list["groups"].as_array().expect("groups array");
    assert!(
        groups
            .iter()
            .any(|group| group["group_id"] == "g1" && group["state"] == "Empty"),
        "{list}"
    );

    let deleted = broker.cli(&["group", "delete", "g1"]).ok("delete");
    assert_eq!(deleted, "Deleted group 'g1'.\n");
    let list = broker.cli(&["group", "list"]).ok("list after delete");
    assert!(
        !listed_groups(&list).iter().any(|(group, _)| group == "g1"),
        "{list}"
    );
    let missing = broker.cli(&["group", "describe", "g1"]);
    assert_eq!(missing.code, Some(1), "{}", missing.stdout);
}

#[test]
fn cluster_info() {
    let broker = Broker::start();
    let port = broker
        .address
        .rsplit_once(':')
        .map(|(_, port)| port.to_string())
        .expect("port");

    let info = broker.cli(&["cluster", "info"]).ok("cluster info");
    let lines: Vec<&str> = info.lines().collect();
    assert!(
        lines[0].starts_with("Cluster id:  ") && lines[0].len() > "Cluster id:  ".len(),
        "{info}"
    );
    assert!(lines[1].starts_with("Controller:  "), "{info}");
    assert_eq!(lines[2], "Brokers:     1");
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        ["BROKER", "HOST", "PORT", "RACK", "ROLE"]
    );
    let row: Vec<&str> = lines[5].split_whitespace().collect();
    assert_eq!(
        row[1..],
        ["127.0.0.1", port.as_str(), "-", "controller"],
        "{info}"
    );

    let json = broker
        .cli(&["cluster", "info", "--json"])
        .json("cluster info --json");
    let cluster_id = json["cluster_id"].as_str().expect("cluster id");
    assert!(lines[0].ends_with(cluster_id), "{info} vs {json}");
    let brokers = json["brokers"].as_array().expect("brokers array");
    assert_eq!(brokers.len(), 1);
    assert_eq!(brokers[0]["host"], "127.0.0.1");
    assert_eq!(
        brokers[0]["port"].as_i64().map(|port| port.to_string()),
        Some(port)
    );
    assert_eq!(json["controller_id"], brokers[0]["node_id"]);

    // A bootstrap list, as Kafka's tools take: a broker that is not there
    // is passed over for the next one.
    // A port that was free a moment ago: nobody listens there.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let listed = format!("127.0.0.1:{gone},{}", broker.address);
    let again =
        sluice(&["cluster", "info", "--json", "--bootstrap", &listed]).json("a bootstrap list");
    assert_eq!(again["cluster_id"], json["cluster_id"]);
    let nobody = format!("127.0.0.1:{gone}, 127.0.0.1:{gone}");
    let run = sluice(&["cluster", "info", "--bootstrap", &nobody]);
    assert_eq!(run.code, Some(1), "nobody listening: {}", run.stderr);

    // The library under the CLI: a broker's own configs, asked of that broker.
    let mut admin = Admin::connect(&broker.address, ClientOptions::default()).expect("connect");
    let node_id = json["controller_id"].as_i64().expect("controller id") as i32;
    let configs = admin
        .describe_configs(&ConfigResource::Broker(node_id))
        .expect("broker configs");
    let retention = configs
        .iter()
        .find(|entry| entry.name == "log.retention.ms")
        .expect("log.retention.ms");
    // Not set by the test's flags: Kafka's default, as Kafka reports it.
    assert_eq!(retention.source, ConfigSource::Default);
    assert_eq!(retention.value.as_deref(), Some("604800000"));
    let data_dir = configs
        .iter()
        .find(|entry| entry.name == "log.dirs")
        .expect("log.dirs");
    assert_eq!(data_dir.source, ConfigSource::StaticBroker);
}

#[test]
fn usage_errors_and_unreachable_brokers() {
    for args in [
        &["topic"][..],
        &["topic", "create"],
        &["topic", "create", "a", "--partitions", "zero"],
        &["topic", "alter-config", "a"],
        &["topic", "list", "--frobnicate", "1"],
        &["topic", "trim", "a", "--before", "1"],
        &["topic", "trim", "a", "--partition", "0"],
        &[
            "topic",
            "trim",
            "a",
            "--partition",
            "0",
            "--all-partitions",
            "--before",
            "1",
        ],
        &["topic", "alter-config", "a", "--append", "cleanup.policy"],
        &["cluster", "status"],
    ] {
        let run = sluice(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("sluice: "),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("--help"),
            "{args:?}: no pointer to the usage: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
    }
    let help = sluice(&["--help"]).ok("--help");
    assert!(
        help.contains("topic")
            && help.contains("completions")
            && help.contains("Settings:")
            && help.contains("--data-dir"),
        "{help}"
    );
    let help = sluice(&["topic", "--help"]).ok("topic --help");
    assert!(help.starts_with("Topics of a running broker"), "{help}");
    assert!(help.contains("create") && help.contains("trim"), "{help}");
    let help = sluice(&["topic", "trim", "--help"]).ok("topic trim --help");
    assert!(
        help.contains("Usage: sluice topic trim") && help.contains("--all-partitions"),
        "{help}"
    );
    let typo = sluice(&["topci", "list"]);
    assert_eq!(typo.code, Some(2));
    assert!(
        typo.stderr.contains("similar subcommand exists: 'topic'"),
        "{}",
        typo.stderr
    );

    // Port 1 on loopback: nothing listens there.
    let run = sluice(&["topic", "list", "--bootstrap", "127.0.0.1:1"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .starts_with("sluice: list topics failed: cannot connect to 127.0.0.1:1: "),
        "{}",
        run.stderr
    );
}

/// The earliest and latest offsets of a partition, as librdkafka reads them.
fn watermarks(address: &str, topic: &str, partition: i32) -> (i64, i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .create()
        .expect("create a librdkafka consumer");
    consumer
        .fetch_watermarks(topic, partition, CLIENT_TIMEOUT)
        .expect("fetch the watermarks")
}

/// The offset and payload of the first record a librdkafka consumer reads
/// when it starts a partition from the beginning.
fn first_record(address: &str, topic: &str, partition: i32) -> (i64, String) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("group.id", "trim-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("create a librdkafka consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Beginning)
        .expect("assign from the beginning");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "no record from {topic}-{partition}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let payload = message
                    .payload_view::<str>()
                    .and_then(Result::ok)
                    .unwrap_or_default()
                    .to_string();
                return (message.offset(), payload);
            }
            Some(Err(error)) => panic!("consumer error: {error}"),
            None => {}
        }
    }
}

#[test]
fn topic_trim() {
    let broker = Broker::start();
    broker
        .cli(&["topic", "create", "trimmed", "--partitions", "2"])
        .ok("create");
    produce(&broker.address, "trimmed", 0, 10);
    produce(&broker.address, "trimmed", 1, 4);

    let trimmed = broker
        .cli(&[
            "topic",
            "trim",
            "trimmed",
            "--partition",
            "0",
            "--before",
            "6",
        ])
        .ok("trim partition 0");
    assert_eq!(
        trimmed,
        "Trimmed topic 'trimmed'; each partition now starts at:\n\
         PARTITION  LOW-WATERMARK\n\
         0          6\n"
    );
    assert_eq!(watermarks(&broker.address, "trimmed", 0), (6, 10));
    assert_eq!(
        watermarks(&broker.address, "trimmed", 1),
        (0, 4),
        "the other partition is untouched"
    );
    assert_eq!(
        first_record(&broker.address, "trimmed", 0),
        (6, "message 6".to_string())
    );
    let describe = broker.cli(&["topic", "describe", "trimmed"]).ok("describe");
    let earliest: Vec<(String, String)> = partition_rows(&describe)
        .iter()
        .map(|row| (row[4].clone(), row[5].clone()))
        .collect();
    assert_eq!(
        earliest,
        [("6".into(), "10".into()), ("0".into(), "4".into())],
        "{describe}"
    );

    // Several partitions, one refused: every result is printed, then the
    // error, and the refused partition keeps its records.
    let partly = broker.cli(&[
        "topic",
        "trim",
        "trimmed",
        "--all-partitions",
        "--before",
        "8",
    ]);
    assert_eq!(partly.code, Some(1), "{}", partly.stderr);
    let rows: Vec<Vec<&str>> = partly
        .stdout
        .lines()
        .skip(2)
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["0", "8"], "{}", partly.stdout);
    assert_eq!(
        rows[1][..3],
        ["1", "-", "OFFSET_OUT_OF_RANGE"],
        "{}",
        partly.stdout
    );
    assert_eq!(
        partly.stderr,
        "sluice: trim topic 'trimmed' failed: OFFSET_OUT_OF_RANGE (1): 1 of 2 partition(s) \
         refused; the first, partition 1: offset 8 is past partition 1's high watermark 4; \
         records can be removed up to the high watermark only\n"
    );
    assert_eq!(watermarks(&broker.address, "trimmed", 0), (8, 10));
    assert_eq!(watermarks(&broker.address, "trimmed", 1), (0, 4));

    // One partition refused: one line, nothing on stdout.
    let past = broker.cli(&[
        "topic",
        "trim",
        "trimmed",
        "--partition",
        "0",
        "--before",
        "11",
    ]);
    assert_eq!(past.code, Some(1));
    assert!(past.stdout.is_empty(), "{}", past.stdout);
    assert_eq!(
        past.stderr,
        "sluice: trim topic 'trimmed' failed: OFFSET_OUT_OF_RANGE (1): offset 11 is past \
         partition 0's high watermark 10; records can be removed up to the high watermark \
         only\n"
    );
    let unknown = broker.cli(&[
        "topic",
        "trim",
        "trimmed",
        "--partition",
        "5",
        "--before",
        "1",
    ]);
    assert_eq!(unknown.code, Some(1));
    assert_eq!(
        unknown.stderr,
        "sluice: trim topic 'trimmed' failed: UNKNOWN_TOPIC_OR_PARTITION (3): \
         Topic 'trimmed' has no partition 5 (it has 2).\n"
    );
    let missing = broker.cli(&[
        "topic",
        "trim",
        "nothing",
        "--partition",
        "0",
        "--before",
        "1",
    ]);
    assert_eq!(missing.code, Some(1));
    assert_eq!(
        missing.stderr,
        "sluice: trim topic 'nothing' failed: UNKNOWN_TOPIC_OR_PARTITION (3): \
         Topic 'nothing' does not exist.\n"
    );
    // Port 1 on loopback: nothing listens there.
    let unreachable = sluice(&[
        "topic",
        "trim",
        "trimmed",
        "--partition",
        "0",
        "--before",
        "1",
        "--bootstrap",
        "127.0.0.1:1",
    ]);
    assert_eq!(unreachable.code, Some(1));
    assert!(
        unreachable
            .stderr
            .starts_with("sluice: trim topic 'trimmed' failed: cannot connect to 127.0.0.1:1: "),
        "{}",
        unreachable.stderr
    );
    assert_eq!(
        unreachable.stderr.lines().count(),
        1,
        "{}",
        unreachable.stderr
    );
    assert_eq!(watermarks(&broker.address, "trimmed", 0), (8, 10));

    // Everything written so far, on every partition.
    let json = broker
        .cli(&[
            "topic",
            "trim",
            "trimmed",
            "--all-partitions",
            "--before",
            "latest",
            "--json",
        ])
        .json("trim --before latest");
    assert_eq!(
        json,
        serde_json::json!({
            "topic": "trimmed",
            "partitions": [
                { "partition": 0, "low_watermark": 10, "error": null },
                { "partition": 1, "low_watermark": 4, "error": null },
            ],
        })
    );
    assert_eq!(watermarks(&broker.address, "trimmed", 0), (10, 10));
    assert_eq!(watermarks(&broker.address, "trimmed", 1), (4, 4));
    let json = broker
        .cli(&["topic", "describe", "trimmed", "--json"])
        .json("describe --json");
    let earliest: Vec<i64> = json["partitions"]
        .as_array()
        .expect("partitions array")
        .iter()
        .filter_map(|partition| partition["earliest_offset"].as_i64())
        .collect();
    assert_eq!(earliest, [10, 4]);
}

/// `cleanup.policy` as librdkafka's DescribeConfigs reports it, with
/// whether it is the topic's own value.
fn cleanup_policy(admin: &AdminClient<DefaultClientContext>, topic: &str) -> (String, bool) {
    let options = AdminOptions::new().request_timeout(Some(CLIENT_TIMEOUT));
    let described = futures_lite::future::block_on(
        admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options),
    )
    .expect("DescribeConfigs");
    let resource = described[0].as_ref().expect("the topic described");
    let entry = resource.get("cleanup.policy").expect("cleanup.policy");
    (
        entry.value.clone().unwrap_or_default(),
        entry.source == rdkafka::admin::ConfigSource::DynamicTopic,
    )
}

/// APPEND and SUBTRACT (IncrementalAlterConfigs operations 2 and 3) on the
/// list config `cleanup.policy`, sent by the CLI and read back by
/// librdkafka: they start from Kafka's default, never repeat an item, are
/// refused on configs that are not lists and when they would leave an
/// empty list.
#[test]
fn list_configs_append_and_subtract() {
    let broker = Broker::start();
    broker.cli(&["topic", "create", "policies"]).ok("create");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .expect("create a librdkafka admin client");
    assert_eq!(cleanup_policy(&admin, "policies"), ("delete".into(), false));

    let alter = |args: &[&str]| {
        let mut all = vec!["topic", "alter-config", "policies"];
        all.extend(args);
        broker.cli(&all)
    };
    assert_eq!(
        alter(&["--append", "cleanup.policy=compact"]).ok("append"),
        "Altered configs of topic 'policies': appended compact to cleanup.policy.\n"
    );
    assert_eq!(
        cleanup_policy(&admin, "policies"),
        ("delete,compact".into(), true),
        "appended to Kafka's default"
    );
    let json = alter(&["--subtract", "cleanup.policy=delete", "--json"]).json("subtract");
    assert_eq!(
        json["subtracted"],
        serde_json::json!({ "cleanup.policy": "delete" })
    );
    assert_eq!(cleanup_policy(&admin, "policies"), ("compact".into(), true));
    alter(&["--append", "cleanup.policy=compact"]).ok("append what is there");
    assert_eq!(cleanup_policy(&admin, "policies"), ("compact".into(), true));

    // A compact-only topic keeps its records for their keys: no trimming.
    let kept = broker.cli(&[
        "topic",
        "trim",
        "policies",
        "--partition",
        "0",
        "--before",
        "0",
    ]);
    assert_eq!(kept.code, Some(1));
    assert!(
        kept.stderr
            .starts_with("sluice: trim topic 'policies' failed: POLICY_VIOLATION (44): "),
        "{}",
        kept.stderr
    );

    for (args, why) in [
        (
            &["--subtract", "cleanup.policy=compact"][..],
            "cannot be an empty list",
        ),
        (
            &["--append", "cleanup.policy=shred"],
            "'shred' is not one of delete, compact",
        ),
        (&["--append", "retention.ms=1000"], "not a list config"),
        (&["--subtract", "no.such.config=1"], "unknown topic config"),
    ] {
        let refused = alter(args);
        assert_eq!(refused.code, Some(1), "{args:?}: {}", refused.stdout);
        assert!(
            refused.stderr.starts_with(
                "sluice: alter configs of topic 'policies' failed: INVALID_CONFIG (40): "
            ) && refused.stderr.contains(why),
            "{args:?}: {}",
            refused.stderr
        );
        assert_eq!(
            cleanup_policy(&admin, "policies"),
            ("compact".into(), true),
            "{args:?} changed nothing"
        );
    }

    // Several items at once, in the order given, after those already there.
    alter(&["--append", "cleanup.policy=delete,compact"]).ok("append two");
    assert_eq!(
        cleanup_policy(&admin, "policies"),
        ("compact,delete".into(), true)
    );
}
