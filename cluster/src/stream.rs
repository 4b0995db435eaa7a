//! The controller port's byte streams: the socket itself, or TLS over it
//! (`controller_security_protocol = SSL`), where both ends show a
//! certificate the other checks against its truststore. The port carries
//! the metadata log (SCRAM keys among its records) and admin requests
//! forwarded to the active controller, so on TLS a peer without a
//! certificate the truststore vouches for is refused during the handshake,
//! before any frame is read.
//!
//! The TLS configuration is the process's: installed once at start (and
//! again on a keystore reload) rather than threaded through the quorum,
//! the observers and the forwarding path, which all dial the same port.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;

/// The controller port's TLS, both ends of it.
pub struct ControllerTls {
    /// What a node shows and checks when it dials another's port.
    pub client: Arc<rustls::ClientConfig>,
    /// What the port shows and checks; it requires a client certificate
    /// and sends no session tickets (see [`install`]).
    pub server: Arc<rustls::ServerConfig>,
}

static INSTALLED: RwLock<Option<Arc<ControllerTls>>> = RwLock::new(None);

/// Makes every controller connection from now on use `tls` (plaintext
/// with `None`); connections open keep what they began with.
///
/// The server must not send TLS 1.3 session tickets: a connection that
/// carries Raft messages never reads, and tells that its peer is gone by
/// peeking at the socket for an end of stream (`transport`); a ticket left
/// unread there would hide it.
pub fn install(tls: Option<ControllerTls>) {
    if let Some(tls) = &tls {
        debug_assert_eq!(tls.server.send_tls13_tickets, 0);
    }
    *INSTALLED.write().unwrap_or_else(PoisonError::into_inner) = tls.map(Arc::new);
}

fn installed() -> Option<Arc<ControllerTls>> {
    INSTALLED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// One controller connection, either end.
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<futures_rustls::TlsStream<TcpStream>>),
}

impl Conn {
    /// The dialling end over `stream`, connected to `address`: TLS when
    /// installed, checking that the peer's certificate names the address's
    /// IP (the voters are configured by address).
    pub(crate) async fn dialled(stream: TcpStream, address: SocketAddr) -> io::Result<Conn> {
        let Some(tls) = installed() else {
            return Ok(Conn::Plain(stream));
        };
        let name = ServerName::IpAddress(address.ip().into());
        let stream = futures_rustls::TlsConnector::from(Arc::clone(&tls.client))
            .connect(name, stream)
            .await?;
        Ok(Conn::Tls(Box::new(futures_rustls::TlsStream::Client(
            stream,
        ))))
    }

    /// The accepting end over `stream`: the TLS handshake first when
    /// installed, which refuses a peer without a trusted certificate.
    pub(crate) async fn accepted(stream: TcpStream) -> io::Result<Conn> {
        let Some(tls) = installed() else {
            return Ok(Conn::Plain(stream));
        };
        let stream = futures_rustls::TlsAcceptor::from(Arc::clone(&tls.server))
            .accept(stream)
            .await?;
        Ok(Conn::Tls(Box::new(futures_rustls::TlsStream::Server(
            stream,
        ))))
    }

    fn socket(&self) -> &TcpStream {
        match self {
            Conn::Plain(stream) => stream,
            Conn::Tls(stream) => stream.get_ref().0,
        }
    }
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        self.socket().as_raw_fd()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_close(cx),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_close(cx),
        }
    }
}
