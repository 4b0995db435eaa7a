//! The fault harness's transactional workload: consume-transform-produce.
//!
//! A transformer reads the keyed-append topic read_committed, from its
//! group's committed offsets, and turns each record into one send to the
//! output topic (same partition number), in transactions that also commit
//! the input offsets (`send_offsets_to_transaction`). Some transactions
//! are aborted on purpose; after an abort, or a commit whose outcome is
//! unknown, it reads again from the committed offsets. Each output names
//! a send of its own (`p<TRANSFORMER>-s<n>`, n counting every attempt), so
//! the history says which input each output came from (`Op::Processed`)
//! and how each transaction ended (`Op::TxnEnded`); a read_committed
//! reader tails the output. The checker then finds aborted or uncommitted
//! reads, torn transactions, inputs skipped or transformed into two
//! committed outputs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_perf::history::{Isolation, Op, SendId, TxnOutcome};

use super::{
    cluster_config, log_client_line, parse_value, record, value_of, AssignSpacing, History,
    ERRORS_KEPT_MAX, PARTITIONS, READ_POLL_TIMEOUT, TOPIC,
};
use crate::common::{Rng, TestBroker};

/// The topic the transformer writes.
pub const OUTPUT_TOPIC: &str = "chaos-out";
/// Output partition `p` is partition `OUTPUT_PARTITION_BASE + p` in the
/// history, apart from the input's.
pub const OUTPUT_PARTITION_BASE: i32 = 100;
/// The transformer's producer number in its sends (the keyed-append
/// producers are 1..=3).
const TRANSFORMER: u32 = 10;
/// The transformer's group, as the history names it.
pub const TRANSFORM_GROUP: u32 = 1;
const TRANSFORM_GROUP_ID: &str = "sluice-chaos-transform";
const TRANSACTIONAL_ID: &str = "sluice-chaos-transformer";
/// Input records per transaction, at most.
const TXN_RECORDS_MAX: usize = 50;
/// How long a transaction gathers input before it ends.
const TXN_GATHER: Duration = Duration::from_millis(100);
/// One transaction in this many is aborted on purpose.
const ABORT_ONE_IN: u64 = 4;
/// The transaction timeout: past the longest fault, so the coordinator
/// does not abort a transaction the nemesis merely delayed.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on each transactional call (init, offsets, commit, abort).
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A transactional call that takes longer than this is logged with its
/// duration, to line up with the nemesis's lines: a stall shows which
/// call it was in without the clients' debug log.
const TXN_CALL_SLOW: Duration = Duration::from_secs(5);
/// librdkafka's `connections.max.idle.ms` for the transactional producer.
/// librdkafka up to at least 2.12 (its issue 5511) can wait forever in
/// `send_offsets_to_transaction` when the group coordinator it cached left
/// the Metadata answers in the meantime (as a fenced broker does, here and
/// in Apache Kafka): it drops that broker's handle but keeps waiting for
/// the handle to come up, and asks for the coordinator again only when
/// some other broker connection changes state. Closing idle connections
/// is such a change, and a stalled producer's connections are all idle;
/// without this the stall lasts until a broker closes the idle connection
/// (`connections.max.idle.ms`, 10 minutes). The timeout does not help:
/// that call ignores it (librdkafka issue 5456).
const PRODUCER_IDLE_CLOSE: Duration = Duration::from_secs(5);
const _: () = assert!(PRODUCER_IDLE_CLOSE.as_secs() < TXN_CALL_TIMEOUT.as_secs());
/// How often a retriable commit is tried again before it counts as an
/// unknown outcome.
const COMMIT_ATTEMPTS_MAX: u32 = 5;
/// The transformer's random stream, apart from the nemesis's.
const TRANSFORMER_SEED: u64 = 0x5EED_7A45_F0E0_0002;
/// How long the final read_committed read may take: past the transaction
/// timeout, in case a transaction was left open after all.
const FINAL_COMMITTED_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Records read between two looks at the final reader's positions.
const FINAL_COMMITTED_POSITION_CHECK_READS: u64 = 10_000;
const _: () = assert!(FINAL_COMMITTED_READ_TIMEOUT.as_secs() > TRANSACTION_TIMEOUT.as_secs());
/// Set, the transformer's producer logs librdkafka's transaction debug
/// lines.
const TXN_DEBUG: &str = "SLUICE_CHAOS_TXN_DEBUG";
/// The live read_committed reader of the output.
pub const LIVE_COMMITTED_READER: u32 = 3;

/// What the transformer did.
#[derive(Debug, Default)]
pub struct TransformCounts {
    pub processed: u64,
    pub committed: u64,
    pub aborted: u64,
    /// Commits whose outcome the producer could not learn.
    pub unknown: u64,
    /// Producers made again after a fatal error.
    pub restarts: u64,
    pub errors: Vec<String>,
}

/// Transactions committed so far, for the harness's progress check.
pub type CommittedCount = Arc<AtomicU64>;

/// Delivery reports become `Op::Acked` of the transaction they belong to.
struct TxnRecorder {
    history: History,
}

impl ClientContext for TxnRecorder {
    /// librdkafka's own account of the transaction, to line up with the
    /// brokers' logs when the transformer stalls (`SLUICE_CHAOS_TXN_DEBUG`
    /// turns on its `eos` debug lines).
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        log_client_line(
            "transformer's producer",
            TXN_DEBUG,
            level,
            facility,
            message,
        );
    }
}

impl ProducerContext for TxnRecorder {
    /// (sequence, transaction).
    type DeliveryOpaque = Box<(u64, u64)>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Box<(u64, u64)>) {
        let (sequence, txn) = *opaque;
        // A failed delivery fails its transaction's commit; nothing to
        // record.
        if let Ok(message) = result {
            record(
                &self.history,
                Op::Acked {
                    send: SendId {
                        producer: TRANSFORMER,
                        sequence,
                    },
                    partition: OUTPUT_PARTITION_BASE + message.partition(),
                    offset: message.offset(),
                    txn: Some(txn),
                },
            );
        }
    }
}

type TxnProducer = ThreadedProducer<TxnRecorder>;

/// The input consumer's librdkafka lines, as the producer's
/// (`SLUICE_CHAOS_TXN_DEBUG` adds its group and broker debug lines).
struct InputLogger;

impl ClientContext for InputLogger {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        log_client_line(
            "transformer's consumer",
            TXN_DEBUG,
            level,
            facility,
            message,
        );
    }
}

impl rdkafka::consumer::ConsumerContext for InputLogger {}

type InputConsumer = BaseConsumer<InputLogger>;

/// The transformer and the output's live reader, on threads of their own.
pub struct Transform {
    pub committed: CommittedCount,
    /// Where the brokers listen now: a new transactional producer
    /// bootstraps from it (see [`Transform::follow`]).
    bootstrap: Bootstrap,
    transformer: Option<thread::JoinHandle<TransformCounts>>,
    reader: Option<thread::JoinHandle<u64>>,
}

impl Transform {
    pub fn start(
        brokers: &[TestBroker],
        history: &History,
        stop: &Arc<AtomicBool>,
        seed: u64,
    ) -> Transform {
        let committed = CommittedCount::default();
        let bootstrap: Bootstrap = Arc::new(Mutex::new(super::cluster_bootstrap(brokers)));
        let transformer = {
            let config = cluster_config(brokers);
            let history = Arc::clone(history);
            let stop = Arc::clone(stop);
            let committed = Arc::clone(&committed);
            let bootstrap = Arc::clone(&bootstrap);
            thread::spawn(move || transform(&config, &bootstrap, &history, &stop, &committed, seed))
        };
        let reader = {
            let consumer = committed_reader(brokers);
            let history = Arc::clone(history);
            let stop = Arc::clone(stop);
            thread::spawn(move || read_output(&consumer, &history, &stop))
        };
        Transform {
            committed,
            bootstrap,
            transformer: Some(transformer),
            reader: Some(reader),
        }
    }

    /// Follows the brokers to where they listen now. A restarted broker
    /// listens on a new port; a producer made after every broker restarted
    /// once, bootstrapped from the addresses of the start, reached none of
    /// them and could never initialise (the long schedule, seeds 55 and
    /// 57: after a transaction of unknown outcome the transformer's new
    /// producer timed out in `init_transactions` for good).
    pub fn follow(&self, brokers: &[TestBroker]) {
        *self
            .bootstrap
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = super::cluster_bootstrap(brokers);
    }

    /// Waits for both threads (after `stop` was set): what the transformer
    /// did and how many outputs the live reader read.
    pub fn finish(&mut self) -> (TransformCounts, u64) {
        let counts = self
            .transformer
            .take()
            .map(|thread| thread.join().expect("the transformer panicked"))
            .unwrap_or_default();
        let reads = self
            .reader
            .take()
            .map(|thread| thread.join().expect("the output reader panicked"))
            .unwrap_or_default();
        (counts, reads)
    }
}

impl Drop for Transform {
    fn drop(&mut self) {
        // After a failed check the transformer may be the thing that is
        // stuck: joining it would hang the test instead of failing it.
        if thread::panicking() {
            return;
        }
        if let Some(thread) = self.transformer.take() {
            let _ = thread.join();
        }
        if let Some(thread) = self.reader.take() {
            let _ = thread.join();
        }
    }
}

/// A transactional producer, its transactions initialised (which also
/// ends whatever a previous producer of the same id left open).
fn transactional_producer(
    config: &rdkafka::config::ClientConfig,
    bootstrap: &Bootstrap,
    history: &History,
) -> Result<TxnProducer, KafkaError> {
    let mut config = config.clone();
    config.set(
        "bootstrap.servers",
        bootstrap
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_str(),
    );
    if std::env::var_os(TXN_DEBUG).is_some() {
        config
            .set("debug", "eos,protocol,broker")
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    let producer: TxnProducer = config
        .set("transactional.id", TRANSACTIONAL_ID)
        .set(
            "connections.max.idle.ms",
            PRODUCER_IDLE_CLOSE.as_millis().to_string(),
        )
        .set(
            "transaction.timeout.ms",
            TRANSACTION_TIMEOUT.as_millis().to_string(),
        )
        .create_with_context(TxnRecorder {
            history: Arc::clone(history),
        })?;
    producer.init_transactions(TXN_CALL_TIMEOUT)?;
    Ok(producer)
}

/// The transformer's input consumer: every input partition assigned at the
/// group's committed offsets (read again after every abort).
fn input_consumer(config: &rdkafka::config::ClientConfig) -> InputConsumer {
    let mut config = config.clone();
    if std::env::var_os(TXN_DEBUG).is_some() {
        config
            .set("debug", "cgrp,broker,protocol")
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    config
        .set("group.id", TRANSFORM_GROUP_ID)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .create_with_context(InputLogger)
        .expect("creating the transformer's consumer")
}

/// (Re)assigns every input partition at the group's committed offset.
fn from_committed(consumer: &InputConsumer, spacing: &mut AssignSpacing) {
    spacing.wait();
    spacing.made();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Stored)
            .expect("adding a partition");
    }
    // An assign replaces the whole assignment, dropping what was fetched
    // past the committed offsets; an unassign before it would be a second
    // removal of partitions still stopping (see `ASSIGN_SPACING`).
    consumer
        .assign(&assignment)
        .expect("assigning the input partitions");
}

/// Whether `error` is librdkafka telling that the committed offsets of an
/// assignment could not be fetched (its group coordinator moved: the
/// OffsetFetch went to the old one). librdkafka then leaves those
/// partitions unstarted until the application assigns them again
/// (`rd_kafka_assignment_apply_offsets`: "only reside on .all until the
/// application unassigns it"); it does not ask the new coordinator itself.
/// The group workload's members (`chaos_parts/groups.rs`) act on it too.
pub fn committed_offsets_lost(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::CoordinatorLoadInProgress
        )
    )
}

/// How a transaction's commit went.
enum Ended {
    Committed,
    Aborted,
    /// The producer cannot go on (fatal error) or never learned the
    /// outcome: a new one is needed.
    Unknown(String),
}

/// The brokers' addresses as they listen now, shared with the transformer.
type Bootstrap = Arc<Mutex<String>>;

fn transform(
    config: &rdkafka::config::ClientConfig,
    bootstrap: &Bootstrap,
    history: &History,
    stop: &AtomicBool,
    committed: &AtomicU64,
    seed: u64,
) -> TransformCounts {
    let mut rng = Rng::new(seed ^ TRANSFORMER_SEED);
    let mut counts = TransformCounts::default();
    let started = Instant::now();
    let keep_error = |counts: &mut TransformCounts, error: String| {
        // As they happen, to line up with the nemesis's lines.
        eprintln!(
            "chaos: {:.1} s: transformer: {error}",
            started.elapsed().as_secs_f64()
        );
        if counts.errors.len() < ERRORS_KEPT_MAX {
            counts.errors.push(error);
        }
    };
    let consumer = input_consumer(config);
    let mut producer: Option<TxnProducer> = None;
    let mut sequence = 0u64;
    let mut txn = 0u64;
    let mut assign_again = AssignSpacing::default();
    from_committed(&consumer, &mut assign_again);
    while !stop.load(Ordering::Relaxed) {
        let Some(active) = producer.as_ref() else {
            match transactional_producer(config, bootstrap, history) {
                Ok(made) => producer = Some(made),
                Err(error) => {
                    keep_error(&mut counts, format!("init_transactions: {error}"));
                    thread::sleep(READ_POLL_TIMEOUT);
                }
            }
            // The previous producer's transaction has ended now, one way
            // or the other: read from what was committed.
            from_committed(&consumer, &mut assign_again);
            continue;
        };
        // Gather a transaction's input.
        let mut batch: Vec<(i32, i64)> = Vec::new();
        let gather_until = Instant::now() + TXN_GATHER;
        while batch.len() < TXN_RECORDS_MAX && Instant::now() < gather_until {
            match consumer.poll(READ_POLL_TIMEOUT) {
                Some(Ok(message)) => batch.push((message.partition(), message.offset())),
                Some(Err(error)) => {
                    assign_again.want(committed_offsets_lost(&error));
                    keep_error(&mut counts, format!("input: {error}"));
                }
                None => {}
            }
            if assign_again.due() {
                // What was gathered comes again from the committed
                // offsets: kept, it would be processed twice.
                batch.clear();
                from_committed(&consumer, &mut assign_again);
            }
        }
        if batch.is_empty() {
            continue;
        }
        txn += 1;
        let ended = run_transaction(
            active,
            &consumer,
            history,
            &batch,
            (txn, started),
            &mut sequence,
            rng.below(ABORT_ONE_IN) == 0,
        );
        counts.processed += batch.len() as u64;
        let outcome = match ended {
            Ended::Committed => {
                counts.committed += 1;
                committed.fetch_add(1, Ordering::Relaxed);
                TxnOutcome::Committed
            }
            Ended::Aborted => {
                counts.aborted += 1;
                TxnOutcome::Aborted
            }
            Ended::Unknown(error) => {
                counts.unknown += 1;
                counts.restarts += 1;
                keep_error(&mut counts, error);
                producer = None;
                TxnOutcome::Unknown
            }
        };
        record(history, Op::TxnEnded { id: txn, outcome });
        match outcome {
            TxnOutcome::Committed => {
                let mut next: std::collections::BTreeMap<i32, i64> = Default::default();
                for (partition, offset) in &batch {
                    next.insert(*partition, offset + 1);
                }
                for (partition, offset) in next {
                    record(
                        history,
                        Op::Committed {
                            group: TRANSFORM_GROUP,
                            partition,
                            offset,
                        },
                    );
                }
            }
            TxnOutcome::Aborted => from_committed(&consumer, &mut assign_again),
            // Read again once a new producer has ended the transaction.
            TxnOutcome::Unknown => {}
        }
    }
    // A transaction of unknown outcome may still be open: a new producer
    // of the same id ends it, so the final read_committed read does not
    // wait out its timeout.
    for _ in 0..COMMIT_ATTEMPTS_MAX {
        if producer.is_some() {
            break;
        }
        match transactional_producer(config, bootstrap, history) {
            Ok(made) => producer = Some(made),
            Err(error) => keep_error(
                &mut counts,
                format!("init_transactions at the end: {error}"),
            ),
        }
    }
    counts
}

/// Runs one transactional call, logging it if it was slow or failed
/// retriably (`started`: when the transformer started, for the log's
/// clock).
fn timed<T>(
    what: &str,
    started: Instant,
    call: impl FnOnce() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let began = Instant::now();
    let result = call();
    let took = began.elapsed();
    let retriable = matches!(&result, Err(KafkaError::Transaction(inner)) if inner.is_retriable());
    if took > TXN_CALL_SLOW || retriable {
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(error) => error.to_string(),
        };
        eprintln!(
            "chaos: {:.1} s: transformer: {what} took {} ms: {outcome}",
            started.elapsed().as_secs_f64(),
            took.as_millis()
        );
    }
    result
}

/// One transaction (`txn`, numbered from the transformer's start at
/// `started`): the batch's outputs and its input offsets, then a commit
/// (or an abort, if `abort`).
fn run_transaction(
    producer: &TxnProducer,
    consumer: &InputConsumer,
    history: &History,
    batch: &[(i32, i64)],
    (txn, started): (u64, Instant),
    sequence: &mut u64,
    abort: bool,
) -> Ended {
    let failed = |what: &str, error: KafkaError| -> Ended {
        // An error that only needs an abort ends the transaction for sure.
        let abortable =
            matches!(&error, KafkaError::Transaction(inner) if inner.txn_requires_abort());
        if abortable
            && timed("abort_transaction", started, || {
                producer.abort_transaction(TXN_CALL_TIMEOUT)
            })
            .is_ok()
        {
            return Ended::Aborted;
        }
        Ended::Unknown(format!("{what}: {error}"))
    };
    if let Err(error) = producer.begin_transaction() {
        return Ended::Unknown(format!("begin_transaction: {error}"));
    }
    let mut next: std::collections::BTreeMap<i32, i64> = Default::default();
    for (partition, offset) in batch {
        let output = SendId {
            producer: TRANSFORMER,
            sequence: *sequence,
        };
        *sequence += 1;
        record(
            history,
            Op::Processed {
                group: TRANSFORM_GROUP,
                partition: *partition,
                offset: *offset,
                output: Some(output),
            },
        );
        let value = value_of(output);
        let message =
            BaseRecord::<(), _, _>::with_opaque_to(OUTPUT_TOPIC, Box::new((output.sequence, txn)))
                .partition(*partition)
                .payload(value.as_bytes());
        if let Err((error, _)) = producer.send(message) {
            return failed("send", error);
        }
        next.insert(*partition, offset + 1);
    }
    if abort {
        return match timed("abort_transaction", started, || {
            producer.abort_transaction(TXN_CALL_TIMEOUT)
        }) {
            Ok(()) => Ended::Aborted,
            Err(error) => Ended::Unknown(format!("abort_transaction: {error}")),
        };
    }
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in next {
        offsets
            .add_partition_offset(TOPIC, partition, Offset::Offset(offset))
            .expect("adding an offset");
    }
    let Some(metadata) = consumer.group_metadata() else {
        return failed("group metadata", KafkaError::Canceled);
    };
    if let Err(error) = timed("send_offsets_to_transaction", started, || {
        producer.send_offsets_to_transaction(&offsets, &metadata, TXN_CALL_TIMEOUT)
    }) {
        return failed("send_offsets_to_transaction", error);
    }
    for _ in 0..COMMIT_ATTEMPTS_MAX {
        match timed("commit_transaction", started, || {
            producer.commit_transaction(TXN_CALL_TIMEOUT)
        }) {
            Ok(()) => return Ended::Committed,
            Err(KafkaError::Transaction(inner)) if inner.is_retriable() => continue,
            Err(error) => return failed("commit_transaction", error),
        }
    }
    Ended::Unknown(format!(
        "commit_transaction: still retriable after {COMMIT_ATTEMPTS_MAX} attempts"
    ))
}

/// A read_committed reader of the output topic, on `assign`.
pub fn committed_reader(brokers: &[TestBroker]) -> BaseConsumer {
    cluster_config(brokers)
        .set("group.id", "sluice-chaos-output-readers")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "error")
        .set("isolation.level", "read_committed")
        .create()
        .expect("creating an output reader")
}

/// Assigns every output partition from its start, recorded as seeks.
pub fn output_from_start(consumer: &BaseConsumer, history: &Mutex<Vec<Op>>, reader: u32) {
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        record(
            history,
            Op::Seek {
                reader,
                partition: OUTPUT_PARTITION_BASE + partition,
                offset: 0,
            },
        );
        assignment
            .add_partition_offset(OUTPUT_TOPIC, partition, Offset::Offset(0))
            .expect("adding a partition");
    }
    consumer
        .assign(&assignment)
        .expect("assigning the output partitions");
}

/// An output record as a read by `reader` with `isolation`.
pub fn output_read(reader: u32, isolation: Isolation, message: &impl Message) -> Op {
    let send = message.payload().and_then(parse_value).unwrap_or_else(|| {
        panic!(
            "reader {reader}: {OUTPUT_TOPIC} {}/{} holds a value the transformer did not send: {:?}",
            message.partition(),
            message.offset(),
            message.payload().map(String::from_utf8_lossy)
        )
    });
    Op::Read {
        reader,
        isolation,
        partition: OUTPUT_PARTITION_BASE + message.partition(),
        offset: message.offset(),
        send,
    }
}

/// Tails the output read_committed until `stop`; a refused position
/// starts every partition over.
fn read_output(consumer: &BaseConsumer, history: &Mutex<Vec<Op>>, stop: &AtomicBool) -> u64 {
    let mut reads = 0;
    output_from_start(consumer, history, LIVE_COMMITTED_READER);
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(READ_POLL_TIMEOUT) {
            None => {}
            Some(Ok(message)) => {
                record(
                    history,
                    output_read(LIVE_COMMITTED_READER, Isolation::ReadCommitted, &message),
                );
                reads += 1;
            }
            Some(Err(error)) if super::position_refused(&error) => {
                output_from_start(consumer, history, LIVE_COMMITTED_READER);
            }
            Some(Err(_)) => {}
        }
    }
    reads
}

/// The final read_committed read of the output: from the start of every
/// partition until the reader's position reaches its high watermark (the
/// position, not the last record: a transaction's marker ends a partition),
/// then `Op::FinalReadDone`.
pub fn read_output_committed(brokers: &[TestBroker], history: &Mutex<Vec<Op>>, reader: u32) -> u64 {
    let consumer = committed_reader(brokers);
    let mut ends = Vec::new();
    for partition in 0..PARTITIONS {
        let (_, high) = crate::common::wait_for(
            &format!("the high watermark of {OUTPUT_TOPIC}-{partition}"),
            crate::common::CLIENT_TIMEOUT,
            READ_POLL_TIMEOUT,
            || {
                consumer
                    .fetch_watermarks(OUTPUT_TOPIC, partition, READ_POLL_TIMEOUT * 10)
                    .map_err(|error| error.to_string())
            },
        );
        ends.push(high);
    }
    output_from_start(&consumer, history, reader);
    // Moved on by every record read: a long schedule's output takes a
    // debug-built reader minutes, and only a reader that reads nothing is
    // stuck.
    let mut deadline = Instant::now() + FINAL_COMMITTED_READ_TIMEOUT;
    let mut reads = 0u64;
    let mut look_at_positions = true;
    loop {
        if look_at_positions {
            let positions = consumer.position().expect("the reader's positions");
            let reached = (0..PARTITIONS).zip(&ends).all(|(partition, end)| {
                *end == 0
                    || matches!(
                        positions.find_partition(OUTPUT_TOPIC, partition).map(|tp| tp.offset()),
                        Some(Offset::Offset(at)) if at >= *end
                    )
            });
            if reached {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the final read_committed reader is at {positions:?}, and read nothing for \
                 {FINAL_COMMITTED_READ_TIMEOUT:?}; the high watermarks are {ends:?} (an open \
                 transaction holds the last stable offset back?)"
            );
        }
        match consumer.poll(READ_POLL_TIMEOUT) {
            None => look_at_positions = true,
            Some(Ok(message)) => {
                record(
                    history,
                    output_read(reader, Isolation::ReadCommitted, &message),
                );
                reads += 1;
                deadline = Instant::now() + FINAL_COMMITTED_READ_TIMEOUT;
                // Each look walks every assigned partition in librdkafka.
                look_at_positions = reads.is_multiple_of(FINAL_COMMITTED_POSITION_CHECK_READS);
            }
            Some(Err(error)) => {
                assert!(
                    !super::position_refused(&error),
                    "the final read_committed reader's position was refused: {error}"
                );
                look_at_positions = true;
            }
        }
    }
    record(
        history,
        Op::FinalReadDone {
            reader,
            isolation: Isolation::ReadCommitted,
        },
    );
    reads
}
