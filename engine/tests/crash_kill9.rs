//! Crash test with a real process and a real disk: `log-crash-child` appends
//! to a `PartitionLog<DmaStorage>` from several writer tasks and prints each
//! batch once `wait_durable` acknowledged it; it is killed with SIGKILL at a
//! random moment, and the log is reopened here (recovery runs as after any
//! crash). After every kill:
//!
//! - every acknowledged batch is in the log with the content acknowledged;
//! - offsets run contiguously from the log start to the log end, every batch
//!   passes validation and every record carries its own intact checksum;
//! - no record appears twice, and nothing is returned past the log end;
//! - whatever the log held after one kill it still holds after the next (a
//!   kill loses no completed write, so recovery may cut only what it never
//!   showed).
//!
//! 50 kills by default (`SLUICE_CRASH_CYCLES` for more), each after a random
//! 50 to 400 ms; `SLUICE_CRASH_SEED` replays a choice of delays.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use glommio::LocalExecutorBuilder;
use sluice_engine::batch::{self, BATCH_HEADER_BYTES, LENGTH_AT, LOG_OVERHEAD};
use sluice_engine::{BatchCache, DmaStorage, LogConfig, PartitionLog, ReadError};

const CYCLES_DEFAULT: u64 = 50;
/// Kills per log: a longer run starts a fresh log after this many, so that
/// checking the whole log after each kill stays cheap.
const CYCLES_PER_LOG: u64 = 50;
/// Time for the reactor to close the files of a dropped log: glommio closes
/// them asynchronously, and an executor that ends first leaks them.
const FILE_CLOSE_WAIT: Duration = Duration::from_millis(20);
/// The child runs this long before it is killed, drawn per cycle.
const RUN_MS_MIN: u64 = 50;
const RUN_MS_MAX: u64 = 400;
/// The child's segment size (segments roll while it runs).
const SEGMENT_BYTES: u64 = 256 * 1024;
/// Bytes per read when checking the log.
const READ_BYTES: usize = 1 << 20;
/// "SLCT" and the bytes around a payload in a value (see the child).
const VALUE_MAGIC: u32 = 0x534c_4354;
const VALUE_OVERHEAD_BYTES: usize = 28;
/// A child that has not printed a single ack after this many kills in a row
/// is not working at all.
const SILENT_CYCLES_MAX: u64 = 10;

/// Who wrote a batch: (cycle, writer, sequence).
type Identity = (u32, u16, u64);

#[derive(Clone, Copy, Debug)]
struct Ack {
    base: i64,
    last: i64,
    identity: Identity,
    crc: u32,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut words = line.strip_prefix("ack ")?.split(' ');
    let mut next = || words.next();
    let ack = Ack {
        base: next()?.parse().ok()?,
        last: next()?.parse().ok()?,
        identity: (
            next()?.parse().ok()?,
            next()?.parse().ok()?,
            next()?.parse().ok()?,
        ),
        crc: next()?.parse().ok()?,
    };
    Some(ack)
}

/// A batch seen in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    last: i64,
    crc: u32,
    identity: Identity,
}

/// What the log held after the kills so far.
#[derive(Default)]
struct Knowledge {
    batches: HashMap<i64, Seen>,
    identities: HashSet<Identity>,
    leo: i64,
}

/// xorshift64* for the kill delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {value:?}")),
    )
}

/// A directory for the log on a file system that takes O_DIRECT (tmpfs does
/// not): the system temp dir if it does, else cargo's target temp dir.
fn test_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let name = format!("sluice-crash-kill9-{}-{nanos}", std::process::id());
    let probe = std::env::temp_dir().join(format!("{name}.probe"));
    let direct = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    let root = if direct {
        std::env::temp_dir()
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
    };
    root.join(name)
}

fn read_varint(bytes: &[u8], at: &mut usize) -> i64 {
    let mut value: u64 = 0;
    for shift in 0..10 {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            return ((value >> 1) as i64) ^ -((value & 1) as i64);
        }
    }
    panic!("a varint longer than 10 bytes");
}

/// Decodes the records of a batch the child wrote and checks each value's
/// own checksum; returns the batch's writer identity.
fn check_records(batch: &[u8], records: i32, base: i64) -> Identity {
    let mut at = BATCH_HEADER_BYTES;
    let mut identity = None;
    for index in 0..records {
        let length = read_varint(batch, &mut at) as usize;
        let end = at + length;
        at += 1; // attributes
        read_varint(batch, &mut at); // timestamp delta
        assert_eq!(
            read_varint(batch, &mut at),
            i64::from(index),
            "batch {base}: offset delta"
        );
        assert_eq!(
            read_varint(batch, &mut at),
            -1,
            "batch {base}: the child writes no keys"
        );
        let value_length = read_varint(batch, &mut at) as usize;
        let value = &batch[at..at + value_length];
        at += value_length;
        assert_eq!(
            read_varint(batch, &mut at),
            0,
            "batch {base}: the child writes no headers"
        );
        assert_eq!(at, end, "batch {base}: record {index} length");
        assert!(
            value.len() >= VALUE_OVERHEAD_BYTES,
            "batch {base}: value too short"
        );
        let (body, crc) = value.split_at(value.len() - 4);
        assert_eq!(
            crc32c::crc32c(body).to_be_bytes(),
            crc,
            "batch {base}: record {index} fails its own checksum"
        );
        let word = |from: usize, to: usize| {
            body[from..to]
                .iter()
                .fold(0u64, |acc, &b| acc << 8 | u64::from(b))
        };
        assert_eq!(word(0, 4) as u32, VALUE_MAGIC, "batch {base}: value magic");
        let this = (word(4, 8) as u32, word(8, 10) as u16, word(10, 18));
        assert_eq!(
            word(18, 20),
            index as u64,
            "batch {base}: record index in the value"
        );
        assert_eq!(
            word(20, 24) as usize,
            body.len() - 24,
            "batch {base}: payload length"
        );
        assert!(
            identity.is_none_or(|identity| identity == this),
            "batch {base}: mixed writers"
        );
        identity = Some(this);
    }
    assert_eq!(at, batch.len(), "batch {base}: bytes after the last record");
    identity.expect("a batch has records")
}

/// Reopens the log, reads all of it, and checks it against what earlier
/// kills left and against every acknowledgement so far.
async fn check_log(dir: PathBuf, acks: Vec<Ack>, mut known: Knowledge) -> Knowledge {
    let config = LogConfig {
        segment_bytes: SEGMENT_BYTES,
        ..LogConfig::default()
    };
    // No cache: every read goes to the disk.
    let log = match PartitionLog::open(DmaStorage, dir, config, BatchCache::new(0)).await {
        Ok(log) => log,
        Err(error) => panic!("reopening the log after a kill failed: {error}"),
    };
    let offsets = log.offsets();
    assert_eq!(offsets.log_start, 0, "nothing deletes records here");
    assert!(
        offsets.leo >= known.leo,
        "the log end went back from {} to {}",
        known.leo,
        offsets.leo
    );
    let known_before = known.batches.len();
    let mut revisited = 0;
    let mut offset = 0;
    while offset < offsets.leo {
        let chunks = match log.read(offset, READ_BYTES, i64::MAX).await {
            Ok(chunks) => chunks,
            Err(error) => panic!("read at {offset} failed: {error}"),
        };
        let data: Vec<u8> = chunks
            .chunks
            .iter()
            .flat_map(|chunk| chunk.iter().copied())
            .collect();
        assert!(
            !data.is_empty(),
            "read at {offset} returned nothing below the log end {}",
            offsets.leo
        );
        let mut at = 0;
        while at < data.len() {
            let length = i32::from_be_bytes(
                data[at + LENGTH_AT..at + LENGTH_AT + 4]
                    .try_into()
                    .expect("4 bytes"),
            );
            let end = at + LOG_OVERHEAD + length.max(0) as usize;
            assert!(
                end <= data.len(),
                "read at {offset} returned a partial batch"
            );
            let bytes = &data[at..end];
            let header = match batch::validate(bytes, usize::MAX) {
                Ok(header) => header,
                Err(error) => panic!("batch at {offset} is invalid: {error}"),
            };
            assert_eq!(header.base_offset, offset, "offsets are not contiguous");
            let seen = Seen {
                last: header.last_offset(),
                crc: header.crc,
                identity: (0, 0, 0),
            };
            match known.batches.get(&offset) {
                // Seen after an earlier kill: unchanged since (the CRC covers
                // everything but the offset fields, checked above).
                Some(before) => {
                    assert_eq!(
                        (before.last, before.crc),
                        (seen.last, seen.crc),
                        "batch at {offset} changed"
                    );
                    revisited += 1;
                }
                None => {
                    let identity = check_records(bytes, header.record_count, offset);
                    assert!(
                        known.identities.insert(identity),
                        "batch {identity:?} is in the log twice"
                    );
                    known.batches.insert(offset, Seen { identity, ..seen });
                }
            }
            offset = header.last_offset() + 1;
            at = end;
        }
        assert_eq!(chunks.next_offset, offset);
    }
    assert_eq!(
        offset, offsets.leo,
        "the last batch does not end at the log end"
    );
    assert_eq!(
        revisited, known_before,
        "batches seen after an earlier kill (below {}) are gone",
        known.leo
    );
    known.leo = offsets.leo;
    let past = log
        .read(offsets.leo, READ_BYTES, i64::MAX)
        .await
        .expect("a read at the log end");
    assert!(past.chunks.is_empty(), "data past the log end");
    assert!(matches!(
        log.read(offsets.leo + 1, READ_BYTES, i64::MAX).await,
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    drop(log);
    glommio::timer::sleep(FILE_CLOSE_WAIT).await;
    for ack in &acks {
        let Some(seen) = known.batches.get(&ack.base) else {
            panic!(
                "acknowledged batch {ack:?} is missing (log end {})",
                offsets.leo
            );
        };
        assert_eq!(
            (seen.last, seen.crc, seen.identity),
            (ack.last, ack.crc, ack.identity),
            "acknowledged batch at {} has other content",
            ack.base
        );
    }
    known
}

/// Runs the child for `run` and kills it; returns its acks.
fn run_child(dir: &Path, cycle: u64, run: Duration) -> Vec<Ack> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_log-crash-child"))
        .arg(dir)
        .arg(cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start log-crash-child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        // A line without its newline was cut by the kill: not an ack.
        while lines.read_line(&mut line).expect("read the child's stdout") > 0 {
            if line.ends_with('\n') {
                let ack = parse_ack(line.trim_end()).unwrap_or_else(|| panic!("bad line {line:?}"));
                acks.push(ack);
            }
            line.clear();
        }
        acks
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    std::thread::sleep(run);
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    let acks = reader.join().expect("stdout reader");
    let errors = errors.join().expect("stderr reader");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "cycle {cycle}: the child ended on its own ({status}):\n{errors}"
    );
    acks
}

#[test]
fn acknowledged_appends_survive_kill_9() {
    let cycles = env_number("SLUICE_CRASH_CYCLES").unwrap_or(CYCLES_DEFAULT);
    let seed = env_number("SLUICE_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64)
    });
    eprintln!("crash_kill9: {cycles} cycles, SLUICE_CRASH_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let root = test_dir();
    let started = Instant::now();
    let mut acks: Vec<Ack> = Vec::new();
    let mut known = Knowledge::default();
    let mut silent_cycles = 0;
    let mut acknowledged = 0;
    let mut dir = PathBuf::new();
    for cycle in 0..cycles {
        if cycle % CYCLES_PER_LOG == 0 {
            dir = root.join(format!("crash-{}", cycle / CYCLES_PER_LOG));
            std::fs::create_dir_all(&dir).expect("create the log directory");
            acknowledged += acks.len();
            acks.clear();
            known = Knowledge::default();
        }
        let run = Duration::from_millis(RUN_MS_MIN + rng.next() % (RUN_MS_MAX - RUN_MS_MIN + 1));
        let new_acks = run_child(&dir, cycle, run);
        silent_cycles = if new_acks.is_empty() {
            silent_cycles + 1
        } else {
            0
        };
        assert!(
            silent_cycles < SILENT_CYCLES_MAX,
            "the child acknowledges nothing"
        );
        acks.extend(new_acks);
        let (check_dir, check_acks) = (dir.clone(), acks.clone());
        let handle = LocalExecutorBuilder::default()
            .name("crash-check")
            .spawn(move || check_log(check_dir, check_acks, known))
            .expect("start an executor");
        known = match handle.join() {
            Ok(known) => known,
            Err(_) => panic!(
                "cycle {cycle} (killed after {run:?}): the check failed; the log is kept in {}",
                dir.display()
            ),
        };
    }
    acknowledged += acks.len();
    eprintln!(
        "crash_kill9: {cycles} kills, {acknowledged} acknowledged batches, last log end {}, {:?}",
        known.leo,
        started.elapsed()
    );
    assert!(
        acknowledged > 0,
        "the child acknowledged nothing in {cycles} cycles"
    );
    std::fs::remove_dir_all(&root).expect("remove the test directory");
}
