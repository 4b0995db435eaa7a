//! Running the broker: data directory checks, listeners, shards, signals,
//! clean shutdown.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use glommio::net::TcpListener;
use sluice_engine::shard::{mesh_plan, run_shards, ShardPlan};
use sluice_engine::{DmaStorage, Mesh};
use sluice_net::acl::{AclStore, Authorizer, SharedAcls};
use sluice_net::broker::{ShardRequest, ShardResponse};
use sluice_net::config::SecurityProtocol;
use sluice_net::constants::{PORT_HELD_RETRY, PORT_HELD_WAIT};
use sluice_net::sasl::alter::SharedCredentials;
use sluice_net::sasl::credentials::CREDENTIALS_FILE;
use sluice_net::sasl::CredentialStore;
use sluice_net::{Broker, BrokerConfig};

use crate::config::SEGMENT_FILES_PER_SHARD_MIN;

/// How often a shard checks whether a shutdown signal arrived.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);
/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// How long a stopping shard waits for the file deletions it deferred to the
/// blocking pool (a deleted topic's segments) before it ends anyway.
const SHUTDOWN_DELETIONS_WAIT: Duration = Duration::from_secs(5);
/// Shares of the shard's background task queues (retention, the cleaner,
/// metrics), against the 1,000 of the queue requests run in: under load
/// they get about a tenth of the shard.
const BACKGROUND_SHARES: usize = 100;
/// The RLIMIT_MEMLOCK glommio wants for registered I/O buffers.
const MEMLOCK_WANTED_BYTES: u64 = 512 * 1024 * 1024;
/// The open files the broker asks for (RLIMIT_NOFILE): every partition
/// written holds its active segment open and every connection a socket,
/// so a broker of 100,000 partitions needs more than 100,000 to keep them
/// all open (Kafka's documentation asks for at least that). Linux's
/// default ceiling (`fs.nr_open`).
const NOFILE_WANTED: u64 = 1_048_576;
/// The descriptor table is grown to this many entries at start (or to the
/// open-file limit, if lower). The kernel grows a multi-threaded process's
/// table by doubling it, and each time waits for an RCU grace period in
/// the call that needed the new descriptor: measured in the compacted
/// benchmark, a shard's `openat` of a new segment blocked 9.4 ms when the
/// broker's descriptors passed 512 (`expand_files`, `synchronize_rcu`),
/// and that second's produce acks waited up to 15–28 ms. Grown at start,
/// before any client is served, the table needs no growing below this
/// size. It is about 2 MiB of kernel memory; past it, each doubling still
/// stalls its caller once.
const FD_TABLE_PRESIZE_MAX: u64 = 262_144;
/// Below this many open files the broker says at start that segment files
/// will be closed and opened again once many partitions are written.
const NOFILE_WARN_BELOW: u64 = 100_000;
/// The share of the open-file limit the shards' segment files may take
/// (1/2): the rest is for connections, the metadata log, files being
/// written whole (indexes, checkpoints) and io_uring's own.
const SEGMENT_FILES_SHARE_DIVISOR: u64 = 2;

/// `struct io_uring_params` in 32-bit words (120 bytes): what
/// io_uring_setup reads and fills in. The kernel refuses it unless its
/// reserved words are zero, so it starts all zeroes.
const IO_URING_PARAMS_WORDS: usize = 30;
/// Entries of the ring made only to see whether io_uring is allowed.
const IO_URING_PROBE_ENTRIES: u32 = 1;

/// Fails with one line when this process may not use io_uring. glommio
/// would otherwise panic inside its first executor with a message about old
/// kernels, whatever the cause; in practice the cause is a container's
/// seccomp profile (Docker's default refuses io_uring since Docker 25) or
/// the `kernel.io_uring_disabled` sysctl.
fn check_io_uring() -> Result<(), String> {
    let mut params = [0u32; IO_URING_PARAMS_WORDS];
    // SAFETY: io_uring_setup reads and writes the params struct, which
    // `params` is large enough and aligned for; the ring it returns is a
    // file descriptor closed right away.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            IO_URING_PROBE_ENTRIES,
            params.as_mut_ptr(),
        )
    };
    if fd < 0 {
        let error = std::io::Error::last_os_error();
        return Err(format!(
            "io_uring is not available to this process (io_uring_setup: {error}), and Sluice \
             needs it. In a container, allow io_uring_setup, io_uring_enter and \
             io_uring_register in its seccomp profile (docker run --security-opt \
             seccomp=deploy/seccomp-io_uring.json); on a host, the sysctl \
             kernel.io_uring_disabled must be 0, and the kernel 5.8 or later"
        ));
    }
    // SAFETY: closing the ring this function opened.
    unsafe {
        libc::close(fd as libc::c_int);
    }
    Ok(())
}

/// Raises the soft limit of `resource` toward `wanted`, as far as the hard
/// limit allows; with `hard_too`, first both limits to `wanted`, which
/// only a process allowed to raise hard limits (root) may do. Returns the
/// soft limit in force afterwards, `None` if it cannot be read.
fn raise_limit(resource: libc::__rlimit_resource_t, wanted: u64, hard_too: bool) -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read a plain struct.
    unsafe {
        if libc::getrlimit(resource, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur >= wanted {
            return Some(limit.rlim_cur);
        }
        let both = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: limit.rlim_max.max(wanted),
        };
        let soft = libc::rlimit {
            rlim_cur: limit.rlim_max.min(wanted),
            rlim_max: limit.rlim_max,
        };
        if hard_too && libc::setrlimit(resource, &both) == 0 {
            limit = both;
        } else if soft.rlim_cur > limit.rlim_cur && libc::setrlimit(resource, &soft) == 0 {
            limit = soft;
        }
    }
    Some(limit.rlim_cur)
}

/// Raises RLIMIT_MEMLOCK so glommio can register its buffers; where that is
/// not allowed, says once what it costs and how to fix it.
fn raise_memlock() {
    let Some(memlock) = raise_limit(libc::RLIMIT_MEMLOCK, MEMLOCK_WANTED_BYTES, false) else {
        return;
    };
    if memlock < MEMLOCK_WANTED_BYTES {
        tracing::warn!(
            memlock_bytes = memlock,
            "RLIMIT_MEMLOCK is {} KiB: io_uring registered buffers are unavailable, so I/O uses \
             unregistered buffers (slightly more CPU per I/O). To fix: `ulimit -l unlimited` or \
             LimitMEMLOCK=infinity in the systemd unit",
            memlock / 1024
        );
    }
}

/// Raises RLIMIT_NOFILE as far as allowed: the soft limit to the hard one,
/// and both to [`NOFILE_WANTED`] where the process may (root). Returns the
/// most segment files each of `shards` keeps open: a share of the limit.
/// Past it a shard closes idle segment files and opens them again on use,
/// which costs an open per partition that comes back; a low limit is said
/// once at start, with the fix.
fn raise_nofile(shards: usize) -> usize {
    let Some(open_files) = raise_limit(libc::RLIMIT_NOFILE, NOFILE_WANTED, true) else {
        return usize::MAX;
    };
    presize_fd_table(open_files.min(FD_TABLE_PRESIZE_MAX));
    let shards = u64::try_from(shards.max(1)).unwrap_or(u64::MAX);
    let per_shard =
        (open_files / SEGMENT_FILES_SHARE_DIVISOR / shards).max(SEGMENT_FILES_PER_SHARD_MIN as u64);
    if open_files < NOFILE_WARN_BELOW {
        tracing::warn!(
            open_files_max = open_files,
            segment_files_per_shard = per_shard,
            "RLIMIT_NOFILE is {open_files}: each shard keeps at most {per_shard} segment files \
             open, and a partition written after its idle file was closed opens it again. \
             To fix: `ulimit -n {NOFILE_WANTED}` or LimitNOFILE={NOFILE_WANTED} in the \
             systemd unit"
        );
    }
    usize::try_from(per_shard).unwrap_or(usize::MAX)
}

/// Grows the process's descriptor table to hold `entries` descriptors, by
/// placing a descriptor at the last of them and closing it again (the
/// kernel never shrinks the table). See [`FD_TABLE_PRESIZE_MAX`].
fn presize_fd_table(entries: u64) {
    let Ok(last) = libc::c_int::try_from(entries.saturating_sub(1)) else {
        return;
    };
    let Ok(null) = std::fs::File::open("/dev/null") else {
        return;
    };
    if last <= null.as_raw_fd() {
        return;
    }
    // SAFETY: `null` is an open descriptor this function owns. F_DUPFD
    // takes the lowest free descriptor at or above `last`, so no open one
    // is replaced (as dup2 onto `last` could).
    let placed = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, last) };
    if placed >= 0 {
        // SAFETY: `placed` was opened just above and nothing else holds it.
        unsafe { libc::close(placed) };
    } else {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            entries,
            "the descriptor table could not be grown ahead"
        );
    }
}

/// A client listener's sockets, one per shard, and the address they bound.
struct Bound {
    name: String,
    protocol: SecurityProtocol,
    fds: Vec<i32>,
    address: std::net::SocketAddr,
}

/// Every client listener's sockets, the first listener's first.
fn bind_listeners(config: &BrokerConfig) -> Result<Vec<Bound>, String> {
    let first = std::iter::once((
        config.first_listener_name(),
        config.listen,
        config.security_protocol,
        "--listen",
    ));
    let extra = config.extra_listeners.iter().map(|listener| {
        (
            listener.name.as_str(),
            listener.address,
            listener.protocol,
            "--listeners",
        )
    });
    first
        .chain(extra)
        .map(|(name, address, protocol, flag)| {
            let (fds, address) = bind_listener(config.shards, address, flag)?;
            Ok(Bound {
                name: name.to_string(),
                protocol,
                fds,
                address,
            })
        })
        .collect()
}

/// One listening socket per shard, all on the same port (SO_REUSEPORT) so
/// the kernel spreads connections over shards. Port 0 picks a free port for
/// the first and the rest share it.
fn bind_listener(
    shards: usize,
    address: std::net::SocketAddr,
    flag: &str,
) -> Result<(Vec<i32>, std::net::SocketAddr), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut address = address;
    if address.port() != 0 {
        check_port_free(address, flag)?;
    }
    let mut fds = Vec::with_capacity(shards);
    for _ in 0..shards {
        let bind = || -> std::io::Result<Socket> {
            let socket = Socket::new(
                Domain::for_address(address),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            socket.set_reuse_port(true)?;
            socket.set_reuse_address(true)?;
            socket.bind(&address.into())?;
            socket.listen(1024)?;
            Ok(socket)
        };
        let socket = bind().map_err(|error| {
            format!("cannot listen on {address}: {error}; choose another address with {flag}")
        })?;
        if address.port() == 0 {
            if let Some(local) = socket.local_addr().ok().and_then(|local| local.as_socket()) {
                address = local;
            }
        }
        fds.push(socket.into_raw_fd());
    }
    Ok((fds, address))
}

/// Fails when another process listens on `address` already. The shards'
/// sockets share their port through SO_REUSEPORT, which would as well let
/// a second broker started with the same listener (a copy of this one's
/// configuration, its node id included) bind it and take a share of the
/// clients' connections; a socket without SO_REUSEPORT cannot bind while
/// any listener holds the port.
fn check_port_free(address: std::net::SocketAddr, flag: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + PORT_HELD_WAIT;
    loop {
        match probe_port(address) {
            Err(PortProbe::Held) if std::time::Instant::now() < deadline => {
                std::thread::sleep(PORT_HELD_RETRY);
            }
            Err(PortProbe::Held) => {
                return Err(format!(
                    "cannot listen on {address}: another process listens there already (a \
                     second broker started with this one's settings?); choose another address \
                     with {flag}"
                ))
            }
            Err(PortProbe::Failed(error)) => {
                return Err(format!(
                    "cannot listen on {address}: {error}; choose another address with {flag}"
                ))
            }
            Ok(()) => return Ok(()),
        }
    }
}

enum PortProbe {
    /// Another listener holds the port.
    Held,
    Failed(std::io::Error),
}

fn probe_port(address: std::net::SocketAddr) -> Result<(), PortProbe> {
    use socket2::{Domain, Protocol, Socket, Type};
    let probe = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .and_then(|socket| {
        // Connections of an earlier process lingering in TIME_WAIT do not
        // hold the port.
        socket.set_reuse_address(true)?;
        socket.bind(&address.into())
    });
    match probe {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => Err(PortProbe::Held),
        Err(error) => Err(PortProbe::Failed(error)),
    }
}

/// The SASL users' credentials in the first data directory; without any,
/// one line says how to create the first user (no client can log in).
/// The credentials `sluice user create --data-dir` staged for the broker
/// to write to the metadata log at this start, if any.
fn load_staged_credentials(data_dir: &std::path::Path) -> Result<Option<CredentialStore>, String> {
    let staged = CredentialStore::load(data_dir)?;
    if let Some(staged) = &staged {
        let users: std::collections::BTreeSet<&str> =
            staged.iter().map(|(user, _, _)| user).collect();
        tracing::info!(
            users = users.len(),
            file = %data_dir.join(CREDENTIALS_FILE).display(),
            "staged SCRAM credentials found"
        );
    }
    Ok(staged)
}

static SHUTDOWN: AtomicBool = AtomicBool::new(false);
/// Set by SIGHUP: read the TLS files again.
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SHUTDOWN.store(true, Ordering::SeqCst);
}

extern "C" fn on_hangup(_: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handlers only store to atomics, which is signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hangup as *const () as libc::sighandler_t);
    }
}

/// Reloads the listeners' certificate, key and truststore on each SIGHUP,
/// and the controller port's (`controller`: the settings to read them by),
/// off the shards: the files are read and parsed on this thread, and the
/// next handshakes pick up the result. A reload that fails keeps what is
/// in use and says why in one line.
fn spawn_tls_reloader(
    tls: Option<Arc<sluice_net::tls::Tls>>,
    controller: Option<sluice_net::tls::TlsSettings>,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("tls-reload".into())
        .spawn(move || loop {
            std::thread::sleep(SHUTDOWN_POLL);
            if SHUTDOWN.load(Ordering::SeqCst) {
                return;
            }
            if !RELOAD.swap(false, Ordering::SeqCst) {
                continue;
            }
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("TLS certificate and truststore reloaded (SIGHUP)"),
                    Err(error) => {
                        tracing::warn!(%error, "TLS reload failed; the files loaded before stay in use")
                    }
                }
            }
            if let Some(settings) = &controller {
                match sluice_net::tls::install_controller_tls(settings) {
                    Ok(()) => tracing::info!("the controller port's TLS files reloaded (SIGHUP)"),
                    Err(error) => tracing::warn!(
                        %error,
                        "the controller port's TLS reload failed; the files loaded before stay in use"
                    ),
                }
            }
        })
        .map(drop)
        .map_err(|error| format!("starting the TLS reload thread failed: {error}"))
}

/// Runs the broker until SIGTERM/SIGINT. Returns the one-line error that
/// stopped it from starting, if any.
pub fn run(mut config: BrokerConfig) -> Result<(), String> {
    // First: a certificate that cannot be used is a configuration error,
    // said before anything else is looked at.
    if config.listener_protocols().any(SecurityProtocol::is_tls) {
        config.tls = Some(Arc::new(sluice_net::tls::Tls::load(&config.tls_settings)?));
    }
    if config.controller_security_protocol.is_tls() {
        sluice_net::tls::install_controller_tls(&config.tls_settings)
            .map_err(|error| format!("the controller port's TLS: {error}"))?;
    }
    check_io_uring()?;
    raise_memlock();
    config.segment_files_per_shard = config
        .segment_files_per_shard
        .min(raise_nofile(config.shards));
    sluice_net::log_dirs::check_missing(&mut config)?;
    let log_dirs = config.log_dirs();
    let checked = log_dirs.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            for dir in &checked {
                sluice_engine::metadata::prepare_data_dir(&DmaStorage, dir).await?;
            }
            Ok::<(), sluice_engine::OpenError>(())
        })
        .map_err(|error| format!("starting the runtime failed: {error}"))?
        .join()
        .map_err(|error| format!("checking the data directory failed: {error}"))?
        .map_err(|error| error.to_string())?;
    sluice_net::broker::finish_moves(&log_dirs)?;
    sluice_net::log_dirs::scan(&log_dirs)?;
    sluice_net::log_dirs::record(&config)?;
    // The SCRAM users are in the metadata log (for a SASL listener now, or
    // one configured later); the credential file holds staged ones.
    config.sasl.credentials = Some(Arc::new(SharedCredentials::new(load_staged_credentials(
        &config.data_dir,
    )?)?));
    if config.acl_authorizer {
        // The ACLs are in the metadata log; an ACL file is what a
        // single-node broker kept them in before, moved there at start.
        let legacy = AclStore::load(&config.data_dir)?;
        tracing::info!(
            old_acl_file = legacy.is_some(),
            allow_everyone_if_no_acl_found = config.allow_everyone_if_no_acl_found,
            "ACL authorizer on"
        );
        config.authorizer = Some(Arc::new(Authorizer {
            acls: Arc::new(SharedAcls::new(legacy)),
            allow_if_no_acl: config.allow_everyone_if_no_acl_found,
        }));
    }
    let bound = bind_listeners(&config)?;
    // The listeners after the first with the port each got (port 0 picks
    // one), for DescribeConfigs and their advertised address; the first
    // one's is patched in from the advertised address (describe_configs).
    for (extra, bound) in config.extra_listeners.iter_mut().zip(&bound[1..]) {
        extra.address = bound.address;
    }
    // Bound before the shards start, so that a taken port is a start error;
    // served from now on, so that /health answers and /ready says 503
    // while the data loads.
    let admin = match config.admin_listen {
        Some(admin_listen) => {
            let (listener, admin_address) = crate::admin_port::bind(admin_listen)?;
            crate::admin_port::spawn(
                listener,
                crate::admin_port::AdminState {
                    metrics: Arc::clone(&config.metrics),
                    data_dirs: log_dirs.clone(),
                },
            )?;
            Some(admin_address)
        }
        None => None,
    };
    install_signal_handlers();
    let controller_tls = config
        .controller_security_protocol
        .is_tls()
        .then(|| config.tls_settings.clone());
    if config.tls.is_some() || controller_tls.is_some() {
        spawn_tls_reloader(config.tls.clone(), controller_tls)?;
    }
    let config = Arc::new(config);
    let plan = mesh_plan::<ShardRequest, ShardResponse>(config.shards);
    let (ready_sender, ready_receiver) = mpsc::channel::<Result<(), String>>();
    let shard_plan = ShardPlan {
        shards: config.shards,
        pin: config.pin_shards,
        spin_before_park: (config.spin_before_park_us > 0)
            .then(|| std::time::Duration::from_micros(config.spin_before_park_us)),
    };
    let shard_config = Arc::clone(&config);
    let address = bound[0].address;
    let extra_addresses: Vec<(String, std::net::SocketAddr)> = bound[1..]
        .iter()
        .map(|extra| (extra.name.clone(), extra.address))
        .collect();
    let listeners = Arc::new(bound);
    let runner = std::thread::Builder::new()
        .name("shards".into())
        .spawn(move || {
            run_shards(&shard_plan, move |shard| {
                let plan = plan.clone();
                let config = Arc::clone(&shard_config);
                let ready = ready_sender.clone();
                let sockets: Vec<ShardListener> = listeners
                    .iter()
                    .map(|bound| ShardListener {
                        name: bound.name.clone(),
                        protocol: bound.protocol,
                        fd: bound.fds[shard.0 as usize],
                        address: bound.address,
                    })
                    .collect();
                async move {
                    use futures_lite::FutureExt;
                    // A shard that panics must not leave the process waiting
                    // for it: report it so start-up fails with a message.
                    let shard_run =
                        std::panic::AssertUnwindSafe(run_shard(config, plan, sockets, &ready));
                    match shard_run.catch_unwind().await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => {
                            let _ = ready.send(Err(error));
                        }
                        Err(_) => {
                            let _ = ready.send(Err(format!("shard {} panicked", shard.0)));
                        }
                    }
                }
            })
        })
        .map_err(|error| format!("starting shards failed: {error}"))?;
    let mut ready = 0;
    while ready < config.shards {
        match ready_receiver.recv_timeout(SHUTDOWN_POLL) {
            Ok(Ok(())) => ready += 1,
            Ok(Err(error)) => return Err(error),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if SHUTDOWN.load(Ordering::SeqCst) {
                    return Err("stopped by a signal during start-up".into());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("shards stopped during start-up".into())
            }
        }
    }
    // Before the line below: whoever reads it may ask /ready at once.
    config.metrics.set_ready(true);
    if let Some(admin) = admin {
        let _ = writeln!(std::io::stdout(), "sluice admin port listening on {admin}");
    }
    // Tests and scripts read this line to learn the port when listening on port 0.
    // Written, not printed: a closed or full stdout must not panic the broker.
    let _ = writeln!(std::io::stdout(), "sluice listening on {address}");
    for (name, extra) in &extra_addresses {
        let _ = writeln!(std::io::stdout(), "sluice {name} listener on {extra}");
    }
    let dirs: Vec<String> = log_dirs
        .iter()
        .map(|dir| dir.display().to_string())
        .collect();
    tracing::info!(
        %address,
        admin = ?admin,
        security_protocol = config.security_protocol.name(),
        shards = config.shards,
        data_dirs = %dirs.join(","),
        "broker ready"
    );
    match runner.join() {
        Ok(Ok(())) => {
            tracing::info!("broker stopped cleanly");
            Ok(())
        }
        Ok(Err(error)) => Err(error),
        Err(_) => Err("a shard panicked".into()),
    }
}

/// One client listener's socket on one shard.
struct ShardListener {
    name: String,
    protocol: SecurityProtocol,
    fd: i32,
    address: std::net::SocketAddr,
}

async fn run_shard(
    config: Arc<BrokerConfig>,
    plan: sluice_engine::shard::MeshPlan<ShardRequest, ShardResponse>,
    sockets: Vec<ShardListener>,
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    let mesh = Mesh::join(plan).await?;
    let broker = Broker::new(Arc::clone(&config), mesh).await?;
    let first = sockets
        .first()
        .ok_or_else(|| "no client listener".to_string())?
        .address;
    broker.set_advertised(
        config.advertised_host(),
        config.advertised_port.unwrap_or(first.port()),
    );
    if broker.shard.0 == 0 {
        broker.start_controller().await?;
    }
    broker.wait_ready().await;
    let mut accepts = Vec::with_capacity(sockets.len());
    for (index, socket) in sockets.iter().enumerate() {
        let advertised = index
            .checked_sub(1)
            .and_then(|extra| config.extra_listeners.get(extra))
            .map(|extra| config.advertised_of(extra, socket.address));
        let context = std::rc::Rc::new(sluice_net::server::Listener {
            index,
            name: socket.name.clone(),
            protocol: socket.protocol,
            advertised,
        });
        broker.add_listener(std::rc::Rc::clone(&context));
        // SAFETY: fd is a listening socket created for this shard and owned by nobody else.
        let listener = unsafe { TcpListener::from_raw_fd(socket.fd) };
        accepts.push(glommio::spawn_local(sluice_net::server::accept_loop(
            std::rc::Rc::clone(&broker),
            listener,
            context,
        )));
    }
    broker.metrics.shared().set_accepting(true);
    let background = glommio::executor().create_task_queue(
        glommio::Shares::Static(BACKGROUND_SHARES),
        glommio::Latency::NotImportant,
        "retention",
    );
    if let Ok(task) =
        glommio::spawn_local_into(std::rc::Rc::clone(&broker).run_retention(), background)
    {
        task.detach();
    }
    // The cleaner has a queue of its own, as low in priority, so that the
    // shard's time it takes is measured apart (`sluice_cleaner_busy_seconds_total`).
    let cleaner = glommio::executor().create_task_queue(
        glommio::Shares::Static(BACKGROUND_SHARES),
        glommio::Latency::NotImportant,
        "cleaner",
    );
    broker.metrics.set_cleaner_queue(cleaner);
    if let Ok(task) = glommio::spawn_local_into(std::rc::Rc::clone(&broker).run_cleaner(), cleaner)
    {
        task.detach();
    }
    glommio::spawn_local(std::rc::Rc::clone(&broker).run_isr_checks()).detach();
    glommio::spawn_local(std::rc::Rc::clone(&broker).watch_storage()).detach();
    if config.admin_listen.is_some() {
        if let Ok(task) =
            glommio::spawn_local_into(std::rc::Rc::clone(&broker).publish_metrics(), background)
        {
            task.detach();
        }
    }
    let _ = ready.send(Ok(()));
    while !SHUTDOWN.load(Ordering::SeqCst) {
        glommio::timer::sleep(SHUTDOWN_POLL).await;
    }
    // A stopping broker is not ready: /ready turns clients and load
    // balancers away while it hands over its leaderships.
    config.metrics.set_ready(false);
    // Still serving while the leaderships move, so that requests in flight
    // are answered (NOT_LEADER_OR_FOLLOWER once a leadership has moved).
    broker.metrics.shared().set_accepting(false);
    broker.controlled_shutdown().await;
    broker.shutting_down.set(true);
    // Wake the accept loops so they see the flag; no new connections.
    for socket in &sockets {
        // SAFETY: shutting down our own listening socket.
        unsafe {
            libc::shutdown(socket.fd, libc::SHUT_RDWR);
        }
    }
    drop(accepts);
    glommio::timer::sleep(SHUTDOWN_GRACE).await;
    broker.close_logs().await;
    let unfinished = sluice_engine::finish_deletions(SHUTDOWN_DELETIONS_WAIT).await;
    if unfinished > 0 {
        tracing::info!(
            unfinished,
            "deletions still running at shutdown; the next start finishes them"
        );
    }
    Ok(())
}
