//! Transactions on a three-broker cluster, with real `sluice` processes and
//! librdkafka: the transaction coordinator, the partitions a transaction
//! writes to and the group whose offsets it commits sit on different
//! brokers, so markers and transaction checks travel between brokers
//! (WriteTxnMarkers, AddPartitionsToTxn v4+). Transactions run before,
//! while and after the transaction coordinator's broker, which also leads
//! a data partition, is killed with kill -9 and restarted.
//!
//! Afterwards a read_committed consumer reads exactly the records of the
//! committed transactions, each once, none of an aborted one, and the
//! group's offset is the one the last committed transaction wrote.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{cluster_bootstrap, start_cluster_with, wait_for, Stop, TestBroker, CLIENT_TIMEOUT};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const NODES: usize = 3;
const TOPIC: &str = "cluster-txn";
const PARTITIONS: i32 = 3;
const GROUP: &str = "cluster-txn-group";
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
/// FindCoordinator's key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

#[derive(Default)]
struct Outcome {
    committed: BTreeSet<String>,
    aborted: BTreeSet<String>,
    /// The group offset (partition 0) the last committed transaction wrote.
    last_committed_offset: Option<i64>,
}

#[test]
fn transactions_survive_the_loss_of_their_coordinator() {
    let mut brokers = start_cluster_with(
        NODES,
        &["--broker-session-timeout-ms", BROKER_SESSION_TIMEOUT_MS],
    );
    wait_for_full_isr(&brokers, None, "the cluster formed");
    create_topic(&brokers);
    wait_for_full_isr(&brokers, Some(TOPIC), "the topic was created");
    let (producer, group) = clients(&brokers);
    let mut outcome = Outcome::default();
    let mut next = 0;
    run_phase(&producer, &group, &mut next, &mut outcome);

    let victim = transaction_coordinator(&brokers[0]);
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
            let now = transaction_coordinator(survivors[0]);
            (now != victim && now > 0)
                .then_some(())
                .ok_or(format!("coordinator {now}"))
        },
    );
    run_phase(&producer, &group, &mut next, &mut outcome);

    brokers[victim_index].start_again();
    wait_for_full_isr(&brokers, Some(TOPIC), "the killed broker came back");
    run_phase(&producer, &group, &mut next, &mut outcome);
    drop(producer);

    assert!(
        outcome.committed.len() >= TRANSACTIONS_PER_PHASE * PARTITIONS as usize,
        "only {} records committed",
        outcome.committed.len()
    );
    let read = read_committed(&brokers);
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
    let committed_offset = group_offset(&brokers);
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

fn clients(brokers: &[TestBroker]) -> (ThreadedProducer<DefaultProducerContext>, BaseConsumer) {
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
        .set("group.id", GROUP)
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

/// The node id of the transaction coordinator of [`TXN_ID`] as `broker`
/// reports it (FindCoordinator v4), or -1.
fn transaction_coordinator(broker: &TestBroker) -> i32 {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    let mut request = FindCoordinatorRequest::default();
    request.key_type = KEY_TYPE_TRANSACTION;
    request.coordinator_keys = vec![common::text(TXN_ID)];
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
fn group_offset(brokers: &[TestBroker]) -> i64 {
    let consumer = brokers[0].consumer(&[
        ("bootstrap.servers", &cluster_bootstrap(brokers)),
        ("group.id", GROUP),
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
