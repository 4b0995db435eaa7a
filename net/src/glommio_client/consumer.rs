//! The consumer: manual assignment, pipelined long-polling fetches.
//!
//! After [`Consumer::assign`], the partitions of each leader are dealt
//! round-robin into `pipeline_depth` fetch lanes that share one connection
//! to that broker. Each lane keeps one Fetch in flight for its partitions
//! and, as soon as a response is decoded, sends the next Fetch *before*
//! handing the records to the application, so decoding and delivery
//! overlap with the broker serving the next request. Records travel as
//! zero-copy slices of the response frame ([`FetchedChunk`]); only complete
//! batches are delivered, and a lane's next offset is the one after its
//! last complete batch. A bounded queue between lanes and [`Consumer::poll`]
//! is the back-pressure: a slow application stalls the lanes, it does not
//! grow memory.
//!
//! Responses of one connection arrive in request order, so a lane whose
//! partitions have no data holds the responses of the lanes behind it for
//! up to `fetch.max.wait.ms` (Kafka brokers answer one request per
//! connection at a time anyway). Latency-sensitive setups use depth 1 or a
//! low wait. Leader moves are not followed: a partition error is reported
//! through `poll` and the partition is fetched again after a back-off.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::notify::Signal;

use super::cluster::{ClientConfig, Cluster, OffsetSpec};
use super::connection::{encode, Connection, InFlight};
use super::constants::{
    FETCHED_CHUNKS_QUEUED_MAX, FETCH_MAX_BYTES_DEFAULT, FETCH_MAX_WAIT_MS_DEFAULT,
    FETCH_MIN_BYTES_DEFAULT, FETCH_PIPELINE_DEPTH_DEFAULT, FETCH_PIPELINE_DEPTH_MAX,
    METADATA_RETRY_BACKOFF_MS, PARTITION_FETCH_MAX_BYTES_DEFAULT, RESPONSE_BYTES_MAX,
};
use super::error::ClientError;
use super::protocol;
use super::records::{complete_batches, BatchIter};

/// Kafka's isolation levels.
const READ_UNCOMMITTED: i8 = 0;
const READ_COMMITTED: i8 = 1;
/// Fetch session fields (KIP-227): no session, the epoch of a full fetch
/// that opens one, and of a sessionless fetch.
const NO_SESSION_ID: i32 = 0;
const INITIAL_SESSION_EPOCH: i32 = 0;
const FINAL_SESSION_EPOCH: i32 = -1;
/// The session errors after which a lane opens a new session.
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;

/// Consumer settings; [`ConsumerConfig::new`] gives Kafka's defaults.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    pub client: ClientConfig,
    /// Kafka's `fetch.min.bytes`.
    pub fetch_min_bytes: i32,
    /// Kafka's `fetch.max.wait.ms`.
    pub fetch_max_wait: Duration,
    /// Fetch in incremental fetch sessions (KIP-227), as Kafka's Java
    /// consumer always does; off, every fetch lists every partition.
    pub fetch_sessions: bool,
    /// Kafka's `fetch.max.bytes`.
    pub fetch_max_bytes: i32,
    /// Kafka's `max.partition.fetch.bytes`.
    pub partition_fetch_max_bytes: i32,
    /// Fetches in flight per broker connection (disjoint partition sets).
    pub pipeline_depth: usize,
    /// Kafka's `check.crcs`.
    pub check_crcs: bool,
    /// Kafka's `isolation.level=read_committed`.
    pub read_committed: bool,
    /// Fetched chunks buffered before the lanes wait for `poll`.
    pub queued_chunks_max: usize,
}

impl ConsumerConfig {
    pub fn new(client: ClientConfig) -> ConsumerConfig {
        ConsumerConfig {
            client,
            fetch_min_bytes: FETCH_MIN_BYTES_DEFAULT,
            fetch_max_wait: Duration::from_millis(FETCH_MAX_WAIT_MS_DEFAULT as u64),
            fetch_sessions: true,
            fetch_max_bytes: FETCH_MAX_BYTES_DEFAULT,
            partition_fetch_max_bytes: PARTITION_FETCH_MAX_BYTES_DEFAULT,
            pipeline_depth: FETCH_PIPELINE_DEPTH_DEFAULT,
            check_crcs: true,
            read_committed: false,
            queued_chunks_max: FETCHED_CHUNKS_QUEUED_MAX,
        }
    }

    fn validate(&self) -> Result<(), ClientError> {
        let bad = |message: String| Err(ClientError::Config(message));
        if !(1..=FETCH_PIPELINE_DEPTH_MAX).contains(&self.pipeline_depth) {
            return bad(format!(
                "pipeline depth {} outside 1..={FETCH_PIPELINE_DEPTH_MAX}",
                self.pipeline_depth
            ));
        }
        if self.fetch_max_bytes <= 0 || self.fetch_max_bytes as usize > RESPONSE_BYTES_MAX {
            return bad(format!(
                "fetch.max.bytes {} is out of range",
                self.fetch_max_bytes
            ));
        }
        if self.partition_fetch_max_bytes <= 0 || self.fetch_min_bytes < 0 {
            return bad("fetch sizes must be positive".to_string());
        }
        if self.fetch_max_wait.as_millis() > i32::MAX as u128 {
            return bad("fetch.max.wait.ms does not fit an int32".to_string());
        }
        if self.queued_chunks_max == 0 {
            return bad("the fetched-chunk queue needs room for one chunk".to_string());
        }
        Ok(())
    }
}

/// Where an assigned partition starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartOffset {
    Earliest,
    Latest,
    At(i64),
}

/// One partition to consume.
#[derive(Clone, Debug)]
pub struct Assignment {
    pub topic: String,
    pub partition: i32,
    pub start: StartOffset,
}

/// Complete record batches fetched from one partition.
#[derive(Clone, Debug)]
pub struct FetchedChunk {
    pub topic: Rc<str>,
    pub partition: i32,
    pub high_watermark: i64,
    /// Complete v2 batches, a slice of the response frame.
    pub records: Bytes,
    check_crcs: bool,
}

impl FetchedChunk {
    /// The batches, decompressed one at a time as the iteration reaches them.
    pub fn batches(&self) -> BatchIter {
        BatchIter::new(self.records.clone(), self.check_crcs)
    }
}

type Item = Result<FetchedChunk, ClientError>;

/// The bounded queue between fetch lanes and `poll`.
struct ChunkQueue {
    items: RefCell<VecDeque<Item>>,
    capacity: usize,
    closed: Cell<bool>,
    /// Wakes `poll`.
    filled: Signal,
    /// Wakes lanes waiting for room.
    emptied: Signal,
}

impl ChunkQueue {
    /// Waits for room, then queues; false once the consumer is closed.
    async fn push(&self, item: Item) -> bool {
        self.emptied
            .wait_for(|| {
                (self.items.borrow().len() < self.capacity || self.closed.get()).then_some(())
            })
            .await;
        if self.closed.get() {
            return false;
        }
        self.items.borrow_mut().push_back(item);
        self.filled.notify();
        true
    }

    async fn pop(&self) -> Option<Item> {
        let item = self
            .filled
            .wait_for(|| match self.items.borrow_mut().pop_front() {
                Some(item) => Some(Some(item)),
                None => self.closed.get().then_some(None),
            })
            .await;
        self.emptied.notify();
        item
    }
}

/// A partition a lane fetches.
struct LanePartition {
    topic: Rc<str>,
    partition: i32,
    offset: i64,
}

struct Inner {
    config: ConsumerConfig,
    cluster: Rc<Cluster>,
    queue: ChunkQueue,
}

/// A Kafka consumer with manual assignment, on the current glommio executor.
pub struct Consumer {
    inner: Rc<Inner>,
}

impl Consumer {
    /// Connects to the cluster; nothing is fetched before [`Consumer::assign`].
    pub async fn new(config: ConsumerConfig) -> Result<Consumer, ClientError> {
        config.validate()?;
        let cluster = Cluster::connect(config.client.clone()).await?;
        let queue = ChunkQueue {
            items: RefCell::new(VecDeque::new()),
            capacity: config.queued_chunks_max,
            closed: Cell::new(false),
            filled: Signal::new(),
            emptied: Signal::new(),
        };
        Ok(Consumer {
            inner: Rc::new(Inner {
                config,
                cluster,
                queue,
            }),
        })
    }

    /// Each assignment's leader and start offset.
    async fn resolve(
        &self,
        assignments: &[Assignment],
    ) -> Result<HashMap<i32, Vec<LanePartition>>, ClientError> {
        let inner = &self.inner;
        let mut topics: Vec<&str> = assignments
            .iter()
            .map(|assignment| assignment.topic.as_str())
            .collect();
        topics.sort_unstable();
        topics.dedup();
        let mut by_leader: HashMap<i32, Vec<LanePartition>> = HashMap::new();
        for name in topics {
            let mut info = inner.cluster.wait_for_topic(name).await?;
            let wanted: Vec<&Assignment> = assignments
                .iter()
                .filter(|assignment| assignment.topic == name)
                .collect();
            let needs =
                |spec: StartOffset| wanted.iter().any(|assignment| assignment.start == spec);
            let earliest = if needs(StartOffset::Earliest) {
                let (fresh, offsets) = inner
                    .cluster
                    .topic_offsets(name, OffsetSpec::Earliest)
                    .await?;
                info = fresh;
                offsets
            } else {
                HashMap::new()
            };
            let latest = if needs(StartOffset::Latest) {
                let (fresh, offsets) = inner
                    .cluster
                    .topic_offsets(name, OffsetSpec::Latest)
                    .await?;
                info = fresh;
                offsets
            } else {
                HashMap::new()
            };
            let topic: Rc<str> = name.into();
            for assignment in wanted {
                let Some(partition) = info
                    .partitions
                    .iter()
                    .find(|known| known.index == assignment.partition)
                else {
                    return Err(ClientError::Config(format!(
                        "topic {name} has no partition {}",
                        assignment.partition
                    )));
                };
                let offset = match assignment.start {
                    StartOffset::At(offset) => Some(offset),
                    StartOffset::Earliest => earliest.get(&partition.index).copied(),
                    StartOffset::Latest => latest.get(&partition.index).copied(),
                };
                let offset = offset.ok_or_else(|| {
                    ClientError::Config(format!("no offset listed for {name}-{}", partition.index))
                })?;
                by_leader
                    .entry(partition.leader)
                    .or_default()
                    .push(LanePartition {
                        topic: Rc::clone(&topic),
                        partition: partition.index,
                        offset,
                    });
            }
        }
        Ok(by_leader)
    }

    /// The offsets `assignments` start at, resolved now: `Earliest` and
    /// `Latest` become `At`. Lets a caller fix where to start reading
    /// before records are produced, and start fetching later.
    pub async fn positions(
        &self,
        assignments: &[Assignment],
    ) -> Result<Vec<Assignment>, ClientError> {
        let resolved = self.resolve(assignments).await?;
        Ok(resolved
            .into_values()
            .flatten()
            .map(|partition| Assignment {
                topic: partition.topic.to_string(),
                partition: partition.partition,
                start: StartOffset::At(partition.offset),
            })
            .collect())
    }

    /// Resolves the start offsets and starts fetching the partitions. Call
    /// once (a second call adds lanes for the new partitions).
    pub async fn assign(&self, assignments: &[Assignment]) -> Result<(), ClientError> {
        let inner = &self.inner;
        let by_leader = self.resolve(assignments).await?;
        for (leader, partitions) in by_leader {
            let address = inner.cluster.broker_address(leader).ok_or_else(|| {
                ClientError::Config(format!("leader {leader} is not in the metadata"))
            })?;
            let depth = inner.config.pipeline_depth.min(partitions.len()).max(1);
            let connection =
                Connection::connect(&address, &inner.cluster.config().connection(depth)).await?;
            let mut lanes: Vec<Vec<LanePartition>> = (0..depth).map(|_| Vec::new()).collect();
            for (index, partition) in partitions.into_iter().enumerate() {
                lanes[index % depth].push(partition);
            }
            for lane in lanes {
                glommio::spawn_local(lane_loop(Rc::clone(inner), Rc::clone(&connection), lane))
                    .detach();
            }
        }
        Ok(())
    }

    /// The next chunk of records (or a fetch error); `None` once closed.
    pub async fn poll(&self) -> Option<Result<FetchedChunk, ClientError>> {
        self.inner.queue.pop().await
    }

    /// Stops fetching; `poll` returns what is queued, then `None`.
    pub fn close(&self) {
        self.inner.queue.closed.set(true);
        self.inner.queue.filled.notify();
        self.inner.queue.emptied.notify();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.close();
    }
}

/// A lane's fetch session (KIP-227): the broker remembers the lane's
/// partitions and where they were last asked from, so a fetch names only
/// the partitions whose offset moved, and the answer only those with news.
struct LaneSession {
    id: i32,
    /// The epoch of the next fetch: `INITIAL_SESSION_EPOCH` for a full
    /// fetch that opens a session, `FINAL_SESSION_EPOCH` without sessions.
    epoch: i32,
    /// The offset each partition was last asked from in this session.
    sent: Vec<i64>,
}

impl LaneSession {
    fn new(sessions: bool, partitions: usize) -> LaneSession {
        LaneSession {
            id: NO_SESSION_ID,
            epoch: if sessions {
                INITIAL_SESSION_EPOCH
            } else {
                FINAL_SESSION_EPOCH
            },
            sent: vec![i64::MIN; partitions],
        }
    }

    fn full(&self) -> bool {
        self.epoch <= INITIAL_SESSION_EPOCH
    }

    /// Takes the broker's answer to the fetch sent last: a session opened
    /// or continued moves the epoch on, anything else starts over with a
    /// full fetch (which also closes a session the broker still holds).
    fn answered(&mut self, error_code: i16, session_id: i32) {
        if self.epoch == FINAL_SESSION_EPOCH {
            return;
        }
        let continued = error_code == 0
            && session_id != NO_SESSION_ID
            && (self.full() || session_id == self.id);
        if continued {
            self.id = session_id;
            self.epoch = if self.epoch == i32::MAX {
                1
            } else {
                self.epoch + 1
            };
        } else {
            if error_code == FETCH_SESSION_ID_NOT_FOUND {
                self.id = NO_SESSION_ID;
            }
            self.epoch = INITIAL_SESSION_EPOCH;
        }
    }
}

/// Whether an error is about the fetch session rather than the fetch.
fn session_error(error_code: i16) -> bool {
    matches!(
        error_code,
        FETCH_SESSION_ID_NOT_FOUND | INVALID_FETCH_SESSION_EPOCH | FETCH_SESSION_TOPIC_ID_ERROR
    )
}

/// Sends one Fetch for the lane's partitions at their current offsets: all
/// of them in a full fetch, those whose offset moved in an incremental one.
async fn send_fetch(
    inner: &Inner,
    connection: &Connection,
    partitions: &[LanePartition],
    session: &mut LaneSession,
) -> Result<(i16, InFlight), ClientError> {
    let config = &inner.config;
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = config.fetch_max_wait.as_millis() as i32;
    request.min_bytes = config.fetch_min_bytes;
    request.max_bytes = config.fetch_max_bytes;
    request.isolation_level = if config.read_committed {
        READ_COMMITTED
    } else {
        READ_UNCOMMITTED
    };
    request.session_id = session.id;
    request.session_epoch = session.epoch;
    let full = session.full();
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (partition, sent) in partitions.iter().zip(session.sent.iter_mut()) {
        if !full && *sent == partition.offset {
            continue;
        }
        *sent = partition.offset;
        let mut fetch = FetchPartition::default();
        fetch.partition = partition.partition;
        fetch.current_leader_epoch = -1;
        fetch.fetch_offset = partition.offset;
        fetch.last_fetched_epoch = -1;
        fetch.log_start_offset = -1;
        fetch.partition_max_bytes = config.partition_fetch_max_bytes;
        match topics
            .last_mut()
            .filter(|topic| topic.topic.0.as_str() == &*partition.topic)
        {
            Some(topic) => topic.partitions.push(fetch),
            None => {
                let mut topic = FetchTopic::default();
                topic.topic = TopicName(StrBytes::from_string(partition.topic.to_string()));
                topic.partitions = vec![fetch];
                topics.push(topic);
            }
        }
    }
    request.topics = topics;
    let version = connection.version(ApiKey::Fetch)?;
    let body = encode(ApiKey::Fetch, version, &request)?;
    let slot = connection.slot().await?;
    let in_flight = connection
        .send(slot, ApiKey::Fetch, version, vec![body], true)
        .await?;
    Ok((version, in_flight))
}

/// Fetches a set of partitions forever, one request in flight, the next
/// one sent before the previous one's records are handed over.
async fn lane_loop(
    inner: Rc<Inner>,
    connection: Rc<Connection>,
    mut partitions: Vec<LanePartition>,
) {
    let index: HashMap<(Rc<str>, i32), usize> = partitions
        .iter()
        .enumerate()
        .map(|(position, partition)| ((Rc::clone(&partition.topic), partition.partition), position))
        .collect();
    let check_crcs = inner.config.check_crcs;
    let mut session = LaneSession::new(inner.config.fetch_sessions, partitions.len());
    let mut next = send_fetch(&inner, &connection, &partitions, &mut session).await;
    loop {
        if inner.queue.closed.get() {
            return;
        }
        let response = match next {
            Ok((version, in_flight)) => in_flight
                .response()
                .await
                .and_then(|body| protocol::decode_fetch(version, body)),
            Err(error) => Err(error),
        };
        let data = match response {
            Ok(data) => data,
            Err(error) => {
                // The connection is gone: report once and end the lane.
                inner.queue.push(Err(error)).await;
                return;
            }
        };
        let mut chunks: Vec<Item> = Vec::new();
        let mut back_off = false;
        session.answered(data.error_code, data.session_id);
        if session_error(data.error_code) {
            // Nothing was read; the next fetch is a full one.
        } else if data.error_code != 0 {
            chunks.push(Err(ClientError::kafka(data.error_code, "fetch")));
            back_off = true;
        }
        for topic in data.topics {
            let name: Rc<str> = topic.name.as_str().into();
            for partition in topic.partitions {
                let Some(&position) = index.get(&(Rc::clone(&name), partition.index)) else {
                    continue;
                };
                if partition.error_code != 0 {
                    chunks.push(Err(ClientError::kafka(
                        partition.error_code,
                        format!("fetching {name}-{}", partition.index),
                    )));
                    back_off = true;
                    continue;
                }
                let (end, next_offset) = complete_batches(&partition.records);
                let state = &mut partitions[position];
                if let Some(next_offset) = next_offset {
                    state.offset = state.offset.max(next_offset);
                }
                if end > 0 {
                    chunks.push(Ok(FetchedChunk {
                        topic: Rc::clone(&state.topic),
                        partition: partition.index,
                        high_watermark: partition.high_watermark,
                        records: partition.records.slice(..end),
                        check_crcs,
                    }));
                }
            }
        }
        if back_off {
            glommio::timer::sleep(Duration::from_millis(METADATA_RETRY_BACKOFF_MS)).await;
        }
        next = send_fetch(&inner, &connection, &partitions, &mut session).await;
        for chunk in chunks {
            if !inner.queue.push(chunk).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_session_opens_continues_and_starts_over() {
        let mut session = LaneSession::new(true, 2);
        assert!(session.full());
        assert_eq!(
            (session.id, session.epoch),
            (NO_SESSION_ID, INITIAL_SESSION_EPOCH)
        );
        // The broker opened session 9: incremental fetches from epoch 1.
        session.answered(0, 9);
        assert_eq!((session.id, session.epoch), (9, 1));
        session.answered(0, 9);
        assert_eq!((session.id, session.epoch), (9, 2));
        // A wrong epoch: a full fetch that names (and so closes) session 9.
        session.answered(INVALID_FETCH_SESSION_EPOCH, 0);
        assert_eq!((session.id, session.epoch), (9, INITIAL_SESSION_EPOCH));
        session.answered(0, 11);
        assert_eq!((session.id, session.epoch), (11, 1));
        // The broker closed the session by answering without it.
        session.answered(0, NO_SESSION_ID);
        assert!(session.full());
        // An unknown session is not named again.
        session.answered(0, 12);
        session.answered(FETCH_SESSION_ID_NOT_FOUND, 0);
        assert_eq!(
            (session.id, session.epoch),
            (NO_SESSION_ID, INITIAL_SESSION_EPOCH)
        );
        // The broker had no room: full fetches until it has.
        session.answered(0, NO_SESSION_ID);
        assert_eq!(
            (session.id, session.epoch),
            (NO_SESSION_ID, INITIAL_SESSION_EPOCH)
        );
    }

    #[test]
    fn without_sessions_every_fetch_is_sessionless() {
        let mut session = LaneSession::new(false, 1);
        session.answered(0, 5);
        assert_eq!(
            (session.id, session.epoch),
            (NO_SESSION_ID, FINAL_SESSION_EPOCH)
        );
        assert!(session.full());
    }
}
