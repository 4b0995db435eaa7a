//! Topic administration through librdkafka's AdminClient: create (with
//! validate_only, bad names, bad partition counts and replication factors,
//! duplicates), add partitions, describe and alter configs, delete; and the
//! results hold across a restart.

mod common;

use futures_lite::future::block_on;
use rdkafka::admin::{
    AdminClient, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use common::{
    admin_options, produce_all, raw_connect, read_all, receive_response, send_request, Record,
    Stop, TestBroker, TrackedProducer, CLIENT_TIMEOUT,
};

type Admin = AdminClient<DefaultClientContext>;

/// Topics the broker lists, with their partition counts.
fn topics(admin: &Admin) -> Vec<(String, usize)> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, CLIENT_TIMEOUT)
        .expect("metadata");
    let mut topics: Vec<(String, usize)> = metadata
        .topics()
        .iter()
        .map(|topic| (topic.name().to_string(), topic.partitions().len()))
        .collect();
    topics.sort();
    topics
}

fn partitions_of(admin: &Admin, name: &str) -> Option<usize> {
    topics(admin)
        .into_iter()
        .find(|(topic, _)| topic == name)
        .map(|(_, partitions)| partitions)
}

/// Creates one topic and returns the per-topic outcome.
fn create(admin: &Admin, topic: NewTopic<'_>, validate_only: bool) -> Result<(), RDKafkaErrorCode> {
    let options = admin_options().validate_only(validate_only);
    let results = block_on(admin.create_topics([&topic], &options)).expect("CreateTopics request");
    assert_eq!(results.len(), 1);
    results
        .into_iter()
        .next()
        .expect("one result")
        .map(drop)
        .map_err(|(_, code)| code)
}

/// A topic config's value and whether it is the default.
fn config(admin: &Admin, topic: &str, name: &str) -> (Option<String>, bool) {
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options()))
            .expect("DescribeConfigs");
    let resource = results
        .into_iter()
        .next()
        .expect("one result")
        .expect("describing the topic");
    let entry = resource
        .get(name)
        .unwrap_or_else(|| panic!("{topic} has no config {name}"));
    (entry.value.clone(), entry.is_default)
}

/// Alters through librdkafka. rdkafka 0.39 reports every resource of an
/// AlterConfigs result as a success (it never reads the per-resource error),
/// so outcomes are checked by describing the configs afterwards, and error
/// codes with [`alter_raw`].
fn alter(admin: &Admin, topic: &str, settings: &[(&str, &str)]) {
    let mut change = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (name, value) in settings {
        change = change.set(name, value);
    }
    let results =
        block_on(admin.alter_configs([&change], &admin_options())).expect("AlterConfigs request");
    assert_eq!(results.len(), 1);
}

/// AlterConfigs v1 on a raw connection (kafka-protocol's encoder); returns
/// the resource's error code.
fn alter_raw(broker: &TestBroker, topic: &str, settings: &[(&str, &str)]) -> i16 {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ApiKey};
    use kafka_protocol::protocol::StrBytes;
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = 2; // topic
    resource.resource_name = StrBytes::from_string(topic.to_string());
    resource.configs = settings
        .iter()
        .map(|(name, value)| {
            let mut config = AlterableConfig::default();
            config.name = StrBytes::from_string(name.to_string());
            config.value = Some(StrBytes::from_string(value.to_string()));
            config
        })
        .collect();
    let mut request = AlterConfigsRequest::default();
    request.resources = vec![resource];
    let mut stream = raw_connect(broker.address());
    send_request(&mut stream, ApiKey::AlterConfigs, 1, 1, &request);
    let response: AlterConfigsResponse = receive_response(&mut stream, ApiKey::AlterConfigs, 1, 1);
    assert_eq!(response.responses.len(), 1);
    response.responses[0].error_code
}

/// Kafka error codes checked on the raw path.
const INVALID_CONFIG: i16 = 40;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

#[test]
fn topics_are_created_altered_and_deleted() {
    let mut broker = TestBroker::start_with(&["--auto-create-topics", "false"]);
    let admin = broker.admin();
    const FIXED: TopicReplication<'static> = TopicReplication::Fixed(1);

    // validate_only checks without creating.
    assert_eq!(
        create(&admin, NewTopic::new("orders", 3, FIXED), true),
        Ok(())
    );
    assert_eq!(
        partitions_of(&admin, "orders"),
        None,
        "validate_only created the topic"
    );

    // Invalid requests, each with Kafka's error code.
    for bad in ["bad name!", ".", "..", "ü", &"x".repeat(250)] {
        assert_eq!(
            create(&admin, NewTopic::new(bad, 1, FIXED), false),
            Err(RDKafkaErrorCode::InvalidTopic),
            "{bad:?}"
        );
    }
    assert_eq!(
        create(
            &admin,
            NewTopic::new("replicated", 1, TopicReplication::Fixed(2)),
            false
        ),
        Err(RDKafkaErrorCode::InvalidReplicationFactor)
    );
    assert_eq!(
        create(&admin, NewTopic::new("empty", 0, FIXED), false),
        Err(RDKafkaErrorCode::InvalidPartitions)
    );
    assert_eq!(
        create(
            &admin,
            NewTopic::new("unknown-config", 1, FIXED).set("no.such.config", "1"),
            false
        ),
        Err(RDKafkaErrorCode::InvalidConfig)
    );
    assert_eq!(
        create(
            &admin,
            NewTopic::new("bad-config", 1, FIXED).set("retention.ms", "soon"),
            false
        ),
        Err(RDKafkaErrorCode::InvalidConfig)
    );
    // The same errors under validate_only.
    assert_eq!(
        create(
            &admin,
            NewTopic::new("replicated", 1, TopicReplication::Fixed(3)),
            true
        ),
        Err(RDKafkaErrorCode::InvalidReplicationFactor)
    );
    let listed = topics(&admin);
    for name in [
        "replicated",
        "empty",
        "unknown-config",
        "bad-config",
        "bad name!",
    ] {
        assert!(
            listed.iter().all(|(topic, _)| topic != name),
            "{name} exists after a failed create: {listed:?}"
        );
    }

    // Create for real, with a config; then a duplicate.
    assert_eq!(
        create(
            &admin,
            NewTopic::new("orders", 3, FIXED).set("retention.ms", "86400000"),
            false
        ),
        Ok(())
    );
    assert_eq!(partitions_of(&admin, "orders"), Some(3));
    assert_eq!(
        create(&admin, NewTopic::new("orders", 5, FIXED), false),
        Err(RDKafkaErrorCode::TopicAlreadyExists)
    );
    assert_eq!(
        partitions_of(&admin, "orders"),
        Some(3),
        "a duplicate create changed the topic"
    );
    assert_eq!(
        config(&admin, "orders", "retention.ms"),
        (Some("86400000".into()), false)
    );
    assert!(
        config(&admin, "orders", "segment.bytes").1,
        "segment.bytes was not set: default"
    );
    // Kafka's default: reserving every segment's full size up front let a
    // topic of 100 partitions x 1 GiB segments fill a disk with 58 GB free
    // (KafkaStorageError on produce).
    assert_eq!(
        config(&admin, "orders", "preallocate"),
        (Some("false".into()), true)
    );

    // Partitions: only up.
    let more = NewPartitions::new("orders", 6);
    let results =
        block_on(admin.create_partitions([&more], &admin_options())).expect("CreatePartitions");
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(partitions_of(&admin, "orders"), Some(6));
    let fewer = NewPartitions::new("orders", 2);
    let results =
        block_on(admin.create_partitions([&fewer], &admin_options())).expect("CreatePartitions");
    assert_eq!(
        results[0].as_ref().map_err(|(_, code)| *code),
        Err(RDKafkaErrorCode::InvalidPartitions)
    );
    let missing = NewPartitions::new("no-such-topic", 2);
    let results =
        block_on(admin.create_partitions([&missing], &admin_options())).expect("CreatePartitions");
    assert_eq!(
        results[0].as_ref().map_err(|(_, code)| *code),
        Err(RDKafkaErrorCode::UnknownTopicOrPartition)
    );
    let validate = NewPartitions::new("orders", 8);
    let results =
        block_on(admin.create_partitions([&validate], &admin_options().validate_only(true)))
            .expect("CreatePartitions");
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(
        partitions_of(&admin, "orders"),
        Some(6),
        "validate_only added partitions"
    );
    // The new partitions take messages.
    let records: Vec<Record> = (0..6)
        .map(|partition| Record {
            partition,
            offset: -1,
            key: None,
            value: Some(format!("to {partition}").into_bytes()),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect();
    let positions = produce_all(&broker, "orders", &[("acks", "all")], &records);
    assert_eq!(
        positions,
        (0..6).map(|partition| (partition, 0)).collect::<Vec<_>>()
    );

    // Topic configs are in force, not just stored: max.message.bytes.
    assert_eq!(
        create(
            &admin,
            NewTopic::new("small", 1, FIXED).set("max.message.bytes", "2000"),
            false
        ),
        Ok(())
    );
    let mut producer = TrackedProducer::new(&broker, "small", &[("acks", "1"), ("linger.ms", "0")]);
    let small = |len: usize| Record {
        partition: 0,
        offset: -1,
        key: None,
        value: Some(vec![7u8; len]),
        headers: Vec::new(),
        timestamp: None,
    };
    producer.send(&small(100));
    producer.flush();
    producer.send(&small(5_000));
    producer.flush();
    let reports = producer.reports();
    assert_eq!(
        reports[0],
        Some(Ok((0, 0))),
        "a message under max.message.bytes"
    );
    match &reports[1] {
        Some(Err(error)) => assert!(error.contains("MessageSizeTooLarge"), "{error}"),
        other => panic!("a message over max.message.bytes: {other:?}"),
    }
    drop(producer);

    // Configs: alter (the legacy, whole-set AlterConfigs librdkafka sends),
    // describe, reject bad values.
    alter(
        &admin,
        "orders",
        &[("retention.ms", "1234567"), ("segment.bytes", "1048576")],
    );
    assert_eq!(
        config(&admin, "orders", "retention.ms"),
        (Some("1234567".into()), false)
    );
    assert_eq!(
        config(&admin, "orders", "segment.bytes"),
        (Some("1048576".into()), false)
    );
    alter(&admin, "orders", &[("retention.ms", "-7")]);
    assert_eq!(
        config(&admin, "orders", "retention.ms").0.as_deref(),
        Some("1234567"),
        "a bad alter changed it"
    );
    assert_eq!(
        alter_raw(&broker, "orders", &[("retention.ms", "-7")]),
        INVALID_CONFIG
    );
    assert_eq!(
        alter_raw(&broker, "orders", &[("no.such.config", "1")]),
        INVALID_CONFIG
    );
    assert_eq!(
        alter_raw(&broker, "no-such-topic", &[("retention.ms", "1")]),
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        config(&admin, "orders", "segment.bytes"),
        (Some("1048576".into()), false),
        "rejected alters changed it"
    );
    // AlterConfigs replaces the whole set: what is not named goes back to its default.
    alter(&admin, "orders", &[("retention.ms", "7654321")]);
    assert_eq!(
        config(&admin, "orders", "retention.ms"),
        (Some("7654321".into()), false)
    );
    assert!(
        config(&admin, "orders", "segment.bytes").1,
        "segment.bytes kept after a whole-set alter"
    );
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Broker(1)], &admin_options()))
            .expect("DescribeConfigs (broker)");
    assert!(
        results[0]
            .as_ref()
            .is_ok_and(|resource| !resource.entries.is_empty()),
        "{results:?}"
    );

    // Deleting.
    assert_eq!(
        create(&admin, NewTopic::new("doomed", 2, FIXED), false),
        Ok(())
    );
    produce_all(&broker, "doomed", &[("acks", "1")], &records[..2]);
    let results =
        block_on(admin.delete_topics(&["doomed"], &admin_options())).expect("DeleteTopics");
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(partitions_of(&admin, "doomed"), None);
    let results =
        block_on(admin.delete_topics(&["doomed"], &admin_options())).expect("DeleteTopics");
    assert_eq!(
        results[0].as_ref().map_err(|(_, code)| *code),
        Err(RDKafkaErrorCode::UnknownTopicOrPartition)
    );
    // The name can be used again, and the new topic starts empty.
    assert_eq!(
        create(&admin, NewTopic::new("doomed", 1, FIXED), false),
        Ok(())
    );
    assert!(
        read_all(&broker, "doomed", 1)[&0].is_empty(),
        "a recreated topic has the old topic's data"
    );

    // Everything above holds after a restart.
    drop(admin);
    let before = topics(&broker.admin());
    broker.restart(Stop::Term);
    let admin = broker.admin();
    assert_eq!(topics(&admin), before);
    assert_eq!(
        config(&admin, "orders", "retention.ms"),
        (Some("7654321".into()), false)
    );
    let orders = read_all(&broker, "orders", 6);
    assert!(
        orders.values().all(|records| records.len() == 1),
        "{orders:?}"
    );
}
