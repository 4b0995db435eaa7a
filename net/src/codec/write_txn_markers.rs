//! WriteTxnMarkers (API key 27): a transaction coordinator asks a
//! partition leader on another broker to write commit or abort markers.
//!
//! v2 (KIP-1228) adds each marker's TransactionVersion, an int8 after its
//! coordinator epoch. kafka-protocol stops at v1, so the decoded request is
//! its v1 struct with the versions beside it ([`WriteTxnMarkers`]); the
//! response is v1's at v2 too.

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ApiKey, WriteTxnMarkersRequest};

use super::{check_version, DecodeError, Reader};

/// WriteTxnMarkers versions Sluice decodes: Kafka 4 dropped v0.
pub const WRITE_TXN_MARKERS_VERSIONS: (i16, i16) = (1, 2);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 1;
/// First version with a TransactionVersion in each marker (KIP-1228).
pub const TRANSACTION_VERSION_MIN: i16 = 2;
/// The TransactionVersion of a marker sent below v2: the schema's default,
/// which the partition checks as a transaction of version 0 or 1.
pub const TRANSACTION_VERSION_DEFAULT: i8 = 0;

/// A decoded WriteTxnMarkers request: kafka-protocol's request, and each of
/// its markers' TransactionVersion, in the order of `request.markers`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WriteTxnMarkers {
    pub request: WriteTxnMarkersRequest,
    pub transaction_versions: Vec<i8>,
}

impl WriteTxnMarkers {
    /// Each marker with its TransactionVersion.
    pub fn markers(&self) -> impl Iterator<Item = (&WritableTxnMarker, i8)> {
        self.request
            .markers
            .iter()
            .enumerate()
            .map(|(index, marker)| {
                let version = self
                    .transaction_versions
                    .get(index)
                    .copied()
                    .unwrap_or(TRANSACTION_VERSION_DEFAULT);
                (marker, version)
            })
    }
}

/// Decodes a WriteTxnMarkers request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<WriteTxnMarkers, DecodeError> {
    check_version(ApiKey::WriteTxnMarkers, version, WRITE_TXN_MARKERS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = WriteTxnMarkersRequest::default();
    let markers = r.array_v(flexible, |r| {
        let mut marker = WritableTxnMarker::default();
        marker.producer_id = r.i64()?.into();
        marker.producer_epoch = r.i16()?;
        marker.transaction_result = r.bool()?;
        marker.topics = r.array_v(flexible, |r| {
            let mut topic = WritableTxnMarkerTopic::default();
            topic.name = r.string_v(flexible)?;
            topic.partition_indexes = r.array_v(flexible, Reader::i32)?;
            r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
            Ok(topic)
        })?;
        marker.coordinator_epoch = r.i32()?;
        let transaction_version = if version >= TRANSACTION_VERSION_MIN {
            r.i8()?
        } else {
            TRANSACTION_VERSION_DEFAULT
        };
        r.tagged_fields_v(flexible, &mut marker.unknown_tagged_fields)?;
        Ok((marker, transaction_version))
    })?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    let (markers, transaction_versions) = markers.into_iter().unzip();
    req.markers = markers;
    Ok(WriteTxnMarkers {
        request: req,
        transaction_versions,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::messages::{ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    /// A body laid out by hand from Kafka's schema: two markers, at v2 each
    /// with its TransactionVersion right after the coordinator epoch and
    /// before the marker's tagged fields.
    fn two_markers(version: i16) -> Vec<u8> {
        let v2 = version >= TRANSACTION_VERSION_MIN;
        let mut body = vec![3]; // two markers (compact: count + 1)
                                // Marker 1: producer 7, epoch 2, commit, topic "t" partitions 0 and
                                // 1, coordinator epoch 5, transaction version 2, no tagged fields.
        body.extend_from_slice(&7i64.to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        body.push(1);
        body.extend_from_slice(&[2, 2, b't', 3]); // one topic, "t", two partitions
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        body.push(0); // the topic's tagged fields
        body.extend_from_slice(&5i32.to_be_bytes());
        if v2 {
            body.push(2);
        }
        body.push(0);
        // Marker 2: producer 8, epoch 0, abort, no topics, coordinator epoch
        // 0, transaction version 1, one tagged field (tag 9, one byte).
        body.extend_from_slice(&8i64.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.push(0);
        body.push(1); // no topics
        body.extend_from_slice(&0i32.to_be_bytes());
        if v2 {
            body.push(1);
        }
        body.extend_from_slice(&[1, 9, 1, 0xaa]);
        body.push(0); // the request's tagged fields
        body
    }

    #[test]
    fn v2_reads_a_transaction_version_per_marker() {
        let body = two_markers(2);
        let decoded = decode(&mut Reader::new(Bytes::from(body.clone())), 2).expect("decodes");
        assert_eq!(decoded.transaction_versions, vec![2, 1]);
        let markers: Vec<_> = decoded.markers().collect();
        assert_eq!(markers.len(), 2);
        let (first, first_version) = markers[0];
        assert_eq!(first_version, 2);
        assert_eq!(first.producer_id, ProducerId(7));
        assert_eq!(first.producer_epoch, 2);
        assert!(first.transaction_result);
        assert_eq!(first.coordinator_epoch, 5);
        assert_eq!(first.topics.len(), 1);
        assert_eq!(
            first.topics[0].name,
            TopicName(StrBytes::from_static_str("t"))
        );
        assert_eq!(first.topics[0].partition_indexes, vec![0, 1]);
        let (second, second_version) = markers[1];
        assert_eq!(second_version, 1);
        assert_eq!(second.producer_id, ProducerId(8));
        assert!(!second.transaction_result);
        assert!(second.topics.is_empty());
        assert_eq!(
            second
                .unknown_tagged_fields
                .get(&9)
                .map(|bytes| bytes.as_ref()),
            Some(&[0xaa][..])
        );

        // v1's bytes are the same less the two versions, and decode to the
        // same request with the default version; kafka-protocol agrees.
        let v1 = decode(&mut Reader::new(Bytes::from(two_markers(1))), 1).expect("decodes");
        assert_eq!(v1.request, decoded.request);
        assert_eq!(
            v1.transaction_versions,
            vec![TRANSACTION_VERSION_DEFAULT; 2]
        );
        {
            use kafka_protocol::protocol::Decodable;
            let theirs =
                WriteTxnMarkersRequest::decode(&mut Bytes::from(two_markers(1)), 1).expect("v1");
            assert_eq!(theirs, decoded.request);
        }
        // Every strict prefix is refused.
        for cut in 0..body.len() {
            let prefix = Bytes::copy_from_slice(&body[..cut]);
            assert!(
                decode(&mut Reader::new(prefix), 2).is_err(),
                "prefix of {cut}"
            );
        }
    }

    /// Below v2 there is no TransactionVersion: each marker gets the
    /// schema's default.
    #[test]
    fn v1_markers_get_the_default_transaction_version() {
        use kafka_protocol::protocol::Encodable;
        let mut request = WriteTxnMarkersRequest::default();
        request.markers = vec![WritableTxnMarker::default(), WritableTxnMarker::default()];
        let mut body = bytes::BytesMut::new();
        request.encode(&mut body, 1).expect("encodes");
        let decoded = decode(&mut Reader::new(body.freeze()), 1).expect("decodes");
        assert_eq!(decoded.request, request);
        assert_eq!(
            decoded.transaction_versions,
            vec![TRANSACTION_VERSION_DEFAULT; 2]
        );
    }
}
