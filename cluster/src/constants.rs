//! Every bound of the cluster layer, in one place.

/// The metadata snapshot file, read whole at start.
pub const METADATA_SNAPSHOT_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// One metadata log entry (the records of one controller operation, e.g. a
/// CreateTopics request): about 140,000 new partitions.
pub const METADATA_ENTRY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Entries applied since the last snapshot after which a new one is taken.
pub const SNAPSHOT_ENTRIES_DEFAULT: u64 = 1024;
/// Bytes of entries since the last snapshot after which a new one is taken.
pub const SNAPSHOT_LOG_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;
/// The log file: entries between snapshots, plus one entry over the
/// threshold, with room to spare.
pub const METADATA_LOG_BYTES_MAX: u64 =
    4 * (SNAPSHOT_LOG_BYTES_DEFAULT + METADATA_ENTRY_BYTES_MAX as u64);
/// One Raft tick. With [`ELECTION_TICKS`] a follower stands for election
/// 0.5–1 s after the leader's last heartbeat: quick failover on a LAN, and
/// still ten heartbeats of slack for a stalled process.
pub const TICK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);
/// How often a voter whose metadata log failed (a full disk) checks whether
/// it can write again and take part in the quorum again.
pub const QUORUM_REJOIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Peer messages waiting for the quorum's driver; more are dropped (raft-rs
/// sends again) so a flood cannot grow memory.
pub const QUORUM_INBOX_MAX: usize = 4096;
/// Raft ticks without a heartbeat before a follower stands for election
/// (raft-rs randomises the timeout between this and twice this).
pub const ELECTION_TICKS: usize = 10;
/// Raft ticks between a leader's heartbeats.
pub const HEARTBEAT_TICKS: usize = 2;
/// The shortest election timeout: a voter silent for this long would not be
/// counted as active by the leader's check-quorum, so it is no target for a
/// leadership transfer.
pub const ELECTION_TIMEOUT_MIN: std::time::Duration =
    std::time::Duration::from_millis(TICK_INTERVAL.as_millis() as u64 * ELECTION_TICKS as u64);
/// How long a follower waits, after its quorum leader's connection closed,
/// for a sign of life before standing for election at once: a live leader
/// whose connection broke reconnects with its next message (heartbeats
/// every `HEARTBEAT_TICKS` ticks, 100 ms).
pub const LEADER_LOSS_GRACE: std::time::Duration = std::time::Duration::from_millis(200);
/// Bytes of entries in one append message to a follower.
pub const APPEND_MESSAGE_BYTES_MAX: u64 = 1024 * 1024;
/// Append messages in flight to one follower.
pub const APPENDS_IN_FLIGHT_MAX: usize = 64;

/// A controller-port frame: a Raft message carrying a snapshot is the
/// largest.
pub const CONTROLLER_FRAME_BYTES_MAX: usize = METADATA_SNAPSHOT_BYTES_MAX as usize + 1024 * 1024;
/// A frame's payload is read this much at a time, so a length that lies
/// costs no more memory than the bytes that really arrive.
pub const CONTROLLER_READ_CHUNK_BYTES: usize = 64 * 1024;
/// Messages queued for one peer; more are dropped (raft-rs sends again).
pub const PEER_QUEUE_MAX: usize = 1024;
pub const CONTROLLER_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// Wait after a peer could not be reached before dialling it again.
pub const CONTROLLER_RECONNECT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a voter holds an observer's poll open when it has nothing
/// newer: the observer's heartbeat interval on the active controller, well
/// inside the default 1.5 s broker session.
pub const OBSERVER_FETCH_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
/// Time beyond [`OBSERVER_FETCH_WAIT`] an observer waits for an answer
/// before it tries the next voter.
pub const OBSERVER_FETCH_GRACE: std::time::Duration = std::time::Duration::from_millis(750);
/// How long a voter waits for an observer's proposal to apply.
pub const OBSERVER_PROPOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Incarnations of one node id whose last frame the quorum remembers: the
/// live one, a restarted one, and a duplicate (a second process with the
/// same id); more are forgotten oldest first, so a peer that sends hellos
/// with ever new incarnations costs no more memory.
pub const INCARNATIONS_HEARD_MAX: usize = 4;

const _: () = assert!(HEARTBEAT_TICKS < ELECTION_TICKS);
const _: () =
    assert!(LEADER_LOSS_GRACE.as_millis() > TICK_INTERVAL.as_millis() * HEARTBEAT_TICKS as u128);
const _: () = assert!(SNAPSHOT_LOG_BYTES_DEFAULT < METADATA_LOG_BYTES_MAX);
const _: () = assert!(APPEND_MESSAGE_BYTES_MAX <= METADATA_ENTRY_BYTES_MAX as u64);
