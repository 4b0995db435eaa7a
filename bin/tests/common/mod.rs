//! Harness for the integration scenarios: runs the real `sluice` binary on
//! 127.0.0.1 port 0 with its own data directory, and talks to it with
//! librdkafka (the `rdkafka` crate) or raw sockets.
//!
//! A [`TestBroker`] owns its process: dropping it stops the broker (SIGTERM,
//! then SIGKILL after [`STOP_TIMEOUT`]) and removes the directory. The broker's
//! stderr goes to `broker.log` in that directory; when a test panics, the tail
//! of the log is printed before the directory is removed, so a failure comes
//! with the broker's side of the story.

// Each scenario file uses a different part of the harness.
#![allow(dead_code)]

pub mod disk;
pub mod netns;
pub mod pki;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

pub use netns::Host;

/// How long a broker may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a broker may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Generous bound for client operations on a loaded 2-core CI machine.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Between watermark queries a new leader refused as not caught up.
const WATERMARK_RETRY_INTERVAL: Duration = Duration::from_millis(50);
/// Shards every test broker runs.
pub const SHARDS: usize = 2;
/// Lines of the broker log shown when a test fails.
const LOG_TAIL_LINES: usize = 60;
/// `CAP_SYS_RESOURCE` (linux/capability.h): lets a process raise its hard
/// resource limits.
const CAP_SYS_RESOURCE: libc::c_ulong = 24;

static NEXT_BROKER: AtomicU32 = AtomicU32::new(0);

/// The broker binary the tests start: this build's, or the one
/// `SLUICE_TEST_BINARY` names (a copy that a rebuild during a long run
/// cannot replace, or a build with a planted defect).
pub fn broker_binary() -> PathBuf {
    std::env::var_os("SLUICE_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice")))
}

/// How a broker is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: a clean shutdown that flushes and closes every log.
    Term,
    /// SIGKILL: a crash; only what was made durable survives.
    Kill,
}

/// A running `sluice` process and the directory it owns.
pub struct TestBroker {
    root: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
    /// Where it runs and listens (the test's own loopback unless a test
    /// puts it on a host of a [`TestNetwork`]).
    host: Host,
    address: SocketAddr,
    starts: u32,
    /// Where stderr goes instead of `broker.log`, if set.
    stderr_path: Option<PathBuf>,
    /// The listening address, once a launched process reports it.
    /// (In a mutex so that a broker can be shared with scoped threads.)
    listening: Option<Mutex<mpsc::Receiver<String>>>,
    /// Whether a restart listens on the port of the first start, as a
    /// deployed broker does, instead of a new one.
    keep_port: bool,
    /// Every line the process wrote to stdout (its listeners' addresses).
    announced: Arc<Mutex<Vec<String>>>,
    /// RLIMIT_NOFILE (soft and hard) the process starts with, which it may
    /// not raise, if set.
    open_files_limit: Option<u64>,
}

impl TestBroker {
    /// Starts a broker with a fresh data directory.
    pub fn start() -> TestBroker {
        TestBroker::start_with(&[])
    }

    /// Starts a broker with extra `--setting value` flags.
    pub fn start_with(extra_args: &[&str]) -> TestBroker {
        TestBroker::start_logging_to(None, extra_args)
    }

    /// Starts a broker whose stderr (its log) goes to `stderr_path`, e.g.
    /// `/dev/full` to check that a log it cannot write does not stop it.
    pub fn start_logging_to(stderr_path: Option<&Path>, extra_args: &[&str]) -> TestBroker {
        TestBroker::start_prepared(stderr_path, extra_args, |_| {})
    }

    /// Starts a broker after `prepare` has been given its (not yet created)
    /// data directory, e.g. to mount a small file system there.
    pub fn start_prepared(
        stderr_path: Option<&Path>,
        extra_args: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> TestBroker {
        TestBroker::start_limited(stderr_path, extra_args, prepare, None)
    }

    /// Starts a broker that may hold at most `limit` files open: its
    /// RLIMIT_NOFILE, soft and hard, without the capability to raise it.
    pub fn start_with_open_files(limit: u64, extra_args: &[&str]) -> TestBroker {
        TestBroker::start_limited(None, extra_args, |_| {}, Some(limit))
    }

    fn start_limited(
        stderr_path: Option<&Path>,
        extra_args: &[&str],
        prepare: impl FnOnce(&Path),
        open_files_limit: Option<u64>,
    ) -> TestBroker {
        let root = unique_dir();
        fs::create_dir_all(&root).unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
        prepare(&root.join("data"));
        let mut broker = TestBroker {
            root,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            child: None,
            host: Host::loopback(),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            starts: 0,
            stderr_path: stderr_path.map(Path::to_path_buf),
            listening: None,
            keep_port: false,
            announced: Arc::default(),
            open_files_limit,
        };
        broker.spawn();
        broker
    }

    /// Starts brokers that only become ready together (the voters of one
    /// metadata quorum): every process is launched before any is waited for.
    pub fn start_together(args: &[Vec<String>]) -> Vec<TestBroker> {
        let placed: Vec<(Vec<String>, Host)> = args
            .iter()
            .map(|extra| (extra.clone(), Host::loopback()))
            .collect();
        TestBroker::start_together_on(&placed)
    }

    /// Like [`TestBroker::start_together`], each broker on its own host.
    pub fn start_together_on(placed: &[(Vec<String>, Host)]) -> Vec<TestBroker> {
        let mut brokers: Vec<TestBroker> = placed
            .iter()
            .map(|(extra, host)| {
                let root = unique_dir();
                fs::create_dir_all(&root)
                    .unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
                let mut broker = TestBroker {
                    root,
                    extra_args: extra.clone(),
                    child: None,
                    host: host.clone(),
                    address: SocketAddr::new(host.ip, 0),
                    starts: 0,
                    stderr_path: None,
                    listening: None,
                    keep_port: false,
                    announced: Arc::default(),
                    open_files_limit: None,
                };
                broker.launch();
                broker
            })
            .collect();
        for broker in &mut brokers {
            broker.await_listening();
        }
        brokers
    }

    /// The controller port it was started with (`--controller-listen`).
    pub fn controller_address(&self) -> Option<SocketAddr> {
        self.extra_args
            .iter()
            .position(|arg| arg == "--controller-listen")
            .and_then(|at| self.extra_args.get(at + 1))
            .and_then(|address| address.parse().ok())
    }

    /// More flags for the next start (a broker stopped first).
    pub fn add_args(&mut self, args: &[&str]) {
        assert!(self.child.is_none(), "broker running");
        self.extra_args
            .extend(args.iter().map(|arg| arg.to_string()));
    }

    /// The directory this broker's own directories live in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("broker.log")
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.address.to_string()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The broker's process id (for asserting that it is still alive).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Resident memory of the broker process, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.pid();
        let status =
            fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc status");
        let line = status
            .lines()
            .find(|line| line.starts_with("VmRSS:"))
            .expect("VmRSS line");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("VmRSS value");
        kib * 1024
    }

    /// Panics if the broker process has exited.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("broker not started");
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the broker exited ({status}); log tail:\n{}",
                self.log_tail()
            );
        }
    }

    fn spawn(&mut self) {
        self.launch();
        self.await_listening();
    }

    /// From now on, restarts listen on the port the broker listens on now
    /// (a port chosen at the first start, so only on a host of its own,
    /// where no other process takes ports, is it sure to be free).
    /// librdkafka finds a coordinator's address by its node id in the
    /// metadata it holds, not in the FindCoordinator answer, so a broker
    /// that comes back on a new port leaves a transactional producer
    /// calling the old one until its next metadata refresh.
    pub fn keep_port(&mut self) {
        self.keep_port = true;
    }

    fn listen_address(&self) -> SocketAddr {
        let port = if self.keep_port {
            self.address.port()
        } else {
            0
        };
        SocketAddr::new(self.host.ip, port)
    }

    /// Starts the process without waiting for it to listen.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        self.starts += 1;
        let log_path = self.stderr_path.clone().unwrap_or_else(|| self.log_path());
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("opening the broker log {}: {e}", log_path.display()));
        let _ = writeln!(&log, "==== start {} ====", self.starts);
        let mut command = Command::new(broker_binary());
        command.arg("--data-dir").arg(self.data_dir());
        // A test that lists the listeners itself names the first one too.
        if !self.extra_args.iter().any(|arg| arg == "--listeners") {
            command
                .arg("--listen")
                .arg(self.listen_address().to_string());
        }
        command
            .args(["--shards", &SHARDS.to_string(), "--pin-shards", "false"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if std::env::var_os("SLUICE_LOG").is_none() {
            command.env("SLUICE_LOG", "info");
        }
        command.env("NO_COLOR", "1");
        // The host's network namespace, entered between fork and exec.
        let namespace = self.host.namespace.as_ref().map(|name| {
            let path = Path::new("/run/netns").join(name);
            fs::File::open(&path)
                .unwrap_or_else(|e| panic!("opening the namespace {}: {e}", path.display()))
        });
        let namespace_fd = namespace.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        let open_files_limit = self.open_files_limit;
        // If the test process dies without running destructors (a killed
        // `cargo test`), the kernel kills the broker too.
        // SAFETY: prctl and setns are async-signal-safe system calls that
        // touch no parent state; the namespace file stays open until after
        // the spawn.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(limit) = open_files_limit {
                    // Out of the bounding set, the capability is not the
                    // broker's after exec, even as root: it cannot raise
                    // the hard limit, as in a container.
                    libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_RESOURCE);
                    let both = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &both) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(fd) = namespace_fd {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting sluice: {e}"));
        drop(namespace);
        let stdout = child.stdout.take().expect("stdout is piped");
        // A thread reads stdout for the life of the process, so the broker
        // never blocks on a full pipe; the first listening line is the port.
        let (sender, receiver) = mpsc::channel();
        let announced = Arc::clone(&self.announced);
        thread::spawn(move || {
            let mut sender = Some(sender);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                announced
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line.clone());
                if let Some(address) = line.strip_prefix("sluice listening on ") {
                    if let Some(sender) = sender.take() {
                        let _ = sender.send(address.trim().to_string());
                    }
                }
            }
        });
        self.child = Some(child);
        self.listening = Some(Mutex::new(receiver));
    }

    /// The address of the listener for `protocol` after the first, as the
    /// process announced it (waiting for the line if need be).
    pub fn listener(&self, protocol: &str) -> SocketAddr {
        let prefix = format!("sluice {protocol} listener on ");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let found = self
                .announced
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .rev()
                .find_map(|line| line.strip_prefix(&prefix).map(str::to_string));
            if let Some(address) = found {
                return address
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("bad address '{address}': {e}"));
            }
            assert!(
                Instant::now() < deadline,
                "the broker announced no {protocol} listener"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a launched process reports its listening address.
    pub fn await_listening(&mut self) {
        let receiver = self.listening.take().expect("launched");
        let received = receiver
            .into_inner()
            .map(|receiver| receiver.recv_timeout(START_TIMEOUT));
        match received.unwrap_or(Err(mpsc::RecvTimeoutError::Disconnected)) {
            Ok(address) => {
                self.address = address
                    .parse()
                    .unwrap_or_else(|e| panic!("bad address '{address}': {e}"));
                assert_eq!(
                    self.address.ip(),
                    self.host.ip,
                    "broker bound {address}, not its host's address"
                );
            }
            Err(_) => {
                self.stop(Stop::Kill);
                panic!(
                    "the broker exited or did not report its port within {START_TIMEOUT:?}; log tail:\n{}",
                    self.log_tail()
                );
            }
        }
    }

    /// Stops the process (no-op if it is not running) and waits for it.
    /// Returns whether it exited by itself with status 0 (after SIGTERM).
    pub fn stop(&mut self, how: Stop) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let pid = child.id() as libc::pid_t;
        let signal = match how {
            Stop::Term => libc::SIGTERM,
            Stop::Kill => libc::SIGKILL,
        };
        // SAFETY: signalling our own child, which has not been reaped yet
        // (so the pid cannot have been reused).
        unsafe {
            libc::kill(pid, signal);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
        eprintln!("broker {pid} did not exit within {STOP_TIMEOUT:?} of {how:?}; killing it");
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Stops the broker and starts it again on the same data directory (on a
    /// new port: clients must be recreated with the new `bootstrap()`).
    /// Panics if a SIGTERM stop was not clean.
    pub fn restart(&mut self, how: Stop) {
        let clean = self.stop(how);
        if how == Stop::Term {
            assert!(
                clean,
                "the broker did not shut down cleanly on SIGTERM; log tail:\n{}",
                self.log_tail()
            );
        }
        self.spawn();
    }

    /// Starts the broker again after [`TestBroker::stop`] (e.g. once the
    /// test has changed its data directory).
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// The last lines of the broker's stderr.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// The whole broker log (for asserting on what it logged).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    // ---- clients -------------------------------------------------------

    /// A client config pointing at this broker, with short timeouts so a
    /// broken broker fails the test instead of hanging it.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("broker.address.family", "v4")
            .set("socket.timeout.ms", "30000")
            .set("message.timeout.ms", "60000")
            .set("topic.metadata.refresh.interval.ms", "5000")
            .set("log_level", "4");
        config
    }

    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.client_config()
            .create()
            .expect("creating the admin client")
    }

    /// A consumer that only uses `assign()` (no group coordination).
    pub fn consumer(&self, extra: &[(&str, &str)]) -> BaseConsumer {
        let mut config = self.client_config();
        config
            .set("group.id", "sluice-tests")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest");
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config.create().expect("creating the consumer")
    }

    /// Creates a topic and checks that it was created.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        create_topic(&self.admin(), name, partitions, &[]);
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        let was_running = self.child.is_some();
        let clean = self.stop(Stop::Term);
        if panicking {
            eprintln!(
                "---- broker log tail ({}) ----\n{}\n----",
                self.root.display(),
                self.log_tail()
            );
        } else if was_running && !clean {
            // A broker that does not exit cleanly on SIGTERM is a bug, but a
            // panic in drop would abort; say it loudly instead.
            eprintln!(
                "broker did not exit cleanly on SIGTERM; log tail:\n{}",
                self.log_tail()
            );
        }
        if std::env::var_os("SLUICE_TEST_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

fn unique_dir() -> PathBuf {
    let n = NEXT_BROKER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("sluice-it-{}-{n}-{nanos}", std::process::id()))
}

/// `sluice ARGS --bootstrap BROKER`: its standard output; it must succeed.
pub fn cli(broker: &TestBroker, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--bootstrap", &broker.bootstrap()])
        .output()
        .expect("running sluice");
    assert!(
        output.status.success(),
        "sluice {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

pub fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(30)))
}

/// Creates a topic through the admin API and asserts success.
pub fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    create_replicated_topic(admin, name, partitions, 1, configs);
}

/// Creates `name` with `replicas` replicas of each partition.
pub fn create_replicated_topic(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    partitions: i32,
    replicas: i32,
    configs: &[(&str, &str)],
) {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replicas));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = futures_lite::future::block_on(admin.create_topics([&topic], &admin_options()))
        .expect("CreateTopics request");
    assert_eq!(results.len(), 1);
    if let Err((topic, error)) = &results[0] {
        panic!("creating topic {topic}: {error:?}");
    }
}

/// Digits of the index at the start of an [`indexed_value`].
const INDEX_DIGITS: usize = 8;

/// A value of `len` bytes that starts with `index`, so that a test can
/// tell which record it reads back and check the order.
pub fn indexed_value(index: usize, len: usize) -> Vec<u8> {
    let mut value = format!("{index:0INDEX_DIGITS$}").into_bytes();
    value.resize(len.max(INDEX_DIGITS), b'.');
    value
}

/// A message as a test expects to read it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
}

impl Record {
    /// A record with a value only, for `partition` (-1: the partitioner's
    /// choice).
    pub fn with_value(partition: i32, value: Vec<u8>) -> Record {
        Record {
            partition,
            offset: -1,
            key: None,
            value: Some(value),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// The index an [`indexed_value`] starts with.
    pub fn value_index(&self) -> usize {
        let value = self.value.as_deref().unwrap_or_default();
        value
            .get(..INDEX_DIGITS)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("offset {} holds no record index", self.offset))
    }

    pub fn from_message<M: Message>(message: &M) -> Record {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| (header.key.to_string(), header.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp: message.timestamp().to_millis(),
        }
    }
}

/// Assigns `partitions` of `topic` from `start` and polls until `done` says
/// the records read so far are enough, or `timeout` passes (then panics).
/// Returns every record read, in the order read.
pub fn consume(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    start: Offset,
    timeout: Duration,
    mut done: impl FnMut(&[Record]) -> bool,
) -> Vec<Record> {
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment
            .add_partition_offset(topic, *partition, start)
            .expect("adding a partition");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while !done(&records) {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} with {} records read",
            records.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                assert_eq!(message.topic(), topic);
                records.push(Record::from_message(&message));
            }
            Some(Err(error)) => panic!("consumer error: {error}"),
        }
    }
    records
}

/// Reads every partition of `topic` from the beginning up to the high
/// watermarks as they are now, and returns the records grouped by partition.
/// Checks on the way that each partition's offsets are contiguous from its
/// log start offset (no gaps, no repeats).
pub fn read_all(broker: &TestBroker, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<Record>> {
    let consumer = broker.consumer(&[]);
    let mut ends = BTreeMap::new();
    let mut starts = BTreeMap::new();
    for partition in 0..partitions {
        // A leader that just took over answers OFFSET_NOT_AVAILABLE
        // (retriable) until its high watermark has caught up (KIP-207);
        // librdkafka hands that to the caller of a watermark query.
        let (low, high) = wait_for(
            &format!("the watermarks of {topic}-{partition}"),
            CLIENT_TIMEOUT,
            WATERMARK_RETRY_INTERVAL,
            || {
                consumer
                    .fetch_watermarks(topic, partition, CLIENT_TIMEOUT)
                    .map_err(|error| error.to_string())
            },
        );
        starts.insert(partition, low);
        ends.insert(partition, high);
    }
    let expected: i64 = ends.iter().map(|(p, high)| high - starts[p]).sum();
    let all: Vec<i32> = (0..partitions).collect();
    let records = consume(
        &consumer,
        topic,
        &all,
        Offset::Beginning,
        CLIENT_TIMEOUT,
        |records| records.len() as i64 >= expected,
    );
    let mut grouped: BTreeMap<i32, Vec<Record>> =
        (0..partitions).map(|p| (p, Vec::new())).collect();
    for record in records {
        grouped
            .get_mut(&record.partition)
            .expect("a requested partition")
            .push(record);
    }
    for (partition, records) in &grouped {
        let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
        let want: Vec<i64> = (starts[partition]..ends[partition]).collect();
        assert_eq!(
            offsets, want,
            "partition {partition}: offsets are not contiguous from the log start"
        );
    }
    grouped
}

/// What the broker said about one message.
pub type Delivery = Result<(i32, i64), String>;

/// Delivery reports by message index, filled by librdkafka's thread.
struct Reports {
    results: Mutex<Vec<Option<Delivery>>>,
}

struct ReportContext(Arc<Reports>);

impl rdkafka::ClientContext for ReportContext {}

impl rdkafka::producer::ProducerContext for ReportContext {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, index: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _)) => Err(error.to_string()),
        };
        let mut results = self.0.results.lock().expect("reports lock");
        if results.len() <= *index {
            results.resize(*index + 1, None);
        }
        results[*index] = Some(outcome);
    }
}

/// A librdkafka producer that numbers its messages and keeps every
/// delivery report, so a test knows exactly what the broker acknowledged.
pub struct TrackedProducer {
    producer: ThreadedProducer<ReportContext>,
    reports: Arc<Reports>,
    topic: String,
    sent: usize,
}

impl TrackedProducer {
    pub fn new(broker: &TestBroker, topic: &str, settings: &[(&str, &str)]) -> TrackedProducer {
        TrackedProducer::with_config(broker.client_config(), topic, settings)
    }

    /// A producer built from `config`, with `settings` on top of the test
    /// defaults.
    pub fn with_config(
        mut config: ClientConfig,
        topic: &str,
        settings: &[(&str, &str)],
    ) -> TrackedProducer {
        let reports = Arc::new(Reports {
            results: Mutex::new(Vec::new()),
        });
        config.set("linger.ms", "5");
        for (key, value) in settings {
            config.set(*key, *value);
        }
        let producer = config
            .create_with_context(ReportContext(Arc::clone(&reports)))
            .expect("creating the producer");
        TrackedProducer {
            producer,
            reports,
            topic: topic.to_string(),
            sent: 0,
        }
    }

    /// Queues one message (waiting while librdkafka's queue is full) and
    /// returns its index. `record.partition < 0` lets the partitioner choose.
    pub fn send(&mut self, record: &Record) -> usize {
        let index = self.sent;
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key: key.as_str(),
                value: value.as_deref(),
            });
        }
        let mut message: BaseRecord<'_, [u8], [u8], Box<usize>> =
            BaseRecord::with_opaque_to(&self.topic, Box::new(index)).headers(headers);
        if let Some(key) = &record.key {
            message = message.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            message = message.payload(value.as_slice());
        }
        if let Some(timestamp) = record.timestamp {
            message = message.timestamp(timestamp);
        }
        if record.partition >= 0 {
            message = message.partition(record.partition);
        }
        loop {
            match self.producer.send(message) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    message = back;
                    thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => panic!("producing message {index}: {error}"),
            }
        }
        self.sent += 1;
        index
    }

    /// Waits until every queued message has a delivery report.
    pub fn flush(&self) {
        self.producer
            .flush(CLIENT_TIMEOUT)
            .expect("flushing the producer");
    }

    /// Fails every message not yet acknowledged, queued or in flight (a
    /// producer whose broker is gone), and waits for their reports. A
    /// message in flight may still have been stored; it is reported as
    /// failed, as librdkafka reports it.
    pub fn abandon(&self) {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let _ = self.producer.flush(CLIENT_TIMEOUT);
    }

    /// Delivery reports so far, by message index (`None`: no report yet).
    pub fn reports(&self) -> Vec<Option<Delivery>> {
        let mut results = self.reports.results.lock().expect("reports lock").clone();
        results.resize(self.sent, None);
        results
    }

    /// Every message's outcome after a flush: a missing report is an
    /// error too.
    pub fn outcomes(&self) -> Vec<Delivery> {
        self.reports()
            .into_iter()
            .map(|report| report.unwrap_or_else(|| Err("no delivery report".to_string())))
            .collect()
    }

    /// How many messages the broker has acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.reports
            .results
            .lock()
            .expect("reports lock")
            .iter()
            .filter(|report| matches!(report, Some(Ok(_))))
            .count()
    }
}

/// Produces `records` to `topic` with the given producer settings and waits
/// until every one is acknowledged (panicking on any failed delivery).
/// Returns the (partition, offset) of each, in input order; offsets are -1
/// for acks=0, where the broker tells nothing.
pub fn produce_all(
    broker: &TestBroker,
    topic: &str,
    settings: &[(&str, &str)],
    records: &[Record],
) -> Vec<(i32, i64)> {
    let mut producer = TrackedProducer::new(broker, topic, settings);
    for record in records {
        producer.send(record);
    }
    producer.flush();
    producer
        .reports()
        .into_iter()
        .enumerate()
        .map(|(index, report)| match report {
            Some(Ok(position)) => position,
            Some(Err(error)) => panic!("message {index} was not delivered: {error}"),
            None => panic!("message {index} has no delivery report after flush"),
        })
        .collect()
}

/// A deterministic pseudo-random generator (xorshift), so a failing run can
/// be reproduced and expected data regenerated without storing it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    /// `len` bytes, half of them runs of one byte so every codec has
    /// something to compress and something it cannot.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let run = (self.below(16) + 1) as usize;
            let byte = self.next() as u8;
            if self.next() & 1 == 0 {
                out.resize(out.len() + run, byte);
            } else {
                out.extend((0..run).map(|_| self.next() as u8));
            }
        }
        out.truncate(len);
        out
    }
}

/// Milliseconds since the epoch now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---- raw wire helpers --------------------------------------------------

/// Metadata requests for `topic`, each on a fresh connection (`connections`
/// of them, so every shard is asked); the slowest answer's time.
pub fn slowest_metadata_answer(
    broker: &TestBroker,
    topic: &str,
    connections: usize,
    correlation: &mut i32,
) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..connections {
        let started = Instant::now();
        let mut stream = raw_connect(broker.address());
        *correlation += 1;
        let answer = raw_metadata(&mut stream, Some(vec![topic]), false, *correlation);
        assert_eq!(answer.topics.len(), 1, "metadata of one topic asked for");
        slowest = slowest.max(started.elapsed());
    }
    slowest
}

/// Connects a raw TCP client with read/write timeouts.
pub fn raw_connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connecting");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .expect("write timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads one length-prefixed response frame (without the length).
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let length = i32::from_be_bytes(length);
    assert!((0..64 << 20).contains(&length), "response length {length}");
    let mut frame = vec![0u8; length as usize];
    stream.read_exact(&mut frame)?;
    Ok(frame)
}

/// Asserts that the broker closes the connection: reading returns end of
/// stream (or a reset) within the read timeout, with no response bytes.
pub fn assert_closed(stream: &mut TcpStream, what: &str) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Ok(_) => panic!("{what}: the broker answered instead of closing the connection"),
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(error) => panic!("{what}: expected the connection to be closed, got {error}"),
    }
}

/// Sends one request frame: length, header (of the version the API wants
/// at `version`), body, encoded with kafka-protocol's encoders.
pub fn send_request<R: kafka_protocol::protocol::Encodable>(
    stream: &mut TcpStream,
    api_key: kafka_protocol::messages::ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) {
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let mut header = kafka_protocol::messages::RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("sluice-raw-test"));
    let mut frame = bytes::BytesMut::new();
    header
        .encode(&mut frame, api_key.request_header_version(version))
        .expect("encoding the header");
    body.encode(&mut frame, version).expect("encoding the body");
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    stream.write_all(&out).expect("sending the request");
}

/// Reads one response and decodes it; checks the correlation id.
pub fn receive_response<R: kafka_protocol::protocol::Decodable>(
    stream: &mut TcpStream,
    api_key: kafka_protocol::messages::ApiKey,
    version: i16,
    correlation_id: i32,
) -> R {
    use kafka_protocol::protocol::Decodable;
    let frame = read_response(stream).expect("reading the response");
    let mut frame = bytes::Bytes::from(frame);
    let header = kafka_protocol::messages::ResponseHeader::decode(
        &mut frame,
        api_key.response_header_version(version),
    )
    .expect("decoding the response header");
    assert_eq!(header.correlation_id, correlation_id, "correlation id");
    let response = R::decode(&mut frame, version).expect("decoding the response");
    assert!(
        frame.is_empty(),
        "{} trailing bytes after the response",
        frame.len()
    );
    response
}

/// Makes a SCRAM user in a broker's data directory before it starts (the
/// offline `sluice user create`), with `password` given on stdin.
pub fn create_user_offline(data_dir: &Path, user: &str, password: &str) {
    let mut child = Command::new(broker_binary())
        .args(["user", "create", "--data-dir"])
        .arg(data_dir)
        .args(["--user", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running sluice user create");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(format!("{password}\n").as_bytes())
        .expect("writing the password");
    let output = child.wait_with_output().expect("waiting for sluice user");
    assert!(
        output.status.success(),
        "sluice user create {user}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The SaslHandshake and SaslAuthenticate versions raw clients speak.
pub const SASL_HANDSHAKE_VERSION: i16 = 1;
pub const SASL_AUTHENTICATE_VERSION: i16 = 2;

/// One SaslHandshake on a raw connection.
pub fn handshake(
    stream: &mut std::net::TcpStream,
    mechanism: &str,
    correlation: i32,
) -> kafka_protocol::messages::SaslHandshakeResponse {
    let mut request = kafka_protocol::messages::SaslHandshakeRequest::default();
    request.mechanism = text(mechanism);
    send_request(
        stream,
        kafka_protocol::messages::ApiKey::SaslHandshake,
        SASL_HANDSHAKE_VERSION,
        correlation,
        &request,
    );
    receive_response(
        stream,
        kafka_protocol::messages::ApiKey::SaslHandshake,
        SASL_HANDSHAKE_VERSION,
        correlation,
    )
}

/// One SaslAuthenticate on a raw connection.
pub fn authenticate(
    stream: &mut std::net::TcpStream,
    token: &[u8],
    correlation: i32,
) -> kafka_protocol::messages::SaslAuthenticateResponse {
    let mut request = kafka_protocol::messages::SaslAuthenticateRequest::default();
    request.auth_bytes = bytes::Bytes::copy_from_slice(token);
    send_request(
        stream,
        kafka_protocol::messages::ApiKey::SaslAuthenticate,
        SASL_AUTHENTICATE_VERSION,
        correlation,
        &request,
    );
    receive_response(
        stream,
        kafka_protocol::messages::ApiKey::SaslAuthenticate,
        SASL_AUTHENTICATE_VERSION,
        correlation,
    )
}

/// A SASL/PLAIN token: authorization id (empty), user, password.
pub fn plain_token(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

/// Logs a raw connection in with SASL/PLAIN, asserting that it succeeds.
pub fn plain_login(stream: &mut TcpStream, user: &str, password: &str) {
    let accepted = handshake(stream, "PLAIN", 1);
    assert_eq!(accepted.error_code, 0, "SaslHandshake PLAIN as {user}");
    let authenticated = authenticate(stream, &plain_token(user, password), 2);
    assert_eq!(
        authenticated.error_code, 0,
        "SaslAuthenticate as {user}: {:?}",
        authenticated.error_message
    );
}

/// The Metadata version of [`raw_metadata`].
pub const RAW_METADATA_VERSION: i16 = 12;

/// A raw Metadata request (v12) naming `topics` (all of them when `None`).
pub fn raw_metadata(
    stream: &mut std::net::TcpStream,
    topics: Option<Vec<&str>>,
    allow_auto_topic_creation: bool,
    correlation: i32,
) -> kafka_protocol::messages::MetadataResponse {
    let mut request = kafka_protocol::messages::MetadataRequest::default();
    request.topics = topics.map(|names| {
        names
            .into_iter()
            .map(|name| {
                let mut topic =
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
                topic.name = Some(kafka_protocol::messages::TopicName(text(name)));
                topic
            })
            .collect()
    });
    request.allow_auto_topic_creation = allow_auto_topic_creation;
    send_request(
        stream,
        kafka_protocol::messages::ApiKey::Metadata,
        RAW_METADATA_VERSION,
        correlation,
        &request,
    );
    receive_response(
        stream,
        kafka_protocol::messages::ApiKey::Metadata,
        RAW_METADATA_VERSION,
        correlation,
    )
}

/// One topic of a Produce answer: each partition's index, error code and
/// base offset, in the answer's order.
pub fn produce_partition_answers(
    topic: &kafka_protocol::messages::produce_response::TopicProduceResponse,
) -> Vec<(i32, i16, i64)> {
    topic
        .partition_responses
        .iter()
        .map(|partition| (partition.index, partition.error_code, partition.base_offset))
        .collect()
}

/// A string field of a kafka-protocol request.
pub fn text(value: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(value.to_string())
}

/// One raw Kafka-protocol connection to the broker: requests encoded with
/// kafka-protocol, sent and answered one at a time. Scenario files add their
/// own request helpers to it with `impl WireClient` blocks.
pub struct WireClient {
    stream: TcpStream,
    correlation: i32,
}

impl WireClient {
    pub fn new(broker: &TestBroker) -> WireClient {
        WireClient {
            stream: raw_connect(broker.address()),
            correlation: 0,
        }
    }

    /// Sends `request` at `version` and decodes the answer.
    pub fn call<Req, Resp>(
        &mut self,
        key: kafka_protocol::messages::ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp
    where
        Req: kafka_protocol::protocol::Encodable,
        Resp: kafka_protocol::protocol::Decodable,
    {
        self.correlation += 1;
        send_request(&mut self.stream, key, version, self.correlation, request);
        receive_response(&mut self.stream, key, version, self.correlation)
    }
}

// ---- clusters ----------------------------------------------------------

/// The lowest port [`free_ports`] hands out: above the well-known and
/// commonly configured service ports.
const FIXED_PORT_LOW: u16 = 10_000;

/// The kernel's default first ephemeral port, used when
/// `ip_local_port_range` cannot be read.
const EPHEMERAL_PORT_LOW_DEFAULT: u16 = 32_768;

/// The next candidate [`free_ports`] tries, shared by every test of this
/// process so two tests never get the same port (0: not seeded yet).
static NEXT_FIXED_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Free TCP ports on 127.0.0.1 for a process to bind later (controller
/// ports, or a client port that must survive a restart), all held until all
/// are chosen so they differ.
///
/// They are taken below the kernel's ephemeral range, never from it: a port
/// from bind(0) is free only until it is released, and the kernel hands
/// the same ephemeral ports to every later bind(0) (another broker's client
/// listener) and to outgoing connections, so a broker started or
/// restarted later could find its port taken. Ports outside that range
/// are only ever bound on purpose; within this process they are handed out
/// once, and the start point depends on the process id so test processes
/// run side by side rarely meet.
pub fn free_ports(count: usize) -> Vec<u16> {
    use std::sync::atomic::Ordering;
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(EPHEMERAL_PORT_LOW_DEFAULT);
    assert!(
        ephemeral_low > FIXED_PORT_LOW + 1_000,
        "the ephemeral port range starts at {ephemeral_low}: too low to keep fixed test ports apart"
    );
    let span = u32::from(ephemeral_low - FIXED_PORT_LOW);
    let _ = NEXT_FIXED_PORT.compare_exchange(
        0,
        std::process::id().wrapping_mul(7_919) % span + 1,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let mut held = Vec::with_capacity(count);
    for _ in 0..span {
        if held.len() == count {
            break;
        }
        let step = NEXT_FIXED_PORT.fetch_add(1, Ordering::Relaxed);
        let port = FIXED_PORT_LOW + ((step - 1) % span) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    assert_eq!(
        held.len(),
        count,
        "no {count} free ports below {ephemeral_low}"
    );
    held.iter()
        .map(|listener| listener.local_addr().expect("a bound address").port())
        .collect()
}

/// A broker process frozen with SIGSTOP. Dropping it, also when a test
/// fails, sends SIGCONT: a stopped process would not act on the SIGTERM the
/// harness stops it with.
pub struct Frozen {
    pid: libc::pid_t,
    thawed: bool,
}

impl Frozen {
    pub fn freeze(broker: &TestBroker) -> Frozen {
        let pid = broker.pid() as libc::pid_t;
        assert!(pid > 0, "the broker is not running");
        signal(pid, libc::SIGSTOP);
        Frozen { pid, thawed: false }
    }

    pub fn thaw(mut self) {
        signal(self.pid, libc::SIGCONT);
        self.thawed = true;
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.thawed {
            // SAFETY: the broker is our child and not reaped yet (its
            // TestBroker outlives this guard), so the pid is still its own.
            unsafe {
                libc::kill(self.pid, libc::SIGCONT);
            }
        }
    }
}

pub fn signal(pid: libc::pid_t, number: libc::c_int) {
    // SAFETY: signalling our own child, which has not been reaped yet.
    let result = unsafe { libc::kill(pid, number) };
    assert_eq!(
        result,
        0,
        "signal {number} to {pid}: {}",
        std::io::Error::last_os_error()
    );
}

/// Starts `nodes` brokers, node ids 1..=`nodes` on racks `rack-<id>`, as the
/// voters of one metadata quorum, each also given `extra_args`. The broker
/// at index `i` has node id `i + 1`.
pub fn start_cluster_with(nodes: usize, extra_args: &[&str]) -> Vec<TestBroker> {
    let hosts: Vec<Host> = (0..nodes).map(|_| Host::loopback()).collect();
    start_cluster_on(&hosts, extra_args)
}

/// Like [`start_cluster_with`], the broker at index `i` on `hosts[i]`.
pub fn start_cluster_on(hosts: &[Host], extra_args: &[&str]) -> Vec<TestBroker> {
    // Free in the test's namespace, so also in a new, empty one.
    let ports = free_ports(hosts.len());
    let controller = |index: usize| SocketAddr::new(hosts[index].ip, ports[index]);
    let voters = (0..hosts.len())
        .map(|index| format!("{}@{}", index + 1, controller(index)))
        .collect::<Vec<_>>()
        .join(",");
    let placed: Vec<(Vec<String>, Host)> = hosts
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let mut args: Vec<String> = vec![
                "--node-id".into(),
                (index + 1).to_string(),
                "--controller-listen".into(),
                controller(index).to_string(),
                "--controller-voters".into(),
                voters.clone(),
                "--rack".into(),
                format!("rack-{}", index + 1),
            ];
            args.extend(extra_args.iter().map(|arg| arg.to_string()));
            (args, host.clone())
        })
        .collect();
    TestBroker::start_together_on(&placed)
}

/// Starts a broker that is not a voter (an observer of the metadata
/// quorum) with node id `node_id` in the cluster of `voters` (started by
/// [`start_cluster_with`]), on rack `rack-<id>`, with `extra_args`.
pub fn start_observer(voters: &[TestBroker], node_id: i32, extra_args: &[&str]) -> TestBroker {
    let listed = voters
        .first()
        .and_then(|voter| {
            let at = voter
                .extra_args
                .iter()
                .position(|arg| arg == "--controller-voters")?;
            voter.extra_args.get(at + 1).cloned()
        })
        .expect("a cluster started with --controller-voters");
    let mut args: Vec<String> = vec![
        "--node-id".into(),
        node_id.to_string(),
        "--controller-voters".into(),
        listed,
        "--rack".into(),
        format!("rack-{node_id}"),
    ];
    args.extend(extra_args.iter().map(|arg| arg.to_string()));
    let mut started = TestBroker::start_together(&[args]);
    started.pop().expect("one broker started")
}

/// `bootstrap.servers` naming every broker of a cluster as it listens now,
/// so that a client started from it does not depend on any one of them.
pub fn cluster_bootstrap(brokers: &[TestBroker]) -> String {
    brokers
        .iter()
        .map(TestBroker::bootstrap)
        .collect::<Vec<_>>()
        .join(",")
}

/// Like [`wait_until`], but checks only every `interval` (for a condition
/// that is costly to check, such as one that starts a client), and the
/// condition says what it saw: `Ok(value)` ends the wait and is returned,
/// `Err(seen)` is shown if the wait times out.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    condition: impl FnMut() -> Result<T, String>,
) -> T {
    try_wait_for(what, timeout, interval, condition)
        .unwrap_or_else(|timed_out| panic!("{timed_out}"))
}

/// [`wait_for`] that returns the timeout, saying what it waited for and
/// what it saw last, instead of failing the test there: for a caller that
/// still has checks to make before it fails.
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub fn try_wait_for<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut condition: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match condition() {
            Ok(value) => return Ok(value),
            Err(seen) if Instant::now() >= deadline => {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}; last seen: {seen}"
                ))
            }
            Err(_) => {}
        }
        thread::sleep(interval);
    }
}

impl TrackedProducer {
    /// A tracked producer bootstrapped from every broker of a cluster (see
    /// [`cluster_bootstrap`]), with `settings` on top of the test defaults.
    pub fn for_cluster(
        brokers: &[TestBroker],
        topic: &str,
        settings: &[(&str, &str)],
    ) -> TrackedProducer {
        let first = brokers.first().expect("a cluster has a broker");
        let mut config = first.client_config();
        config.set("bootstrap.servers", cluster_bootstrap(brokers));
        TrackedProducer::with_config(config, topic, settings)
    }
}

/// DescribeQuorum of `__cluster_metadata` partition 0, straight to `broker`.
pub fn describe_quorum(
    broker: &TestBroker,
    version: i16,
) -> kafka_protocol::messages::DescribeQuorumResponse {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::{ApiKey, DescribeQuorumRequest};
    let mut request = DescribeQuorumRequest::default();
    let mut topic = TopicData::default();
    topic.topic_name = text("__cluster_metadata").into();
    topic.partitions = vec![PartitionData::default()];
    request.topics = vec![topic];
    WireClient::new(broker).call(ApiKey::DescribeQuorum, version, &request)
}

/// The metadata quorum's leader (the active controller) as `broker`
/// reports it (-1: none known).
pub fn quorum_leader(broker: &TestBroker) -> i32 {
    describe_quorum(broker, 0).topics[0].partitions[0]
        .leader_id
        .0
}
