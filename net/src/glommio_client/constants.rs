//! Every bound and default of the glommio client, in one place. Defaults
//! follow the Java client's names and values where Kafka has one, so a
//! workload means the same thing here as with any other Kafka client.

/// The largest response frame accepted, checked against the length prefix
/// before anything is allocated for it. The broker's own request bound
/// (Kafka's `socket.request.max.bytes`) is also the largest fetch response
/// any sane broker sends.
pub const RESPONSE_BYTES_MAX: usize = crate::constants::REQUEST_BYTES_MAX;

/// The smallest response frame: the 4-byte correlation id of header v0.
pub const RESPONSE_BYTES_MIN: usize = 4;

/// Room the response reader makes in its buffer before each non-blocking
/// receive. Large, because fetch responses are large and every read is a
/// system call.
pub const READ_CHUNK_BYTES: usize = 256 * 1024;

/// Batch buffers a producer keeps for reuse once their batch is answered,
/// so steady-state producing allocates no batch memory.
pub const BATCH_BUFFERS_POOLED_MAX: usize = 256;

/// Most requests one connection may have in flight, whatever the
/// configuration says (the broker stops reading beyond its own cap, so
/// more would only queue in socket buffers).
pub const IN_FLIGHT_REQUESTS_MAX: usize = 64;

/// How far into a SASL session (KIP-368: the session lifetime a broker
/// with `connections.max.reauth.ms` states) a connection stops being used
/// for new requests, so that none reaches the broker after the session
/// expired, which closes the connection. Kafka's clients re-authenticate
/// between 85 and 95 % of the lifetime; this client opens a new connection
/// at the first of those instead.
pub const SESSION_RENEWAL_PERCENT: u32 = 85;

/// Kafka's `max.in.flight.requests.per.connection` default.
pub const IN_FLIGHT_REQUESTS_DEFAULT: usize = 5;

/// With idempotence, Kafka brokers keep the last five batches per producer
/// and partition; more in flight could not be retried or deduplicated.
pub const IDEMPOTENT_IN_FLIGHT_REQUESTS_MAX: usize = 5;

/// Kafka's `batch.size` default.
pub const BATCH_BYTES_DEFAULT: usize = 16 * 1024;

/// Largest `batch.size` accepted: a batch must fit the broker's
/// `message.max.bytes`, which Kafka caps far below this.
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Smallest buffer a new batch starts with. Batches start at
/// `buffer.memory / partitions` (at most `batch.size`) so a producer writing
/// to thousands of partitions does not reserve `batch.size` for each.
pub const BATCH_INITIAL_BYTES_MIN: usize = 4 * 1024;

/// Kafka 4.0's `linger.ms` default.
pub const LINGER_MS_DEFAULT: u64 = 5;

/// Kafka's `buffer.memory` default: record bytes a producer holds
/// (accumulated or in flight) before `send` waits.
pub const BUFFER_MEMORY_BYTES_DEFAULT: usize = 32 * 1024 * 1024;

/// Kafka's `max.request.size` default: bytes of batches per produce request.
pub const REQUEST_BYTES_DEFAULT: usize = 1024 * 1024;

/// Kafka's `request.timeout.ms` default.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// Kafka's `metadata.max.age.ms` default.
pub const METADATA_MAX_AGE_MS_DEFAULT: u64 = 5 * 60 * 1000;

/// How long connecting to a broker may take.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Kafka's `fetch.min.bytes` default.
pub const FETCH_MIN_BYTES_DEFAULT: i32 = 1;

/// Kafka's `fetch.max.wait.ms` default.
pub const FETCH_MAX_WAIT_MS_DEFAULT: i32 = 500;

/// Kafka's `fetch.max.bytes` default.
pub const FETCH_MAX_BYTES_DEFAULT: i32 = 50 * 1024 * 1024;

/// Kafka's `max.partition.fetch.bytes` default.
pub const PARTITION_FETCH_MAX_BYTES_DEFAULT: i32 = 1024 * 1024;

/// Fetches one consumer connection keeps in flight, each for its own share
/// of the partitions, so one response is decoded while the next is served.
pub const FETCH_PIPELINE_DEPTH_DEFAULT: usize = 2;

/// Most fetches in flight per consumer connection.
pub const FETCH_PIPELINE_DEPTH_MAX: usize = 16;

/// Fetched partition chunks a consumer buffers before its fetch loops wait
/// for the application (back-pressure instead of unbounded memory).
pub const FETCHED_CHUNKS_QUEUED_MAX: usize = 256;

/// A compressed batch that inflates beyond this is refused: it protects the
/// client from decompression bombs. It matches the largest batch Sluice's
/// engine stores.
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = sluice_engine::constants::BATCH_BYTES_MAX;

/// Timeout sent in CreateTopics/DeleteTopics: topics with thousands of
/// partitions take a while to create.
pub const ADMIN_OPERATION_TIMEOUT_MS: i32 = 120_000;

/// How many times topic metadata is asked for while a new topic's leaders
/// are still being elected.
pub const METADATA_ATTEMPTS_MAX: usize = 50;

/// Pause between such metadata attempts.
pub const METADATA_RETRY_BACKOFF_MS: u64 = 100;

const _: () = assert!(RESPONSE_BYTES_MIN < RESPONSE_BYTES_MAX);
const _: () = assert!(
    RESPONSE_BYTES_MAX <= i32::MAX as usize,
    "frame lengths are i32"
);
const _: () = assert!(IN_FLIGHT_REQUESTS_DEFAULT <= IDEMPOTENT_IN_FLIGHT_REQUESTS_MAX);
const _: () = assert!(IDEMPOTENT_IN_FLIGHT_REQUESTS_MAX <= IN_FLIGHT_REQUESTS_MAX);
const _: () = assert!(BATCH_BYTES_DEFAULT <= BATCH_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX <= DECOMPRESSED_BATCH_BYTES_MAX);
const _: () = assert!(REQUEST_BYTES_DEFAULT <= RESPONSE_BYTES_MAX);
const _: () = assert!(FETCH_MAX_BYTES_DEFAULT as usize <= RESPONSE_BYTES_MAX);
const _: () = assert!(FETCH_PIPELINE_DEPTH_DEFAULT <= FETCH_PIPELINE_DEPTH_MAX);
const _: () = assert!(FETCH_PIPELINE_DEPTH_MAX <= IN_FLIGHT_REQUESTS_MAX);
