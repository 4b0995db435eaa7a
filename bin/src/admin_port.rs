//! The admin port (`admin_listen`): `/metrics` in Prometheus text,
//! `/health` and `/ready`, over a minimal HTTP/1.1 server.
//!
//! It runs on a plain thread of its own, never on a shard: it reads the
//! shards' atomics and published snapshots (`sluice_net::metrics`) and asks
//! no shard anything, so no request to it can make a shard wait. One
//! connection is served at a time, one request per connection: a request
//! is at most `REQUEST_BYTES_MAX` bytes and must arrive within
//! `REQUEST_DEADLINE`, so a client that sends slowly or too much holds the
//! port at most that long and nothing else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_net::metrics::exposition::{self, DirSpace, ProcessFigures};
use sluice_net::metrics::Metrics;

/// Longest request (request line and headers) read; a scraper's is a few
/// hundred bytes.
const REQUEST_BYTES_MAX: usize = 8 * 1024;
/// How long a client has to send its whole request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// How long a client may take to read the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After answering, how long and how much unread input is drained before
/// the socket is closed (see `linger`).
const LINGER_TIMEOUT: Duration = Duration::from_millis(500);
const LINGER_BYTES_MAX: usize = 64 * 1024;
/// Pause after a failed accept (out of descriptors, say) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Listen backlog: scrapers waiting while one connection is served.
const BACKLOG: i32 = 64;

/// Binds the admin port; the error is the one-line start error.
pub fn bind(address: SocketAddr) -> Result<(TcpListener, SocketAddr), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bound = || -> std::io::Result<(TcpListener, SocketAddr)> {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.bind(&address.into())?;
        socket.listen(BACKLOG)?;
        let listener: TcpListener = socket.into();
        let local = listener.local_addr()?;
        Ok((listener, local))
    };
    bound().map_err(|error| {
        format!(
            "cannot listen on {address} for the admin port: {error}; choose another address with --admin-listen"
        )
    })
}

/// What the port serves from.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub data_dirs: Vec<PathBuf>,
}

/// Serves the port on a thread of its own for the life of the process.
pub fn spawn(listener: TcpListener, state: AdminState) -> Result<(), String> {
    std::thread::Builder::new()
        .name("admin-port".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(error) = serve(stream, &state) {
                            tracing::debug!(%error, "admin port: connection ended");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "admin port: accept failed");
                        std::thread::sleep(ACCEPT_RETRY);
                    }
                }
            }
        })
        .map(|_| ())
        .map_err(|error| format!("starting the admin port's thread failed: {error}"))
}

/// An answer: status, content type, body.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// How reading a request ended.
#[derive(Debug, PartialEq, Eq)]
enum Received {
    /// The request line and headers, up to the blank line.
    Complete(usize),
    TooLarge,
    TimedOut,
    /// The peer closed before the blank line.
    Closed,
}

/// Reads up to the end of the headers, within the size cap and deadline.
fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<Received> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_end_of_headers(buffer) {
            return Ok(Received::Complete(end));
        }
        if buffer.len() >= REQUEST_BYTES_MAX {
            return Ok(Received::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Received::TimedOut);
        }
        stream.set_read_timeout(Some(left))?;
        let room = (REQUEST_BYTES_MAX - buffer.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return Ok(Received::Closed),
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Received::TimedOut)
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

fn find_end_of_headers(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
        .or_else(|| {
            // Bare line feeds, as some hand-typed requests have them.
            buffer
                .windows(2)
                .position(|window| window == b"\n\n")
                .map(|at| at + 2)
        })
}

fn serve(mut stream: TcpStream, state: &AdminState) -> std::io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut buffer = Vec::with_capacity(1024);
    let response = match read_request(&mut stream, &mut buffer)? {
        Received::Complete(end) => route(buffer.get(..end).unwrap_or_default(), state),
        Received::TooLarge => Response::text(431, "request too large\n"),
        Received::TimedOut => Response::text(408, "request not received in time\n"),
        Received::Closed => return Ok(()),
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len(),
        if response.status == 405 {
            "Allow: GET\r\n"
        } else {
            ""
        },
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(response.body.as_bytes())?;
    stream.flush()?;
    linger(&mut stream);
    Ok(())
}

/// Closes after the response without losing it: closing a socket with
/// unread input (the rest of an oversized request) sends a reset, which
/// can reach the client before it has read the answer. So: end our side,
/// then read and drop what the client still sends, within bounds.
fn linger(stream: &mut TcpStream) {
    if stream.shutdown(std::net::Shutdown::Write).is_err()
        || stream.set_read_timeout(Some(LINGER_TIMEOUT)).is_err()
    {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES_MAX {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(read) => drained += read,
        }
    }
}

/// The answer to one request (its request line and headers).
fn route(request: &[u8], state: &AdminState) -> Response {
    let line_end = request
        .iter()
        .position(|byte| *byte == b'\n')
        .unwrap_or(request.len());
    let Ok(line) = std::str::from_utf8(request.get(..line_end).unwrap_or_default()) else {
        return Response::text(400, "request line is not UTF-8\n");
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::text(400, "expected METHOD TARGET HTTP/1.x\n");
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Response::text(400, "expected METHOD TARGET HTTP/1.x\n");
    }
    let path = target.split('?').next().unwrap_or(target);
    let known = matches!(path, "/metrics" | "/health" | "/ready");
    if !known {
        return Response::text(404, "not found; try /metrics, /health or /ready\n");
    }
    if method != "GET" {
        return Response::text(405, "only GET is served\n");
    }
    match path {
        "/health" => Response::text(200, "ok\n"),
        "/ready" if state.metrics.is_ready() => Response::text(200, "ready\n"),
        "/ready" => Response::text(503, "not ready\n"),
        _ => Response {
            status: 200,
            content_type: exposition::CONTENT_TYPE,
            body: exposition::render(&state.metrics, &process_figures(state), Instant::now()),
        },
    }
}

/// Disk space and memory, read here rather than on a shard: a statvfs on
/// a sick disk may block.
fn process_figures(state: &AdminState) -> ProcessFigures {
    let dirs = state
        .data_dirs
        .iter()
        .filter_map(|dir| {
            let (size, free) = sluice_net::log_dirs::disk_space(dir);
            (size >= 0 && free >= 0).then(|| DirSpace {
                dir: dir.display().to_string(),
                free_bytes: free as u64,
                size_bytes: size as u64,
            })
        })
        .collect();
    let resident = crate::memory::resident_bytes();
    let allocator = crate::memory::allocator_figures();
    ProcessFigures {
        dirs,
        resident_bytes: (resident > 0).then_some(resident as u64),
        allocated_bytes: allocator.map(|figures| figures.allocated),
        allocator_resident_bytes: allocator.map(|figures| figures.resident),
        allocations: allocator.map(|figures| figures.allocations),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AdminState {
        AdminState {
            metrics: Arc::default(),
            data_dirs: Vec::new(),
        }
    }

    #[test]
    fn paths_and_methods() {
        let state = state();
        let status = |request: &str| route(request.as_bytes(), &state).status;
        assert_eq!(status("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
        assert_eq!(status("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(status("GET /nope HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("POST /metrics HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("DELETE /ready HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("GET /metrics\r\n\r\n"), 400);
        assert_eq!(status("GET metrics HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /metrics SMTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("\u{0}\u{1}\r\n\r\n"), 400);
        assert_eq!(route(b"GET /\xff HTTP/1.1\r\n\r\n", &state).status, 400);
    }

    #[test]
    fn ready_only_once_started() {
        let state = state();
        let ready = || route(b"GET /ready HTTP/1.1\r\n\r\n", &state).status;
        assert_eq!(ready(), 503);
        state.metrics.set_ready(true);
        assert_eq!(ready(), 200);
        state.metrics.set_ready(false);
        assert_eq!(ready(), 503);
    }

    #[test]
    fn the_end_of_the_headers_is_found() {
        assert_eq!(find_end_of_headers(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(find_end_of_headers(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(find_end_of_headers(b"GET / HTTP/1.1\r\n"), None);
    }
}
