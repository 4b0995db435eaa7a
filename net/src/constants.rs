//! Every bound of the wire layer, in one place.

/// Kafka's `socket.request.max.bytes` default: a frame longer than this is
/// refused before any buffer is allocated for it.
pub const REQUEST_BYTES_MAX: usize = 100 * 1024 * 1024;

/// Requests of one connection being processed at once; the reader stops
/// reading frames beyond this (pipelining with back-pressure).
pub const IN_FLIGHT_REQUESTS_MAX: usize = 64;

/// Kafka's `connections.max.idle.ms` default (10 minutes).
pub const CONNECTION_IDLE_MS_DEFAULT: u64 = 10 * 60 * 1000;

/// Bytes read from a socket per read call.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Most slices passed to one `writev` call (Linux IOV_MAX is 1024).
pub const IOVECS_MAX: usize = 1024;

/// Upper bound on a fetch's `max_wait_ms` the broker honours, so a client
/// cannot park a request for hours.
pub const FETCH_WAIT_MS_MAX: i64 = 30_000;

/// Kafka's `fetch.max.bytes` broker default (55 MiB): caps a fetch response.
pub const FETCH_RESPONSE_BYTES_MAX: usize = 55 * 1024 * 1024;

/// Kafka's `offsets.topic.num.partitions` default.
pub const OFFSETS_TOPIC_PARTITIONS_DEFAULT: i32 = 50;

/// Kafka's `num.partitions` default for auto-created topics.
pub const AUTO_CREATE_PARTITIONS_DEFAULT: i32 = 1;

/// Producer ids handed out by one InitProducerId allocation step before the
/// controller persists the next block (so ids are never reused on restart).
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// Longest client-supplied string the broker will echo into logs.
pub const LOGGED_STRING_BYTES_MAX: usize = 200;

const _: () = assert!(IN_FLIGHT_REQUESTS_MAX >= 5, "clients pipeline 5 requests by default");
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX <= REQUEST_BYTES_MAX);
