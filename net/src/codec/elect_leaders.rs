//! ElectLeaders (API key 43): an admin asks the controller to move
//! partitions' leadership to their preferred replicas (KIP-183) or, for
//! partitions without a live in-sync replica, to any live replica (KIP-460).
//!
//! v1 adds `election_type` in front of the partitions; a v0 request carries
//! none and means a preferred election, which is also the struct's default.
//! v2 is flexible. A null partition list asks for every partition.

use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{ApiKey, ElectLeadersRequest};

use super::{check_version, DecodeError, Reader};

/// ElectLeaders versions Sluice decodes.
pub const ELECT_LEADERS_VERSIONS: (i16, i16) = (0, 2);

/// First version with `election_type` (KIP-460).
pub const ELECTION_TYPE_VERSION_MIN: i16 = 1;

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 2;

const _: () = assert!(
    ELECT_LEADERS_VERSIONS.0 < ELECTION_TYPE_VERSION_MIN
        && ELECTION_TYPE_VERSION_MIN < FLEXIBLE_MIN
        && FLEXIBLE_MIN <= ELECT_LEADERS_VERSIONS.1
);

/// Decodes an ElectLeaders request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<ElectLeadersRequest, DecodeError> {
    check_version(ApiKey::ElectLeaders, version, ELECT_LEADERS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    // The default's `election_type` is 0, preferred: what v0 means.
    let mut req = ElectLeadersRequest::default();
    if version >= ELECTION_TYPE_VERSION_MIN {
        req.election_type = r.i8()?;
    }
    // Null (not empty) asks for an election on every partition.
    req.topic_partitions = r.nullable_array_v(flexible, |r| topic(r, flexible))?;
    req.timeout_ms = r.i32()?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader, flexible: bool) -> Result<TopicPartitions, DecodeError> {
    let mut topic = TopicPartitions::default();
    topic.topic = r.string_v(flexible)?;
    topic.partitions = r.array_v(flexible, Reader::i32)?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    /// A request naming two topics (one with no partitions), with an
    /// unclean election from v1 on and unknown tagged fields at every
    /// level of v2, so every branch of the decoder is on the wire.
    fn sample(version: i16, all: bool) -> ElectLeadersRequest {
        let flexible = version >= FLEXIBLE_MIN;
        let mut orders = TopicPartitions::default();
        orders.topic = StrBytes::from_static_str("orders").into();
        orders.partitions = vec![0, 7, 2];
        if flexible {
            orders
                .unknown_tagged_fields
                .insert(6, Bytes::from_static(b"t"));
        }
        let mut empty = TopicPartitions::default();
        empty.topic = StrBytes::from_static_str("e").into();
        let mut req = ElectLeadersRequest::default();
        // v0 cannot say "unclean": its encoder refuses anything but 0.
        if version >= ELECTION_TYPE_VERSION_MIN {
            req.election_type = 1;
        }
        req.topic_partitions = (!all).then(|| vec![orders, empty]);
        req.timeout_ms = 30_000;
        if flexible {
            req.unknown_tagged_fields
                .insert(9, Bytes::from_static(b"r"));
        }
        req
    }

    fn encoded(req: &ElectLeadersRequest, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        req.encode(&mut buf, version).expect("the sample encodes");
        buf.freeze()
    }

    fn versions() -> std::ops::RangeInclusive<i16> {
        ELECT_LEADERS_VERSIONS.0..=ELECT_LEADERS_VERSIONS.1
    }

    #[test]
    fn round_trips_every_version() {
        for version in versions() {
            for all in [false, true] {
                let req = sample(version, all);
                let mut r = Reader::new(encoded(&req, version));
                assert_eq!(decode(&mut r, version), Ok(req), "v{version} all={all}");
                assert_eq!(r.finish(), Ok(()), "v{version}");
            }
        }
    }

    #[test]
    fn v0_means_a_preferred_election() {
        let req = sample(0, false);
        let mut r = Reader::new(encoded(&req, 0));
        let decoded = decode(&mut r, 0).expect("decodes");
        assert_eq!(decoded.election_type, 0);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for version in versions() {
            for all in [false, true] {
                let full = encoded(&sample(version, all), version);
                for cut in 0..full.len() {
                    let mut r = Reader::new(full.slice(..cut));
                    let result = decode(&mut r, version).and_then(|_| r.finish());
                    assert!(result.is_err(), "v{version} cut at {cut} of {}", full.len());
                }
            }
        }
    }

    #[test]
    fn a_huge_partition_count_is_refused_before_allocating() {
        // v2: election type, one topic "t", then a partition array claiming
        // u32::MAX - 1 entries.
        let body = Bytes::from_static(&[1, 2, 2, b't', 0xff, 0xff, 0xff, 0xff, 0x0f]);
        let mut r = Reader::new(body);
        assert!(matches!(
            decode(&mut r, 2),
            Err(DecodeError::CountExceedsRemaining { .. })
        ));
        // v0: a topic array claiming i32::MAX entries.
        let body = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        let mut r = Reader::new(body);
        assert!(matches!(
            decode(&mut r, 0),
            Err(DecodeError::CountExceedsRemaining { .. })
        ));
    }

    #[test]
    fn unknown_versions_are_refused() {
        let mut r = Reader::new(encoded(&sample(2, false), 2));
        assert!(matches!(
            decode(&mut r, 3),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }
}
