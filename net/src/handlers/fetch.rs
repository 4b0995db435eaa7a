//! Fetch: long-polled reads, answered with a hand-written scatter-gather
//! encoder so record bytes go from the log's slices straight to the socket.
//!
//! The request is split once per owner shard. If fewer than `min_bytes` are
//! available, the handler asks the owner shards to wake it on the next
//! append to any requested partition (no polling), up to `max_wait_ms`.
//! Fetch sessions (KIP-227, `fetch_session`): a full request opens one, and
//! an incremental request is answered about every partition of its session
//! but names only those with news.
//!
//! From v16 a partition answered NOT_LEADER_OR_FOLLOWER or
//! FENCED_LEADER_EPOCH names its current leader and the response carries
//! that leader's endpoint (KIP-951, see `leader_hints`).
//!
//! v17 lets a follower name its log directory (KIP-853, for KRaft voters;
//! nothing here uses it). From v18 a follower says its own high watermark
//! per partition (KIP-1166): when the leader's is ahead, the fetch is
//! answered at once instead of parking, so the new high watermark reaches
//! the follower without waiting out `max_wait_ms`. Responses of v17 and v18
//! are v16's.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchRequest, RequestHeader};
use sluice_engine::{ShardId, TopicShards};
use uuid::Uuid;

use super::compact::{put_compact_string, put_unsigned_varint};
use super::fetch_session::{Answer, PartitionKey, Plan, Ticket, TopicRef, Wanted};
use super::leader_hints::{wants_hint, CurrentLeader, LeaderHints};
use super::Session;
use crate::acl::Operation;
use crate::broker::{
    ask_shards, select_first, Broker, ReadEntry, ReadOutcome, ShardLists, ShardRequest,
    ShardResponse,
};
use crate::constants::{FETCH_RESPONSE_BYTES_MAX, FETCH_WAIT_MS_MAX};
use crate::errors::{code, leader_epoch_error};
use crate::quota::{QuotaSensors, CONSUMER_BYTE_RATE};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (4, 18);

/// First version with compact (flexible) encoding.
const FLEXIBLE_VERSION: i16 = 12;
/// First version addressing topics by id.
const TOPIC_ID_VERSION: i16 = 13;
const READ_COMMITTED: i8 = 1;
/// First version with the follower's id in ReplicaState.
const REPLICA_STATE_VERSION: i16 = 15;
/// First version in which a follower states its high watermark (KIP-1166).
const FOLLOWER_HIGH_WATERMARK_VERSION: i16 = 18;
/// First version with fetch sessions (and a top-level error code).
const SESSION_VERSION: i16 = 7;
/// First version whose client backs off itself when throttled (KIP-219):
/// the response goes at once and the connection is muted instead.
const THROTTLE_MUTE_VERSION: i16 = 8;
/// First version whose responses carry leader hints (KIP-951). A partition's
/// `CurrentLeader` is in the schema from v12, but Kafka fills it, and the
/// response's `NodeEndpoints` that came with it, from v16; so does Sluice.
const LEADER_HINTS_VERSION: i16 = 16;
/// Tag of a partition's `CurrentLeader` field.
const TAG_CURRENT_LEADER: u64 = 1;
/// Bytes of an encoded `CurrentLeader`: leader id, leader epoch and the
/// struct's own (empty) tagged fields.
const CURRENT_LEADER_BYTES: u64 = 4 + 4 + 1;
/// Tag of the response's `NodeEndpoints` field.
const TAG_NODE_ENDPOINTS: u64 = 0;

/// One requested partition and what was found for it.
struct Slot {
    topic_index: usize,
    partition: i32,
    /// Where `entry` is read: found once per request, not per read.
    shard: ShardId,
    entry: Option<ReadEntry>,
    outcome: ReadOutcome,
    /// The leader to name (v16+); `UNKNOWN`, the schema's default, is not
    /// encoded.
    current_leader: CurrentLeader,
}

struct ResolvedTopic {
    name: String,
    id: Uuid,
}

/// The topic whose partitions are in hand, found once for all of them.
struct TopicInHand<'a> {
    meta: Option<&'a sluice_engine::TopicMetadata>,
    /// Its name for the reads: one allocation per topic, a count per
    /// partition.
    shared_name: Arc<str>,
    shards: TopicShards,
    allowed: bool,
}

pub async fn handle(
    broker: &Rc<Broker>,
    sender: &Session,
    header: &RequestHeader,
    request: FetchRequest,
) -> Option<Pieces> {
    // A fetch pipelined behind a throttled one starts when the throttle
    // time is over (see produce).
    sender.wait_unmuted().await;
    let version = header.request_api_version;
    let uses_topic_ids = version >= TOPIC_ID_VERSION;
    // A follower names itself: in the body below v15, in ReplicaState from.
    let replica_id = if version >= REPLICA_STATE_VERSION {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    let replica = (replica_id >= 0).then_some(replica_id);
    let read_committed = request.isolation_level == READ_COMMITTED && replica.is_none();
    let requested = wanted_of(&request, version, replica.is_some());
    let plan = if version >= SESSION_VERSION {
        let forgotten = forgotten_of(&request, uses_topic_ids);
        broker.fetch_sessions.borrow_mut().plan(
            request.session_id,
            request.session_epoch,
            uses_topic_ids,
            &requested,
            &forgotten,
            Instant::now(),
        )
    } else {
        Plan::Sessionless
    };
    let (wanted, session) = match plan {
        Plan::Error(error_code) => {
            broker.metrics.request_failed(ApiKey::Fetch as i16);
            return Some(encode_error(version, error_code));
        }
        Plan::Sessionless => (requested, SessionUse::None),
        Plan::Full => (requested, SessionUse::Open),
        Plan::Incremental { id, ticket, wanted } => (wanted, SessionUse::Incremental(id, ticket)),
    };
    let metadata = broker.metadata();
    let mut topics: Vec<ResolvedTopic> = Vec::new();
    let mut slots = Vec::with_capacity(wanted.len());
    // Beside `slots`: the high watermark the follower holds for each
    // partition (v18), `i64::MAX` (the schema's "not said") otherwise.
    let mut follower_high_watermarks = Vec::with_capacity(wanted.len());
    let mut in_hand: Option<TopicInHand> = None;
    // Whether the sender may read the topic in hand: a follower needs
    // CLUSTER_ACTION on the cluster, a consumer READ on the topic.
    let may_read = |name: &str| match replica {
        Some(_) => sender.may_on_cluster(broker, Operation::ClusterAction),
        None => sender.may_on_topic(broker, Operation::Read, name),
    };
    for (position, want) in wanted.iter().enumerate() {
        // Partitions of one topic come together: each run of them is one
        // topic of the response, looked up once.
        let new_topic = position == 0 || !wanted[position - 1].key.topic.same(&want.key.topic);
        let topic = match in_hand.as_mut() {
            Some(topic) if !new_topic => topic,
            _ => {
                let (resolved, meta) = resolve_topic(broker, &metadata, &want.key.topic);
                let allowed = match (meta, &want.key.topic) {
                    (Some(meta), _) => may_read(&meta.name),
                    (None, TopicRef::Name(name)) => may_read(name),
                    // An id no topic has is answered UNKNOWN_TOPIC_ID.
                    (None, TopicRef::Id(_)) => true,
                };
                let shared_name: Arc<str> = Arc::from(resolved.name.as_str());
                topics.push(resolved);
                in_hand.insert(TopicInHand {
                    meta,
                    shards: TopicShards::new(&shared_name, broker.shards()),
                    shared_name,
                    allowed,
                })
            }
        };
        let topic_index = topics.len() - 1;
        let partition = want.key.partition;
        let mut outcome = ReadOutcome {
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            ..Default::default()
        };
        let entry = match topic.meta {
            _ if !topic.allowed => {
                outcome.error_code = code::TOPIC_AUTHORIZATION_FAILED;
                None
            }
            Some(meta) if partition >= 0 && partition < meta.partitions => {
                // The topic is in hand: no second lookup by name.
                let epoch_error = leader_epoch_error(
                    meta.placement.get(partition as usize),
                    want.current_leader_epoch,
                );
                if want.max_bytes < 0 {
                    outcome.error_code = code::INVALID_FETCH_SIZE;
                    None
                } else if let Some(error_code) = epoch_error {
                    outcome.error_code = error_code;
                    None
                } else {
                    Some(ReadEntry {
                        topic: Arc::clone(&topic.shared_name),
                        partition,
                        offset: want.fetch_offset,
                        max_bytes: (want.max_bytes as usize).min(FETCH_RESPONSE_BYTES_MAX),
                        read_committed,
                        replica,
                    })
                }
            }
            Some(_) => {
                outcome.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                None
            }
            None => {
                outcome.error_code = match want.key.topic {
                    TopicRef::Id(_) => code::UNKNOWN_TOPIC_ID,
                    TopicRef::Name(_) => code::UNKNOWN_TOPIC_OR_PARTITION,
                };
                None
            }
        };
        follower_high_watermarks.push(want.follower_high_watermark);
        slots.push(Slot {
            topic_index,
            partition,
            shard: topic.shards.owner(partition),
            entry,
            outcome,
            current_leader: CurrentLeader::UNKNOWN,
        });
    }
    let max_wait =
        Duration::from_millis(request.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX as i32) as u64);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    // The shards read no further than the response can carry (a quota can
    // lower the limit further below; this bound only has to be above it).
    let response_bytes_max = response_limit(request.max_bytes);
    loop {
        read_round(broker, &mut slots, response_bytes_max).await;
        let available: usize = slots.iter().map(|slot| slot.outcome.bytes).sum();
        let failed = slots
            .iter()
            .any(|slot| slot.outcome.error_code != code::NONE);
        let follower_behind = slots
            .iter()
            .zip(&follower_high_watermarks)
            .any(|(slot, held)| *held < slot.outcome.high_watermark);
        let now = Instant::now();
        if available >= min_bytes.max(1)
            || failed
            || follower_behind
            || now >= deadline
            || broker.shutting_down.get()
        {
            break;
        }
        wait_for_data(
            broker,
            &slots,
            deadline - now,
            read_committed,
            replica.is_some(),
        )
        .await;
        if Instant::now() >= deadline && min_bytes > 0 {
            // One last read below picks up whatever arrived.
            read_round(broker, &mut slots, response_bytes_max).await;
            break;
        }
    }
    // A consumer with a byte-rate quota gets at most a quota window's worth
    // in one response, as Kafka limits it; a follower has no quota.
    let identity = (
        sender.quota_user(),
        header.client_id.as_deref().unwrap_or(""),
    );
    let quota_bytes_max = match replica {
        Some(_) => None,
        None => QuotaSensors::fetch_bytes_max(&metadata, identity),
    };
    let max_bytes = match quota_bytes_max {
        Some(quota_bytes) => request
            .max_bytes
            .min(i32::try_from(quota_bytes).unwrap_or(i32::MAX)),
        None => request.max_bytes,
    };
    apply_response_limit(&mut slots, max_bytes);
    count_traffic(broker, &topics, &slots, replica.is_none());
    let throttle_time_ms = match replica {
        Some(_) => 0,
        None => {
            let bytes: usize = slots.iter().map(|slot| slot.outcome.bytes).sum();
            let throttle =
                broker.record_quota(&metadata, CONSUMER_BYTE_RATE, identity, bytes as f64);
            sender
                .throttle(throttle, version, THROTTLE_MUTE_VERSION)
                .await
        }
    };
    let answers: Vec<Answer> = slots.iter().map(|slot| answer_of(&slot.outcome)).collect();
    let session_id = match session {
        SessionUse::None => 0,
        SessionUse::Open => broker.fetch_sessions.borrow_mut().open(
            &wanted,
            &answers,
            uses_topic_ids,
            replica.is_some(),
            Instant::now(),
        ),
        SessionUse::Incremental(id, ticket) => {
            let named = broker
                .fetch_sessions
                .borrow_mut()
                .answered(id, ticket, &answers);
            let mut named = named.into_iter();
            slots.retain(|_| named.next().unwrap_or(true));
            id
        }
    };
    // Looked up only when some partition needs a hint, so that the read
    // path costs nothing more; and in the image as of the answer, not of the
    // request, so that a hint names the leader the partition has now.
    let hinted = slots.iter().any(|slot| wants_hint(slot.outcome.error_code));
    let mut hints = (version >= LEADER_HINTS_VERSION && hinted)
        .then(|| LeaderHints::new(broker.metadata(), sender.live_brokers(broker)));
    if let Some(hints) = hints.as_mut() {
        name_leaders(hints, &topics, &mut slots);
    }
    Some(encode_response(
        version,
        throttle_time_ms,
        session_id,
        &topics,
        &slots,
        hints.as_ref(),
    ))
}

/// The metrics of an answered fetch: the record bytes returned per topic
/// (a consumer's only: a follower's fetch is replication), and the request
/// as failed when any partition has an error code.
fn count_traffic(broker: &Broker, topics: &[ResolvedTopic], slots: &[Slot], consumer: bool) {
    let count = |topic_index: usize, bytes: u64| {
        if let Some(topic) = topics.get(topic_index) {
            broker.metrics.bytes_out(&topic.name, bytes);
        }
    };
    let mut failed = false;
    let mut run: Option<(usize, u64)> = None;
    for slot in slots {
        failed |= slot.outcome.error_code != code::NONE;
        if !consumer || slot.outcome.bytes == 0 {
            continue;
        }
        // Slots of one topic come together: one count per run of them.
        match &mut run {
            Some((topic_index, bytes)) if *topic_index == slot.topic_index => {
                *bytes += slot.outcome.bytes as u64;
            }
            _ => {
                if let Some((topic_index, bytes)) = run {
                    count(topic_index, bytes);
                }
                run = Some((slot.topic_index, slot.outcome.bytes as u64));
            }
        }
    }
    if let Some((topic_index, bytes)) = run {
        count(topic_index, bytes);
    }
    if failed {
        broker.metrics.request_failed(ApiKey::Fetch as i16);
    }
}

/// What a handled request does with a fetch session.
enum SessionUse {
    None,
    /// Open one once answered.
    Open,
    /// Answer from this session, to the plan of this ticket.
    Incremental(i32, Ticket),
}

/// The partitions a request names, in its order.
fn wanted_of(request: &FetchRequest, version: i16, follower: bool) -> Vec<Wanted> {
    let says_high_watermark = follower && version >= FOLLOWER_HIGH_WATERMARK_VERSION;
    let mut wanted = Vec::new();
    for topic in &request.topics {
        let topic_ref = if version >= TOPIC_ID_VERSION {
            TopicRef::Id(*topic.topic_id.as_bytes())
        } else {
            TopicRef::Name(Rc::from(&*topic.topic.0))
        };
        for partition in &topic.partitions {
            wanted.push(Wanted {
                key: PartitionKey {
                    topic: topic_ref.clone(),
                    partition: partition.partition,
                },
                fetch_offset: partition.fetch_offset,
                max_bytes: partition.partition_max_bytes,
                current_leader_epoch: partition.current_leader_epoch,
                follower_high_watermark: if says_high_watermark {
                    partition.high_watermark
                } else {
                    i64::MAX
                },
            });
        }
    }
    wanted
}

/// The partitions an incremental request drops from its session.
fn forgotten_of(request: &FetchRequest, uses_topic_ids: bool) -> Vec<PartitionKey> {
    let mut keys = Vec::new();
    for topic in &request.forgotten_topics_data {
        let topic_ref = if uses_topic_ids {
            TopicRef::Id(*topic.topic_id.as_bytes())
        } else {
            TopicRef::Name(Rc::from(&*topic.topic.0))
        };
        for &partition in &topic.partitions {
            keys.push(PartitionKey {
                topic: topic_ref.clone(),
                partition,
            });
        }
    }
    keys
}

/// The topic a request names, as the response names it back, and its
/// metadata if it exists.
fn resolve_topic<'a>(
    broker: &Broker,
    metadata: &'a sluice_engine::ClusterMetadata,
    topic: &TopicRef,
) -> (ResolvedTopic, Option<&'a sluice_engine::TopicMetadata>) {
    match topic {
        TopicRef::Id(id) => {
            let found = broker.topic_by_id(metadata, id);
            let resolved = ResolvedTopic {
                name: found.map(|meta| meta.name.clone()).unwrap_or_default(),
                id: Uuid::from_bytes(*id),
            };
            (resolved, found)
        }
        TopicRef::Name(name) => {
            let found = metadata.topics.get(&**name);
            let resolved = ResolvedTopic {
                name: name.to_string(),
                id: Uuid::nil(),
            };
            (resolved, found)
        }
    }
}

fn answer_of(outcome: &ReadOutcome) -> Answer {
    Answer {
        error_code: outcome.error_code,
        has_records: outcome.bytes > 0,
        high_watermark: outcome.high_watermark,
        last_stable_offset: outcome.last_stable_offset,
        log_start_offset: outcome.log_start_offset,
    }
}

/// Gives each slot whose error says the client's leader is out of date the
/// leader to name.
fn name_leaders(hints: &mut LeaderHints, topics: &[ResolvedTopic], slots: &mut [Slot]) {
    for slot in slots {
        // Slots index the topics they were made from.
        let topic = topics[slot.topic_index].name.as_str();
        if let Some(leader) = hints.for_error(slot.outcome.error_code, topic, slot.partition) {
            slot.current_leader = leader;
        }
    }
}

/// Reads every readable slot, one mesh message per owner shard; the shards
/// read from disk no further than `bytes_max`, the response's limit.
async fn read_round(broker: &Rc<Broker>, slots: &mut [Slot], bytes_max: usize) {
    // Each shard's list sized once (grown a push at a time, two lists per
    // shard cost several allocations per fetch).
    let mut counts: ShardLists<usize> = smallvec::smallvec![0; broker.shards()];
    for slot in slots.iter().filter(|slot| slot.entry.is_some()) {
        counts[usize::from(slot.shard.0)] += 1;
    }
    let mut per_shard: ShardLists<Vec<ReadEntry>> = counts
        .iter()
        .map(|&count| Vec::with_capacity(count))
        .collect();
    for slot in slots.iter() {
        if let Some(entry) = &slot.entry {
            per_shard[usize::from(slot.shard.0)].push(entry.clone());
        }
    }
    let mut answers = ask_shards(
        broker,
        per_shard,
        |entries| ShardRequest::Read { entries, bytes_max },
        |response| match response {
            ShardResponse::Read(outcomes) => Some(outcomes),
            _ => None,
        },
    )
    .await;
    // Dealt back in the order the lists were made: slot order.
    for slot in slots.iter_mut().filter(|slot| slot.entry.is_some()) {
        match answers[usize::from(slot.shard.0)]
            .as_mut()
            .and_then(Iterator::next)
        {
            Some(outcome) => slot.outcome = outcome,
            None => slot.outcome.error_code = code::NOT_LEADER_OR_FOLLOWER,
        }
    }
}

/// Waits until any requested partition gets new data, or `wait` passes.
async fn wait_for_data(
    broker: &Rc<Broker>,
    slots: &[Slot],
    wait: Duration,
    read_committed: bool,
    replica: bool,
) {
    let mut per_shard: Vec<Vec<(Arc<str>, i32, i64)>> =
        (0..broker.shards()).map(|_| Vec::new()).collect();
    for slot in slots {
        if let Some(entry) = &slot.entry {
            per_shard[slot.shard.0 as usize].push((
                Arc::clone(&entry.topic),
                entry.partition,
                entry.offset,
            ));
        }
    }
    let wait_ms = wait.as_millis() as u64;
    let waits: Vec<Pin<Box<dyn Future<Output = ()>>>> = per_shard
        .into_iter()
        .enumerate()
        .filter(|(_, watches)| !watches.is_empty())
        .map(|(shard, watches)| {
            let broker = Rc::clone(broker);
            Box::pin(async move {
                let _ = broker
                    .mesh
                    .call(
                        ShardId(shard as u16),
                        ShardRequest::WaitForData {
                            watches,
                            wait_ms,
                            read_committed,
                            replica,
                        },
                    )
                    .await;
            }) as Pin<Box<dyn Future<Output = ()>>>
        })
        .collect();
    if waits.is_empty() {
        glommio::timer::sleep(wait).await;
        return;
    }
    select_first(waits).await;
}

/// The bytes of record data a response of `max_bytes` may carry.
fn response_limit(max_bytes: i32) -> usize {
    (max_bytes.max(0) as usize).min(FETCH_RESPONSE_BYTES_MAX)
}

/// Kafka's `max_bytes` across the response: partitions after the limit is
/// reached return no data; the first partition with data is always kept
/// whole, so a consumer can always make progress.
fn apply_response_limit(slots: &mut [Slot], max_bytes: i32) {
    let limit = response_limit(max_bytes);
    let mut total = 0usize;
    for slot in slots.iter_mut() {
        let bytes = slot.outcome.bytes;
        if bytes == 0 {
            continue;
        }
        if total > 0 && total + bytes > limit {
            slot.outcome.chunks.clear();
            slot.outcome.bytes = 0;
            continue;
        }
        total += bytes;
    }
}

fn put_array_len(out: &mut BytesMut, len: usize, flexible: bool) {
    if flexible {
        put_unsigned_varint(out, len as u64 + 1);
    } else {
        out.put_i32(len as i32);
    }
}

/// A partition's tagged fields: `CurrentLeader` when there is a leader to
/// name (v16+), else none.
fn put_partition_tags(out: &mut BytesMut, version: i16, leader: CurrentLeader) {
    if version < LEADER_HINTS_VERSION || leader == CurrentLeader::UNKNOWN {
        out.put_u8(0);
        return;
    }
    put_unsigned_varint(out, 1); // one tagged field
    put_unsigned_varint(out, TAG_CURRENT_LEADER);
    put_unsigned_varint(out, CURRENT_LEADER_BYTES);
    out.put_i32(leader.leader_id);
    out.put_i32(leader.leader_epoch);
    out.put_u8(0); // CurrentLeader's own tagged fields
}

/// The response's tagged fields: `NodeEndpoints` when a leader named has a
/// known endpoint (v16+), else none.
fn put_response_tags(out: &mut BytesMut, version: i16, hints: Option<&LeaderHints>) {
    let hints = hints.filter(|_| version >= LEADER_HINTS_VERSION);
    let Some(hints) = hints.filter(|hints| hints.endpoints().next().is_some()) else {
        out.put_u8(0);
        return;
    };
    // The field is sized before it is written: encode it aside first. It
    // only exists in answers naming a moved leader, never on the read path.
    let mut endpoints = BytesMut::new();
    put_array_len(&mut endpoints, hints.endpoints().count(), true);
    for broker in hints.endpoints() {
        endpoints.put_i32(broker.id);
        put_compact_string(&mut endpoints, &broker.host);
        endpoints.put_i32(i32::from(broker.port));
        match &broker.rack {
            Some(rack) => put_compact_string(&mut endpoints, rack),
            None => put_unsigned_varint(&mut endpoints, 0), // null
        }
        endpoints.put_u8(0); // the endpoint's tagged fields
    }
    put_unsigned_varint(out, 1); // one tagged field
    put_unsigned_varint(out, TAG_NODE_ENDPOINTS);
    put_unsigned_varint(out, endpoints.len() as u64);
    out.put_slice(&endpoints);
}

fn encode_error(version: i16, error_code: i16) -> Pieces {
    let flexible = version >= FLEXIBLE_VERSION;
    let mut out = BytesMut::with_capacity(16);
    out.put_i32(0); // throttle_time_ms
    if version >= SESSION_VERSION {
        out.put_i16(error_code);
        out.put_i32(0); // session_id
    }
    put_array_len(&mut out, 0, flexible);
    if flexible {
        out.put_u8(0);
    }
    smallvec::smallvec![out.freeze()]
}

/// Room reserved for a fetch response's own fields: throttle, error,
/// session, the topic count and the response's tagged fields (leader
/// hints need more, and the buffer grows for them).
const RESPONSE_FIELDS_BYTES: usize = 64;
/// Room for a topic's fields besides its name: an id or the name's
/// length, the partition count, tagged fields.
const TOPIC_FIELDS_BYTES: usize = 32;
/// Room for a partition's fields: index, error, three offsets, the
/// aborted-transaction count, preferred replica, the records' length and
/// tagged fields (a current-leader tag included).
const PARTITION_FIELDS_BYTES: usize = 72;
/// Room for one aborted transaction: producer id, first offset, tags.
const ABORTED_TXN_FIELDS_BYTES: usize = 17;

/// Encodes the response as pieces: fixed fields cut from one buffer, record
/// slices as they came from the log. Each run of slots of one topic is one
/// topic of the response; a topic with no slot left (an incremental answer
/// with no news for it) is not named. `hints` lists the endpoints of the
/// leaders the slots name; both are encoded from v16 only.
fn encode_response(
    version: i16,
    throttle_time_ms: i32,
    session_id: i32,
    topics: &[ResolvedTopic],
    slots: &[Slot],
    hints: Option<&LeaderHints>,
) -> Pieces {
    let flexible = version >= FLEXIBLE_VERSION;
    // Every piece counted and the encoded fields' room reserved up front:
    // each partition with data ends a piece, cut from the one buffer so
    // that the pieces share its allocation (a buffer per partition cost
    // two allocations each, its bytes and, frozen with room to spare, a
    // shared count).
    let data_slots = slots.iter().filter(|slot| slot.outcome.bytes > 0);
    let piece_count = 1 + data_slots
        .map(|slot| 1 + slot.outcome.chunks.len())
        .sum::<usize>();
    let fields_bytes = RESPONSE_FIELDS_BYTES
        + topics.len() * TOPIC_FIELDS_BYTES
        + topics.iter().map(|topic| topic.name.len()).sum::<usize>()
        + slots
            .iter()
            .map(|slot| {
                PARTITION_FIELDS_BYTES
                    + slot.outcome.aborted_transactions.len() * ABORTED_TXN_FIELDS_BYTES
            })
            .sum::<usize>();
    let mut pieces = Pieces::with_capacity(piece_count);
    let mut out = BytesMut::with_capacity(fields_bytes);
    out.put_i32(throttle_time_ms);
    if version >= SESSION_VERSION {
        out.put_i16(code::NONE);
        out.put_i32(session_id);
    }
    let runs = slots
        .iter()
        .enumerate()
        .filter(|(index, slot)| *index == 0 || slots[index - 1].topic_index != slot.topic_index)
        .count();
    put_array_len(&mut out, runs, flexible);
    let mut slot_index = 0;
    while slot_index < slots.len() {
        let topic_index = slots[slot_index].topic_index;
        let topic = &topics[topic_index];
        if version >= TOPIC_ID_VERSION {
            out.put_slice(topic.id.as_bytes());
        } else if flexible {
            put_unsigned_varint(&mut out, topic.name.len() as u64 + 1);
            out.put_slice(topic.name.as_bytes());
        } else {
            out.put_i16(topic.name.len() as i16);
            out.put_slice(topic.name.as_bytes());
        }
        let count = slots[slot_index..]
            .iter()
            .take_while(|slot| slot.topic_index == topic_index)
            .count();
        put_array_len(&mut out, count, flexible);
        for slot in &slots[slot_index..slot_index + count] {
            let outcome = &slot.outcome;
            out.put_i32(slot.partition);
            out.put_i16(outcome.error_code);
            out.put_i64(outcome.high_watermark);
            out.put_i64(outcome.last_stable_offset);
            if version >= 5 {
                out.put_i64(outcome.log_start_offset);
            }
            // aborted_transactions: filled for read_committed reads only;
            // an empty list (never null) otherwise, which clients accept.
            put_array_len(&mut out, outcome.aborted_transactions.len(), flexible);
            for (producer_id, first_offset) in &outcome.aborted_transactions {
                out.put_i64(*producer_id);
                out.put_i64(*first_offset);
                if flexible {
                    out.put_u8(0); // aborted transaction tagged fields
                }
            }
            if version >= 11 {
                out.put_i32(-1); // preferred_read_replica
            }
            if flexible {
                put_unsigned_varint(&mut out, outcome.bytes as u64 + 1);
            } else {
                out.put_i32(outcome.bytes as i32);
            }
            if outcome.bytes > 0 {
                pieces.push(out.split().freeze());
                pieces.extend(outcome.chunks.iter().cloned());
            }
            if flexible {
                put_partition_tags(&mut out, version, slot.current_leader);
            }
        }
        if flexible {
            out.put_u8(0); // topic tagged fields
        }
        slot_index += count;
    }
    if flexible {
        put_response_tags(&mut out, version, hints);
    }
    pieces.push(out.freeze());
    pieces
}

/// Encodes a one-topic, one-partition fetch response holding `chunks`, for
/// the benchmarks that compare scatter-gather with a copying encoder.
#[doc(hidden)]
pub fn encode_single_partition(version: i16, topic: &str, chunks: Vec<Bytes>) -> Pieces {
    let bytes = chunks.iter().map(Bytes::len).sum();
    let topics = vec![ResolvedTopic {
        name: topic.to_string(),
        id: Uuid::nil(),
    }];
    let slots = vec![Slot {
        topic_index: 0,
        partition: 0,
        shard: ShardId(0),
        entry: None,
        outcome: ReadOutcome {
            error_code: code::NONE,
            high_watermark: 0,
            last_stable_offset: 0,
            log_start_offset: 0,
            chunks,
            bytes,
            aborted_transactions: Vec::new(),
        },
        current_leader: CurrentLeader::UNKNOWN,
    }];
    encode_response(version, 0, 0, &topics, &slots, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::leader_hints::tests::{broker_info, hints};
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Decodable;

    fn slot(topic_index: usize, partition: i32, records: &[&[u8]]) -> Slot {
        let chunks: Vec<Bytes> = records.iter().map(|r| Bytes::copy_from_slice(r)).collect();
        let bytes = chunks.iter().map(Bytes::len).sum();
        Slot {
            topic_index,
            partition,
            shard: ShardId(0),
            entry: None,
            outcome: ReadOutcome {
                error_code: 0,
                high_watermark: 10,
                last_stable_offset: 10,
                log_start_offset: 1,
                chunks,
                bytes,
                aborted_transactions: vec![(7, 3), (9, 5)],
            },
            current_leader: CurrentLeader::UNKNOWN,
        }
    }

    fn joined(pieces: &[Bytes]) -> Bytes {
        let mut whole = BytesMut::new();
        for piece in pieces {
            whole.put_slice(piece);
        }
        whole.freeze()
    }

    /// The scatter-gather encoding, concatenated, decodes with the reference
    /// decoder to the same fields at every supported version.
    #[test]
    fn gathered_response_decodes_with_the_reference_decoder() {
        let topics = vec![
            ResolvedTopic {
                name: "alpha".into(),
                id: Uuid::from_bytes([1; 16]),
            },
            ResolvedTopic {
                name: "beta".into(),
                id: Uuid::from_bytes([2; 16]),
            },
        ];
        let slots = vec![
            slot(0, 0, &[b"abc", b"def"]),
            slot(0, 3, &[]),
            slot(1, 1, &[b"xyz"]),
        ];
        for version in VERSIONS.0..=VERSIONS.1 {
            let pieces = encode_response(version, 0, 0, &topics, &slots, None);
            let mut whole = BytesMut::new();
            for piece in &pieces {
                whole.put_slice(piece);
            }
            let mut whole = whole.freeze();
            let decoded = FetchResponse::decode(&mut whole, version)
                .unwrap_or_else(|e| panic!("v{version}: {e}"));
            assert!(whole.is_empty(), "trailing bytes at v{version}");
            assert_eq!(decoded.responses.len(), 2);
            let first = &decoded.responses[0];
            if version >= TOPIC_ID_VERSION {
                assert_eq!(first.topic_id, Uuid::from_bytes([1; 16]));
            } else {
                assert_eq!(first.topic.0.as_str(), "alpha");
            }
            assert_eq!(first.partitions.len(), 2);
            assert_eq!(first.partitions[0].records.as_deref(), Some(&b"abcdef"[..]));
            assert_eq!(first.partitions[0].high_watermark, 10);
            let aborted: Vec<(i64, i64)> = first.partitions[0]
                .aborted_transactions
                .iter()
                .flatten()
                .map(|txn| (txn.producer_id.0, txn.first_offset))
                .collect();
            assert_eq!(aborted, vec![(7, 3), (9, 5)], "v{version}");
            assert_eq!(first.partitions[1].partition_index, 3);
            assert_eq!(
                decoded.responses[1].partitions[0].records.as_deref(),
                Some(&b"xyz"[..])
            );
        }
    }

    /// Topic `t` of the `hints()` image read at partitions 0 (not led
    /// here), 2 (read, with data), 1 (fenced epoch, leader not live) and 3
    /// (an error that is not about leadership); the slots name their
    /// leaders as the handler has them do.
    fn hinted_slots() -> (Vec<ResolvedTopic>, Vec<Slot>, LeaderHints) {
        let topics = vec![ResolvedTopic {
            name: "t".into(),
            id: Uuid::from_bytes([7; 16]),
        }];
        let failed = |partition, error_code| {
            let mut failed = slot(0, partition, &[]);
            failed.outcome.error_code = error_code;
            failed.outcome.aborted_transactions.clear();
            failed
        };
        let mut slots = vec![
            failed(0, code::NOT_LEADER_OR_FOLLOWER),
            slot(0, 2, &[b"abc"]),
            failed(1, code::FENCED_LEADER_EPOCH),
            failed(3, code::OFFSET_OUT_OF_RANGE),
        ];
        let mut hints = hints();
        name_leaders(&mut hints, &topics, &mut slots);
        (topics, slots, hints)
    }

    #[test]
    fn leader_hints_are_encoded_at_v16_only() {
        let (topics, slots, hints) = hinted_slots();
        let plain_slots: Vec<Slot> = hinted_slots()
            .1
            .into_iter()
            .map(|slot| Slot {
                current_leader: CurrentLeader::UNKNOWN,
                ..slot
            })
            .collect();
        for version in VERSIONS.0..=VERSIONS.1 {
            let whole = joined(&encode_response(
                version,
                0,
                0,
                &topics,
                &slots,
                Some(&hints),
            ));
            if version < LEADER_HINTS_VERSION {
                let plain = joined(&encode_response(version, 0, 0, &topics, &plain_slots, None));
                assert_eq!(whole, plain, "v{version} unchanged");
                continue;
            }
            let mut rest = whole.clone();
            let decoded = FetchResponse::decode(&mut rest, version)
                .unwrap_or_else(|e| panic!("v{version}: {e}"));
            assert!(rest.is_empty(), "trailing bytes at v{version}");
            let partitions = &decoded.responses[0].partitions;
            let leaders: Vec<(i32, i32, i32)> = partitions
                .iter()
                .map(|p| {
                    let leader = &p.current_leader;
                    (p.partition_index, leader.leader_id.0, leader.leader_epoch)
                })
                .collect();
            assert_eq!(
                leaders,
                vec![(0, 2, 5), (2, -1, -1), (1, 3, 7), (3, -1, -1)],
                "v{version}"
            );
            assert_eq!(partitions[1].records.as_deref(), Some(&b"abc"[..]));
            // Broker 3 is not live: only broker 2's endpoint is listed.
            assert_eq!(decoded.node_endpoints.len(), 1, "v{version}");
            let endpoint = &decoded.node_endpoints[0];
            let expected = broker_info(2, None);
            assert_eq!(endpoint.node_id.0, expected.id);
            assert_eq!(endpoint.host.as_str(), expected.host);
            assert_eq!(endpoint.port, i32::from(expected.port));
            assert_eq!(endpoint.rack, None);
            // Partition 0's tagged fields as the schema lays them out: one
            // field, tag 1, 9 bytes (leader id, epoch, the struct's empty
            // tagged fields).
            let partition_tags = [1, 1, 9, 0, 0, 0, 2, 0, 0, 0, 5, 0];
            assert!(
                whole
                    .windows(partition_tags.len())
                    .any(|w| w == partition_tags),
                "v{version}: {whole:?}"
            );
        }
    }

    #[test]
    fn node_endpoints_carry_the_rack() {
        let topics = vec![ResolvedTopic {
            name: "t".into(),
            id: Uuid::from_bytes([7; 16]),
        }];
        let mut failed = slot(0, 0, &[]);
        failed.outcome.error_code = code::NOT_LEADER_OR_FOLLOWER;
        let mut slots = vec![failed];
        let mut metadata = sluice_engine::ClusterMetadata::default();
        let mut state = sluice_engine::PartitionState::led_by(1);
        state.leader_epoch = 4;
        metadata.topics.insert(
            "t".into(),
            sluice_engine::TopicMetadata {
                name: "t".into(),
                id: [7; 16],
                partitions: 1,
                configs: Default::default(),
                placement: vec![state],
            },
        );
        let live = vec![broker_info(1, Some("rack-1"))];
        let mut hints = LeaderHints::new(std::sync::Arc::new(metadata), live);
        name_leaders(&mut hints, &topics, &mut slots);
        let version = LEADER_HINTS_VERSION;
        let mut whole = joined(&encode_response(
            version,
            0,
            0,
            &topics,
            &slots,
            Some(&hints),
        ));
        let decoded = FetchResponse::decode(&mut whole, version).expect("decodes");
        assert!(whole.is_empty());
        let leader = &decoded.responses[0].partitions[0].current_leader;
        assert_eq!((leader.leader_id.0, leader.leader_epoch), (1, 4));
        assert_eq!(decoded.node_endpoints.len(), 1);
        assert_eq!(
            decoded.node_endpoints[0]
                .rack
                .as_ref()
                .map(|rack| rack.as_str()),
            Some("rack-1")
        );
    }

    #[test]
    fn without_a_leadership_error_v16_is_unchanged() {
        let topics = vec![ResolvedTopic {
            name: "t".into(),
            id: Uuid::from_bytes([7; 16]),
        }];
        let mut slots = vec![slot(0, 0, &[b"abc"]), slot(0, 1, &[])];
        slots[1].outcome.error_code = code::UNKNOWN_LEADER_EPOCH;
        let mut hints = hints();
        name_leaders(&mut hints, &topics, &mut slots);
        let version = LEADER_HINTS_VERSION;
        assert_eq!(
            joined(&encode_response(
                version,
                0,
                0,
                &topics,
                &slots,
                Some(&hints)
            )),
            joined(&encode_response(version, 0, 0, &topics, &slots, None))
        );
    }
}
