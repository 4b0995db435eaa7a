//! What the broker acknowledged survives a restart: everything after a clean
//! SIGTERM shutdown, and everything acknowledged with acks=all after a
//! `kill -9` (after the producer finished, and in the middle of a stream).
//! After each restart the log reads back contiguous and byte-equal, and new
//! messages continue at the old log end.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    produce_all, read_all, wait_until, Delivery, Record, Rng, Stop, TestBroker, TrackedProducer,
};

const TOPIC: &str = "durable";
const PARTITIONS: i32 = 4;
const MESSAGES_PER_PHASE: usize = 20_000;
/// Acknowledged messages of the streaming phase before the broker is killed.
const ACKNOWLEDGED_BEFORE_KILL: usize = 5_000;

/// Message `index` of `phase`, the same on every call.
fn message(phase: usize, index: usize) -> Record {
    let mut rng = Rng::new(((phase as u64) << 32) | index as u64);
    let len = rng.below(500) as usize;
    Record {
        partition: -1,
        offset: -1,
        key: Some(format!("key{}", index % 37).into_bytes()),
        value: Some(rng.bytes(len)),
        headers: vec![
            ("phase".into(), Some(phase.to_string().into_bytes())),
            ("index".into(), Some(index.to_string().into_bytes())),
        ],
        timestamp: Some(1_600_000_000_000 + (phase * MESSAGES_PER_PHASE + index) as i64),
    }
}

fn header_number(record: &Record, name: &str) -> usize {
    record
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| value.as_deref())
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "record {}/{} lacks header {name}",
                record.partition, record.offset
            )
        })
}

/// Asserts that each acknowledged message of `phase` is in `log` at its
/// acknowledged position, byte-equal.
fn assert_acknowledged_present(
    log: &BTreeMap<i32, Vec<Record>>,
    phase: usize,
    positions: &[(usize, (i32, i64))],
) {
    for (index, (partition, offset)) in positions {
        let records = &log[partition];
        let start = records.first().map(|record| record.offset).unwrap_or(0);
        let got = records.get((*offset - start) as usize).unwrap_or_else(|| {
            panic!("phase {phase} message {index}, acknowledged at {partition}/{offset}, is gone")
        });
        let mut want = message(phase, *index);
        want.partition = *partition;
        want.offset = *offset;
        assert_eq!(
            got, &want,
            "phase {phase} message {index} at {partition}/{offset}"
        );
    }
}

/// Every record in the log is a message some phase sent, at most once.
fn assert_only_sent_messages(log: &BTreeMap<i32, Vec<Record>>) {
    let mut seen = HashSet::new();
    for record in log.values().flatten() {
        let (phase, index) = (
            header_number(record, "phase"),
            header_number(record, "index"),
        );
        let mut want = message(phase, index);
        want.partition = record.partition;
        want.offset = record.offset;
        assert_eq!(
            record, &want,
            "record at {}/{} is not what was sent",
            record.partition, record.offset
        );
        assert!(
            seen.insert((phase, index)),
            "phase {phase} message {index} is in the log twice"
        );
    }
}

fn high_watermarks(broker: &TestBroker) -> Vec<i64> {
    use rdkafka::consumer::Consumer;
    let consumer = broker.consumer(&[]);
    (0..PARTITIONS)
        .map(|partition| {
            consumer
                .fetch_watermarks(TOPIC, partition, common::CLIENT_TIMEOUT)
                .expect("watermarks")
                .1
        })
        .collect()
}

/// A producer streaming `message(phase, 0..)` from its own thread until
/// stopped, keeping at most `STREAM_AHEAD_MAX` messages unacknowledged.
struct Stream {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
    thread: thread::JoinHandle<Vec<Option<Delivery>>>,
}

/// Messages a streaming producer may have in flight.
const STREAM_AHEAD_MAX: usize = 2_000;

impl Stream {
    fn start(broker: &TestBroker, topic: &str, phase: usize, settings: &[(&str, &str)]) -> Stream {
        let mut settings = settings.to_vec();
        // No short message timeout to end the stream after the kill (the
        // stream purges instead): an idempotent librdkafka producer whose
        // messages time out bumps its epoch and sends possibly stored
        // messages again as new ones, a duplicate the broker cannot tell.
        settings.push(("linger.ms", "1"));
        let mut producer = TrackedProducer::new(broker, topic, &settings);
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
            thread::spawn(move || {
                let mut index = 0;
                while !stop.load(Ordering::SeqCst) && index < 10 * MESSAGES_PER_PHASE {
                    producer.send(&message(phase, index));
                    index += 1;
                    if index % 50 == 0 {
                        acknowledged.store(producer.acknowledged(), Ordering::SeqCst);
                        while index - producer.acknowledged() > STREAM_AHEAD_MAX
                            && !stop.load(Ordering::SeqCst)
                        {
                            thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                if stop.load(Ordering::SeqCst) {
                    // The broker is gone: what was not acknowledged fails now.
                    producer.abandon();
                } else {
                    producer.flush();
                }
                let reports = producer.reports();
                drop(producer);
                reports
            })
        };
        Stream {
            stop,
            acknowledged,
            thread,
        }
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::SeqCst)
    }

    /// Stops the stream; returns the delivery reports by message index.
    fn finish(self) -> Vec<Option<Delivery>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the producing thread")
    }
}

/// The acknowledged messages of a stream: (index, (partition, offset)).
fn acknowledged_positions(reports: &[Option<Delivery>]) -> Vec<(usize, (i32, i64))> {
    reports
        .iter()
        .enumerate()
        .filter_map(|(index, report)| match report {
            Some(Ok(position)) => Some((index, *position)),
            _ => None,
        })
        .collect()
}

#[test]
fn acknowledged_messages_survive_sigterm_and_sigkill() {
    let mut broker = TestBroker::start();
    broker.create_topic(TOPIC, PARTITIONS);

    // Phase 0: acks=1, then a clean restart.
    let started = Instant::now();
    let phase0: Vec<Record> = (0..MESSAGES_PER_PHASE)
        .map(|index| message(0, index))
        .collect();
    let positions = produce_all(
        &broker,
        TOPIC,
        &[("acks", "1"), ("compression.type", "lz4")],
        &phase0,
    );
    let phase0_positions: Vec<(usize, (i32, i64))> = positions.into_iter().enumerate().collect();
    let before = read_all(&broker, TOPIC, PARTITIONS);
    assert_eq!(
        before.values().map(Vec::len).sum::<usize>(),
        MESSAGES_PER_PHASE
    );
    assert_acknowledged_present(&before, 0, &phase0_positions);

    broker.restart(Stop::Term);
    let after = read_all(&broker, TOPIC, PARTITIONS);
    assert_eq!(after, before, "the log changed across a clean restart");
    eprintln!(
        "phase 0 (acks=1, SIGTERM restart) took {:?}",
        started.elapsed()
    );

    // Phase 1: acks=all, idempotent; kill -9 once everything is acknowledged.
    let started = Instant::now();
    let phase1: Vec<Record> = (0..MESSAGES_PER_PHASE)
        .map(|index| message(1, index))
        .collect();
    let settings = [
        ("acks", "all"),
        ("enable.idempotence", "true"),
        ("compression.type", "zstd"),
    ];
    let positions = produce_all(&broker, TOPIC, &settings, &phase1);
    let phase1_positions: Vec<(usize, (i32, i64))> = positions.into_iter().enumerate().collect();
    let ends_before_kill = high_watermarks(&broker);
    broker.restart(Stop::Kill);
    let after = read_all(&broker, TOPIC, PARTITIONS);
    assert_acknowledged_present(&after, 0, &phase0_positions);
    assert_acknowledged_present(&after, 1, &phase1_positions);
    assert_eq!(
        high_watermarks(&broker),
        ends_before_kill,
        "log ends changed across kill -9"
    );
    assert_only_sent_messages(&after);
    eprintln!(
        "phase 1 (acks=all, kill -9 after flush) took {:?}",
        started.elapsed()
    );

    // Phase 2: kill -9 while an acks=all producer is streaming.
    let started = Instant::now();
    let stream = Stream::start(
        &broker,
        TOPIC,
        2,
        &[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("compression.type", "snappy"),
        ],
    );
    wait_until(
        "acknowledgements before the kill",
        common::CLIENT_TIMEOUT,
        || stream.acknowledged() >= ACKNOWLEDGED_BEFORE_KILL,
    );
    broker.stop(Stop::Kill);
    let reports = stream.finish();
    // Reports taken after the process died: an Ok here was sent by the broker
    // before it died (unacknowledged messages fail when their timeout ends).
    let phase2_positions: Vec<(usize, (i32, i64))> = reports
        .iter()
        .enumerate()
        .filter_map(|(index, report)| match report {
            Some(Ok(position)) => Some((index, *position)),
            _ => None,
        })
        .collect();
    assert!(phase2_positions.len() >= ACKNOWLEDGED_BEFORE_KILL);
    broker.restart(Stop::Kill);
    let after = read_all(&broker, TOPIC, PARTITIONS);
    assert_acknowledged_present(&after, 0, &phase0_positions);
    assert_acknowledged_present(&after, 1, &phase1_positions);
    assert_acknowledged_present(&after, 2, &phase2_positions);
    assert_only_sent_messages(&after);
    eprintln!(
        "phase 2 (kill -9 mid-stream): {} acknowledged, {} sent, {} in the log after restart, {:?}",
        phase2_positions.len(),
        reports.len(),
        after.values().map(Vec::len).sum::<usize>() - 2 * MESSAGES_PER_PHASE,
        started.elapsed()
    );

    // Phase 3: the recovered log takes new messages at its end.
    let ends = high_watermarks(&broker);
    let phase3: Vec<Record> = (0..1_000).map(|index| message(3, index)).collect();
    let positions = produce_all(&broker, TOPIC, &[("acks", "all")], &phase3);
    for (index, (partition, offset)) in positions.iter().enumerate() {
        assert!(
            *offset >= ends[*partition as usize],
            "message {index} got offset {offset} below the old end"
        );
    }
    let after = read_all(&broker, TOPIC, PARTITIONS);
    let phase3_positions: Vec<(usize, (i32, i64))> = positions.into_iter().enumerate().collect();
    assert_acknowledged_present(&after, 3, &phase3_positions);
    assert_only_sent_messages(&after);
    broker.restart(Stop::Term);
    assert_eq!(
        read_all(&broker, TOPIC, PARTITIONS),
        after,
        "the log changed across a clean restart"
    );
}

/// Crash after crash on a topic with small segments (so crashes land near
/// segment rolls), with an acks=all and an acks=1 producer streaming
/// together: after each restart every acks=all acknowledgement is in the
/// log, every acks=1 acknowledgement below a durable one in its partition is
/// too (the log survives as a prefix), and nothing else is there but
/// messages that were sent.
/// A message index and the (partition, offset) it was acknowledged at.
type Delivered = (usize, (i32, i64));

#[test]
fn repeated_kill_9_keeps_a_durable_prefix() {
    // SLUICE_KILL_CYCLES runs more cycles (a long soak of the same check).
    let cycles: usize = std::env::var("SLUICE_KILL_CYCLES")
        .ok()
        .and_then(|cycles| cycles.parse().ok())
        .unwrap_or(4);
    // A long soak moves to a new topic every few cycles, so each check
    // reads a bounded log instead of everything since the start.
    const CYCLES_PER_TOPIC: usize = 4;
    let mut broker = TestBroker::start();
    let mut durable: Vec<(usize, Vec<Delivered>)> = Vec::new();
    let mut rng = Rng::new(7);
    let mut topic = String::new();
    for cycle in 0..cycles {
        if cycle % CYCLES_PER_TOPIC == 0 {
            topic = format!("rolling-{}", cycle / CYCLES_PER_TOPIC);
            common::create_topic(&broker.admin(), &topic, 3, &[("segment.bytes", "65536")]);
            durable.clear();
        }
        let topic = topic.as_str();
        let (durable_phase, relaxed_phase) = (10 + 2 * cycle, 11 + 2 * cycle);
        let strict = Stream::start(
            &broker,
            topic,
            durable_phase,
            &[("acks", "all"), ("enable.idempotence", "true")],
        );
        let relaxed = Stream::start(
            &broker,
            topic,
            relaxed_phase,
            &[("acks", "1"), ("compression.type", "gzip")],
        );
        let wanted = 2_000 + rng.below(3_000) as usize;
        wait_until(
            "acknowledgements before the kill",
            common::CLIENT_TIMEOUT,
            || strict.acknowledged() >= wanted && relaxed.acknowledged() >= wanted / 2,
        );
        broker.stop(Stop::Kill);
        let strict_acked = acknowledged_positions(&strict.finish());
        let relaxed_acked = acknowledged_positions(&relaxed.finish());
        broker.restart(Stop::Kill);
        let log = read_all(&broker, topic, 3);
        assert_only_sent_messages(&log);
        durable.push((durable_phase, strict_acked.clone()));
        for (phase, positions) in &durable {
            assert_acknowledged_present(&log, *phase, positions);
        }
        // Below the highest durable offset of each partition, acks=1
        // acknowledgements of this cycle survived too.
        let mut durable_end: BTreeMap<i32, i64> = BTreeMap::new();
        for (_, (partition, offset)) in &strict_acked {
            let end = durable_end.entry(*partition).or_insert(-1);
            *end = (*end).max(*offset);
        }
        let covered: Vec<(usize, (i32, i64))> = relaxed_acked
            .iter()
            .filter(|(_, (partition, offset))| {
                durable_end.get(partition).is_some_and(|end| offset < end)
            })
            .copied()
            .collect();
        assert_acknowledged_present(&log, relaxed_phase, &covered);
        eprintln!(
            "cycle {cycle}: {} acks=all and {} acks=1 acknowledged ({} below a durable one), {} records after restart",
            strict_acked.len(),
            relaxed_acked.len(),
            covered.len(),
            log.values().map(Vec::len).sum::<usize>()
        );
    }
}

/// A partition taking acks=all writes of a batch or so each has its active
/// segment filled with zeros ahead of its writes, so that each durable
/// write lands on blocks already written (`ZERO_AHEAD_BYTES_MIN` in the
/// engine). A kill -9 leaves those zeros after the log's end: the restart
/// cuts them, keeps every acknowledged message once, and the log takes new
/// messages at its end.
#[test]
fn zeros_written_ahead_are_cut_after_kill_9() {
    const TOPIC: &str = "trickle";
    const PARTITIONS: i32 = 2;
    /// Messages of each phase: about 375 KiB per partition, several zero
    /// fills' worth.
    const MESSAGES: usize = 3_000;
    /// A file ending in this many zero bytes was filled ahead: the padding
    /// of a last page is shorter.
    const ZEROS_AHEAD_SEEN_BYTES: usize = 8192;
    let mut broker = TestBroker::start();
    broker.create_topic(TOPIC, PARTITIONS);
    // Small batches, each synced on its own: the case zeros are written
    // ahead for.
    let settings = [
        ("acks", "all"),
        ("enable.idempotence", "true"),
        ("linger.ms", "0"),
        ("batch.size", "1024"),
    ];
    let data_dir = broker.data_dir();
    let trailing_zeros = |partition: i32| {
        let segment = data_dir
            .join(format!("{TOPIC}-{partition}"))
            .join("00000000000000000000.log");
        let bytes = std::fs::read(segment).expect("the segment file");
        bytes.iter().rev().take_while(|&&byte| byte == 0).count()
    };
    let first: Vec<Record> = (0..MESSAGES).map(|index| message(20, index)).collect();
    let first_positions: Vec<(usize, (i32, i64))> = produce_all(&broker, TOPIC, &settings, &first)
        .into_iter()
        .enumerate()
        .collect();
    let zeros: Vec<usize> = (0..PARTITIONS).map(trailing_zeros).collect();
    assert!(
        zeros.iter().any(|&count| count >= ZEROS_AHEAD_SEEN_BYTES),
        "no segment file ends in zeros written ahead: trailing zero bytes {zeros:?}"
    );
    let ends_before_kill = (0..PARTITIONS)
        .map(|partition| {
            use rdkafka::consumer::Consumer;
            broker
                .consumer(&[])
                .fetch_watermarks(TOPIC, partition, common::CLIENT_TIMEOUT)
                .expect("watermarks")
                .1
        })
        .collect::<Vec<i64>>();
    broker.restart(Stop::Kill);
    let after = read_all(&broker, TOPIC, PARTITIONS);
    assert_acknowledged_present(&after, 20, &first_positions);
    assert_only_sent_messages(&after);
    for partition in 0..PARTITIONS {
        assert_eq!(
            after[&partition].len() as i64,
            ends_before_kill[partition as usize],
            "partition {partition}: the log's end moved across kill -9"
        );
        assert!(
            trailing_zeros(partition) < ZEROS_AHEAD_SEEN_BYTES,
            "partition {partition}: the zeros after the log were not cut at the restart"
        );
    }
    let second: Vec<Record> = (0..MESSAGES).map(|index| message(21, index)).collect();
    let second_positions: Vec<(usize, (i32, i64))> =
        produce_all(&broker, TOPIC, &settings, &second)
            .into_iter()
            .enumerate()
            .collect();
    for (index, (partition, offset)) in &second_positions {
        assert!(
            *offset >= ends_before_kill[*partition as usize],
            "message {index} got offset {offset} below the old end"
        );
    }
    broker.restart(Stop::Kill);
    let after = read_all(&broker, TOPIC, PARTITIONS);
    assert_acknowledged_present(&after, 20, &first_positions);
    assert_acknowledged_present(&after, 21, &second_positions);
    assert_only_sent_messages(&after);
    assert_eq!(
        after.values().map(Vec::len).sum::<usize>(),
        2 * MESSAGES,
        "every message once"
    );
}
