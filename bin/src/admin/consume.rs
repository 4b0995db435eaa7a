//! `sluice consume`: prints a topic's records, like `kcat -C`.
//!
//! Without `--follow` it reads up to the log end offsets seen when it
//! started and stops; with it, it keeps waiting for new records. Each
//! partition starts at `--offset` or `--timestamp` when given, else at the
//! offset `--group` committed, else at the earliest offset. With `--group`
//! the reader joins no group: it commits what it printed as a simple
//! consumer (generation -1) after every fetch, which a broker accepts only
//! while the group has no members.
//!
//! Output goes through one buffered writer, flushed after each fetch; a
//! reader that goes away (`| head`) ends the command quietly.

use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

use sluice_net::client::{
    for_each_record, Admin, FetchLimits, KafkaError, OffsetSpec, PartitionOffset, TopicMetadata,
    Visit, FETCH_MAX_WAIT_MS, FETCH_PARTITION_BYTES_MAX, FETCH_RESPONSE_BYTES_MAX,
};
use sluice_net::glommio_client::records::Record;

use clap::Args;

use super::args::{self, Connection};
use super::stream::{self, Failed};

/// The format when none is given: each value on its own line.
const FORMAT_DEFAULT: &str = "%s\\n";

/// Kafka's OFFSET_OUT_OF_RANGE error code: the records asked for were
/// removed by retention (or never written).
const OFFSET_OUT_OF_RANGE: i16 = 1;
/// NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, FENCED_LEADER_EPOCH,
/// UNKNOWN_LEADER_EPOCH: leadership moved; fresh metadata finds it.
const LEADER_MOVED: [i16; 4] = [6, 5, 74, 75];
/// How many fetch rounds in a row may meet a moved leader before giving
/// up, and how long to wait before each new attempt.
const LEADER_ATTEMPTS_MAX: u32 = 20;
const LEADER_RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// `sluice consume TOPIC ...`, as clap parses it.
#[derive(Debug, Args)]
pub struct ConsumeCommand {
    /// The topic to read.
    #[arg(value_parser = args::name)]
    topic: String,
    #[command(flatten)]
    connection: Connection,
    /// Reads only this partition; may be given more than once (default: every one).
    #[arg(long = "partition", short = 'p', value_name = "N", value_parser = args::partition)]
    partitions: Vec<i32>,
    /// Where to start: earliest, latest, an offset, or -N (N records before the end).
    #[arg(
        long,
        short = 'o',
        value_name = "earliest|latest|N|-N",
        value_parser = parse_start,
        allow_hyphen_values = true,
        conflicts_with = "timestamp"
    )]
    offset: Option<Start>,
    /// Starts at the first record at or after this time (milliseconds since the epoch).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(i64).range(0..))]
    timestamp: Option<i64>,
    /// Starts at GROUP's committed offsets and commits the offsets printed (a simple
    /// commit: no group is joined, and the group must have no members).
    #[arg(long, short = 'G', value_parser = args::name)]
    group: Option<String>,
    /// Stops after N records.
    #[arg(long, short = 'c', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    num: Option<u64>,
    /// Keeps waiting for new records instead of stopping at the end offsets seen at the
    /// start.
    #[arg(long, short = 'f')]
    follow: bool,
    /// How each record is printed (like kcat -f): %s value, %k key, %S and %K their
    /// lengths (-1: null), %p partition, %o offset, %T timestamp (ms), %h headers
    /// (k=v,k=v), %t topic, %% a %; \n \t \r \0 \\ escapes.
    #[arg(long, value_name = "FMT", value_parser = parse_format, default_value = FORMAT_DEFAULT)]
    format: Format,
}

/// Where each partition starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    Earliest,
    Latest,
    /// This offset, kept inside the partition's earliest and latest.
    Offset(i64),
    /// This many records before the latest offset.
    FromEnd(i64),
    /// The first record at or after this many milliseconds since the epoch.
    Timestamp(i64),
}

/// One piece of an output format.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Key,
    KeyLength,
    Value,
    ValueLength,
    Partition,
    Offset,
    Timestamp,
    Headers,
    Topic,
}

/// A parsed `sluice consume` command line.
#[derive(Debug, PartialEq, Eq)]
struct ConsumeArgs {
    topic: String,
    bootstrap: String,
    command_config: Option<String>,
    /// Empty: every partition.
    partitions: Vec<i32>,
    /// `None`: the group's committed offsets, else the earliest.
    start: Option<Start>,
    group: Option<String>,
    num: Option<u64>,
    follow: bool,
    format: Vec<Piece>,
}

/// A parsed `--format`.
#[derive(Clone, Debug)]
struct Format(Vec<Piece>);

/// Parses a kcat-style format: `%k %K %s %S %p %o %T %h %t %%` and the
/// escapes `\n \t \r \0 \\`.
fn parse_format(format: &str) -> Result<Format, String> {
    let mut pieces = Vec::new();
    let mut literal = Vec::new();
    let bytes = stream::unescape(format);
    let mut rest = bytes.iter();
    while let Some(&byte) = rest.next() {
        if byte != b'%' {
            literal.push(byte);
            continue;
        }
        let piece = match rest.next() {
            Some(b'%') => {
                literal.push(b'%');
                continue;
            }
            Some(b'k') => Piece::Key,
            Some(b'K') => Piece::KeyLength,
            Some(b's') => Piece::Value,
            Some(b'S') => Piece::ValueLength,
            Some(b'p') => Piece::Partition,
            Some(b'o') => Piece::Offset,
            Some(b'T') => Piece::Timestamp,
            Some(b'h') => Piece::Headers,
            Some(b't') => Piece::Topic,
            Some(other) => return Err(format!("unknown field %{}", char::from(*other))),
            None => return Err("the format ends in a lone %".to_string()),
        };
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(piece);
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(Format(pieces))
}

fn parse_start(value: &str) -> Result<Start, String> {
    match value {
        "earliest" | "beginning" => return Ok(Start::Earliest),
        "latest" | "end" => return Ok(Start::Latest),
        _ => {}
    }
    let number = value.parse::<i64>().map_err(|_| {
        format!("expected earliest, latest, an offset or -N (N before the end), got '{value}'")
    })?;
    Ok(if number < 0 {
        Start::FromEnd(number.saturating_neg())
    } else {
        Start::Offset(number)
    })
}

impl From<ConsumeCommand> for ConsumeArgs {
    fn from(command: ConsumeCommand) -> ConsumeArgs {
        let mut partitions = command.partitions;
        partitions.sort_unstable();
        partitions.dedup();
        ConsumeArgs {
            topic: command.topic,
            bootstrap: command.connection.bootstrap,
            command_config: command.connection.command_config,
            partitions,
            start: command.offset.or(command.timestamp.map(Start::Timestamp)),
            group: command.group,
            num: command.num,
            follow: command.follow,
            format: command.format.0,
        }
    }
}

/// Runs `sluice consume`.
pub fn run(command: ConsumeCommand) -> ExitCode {
    let parsed = ConsumeArgs::from(command);
    let doing = format!("consume from topic '{}'", parsed.topic);
    let mut out = BufWriter::new(std::io::stdout().lock());
    match consume(&parsed, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failed) => {
            // What was printed before the failure is still worth having.
            let _ = out.flush();
            failed.report(&doing)
        }
    }
}

/// A partition being read.
struct Reading {
    partition: i32,
    /// The next offset to print.
    position: i64,
    /// Without `--follow`: the log end offset seen at the start.
    end: Option<i64>,
}

impl Reading {
    fn done(&self) -> bool {
        self.end.is_some_and(|end| self.position >= end)
    }
}

fn offset_of(offsets: &[PartitionOffset], partition: i32) -> Result<i64, KafkaError> {
    match offsets.iter().find(|offset| offset.partition == partition) {
        Some(offset) => offset.offset.clone(),
        None => Err(KafkaError::new(
            super::UNKNOWN_TOPIC_OR_PARTITION,
            Some(format!("no offset for partition {partition}")),
        )),
    }
}

/// Each partition's start and (without `--follow`) end.
fn plan(
    admin: &mut Admin,
    topic: &TopicMetadata,
    parsed: &ConsumeArgs,
) -> Result<Vec<Reading>, Failed> {
    let partitions: Vec<i32> = if parsed.partitions.is_empty() {
        topic
            .partitions
            .iter()
            .map(|known| known.partition)
            .collect()
    } else {
        for partition in &parsed.partitions {
            if let Err(error) = topic.leader_of(*partition) {
                if !LEADER_MOVED.contains(&error.code) {
                    return Err(error.into());
                }
            }
        }
        parsed.partitions.clone()
    };
    let earliest = admin.list_offsets(topic, OffsetSpec::Earliest)?;
    let latest = admin.list_offsets(topic, OffsetSpec::Latest)?;
    let by_time = match parsed.start {
        Some(Start::Timestamp(ms)) => Some(admin.list_offsets(topic, OffsetSpec::Timestamp(ms))?),
        _ => None,
    };
    let committed = match &parsed.group {
        Some(group) if parsed.start.is_none() => admin.committed_offsets(group)?,
        _ => Vec::new(),
    };
    let mut readings = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let low = offset_of(&earliest, partition)?;
        let high = offset_of(&latest, partition)?;
        let position = match parsed.start {
            Some(Start::Earliest) => low,
            Some(Start::Latest) => high,
            Some(Start::Offset(offset)) => offset.clamp(low, high.max(low)),
            Some(Start::FromEnd(count)) => high.saturating_sub(count).max(low),
            Some(Start::Timestamp(_)) => {
                let found = offset_of(by_time.as_deref().unwrap_or_default(), partition)?;
                // -1: no record that new.
                if found < 0 {
                    high
                } else {
                    found
                }
            }
            None => committed
                .iter()
                .find(|offset| offset.topic == topic.name && offset.partition == partition)
                .and_then(|offset| offset.offset.clone().ok())
                .filter(|offset| *offset >= 0)
                .map_or(low, |offset| offset.clamp(low, high.max(low))),
        };
        readings.push(Reading {
            partition,
            position,
            end: (!parsed.follow).then_some(high),
        });
    }
    Ok(readings)
}

/// Writes one record as the format says.
fn write_record(
    out: &mut impl Write,
    format: &[Piece],
    topic: &str,
    partition: i32,
    record: &Record<'_>,
) -> std::io::Result<()> {
    for piece in format {
        match piece {
            Piece::Literal(bytes) => out.write_all(bytes)?,
            Piece::Key => out.write_all(record.key.unwrap_or_default())?,
            Piece::KeyLength => write!(out, "{}", record.key.map_or(-1, |key| key.len() as i64))?,
            Piece::Value => out.write_all(record.value.unwrap_or_default())?,
            Piece::ValueLength => write!(
                out,
                "{}",
                record.value.map_or(-1, |value| value.len() as i64)
            )?,
            Piece::Partition => write!(out, "{partition}")?,
            Piece::Offset => write!(out, "{}", record.offset)?,
            Piece::Timestamp => write!(out, "{}", record.timestamp)?,
            Piece::Topic => out.write_all(topic.as_bytes())?,
            Piece::Headers => {
                for (index, header) in record.headers.iter().enumerate() {
                    // A malformed header ends the list; the record's other
                    // fields were read fine.
                    let Ok((key, value)) = header else { break };
                    if index > 0 {
                        out.write_all(b",")?;
                    }
                    out.write_all(key)?;
                    if let Some(value) = value {
                        out.write_all(b"=")?;
                        out.write_all(value)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn consume(parsed: &ConsumeArgs, out: &mut impl Write) -> Result<(), Failed> {
    let options = super::command_config::client_options(parsed.command_config.as_deref())
        .map_err(Failed::Local)?;
    let mut admin = Admin::connect(&parsed.bootstrap, options)?;
    let mut topic = admin.describe_topic(&parsed.topic)?;
    let mut readings = plan(&mut admin, &topic, parsed)?;
    let limits = FetchLimits {
        max_wait_ms: FETCH_MAX_WAIT_MS,
        partition_bytes_max: FETCH_PARTITION_BYTES_MAX,
        response_bytes_max: FETCH_RESPONSE_BYTES_MAX,
    };
    let mut printed = 0u64;
    let mut leader_attempts = 0;
    // Rotated every round, so that a partition cut short by the response
    // bound is first (and whole, KIP-74) in a later round.
    let mut first = 0usize;
    let mut committed: Vec<(i32, i64)> = Vec::new();
    loop {
        let positions: Vec<(i32, i64)> = readings
            .iter()
            .filter(|reading| !reading.done())
            .map(|reading| (reading.partition, reading.position))
            .collect();
        let finished = positions.is_empty() || parsed.num.is_some_and(|num| printed >= num);
        if finished {
            break;
        }
        let mut rotated = positions.clone();
        rotated.rotate_left(first % positions.len());
        first = first.wrapping_add(1);
        let answers = admin.fetch(&topic, &rotated, limits)?;
        let mut leader_moved = false;
        let mut reader_gone = false;
        for answer in answers {
            let Some(reading) = readings
                .iter_mut()
                .find(|reading| reading.partition == answer.partition)
            else {
                continue;
            };
            let fetched = match answer.result {
                Ok(fetched) => fetched,
                Err(error) if LEADER_MOVED.contains(&error.code) => {
                    leader_moved = true;
                    continue;
                }
                Err(error) if error.code == OFFSET_OUT_OF_RANGE => {
                    // Retention removed the records ahead of us: go on
                    // from the new earliest offset, as Kafka's
                    // `auto.offset.reset=earliest` does.
                    let earliest = admin.list_offsets(&topic, OffsetSpec::Earliest)?;
                    let low = offset_of(&earliest, reading.partition)?;
                    if low <= reading.position {
                        return Err(error.into());
                    }
                    reading.position = low;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            if fetched.records.is_empty() && fetched.high_watermark <= reading.position {
                // Nothing more to come without `--follow`: the log ends
                // here, lower than it did at the start if it was truncated.
                if reading.end.is_some() {
                    reading.end = Some(reading.position);
                }
                continue;
            }
            let end = reading.end;
            let mut reached_end = false;
            let mut write_error = None;
            let next = for_each_record(&fetched.records, reading.position, |record| {
                if end.is_some_and(|end| record.offset >= end) {
                    reached_end = true;
                    return Visit::Stop;
                }
                if let Err(error) =
                    write_record(out, &parsed.format, &topic.name, reading.partition, record)
                {
                    write_error = Some(error);
                    return Visit::Stop;
                }
                printed += 1;
                if parsed.num.is_some_and(|num| printed >= num) {
                    Visit::Stop
                } else {
                    Visit::Continue
                }
            })
            .map_err(|message| {
                Failed::Local(format!(
                    "records of partition {} at offset {} do not decode: {message}",
                    reading.partition, reading.position
                ))
            })?;
            reading.position = match (reached_end, end) {
                (true, Some(end)) => end,
                _ => next,
            };
            if write_error.is_some() {
                reader_gone = true;
                break;
            }
            if parsed.num.is_some_and(|num| printed >= num) {
                break;
            }
        }
        // A reader that went away ends the command; so does a flush it
        // cannot take.
        if reader_gone || out.flush().is_err() {
            commit(&mut admin, parsed, &topic, &readings, &mut committed)?;
            return Ok(());
        }
        commit(&mut admin, parsed, &topic, &readings, &mut committed)?;
        if leader_moved {
            leader_attempts += 1;
            if leader_attempts >= LEADER_ATTEMPTS_MAX {
                let error = KafkaError::new(
                    LEADER_MOVED[0],
                    Some(format!(
                        "no leader answered for {} fetch rounds in a row",
                        LEADER_ATTEMPTS_MAX
                    )),
                );
                return Err(error.into());
            }
            std::thread::sleep(LEADER_RETRY_BACKOFF);
            topic = admin.describe_topic(&parsed.topic)?;
        } else {
            leader_attempts = 0;
        }
    }
    let _ = out.flush();
    commit(&mut admin, parsed, &topic, &readings, &mut committed)
}

/// With `--group`, commits the positions that moved since the last commit.
fn commit(
    admin: &mut Admin,
    parsed: &ConsumeArgs,
    topic: &TopicMetadata,
    readings: &[Reading],
    committed: &mut Vec<(i32, i64)>,
) -> Result<(), Failed> {
    let Some(group) = &parsed.group else {
        return Ok(());
    };
    let moved: Vec<(String, i32, i64)> = readings
        .iter()
        .filter(|reading| !committed.contains(&(reading.partition, reading.position)))
        .map(|reading| (topic.name.clone(), reading.partition, reading.position))
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    admin.commit_offsets(group, &moved)?;
    committed.retain(|(partition, _)| !moved.iter().any(|(_, moved, _)| moved == partition));
    committed.extend(
        moved
            .iter()
            .map(|(_, partition, offset)| (*partition, *offset)),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[String]) -> Result<ConsumeArgs, String> {
        stream::parse_as::<ConsumeCommand>(line).map(ConsumeArgs::from)
    }

    #[test]
    fn parses_every_option() {
        let parsed = parse(&stream::words(
            "orders -p 2 --partition 0 -p 2 --offset -10 --group g --num 5 -f \
             --format %p:%o:%k=%s\\t%h\\n --bootstrap h:1",
        ))
        .expect("parses");
        assert_eq!(parsed.topic, "orders");
        assert_eq!(parsed.bootstrap, "h:1");
        assert_eq!(parsed.partitions, [0, 2]);
        assert_eq!(parsed.start, Some(Start::FromEnd(10)));
        assert_eq!(parsed.group.as_deref(), Some("g"));
        assert_eq!(parsed.num, Some(5));
        assert!(parsed.follow);
        assert_eq!(
            parsed.format,
            [
                Piece::Partition,
                Piece::Literal(b":".to_vec()),
                Piece::Offset,
                Piece::Literal(b":".to_vec()),
                Piece::Key,
                Piece::Literal(b"=".to_vec()),
                Piece::Value,
                Piece::Literal(b"\t".to_vec()),
                Piece::Headers,
                Piece::Literal(b"\n".to_vec()),
            ]
        );
        let defaults = parse(&stream::words("t")).expect("parses");
        assert_eq!(
            defaults.format,
            [Piece::Value, Piece::Literal(b"\n".to_vec())]
        );
        assert_eq!(defaults.start, None);
        assert!(!defaults.follow);
        assert_eq!(
            parse(&stream::words("t -o end")).map(|p| p.start),
            Ok(Some(Start::Latest))
        );
        assert_eq!(
            parse(&stream::words("t --timestamp 1700000000000")).map(|p| p.start),
            Ok(Some(Start::Timestamp(1_700_000_000_000)))
        );
        for bad in [
            "",
            "a b",
            "t --offset soon",
            "t --offset 1 --timestamp 2",
            "t --timestamp -5",
            "t --num 0",
            "t --format %x",
            "t --format 100%",
            "t --group=",
            "t --json",
        ] {
            assert!(parse(&stream::words(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn percent_percent_is_a_literal_percent() {
        assert_eq!(
            parse_format("%%s%s").expect("parses").0,
            [Piece::Literal(b"%s".to_vec()), Piece::Value]
        );
    }
}
