//! ListPartitionReassignments (API key 46): the partition reassignments in
//! progress, for all topics (a null topic list) or for the named partitions.

use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{ApiKey, ListPartitionReassignmentsRequest};

use super::{check_version, DecodeError, Reader};

/// ListPartitionReassignments versions Sluice decodes; the only version is flexible.
pub const LIST_PARTITION_REASSIGNMENTS_VERSIONS: (i16, i16) = (0, 0);

/// Decodes a ListPartitionReassignments request body.
pub fn decode(
    r: &mut Reader,
    version: i16,
) -> Result<ListPartitionReassignmentsRequest, DecodeError> {
    check_version(
        ApiKey::ListPartitionReassignments,
        version,
        LIST_PARTITION_REASSIGNMENTS_VERSIONS,
    )?;
    let mut req = ListPartitionReassignmentsRequest::default();
    req.timeout_ms = r.i32()?;
    // Null asks for every reassignment in progress.
    req.topics = r.compact_nullable_array(topic)?;
    r.tagged_fields(&mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader) -> Result<ListPartitionReassignmentsTopics, DecodeError> {
    let mut topic = ListPartitionReassignmentsTopics::default();
    topic.name = r.compact_string()?.into();
    topic.partition_indexes = r.compact_array(Reader::i32)?;
    r.tagged_fields(&mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    const VERSION: i16 = LIST_PARTITION_REASSIGNMENTS_VERSIONS.1;

    fn sample(topics: bool) -> ListPartitionReassignmentsRequest {
        let mut topic = ListPartitionReassignmentsTopics::default();
        topic.name = StrBytes::from_static_str("orders").into();
        topic.partition_indexes = vec![0, 5, 2];
        topic
            .unknown_tagged_fields
            .insert(6, Bytes::from_static(b"t"));
        let mut req = ListPartitionReassignmentsRequest::default();
        req.timeout_ms = 1_000;
        req.topics = topics.then(|| vec![topic]);
        req.unknown_tagged_fields
            .insert(8, Bytes::from_static(b"r"));
        req
    }

    fn encoded(req: &ListPartitionReassignmentsRequest) -> Bytes {
        let mut buf = BytesMut::new();
        req.encode(&mut buf, VERSION).expect("the sample encodes");
        buf.freeze()
    }

    #[test]
    fn round_trips_named_and_all_topics() {
        for topics in [true, false] {
            let req = sample(topics);
            let mut r = Reader::new(encoded(&req));
            assert_eq!(decode(&mut r, VERSION), Ok(req));
            assert_eq!(r.finish(), Ok(()));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for topics in [true, false] {
            let full = encoded(&sample(topics));
            for cut in 0..full.len() {
                let mut r = Reader::new(full.slice(..cut));
                let result = decode(&mut r, VERSION).and_then(|_| r.finish());
                assert!(result.is_err(), "cut at {cut} of {}", full.len());
            }
        }
    }

    #[test]
    fn a_huge_partition_count_is_refused_before_allocating() {
        // timeout, one topic "t", then a partition array claiming
        // u32::MAX - 1 entries.
        let body = Bytes::from_static(&[0, 0, 0, 1, 2, 2, b't', 0xff, 0xff, 0xff, 0xff, 0x0f]);
        let mut r = Reader::new(body);
        assert!(matches!(
            decode(&mut r, VERSION),
            Err(DecodeError::CountExceedsRemaining { .. })
        ));
    }

    #[test]
    fn unknown_versions_are_refused() {
        let mut r = Reader::new(encoded(&sample(true)));
        assert!(matches!(
            decode(&mut r, VERSION + 1),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }
}
