//! Metadata (API key 3): topic and broker discovery.

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest};

use super::{check_version, DecodeError, Reader};

/// Metadata versions Sluice decodes.
pub const METADATA_VERSIONS: (i16, i16) = (0, 13);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 9;

/// Decodes a Metadata request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<MetadataRequest, DecodeError> {
    check_version(ApiKey::Metadata, version, METADATA_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = MetadataRequest::default();
    // A null topic list means "all topics" (v1+), so it stays distinct from an empty list.
    req.topics = r.nullable_array_v(flexible, |r| topic(r, version, flexible))?;
    if flexible && req.topics.is_none() {
        if let Some(padded) = librdkafka_null_topics(r, version, &req) {
            return Ok(padded);
        }
    }
    tail(r, version, flexible, &mut req)?;
    Ok(req)
}

/// Bytes librdkafka leaves after the null marker of a flexible topic array.
const LIBRDKAFKA_NULL_ARRAY_PADDING: usize = 3;

/// librdkafka 2.x (up to at least 2.16; confluentinc/librdkafka#5049) writes
/// the null topic array of an all-topics Metadata request v9+ as the varint
/// `0` followed by three zero bytes left over from the 4-byte count it
/// reserved. Kafka's parser reads the leftovers as the following fields and
/// ignores what is left at the end, so these requests work against Kafka;
/// without this, the strict decoder refuses them and every librdkafka client
/// that lists all topics (admin clients, `rd_kafka_metadata(all_topics=1)`)
/// loses its connection. Accepted only in exactly that shape: three zero
/// bytes after the null marker, after which the rest decodes to the end.
/// Returns the request decoded that way, leaving `r` empty, or `None` (and
/// `r` untouched) when the bytes do not have that shape.
fn librdkafka_null_topics(
    r: &mut Reader,
    version: i16,
    req: &MetadataRequest,
) -> Option<MetadataRequest> {
    let mut padded = r.clone();
    let padding = padded.take(LIBRDKAFKA_NULL_ARRAY_PADDING).ok()?;
    if padding.iter().any(|&byte| byte != 0) {
        return None;
    }
    let mut candidate = req.clone();
    tail(&mut padded, version, true, &mut candidate).ok()?;
    if !padded.buf.is_empty() {
        return None;
    }
    // The unpadded reading must not also fit: then the bytes mean that.
    let mut plain = r.clone();
    let mut unpadded = req.clone();
    if tail(&mut plain, version, true, &mut unpadded).is_ok() && plain.buf.is_empty() {
        return None;
    }
    *r = padded;
    Some(candidate)
}

/// The fields after the topic array.
fn tail(
    r: &mut Reader,
    version: i16,
    flexible: bool,
    req: &mut MetadataRequest,
) -> Result<(), DecodeError> {
    if version >= 4 {
        req.allow_auto_topic_creation = r.bool()?;
    }
    if (8..=10).contains(&version) {
        req.include_cluster_authorized_operations = r.bool()?;
    }
    if version >= 8 {
        req.include_topic_authorized_operations = r.bool()?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)
}

fn topic(
    r: &mut Reader,
    version: i16,
    flexible: bool,
) -> Result<MetadataRequestTopic, DecodeError> {
    let mut topic = MetadataRequestTopic::default();
    if version >= 10 {
        topic.topic_id = r.uuid()?;
    }
    // From v10 a topic may be named by id alone, so the name is nullable.
    topic.name = r.nullable_string_v(flexible)?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// The all-topics Metadata v12 body librdkafka 2.16 sends (captured from
    /// confluent-kafka's `list_topics`): null array, three leftover zeros,
    /// allow_auto_topic_creation = true, include_topic_authorized_operations
    /// = false, no tags.
    #[test]
    fn accepts_librdkafka_null_topic_padding() {
        let body = Bytes::from_static(&[0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]);
        let mut r = Reader::new(body);
        let req = decode(&mut r, 12).expect("librdkafka's request decodes");
        assert!(r.finish().is_ok());
        assert!(req.topics.is_none());
        assert!(req.allow_auto_topic_creation);
        assert!(!req.include_topic_authorized_operations);
        // Nonzero padding, or padding where the plain reading fits, is not it.
        let mut r = Reader::new(Bytes::from_static(&[
            0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
        ]));
        assert!(decode(&mut r, 12).is_err() || r.finish().is_err());
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x01, 0x00, 0x00]));
        let req = decode(&mut r, 12).expect("a well-formed request");
        assert!(r.finish().is_ok());
        assert!(req.allow_auto_topic_creation);
    }
}
