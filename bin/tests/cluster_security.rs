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
//! removes it everywhere. A cluster on SASL_PLAINTEXT with the ACL
//! authorizer: its brokers log in to each other as their own user, so
//! followers replicate and an acks=all write that needs all three replicas
//! in sync is acknowledged and read back.

mod common;

use std::time::Duration;

use common::pki::Pki;
use common::{
    cli, consume, create_replicated_topic, start_cluster_with, wait_until, Record, Stop,
    TestBroker, TrackedProducer,
};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::Offset;
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

/// The brokers' own user, a super user.
const BROKER_USER: &str = "broker";
const BROKER_PASSWORD: &str = "broker-secret-7";
/// Records the SASL cluster takes and gives back.
const SASL_RECORDS: usize = 300;

/// librdkafka's settings to log in as the brokers' user over `protocol`;
/// `ca` is the CA file to check the brokers' certificates with on TLS.
fn broker_login(protocol: &str, ca: Option<&str>) -> Vec<(String, String)> {
    let mut settings: Vec<(String, String)> = [
        ("security.protocol", protocol),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", BROKER_USER),
        ("sasl.password", BROKER_PASSWORD),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect();
    if let Some(ca) = ca {
        settings.push(("ssl.ca.location".into(), ca.into()));
    }
    settings
}

#[test]
fn brokers_of_a_sasl_cluster_log_in_to_each_other_and_replicate() {
    sasl_cluster_replicates("SASL_PLAINTEXT", None);
}

/// The same over SASL_SSL: each broker checks the others' certificates
/// against the truststore before it logs in to them.
#[test]
fn brokers_of_a_sasl_ssl_cluster_connect_over_tls_and_replicate() {
    sasl_cluster_replicates("SASL_SSL", None);
}

/// Sessions that expire (`connections.max.reauth.ms`, KIP-368): a broker
/// closes a connection whose session ended at its next request, so the
/// brokers' own connections to each other (replica fetches, markers) must
/// log in again before then. Writes that need every replica keep being
/// acknowledged for several lifetimes, and no broker closes another's
/// connection for an expired session.
#[test]
fn brokers_of_a_sasl_cluster_renew_their_sessions_with_each_other() {
    sasl_cluster_replicates("SASL_PLAINTEXT", Some(REAUTH_MS));
}

/// The session lifetime of the test above: several lifetimes pass while it
/// writes `REAUTH_RECORDS`, `REAUTH_RECORD_GAP` apart.
const REAUTH_MS: &str = "1500";
const REAUTH_RECORDS: usize = 120;
const REAUTH_RECORD_GAP: Duration = Duration::from_millis(50);
/// What the broker logs when it closes a connection whose session expired.
const SESSION_EXPIRED: &str = "session expired without re-authentication";

fn sasl_cluster_replicates(protocol: &str, reauth_ms: Option<&str>) {
    // One directory per test: two of them run this on SASL_PLAINTEXT at
    // once, and each removes its own directory at the end.
    let renewing = if reauth_ms.is_some() {
        "renewing"
    } else {
        "once"
    };
    let secrets = std::env::temp_dir().join(format!(
        "sluice-peer-login-{protocol}-{renewing}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&secrets).expect("a directory for the password");
    let password_file = secrets.join("broker.password");
    std::fs::write(&password_file, format!("{BROKER_PASSWORD}\n")).expect("the password file");
    let password_path = password_file.to_str().expect("a UTF-8 path");
    // First on PLAINTEXT, where anyone may make users: the brokers' user
    // goes into the metadata log.
    let mut brokers = start_cluster_with(
        NODES,
        &[
            "--inter-broker-sasl-username",
            BROKER_USER,
            "--inter-broker-sasl-password-file",
            password_path,
        ],
    );
    cli(
        &brokers[0],
        &[
            "user",
            "create",
            "--user",
            BROKER_USER,
            "--password-file",
            password_path,
        ],
    );
    for broker in &brokers {
        wait_until(
            "every broker knows the brokers' user",
            PROPAGATION_TIMEOUT,
            || users(broker) == [BROKER_USER],
        );
    }
    // Then the whole cluster on `protocol` with ACLs; the brokers' user
    // is the only super user, so a broker that did not log in as it could
    // not fetch from another.
    let pki = Pki::new(&secrets.join("pki"));
    let tls = protocol == "SASL_SSL";
    if tls {
        pki.ca("ca");
        pki.issue("ca", "server", "/CN=localhost");
    }
    let keystore = pki.path_text("server.keystore");
    let truststore = pki.path_text("ca.pem");
    for broker in &mut brokers {
        broker.stop(Stop::Kill);
        broker.add_args(&[
            "--listener-security-protocol",
            protocol,
            "--authorizer",
            "acl",
            "--super-users",
            "User:broker",
        ]);
        if let Some(reauth_ms) = reauth_ms {
            broker.add_args(&["--connections-max-reauth-ms", reauth_ms]);
        }
        if tls {
            broker.add_args(&[
                "--ssl-keystore-location",
                &keystore,
                "--ssl-truststore-location",
                &truststore,
            ]);
        }
    }
    let login = broker_login(protocol, tls.then_some(truststore.as_str()));
    let login: Vec<(&str, &str)> = login
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    for broker in &mut brokers {
        broker.launch();
    }
    for broker in &mut brokers {
        broker.await_listening();
    }
    let mut config = brokers[1].client_config();
    for (key, value) in &login {
        config.set(*key, *value);
    }
    round_trip(
        config.clone(),
        &brokers[2].consumer(&login),
        "replicated",
        SASL_RECORDS,
    );
    if reauth_ms.is_some() {
        // librdkafka itself re-authenticates; the brokers must too.
        let mut producer = TrackedProducer::with_config(config, "replicated", &[("acks", "all")]);
        for index in 0..REAUTH_RECORDS {
            producer.send(&Record::with_value(
                (index % PARTITIONS as usize) as i32,
                format!("renewed-{index}").into_bytes(),
            ));
            std::thread::sleep(REAUTH_RECORD_GAP);
        }
        producer.flush();
        let outcomes = producer.outcomes();
        assert!(
            outcomes.iter().all(Result::is_ok),
            "acks=all writes across session lifetimes: {:?}",
            outcomes
                .iter()
                .filter(|outcome| outcome.is_err())
                .collect::<Vec<_>>()
        );
        for broker in &brokers {
            let closed = broker
                .log()
                .lines()
                .filter(|line| line.contains(SESSION_EXPIRED))
                .count();
            assert_eq!(closed, 0, "connections closed for an expired session");
        }
    }
    for broker in &brokers {
        assert!(
            !broker.log().contains(BROKER_PASSWORD),
            "a password in a log"
        );
    }
    std::fs::remove_dir_all(&secrets).expect("removing the password");
}

/// A directory of this test process named after `purpose`, holding a CA
/// (`ca.pem`) and a server certificate it signed (`server.keystore`, for
/// `localhost` and 127.0.0.1), made at run time.
fn server_pki(purpose: &str) -> (std::path::PathBuf, Pki) {
    let root = std::env::temp_dir().join(format!("sluice-{purpose}-{}", std::process::id()));
    let pki = Pki::new(&root.join("pki"));
    pki.ca("ca");
    pki.issue("ca", "server", "/CN=localhost");
    (root, pki)
}

/// Records the two-listener cluster takes and gives back.
const LISTENER_RECORDS: usize = 300;

/// Creates `topic` with a replica on every broker and
/// `min.insync.replicas=3` through `config`, writes `records` records
/// acks=all to its partitions in turn (each needs every replica in sync),
/// and reads them all back with `reader`.
fn round_trip(
    config: rdkafka::ClientConfig,
    reader: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    records: usize,
) {
    let admin: AdminClient<DefaultClientContext> = config.create().expect("an admin client");
    create_replicated_topic(
        &admin,
        topic,
        PARTITIONS,
        NODES as i32,
        &[("min.insync.replicas", "3")],
    );
    let mut producer = TrackedProducer::with_config(config, topic, &[("acks", "all")]);
    let sent: Vec<Record> = (0..records)
        .map(|index| {
            Record::with_value(
                (index % PARTITIONS as usize) as i32,
                format!("{topic}-{index}").into_bytes(),
            )
        })
        .collect();
    for record in &sent {
        producer.send(record);
    }
    producer.flush();
    let outcomes = producer.outcomes();
    assert!(
        outcomes.iter().all(Result::is_ok),
        "acks=all writes that need every replica in sync: {:?}",
        outcomes.iter().find(|outcome| outcome.is_err())
    );
    let read = consume(
        reader,
        topic,
        &(0..PARTITIONS).collect::<Vec<_>>(),
        Offset::Beginning,
        PROPAGATION_TIMEOUT,
        |read| read.len() >= records,
    );
    let mut values: Vec<Vec<u8>> = read.into_iter().filter_map(|record| record.value).collect();
    let mut expected: Vec<Vec<u8>> = sent.into_iter().filter_map(|record| record.value).collect();
    values.sort();
    expected.sort();
    assert_eq!(values, expected);
}

/// Every broker of a cluster with two listeners: the first (PLAINTEXT),
/// which the brokers reach each other through, and an SSL one. A TLS
/// client bootstrapped through one broker's SSL listener is told every
/// broker at its SSL address, so its acks=all writes reach the leaders on
/// the other brokers over TLS too; a plaintext client is told the
/// plaintext addresses and reads the records back.
#[test]
fn every_broker_of_a_cluster_serves_each_listener_at_its_own_address() {
    let (root, pki) = server_pki("listeners");
    let keystore = pki.path_text("server.keystore");
    let brokers = start_cluster_with(
        NODES,
        &[
            "--listeners",
            "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
            "--ssl-keystore-location",
            &keystore,
        ],
    );
    let mut tls = brokers[0].client_config();
    tls.set("bootstrap.servers", brokers[0].listener("SSL").to_string())
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", pki.path_text("ca.pem"));
    // What each listener's clients are told: (node id, host, port).
    let told = |config: &rdkafka::ClientConfig| -> Vec<(i32, String, u16)> {
        let consumer: rdkafka::consumer::BaseConsumer = config.create().expect("a consumer");
        let mut listed: Vec<(i32, String, u16)> = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|metadata| {
                metadata
                    .brokers()
                    .iter()
                    .map(|broker| (broker.id(), broker.host().to_string(), broker.port() as u16))
                    .collect()
            })
            .unwrap_or_default();
        listed.sort();
        listed
    };
    // The first listener's address is the broker's own.
    let at = |protocol: &str| -> Vec<(i32, String, u16)> {
        brokers
            .iter()
            .enumerate()
            .map(|(index, broker)| {
                let address = match protocol {
                    "PLAINTEXT" => broker.address(),
                    other => broker.listener(other),
                };
                (index as i32 + 1, address.ip().to_string(), address.port())
            })
            .collect()
    };
    wait_until(
        "the SSL listener's clients are told every broker's SSL address",
        PROPAGATION_TIMEOUT,
        || told(&tls) == at("SSL"),
    );
    wait_until(
        "the plaintext listener's clients are told every broker's plaintext address",
        PROPAGATION_TIMEOUT,
        || told(&brokers[2].client_config()) == at("PLAINTEXT"),
    );
    round_trip(
        tls,
        &brokers[2].consumer(&[]),
        "two-listeners",
        LISTENER_RECORDS,
    );
    drop(brokers);
    std::fs::remove_dir_all(&root).expect("removing the certificates");
}

/// Listeners with names of their own (Kafka's
/// `listener.security.protocol.map` and `inter.broker.listener.name`): two
/// PLAINTEXT listeners per broker, CLIENTS first and BROKERS second, the
/// brokers reaching each other through BROKERS. BROKERS becomes the
/// registered address; a client bootstrapped through a CLIENTS listener is
/// told every broker's CLIENTS address, and its acks=all writes, which need
/// the followers to replicate through BROKERS, are read back through
/// BROKERS.
#[test]
fn named_listeners_keep_clients_and_brokers_apart() {
    let brokers = start_cluster_with(
        NODES,
        &[
            "--listeners",
            "CLIENTS://127.0.0.1:0,BROKERS://127.0.0.1:0",
            "--listener-security-protocol-map",
            "CLIENTS:PLAINTEXT,BROKERS:PLAINTEXT",
            "--inter-broker-listener-name",
            "BROKERS",
        ],
    );
    let told = |bootstrap: std::net::SocketAddr| -> Vec<(i32, u16)> {
        let mut config = brokers[0].client_config();
        config.set("bootstrap.servers", bootstrap.to_string());
        let consumer: rdkafka::consumer::BaseConsumer = config.create().expect("a consumer");
        let mut listed: Vec<(i32, u16)> = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|metadata| {
                metadata
                    .brokers()
                    .iter()
                    .map(|broker| (broker.id(), broker.port() as u16))
                    .collect()
            })
            .unwrap_or_default();
        listed.sort();
        listed
    };
    // `address()` is the first listener the broker printed: BROKERS, moved
    // to the front by inter_broker_listener_name.
    let ports = |clients: bool| -> Vec<(i32, u16)> {
        brokers
            .iter()
            .enumerate()
            .map(|(index, broker)| {
                let address = if clients {
                    broker.listener("CLIENTS")
                } else {
                    broker.address()
                };
                (index as i32 + 1, address.port())
            })
            .collect()
    };
    assert!(
        ports(true)
            .iter()
            .zip(ports(false))
            .all(|(clients, brokers)| clients.1 != brokers.1),
        "each listener has a port of its own"
    );
    wait_until(
        "a CLIENTS listener's clients are told every broker's CLIENTS address",
        PROPAGATION_TIMEOUT,
        || told(brokers[1].listener("CLIENTS")) == ports(true),
    );
    wait_until(
        "a BROKERS listener's clients are told every broker's BROKERS address",
        PROPAGATION_TIMEOUT,
        || told(brokers[2].address()) == ports(false),
    );
    let mut clients = brokers[0].client_config();
    clients.set(
        "bootstrap.servers",
        brokers[0].listener("CLIENTS").to_string(),
    );
    round_trip(
        clients,
        &brokers[2].consumer(&[]),
        "named-listeners",
        LISTENER_RECORDS,
    );
}

/// The controller port's frame kinds a probe speaks: a hello, and an
/// observer's request for the metadata image, which a voter answers with
/// every record of the metadata log (SCRAM keys among them).
const HELLO: u8 = 1;
const FETCH_IMAGE: u8 = 5;
const IMAGE: u8 = 6;
/// A node id no broker has.
const PROBE_NODE: i32 = 99;
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the controller port at `address` for the metadata image in
/// plaintext, as any process that reaches the port could: the kind of the
/// first frame that comes back, `None` when the port answers no frame
/// (it closed the connection, or sent a TLS alert).
fn probe_controller_port(address: std::net::SocketAddr) -> Option<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&address, PROBE_TIMEOUT)
        .expect("connecting to the controller port");
    stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .expect("a read timeout");
    let mut frames = Vec::new();
    frames.extend_from_slice(&5u32.to_be_bytes());
    frames.push(HELLO);
    frames.extend_from_slice(&PROBE_NODE.to_be_bytes());
    frames.extend_from_slice(&9u32.to_be_bytes());
    frames.push(FETCH_IMAGE);
    frames.extend_from_slice(&0u64.to_be_bytes());
    // A port that refuses may close before all of it is written.
    let _ = stream.write_all(&frames);
    let mut header = [0u8; 5];
    match stream.read_exact(&mut header) {
        // A TLS record (an alert is content type 21) is no frame: a frame
        // of this size begins with a zero length byte.
        Ok(()) if header[0] == 0 => Some(header[4]),
        _ => None,
    }
}

/// The controller port on TLS (`controller_security_protocol = SSL`): in
/// plaintext, any process that reaches the port reads the metadata image;
/// on TLS it is refused in the handshake, while the brokers, each showing
/// its certificate, still form the cluster, forward admin requests to the
/// active controller, register and replicate.
#[test]
fn the_controller_port_on_tls_refuses_a_plaintext_peer() {
    let (root, pki) = server_pki("controller-tls");
    let mut brokers = start_cluster_with(NODES, &[]);
    let ports: Vec<std::net::SocketAddr> = brokers
        .iter()
        .map(|broker| broker.controller_address().expect("a controller port"))
        .collect();
    // The probe is answered in plaintext: it can tell a refusal.
    wait_until(
        "a plaintext controller port answers the probe with the image",
        PROPAGATION_TIMEOUT,
        || {
            ports
                .iter()
                .any(|port| probe_controller_port(*port) == Some(IMAGE))
        },
    );
    let keystore = pki.path_text("server.keystore");
    let truststore = pki.path_text("ca.pem");
    for broker in &mut brokers {
        broker.stop(Stop::Kill);
        broker.add_args(&[
            "--controller-security-protocol",
            "SSL",
            "--ssl-keystore-location",
            &keystore,
            "--ssl-truststore-location",
            &truststore,
        ]);
    }
    for broker in &mut brokers {
        broker.launch();
    }
    for broker in &mut brokers {
        broker.await_listening();
    }
    // Created through a broker that may not be the active controller, so
    // that the request may be forwarded over the port.
    round_trip(
        brokers[2].client_config(),
        &brokers[1].consumer(&[]),
        "controller-tls",
        LISTENER_RECORDS,
    );
    for port in &ports {
        assert_eq!(
            probe_controller_port(*port),
            None,
            "the controller port at {port} answered a plaintext probe"
        );
    }
    drop(brokers);
    std::fs::remove_dir_all(&root).expect("removing the certificates");
}

/// A cluster on an SSL listener that requires client certificates: each
/// broker dials the others showing its keystore's certificate, so the
/// followers' fetches are let in and acks=all writes that need every
/// replica are acknowledged; a client without a certificate is refused.
#[test]
fn brokers_of_an_ssl_cluster_that_requires_client_certificates_show_theirs() {
    let (root, pki) = server_pki("mtls-cluster");
    pki.issue("ca", "client", "/CN=client");
    let keystore = pki.path_text("server.keystore");
    let truststore = pki.path_text("ca.pem");
    let brokers = start_cluster_with(
        NODES,
        &[
            "--listener-security-protocol",
            "SSL",
            "--ssl-client-auth",
            "required",
            "--ssl-keystore-location",
            &keystore,
            "--ssl-truststore-location",
            &truststore,
        ],
    );
    let client_pem = pki.path_text("client.pem");
    let client_key = pki.path_text("client.key");
    let with_certificate = [
        ("security.protocol", "SSL"),
        ("ssl.ca.location", truststore.as_str()),
        ("ssl.certificate.location", client_pem.as_str()),
        ("ssl.key.location", client_key.as_str()),
    ];
    let mut client = brokers[0].client_config();
    for (key, value) in with_certificate {
        client.set(key, value);
    }
    round_trip(
        client,
        &brokers[1].consumer(&with_certificate),
        "mutual-tls",
        LISTENER_RECORDS,
    );
    let mut anonymous = brokers[0].client_config();
    anonymous
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", &truststore);
    let refused: rdkafka::consumer::BaseConsumer = anonymous.create().expect("a consumer");
    assert!(
        refused
            .fetch_metadata(None, Duration::from_secs(5))
            .is_err(),
        "a client without a certificate got Metadata"
    );
    drop(brokers);
    std::fs::remove_dir_all(&root).expect("removing the certificates");
}
