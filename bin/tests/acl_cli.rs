//! The security CLI against a real broker: a SASL_PLAINTEXT broker with
//! `--authorizer acl` and `admin` as its super user (made offline). With
//! `--command-config` files as admin, the `sluice` CLI creates a user
//! online, grants it ACLs, lists them; librdkafka logged in as that user
//! then writes and reads what the ACLs allow and is refused elsewhere, and
//! refused again once an ACL is removed. A wrong password gives one line
//! and a non-zero exit, a user without ALTER on the cluster gets
//! CLUSTER_AUTHORIZATION_FAILED, and a user deleted online can no longer
//! log in.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{
    consume, plain_login, raw_connect, raw_metadata, Record, TestBroker, TrackedProducer,
    CLIENT_TIMEOUT,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::Offset;
use serde_json::Value;

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret-Tq58";
const ALICE: &str = "alice";
const ALICE_PASSWORD: &str = "alice-secret-Rm31";
const WRONG_PASSWORD: &str = "not-the-password-Hb07";
/// A user made offline and granted nothing.
const CAROL: &str = "carol";
const CAROL_PASSWORD: &str = "carol-secret-Wd44";
const OFFSETS_TOPIC: &str = "__consumer_offsets";
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
/// The topic alice is granted, one she is not, and her consumer group.
const GRANTED: &str = "granted";
const OTHER: &str = "other";
const ALICE_GROUP: &str = "alice-group";
const PARTITIONS: i32 = 2;
const RECORDS: usize = 50;
/// How long a refused producer is given to see its refusal: librdkafka
/// fails the messages as soon as the broker refuses the topic.
const REFUSAL_TIMEOUT_MS: &str = "20000";

/// The binary the tests run, as the harness starts it.
fn sluice_binary() -> PathBuf {
    std::env::var_os("SLUICE_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice")))
}

/// What one run of the CLI did.
struct Run {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// Fails the test unless the run succeeded; returns stdout.
    fn ok(self) -> String {
        assert!(self.success, "the command failed: {}", self.describe());
        self.stdout
    }

    /// Fails the test unless the run failed with status 1 and one line on
    /// stderr; returns that line.
    fn one_line_failure(self) -> String {
        assert!(!self.success, "the command succeeded: {}", self.describe());
        assert_eq!(self.code, Some(1), "{}", self.describe());
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "not one line: {}", self.describe());
        lines[0].to_string()
    }
}

/// Runs `sluice ARGS` with `stdin` as its input. The child is waited for
/// before this returns, so none outlives the test.
fn sluice(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(sluice_binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running sluice");
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes());
    let output = child.wait_with_output().expect("waiting for sluice");
    // A command that does not read stdin may close it first.
    drop(written);
    Run {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `sluice GROUP ACTION ... --bootstrap-server B --command-config CONFIG`.
fn sluice_as(broker: &TestBroker, config: &Path, args: &[&str], stdin: &str) -> Run {
    let bootstrap = broker.bootstrap();
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "--bootstrap-server",
        &bootstrap,
        "--command-config",
        config.to_str().expect("a UTF-8 path"),
    ]);
    sluice(&all, stdin)
}

fn start_broker() -> TestBroker {
    start_broker_with_users(&[(ADMIN, ADMIN_PASSWORD)])
}

/// The broker of [`start_broker`], with these users made offline.
fn start_broker_with_users(users: &[(&str, &str)]) -> TestBroker {
    TestBroker::start_prepared(
        None,
        &[
            "--listener-security-protocol",
            "SASL_PLAINTEXT",
            "--super-users",
            "User:admin",
            "--authorizer",
            "acl",
        ],
        |data_dir| {
            let dir = data_dir.to_str().expect("a UTF-8 path");
            for (user, password) in users {
                let run = sluice(
                    &["user", "create", "--data-dir", dir, "--user", user],
                    &format!("{password}\n"),
                );
                run.ok();
            }
        },
    )
}

/// A command config in Kafka's form: SCRAM through `sasl.jaas.config`.
fn kafka_config(path: &Path, mechanism: &str, user: &str, password: &str) {
    let text = format!(
        "# written by the acl_cli test\n\
         security.protocol=SASL_PLAINTEXT\n\
         sasl.mechanism={mechanism}\n\
         sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n    \
         username=\"{user}\" \\\n    password=\"{password}\";\n\
         client.id=ignored-by-sluice\n"
    );
    std::fs::write(path, text).expect("writing a command config");
}

/// A command config in librdkafka's form.
fn librdkafka_config(path: &Path, mechanism: &str, user: &str, password: &str) {
    let text = format!(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism={mechanism}\n\
         sasl.username={user}\nsasl.password={password}\n"
    );
    std::fs::write(path, text).expect("writing a command config");
}

/// librdkafka settings of alice.
fn alice_config(broker: &TestBroker) -> ClientConfig {
    let mut config = broker.client_config();
    config
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "SCRAM-SHA-256")
        .set("sasl.username", ALICE)
        .set("sasl.password", ALICE_PASSWORD);
    config
}

/// Produces `RECORDS` records to `topic` as alice; the delivery reports.
fn produce_as_alice(broker: &TestBroker, topic: &str) -> Vec<Result<(i32, i64), String>> {
    let mut producer = TrackedProducer::new(
        broker,
        topic,
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", ALICE),
            ("sasl.password", ALICE_PASSWORD),
            ("message.timeout.ms", REFUSAL_TIMEOUT_MS),
        ],
    );
    for index in 0..RECORDS {
        producer.send(&Record::with_value(
            -1,
            format!("{topic}-{index}").into_bytes(),
        ));
    }
    producer.flush();
    producer.outcomes()
}

fn acl_lines(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter(|line| !line.starts_with("PRINCIPAL"))
        .collect()
}

#[test]
fn the_security_cli_manages_users_and_acls_that_librdkafka_meets() {
    let broker = start_broker();
    let root = broker.root().to_path_buf();
    let admin = root.join("admin.properties");
    kafka_config(&admin, "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD);

    // A user created online, with the password on stdin, listed with both
    // mechanisms at the default iteration count.
    let created = sluice_as(
        &broker,
        &admin,
        &["user", "create", "--user", ALICE, "--password-stdin"],
        &format!("{ALICE_PASSWORD}\n"),
    )
    .ok();
    assert!(
        created.contains("SCRAM-SHA-256 and SCRAM-SHA-512") && created.contains("4096"),
        "{created}"
    );
    assert!(!created.contains(ALICE_PASSWORD));
    let users: Value =
        serde_json::from_str(&sluice_as(&broker, &admin, &["user", "list", "--json"], "").ok())
            .expect("user list --json prints JSON");
    let alice = users["users"]
        .as_array()
        .and_then(|users| users.iter().find(|user| user["user"] == ALICE))
        .unwrap_or_else(|| panic!("alice is not listed: {users}"));
    let mechanisms: Vec<(&str, u64)> = alice["credentials"]
        .as_array()
        .expect("credentials")
        .iter()
        .map(|c| {
            (
                c["mechanism"].as_str().unwrap_or_default(),
                c["iterations"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        mechanisms,
        [("SCRAM-SHA-256", 4096), ("SCRAM-SHA-512", 4096)]
    );

    // Topics made by the super user through the CLI's own SASL login.
    for topic in [GRANTED, OTHER] {
        sluice_as(
            &broker,
            &admin,
            &[
                "topic",
                "create",
                topic,
                "--partitions",
                &PARTITIONS.to_string(),
            ],
            "",
        )
        .ok();
    }

    // alice may write and read `granted`, and read with her group.
    let added = sluice_as(
        &broker,
        &admin,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--operation",
            "Read",
            "--topic",
            GRANTED,
        ],
        "",
    )
    .ok();
    assert_eq!(
        added.lines().filter(|l| l.starts_with("added ")).count(),
        2,
        "{added}"
    );
    sluice_as(
        &broker,
        &admin,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--group",
            ALICE_GROUP,
        ],
        "",
    )
    .ok();
    let listed = sluice_as(&broker, &admin, &["acl", "list", "--topic", GRANTED], "").ok();
    let lines = acl_lines(&listed);
    assert_eq!(lines.len(), 2, "{listed}");
    for operation in ["READ", "WRITE"] {
        assert!(
            lines.iter().any(|line| {
                let columns: Vec<&str> = line.split_whitespace().collect();
                columns
                    == [
                        "User:alice",
                        "*",
                        "ALLOW",
                        operation,
                        "TOPIC",
                        GRANTED,
                        "LITERAL",
                    ]
            }),
            "no {operation} line in:\n{listed}"
        );
    }
    let everything = sluice_as(&broker, &admin, &["acl", "list"], "").ok();
    assert_eq!(acl_lines(&everything).len(), 3, "{everything}");

    // librdkafka as alice: `granted` takes her records and gives them back.
    let delivered = produce_as_alice(&broker, GRANTED);
    assert!(
        delivered.iter().all(Result::is_ok),
        "deliveries to the granted topic: {delivered:?}"
    );
    let mut config = alice_config(&broker);
    config
        .set("group.id", ALICE_GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = config.create().expect("alice's consumer");
    let read = consume(
        &consumer,
        GRANTED,
        &(0..PARTITIONS).collect::<Vec<_>>(),
        Offset::Beginning,
        CLIENT_TIMEOUT,
        |records| records.len() >= RECORDS,
    );
    let mut values: Vec<String> = read
        .iter()
        .map(|record| String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into())
        .collect();
    values.sort();
    let mut expected: Vec<String> = (0..RECORDS).map(|i| format!("{GRANTED}-{i}")).collect();
    expected.sort();
    assert_eq!(values, expected);
    drop(consumer);

    // ... and `other` refuses her.
    let refused = produce_as_alice(&broker, OTHER);
    assert!(
        refused.iter().all(|report| report
            .as_ref()
            .is_err_and(|e| e.contains("TopicAuthorizationFailed"))),
        "deliveries to a topic without an ACL: {refused:?}"
    );

    // Without the WRITE ACL, `granted` refuses her writes too.
    let removed = sluice_as(
        &broker,
        &admin,
        &[
            "acl",
            "remove",
            "--topic",
            GRANTED,
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
        ],
        "",
    )
    .ok();
    assert_eq!(
        removed.trim(),
        format!("removed ALLOW WRITE TOPIC:{GRANTED} for User:alice from * (LITERAL)"),
    );
    let listed = sluice_as(&broker, &admin, &["acl", "list", "--topic", GRANTED], "").ok();
    assert_eq!(acl_lines(&listed).len(), 1, "{listed}");
    let refused = produce_as_alice(&broker, GRANTED);
    assert!(
        refused.iter().all(|report| report
            .as_ref()
            .is_err_and(|e| e.contains("TopicAuthorizationFailed"))),
        "deliveries after the WRITE ACL was removed: {refused:?}"
    );

    // A wrong password: status 1, one line that says who and why, and
    // not the password.
    let wrong = root.join("wrong.properties");
    librdkafka_config(&wrong, "SCRAM-SHA-256", ADMIN, WRONG_PASSWORD);
    let line = sluice_as(&broker, &wrong, &["acl", "list"], "").one_line_failure();
    assert!(
        line.contains("authentication failed for user admin")
            && line.contains("SASL_AUTHENTICATION_FAILED"),
        "{line}"
    );
    assert!(!line.contains(WRONG_PASSWORD), "{line}");

    // alice (over PLAIN this time) may not manage ACLs or users.
    let alice_plain = root.join("alice.properties");
    librdkafka_config(&alice_plain, "PLAIN", ALICE, ALICE_PASSWORD);
    let run = sluice_as(
        &broker,
        &alice_plain,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "All",
            "--cluster",
        ],
        "",
    );
    assert!(
        run.stdout
            .contains("refused ALLOW ALL CLUSTER:kafka-cluster"),
        "{}",
        run.describe()
    );
    let line = run.one_line_failure();
    assert!(line.contains("CLUSTER_AUTHORIZATION_FAILED"), "{line}");
    let line = sluice_as(&broker, &alice_plain, &["acl", "list"], "").one_line_failure();
    assert!(line.contains("CLUSTER_AUTHORIZATION_FAILED"), "{line}");
    let line = sluice_as(
        &broker,
        &alice_plain,
        &[
            "user",
            "create",
            "--user",
            "mallory",
            "--password",
            "pw-Xk18",
        ],
        "",
    )
    .one_line_failure();
    assert!(line.contains("CLUSTER_AUTHORIZATION_FAILED"), "{line}");
    // Her refused add changed nothing.
    let everything = sluice_as(&broker, &admin, &["acl", "list"], "").ok();
    assert_eq!(acl_lines(&everything).len(), 2, "{everything}");

    // Deleted online, she can no longer log in.
    let deleted = sluice_as(&broker, &admin, &["user", "delete", "--user", ALICE], "").ok();
    assert!(
        deleted.contains("SCRAM-SHA-256 and SCRAM-SHA-512"),
        "{deleted}"
    );
    let line = sluice_as(&broker, &alice_plain, &["topic", "list"], "").one_line_failure();
    assert!(
        line.contains("authentication failed for user alice")
            && line.contains("SASL_AUTHENTICATION_FAILED"),
        "{line}"
    );
    let line =
        sluice_as(&broker, &admin, &["user", "list", "--user", ALICE], "").one_line_failure();
    assert!(line.contains("RESOURCE_NOT_FOUND"), "{line}");
}

#[test]
fn command_configs_that_cannot_be_used_fail_before_connecting() {
    let dir = std::env::temp_dir().join(format!("sluice-acl-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let tls = dir.join("tls.properties");
    std::fs::write(
        &tls,
        "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.username=a\nsasl.password=b\n\
         ssl.truststore.type=JKS\nssl.truststore.location=truststore.jks\n",
    )
    .expect("write");
    let broken = dir.join("broken.properties");
    std::fs::write(
        &broken,
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.username admin\n",
    )
    .expect("write");
    // Nothing listens on port 1: these must fail on the file, not the
    // connection.
    for (config, says) in [
        (
            &tls,
            "ssl.truststore.type JKS: only PEM files are read".to_string(),
        ),
        (
            &broken,
            format!("{} line 3: expected key=value", broken.display()),
        ),
    ] {
        for command in [&["acl", "list"][..], &["user", "list"], &["topic", "list"]] {
            let mut args = command.to_vec();
            args.extend([
                "--bootstrap-server",
                "127.0.0.1:1",
                "--command-config",
                config.to_str().expect("a UTF-8 path"),
            ]);
            let line = sluice(&args, "").one_line_failure();
            assert!(line.contains(&says), "{command:?}: {line}");
        }
    }
    std::fs::remove_dir_all(&dir).expect("removing the temporary directory");
}

/// The CLI's login works with every mechanism, and the users staged
/// offline are in the metadata log once the broker has started: the
/// offline listing no longer shows them, the online one does.
#[test]
fn every_mechanism_logs_in_and_the_offline_form_still_works() {
    let broker = start_broker();
    let root = broker.root().to_path_buf();
    let offline = sluice(
        &[
            "user",
            "list",
            "--data-dir",
            broker.data_dir().to_str().expect("a UTF-8 path"),
        ],
        "",
    )
    .ok();
    assert!(!offline.contains(ADMIN), "{offline}");
    assert!(broker
        .data_dir()
        .join("meta/scram-credentials.imported")
        .exists());
    let admin = root.join("admin-list.properties");
    librdkafka_config(&admin, "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD);
    let online = sluice_as(&broker, &admin, &["user", "list"], "").ok();
    assert!(online.contains(ADMIN), "{online}");
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let config = root.join(format!("{mechanism}.properties"));
        librdkafka_config(&config, mechanism, ADMIN, ADMIN_PASSWORD);
        let listed = sluice_as(&broker, &config, &["cluster", "info"], "").ok();
        assert!(listed.contains("Brokers:     1"), "{mechanism}: {listed}");
    }
    // Without a command config, the SASL listener closes the connection,
    // and the one line says why that may be.
    let line =
        sluice(&["topic", "list", "--bootstrap", &broker.bootstrap()], "").one_line_failure();
    assert!(line.contains("no SASL login is configured"), "{line}");
}

/// A mechanism the broker does not enable is refused with the ones it
/// does.
#[test]
fn a_mechanism_the_broker_does_not_enable_is_named_with_the_enabled_ones() {
    let broker = TestBroker::start_prepared(
        None,
        &[
            "--listener-security-protocol",
            "SASL_PLAINTEXT",
            "--sasl-enabled-mechanisms",
            "SCRAM-SHA-512",
            "--super-users",
            "User:admin",
        ],
        |data_dir| {
            let dir = data_dir.to_str().expect("a UTF-8 path");
            sluice(
                &["user", "create", "--data-dir", dir, "--user", ADMIN],
                &format!("{ADMIN_PASSWORD}\n"),
            )
            .ok();
        },
    );
    let config = broker.root().join("plain.properties");
    librdkafka_config(&config, "PLAIN", ADMIN, ADMIN_PASSWORD);
    let line = sluice_as(&broker, &config, &["cluster", "info"], "").one_line_failure();
    assert!(
        line.contains("(PLAIN): UNSUPPORTED_SASL_MECHANISM (the broker enables SCRAM-SHA-512)"),
        "{line}"
    );
    librdkafka_config(&config, "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD);
    sluice_as(&broker, &config, &["cluster", "info"], "").ok();
}

/// Metadata's auto-creation asks CREATE of `__consumer_offsets` too, as
/// Kafka does of every topic it creates that way: a user granted nothing
/// is refused and the topic is not made.
#[test]
fn metadata_does_not_create_the_offsets_topic_for_a_user_without_create() {
    let broker = start_broker_with_users(&[(ADMIN, ADMIN_PASSWORD), (CAROL, CAROL_PASSWORD)]);
    let mut carol = raw_connect(broker.address());
    plain_login(&mut carol, CAROL, CAROL_PASSWORD);
    let answer = raw_metadata(&mut carol, Some(vec![OFFSETS_TOPIC]), true, 3);
    assert_eq!(answer.topics.len(), 1, "{answer:?}");
    assert_eq!(
        answer.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED,
        "{answer:?}"
    );
    let mut admin = raw_connect(broker.address());
    plain_login(&mut admin, ADMIN, ADMIN_PASSWORD);
    let listing = raw_metadata(&mut admin, None, false, 3);
    let names: Vec<&str> = listing
        .topics
        .iter()
        .filter_map(|topic| topic.name.as_ref().map(|name| name.0.as_str()))
        .collect();
    assert!(
        !names.contains(&OFFSETS_TOPIC),
        "carol's Metadata created {OFFSETS_TOPIC}: {names:?}"
    );
    // The super user may create it the same way.
    let created = raw_metadata(&mut admin, Some(vec![OFFSETS_TOPIC]), true, 4);
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
}
