//! WriteTxnMarkers (API key 27): a transaction coordinator asks a
//! partition leader on another broker to write commit or abort markers.

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ApiKey, WriteTxnMarkersRequest};

use super::{check_version, DecodeError, Reader};

/// WriteTxnMarkers versions Sluice decodes: Kafka 4 keeps only v1.
pub const WRITE_TXN_MARKERS_VERSIONS: (i16, i16) = (1, 1);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 1;

/// Decodes a WriteTxnMarkers request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<WriteTxnMarkersRequest, DecodeError> {
    check_version(ApiKey::WriteTxnMarkers, version, WRITE_TXN_MARKERS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = WriteTxnMarkersRequest::default();
    req.markers = r.array_v(flexible, |r| {
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
        r.tagged_fields_v(flexible, &mut marker.unknown_tagged_fields)?;
        Ok(marker)
    })?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}
