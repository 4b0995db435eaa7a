//! The controller port: Raft messages between the quorum's voters over TCP,
//! forwarded controller requests, and observers following the metadata
//! (see [`crate::observer`]).
//!
//! Each voter dials every other voter and keeps one outbound connection per
//! peer; the connection opens with a hello frame naming the dialling node
//! and its incarnation (random per process start, so that the quorum tells
//! a live broker from a second process started with its id), and every
//! later frame carries one Raft message, which must come from that node. Frames are `[u32 length][u8 kind][payload]`, big-endian. A
//! frame's length is never trusted for allocation: the buffer grows only as
//! bytes arrive, up to [`CONTROLLER_FRAME_BYTES_MAX`]. Anything malformed
//! closes that connection and nothing else.
//!
//! Delivery is best effort, as Raft expects: messages queued for a peer
//! that cannot be reached are dropped, and raft-rs sends again.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use glommio::net::{TcpListener, TcpStream};

use crate::stream::Conn;
use protobuf::Message as _;
use raft::prelude::Message;
use sluice_engine::notify::Signal;

use crate::codec::{DecodeError, Reader};
use crate::constants::{
    CONTROLLER_CONNECT_TIMEOUT, CONTROLLER_FRAME_BYTES_MAX, CONTROLLER_READ_CHUNK_BYTES,
    CONTROLLER_RECONNECT_BACKOFF, LEADER_LOSS_GRACE, PEER_QUEUE_MAX,
};
use crate::node::{node_id, raft_id};
use crate::Quorum;

const KIND_HELLO: u8 = 1;
const KIND_RAFT: u8 = 2;
/// A controller request from a node that is not the active controller.
const KIND_FORWARD: u8 = 3;
/// The active controller's answer to a forwarded request.
const KIND_ANSWER: u8 = 4;

/// Serves a forwarded controller request: request bytes in, answer out
/// (the broker layer encodes both).
pub type Forwarder = Rc<dyn Fn(Vec<u8>) -> Pin<Box<dyn Future<Output = Vec<u8>>>>>;
/// Length u32 and kind u8.
const FRAME_HEADER_BYTES: usize = 5;

struct Peer {
    address: SocketAddr,
    queue: RefCell<VecDeque<Message>>,
    signal: Signal,
}

/// Outbound queues to the other voters, and the tasks that drain them.
#[derive(Clone)]
pub struct Peers {
    node_id: i32,
    /// This process's incarnation, named in every hello.
    incarnation: u64,
    peers: Rc<BTreeMap<i32, Peer>>,
}

impl Peers {
    /// `voters`: every voter's node id and controller address (this node's
    /// own entry is skipped).
    pub fn new(node_id: i32, incarnation: u64, voters: &[(i32, SocketAddr)]) -> Peers {
        let peers = voters
            .iter()
            .filter(|(id, _)| *id != node_id)
            .map(|(id, address)| {
                let peer = Peer {
                    address: *address,
                    queue: RefCell::new(VecDeque::new()),
                    signal: Signal::new(),
                };
                (*id, peer)
            })
            .collect();
        Peers {
            node_id,
            incarnation,
            peers: Rc::new(peers),
        }
    }

    /// Queues a message for its peer; dropped when the queue is full or the
    /// peer is unknown.
    pub fn send(&self, message: Message) {
        let Some(peer) = self.peers.get(&node_id(message.to)) else {
            return;
        };
        let mut queue = peer.queue.borrow_mut();
        if queue.len() >= PEER_QUEUE_MAX {
            return;
        }
        queue.push_back(message);
        drop(queue);
        peer.signal.notify();
    }

    /// Starts one sender task per peer on the current executor.
    pub fn start_senders(&self) {
        for id in self.peers.keys() {
            let peers = self.clone();
            let id = *id;
            glommio::spawn_local(async move { peers.send_loop(id).await }).detach();
        }
    }

    async fn send_loop(self, id: i32) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let mut stream: Option<Conn> = None;
        loop {
            let queued = peer
                .signal
                .wait_for(|| (!peer.queue.borrow().is_empty()).then_some(()));
            queued.await;
            if stream.as_ref().is_some_and(closed_by_peer) {
                tracing::debug!(
                    peer = id,
                    "controller peer closed its connection; reconnecting"
                );
                stream = None;
            }
            if stream.is_none() {
                match connect(peer.address, self.node_id, Some(self.incarnation)).await {
                    Ok(connected) => stream = Some(connected),
                    Err(error) => {
                        tracing::debug!(peer = id, %error, "controller peer unreachable");
                        peer.queue.borrow_mut().clear();
                        glommio::timer::sleep(CONTROLLER_RECONNECT_BACKOFF).await;
                        continue;
                    }
                }
            }
            let messages: Vec<Message> = peer.queue.borrow_mut().drain(..).collect();
            let mut bytes = Vec::new();
            for message in messages {
                match message.write_to_bytes() {
                    Ok(payload) => push_frame(&mut bytes, KIND_RAFT, &payload),
                    Err(error) => tracing::error!(%error, "a raft message could not be encoded"),
                }
            }
            if let Some(connected) = stream.as_mut() {
                if let Err(error) = write_frames(connected, &bytes).await {
                    tracing::debug!(peer = id, %error, "controller connection lost");
                    stream = None;
                }
            }
        }
    }
}

/// Whether the peer has closed `stream` (its process died, or restarted):
/// nothing is ever sent back on a connection that carries Raft messages,
/// so a readable end of stream or a reset means it is gone. Without this
/// check the first messages written after a peer died are taken by the
/// kernel and lost, and the lost one may be a vote the new leader's
/// election waits for (an election timeout, 0.5-1 s, instead of a round
/// trip).
fn closed_by_peer(stream: &Conn) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: a one-byte buffer owned here and a socket descriptor the
    // stream keeps open for the duration of the call; MSG_PEEK leaves any
    // data in place and MSG_DONTWAIT never blocks.
    let read = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match read {
        0 => true,
        read if read > 0 => false,
        _ => std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock,
    }
}

pub(crate) fn push_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.extend_from_slice(&((payload.len() + 1) as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

/// Dials a peer's controller port and says who is calling: the node id,
/// and the process's incarnation when the connection carries its liveness
/// or its registration (a forwarded request names none).
pub(crate) async fn connect(
    address: SocketAddr,
    node_id: i32,
    incarnation: Option<u64>,
) -> std::io::Result<Conn> {
    let timeout = async {
        glommio::timer::sleep(CONTROLLER_CONNECT_TIMEOUT).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        ))
    };
    let connect = async {
        TcpStream::connect(address)
            .await
            .map_err(|error| std::io::Error::other(error.to_string()))
    };
    let stream = connect.or(timeout).await?;
    stream.set_nodelay(true).ok();
    let mut stream = Conn::dialled(stream, address)
        .or(handshake_timeout())
        .await?;
    let mut payload = node_id.to_be_bytes().to_vec();
    if let Some(incarnation) = incarnation {
        payload.extend_from_slice(&incarnation.to_be_bytes());
    }
    let mut hello = Vec::new();
    push_frame(&mut hello, KIND_HELLO, &payload);
    write_frames(&mut stream, &hello).await?;
    Ok(stream)
}

/// A TLS handshake that takes longer than a connect may is given up.
async fn handshake_timeout() -> std::io::Result<Conn> {
    glommio::timer::sleep(CONTROLLER_CONNECT_TIMEOUT).await;
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "TLS handshake timed out",
    ))
}

/// Writes whole frames and pushes them out: over TLS, what the record
/// layer still holds goes to the socket only on a flush.
pub(crate) async fn write_frames(stream: &mut Conn, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Reads one frame; the buffer grows only as bytes arrive.
pub(crate) async fn read_frame(stream: &mut Conn) -> Result<Option<(u8, Vec<u8>)>, String> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let mut filled = 0;
    while filled < FRAME_HEADER_BYTES {
        let read = stream
            .read(&mut header[filled..])
            .await
            .map_err(|error| error.to_string())?;
        if read == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err("closed mid-frame".into())
            };
        }
        filled += read;
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > CONTROLLER_FRAME_BYTES_MAX {
        return Err(format!(
            "frame of {len} bytes (1 to {CONTROLLER_FRAME_BYTES_MAX} allowed)"
        ));
    }
    let kind = header[4];
    let mut payload = Vec::new();
    let wanted = len - 1;
    let mut chunk = vec![0u8; CONTROLLER_READ_CHUNK_BYTES];
    while payload.len() < wanted {
        let take = (wanted - payload.len()).min(chunk.len());
        let read = stream
            .read(&mut chunk[..take])
            .await
            .map_err(|error| error.to_string())?;
        if read == 0 {
            return Err("closed mid-frame".into());
        }
        payload.extend_from_slice(&chunk[..read]);
    }
    Ok(Some((kind, payload)))
}

/// Sends a controller request to the node at `address` and waits for its
/// answer, until `deadline`.
pub async fn forward(
    address: SocketAddr,
    node_id: i32,
    request: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, String> {
    let exchange = async {
        let mut stream = connect(address, node_id, None)
            .await
            .map_err(|error| format!("connecting to {address}: {error}"))?;
        let mut frame = Vec::with_capacity(request.len() + FRAME_HEADER_BYTES);
        push_frame(&mut frame, KIND_FORWARD, request);
        write_frames(&mut stream, &frame)
            .await
            .map_err(|error| format!("sending to {address}: {error}"))?;
        match read_frame(&mut stream).await? {
            Some((KIND_ANSWER, answer)) => Ok(answer),
            Some((kind, _)) => Err(format!("{address} answered with frame kind {kind}")),
            None => Err(format!("{address} closed the connection without answering")),
        }
    };
    let timeout = async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        Err(format!("{address} did not answer in time"))
    };
    exchange.or(timeout).await
}

/// Accepts peers' connections: hands their Raft messages to the quorum and
/// serves their forwarded controller requests.
pub async fn serve(
    listener: TcpListener,
    config: ServeConfig,
    quorum: Quorum,
    forwarder: Forwarder,
) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "accepting on the controller port failed");
                glommio::timer::sleep(CONTROLLER_RECONNECT_BACKOFF).await;
                continue;
            }
        };
        let config = config.clone();
        let quorum = quorum.clone();
        let forwarder = Rc::clone(&forwarder);
        glommio::spawn_local(async move {
            let peer = stream.peer_addr().ok();
            let stream = match Conn::accepted(stream).or(handshake_timeout()).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(?peer, %error, "controller connection refused");
                    return;
                }
            };
            if let Err(reason) = serve_peer(stream, &config, &quorum, &forwarder).await {
                tracing::info!(?peer, %reason, "controller connection closed");
            }
        })
        .detach();
    }
}

/// What the controller port's server needs besides the quorum.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Node ids of the voters: only they may send Raft messages.
    pub voters: Vec<i32>,
    /// Kafka's `broker.session.timeout.ms`: a registration that would
    /// replace a broker heard from within it is refused (see
    /// [`crate::observer`]).
    pub broker_session: Duration,
}

/// Who dialled, from the connection's hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub from: i32,
    /// The dialling process's incarnation; `None` from a forwarded
    /// request's connection, or from a node that predates it.
    pub incarnation: Option<u64>,
}

/// A hello's payload: the node id (i32), then optionally the incarnation
/// (u64).
fn decode_hello(payload: &[u8]) -> Result<Hello, DecodeError> {
    let mut reader = Reader::new(payload);
    let from = reader.i32()?;
    let incarnation = if payload.len() > 4 {
        Some(reader.u64()?)
    } else {
        None
    };
    reader.finish()?;
    Ok(Hello { from, incarnation })
}

async fn serve_peer(
    mut stream: Conn,
    config: &ServeConfig,
    quorum: &Quorum,
    forwarder: &Forwarder,
) -> Result<(), String> {
    let hello = match read_frame(&mut stream).await? {
        Some((KIND_HELLO, payload)) => {
            decode_hello(&payload).map_err(|error| format!("a malformed hello: {error}"))?
        }
        Some((kind, _)) => return Err(format!("expected a hello frame, got kind {kind}")),
        None => return Ok(()),
    };
    let from = hello.from;
    let mut heartbeats = false;
    let outcome = serve_frames(
        &mut stream,
        hello,
        config,
        quorum,
        forwarder,
        &mut heartbeats,
    )
    .await;
    // Only the registered process's connection closing tells of its death:
    // a second process started with its id (refused, and exiting) closes
    // connections of its own.
    if heartbeats && of_registered(quorum, &hello) {
        // The peer's kernel closes its sockets when the process dies: the
        // active controller may fence it without waiting out its session
        // (a live peer reconnects at once and is heard again).
        quorum.disconnected(from);
        glommio::spawn_local(replace_a_lost_leader(
            quorum.clone(),
            from,
            config.voters.clone(),
        ))
        .detach();
    }
    outcome
}

/// After the connection of node `from` closed: if `from` led the quorum
/// and is still silent after [`LEADER_LOSS_GRACE`], one follower, the
/// lowest-numbered voter other than `from`, stands for election at once
/// instead of waiting out an election timeout (0.5-1 s), which would
/// otherwise come on top of every failover that loses the active
/// controller. Only one stands, so the two survivors of a 3-voter quorum
/// do not split their votes.
async fn replace_a_lost_leader(quorum: Quorum, from: i32, voters: Vec<i32>) {
    let Some(me) = quorum.voter_id() else {
        return;
    };
    let status = quorum.status();
    if status.leader != Some(from) || status.is_leader {
        return;
    }
    let designated = voters.iter().copied().filter(|id| *id != from).min();
    if designated != Some(me) {
        return;
    }
    let closed_at = std::time::Instant::now();
    glommio::timer::sleep(LEADER_LOSS_GRACE).await;
    let silent = quorum
        .last_heard(from)
        .is_none_or(|heard| heard <= closed_at);
    if silent {
        quorum.campaign_now(from, status.term);
    }
}

/// Whether a connection's peer is the process registered under its node
/// id (or cannot be told apart from it: no hello incarnation, a forwarded
/// request, or no registration yet).
fn of_registered(quorum: &Quorum, hello: &Hello) -> bool {
    let registered = quorum
        .image()
        .brokers
        .get(&hello.from)
        .map(|broker| broker.incarnation);
    match (hello.incarnation, registered) {
        (Some(incarnation), Some(registered)) => incarnation == registered,
        _ => true,
    }
}

/// Serves the frames of node `from`'s connection; sets `heartbeats` once
/// it has carried a frame the peer's liveness is judged by (Raft messages,
/// an observer's polls), not only forwarded requests.
async fn serve_frames(
    stream: &mut Conn,
    hello: Hello,
    config: &ServeConfig,
    quorum: &Quorum,
    forwarder: &Forwarder,
    heartbeats: &mut bool,
) -> Result<(), String> {
    let from = hello.from;
    let voters = &config.voters;
    let voter = voters.contains(&from);
    let mut served = crate::observer::Served::default();
    while let Some((kind, mut payload)) = read_frame(stream).await? {
        // Any frame is a sign of life (an observer's polls are its only
        // heartbeats), but only of the registered process: a restarted
        // one, not registered yet, must not keep its dead predecessor
        // from being fenced (and so taken out of the ISRs, whose data it
        // may have lost) by talking under the same id.
        if of_registered(quorum, &hello) {
            quorum.heard(from);
        }
        if let Some(incarnation) = hello.incarnation {
            quorum.heard_incarnation(from, incarnation);
        }
        *heartbeats |= kind == KIND_RAFT || kind == crate::observer::KIND_FETCH;
        let answer = match kind {
            KIND_FORWARD => Some((KIND_ANSWER, forwarder(std::mem::take(&mut payload)).await)),
            crate::observer::KIND_FETCH => Some((
                crate::observer::KIND_IMAGE,
                crate::observer::answer_fetch(quorum, &mut served, &payload)
                    .await
                    .map_err(|error| error.to_string())?,
            )),
            crate::observer::KIND_PROPOSE => Some((
                crate::observer::KIND_PROPOSED,
                crate::observer::answer_propose(quorum, hello, config.broker_session, &payload)
                    .await
                    .map_err(|error| error.to_string())?,
            )),
            _ => None,
        };
        if let Some((answer_kind, answer)) = answer {
            let mut frame = Vec::with_capacity(answer.len() + FRAME_HEADER_BYTES);
            push_frame(&mut frame, answer_kind, &answer);
            write_frames(stream, &frame)
                .await
                .map_err(|error| error.to_string())?;
            continue;
        }
        if kind == KIND_RAFT && !voter {
            return Err(format!(
                "node {from} is not a voter of this quorum (voters: {voters:?}) and sent a Raft message; check controller_voters on both nodes"
            ));
        }
        if kind != KIND_RAFT {
            return Err(format!("unknown frame kind {kind}"));
        }
        let message = Message::parse_from_bytes(&payload)
            .map_err(|error| format!("malformed raft message: {error}"))?;
        if message.from != raft_id(from) {
            return Err(format!(
                "node {from} sent a message signed as node {}",
                node_id(message.from)
            ));
        }
        quorum.deliver(message);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellos_name_the_node_and_maybe_its_incarnation() {
        let mut with = 4i32.to_be_bytes().to_vec();
        assert_eq!(
            decode_hello(&with).unwrap(),
            Hello {
                from: 4,
                incarnation: None
            }
        );
        with.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(
            decode_hello(&with).unwrap(),
            Hello {
                from: 4,
                incarnation: Some(7)
            }
        );
        for len in [0, 3, 5, 11] {
            assert!(decode_hello(&with[..len]).is_err(), "cut at {len}");
        }
        with.push(0);
        assert!(decode_hello(&with).is_err(), "a byte too many");
    }
}
