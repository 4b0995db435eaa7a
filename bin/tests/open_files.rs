//! A broker holds a file open per partition written, so it raises its own
//! open-file limit at start: the soft limit to the hard one, and both where
//! the process may (root); a limit still low is said once on stderr. Past a
//! share of that limit each shard closes idle segment files and opens them
//! again on use, so more partitions than the limit take writes and reads.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The limits the broker is started with: far below what it asks for.
const SOFT_AT_START: u64 = 1024;
const HARD_AT_START: u64 = 4096;
/// The descriptor table the broker grows to at start, at most (its
/// `FD_TABLE_PRESIZE_MAX`).
const FD_TABLE_PRESIZE_MAX: u64 = 262_144;
/// Below this the broker must have warned (its `NOFILE_WARN_BELOW`).
const WARN_BELOW: u64 = 100_000;
/// How long the broker may take to get past its start-up checks.
const RAISED_WITHIN: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
/// The open-file limit of the broker with more partitions than that: a
/// common default (systemd's and many distributions' soft limit).
const TIGHT_LIMIT: u64 = 1024;
/// Partitions written under it: more than the whole limit.
const WIDE_PARTITIONS: i32 = 1500;
/// Records written to each of them, in rounds over all partitions.
const ROUNDS: usize = 2;
const VALUE_BYTES: usize = 200;
/// The broker's descriptors besides segment files: its own (about 17),
/// io_uring rings, listeners and the test's few connections.
const OTHER_FDS_MAX: usize = 96;
/// The share of the limit the segment files of all shards together may
/// take (the broker's `SEGMENT_FILES_SHARE_DIVISOR`).
const SEGMENT_FILES_SHARE_DIVISOR: u64 = 2;
/// Descriptors beyond the budget while partitions are first written, as a
/// share of it: each shard runs at most an eighth of its files' worth of
/// opens at once, each holding up to three descriptors, and may overdraw
/// its budget by an eighth.
const OPENING_FDS_DIVISOR: usize = 2;
/// How often the descriptors are counted while the partitions are written.
const FDS_SAMPLED_EVERY: Duration = Duration::from_millis(5);

/// The soft limit on open files of process `pid`, from /proc.
fn soft_open_files(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[test]
fn the_broker_raises_its_open_file_limit() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |time| time.as_nanos());
    let base = std::env::temp_dir().join(format!("sluice-nofile-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&base).expect("test directory");
    let stderr_path = base.join("stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .arg("--data-dir")
        .arg(base.join("data"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--pin-shards",
            "false",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: SOFT_AT_START,
                rlim_max: HARD_AT_START,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("start sluice");
    let deadline = Instant::now() + RAISED_WITHIN;
    let mut soft = soft_open_files(child.id());
    while soft.is_some_and(|soft| soft <= SOFT_AT_START) && Instant::now() < deadline {
        std::thread::sleep(POLL);
        soft = soft_open_files(child.id());
    }
    // The descriptor table is grown ahead, to the raised limit or the
    // broker's `FD_TABLE_PRESIZE_MAX`, so that no later open waits for
    // the kernel to grow it.
    let presized = soft.map(|soft| soft.min(FD_TABLE_PRESIZE_MAX));
    let mut table = fd_table_size(child.id());
    while table < presized && Instant::now() < deadline {
        std::thread::sleep(POLL);
        table = fd_table_size(child.id());
    }
    let _ = child.kill();
    let _ = child.wait();
    let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&base);
    let soft = soft.expect("the broker's limits in /proc");
    let table = table.expect("the broker's status in /proc");
    assert!(
        table >= soft.min(FD_TABLE_PRESIZE_MAX),
        "the descriptor table holds {table} entries, under the raised limit {soft} \
         (or {FD_TABLE_PRESIZE_MAX})"
    );
    assert!(
        soft >= HARD_AT_START,
        "the soft limit stayed at {soft}, below the hard limit {HARD_AT_START}"
    );
    if soft < WARN_BELOW {
        assert!(
            said.contains("RLIMIT_NOFILE is"),
            "a limit of {soft} open files was not said: {said}"
        );
    }
}

/// The size of process `pid`'s descriptor table, from /proc.
fn fd_table_size(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("FDSize:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Descriptors process `pid` holds open now.
fn open_fds(pid: u32) -> usize {
    match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(entries) => entries.count(),
        Err(error) => panic!("listing the broker's descriptors: {error}"),
    }
}

/// Runs `work` while counting process `pid`'s descriptors; returns its
/// result and the most descriptors seen.
fn most_fds_during<T>(pid: u32, work: impl FnOnce() -> T) -> (T, usize) {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let counter = scope.spawn(|| {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(open_fds(pid));
                std::thread::sleep(FDS_SAMPLED_EVERY);
            }
            most
        });
        let result = work();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let most = counter
            .join()
            .unwrap_or_else(|_| panic!("the counter failed"));
        (result, most)
    })
}

fn wide_records() -> Vec<common::Record> {
    let mut records = Vec::new();
    for round in 0..ROUNDS {
        for partition in 0..WIDE_PARTITIONS {
            let index = round * WIDE_PARTITIONS as usize + partition as usize;
            records.push(common::Record::with_value(
                partition,
                common::indexed_value(index, VALUE_BYTES),
            ));
        }
    }
    records
}

/// Every partition holds its rounds' records, in order, and nothing else.
fn check_wide(broker: &common::TestBroker, topic: &str) {
    let read = common::read_all(broker, topic, WIDE_PARTITIONS);
    for (partition, records) in &read {
        let indexes: Vec<usize> = records.iter().map(common::Record::value_index).collect();
        let expected: Vec<usize> = (0..ROUNDS)
            .map(|round| round * WIDE_PARTITIONS as usize + *partition as usize)
            .collect();
        let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
        assert_eq!(
            indexes, expected,
            "partition {partition} (offsets {offsets:?})"
        );
    }
}

#[test]
fn more_partitions_than_the_open_file_limit_take_writes_and_reads() {
    let mut broker = common::TestBroker::start_with_open_files(TIGHT_LIMIT, &[]);
    let topic = "wide";
    broker.create_topic(topic, WIDE_PARTITIONS);
    // A partition that could not open its segment would answer
    // KAFKA_STORAGE_ERROR, which librdkafka retries until this timeout.
    // Every partition's first write opens its file at once: the opens
    // under way must not hold descriptors beyond the budget's margin.
    let (positions, most) = most_fds_during(broker.pid(), || {
        common::produce_all(
            &broker,
            topic,
            &[("linger.ms", "5"), ("message.timeout.ms", "60000")],
            &wide_records(),
        )
    });
    assert_eq!(positions.len(), ROUNDS * WIDE_PARTITIONS as usize);
    let segment_files = (TIGHT_LIMIT / SEGMENT_FILES_SHARE_DIVISOR) as usize;
    let while_opening = segment_files + segment_files / OPENING_FDS_DIVISOR + OTHER_FDS_MAX;
    assert!(
        most <= while_opening,
        "{most} descriptors open while {WIDE_PARTITIONS} partitions were first written: more \
         than the {segment_files} segment files and {while_opening} in all"
    );
    let fds = open_fds(broker.pid());
    assert!(
        fds <= segment_files + OTHER_FDS_MAX,
        "{fds} descriptors open with {WIDE_PARTITIONS} partitions written: the shards kept \
         more than their {segment_files} segment files"
    );
    check_wide(&broker, topic);
    // A clean stop syncs and cuts files closed for room too; the restart
    // recovers every partition under the same limit.
    broker.restart(common::Stop::Term);
    check_wide(&broker, topic);
    let log = broker.log();
    assert!(
        !log.contains("KAFKA_STORAGE_ERROR") && !log.contains("Too many open files"),
        "the broker ran out of descriptors:\n{}",
        broker.log_tail()
    );
}
