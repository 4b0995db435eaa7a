//! One pipelined connection to one broker.
//!
//! Requests are written in the order `send` is called (a one-permit write
//! lock keeps frames whole) and each one that expects an answer leaves a
//! pending entry in a FIFO. Kafka answers a connection's requests in order,
//! so a single reader task pops the FIFO for every response frame, checks
//! the correlation id, and completes that request. A semaphore bounds the
//! requests in flight; callers take a [`Slot`] before they build a request,
//! which is also what lets producers keep filling batches while the
//! connection is busy.
//!
//! Any I/O error, timeout or protocol violation fails the connection as a
//! whole: every pending request gets the error and later sends fail at once.
//! Responses are framed with their length checked before any allocation and
//! decoded by the bounds-checked decoders of [`super::protocol`].

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::ToSocketAddrs;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;

use super::constants::{
    IN_FLIGHT_REQUESTS_MAX, READ_CHUNK_BYTES, RESPONSE_BYTES_MAX, RESPONSE_BYTES_MIN,
    SESSION_RENEWAL_PERCENT,
};
use super::error::ClientError;
use super::protocol::{self, ApiVersionRange, CLIENT_API_VERSIONS};
use crate::codec::Reader;
use crate::tls::{self, write_gathered, ClientTls, Stream};
use crate::wire::{receive_ready, write_frames};

/// Bytes of the length prefix in front of every frame.
const FRAME_LENGTH_BYTES: usize = 4;
/// Bytes the reader asks glommio for when it has to wait for data: the
/// first bytes of a response; the rest is taken straight from the socket.
const WAIT_READ_BYTES: usize = 16 * 1024;

/// Settings of one connection.
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    /// Sent in every request header.
    pub client_id: String,
    pub connect_timeout: Duration,
    /// How long a request may wait for its response.
    pub request_timeout: Duration,
    /// Requests in flight at once (at most [`IN_FLIGHT_REQUESTS_MAX`]).
    pub in_flight_max: usize,
    /// TLS to the broker (an SSL listener), or plaintext when `None`.
    pub tls: Option<ClientTls>,
}

/// A single-use channel: the reader task completes one request with it.
struct OneshotSlot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_gone: bool,
}

struct OneshotSender<T>(Rc<RefCell<OneshotSlot<T>>>);
struct OneshotReceiver<T>(Rc<RefCell<OneshotSlot<T>>>);

fn oneshot<T>() -> (OneshotSender<T>, OneshotReceiver<T>) {
    let slot = Rc::new(RefCell::new(OneshotSlot {
        value: None,
        waker: None,
        sender_gone: false,
    }));
    (OneshotSender(Rc::clone(&slot)), OneshotReceiver(slot))
}

impl<T> OneshotSender<T> {
    fn send(self, value: T) {
        let waker = {
            let mut slot = self.0.borrow_mut();
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for OneshotSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = self.0.borrow_mut();
            slot.sender_gone = true;
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Future for OneshotReceiver<T> {
    /// `None` when the sender was dropped without sending.
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut slot = self.0.borrow_mut();
        if let Some(value) = slot.value.take() {
            return Poll::Ready(Some(value));
        }
        if slot.sender_gone {
            return Poll::Ready(None);
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

type Reply = Result<Bytes, ClientError>;

/// A request written and waiting for its response.
struct Pending {
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    reply: OneshotSender<Reply>,
}

/// State shared by the connection handle and its reader task.
struct Shared {
    address: String,
    pending: RefCell<VecDeque<Pending>>,
    /// Set once; every later operation fails with it.
    failed: RefCell<Option<ClientError>>,
    fd: i32,
    /// `fd` on a plaintext connection, read and written directly; `None`
    /// on TLS, where every byte goes through rustls.
    plain_fd: Option<i32>,
}

impl Shared {
    /// Fails the connection: records the error, completes every pending
    /// request with it, and shuts the socket so the reader task ends.
    fn fail(&self, error: ClientError) {
        {
            let mut failed = self.failed.borrow_mut();
            if failed.is_none() {
                *failed = Some(error.clone());
            }
        }
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for request in pending {
            request.reply.send(Err(error.clone()));
        }
        // SAFETY: shutdown on our own socket fd; the fd stays open (and
        // owned by the stream) until both halves are dropped.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
    }

    fn check(&self) -> Result<(), ClientError> {
        match &*self.failed.borrow() {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }
}

/// Permission to have one more request in flight on a connection. Taken
/// before a request is built; it travels with the request and is given back
/// when its response has been handled (or at once for requests without one).
pub struct Slot {
    _permit: StaticPermit,
}

/// A request on the wire; [`InFlight::response`] waits for its answer.
pub struct InFlight {
    reply: Option<OneshotReceiver<Reply>>,
    shared: Rc<Shared>,
    api: ApiKey,
    timeout: Duration,
    _slot: Slot,
}

impl InFlight {
    /// The response body after the response header. Empty for requests that
    /// get no response (produce with acks=0).
    pub async fn response(self) -> Result<Bytes, ClientError> {
        let Some(reply) = self.reply else {
            return Ok(Bytes::new());
        };
        let shared = Rc::clone(&self.shared);
        let api = self.api;
        match glommio::timer::timeout(self.timeout, async { Ok(reply.await) }).await {
            Ok(Some(reply)) => reply,
            Ok(None) => Err(ClientError::Closed {
                address: shared.address.clone(),
            }),
            Err(_) => {
                // Responses come in order: once one is overdue the rest of
                // the stream can no longer be trusted to line up.
                let error = ClientError::Timeout {
                    address: shared.address.clone(),
                    api,
                };
                shared.fail(error.clone());
                Err(error)
            }
        }
    }
}

/// A connection to one broker with the API versions agreed on it.
pub struct Connection {
    shared: Rc<Shared>,
    writer: RefCell<Option<WriteHalf<Stream>>>,
    /// Where a TLS connection gathers small pieces into records.
    gathered: RefCell<Vec<u8>>,
    /// One permit: whoever holds it owns `writer` for one frame.
    write_lock: Semaphore,
    in_flight: Rc<Semaphore>,
    correlation_id: Cell<i32>,
    client_id: Bytes,
    request_timeout: Duration,
    versions: RefCell<Vec<(ApiKey, i16)>>,
    /// When a SASL session whose lifetime the broker stated should be
    /// renewed (see [`Connection::is_usable`]).
    renew_by: Cell<Option<Instant>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Ends the reader task, which holds the read half.
        self.shared.fail(ClientError::Closed {
            address: self.shared.address.clone(),
        });
    }
}

impl Connection {
    /// Connects to `address` (`host:port`), starts the reader task and
    /// negotiates API versions.
    pub async fn connect(
        address: &str,
        config: &ConnectionConfig,
    ) -> Result<Rc<Connection>, ClientError> {
        let connect_error = |source: io::Error| ClientError::Connect {
            address: address.to_string(),
            source: Rc::new(source),
        };
        let resolved: Vec<_> = address.to_socket_addrs().map_err(connect_error)?.collect();
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut stream = None;
        // A name may resolve to several addresses (IPv6 and IPv4): try each.
        for socket_address in resolved {
            match TcpStream::connect_timeout(socket_address, config.connect_timeout).await {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(error) => last_error = io::Error::other(error.to_string()),
            }
        }
        let stream = stream.ok_or_else(|| connect_error(last_error))?;
        // Small requests (metadata, acks) must not wait for Nagle.
        stream
            .set_nodelay(true)
            .map_err(|error| connect_error(io::Error::other(error.to_string())))?;
        let fd = stream.as_raw_fd();
        let (stream, plain_fd) = match &config.tls {
            None => (Stream::Plain(stream), Some(fd)),
            Some(tls) => {
                let handshake = glommio::timer::timeout(config.connect_timeout, async {
                    tls::connect(tls, address, stream)
                        .await
                        .map_err(glommio::GlommioError::IoError)
                });
                let stream = handshake
                    .await
                    .map_err(|error| connect_error(io::Error::other(error.to_string())))?;
                (stream, None)
            }
        };
        let (reader, writer) = futures_lite::io::split(stream);
        let shared = Rc::new(Shared {
            address: address.to_string(),
            pending: RefCell::new(VecDeque::new()),
            failed: RefCell::new(None),
            fd,
            plain_fd,
        });
        glommio::spawn_local(read_loop(reader, Rc::clone(&shared))).detach();
        let in_flight_max = config.in_flight_max.clamp(1, IN_FLIGHT_REQUESTS_MAX);
        let mut client_id = BytesMut::new();
        let id = config.client_id.as_bytes();
        let id = &id[..id.len().min(i16::MAX as usize)];
        client_id.put_i16(id.len() as i16);
        client_id.put_slice(id);
        let connection = Rc::new(Connection {
            shared,
            writer: RefCell::new(Some(writer)),
            gathered: RefCell::new(Vec::new()),
            write_lock: Semaphore::new(1),
            in_flight: Rc::new(Semaphore::new(in_flight_max as u64)),
            correlation_id: Cell::new(0),
            client_id: client_id.freeze(),
            request_timeout: config.request_timeout,
            versions: RefCell::new(Vec::new()),
            renew_by: Cell::new(None),
        });
        connection.negotiate().await?;
        Ok(connection)
    }

    /// `host:port` as given.
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// Whether the connection has failed or been closed.
    pub fn is_failed(&self) -> bool {
        self.shared.failed.borrow().is_some()
    }

    /// The SASL login just made lasts `lifetime` (KIP-368), counted from
    /// now: the connection is to be replaced before it ends.
    pub fn session_lasts(&self, lifetime: Duration) {
        let renewal = lifetime * SESSION_RENEWAL_PERCENT / 100;
        self.renew_by.set(Some(Instant::now() + renewal));
    }

    /// Whether new requests may go on this connection: it has not failed,
    /// and its SASL session, if it has a lifetime, is not near its end (a
    /// broker closes a connection whose session expired at its next
    /// request). Requests already in flight finish either way.
    pub fn is_usable(&self) -> bool {
        !self.is_failed()
            && self
                .renew_by
                .get()
                .is_none_or(|renew_by| Instant::now() < renew_by)
    }

    /// The version agreed for `api`.
    pub fn version(&self, api: ApiKey) -> Result<i16, ClientError> {
        self.versions
            .borrow()
            .iter()
            .find(|(known, _)| *known == api)
            .map(|(_, version)| *version)
            .ok_or_else(|| ClientError::UnsupportedApi {
                address: self.shared.address.clone(),
                api,
            })
    }

    /// Waits until one more request may be in flight.
    pub async fn slot(&self) -> Result<Slot, ClientError> {
        self.shared.check()?;
        let permit =
            self.in_flight
                .acquire_static_permit(1)
                .await
                .map_err(|_| ClientError::Closed {
                    address: self.shared.address.clone(),
                })?;
        Ok(Slot { _permit: permit })
    }

    /// Writes a request whose body is `body` (already encoded for `version`)
    /// and returns it in flight. `expects_response` is false only for
    /// produce requests with acks=0.
    pub async fn send(
        &self,
        slot: Slot,
        api: ApiKey,
        version: i16,
        body: Vec<Bytes>,
        expects_response: bool,
    ) -> Result<InFlight, ClientError> {
        self.shared.check()?;
        let correlation_id = self.correlation_id.get().wrapping_add(1);
        self.correlation_id.set(correlation_id);
        let body_len: usize = body.iter().map(Bytes::len).sum();
        let flexible_header = api.request_header_version(version) >= 2;
        let header_len = 2 + 2 + 4 + self.client_id.len() + usize::from(flexible_header);
        let frame_len = i32::try_from(header_len + body_len).map_err(|_| ClientError::Encode {
            api,
            version,
            message: format!("request of {body_len} bytes is longer than a frame may be"),
        })?;
        let mut head = BytesMut::with_capacity(FRAME_LENGTH_BYTES + header_len);
        head.put_i32(frame_len);
        head.put_i16(api as i16);
        head.put_i16(version);
        head.put_i32(correlation_id);
        head.put_slice(&self.client_id);
        if flexible_header {
            // No tagged fields.
            head.put_u8(0);
        }
        let mut pieces = Vec::with_capacity(body.len() + 1);
        pieces.push(head.freeze());
        pieces.extend(body.into_iter().filter(|piece| !piece.is_empty()));

        let _write_permit =
            self.write_lock
                .acquire_permit(1)
                .await
                .map_err(|_| ClientError::Closed {
                    address: self.shared.address.clone(),
                })?;
        self.shared.check()?;
        let reply = if expects_response {
            let (sender, receiver) = oneshot();
            self.shared.pending.borrow_mut().push_back(Pending {
                correlation_id,
                api,
                version,
                reply: sender,
            });
            Some(receiver)
        } else {
            None
        };
        // The write lock is held, so nobody else takes the writer meanwhile.
        let Some(mut writer) = self.writer.borrow_mut().take() else {
            return Err(ClientError::Closed {
                address: self.shared.address.clone(),
            });
        };
        let written = match self.shared.plain_fd {
            Some(fd) => write_frames(&mut writer, fd, &mut pieces).await,
            None => {
                let mut gathered = std::mem::take(&mut *self.gathered.borrow_mut());
                let written = write_gathered(&mut writer, &mut gathered, &mut pieces).await;
                *self.gathered.borrow_mut() = gathered;
                written
            }
        };
        *self.writer.borrow_mut() = Some(writer);
        if let Err(error) = written {
            let error = ClientError::Io {
                address: self.shared.address.clone(),
                source: Rc::new(error),
            };
            self.shared.fail(error.clone());
            return Err(error);
        }
        Ok(InFlight {
            reply,
            shared: Rc::clone(&self.shared),
            api,
            timeout: self.request_timeout,
            _slot: slot,
        })
    }

    /// Encodes `request` with `kafka-protocol`'s encoder (safe: it only
    /// writes), sends it at the agreed version and waits for the response.
    pub async fn call<R: Encodable>(
        &self,
        api: ApiKey,
        request: &R,
    ) -> Result<(i16, Bytes), ClientError> {
        self.call_with(api, |version| encode(api, version, request))
            .await
    }

    /// [`Connection::call`] for a request the broker may hold for up to
    /// `broker_wait` (its `timeout_ms`: CreateTopics, DeleteTopics): the
    /// answer is awaited that long on top of the request timeout, so that
    /// the broker's own REQUEST_TIMED_OUT, or its late success, is what the
    /// caller sees (a 100,000-partition CreateTopics took longer than the
    /// 30 s request timeout, and the client gave up on an answer coming).
    pub async fn call_held<R: Encodable>(
        &self,
        api: ApiKey,
        request: &R,
        broker_wait: Duration,
    ) -> Result<(i16, Bytes), ClientError> {
        let version = self.version(api)?;
        let body = encode(api, version, request)?;
        let slot = self.slot().await?;
        let mut in_flight = self.send(slot, api, version, vec![body], true).await?;
        in_flight.timeout += broker_wait;
        Ok((version, in_flight.response().await?))
    }

    /// Sends a request whose body `encode_at` writes for the agreed version
    /// (for versions `kafka-protocol` does not know) and waits for the
    /// response.
    pub async fn call_with(
        &self,
        api: ApiKey,
        encode_at: impl FnOnce(i16) -> Result<Bytes, ClientError>,
    ) -> Result<(i16, Bytes), ClientError> {
        let version = self.version(api)?;
        let body = encode_at(version)?;
        let slot = self.slot().await?;
        let in_flight = self.send(slot, api, version, vec![body], true).await?;
        Ok((version, in_flight.response().await?))
    }

    /// Asks for ApiVersions (v0: every Kafka-compatible broker answers it,
    /// and it lists every API) and keeps, per API, the highest version both
    /// sides speak.
    async fn negotiate(&self) -> Result<(), ClientError> {
        let api = ApiKey::ApiVersions;
        let slot = self.slot().await?;
        let in_flight = self.send(slot, api, 0, Vec::new(), true).await?;
        let body = in_flight.response().await?;
        let ranges = protocol::decode_api_versions(body)?;
        *self.versions.borrow_mut() = pick_versions(&ranges);
        Ok(())
    }
}

/// Encodes a request body with `kafka-protocol`'s encoder.
pub fn encode<R: Encodable>(api: ApiKey, version: i16, request: &R) -> Result<Bytes, ClientError> {
    let mut body = BytesMut::new();
    request
        .encode(&mut body, version)
        .map_err(|error| ClientError::Encode {
            api,
            version,
            message: error.to_string(),
        })?;
    Ok(body.freeze())
}

/// For each API the client speaks, the highest version inside both its own
/// range and the broker's; APIs without a common version are left out.
pub fn pick_versions(broker: &[ApiVersionRange]) -> Vec<(ApiKey, i16)> {
    CLIENT_API_VERSIONS
        .iter()
        .filter_map(|(api, client_min, client_max)| {
            let theirs = broker.iter().find(|range| range.api_key == *api as i16)?;
            let low = theirs.min_version.max(*client_min);
            let high = theirs.max_version.min(*client_max);
            (low <= high).then_some((*api, high))
        })
        .collect()
}

/// Reads response frames until the connection fails, completing pending
/// requests in order.
async fn read_loop(mut reader: ReadHalf<Stream>, shared: Rc<Shared>) {
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut wait_buffer = vec![0u8; WAIT_READ_BYTES];
    loop {
        let frame = read_frame(&mut reader, &mut buffer, &mut wait_buffer, &shared).await;
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                shared.fail(ClientError::Closed {
                    address: shared.address.clone(),
                });
                return;
            }
            Err(error) => {
                shared.fail(error);
                return;
            }
        };
        let Some(pending) = shared.pending.borrow_mut().pop_front() else {
            shared.fail(ClientError::Records(format!(
                "{} sent a response to no request",
                shared.address
            )));
            return;
        };
        match complete(frame, &pending, &shared.address) {
            Ok(body) => pending.reply.send(Ok(body)),
            Err(error) => {
                pending.reply.send(Err(error.clone()));
                shared.fail(error);
                return;
            }
        }
    }
}

/// Checks a response frame's header against the request it answers and
/// returns the body after the header.
fn complete(frame: Bytes, pending: &Pending, address: &str) -> Result<Bytes, ClientError> {
    let decode_error = |error| ClientError::Decode {
        api: pending.api,
        version: pending.version,
        error,
    };
    let mut reader = Reader::new(frame);
    let correlation_id = reader.i32().map_err(decode_error)?;
    if correlation_id != pending.correlation_id {
        return Err(ClientError::CorrelationMismatch {
            address: address.to_string(),
            expected: pending.correlation_id,
            received: correlation_id,
        });
    }
    if pending.api.response_header_version(pending.version) >= 1 {
        reader
            .tagged_fields(&mut Default::default())
            .map_err(decode_error)?;
    }
    Ok(reader.into_remaining())
}

/// Reads one length-prefixed frame; `None` at a clean end of stream. The
/// length is checked against [`RESPONSE_BYTES_MAX`] before the buffer grows
/// to hold it.
///
/// Data that is already in the socket is taken with a non-blocking `recv`
/// straight into the buffer's spare capacity (no io_uring round trip, no
/// zero-fill of a large read buffer); only when the socket is empty does
/// the reader wait through glommio, on a small buffer of its own.
async fn read_frame(
    reader: &mut ReadHalf<Stream>,
    buffer: &mut BytesMut,
    wait_buffer: &mut [u8],
    shared: &Shared,
) -> Result<Option<Bytes>, ClientError> {
    let address = &shared.address;
    let io_error = |error: io::Error| ClientError::Io {
        address: address.to_string(),
        source: Rc::new(error),
    };
    loop {
        let mut wanted = READ_CHUNK_BYTES;
        if let Some(prefix) = buffer.first_chunk::<FRAME_LENGTH_BYTES>() {
            let declared = i32::from_be_bytes(*prefix);
            let length = usize::try_from(declared)
                .ok()
                .filter(|length| (RESPONSE_BYTES_MIN..=RESPONSE_BYTES_MAX).contains(length))
                .ok_or_else(|| ClientError::FrameLength {
                    address: address.to_string(),
                    length: declared.into(),
                })?;
            let needed = FRAME_LENGTH_BYTES + length;
            if buffer.len() >= needed {
                buffer.advance(FRAME_LENGTH_BYTES);
                return Ok(Some(buffer.split_to(length).freeze()));
            }
            // Room grows with what the broker has actually sent (at most
            // doubling per read), not with what a length prefix claims.
            wanted = (needed - buffer.len())
                .min(buffer.len())
                .max(READ_CHUNK_BYTES);
        }
        if let Some(fd) = shared.plain_fd {
            match receive_ready(fd, buffer, wanted).map_err(io_error)? {
                Some(0) => return end_of_stream(buffer, address),
                Some(_) => continue,
                None => {}
            }
        }
        let read = reader.read(wait_buffer).await.map_err(io_error)?;
        if read == 0 {
            return end_of_stream(buffer, address);
        }
        buffer.extend_from_slice(&wait_buffer[..read]);
    }
}

fn end_of_stream(buffer: &BytesMut, address: &str) -> Result<Option<Bytes>, ClientError> {
    if buffer.is_empty() {
        Ok(None)
    } else {
        Err(ClientError::Closed {
            address: address.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_common_version() {
        let broker = [
            ApiVersionRange {
                api_key: ApiKey::Produce as i16,
                min_version: 0,
                max_version: 11,
            },
            ApiVersionRange {
                api_key: ApiKey::Fetch as i16,
                min_version: 13,
                max_version: 17,
            },
            ApiVersionRange {
                api_key: ApiKey::Metadata as i16,
                min_version: 0,
                max_version: 4,
            },
        ];
        let picked = pick_versions(&broker);
        assert!(picked.contains(&(ApiKey::Produce, 9)));
        assert!(picked.contains(&(ApiKey::Metadata, 4)));
        // No overlap with the client's Fetch range: left out.
        assert!(!picked.iter().any(|(api, _)| *api == ApiKey::Fetch));
    }
}
