//! The client's side of the wire format: the API versions it speaks, a
//! scatter-gather Produce request encoder, and bounds-checked decoders for
//! every response it reads, and an encoder for WriteTxnMarkers, whose v2
//! kafka-protocol does not know.
//!
//! Responses are decoded here with [`crate::codec::Reader`] rather than with
//! `kafka-protocol`'s decoders, which size arrays from the wire before
//! checking them (see the broker's codec module): a broker, too, is a peer
//! that can send garbage, and a benchmark client must survive a broken one.
//! Each decoder reads exactly the fields of its version and insists that
//! nothing is left over. Record sets stay zero-copy slices of the frame.
//! Requests other than Produce and WriteTxnMarkers are encoded with
//! `kafka-protocol`'s encoders, which only write.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

use super::error::ClientError;
use crate::codec::write_txn_markers::{
    WriteTxnMarkers, TRANSACTION_VERSION_MIN, WRITE_TXN_MARKERS_VERSIONS,
};
use crate::codec::{DecodeError, Reader};

/// The versions of each API this client builds requests for and decodes
/// responses of, `(api, min, max)`. Lower bounds are where the fields the
/// client relies on appear; upper bounds are the newest versions whose
/// layouts the decoders below implement and the tests exercise.
pub const CLIENT_API_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 0),
    // v1 brings the controller id and rack; v12 is the last with topic names
    // as the only key the client needs.
    (ApiKey::Metadata, 1, 12),
    // v3 is the first with v2 record batches (and the oldest Kafka 4 keeps).
    (ApiKey::Produce, 3, 9),
    // v4 is the oldest Kafka 4 keeps; v13 switches to topic ids.
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    // v3 carries the replica id a follower sends; v4 is flexible.
    (ApiKey::OffsetForLeaderEpoch, 3, 4),
    // Between brokers: a coordinator's markers to partitions led elsewhere
    // (Kafka 4 dropped v0; v2 tells each marker's transaction version), and
    // a leader's transaction check (the batched versions).
    (ApiKey::WriteTxnMarkers, 1, 2),
    (ApiKey::AddPartitionsToTxn, 4, 5),
    // A broker's login to another on a SASL listener (sasl.rs): v1 of
    // both, the first with SaslAuthenticate framing.
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 1, 1),
];

/// First flexible (compact, tagged) version of each API.
const PRODUCE_FLEXIBLE: i16 = 9;
const FETCH_FLEXIBLE: i16 = 12;
const METADATA_FLEXIBLE: i16 = 9;
const LIST_OFFSETS_FLEXIBLE: i16 = 6;
const INIT_PRODUCER_ID_FLEXIBLE: i16 = 2;
const CREATE_TOPICS_FLEXIBLE: i16 = 5;
const DELETE_TOPICS_FLEXIBLE: i16 = 4;
const OFFSET_FOR_LEADER_EPOCH_FLEXIBLE: i16 = 4;
const WRITE_TXN_MARKERS_FLEXIBLE: i16 = 1;

/// One entry of an ApiVersions response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiVersionRange {
    pub api_key: i16,
    pub min_version: i16,
    pub max_version: i16,
}

fn decode_error(api: ApiKey, version: i16) -> impl Fn(DecodeError) -> ClientError {
    move |error| ClientError::Decode {
        api,
        version,
        error,
    }
}

/// Decodes an ApiVersions v0 response.
pub fn decode_api_versions(body: Bytes) -> Result<Vec<ApiVersionRange>, ClientError> {
    let api = ApiKey::ApiVersions;
    let mut r = Reader::new(body);
    let parse = |r: &mut Reader| -> Result<(i16, Vec<ApiVersionRange>), DecodeError> {
        let error_code = r.i16()?;
        let ranges = r.array(|r| {
            Ok(ApiVersionRange {
                api_key: r.i16()?,
                min_version: r.i16()?,
                max_version: r.i16()?,
            })
        })?;
        Ok((error_code, ranges))
    };
    let (error_code, ranges) = parse(&mut r).map_err(decode_error(api, 0))?;
    r.finish().map_err(decode_error(api, 0))?;
    if error_code != 0 {
        return Err(ClientError::kafka(error_code, "ApiVersions"));
    }
    Ok(ranges)
}

/// A broker as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

/// A partition as Metadata describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub error_code: i16,
    pub index: i32,
    pub leader: i32,
    pub leader_epoch: i32,
}

/// A topic as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub error_code: i16,
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
}

/// A decoded Metadata response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataInfo {
    pub brokers: Vec<BrokerInfo>,
    pub controller_id: i32,
    pub topics: Vec<TopicInfo>,
}

/// Decodes a Metadata response, v1 to v12.
pub fn decode_metadata(version: i16, body: Bytes) -> Result<MetadataInfo, ClientError> {
    let flexible = version >= METADATA_FLEXIBLE;
    let mut r = Reader::new(body);
    let mut parse = || -> Result<MetadataInfo, DecodeError> {
        let mut unknown = Default::default();
        if version >= 3 {
            r.i32()?; // throttle_time_ms
        }
        let brokers = r.array_v(flexible, |r| {
            let node_id = r.i32()?;
            let host: StrBytes = r.string_v(flexible)?;
            let port = r.i32()?;
            r.nullable_string_v::<StrBytes>(flexible)?; // rack
            r.tagged_fields_v(flexible, &mut Default::default())?;
            Ok(BrokerInfo {
                node_id,
                host: host.to_string(),
                port,
            })
        })?;
        if version >= 2 {
            r.nullable_string_v::<StrBytes>(flexible)?; // cluster_id
        }
        let controller_id = r.i32()?;
        let topics = r.array_v(flexible, |r| {
            let error_code = r.i16()?;
            let name: Option<StrBytes> = if version >= 12 {
                r.nullable_string_v(flexible)?
            } else {
                Some(r.string_v(flexible)?)
            };
            if version >= 10 {
                r.uuid()?; // topic_id
            }
            r.bool()?; // is_internal
            let partitions = r.array_v(flexible, |r| {
                let error_code = r.i16()?;
                let index = r.i32()?;
                let leader = r.i32()?;
                let leader_epoch = if version >= 7 { r.i32()? } else { -1 };
                // Replica lists are read and dropped: `()` elements take no
                // memory, so even a lying count allocates nothing.
                r.array_v(flexible, |r| r.i32().map(drop))?;
                r.array_v(flexible, |r| r.i32().map(drop))?;
                if version >= 5 {
                    r.array_v(flexible, |r| r.i32().map(drop))?;
                }
                r.tagged_fields_v(flexible, &mut Default::default())?;
                Ok(PartitionInfo {
                    error_code,
                    index,
                    leader,
                    leader_epoch,
                })
            })?;
            if version >= 8 {
                r.i32()?; // topic_authorized_operations
            }
            r.tagged_fields_v(flexible, &mut Default::default())?;
            Ok(TopicInfo {
                error_code,
                name: name.map(|name| name.to_string()).unwrap_or_default(),
                partitions,
            })
        })?;
        if (8..=10).contains(&version) {
            r.i32()?; // cluster_authorized_operations
        }
        r.tagged_fields_v(flexible, &mut unknown)?;
        Ok(MetadataInfo {
            brokers,
            controller_id,
            topics,
        })
    };
    let info = parse().map_err(decode_error(ApiKey::Metadata, version))?;
    r.finish()
        .map_err(decode_error(ApiKey::Metadata, version))?;
    Ok(info)
}

/// One partition's answer in a Produce response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducePartitionResult {
    pub index: i32,
    pub error_code: i16,
    pub base_offset: i64,
    pub error_message: Option<StrBytes>,
}

/// One topic's answers in a Produce response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProduceTopicResult {
    pub name: StrBytes,
    pub partitions: Vec<ProducePartitionResult>,
}

/// Decodes a Produce response, v3 to v9.
pub fn decode_produce(version: i16, body: Bytes) -> Result<Vec<ProduceTopicResult>, ClientError> {
    let flexible = version >= PRODUCE_FLEXIBLE;
    let mut r = Reader::new(body);
    let mut parse = || -> Result<Vec<ProduceTopicResult>, DecodeError> {
        let topics = r.array_v(flexible, |r| {
            let name = r.string_v(flexible)?;
            let partitions = r.array_v(flexible, |r| {
                let index = r.i32()?;
                let error_code = r.i16()?;
                let base_offset = r.i64()?;
                r.i64()?; // log_append_time_ms
                if version >= 5 {
                    r.i64()?; // log_start_offset
                }
                let mut error_message = None;
                if version >= 8 {
                    r.array_v(flexible, |r| {
                        r.i32()?; // batch_index
                        r.nullable_string_v::<StrBytes>(flexible)?;
                        r.tagged_fields_v(flexible, &mut Default::default())
                    })?;
                    error_message = r.nullable_string_v(flexible)?;
                }
                r.tagged_fields_v(flexible, &mut Default::default())?;
                Ok(ProducePartitionResult {
                    index,
                    error_code,
                    base_offset,
                    error_message,
                })
            })?;
            r.tagged_fields_v(flexible, &mut Default::default())?;
            Ok(ProduceTopicResult { name, partitions })
        })?;
        r.i32()?; // throttle_time_ms
        r.tagged_fields_v(flexible, &mut Default::default())?;
        Ok(topics)
    };
    let topics = parse().map_err(decode_error(ApiKey::Produce, version))?;
    r.finish().map_err(decode_error(ApiKey::Produce, version))?;
    Ok(topics)
}

/// One partition's data in a Fetch response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPartitionData {
    pub index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    /// -1 below v5, which does not carry it.
    pub log_start_offset: i64,
    /// Record batches, a slice of the response frame (the last one may be
    /// cut short, as Kafka allows).
    pub records: Bytes,
}

/// One topic's data in a Fetch response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchTopicData {
    pub name: StrBytes,
    pub partitions: Vec<FetchPartitionData>,
}

/// A decoded Fetch response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchData {
    pub error_code: i16,
    /// The fetch session the broker answered in (KIP-227); 0 for none.
    pub session_id: i32,
    pub topics: Vec<FetchTopicData>,
}

/// Decodes a Fetch response, v4 to v12.
pub fn decode_fetch(version: i16, body: Bytes) -> Result<FetchData, ClientError> {
    let flexible = version >= FETCH_FLEXIBLE;
    let mut r = Reader::new(body);
    let mut parse = || -> Result<FetchData, DecodeError> {
        r.i32()?; // throttle_time_ms
        let mut error_code = 0;
        let mut session_id = 0;
        if version >= 7 {
            error_code = r.i16()?;
            session_id = r.i32()?;
        }
        let topics = r.array_v(flexible, |r| {
            let name = r.string_v(flexible)?;
            let partitions = r.array_v(flexible, |r| {
                let index = r.i32()?;
                let error_code = r.i16()?;
                let high_watermark = r.i64()?;
                r.i64()?; // last_stable_offset
                let log_start_offset = if version >= 5 { r.i64()? } else { -1 };
                r.nullable_array_v(flexible, |r| {
                    r.i64()?; // producer_id
                    r.i64()?; // first_offset
                    r.tagged_fields_v(flexible, &mut Default::default())
                })?;
                if version >= 11 {
                    r.i32()?; // preferred_read_replica
                }
                let records = r.nullable_bytes_v(flexible)?.unwrap_or_default();
                r.tagged_fields_v(flexible, &mut Default::default())?;
                Ok(FetchPartitionData {
                    index,
                    error_code,
                    high_watermark,
                    log_start_offset,
                    records,
                })
            })?;
            r.tagged_fields_v(flexible, &mut Default::default())?;
            Ok(FetchTopicData { name, partitions })
        })?;
        r.tagged_fields_v(flexible, &mut Default::default())?;
        Ok(FetchData {
            error_code,
            session_id,
            topics,
        })
    };
    let data = parse().map_err(decode_error(ApiKey::Fetch, version))?;
    r.finish().map_err(decode_error(ApiKey::Fetch, version))?;
    Ok(data)
}

/// One partition's answer to OffsetForLeaderEpoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub topic: StrBytes,
    pub partition: i32,
    pub error_code: i16,
    pub leader_epoch: i32,
    pub end_offset: i64,
}

/// Decodes an OffsetForLeaderEpoch response, v3 to v4.
pub fn decode_offset_for_leader_epoch(
    version: i16,
    body: Bytes,
) -> Result<Vec<EpochEndOffset>, ClientError> {
    let flexible = version >= OFFSET_FOR_LEADER_EPOCH_FLEXIBLE;
    let mut r = Reader::new(body);
    let mut parse = || -> Result<Vec<EpochEndOffset>, DecodeError> {
        r.i32()?; // throttle_time_ms
        let topics = r.array_v(flexible, |r| {
            let topic: StrBytes = r.string_v(flexible)?;
            let partitions = r.array_v(flexible, |r| {
                let answer = EpochEndOffset {
                    topic: topic.clone(),
                    error_code: r.i16()?,
                    partition: r.i32()?,
                    leader_epoch: r.i32()?,
                    end_offset: r.i64()?,
                };
                r.tagged_fields_v(flexible, &mut Default::default())?;
                Ok(answer)
            })?;
            r.tagged_fields_v(flexible, &mut Default::default())?;
            Ok(partitions)
        })?;
        r.tagged_fields_v(flexible, &mut Default::default())?;
        Ok(topics.into_iter().flatten().collect())
    };
    let answers = parse().map_err(decode_error(ApiKey::OffsetForLeaderEpoch, version))?;
    r.finish()
        .map_err(decode_error(ApiKey::OffsetForLeaderEpoch, version))?;
    Ok(answers)
}

/// Decodes an InitProducerId response, v0 to v4: `(producer id, epoch)`.
pub fn decode_init_producer_id(version: i16, body: Bytes) -> Result<(i64, i16), ClientError> {
    let flexible = version >= INIT_PRODUCER_ID_FLEXIBLE;
    let mut r = Reader::new(body);
    let mut parse = || -> Result<(i16, i64, i16), DecodeError> {
        r.i32()?; // throttle_time_ms
        let error_code = r.i16()?;
        let producer_id = r.i64()?;
        let epoch = r.i16()?;
        r.tagged_fields_v(flexible, &mut Default::default())?;
        Ok((error_code, producer_id, epoch))
    };
    let (error_code, producer_id, epoch) =
        parse().map_err(decode_error(ApiKey::InitProducerId, version))?;
    r.finish()
        .map_err(decode_error(ApiKey::InitProducerId, version))?;
    if error_code != 0 {
        return Err(ClientError::kafka(error_code, "InitProducerId"));
    }
    Ok((producer_id, epoch))
}

/// One partition's answer in a ListOffsets response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedOffset {
    pub index: i32,
    pub error_code: i16,
    pub offset: i64,
}

/// Decodes a ListOffsets response, v1 to v7: `(topic, partitions)` pairs.
pub fn decode_list_offsets(
    version: i16,
    body: Bytes,
) -> Result<Vec<(StrBytes, Vec<ListedOffset>)>, ClientError> {
    let flexible = version >= LIST_OFFSETS_FLEXIBLE;
    let mut r = Reader::new(body);
    let mut parse = || -> Result<Vec<(StrBytes, Vec<ListedOffset>)>, DecodeError> {
        if version >= 2 {
            r.i32()?; // throttle_time_ms
        }
        let topics = r.array_v(flexible, |r| {
            let name = r.string_v(flexible)?;
            let partitions = r.array_v(flexible, |r| {
                let index = r.i32()?;
                let error_code = r.i16()?;
                r.i64()?; // timestamp
                let offset = r.i64()?;
                if version >= 4 {
                    r.i32()?; // leader_epoch
                }
                r.tagged_fields_v(flexible, &mut Default::default())?;
                Ok(ListedOffset {
                    index,
                    error_code,
                    offset,
                })
            })?;
            r.tagged_fields_v(flexible, &mut Default::default())?;
            Ok((name, partitions))
        })?;
        r.tagged_fields_v(flexible, &mut Default::default())?;
        Ok(topics)
    };
    let topics = parse().map_err(decode_error(ApiKey::ListOffsets, version))?;
    r.finish()
        .map_err(decode_error(ApiKey::ListOffsets, version))?;
    Ok(topics)
}

/// One topic's answer in a CreateTopics or DeleteTopics response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicResult {
    pub name: String,
    pub error_code: i16,
    pub error_message: Option<String>,
}

/// Decodes a CreateTopics response, v2 to v7.
pub fn decode_create_topics(version: i16, body: Bytes) -> Result<Vec<TopicResult>, ClientError> {
    let flexible = version >= CREATE_TOPICS_FLEXIBLE;
    let mut r = Reader::new(body);
    let mut parse = || -> Result<Vec<TopicResult>, DecodeError> {
        r.i32()?; // throttle_time_ms
        let topics = r.array_v(flexible, |r| {
            let name: StrBytes = r.string_v(flexible)?;
            if version >= 7 {
                r.uuid()?; // topic_id
            }
            let error_code = r.i16()?;
            let error_message: Option<StrBytes> = r.nullable_string_v(flexible)?;
            if version >= 5 {
                r.i32()?; // num_partitions
                r.i16()?; // replication_factor
                r.nullable_array_v(flexible, |r| {
                    r.string_v::<StrBytes>(flexible)?; // name
                    r.nullable_string_v::<StrBytes>(flexible)?; // value
                    r.bool()?; // read_only
                    r.i8()?; // config_source
                    r.bool()?; // is_sensitive
                    r.tagged_fields_v(flexible, &mut Default::default())
                })?;
            }
            r.tagged_fields_v(flexible, &mut Default::default())?;
            Ok(TopicResult {
                name: name.to_string(),
                error_code,
                error_message: error_message.map(|message| message.to_string()),
            })
        })?;
        r.tagged_fields_v(flexible, &mut Default::default())?;
        Ok(topics)
    };
    let topics = parse().map_err(decode_error(ApiKey::CreateTopics, version))?;
    r.finish()
        .map_err(decode_error(ApiKey::CreateTopics, version))?;
    Ok(topics)
}

/// Decodes a DeleteTopics response, v1 to v6.
pub fn decode_delete_topics(version: i16, body: Bytes) -> Result<Vec<TopicResult>, ClientError> {
    let flexible = version >= DELETE_TOPICS_FLEXIBLE;
    let mut r = Reader::new(body);
    let mut parse = || -> Result<Vec<TopicResult>, DecodeError> {
        r.i32()?; // throttle_time_ms
        let topics = r.array_v(flexible, |r| {
            let name: Option<StrBytes> = if version >= 6 {
                r.nullable_string_v(flexible)?
            } else {
                Some(r.string_v(flexible)?)
            };
            if version >= 6 {
                r.uuid()?; // topic_id
            }
            let error_code = r.i16()?;
            let mut error_message: Option<StrBytes> = None;
            if version >= 5 {
                error_message = r.nullable_string_v(flexible)?;
            }
            r.tagged_fields_v(flexible, &mut Default::default())?;
            Ok(TopicResult {
                name: name.map(|name| name.to_string()).unwrap_or_default(),
                error_code,
                error_message: error_message.map(|message| message.to_string()),
            })
        })?;
        r.tagged_fields_v(flexible, &mut Default::default())?;
        Ok(topics)
    };
    let topics = parse().map_err(decode_error(ApiKey::DeleteTopics, version))?;
    r.finish()
        .map_err(decode_error(ApiKey::DeleteTopics, version))?;
    Ok(topics)
}

/// Writes `value` as an unsigned varint: seven bits a byte, the lowest
/// first, the high bit set on every byte but the last.
fn put_unsigned_varint(out: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        out.put_u8((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Encodes a WriteTxnMarkers request at `version` (1 or 2, both flexible;
/// v2 adds each marker's TransactionVersion after its coordinator epoch,
/// KIP-1228). v1's bytes are kafka-protocol's; the unit tests compare.
pub fn encode_write_txn_markers(
    version: i16,
    request: &WriteTxnMarkers,
) -> Result<Bytes, ClientError> {
    let api = ApiKey::WriteTxnMarkers;
    let failed = |message: String| ClientError::Encode {
        api,
        version,
        message,
    };
    let (min, max) = WRITE_TXN_MARKERS_VERSIONS;
    if !(min..=max).contains(&version) {
        return Err(failed("no such version".to_string()));
    }
    // A compact array's or string's length, stored plus one.
    let compact_length = |out: &mut BytesMut, len: usize, what: &str| {
        let stored = u32::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(1))
            .ok_or_else(|| failed(format!("{len} {what} do not fit a compact length")))?;
        put_unsigned_varint(out, stored);
        Ok(())
    };
    let tagged_fields = |out: &mut BytesMut, fields: &BTreeMap<i32, Bytes>| {
        let count = u32::try_from(fields.len())
            .map_err(|_| failed(format!("{} tagged fields", fields.len())))?;
        put_unsigned_varint(out, count);
        for (tag, value) in fields {
            let tag = u32::try_from(*tag).map_err(|_| failed(format!("tag {tag}")))?;
            let len = u32::try_from(value.len())
                .map_err(|_| failed(format!("a tagged field of {} bytes", value.len())))?;
            put_unsigned_varint(out, tag);
            put_unsigned_varint(out, len);
            out.put_slice(value);
        }
        Ok(())
    };
    let mut out = BytesMut::new();
    compact_length(&mut out, request.request.markers.len(), "markers")?;
    for (marker, transaction_version) in request.markers() {
        out.put_i64(marker.producer_id.0);
        out.put_i16(marker.producer_epoch);
        out.put_u8(u8::from(marker.transaction_result));
        compact_length(&mut out, marker.topics.len(), "topics")?;
        for topic in &marker.topics {
            compact_length(&mut out, topic.name.len(), "name bytes")?;
            out.put_slice(topic.name.as_bytes());
            compact_length(&mut out, topic.partition_indexes.len(), "partitions")?;
            for partition in &topic.partition_indexes {
                out.put_i32(*partition);
            }
            tagged_fields(&mut out, &topic.unknown_tagged_fields)?;
        }
        out.put_i32(marker.coordinator_epoch);
        if version >= TRANSACTION_VERSION_MIN {
            out.put_i8(transaction_version);
        }
        tagged_fields(&mut out, &marker.unknown_tagged_fields)?;
    }
    tagged_fields(&mut out, &request.request.unknown_tagged_fields)?;
    Ok(out.freeze())
}

/// Decodes a WriteTxnMarkers response, v1 or v2 (the same layout, flexible):
/// every partition's error code, in the order of the response, which lists
/// the request's markers, topics and partitions in order.
pub fn decode_write_txn_markers(version: i16, body: Bytes) -> Result<Vec<i16>, ClientError> {
    let flexible = version >= WRITE_TXN_MARKERS_FLEXIBLE;
    let mut r = Reader::new(body);
    let mut parse = || -> Result<Vec<i16>, DecodeError> {
        let markers = r.array_v(flexible, |r| {
            r.i64()?; // producer_id
            let topics = r.array_v(flexible, |r| {
                let _name: StrBytes = r.string_v(flexible)?;
                let partitions = r.array_v(flexible, |r| {
                    r.i32()?; // partition_index
                    let error_code = r.i16()?;
                    r.tagged_fields_v(flexible, &mut Default::default())?;
                    Ok(error_code)
                })?;
                r.tagged_fields_v(flexible, &mut Default::default())?;
                Ok(partitions)
            })?;
            r.tagged_fields_v(flexible, &mut Default::default())?;
            Ok(topics.into_iter().flatten().collect::<Vec<i16>>())
        })?;
        r.tagged_fields_v(flexible, &mut Default::default())?;
        Ok(markers.into_iter().flatten().collect())
    };
    let codes = parse().map_err(decode_error(ApiKey::WriteTxnMarkers, version))?;
    r.finish()
        .map_err(decode_error(ApiKey::WriteTxnMarkers, version))?;
    Ok(codes)
}

/// Decodes an AddPartitionsToTxn response of the batched versions, the
/// only ones [`CLIENT_API_VERSIONS`] allows (v4+, sent between brokers, all
/// flexible): the request-level error alone if there is one, else every
/// partition's error code in order.
pub fn decode_add_partitions_to_txn(version: i16, body: Bytes) -> Result<Vec<i16>, ClientError> {
    let mut r = Reader::new(body);
    let mut parse = || -> Result<Vec<i16>, DecodeError> {
        r.i32()?; // throttle_time_ms
        let error_code = r.i16()?;
        let transactions = r.array_v(true, |r| {
            let _id: StrBytes = r.string_v(true)?;
            let topics = r.array_v(true, |r| {
                let _name: StrBytes = r.string_v(true)?;
                let partitions = r.array_v(true, |r| {
                    r.i32()?; // partition_index
                    let partition_error = r.i16()?;
                    r.tagged_fields_v(true, &mut Default::default())?;
                    Ok(partition_error)
                })?;
                r.tagged_fields_v(true, &mut Default::default())?;
                Ok(partitions)
            })?;
            r.tagged_fields_v(true, &mut Default::default())?;
            Ok(topics.into_iter().flatten().collect::<Vec<i16>>())
        })?;
        r.tagged_fields_v(true, &mut Default::default())?;
        if error_code != 0 {
            return Ok(vec![error_code]);
        }
        Ok(transactions.into_iter().flatten().collect())
    };
    let codes = parse().map_err(decode_error(ApiKey::AddPartitionsToTxn, version))?;
    r.finish()
        .map_err(decode_error(ApiKey::AddPartitionsToTxn, version))?;
    Ok(codes)
}

/// One partition's batch in a Produce request.
pub struct ProducePartition<'a> {
    pub index: i32,
    pub batch: &'a Bytes,
}

/// One topic's batches in a Produce request.
pub struct ProduceTopic<'a> {
    pub name: &'a str,
    pub partitions: Vec<ProducePartition<'a>>,
}

/// Builds a body as small encoded pieces interleaved with record batches
/// that are passed through as they are (never copied into the request).
struct PieceWriter {
    head: BytesMut,
    pieces: Vec<Bytes>,
}

impl PieceWriter {
    fn flush(&mut self) {
        if !self.head.is_empty() {
            self.pieces.push(self.head.split().freeze());
        }
    }

    fn unsigned_varint(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.head.put_u8((value as u8) | 0x80);
            value >>= 7;
        }
        self.head.put_u8(value as u8);
    }

    /// An array or byte-field length: INT32, or UNSIGNED_VARINT + 1 when compact.
    fn length(&mut self, flexible: bool, len: usize) -> Result<(), String> {
        let len = u32::try_from(len).ok().filter(|len| *len < i32::MAX as u32);
        let Some(len) = len else {
            return Err("a length does not fit the protocol".to_string());
        };
        if flexible {
            self.unsigned_varint(len + 1);
        } else {
            self.head.put_i32(len as i32);
        }
        Ok(())
    }

    fn string(&mut self, flexible: bool, text: &str) -> Result<(), String> {
        if text.len() > i16::MAX as usize {
            return Err(format!("string of {} bytes is too long", text.len()));
        }
        if flexible {
            self.unsigned_varint(text.len() as u32 + 1);
        } else {
            self.head.put_i16(text.len() as i16);
        }
        self.head.put_slice(text.as_bytes());
        Ok(())
    }

    fn no_tagged_fields(&mut self, flexible: bool) {
        if flexible {
            self.head.put_u8(0);
        }
    }
}

/// Encodes a Produce request body (v3 to v9, no transactional id) as pieces:
/// the batches are the callers' buffers, so a request of many megabytes is
/// written with one gathering send without being copied.
pub fn encode_produce(
    version: i16,
    acks: i16,
    timeout_ms: i32,
    topics: &[ProduceTopic<'_>],
) -> Result<Vec<Bytes>, ClientError> {
    let flexible = version >= PRODUCE_FLEXIBLE;
    let encode_error = |message: String| ClientError::Encode {
        api: ApiKey::Produce,
        version,
        message,
    };
    let pieces = 2 * topics
        .iter()
        .map(|topic| topic.partitions.len())
        .sum::<usize>()
        + 2;
    let mut w = PieceWriter {
        head: BytesMut::with_capacity(256),
        pieces: Vec::with_capacity(pieces),
    };
    // transactional_id: null.
    if flexible {
        w.unsigned_varint(0);
    } else {
        w.head.put_i16(-1);
    }
    w.head.put_i16(acks);
    w.head.put_i32(timeout_ms);
    w.length(flexible, topics.len()).map_err(encode_error)?;
    for topic in topics {
        w.string(flexible, topic.name).map_err(encode_error)?;
        w.length(flexible, topic.partitions.len())
            .map_err(encode_error)?;
        for partition in &topic.partitions {
            w.head.put_i32(partition.index);
            w.length(flexible, partition.batch.len())
                .map_err(encode_error)?;
            w.flush();
            w.pieces.push(partition.batch.clone());
            w.no_tagged_fields(flexible);
        }
        w.no_tagged_fields(flexible);
    }
    w.no_tagged_fields(flexible);
    w.flush();
    Ok(w.pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{
        BrokerId, FetchResponse, MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
    };
    use kafka_protocol::protocol::{Decodable, Encodable};

    fn encoded<E: Encodable>(value: &E, version: i16) -> Bytes {
        let mut buffer = BytesMut::new();
        value
            .encode(&mut buffer, version)
            .expect("test value encodes");
        buffer.freeze()
    }

    fn name(text: &str) -> TopicName {
        TopicName(StrBytes::from_string(text.to_string()))
    }

    #[test]
    fn metadata_round_trips_every_version() {
        for version in 1..=12 {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = 3;
            partition.leader_id = BrokerId(7);
            partition.leader_epoch = if version >= 7 { 2 } else { -1 };
            partition.replica_nodes = vec![BrokerId(7), BrokerId(8)];
            partition.isr_nodes = vec![BrokerId(7)];
            let mut topic = MetadataResponseTopic::default();
            topic.name = Some(name("events"));
            topic.partitions = vec![partition];
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(7);
            broker.host = StrBytes::from_static_str("localhost");
            broker.port = 9092;
            let mut response = MetadataResponse::default();
            response.brokers = vec![broker];
            response.controller_id = BrokerId(7);
            response.topics = vec![topic];
            let info = decode_metadata(version, encoded(&response, version)).expect("decodes");
            assert_eq!(
                info.brokers,
                vec![BrokerInfo {
                    node_id: 7,
                    host: "localhost".into(),
                    port: 9092
                }]
            );
            assert_eq!(info.controller_id, 7);
            assert_eq!(info.topics.len(), 1);
            assert_eq!(info.topics[0].name, "events");
            let expected_epoch = if version >= 7 { 2 } else { -1 };
            assert_eq!(
                info.topics[0].partitions,
                vec![PartitionInfo {
                    error_code: 0,
                    index: 3,
                    leader: 7,
                    leader_epoch: expected_epoch
                }]
            );
        }
    }

    #[test]
    fn produce_response_round_trips_every_version() {
        for version in 3..=9 {
            let mut partition = PartitionProduceResponse::default();
            partition.index = 4;
            partition.error_code = 6;
            partition.base_offset = 1234;
            let mut topic = TopicProduceResponse::default();
            topic.name = name("events");
            topic.partition_responses = vec![partition];
            let mut response = ProduceResponse::default();
            response.responses = vec![topic];
            let topics = decode_produce(version, encoded(&response, version)).expect("decodes");
            assert_eq!(topics.len(), 1);
            assert_eq!(&*topics[0].name, "events");
            assert_eq!(topics[0].partitions[0].index, 4);
            assert_eq!(topics[0].partitions[0].error_code, 6);
            assert_eq!(topics[0].partitions[0].base_offset, 1234);
        }
    }

    #[test]
    fn fetch_response_round_trips_every_version() {
        for version in 4..=12 {
            let mut partition = PartitionData::default();
            partition.partition_index = 2;
            partition.high_watermark = 99;
            partition.records = Some(Bytes::from_static(b"batch bytes"));
            let mut topic = FetchableTopicResponse::default();
            topic.topic = name("events");
            topic.partitions = vec![partition];
            let mut response = FetchResponse::default();
            response.responses = vec![topic];
            let data = decode_fetch(version, encoded(&response, version)).expect("decodes");
            assert_eq!(&*data.topics[0].name, "events");
            let partition = &data.topics[0].partitions[0];
            assert_eq!((partition.index, partition.high_watermark), (2, 99));
            assert_eq!(&partition.records[..], b"batch bytes");
        }
    }

    #[test]
    fn write_txn_markers_response_codes_come_back_in_order() {
        use kafka_protocol::messages::write_txn_markers_response::{
            WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
        };
        use kafka_protocol::messages::WriteTxnMarkersResponse;
        let partition = |index: i32, error_code: i16| {
            let mut result = WritableTxnMarkerPartitionResult::default();
            result.partition_index = index;
            result.error_code = error_code;
            result
        };
        let marker = |producer_id: i64, codes: &[(i32, i16)]| {
            let mut topic = WritableTxnMarkerTopicResult::default();
            topic.name = name("events");
            topic.partitions = codes.iter().map(|(i, c)| partition(*i, *c)).collect();
            let mut result = WritableTxnMarkerResult::default();
            result.producer_id = producer_id.into();
            result.topics = vec![topic];
            result
        };
        let mut response = WriteTxnMarkersResponse::default();
        response.markers = vec![marker(7, &[(0, 0), (1, 6)]), marker(8, &[(2, 3)])];
        // v2's response is v1's, which is as far as kafka-protocol goes.
        for version in 1..=2 {
            let codes = decode_write_txn_markers(version, encoded(&response, 1)).expect("decodes");
            assert_eq!(codes, vec![0, 6, 3]);
        }
    }

    /// A WriteTxnMarkers request with two markers, topics and tagged fields.
    fn write_txn_markers_request() -> WriteTxnMarkers {
        use kafka_protocol::messages::write_txn_markers_request::{
            WritableTxnMarker, WritableTxnMarkerTopic,
        };
        use kafka_protocol::messages::WriteTxnMarkersRequest;
        let topic = |text: &str, partitions: Vec<i32>| {
            let mut topic = WritableTxnMarkerTopic::default();
            topic.name = name(text);
            topic.partition_indexes = partitions;
            topic
        };
        let mut first = WritableTxnMarker::default();
        first.producer_id = 7.into();
        first.producer_epoch = 3;
        first.transaction_result = true;
        first.topics = vec![topic("events", vec![0, 2]), topic("other", vec![])];
        first.coordinator_epoch = 4;
        let mut tagged = topic("tagged", vec![1]);
        tagged
            .unknown_tagged_fields
            .insert(3, Bytes::from_static(b"x"));
        let mut second = WritableTxnMarker::default();
        second.producer_id = (-1).into();
        second.producer_epoch = i16::MAX;
        second.topics = vec![tagged];
        second.coordinator_epoch = -1;
        second
            .unknown_tagged_fields
            .insert(200, Bytes::from(vec![5; 300]));
        let mut request = WriteTxnMarkersRequest::default();
        request.markers = vec![first, second];
        request
            .unknown_tagged_fields
            .insert(0, Bytes::from_static(b"top"));
        WriteTxnMarkers {
            request,
            transaction_versions: vec![2, 0],
        }
    }

    #[test]
    fn write_txn_markers_v1_is_kafka_protocols_encoding() {
        let request = write_txn_markers_request();
        let ours = encode_write_txn_markers(1, &request).expect("encodes");
        assert_eq!(ours, encoded(&request.request, 1));
    }

    /// v2's bytes are v1's with one TransactionVersion byte after each
    /// marker's coordinator epoch, and the broker's decoder reads back the
    /// request and its versions.
    #[test]
    fn write_txn_markers_v2_round_trips_through_the_decoder() {
        let request = write_txn_markers_request();
        let v1 = encode_write_txn_markers(1, &request).expect("v1");
        let v2 = encode_write_txn_markers(2, &request).expect("v2");
        assert_eq!(v2.len(), v1.len() + request.request.markers.len());
        let mut reader = Reader::new(v2);
        let decoded = crate::codec::write_txn_markers::decode(&mut reader, 2).expect("decodes");
        reader.finish().expect("nothing left over");
        assert_eq!(decoded, request);
        for version in [0, 3] {
            assert!(
                encode_write_txn_markers(version, &request).is_err(),
                "v{version}"
            );
        }
    }

    #[test]
    fn add_partitions_to_txn_batched_response_every_version() {
        use kafka_protocol::messages::add_partitions_to_txn_response::{
            AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult,
            AddPartitionsToTxnTopicResult,
        };
        use kafka_protocol::messages::AddPartitionsToTxnResponse;
        for version in 4..=5 {
            let mut partition = AddPartitionsToTxnPartitionResult::default();
            partition.partition_index = 3;
            partition.partition_error_code = 48; // INVALID_TXN_STATE
            let mut topic = AddPartitionsToTxnTopicResult::default();
            topic.name = name("events");
            topic.results_by_partition = vec![partition];
            let mut transaction = AddPartitionsToTxnResult::default();
            transaction.topic_results = vec![topic];
            let mut response = AddPartitionsToTxnResponse::default();
            response.results_by_transaction = vec![transaction];
            let codes = decode_add_partitions_to_txn(version, encoded(&response, version))
                .expect("decodes");
            assert_eq!(codes, vec![48]);
            response.error_code = 15; // COORDINATOR_NOT_AVAILABLE
            let codes = decode_add_partitions_to_txn(version, encoded(&response, version))
                .expect("decodes");
            assert_eq!(codes, vec![15], "the request-level error wins");
        }
    }

    #[test]
    fn produce_request_pieces_match_the_crate_encoder() {
        let batch = Bytes::from_static(b"pretend this is a record batch");
        for version in 3..=9 {
            let topics = [ProduceTopic {
                name: "events",
                partitions: vec![
                    ProducePartition {
                        index: 0,
                        batch: &batch,
                    },
                    ProducePartition {
                        index: 5,
                        batch: &batch,
                    },
                ],
            }];
            let pieces = encode_produce(version, -1, 30_000, &topics).expect("encodes");
            let ours: Vec<u8> = pieces
                .iter()
                .flat_map(|piece| piece.iter().copied())
                .collect();
            let mut decoded =
                ProduceRequest::decode(&mut Bytes::from(ours), version).expect("crate decodes it");
            assert_eq!(decoded.acks, -1);
            assert_eq!(decoded.timeout_ms, 30_000);
            let topic = decoded.topic_data.remove(0);
            assert_eq!(topic.name.0.as_str(), "events");
            assert_eq!(topic.partition_data.len(), 2);
            assert_eq!(topic.partition_data[1].index, 5);
            assert_eq!(topic.partition_data[1].records.as_deref(), Some(&batch[..]));
        }
    }

    #[test]
    fn hostile_counts_are_refused_without_allocating() {
        // A Fetch v4 response claiming 2^31-1 topics in a 12-byte body.
        let mut body = BytesMut::new();
        body.put_i32(0);
        body.put_i32(i32::MAX);
        body.put_i32(0);
        let error = decode_fetch(4, body.freeze()).expect_err("refused");
        assert!(matches!(error, ClientError::Decode { .. }), "{error}");
        // Trailing garbage is refused too.
        let mut response = FetchResponse::default();
        response.responses = Vec::new();
        let mut bytes = BytesMut::from(&encoded(&response, 4)[..]);
        bytes.put_u8(0);
        assert!(decode_fetch(4, bytes.freeze()).is_err());
    }
}
