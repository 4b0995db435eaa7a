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

use clap::Args;

use super::args::{self, Connection};
use super::stream::{self, Failed};
use crate::cli::usage_error;

/// The longest input line taken as one record: Kafka's default
/// `max.message.bytes` (1 MiB); a broker refuses a longer record anyway.
const LINE_BYTES_MAX: usize = 1024 * 1024;

/// How often the progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes in the MB of the rates shown (the decimal megabyte, as Kafka's
/// perf tools print).
const BYTES_PER_MB: f64 = 1_000_000.0;

/// `sluice produce TOPIC ...`, as clap parses it.
#[derive(Debug, Args)]
pub struct ProduceCommand {
    /// The topic to write to.
    #[arg(value_parser = args::name)]
    topic: String,
    #[command(flatten)]
    connection: Connection,
    /// Sends every record to this partition.
    #[arg(long, short = 'p', value_name = "N", value_parser = args::partition)]
    partition: Option<i32>,
    /// The part of a line before DELIM is the record's key (a line without it has no
    /// key); \n \t \r \0 \\ escapes.
    #[arg(
        long,
        short = 'K',
        value_name = "DELIM",
        value_parser = delimiter,
        allow_hyphen_values = true
    )]
    key_delimiter: Option<Delimiter>,
    /// A header every record gets; may be given more than once.
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE", value_parser = args::key_value)]
    headers: Vec<(String, String)>,
    /// How the batches are compressed.
    #[arg(
        long,
        short = 'z',
        value_name = "none|gzip|snappy|lz4|zstd",
        value_parser = compression,
        default_value = "none"
    )]
    compression: Compression,
    /// The acknowledgement each batch waits for.
    #[arg(long, value_name = "0|1|all", value_parser = acks, default_value = "all")]
    acks: Acks,
    /// Reads the lines from PATH instead of stdin.
    #[arg(long, value_name = "PATH")]
    file: Option<String>,
}

/// A key delimiter, its escapes replaced.
#[derive(Clone, Debug)]
struct Delimiter(Vec<u8>);

fn delimiter(text: &str) -> Result<Delimiter, String> {
    let delimiter = stream::unescape(text);
    if delimiter.is_empty() {
        return Err("the key delimiter may not be empty".to_string());
    }
    Ok(Delimiter(delimiter))
}

fn compression(text: &str) -> Result<Compression, String> {
    compression_from_name(text)
        .ok_or_else(|| format!("expected none, gzip, snappy, lz4 or zstd, got '{text}'"))
}

fn acks(text: &str) -> Result<Acks, String> {
    Acks::parse(text).ok_or_else(|| format!("expected 0, 1 or all, got '{text}'"))
}

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

impl TryFrom<ProduceCommand> for ProduceArgs {
    type Error = String;

    fn try_from(command: ProduceCommand) -> Result<ProduceArgs, String> {
        let mut headers: Vec<(String, Bytes)> = Vec::new();
        for (key, value) in command.headers {
            // Kafka allows a key twice, but the record encoder keeps
            // headers in a map: refuse rather than drop one.
            if headers.iter().any(|(known, _)| *known == key) {
                return Err(format!("--header {key} is given twice"));
            }
            headers.push((key, Bytes::from(value)));
        }
        Ok(ProduceArgs {
            topic: command.topic,
            bootstrap: command.connection.bootstrap,
            command_config: command.connection.command_config,
            partition: command.partition,
            key_delimiter: command.key_delimiter.map(|Delimiter(bytes)| bytes),
            headers,
            compression: command.compression,
            acks: command.acks,
            file: command.file,
        })
    }
}

/// Runs `sluice produce`.
pub fn run(command: ProduceCommand) -> ExitCode {
    let parsed =
        ProduceArgs::try_from(command).unwrap_or_else(|message| usage_error(&["produce"], message));
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

    fn parse(line: &[String]) -> Result<ProduceArgs, String> {
        stream::parse_as::<ProduceCommand>(line).and_then(ProduceArgs::try_from)
    }

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
            "t --header a=1 -H a=2",
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
