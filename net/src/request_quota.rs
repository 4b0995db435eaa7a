//! Request-time quotas (KIP-124, `request_percentage`): the time a shard
//! spends on a client's requests, measured as the time it spends polling
//! their handlers (the counterpart of Kafka's network and I/O thread time),
//! is held to the client's share of a shard. A request over it is answered
//! with its `throttle_time_ms` and the connection reads nothing more for
//! that long (KIP-219), as the byte-rate quotas do.
//!
//! The handlers encode their own responses; where Kafka's response begins
//! with `throttle_time_ms` (every API that has the field but Produce,
//! ApiVersions and OffsetDelete, which carry it further on), the measured
//! throttle is written into the encoded body, so that no handler has to
//! wait for the end of its own polling. Produce charges its time before it
//! encodes (`Session::charge_request_time`); the other two are throttled
//! without saying so.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;

use crate::codec::Request;
use crate::wire::ResponseFrame;

/// A handler whose polls are timed into `busy`.
pub struct Metered<'a, F> {
    pub inner: Pin<&'a mut F>,
    pub busy: Rc<Cell<Duration>>,
}

impl<F: Future> Future for Metered<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let began = Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.busy.set(self.busy.get() + began.elapsed());
        polled
    }
}

/// Requests Kafka does not count against request quotas: those of the
/// cluster itself (a follower's fetch, transaction markers), which a
/// client's quota must not slow down.
pub fn exempt(request: &Request) -> bool {
    match request {
        Request::WriteTxnMarkers(_) => true,
        Request::Fetch(fetch) => fetch.replica_id.0 >= 0 || fetch.replica_state.replica_id.0 >= 0,
        _ => false,
    }
}

/// The first version of `api` whose response begins with
/// `throttle_time_ms`; `None` when none does (no such field, or not first:
/// Produce, ApiVersions).
pub fn throttle_first_since(api: ApiKey) -> Option<i16> {
    use ApiKey::*;
    match api {
        DeleteRecords
        | InitProducerId
        | AddPartitionsToTxn
        | AddOffsetsToTxn
        | EndTxn
        | TxnOffsetCommit
        | DescribeAcls
        | CreateAcls
        | DeleteAcls
        | DescribeConfigs
        | AlterConfigs
        | AlterReplicaLogDirs
        | DescribeLogDirs
        | CreatePartitions
        | DeleteGroups
        | ElectLeaders
        | IncrementalAlterConfigs
        | AlterPartitionReassignments
        | ListPartitionReassignments
        | DescribeClientQuotas
        | AlterClientQuotas
        | DescribeUserScramCredentials
        | AlterUserScramCredentials
        | DescribeCluster
        | DescribeProducers
        | DescribeTransactions
        | ListTransactions
        | ConsumerGroupHeartbeat
        | ConsumerGroupDescribe
        | DescribeTopicPartitions
        | ListConfigResources => Some(0),
        Fetch | FindCoordinator | Heartbeat | LeaveGroup | SyncGroup | DescribeGroups
        | ListGroups | DeleteTopics => Some(1),
        ListOffsets | JoinGroup | CreateTopics | OffsetForLeaderEpoch => Some(2),
        Metadata | OffsetCommit | OffsetFetch => Some(3),
        _ => None,
    }
}

/// Writes `throttle` into `frame`'s `throttle_time_ms` when the response
/// of `api` at `version` begins with it, unless the handler already wrote
/// a longer one (a byte-rate quota's).
pub fn write_throttle(frame: &mut ResponseFrame, api: ApiKey, version: i16, throttle: Duration) {
    if throttle_first_since(api).is_none_or(|since| version < since) {
        return;
    }
    // The first piece is the length and the response header; the body
    // follows.
    let Some(body) = frame.pieces.get_mut(1).filter(|body| body.len() >= 4) else {
        return;
    };
    let written = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let millis = i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX);
    if millis <= written {
        return;
    }
    let mut patched = BytesMut::with_capacity(body.len());
    patched.put_i32(millis);
    patched.extend_from_slice(&body[4..]);
    *body = Bytes::from(patched);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, Message};

    /// Checks [`throttle_first_since`] against Kafka's message definitions:
    /// for every version of each response, whether an encoded response
    /// begins with the `throttle_time_ms` set in it.
    macro_rules! check_first {
        ($($api:ident => $response:ty),* $(,)?) => {$(
            for version in <$response>::VERSIONS.min..=<$response>::VERSIONS.max {
                const MARK: i32 = 0x0A0B_0C0D;
                let response = <$response>::default().with_throttle_time_ms(MARK);
                let mut encoded = BytesMut::new();
                let first = response.encode(&mut encoded, version).is_ok()
                    && encoded.len() >= 4
                    && encoded[..4] == MARK.to_be_bytes();
                let since = throttle_first_since(ApiKey::$api);
                assert_eq!(
                    first,
                    since.is_some_and(|since| version >= since),
                    "{} v{version}",
                    stringify!($api)
                );
            }
        )*};
    }

    #[test]
    fn the_table_matches_kafkas_responses() {
        check_first!(
            Produce => ProduceResponse,
            Fetch => FetchResponse,
            ListOffsets => ListOffsetsResponse,
            Metadata => MetadataResponse,
            OffsetCommit => OffsetCommitResponse,
            OffsetFetch => OffsetFetchResponse,
            FindCoordinator => FindCoordinatorResponse,
            JoinGroup => JoinGroupResponse,
            Heartbeat => HeartbeatResponse,
            LeaveGroup => LeaveGroupResponse,
            SyncGroup => SyncGroupResponse,
            DescribeGroups => DescribeGroupsResponse,
            ListGroups => ListGroupsResponse,
            ApiVersions => ApiVersionsResponse,
            CreateTopics => CreateTopicsResponse,
            DeleteTopics => DeleteTopicsResponse,
            DeleteRecords => DeleteRecordsResponse,
            InitProducerId => InitProducerIdResponse,
            OffsetForLeaderEpoch => OffsetForLeaderEpochResponse,
            AddPartitionsToTxn => AddPartitionsToTxnResponse,
            AddOffsetsToTxn => AddOffsetsToTxnResponse,
            EndTxn => EndTxnResponse,
            TxnOffsetCommit => TxnOffsetCommitResponse,
            DescribeAcls => DescribeAclsResponse,
            CreateAcls => CreateAclsResponse,
            DeleteAcls => DeleteAclsResponse,
            DescribeConfigs => DescribeConfigsResponse,
            AlterConfigs => AlterConfigsResponse,
            AlterReplicaLogDirs => AlterReplicaLogDirsResponse,
            DescribeLogDirs => DescribeLogDirsResponse,
            CreatePartitions => CreatePartitionsResponse,
            DeleteGroups => DeleteGroupsResponse,
            ElectLeaders => ElectLeadersResponse,
            IncrementalAlterConfigs => IncrementalAlterConfigsResponse,
            AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
            ListPartitionReassignments => ListPartitionReassignmentsResponse,
            OffsetDelete => OffsetDeleteResponse,
            DescribeClientQuotas => DescribeClientQuotasResponse,
            AlterClientQuotas => AlterClientQuotasResponse,
            DescribeUserScramCredentials => DescribeUserScramCredentialsResponse,
            AlterUserScramCredentials => AlterUserScramCredentialsResponse,
            DescribeCluster => DescribeClusterResponse,
            DescribeProducers => DescribeProducersResponse,
            DescribeTransactions => DescribeTransactionsResponse,
            ListTransactions => ListTransactionsResponse,
            ConsumerGroupHeartbeat => ConsumerGroupHeartbeatResponse,
            ConsumerGroupDescribe => ConsumerGroupDescribeResponse,
            DescribeTopicPartitions => DescribeTopicPartitionsResponse,
            ListConfigResources => ListConfigResourcesResponse,
        );
    }

    #[test]
    fn a_longer_throttle_is_written_and_a_shorter_one_is_not() {
        let body = |throttle: i32| {
            let mut body = BytesMut::new();
            body.put_i32(throttle);
            body.put_i16(0);
            body.freeze()
        };
        let mut frame = ResponseFrame::new(7, 0, smallvec::smallvec![body(5)]);
        write_throttle(&mut frame, ApiKey::Metadata, 12, Duration::from_millis(300));
        assert_eq!(frame.pieces[1], body(300));
        write_throttle(&mut frame, ApiKey::Metadata, 12, Duration::from_millis(20));
        assert_eq!(frame.pieces[1], body(300));
        // Before v3 Metadata has no throttle to write.
        let mut old = ResponseFrame::new(7, 0, smallvec::smallvec![body(0)]);
        write_throttle(&mut old, ApiKey::Metadata, 2, Duration::from_millis(300));
        assert_eq!(old.pieces[1], body(0));
    }
}
