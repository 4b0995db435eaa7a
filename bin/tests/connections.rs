//! Clients that open connections by the thousand, against a real broker:
//! `max.connections.per.ip` closes what one address opens beyond its share
//! at once, `max.connections` makes a full broker stop accepting (newcomers
//! wait in the kernel's backlog, as with Kafka's acceptor) until a slot
//! frees, idle connections cost a bounded amount of memory, and a normal
//! librdkafka client from another address is served throughout.
//!
//! Every address in 127.0.0.0/8 is the loopback on Linux, so each "client
//! host" is a source address of its own (127.0.0.2, ...).

mod common;

use std::io::Read;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

use common::{produce_all, read_all, wait_until, Record, TestBroker};

/// Per address, and for the whole broker, in this test: small enough to
/// reach quickly, large enough to show memory per connection.
const PER_IP: usize = 400;
const TOTAL: usize = 1_600;
/// Connections the abusive address opens beyond its share.
const OVER_SHARE: usize = 100;
/// File descriptors the test and the broker (its child) may need: every
/// connection has an end on each side.
const FDS_WANTED: u64 = 8 * 1024;
/// Resident memory an idle connection may cost the broker: its read buffers
/// (80 KiB) and its task, with room for the allocator's rounding.
const IDLE_CONNECTION_BYTES_MAX: u64 = 160 * 1024;
/// How long the broker may take to close connections over a limit, or to
/// take a waiting connection once a slot frees.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a connection waiting in the backlog of a full broker is
/// watched to show it is not served.
const NOT_SERVED_FOR: Duration = Duration::from_secs(1);
const TOPIC: &str = "served";
const RECORDS: usize = 200;

/// Raises this process's open-file limit (inherited by the broker it starts).
fn raise_fd_limit() {
    let limit = libc::rlimit {
        rlim_cur: FDS_WANTED,
        rlim_max: FDS_WANTED,
    };
    // SAFETY: setrlimit with a valid, initialised struct.
    let raised = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(
        raised, 0,
        "raising RLIMIT_NOFILE to {FDS_WANTED} (needs root)"
    );
}

/// A TCP connection to `to` from source address `from`.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let SocketAddr::V4(to) = to else {
        panic!("the broker listens on IPv4 in tests");
    };
    let address = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let (source, target) = (address(from, 0), address(*to.ip(), to.port()));
    let length = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket, bound and connected with valid sockaddr_in
    // values; it is owned by the TcpStream from then on.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let bound = libc::bind(fd, (&source as *const libc::sockaddr_in).cast(), length);
        assert_eq!(bound, 0, "bind {from}: {}", std::io::Error::last_os_error());
        let connected = libc::connect(fd, (&target as *const libc::sockaddr_in).cast(), length);
        assert_eq!(
            connected,
            0,
            "connect from {from}: {}",
            std::io::Error::last_os_error()
        );
        stream
    }
}

/// Whether the broker has closed `stream` (end of stream or a reset
/// waiting to be read), without blocking.
fn closed_by_broker(stream: &TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a valid buffer on an open socket.
    let got = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if got == 0 {
        return true;
    }
    got < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
}

/// Sends ApiVersions v0 on `stream`.
fn ask(stream: &mut TcpStream) -> bool {
    use std::io::Write;
    // Length, api key 18, version 0, correlation id 1, no client id.
    let request: [u8; 14] = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
    stream.write_all(&request).is_ok()
}

/// Whether the answer to [`ask`] comes within `wait`.
fn answered(stream: &mut TcpStream, wait: Duration) -> bool {
    if stream.set_read_timeout(Some(wait)).is_err() {
        return false;
    }
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).is_ok()
}

/// ApiVersions on `stream`; whether an answer came within `wait`.
fn answers(stream: &mut TcpStream, wait: Duration) -> bool {
    ask(stream) && answered(stream, wait)
}

/// Whether every one of `streams` is served: all asked first, so the
/// round trips overlap.
fn all_served(streams: &mut [TcpStream]) -> bool {
    streams.iter_mut().all(ask)
        && streams
            .iter_mut()
            .all(|stream| answered(stream, SETTLE_TIMEOUT))
}

/// A librdkafka producer and reader from 127.0.0.1 get every record through.
fn normal_client_served(broker: &TestBroker, round: usize) {
    let records: Vec<Record> = (0..RECORDS)
        .map(|index| Record::with_value(0, format!("{round}-{index}").into_bytes()))
        .collect();
    produce_all(broker, TOPIC, &[("acks", "all")], &records);
    let read = read_all(broker, TOPIC, 1);
    assert_eq!(read[&0].len(), RECORDS * (round + 1), "round {round}");
}

#[test]
fn connection_floods_are_bounded_and_others_are_served() {
    raise_fd_limit();
    let per_ip = PER_IP.to_string();
    let total = TOTAL.to_string();
    let mut broker = TestBroker::start_with(&[
        "--max-connections",
        total.as_str(),
        "--max-connections-per-ip",
        per_ip.as_str(),
    ]);
    broker.create_topic(TOPIC, 1);
    normal_client_served(&broker, 0);
    let address = broker.address();
    let rss_before = broker.rss_bytes();

    // One address opens more than its share: the excess is closed at once,
    // its share stays open and is served.
    let abuser = Ipv4Addr::new(127, 0, 0, 2);
    let mut flood: Vec<TcpStream> = (0..PER_IP + OVER_SHARE)
        .map(|_| connect_from(abuser, address))
        .collect();
    wait_until(
        "the connections over the per-address limit closed",
        SETTLE_TIMEOUT,
        || {
            flood
                .iter()
                .filter(|stream| closed_by_broker(stream))
                .count()
                >= OVER_SHARE
        },
    );
    flood.retain(|stream| !closed_by_broker(stream));
    assert_eq!(flood.len(), PER_IP, "the address keeps exactly its share");
    assert!(all_served(&mut flood), "its share is served");
    normal_client_served(&broker, 1);

    // Other addresses fill the broker: all admitted, none closed.
    let others = TOTAL / PER_IP - 1;
    for host in 0..others {
        let from = Ipv4Addr::new(127, 0, 0, 3 + host as u8);
        flood.extend((0..PER_IP).map(|_| connect_from(from, address)));
    }
    assert_eq!(flood.len(), TOTAL);
    assert!(
        all_served(&mut flood),
        "every connection within the limits is served"
    );
    let rss_full = broker.rss_bytes();
    let per_connection = rss_full.saturating_sub(rss_before) / TOTAL as u64;
    assert!(
        per_connection <= IDLE_CONNECTION_BYTES_MAX,
        "{TOTAL} idle connections took the broker from {} to {} MiB ({per_connection} bytes each)",
        rss_before >> 20,
        rss_full >> 20
    );

    // Full: a newcomer waits unserved (not refused, not closed) until a
    // slot frees, then it is served.
    let mut waiting = connect_from(Ipv4Addr::new(127, 0, 0, 100), address);
    assert!(
        !answers(&mut waiting, NOT_SERVED_FOR),
        "a full broker takes no new connection"
    );
    assert!(!closed_by_broker(&waiting), "the newcomer is left waiting");
    flood.truncate(TOTAL - 10);
    let started = Instant::now();
    let mut length = [0u8; 4];
    waiting
        .set_read_timeout(Some(SETTLE_TIMEOUT))
        .expect("read timeout");
    waiting
        .read_exact(&mut length)
        .expect("the waiting connection is served once slots free");
    let took = started.elapsed();

    drop(flood);
    drop(waiting);
    broker.assert_running();
    wait_until("the slots given back", SETTLE_TIMEOUT, || {
        // Everyone has left: a full share is admitted to the abusive address
        // again, which needs its earlier connections to have been counted
        // out.
        let mut again: Vec<TcpStream> =
            (0..PER_IP).map(|_| connect_from(abuser, address)).collect();
        all_served(&mut again)
    });
    normal_client_served(&broker, 2);
    eprintln!(
        "{TOTAL} idle connections: RSS {} -> {} MiB ({per_connection} bytes each); \
         a waiting connection served {} ms after slots freed",
        rss_before >> 20,
        rss_full >> 20,
        took.as_millis()
    );
}

/// `connections.max.idle.ms` in the idle test: short, so the test is quick.
const IDLE_MS: u64 = 1_000;
/// How often the busy connection of the idle test sends a request: well
/// within `IDLE_MS`.
const BUSY_EVERY: Duration = Duration::from_millis(300);
/// How long the busy connection keeps sending: several idle periods.
const BUSY_FOR: Duration = Duration::from_millis(3 * IDLE_MS);

/// Sends an ApiVersions v0 request and reads its answer's length prefix
/// and body. `None` when the broker closed the connection instead.
fn api_versions(stream: &mut TcpStream, correlation_id: i32) -> Option<Vec<u8>> {
    use std::io::Write;
    const API_VERSIONS_KEY: i16 = 18;
    let mut frame = Vec::new();
    frame.extend_from_slice(&API_VERSIONS_KEY.to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    let mut sent = (frame.len() as u32).to_be_bytes().to_vec();
    sent.extend_from_slice(&frame);
    stream.write_all(&sent).ok()?;
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

#[test]
fn a_connection_idle_past_the_limit_is_closed_and_a_busy_one_is_not() {
    let broker = TestBroker::start_with(&["--connections-max-idle-ms", &IDLE_MS.to_string()]);
    let address: SocketAddr = broker.bootstrap().parse().expect("address");
    let mut busy = TcpStream::connect(address).expect("connect");
    busy.set_read_timeout(Some(SETTLE_TIMEOUT))
        .expect("timeout");
    let mut idle = TcpStream::connect(address).expect("connect");
    idle.set_read_timeout(Some(SETTLE_TIMEOUT))
        .expect("timeout");
    let started = Instant::now();
    let mut correlation_id = 0;
    while started.elapsed() < BUSY_FOR {
        correlation_id += 1;
        let body = api_versions(&mut busy, correlation_id).unwrap_or_else(|| {
            panic!(
                "a connection sending every {BUSY_EVERY:?} was closed after {:?}",
                started.elapsed()
            )
        });
        assert_eq!(body[..4], correlation_id.to_be_bytes());
        std::thread::sleep(BUSY_EVERY);
    }
    // The idle connection was closed meanwhile: its read ends at once.
    let mut byte = [0u8; 1];
    let read = idle.read(&mut byte);
    assert!(
        matches!(read, Ok(0))
            || read.is_err_and(|error| error.kind() != std::io::ErrorKind::WouldBlock),
        "a connection idle for {:?} is still open",
        started.elapsed()
    );
    // And the busy one, idle from now on, goes after the limit too.
    let quiet = Instant::now();
    let read = busy.read(&mut byte);
    assert!(matches!(read, Ok(0)), "read {read:?}");
    let waited = quiet.elapsed();
    assert!(
        waited >= Duration::from_millis(IDLE_MS / 2),
        "closed {waited:?} after its last request, before the idle limit"
    );
}
