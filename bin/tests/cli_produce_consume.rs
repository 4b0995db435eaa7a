//! `sluice produce` and `sluice consume` against the real broker, each run
//! as its own process:
//! - 100,000 keyed lines with headers go in with `sluice produce` and come
//!   out of `sluice consume` byte-equal, partition by partition in order;
//!   `topic describe --stats` counts them.
//! - librdkafka reads what `sluice produce` wrote (keys, values, headers),
//!   and each key sits in the partition librdkafka's `murmur2_random`
//!   partitioner picks for it.
//! - `sluice consume` reads what librdkafka wrote with every codec.
//! - `--group` commits what was printed and resumes from it; `--num`,
//!   `--offset` and `--partition` pick the records; `--follow` waits for
//!   records produced later.
//! - An unknown topic, an unreachable broker and a bad command line give
//!   one line on stderr and exit status 1, 1 and 2.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{produce_all, read_all, Record, TestBroker};

const LINES: usize = 100_000;
const PARTITIONS: i32 = 4;
/// Distinct keys among the lines: each key's lines must stay in order.
const KEYS: usize = 997;
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// One finished CLI process.
struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    fn ok(self, what: &str) -> Vec<u8> {
        assert_eq!(
            self.code,
            Some(0),
            "{what}: stderr:\n{}\nstdout (start):\n{}",
            self.stderr,
            String::from_utf8_lossy(&self.stdout[..self.stdout.len().min(2000)])
        );
        self.stdout
    }

    /// Asserts that the command failed with `code` and one line on stderr
    /// containing `needle`; returns that line.
    fn fails(self, code: i32, needle: &str) -> String {
        assert_eq!(self.code, Some(code), "stderr:\n{}", self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(!lines.is_empty(), "no error line");
        if code == 1 {
            assert_eq!(lines.len(), 1, "one error line, got:\n{}", self.stderr);
        }
        assert!(
            lines[0].starts_with("sluice: ") && lines[0].contains(needle),
            "{needle:?} not in {:?}",
            lines[0]
        );
        lines[0].to_string()
    }
}

/// Runs `sluice ARGS` with `stdin` as its input.
fn sluice(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the sluice CLI");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    // Written from a thread: the child may fill its stdout pipe before it
    // has read all of its input.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait for the sluice CLI");
    let _ = writer.join();
    Run {
        code: status.code(),
        stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn produce(broker: &TestBroker, topic: &str, extra: &[&str], stdin: &[u8]) -> Run {
    let bootstrap = broker.bootstrap();
    let mut args = vec!["produce", topic, "--bootstrap", &bootstrap];
    args.extend_from_slice(extra);
    sluice(&args, stdin)
}

fn consume(broker: &TestBroker, topic: &str, extra: &[&str]) -> Run {
    let bootstrap = broker.bootstrap();
    let mut args = vec!["consume", topic, "--bootstrap", &bootstrap];
    args.extend_from_slice(extra);
    sluice(&args, &[])
}

/// The key of line `index`.
fn key(index: usize) -> String {
    format!("key-{:04}", index * 7 % KEYS)
}

/// Line `index`: a key, the delimiter, and a value that holds the
/// delimiter again, tabs, non-ASCII text and bytes that are not UTF-8.
fn line(index: usize) -> Vec<u8> {
    let mut line = format!("{}:value {index}: tab\there, é ", key(index)).into_bytes();
    line.extend_from_slice(&[0xff, 0xfe, b'0' + (index % 10) as u8]);
    line.extend(std::iter::repeat_n(b'x', index % 50));
    line
}

/// The key part of a line: up to the first `:`.
fn key_of(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .position(|byte| *byte == b':')
        .unwrap_or(line.len());
    &line[..end]
}

/// Splits `output` into lines without their newlines.
fn lines_of(output: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = output.split(|byte| *byte == b'\n').collect();
    assert_eq!(lines.pop(), Some(&b""[..]), "output ends with a newline");
    lines
}

/// Where each key went, from records read back.
fn partitions_by_key(records: &BTreeMap<i32, Vec<Record>>) -> BTreeMap<Vec<u8>, i32> {
    let mut by_key = BTreeMap::new();
    for (partition, records) in records {
        for record in records {
            let key = record.key.clone().expect("every record has a key");
            let known = by_key.insert(key, *partition);
            assert!(
                known.is_none_or(|known| known == *partition),
                "a key in two partitions"
            );
        }
    }
    by_key
}

#[test]
fn hundred_thousand_lines_round_trip_byte_equal() {
    let broker = TestBroker::start();
    broker.create_topic("lines", PARTITIONS);
    let mut input = Vec::new();
    for index in 0..LINES {
        input.extend_from_slice(&line(index));
        input.push(b'\n');
    }
    let path = broker.root().join("lines.txt");
    fs::write(&path, &input).expect("write the input file");
    let path_text = path.to_str().expect("a UTF-8 temp path");
    let produced = produce(
        &broker,
        "lines",
        &[
            "-K",
            ":",
            "--header",
            "source=cli",
            "--header",
            "empty=",
            "--compression",
            "lz4",
            "--file",
            path_text,
        ],
        &[],
    );
    let summary = produced.stderr.clone();
    produced.ok("produce the file");
    assert!(
        summary.contains(&format!("{LINES} records")) && summary.contains("MB/s"),
        "{summary}"
    );

    // Everything, partition by partition: each partition holds its keys'
    // lines in input order, byte for byte.
    let mut consumed_total = 0;
    for partition in 0..PARTITIONS {
        let out = consume(
            &broker,
            "lines",
            &[
                "--partition",
                &partition.to_string(),
                "--format",
                "%k:%s\\n",
            ],
        )
        .ok("consume a partition");
        let got = lines_of(&out);
        consumed_total += got.len();
        // This partition's lines are those of the keys it holds; a key
        // in two partitions would make the counts disagree.
        let keys: HashSet<&[u8]> = got.iter().map(|line| key_of(line)).collect();
        let want: Vec<Vec<u8>> = (0..LINES)
            .map(line)
            .filter(|candidate| keys.contains(key_of(candidate)))
            .collect();
        assert!(!got.is_empty(), "partition {partition} is empty");
        assert_eq!(got.len(), want.len(), "partition {partition}: line count");
        for (index, (got, want)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                got,
                want,
                "partition {partition}, line {index}: {:?} != {:?}",
                String::from_utf8_lossy(got),
                String::from_utf8_lossy(want)
            );
        }
    }
    assert_eq!(consumed_total, LINES);

    // The headers, and the default format (the value alone).
    let out =
        consume(&broker, "lines", &["--format", "%h|%t\\n", "--num", "1000"]).ok("consume headers");
    let headers = lines_of(&out);
    assert_eq!(headers.len(), 1000);
    assert!(headers
        .iter()
        .all(|line| *line == b"source=cli,empty=|lines"));
    let out = consume(&broker, "lines", &["--partition", "0", "--num", "5"]).ok("default format");
    let values = lines_of(&out);
    assert_eq!(values.len(), 5);
    assert!(values.iter().all(|value| value.starts_with(b"value ")));

    // The stats count every record and see bytes on disk.
    let stats = sluice(
        &[
            "topic",
            "describe",
            "lines",
            "--stats",
            "--json",
            "--bootstrap",
            &broker.bootstrap(),
        ],
        &[],
    )
    .ok("stats");
    let stats: serde_json::Value = serde_json::from_slice(&stats).expect("stats JSON");
    assert_eq!(stats["total_offsets"], LINES as i64, "{stats}");
    assert!(
        stats["total_size_bytes"].as_i64().unwrap_or(0) > 0,
        "{stats}"
    );
    let table = sluice(
        &[
            "topic",
            "describe",
            "lines",
            "--stats",
            "--bootstrap",
            &broker.bootstrap(),
        ],
        &[],
    )
    .ok("stats table");
    let table = String::from_utf8_lossy(&table);
    assert!(
        table.starts_with("PARTITION  LEADER  EARLIEST  LATEST  OFFSETS"),
        "{table}"
    );
    assert!(
        table.contains(&format!("Total: {LINES} offsets")),
        "{table}"
    );
}

#[test]
fn librdkafka_reads_what_sluice_produces_where_murmur2_puts_it() {
    const PARTITIONS: i32 = 6;
    const COUNT: usize = 3_000;
    let broker = TestBroker::start();
    broker.create_topic("from-cli", PARTITIONS);
    broker.create_topic("reference", PARTITIONS);
    let mut input = Vec::new();
    for index in 0..COUNT {
        input.extend_from_slice(format!("{}\tpayload {index}\n", key(index)).as_bytes());
    }
    produce(
        &broker,
        "from-cli",
        &[
            "--key-delimiter",
            "\\t",
            "-H",
            "trace=abc",
            "-H",
            "n=1",
            "-z",
            "gzip",
            "--acks",
            "1",
        ],
        &input,
    )
    .ok("produce from stdin");

    let read = read_all(&broker, "from-cli", PARTITIONS);
    let mut seen = 0;
    for records in read.values() {
        let mut last_index_by_key: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for record in records {
            let value = String::from_utf8(record.value.clone().expect("a value")).expect("text");
            let index: usize = value
                .strip_prefix("payload ")
                .and_then(|index| index.parse().ok())
                .unwrap_or_else(|| panic!("value {value:?}"));
            let key_bytes = record.key.clone().expect("a key");
            assert_eq!(key_bytes, key(index).into_bytes());
            assert_eq!(
                record.headers,
                [
                    ("trace".to_string(), Some(b"abc".to_vec())),
                    ("n".to_string(), Some(b"1".to_vec()))
                ]
            );
            if let Some(last) = last_index_by_key.insert(key_bytes, index) {
                assert!(last < index, "a key's records out of order");
            }
            seen += 1;
        }
    }
    assert_eq!(seen, COUNT);

    // The same keys through librdkafka's murmur2_random partitioner.
    let reference: Vec<Record> = (0..KEYS)
        .map(|index| Record {
            key: Some(key(index).into_bytes()),
            ..Record::with_value(-1, b"reference".to_vec())
        })
        .collect();
    let placed = produce_all(
        &broker,
        "reference",
        &[("partitioner", "murmur2_random")],
        &reference,
    );
    let expected: BTreeMap<Vec<u8>, i32> = reference
        .iter()
        .zip(&placed)
        .map(|(record, (partition, _))| (record.key.clone().expect("key"), *partition))
        .collect();
    let ours = partitions_by_key(&read);
    assert!(ours.len() > PARTITIONS as usize);
    for (key, partition) in &ours {
        assert_eq!(
            expected.get(key),
            Some(partition),
            "key {}",
            String::from_utf8_lossy(key)
        );
    }
    let used: BTreeSet<i32> = ours.values().copied().collect();
    assert_eq!(
        used.len(),
        PARTITIONS as usize,
        "keys spread over every partition"
    );
}

#[test]
fn sluice_consume_reads_every_codec_librdkafka_writes() {
    const COUNT: usize = 2_000;
    let broker = TestBroker::start();
    for codec in CODECS {
        let topic = format!("codec-{codec}");
        broker.create_topic(&topic, 2);
        let records: Vec<Record> = (0..COUNT)
            .map(|index| Record {
                key: (index % 3 != 0).then(|| key(index).into_bytes()),
                headers: vec![
                    ("codec".to_string(), Some(codec.as_bytes().to_vec())),
                    ("i".to_string(), Some(index.to_string().into_bytes())),
                ],
                // Compressible, so that every codec really compresses.
                ..Record::with_value(
                    (index % 2) as i32,
                    format!("{codec} {index:05} {}", "abc".repeat(20)).into_bytes(),
                )
            })
            .collect();
        produce_all(
            &broker,
            &topic,
            &[("compression.codec", codec), ("linger.ms", "50")],
            &records,
        );
        let out = consume(&broker, &topic, &["--format", "%p|%k|%s|%h\\n"]).ok("consume");
        let mut got: Vec<&[u8]> = lines_of(&out);
        got.sort_unstable();
        let mut want: Vec<Vec<u8>> = records
            .iter()
            .map(|record| {
                format!(
                    "{}|{}|{}|codec={codec},i={}",
                    record.partition,
                    String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()),
                    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()),
                    String::from_utf8_lossy(record.headers[1].1.as_deref().unwrap_or_default()),
                )
                .into_bytes()
            })
            .collect();
        want.sort_unstable();
        assert_eq!(got.len(), COUNT, "{codec}");
        assert!(
            got.iter().zip(&want).all(|(got, want)| got == want),
            "{codec}"
        );
    }
}

#[test]
fn group_offsets_are_committed_and_resumed() {
    let broker = TestBroker::start();
    broker.create_topic("resume", 1);
    let input: Vec<u8> = (0..50)
        .flat_map(|index| format!("v{index}\n").into_bytes())
        .collect();
    produce(&broker, "resume", &[], &input).ok("produce");

    let out = consume(&broker, "resume", &["--group", "g", "--num", "10"]).ok("first ten");
    let first = lines_of(&out);
    assert_eq!(first.first(), Some(&&b"v0"[..]));
    assert_eq!(first.len(), 10);
    let out = consume(
        &broker,
        "resume",
        &["--group", "g", "--num", "5", "--format", "%o %s\\n"],
    )
    .ok("next five");
    assert_eq!(lines_of(&out)[0], b"10 v10");
    // The group's committed offset as the admin command sees it.
    let described = sluice(
        &[
            "group",
            "describe",
            "g",
            "--json",
            "--bootstrap",
            &broker.bootstrap(),
        ],
        &[],
    )
    .ok("describe the group");
    let described: serde_json::Value = serde_json::from_slice(&described).expect("JSON");
    assert_eq!(
        described["offsets"][0]["committed_offset"], 15,
        "{described}"
    );
    assert_eq!(described["offsets"][0]["lag"], 35, "{described}");
    // An explicit start wins over the group's offsets; -N counts from the end.
    let out = consume(&broker, "resume", &["--group", "g", "--offset", "-3"]).ok("last three");
    assert_eq!(lines_of(&out), [&b"v47"[..], b"v48", b"v49"]);
    let out = consume(&broker, "resume", &["--offset", "48", "--format", "%o\\n"]).ok("from 48");
    assert_eq!(lines_of(&out), [&b"48"[..], b"49"]);
    // At the end, the group has nothing more to print.
    let out = consume(&broker, "resume", &["--group", "g"]).ok("nothing left");
    assert!(out.is_empty());
}

#[test]
fn follow_waits_for_records_produced_later() {
    let broker = TestBroker::start();
    broker.create_topic("live", 3);
    produce(&broker, "live", &[], b"old\n").ok("produce before");
    let bootstrap = broker.bootstrap();
    // Without --follow it would stop after "old", the end it sees at the
    // start; --num ends it. (Were it slow to start it would read all four
    // at once, so a slow machine cannot hang the test.)
    let follower = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["consume", "live", "--bootstrap", &bootstrap])
        .args(["--follow", "--num", "4"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the follower");
    // Time for the follower to start fetching; then what it waits for.
    std::thread::sleep(std::time::Duration::from_secs(2));
    produce(&broker, "live", &["-K", ":"], b"a:1\nb:2\nc:3\n").ok("produce after");
    let output = follower.wait_with_output().expect("the follower ends");
    assert_eq!(output.status.code(), Some(0));
    let mut values = lines_of(&output.stdout);
    values.sort_unstable();
    assert_eq!(values, [&b"1"[..], b"2", b"3", b"old"]);
}

#[test]
fn errors_are_one_line_with_the_right_exit_status() {
    let broker = TestBroker::start();
    produce(&broker, "missing", &[], b"x\n").fails(1, "UNKNOWN_TOPIC_OR_PARTITION");
    consume(&broker, "missing", &[]).fails(1, "UNKNOWN_TOPIC_OR_PARTITION");
    broker.create_topic("present", 2);
    produce(&broker, "present", &["--partition", "7"], b"x\n").fails(1, "has no partition 7");

    // A port nothing listens on: bind one, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .to_string();
    for command in ["produce", "consume"] {
        let line = sluice(&[command, "present", "--bootstrap", &closed], b"x\n")
            .fails(1, "cannot connect");
        assert!(line.contains(&closed), "{line}");
    }

    produce(&broker, "present", &["--acks", "2"], b"").fails(2, "--acks");
    consume(&broker, "present", &["--format", "%q"]).fails(2, "%q");
    sluice(&["consume"], &[]).fails(2, "required arguments were not provided");
    let missing_file = Path::new("/nonexistent/input.txt");
    produce(
        &broker,
        "present",
        &["--file", missing_file.to_str().expect("path")],
        b"",
    )
    .fails(1, "cannot open");
}
