//! TLS on the client listener (`listener_security_protocol = SSL` and
//! `SASL_SSL`), with certificates made at run time by the system's
//! `openssl`:
//! - librdkafka produces and consumes over SSL with a client certificate,
//!   and the certificate's subject is the principal (a super user by its
//!   RFC 2253 name may write; another certificate of the same CA, with no
//!   ACL, is refused TOPIC_AUTHORIZATION_FAILED);
//! - a client without a certificate, one whose certificate another CA
//!   signed, one that does not trust the broker's CA, and a plaintext one
//!   all fail, while the others are served;
//! - SCRAM over SASL_SSL works and a wrong password is refused;
//! - SIGHUP reloads the keystore (a client trusting only a new CA gets in
//!   after the reload), and a keystore that cannot be read keeps the old
//!   one;
//! - `ssl_enabled_protocols` is honoured (openssl s_client with TLS 1.2
//!   against a TLS 1.3-only listener fails, with 1.3 it connects);
//! - a listener without a keystore refuses to start with one line.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::{
    broker_binary, consume, create_topic, create_user_offline, raw_connect, Record, TestBroker,
    CLIENT_TIMEOUT,
};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset};

const RECORDS: usize = 1000;
/// How long a client that cannot connect is given to fail.
const REFUSED_TIMEOUT: Duration = Duration::from_secs(5);
const USER: &str = "carol";
const PASSWORD: &str = "carol-secret-Tq55";

/// The usual test PKI: a CA with the server's certificate and two clients'
/// (alice, whose organisation has a comma, and bob), and a second CA with
/// a client certificate of its own (mallory).
fn standard_pki(root: &Path) -> Pki {
    let pki = Pki::new(&root.join("pki"));
    pki.ca("ca");
    pki.issue("ca", "server", "/CN=localhost");
    pki.issue("ca", "alice", "/C=US/O=Acme, Inc./OU=eng/CN=alice");
    pki.issue("ca", "bob", "/O=Acme/CN=bob");
    pki.ca("other-ca");
    pki.issue("other-ca", "mallory", "/CN=mallory");
    pki
}

fn ssl_config(broker: &TestBroker, pki: &Pki, client: Option<&str>) -> ClientConfig {
    let mut config = broker.client_config();
    config
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", pki.path_text("ca.pem"));
    if let Some(client) = client {
        config
            .set(
                "ssl.certificate.location",
                pki.path_text(&format!("{client}.pem")),
            )
            .set("ssl.key.location", pki.path_text(&format!("{client}.key")));
    }
    config
}

/// The first delivery error a producer saw.
#[derive(Clone, Default)]
struct FirstError(Arc<Mutex<Option<KafkaError>>>);

impl ClientContext for FirstError {}

impl ProducerContext for FirstError {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            let mut first = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            first.get_or_insert_with(|| error.clone());
        }
    }
}

/// Produces `count` indexed records (and one more, indexed `count`) to
/// partition 0 and waits for every acknowledgement; the first delivery
/// error, if any.
fn produce(config: &ClientConfig, topic: &str, count: usize) -> Result<(), KafkaError> {
    let context = FirstError::default();
    let producer: BaseProducer<FirstError> = config
        .create_with_context(context.clone())
        .expect("producer");
    for index in 0..=count {
        let value = common::indexed_value(index, 200);
        let key = index.to_string();
        loop {
            match producer.send(BaseRecord::to(topic).partition(0).key(&key).payload(&value)) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
    producer.flush(CLIENT_TIMEOUT)?;
    let first = context
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    first.map_or(Ok(()), Err)
}

/// Reads partition 0 of `topic` from the beginning with a client made from
/// `config` until at least `count` records are in.
fn read_back(config: &ClientConfig, topic: &str, count: usize) -> Vec<Record> {
    let mut config = config.clone();
    config
        .set("group.id", format!("{topic}-readers"))
        .set("enable.auto.commit", "false");
    let consumer: rdkafka::consumer::BaseConsumer = config.create().expect("consumer");
    consume(
        &consumer,
        topic,
        &[0],
        Offset::Beginning,
        CLIENT_TIMEOUT,
        |records| records.len() >= count,
    )
}

/// Whether a client with `config` can read the cluster's metadata within
/// `timeout`.
fn reaches_broker(config: &ClientConfig, timeout: Duration) -> bool {
    let producer: BaseProducer = config.create().expect("producer");
    producer.client().fetch_metadata(None, timeout).is_ok()
}

fn admin(config: &ClientConfig) -> AdminClient<DefaultClientContext> {
    config.create().expect("admin client")
}

#[test]
fn ssl_with_client_certificates_names_the_principal() {
    let root = tempdir("ssl");
    let pki = standard_pki(&root);
    let alice = pki.subject("alice");
    assert_eq!(alice, "CN=alice,OU=eng,O=Acme\\, Inc.,C=US");
    let super_users = format!("User:{alice}");
    let keystore = pki.path_text("server.keystore");
    let truststore = pki.path_text("ca.pem");
    let broker = TestBroker::start_with(&[
        "--listener-security-protocol",
        "SSL",
        "--ssl-keystore-location",
        &keystore,
        "--ssl-truststore-location",
        &truststore,
        "--ssl-client-auth",
        "required",
        "--authorizer",
        "acl",
        "--super-users",
        &super_users,
    ]);
    let alice_config = ssl_config(&broker, &pki, Some("alice"));
    create_topic(&admin(&alice_config), "secure", 1, &[]);
    produce(&alice_config, "secure", RECORDS).expect("alice, a super user, writes");

    let records = read_back(&alice_config, "secure", RECORDS + 1);
    let indexes: Vec<usize> = records[..=RECORDS]
        .iter()
        .map(Record::value_index)
        .collect();
    assert_eq!(
        indexes,
        (0..=RECORDS).collect::<Vec<_>>(),
        "read back in order"
    );

    // bob's certificate is good, but his principal has no ACL.
    let bob = produce(&ssl_config(&broker, &pki, Some("bob")), "secure", 1);
    assert_eq!(
        bob.err().and_then(|error| error.rdkafka_error_code()),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "bob ({}) has no ACL",
        pki.subject("bob")
    );

    // No certificate, another CA's certificate, a client that does not
    // trust the broker, and plaintext: none gets in.
    assert!(!reaches_broker(
        &ssl_config(&broker, &pki, None),
        REFUSED_TIMEOUT
    ));
    assert!(!reaches_broker(
        &ssl_config(&broker, &pki, Some("mallory")),
        REFUSED_TIMEOUT
    ));
    let mut distrusting = ssl_config(&broker, &pki, Some("alice"));
    distrusting.set("ssl.ca.location", pki.path_text("other-ca.pem"));
    assert!(!reaches_broker(&distrusting, REFUSED_TIMEOUT));
    assert!(!reaches_broker(&broker.client_config(), REFUSED_TIMEOUT));
    // Nor does a client that speaks Kafka in plaintext to the TLS port: its
    // connection is closed, and nothing else is affected.
    let mut raw = raw_connect(broker.address());
    let api_versions_v0 = [0u8, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0];
    raw.write_all(&api_versions_v0).expect("write");
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "plaintext got {} bytes that are not a TLS alert",
        answer.len()
    );
    assert!(
        reaches_broker(&alice_config, CLIENT_TIMEOUT),
        "alice still served"
    );

    // Sluice's CLI, with Kafka's client properties: alice's PEM keystore
    // gets her in, no certificate does not (one line, a failing exit).
    let alice_properties = root.join("alice.properties");
    std::fs::write(
        &alice_properties,
        format!(
            "security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={}\n\
             ssl.keystore.type=PEM\nssl.keystore.location={}\n",
            pki.path_text("ca.pem"),
            pki.path_text("alice.keystore")
        ),
    )
    .expect("properties");
    let (ok, out, err) = topic_list(&broker, &alice_properties);
    assert!(ok && out.contains("secure"), "{out}{err}");
    let anonymous_properties = root.join("anonymous.properties");
    std::fs::write(
        &anonymous_properties,
        format!(
            "security.protocol=SSL\nssl.ca.location={}\n",
            pki.path_text("ca.pem")
        ),
    )
    .expect("properties");
    let (ok, out, err) = topic_list(&broker, &anonymous_properties);
    assert!(!ok, "listed without a certificate: {out}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let log = broker.log();
    assert!(log.contains("TLS handshake failed"), "log: {log}");
}

/// `ssl_principal_mapping_rules` turns alice's subject into `alice` (her
/// OU is eng), which `super_users` names; bob's subject matches no RULE and
/// stays whole under DEFAULT, so he has no ACL; and a broker whose only
/// rule matches no one refuses every client certificate.
#[test]
fn principal_mapping_rules_shorten_the_subject() {
    let root = tempdir("rules");
    let pki = standard_pki(&root);
    let keystore = pki.path_text("server.keystore");
    let truststore = pki.path_text("ca.pem");
    let broker_with = |rules: &str| {
        TestBroker::start_with(&[
            "--listener-security-protocol",
            "SSL",
            "--ssl-keystore-location",
            &keystore,
            "--ssl-truststore-location",
            &truststore,
            "--ssl-client-auth",
            "required",
            "--ssl-principal-mapping-rules",
            rules,
            "--authorizer",
            "acl",
            "--super-users",
            "User:alice",
        ])
    };
    let broker = broker_with("RULE:^CN=([^,]+),OU=eng,.*$/$1/L, DEFAULT");
    let alice = ssl_config(&broker, &pki, Some("alice"));
    create_topic(&admin(&alice), "mapped", 1, &[]);
    produce(&alice, "mapped", 10).expect("alice, mapped to User:alice, writes");
    let bob = produce(&ssl_config(&broker, &pki, Some("bob")), "mapped", 1);
    assert_eq!(
        bob.err().and_then(|error| error.rdkafka_error_code()),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "bob stays CN=bob,O=Acme"
    );
    drop(broker);

    let broker = broker_with("RULE:^CN=nobody$/nobody/");
    assert!(!reaches_broker(
        &ssl_config(&broker, &pki, Some("alice")),
        REFUSED_TIMEOUT
    ));
    let log = broker.log();
    assert!(
        log.contains("no ssl_principal_mapping_rules rule matches"),
        "{log}"
    );
}

#[test]
fn scram_over_sasl_ssl() {
    let root = tempdir("sasl-ssl");
    let pki = standard_pki(&root);
    let keystore = pki.path_text("server.keystore");
    let broker = TestBroker::start_prepared(
        None,
        &[
            "--listener-security-protocol",
            "SASL_SSL",
            "--ssl-keystore-location",
            &keystore,
        ],
        |data_dir| create_user_offline(data_dir, USER, PASSWORD),
    );
    let settings = |mechanism: &str, password: &str| {
        let mut config = ssl_config(&broker, &pki, None);
        config
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", mechanism)
            .set("sasl.username", USER)
            .set("sasl.password", password);
        config
    };
    let config = settings("SCRAM-SHA-512", PASSWORD);
    create_topic(&admin(&config), "scrammed", 1, &[]);
    produce(&config, "scrammed", RECORDS).expect("produce over SASL_SSL");
    produce(&settings("SCRAM-SHA-256", PASSWORD), "scrammed", 1).expect("SCRAM-SHA-256");
    let records = read_back(&settings("PLAIN", PASSWORD), "scrammed", RECORDS + 3);
    let first: Vec<usize> = records[..RECORDS].iter().map(Record::value_index).collect();
    assert_eq!(first, (0..RECORDS).collect::<Vec<_>>());
    assert!(!reaches_broker(
        &settings("SCRAM-SHA-512", "wrong-password-Hh21"),
        REFUSED_TIMEOUT
    ));
    let properties = root.join("carol.properties");
    std::fs::write(
        &properties,
        format!(
            "security.protocol=SASL_SSL\nssl.ca.location={}\nsasl.mechanism=SCRAM-SHA-256\n\
             sasl.username={USER}\nsasl.password={PASSWORD}\n",
            pki.path_text("ca.pem")
        ),
    )
    .expect("properties");
    let (ok, out, err) = topic_list(&broker, &properties);
    assert!(
        ok && out.contains("scrammed"),
        "sluice topic list over SASL_SSL: {out}{err}"
    );
    // SASL without TLS on a SASL_SSL listener is no way in either.
    let mut plain_sasl = broker.client_config();
    plain_sasl
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "PLAIN")
        .set("sasl.username", USER)
        .set("sasl.password", PASSWORD);
    assert!(!reaches_broker(&plain_sasl, REFUSED_TIMEOUT));
}

/// An SSL listener beside a plaintext one (`listeners`): a TLS client
/// bootstrapped through the SSL listener is told the broker is at that
/// listener (else it would be sent to the plaintext port and fail), writes
/// there, and a plaintext client reads the same records through the other.
#[test]
fn an_ssl_listener_serves_beside_a_plaintext_one() {
    let root = tempdir("listeners");
    let pki = standard_pki(&root);
    let keystore = pki.path_text("server.keystore");
    let broker = TestBroker::start_with(&[
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        "--ssl-keystore-location",
        &keystore,
    ]);
    let mut config = ssl_config(&broker, &pki, None);
    config.set("bootstrap.servers", broker.listener("SSL").to_string());
    create_topic(&admin(&config), "both-listeners", 1, &[]);
    produce(&config, "both-listeners", RECORDS).expect("produce over SSL");
    let records = read_back(&broker.client_config(), "both-listeners", RECORDS);
    let read: Vec<usize> = records.iter().map(Record::value_index).collect();
    assert_eq!(read, (0..RECORDS).collect::<Vec<_>>());
    // TLS to the plaintext listener gets nowhere.
    assert!(!reaches_broker(
        &ssl_config(&broker, &pki, None),
        REFUSED_TIMEOUT
    ));
}

#[test]
fn sighup_reloads_the_keystore_and_a_bad_one_is_not_taken() {
    let root = tempdir("reload");
    let pki = standard_pki(&root);
    pki.ca("new-ca");
    pki.issue("new-ca", "new-server", "/CN=localhost");
    let keystore = root.join("keystore.pem");
    std::fs::copy(pki.path("server.keystore"), &keystore).expect("keystore");
    let broker = TestBroker::start_with(&[
        "--listener-security-protocol",
        "SSL",
        "--ssl-keystore-location",
        keystore.to_str().expect("UTF-8 path"),
    ]);
    let trusting = |ca: &str| {
        let mut config = ssl_config(&broker, &pki, None);
        config.set("ssl.ca.location", pki.path_text(&format!("{ca}.pem")));
        config
    };
    assert!(reaches_broker(&trusting("ca"), CLIENT_TIMEOUT));
    assert!(!reaches_broker(&trusting("new-ca"), REFUSED_TIMEOUT));

    std::fs::copy(pki.path("new-server.keystore"), &keystore).expect("new keystore");
    hang_up(&broker, "TLS certificate and truststore reloaded");
    assert!(reaches_broker(&trusting("new-ca"), CLIENT_TIMEOUT));
    assert!(!reaches_broker(&trusting("ca"), REFUSED_TIMEOUT));

    std::fs::write(&keystore, "not a keystore\n").expect("garbage keystore");
    hang_up(&broker, "TLS reload failed");
    assert!(
        reaches_broker(&trusting("new-ca"), CLIENT_TIMEOUT),
        "old keystore kept"
    );
}

#[test]
fn enabled_protocols_are_honoured() {
    let root = tempdir("protocols");
    let pki = standard_pki(&root);
    let keystore = pki.path_text("server.keystore");
    let broker = TestBroker::start_with(&[
        "--listener-security-protocol",
        "SSL",
        "--ssl-keystore-location",
        &keystore,
        "--ssl-enabled-protocols",
        "TLSv1.3",
    ]);
    let address = broker.address().to_string();
    assert!(s_client(&address, &pki.path_text("ca.pem"), "-tls1_3"));
    assert!(!s_client(&address, &pki.path_text("ca.pem"), "-tls1_2"));
    assert!(reaches_broker(
        &ssl_config(&broker, &pki, None),
        CLIENT_TIMEOUT
    ));
}

#[test]
fn a_tls_listener_without_a_keystore_does_not_start() {
    let root = tempdir("no-keystore");
    let output = Command::new(broker_binary())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(root.join("data"))
        .args(["--listener-security-protocol", "SSL"])
        .stdin(Stdio::null())
        .output()
        .expect("running sluice");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs ssl_keystore_location"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout");

    let missing = root.join("missing.pem");
    let output = Command::new(broker_binary())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(root.join("data"))
        .args([
            "--listener-security-protocol",
            "SASL_SSL",
            "--ssl-keystore-location",
        ])
        .arg(&missing)
        .stdin(Stdio::null())
        .output()
        .expect("running sluice");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read ssl_keystore_location"),
        "{stderr}"
    );
}

/// `sluice topic list` through `--command-config`: (success, stdout,
/// stderr).
fn topic_list(broker: &TestBroker, properties: &Path) -> (bool, String, String) {
    let output = Command::new(broker_binary())
        .args(["topic", "list", "--bootstrap-server", &broker.bootstrap()])
        .arg("--command-config")
        .arg(properties)
        .stdin(Stdio::null())
        .output()
        .expect("sluice topic list");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Whether `openssl s_client` completes a handshake with `version`.
fn s_client(address: &str, ca: &str, version: &str) -> bool {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", address, "-CAfile", ca, version])
        .args(["-verify_return_error", "-brief"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    // End of input: s_client closes once the handshake is done (or failed).
    drop(child.stdin.take());
    let output = child.wait_with_output().expect("s_client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    output.status.success() && stderr.contains("CONNECTION ESTABLISHED")
}

/// Sends SIGHUP and waits for the broker to log `line`.
fn hang_up(broker: &TestBroker, line: &str) {
    let before = broker.log().matches(line).count();
    // SAFETY: kill with the pid of a child this test started.
    let sent = unsafe { libc::kill(broker.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(sent, 0, "kill -HUP");
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    while broker.log().matches(line).count() == before {
        assert!(Instant::now() < deadline, "no '{line}' in the log");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory for one test's certificates, removed when the test ends
/// unless `SLUICE_TEST_KEEP` is set.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("SLUICE_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn tempdir(name: &str) -> TempDir {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("sluice-tls-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    TempDir(dir)
}
