//! `sluice produce`: one record per input line (stdin or `--file`), like
//! `kcat -P`. With `--key-delimiter` the part of a line before the first
//! delimiter is the key; a line without it is a value without a key.
//! Lines are bytes: anything but the newline goes through unchanged.
//!
//! Progress (records, MB, MB/s) is redrawn on stderr about once a second
//! when stderr is a terminal; a summary line goes to stderr at the end.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::records::Compression;
use sluice_net::client::{
    compression_from_name, Acks, Admin, Producer, ProducerRecord, ProducerSettings,
};

use super::stream::{self, Failed, FlagSpec};

/// The longest input line taken as one record: Kafka's default
/// `max.message.bytes` (1 MiB); a broker refuses a longer record anyway.
const LINE_BYTES_MAX: usize = 1024 * 1024;

/// How often the progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes in the MB of the rates shown (the decimal megabyte, as Kafka's
/// perf tools print).
const BYTES_PER_MB: f64 = 1_000_000.0;

const FLAGS: &[FlagSpec] = &[
    stream::BOOTSTRAP,
    stream::BOOTSTRAP_SERVER,
    stream::COMMAND_CONFIG,
    stream::PARTITION,
    FlagSpec {
        long: "key-delimiter",
        short: Some('K'),
        takes_value: true,
    },
    FlagSpec {
        long: "header",
        short: Some('H'),
        takes_value: true,
    },
    FlagSpec {
        long: "compression",
        short: Some('z'),
        takes_value: true,
    },
    FlagSpec {
        long: "acks",
        short: None,
        takes_value: true,
    },
    FlagSpec {
        long: "file",
        short: None,
        takes_value: true,
    },
];

/// A parsed `sluice produce` command line.
#[derive(Debug, PartialEq)]
struct ProduceArgs {
    topic: String,
    bootstrap: String,
    command_config: Option<String>,
    partition: Option<i32>,
    key_delimiter: Option<Vec<u8>>,
    headers: Vec<(String, Bytes)>,
    compression: Compression,
    acks: Acks,
    file: Option<String>,
}

fn parse(args: &[String]) -> Result<ProduceArgs, String> {
    let split = stream::split("produce", args, FLAGS)?;
    let mut parsed = ProduceArgs {
        topic: stream::one_topic("produce", &split.positionals)?,
        bootstrap: super::BOOTSTRAP_DEFAULT.to_string(),
        command_config: None,
        partition: None,
        key_delimiter: None,
        headers: Vec::new(),
        compression: Compression::None,
        acks: Acks::All,
        file: None,
    };
    for (flag, value) in split.flags {
        match flag {
            "bootstrap" | "bootstrap-server" => parsed.bootstrap = value,
            "command-config" => parsed.command_config = Some(value),
            "partition" => parsed.partition = Some(stream::partition_number(&value)?),
            "key-delimiter" => {
                let delimiter = stream::unescape(&value);
                if delimiter.is_empty() {
                    return Err("--key-delimiter may not be empty".to_string());
                }
                parsed.key_delimiter = Some(delimiter);
            }
            "header" => {
                let (key, header_value) = super::key_value(flag, &value)?;
                // Kafka allows a key twice, but the record encoder keeps
                // headers in a map: refuse rather than drop one.
                if parsed.headers.iter().any(|(known, _)| *known == key) {
                    return Err(format!("--header {key} is given twice"));
                }
                parsed.headers.push((key, Bytes::from(header_value)));
            }
            "compression" => {
                parsed.compression = compression_from_name(&value).ok_or_else(|| {
                    format!("--compression expects none, gzip, snappy, lz4 or zstd, got '{value}'")
                })?;
            }
            "acks" => {
                parsed.acks = Acks::parse(&value)
                    .ok_or_else(|| format!("--acks expects 0, 1 or all, got '{value}'"))?;
            }
            _ => parsed.file = Some(value),
        }
    }
    Ok(parsed)
}

/// Runs `sluice produce ARGS` (`args` after the word `produce`).
pub(super) fn main(args: &[String]) -> ExitCode {
    let parsed = match stream::parse_or_exit(args, parse) {
        Ok(parsed) => parsed,
        Err(exit) => return exit,
    };
    let input: Box<dyn Read> = match &parsed.file {
        Some(path) => match File::open(path) {
            Ok(file) => Box::new(file),
            Err(error) => {
                return Failed::Local(format!("cannot open {path}: {error}"))
                    .report(&format!("produce to topic '{}'", parsed.topic))
            }
        },
        None => Box::new(std::io::stdin().lock()),
    };
    let doing = format!("produce to topic '{}'", parsed.topic);
    match produce(&parsed, BufReader::new(input)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failed) => failed.report(&doing),
    }
}

/// Splits a line into key and value at the first `delimiter`.
fn split_line(line: Bytes, delimiter: Option<&[u8]>) -> (Option<Bytes>, Bytes) {
    let Some(delimiter) = delimiter else {
        return (None, line);
    };
    let found = line
        .windows(delimiter.len())
        .position(|window| window == delimiter);
    match found {
        Some(at) => (Some(line.slice(..at)), line.slice(at + delimiter.len()..)),
        None => (None, line),
    }
}

/// Counts and times what was produced, and draws the progress line.
struct Progress {
    started: Instant,
    last_drawn: Instant,
    records: u64,
    bytes: u64,
    terminal: bool,
}

impl Progress {
    fn new() -> Progress {
        let now = Instant::now();
        Progress {
            started: now,
            last_drawn: now,
            records: 0,
            bytes: 0,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn add(&mut self, bytes: usize) {
        self.records += 1;
        self.bytes += bytes as u64;
        if self.terminal && self.last_drawn.elapsed() >= PROGRESS_INTERVAL {
            self.last_drawn = Instant::now();
            // `\r` and erase-to-end-of-line: the line is redrawn in place.
            let _ = write!(std::io::stderr(), "\r{}\x1b[K", self.text());
        }
    }

    fn text(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(f64::EPSILON);
        let megabytes = self.bytes as f64 / BYTES_PER_MB;
        format!(
            "{} records, {megabytes:.1} MB in {seconds:.1} s ({:.0} records/s, {:.1} MB/s)",
            self.records,
            self.records as f64 / seconds,
            megabytes / seconds
        )
    }

    fn finish(&self, topic: &str) {
        let erase = if self.terminal { "\r\x1b[K" } else { "" };
        let _ = writeln!(
            std::io::stderr(),
            "{erase}Produced {} to topic '{topic}'.",
            self.text()
        );
    }
}

fn produce(parsed: &ProduceArgs, mut input: impl BufRead) -> Result<(), Failed> {
    let options = super::command_config::client_options(parsed.command_config.as_deref())
        .map_err(Failed::Local)?;
    let mut admin = Admin::connect(&parsed.bootstrap, options)?;
    let settings = ProducerSettings {
        acks: parsed.acks,
        compression: parsed.compression,
    };
    let mut producer = Producer::new(&mut admin, &parsed.topic, settings)?;
    let mut progress = Progress::new();
    let mut line = Vec::new();
    let mut line_number = 0u64;
    loop {
        line.clear();
        // One byte more than a line may have, to tell a full line from a
        // longer one.
        let read = (&mut input)
            .take(LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|error| Failed::Local(format!("reading the input failed: {error}")))?;
        if read == 0 {
            break;
        }
        line_number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > LINE_BYTES_MAX {
            return Err(Failed::Local(format!(
                "line {line_number} is longer than {LINE_BYTES_MAX} bytes"
            )));
        }
        let bytes = line.len();
        let (key, value) = split_line(
            Bytes::copy_from_slice(&line),
            parsed.key_delimiter.as_deref(),
        );
        let record = ProducerRecord {
            key,
            value,
            headers: parsed.headers.clone(),
        };
        producer.send(record, parsed.partition)?;
        progress.add(bytes);
    }
    producer.flush()?;
    progress.finish(&parsed.topic);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_option() {
        let parsed = parse(&stream::words(
            "orders -K : --header a=1 -H b=x=y --compression zstd --acks 1 \
             --partition 2 --file in.txt --bootstrap h:1",
        ))
        .expect("parses");
        assert_eq!(
            parsed,
            ProduceArgs {
                topic: "orders".into(),
                bootstrap: "h:1".into(),
                command_config: None,
                partition: Some(2),
                key_delimiter: Some(b":".to_vec()),
                headers: vec![
                    ("a".into(), Bytes::from("1")),
                    ("b".into(), Bytes::from("x=y"))
                ],
                compression: Compression::Zstd,
                acks: Acks::Leader,
                file: Some("in.txt".into()),
            }
        );
        let defaults = parse(&stream::words("t")).expect("parses");
        assert_eq!(defaults.acks, Acks::All);
        assert_eq!(defaults.compression, Compression::None);
        assert_eq!(defaults.bootstrap, super::super::BOOTSTRAP_DEFAULT);
        for bad in [
            "",
            "a b",
            "t --acks 2",
            "t --compression brotli",
            "t --header novalue",
            "t --header a=1 --header a=2",
            "t --partition -1",
            "t -K",
            "t --key-delimiter=",
            "t --json",
        ] {
            assert!(parse(&stream::words(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn splits_at_the_first_delimiter() {
        let split = |line: &'static str, delimiter: Option<&[u8]>| {
            let (key, value) = split_line(Bytes::from(line), delimiter);
            (key.map(|key| key.to_vec()), value.to_vec())
        };
        assert_eq!(
            split("k:v:w", Some(b":")),
            (Some(b"k".to_vec()), b"v:w".to_vec())
        );
        assert_eq!(split(":v", Some(b":")), (Some(Vec::new()), b"v".to_vec()));
        assert_eq!(
            split("k::v", Some(b"::")),
            (Some(b"k".to_vec()), b"v".to_vec())
        );
        assert_eq!(split("no key", Some(b":")), (None, b"no key".to_vec()));
        assert_eq!(split("k:v", None), (None, b"k:v".to_vec()));
    }
}
