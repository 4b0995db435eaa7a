//! The producer: per-partition batching, one pipelined connection per
//! broker, delivery reports per batch.
//!
//! `send` appends the record to its partition's open batch (written in wire
//! format at once, see [`BatchBuilder`]) and returns; nothing is allocated
//! per record. A batch becomes *sendable* when it is full (`batch.size`),
//! when `linger.ms` has passed since it was opened, or on `flush`; until a
//! sender takes it, it stays open and keeps filling, so batches grow by
//! themselves while the connection is busy. Each broker has a sender task
//! that waits for sendable batches and for a free in-flight slot, then
//! drains at most one batch per partition (Kafka's rule for v2 batches) up to
//! `max.request.size` into one Produce request, written by a gathering send
//! without copying the batches. A task per request awaits its response and
//! reports every batch to the delivery callback with the caller's per-record
//! tokens, so a benchmark can time each record without a future per record.
//!
//! Bounded: `buffer.memory` caps the record bytes held (accumulating or in
//! flight); `send` waits when it is reached. Failed batches are reported,
//! not retried (`retries=0`); retriable errors trigger a metadata refresh so
//! later batches go to the new leader.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use kafka_protocol::messages::ApiKey;
use sluice_engine::notify::Signal;

use super::cluster::{ClientConfig, Cluster};
use super::compression::Compression;
use super::connection::Connection;
use super::constants::{
    BATCH_BUFFERS_POOLED_MAX, BATCH_BYTES_DEFAULT, BATCH_BYTES_MAX, BATCH_INITIAL_BYTES_MIN,
    BUFFER_MEMORY_BYTES_DEFAULT, IDEMPOTENT_IN_FLIGHT_REQUESTS_MAX, IN_FLIGHT_REQUESTS_DEFAULT,
    IN_FLIGHT_REQUESTS_MAX, LINGER_MS_DEFAULT, METADATA_MAX_AGE_MS_DEFAULT,
    METADATA_RETRY_BACKOFF_MS, REQUEST_BYTES_DEFAULT, RESPONSE_BYTES_MAX,
};
use super::error::ClientError;
use super::partitioner::{partition_for_key, Sticky, XorShift};
use super::protocol::{self, ProducePartition, ProduceTopic};
use super::records::{BatchBuilder, ProducerIdentity};

/// Producers created by this process, for seeding their partitioners.
static PRODUCERS_CREATED: AtomicU64 = AtomicU64::new(0);

/// Kafka's `acks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// 0: no response; a batch counts as delivered once written.
    None,
    /// 1: the leader appended it.
    Leader,
    /// all (-1): every in-sync replica has it (on Sluice: fsynced).
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }

    /// Parses `0`, `1`, `all` or `-1`.
    pub fn parse(text: &str) -> Option<Acks> {
        match text {
            "0" => Some(Acks::None),
            "1" => Some(Acks::Leader),
            "all" | "-1" => Some(Acks::All),
            _ => None,
        }
    }
}

/// Producer settings; [`ProducerConfig::new`] gives Kafka's defaults.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    pub acks: Acks,
    /// Kafka's `batch.size`.
    pub batch_bytes: usize,
    /// Kafka's `linger.ms`.
    pub linger: Duration,
    pub compression: Compression,
    /// Kafka's `enable.idempotence`: InitProducerId and sequence numbers.
    pub idempotence: bool,
    /// Kafka's `max.in.flight.requests.per.connection`.
    pub in_flight_max: usize,
    /// Kafka's `buffer.memory`.
    pub buffer_memory_bytes: usize,
    /// Kafka's `max.request.size`.
    pub request_bytes_max: usize,
    /// Kafka's `metadata.max.age.ms`.
    pub metadata_max_age: Duration,
}

impl ProducerConfig {
    pub fn new(client: ClientConfig) -> ProducerConfig {
        ProducerConfig {
            client,
            acks: Acks::All,
            batch_bytes: BATCH_BYTES_DEFAULT,
            linger: Duration::from_millis(LINGER_MS_DEFAULT),
            compression: Compression::None,
            idempotence: false,
            in_flight_max: IN_FLIGHT_REQUESTS_DEFAULT,
            buffer_memory_bytes: BUFFER_MEMORY_BYTES_DEFAULT,
            request_bytes_max: REQUEST_BYTES_DEFAULT,
            metadata_max_age: Duration::from_millis(METADATA_MAX_AGE_MS_DEFAULT),
        }
    }

    fn validate(&self) -> Result<(), ClientError> {
        let bad = |message: String| Err(ClientError::Config(message));
        if !(1..=BATCH_BYTES_MAX).contains(&self.batch_bytes) {
            return bad(format!(
                "batch.size {} outside 1..={BATCH_BYTES_MAX}",
                self.batch_bytes
            ));
        }
        if !(1..=IN_FLIGHT_REQUESTS_MAX).contains(&self.in_flight_max) {
            return bad(format!(
                "max.in.flight.requests.per.connection {} outside 1..={IN_FLIGHT_REQUESTS_MAX}",
                self.in_flight_max
            ));
        }
        if self.idempotence && self.in_flight_max > IDEMPOTENT_IN_FLIGHT_REQUESTS_MAX {
            return bad(format!(
                "idempotence allows at most {IDEMPOTENT_IN_FLIGHT_REQUESTS_MAX} requests in flight"
            ));
        }
        if self.idempotence && self.acks != Acks::All {
            return bad("idempotence requires acks=all".to_string());
        }
        if self.request_bytes_max == 0 || self.request_bytes_max > RESPONSE_BYTES_MAX {
            return bad(format!(
                "max.request.size {} is out of range",
                self.request_bytes_max
            ));
        }
        if self.buffer_memory_bytes < self.batch_bytes {
            return bad("buffer.memory must hold at least one batch".to_string());
        }
        Ok(())
    }
}

/// One record to send.
#[derive(Clone, Copy, Debug, Default)]
pub struct Message<'a> {
    /// The partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    /// The value is the concatenation of these slices, so a header and a
    /// shared payload need no copy to be joined.
    pub value: &'a [&'a [u8]],
    /// Record timestamp (ms since the epoch); `None` stamps it now.
    pub timestamp_ms: Option<i64>,
}

/// A topic known to a producer, from [`Producer::topic`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicHandle(usize);

/// One batch's outcome, handed to the delivery callback.
pub struct Delivery<'a, T> {
    pub topic: &'a str,
    pub partition: i32,
    /// The first record's offset (-1 with acks=0), or why the batch failed.
    pub result: Result<i64, ClientError>,
    /// The tokens given to `send` for the batch's records, in order.
    pub tokens: Vec<T>,
    /// Uncompressed bytes of the batch.
    pub bytes: usize,
    /// From the start of the request's write to its response's arrival, as
    /// the producer's task saw it: the broker's and the network's share of
    /// the acknowledgement latency, without the time the batch lingered or
    /// waited for an in-flight slot. `None` when no response came (acks=0,
    /// or the batch failed before or while it was sent).
    pub round_trip: Option<Duration>,
}

struct OpenBatch<T> {
    builder: BatchBuilder,
    tokens: Vec<T>,
    generation: u64,
    /// No more records go in (it reached `batch.size`).
    closed: bool,
    /// `linger.ms` has passed since it was opened.
    lingered: bool,
}

struct PartitionState<T> {
    topic: usize,
    index: i32,
    leader: i32,
    batches: VecDeque<OpenBatch<T>>,
    /// In its leader's ready queue.
    queued: bool,
    next_sequence: i32,
}

struct TopicState {
    name: Rc<str>,
    first_slot: usize,
    partitions: i32,
    sticky: Sticky,
}

struct State<T> {
    topics: Vec<TopicState>,
    topic_index: HashMap<String, usize>,
    partitions: Vec<PartitionState<T>>,
    /// Per broker, the partitions whose first batch is sendable, in order.
    ready: HashMap<i32, VecDeque<usize>>,
    /// Batches opened, oldest first, with their linger deadline.
    linger_queue: VecDeque<(usize, u64, Instant)>,
    generation: u64,
    buffered_bytes: usize,
    /// Batches taken by senders and not yet reported.
    in_flight_batches: usize,
    /// Active `flush` calls: everything is sendable meanwhile.
    flushing: usize,
    closed: bool,
    random: XorShift,
    identity: Option<(i64, i16)>,
    /// Buffers of answered batches, reused for new ones.
    free_buffers: Vec<BytesMut>,
}

/// The delivery callback as stored.
type DeliveryCallback<T> = Box<dyn FnMut(Delivery<'_, T>)>;

struct Inner<T> {
    config: ProducerConfig,
    cluster: Rc<Cluster>,
    state: RefCell<State<T>>,
    on_delivery: RefCell<DeliveryCallback<T>>,
    /// Something became sendable (or the producer closes).
    ready_signal: Signal,
    /// Buffer memory was freed or a batch was reported.
    freed_signal: Signal,
    /// A batch was opened.
    linger_signal: Signal,
    /// A metadata refresh is wanted.
    refresh_wanted: Cell<bool>,
    refresh_signal: Signal,
}

/// A Kafka producer on the current glommio executor (not `Send`).
pub struct Producer<T: 'static> {
    inner: Rc<Inner<T>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as i64)
        .unwrap_or(0)
}

impl<T: 'static> Producer<T> {
    /// Connects, loads metadata, and (with idempotence) obtains a producer
    /// id. `on_delivery` is called once per batch, on this executor.
    pub async fn new(
        config: ProducerConfig,
        on_delivery: impl FnMut(Delivery<'_, T>) + 'static,
    ) -> Result<Producer<T>, ClientError> {
        config.validate()?;
        let cluster = Cluster::connect(config.client.clone()).await?;
        let identity = if config.idempotence {
            Some(cluster.init_producer_id().await?)
        } else {
            None
        };
        // Producers started together must not all stick to the same
        // partitions: mix a process-wide count into the seed.
        let count = PRODUCERS_CREATED.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_nanos() as u64);
        let seed = nanos.unwrap_or(1) ^ count.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let inner = Rc::new(Inner {
            config,
            cluster,
            state: RefCell::new(State {
                topics: Vec::new(),
                topic_index: HashMap::new(),
                partitions: Vec::new(),
                ready: HashMap::new(),
                linger_queue: VecDeque::new(),
                generation: 0,
                buffered_bytes: 0,
                in_flight_batches: 0,
                flushing: 0,
                closed: false,
                random: XorShift::new(seed),
                identity,
                free_buffers: Vec::new(),
            }),
            on_delivery: RefCell::new(Box::new(on_delivery)),
            ready_signal: Signal::new(),
            freed_signal: Signal::new(),
            linger_signal: Signal::new(),
            refresh_wanted: Cell::new(false),
            refresh_signal: Signal::new(),
        });
        glommio::spawn_local(linger_loop(Rc::clone(&inner))).detach();
        glommio::spawn_local(sender_starter(Rc::clone(&inner))).detach();
        glommio::spawn_local(metadata_loop(Rc::clone(&inner))).detach();
        Ok(Producer { inner })
    }

    /// Looks a topic up (waiting for its leaders) and returns its handle.
    pub async fn topic(&self, name: &str) -> Result<TopicHandle, ClientError> {
        if let Some(index) = self.inner.state.borrow().topic_index.get(name) {
            return Ok(TopicHandle(*index));
        }
        let info = self.inner.cluster.wait_for_topic(name).await?;
        let mut state = self.inner.state.borrow_mut();
        if let Some(index) = state.topic_index.get(name) {
            return Ok(TopicHandle(*index));
        }
        let index = state.topics.len();
        let first_slot = state.partitions.len();
        let partitions = info.partitions.len() as i32;
        for partition in 0..partitions {
            let leader = info
                .partitions
                .iter()
                .find(|known| known.index == partition)
                .map(|known| known.leader)
                .unwrap_or(-1);
            state.partitions.push(PartitionState {
                topic: index,
                index: partition,
                leader,
                batches: VecDeque::new(),
                queued: false,
                next_sequence: 0,
            });
        }
        state.topics.push(TopicState {
            name: name.into(),
            first_slot,
            partitions,
            sticky: Sticky::default(),
        });
        state.topic_index.insert(name.to_string(), index);
        Ok(TopicHandle(index))
    }

    /// Partitions of a topic.
    pub fn partitions(&self, topic: TopicHandle) -> i32 {
        self.inner
            .state
            .borrow()
            .topics
            .get(topic.0)
            .map(|topic| topic.partitions)
            .unwrap_or(0)
    }

    /// Record bytes held (accumulating or in flight).
    pub fn buffered_bytes(&self) -> usize {
        self.inner.state.borrow().buffered_bytes
    }

    /// Queues one record. `message.partition` overrides the partitioner;
    /// otherwise a key picks the partition by murmur2 and unkeyed records
    /// stick to a partition per `batch.size` bytes. `token` comes back in
    /// the batch's [`Delivery`]. Waits only when `buffer.memory` is used up.
    pub async fn send(
        &self,
        topic: TopicHandle,
        message: Message<'_>,
        token: T,
    ) -> Result<(), ClientError> {
        let Message {
            partition,
            key,
            value,
            timestamp_ms,
        } = message;
        let inner = &self.inner;
        let limit = inner.config.buffer_memory_bytes;
        if inner.state.borrow().buffered_bytes >= limit {
            inner
                .freed_signal
                .wait_for(|| {
                    let state = inner.state.borrow();
                    (state.buffered_bytes < limit || state.closed).then_some(())
                })
                .await;
        }
        let mut state = inner.state.borrow_mut();
        if state.closed {
            return Err(ClientError::Config("the producer is closed".to_string()));
        }
        let value_len: usize = value.iter().map(|part| part.len()).sum();
        let state = &mut *state;
        let Some(topic_state) = state.topics.get_mut(topic.0) else {
            return Err(ClientError::Config(format!(
                "unknown topic handle {}",
                topic.0
            )));
        };
        let partitions = topic_state.partitions;
        let index = match (partition, key) {
            (Some(partition), _) => {
                if !(0..partitions).contains(&partition) {
                    return Err(ClientError::Config(format!(
                        "partition {partition} of topic {} does not exist",
                        topic_state.name
                    )));
                }
                partition
            }
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => {
                let random = &mut state.random;
                let size = value_len + key.map_or(0, <[u8]>::len);
                topic_state
                    .sticky
                    .next(partitions, size, inner.config.batch_bytes, || {
                        random.next_u64()
                    })
            }
        };
        let slot = topic_state.first_slot + index as usize;
        let batch_bytes = inner.config.batch_bytes;
        let needs_new = match state.partitions[slot].batches.back() {
            None => true,
            Some(batch) => {
                batch.closed
                    || (!batch.builder.is_empty()
                        && batch.builder.size()
                            + batch.builder.record_size(key.map(<[u8]>::len), value_len)
                            > batch_bytes)
            }
        };
        if needs_new {
            if let Some(batch) = state.partitions[slot].batches.back_mut() {
                batch.closed = true;
            }
            state.generation += 1;
            let generation = state.generation;
            let share = inner.config.buffer_memory_bytes / state.partitions.len().max(1);
            let capacity = share.clamp(
                BATCH_INITIAL_BYTES_MIN,
                batch_bytes.max(BATCH_INITIAL_BYTES_MIN),
            );
            let buffer = state.free_buffers.pop().unwrap_or_default();
            state.partitions[slot].batches.push_back(OpenBatch {
                builder: BatchBuilder::with_buffer(buffer, capacity, inner.config.compression),
                tokens: Vec::new(),
                generation,
                closed: false,
                lingered: inner.config.linger.is_zero(),
            });
            // The reserved header counts too, so a batch's share of the
            // buffer is exactly its size when it is reported.
            state.buffered_bytes += state.partitions[slot]
                .batches
                .back()
                .map_or(0, |batch| batch.builder.size());
            if !inner.config.linger.is_zero() {
                let was_empty = state.linger_queue.is_empty();
                state.linger_queue.push_back((
                    slot,
                    generation,
                    Instant::now() + inner.config.linger,
                ));
                if was_empty {
                    inner.linger_signal.notify();
                }
            }
        }
        let Some(batch) = state.partitions[slot].batches.back_mut() else {
            unreachable!("a batch was just ensured");
        };
        let added = batch
            .builder
            .append(timestamp_ms.unwrap_or_else(now_ms), key, value);
        batch.tokens.push(token);
        if batch.builder.size() >= batch_bytes {
            batch.closed = true;
        }
        state.buffered_bytes += added;
        if queue_if_sendable(state, slot) {
            inner.ready_signal.notify();
        }
        Ok(())
    }

    /// Makes every accumulated batch sendable and waits until all have
    /// been reported.
    pub async fn flush(&self) {
        let inner = &self.inner;
        {
            let mut state = inner.state.borrow_mut();
            state.flushing += 1;
            for slot in 0..state.partitions.len() {
                queue_if_sendable(&mut state, slot);
            }
        }
        inner.ready_signal.notify();
        inner
            .freed_signal
            .wait_for(|| {
                let state = inner.state.borrow();
                let idle = state.in_flight_batches == 0
                    && state
                        .partitions
                        .iter()
                        .all(|partition| partition.batches.is_empty());
                (idle || state.closed).then_some(())
            })
            .await;
        inner.state.borrow_mut().flushing -= 1;
    }

    /// Flushes, then stops the producer's tasks and drops its connections.
    pub async fn close(&self) {
        self.flush().await;
        self.inner.state.borrow_mut().closed = true;
        self.inner.ready_signal.notify();
        self.inner.freed_signal.notify();
        self.inner.linger_signal.notify();
        self.inner.refresh_signal.notify();
    }
}

impl<T: 'static> Drop for Producer<T> {
    fn drop(&mut self) {
        // Background tasks hold the inner state: tell them to end.
        self.inner.state.borrow_mut().closed = true;
        self.inner.ready_signal.notify();
        self.inner.freed_signal.notify();
        self.inner.linger_signal.notify();
        self.inner.refresh_signal.notify();
    }
}

/// Puts a partition in its leader's ready queue if its first batch is
/// sendable and it is not queued yet; starts that broker's sender when it
/// is the first time. Returns whether anything was queued.
fn queue_if_sendable<T: 'static>(state: &mut State<T>, slot: usize) -> bool {
    let flushing = state.flushing > 0;
    let partition = &mut state.partitions[slot];
    if partition.queued || partition.leader < 0 {
        return false;
    }
    let sendable = partition.batches.front().is_some_and(|batch| {
        batch.closed || batch.lingered || (flushing && !batch.builder.is_empty())
    });
    if !sendable {
        return false;
    }
    partition.queued = true;
    state
        .ready
        .entry(partition.leader)
        .or_default()
        .push_back(slot);
    true
}

/// One batch taken for a request.
struct Taken<T> {
    topic: Rc<str>,
    partition: i32,
    batch: Bytes,
    tokens: Vec<T>,
    bytes: usize,
}

/// What `drain` took: batches for the request, and batches that could not
/// be finished (with why).
type Drained<T> = (Vec<Taken<T>>, Vec<(Taken<T>, ClientError)>);

/// Takes sendable batches for `node`: one per partition, up to the request
/// size. Partitions whose leader moved are handed to the new leader's queue.
fn drain<T: 'static>(inner: &Inner<T>, node: i32) -> Drained<T> {
    let mut state = inner.state.borrow_mut();
    let state = &mut *state;
    let mut taken = Vec::new();
    let mut failed = Vec::new();
    let mut request_bytes = 0usize;
    let mut requeue = Vec::new();
    let Some(mut ready) = state.ready.remove(&node) else {
        return (taken, failed);
    };
    while let Some(slot) = ready.pop_front() {
        let partition = &mut state.partitions[slot];
        if partition.leader != node {
            partition.queued = false;
            requeue.push(slot);
            continue;
        }
        let Some(front) = partition.batches.front() else {
            partition.queued = false;
            continue;
        };
        let size = front.builder.size();
        if !taken.is_empty() && request_bytes + size > inner.config.request_bytes_max {
            ready.push_front(slot);
            break;
        }
        partition.queued = false;
        let Some(batch) = partition.batches.pop_front() else {
            continue;
        };
        request_bytes += size;
        let identity = match state.identity {
            Some((producer_id, epoch)) => {
                let base_sequence = partition.next_sequence;
                partition.next_sequence =
                    base_sequence.wrapping_add(batch.builder.record_count()) & i32::MAX;
                ProducerIdentity {
                    producer_id,
                    epoch,
                    base_sequence,
                }
            }
            None => ProducerIdentity::NONE,
        };
        let topic = Rc::clone(&state.topics[partition.topic].name);
        let index = partition.index;
        // The partition may have more sendable batches: they go into a later
        // request (one batch per partition per request).
        requeue.push(slot);
        let bytes = batch.builder.size();
        match batch.builder.finish(identity) {
            Ok(finished) => taken.push(Taken {
                topic,
                partition: index,
                batch: finished,
                tokens: batch.tokens,
                bytes,
            }),
            Err(error) => failed.push((
                Taken {
                    topic,
                    partition: index,
                    batch: Bytes::new(),
                    tokens: batch.tokens,
                    bytes,
                },
                error,
            )),
        }
    }
    if !ready.is_empty() {
        state.ready.insert(node, ready);
    }
    state.in_flight_batches += taken.len() + failed.len();
    for slot in requeue {
        queue_if_sendable(state, slot);
    }
    (taken, failed)
}

/// Reports batches and frees their memory.
fn report<T: 'static>(
    inner: &Inner<T>,
    mut outcomes: Vec<(Taken<T>, Result<i64, ClientError>)>,
    round_trip: Option<Duration>,
) {
    {
        let mut state = inner.state.borrow_mut();
        let keep_max = 2 * inner.config.batch_bytes.max(BATCH_INITIAL_BYTES_MIN);
        for (taken, _) in &mut outcomes {
            state.buffered_bytes -= taken.bytes;
            state.in_flight_batches -= 1;
            // The request is written and answered: nobody else holds the
            // batch now, so its buffer can carry the next one.
            let batch = std::mem::take(&mut taken.batch);
            if state.free_buffers.len() < BATCH_BUFFERS_POOLED_MAX {
                if let Ok(buffer) = batch.try_into_mut() {
                    if buffer.capacity() <= keep_max {
                        state.free_buffers.push(buffer);
                    }
                }
            }
        }
    }
    let mut refresh = false;
    {
        let mut on_delivery = inner.on_delivery.borrow_mut();
        for (taken, result) in outcomes {
            refresh |= result.as_ref().is_err_and(ClientError::is_retriable);
            on_delivery(Delivery {
                topic: &taken.topic,
                partition: taken.partition,
                result,
                tokens: taken.tokens,
                bytes: taken.bytes,
                round_trip,
            });
        }
    }
    if refresh {
        inner.refresh_wanted.set(true);
        inner.refresh_signal.notify();
    }
    inner.freed_signal.notify();
}

/// Sends the sendable batches of broker `node`, one request per free slot.
async fn sender_loop<T: 'static>(inner: Rc<Inner<T>>, node: i32) {
    let mut connection: Option<Rc<Connection>> = None;
    let acks = inner.config.acks.wire();
    loop {
        let proceed = inner
            .ready_signal
            .wait_for(|| {
                let state = inner.state.borrow();
                if state
                    .ready
                    .get(&node)
                    .is_some_and(|ready| !ready.is_empty())
                {
                    Some(true)
                } else if state.closed {
                    Some(false)
                } else {
                    None
                }
            })
            .await;
        if !proceed {
            return;
        }
        let current = match connection
            .take()
            .filter(|connection| !connection.is_failed())
        {
            Some(current) => current,
            None => match connect(&inner, node).await {
                Ok(fresh) => fresh,
                Err(error) => {
                    fail_ready(&inner, node, &error);
                    glommio::timer::sleep(Duration::from_millis(METADATA_RETRY_BACKOFF_MS)).await;
                    continue;
                }
            },
        };
        connection = Some(Rc::clone(&current));
        let slot = match current.slot().await {
            Ok(slot) => slot,
            Err(_) => continue,
        };
        let (taken, failed) = drain(&inner, node);
        if !failed.is_empty() {
            report(
                &inner,
                failed
                    .into_iter()
                    .map(|(taken, error)| (taken, Err(error)))
                    .collect(),
                None,
            );
        }
        if taken.is_empty() {
            continue;
        }
        let version = match current.version(ApiKey::Produce) {
            Ok(version) => version,
            Err(error) => {
                report(
                    &inner,
                    taken
                        .into_iter()
                        .map(|taken| (taken, Err(error.clone())))
                        .collect(),
                    None,
                );
                continue;
            }
        };
        let body = {
            let mut topics: Vec<ProduceTopic<'_>> = Vec::new();
            for batch in &taken {
                let partition = ProducePartition {
                    index: batch.partition,
                    batch: &batch.batch,
                };
                match topics.iter_mut().find(|topic| topic.name == &*batch.topic) {
                    Some(topic) => topic.partitions.push(partition),
                    None => topics.push(ProduceTopic {
                        name: &batch.topic,
                        partitions: vec![partition],
                    }),
                }
            }
            let timeout_ms = inner
                .config
                .client
                .request_timeout
                .as_millis()
                .min(i32::MAX as u128) as i32;
            protocol::encode_produce(version, acks, timeout_ms, &topics)
        };
        let body = match body {
            Ok(body) => body,
            Err(error) => {
                report(
                    &inner,
                    taken
                        .into_iter()
                        .map(|taken| (taken, Err(error.clone())))
                        .collect(),
                    None,
                );
                continue;
            }
        };
        let sent_at = Instant::now();
        match current
            .send(slot, ApiKey::Produce, version, body, acks != 0)
            .await
        {
            Ok(in_flight) => {
                let inner = Rc::clone(&inner);
                glommio::spawn_local(async move {
                    let response = in_flight.response().await;
                    let round_trip = (acks != 0).then(|| sent_at.elapsed());
                    complete(&inner, version, acks, response, taken, round_trip);
                })
                .detach();
            }
            Err(error) => {
                report(
                    &inner,
                    taken
                        .into_iter()
                        .map(|taken| (taken, Err(error.clone())))
                        .collect(),
                    None,
                );
            }
        }
    }
}

/// Matches a Produce response to the batches of its request.
fn complete<T: 'static>(
    inner: &Inner<T>,
    version: i16,
    acks: i16,
    response: Result<Bytes, ClientError>,
    taken: Vec<Taken<T>>,
    round_trip: Option<Duration>,
) {
    if acks == 0 {
        let outcomes = taken
            .into_iter()
            .map(|taken| (taken, response.clone().map(|_| -1)))
            .collect();
        report(inner, outcomes, None);
        return;
    }
    let decoded = response.and_then(|body| protocol::decode_produce(version, body));
    let results = match decoded {
        Ok(results) => results,
        Err(error) => {
            report(
                inner,
                taken
                    .into_iter()
                    .map(|taken| (taken, Err(error.clone())))
                    .collect(),
                None,
            );
            return;
        }
    };
    let mut answers: HashMap<(&str, i32), (i16, i64)> = HashMap::new();
    for topic in &results {
        for partition in &topic.partitions {
            answers.insert(
                (&topic.name, partition.index),
                (partition.error_code, partition.base_offset),
            );
        }
    }
    let outcomes: Vec<_> = taken
        .into_iter()
        .map(|taken| {
            let result = match answers.get(&(&*taken.topic, taken.partition)) {
                Some((0, base_offset)) => Ok(*base_offset),
                Some((code, _)) => Err(ClientError::kafka(
                    *code,
                    format!("producing to {}-{}", taken.topic, taken.partition),
                )),
                None => Err(ClientError::Records(format!(
                    "the produce response has no answer for {}-{}",
                    taken.topic, taken.partition
                ))),
            };
            (taken, result)
        })
        .collect();
    drop(answers);
    report(inner, outcomes, round_trip);
}

/// Connects to broker `node`.
async fn connect<T: 'static>(inner: &Inner<T>, node: i32) -> Result<Rc<Connection>, ClientError> {
    let address = match inner.cluster.broker_address(node) {
        Some(address) => address,
        None => {
            inner.cluster.metadata(Some(&[])).await?;
            inner.cluster.broker_address(node).ok_or_else(|| {
                ClientError::Config(format!("broker {node} is not in the metadata"))
            })?
        }
    };
    Connection::connect(
        &address,
        &inner
            .cluster
            .config()
            .connection(inner.config.in_flight_max),
    )
    .await
}

/// Fails every sendable batch of `node` (its connection cannot be made).
fn fail_ready<T: 'static>(inner: &Inner<T>, node: i32, error: &ClientError) {
    let mut failed = Vec::new();
    {
        let mut state = inner.state.borrow_mut();
        let state = &mut *state;
        let Some(ready) = state.ready.remove(&node) else {
            return;
        };
        for slot in ready {
            let partition = &mut state.partitions[slot];
            partition.queued = false;
            if let Some(batch) = partition.batches.pop_front() {
                let topic = Rc::clone(&state.topics[partition.topic].name);
                failed.push((
                    Taken {
                        topic,
                        partition: partition.index,
                        batch: Bytes::new(),
                        bytes: batch.builder.size(),
                        tokens: batch.tokens,
                    },
                    Err(error.clone()),
                ));
            }
        }
        state.in_flight_batches += failed.len();
    }
    report(inner, failed, None);
    inner.refresh_wanted.set(true);
    inner.refresh_signal.notify();
}

/// Marks batches sendable when their `linger.ms` is up.
async fn linger_loop<T: 'static>(inner: Rc<Inner<T>>) {
    loop {
        let front = {
            let state = inner.state.borrow();
            if state.closed {
                return;
            }
            state.linger_queue.front().copied()
        };
        let Some((slot, generation, deadline)) = front else {
            inner
                .linger_signal
                .wait_for(|| {
                    let state = inner.state.borrow();
                    (!state.linger_queue.is_empty() || state.closed).then_some(())
                })
                .await;
            continue;
        };
        let now = Instant::now();
        if deadline > now {
            glommio::timer::sleep(deadline - now).await;
            continue;
        }
        let queued = {
            let mut state = inner.state.borrow_mut();
            state.linger_queue.pop_front();
            let partition = &mut state.partitions[slot];
            if let Some(batch) = partition
                .batches
                .iter_mut()
                .find(|batch| batch.generation == generation)
            {
                batch.lingered = true;
            }
            queue_if_sendable(&mut state, slot)
        };
        if queued {
            inner.ready_signal.notify();
        }
    }
}

/// Refreshes partition leaders every `metadata.max.age.ms`, and at once
/// after a retriable error.
async fn metadata_loop<T: 'static>(inner: Rc<Inner<T>>) {
    loop {
        let wanted = future::or(
            async {
                inner
                    .refresh_signal
                    .wait_for(|| {
                        (inner.refresh_wanted.get() || inner.state.borrow().closed).then_some(())
                    })
                    .await;
            },
            glommio::timer::sleep(inner.config.metadata_max_age),
        );
        wanted.await;
        inner.refresh_wanted.set(false);
        let names: Vec<String> = {
            let state = inner.state.borrow();
            if state.closed {
                return;
            }
            state
                .topics
                .iter()
                .map(|topic| topic.name.to_string())
                .collect()
        };
        if names.is_empty() {
            continue;
        }
        let info = match inner.cluster.metadata(Some(&names)).await {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, "producer metadata refresh failed");
                glommio::timer::sleep(Duration::from_millis(METADATA_RETRY_BACKOFF_MS)).await;
                continue;
            }
        };
        let mut state = inner.state.borrow_mut();
        let state = &mut *state;
        let mut any = false;
        for topic in info.topics {
            let Some(&index) = state.topic_index.get(&topic.name) else {
                continue;
            };
            let first_slot = state.topics[index].first_slot;
            let count = state.topics[index].partitions;
            for partition in topic.partitions {
                if (0..count).contains(&partition.index) && partition.leader >= 0 {
                    let slot = first_slot + partition.index as usize;
                    if state.partitions[slot].leader != partition.leader {
                        state.partitions[slot].leader = partition.leader;
                        any |= queue_if_sendable(state, slot);
                    }
                }
            }
        }
        if any {
            inner.ready_signal.notify();
        }
    }
}

/// Starts the sender of every broker that has a ready queue but no sender.
fn start_senders<T: 'static>(inner: &Rc<Inner<T>>, started: &mut Vec<i32>) {
    let nodes: Vec<i32> = inner.state.borrow().ready.keys().copied().collect();
    for node in nodes {
        if !started.contains(&node) {
            started.push(node);
            glommio::spawn_local(sender_loop(Rc::clone(inner), node)).detach();
        }
    }
}

/// Watches for brokers that need a sender (the first batch for a leader).
async fn sender_starter<T: 'static>(inner: Rc<Inner<T>>) {
    let mut started = Vec::new();
    loop {
        start_senders(&inner, &mut started);
        let closed = inner
            .ready_signal
            .wait_for(|| {
                let state = inner.state.borrow();
                if state.closed {
                    return Some(true);
                }
                state
                    .ready
                    .keys()
                    .any(|node| !started.contains(node))
                    .then_some(false)
            })
            .await;
        if closed {
            return;
        }
    }
}
