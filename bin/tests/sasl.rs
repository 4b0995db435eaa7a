//! SASL on the client listener (`listener_security_protocol =
//! SASL_PLAINTEXT`): users made offline with `sluice user create` log in
//! with librdkafka over PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 and produce
//! and consume, and so does the system's kcat (an older librdkafka); a
//! wrong password or an unknown user fails authentication
//! the same way while other clients are served; before authentication a
//! raw client gets its Produce refused by a closed connection, an unknown
//! mechanism UNSUPPORTED_SASL_MECHANISM, a SaslAuthenticate before the
//! handshake ILLEGAL_SASL_STATE, an oversized frame a closed connection; a
//! v0 handshake's bare tokens work; and a PLAINTEXT listener behaves as
//! before, answering the SASL requests ILLEGAL_SASL_STATE.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    assert_closed, authenticate, consume, create_topic, handshake, plain_token, raw_connect,
    raw_metadata, read_response, receive_response, send_request, text, wait_until, Record,
    TestBroker, TrackedProducer, CLIENT_TIMEOUT,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, SaslHandshakeRequest, SaslHandshakeResponse, TopicName,
};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret-Zq81";
/// A user with only a SCRAM-SHA-512 credential.
const ALICE: &str = "alice";
const ALICE_PASSWORD: &str = "wonderland-Kx72";
const WRONG_PASSWORD: &str = "not-the-password-Pv33";
const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
const RECORDS_PER_MECHANISM: usize = 200;
/// How long a client that cannot authenticate is given to say so.
const AUTH_ERROR_TIMEOUT: Duration = Duration::from_secs(30);
/// One metadata request of such a client (it never succeeds).
const METADATA_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);
/// Kafka's error codes checked here.
const NONE: i16 = 0;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;
/// Versions of the raw requests.
const PRODUCE_VERSION: i16 = 9;
const METADATA_VERSION: i16 = 12;
const API_VERSIONS_VERSION: i16 = 3;
/// Larger than the broker's cap on a frame before authentication (16 KiB).
const OVERSIZED_FRAME_BYTES: i32 = 64 * 1024;

/// The broker binary, as the harness starts it.
fn sluice_binary() -> PathBuf {
    std::env::var_os("SLUICE_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice")))
}

/// Runs `sluice user ...` with `stdin` as its input; (status ok, stdout,
/// stderr).
fn sluice_user(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(sluice_binary())
        .arg("user")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running sluice user");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("writing the password");
    let output = child.wait_with_output().expect("waiting for sluice user");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Creates the test's users in a data directory the broker has not used.
fn create_users(data_dir: &Path) {
    let dir = data_dir.to_str().expect("a UTF-8 path");
    let (ok, out, err) = sluice_user(
        &["create", "--data-dir", dir, "--user", ADMIN],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    assert!(ok, "user create: {out}{err}");
    assert!(out.contains("SCRAM-SHA-256 and SCRAM-SHA-512"), "{out}");
    let password_file = data_dir.with_file_name("alice-password");
    std::fs::write(&password_file, format!("{ALICE_PASSWORD}\n")).expect("password file");
    let (ok, out, err) = sluice_user(
        &[
            "create",
            "--data-dir",
            dir,
            "--user",
            ALICE,
            "--mechanism",
            "SCRAM-SHA-512",
            "--iterations",
            "8192",
            "--password-file",
            password_file.to_str().expect("a UTF-8 path"),
        ],
        "",
    );
    assert!(ok, "user create --password-file: {out}{err}");
}

fn start_sasl_broker() -> TestBroker {
    TestBroker::start_prepared(
        None,
        &[
            "--listener-security-protocol",
            "SASL_PLAINTEXT",
            "--super-users",
            "User:admin",
        ],
        create_users,
    )
}

/// librdkafka settings for `user` with `mechanism`.
fn sasl_settings<'a>(
    mechanism: &'a str,
    user: &'a str,
    password: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", mechanism),
        ("sasl.username", user),
        ("sasl.password", password),
    ]
}

fn config_with(broker: &TestBroker, settings: &[(&str, &str)]) -> ClientConfig {
    let mut config = broker.client_config();
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config
}

/// Errors librdkafka reports outside any one request (authentication
/// failures among them).
#[derive(Default)]
struct ErrorLog(Mutex<Vec<(KafkaError, String)>>);

#[derive(Clone, Default)]
struct RecordingContext(Arc<ErrorLog>);

impl ClientContext for RecordingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut errors) = self.0 .0.lock() {
            errors.push((error, reason.to_string()));
        }
    }
}

impl rdkafka::producer::ProducerContext for RecordingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let (Err((error, _)), Ok(mut errors)) = (result, self.0 .0.lock()) {
            errors.push((error.clone(), "delivery failed".to_string()));
        }
    }
}

impl RecordingContext {
    fn authentication_error(&self) -> Option<String> {
        let errors = self.0 .0.lock().ok()?;
        errors
            .iter()
            .find(|(error, _)| error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication))
            .map(|(_, reason)| reason.clone())
    }
}

/// Waits until a client with these settings reports an authentication
/// failure, and returns librdkafka's reason. The client never gets
/// metadata.
fn expect_authentication_failure(broker: &TestBroker, settings: &[(&str, &str)]) -> String {
    let context = RecordingContext::default();
    let producer: BaseProducer<RecordingContext> = config_with(broker, settings)
        .create_with_context(context.clone())
        .expect("creating the producer");
    let deadline = Instant::now() + AUTH_ERROR_TIMEOUT;
    loop {
        // Asking for metadata makes librdkafka connect (connections are
        // sparse); the failure comes as an error event, served by poll.
        let metadata = producer
            .client()
            .fetch_metadata(None, METADATA_ATTEMPT_TIMEOUT);
        assert!(
            metadata.is_err(),
            "metadata for a client that cannot log in"
        );
        producer.poll(Duration::from_millis(100));
        if let Some(reason) = context.authentication_error() {
            return reason;
        }
        assert!(
            Instant::now() < deadline,
            "no authentication error within {AUTH_ERROR_TIMEOUT:?}; errors: {:?}",
            context
                .0
                 .0
                .lock()
                .map(|errors| errors.clone())
                .unwrap_or_default()
        );
    }
}

/// A client with these settings reads the cluster's metadata.
fn assert_served(broker: &TestBroker, settings: &[(&str, &str)]) {
    let producer: BaseProducer = config_with(broker, settings)
        .create()
        .expect("creating the producer");
    let metadata = producer
        .client()
        .fetch_metadata(None, CLIENT_TIMEOUT)
        .expect("metadata for an authenticated client");
    assert_eq!(metadata.brokers().len(), 1);
}

#[test]
fn plain_and_both_scram_mechanisms_produce_and_consume() {
    let broker = start_sasl_broker();
    let admin: AdminClient<DefaultClientContext> =
        config_with(&broker, &sasl_settings("PLAIN", ADMIN, ADMIN_PASSWORD))
            .create()
            .expect("creating the admin client");
    for mechanism in MECHANISMS {
        let topic = format!("sasl-{}", mechanism.to_ascii_lowercase());
        create_topic(&admin, &topic, 2, &[]);
        let settings = sasl_settings(mechanism, ADMIN, ADMIN_PASSWORD);
        let records: Vec<Record> = (0..RECORDS_PER_MECHANISM)
            .map(|index| Record::with_value(-1, format!("{mechanism}-{index}").into_bytes()))
            .collect();
        let mut producer = TrackedProducer::new(&broker, &topic, &settings);
        for record in &records {
            producer.send(record);
        }
        producer.flush();
        assert_eq!(
            producer.acknowledged(),
            RECORDS_PER_MECHANISM,
            "{mechanism}: {:?}",
            producer
                .reports()
                .iter()
                .find(|report| !matches!(report, Some(Ok(_))))
        );
        let consumer = broker.consumer(&settings);
        let read = consume(
            &consumer,
            &topic,
            &[0, 1],
            Offset::Beginning,
            CLIENT_TIMEOUT,
            |read| read.len() >= RECORDS_PER_MECHANISM,
        );
        let mut values: Vec<Vec<u8>> = read.into_iter().filter_map(|r| r.value).collect();
        let mut sent: Vec<Vec<u8>> = records.into_iter().filter_map(|r| r.value).collect();
        values.sort();
        sent.sort();
        assert_eq!(values, sent, "{mechanism}: what was read back");
    }
    // A user with only a SCRAM-SHA-512 credential: that mechanism and
    // PLAIN (checked against the same credential) work, SCRAM-SHA-256 does
    // not.
    assert_served(
        &broker,
        &sasl_settings("SCRAM-SHA-512", ALICE, ALICE_PASSWORD),
    );
    assert_served(&broker, &sasl_settings("PLAIN", ALICE, ALICE_PASSWORD));
    expect_authentication_failure(
        &broker,
        &sasl_settings("SCRAM-SHA-256", ALICE, ALICE_PASSWORD),
    );
    let log = broker.log();
    assert!(
        log.contains("staged SCRAM credentials were moved into the metadata log"),
        "{log}"
    );
    for secret in [ADMIN_PASSWORD, ALICE_PASSWORD] {
        assert!(!log.contains(secret), "a password in the broker log");
    }
}

/// OAUTHBEARER with unsecured tokens (`sasl_oauthbearer_unsecured_jwt`):
/// librdkafka's own unsecured token (`enable.sasl.oauthbearer.unsecure.jwt`)
/// logs in as the principal it names. Under the ACL authorizer `admin`, a
/// super user, creates a topic, writes and reads it back; `mallory`, who
/// has no ACL, is refused the writes; SCRAM works beside it, and PLAIN,
/// not enabled, is refused.
#[test]
fn oauthbearer_logs_in_the_principal_of_an_unsecured_token() {
    let broker = TestBroker::start_prepared(
        None,
        &[
            "--listener-security-protocol",
            "SASL_PLAINTEXT",
            "--super-users",
            "User:admin",
            "--authorizer",
            "acl",
            "--sasl-enabled-mechanisms",
            "SCRAM-SHA-256,OAUTHBEARER",
            "--sasl-oauthbearer-unsecured-jwt",
            "true",
        ],
        create_users,
    );
    let bearer = |config: &'static str| {
        vec![
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
            ("sasl.oauthbearer.config", config),
        ]
    };
    let admin_settings = bearer("principal=admin lifeSeconds=600");
    let topic = "oauthbearer";
    let admin: AdminClient<DefaultClientContext> = config_with(&broker, &admin_settings)
        .create()
        .expect("creating the admin client");
    create_topic(&admin, topic, 1, &[]);
    let records: Vec<Record> = (0..RECORDS_PER_MECHANISM)
        .map(|index| Record::with_value(0, format!("bearer-{index}").into_bytes()))
        .collect();
    let mut producer = TrackedProducer::new(&broker, topic, &admin_settings);
    for record in &records {
        producer.send(record);
    }
    producer.flush();
    assert_eq!(producer.acknowledged(), RECORDS_PER_MECHANISM);
    let read = consume(
        &broker.consumer(&admin_settings),
        topic,
        &[0],
        Offset::Beginning,
        CLIENT_TIMEOUT,
        |read| read.len() >= RECORDS_PER_MECHANISM,
    );
    let values: Vec<Vec<u8>> = read.into_iter().filter_map(|r| r.value).collect();
    let sent: Vec<Vec<u8>> = records.iter().filter_map(|r| r.value.clone()).collect();
    assert_eq!(values, sent, "read back through an OAUTHBEARER login");
    // Another principal is only who its token says: no ACL, no writes.
    let mut mallory_settings = bearer("principal=mallory");
    mallory_settings.push(("message.timeout.ms", "5000"));
    let mut refused = TrackedProducer::new(&broker, topic, &mallory_settings);
    for record in records.iter().take(10) {
        refused.send(record);
    }
    refused.flush();
    let outcomes = refused.outcomes();
    assert!(
        outcomes.iter().all(|outcome| outcome
            .as_ref()
            .is_err_and(|error| error.contains("authorization"))),
        "mallory logs in and is refused by the authorizer: {outcomes:?}"
    );
    assert_served(
        &broker,
        &sasl_settings("SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD),
    );
    expect_authentication_failure(&broker, &sasl_settings("PLAIN", ADMIN, ADMIN_PASSWORD));
}

/// The system's kcat (on Debian 12, librdkafka 2.0.2) logs in with every
/// mechanism: librdkafka before 2.6.1 echoes the SCRAM client nonce twice,
/// which the broker must accept as Kafka does. Skipped where kcat is not
/// installed (tests/run-all.sh installs it).
#[test]
fn the_systems_kcat_logs_in_with_every_mechanism() {
    let Ok(version) = Command::new("kcat").arg("-V").output() else {
        eprintln!("kcat is not installed: skipped");
        return;
    };
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let broker = start_sasl_broker();
    for mechanism in MECHANISMS {
        let output = Command::new("kcat")
            .args(["-b", &broker.bootstrap(), "-L", "-m", "30"])
            .args(["-X", "security.protocol=SASL_PLAINTEXT"])
            .args(["-X", &format!("sasl.mechanism={mechanism}")])
            .args(["-X", &format!("sasl.username={ADMIN}")])
            .args(["-X", &format!("sasl.password={ADMIN_PASSWORD}")])
            .output()
            .expect("running kcat");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 brokers"),
            "{mechanism} with {version}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn a_wrong_password_or_unknown_user_fails_alike_and_others_are_served() {
    let broker = start_sasl_broker();
    for mechanism in MECHANISMS {
        let wrong = expect_authentication_failure(
            &broker,
            &sasl_settings(mechanism, ADMIN, WRONG_PASSWORD),
        );
        let unknown = expect_authentication_failure(
            &broker,
            &sasl_settings(mechanism, "nobody", WRONG_PASSWORD),
        );
        // librdkafka reports the broker's message; it must not tell a
        // wrong password from a user that does not exist.
        assert!(
            wrong.contains("invalid user name or password"),
            "{mechanism}: {wrong}"
        );
        let generic = |reason: &str| {
            reason
                .split("invalid user name or password")
                .next()
                .map(str::to_string)
        };
        assert_eq!(generic(&wrong), generic(&unknown), "{mechanism}");
        assert_served(&broker, &sasl_settings(mechanism, ADMIN, ADMIN_PASSWORD));
    }
    let log = broker.log();
    let failures: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("authentication failed"))
        .collect();
    // One line per failed connection (librdkafka may retry a connection,
    // each retry is a line of its own); none holds a password.
    assert!(failures.len() >= 2 * MECHANISMS.len(), "{log}");
    for line in failures {
        assert!(line.contains("invalid credentials for user"), "{line}");
        assert!(
            !line.contains(WRONG_PASSWORD),
            "a password in the log: {line}"
        );
    }
    assert!(
        !log.contains(ADMIN_PASSWORD),
        "a password in the broker log"
    );
}

fn metadata(stream: &mut std::net::TcpStream, correlation: i32) -> MetadataResponse {
    raw_metadata(stream, Some(Vec::new()), false, correlation)
}

#[test]
fn raw_clients_out_of_sequence_are_refused_and_the_broker_keeps_serving() {
    let broker = start_sasl_broker();

    // A Produce before authenticating: closed, its body never read.
    let mut stream = raw_connect(broker.address());
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(bytes::Bytes::from_static(b"not even a batch"));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(text("sneaky"));
    topic.partition_data = vec![partition];
    let mut produce = ProduceRequest::default();
    produce.acks = 1;
    produce.timeout_ms = 1000;
    produce.topic_data = vec![topic];
    send_request(&mut stream, ApiKey::Produce, PRODUCE_VERSION, 1, &produce);
    assert_closed(&mut stream, "a Produce before authentication");

    // Metadata after ApiVersions but before authentication: closed too.
    let mut stream = raw_connect(broker.address());
    send_request(
        &mut stream,
        ApiKey::ApiVersions,
        API_VERSIONS_VERSION,
        1,
        &ApiVersionsRequest::default(),
    );
    let versions: ApiVersionsResponse =
        receive_response(&mut stream, ApiKey::ApiVersions, API_VERSIONS_VERSION, 1);
    assert_eq!(versions.error_code, NONE);
    let advertised = |key: ApiKey| {
        versions
            .api_keys
            .iter()
            .find(|api| api.api_key == key as i16)
            .map(|api| (api.min_version, api.max_version))
    };
    assert_eq!(advertised(ApiKey::SaslHandshake), Some((0, 1)));
    assert_eq!(advertised(ApiKey::SaslAuthenticate), Some((0, 2)));
    let mut request = MetadataRequest::default();
    request.topics = Some(Vec::new());
    send_request(&mut stream, ApiKey::Metadata, METADATA_VERSION, 2, &request);
    assert_closed(&mut stream, "a Metadata before authentication");

    // A frame over the cap before authentication: closed on its length.
    let mut stream = raw_connect(broker.address());
    stream
        .write_all(&OVERSIZED_FRAME_BYTES.to_be_bytes())
        .expect("sending a length");
    stream.write_all(&[0u8; 1024]).expect("sending bytes");
    assert_closed(&mut stream, "an oversized frame before authentication");

    // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM with the enabled
    // ones, then closed.
    let mut stream = raw_connect(broker.address());
    let refused = handshake(&mut stream, "GSSAPI", 1);
    assert_eq!(refused.error_code, UNSUPPORTED_SASL_MECHANISM);
    let offered: Vec<String> = refused.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(offered, MECHANISMS);
    assert_closed(&mut stream, "after an unsupported mechanism");

    // SaslAuthenticate before the handshake: ILLEGAL_SASL_STATE, closed.
    let mut stream = raw_connect(broker.address());
    let illegal = authenticate(&mut stream, &plain_token(ADMIN, ADMIN_PASSWORD), 1);
    assert_eq!(illegal.error_code, ILLEGAL_SASL_STATE);
    assert_closed(&mut stream, "after SaslAuthenticate before SaslHandshake");

    // A second handshake: ILLEGAL_SASL_STATE, closed.
    let mut stream = raw_connect(broker.address());
    assert_eq!(handshake(&mut stream, "PLAIN", 1).error_code, NONE);
    assert_eq!(
        handshake(&mut stream, "PLAIN", 2).error_code,
        ILLEGAL_SASL_STATE
    );
    assert_closed(&mut stream, "after a second SaslHandshake");

    // A wrong password: SASL_AUTHENTICATION_FAILED, then closed.
    let mut stream = raw_connect(broker.address());
    assert_eq!(handshake(&mut stream, "PLAIN", 1).error_code, NONE);
    let failed = authenticate(&mut stream, &plain_token(ADMIN, WRONG_PASSWORD), 2);
    assert_eq!(failed.error_code, SASL_AUTHENTICATION_FAILED);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("Authentication failed: invalid user name or password")
    );
    assert_closed(&mut stream, "after a failed authentication");

    // The right password over the raw protocol: then any request.
    let mut stream = raw_connect(broker.address());
    assert_eq!(handshake(&mut stream, "PLAIN", 1).error_code, NONE);
    let done = authenticate(&mut stream, &plain_token(ADMIN, ADMIN_PASSWORD), 2);
    assert_eq!(done.error_code, NONE);
    assert_eq!(metadata(&mut stream, 3).brokers.len(), 1);
    // A handshake after authentication is out of sequence but harmless.
    assert_eq!(
        handshake(&mut stream, "PLAIN", 4).error_code,
        ILLEGAL_SASL_STATE
    );
    assert_eq!(metadata(&mut stream, 5).brokers.len(), 1);

    // A v0 handshake: the PLAIN token goes bare, the answer is an empty
    // bare token, then Kafka requests as usual.
    let mut stream = raw_connect(broker.address());
    let mut request = SaslHandshakeRequest::default();
    request.mechanism = text("PLAIN");
    send_request(&mut stream, ApiKey::SaslHandshake, 0, 1, &request);
    let accepted: SaslHandshakeResponse =
        receive_response(&mut stream, ApiKey::SaslHandshake, 0, 1);
    assert_eq!(accepted.error_code, NONE);
    let token = plain_token(ADMIN, ADMIN_PASSWORD);
    let mut frame = (token.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&token);
    stream.write_all(&frame).expect("sending a bare token");
    assert_eq!(
        read_response(&mut stream).expect("the bare answer"),
        Vec::<u8>::new()
    );
    assert_eq!(metadata(&mut stream, 2).brokers.len(), 1);

    // Nothing of this disturbed the broker.
    assert_served(
        &broker,
        &sasl_settings("SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD),
    );
    let log = broker.log();
    assert!(
        log.contains("api key 0 before SASL authentication"),
        "{log}"
    );
    assert!(
        log.contains("api key 3 before SASL authentication"),
        "{log}"
    );
    assert!(
        log.contains("SASL mechanism 'GSSAPI' is not enabled"),
        "{log}"
    );
    assert!(!log.contains(WRONG_PASSWORD) && !log.contains(ADMIN_PASSWORD));
}

#[test]
fn a_plaintext_listener_is_unchanged_and_refuses_sasl_requests() {
    let broker = TestBroker::start();
    let topic = "plaintext";
    broker.create_topic(topic, 1);
    let records: Vec<Record> = (0..10)
        .map(|index| Record::with_value(0, format!("plain-{index}").into_bytes()))
        .collect();
    common::produce_all(&broker, topic, &[], &records);
    let read = consume(
        &broker.consumer(&[]),
        topic,
        &[0],
        Offset::Beginning,
        CLIENT_TIMEOUT,
        |read| read.len() >= records.len(),
    );
    assert_eq!(read.len(), records.len());
    // SaslHandshake and SaslAuthenticate are listed (as Kafka lists them)
    // and answered ILLEGAL_SASL_STATE; the connection stays open.
    let mut stream = raw_connect(broker.address());
    assert_eq!(
        handshake(&mut stream, "PLAIN", 1).error_code,
        ILLEGAL_SASL_STATE
    );
    let answer = authenticate(&mut stream, &plain_token(ADMIN, ADMIN_PASSWORD), 2);
    assert_eq!(answer.error_code, ILLEGAL_SASL_STATE);
    assert_eq!(metadata(&mut stream, 3).brokers.len(), 1);
    // A SASL client cannot authenticate against it.
    expect_authentication_failure(&broker, &sasl_settings("PLAIN", ADMIN, ADMIN_PASSWORD));
}

#[test]
fn without_users_no_one_logs_in_and_the_log_says_how_to_add_one() {
    let broker = TestBroker::start_with(&["--listener-security-protocol", "SASL_PLAINTEXT"]);
    expect_authentication_failure(
        &broker,
        &sasl_settings("SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD),
    );
    let log = broker.log();
    assert!(log.contains("sluice user create --data-dir"), "{log}");
}

#[test]
fn the_user_command_lists_replaces_deletes_and_refuses_bad_input() {
    let root = std::env::temp_dir().join(format!("sluice-sasl-users-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data_dir = root.join("data");
    create_users(&data_dir);
    let dir = data_dir.to_str().expect("a UTF-8 path");
    let (ok, out, err) = sluice_user(&["list", "--data-dir", dir], "");
    assert!(ok, "{err}");
    assert!(
        out.contains("admin") && out.contains("SCRAM-SHA-256 (4096), SCRAM-SHA-512 (4096)"),
        "{out}"
    );
    assert!(
        out.contains("alice") && out.contains("SCRAM-SHA-512 (8192)"),
        "{out}"
    );
    let (ok, out, _) = sluice_user(&["list", "--data-dir", dir, "--json"], "");
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{out}");
    // No password on stdin: refused, nothing changed.
    let (ok, _, err) = sluice_user(&["create", "--data-dir", dir, "--user", "carol"], "");
    assert!(!ok && err.contains("no password"), "{err}");
    let (ok, _, err) = sluice_user(&["delete", "--data-dir", dir, "--user", "carol"], "");
    assert!(!ok && err.contains("carol"), "{err}");
    let (ok, _, _) = sluice_user(&["delete", "--data-dir", dir, "--user", ALICE], "");
    assert!(ok);
    let (_, out, _) = sluice_user(&["list", "--data-dir", dir], "");
    assert!(!out.contains("alice"), "{out}");
    // The stored file holds no password.
    let stored = std::fs::read(data_dir.join("meta/scram-credentials")).expect("the file");
    assert!(!stored
        .windows(ADMIN_PASSWORD.len())
        .any(|window| window == ADMIN_PASSWORD.as_bytes()));
    // A directory that is not Sluice's is refused.
    let foreign = root.join("foreign");
    std::fs::create_dir_all(&foreign).expect("a directory");
    std::fs::write(foreign.join("something"), b"x").expect("a file");
    let (ok, _, err) = sluice_user(
        &[
            "create",
            "--data-dir",
            foreign.to_str().expect("UTF-8"),
            "--user",
            "x",
        ],
        "pw\n",
    );
    assert!(!ok && err.contains("something"), "{err}");
    std::fs::remove_dir_all(&root).expect("cleaning up");
}

/// The session lifetime of the re-authentication tests.
const REAUTH_MS: u64 = 1500;

/// A SASL broker whose sessions last `REAUTH_MS`.
fn start_reauth_broker() -> TestBroker {
    let reauth = REAUTH_MS.to_string();
    TestBroker::start_prepared(
        None,
        &[
            "--listener-security-protocol",
            "SASL_PLAINTEXT",
            "--connections-max-reauth-ms",
            &reauth,
        ],
        create_users,
    )
}

/// KIP-368 with a raw client: the lifetime is announced, a
/// re-authentication as the same principal renews the session, an
/// expired session is closed at its next request, and a
/// re-authentication as someone else or with another mechanism is refused
/// and closed.
#[test]
fn sessions_expire_unless_the_client_authenticates_again() {
    let broker = start_reauth_broker();
    let lifetime = Duration::from_millis(REAUTH_MS);
    let mut stream = raw_connect(broker.address());
    assert_eq!(handshake(&mut stream, "PLAIN", 1).error_code, NONE);
    let first = authenticate(&mut stream, &plain_token(ADMIN, ADMIN_PASSWORD), 2);
    let authenticated = Instant::now();
    assert_eq!(first.error_code, NONE);
    assert_eq!(first.session_lifetime_ms, REAUTH_MS as i64);
    assert_eq!(metadata(&mut stream, 3).brokers.len(), 1);
    // Renewed two thirds in, then used past the first session's end.
    std::thread::sleep(lifetime * 2 / 3);
    assert_eq!(handshake(&mut stream, "PLAIN", 4).error_code, NONE);
    let again = authenticate(&mut stream, &plain_token(ADMIN, ADMIN_PASSWORD), 5);
    let renewed = Instant::now();
    assert_eq!(again.error_code, NONE);
    assert_eq!(again.session_lifetime_ms, REAUTH_MS as i64);
    std::thread::sleep(
        (authenticated + lifetime + lifetime / 5).saturating_duration_since(Instant::now()),
    );
    assert!(
        renewed.elapsed() < lifetime,
        "the machine was too slow to test this"
    );
    assert_eq!(
        metadata(&mut stream, 6).brokers.len(),
        1,
        "served on the renewed session"
    );
    // Not renewed: the next request closes the connection.
    std::thread::sleep(
        (renewed + lifetime + lifetime / 5).saturating_duration_since(Instant::now()),
    );
    let mut request = MetadataRequest::default();
    request.topics = Some(Vec::new());
    send_request(&mut stream, ApiKey::Metadata, METADATA_VERSION, 7, &request);
    assert_closed(&mut stream, "a request after the session expired");

    // Re-authenticating as another user: refused, then closed.
    let mut stream = raw_connect(broker.address());
    assert_eq!(handshake(&mut stream, "PLAIN", 1).error_code, NONE);
    assert_eq!(
        authenticate(&mut stream, &plain_token(ADMIN, ADMIN_PASSWORD), 2).error_code,
        NONE
    );
    assert_eq!(handshake(&mut stream, "PLAIN", 3).error_code, NONE);
    let changed = authenticate(&mut stream, &plain_token(ALICE, ALICE_PASSWORD), 4);
    assert_eq!(changed.error_code, SASL_AUTHENTICATION_FAILED);
    assert_eq!(
        changed.error_message.as_deref(),
        Some("Cannot change principals during re-authentication")
    );
    assert_closed(&mut stream, "after re-authenticating as another user");

    // Re-authenticating with another mechanism: Kafka's
    // UNSUPPORTED_SASL_MECHANISM at the handshake, then closed.
    let mut stream = raw_connect(broker.address());
    assert_eq!(handshake(&mut stream, "PLAIN", 1).error_code, NONE);
    assert_eq!(
        authenticate(&mut stream, &plain_token(ADMIN, ADMIN_PASSWORD), 2).error_code,
        NONE
    );
    let switched = handshake(&mut stream, "SCRAM-SHA-256", 3);
    assert_eq!(switched.error_code, UNSUPPORTED_SASL_MECHANISM);
    assert_closed(
        &mut stream,
        "after re-authenticating with another mechanism",
    );
    // The line is written as the connection closes, just after the client
    // sees it closed.
    wait_until(
        "the broker to log the refused mechanism",
        CLIENT_TIMEOUT,
        || {
            broker
                .log()
                .contains("not supported for re-authentication of mechanism 'PLAIN'")
        },
    );
    let log = broker.log();
    assert!(
        log.contains("session expired without re-authentication"),
        "{log}"
    );
}

/// librdkafka (2.2 and later) re-authenticates on its own when the broker
/// announces a session lifetime: a producer that sends for several
/// lifetimes sees no error at all (a refused re-authentication would be
/// one, and so would a connection cut off), and every record is
/// acknowledged and read back.
#[test]
fn librdkafka_reauthenticates_before_its_session_expires() {
    const SENDING: Duration = Duration::from_secs(6);
    const PAUSE: Duration = Duration::from_millis(20);
    let broker = start_reauth_broker();
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let settings = sasl_settings(mechanism, ADMIN, ADMIN_PASSWORD);
        let topic = format!("reauth-{}", mechanism.to_ascii_lowercase());
        let admin: AdminClient<DefaultClientContext> = config_with(&broker, &settings)
            .create()
            .expect("creating the admin client");
        create_topic(&admin, &topic, 1, &[]);
        let context = RecordingContext::default();
        let producer: BaseProducer<RecordingContext> = config_with(&broker, &settings)
            .create_with_context(context.clone())
            .expect("creating the producer");
        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < SENDING {
            let value = format!("{mechanism}-{sent}");
            producer
                .send(rdkafka::producer::BaseRecord::<(), _>::to(&topic).payload(&value))
                .map_err(|(error, _)| error)
                .expect("queueing a record");
            sent += 1;
            producer.poll(PAUSE);
        }
        producer.flush(CLIENT_TIMEOUT).expect("flush");
        let errors: Vec<String> = context
            .0
             .0
            .lock()
            .map(|errors| {
                errors
                    .iter()
                    .map(|(error, reason)| format!("{error}: {reason}"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(errors.is_empty(), "{mechanism}: client errors: {errors:?}");
        let consumer = broker.consumer(&settings);
        let read = consume(
            &consumer,
            &topic,
            &[0],
            Offset::Beginning,
            CLIENT_TIMEOUT,
            |read| read.len() >= sent,
        );
        assert_eq!(read.len(), sent, "{mechanism}: read back");
    }
    let log = broker.log();
    assert!(
        !log.contains("session expired without re-authentication"),
        "a librdkafka connection was cut off: {log}"
    );
}
