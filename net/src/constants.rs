//! Every bound of the wire layer, in one place.

/// Kafka's `socket.request.max.bytes` default: a frame longer than this is
/// refused before any buffer is allocated for it.
pub const REQUEST_BYTES_MAX: usize = 100 * 1024 * 1024;

/// Requests of one connection being processed at once; the reader stops
/// reading frames beyond this (pipelining with back-pressure).
pub const IN_FLIGHT_REQUESTS_MAX: usize = 64;

/// Kafka's `connections.max.idle.ms` default (10 minutes).
pub const CONNECTION_IDLE_MS_DEFAULT: u64 = 10 * 60 * 1000;

/// `max.connections` default: connections open at once over the whole
/// broker. Kafka's default is unlimited; a connection here holds at most
/// about 80 KiB of read buffers while idle (`READ_CHUNK_BYTES` plus the
/// wait buffer; an idle one touches about 15 KiB of it, measured over 1,600
/// connections), so this caps what idle connections can take at about
/// 1.6 GiB, far above what clients open (one or two connections per client
/// per broker). While the broker is full it stops accepting, as Kafka's
/// acceptor does: newcomers wait in the kernel's backlog.
pub const MAX_CONNECTIONS_DEFAULT: usize = 20_000;
/// `max.connections.per.ip` default: unlimited, as in Kafka (clients behind
/// one NAT address share it). A connection over the limit is closed at once.
pub const MAX_CONNECTIONS_PER_IP_DEFAULT: usize = i32::MAX as usize;
/// How often a full broker's accept loops look for a free slot again: a
/// slot freed on another shard does not wake this one.
pub const FULL_ACCEPT_POLL_MS: u64 = 10;

/// How long a TLS client may take over its handshake before the connection
/// is closed: a client that opens a connection and sends nothing holds a
/// connection slot for this long, not for `connections.max.idle.ms`.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// Plaintext gathered into one TLS write: a TLS record carries at most
/// 16 KiB, so small response pieces (headers, encoded fields) go out in
/// full records instead of a record each.
pub const TLS_WRITE_GATHER_BYTES: usize = 16 * 1024;

/// Bytes read from a socket per read call.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A Produce frame smaller than this is copied out of the connection's read
/// buffer into an allocation of its own. A frame split off the buffer keeps
/// the buffer's whole block alive, and a produced batch lives on in the
/// batch cache, which counts the batch's bytes, not the block's: with small
/// produce requests (a few KiB each at 20,000 msg/s over 12 partitions)
/// every cached batch pinned a 64 KiB block, and 512 MiB of cached batches
/// held 16.8 GiB of allocations and 1.9 GiB resident. Copying a frame this
/// small costs less than a microsecond; larger frames get a block sized for
/// them (`FRAME_PRESIZE_BYTES_MAX`) and are not copied.
pub const PRODUCE_FRAME_COPY_BYTES_MAX: usize = READ_CHUNK_BYTES / 2;
/// A frame up to this size gets its whole buffer as soon as its length
/// prefix is in: growing the buffer by doubling instead re-copied every
/// large produce request about once more (measured: 2-3 % of broker CPU at
/// peak produce). Above it the buffer grows with what actually arrives, so a
/// length prefix alone never reserves much memory.
pub const FRAME_PRESIZE_BYTES_MAX: usize = 1024 * 1024;

/// Partitions of one request whose durable acknowledgements (acks=all, or
/// transaction markers) are awaited together. Each partition's log syncs its
/// own file, so waiting for them one after the other added a write and an
/// fdatasync per partition to the request (measured at 10,000 msg/s, 100
/// partitions, ~3 partitions per request). Each waiting partition holds a
/// clone or two of the request task's waker, and glommio counts a task's
/// references in 16 bits: the bound keeps a request of 100,000 partitions
/// far from that.
pub const DURABLE_WAITS_TOGETHER_MAX: usize = 1024;

/// Most slices passed to one gathering `sendmsg` call (Linux IOV_MAX is 1024).
pub const IOVECS_MAX: usize = 1024;

/// A request whose handler runs longer than this is logged at debug level
/// (`SLUICE_LOG=sluice_net::server=debug`) with its API and time: where a
/// latency outlier was spent, without a profiler. Long polls (Fetch,
/// JoinGroup) exceed it by design.
pub const SLOW_REQUEST_LOG_MS: u128 = 200;

/// How long freed memory may stay resident before the allocator hands it
/// back to the kernel (`allocator_decay_ms`, jemalloc's `dirty_decay_ms`):
/// long enough that the request frames of a steady load are reused rather
/// than page-faulted afresh, short enough that a burst's memory is gone
/// within seconds. See bin/src/memory.rs.
pub const ALLOCATOR_DECAY_MS_DEFAULT: u64 = 1000;

/// How long a produce request without a timeout of its own may wait before
/// its append (for earlier requests to the partition, for write-behind
/// room): Kafka's default `request.timeout.ms`.
pub const PRODUCE_WAIT_MS_DEFAULT: u64 = 30_000;
/// How long the active controller waits, after a broker's heartbeat
/// connection closed, for it to reconnect before fencing it. A process
/// that dies has its sockets closed by its kernel, so a crash is seen in
/// well under the session timeout; a live broker whose connection broke
/// reconnects with its next heartbeat (every 100 ms) and is heard again.
/// A host that hangs or vanishes closes nothing and is fenced after
/// `broker_session_timeout_ms`.
pub const DISCONNECTED_FENCE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);
/// How often the active controller checks which brokers answer.
pub const LIVENESS_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// A liveness check that runs this much later than `LIVENESS_CHECK_INTERVAL`
/// after the previous one means the active controller itself was stalled
/// (descheduled, its shard busy): what its peers sent meanwhile may still
/// sit unread in its sockets, so their silence is not evidence. Judging
/// starts again from the end of the stall. Seen: a controller whose shard
/// stalled 6 s under a saturating replicated load fenced both other
/// brokers on waking, although they had heartbeated throughout.
pub const CONTROLLER_STALL_TOLERANCE: std::time::Duration = std::time::Duration::from_millis(200);
/// How long before the controller may fence it a broker out of touch with
/// the controller stops taking writes (see `broker::lease`). It covers the
/// controller's liveness check period (100 ms), the renewal period below,
/// and scheduling delays on a loaded host; on separate hosts, clock rate
/// differences are far smaller.
pub const LEASE_SAFETY_MARGIN: std::time::Duration = std::time::Duration::from_millis(300);
/// How often shard 0 renews the controller lease from its quorum member.
pub const LEASE_RENEW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);
/// Kafka's `broker.session.timeout.ms` (Kafka: 9 s). A voter answers the
/// quorum leader's heartbeats every 100 ms, so 1.5 s is fifteen missed
/// answers: a broker that hangs or is cut off is fenced within 1.6 s (one
/// that dies, sooner: see [`DISCONNECTED_FENCE_GRACE`]), and a process
/// stalled for less than that keeps its leaderships.
pub const BROKER_SESSION_TIMEOUT_MS_DEFAULT: u64 = 1500;
/// A broker's registration not applied by then is proposed again.
pub const REGISTRATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Pause after a failed registration before the next try.
pub const REGISTRATION_RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);
/// How often a node waiting for its metadata quorum to form says so.
pub const QUORUM_WAIT_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// A metadata change (topic created, deleted, reconfigured) that the quorum
/// has not applied by then is answered REQUEST_TIMED_OUT: the quorum may
/// have no leader or have lost its majority. Also the wait at start for the
/// quorum to elect a leader.
pub const METADATA_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Upper bound on a fetch's `max_wait_ms` the broker honours, so a client
/// cannot park a request for hours.
pub const FETCH_WAIT_MS_MAX: i64 = 30_000;

/// Kafka's `fetch.max.bytes` broker default (55 MiB): caps a fetch response.
pub const FETCH_RESPONSE_BYTES_MAX: usize = 55 * 1024 * 1024;

/// Kafka's `offsets.topic.num.partitions` default.
pub const OFFSETS_TOPIC_PARTITIONS_DEFAULT: i32 = 50;

/// Kafka's `offsets.topic.replication.factor` and
/// `transaction.state.log.replication.factor`.
pub const INTERNAL_TOPIC_REPLICATION_FACTOR_DEFAULT: i16 = 3;

/// Kafka's `transaction.state.log.min.isr`.
pub const TRANSACTION_STATE_MIN_ISR_DEFAULT: i16 = 2;

/// `segment.bytes` of `__consumer_offsets` (Kafka's
/// `offsets.topic.segment.bytes` default, 100 MiB).
pub const OFFSETS_TOPIC_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;

/// Kafka's `offset.metadata.max.bytes`: longer commit metadata strings get
/// OFFSET_METADATA_TOO_LARGE.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

/// Kafka's `group.initial.rebalance.delay.ms` default.
pub const GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT: u64 = 3000;

/// Kafka's `group.min.session.timeout.ms` default.
pub const GROUP_SESSION_TIMEOUT_MS_MIN_DEFAULT: i32 = 6000;

/// Kafka's `group.max.session.timeout.ms` default (30 minutes).
pub const GROUP_SESSION_TIMEOUT_MS_MAX_DEFAULT: i32 = 30 * 60 * 1000;

/// Members one group may have (Kafka's `group.max.size`, which is unbounded
/// by default; a group's metadata record must fit `max.message.bytes`).
pub const GROUP_SIZE_MAX_DEFAULT: usize = 1000;

/// Kafka's `group.consumer.session.timeout.ms` default (KIP-848 groups).
pub const CONSUMER_GROUP_SESSION_TIMEOUT_MS_DEFAULT: i32 = 45_000;

/// Kafka's `group.consumer.heartbeat.interval.ms` default.
pub const CONSUMER_GROUP_HEARTBEAT_INTERVAL_MS_DEFAULT: i32 = 5_000;

/// Members one KIP-848 consumer group may have (Kafka's
/// `group.consumer.max.size` is unbounded; every member costs records and a
/// share of each assignment computation).
pub const CONSUMER_GROUP_SIZE_MAX_DEFAULT: usize = 10_000;

/// Longest subscription regex a member may send (bytes).
pub const CONSUMER_GROUP_REGEX_BYTES_MAX: usize = 1024;

/// Longest transactional id pattern a ListTransactions v2 request may send
/// (bytes); Kafka sets none, but a pattern is compiled per request, and
/// transactional ids are short.
pub const TRANSACTIONAL_ID_PATTERN_BYTES_MAX: usize = 1024;
/// Most memory one compiled transactional id pattern may take: a short
/// pattern with nested counted repetitions can otherwise compile to
/// megabytes.
pub const TRANSACTIONAL_ID_PATTERN_COMPILED_BYTES_MAX: usize = 1 << 20;

/// Kafka's `offsets.retention.minutes` default (7 days), in ms.
pub const OFFSETS_RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;

/// Kafka's `offsets.retention.check.interval.ms` default.
pub const OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 10 * 60 * 1000;

/// How long a coordinator write may take to become durable before the
/// request fails (Kafka's `offsets.commit.timeout.ms`).
pub const OFFSETS_WRITE_TIMEOUT_MS: u64 = 5000;

/// How long a Metadata request waits for the topics it auto-creates
/// before it answers them LEADER_NOT_AVAILABLE (the creation goes on, and
/// the client asks again). Kafka does not wait at all; waiting a little
/// lets a healthy broker's first answer name the new topic's leaders.
/// Without the bound a data disk that stopped taking writes held the
/// Metadata request for the metadata write's 30 s timeout.
pub const AUTO_CREATE_WAIT_MS: i32 = 2000;

/// How long an idempotent producer's InitProducerId waits for a new block
/// of producer ids (a metadata write) before it is answered
/// COORDINATOR_LOAD_IN_PROGRESS, which clients retry; Kafka answers that
/// at once when no id is at hand. The block's write goes on, so a retry
/// finds it. Without the bound a data disk that stopped taking writes
/// held the request for the metadata write's 30 s timeout, as long as a
/// client's own request timeout.
pub const PRODUCER_ID_WAIT_MS: i32 = 2000;

/// How long a coordinator request waits for room in its state
/// partition's write-behind before it is refused with a retriable error:
/// the same budget as the write itself, so a slow disk cannot hold a
/// group or transaction request unanswered for longer than its write.
pub const COORDINATOR_ROOM_WAIT_MS: u64 = OFFSETS_WRITE_TIMEOUT_MS;

/// Bytes read per step when replaying an offsets partition.
pub const OFFSETS_LOAD_READ_BYTES: usize = 1024 * 1024;

/// Pause before retrying a replay that hit a read error.
pub const OFFSETS_LOAD_RETRY_MS: u64 = 1000;

/// Bytes of the client or instance id that prefix a generated member id, so
/// the id stays far below Kafka's string limit.
pub const MEMBER_ID_PREFIX_BYTES_MAX: usize = 255;

/// Kafka's `num.partitions` default for auto-created topics.
pub const AUTO_CREATE_PARTITIONS_DEFAULT: i32 = 1;

/// Producer ids handed out by one InitProducerId allocation step before the
/// controller persists the next block (so ids are never reused on restart).
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// Longest client-supplied string the broker will echo into logs.
pub const LOGGED_STRING_BYTES_MAX: usize = 200;

/// Kafka's `transaction.state.log.num.partitions` default.
pub const TRANSACTION_STATE_PARTITIONS_DEFAULT: i32 = 50;

/// Kafka's `transaction.max.timeout.ms` default (15 minutes).
pub const TRANSACTION_MAX_TIMEOUT_MS_DEFAULT: i32 = 15 * 60 * 1000;

/// Kafka's `transactional.id.expiration.ms` default (7 days).
pub const TRANSACTIONAL_ID_EXPIRATION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;

/// Kafka's `transaction.abort.timed.out.transaction.cleanup.interval.ms`
/// default: how often timed-out transactions are looked for.
pub const TRANSACTION_ABORT_CHECK_INTERVAL_MS_DEFAULT: u64 = 10_000;

/// Partitions one transaction may hold; AddPartitionsToTxn beyond it is
/// refused, so the transaction's state record stays far below
/// `max.message.bytes`.
pub const TXN_PARTITIONS_MAX: usize = 10_000;

/// How long a marker write may take per attempt before it is retried.
pub const TXN_MARKER_TIMEOUT_MS: u64 = 10_000;

/// How long a partition leader waits for a marker to be durable and
/// replicated; within one attempt of the coordinator, so that the leader's
/// answer (not the coordinator's timeout) says what went wrong.
pub const TXN_MARKER_ACK_TIMEOUT: std::time::Duration =
    std::time::Duration::from_millis(TXN_MARKER_TIMEOUT_MS * 4 / 5);

/// Pause between retries of a marker write that failed.
pub const TXN_MARKER_RETRY_MS: u64 = 200;

/// How long EndTxn waits for the markers before answering; the decision is
/// durable by then, so the answer is success and completion continues.
pub const TXN_END_WAIT_MS: u64 = 30_000;

/// Bytes of records a replay of `__transaction_state` reads per step.
pub const TXN_LOAD_READ_BYTES: usize = 1024 * 1024;

/// Passes of one InitProducerId: creating the id, aborting an Ongoing
/// transaction, allocating a new producer id and the bump itself each take
/// one; a request still racing others after these answers
/// CONCURRENT_TRANSACTIONS.
pub const TXN_INIT_PASSES_MAX: usize = 4;

const _: () = assert!(
    IN_FLIGHT_REQUESTS_MAX >= 5,
    "clients pipeline 5 requests by default"
);
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX <= REQUEST_BYTES_MAX);
const _: () = assert!(GROUP_SESSION_TIMEOUT_MS_MIN_DEFAULT <= GROUP_SESSION_TIMEOUT_MS_MAX_DEFAULT);
const _: () = assert!(
    CONSUMER_GROUP_HEARTBEAT_INTERVAL_MS_DEFAULT < CONSUMER_GROUP_SESSION_TIMEOUT_MS_DEFAULT
);
// "<prefix>-<36-character uuid>" must be a legal Kafka string.
const _: () = assert!(MEMBER_ID_PREFIX_BYTES_MAX + 37 <= i16::MAX as usize);

/// First wait before a partition leader asks the transaction coordinator
/// again to add a partition (Produce v12) after CONCURRENT_TRANSACTIONS:
/// another addition for the same transaction is being written, which takes
/// one state-log fsync.
pub const TXN_ADD_RETRY_BACKOFF_MS_MIN: u64 = 1;
/// Longest wait between those tries (each wait doubles up to it).
pub const TXN_ADD_RETRY_BACKOFF_MS_MAX: u64 = 20;
/// How long the leader keeps trying before answering the producer with
/// CONCURRENT_TRANSACTIONS (Kafka's leader gives up after 100 ms too).
pub const TXN_ADD_RETRY_TOTAL_MS_MAX: u64 = 100;

/// Partitions of one fetch a shard reads at once: enough to keep the disk's
/// queue busy for a consumer behind the cache, bounded so a fetch of
/// thousands of partitions does not hold thousands of read buffers at once.
pub const FETCH_READS_CONCURRENT_MAX: usize = 32;

/// How many partitions ahead of the one it reads a fetch asks the CPU to
/// load a log's state: far enough for the loads to overlap (each is a miss
/// to memory, about 100 ns), near enough that they are still cached when
/// the read reaches them.
pub const READ_PREFETCH_AHEAD: usize = 8;

/// Logs a shard closes (or publishes the files of) at once at shutdown:
/// enough to keep the disk's queue busy with their last writes and file
/// creations, few enough not to flood io_uring and the file-system threads.
pub const LOG_CLOSE_CONCURRENCY_MAX: usize = 64;

/// Kafka's default `replica.lag.time.max.ms`.
pub const REPLICA_LAG_TIME_MAX_MS_DEFAULT: u64 = 30_000;
/// How long a follower's fetch waits at the leader for new data (Kafka's
/// `replica.fetch.wait.max.ms`): the longest a new partition given to a
/// fetcher waits for the fetch in flight to return.
pub const REPLICA_FETCH_WAIT_MS: i32 = 500;
/// Bytes a follower asks for per partition in one fetch (Kafka's
/// `replica.fetch.max.bytes`).
pub const REPLICA_FETCH_PARTITION_BYTES: i32 = 1024 * 1024;
/// Bytes a follower asks for per fetch (Kafka's
/// `replica.fetch.response.max.bytes`).
pub const REPLICA_FETCH_RESPONSE_BYTES: i32 = 10 * 1024 * 1024;
/// How long a follower waits before fetching again after an error, and
/// before reconnecting to a leader it could not reach.
pub const REPLICA_FETCH_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a request to another broker (a follower's fetch, transaction
/// markers, a transaction check) may take before its connection is
/// dropped; a fetch waits `REPLICA_FETCH_WAIT_MS` at most, so this only
/// catches a dead peer.
pub const PEER_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long connecting to another broker may take.
pub const PEER_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// Requests in flight on one shard's connection to another broker for
/// markers and transaction checks.
pub const PEER_IN_FLIGHT: usize = 16;
/// How long a stopping broker waits for the controller to move its
/// leaderships (controlled shutdown) before it stops anyway.
pub const CONTROLLED_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often a stopping broker checks whether its leaderships have moved.
pub const CONTROLLED_SHUTDOWN_POLL: std::time::Duration = std::time::Duration::from_millis(20);
/// Between a stopping broker's requests to a controller that did not
/// accept its shutdown (none elected, or unreachable).
pub const CONTROLLED_SHUTDOWN_RETRY: std::time::Duration = std::time::Duration::from_millis(250);
/// How long a stopping active controller waits for the voter it hands the
/// quorum's leadership to to take it, before it stops anyway (the others
/// then elect a leader after an election timeout, 0.5-1 s). A transfer
/// takes a round trip and an fsync of the vote on each voter, a few
/// milliseconds, unless the chosen voter must first catch up or died just
/// then; raft-rs itself gives up after one election timeout.
pub const CONTROLLER_HANDOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// A broker whose registration the active controller refuses because
/// another live broker holds its node id (DUPLICATE_BROKER_REGISTRATION)
/// for this many broker sessions in a row stops with an error. A broker
/// restarted at once after a crash is refused for at most one session
/// (until the old process's runs out), and for one more when a controller
/// elected meanwhile, which judges nobody before it has led for a session;
/// the third leaves room for retries on a slow machine. (Kafka's broker
/// gives up after `initial.broker.registration.timeout.ms`, 60 s.)
pub const DUPLICATE_REGISTRATION_SESSIONS: u32 = 3;
/// How often a running broker whose id another process took over says so.
pub const DUPLICATE_REGISTRATION_REPORT_INTERVAL: std::time::Duration =
    std::time::Duration::from_secs(5);
/// The cluster id file of a broker that is not a voter (`meta/cluster-id`):
/// a cluster id is 22 characters; anything much longer is not one.
pub const CLUSTER_ID_FILE_BYTES_MAX: u64 = 256;
/// How often each shard looks for logs whose writes are failing: a broker
/// whose disk fails steps out of the ISRs within about this long after its
/// first failed write.
pub const STORAGE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);
/// How long a broker's writes must succeed, after they failed, before it
/// registers again and may lead: a disk whose space comes and goes (one
/// kept nearly full by something else) must not move leaderships back and
/// forth.
pub const STORAGE_RECOVERY_HOLD: std::time::Duration = std::time::Duration::from_secs(2);
/// ISR changes in one AlterPartition request to the controller: one
/// metadata write for up to this many partitions (a few hundred KiB of
/// records, well inside a metadata entry).
pub const ISR_CHANGES_PER_REQUEST_MAX: usize = 1000;
/// Leader-epoch checkpoints a shard writes at once when metadata gives
/// it new leaderships: enough syncs in flight to keep the disk's queue
/// busy, few enough not to hold thousands of files open.
pub const LEADER_EPOCH_WRITES_IN_FLIGHT: usize = 64;
/// Partition logs a shard opens at once when metadata gives it new
/// replicas (a topic created, a reassignment).
pub const LOG_OPENS_IN_FLIGHT: usize = 64;
/// How often a leader looks for followers that fell out of sync.
pub const ISR_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// Kafka's default `leader.imbalance.check.interval.seconds` (300 s).
pub const LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT: u64 = 300_000;

/// How often a shard looks whether file work handed to a thread of its own
/// (a partition's move to another data directory) is done: a plain thread
/// cannot wake a shard.
pub const OFF_SHARD_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// How often each shard publishes its metrics snapshot (partition gauges,
/// bytes per topic, committed offsets, executor and cache figures) for the
/// admin port to read. A scrape sees values at most this old; the work per
/// shard is one walk over its partitions per interval, whatever the scrape
/// rate, so scrapes cannot add load to a shard.
pub const METRICS_PUBLISH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Request counters are kept per Kafka api key, indexed by the key: every
/// key Sluice implements (the highest is ListConfigResources, 74) is below
/// this. A request of a larger key is refused before it is counted.
pub const METRICS_API_KEYS_MAX: usize = 128;
/// Upper bounds, in microseconds, of the request-duration histogram's
/// buckets (the `le` labels, in seconds), from a cached produce to a fetch
/// long-polled to its longest wait. Dense below 2.5 ms, where a durable
/// produce's percentiles lie: with only 100, 250, 500 µs and 1, 2.5 ms a
/// p99 between 1 and 2.5 ms could not be read from the histogram.
pub const REQUEST_DURATION_BUCKETS_MICROS: [u64; 24] = [
    50, 100, 150, 200, 250, 300, 400, 500, 750, 1_000, 1_500, 2_000, 2_500, 5_000, 10_000, 25_000,
    50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
const _: () = {
    let buckets = &REQUEST_DURATION_BUCKETS_MICROS;
    let mut index = 1;
    while index < buckets.len() {
        assert!(buckets[index - 1] < buckets[index]);
        index += 1;
    }
};
/// Committed offsets (group, partition) a shard publishes for the consumer
/// lag gauges: beyond it the rest are left out of the scrape (and a warning
/// logged once), so that thousands of groups cannot make every scrape
/// huge.
pub const METRICS_COMMITTED_OFFSETS_MAX: usize = 100_000;

// ---- SASL (src/sasl) --------------------------------------------------

/// Longest frame read from a connection on a SASL listener before it has
/// authenticated. The requests allowed then (ApiVersions, SaslHandshake,
/// SaslAuthenticate carrying a PLAIN or SCRAM message) take a few hundred
/// bytes; Kafka's own cap (`sasl.server.max.receive.size`) is 512 KiB, which
/// GSSAPI and OAUTHBEARER tokens need and these mechanisms do not. A client
/// that has not said who it is gets no more of the broker's memory.
pub const UNAUTHENTICATED_REQUEST_BYTES_MAX: usize = 16 * 1024;
const _: () = assert!(UNAUTHENTICATED_REQUEST_BYTES_MAX <= REQUEST_BYTES_MAX);
const _: () =
    assert!(UNAUTHENTICATED_REQUEST_BYTES_MAX > SASL_USER_BYTES_MAX + SASL_PASSWORD_BYTES_MAX);
/// Fewest and most PBKDF2 iterations of a stored SCRAM credential: Kafka's
/// bounds (RFC 7677 asks for at least 4096; above 16384 every PLAIN login
/// and every credential change costs more CPU than it buys).
pub const SCRAM_ITERATIONS_MIN: u32 = 4096;
pub const SCRAM_ITERATIONS_MAX: u32 = 16384;
/// Iterations of a credential `sluice user create` makes (Kafka's default).
pub const SCRAM_ITERATIONS_DEFAULT: u32 = 4096;
const _: () = assert!(
    SCRAM_ITERATIONS_MIN <= SCRAM_ITERATIONS_DEFAULT
        && SCRAM_ITERATIONS_DEFAULT <= SCRAM_ITERATIONS_MAX
);
/// Random salt bytes of a new credential (RFC 5802 asks for a salt unique
/// per user; 32 random bytes make a repeat across users unthinkable).
pub const SCRAM_SALT_BYTES: usize = 32;
/// Salt lengths a stored credential may have: RFC 5802 sets none; 8 bytes
/// is the least any SCRAM implementation writes, 64 more than any needs.
pub const SCRAM_SALT_BYTES_MIN: usize = 8;
pub const SCRAM_SALT_BYTES_MAX: usize = 64;
const _: () =
    assert!(SCRAM_SALT_BYTES_MIN <= SCRAM_SALT_BYTES && SCRAM_SALT_BYTES <= SCRAM_SALT_BYTES_MAX);
/// Random bytes of the server's nonce (base64: 32 characters), as much
/// entropy as a SHA-256 output.
pub const SCRAM_SERVER_NONCE_BYTES: usize = 24;
/// Longest client nonce accepted: librdkafka and the Java client send
/// 32 to 48 characters.
pub const SCRAM_CLIENT_NONCE_BYTES_MAX: usize = 256;
/// Random bytes of the nonce Sluice's own client sends (base64: 32
/// characters), as much entropy as the server's.
pub const SCRAM_CLIENT_NONCE_BYTES: usize = 24;
const _: () = assert!(SCRAM_CLIENT_NONCE_BYTES.div_ceil(3) * 4 <= SCRAM_CLIENT_NONCE_BYTES_MAX);
/// Longest user name (RFC 4616's limit for PLAIN's authentication id, kept
/// for SCRAM too so that one credential serves both).
pub const SASL_USER_BYTES_MAX: usize = 255;
/// Longest password accepted by PLAIN and by `sluice user create`.
pub const SASL_PASSWORD_BYTES_MAX: usize = 1024;
/// Largest credential file read at start (about 50,000 users with both
/// SCRAM mechanisms): a bigger one is refused rather than read.
pub const CREDENTIALS_FILE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Most ACLs a broker keeps: CreateAcls refuses more, and a larger file is
/// not read. Each check walks the ACLs of one resource only, so the bound
/// is on the file and on memory, not on the cost of a request.
pub const ACLS_MAX: usize = 100_000;
/// Largest ACL file read at start: `ACLS_MAX` entries with names, principals
/// and hosts of a few hundred bytes each.
pub const ACLS_FILE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Longest resource name, principal or host an ACL holds (a u16 on disk;
/// Kafka's topic names are at most 249 bytes).
pub const ACL_FIELD_BYTES_MAX: usize = 4096;

/// Kafka's `quota.window.num` default: client quota rates are measured over
/// this many samples...
pub const QUOTA_WINDOW_SAMPLES: usize = 11;
/// ...each Kafka's `quota.window.size.seconds` default long.
pub const QUOTA_WINDOW_SAMPLE_MS: u64 = 1_000;
/// The longest throttle a quota imposes on one response: the whole quota
/// window. Kafka's formula has no bound; one so large that a client would
/// stop reading for longer than its request timeout (30 s by default) helps
/// nobody, and the window is where the rate is measured anyway.
pub const QUOTA_THROTTLE_MS_MAX: u64 = QUOTA_WINDOW_SAMPLES as u64 * QUOTA_WINDOW_SAMPLE_MS;
/// Rate sensors one shard keeps (one per user and client id a quota
/// applies to). Past it, the sensors idle for a whole window are dropped
/// first; if none is, the new client is measured from nothing each time
/// (it is never refused).
pub const QUOTA_SENSORS_MAX: usize = 10_000;
/// How often a shard whose quota sensors are active reports their rates to
/// the other shards (see `quota`): what another shard took is seen at most
/// this late, but for bursts, which are reported at once (a client's first
/// window of quota goes by in milliseconds).
pub const QUOTA_SHARE_INTERVAL_MS: u64 = 100;
/// Intervals a shard's report counts for.
pub const QUOTA_SHARE_STALE_INTERVALS: u64 = 5;
const _: () = assert!(
    QUOTA_SHARE_INTERVAL_MS * QUOTA_SHARE_STALE_INTERVALS < QUOTA_WINDOW_SAMPLE_MS,
    "a report counts for less than one sample"
);
/// Client quota entities in one AlterClientQuotas request, and values of
/// one entity: the metadata image holds them all on every shard.
pub const QUOTA_ENTRIES_MAX: usize = 1_000;
/// Client quota entities the cluster holds.
pub const QUOTA_ENTITIES_MAX: usize = 100_000;
const _: () = assert!(
    QUOTA_WINDOW_SAMPLES >= 2,
    "Kafka's rate needs a full sample"
);
const _: () = assert!(QUOTA_ENTRIES_MAX <= QUOTA_ENTITIES_MAX);

/// How long a fixed listening port held by another listener is retried
/// before starting fails. A broker stopped or killed a moment ago (a
/// supervisor's restart) leaves its listeners open until the kernel has
/// torn down its io_uring rings, which happens after the process is reaped
/// (a pending accept holds the socket).
pub const PORT_HELD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
pub const PORT_HELD_RETRY: std::time::Duration = std::time::Duration::from_millis(100);
