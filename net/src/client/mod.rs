//! A small blocking Kafka client for admin tools (the `sluice topic ...`,
//! `sluice group ...`, `sluice txn ...`, `sluice cluster ...`,
//! `sluice acl ...` and online `sluice user ...` commands, and client quota
//! calls) and for `sluice produce` and `sluice consume`, speaking the Kafka protocol to any
//! Kafka-compatible broker over `std::net::TcpStream`.
//!
//! Design notes:
//! - Blocking, one request in flight per connection: an admin command makes
//!   a handful of calls, so pipelining and an async runtime would buy nothing.
//! - [`Connection`] owns framing (length prefix, request header v1/v2 and
//!   response header v0/v1 as each API's flexible versions dictate),
//!   correlation ids, socket timeouts, and ApiVersions negotiation: each API
//!   is sent at the highest version both the broker and
//!   [`connection::CLIENT_API_VERSIONS`] support.
//! - With [`ClientOptions::sasl`] every connection logs in right after the
//!   ApiVersions exchange ([`sasl`]), so the calls never see SASL.
//! - [`Admin`] holds a bootstrap connection and opens connections to other
//!   brokers only when a request must go to a particular one (partition
//!   leaders for ListOffsets, the controller for CreateTopics/DeleteTopics,
//!   a broker for its own configs, a group's coordinator for group calls).
//! - Responses are decoded with `kafka-protocol`'s decoders. Unlike the
//!   broker side (see [`crate::codec`]), this trusts array lengths from the
//!   wire: a hostile broker could make the client allocate a lot and abort.
//!   That is accepted for a CLI talking to a broker its user chose; the
//!   frame length itself is still bounded by [`RESPONSE_BYTES_MAX`] before
//!   anything is allocated for it.

pub mod acls;
pub mod admin;
pub mod connection;
pub mod error;
pub mod fetch;
pub mod groups;
pub mod log_dirs;
pub mod produce;
pub mod quotas;
pub mod records;
pub mod sasl;
pub mod scram_users;
pub mod txns;

use std::time::Duration;

pub use acls::{DeletedAcl, FilterDeletion};
pub use admin::{
    Admin, BrokerNode, ClusterInfo, ClusterMetadata, ConfigChange, ConfigEntry, ConfigResource,
    ConfigSource, CreatedTopic, NewTopic, OffsetSpec, PartitionMetadata, PartitionOffset,
    QuorumInfo, TopicMetadata,
};
pub use connection::Connection;
pub use error::{error_name, ClientError, KafkaError};
pub use fetch::{for_each_record, FetchLimits, FetchedPartition, PartitionRecords, Visit};
pub use groups::{CommittedOffset, GroupDescription, GroupListing, GroupMember};
pub use log_dirs::ReplicaSize;
pub use produce::{compression_from_name, Acks, Producer, ProducerRecord, ProducerSettings};
pub use quotas::{QuotaAlteration, QuotaEntityParts, QuotaEntry, QuotaFilterComponent, QuotaMatch};
pub use records::{LowWatermark, DELETE_BEFORE_HIGH_WATERMARK};
pub use sasl::{AuthenticationError, SaslCredentials};
pub use scram_users::{ScramDeletion, ScramUpsertion, UserAlteration, UserScramCredentials};
pub use txns::{TxnDescription, TxnListing};

/// The largest response frame accepted, matching the broker's own request
/// bound (Kafka's `socket.request.max.bytes` default). A longer length
/// prefix means a confused or hostile peer; it is refused before allocating.
pub const RESPONSE_BYTES_MAX: usize = crate::constants::REQUEST_BYTES_MAX;

/// The smallest response frame: the 4-byte correlation id of header v0.
pub const RESPONSE_BYTES_MIN: usize = 4;

/// How long connecting to one resolved address may take.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// How long one request may wait for its response (socket read and write
/// timeouts). Kafka's `request.timeout.ms` default for admin clients.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// The `timeout_ms` sent in CreateTopics/DeleteTopics: how long the broker
/// may wait for the operation to complete. Shorter than the request timeout
/// so the broker's own timeout answer arrives before the socket gives up.
pub const OPERATION_TIMEOUT_MS_DEFAULT: i32 = 25_000;

/// Uncompressed bytes of records one produce batch collects before it is
/// sent: half of Kafka's default `max.message.bytes` (1 MiB), so that the
/// batch framing and a long last record still fit a default broker.
pub const PRODUCE_BATCH_BYTES_MAX: usize = 512 * 1024;

/// Records one produce batch collects before it is sent, whatever their
/// size: tiny records would otherwise make batches of 100,000s of records.
pub const PRODUCE_BATCH_RECORDS_MAX: usize = 16 * 1024;

/// Uncompressed bytes waiting in all partitions' batches together; past it
/// every batch is sent, so a topic with many partitions does not hold
/// `partitions * PRODUCE_BATCH_BYTES_MAX` in memory.
pub const PRODUCE_PENDING_BYTES_MAX: usize = 8 * 1024 * 1024;

/// How often a produce request refused with a retriable error (the leader
/// moved, or has not been elected yet) is sent again, with fresh metadata.
pub const PRODUCE_ATTEMPTS_MAX: u32 = 5;
pub const PRODUCE_RETRY_BACKOFF_MS: u64 = 200;

/// The `timeout_ms` of a Produce request: how long the leader may wait
/// for the in-sync replicas under acks=all.
pub const PRODUCE_TIMEOUT_MS: i32 = 25_000;

/// Bytes one Fetch response may carry (Kafka's `fetch.max.bytes` is 50 MiB;
/// a CLI printing records needs far less per round trip).
pub const FETCH_RESPONSE_BYTES_MAX: i32 = 16 * 1024 * 1024;

/// Bytes per partition in one Fetch response (Kafka's
/// `max.partition.fetch.bytes` default).
pub const FETCH_PARTITION_BYTES_MAX: i32 = 1024 * 1024;

/// How long a Fetch may wait for records to arrive (Kafka's
/// `fetch.max.wait.ms` default). Short enough that a follow loop over
/// several leaders, asked one after another, stays responsive.
pub const FETCH_MAX_WAIT_MS: i32 = 500;

const _: () = assert!(RESPONSE_BYTES_MIN < RESPONSE_BYTES_MAX);
const _: () = assert!(PRODUCE_BATCH_BYTES_MAX < PRODUCE_PENDING_BYTES_MAX);
const _: () = assert!(
    PRODUCE_PENDING_BYTES_MAX < RESPONSE_BYTES_MAX,
    "one flush's request must stay below the broker's request bound"
);
const _: () = assert!(FETCH_PARTITION_BYTES_MAX <= FETCH_RESPONSE_BYTES_MAX);
const _: () = assert!(
    (FETCH_RESPONSE_BYTES_MAX as usize) < RESPONSE_BYTES_MAX,
    "a fetch response must fit the response frame bound"
);
const _: () = assert!((FETCH_MAX_WAIT_MS as u64) < REQUEST_TIMEOUT_MS_DEFAULT);
const _: () = assert!((PRODUCE_TIMEOUT_MS as u64) < REQUEST_TIMEOUT_MS_DEFAULT);
const _: () = assert!(
    RESPONSE_BYTES_MAX <= i32::MAX as usize,
    "frame lengths are i32"
);
const _: () = assert!((OPERATION_TIMEOUT_MS_DEFAULT as u64) < REQUEST_TIMEOUT_MS_DEFAULT);

/// Client settings; [`Default`] gives Kafka's usual values.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Sent in every request header; brokers log it and use it for quotas.
    pub client_id: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// See [`OPERATION_TIMEOUT_MS_DEFAULT`].
    pub operation_timeout_ms: i32,
    /// Log every connection in with these (a SASL_PLAINTEXT or SASL_SSL
    /// listener); `None` for a PLAINTEXT or SSL one.
    pub sasl: Option<SaslCredentials>,
    /// TLS to the brokers (an SSL or SASL_SSL listener).
    pub tls: Option<crate::tls::ClientTls>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            client_id: "sluice-admin".to_string(),
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS_DEFAULT),
            request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS_DEFAULT),
            operation_timeout_ms: OPERATION_TIMEOUT_MS_DEFAULT,
            sasl: None,
            tls: None,
        }
    }
}
