//! Leader discovery hints (KIP-951), shared by Produce (v10+) and Fetch (v16+).
//!
//! A partition answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH names
//! its current leader and leader epoch as this broker's metadata image has
//! them, and the response lists the endpoint of every leader it names, so a
//! client can retry at the right broker without a Metadata round trip first.
//! Only leaders named get an endpoint, as Kafka does; a leader the image
//! does not list as live is named without one.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_engine::{BrokerInfo, ClusterMetadata};

use crate::errors::code;

/// A partition's leader as the image has it: Kafka's `LeaderIdAndEpoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrentLeader {
    pub leader_id: i32,
    pub leader_epoch: i32,
}

impl CurrentLeader {
    /// The schema's default, which Kafka's encoders leave out of the tagged
    /// fields: neither leader nor epoch known (the partition is not in the
    /// image).
    pub const UNKNOWN: CurrentLeader = CurrentLeader {
        leader_id: -1,
        leader_epoch: -1,
    };
}

/// Whether a partition's error code asks for a leader hint: the two errors
/// that tell a client its idea of the leader is out of date. (Kafka's
/// Produce hints on NOT_LEADER_OR_FOLLOWER only, its Fetch on both; Produce
/// carries no leader epoch, so Sluice never answers it FENCED_LEADER_EPOCH
/// and one rule serves both.)
pub fn wants_hint(error_code: i16) -> bool {
    error_code == code::NOT_LEADER_OR_FOLLOWER || error_code == code::FENCED_LEADER_EPOCH
}

/// The hints of one response: looks leaders up in one image and remembers
/// the endpoints of those it named.
pub struct LeaderHints {
    metadata: Arc<ClusterMetadata>,
    /// Brokers clients may be sent to, as Metadata lists them.
    live: Vec<BrokerInfo>,
    /// Endpoints of the leaders named so far, by node id: each once, in a
    /// stable order.
    named: BTreeMap<i32, BrokerInfo>,
}

impl LeaderHints {
    /// `live` is what Metadata answers with (`Session::live_brokers`), so
    /// that a hint's endpoint is the one a Metadata request would give.
    pub fn new(metadata: Arc<ClusterMetadata>, live: Vec<BrokerInfo>) -> LeaderHints {
        LeaderHints {
            metadata,
            live,
            named: BTreeMap::new(),
        }
    }

    /// The hint for a partition answered `error_code`: `None` when the error
    /// calls for none, else its leader and epoch (`UNKNOWN` when the image
    /// does not have the partition), and the leader's endpoint is kept for
    /// [`LeaderHints::endpoints`] when the leader is live.
    pub fn for_error(
        &mut self,
        error_code: i16,
        topic: &str,
        partition: i32,
    ) -> Option<CurrentLeader> {
        if !wants_hint(error_code) {
            return None;
        }
        let Some(state) = self.metadata.partition(topic, partition) else {
            return Some(CurrentLeader::UNKNOWN);
        };
        // An offline partition (leader -1) still has an epoch in the image,
        // and Kafka sends it: the client learns the epoch it must reach.
        let leader = CurrentLeader {
            leader_id: state.leader,
            leader_epoch: state.leader_epoch,
        };
        if leader.leader_id >= 0 && !self.named.contains_key(&leader.leader_id) {
            if let Some(endpoint) = self.live.iter().find(|live| live.id == leader.leader_id) {
                self.named.insert(leader.leader_id, endpoint.clone());
            }
        }
        Some(leader)
    }

    /// The endpoints of the live leaders named so far, by node id.
    pub fn endpoints(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.named.values()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sluice_engine::{PartitionState, TopicMetadata};

    pub(crate) fn broker_info(id: i32, rack: Option<&str>) -> BrokerInfo {
        BrokerInfo {
            id,
            incarnation: 1,
            host: format!("broker-{id}.example"),
            port: 9000 + id as u16,
            rack: rack.map(str::to_string),
            fenced: false,
            endpoints: Vec::new(),
        }
    }

    /// An image with topic `t` of four partitions led by 2, 3, 2 and nobody
    /// (epochs 5, 7, 9, 11), and brokers 1 to 3 of which 3 is not live.
    pub(crate) fn hints() -> LeaderHints {
        let state = |leader: i32, epoch: i32| PartitionState {
            leader,
            leader_epoch: epoch,
            ..PartitionState::led_by(leader)
        };
        let mut metadata = ClusterMetadata::default();
        metadata.topics.insert(
            "t".to_string(),
            TopicMetadata {
                name: "t".to_string(),
                id: [7; 16],
                partitions: 4,
                configs: BTreeMap::new(),
                placement: vec![state(2, 5), state(3, 7), state(2, 9), state(-1, 11)],
            },
        );
        let live = vec![broker_info(1, Some("rack-1")), broker_info(2, None)];
        LeaderHints::new(Arc::new(metadata), live)
    }

    #[test]
    fn only_the_two_leadership_errors_get_a_hint() {
        let mut hints = hints();
        for error_code in [
            code::NONE,
            code::UNKNOWN_TOPIC_OR_PARTITION,
            code::NOT_ENOUGH_REPLICAS,
        ] {
            assert_eq!(hints.for_error(error_code, "t", 0), None);
        }
        assert_eq!(
            hints.endpoints().count(),
            0,
            "nothing named, nothing listed"
        );
        let expected = CurrentLeader {
            leader_id: 2,
            leader_epoch: 5,
        };
        assert_eq!(
            hints.for_error(code::NOT_LEADER_OR_FOLLOWER, "t", 0),
            Some(expected)
        );
        assert_eq!(
            hints.for_error(code::FENCED_LEADER_EPOCH, "t", 0),
            Some(expected)
        );
    }

    #[test]
    fn each_live_leader_named_is_listed_once() {
        let mut hints = hints();
        let not_leader = code::NOT_LEADER_OR_FOLLOWER;
        assert_eq!(
            hints.for_error(not_leader, "t", 2),
            Some(CurrentLeader {
                leader_id: 2,
                leader_epoch: 9
            })
        );
        hints.for_error(not_leader, "t", 0);
        // Broker 3 leads partition 1 but is not live: named, no endpoint.
        assert_eq!(
            hints.for_error(not_leader, "t", 1),
            Some(CurrentLeader {
                leader_id: 3,
                leader_epoch: 7
            })
        );
        // No leader: the epoch is still the image's.
        assert_eq!(
            hints.for_error(not_leader, "t", 3),
            Some(CurrentLeader {
                leader_id: -1,
                leader_epoch: 11
            })
        );
        // Not in the image at all: the schema's default.
        assert_eq!(
            hints.for_error(not_leader, "t", 4),
            Some(CurrentLeader::UNKNOWN)
        );
        assert_eq!(
            hints.for_error(not_leader, "other", 0),
            Some(CurrentLeader::UNKNOWN)
        );
        assert_eq!(
            hints.for_error(not_leader, "t", -1),
            Some(CurrentLeader::UNKNOWN)
        );
        let listed: Vec<&BrokerInfo> = hints.endpoints().collect();
        assert_eq!(listed, vec![&broker_info(2, None)]);
    }
}
