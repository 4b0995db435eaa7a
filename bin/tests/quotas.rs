//! Client quotas (KIP-13, KIP-546, KIP-219) against the real broker:
//! DescribeClientQuotas and AlterClientQuotas through Sluice's own admin
//! client, quotas kept across a restart, and librdkafka producers and
//! consumers held to their byte-rate quotas (and told so: librdkafka's
//! statistics count the throttle times it was sent).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start_cluster_with, wait_until, Stop, TestBroker, CLIENT_TIMEOUT};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_net::client::{
    Admin, ClientError, ClientOptions, NewTopic, QuotaAlteration, QuotaEntry, QuotaFilterComponent,
    QuotaMatch,
};

/// Kafka's INVALID_REQUEST.
const INVALID_REQUEST: i16 = 42;
/// The byte-rate quota the throttled clients get: 1 MiB/s.
const QUOTA_BYTES_PER_SECOND: f64 = 1024.0 * 1024.0;
/// How long each client runs as fast as it can.
const RUN_SECONDS: u64 = 6;
const RUN: Duration = Duration::from_secs(RUN_SECONDS);
/// Requests a producer pipelines (the Java client's default; librdkafka's
/// is a million).
const PRODUCER_IN_FLIGHT: usize = 5;
/// Bytes of one produce request or fetch response at most (librdkafka's
/// `batch.size` and `max.partition.fetch.bytes` defaults, one partition).
const REQUEST_BYTES: f64 = 1_000_000.0;
/// Kafka's quota window (11 samples of 1 s, the rate taken over at least
/// 10 s) lets a client send 10 s of its quota before it is first
/// throttled, plus what it had in flight; the throttle then makes up for
/// all of it. Over a 6 s run that is about 2.5 times the quota on average;
/// without a quota it is hundreds of times.
const QUOTA_WINDOW_MIN_SECONDS: f64 = 10.0;
const THROTTLED_RATE_MAX: f64 = (QUOTA_BYTES_PER_SECOND * QUOTA_WINDOW_MIN_SECONDS
    + PRODUCER_IN_FLIGHT as f64 * REQUEST_BYTES)
    / RUN_SECONDS as f64;
/// The same client without a quota must be at least this much faster.
const UNTHROTTLED_SPEEDUP_MIN: f64 = 5.0;
/// Bytes of each record the clients send.
const RECORD_BYTES: usize = 16 * 1024;

fn admin(broker: &TestBroker) -> Admin {
    Admin::connect(&broker.bootstrap(), ClientOptions::default()).expect("admin connects")
}

fn entity(parts: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    parts
        .iter()
        .map(|(entity_type, name)| (entity_type.to_string(), name.map(str::to_string)))
        .collect()
}

fn alteration(parts: &[(&str, Option<&str>)], changes: &[(&str, Option<f64>)]) -> QuotaAlteration {
    QuotaAlteration {
        entity: entity(parts),
        changes: changes
            .iter()
            .map(|(key, value)| (key.to_string(), *value))
            .collect(),
    }
}

fn component(entity_type: &str, matching: QuotaMatch) -> QuotaFilterComponent {
    QuotaFilterComponent {
        entity_type: entity_type.to_string(),
        matching,
    }
}

/// Every entity with its values, in a stable order.
fn described(admin: &mut Admin, filter: &[QuotaFilterComponent], strict: bool) -> Vec<QuotaEntry> {
    let mut entries = admin
        .describe_client_quotas(filter, strict)
        .expect("describe client quotas");
    entries.sort_by(|a, b| a.entity.cmp(&b.entity));
    entries
}

fn values(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), *value))
        .collect()
}

#[test]
fn quotas_are_altered_described_removed_and_kept_across_a_restart() {
    let mut broker = TestBroker::start();
    let mut admin = admin(&broker);
    let alice_default = [("user", Some("alice")), ("client-id", None)];
    let answers = admin
        .alter_client_quotas(
            &[
                alteration(
                    &alice_default,
                    &[
                        ("producer_byte_rate", Some(1_048_576.0)),
                        ("consumer_byte_rate", Some(2048.0)),
                    ],
                ),
                alteration(
                    &[("client-id", Some("c1"))],
                    &[("request_percentage", Some(50.0))],
                ),
            ],
            false,
        )
        .expect("alter client quotas");
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");

    // validate_only checks and changes nothing.
    let answers = admin
        .alter_client_quotas(
            &[alteration(
                &[("user", Some("bob"))],
                &[("producer_byte_rate", Some(10.0))],
            )],
            true,
        )
        .expect("validate client quotas");
    assert!(answers[0].is_ok(), "{answers:?}");

    let expected = vec![
        QuotaEntry {
            entity: entity(&[("client-id", Some("c1"))]),
            values: values(&[("request_percentage", 50.0)]),
        },
        QuotaEntry {
            entity: entity(&alice_default),
            values: values(&[
                ("consumer_byte_rate", 2048.0),
                ("producer_byte_rate", 1_048_576.0),
            ]),
        },
    ];
    assert_eq!(described(&mut admin, &[], false), expected);
    // Filters: alice exactly (not strict: her client-id entity matches),
    // strictly (it names another type), the default client id, any user.
    let alice = [component("user", QuotaMatch::Exact("alice".into()))];
    assert_eq!(described(&mut admin, &alice, false), expected[1..]);
    assert!(described(&mut admin, &alice, true).is_empty());
    let default_client = [component("client-id", QuotaMatch::Default)];
    assert_eq!(described(&mut admin, &default_client, false), expected[1..]);
    let any_client = [component("client-id", QuotaMatch::Any)];
    assert_eq!(described(&mut admin, &any_client, true), expected[..1]);

    // An unknown key, an ip entity and a fractional byte rate are refused,
    // each alone: the valid entry beside them is written.
    let answers = admin
        .alter_client_quotas(
            &[
                alteration(&[("user", Some("carol"))], &[("bogus_rate", Some(1.0))]),
                alteration(
                    &[("ip", Some("127.0.0.1"))],
                    &[("connection_creation_rate", Some(1.0))],
                ),
                alteration(
                    &[("user", Some("carol"))],
                    &[("producer_byte_rate", Some(1.5))],
                ),
                alteration(&[("user", None)], &[("consumer_byte_rate", Some(4096.0))]),
            ],
            false,
        )
        .expect("alter client quotas");
    let codes: Vec<i16> = answers
        .iter()
        .map(|answer| answer.as_ref().map_or_else(|error| error.code, |()| 0))
        .collect();
    assert_eq!(
        codes,
        [INVALID_REQUEST, INVALID_REQUEST, INVALID_REQUEST, 0]
    );
    let error = admin
        .describe_client_quotas(&[component("group", QuotaMatch::Any)], false)
        .expect_err("an unknown entity type is refused");
    assert!(error.to_string().contains("INVALID_REQUEST"), "{error}");

    // Removals: one key of alice's, then the whole default-user entity.
    let answers = admin
        .alter_client_quotas(
            &[
                alteration(&alice_default, &[("consumer_byte_rate", None)]),
                alteration(&[("user", None)], &[("consumer_byte_rate", None)]),
            ],
            false,
        )
        .expect("remove client quotas");
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let expected = vec![
        expected[0].clone(),
        QuotaEntry {
            entity: entity(&alice_default),
            values: values(&[("producer_byte_rate", 1_048_576.0)]),
        },
    ];
    assert_eq!(described(&mut admin, &[], false), expected);

    drop(admin);
    broker.restart(Stop::Term);
    let mut admin = self::admin(&broker);
    assert_eq!(described(&mut admin, &[], false), expected);
}

#[test]
fn quotas_are_the_same_on_every_broker_of_a_cluster() {
    let brokers = start_cluster_with(3, &[]);
    // Each broker takes a change: the ones that are not the active
    // controller forward it there.
    for (index, broker) in brokers.iter().enumerate() {
        let user = format!("user-{index}");
        let change = alteration(
            &[("user", Some(user.as_str()))],
            &[("producer_byte_rate", Some(1000.0 * (index + 1) as f64))],
        );
        // Right after the start a quorum may still be settling: NOT_CONTROLLER
        // is retried, as clients retry it.
        wait_until("the change is written", CLIENT_TIMEOUT, || {
            admin(broker)
                .alter_client_quotas(std::slice::from_ref(&change), false)
                .is_ok_and(|answers| answers.iter().all(Result::is_ok))
        });
    }
    let expected: Vec<QuotaEntry> = (0..brokers.len())
        .map(|index| QuotaEntry {
            entity: entity(&[("user", Some(format!("user-{index}").as_str()))]),
            values: values(&[("producer_byte_rate", 1000.0 * (index + 1) as f64)]),
        })
        .collect();
    for broker in &brokers {
        wait_until("every broker describes every quota", CLIENT_TIMEOUT, || {
            described(&mut admin(broker), &[], false) == expected
        });
    }
}

/// Counts what the client was told: the largest throttle time librdkafka's
/// statistics saw, and (for a producer) the bytes delivered.
#[derive(Default)]
struct Counting {
    throttle_ms_max: AtomicI64,
    delivered_bytes: AtomicU64,
}

#[derive(Clone, Default)]
struct CountingContext(Arc<Counting>);

impl ClientContext for CountingContext {
    fn stats(&self, statistics: Statistics) {
        for broker in statistics.brokers.values() {
            if let Some(throttle) = &broker.throttle {
                self.0
                    .throttle_ms_max
                    .fetch_max(throttle.max, Ordering::Relaxed);
            }
        }
    }
}

impl ConsumerContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(message) = result {
            let bytes = message.payload().map_or(0, <[u8]>::len);
            self.0
                .delivered_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }
}

/// A client config with `client_id` and statistics every 200 ms.
fn config(broker: &TestBroker, client_id: &str) -> ClientConfig {
    let mut config = broker.client_config();
    config
        .set("client.id", client_id)
        .set("statistics.interval.ms", "200");
    config
}

/// Produces to `topic` as fast as it can for [`RUN`]; the bytes delivered
/// per second and the largest throttle time reported.
fn produce_flat_out(broker: &TestBroker, topic: &str, client_id: &str) -> (f64, i64) {
    produce_flat_out_with(
        broker,
        topic,
        client_id,
        PRODUCER_IN_FLIGHT,
        CountingContext::default(),
    )
}

/// [`produce_flat_out`] with `in_flight` requests pipelined, counting into
/// `context`, which other producers may share.
fn produce_flat_out_with(
    broker: &TestBroker,
    topic: &str,
    client_id: &str,
    in_flight: usize,
    context: CountingContext,
) -> (f64, i64) {
    let producer: ThreadedProducer<CountingContext> = config(broker, client_id)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set(
            "max.in.flight.requests.per.connection",
            in_flight.to_string(),
        )
        .set("queue.buffering.max.kbytes", "32768")
        .create_with_context(context.clone())
        .expect("creating the producer");
    let payload = vec![7u8; RECORD_BYTES];
    let started = Instant::now();
    while started.elapsed() < RUN {
        let record = BaseRecord::<(), [u8]>::to(topic).payload(&payload);
        if producer.send(record).is_err() {
            // The local queue is full: the broker is slower than we are.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let delivered = context.0.delivered_bytes.load(Ordering::Relaxed);
    let rate = delivered as f64 / started.elapsed().as_secs_f64();
    // What is still queued is not counted; purge it so the drop is quick.
    producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    std::thread::sleep(Duration::from_millis(500));
    (rate, context.0.throttle_ms_max.load(Ordering::Relaxed))
}

/// [`produce_flat_out`] with `producers` producers of one client id at
/// once, each with its own connection and one request in flight (so that
/// what they overshoot by is small beside what shards that did not share
/// would let through): the bytes all of them delivered per second, and
/// the largest throttle time any saw.
fn produce_flat_out_together(
    broker: &TestBroker,
    topic: &str,
    client_id: &str,
    producers: usize,
) -> (f64, i64) {
    let context = CountingContext::default();
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..producers)
            .map(|_| {
                let context = context.clone();
                scope.spawn(move || produce_flat_out_with(broker, topic, client_id, 1, context))
            })
            .collect();
        let rates: Vec<f64> = runs
            .into_iter()
            .map(|run| run.join().expect("a producer thread").0)
            .collect();
        // Each run divides the shared count by its own time: the same
        // bytes, so any one of them is the total rate.
        let rate = rates.into_iter().fold(0.0, f64::max);
        (rate, context.0.throttle_ms_max.load(Ordering::Relaxed))
    })
}

/// Consumes `topic`'s partition 0 from the start as fast as it can for
/// [`RUN`] or until it has read `total` bytes; the record bytes per second
/// and the largest throttle time.
fn consume_flat_out(broker: &TestBroker, topic: &str, client_id: &str, total: usize) -> (f64, i64) {
    let context = CountingContext::default();
    let consumer: BaseConsumer<CountingContext> = config(broker, client_id)
        .set("group.id", client_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create_with_context(context.clone())
        .expect("creating the consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let started = Instant::now();
    let mut bytes = 0usize;
    while started.elapsed() < RUN && bytes < total {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let message: OwnedMessage = message.detach();
            bytes += message.payload().map_or(0, <[u8]>::len);
        }
    }
    let rate = bytes as f64 / started.elapsed().as_secs_f64();
    // One more statistics interval, so the last throttle is reported.
    let _ = consumer.poll(Duration::from_millis(300));
    (rate, context.0.throttle_ms_max.load(Ordering::Relaxed))
}

/// Gives `client_id` the quota `key` of `value`.
fn set_quota(broker: &TestBroker, client_id: &str, key: &str, value: f64) {
    let answers = admin(broker)
        .alter_client_quotas(
            &[alteration(
                &[("client-id", Some(client_id))],
                &[(key, Some(value))],
            )],
            false,
        )
        .expect("alter client quotas");
    assert!(answers[0].is_ok(), "{answers:?}");
}

fn megabytes(rate: f64) -> f64 {
    rate / QUOTA_BYTES_PER_SECOND
}

/// The client with the quota stayed near it and was told it was
/// throttled; the one without was neither held nor told.
fn assert_held_to_quota(what: &str, throttled: (f64, i64), free: (f64, i64)) {
    let ((throttled, throttle_ms), (free, free_throttle_ms)) = (throttled, free);
    eprintln!(
        "{what}: {:.2} MiB/s with a 1 MiB/s quota (throttle max {throttle_ms} ms), \
         {:.2} MiB/s without",
        megabytes(throttled),
        megabytes(free)
    );
    assert!(throttled <= THROTTLED_RATE_MAX, "{throttled} B/s");
    assert!(throttle_ms > 0, "librdkafka saw no throttle");
    assert_eq!(free_throttle_ms, 0);
    assert!(
        free >= UNTHROTTLED_SPEEDUP_MIN * throttled,
        "{free} vs {throttled} B/s"
    );
}

/// Topics that make each Metadata answer cost the shard some time, and
/// the request-time quota's share of a shard in percent.
const METADATA_TOPICS: usize = 40;
const METADATA_TOPIC_PARTITIONS: i32 = 8;
const REQUEST_PERCENTAGE: f64 = 1.0;
/// How many times more Metadata answers a client without the quota must
/// get than one held to a hundredth of a shard.
const UNTHROTTLED_METADATA_SPEEDUP_MIN: f64 = 3.0;

/// Asks for the metadata of every topic, one request after another, for
/// [`RUN`]: the answers per second and the largest throttle time
/// librdkafka was told of.
fn metadata_flat_out(broker: &TestBroker, client_id: &str) -> (f64, i64) {
    let context = CountingContext::default();
    let consumer: BaseConsumer<CountingContext> = config(broker, client_id)
        .create_with_context(context.clone())
        .expect("creating the client");
    let started = Instant::now();
    let mut answers = 0u64;
    while started.elapsed() < RUN {
        if consumer.fetch_metadata(None, CLIENT_TIMEOUT).is_ok() {
            answers += 1;
        }
        // Statistics arrive through the queue.
        let _ = consumer.poll(Duration::ZERO);
    }
    let rate = answers as f64 / started.elapsed().as_secs_f64();
    // One more statistics interval, so the last throttle is reported.
    let _ = consumer.poll(Duration::from_millis(300));
    (rate, context.0.throttle_ms_max.load(Ordering::Relaxed))
}

/// A request-time quota (`request_percentage`, KIP-124): a client allowed
/// a hundredth of a shard's time that asks for Metadata flat out gets far
/// fewer answers than one without a quota, and is told it was throttled
/// (librdkafka's statistics count the throttle times of Metadata answers);
/// the other client is never throttled.
#[test]
fn a_request_percentage_quota_holds_a_client_to_its_share_of_a_shard() {
    let broker = TestBroker::start();
    for topic in 0..METADATA_TOPICS {
        broker.create_topic(&format!("metadata-{topic}"), METADATA_TOPIC_PARTITIONS);
    }
    set_quota(&broker, "busy", "request_percentage", REQUEST_PERCENTAGE);
    let (busy, busy_throttle_ms) = metadata_flat_out(&broker, "busy");
    let (free, free_throttle_ms) = metadata_flat_out(&broker, "free");
    eprintln!(
        "Metadata answers: {busy:.0}/s with request_percentage {REQUEST_PERCENTAGE} (throttle \
         max {busy_throttle_ms} ms), {free:.0}/s without"
    );
    assert!(busy_throttle_ms > 0, "librdkafka saw no throttle");
    assert_eq!(free_throttle_ms, 0);
    assert!(
        free >= UNTHROTTLED_METADATA_SPEEDUP_MIN * busy,
        "{free:.0}/s vs {busy:.0}/s"
    );
}

/// The partition-mutation quota of the tests below: 2 partitions a
/// second, so a full bucket (11 s of it) holds 22, and topics of 10
/// partitions: the third takes the bucket to -8, 4 s of throttle.
const MUTATIONS_PER_SECOND: f64 = 2.0;
const MUTATION_TOPIC_PARTITIONS: i32 = 10;
const TOPICS_IN_A_BUCKET: usize = 3;
/// Kafka's THROTTLING_QUOTA_EXCEEDED.
const THROTTLING_QUOTA_EXCEEDED: i16 = 89;
/// Past the throttle after the third topic (8 partitions at 2 a second).
const MUTATION_REFILL: Duration = Duration::from_millis(4_500);

fn mutation_topic(name: &str) -> NewTopic {
    NewTopic {
        name: name.to_string(),
        partitions: Some(MUTATION_TOPIC_PARTITIONS),
        replication_factor: None,
        configs: Vec::new(),
    }
}

fn refused_for_quota<T>(outcome: Result<T, &ClientError>) -> bool {
    matches!(outcome, Err(ClientError::Broker(error)) if error.code == THROTTLING_QUOTA_EXCEEDED)
}

/// A partition-mutation quota (`controller_mutation_rate`, KIP-599) with
/// the request versions that can be told no (CreateTopics v6+, DeleteTopics
/// v5+, which Sluice's admin client speaks): the topics a full bucket
/// holds are created, the bucket then below zero refuses the next topic
/// and a deletion with THROTTLING_QUOTA_EXCEEDED (each on a new connection
/// of the same client id: a connection throttled once reads nothing more
/// until its throttle is over, by when the bucket has refilled), another
/// client id is not held, and once the bucket has refilled the deletion
/// goes through.
#[test]
fn a_controller_mutation_rate_quota_refuses_topics_past_it() {
    let broker = TestBroker::start();
    set_quota(
        &broker,
        "creator",
        "controller_mutation_rate",
        MUTATIONS_PER_SECOND,
    );
    let options = || ClientOptions {
        client_id: "creator".to_string(),
        ..ClientOptions::default()
    };
    let mut first = Admin::connect(&broker.bootstrap(), options()).expect("admin connects");
    for index in 0..TOPICS_IN_A_BUCKET {
        first
            .create_topic(&mutation_topic(&format!("mutation-{index}")))
            .expect("a topic within the quota");
    }
    let connect = || Admin::connect(&broker.bootstrap(), options()).expect("admin connects");
    let refused = connect().create_topic(&mutation_topic("mutation-past"));
    assert!(refused_for_quota(refused.as_ref()), "{refused:?}");
    let mut second = connect();
    let refused = second.delete_topic("mutation-0");
    assert!(refused_for_quota(refused.as_ref()), "{refused:?}");
    admin(&broker)
        .create_topic(&mutation_topic("mutation-other-client"))
        .expect("another client id has no quota");
    std::thread::sleep(MUTATION_REFILL);
    second
        .delete_topic("mutation-0")
        .expect("a deletion once the bucket refilled");
}

/// The same quota with librdkafka, whose CreateTopics (v4) predates
/// KIP-599 and cannot be told no: every topic of one request past the
/// quota is still created, and counted, so that a request of the same
/// client id that can be told no is refused next.
#[test]
fn a_controller_mutation_rate_quota_lets_older_clients_through_and_counts_them() {
    let broker = TestBroker::start();
    set_quota(
        &broker,
        "rd-creator",
        "controller_mutation_rate",
        MUTATIONS_PER_SECOND,
    );
    let client: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        config(&broker, "rd-creator")
            .create()
            .expect("an admin client");
    let names: Vec<String> = (0..=TOPICS_IN_A_BUCKET)
        .map(|index| format!("rd-mutation-{index}"))
        .collect();
    let new_topics: Vec<rdkafka::admin::NewTopic> = names
        .iter()
        .map(|name| {
            rdkafka::admin::NewTopic::new(
                name,
                MUTATION_TOPIC_PARTITIONS,
                rdkafka::admin::TopicReplication::Fixed(1),
            )
        })
        .collect();
    let results = futures_lite::future::block_on(
        client.create_topics(&new_topics, &rdkafka::admin::AdminOptions::new()),
    )
    .expect("CreateTopics answered");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let options = ClientOptions {
        client_id: "rd-creator".to_string(),
        ..ClientOptions::default()
    };
    let refused = Admin::connect(&broker.bootstrap(), options)
        .expect("admin connects")
        .create_topic(&mutation_topic("rd-mutation-past"));
    assert!(refused_for_quota(refused.as_ref()), "{refused:?}");
}

#[test]
fn a_producer_byte_rate_quota_holds_a_producer_to_it() {
    let broker = TestBroker::start();
    broker.create_topic("quota-produce", 1);
    set_quota(
        &broker,
        "slow-producer",
        "producer_byte_rate",
        QUOTA_BYTES_PER_SECOND,
    );
    let throttled = produce_flat_out(&broker, "quota-produce", "slow-producer");
    let free = produce_flat_out(&broker, "quota-produce", "free-producer");
    assert_held_to_quota("producer", throttled, free);
}

/// A quota is the broker's, not a connection's or a shard's: producers of
/// one client id whose connections land on different shards are held to
/// it together (the shards report their rates to each other). The largest
/// throttle any of them was given is the one that accounts for all their
/// bytes (Kafka's throttle brings the rate over the window back to the
/// quota): shards that did not share would each throttle on their own
/// bytes only, and let through more than the largest throttle accounts for.
#[test]
fn a_quota_holds_a_clients_connections_together() {
    const PRODUCERS: usize = 4;
    let broker = TestBroker::start();
    broker.create_topic("quota-shared", 1);
    set_quota(
        &broker,
        "shared-producer",
        "producer_byte_rate",
        QUOTA_BYTES_PER_SECOND,
    );
    let (together, throttle_ms) =
        produce_flat_out_together(&broker, "quota-shared", "shared-producer", PRODUCERS);
    let delivered = together * RUN_SECONDS as f64;
    let accounted =
        QUOTA_BYTES_PER_SECOND * (QUOTA_WINDOW_MIN_SECONDS + throttle_ms as f64 / 1000.0);
    eprintln!(
        "{PRODUCERS} producers of one client id: {:.2} MiB/s together with a 1 MiB/s quota \
         ({:.1} MiB delivered; throttle max {throttle_ms} ms, which accounts for {:.1} MiB)",
        megabytes(together),
        megabytes(delivered),
        megabytes(accounted),
    );
    assert!(throttle_ms > 0, "librdkafka saw no throttle");
    // One request per producer may be answered after the largest throttle
    // was given.
    assert!(
        delivered <= accounted + PRODUCERS as f64 * REQUEST_BYTES,
        "{delivered} bytes delivered, {accounted} accounted for"
    );
    assert!(together <= 4.0 * QUOTA_BYTES_PER_SECOND, "{together} B/s");
}

#[test]
fn a_consumer_byte_rate_quota_holds_a_consumer_to_it() {
    let broker = TestBroker::start();
    broker.create_topic("quota-fetch", 1);
    // 64 MiB: the throttled consumer cannot run out of them in its run.
    let producer: ThreadedProducer<CountingContext> = config(&broker, "loader")
        .set("acks", "1")
        .set("linger.ms", "5")
        .create_with_context(CountingContext::default())
        .expect("creating the producer");
    let payload = vec![3u8; RECORD_BYTES];
    let records = 64 * 1024 * 1024 / RECORD_BYTES;
    for _ in 0..records {
        loop {
            let record = BaseRecord::<(), [u8]>::to("quota-fetch").payload(&payload);
            match producer.send(record) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    producer.flush(CLIENT_TIMEOUT).expect("flush");
    set_quota(
        &broker,
        "slow-consumer",
        "consumer_byte_rate",
        QUOTA_BYTES_PER_SECOND,
    );
    let total = records * RECORD_BYTES;
    let throttled = consume_flat_out(&broker, "quota-fetch", "slow-consumer", total);
    let free = consume_flat_out(&broker, "quota-fetch", "free-consumer", total);
    assert_held_to_quota("consumer", throttled, free);
}

/// `sluice quota` with `args` against `broker`: (success, stdout, stderr).
fn quota_cli(broker: &TestBroker, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(common::broker_binary())
        .arg("quota")
        .args(args)
        .args(["--bootstrap-server", &broker.bootstrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running sluice quota");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The CLI sets, describes and removes quotas (checked through the admin
/// API as well), a bad key is Kafka's refusal, and a producer whose client
/// id got its quota from the CLI is held to it.
#[test]
fn the_quota_command_sets_describes_and_removes_quotas() {
    let broker = TestBroker::start();
    let rate = QUOTA_BYTES_PER_SECOND.to_string();
    let (ok, out, err) = quota_cli(
        &broker,
        &[
            "set",
            "--client-id",
            "cli-slow",
            "--add",
            &format!("producer_byte_rate={rate}"),
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("set producer_byte_rate=1048576 for client-id=cli-slow"),
        "{out}"
    );
    let (ok, out, err) = quota_cli(
        &broker,
        &[
            "set",
            "--user",
            "alice",
            "--default-client-id",
            "--add",
            "consumer_byte_rate=2048",
            "--add",
            "request_percentage=50",
        ],
    );
    assert!(ok, "{out}{err}");
    let mut admin = admin(&broker);
    assert_eq!(
        described(&mut admin, &[], false),
        vec![
            QuotaEntry {
                entity: entity(&[("client-id", Some("cli-slow"))]),
                values: values(&[("producer_byte_rate", QUOTA_BYTES_PER_SECOND)]),
            },
            QuotaEntry {
                entity: entity(&[("user", Some("alice")), ("client-id", None)]),
                values: values(&[("consumer_byte_rate", 2048.0), ("request_percentage", 50.0)]),
            },
        ]
    );
    let (ok, out, _) = quota_cli(&broker, &["describe"]);
    assert!(ok);
    assert!(out.contains("client-id=cli-slow"), "{out}");
    assert!(out.contains("user=alice,client-id=<default>"), "{out}");
    let (ok, out, _) = quota_cli(&broker, &["describe", "--user", "alice", "--json"]);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["quotas"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(json["quotas"][0]["quotas"]["consumer_byte_rate"], 2048.0);

    let (ok, out, err) = quota_cli(
        &broker,
        &[
            "set",
            "--user",
            "alice",
            "--default-client-id",
            "--delete",
            "request_percentage",
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        described(
            &mut admin,
            &[component("user", QuotaMatch::Exact("alice".into()))],
            false
        )[0]
        .values,
        values(&[("consumer_byte_rate", 2048.0)])
    );
    // A key Kafka does not know: the broker's refusal, one line, status 1.
    let (ok, out, err) = quota_cli(
        &broker,
        &["set", "--user", "bob", "--add", "fastest_rate=1"],
    );
    assert!(!ok, "{out}");
    assert!(err.contains("INVALID_REQUEST"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // A value that is not a number never reaches the broker: status 2.
    let output = std::process::Command::new(common::broker_binary())
        .args([
            "quota",
            "set",
            "--user",
            "bob",
            "--add",
            "producer_byte_rate=fast",
        ])
        .output()
        .expect("running sluice quota");
    assert_eq!(output.status.code(), Some(2));

    broker.create_topic("quota-cli", 1);
    let throttled = produce_flat_out(&broker, "quota-cli", "cli-slow");
    let free = produce_flat_out(&broker, "quota-cli", "cli-free");
    assert_held_to_quota("producer (quota set by the CLI)", throttled, free);
}
