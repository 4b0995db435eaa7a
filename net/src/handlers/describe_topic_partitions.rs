//! DescribeTopicPartitions (KIP-966): topics and their partitions from the
//! metadata image, a page at a time, so that describing a cluster of many
//! partitions takes bounded responses instead of one Metadata answer.
//!
//! The paging is Kafka's (its `DescribeTopicPartitionsRequestHandler` and
//! the metadata cache's `describeTopicResponse`):
//! - the request names topics, or none for every topic; they are answered
//!   once each, in name order, from the cursor's topic on, that topic from
//!   the cursor's partition;
//! - a page holds at most the request's partition limit, raised to
//!   [`RESPONSE_PARTITIONS_MIN`] and capped at [`RESPONSE_PARTITIONS_MAX`];
//!   when it stops inside a topic, `NextCursor` names that topic and the
//!   first partition left out; when it fills up exactly at the end of a
//!   topic, `NextCursor` names the next topic (existing or not) at
//!   partition 0; when everything fit, it is null;
//! - a named topic the image lacks is answered UNKNOWN_TOPIC_OR_PARTITION
//!   (INVALID_TOPIC_EXCEPTION for an illegal name), without partitions;
//! - a cursor whose topic the request does not name, or whose partition is
//!   negative, refuses the whole request: every named topic is answered
//!   INVALID_REQUEST and nothing else (Kafka's error response for the
//!   InvalidRequestException its handler throws).
//!
//! Everything comes from this broker's applied metadata image, as
//! Metadata's answer does, so no other shard or broker is asked.

use std::cmp::Ordering;
use std::ops::Range;
use std::rc::Rc;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, RequestHeader,
    TopicName,
};
use sluice_engine::{ClusterMetadata, PartitionState, TopicMetadata};
use uuid::Uuid;

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{validate_topic_name, Broker};
use crate::errors::code;
use crate::groups::OFFSETS_TOPIC;
use crate::txn::TXN_TOPIC;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 0);

/// Most partitions one response holds: Kafka caps the request's limit at
/// its `max.request.partition.size.limit`, whose default this is (and the
/// schema's default limit, so a client that sets none gets this many).
pub const RESPONSE_PARTITIONS_MAX: i32 = 2000;

/// Fewest partitions one response holds: Kafka raises a zero or negative
/// limit to one, so every page moves the cursor forward.
pub const RESPONSE_PARTITIONS_MIN: i32 = 1;

const _: () = assert!(RESPONSE_PARTITIONS_MIN <= RESPONSE_PARTITIONS_MAX);

/// Kafka's internal topics (`Topic.isInternal`): exactly these names, not
/// every name that starts with `__`.
const SHARE_GROUP_STATE_TOPIC: &str = "__share_group_state";
const INTERNAL_TOPICS: [&str; 3] = [OFFSETS_TOPIC, TXN_TOPIC, SHARE_GROUP_STATE_TOPIC];

/// Where a page starts (the request's cursor) or where the next one would
/// (the response's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position<'a> {
    topic: &'a str,
    partition: i32,
}

/// Why a request is refused as a whole.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The cursor names a topic the request does not.
    CursorTopicNotRequested,
    /// The cursor's partition is negative.
    NegativeCursorPartition,
}

/// One topic of a page.
#[derive(Debug, PartialEq, Eq)]
enum Entry<'a> {
    /// A topic of the image and the indexes of the partitions the page holds.
    Described {
        topic: &'a TopicMetadata,
        partitions: Range<usize>,
    },
    /// A named topic the image does not have.
    Missing(&'a str),
}

/// One response's worth of topics and partitions.
#[derive(Debug, PartialEq, Eq)]
struct Page<'a> {
    entries: Vec<Entry<'a>>,
    next: Option<Position<'a>>,
}

/// Kafka orders topic names with Java's `String.compareTo`, by UTF-16 code
/// units; Rust's `str` order (by code point) differs for names that mix
/// characters above U+FFFF with ones from U+E000 to U+FFFF.
fn java_order(left: &str, right: &str) -> Ordering {
    left.encode_utf16().cmp(right.encode_utf16())
}

/// The topics a request describes, sorted and each once: the named ones, or
/// every topic of the image when none is named, from the cursor's topic on.
fn topics_to_describe<'a>(
    requested: &[&'a str],
    metadata: &'a ClusterMetadata,
    cursor: Option<Position<'_>>,
) -> Result<Vec<&'a str>, Refusal> {
    let from = cursor.map_or("", |cursor| cursor.topic);
    let candidates: Vec<&'a str> = if requested.is_empty() {
        metadata.topics.keys().map(String::as_str).collect()
    } else {
        requested.to_vec()
    };
    let mut topics: Vec<&'a str> = candidates
        .into_iter()
        .filter(|name| java_order(name, from) != Ordering::Less)
        .collect();
    topics.sort_by(|left, right| java_order(left, right));
    topics.dedup();
    if let Some(cursor) = cursor {
        let named = topics
            .binary_search_by(|name| java_order(name, cursor.topic))
            .is_ok();
        // With every topic asked for, a cursor at a topic deleted since the
        // last page is fine: the page starts at the topics after it.
        if !requested.is_empty() && !named {
            return Err(Refusal::CursorTopicNotRequested);
        }
        if cursor.partition < 0 {
            return Err(Refusal::NegativeCursorPartition);
        }
    }
    Ok(topics)
}

/// The request's partition limit as Kafka applies it.
fn response_partitions(requested: i32) -> usize {
    requested
        .clamp(RESPONSE_PARTITIONS_MIN, RESPONSE_PARTITIONS_MAX)
        .unsigned_abs() as usize
}

/// The page of `topics` (as [`topics_to_describe`] gives them) that starts
/// at `cursor` and holds at most `partitions_max` partitions.
fn page<'a>(
    metadata: &'a ClusterMetadata,
    topics: &[&'a str],
    cursor: Option<Position<'_>>,
    partitions_max: usize,
    every_topic: bool,
) -> Page<'a> {
    let mut remaining = partitions_max;
    let mut entries = Vec::new();
    for &name in topics {
        if remaining == 0 {
            // The topics before filled the page exactly.
            let next = Position {
                topic: name,
                partition: 0,
            };
            return Page {
                entries,
                next: Some(next),
            };
        }
        let Some(topic) = metadata.topics.get(name) else {
            if !every_topic {
                entries.push(Entry::Missing(name));
            }
            continue;
        };
        let count = topic.placement.len();
        let start = match cursor {
            Some(cursor) if cursor.topic == name => {
                usize::try_from(cursor.partition).unwrap_or(0).min(count)
            }
            _ => 0,
        };
        // `start + remaining` cannot overflow a usize; Kafka's int sum can,
        // for a cursor near i32::MAX.
        let end = count.min(start.saturating_add(remaining));
        entries.push(Entry::Described {
            topic,
            partitions: start..end,
        });
        if end < count {
            let next = Position {
                topic: name,
                partition: wire_index(end),
            };
            return Page {
                entries,
                next: Some(next),
            };
        }
        remaining -= end - start;
    }
    Page {
        entries,
        next: None,
    }
}

/// A partition index on the wire. A topic has at most
/// `TOPIC_PARTITIONS_MAX` (an i32) partitions, so every index fits.
fn wire_index(index: usize) -> i32 {
    index as i32
}

fn broker_ids(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().copied().map(BrokerId).collect()
}

fn partition_response(
    metadata: &ClusterMetadata,
    index: usize,
    state: &PartitionState,
) -> DescribeTopicPartitionsResponsePartition {
    let live = |id: &i32| {
        metadata
            .brokers
            .get(id)
            .is_some_and(|broker| !broker.fenced)
    };
    let mut partition = DescribeTopicPartitionsResponsePartition::default();
    // Kafka leaves the partition error at NONE even without a leader (unlike
    // Metadata's LEADER_NOT_AVAILABLE): the leader id -1 says it.
    partition.error_code = code::NONE;
    partition.partition_index = wire_index(index);
    partition.leader_id = BrokerId(state.leader);
    partition.leader_epoch = state.leader_epoch;
    partition.replica_nodes = broker_ids(&state.replicas);
    partition.isr_nodes = broker_ids(&state.isr);
    // Sluice keeps no eligible leader replicas; Kafka without them sends
    // empty lists rather than null.
    partition.eligible_leader_replicas = Some(Vec::new());
    partition.last_known_elr = Some(Vec::new());
    partition.offline_replicas = state
        .replicas
        .iter()
        .copied()
        .filter(|id| !live(id))
        .map(BrokerId)
        .collect();
    partition
}

fn topic_response(
    name: &str,
    error_code: i16,
    topic_id: Uuid,
) -> DescribeTopicPartitionsResponseTopic {
    let mut response = DescribeTopicPartitionsResponseTopic::default();
    response.error_code = error_code;
    response.name = Some(TopicName(str_bytes(name)));
    response.topic_id = topic_id;
    response.is_internal = INTERNAL_TOPICS.contains(&name);
    response
}

fn entry_response(
    metadata: &ClusterMetadata,
    entry: Entry<'_>,
) -> DescribeTopicPartitionsResponseTopic {
    match entry {
        Entry::Described { topic, partitions } => {
            let mut response = topic_response(&topic.name, code::NONE, Uuid::from_bytes(topic.id));
            let states = topic.placement.get(partitions.clone()).unwrap_or_default();
            response.partitions = partitions
                .zip(states)
                .map(|(index, state)| partition_response(metadata, index, state))
                .collect();
            response
        }
        Entry::Missing(name) => {
            let error_code = if validate_topic_name(name).is_ok() {
                code::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                code::INVALID_TOPIC_EXCEPTION
            };
            topic_response(name, error_code, Uuid::nil())
        }
    }
}

/// Kafka's error response: each named topic, in the request's order, with
/// the error alone.
fn refused(requested: &[&str]) -> Vec<DescribeTopicPartitionsResponseTopic> {
    requested
        .iter()
        .map(|name| {
            let mut response = DescribeTopicPartitionsResponseTopic::default();
            response.error_code = code::INVALID_REQUEST;
            response.name = Some(TopicName(str_bytes(name)));
            response
        })
        .collect()
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DescribeTopicPartitionsRequest,
) -> Option<Pieces> {
    let metadata = broker.metadata();
    let may_describe = |name: &str| session.may_on_topic(broker, Operation::Describe, name);
    // A named topic the sender may not describe is answered
    // TOPIC_AUTHORIZATION_FAILED (on the first page only, which has no
    // cursor); with every topic asked for, it is left out.
    let (requested, denied): (Vec<&str>, Vec<&str>) = request
        .topics
        .iter()
        .map(|topic| topic.name.0.as_str())
        .partition(|name| may_describe(name));
    if requested.is_empty() && !denied.is_empty() {
        let mut response = DescribeTopicPartitionsResponse::default();
        response.topics = denied
            .iter()
            .map(|name| topic_response(name, code::TOPIC_AUTHORIZATION_FAILED, Uuid::nil()))
            .collect();
        return Some(encode(&response, header.request_api_version));
    }
    let cursor = request.cursor.as_ref().map(|cursor| Position {
        topic: cursor.topic_name.0.as_str(),
        partition: cursor.partition_index,
    });
    let mut response = DescribeTopicPartitionsResponse::default();
    match topics_to_describe(&requested, &metadata, cursor) {
        Ok(mut topics) => {
            topics.retain(|name| may_describe(name));
            let partitions_max = response_partitions(request.response_partition_limit);
            let page = page(
                &metadata,
                &topics,
                cursor,
                partitions_max,
                requested.is_empty(),
            );
            response.topics = page
                .entries
                .into_iter()
                .map(|entry| entry_response(&metadata, entry))
                .collect();
            // Kafka answers what the sender may do on each topic described
            // (this request has no flag to leave it out).
            for topic in &mut response.topics {
                if let (code::NONE, Some(name)) = (topic.error_code, &topic.name) {
                    topic.topic_authorized_operations = session.topic_operations(broker, name);
                }
            }
            if cursor.is_none() {
                response.topics.extend(denied.iter().map(|name| {
                    topic_response(name, code::TOPIC_AUTHORIZATION_FAILED, Uuid::nil())
                }));
            }
            response.next_cursor = page.next.map(|next| {
                let mut cursor = Cursor::default();
                cursor.topic_name = TopicName(str_bytes(next.topic));
                cursor.partition_index = next.partition;
                cursor
            });
        }
        Err(refusal) => {
            tracing::debug!(?refusal, "DescribeTopicPartitions refused");
            response.topics = refused(&requested);
        }
    }
    Some(encode(&response, header.request_api_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(topics: &[(&str, usize)]) -> ClusterMetadata {
        let mut metadata = ClusterMetadata::default();
        for (index, &(name, partitions)) in topics.iter().enumerate() {
            let topic = TopicMetadata {
                name: name.to_string(),
                id: [index as u8 + 1; 16],
                partitions: partitions as i32,
                configs: Default::default(),
                placement: (0..partitions).map(|_| PartitionState::led_by(1)).collect(),
            };
            metadata.topics.insert(name.to_string(), topic);
        }
        metadata
    }

    /// (topic, first partition, end) or (topic, missing) per entry, and the
    /// next cursor: a page in a form tests can spell out.
    type Summary = (Vec<(String, Option<Range<usize>>)>, Option<(String, i32)>);

    fn summary(page: &Page<'_>) -> Summary {
        let entries = page
            .entries
            .iter()
            .map(|entry| match entry {
                Entry::Described { topic, partitions } => {
                    (topic.name.clone(), Some(partitions.clone()))
                }
                Entry::Missing(name) => (name.to_string(), None),
            })
            .collect();
        let next = page
            .next
            .map(|next| (next.topic.to_string(), next.partition));
        (entries, next)
    }

    fn describe(
        metadata: &ClusterMetadata,
        requested: &[&str],
        cursor: Option<(&str, i32)>,
        limit: i32,
    ) -> Result<Summary, Refusal> {
        let cursor = cursor.map(|(topic, partition)| Position { topic, partition });
        let topics = topics_to_describe(requested, metadata, cursor)?;
        let partitions_max = response_partitions(limit);
        let page = page(
            metadata,
            &topics,
            cursor,
            partitions_max,
            requested.is_empty(),
        );
        Ok(summary(&page))
    }

    fn described(name: &str, partitions: Range<usize>) -> (String, Option<Range<usize>>) {
        (name.to_string(), Some(partitions))
    }

    #[test]
    fn pages_through_one_topic_in_order_each_partition_once() {
        const PARTITIONS: usize = 10_000;
        const LIMIT: i32 = 1_000;
        let metadata = image(&[("big", PARTITIONS)]);
        let mut cursor = None;
        let mut seen = Vec::new();
        loop {
            let (entries, next) = describe(&metadata, &["big"], cursor, LIMIT).expect("valid");
            assert_eq!(entries.len(), 1);
            let range = entries[0].1.clone().expect("the topic exists");
            assert!(range.len() <= LIMIT as usize);
            seen.extend(range);
            match next {
                Some((topic, partition)) => {
                    assert_eq!(topic, "big");
                    assert_eq!(partition as usize, seen.len());
                    cursor = Some(("big", partition));
                }
                None => break,
            }
        }
        assert_eq!(seen, (0..PARTITIONS).collect::<Vec<_>>());
    }

    #[test]
    fn topics_come_sorted_and_once_and_the_cursor_resumes_inside_one() {
        let metadata = image(&[("a", 3), ("b", 5), ("c", 2)]);
        let all = describe(&metadata, &["c", "a", "b", "a"], None, 100).expect("valid");
        assert_eq!(
            all,
            (
                vec![
                    described("a", 0..3),
                    described("b", 0..5),
                    described("c", 0..2)
                ],
                None
            )
        );
        // Topics before the cursor's are left out; the cursor's starts at
        // its partition; the page stops inside the next topic.
        let page = describe(&metadata, &["a", "b", "c"], Some(("b", 2)), 4).expect("valid");
        assert_eq!(
            page,
            (
                vec![described("b", 2..5), described("c", 0..1)],
                Some(("c".to_string(), 1))
            )
        );
    }

    #[test]
    fn a_page_full_at_a_topic_end_points_at_the_next_topic() {
        let metadata = image(&[("a", 3), ("b", 2)]);
        let page = describe(&metadata, &["a", "b", "zz-missing"], None, 3).expect("valid");
        assert_eq!(
            page,
            (vec![described("a", 0..3)], Some(("b".to_string(), 0)))
        );
        // Even when that next topic does not exist (Kafka's cursor says
        // nothing about existence).
        let page = describe(&metadata, &["a", "b", "zz-missing"], Some(("b", 0)), 2).expect("ok");
        assert_eq!(
            page,
            (
                vec![described("b", 0..2)],
                Some(("zz-missing".to_string(), 0))
            )
        );
        let page = describe(&metadata, &["zz-missing"], Some(("zz-missing", 0)), 2).expect("ok");
        assert_eq!(page, (vec![("zz-missing".to_string(), None)], None));
        // The last topic filling the page exactly leaves no cursor.
        let page = describe(&metadata, &["a", "b"], None, 5).expect("valid");
        assert_eq!(
            page,
            (vec![described("a", 0..3), described("b", 0..2)], None)
        );
    }

    #[test]
    fn every_topic_when_none_is_named_and_missing_ones_only_when_named() {
        let metadata = image(&[("x", 1), ("y", 1)]);
        let page = describe(&metadata, &[], None, 10).expect("valid");
        assert_eq!(
            page,
            (vec![described("x", 0..1), described("y", 0..1)], None)
        );
        let page = describe(&metadata, &["ghost", "y"], None, 10).expect("valid");
        assert_eq!(
            page,
            (
                vec![("ghost".to_string(), None), described("y", 0..1)],
                None
            )
        );
        // A cursor at a topic deleted since: every topic after it.
        let page = describe(&metadata, &[], Some(("x-gone", 0)), 10).expect("valid");
        assert_eq!(page, (vec![described("y", 0..1)], None));
    }

    #[test]
    fn a_cursor_past_the_partitions_gives_the_topic_without_partitions() {
        let metadata = image(&[("a", 3), ("b", 1)]);
        let page = describe(&metadata, &["a", "b"], Some(("a", 7)), 10).expect("valid");
        assert_eq!(
            page,
            (vec![described("a", 3..3), described("b", 0..1)], None)
        );
        let page = describe(&metadata, &["a"], Some(("a", i32::MAX)), 10).expect("valid");
        assert_eq!(page, (vec![described("a", 3..3)], None));
    }

    #[test]
    fn bad_cursors_refuse_the_request() {
        let metadata = image(&[("a", 3), ("b", 1)]);
        assert_eq!(
            describe(&metadata, &["a"], Some(("b", 0)), 10),
            Err(Refusal::CursorTopicNotRequested)
        );
        assert_eq!(
            describe(&metadata, &["a", "b"], Some(("a", -1)), 10),
            Err(Refusal::NegativeCursorPartition)
        );
        assert_eq!(
            describe(&metadata, &[], Some(("a", -1)), 10),
            Err(Refusal::NegativeCursorPartition)
        );
    }

    #[test]
    fn the_limit_is_raised_to_one_and_capped() {
        assert_eq!(response_partitions(i32::MIN), 1);
        assert_eq!(response_partitions(-1), 1);
        assert_eq!(response_partitions(0), 1);
        assert_eq!(response_partitions(7), 7);
        assert_eq!(
            response_partitions(i32::MAX),
            RESPONSE_PARTITIONS_MAX as usize
        );
        let metadata = image(&[("a", 3)]);
        let page = describe(&metadata, &["a"], None, 0).expect("valid");
        assert_eq!(
            page,
            (vec![described("a", 0..1)], Some(("a".to_string(), 1)))
        );
    }

    #[test]
    fn names_sort_as_java_strings_do() {
        // U+1F980 is the surrogate pair D83E DD80 in UTF-16, and 0xD83E is
        // below U+FF21: Java puts it first, code point order last.
        assert_eq!(java_order("\u{1F980}", "\u{FF21}"), Ordering::Less);
        assert_eq!("\u{1F980}".cmp("\u{FF21}"), Ordering::Greater);
    }

    #[test]
    fn topic_operations_are_kafkas() {
        // READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS and
        // ALTER_CONFIGS: the bitfield Kafka without an authorizer answers.
        let bits = crate::handlers::TOPIC_OPERATIONS
            .iter()
            .fold(0, |bits, operation| bits | 1 << operation.code());
        assert_eq!(bits, 0b1101_1111_1000);
    }
}
