//! The coordinators on a three-broker cluster, with real `sluice` processes
//! and librdkafka, across kill -9 of the broker they run on.
//!
//! Transactions: the transaction coordinator, the partitions a transaction
//! writes to and the group whose offsets it commits sit on different
//! brokers, so markers and transaction checks travel between brokers
//! (WriteTxnMarkers, AddPartitionsToTxn v4+). Transactions run before,
//! while and after the transaction coordinator's broker, which also leads
//! a data partition, is killed with kill -9 and restarted.
//!
//! Afterwards a read_committed consumer reads exactly the records of the
//! committed transactions, each once, none of an aborted one, and the
//! group's offset is the one the last committed transaction wrote.
//!
//! Consumer groups: a subscribed consumer commits as it goes while its
//! group coordinator's broker is killed; it finds the new coordinator and
//! goes on, and a new member of the group starts exactly where the
//! committed offsets say.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{cluster_bootstrap, start_cluster_with, wait_for, Stop, TestBroker, CLIENT_TIMEOUT};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const NODES: usize = 3;
const TOPIC: &str = "cluster-txn";
const PARTITIONS: i32 = 3;
/// Transactional groups are named `GROUP-<n>`: the first whose
/// coordinator is not the transaction coordinator's broker is used.
const GROUP: &str = "cluster-txn-group";
const GROUP_CANDIDATES: usize = 30;
const TXN_ID: &str = "cluster-txn-producer";
/// Two of three: writes go on with one broker down.
const MIN_INSYNC_REPLICAS: &str = "2";
/// Transactions in each of the three phases (before, during, after).
const TRANSACTIONS_PER_PHASE: usize = 20;
/// Every this many transactions one is aborted on purpose.
const ABORT_EVERY: usize = 4;
/// Attempts at a commit that failed with a retriable error.
const COMMIT_ATTEMPTS: usize = 10;
const BROKER_SESSION_TIMEOUT_MS: &str = "1500";
/// For the cluster to form, fail over or catch up.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(200);
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// FindCoordinator's key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
const CONSUMER_GROUP: &str = "cluster-consumers";
/// Records produced before the consumer starts, and again after it is done.
const RECORDS: usize = 300;
/// Kills of a coordinator right after an acknowledged commit: each
/// follower's fetch must have been parked at the time (see the test).
const KILL_AFTER_COMMIT_ROUNDS: u32 = 3;
/// The offset a group commits before the one that is checked.
const COMMITTED_BEFORE: i64 = 1_000;
const RECORDS_AFTER: usize = 30;

#[derive(Default)]
struct Outcome {
    committed: BTreeSet<String>,
    aborted: BTreeSet<String>,
    /// The group offset (partition 0) the last committed transaction wrote.
    last_committed_offset: Option<i64>,
}

/// Transactions whose coordinator, partitions and group sit on different
/// brokers, with every broker up.
#[test]
fn transactions_span_brokers() {
    transactions_scenario(false);
}

/// The same across kill -9 of the transaction coordinator's broker.
#[test]
fn transactions_survive_the_loss_of_their_coordinator() {
    transactions_scenario(true);
}

fn transactions_scenario(kill_coordinator: bool) {
    let mut brokers = start_cluster_with_topic();
    let group_id = group_elsewhere(&brokers);
    let (producer, group) = clients(&brokers, &group_id);
    let mut outcome = Outcome::default();
    let mut next = 0;
    run_phase(&producer, &group, &mut next, &mut outcome);
    if kill_coordinator {
        kill_and_restart_coordinator(&mut brokers, &producer, &group, &mut next, &mut outcome);
    } else {
        run_phase(&producer, &group, &mut next, &mut outcome);
    }
    drop(producer);
    check_transactions(&brokers, &group_id, &outcome);
}

/// A group id whose coordinator is on another broker than the transaction
/// coordinator of [`TXN_ID`], so that TxnOffsetCommit's check with the
/// transaction coordinator crosses brokers.
fn group_elsewhere(brokers: &[TestBroker]) -> String {
    let located = |key_type: i8, key: &str| {
        wait_for(
            &format!("a coordinator for {key}"),
            CLUSTER_TIMEOUT,
            POLL_INTERVAL,
            || {
                let node = coordinator(&brokers[0], key_type, key);
                (node > 0).then_some(node).ok_or(format!("node {node}"))
            },
        )
    };
    let transactions = located(KEY_TYPE_TRANSACTION, TXN_ID);
    for candidate in 0..GROUP_CANDIDATES {
        let group_id = format!("{GROUP}-{candidate}");
        if located(KEY_TYPE_GROUP, &group_id) != transactions {
            return group_id;
        }
    }
    panic!("every candidate group is coordinated by broker {transactions}");
}

/// Kills the transaction coordinator's broker, runs a phase without it,
/// restarts it and runs another.
fn kill_and_restart_coordinator(
    brokers: &mut [TestBroker],
    producer: &ThreadedProducer<DefaultProducerContext>,
    group: &BaseConsumer,
    next: &mut usize,
    outcome: &mut Outcome,
) {
    let victim = coordinator(&brokers[0], KEY_TYPE_TRANSACTION, TXN_ID);
    let victim_index = usize::try_from(victim - 1).expect("node ids start at 1");
    eprintln!("killing broker {victim}, the transaction coordinator");
    brokers[victim_index].stop(Stop::Kill);
    let survivors: Vec<&TestBroker> = brokers
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != victim_index)
        .map(|(_, broker)| broker)
        .collect();
    wait_for(
        "a new transaction coordinator",
        CLUSTER_TIMEOUT,
        POLL_INTERVAL,
        || {
            let now = coordinator(survivors[0], KEY_TYPE_TRANSACTION, TXN_ID);
            (now != victim && now > 0)
                .then_some(())
                .ok_or(format!("coordinator {now}"))
        },
    );
    run_phase(producer, group, next, outcome);
    brokers[victim_index].start_again();
    wait_for_full_isr(brokers, Some(TOPIC), "the killed broker came back");
    run_phase(producer, group, next, outcome);
}

/// What a read_committed consumer and the group's offset show.
fn check_transactions(brokers: &[TestBroker], group_id: &str, outcome: &Outcome) {
    assert!(
        outcome.committed.len() >= TRANSACTIONS_PER_PHASE * PARTITIONS as usize,
        "only {} records committed",
        outcome.committed.len()
    );
    let read = read_committed(brokers);
    let mut seen = BTreeMap::new();
    for value in &read {
        *seen.entry(value.clone()).or_insert(0) += 1;
    }
    let duplicates: Vec<&String> = seen
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(value, _)| value)
        .collect();
    let missing: Vec<&String> = outcome
        .committed
        .iter()
        .filter(|value| !seen.contains_key(*value))
        .collect();
    let from_aborted: Vec<&String> = read
        .iter()
        .filter(|value| outcome.aborted.contains(*value))
        .collect();
    let unknown: Vec<&String> = read
        .iter()
        .filter(|value| !outcome.committed.contains(*value) && !outcome.aborted.contains(*value))
        .collect();
    assert!(duplicates.is_empty(), "read twice: {duplicates:?}");
    assert!(missing.is_empty(), "committed but not read: {missing:?}");
    assert!(
        from_aborted.is_empty(),
        "read from aborted transactions: {from_aborted:?}"
    );
    assert!(unknown.is_empty(), "read but never sent: {unknown:?}");
    let committed_offset = group_offset(brokers, group_id);
    assert_eq!(
        Some(committed_offset),
        outcome.last_committed_offset,
        "the group's offset is not the last committed transaction's"
    );
    eprintln!(
        "{} records committed, {} aborted, all read back read_committed exactly once",
        outcome.committed.len(),
        outcome.aborted.len()
    );
}

#[test]
fn consumer_group_survives_the_loss_of_its_coordinator() {
    let mut brokers = start_cluster_with_topic();
    let bootstrap = cluster_bootstrap(&brokers);
    produce(&brokers, 0, RECORDS);
    let member = brokers[0].consumer(&[
        ("bootstrap.servers", &bootstrap),
        ("group.id", CONSUMER_GROUP),
    ]);
    member.subscribe(&[TOPIC]).expect("subscribe");
    let mut consumed: BTreeSet<String> = BTreeSet::new();
    consume_and_commit(&member, &mut consumed, RECORDS / 2);

    let victim = coordinator(&brokers[0], KEY_TYPE_GROUP, CONSUMER_GROUP);
    let victim_index = usize::try_from(victim - 1).expect("node ids start at 1");
    eprintln!("killing broker {victim}, the group coordinator");
    brokers[victim_index].stop(Stop::Kill);
    consume_and_commit(&member, &mut consumed, RECORDS);
    drop(member);
    brokers[victim_index].start_again();
    wait_for_full_isr(&brokers, Some(TOPIC), "the killed broker came back");

    let expected: BTreeSet<String> = (0..RECORDS).map(record_value).collect();
    assert_eq!(consumed, expected, "the member did not read every record");
    // A new member of the group starts at the committed offsets: it reads
    // exactly what was produced after the first member was done.
    produce(&brokers, RECORDS, RECORDS_AFTER);
    let newcomer = brokers[0].consumer(&[
        ("bootstrap.servers", &cluster_bootstrap(&brokers)),
        ("group.id", CONSUMER_GROUP),
    ]);
    newcomer.subscribe(&[TOPIC]).expect("subscribe");
    let mut after = BTreeSet::new();
    consume_and_commit(&newcomer, &mut after, RECORDS_AFTER);
    let expected: BTreeSet<String> = (RECORDS..RECORDS + RECORDS_AFTER)
        .map(record_value)
        .collect();
    assert_eq!(
        after, expected,
        "the new member did not start at the committed offsets"
    );
}

/// An acknowledged offset commit survives kill -9 of its coordinator's
/// broker right after the acknowledgement. The commit is acknowledged once
/// the followers hold it, but they learn the high watermark that covers it
/// only with their next fetch answer, up to a fetch wait later; killed
/// before that, the leader leaves a new one whose high watermark is below
/// the commit. A coordinator that replayed its partition only to the high
/// watermark missed the commit, and answered OffsetFetch with the one
/// before, for good. Kafka's coordinators replay to the log end.
#[test]
fn an_offset_commit_survives_a_kill_right_after_its_acknowledgement() {
    let mut brokers = start_cluster_with_topic();
    for round in 1..=KILL_AFTER_COMMIT_ROUNDS {
        let group_id = format!("{CONSUMER_GROUP}-kill-after-commit-{round}");
        let committer = brokers[0].consumer(&[
            ("bootstrap.servers", &cluster_bootstrap(&brokers)),
            ("group.id", &group_id),
            ("enable.auto.commit", "false"),
        ]);
        // Committed once to find the coordinator (and have an earlier
        // commit for a stale one to answer with), then for the check.
        commit_offset(&committer, COMMITTED_BEFORE);
        let victim = wait_for(
            &format!("the coordinator of {group_id}"),
            CLUSTER_TIMEOUT,
            POLL_INTERVAL,
            || {
                let node = coordinator(&brokers[0], KEY_TYPE_GROUP, &group_id);
                (node > 0).then_some(node).ok_or(format!("node {node}"))
            },
        );
        let victim_index = usize::try_from(victim - 1).expect("node ids start at 1");
        let committed = COMMITTED_BEFORE + i64::from(round);
        commit_offset(&committer, committed);
        brokers[victim_index].stop(Stop::Kill);
        drop(committer);
        eprintln!("round {round}: committed {committed}, then killed broker {victim}");
        let survivor = &brokers[(victim_index + 1) % NODES];
        wait_for(
            &format!("a new coordinator of {group_id}"),
            CLUSTER_TIMEOUT,
            POLL_INTERVAL,
            || {
                let now = coordinator(survivor, KEY_TYPE_GROUP, &group_id);
                (now != victim && now > 0)
                    .then_some(())
                    .ok_or(format!("coordinator {now}"))
            },
        );
        let fetched = wait_for(
            &format!("OffsetFetch of {group_id} from its new coordinator"),
            CLUSTER_TIMEOUT,
            POLL_INTERVAL,
            || {
                let consumer = survivor.consumer(&[
                    ("bootstrap.servers", &cluster_bootstrap(&brokers)),
                    ("group.id", &group_id),
                    ("enable.auto.commit", "false"),
                ]);
                let mut wanted = TopicPartitionList::new();
                wanted.add_partition(TOPIC, 0);
                consumer
                    .committed_offsets(wanted, METADATA_TIMEOUT)
                    .map_err(|error| format!("OffsetFetch: {error}"))
                    .map(|list| {
                        list.find_partition(TOPIC, 0)
                            .and_then(|entry| entry.offset().to_raw())
                            .unwrap_or(-1)
                    })
            },
        );
        assert_eq!(
            fetched, committed,
            "round {round}: the new coordinator of {group_id} lost the commit acknowledged \
             just before broker {victim} was killed"
        );
        brokers[victim_index].start_again();
        wait_for_full_isr(&brokers, Some(TOPIC), "the killed broker came back");
    }
}

/// Commits `offset` for partition 0 of the topic, retrying while the
/// coordinator is not yet known or is moving.
fn commit_offset(consumer: &BaseConsumer, offset: i64) {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(TOPIC, 0, Offset::Offset(offset))
        .expect("partition");
    wait_for(
        &format!("a commit of offset {offset}"),
        CLUSTER_TIMEOUT,
        POLL_INTERVAL,
        || {
            consumer
                .commit(&list, CommitMode::Sync)
                .map_err(|error| format!("commit: {error}"))
        },
    );
}

fn record_value(index: usize) -> String {
    format!("record-{index:05}")
}

/// Produces records `first..first + count` round-robin over the
/// partitions, acks=all, and waits for every acknowledgement.
fn produce(brokers: &[TestBroker], first: usize, count: usize) {
    let mut config = brokers[0].client_config();
    config
        .set("bootstrap.servers", cluster_bootstrap(brokers))
        .set("acks", "all")
        .set("enable.idempotence", "true");
    let producer: ThreadedProducer<DefaultProducerContext> = config.create().expect("producer");
    for index in first..first + count {
        let value = record_value(index);
        let partition = i32::try_from(index).expect("few records") % PARTITIONS;
        producer
            .send(
                BaseRecord::<(), str>::to(TOPIC)
                    .partition(partition)
                    .payload(&value),
            )
            .map_err(|(error, _)| error)
            .expect("send");
    }
    producer
        .flush(CLIENT_TIMEOUT)
        .expect("every record acknowledged");
}

/// Polls until `consumed` holds `until` distinct values, committing each
/// record's offset synchronously as it goes (at least once: a record whose
/// commit was lost with the coordinator may come again).
fn consume_and_commit(consumer: &BaseConsumer, consumed: &mut BTreeSet<String>, until: usize) {
    let mut next = TopicPartitionList::new();
    wait_for(
        &format!("{until} records consumed and committed"),
        CLUSTER_TIMEOUT,
        Duration::ZERO,
        || {
            if let Some(message) = consumer.poll(POLL_INTERVAL) {
                let message = message.map_err(|error| format!("consume: {error}"))?;
                if let Some(Ok(value)) = message.payload_view::<str>() {
                    consumed.insert(value.to_string());
                }
                next.add_partition_offset(
                    message.topic(),
                    message.partition(),
                    Offset::Offset(message.offset() + 1),
                )
                .map_err(|error| format!("offset: {error}"))?;
                // A commit that fails while the coordinator moves is
                // retried by the next record's commit.
                if let Err(error) = consumer.commit(&next, CommitMode::Sync) {
                    eprintln!("commit: {error}");
                }
            }
            (consumed.len() >= until)
                .then_some(())
                .ok_or(format!("{} consumed", consumed.len()))
        },
    );
    // The last commits may have failed while the coordinator moved: commit
    // what was consumed until a commit succeeds.
    wait_for(
        "the consumed offsets committed",
        CLUSTER_TIMEOUT,
        POLL_INTERVAL,
        || {
            consumer
                .commit(&next, CommitMode::Sync)
                .map_err(|error| format!("commit: {error}"))
        },
    );
}

/// Three brokers, all registered, and the topic in sync on all of them.
fn start_cluster_with_topic() -> Vec<TestBroker> {
    let brokers = start_cluster_with(
        NODES,
        &["--broker-session-timeout-ms", BROKER_SESSION_TIMEOUT_MS],
    );
    wait_for_full_isr(&brokers, None, "the cluster formed");
    create_topic(&brokers);
    wait_for_full_isr(&brokers, Some(TOPIC), "the topic was created");
    brokers
}

fn clients(
    brokers: &[TestBroker],
    group_id: &str,
) -> (ThreadedProducer<DefaultProducerContext>, BaseConsumer) {
    let mut config = brokers[0].client_config();
    config.set("bootstrap.servers", cluster_bootstrap(brokers));
    let mut producer_config = config.clone();
    producer_config
        .set("transactional.id", TXN_ID)
        .set("transaction.timeout.ms", "60000");
    let producer: ThreadedProducer<DefaultProducerContext> =
        producer_config.create().expect("producer");
    producer
        .init_transactions(CLIENT_TIMEOUT)
        .expect("init_transactions");
    let group: BaseConsumer = config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .create()
        .expect("group consumer");
    (producer, group)
}

/// Runs one phase of transactions, numbered from `next`.
fn run_phase(
    producer: &ThreadedProducer<DefaultProducerContext>,
    group: &BaseConsumer,
    next: &mut usize,
    outcome: &mut Outcome,
) {
    for _ in 0..TRANSACTIONS_PER_PHASE {
        let number = *next;
        *next += 1;
        let values: Vec<String> = (0..PARTITIONS)
            .map(|partition| format!("txn-{number:05}-p{partition}"))
            .collect();
        let offset = i64::try_from(number).expect("small") + 1;
        let wanted_abort = number % ABORT_EVERY == ABORT_EVERY - 1;
        let committed = run_transaction(producer, group, &values, offset, wanted_abort);
        if committed {
            outcome.committed.extend(values);
            outcome.last_committed_offset = Some(offset);
        } else {
            outcome.aborted.extend(values);
        }
    }
}

/// One transaction: a record to every partition and the group's offset;
/// committed unless `abort` or the transaction must be aborted. Returns
/// whether it was committed.
fn run_transaction(
    producer: &ThreadedProducer<DefaultProducerContext>,
    group: &BaseConsumer,
    values: &[String],
    offset: i64,
    abort: bool,
) -> bool {
    producer.begin_transaction().expect("begin_transaction");
    for (partition, value) in values.iter().enumerate() {
        let partition = i32::try_from(partition).expect("few partitions");
        producer
            .send(
                BaseRecord::<(), str>::to(TOPIC)
                    .partition(partition)
                    .payload(value),
            )
            .map_err(|(error, _)| error)
            .expect("send");
    }
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(TOPIC, 0, Offset::Offset(offset))
        .expect("offset");
    let metadata = group.group_metadata().expect("group metadata");
    let sent = producer.send_offsets_to_transaction(&offsets, &metadata, CLIENT_TIMEOUT);
    if abort || !succeeded_or_abortable(sent) {
        abort_transaction(producer);
        return false;
    }
    for _ in 0..COMMIT_ATTEMPTS {
        match producer.commit_transaction(CLIENT_TIMEOUT) {
            Ok(()) => return true,
            Err(KafkaError::Transaction(error)) if error.is_retriable() => {
                eprintln!("commit_transaction: {error}; retrying");
            }
            Err(KafkaError::Transaction(error)) if error.txn_requires_abort() => {
                eprintln!("commit_transaction: {error}; aborting");
                abort_transaction(producer);
                return false;
            }
            Err(error) => panic!("commit_transaction failed for good: {error}"),
        }
    }
    panic!("commit_transaction did not succeed in {COMMIT_ATTEMPTS} attempts");
}

/// True on success; false when the transaction must be aborted; panics on
/// a fatal error.
fn succeeded_or_abortable(result: KafkaResult<()>) -> bool {
    match result {
        Ok(()) => true,
        Err(KafkaError::Transaction(error)) if error.txn_requires_abort() => {
            eprintln!("{error}; aborting the transaction");
            false
        }
        Err(error) => panic!("transaction step failed for good: {error}"),
    }
}

fn abort_transaction(producer: &ThreadedProducer<DefaultProducerContext>) {
    for _ in 0..COMMIT_ATTEMPTS {
        match producer.abort_transaction(CLIENT_TIMEOUT) {
            Ok(()) => return,
            Err(KafkaError::Transaction(error)) if error.is_retriable() => {
                eprintln!("abort_transaction: {error}; retrying");
            }
            Err(error) => panic!("abort_transaction failed for good: {error}"),
        }
    }
    panic!("abort_transaction did not succeed in {COMMIT_ATTEMPTS} attempts");
}

fn create_topic(brokers: &[TestBroker]) {
    let admin = brokers[0].admin();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(NODES as i32))
        .set("min.insync.replicas", MIN_INSYNC_REPLICAS);
    let results =
        futures_lite::future::block_on(admin.create_topics(&[topic], &common::admin_options()))
            .expect("CreateTopics");
    for result in results {
        result.expect("topic created");
    }
}

/// Waits until every broker lists all three and, for `topic`, shows every
/// partition with a leader and all three in its ISR.
fn wait_for_full_isr(brokers: &[TestBroker], topic: Option<&str>, why: &str) {
    wait_for(
        &format!("every broker registered and in sync ({why})"),
        CLUSTER_TIMEOUT,
        POLL_INTERVAL,
        || {
            for broker in brokers {
                let metadata = broker
                    .consumer(&[])
                    .fetch_metadata(topic, METADATA_TIMEOUT)
                    .map_err(|error| format!("Metadata: {error}"))?;
                if metadata.brokers().len() != NODES {
                    return Err(format!("{} brokers listed", metadata.brokers().len()));
                }
                let Some(topic) = topic else { continue };
                let described = metadata
                    .topics()
                    .iter()
                    .find(|described| described.name() == topic)
                    .ok_or("no topic")?;
                if described.partitions().len() != PARTITIONS as usize {
                    return Err(format!("{} partitions", described.partitions().len()));
                }
                for partition in described.partitions() {
                    if partition.leader() < 0 || partition.isr().len() != NODES {
                        return Err(format!(
                            "partition {} leader {} isr {:?}",
                            partition.id(),
                            partition.leader(),
                            partition.isr()
                        ));
                    }
                }
            }
            Ok(())
        },
    );
}

/// The node id of the coordinator of `key` (a group or a transactional
/// id) as `broker` reports it (FindCoordinator v4), or -1.
fn coordinator(broker: &TestBroker, key_type: i8, key: &str) -> i32 {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    let mut request = FindCoordinatorRequest::default();
    request.key_type = key_type;
    request.coordinator_keys = vec![common::text(key)];
    let response: FindCoordinatorResponse =
        common::WireClient::new(broker).call(ApiKey::FindCoordinator, 4, &request);
    response
        .coordinators
        .first()
        .filter(|coordinator| coordinator.error_code == 0)
        .map_or(-1, |coordinator| coordinator.node_id.0)
}

/// Every value in the topic, read read_committed from the start up to each
/// partition's end.
fn read_committed(brokers: &[TestBroker]) -> Vec<String> {
    let consumer = brokers[0].consumer(&[
        ("bootstrap.servers", &cluster_bootstrap(brokers)),
        ("isolation.level", "read_committed"),
    ]);
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let (_, high) = consumer
            .fetch_watermarks(TOPIC, partition, CLIENT_TIMEOUT)
            .expect("watermarks");
        ends.insert(partition, high);
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut values = Vec::new();
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    wait_for(
        "reading every partition to its end",
        CLUSTER_TIMEOUT,
        Duration::ZERO,
        || {
            if let Some(message) = consumer.poll(POLL_INTERVAL) {
                let message = message.map_err(|error| format!("consume: {error}"))?;
                positions.insert(message.partition(), message.offset() + 1);
                if let Some(Ok(value)) = message.payload_view::<str>() {
                    values.push(value.to_string());
                }
            }
            // Control records (markers) take offsets but are not delivered:
            // a partition is read once its position passed its last record.
            let done = ends.iter().all(|(partition, end)| {
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|list| {
                        list.find_partition(TOPIC, *partition)
                            .and_then(|entry| entry.offset().to_raw())
                    })
                    .unwrap_or(0);
                position.max(*positions.get(partition).unwrap_or(&0)) >= *end
            });
            done.then_some(())
                .ok_or(format!("positions {positions:?} of {ends:?}"))
        },
    );
    values
}

/// The group's committed offset of partition 0.
fn group_offset(brokers: &[TestBroker], group_id: &str) -> i64 {
    let consumer = brokers[0].consumer(&[
        ("bootstrap.servers", &cluster_bootstrap(brokers)),
        ("group.id", group_id),
        ("enable.auto.commit", "false"),
    ]);
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(TOPIC, 0);
    let committed = consumer
        .committed_offsets(wanted, CLIENT_TIMEOUT)
        .expect("OffsetFetch");
    committed
        .find_partition(TOPIC, 0)
        .and_then(|entry| entry.offset().to_raw())
        .unwrap_or(-1)
}
