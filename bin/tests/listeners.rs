//! Several client listeners on one broker (Kafka's `listeners`): a
//! PLAINTEXT and a SASL_PLAINTEXT listener. Each listener's clients are
//! told the broker is at that listener's own address (else a client that
//! bootstrapped through the SASL listener would be sent to the plaintext
//! one), so librdkafka writes through one and reads through both; and each
//! listener keeps its own protocol.

mod common;

use common::{
    admin_options, assert_closed, consume, create_user_offline, handshake, indexed_value,
    plain_login, raw_connect, raw_metadata, Record, TestBroker, TrackedProducer, CLIENT_TIMEOUT,
};
use rdkafka::admin::ResourceSpecifier;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::Offset;

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret-Lk29";
const TOPIC: &str = "two-listeners";
const RECORDS: usize = 400;
const VALUE_BYTES: usize = 200;
const ILLEGAL_SASL_STATE: i16 = 34;

fn start(extra: &[&str]) -> TestBroker {
    let mut args = vec![
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        "--super-users",
        "User:admin",
    ];
    args.extend_from_slice(extra);
    TestBroker::start_prepared(None, &args, |data_dir| {
        create_user_offline(data_dir, ADMIN, ADMIN_PASSWORD)
    })
}

/// librdkafka through the SASL listener at `address`.
fn sasl_config(broker: &TestBroker, address: std::net::SocketAddr) -> ClientConfig {
    let mut config = broker.client_config();
    config
        .set("bootstrap.servers", address.to_string())
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "SCRAM-SHA-256")
        .set("sasl.username", ADMIN)
        .set("sasl.password", ADMIN_PASSWORD);
    config
}

fn read_all(consumer: &BaseConsumer) -> Vec<Vec<u8>> {
    consume(
        consumer,
        TOPIC,
        &[0],
        Offset::Beginning,
        CLIENT_TIMEOUT,
        |records| records.len() >= RECORDS,
    )
    .into_iter()
    .filter_map(|record| record.value)
    .collect()
}

#[test]
fn each_listener_advertises_itself_and_keeps_its_protocol() {
    let broker = start(&[]);
    let plain = broker.address();
    let sasl = broker.listener("SASL_PLAINTEXT");
    assert_ne!(plain.port(), sasl.port());

    // Metadata names the listener the request came through.
    let mut stream = raw_connect(plain);
    let seen = raw_metadata(&mut stream, None, false, 1);
    let ports: Vec<i32> = seen.brokers.iter().map(|node| node.port).collect();
    assert_eq!(ports, vec![i32::from(plain.port())], "{seen:?}");
    let mut stream = raw_connect(sasl);
    plain_login(&mut stream, ADMIN, ADMIN_PASSWORD);
    let seen = raw_metadata(&mut stream, None, false, 3);
    let ports: Vec<i32> = seen.brokers.iter().map(|node| node.port).collect();
    assert_eq!(ports, vec![i32::from(sasl.port())], "{seen:?}");

    // Written through the SASL listener, read through both.
    broker.create_topic(TOPIC, 1);
    let mut producer =
        TrackedProducer::with_config(sasl_config(&broker, sasl), TOPIC, &[("acks", "all")]);
    let sent: Vec<Vec<u8>> = (0..RECORDS)
        .map(|index| indexed_value(index, VALUE_BYTES))
        .collect();
    for value in &sent {
        producer.send(&Record::with_value(0, value.clone()));
    }
    producer.flush();
    let failed: Vec<_> = producer
        .reports()
        .into_iter()
        .enumerate()
        .filter(|(_, report)| !matches!(report, Some(Ok(_))))
        .collect();
    assert!(failed.is_empty(), "not acknowledged: {failed:?}");
    assert_eq!(read_all(&broker.consumer(&[])), sent, "read in plaintext");
    let mut config = sasl_config(&broker, sasl);
    config
        .set("group.id", "two-listeners-readers")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create().expect("consumer");
    assert_eq!(read_all(&consumer), sent, "read through SASL");

    // Each listener keeps its protocol: no request is served on the SASL
    // one before authentication, and the plaintext one has no SASL.
    let mut stream = raw_connect(sasl);
    raw_metadata_unanswered(&mut stream);
    assert_closed(
        &mut stream,
        "Metadata before authenticating on the SASL listener",
    );
    let mut stream = raw_connect(plain);
    assert_eq!(
        handshake(&mut stream, "PLAIN", 1).error_code,
        ILLEGAL_SASL_STATE
    );
}

/// `advertised_listeners` gives the SASL listener's clients a name of its
/// own (a broker behind NAT); the plaintext listener's clients still see
/// its bound address.
#[test]
fn advertised_listeners_name_each_listeners_address() {
    let broker = start(&[
        "--advertised-listeners",
        "SASL_PLAINTEXT://sasl.example.com:19093",
    ]);
    let mut stream = raw_connect(broker.listener("SASL_PLAINTEXT"));
    plain_login(&mut stream, ADMIN, ADMIN_PASSWORD);
    let seen = raw_metadata(&mut stream, None, false, 3);
    let nodes = endpoints(&seen);
    assert_eq!(nodes, vec![("sasl.example.com", 19093)], "{seen:?}");
    let plain = broker.address();
    let mut stream = raw_connect(plain);
    let seen = raw_metadata(&mut stream, None, false, 1);
    let nodes = endpoints(&seen);
    assert_eq!(
        nodes,
        vec![("127.0.0.1", i32::from(plain.port()))],
        "{seen:?}"
    );
    // DescribeConfigs names both listeners, with the ports they got.
    let described = futures_lite::future::block_on(
        broker
            .admin()
            .describe_configs([&ResourceSpecifier::Broker(1)], &admin_options()),
    )
    .expect("DescribeConfigs");
    let resource = described[0].as_ref().expect("the broker's configs");
    let value = |name: &str| {
        resource
            .get(name)
            .and_then(|entry| entry.value.clone())
            .unwrap_or_default()
    };
    let sasl = broker.listener("SASL_PLAINTEXT");
    assert_eq!(
        value("listeners"),
        format!("PLAINTEXT://{plain},SASL_PLAINTEXT://{sasl}")
    );
    assert_eq!(
        value("advertised.listeners"),
        format!("PLAINTEXT://{plain},SASL_PLAINTEXT://sasl.example.com:19093")
    );
    assert_eq!(
        value("listener.security.protocol.map"),
        "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    );
}

/// The brokers a Metadata answer names, as (host, port).
fn endpoints(seen: &kafka_protocol::messages::MetadataResponse) -> Vec<(&str, i32)> {
    seen.brokers
        .iter()
        .map(|node| (node.host.as_str(), node.port))
        .collect()
}

/// Sends a Metadata request without waiting for an answer.
fn raw_metadata_unanswered(stream: &mut std::net::TcpStream) {
    let mut request = kafka_protocol::messages::MetadataRequest::default();
    request.topics = None;
    common::send_request(
        stream,
        kafka_protocol::messages::ApiKey::Metadata,
        common::RAW_METADATA_VERSION,
        1,
        &request,
    );
}
