//! ACLs and SCRAM credentials live in the metadata log, so every broker
//! of a cluster authorizes alike and knows the same users. Three `sluice` processes with the ACL authorizer: an ACL made
//! through one broker is listed by every broker and refuses librdkafka's
//! writes to every partition, whichever broker leads it; a broker killed
//! with kill -9 has the ACLs again when it is back; an ACL removed through
//! another broker stops refusing everywhere. A single broker's ACL file
//! from before the metadata log held ACLs is moved into the log at start,
//! once: an ACL deleted afterwards stays deleted across restarts. A user
//! created through one broker of a cluster is listed by every broker, also
//! by one killed and started again, and a deletion through another broker
//! removes it everywhere.

mod common;

use std::time::Duration;

use common::{
    cli, create_replicated_topic, start_cluster_with, wait_until, Record, Stop, TestBroker,
    TrackedProducer,
};
use sluice_net::acl::{
    AclBinding, AclStore, Operation, PatternType, Permission, ResourceType, ACLS_FILE,
    ACLS_FILE_IMPORTED,
};

const NODES: usize = 3;
const PARTITIONS: i32 = 3;
const SECRET: &str = "secret";
const OPEN: &str = "open";
/// Without SASL every client, and every broker fetching from another, is
/// this principal.
const ANONYMOUS: &str = "User:ANONYMOUS";
/// ACLs reach the brokers that did not make them as they apply the log.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a refused producer is given: librdkafka fails the messages as
/// soon as the leader refuses the topic.
const REFUSAL_TIMEOUT_MS: &str = "10000";

/// Every broker opens what no ACL names; `secret` gets its own ACLs.
const AUTHORIZER_ARGS: [&str; 4] = [
    "--authorizer",
    "acl",
    "--allow-everyone-if-no-acl-found",
    "true",
];

/// ALLOW everything on `secret`, then DENY WRITE, which wins.
fn secret_acls() -> [Vec<&'static str>; 2] {
    [
        vec![
            "acl",
            "add",
            "--allow-principal",
            ANONYMOUS,
            "--operation",
            "All",
            "--topic",
            SECRET,
        ],
        deny_write("add"),
    ]
}

fn deny_write(action: &'static str) -> Vec<&'static str> {
    vec![
        "acl",
        action,
        "--deny-principal",
        ANONYMOUS,
        "--operation",
        "Write",
        "--topic",
        SECRET,
    ]
}

/// The ACL lines `sluice acl list` prints through `broker`.
fn listed(broker: &TestBroker) -> Vec<String> {
    cli(broker, &["acl", "list"])
        .lines()
        .filter(|line| !line.starts_with("PRINCIPAL") && !line.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// One record to each partition of `topic` through `broker`: each
/// partition's delivery report.
fn write_each_partition(broker: &TestBroker, topic: &str) -> Vec<Result<(i32, i64), String>> {
    let mut producer =
        TrackedProducer::new(broker, topic, &[("message.timeout.ms", REFUSAL_TIMEOUT_MS)]);
    for partition in 0..PARTITIONS {
        producer.send(&Record::with_value(
            partition,
            format!("{topic}-{partition}").into_bytes(),
        ));
    }
    producer.flush();
    producer.outcomes()
}

fn all_refused(reports: &[Result<(i32, i64), String>]) -> bool {
    reports.len() == PARTITIONS as usize
        && reports.iter().all(|report| {
            report
                .as_ref()
                .is_err_and(|error| error.contains("TopicAuthorizationFailed"))
        })
}

fn create_replicated(broker: &TestBroker, name: &str) {
    create_replicated_topic(&broker.admin(), name, PARTITIONS, NODES as i32, &[]);
}

#[test]
fn acls_made_through_one_broker_hold_on_every_broker() {
    let mut brokers = start_cluster_with(NODES, &AUTHORIZER_ARGS);
    create_replicated(&brokers[0], SECRET);
    create_replicated(&brokers[0], OPEN);
    for args in secret_acls() {
        cli(&brokers[0], &args);
    }
    for broker in &brokers {
        wait_until("every broker lists both ACLs", PROPAGATION_TIMEOUT, || {
            listed(broker).len() == 2
        });
    }
    // Each partition's leader refuses the write, whichever broker the
    // producer started from; a topic without ACLs takes them.
    for broker in &brokers {
        wait_until(
            "every leader refuses writes to the secret topic",
            PROPAGATION_TIMEOUT,
            || all_refused(&write_each_partition(broker, SECRET)),
        );
        let open = write_each_partition(broker, OPEN);
        assert!(open.iter().all(Result::is_ok), "{open:?}");
    }

    // A broker killed and started again has the ACLs from the log.
    brokers[2].restart(Stop::Kill);
    wait_until(
        "the restarted broker lists both ACLs",
        PROPAGATION_TIMEOUT,
        || listed(&brokers[2]).len() == 2,
    );

    // Removed through the restarted broker, the DENY stops refusing on
    // every broker.
    let removed = cli(&brokers[2], &deny_write("remove"));
    assert!(
        removed.contains("removed DENY WRITE TOPIC:secret"),
        "{removed}"
    );
    for broker in &brokers {
        wait_until(
            "every leader takes writes to the secret topic again",
            PROPAGATION_TIMEOUT,
            || {
                write_each_partition(broker, SECRET)
                    .iter()
                    .all(Result::is_ok)
            },
        );
        assert_eq!(listed(broker).len(), 1);
    }
}

#[test]
fn a_single_brokers_acl_file_moves_into_the_metadata_log_once() {
    let deny = AclBinding {
        resource_type: ResourceType::Topic,
        pattern_type: PatternType::Literal,
        resource_name: SECRET.into(),
        principal: ANONYMOUS.into(),
        host: "*".into(),
        operation: Operation::Write,
        permission: Permission::Deny,
    };
    let allow = AclBinding {
        operation: Operation::All,
        permission: Permission::Allow,
        ..deny.clone()
    };
    // A data directory as an older broker left it: stopped, with an ACL
    // file beside its metadata.
    let mut broker = TestBroker::start_with(&AUTHORIZER_ARGS);
    broker.create_topic(SECRET, PARTITIONS);
    broker.stop(Stop::Term);
    let mut store = AclStore::default();
    store.insert(allow);
    store.insert(deny);
    store
        .save(&broker.data_dir())
        .expect("writing an old ACL file");
    broker.start_again();
    let data_dir = broker.data_dir();
    assert_eq!(listed(&broker).len(), 2);
    assert!(!data_dir.join(ACLS_FILE).exists());
    assert!(data_dir.join(ACLS_FILE_IMPORTED).exists());
    assert!(all_refused(&write_each_partition(&broker, SECRET)));

    // Deleted, the DENY stays deleted after a crash: the renamed file is
    // not read again.
    cli(&broker, &deny_write("remove"));
    broker.restart(Stop::Kill);
    let after = listed(&broker);
    assert_eq!(after.len(), 1, "{after:?}");
    let reports = write_each_partition(&broker, SECRET);
    assert!(reports.iter().all(Result::is_ok), "{reports:?}");
}

/// The users `sluice user list` prints through `broker`.
fn users(broker: &TestBroker) -> Vec<String> {
    cli(broker, &["user", "list"])
        .lines()
        .filter(|line| !line.starts_with("USER") && *line != "No users." && !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn a_user_made_through_one_broker_is_known_to_every_broker() {
    // Without an authorizer only super users manage credentials; every
    // plaintext client is ANONYMOUS.
    let mut brokers = start_cluster_with(NODES, &["--super-users", ANONYMOUS]);
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["user", "create", "--user", "alice", "--bootstrap-server"])
        .arg(brokers[0].bootstrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin is piped")
                .write_all(b"alice-secret-1\n")?;
            child.wait_with_output()
        })
        .expect("running sluice user create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    for broker in &brokers {
        wait_until("every broker knows alice", PROPAGATION_TIMEOUT, || {
            users(broker) == ["alice"]
        });
    }
    brokers[1].restart(Stop::Kill);
    wait_until(
        "the restarted broker knows alice",
        PROPAGATION_TIMEOUT,
        || users(&brokers[1]) == ["alice"],
    );
    let deleted = cli(&brokers[2], &["user", "delete", "--user", "alice"]);
    assert!(deleted.contains("removed the"), "{deleted}");
    for broker in &brokers {
        wait_until("no broker knows alice", PROPAGATION_TIMEOUT, || {
            users(broker).is_empty()
        });
    }
}
