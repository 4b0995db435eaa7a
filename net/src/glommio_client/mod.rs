//! A fast Kafka client on glommio: producer and consumer for the benchmark
//! suite (and anything else that runs on a glommio executor).
//!
//! Design notes:
//! - Everything lives on one executor (`Rc`, no locks). Run one producer
//!   or consumer per task group; spread load over executors for more cores.
//! - [`Connection`] pipelines requests (bounded in-flight slots, responses
//!   matched to a FIFO of pending requests) and negotiates API versions.
//! - [`Producer`] writes records straight into wire-format batches per
//!   partition (`batch.size`, `linger.ms`, the four codecs), sends at most
//!   one batch per partition per Produce request with one gathering send (batches are
//!   not copied into the request), and reports each batch once, with the
//!   caller's per-record tokens, to a callback; acks 0/1/all and optional
//!   idempotence (InitProducerId, sequence numbers).
//! - [`Consumer`] assigns partitions manually and keeps pipelined
//!   long-polling fetches (`fetch.min.bytes`, `fetch.max.wait.ms`) in flight,
//!   handing out record batches as zero-copy slices of the response.
//! - Responses are decoded by bounds-checked decoders ([`protocol`]); frame
//!   lengths are checked before allocating; decompression is bounded.
//! - Bounds and Kafka-named defaults are in [`constants`].

pub mod cluster;
pub mod compression;
pub mod connection;
pub mod constants;
pub mod consumer;
pub mod error;
pub mod partitioner;
pub mod producer;
pub mod protocol;
pub mod records;
pub mod sasl;

pub use cluster::{ClientConfig, Cluster, NewTopic, OffsetSpec};
pub use compression::Compression;
pub use connection::Connection;
pub use consumer::{Assignment, Consumer, ConsumerConfig, FetchedChunk, StartOffset};
pub use error::ClientError;
pub use producer::{Acks, Delivery, Message, Producer, ProducerConfig, TopicHandle};
pub use records::{BatchBuilder, Record, RecordBatch};
