//! One file per Kafka API, each with the version range it serves and one
//! `handle` function of the same shape; this registry maps a decoded request
//! to its handler and is the one place versions are checked.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_client_quotas;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_replica_log_dirs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod fetch_session;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_config_resources;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

/// Not an API: the flexible encoding of hand-written responses.
mod compact;
/// Not an API: the leader hints Produce and Fetch share (KIP-951).
mod leader_hints;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::acl;
use crate::acl::Operation;
use crate::broker::Broker;
use crate::codec::Request;
use crate::reuse::Arena;
use crate::sasl::Principal;
use crate::server::Listener;
use crate::wire::Pieces;
use crate::wire::ResponseFrame;

/// Kafka's marker in a response for "authorized operations not requested".
pub const AUTHORIZED_OPERATIONS_UNKNOWN: i32 = i32::MIN;

/// The operations Kafka reports on each resource type
/// (`AclEntry.supportedOperations`).
pub const CLUSTER_OPERATIONS: &[Operation] = &[
    Operation::Create,
    Operation::Alter,
    Operation::Describe,
    Operation::ClusterAction,
    Operation::DescribeConfigs,
    Operation::AlterConfigs,
    Operation::IdempotentWrite,
];
pub const TOPIC_OPERATIONS: &[Operation] = &[
    Operation::Read,
    Operation::Write,
    Operation::Create,
    Operation::Delete,
    Operation::Alter,
    Operation::Describe,
    Operation::DescribeConfigs,
    Operation::AlterConfigs,
];
pub const GROUP_OPERATIONS: &[Operation] =
    &[Operation::Read, Operation::Describe, Operation::Delete];

/// The APIs Sluice implements and tests, with their version ranges.
/// ApiVersions advertises exactly this list.
pub const IMPLEMENTED: &[(ApiKey, (i16, i16))] = &[
    (ApiKey::Produce, produce::VERSIONS),
    (ApiKey::Fetch, fetch::VERSIONS),
    (ApiKey::ListOffsets, list_offsets::VERSIONS),
    (ApiKey::Metadata, metadata::VERSIONS),
    (ApiKey::ApiVersions, api_versions::VERSIONS),
    (ApiKey::CreateTopics, create_topics::VERSIONS),
    (ApiKey::DeleteTopics, delete_topics::VERSIONS),
    (ApiKey::DeleteRecords, delete_records::VERSIONS),
    (ApiKey::InitProducerId, init_producer_id::VERSIONS),
    (ApiKey::DescribeConfigs, describe_configs::VERSIONS),
    (ApiKey::DescribeLogDirs, describe_log_dirs::VERSIONS),
    (
        ApiKey::AlterReplicaLogDirs,
        alter_replica_log_dirs::VERSIONS,
    ),
    (ApiKey::DescribeQuorum, describe_quorum::VERSIONS),
    (
        ApiKey::AlterPartitionReassignments,
        alter_partition_reassignments::VERSIONS,
    ),
    (
        ApiKey::ListPartitionReassignments,
        list_partition_reassignments::VERSIONS,
    ),
    (ApiKey::ElectLeaders, elect_leaders::VERSIONS),
    (ApiKey::CreatePartitions, create_partitions::VERSIONS),
    (
        ApiKey::IncrementalAlterConfigs,
        incremental_alter_configs::VERSIONS,
    ),
    (ApiKey::AlterConfigs, alter_configs::VERSIONS),
    (ApiKey::DescribeCluster, describe_cluster::VERSIONS),
    (ApiKey::FindCoordinator, find_coordinator::VERSIONS),
    (ApiKey::JoinGroup, join_group::VERSIONS),
    (ApiKey::SyncGroup, sync_group::VERSIONS),
    (ApiKey::Heartbeat, heartbeat::VERSIONS),
    (ApiKey::LeaveGroup, leave_group::VERSIONS),
    (ApiKey::OffsetCommit, offset_commit::VERSIONS),
    (ApiKey::OffsetFetch, offset_fetch::VERSIONS),
    (
        ApiKey::OffsetForLeaderEpoch,
        offset_for_leader_epoch::VERSIONS,
    ),
    (ApiKey::OffsetDelete, offset_delete::VERSIONS),
    (ApiKey::DescribeGroups, describe_groups::VERSIONS),
    (ApiKey::ListGroups, list_groups::VERSIONS),
    (ApiKey::DeleteGroups, delete_groups::VERSIONS),
    (
        ApiKey::ConsumerGroupHeartbeat,
        consumer_group_heartbeat::VERSIONS,
    ),
    (
        ApiKey::ConsumerGroupDescribe,
        consumer_group_describe::VERSIONS,
    ),
    (ApiKey::AddPartitionsToTxn, add_partitions_to_txn::VERSIONS),
    (ApiKey::AddOffsetsToTxn, add_offsets_to_txn::VERSIONS),
    (ApiKey::EndTxn, end_txn::VERSIONS),
    (ApiKey::WriteTxnMarkers, write_txn_markers::VERSIONS),
    (ApiKey::TxnOffsetCommit, txn_offset_commit::VERSIONS),
    (
        ApiKey::DescribeTransactions,
        describe_transactions::VERSIONS,
    ),
    (ApiKey::ListTransactions, list_transactions::VERSIONS),
    (ApiKey::DescribeProducers, describe_producers::VERSIONS),
    (
        ApiKey::DescribeTopicPartitions,
        describe_topic_partitions::VERSIONS,
    ),
    (ApiKey::ListConfigResources, list_config_resources::VERSIONS),
    // Listed on every listener, as Kafka lists them; a PLAINTEXT listener
    // answers them ILLEGAL_SASL_STATE.
    (ApiKey::SaslHandshake, sasl_handshake::VERSIONS),
    (ApiKey::SaslAuthenticate, sasl_authenticate::VERSIONS),
    (
        ApiKey::DescribeUserScramCredentials,
        describe_user_scram_credentials::VERSIONS,
    ),
    (
        ApiKey::AlterUserScramCredentials,
        alter_user_scram_credentials::VERSIONS,
    ),
    (ApiKey::DescribeAcls, describe_acls::VERSIONS),
    (ApiKey::CreateAcls, create_acls::VERSIONS),
    (ApiKey::DeleteAcls, delete_acls::VERSIONS),
    (
        ApiKey::DescribeClientQuotas,
        describe_client_quotas::VERSIONS,
    ),
    (ApiKey::AlterClientQuotas, alter_client_quotas::VERSIONS),
];

/// Whether `api_key` at `version` is implemented.
pub fn is_supported(api_key: i16, version: i16) -> bool {
    IMPLEMENTED
        .iter()
        .any(|(key, (min, max))| *key as i16 == api_key && (*min..=*max).contains(&version))
}

/// Bytes of each buffer small response bodies are encoded into, one after
/// another (bodies of up to half of it; larger ones get a buffer of their
/// own). A body waiting in a slow client's queue keeps its whole buffer
/// alive, and a connection has at most `IN_FLIGHT_REQUESTS_MAX` answers
/// queued, so the buffer is kept small.
const BODY_ARENA_BYTES: usize = 64 * 1024;

thread_local! {
    /// This thread's buffer for small response bodies.
    static BODIES: Arena = Arena::new(BODY_ARENA_BYTES);
}

/// Encodes a response with the crate's encoder (safe for responses).
pub fn encode<R: Encodable>(response: &R, version: i16) -> Pieces {
    // Sized first: grown as the encoder writes, a produce response of a
    // hundred partitions was reallocated several times. An error here
    // shows again in `encode` below.
    let size = response.compute_size(version).unwrap_or(0);
    match BODIES.with(|bodies| bodies.cut(size, |buffer| response.encode(buffer, version))) {
        Ok(body) => smallvec::smallvec![body],
        Err(error) => {
            // A handler set a field its version lacks: a bug, but one that
            // must cost only this connection. No pieces means "close".
            tracing::error!(%error, version, "encoding a response failed; closing the connection");
            Pieces::new()
        }
    }
}

pub fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// The answer to a SASL request on a connection that has not
/// authenticated, and whether the connection closes after it (with the
/// reason to log).
pub struct Answered {
    pub frame: ResponseFrame,
    pub closing: Option<String>,
}

/// Who sent a request.
#[derive(Clone, Debug)]
pub struct Session {
    /// The principal the connection authenticated as; `None` on a
    /// listener without authentication (Kafka's `User:ANONYMOUS`).
    pub principal: Option<Rc<Principal>>,
    /// The principal as ACLs name it: `User:<name>`.
    principal_name: Rc<str>,
    /// The client's address as ACLs name hosts (`127.0.0.1`).
    host: Rc<str>,
    /// Named in `super_users`: every check passes.
    super_user: bool,
    /// Until when the connection reads no request (KIP-219): set by a
    /// throttled response, shared by every request of the connection.
    muted_until: Rc<Cell<Option<Instant>>>,
    /// The listener the connection came through; `None` for answers given
    /// before a connection has a session (the first listener's).
    listener: Option<Rc<Listener>>,
    /// The shard time the request being handled took so far, when a
    /// request-time quota may apply (`crate::request_quota`).
    pub busy: Option<Rc<Cell<Duration>>>,
}

/// A request's partition-mutation quota (see [`Session::mutation_quota`]).
pub struct MutationQuota<'a> {
    broker: &'a Broker,
    session: &'a Session,
    client_id: &'a str,
    strict: bool,
}

impl MutationQuota<'_> {
    /// Kafka's message with THROTTLING_QUOTA_EXCEEDED.
    pub const REFUSAL: &'static str = "The throttling quota has been exceeded.";

    /// Whether a topic's `mutations` (partitions created or deleted) may
    /// go ahead; they are counted if so. `false`: answer the topic
    /// THROTTLING_QUOTA_EXCEEDED.
    pub fn admit(&self, mutations: u64) -> bool {
        self.buckets().admit(
            &self.broker.metadata(),
            (self.session.quota_user(), self.client_id),
            mutations,
            self.strict,
            Instant::now(),
        )
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, crate::quota::MutationBuckets> {
        self.broker
            .config
            .mutation_buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The `throttle_time_ms` to answer once the request's mutations are
    /// counted; the connection reads nothing more until it is over.
    pub fn throttle_ms(&self) -> i32 {
        let throttle = self.buckets().throttle(
            &self.broker.metadata(),
            (self.session.quota_user(), self.client_id),
            Instant::now(),
        );
        self.session.mute(throttle);
        i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX)
    }
}

impl Default for Session {
    /// A connection without authentication whose address is not known.
    fn default() -> Session {
        Session {
            principal: None,
            principal_name: Rc::from(acl::ANONYMOUS),
            host: Rc::from(""),
            super_user: false,
            muted_until: Rc::default(),
            listener: None,
            busy: None,
        }
    }
}

impl Session {
    /// A connection from `host` that has not authenticated (or never will,
    /// on a PLAINTEXT listener): `User:ANONYMOUS`, a super user only if
    /// `super_users` names it.
    pub fn anonymous(broker: &Broker, host: &str, listener: Rc<Listener>) -> Session {
        let anonymous = acl::ANONYMOUS.trim_start_matches("User:");
        Session {
            principal: None,
            principal_name: Rc::from(acl::ANONYMOUS),
            host: Rc::from(host),
            super_user: broker
                .config
                .sasl
                .super_users
                .iter()
                .any(|user| user == anonymous),
            muted_until: Rc::default(),
            listener: Some(listener),
            busy: None,
        }
    }

    /// The same connection, now authenticated as `principal`.
    pub fn authenticated(&self, principal: Principal) -> Session {
        Session {
            principal_name: Rc::from(principal.to_string()),
            super_user: principal.super_user,
            principal: Some(Rc::new(principal)),
            host: Rc::clone(&self.host),
            muted_until: Rc::clone(&self.muted_until),
            listener: self.listener.clone(),
            busy: None,
        }
    }

    /// Whether the connection came through a SASL listener.
    pub fn on_sasl_listener(&self, broker: &Broker) -> bool {
        self.listener
            .as_ref()
            .map_or(broker.config.security_protocol, |listener| {
                listener.protocol
            })
            .is_sasl()
    }

    /// `brokers` as this connection must see them: each at the address of
    /// its listener of the name the connection came through (Kafka
    /// answers each listener with its own endpoints), and without the
    /// brokers that have no such listener, as Kafka leaves them out. This
    /// broker is taken from its own settings, which hold before its
    /// registration is applied.
    fn through_listener(
        &self,
        broker: &Broker,
        brokers: Vec<sluice_engine::BrokerInfo>,
    ) -> Vec<sluice_engine::BrokerInfo> {
        let Some(listener) = self
            .listener
            .as_ref()
            .filter(|listener| listener.advertised.is_some())
        else {
            return brokers;
        };
        brokers
            .into_iter()
            .filter_map(|mut known| {
                if known.id != broker.config.node_id {
                    return known.through(&listener.name);
                }
                if let Some((host, port)) = &listener.advertised {
                    known.host = host.clone();
                    known.port = *port;
                }
                Some(known)
            })
            .collect()
    }

    /// [`Broker::live_brokers`] at this connection's listener's addresses.
    pub fn live_brokers(&self, broker: &Broker) -> Vec<sluice_engine::BrokerInfo> {
        self.through_listener(broker, broker.live_brokers())
    }

    /// [`Broker::registered_brokers`] at this connection's listener's
    /// addresses.
    pub fn registered_brokers(&self, broker: &Broker) -> Vec<sluice_engine::BrokerInfo> {
        self.through_listener(broker, broker.registered_brokers())
    }

    /// The user a client quota names: the principal's name (`ANONYMOUS`
    /// on a listener without authentication), as Kafka's quota entities
    /// name users.
    pub fn quota_user(&self) -> &str {
        self.principal_name
            .strip_prefix("User:")
            .unwrap_or(&self.principal_name)
    }

    /// Throttles the connection for `throttle` (a quota was exceeded) and
    /// returns the `throttle_time_ms` to answer. From `mute_version` on the
    /// client backs off itself (KIP-219): the response goes at once and the
    /// connection reads nothing more until the time is over. Older
    /// versions get their response that much later, as Kafka delays it.
    pub async fn throttle(&self, throttle: Duration, version: i16, mute_version: i16) -> i32 {
        if throttle.is_zero() {
            return 0;
        }
        if version >= mute_version {
            self.mute(throttle);
        } else {
            glommio::timer::sleep(throttle).await;
        }
        i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX)
    }

    /// Counts the shard time the request took so far against the sender's
    /// request-time quota (`client_id` its header's) and returns how long
    /// it is throttled for; zero when no such quota applies. What is
    /// counted is not counted again.
    pub fn charge_request_time(&self, broker: &Rc<Broker>, client_id: &str) -> Duration {
        let Some(busy) = &self.busy else {
            return Duration::ZERO;
        };
        let took = busy.replace(Duration::ZERO);
        broker.record_quota(
            &broker.metadata(),
            crate::quota::REQUEST_PERCENTAGE,
            (self.quota_user(), client_id),
            crate::quota::request_time(took),
        )
    }

    /// The connection reads nothing more for `throttle` (KIP-219).
    pub fn mute(&self, throttle: Duration) {
        if throttle.is_zero() {
            return;
        }
        let until = Instant::now() + throttle;
        let later = self
            .muted_until
            .get()
            .map_or(until, |muted| muted.max(until));
        self.muted_until.set(Some(later));
    }

    /// The partition-mutation quota (KIP-599) of this sender's CreateTopics,
    /// CreatePartitions or DeleteTopics request with `header`; from
    /// `strict_version` on, a request over it is refused per topic rather
    /// than let through and throttled.
    pub fn mutation_quota<'a>(
        &'a self,
        broker: &'a Broker,
        header: &'a RequestHeader,
        strict_version: i16,
    ) -> MutationQuota<'a> {
        MutationQuota {
            broker,
            session: self,
            client_id: header.client_id.as_deref().unwrap_or_default(),
            strict: header.request_api_version >= strict_version,
        }
    }

    /// Waits until the connection's throttle time, if any, is over.
    pub async fn wait_unmuted(&self) {
        let Some(until) = self.muted_until.get() else {
            return;
        };
        let left = until.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            glommio::timer::sleep(left).await;
        }
        if self.muted_until.get() == Some(until) {
            self.muted_until.set(None);
        }
    }

    /// Who the authorizer sees.
    pub fn requester(&self) -> acl::Requester<'_> {
        acl::Requester {
            principal: &self.principal_name,
            host: &self.host,
            super_user: self.super_user,
        }
    }

    /// Whether the sender may do `operation` on the resource `name` of
    /// `resource_type`: always, without an authorizer (as Kafka without
    /// `authorizer.class.name`).
    pub fn may(
        &self,
        broker: &Broker,
        operation: acl::Operation,
        resource_type: acl::ResourceType,
        name: &str,
    ) -> bool {
        broker.config.authorizer.as_ref().is_none_or(|authorizer| {
            authorizer.authorize(&self.requester(), operation, resource_type, name)
        })
    }

    /// Kafka's authorized-operations bitfield of a resource: bit `code`
    /// set for each of the resource type's `supported` operations the
    /// sender may do; all of them without an authorizer, as Kafka answers.
    pub fn authorized_operations(
        &self,
        broker: &Broker,
        resource_type: acl::ResourceType,
        name: &str,
        supported: &[acl::Operation],
    ) -> i32 {
        supported
            .iter()
            .filter(|operation| self.may(broker, **operation, resource_type, name))
            .fold(0, |bits, operation| bits | 1 << operation.code())
    }

    /// What the sender may do on the topic `name` (Kafka's bitfield).
    pub fn topic_operations(&self, broker: &Broker, name: &str) -> i32 {
        self.authorized_operations(broker, acl::ResourceType::Topic, name, TOPIC_OPERATIONS)
    }

    /// Whether the sender may do `operation` on the cluster.
    pub fn may_on_cluster(&self, broker: &Broker, operation: acl::Operation) -> bool {
        self.may(
            broker,
            operation,
            acl::ResourceType::Cluster,
            acl::CLUSTER_NAME,
        )
    }

    /// Whether the sender may do `operation` on the topic `name`.
    pub fn may_on_topic(&self, broker: &Broker, operation: acl::Operation, name: &str) -> bool {
        self.may(broker, operation, acl::ResourceType::Topic, name)
    }

    /// Whether the sender may do `operation` on the group `name`.
    pub fn may_on_group(&self, broker: &Broker, operation: acl::Operation, name: &str) -> bool {
        self.may(broker, operation, acl::ResourceType::Group, name)
    }

    /// Whether the sender may do `operation` on the transactional id `name`.
    pub fn may_on_transactional_id(
        &self,
        broker: &Broker,
        operation: acl::Operation,
        name: &str,
    ) -> bool {
        self.may(broker, operation, acl::ResourceType::TransactionalId, name)
    }

    /// The error for a config resource (DescribeConfigs, AlterConfigs,
    /// IncrementalAlterConfigs) the sender may not do `operation` on, as
    /// Kafka maps config resource types to ACL resources: a topic to the
    /// topic, a group to the group, every broker resource to the cluster.
    pub fn config_refusal(
        &self,
        broker: &Broker,
        resource_type: i8,
        name: &str,
        operation: acl::Operation,
    ) -> Option<i16> {
        use crate::errors::code;
        /// Kafka's config resource types (`ConfigResource.Type`).
        const TOPIC: i8 = 2;
        const GROUP: i8 = 32;
        let (allowed, refusal) = match resource_type {
            TOPIC => (
                self.may_on_topic(broker, operation, name),
                code::TOPIC_AUTHORIZATION_FAILED,
            ),
            GROUP => (
                self.may_on_group(broker, operation, name),
                code::GROUP_AUTHORIZATION_FAILED,
            ),
            _ => (
                self.may_on_cluster(broker, operation),
                code::CLUSTER_AUTHORIZATION_FAILED,
            ),
        };
        (!allowed).then_some(refusal)
    }

    /// Whether the sender may manage the cluster's security (users'
    /// credentials). With an authorizer: ALTER on the cluster, as Kafka
    /// asks. Without one: anyone on a listener without authentication, as
    /// Kafka without an authorizer allows anyone; a super user on a SASL
    /// listener, which is stricter than Kafka without an authorizer, so
    /// that turning SASL on is enough to keep an ordinary user from adding
    /// users.
    pub fn may_manage_security(&self, broker: &Broker) -> bool {
        if broker.config.authorizer.is_some() {
            return self.may_on_cluster(broker, acl::Operation::Alter);
        }
        if !self.on_sasl_listener(broker) {
            return true;
        }
        self.super_user
    }

    /// Whether the sender may read the cluster's security settings (users'
    /// credentials, ACLs): DESCRIBE on the cluster with an authorizer,
    /// else as [`Session::may_manage_security`].
    pub fn may_describe_security(&self, broker: &Broker) -> bool {
        if broker.config.authorizer.is_some() {
            return self.may_on_cluster(broker, acl::Operation::Describe);
        }
        self.may_manage_security(broker)
    }
}

/// A topic's name and partition indexes, with the errors answered for
/// them.
pub type TopicErrors = ((kafka_protocol::messages::TopicName, Vec<i32>), Vec<i16>);

/// The topics of `all` not `refused` (beside them): the ones sent on.
pub fn kept_topics(
    all: &[(kafka_protocol::messages::TopicName, Vec<i32>)],
    refused: &[bool],
) -> Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> {
    all.iter()
        .zip(refused)
        .filter(|(_, refused)| !**refused)
        .map(|(topic, _)| topic.clone())
        .collect()
}

/// The topics of a request in its order: each refused before the call
/// (`refused`, beside `all`) with every partition `refusal`, the others
/// with the answers of the call (`sent`, in order).
pub fn with_refused_topics(
    all: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)>,
    refused: &[bool],
    sent: Vec<TopicErrors>,
    refusal: i16,
) -> Vec<TopicErrors> {
    let mut sent = sent.into_iter();
    all.into_iter()
        .zip(refused)
        .filter_map(|((name, partitions), refused)| {
            if *refused {
                let errors = vec![refusal; partitions.len()];
                Some(((name, partitions), errors))
            } else {
                sent.next()
            }
        })
        .collect()
}

/// `call`'s answer when `allowed`, else GROUP_AUTHORIZATION_FAILED without
/// `call` running: a future does nothing until it is awaited.
pub async fn group_call<T>(
    allowed: bool,
    call: impl std::future::Future<Output = Result<T, i16>>,
) -> Result<T, i16> {
    if allowed {
        call.await
    } else {
        Err(crate::errors::code::GROUP_AUTHORIZATION_FAILED)
    }
}

/// Runs the handler of a decoded request and frames its response. `None`
/// when the request gets no response (produce with acks=0).
pub async fn dispatch(
    broker: &Rc<Broker>,
    session: &Session,
    header: RequestHeader,
    request: Request,
) -> Option<ResponseFrame> {
    let api_key = header.request_api_key;
    let version = header.request_api_version;
    let body = match request {
        Request::ApiVersions(request) => api_versions::handle(broker, &header, request).await,
        Request::Metadata(request) => metadata::handle(broker, session, &header, request).await,
        Request::Produce(request) => produce::handle(broker, session, &header, request).await,
        Request::Fetch(request) => fetch::handle(broker, session, &header, request).await,
        Request::ListOffsets(request) => {
            list_offsets::handle(broker, session, &header, request).await
        }
        Request::CreateTopics(request) => {
            create_topics::handle(broker, session, &header, request).await
        }
        Request::DeleteTopics(request) => {
            delete_topics::handle(broker, session, &header, request).await
        }
        Request::DeleteRecords(request) => {
            delete_records::handle(broker, session, &header, request).await
        }
        Request::CreatePartitions(request) => {
            create_partitions::handle(broker, session, &header, request).await
        }
        Request::InitProducerId(request) => {
            init_producer_id::handle(broker, session, &header, request).await
        }
        Request::DescribeConfigs(request) => {
            describe_configs::handle(broker, session, &header, request).await
        }
        Request::IncrementalAlterConfigs(request) => {
            incremental_alter_configs::handle(broker, session, &header, request).await
        }
        Request::AlterConfigs(request) => {
            alter_configs::handle(broker, session, &header, request).await
        }
        Request::DescribeCluster(request) => {
            describe_cluster::handle(broker, session, &header, request).await
        }
        Request::DescribeQuorum(request) => {
            describe_quorum::handle(broker, session, &header, request).await
        }
        Request::AlterPartitionReassignments(request) => {
            alter_partition_reassignments::handle(broker, session, &header, request).await
        }
        Request::ListPartitionReassignments(request) => {
            list_partition_reassignments::handle(broker, session, &header, request).await
        }
        Request::ElectLeaders(request) => {
            elect_leaders::handle(broker, session, &header, request).await
        }
        Request::DescribeLogDirs(request) => {
            describe_log_dirs::handle(broker, session, &header, request).await
        }
        Request::AlterReplicaLogDirs(request) => {
            alter_replica_log_dirs::handle(broker, session, &header, request).await
        }
        Request::FindCoordinator(request) => {
            find_coordinator::handle(broker, session, &header, request).await
        }
        Request::JoinGroup(request) => join_group::handle(broker, session, &header, request).await,
        Request::SyncGroup(request) => sync_group::handle(broker, session, &header, request).await,
        Request::Heartbeat(request) => heartbeat::handle(broker, session, &header, request).await,
        Request::LeaveGroup(request) => {
            leave_group::handle(broker, session, &header, request).await
        }
        Request::OffsetCommit(request) => {
            offset_commit::handle(broker, session, &header, request).await
        }
        Request::OffsetFetch(request) => {
            offset_fetch::handle(broker, session, &header, request).await
        }
        Request::OffsetForLeaderEpoch(request) => {
            offset_for_leader_epoch::handle(broker, session, &header, request).await
        }
        Request::OffsetDelete(request) => {
            offset_delete::handle(broker, session, &header, request).await
        }
        Request::DescribeGroups(request) => {
            describe_groups::handle(broker, session, &header, request).await
        }
        Request::ListGroups(request) => {
            list_groups::handle(broker, session, &header, request).await
        }
        Request::DeleteGroups(request) => {
            delete_groups::handle(broker, session, &header, request).await
        }
        Request::ConsumerGroupHeartbeat(request) => {
            consumer_group_heartbeat::handle(broker, session, &header, request).await
        }
        Request::ConsumerGroupDescribe(request) => {
            consumer_group_describe::handle(broker, session, &header, request).await
        }
        Request::AddPartitionsToTxn(request) => {
            add_partitions_to_txn::handle(broker, session, &header, request).await
        }
        Request::AddOffsetsToTxn(request) => {
            add_offsets_to_txn::handle(broker, session, &header, request).await
        }
        Request::EndTxn(request) => end_txn::handle(broker, session, &header, request).await,
        Request::WriteTxnMarkers(request) => {
            write_txn_markers::handle(broker, session, &header, request).await
        }
        Request::TxnOffsetCommit(request) => {
            txn_offset_commit::handle(broker, session, &header, request).await
        }
        Request::DescribeTransactions(request) => {
            describe_transactions::handle(broker, session, &header, request).await
        }
        Request::DescribeProducers(request) => {
            describe_producers::handle(broker, session, &header, request).await
        }
        Request::DescribeTopicPartitions(request) => {
            describe_topic_partitions::handle(broker, session, &header, request).await
        }
        Request::ListConfigResources(request) => {
            list_config_resources::handle(broker, session, &header, request).await
        }
        Request::ListTransactions(request) => {
            list_transactions::handle(broker, session, &header, request).await
        }
        Request::SaslHandshake(request) => sasl_handshake::handle(broker, &header, request).await,
        Request::SaslAuthenticate(request) => {
            sasl_authenticate::handle(broker, session, &header, request).await
        }
        Request::DescribeUserScramCredentials(request) => {
            describe_user_scram_credentials::handle(broker, session, &header, request).await
        }
        Request::AlterUserScramCredentials(request) => {
            alter_user_scram_credentials::handle(broker, session, &header, request).await
        }
        Request::DescribeAcls(request) => {
            describe_acls::handle(broker, session, &header, request).await
        }
        Request::CreateAcls(request) => {
            create_acls::handle(broker, session, &header, request).await
        }
        Request::DeleteAcls(request) => {
            delete_acls::handle(broker, session, &header, request).await
        }
        Request::DescribeClientQuotas(request) => {
            describe_client_quotas::handle(broker, session, &header, request).await
        }
        Request::AlterClientQuotas(request) => {
            alter_client_quotas::handle(broker, session, &header, request).await
        }
    }?;
    if body.is_empty() {
        return Some(ResponseFrame::default());
    }
    let key = ApiKey::try_from(api_key).ok()?;
    Some(ResponseFrame::new(
        header.correlation_id,
        key.response_header_version(version),
        body,
    ))
}
