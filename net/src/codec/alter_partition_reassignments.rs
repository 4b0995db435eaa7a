//! AlterPartitionReassignments (API key 45): an admin asks the controller to
//! move partitions to new replica sets, or to cancel such moves (KIP-455).
//!
//! Every version is flexible. v1 (KIP-860) adds `allow_replication_factor_change`
//! after `timeout_ms`; v0 requests carry no such field and mean "allowed", which
//! is also the struct's default, so a v0 request decodes to `true`.

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, ApiKey, BrokerId};

use super::{check_version, DecodeError, Reader};

/// AlterPartitionReassignments versions Sluice decodes; every version is flexible.
pub const ALTER_PARTITION_REASSIGNMENTS_VERSIONS: (i16, i16) = (0, 1);

/// First version with `allow_replication_factor_change` (KIP-860).
pub const ALLOW_REPLICATION_FACTOR_CHANGE_VERSION_MIN: i16 = 1;

const _: () = assert!(
    ALTER_PARTITION_REASSIGNMENTS_VERSIONS.0 < ALLOW_REPLICATION_FACTOR_CHANGE_VERSION_MIN
        && ALLOW_REPLICATION_FACTOR_CHANGE_VERSION_MIN <= ALTER_PARTITION_REASSIGNMENTS_VERSIONS.1
);

/// Decodes an AlterPartitionReassignments request body.
pub fn decode(
    r: &mut Reader,
    version: i16,
) -> Result<AlterPartitionReassignmentsRequest, DecodeError> {
    check_version(
        ApiKey::AlterPartitionReassignments,
        version,
        ALTER_PARTITION_REASSIGNMENTS_VERSIONS,
    )?;
    // The default has `allow_replication_factor_change` true: what v0 means.
    let mut req = AlterPartitionReassignmentsRequest::default();
    req.timeout_ms = r.i32()?;
    if version >= ALLOW_REPLICATION_FACTOR_CHANGE_VERSION_MIN {
        req.allow_replication_factor_change = r.bool()?;
    }
    req.topics = r.compact_array(topic)?;
    r.tagged_fields(&mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader) -> Result<ReassignableTopic, DecodeError> {
    let mut topic = ReassignableTopic::default();
    topic.name = r.compact_string()?.into();
    topic.partitions = r.compact_array(partition)?;
    r.tagged_fields(&mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn partition(r: &mut Reader) -> Result<ReassignablePartition, DecodeError> {
    let mut partition = ReassignablePartition::default();
    partition.partition_index = r.i32()?;
    // Null (not empty) is how a client cancels the partition's reassignment.
    partition.replicas = r.compact_nullable_array(|r| r.i32().map(BrokerId))?;
    r.tagged_fields(&mut partition.unknown_tagged_fields)?;
    Ok(partition)
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    /// A request with a move, a cancellation and an unknown tagged field at
    /// every level, so every branch of the decoder is on the wire.
    fn sample(version: i16) -> AlterPartitionReassignmentsRequest {
        let mut moved = ReassignablePartition::default();
        moved.partition_index = 3;
        moved.replicas = Some(vec![BrokerId(4), BrokerId(2), BrokerId(3)]);
        moved
            .unknown_tagged_fields
            .insert(7, Bytes::from_static(b"p"));
        let mut cancelled = ReassignablePartition::default();
        cancelled.partition_index = 0;
        cancelled.replicas = None;
        let mut topic = ReassignableTopic::default();
        topic.name = StrBytes::from_static_str("orders").into();
        topic.partitions = vec![moved, cancelled];
        topic
            .unknown_tagged_fields
            .insert(9, Bytes::from_static(b"t"));
        let mut req = AlterPartitionReassignmentsRequest::default();
        req.timeout_ms = 30_000;
        // v0 cannot say "not allowed": its encoder refuses a false there.
        req.allow_replication_factor_change = version < ALLOW_REPLICATION_FACTOR_CHANGE_VERSION_MIN;
        req.topics = vec![topic];
        req.unknown_tagged_fields
            .insert(11, Bytes::from_static(b"r"));
        req
    }

    fn encoded(req: &AlterPartitionReassignmentsRequest, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        req.encode(&mut buf, version).expect("the sample encodes");
        buf.freeze()
    }

    #[test]
    fn round_trips_every_version() {
        for version in
            ALTER_PARTITION_REASSIGNMENTS_VERSIONS.0..=ALTER_PARTITION_REASSIGNMENTS_VERSIONS.1
        {
            let req = sample(version);
            let mut r = Reader::new(encoded(&req, version));
            assert_eq!(decode(&mut r, version), Ok(req), "v{version}");
            assert_eq!(r.finish(), Ok(()), "v{version}");
        }
    }

    #[test]
    fn v0_means_replication_factor_changes_are_allowed() {
        let mut req = sample(0);
        req.topics.clear();
        let mut r = Reader::new(encoded(&req, 0));
        let decoded = decode(&mut r, 0).expect("decodes");
        assert!(decoded.allow_replication_factor_change);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for version in
            ALTER_PARTITION_REASSIGNMENTS_VERSIONS.0..=ALTER_PARTITION_REASSIGNMENTS_VERSIONS.1
        {
            let full = encoded(&sample(version), version);
            for cut in 0..full.len() {
                let mut r = Reader::new(full.slice(..cut));
                let result = decode(&mut r, version).and_then(|_| r.finish());
                assert!(result.is_err(), "v{version} cut at {cut} of {}", full.len());
            }
        }
    }

    #[test]
    fn a_huge_replica_count_is_refused_before_allocating() {
        // timeout, allow flag, one topic "t", one partition 0, then a replica
        // array claiming u32::MAX - 1 entries.
        let body = Bytes::from_static(&[
            0, 0, 0, 1, 1, 2, 2, b't', 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ]);
        let mut r = Reader::new(body);
        assert!(matches!(
            decode(&mut r, 1),
            Err(DecodeError::CountExceedsRemaining { .. })
        ));
    }

    #[test]
    fn unknown_versions_are_refused() {
        let mut r = Reader::new(encoded(&sample(1), 1));
        assert!(matches!(
            decode(&mut r, 2),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }
}
