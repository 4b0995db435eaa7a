//! The cluster layer: the metadata quorum and the metadata image.
//!
//! Sluice keeps its cluster metadata (brokers, topics, partitions with
//! their replicas, leaders and epochs, configs, producer-id blocks) in a
//! replicated log, as Kafka's KRaft does. Consensus is raft-rs's
//! synchronous core ([`node::MetadataNode`]), made durable by a small
//! write-ahead log ([`wal::Wal`]) and compacted into snapshots that are
//! themselves lists of records ([`records`]). Every broker applies the
//! committed records to its own image; shards read that image and never
//! ask another node per request.
//!
//! Layering: `engine → cluster → net`. This crate owns no sockets of the
//! Kafka port; the broker drives a node's ticks, messages and proposals.

pub mod codec;
pub mod constants;
pub mod node;
pub mod observer;
pub mod placement;
pub mod quorum;
pub mod records;
pub mod store;
pub mod stream;
pub mod transport;
pub mod wal;

pub use node::{Diverged, MetadataNode, NodeConfig, Processed, ProposalId, ProposeError};
pub use quorum::{Quorum, QuorumStatus, Transport, WriteError};
pub use records::MetadataRecord;
