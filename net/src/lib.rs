//! # sluice-net
//!
//! Sluice's Kafka wire-protocol layer over the storage engine.
//!
//! - [`codec`]: bounds-checked request decoders producing `kafka-protocol`
//!   types (no decoder ever trusts a length from the wire).
//! - [`server`]: per-shard listeners, framing, in-order pipelining.
//! - [`handlers`]: one file per Kafka API, one registry, central version checks.
//! - [`broker`]: a shard's partitions, the cross-shard operations, and the
//!   metadata controller on shard 0.
//! - [`wire`]: response frames as slices, written with a gathering `sendmsg`.
//! - [`groups`]: the group coordinator (consumer groups, committed offsets
//!   in `__consumer_offsets`), one per shard.
//! - [`sasl`]: SASL PLAIN and SCRAM authentication of client connections,
//!   and the credential store.
//! - [`acl`]: ACLs in Kafka's model, their file, and the authorizer every
//!   handler asks.
//! - [`quota`]: client quotas (KIP-13, KIP-546): entities, checks, the
//!   precedence that picks a client's quota, and per-shard rate sensors.
//! - [`errors`]: Kafka error codes and the one mapping from engine errors.
//! - [`metrics`]: per-shard counters and published snapshots, and their
//!   Prometheus text, for the admin port.

pub mod acl;
pub mod broker;
pub mod client;
pub mod codec;
pub mod config;
pub mod config_catalog;
pub mod constants;
pub mod errors;
pub mod glommio_client;
pub mod groups;
pub mod handlers;
pub mod log_dirs;
pub mod meta_file;
pub mod metrics;
pub mod quota;
pub mod request_quota;
pub mod reuse;
pub mod sasl;
pub mod server;
pub mod tls;
pub mod topic_config;
pub mod txn;
pub mod wire;

pub use broker::Broker;
pub use config::BrokerConfig;
