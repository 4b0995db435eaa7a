//! Connections: framing, in-order pipelining, and the per-shard accept loop.
//!
//! Each connection has a reader (frames → decoded requests → one handler task
//! each) and a writer that awaits the handler tasks in the order the requests
//! arrived, so responses keep Kafka's ordering even though handlers run
//! concurrently. The queue between them is bounded (`IN_FLIGHT_REQUESTS_MAX`):
//! a client that pipelines more waits, it does not grow the broker's memory.
//! A malformed frame ends only its own connection, after the responses to
//! the requests before it are sent.
//!
//! On a SASL_PLAINTEXT listener a connection first authenticates (see
//! `sasl::session`): until then its frames are capped at
//! `UNAUTHENTICATED_REQUEST_BYTES_MAX`, only ApiVersions, SaslHandshake and
//! SaslAuthenticate are decoded, and the SASL steps are answered in the
//! reader itself, in order, since each one moves the connection's state.
//!
//! On an SSL or SASL_SSL listener the connection is a TLS stream
//! (`tls.rs`) from its first byte: the handshake comes first, within
//! `TLS_HANDSHAKE_TIMEOUT_MS`, and requests and responses then pass through
//! rustls, which copies them once as it encrypts and decrypts (the gathering
//! `sendmsg` of plaintext connections has no TLS counterpart here).

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::AsyncReadExt;
use glommio::channels::local_channel;
use glommio::net::{TcpListener, TcpStream};
use glommio::task::JoinHandle;
use kafka_protocol::messages::{ApiKey, RequestHeader};

use crate::broker::Broker;
use crate::codec::{self, DecodeError, Request};
use crate::config::SecurityProtocol;
use crate::constants::{
    FRAME_PRESIZE_BYTES_MAX, FULL_ACCEPT_POLL_MS, IN_FLIGHT_REQUESTS_MAX, LOGGED_STRING_BYTES_MAX,
    PRODUCE_FRAME_COPY_BYTES_MAX, READ_CHUNK_BYTES, REQUEST_BYTES_MAX, SLOW_REQUEST_LOG_MS,
    TLS_HANDSHAKE_TIMEOUT_MS, UNAUTHENTICATED_REQUEST_BYTES_MAX,
};
use crate::handlers::{self, Session};
use crate::metrics::Tally;
use crate::request_quota;
use crate::sasl::session::Authenticate;
use crate::sasl::{Authenticator, Mechanism, Principal};
use crate::tls::{write_gathered, Stream};
use crate::wire::{receive_ready, write_frames, ResponseFrame};
use sluice_engine::ShardId;

/// Bytes read through glommio when a connection's socket is empty: the
/// start of the next request. The rest of a request is taken straight from
/// the socket (see `read_frame`).
const WAIT_READ_BYTES: usize = 16 * 1024;

/// Produce's API key, big-endian, as a frame starts with it.
const PRODUCE_API_KEY: [u8; 2] = 0i16.to_be_bytes();

/// Smallest request: api key, api version, correlation id.
const REQUEST_HEADER_BYTES_MIN: usize = 8;

/// The lengths a frame may declare, by where the connection stands.
#[derive(Clone, Copy)]
struct FrameBounds {
    min: usize,
    max: usize,
}

/// A PLAINTEXT listener's connection, or a SASL one that authenticated.
const AUTHENTICATED_FRAMES: FrameBounds = FrameBounds {
    min: REQUEST_HEADER_BYTES_MIN,
    max: REQUEST_BYTES_MAX,
};
/// Before SASL authentication only small requests are read.
const UNAUTHENTICATED_FRAMES: FrameBounds = FrameBounds {
    min: REQUEST_HEADER_BYTES_MIN,
    max: UNAUTHENTICATED_REQUEST_BYTES_MAX,
};
/// After a SaslHandshake v0, bare SASL tokens: no Kafka header, at least
/// one byte (no PLAIN or SCRAM client message is empty).
const RAW_TOKEN_FRAMES: FrameBounds = FrameBounds {
    min: 1,
    max: UNAUTHENTICATED_REQUEST_BYTES_MAX,
};

/// Connections open in this process, over all shards (each shard accepts on
/// its own listener): `max.connections` and `max.connections.per.ip` are
/// per broker, as in Kafka. Taken once per accepted and once per closed
/// connection, never per request.
struct OpenConnections {
    total: usize,
    by_ip: BTreeMap<IpAddr, usize>,
}

static OPEN_CONNECTIONS: Mutex<OpenConnections> = Mutex::new(OpenConnections {
    total: 0,
    by_ip: BTreeMap::new(),
});

fn open_connections() -> std::sync::MutexGuard<'static, OpenConnections> {
    // The counts stay consistent even if a holder panicked: every update
    // is a single increment or decrement.
    OPEN_CONNECTIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a connection was not admitted.
enum Refused {
    /// `max.connections`: it waits for a slot.
    BrokerFull,
    /// `max.connections.per.ip`: it is closed.
    AddressFull,
}

/// A connection counted against the limits; dropping it gives its slot back.
#[derive(Debug)]
struct Admitted {
    ip: IpAddr,
}

impl Admitted {
    /// Counts a connection from `ip`, unless the broker or that address is
    /// at its limit.
    fn admit(ip: IpAddr, config: &crate::config::BrokerConfig) -> Result<Admitted, Refused> {
        let mut open = open_connections();
        if open.total >= config.max_connections {
            return Err(Refused::BrokerFull);
        }
        let from_ip = open.by_ip.entry(ip).or_insert(0);
        if *from_ip >= config.max_connections_per_ip {
            return Err(Refused::AddressFull);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(Admitted { ip })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = open_connections();
        open.total = open.total.saturating_sub(1);
        if let Some(from_ip) = open.by_ip.get_mut(&self.ip) {
            *from_ip = from_ip.saturating_sub(1);
            if *from_ip == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

/// One client listener as its connections see it.
#[derive(Debug)]
pub struct Listener {
    /// Its place among the broker's listeners, the same on every shard: a
    /// connection handed to another shard is served there by that shard's
    /// listener of this index.
    pub index: usize,
    /// Kafka's listener name (see `ExtraListener::name`).
    pub name: String,
    pub protocol: SecurityProtocol,
    /// Host and port its clients are told this broker is at (Metadata,
    /// FindCoordinator, DescribeCluster), when it is not the first
    /// listener, whose address is the one the broker registers.
    pub advertised: Option<(String, u16)>,
}

/// Accepts connections on one of this shard's listeners until shutdown.
pub async fn accept_loop(broker: Rc<Broker>, listener: TcpListener, context: Rc<Listener>) {
    loop {
        // A full broker stops accepting, as Kafka's acceptor does: clients
        // wait in the kernel's backlog (or time out connecting) instead of
        // being accepted and closed over and over.
        while open_connections().total >= broker.config.max_connections {
            if broker.shutting_down.get() {
                return;
            }
            glommio::timer::sleep(Duration::from_millis(FULL_ACCEPT_POLL_MS)).await;
        }
        let accepted = listener.accept().await;
        if broker.shutting_down.get() {
            return;
        }
        match accepted {
            Ok(stream) => {
                let peer = stream.peer_addr();
                let ip = peer
                    .as_ref()
                    .map(|addr| addr.ip())
                    .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
                // Another shard may have taken the last slot since the check
                // above: the connection then waits for a slot, unserved, as
                // it would have in the backlog (this loop accepts nothing
                // else meanwhile). An address over its own limit is closed.
                let admitted = loop {
                    match Admitted::admit(ip, &broker.config) {
                        Ok(admitted) => break Some(admitted),
                        Err(Refused::AddressFull) => {
                            tracing::debug!(%ip, "connection closed: max.connections.per.ip reached");
                            break None;
                        }
                        Err(Refused::BrokerFull) => {
                            if broker.shutting_down.get() {
                                return;
                            }
                            glommio::timer::sleep(Duration::from_millis(FULL_ACCEPT_POLL_MS)).await;
                        }
                    }
                };
                let Some(admitted) = admitted else {
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let counted = place_connection(&broker);
                let shard = counted.shard_id();
                if shard == broker.shard {
                    spawn_connection(
                        Rc::clone(&broker),
                        stream,
                        Rc::clone(&context),
                        admitted,
                        counted,
                        Carried::default(),
                    );
                } else {
                    let moved = Moved {
                        listener: context.index,
                        admitted,
                        counted,
                        carried: Carried::default(),
                    };
                    let socket = duplicate(stream.as_raw_fd());
                    drop(stream);
                    if let Some(socket) = socket {
                        hand_over(&broker, shard, socket, moved);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A connection's place in one of the tallies of the shard that serves it;
/// dropping it takes the connection off that count.
struct Place {
    shard: Arc<crate::metrics::ShardMetrics>,
    tally: Tally,
}

impl Place {
    fn new(shard: Arc<crate::metrics::ShardMetrics>, tally: Tally) -> Place {
        shard.count(tally, true);
        Place { shard, tally }
    }

    fn shard_id(&self) -> ShardId {
        self.shard.shard
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.shard.count(self.tally, false);
    }
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place")
            .field("shard", &self.shard.shard)
            .field("tally", &self.tally)
            .finish()
    }
}

/// The shard with the fewest connections in `tally`: another one when it
/// has fewer than this one (and may take connections), else this one;
/// counted there at once, so that connections placed together spread.
fn place(broker: &Broker, tally: Tally, movable: bool) -> Place {
    let own = broker.metrics.shared_arc();
    let fewest = broker
        .config
        .metrics
        .shards()
        .iter()
        .filter(|shard| movable && shard.accepting() && shard.counted(tally) < own.counted(tally))
        .min_by_key(|shard| shard.counted(tally))
        .cloned()
        .unwrap_or(own);
    Place::new(fewest, tally)
}

/// The shard to serve a connection that is about to fetch for the first
/// time (`movable`: one that may move).
///
/// Connections are placed when they are accepted, before anything says what
/// they will carry, and a consumer's connection carries every byte it
/// fetches: in the 50-producer benchmark, every run whose consumers fell
/// behind the cache had both consumer connections on one shard (3 of 5
/// runs whose placement was recorded; the 2 that kept up had one on each).
/// That shard sent all 1.1 GB/s of responses beside its half of the
/// produce work while the other shard had CPU to spare. Kafka's
/// network threads take connections in turn and have the same blind spot;
/// a shard that cannot share a connection's work can hand the connection
/// over instead.
fn place_fetcher(broker: &Broker, movable: bool) -> Place {
    place(broker, Tally::Fetching, movable)
}

/// The shard to serve a connection just accepted. The kernel spreads
/// connections over the shards' sockets by a hash of their addresses, which
/// for a handful of clients often puts all of them on one shard (all of a
/// benchmark's six producer and consumer connections, in 2 runs of 5);
/// Kafka's acceptor hands connections to its network threads in turn.
fn place_connection(broker: &Broker) -> Place {
    place(broker, Tally::Connections, true)
}

/// Serves a connection on this shard until it closes, or until it moves to
/// another shard at its first fetch (see `place_fetcher`).
fn spawn_connection(
    broker: Rc<Broker>,
    stream: TcpStream,
    context: Rc<Listener>,
    admitted: Admitted,
    counted: Place,
    carried: Carried,
) {
    glommio::spawn_local(async move {
        let peer = stream
            .peer_addr()
            .map(|addr| addr.to_string())
            .unwrap_or_default();
        let listener = context.index;
        match serve_connection(Rc::clone(&broker), stream, context, carried).await {
            Ok(None) => {}
            Ok(Some(leaving)) => {
                // Counted where it goes, and no longer here.
                let to = leaving.fetching.shard_id();
                let moved = Moved {
                    listener,
                    admitted,
                    counted: Place::new(Arc::clone(&leaving.fetching.shard), Tally::Connections),
                    carried: Carried {
                        input: leaving.input,
                        fetching: Some(leaving.fetching),
                    },
                };
                drop(counted);
                hand_over(&broker, to, leaving.socket, moved);
            }
            Err(reason) => tracing::info!(%peer, %reason, "connection closed"),
        }
    })
    .detach();
}

/// What a connection takes along when it moves to another shard: the input
/// read but not yet handled (beginning with the frame that made it move),
/// and its place among the fetching connections, which also keeps it from
/// moving again.
#[derive(Debug, Default)]
pub struct Carried {
    input: BytesMut,
    fetching: Option<Place>,
}

/// A connection on its way to the shard that serves it: which listener took
/// it, its places in the counts (given back if it is dropped on the way,
/// e.g. at shutdown) and what it carries.
#[derive(Debug)]
struct Moved {
    listener: usize,
    admitted: Admitted,
    counted: Place,
    carried: Carried,
}

/// A connection that stopped being served here to move to the shard of its
/// place among the fetching connections: a duplicate of its socket (this
/// shard's copy closes with its stream), and the input read but not yet
/// handled.
struct Leaving {
    socket: OwnedFd,
    input: BytesMut,
    fetching: Place,
}

/// A connection handed to another shard: its socket and what goes with it.
#[derive(Debug)]
pub struct Adoption {
    socket: OwnedFd,
    moved: Moved,
}

/// Sends a connection to `shard`. glommio's socket cannot leave its
/// executor, so the other shard gets `socket`, a close-on-exec duplicate
/// (`duplicate`), and the caller closes its own copy.
fn hand_over(broker: &Rc<Broker>, shard: ShardId, socket: OwnedFd, moved: Moved) {
    let adoption = Adoption { socket, moved };
    let broker = Rc::clone(broker);
    glommio::spawn_local(async move {
        // Unanswered only when the mesh is closing; the adoption was
        // dropped with it, which closed the socket.
        let _ = broker
            .mesh
            .call(shard, crate::broker::ShardRequest::Adopt(adoption))
            .await;
    })
    .detach();
}

/// A close-on-exec duplicate of a socket's descriptor, `None` (logged) if
/// the process is out of descriptors: the connection then closes.
fn duplicate(fd: i32) -> Option<OwnedFd> {
    // SAFETY: duplicates a descriptor the caller holds open; the OwnedFd
    // below owns the copy.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if copy < 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "a connection could not be handed to another shard");
        return None;
    }
    // SAFETY: `copy` is a fresh descriptor nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Serves a connection another shard handed over.
pub(crate) fn adopt(broker: Rc<Broker>, adoption: Adoption) {
    if broker.shutting_down.get() {
        return;
    }
    let Adoption { socket, moved } = adoption;
    let Some(context) = broker.listener(moved.listener) else {
        tracing::warn!(
            listener = moved.listener,
            "a handed-over connection for an unknown listener was closed"
        );
        return;
    };
    // SAFETY: the descriptor is a connected TCP socket whose ownership the
    // OwnedFd passes on.
    let stream = unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) };
    spawn_connection(
        broker,
        stream,
        context,
        moved.admitted,
        moved.counted,
        moved.carried,
    );
}

/// Why a connection ended (logged once).
#[derive(Debug)]
enum Closed {
    Io(io::Error),
    Malformed(String),
    Idle,
    /// A request other than ApiVersions, SaslHandshake and SaslAuthenticate
    /// before the connection authenticated; its body was not decoded.
    Unauthenticated {
        api_key: i16,
    },
    /// A SASL step failed (after its error response, if it has one).
    Authentication(String),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Io(error) => write!(f, "i/o: {error}"),
            Closed::Malformed(reason) => write!(f, "malformed request: {reason}"),
            Closed::Idle => write!(f, "idle longer than connections.max.idle.ms"),
            Closed::Unauthenticated { api_key } => {
                write!(f, "api key {api_key} before SASL authentication")
            }
            Closed::Authentication(reason) => write!(f, "{reason}"),
        }
    }
}

type Pending = JoinHandle<Option<ResponseFrame>>;

/// The TLS handshake of a connection to an SSL or SASL_SSL listener, and
/// the principal its client certificate names (SSL only: on SASL_SSL the
/// principal comes from SASL, as in Kafka).
async fn tls_handshake(
    broker: &Broker,
    tls: &crate::tls::Tls,
    protocol: SecurityProtocol,
    stream: TcpStream,
) -> Result<(Stream, Option<Principal>), String> {
    let accepted =
        glommio::timer::timeout(Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS), async {
            tls.acceptor()
                .accept(stream)
                .await
                .map_err(glommio::GlommioError::IoError)
        })
        .await;
    let stream = match accepted {
        Ok(stream) => stream,
        Err(glommio::GlommioError::TimedOut(_)) => {
            return Err(format!(
                "no TLS handshake within {TLS_HANDSHAKE_TIMEOUT_MS} ms"
            ))
        }
        Err(error) => return Err(format!("TLS handshake failed: {error}")),
    };
    let principal = if protocol.is_sasl() {
        None
    } else {
        let certificate = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first());
        match certificate {
            None => None,
            Some(certificate) => {
                let Some(subject) = crate::tls::subject_name(certificate) else {
                    return Err("the client certificate's subject cannot be read".to_string());
                };
                let Some(user) = broker.config.tls_settings.principal_rules.apply(&subject) else {
                    return Err(format!(
                        "no ssl_principal_mapping_rules rule matches the client certificate's \
                         subject {}",
                        clip(&subject)
                    ));
                };
                let super_user = broker.config.sasl.super_users.contains(&user);
                Some(Principal { user, super_user })
            }
        }
    };
    Ok((
        Stream::Tls(Box::new(futures_rustls::TlsStream::Server(stream))),
        principal,
    ))
}

async fn serve_connection(
    broker: Rc<Broker>,
    stream: TcpStream,
    listener: Rc<Listener>,
    carried: Carried,
) -> Result<Option<Leaving>, String> {
    let socket_fd = stream.as_raw_fd();
    // ACLs name hosts by address; a peer whose address cannot be read
    // matches only ACLs for every host.
    let host = stream
        .peer_addr()
        .map(|address| address.ip().to_string())
        .unwrap_or_default();
    let protocol = listener.protocol;
    let mut session = Session::anonymous(&broker, &host, listener);
    // Plaintext connections read and write their socket directly (`fd`);
    // TLS ones only through rustls.
    let (stream, fd) = match (protocol.is_tls(), broker.config.tls.clone()) {
        (false, _) => (Stream::Plain(stream), Some(socket_fd)),
        // Start loads the keystore when any listener speaks TLS; never
        // serve a TLS listener in plaintext.
        (true, None) => return Err("a TLS listener without a loaded keystore".to_string()),
        (true, Some(tls)) => {
            let (stream, principal) = tls_handshake(&broker, &tls, protocol, stream).await?;
            if let Some(principal) = principal {
                tracing::debug!(%principal, super_user = principal.super_user, "TLS client certificate");
                session = session.authenticated(principal);
            }
            (stream, None)
        }
    };
    let (mut reader, writer) = futures_lite::io::split(stream);
    let (sender, receiver) = local_channel::new_bounded::<Pending>(IN_FLIGHT_REQUESTS_MAX);
    let writer_task = glommio::spawn_local(write_loop(writer, socket_fd, fd, receiver));
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms.max(1));
    let Carried {
        input: mut buffer,
        mut fetching,
    } = carried;
    buffer.reserve(READ_CHUNK_BYTES);
    let mut wait_buffer = vec![0u8; WAIT_READ_BYTES];
    // One idle timer for the connection's life, set again before each
    // wait: a timer made for each wait cost an allocation per request.
    let mut idle_timer = glommio::timer::Timer::new(idle);
    // On a SASL listener the connection authenticates first; the principal
    // it then holds goes with each of its requests.
    let mut authenticator = protocol.is_sasl().then(Authenticator::new);
    // KIP-368: when the session authenticated last must be renewed by, and
    // during a re-authentication the principal and mechanism it must keep.
    let mut session_expires: Option<Instant> = None;
    let mut reauthenticating: Option<(Principal, Mechanism)> = None;
    // A connection moves at most once, and only while nothing but its socket
    // holds its state: plaintext, without SASL.
    let movable = fd.is_some() && authenticator.is_none() && fetching.is_none();
    let outcome: Result<Option<(Bytes, Place)>, Closed> = async {
        loop {
            let pending = authenticator
                .as_ref()
                .filter(|authenticator| !authenticator.is_authenticated());
            let bounds = match pending {
                None => AUTHENTICATED_FRAMES,
                Some(authenticator) if authenticator.expects_raw_token() => RAW_TOKEN_FRAMES,
                Some(_) => UNAUTHENTICATED_FRAMES,
            };
            let Some(frame) = read_frame(
                &mut reader,
                &mut buffer,
                &mut wait_buffer,
                fd,
                (&mut idle_timer, idle),
                bounds,
            )
            .await?
            else {
                return Ok(None);
            };
            // A throttled connection (KIP-219) handles nothing more until
            // its throttle time is over; what the client sends meanwhile
            // waits in the socket.
            session.wait_unmuted().await;
            if let Some(authenticator) = authenticator.as_mut() {
                if starts_reauthentication(&broker, authenticator, &frame) {
                    // KIP-368: the connection authenticates again from the
                    // handshake on, and must come out as the same principal.
                    reauthenticating = authenticator
                        .principal()
                        .cloned()
                        .zip(authenticator.mechanism());
                    *authenticator = Authenticator::new();
                }
            }
            let (task, closing) = match authenticator.as_mut() {
                Some(authenticator) if !authenticator.is_authenticated() => {
                    let answer =
                        authenticate_frame(&broker, authenticator, &mut reauthenticating, frame)?;
                    if let Some(principal) = authenticator.principal() {
                        session = session.authenticated(principal.clone());
                        let lifetime =
                            authenticator.session_lifetime_ms(broker.config.sasl.reauth_ms);
                        session_expires = (lifetime > 0)
                            .then(|| Instant::now() + Duration::from_millis(lifetime));
                    }
                    answer
                }
                _ => {
                    if session_expires.is_some_and(|expires| Instant::now() >= expires) {
                        // Kafka closes a connection whose session expired
                        // at its next request other than a re-authentication.
                        return Err(Closed::Authentication(
                            "session expired without re-authentication \
                             (connections.max.reauth.ms)"
                                .to_string(),
                        ));
                    }
                    if fetching.is_none() && api_key_of(&frame) == Some(ApiKey::Fetch as i16) {
                        let counted = place_fetcher(&broker, movable);
                        if counted.shard_id() != broker.shard {
                            return Ok(Some((frame, counted)));
                        }
                        fetching = Some(counted);
                    }
                    (handle_frame(&broker, &session, frame)?, None)
                }
            };
            if let Some(task) = task {
                if sender.send(task).await.is_err() {
                    // The writer stopped: the peer is gone.
                    return Ok(None);
                }
            }
            if let Some(reason) = closing {
                // The answer is queued; the writer sends it, then the
                // connection closes.
                return Err(Closed::Authentication(reason));
            }
        }
    }
    .await;
    drop(sender);
    // Every answer to what came before goes out first, from here.
    let written = writer_task.await;
    match (outcome, written) {
        (Err(closed), _) => Err(closed.to_string()),
        (Ok(_), Err(error)) => Err(format!("write: {error}")),
        (Ok(None), Ok(())) => Ok(None),
        (Ok(Some((frame, place))), Ok(())) => {
            let Some(socket) = duplicate(socket_fd) else {
                return Err("out of file descriptors while moving".to_string());
            };
            // The frame goes back in front of what was read after it, as
            // it came off the wire.
            let mut input =
                BytesMut::with_capacity(FRAME_LENGTH_BYTES + frame.len() + buffer.len());
            input.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            input.extend_from_slice(&frame);
            input.extend_from_slice(&buffer);
            drop(reader);
            Ok(Some(Leaving {
                socket,
                input,
                fetching: place,
            }))
        }
    }
}

/// Bytes of a frame's length prefix.
const FRAME_LENGTH_BYTES: usize = 4;

/// The API key a request frame begins with, if it is long enough to say.
fn api_key_of(frame: &Bytes) -> Option<i16> {
    (frame.len() >= 2).then(|| i16::from_be_bytes([frame[0], frame[1]]))
}

/// Sends the responses in request order. `socket_fd` is the connection's
/// socket; `fd` the same when the connection is plaintext, whose pieces go
/// out with a gathering `sendmsg`, and `None` on TLS.
async fn write_loop(
    mut writer: futures_lite::io::WriteHalf<Stream>,
    socket_fd: i32,
    fd: Option<i32>,
    receiver: local_channel::LocalReceiver<Pending>,
) -> io::Result<()> {
    let mut gathered = Vec::new();
    let mut pieces = Vec::new();
    while let Some(task) = receiver.recv().await {
        let Some(Some(frame)) = task.await else {
            continue;
        };
        if frame.pieces.is_empty() {
            // No pieces: the request is answered by closing the connection
            // (an encoding failure, or an acks=0 produce Kafka refuses). The
            // reader is woken by the shutdown instead of waiting for the
            // client's next request or the idle timeout.
            // SAFETY: `socket_fd` belongs to the connection's stream, which
            // stays open until both halves are dropped after this task ends.
            unsafe { libc::shutdown(socket_fd, libc::SHUT_RDWR) };
            return Err(io::Error::other("the response is a closed connection"));
        }
        pieces.extend(frame.pieces);
        match fd {
            Some(fd) => write_frames(&mut writer, fd, &mut pieces).await?,
            None => write_gathered(&mut writer, &mut gathered, &mut pieces).await?,
        }
    }
    Ok(())
}

/// Reads one length-prefixed frame. `None` at a clean end of stream.
///
/// Bytes already in the socket are taken with a non-blocking `recv`
/// straight into the buffer's spare room; only when the socket is empty
/// does the reader wait through glommio (with the idle timeout), on a small
/// buffer of its own.
async fn read_frame(
    reader: &mut futures_lite::io::ReadHalf<Stream>,
    buffer: &mut BytesMut,
    wait_buffer: &mut [u8],
    fd: Option<i32>,
    (idle_timer, idle): (&mut glommio::timer::Timer, Duration),
    bounds: FrameBounds,
) -> Result<Option<Bytes>, Closed> {
    loop {
        let mut needed = None;
        if buffer.len() >= FRAME_LENGTH_BYTES {
            let declared = i32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
            if declared < bounds.min as i32 || declared as usize > bounds.max {
                return Err(Closed::Malformed(format!(
                    "frame length {declared} outside [{}, {}]",
                    bounds.min, bounds.max
                )));
            }
            let frame_end = FRAME_LENGTH_BYTES + declared as usize;
            if buffer.len() >= frame_end {
                buffer.advance(FRAME_LENGTH_BYTES);
                let frame = buffer.split_to(declared as usize);
                // The API key is the frame's first two bytes (the frame is
                // at least `bounds.min` long, which covers them).
                let produce = frame.get(..2) == Some(PRODUCE_API_KEY.as_slice());
                if produce && frame.len() < PRODUCE_FRAME_COPY_BYTES_MAX {
                    return Ok(Some(Bytes::copy_from_slice(&frame)));
                }
                return Ok(Some(frame.freeze()));
            }
            needed = Some(frame_end - buffer.len());
        }
        let start = buffer.len();
        // A frame of up to FRAME_PRESIZE_BYTES_MAX gets its room at once, so
        // it is received without being copied again as the buffer grows.
        // Beyond that the read window grows with what the peer has actually
        // sent (at most doubling the buffer per read), not with what its
        // length prefix claims: sizing the buffer for the declared length
        // made 4 bytes claiming 100 MiB cost 100 MiB of memory per connection.
        let chunk = match needed {
            Some(needed) if start + needed <= FRAME_PRESIZE_BYTES_MAX => {
                needed.max(READ_CHUNK_BYTES)
            }
            Some(needed) => needed.min(start).max(READ_CHUNK_BYTES),
            None => READ_CHUNK_BYTES,
        };
        // TLS bytes are only read through rustls, below.
        if let Some(fd) = fd {
            match receive_ready(fd, buffer, chunk) {
                Ok(Some(0)) => return end_of_stream(buffer),
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(error) => return Err(Closed::Io(error)),
            }
        }
        idle_timer.reset(idle);
        let read =
            futures_lite::future::or(async { Some(reader.read(wait_buffer).await) }, async {
                (&mut *idle_timer).await;
                None
            })
            .await;
        let read = match read {
            Some(Ok(read)) => read,
            Some(Err(error)) => return Err(Closed::Io(error)),
            None => return Err(Closed::Idle),
        };
        if read == 0 {
            return end_of_stream(buffer);
        }
        buffer.extend_from_slice(&wait_buffer[..read]);
    }
}

/// A clean end of stream between frames, or a peer gone mid-frame.
fn end_of_stream(buffer: &BytesMut) -> Result<Option<Bytes>, Closed> {
    if buffer.is_empty() {
        Ok(None)
    } else {
        Err(Closed::Malformed("connection closed mid-frame".into()))
    }
}

/// `text` cut to what a log line takes of a client's string.
pub(crate) fn clip(text: &str) -> &str {
    let mut end = text.len().min(LOGGED_STRING_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A frame decoded, or an ApiVersions of a version Sluice does not know.
// Made once per request and taken apart at once: boxing the large variant
// would cost an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Decoded {
    Request(RequestHeader, Request),
    UnknownApiVersions { correlation_id: i32 },
}

/// Decodes a frame's header and body.
fn decode_frame(frame: Bytes) -> Result<Decoded, Closed> {
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let mut body = frame;
    let header = match codec::decode_request_header(&mut body, api_key, api_version) {
        Ok(header) => header,
        Err(error) => {
            return Err(Closed::Malformed(format!(
                "api key {api_key} v{api_version}: {error}"
            )));
        }
    };
    if !handlers::is_supported(api_key, api_version) {
        if api_key == ApiKey::ApiVersions as i16 {
            return Ok(Decoded::UnknownApiVersions { correlation_id });
        }
        let client = header
            .client_id
            .as_ref()
            .map(|id| clip(id.as_str()).to_string())
            .unwrap_or_default();
        return Err(Closed::Malformed(format!(
            "unsupported api key {api_key} version {api_version} from client '{client}'"
        )));
    }
    let request =
        codec::decode_request(api_key, api_version, body).map_err(|error: DecodeError| {
            Closed::Malformed(format!("api key {api_key} v{api_version}: {error}"))
        })?;
    Ok(Decoded::Request(header, request))
}

/// A response that is ready now, as a task the writer awaits in turn.
fn ready(frame: ResponseFrame) -> Pending {
    glommio::spawn_local(async move { Some(frame) }).detach()
}

/// Decodes a frame and starts its handler. `None` when nothing is to be
/// answered (never happens today: acks=0 is decided by the handler).
fn handle_frame(
    broker: &Rc<Broker>,
    session: &Session,
    frame: Bytes,
) -> Result<Option<Pending>, Closed> {
    let (header, request) = match decode_frame(frame)? {
        Decoded::Request(header, request) => (header, request),
        Decoded::UnknownApiVersions { correlation_id } => {
            // Kafka answers an ApiVersions it cannot parse with v0 and
            // UNSUPPORTED_VERSION, so the client can retry with a version
            // from the list.
            let frame = handlers::api_versions::unsupported_version_response(correlation_id);
            return Ok(Some(ready(frame)));
        }
    };
    Ok(Some(dispatch_task(
        broker,
        session.clone(),
        header,
        request,
    )))
}

/// Whether `frame`, on a connection that authenticated, begins a KIP-368
/// re-authentication: a SaslHandshake of v1 or later (v0 hands the
/// mechanism's messages over bare, which a connection with requests in
/// flight cannot do) on a listener whose sessions expire. Any other
/// SaslHandshake goes to the registry, which answers ILLEGAL_SASL_STATE.
fn starts_reauthentication(broker: &Broker, authenticator: &Authenticator, frame: &Bytes) -> bool {
    const HANDSHAKE_VERSION_MIN: i16 = 1;
    broker.config.sasl.reauth_ms > 0
        && authenticator.is_authenticated()
        && frame.len() >= REQUEST_HEADER_BYTES_MIN
        && api_key_of(frame) == Some(ApiKey::SaslHandshake as i16)
        && i16::from_be_bytes([frame[2], frame[3]]) >= HANDSHAKE_VERSION_MIN
}

/// Starts the handler of a decoded request.
fn dispatch_task(
    broker: &Rc<Broker>,
    mut session: Session,
    header: RequestHeader,
    request: Request,
) -> Pending {
    let broker = Rc::clone(broker);
    let api_key = header.request_api_key;
    broker.metrics.shared().request_started(api_key);
    // Timed only while the cluster has client quotas: one of them may be
    // a request-time quota of this sender's.
    let metered = broker.has_client_quotas() && !request_quota::exempt(&request);
    session.busy = metered.then(Rc::default);
    let spawned = Instant::now();
    let task = glommio::spawn_local(async move {
        let started = Instant::now();
        let waited = started.saturating_duration_since(spawned);
        broker.metrics.shared().request_dequeued(waited);
        if waited.as_millis() > SLOW_REQUEST_LOG_MS {
            tracing::debug!(
                api_key,
                waited_ms = waited.as_millis() as u64,
                "request waited to start"
            );
        }
        let api_version = header.request_api_version;
        let correlation_id = header.correlation_id;
        let client_id = session.busy.is_some().then(|| header.client_id.clone());
        let handled = handlers::dispatch(&broker, &session, header, request);
        let mut response = match session.busy.clone() {
            Some(busy) => {
                let inner = std::pin::pin!(handled);
                request_quota::Metered { inner, busy }.await
            }
            None => handled.await,
        };
        let throttle = match client_id {
            Some(client_id) => {
                session.charge_request_time(&broker, client_id.as_deref().unwrap_or_default())
            }
            None => Duration::ZERO,
        };
        if !throttle.is_zero() {
            session.mute(throttle);
            if let (Some(frame), Ok(api)) = (response.as_mut(), ApiKey::try_from(api_key)) {
                request_quota::write_throttle(frame, api, api_version, throttle);
            }
        }
        let elapsed = started.elapsed();
        // No pieces: answered by closing the connection (see write_loop).
        if response
            .as_ref()
            .is_some_and(|frame| frame.pieces.is_empty())
        {
            broker.metrics.request_failed(api_key);
        }
        broker.metrics.shared().request_finished(api_key, elapsed);
        let took = elapsed.as_millis();
        if took > SLOW_REQUEST_LOG_MS {
            tracing::debug!(
                api_key,
                api_version,
                correlation_id,
                took_ms = took as u64,
                "slow request"
            );
        }
        response
    });
    task.detach()
}

/// A frame of a connection on a SASL listener that has not authenticated:
/// a bare token after a v0 handshake, else one of the three requests
/// allowed before authentication. Any other request closes the connection
/// without its body being decoded. Returns the answer and, when the
/// connection closes after it, why.
fn authenticate_frame(
    broker: &Rc<Broker>,
    authenticator: &mut Authenticator,
    reauthenticating: &mut Option<(Principal, Mechanism)>,
    frame: Bytes,
) -> Result<(Option<Pending>, Option<String>), Closed> {
    let config = &broker.config.sasl;
    if authenticator.expects_raw_token() {
        let mechanism = authenticator
            .mechanism()
            .map(|mechanism| mechanism.name())
            .unwrap_or("SASL");
        return match authenticator.authenticate(&frame, config) {
            Authenticate::Continue(token) | Authenticate::Done(token) => {
                Ok((Some(ready(ResponseFrame::raw_token(token))), None))
            }
            // Kafka closes a v0 exchange that failed without a word: the
            // bare-token protocol has no way to carry an error.
            Authenticate::Failed(failure) => Err(Closed::Authentication(
                handlers::sasl_authenticate::failure_reason(mechanism, &failure),
            )),
            Authenticate::IllegalState => Err(Closed::Authentication(
                "a SASL token out of sequence".to_string(),
            )),
        };
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let allowed = match ApiKey::try_from(api_key) {
        Ok(ApiKey::ApiVersions) => authenticator.serves_api_versions(),
        Ok(ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) => true,
        _ => false,
    };
    if !allowed {
        return Err(Closed::Unauthenticated { api_key });
    }
    let (header, request) = match decode_frame(frame)? {
        Decoded::Request(header, request) => (header, request),
        Decoded::UnknownApiVersions { correlation_id } => {
            let frame = handlers::api_versions::unsupported_version_response(correlation_id);
            return Ok((Some(ready(frame)), None));
        }
    };
    let answered = match request {
        Request::SaslHandshake(request) => match reauthenticating.as_ref() {
            Some((_, was)) if request.mechanism.as_str() != was.name() => {
                let refused = handlers::sasl_handshake::mechanism_changed(
                    config,
                    &header,
                    *was,
                    request.mechanism.as_str(),
                );
                *authenticator = Authenticator::Failed;
                refused
            }
            _ => handlers::sasl_handshake::exchange(authenticator, config, &header, request),
        },
        Request::SaslAuthenticate(request) => {
            let answered =
                handlers::sasl_authenticate::exchange(authenticator, config, &header, request);
            match authenticator.principal() {
                // A SCRAM exchange half-way: the principal to keep stays.
                None => answered,
                Some(principal) => match reauthenticating.take() {
                    Some((was, _)) if was.user != principal.user => {
                        let refused = handlers::sasl_authenticate::principal_changed(
                            &header,
                            &was.user,
                            &principal.user,
                        );
                        *authenticator = Authenticator::Failed;
                        refused
                    }
                    Some(_) => {
                        tracing::debug!(%principal, "re-authenticated");
                        answered
                    }
                    None => {
                        tracing::debug!(%principal, super_user = principal.super_user, "authenticated");
                        answered
                    }
                },
            }
        }
        request => {
            // ApiVersions: served as on any connection.
            let task = dispatch_task(broker, Session::default(), header, request);
            return Ok((Some(task), None));
        }
    };
    Ok((Some(ready(answered.frame)), answered.closing))
}
