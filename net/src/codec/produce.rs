//! Produce (API key 0): record batches from producers.
//!
//! Record sets are returned as slices of the request frame, never copied, because they are
//! by far the largest part of the request and are written to the log as they are.

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest};

use super::{check_version, DecodeError, Reader};
use crate::reuse::Spares;

thread_local! {
    /// The decoded lists of answered requests, for the next request
    /// (`recycle`).
    static TOPICS: Spares<TopicProduceData> = const { Spares::new() };
    static PARTITIONS: Spares<PartitionProduceData> = const { Spares::new() };
}

/// Produce versions Sluice decodes (v3 is the first with the v2 record-batch format).
/// v12 has v11's layout; the bump tells the broker the client runs transaction
/// version 2 (KIP-890), so a transactional batch adds its partition. v13 names
/// topics by id instead of by name (KIP-516).
pub const PRODUCE_VERSIONS: (i16, i16) = (3, 13);

/// First version that names topics by id.
const TOPIC_ID_MIN: i16 = 13;

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 9;

/// Decodes a Produce request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<ProduceRequest, DecodeError> {
    check_version(ApiKey::Produce, version, PRODUCE_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = ProduceRequest::default();
    req.transactional_id = r.nullable_string_v(flexible)?;
    req.acks = r.i16()?;
    req.timeout_ms = r.i32()?;
    let topics = TOPICS.with(|spares| spares.take(0));
    req.topic_data = r.array_v_into(flexible, topics, |r| topic(r, version, flexible))?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

/// Gives an answered request's lists back for the next request's decoding
/// (its record slices are dropped with them).
pub fn recycle(request: &mut ProduceRequest) {
    let mut topics = std::mem::take(&mut request.topic_data);
    for topic in topics.iter_mut() {
        let partitions = std::mem::take(&mut topic.partition_data);
        PARTITIONS.with(|spares| spares.give(partitions));
    }
    TOPICS.with(|spares| spares.give(topics));
}

fn topic(r: &mut Reader, version: i16, flexible: bool) -> Result<TopicProduceData, DecodeError> {
    let mut topic = TopicProduceData::default();
    if version >= TOPIC_ID_MIN {
        topic.topic_id = r.uuid()?;
    } else {
        topic.name = r.string_v(flexible)?;
    }
    let partitions = PARTITIONS.with(|spares| spares.take(0));
    topic.partition_data = r.array_v_into(flexible, partitions, |r| partition(r, flexible))?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn partition(r: &mut Reader, flexible: bool) -> Result<PartitionProduceData, DecodeError> {
    let mut partition = PartitionProduceData::default();
    partition.index = r.i32()?;
    partition.records = r.nullable_bytes_v(flexible)?;
    r.tagged_fields_v(flexible, &mut partition.unknown_tagged_fields)?;
    Ok(partition)
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    /// A v9 (flexible) request of `partitions` partitions of one topic.
    fn frame(partitions: i32) -> Bytes {
        let mut request = ProduceRequest::default();
        request.acks = 1;
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(StrBytes::from_static_str("t"));
        for index in 0..partitions {
            let mut partition = PartitionProduceData::default();
            partition.index = index;
            partition.records = Some(Bytes::from_static(b"records"));
            topic.partition_data.push(partition);
        }
        request.topic_data.push(topic);
        let mut body = BytesMut::new();
        request.encode(&mut body, 9).unwrap();
        body.freeze()
    }

    #[test]
    fn an_answered_requests_lists_are_decoded_into_again() {
        let mut first = decode(&mut Reader::new(frame(3)), 9).unwrap();
        let topics = first.topic_data.as_ptr();
        let partitions = first.topic_data[0].partition_data.as_ptr();
        recycle(&mut first);
        assert!(first.topic_data.is_empty());
        // Kept on this (the test's own) thread, and taken by the next decode.
        assert_eq!(TOPICS.with(|spares| spares.kept()), 1);
        assert_eq!(PARTITIONS.with(|spares| spares.kept()), 1);
        let second = decode(&mut Reader::new(frame(2)), 9).unwrap();
        assert_eq!(TOPICS.with(|spares| spares.kept()), 0);
        assert_eq!(PARTITIONS.with(|spares| spares.kept()), 0);
        assert_eq!(second.topic_data.as_ptr(), topics);
        assert_eq!(second.topic_data[0].partition_data.as_ptr(), partitions);
        let indexes: Vec<i32> = second.topic_data[0]
            .partition_data
            .iter()
            .map(|partition| partition.index)
            .collect();
        assert_eq!(indexes, [0, 1]);
        assert_eq!(
            second.topic_data[0].partition_data[1].records.as_deref(),
            Some(&b"records"[..])
        );
    }
}
