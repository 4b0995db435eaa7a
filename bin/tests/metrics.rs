//! The admin port (`--admin-listen`): `/metrics` scraped and read with a
//! Prometheus text parser, its figures checked against traffic the test
//! made and knows; `/health` and `/ready`; and HTTP requests that are too
//! large, malformed or never finished get an error while Kafka clients
//! keep being served.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{free_ports, produce_all, read_all, wait_until, Record, Stop, TestBroker, WireClient};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use prometheus_parse::{Scrape, Value};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "metered";
const PARTITIONS: i32 = 3;
/// Records produced to each partition: different counts, so that a gauge
/// reporting the wrong partition's figure shows.
const RECORDS_PER_PARTITION: [usize; PARTITIONS as usize] = [40, 25, 10];
const VALUE_BYTES: usize = 300;
/// ApiVersions requests sent on a raw connection, counted exactly.
const API_VERSIONS_REQUESTS: usize = 7;
const GROUP: &str = "metered-group";
/// The offset the group commits on partition 0.
const COMMITTED_OFFSET: i64 = 12;
/// How long an HTTP exchange may take (the broker gives a silent client 2 s).
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long published figures may take to show (they are published every
/// second; generous for a loaded machine).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

fn start_with_admin_port() -> (TestBroker, SocketAddr) {
    start_with_admin_port_and(&[])
}

/// A broker with its admin port and `extra` arguments.
fn start_with_admin_port_and(extra: &[&str]) -> (TestBroker, SocketAddr) {
    let port = free_ports(1)[0];
    let admin = SocketAddr::from(([127, 0, 0, 1], port));
    let address = admin.to_string();
    let mut args = vec!["--admin-listen", address.as_str()];
    args.extend_from_slice(extra);
    let broker = TestBroker::start_with(&args);
    (broker, admin)
}

/// Sends `request` as is and returns the status and body of the answer.
fn http(address: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&address, HTTP_TIMEOUT).expect("connect");
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    stream
        .set_write_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    // An oversized request may be answered before it is all written.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("reading the response");
    let response = String::from_utf8(response).expect("a UTF-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {response:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|length| length.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    assert_eq!(body.len(), length, "Content-Length");
    (status, body.to_string())
}

fn get(address: SocketAddr, path: &str) -> (u16, String) {
    http(
        address,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    )
}

/// A scrape, parsed; every sample line must have been understood.
fn scrape(address: SocketAddr) -> Scrape {
    let (status, text) = get(address, "/metrics");
    assert_eq!(status, 200, "{text}");
    let parsed = Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).expect("parsed");
    let sample_lines = text
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .count();
    let understood: usize = parsed
        .samples
        .iter()
        .map(|sample| match &sample.value {
            Value::Histogram(buckets) => buckets.len(),
            _ => 1,
        })
        .sum();
    assert_eq!(
        understood, sample_lines,
        "lines the parser skipped in\n{text}"
    );
    parsed
}

/// The samples of `metric` with these labels' values, in scrape order.
fn matching<'a>(
    scrape: &'a Scrape,
    metric: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a prometheus_parse::Sample> {
    scrape.samples.iter().filter(move |sample| {
        sample.metric == metric
            && labels
                .iter()
                .all(|(name, wanted)| sample.labels.get(name) == Some(*wanted))
    })
}

/// A counter's, gauge's or untyped sample's number.
fn number(sample: &prometheus_parse::Sample) -> Option<f64> {
    match sample.value {
        Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => Some(value),
        _ => None,
    }
}

/// The value of the sample `metric` with exactly these labels' values.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    matching(scrape, metric, labels).next().and_then(number)
}

/// The sum of every sample of `metric` with these labels' values (over
/// shards, say).
fn total(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    matching(scrape, metric, labels).filter_map(number).sum()
}

/// A sessionless consumer Fetch of partitions `0..partitions` of `topic`,
/// each from offset 0, answered at once.
fn fetch_from_start(
    topic: &'static str,
    partitions: i32,
    max_bytes: i32,
    partition_max_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(topic)))
            .with_partitions(
                (0..partitions)
                    .map(|partition| {
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(partition_max_bytes)
                    })
                    .collect(),
            )])
}

fn partition_value(scrape: &Scrape, metric: &str, partition: i32) -> Option<f64> {
    value(
        scrape,
        metric,
        &[("topic", TOPIC), ("partition", &partition.to_string())],
    )
}

fn requests(scrape: &Scrape, api: &str) -> f64 {
    value(scrape, "sluice_requests_total", &[("api", api)]).unwrap_or(0.0)
}

fn produce_to_missing_partition(client: &mut WireClient) -> i16 {
    let mut partition = PartitionProduceData::default();
    partition.index = PARTITIONS + 5;
    partition.records = Some(bytes::Bytes::from_static(&[0; 70]));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 10_000;
    request.topic_data = vec![topic];
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    response.responses[0].partition_responses[0].error_code
}

#[test]
fn scraped_figures_match_the_traffic() {
    // No thread of the broker can have run longer than this.
    let started = Instant::now();
    let (broker, admin) = start_with_admin_port();
    assert_eq!(get(admin, "/health"), (200, "ok\n".to_string()));
    assert_eq!(get(admin, "/ready"), (200, "ready\n".to_string()));
    broker.create_topic(TOPIC, PARTITIONS);

    let mut records = Vec::new();
    for (partition, count) in RECORDS_PER_PARTITION.iter().enumerate() {
        for index in 0..*count {
            let value = common::indexed_value(index, VALUE_BYTES);
            records.push(Record::with_value(partition as i32, value));
        }
    }
    let positions = produce_all(&broker, TOPIC, &[("acks", "all")], &records);
    for (partition, count) in RECORDS_PER_PARTITION.iter().enumerate() {
        let in_partition = positions
            .iter()
            .filter(|(at, _)| *at == partition as i32)
            .count();
        assert_eq!(
            in_partition, *count,
            "records delivered to partition {partition}"
        );
    }
    let read = read_all(&broker, TOPIC, PARTITIONS);
    assert_eq!(
        read.values().map(Vec::len).sum::<usize>(),
        records.len(),
        "records read back"
    );

    // The group commits an offset on partition 0 only.
    {
        let consumer = broker.consumer(&[("group.id", GROUP)]);
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(TOPIC, 0, Offset::Offset(COMMITTED_OFFSET))
            .expect("offset");
        consumer.commit(&offsets, CommitMode::Sync).expect("commit");
    }

    // Partition gauges, bytes and committed offsets are published once a
    // second: wait for a scrape that has them all.
    let mut last = None;
    let deadline = Instant::now() + PUBLISH_TIMEOUT;
    let scraped = loop {
        let scraped = scrape(admin);
        let complete = (0..PARTITIONS).all(|partition| {
            partition_value(&scraped, "sluice_partition_log_end_offset", partition)
                == Some(RECORDS_PER_PARTITION[partition as usize] as f64)
        }) && value(
            &scraped,
            "sluice_topic_bytes_out_total",
            &[("topic", TOPIC)],
        )
        .is_some()
            && value(
                &scraped,
                "sluice_consumer_group_lag",
                &[("group", GROUP), ("topic", TOPIC), ("partition", "0")],
            )
            .is_some();
        if complete {
            break scraped;
        }
        assert!(
            Instant::now() < deadline,
            "the published figures never matched the traffic; last scrape's partition gauges: {:?}",
            last.as_ref().map(|scrape: &Scrape| (0..PARTITIONS)
                .map(|partition| partition_value(
                    scrape,
                    "sluice_partition_log_end_offset",
                    partition
                ))
                .collect::<Vec<_>>())
        );
        last = Some(scraped);
        std::thread::sleep(Duration::from_millis(200));
    };

    // Every produced record is in its partition, from offset 0; the log's
    // size is the batches it took, which are the bytes produce accepted.
    let mut size = 0.0;
    for partition in 0..PARTITIONS {
        let count = RECORDS_PER_PARTITION[partition as usize] as f64;
        let gauge = |metric| partition_value(&scraped, metric, partition);
        assert_eq!(gauge("sluice_partition_log_start_offset"), Some(0.0));
        assert_eq!(gauge("sluice_partition_high_watermark"), Some(count));
        assert_eq!(gauge("sluice_partition_leader"), Some(1.0));
        let bytes = gauge("sluice_partition_size_bytes").expect("a size");
        // At least the values themselves, at most that plus generous
        // per-record and per-batch overhead.
        assert!(
            bytes >= count * VALUE_BYTES as f64,
            "partition {partition}: {bytes} bytes"
        );
        assert!(
            bytes <= count * (VALUE_BYTES as f64 + 100.0) + 1_000.0,
            "partition {partition}: {bytes} bytes"
        );
        size += bytes;
    }
    let bytes_in = value(&scraped, "sluice_topic_bytes_in_total", &[("topic", TOPIC)]);
    assert_eq!(bytes_in, Some(size), "bytes in = the batches the logs hold");
    // The consumer read every batch once at least (librdkafka may fetch one
    // again when it refetches after a partial response).
    let bytes_out = value(
        &scraped,
        "sluice_topic_bytes_out_total",
        &[("topic", TOPIC)],
    )
    .expect("bytes out");
    assert!(
        (size..=2.0 * size).contains(&bytes_out),
        "bytes out {bytes_out} for {size} stored"
    );

    let lag = value(
        &scraped,
        "sluice_consumer_group_lag",
        &[("group", GROUP), ("topic", TOPIC), ("partition", "0")],
    );
    assert_eq!(
        lag,
        Some(RECORDS_PER_PARTITION[0] as f64 - COMMITTED_OFFSET as f64)
    );
    assert_eq!(
        value(
            &scraped,
            "sluice_consumer_group_committed_offset",
            &[("group", GROUP), ("topic", TOPIC), ("partition", "0")],
        ),
        Some(COMMITTED_OFFSET as f64)
    );
    assert_eq!(
        value(&scraped, "sluice_under_replicated_partitions", &[]),
        Some(0.0)
    );
    assert_eq!(value(&scraped, "sluice_offline_partitions", &[]), Some(0.0));
    assert_eq!(value(&scraped, "sluice_ready", &[]), Some(1.0));
    let dir = broker.data_dir().display().to_string();
    let free = value(&scraped, "sluice_data_dir_free_bytes", &[("dir", &dir)]).expect("disk free");
    let whole = value(&scraped, "sluice_data_dir_size_bytes", &[("dir", &dir)]).expect("disk size");
    assert!(free > 0.0 && free <= whole, "free {free} of {whole}");
    for shard in ["0", "1"] {
        let busy = value(
            &scraped,
            "sluice_shard_busy_seconds_total",
            &[("shard", shard)],
        );
        assert!(
            busy.is_some_and(|busy| busy > 0.0),
            "shard {shard} busy {busy:?}"
        );
        let lifetime = started.elapsed().as_secs_f64();
        let cpu = value(
            &scraped,
            "sluice_shard_cpu_seconds_total",
            &[("shard", shard)],
        );
        assert!(
            cpu.is_some_and(|cpu| cpu > 0.0 && cpu <= lifetime),
            "shard {shard} CPU {cpu:?} s in {lifetime} s"
        );
        let cache = value(
            &scraped,
            "sluice_batch_cache_budget_bytes",
            &[("shard", shard)],
        );
        assert!(
            cache.is_some_and(|cache| cache > 0.0),
            "shard {shard} cache {cache:?}"
        );
    }
    assert!(requests(&scraped, "Produce") >= 1.0);
    assert!(requests(&scraped, "Fetch") >= 1.0);

    // Every histogram is cumulative and counts what its counter counts.
    for sample in &scraped.samples {
        let Value::Histogram(buckets) = &sample.value else {
            continue;
        };
        if sample.metric == "sluice_request_queue_seconds" {
            let shard = sample.labels.get("shard").expect("a shard label");
            let counts: Vec<f64> = buckets.iter().map(|bucket| bucket.count).collect();
            assert!(
                counts.windows(2).all(|pair| pair[0] <= pair[1]),
                "shard {shard}: {counts:?}"
            );
            let count = value(
                &scraped,
                "sluice_request_queue_seconds_count",
                &[("shard", shard)],
            );
            assert_eq!(counts.last().copied(), count, "shard {shard}: _count");
            continue;
        }
        assert_eq!(sample.metric, "sluice_request_duration_seconds");
        let api = sample.labels.get("api").expect("an api label");
        let counts: Vec<f64> = buckets.iter().map(|bucket| bucket.count).collect();
        assert!(
            counts.windows(2).all(|pair| pair[0] <= pair[1]),
            "{api}: {counts:?}"
        );
        let infinite = buckets
            .iter()
            .find(|bucket| bucket.less_than.is_infinite())
            .map(|bucket| bucket.count);
        assert_eq!(
            infinite,
            Some(requests(&scraped, api)),
            "{api}: +Inf bucket"
        );
        let count = value(
            &scraped,
            "sluice_request_duration_seconds_count",
            &[("api", api)],
        );
        assert_eq!(count, Some(requests(&scraped, api)), "{api}: _count");
    }

    // Every request was queued once, on the shard of its connection.
    let queued: f64 = ["0", "1"]
        .iter()
        .filter_map(|shard| {
            value(
                &scraped,
                "sluice_request_queue_seconds_count",
                &[("shard", shard)],
            )
        })
        .sum();
    let answered: f64 = scraped
        .samples
        .iter()
        .filter(|sample| sample.metric == "sluice_requests_total")
        .filter_map(|sample| match sample.value {
            Value::Counter(count) | Value::Gauge(count) | Value::Untyped(count) => Some(count),
            _ => None,
        })
        .sum();
    assert!(
        queued >= answered && answered > 0.0,
        "queued {queued}, answered {answered}"
    );

    // Exact counts: nothing else talks to the broker now.
    let before = scrape(admin);
    let connections = |scrape: &Scrape| -> f64 {
        ["0", "1"]
            .iter()
            .filter_map(|shard| value(scrape, "sluice_connections", &[("shard", shard)]))
            .sum()
    };
    let mut client = WireClient::new(&broker);
    for _ in 0..API_VERSIONS_REQUESTS {
        let _: ApiVersionsResponse =
            client.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    }
    let error_code = produce_to_missing_partition(&mut client);
    assert_ne!(error_code, 0, "a produce to a missing partition is refused");
    let after = scrape(admin);
    assert_eq!(
        connections(&after) - connections(&before),
        1.0,
        "the wire client's connection is counted"
    );
    assert_eq!(
        requests(&after, "ApiVersions") - requests(&before, "ApiVersions"),
        API_VERSIONS_REQUESTS as f64
    );
    assert_eq!(
        requests(&after, "Produce") - requests(&before, "Produce"),
        1.0
    );
    let errors = |scrape: &Scrape| {
        value(scrape, "sluice_request_errors_total", &[("api", "Produce")]).unwrap_or(0.0)
    };
    assert_eq!(
        errors(&after) - errors(&before),
        1.0,
        "the refused produce is an error"
    );
    assert_eq!(
        value(
            &after,
            "sluice_request_errors_total",
            &[("api", "ApiVersions")]
        ),
        Some(0.0)
    );
}

#[test]
fn bad_http_requests_get_errors_and_kafka_keeps_serving() {
    let (broker, admin) = start_with_admin_port();
    broker.create_topic(TOPIC, 1);

    // A client that connects and sends nothing holds the admin port for its
    // deadline only; meanwhile Kafka clients are served.
    let mut silent = TcpStream::connect(admin).expect("connect");
    silent
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    let records: Vec<Record> = (0..50)
        .map(|index| Record::with_value(0, common::indexed_value(index, 100)))
        .collect();
    let started = Instant::now();
    produce_all(&broker, TOPIC, &[], &records);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "producing took {:?} while the admin port was held",
        started.elapsed()
    );
    let mut answer = String::new();
    silent.read_to_string(&mut answer).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");

    let oversized = format!(
        "GET /metrics HTTP/1.1\r\nX-Padding: {}\r\n\r\n",
        "x".repeat(20 * 1024)
    );
    assert_eq!(http(admin, oversized.as_bytes()).0, 431);
    assert_eq!(
        http(
            admin,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"
        )
        .0,
        400
    );
    assert_eq!(http(admin, b"GET /metrics\r\n\r\n").0, 400);
    assert_eq!(
        http(
            admin,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        )
        .0,
        405
    );
    assert_eq!(get(admin, "/admin/shutdown").0, 404);
    // A half-sent request, then the peer goes away: no answer, no harm.
    {
        let mut partial = TcpStream::connect(admin).expect("connect");
        partial.write_all(b"GET /metr").expect("write");
    }

    // Still serving both ports.
    assert_eq!(get(admin, "/health").0, 200);
    let scraped = scrape(admin);
    assert!(requests(&scraped, "Produce") >= 1.0);
    let read = read_all(&broker, TOPIC, 1);
    assert_eq!(read[&0].len(), records.len());
    wait_until("a scrape showing the records", PUBLISH_TIMEOUT, || {
        partition_value(&scrape(admin), "sluice_partition_log_end_offset", 0)
            == Some(records.len() as f64)
    });
}

#[test]
fn a_taken_admin_port_is_a_start_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address");
    let dir = std::env::temp_dir().join(format!("sluice-admin-taken-{}", std::process::id()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--pin-shards",
            "false",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .args(["--admin-listen", &address.to_string()])
        .env("SLUICE_LOG", "error")
        .output()
        .expect("running sluice");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains("admin port") && lines[0].contains(&address.to_string()),
        "{stderr}"
    );
    drop(taken);
}

/// Batch cache budget per shard in the memory test: small, so that the
/// cache fills and evicts within a few seconds of producing.
const SMALL_CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// Records produced in the memory test: several times what the cache holds.
const SMALL_BATCH_RECORDS: usize = 24_000;
const SMALL_BATCH_PARTITIONS: i32 = 12;
/// What the broker may allocate beyond its idle figure, as a multiple of
/// the bytes its cache holds, plus a fixed allowance for indexes, producer
/// state and connection buffers.
const ALLOCATED_PER_CACHED_BYTE_MAX: f64 = 2.0;
const ALLOCATED_ALLOWANCE_BYTES: f64 = 8.0 * 1024.0 * 1024.0;

/// Many small produce requests: the memory the broker holds follows what
/// its batch cache counts. (Each cached batch used to keep the connection's
/// whole 64 KiB read block alive, so 4 MiB of small batches held hundreds
/// of MiB.)
#[test]
fn small_produce_requests_hold_what_the_cache_counts() {
    let port = free_ports(1)[0];
    let admin = SocketAddr::from(([127, 0, 0, 1], port));
    let cache = SMALL_CACHE_BYTES.to_string();
    let broker = TestBroker::start_with(&[
        "--admin-listen",
        &admin.to_string(),
        "--cache-bytes-per-shard",
        &cache,
    ]);
    let topic = "small-batches";
    broker.create_topic(topic, SMALL_BATCH_PARTITIONS);
    let allocated = |scrape: &Scrape| value(scrape, "sluice_memory_allocated_bytes", &[]);
    let mut idle = None;
    wait_until("the allocator's figure", PUBLISH_TIMEOUT, || {
        idle = allocated(&scrape(admin));
        idle.is_some()
    });
    let idle = idle.unwrap_or_default();

    let records: Vec<Record> = (0..SMALL_BATCH_RECORDS)
        .map(|index| {
            let partition = (index % SMALL_BATCH_PARTITIONS as usize) as i32;
            Record::with_value(partition, common::indexed_value(index, 1024))
        })
        .collect();
    produce_all(
        &broker,
        topic,
        // One request in flight: each arrives on its own, as at a steady
        // rate, rather than several in one socket read.
        &[
            ("linger.ms", "0"),
            ("batch.num.messages", "1"),
            ("max.in.flight.requests.per.connection", "1"),
        ],
        &records,
    );

    let after = scrape(admin);
    let cached = total(&after, "sluice_batch_cache_bytes", &[]);
    let held = allocated(&after).unwrap_or_default() - idle;
    eprintln!(
        "cached {:.1} MiB, allocated {:.1} MiB beyond the idle {:.1} MiB",
        cached / 1048576.0,
        held / 1048576.0,
        idle / 1048576.0
    );
    // The cache filled: the test measured what it means to measure.
    assert!(cached >= SMALL_CACHE_BYTES as f64, "cached {cached}");
    assert!(
        held <= cached * ALLOCATED_PER_CACHED_BYTE_MAX + ALLOCATED_ALLOWANCE_BYTES,
        "the broker holds {held} bytes for {cached} cached"
    );
}

/// Raw client connections opened in the spreading test: an odd number, so
/// that an even spread over two shards is 5 and 4 (a hash spread gives
/// that in under half of the tries).
const SPREAD_CONNECTIONS: usize = 9;

/// Connections are served by the shard with the fewest, whichever shard's
/// socket the kernel gave them to; each is served, and each leaves its
/// shard's count when it closes.
#[test]
fn connections_spread_evenly_over_the_shards() {
    let (broker, admin) = start_with_admin_port();
    let per_shard = |scrape: &Scrape| -> Vec<f64> {
        (0..common::SHARDS)
            .map(|shard| {
                value(
                    scrape,
                    "sluice_connections",
                    &[("shard", &shard.to_string())],
                )
                .unwrap_or(0.0)
            })
            .collect()
    };
    let mut clients = Vec::new();
    for _ in 0..SPREAD_CONNECTIONS {
        let mut client = WireClient::new(&broker);
        let versions: ApiVersionsResponse =
            client.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        assert_eq!(versions.error_code, 0);
        clients.push(client);
    }
    let counts = per_shard(&scrape(admin));
    assert_eq!(
        counts.iter().sum::<f64>(),
        SPREAD_CONNECTIONS as f64,
        "{counts:?}"
    );
    let most = counts.iter().cloned().fold(f64::MIN, f64::max);
    let fewest = counts.iter().cloned().fold(f64::MAX, f64::min);
    assert!(most - fewest <= 1.0, "connections per shard: {counts:?}");
    // Every connection, wherever it is served, still answers.
    for client in &mut clients {
        let versions: ApiVersionsResponse =
            client.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        assert_eq!(versions.error_code, 0);
    }
    drop(clients);
    wait_until("every shard's count back to 0", PUBLISH_TIMEOUT, || {
        per_shard(&scrape(admin)).iter().all(|count| *count == 0.0)
    });
}

/// Fetch v12: topics by name, incremental sessions available.
const SPREAD_FETCH_VERSION: i16 = 12;
/// Connections opened for the fetch-spreading test: two per shard.
const FETCH_SPREAD_CONNECTIONS: usize = 2 * common::SHARDS;

/// Connections are placed when accepted, before anything says what they
/// will carry; a consumer's carries every byte it fetches. Two connections
/// that were accepted onto the same shard and then both fetch end on
/// different shards: the second moves at its first Fetch, on the same
/// socket, and every connection keeps answering. (Without the move both
/// stay: the counts would be 2 and 0.)
#[test]
fn fetching_connections_spread_over_the_shards() {
    let (broker, admin) = start_with_admin_port();
    broker.create_topic(TOPIC, PARTITIONS);
    let per_shard = |name: &str| -> Vec<f64> {
        let scraped = scrape(admin);
        (0..common::SHARDS)
            .map(|shard| value(&scraped, name, &[("shard", &shard.to_string())]).unwrap_or(0.0))
            .collect()
    };
    // Where each connection went, from the count that grew when it opened.
    let mut placed: Vec<(usize, WireClient)> = Vec::new();
    for _ in 0..FETCH_SPREAD_CONNECTIONS {
        let before = per_shard("sluice_connections");
        let mut client = WireClient::new(&broker);
        let versions: ApiVersionsResponse =
            client.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        assert_eq!(versions.error_code, 0);
        let mut shard = None;
        wait_until("the new connection counted", PUBLISH_TIMEOUT, || {
            let after = per_shard("sluice_connections");
            shard = (0..common::SHARDS).find(|&index| after[index] > before[index]);
            shard.is_some()
        });
        placed.push((shard.unwrap_or_default(), client));
    }
    let crowded = placed[0].0;
    let mut same: Vec<WireClient> = Vec::new();
    let mut others: Vec<WireClient> = Vec::new();
    for (shard, client) in placed {
        if shard == crowded && same.len() < 2 {
            same.push(client);
        } else {
            others.push(client);
        }
    }
    assert_eq!(
        same.len(),
        2,
        "two connections accepted onto shard {crowded}"
    );
    let fetch = fetch_from_start(TOPIC, PARTITIONS, 1 << 20, 1 << 20);
    for client in &mut same {
        let response: FetchResponse = client.call(ApiKey::Fetch, SPREAD_FETCH_VERSION, &fetch);
        assert_eq!(response.error_code, 0);
        assert_eq!(response.responses.len(), 1);
        for partition in &response.responses[0].partitions {
            assert_eq!(
                partition.error_code, 0,
                "partition {}",
                partition.partition_index
            );
        }
    }
    wait_until("one fetching connection per shard", PUBLISH_TIMEOUT, || {
        per_shard("sluice_connections_fetching")
            .iter()
            .all(|count| *count == 1.0)
    });
    // Every connection still answers, the moved one on its new shard, and
    // the connection counts followed it.
    for client in same.iter_mut().chain(others.iter_mut()) {
        let versions: ApiVersionsResponse =
            client.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        assert_eq!(versions.error_code, 0);
    }
    for client in &mut same {
        let response: FetchResponse = client.call(ApiKey::Fetch, SPREAD_FETCH_VERSION, &fetch);
        assert_eq!(response.error_code, 0);
    }
    let counts = per_shard("sluice_connections");
    assert_eq!(
        counts.iter().sum::<f64>(),
        FETCH_SPREAD_CONNECTIONS as f64,
        "{counts:?}"
    );
    drop(same);
    drop(others);
    wait_until("every shard's counts back to 0", PUBLISH_TIMEOUT, || {
        per_shard("sluice_connections")
            .iter()
            .all(|count| *count == 0.0)
            && per_shard("sluice_connections_fetching")
                .iter()
                .all(|count| *count == 0.0)
    });
}

/// Partitions of the response-limit test: several times the disk reads a
/// shard makes at once (32), on each of the two shards.
const LIMIT_PARTITIONS: i32 = 256;
/// Records of 1 KiB per partition: 64 KiB each, 16 MiB in all, far more
/// than the 1 MiB caches hold.
const LIMIT_RECORDS_PER_PARTITION: usize = 64;
const LIMIT_PARTITION_MAX_BYTES: i32 = 64 * 1024;
const LIMIT_RESPONSE_MAX_BYTES: i32 = 128 * 1024;
/// The producer's largest batch (librdkafka's `batch.size`): a quarter of
/// the partition limit, so every read from disk ends at a batch boundary.
const LIMIT_BATCH_BYTES: &str = "16384";
/// What the fetch may read from disk: the first reads of each shard (32
/// partitions of at most 64 KiB and a header read each) and the read-ahead
/// a 1 MiB cache allows, with room to spare; reading every partition is
/// 16 MiB.
const LIMIT_DISK_READ_BYTES_MAX: f64 = 8.0 * 1024.0 * 1024.0;

/// A fetch whose response limit is far below what its partitions hold on
/// disk reads about what it can send, not every partition: the data of the
/// partitions past the limit would be dropped from the answer anyway.
#[test]
fn a_fetch_reads_from_disk_about_what_its_response_carries() {
    let port = free_ports(1)[0];
    let admin = SocketAddr::from(([127, 0, 0, 1], port));
    let mut broker = TestBroker::start_with(&[
        "--admin-listen",
        &admin.to_string(),
        "--cache-bytes-per-shard",
        "1048576",
    ]);
    let topic = "limited";
    broker.create_topic(topic, LIMIT_PARTITIONS);
    let records: Vec<Record> = (0..LIMIT_PARTITIONS as usize * LIMIT_RECORDS_PER_PARTITION)
        .map(|index| {
            let partition = (index % LIMIT_PARTITIONS as usize) as i32;
            Record::with_value(partition, common::indexed_value(index, 1024))
        })
        .collect();
    // Batches of at most 16 KiB, whatever the machine's load: when the
    // producer was slow enough to hold each partition's 64 records for one
    // batch (66 KB, past the partition limit), the first read of 64 KiB
    // came short of the batch and was read again whole, twice the bytes.
    produce_all(
        &broker,
        topic,
        &[("linger.ms", "5"), ("batch.size", LIMIT_BATCH_BYTES)],
        &records,
    );
    // A restart empties the cache, so what the fetch sends is cold on every
    // run: without it, how much of the written data the 1 MiB cache still
    // held depended on how the producer had batched, and on a loaded
    // machine a fetch was once answered from the cache alone.
    broker.restart(Stop::Term);
    let disk_reads =
        |scrape: &Scrape| total(scrape, "sluice_shard_io_bytes_total", &[("op", "read")]);
    // The figures are published every second: wait for two scrapes in a
    // row to agree before and after the fetch.
    let settled = || {
        let mut last = disk_reads(&scrape(admin));
        loop {
            std::thread::sleep(Duration::from_millis(1500));
            let now = disk_reads(&scrape(admin));
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let before = settled();

    let fetch = fetch_from_start(
        topic,
        LIMIT_PARTITIONS,
        LIMIT_RESPONSE_MAX_BYTES,
        LIMIT_PARTITION_MAX_BYTES,
    );
    let mut client = WireClient::new(&broker);
    let response: FetchResponse = client.call(ApiKey::Fetch, SPREAD_FETCH_VERSION, &fetch);
    assert_eq!(response.error_code, 0);
    let partitions = &response.responses[0].partitions;
    assert_eq!(partitions.len(), LIMIT_PARTITIONS as usize);
    let mut sent = 0usize;
    for partition in partitions {
        assert_eq!(partition.error_code, 0, "{}", partition.partition_index);
        // Every partition is answered with its offsets, data or not.
        assert_eq!(
            partition.high_watermark, LIMIT_RECORDS_PER_PARTITION as i64,
            "partition {}",
            partition.partition_index
        );
        sent += partition
            .records
            .as_ref()
            .map_or(0, |records| records.len());
    }
    assert!(sent > 0, "the fetch returned no data");
    assert!(
        sent <= (LIMIT_RESPONSE_MAX_BYTES + LIMIT_PARTITION_MAX_BYTES) as usize,
        "{sent} bytes sent"
    );
    let read = settled() - before;
    eprintln!("{sent} bytes sent, {read} bytes read from disk");
    assert!(
        read > 0.0,
        "nothing was read from disk: the test reads no cold data"
    );
    assert!(
        read <= LIMIT_DISK_READ_BYTES_MAX,
        "{read} bytes read from disk for a response of at most {LIMIT_RESPONSE_MAX_BYTES}"
    );
}

/// The cleaner's figures: a compacted topic written with few keys is
/// cleaned, and the scrape counts the passes, what they removed, their
/// I/O and the shard time they took.
#[test]
fn the_cleaners_work_is_counted() {
    const TOPIC: &str = "cleaned";
    /// Few keys against the records: most records are superseded.
    const KEYS: usize = 20;
    const RECORDS: usize = 3_000;
    /// Small segments, so that the records roll many the cleaner may clean.
    const SEGMENT_BYTES: &str = "16384";
    let (broker, admin_address) = start_with_admin_port_and(&["--log-cleaner-backoff-ms", "100"]);
    common::create_topic(
        &broker.admin(),
        TOPIC,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", SEGMENT_BYTES),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    let records: Vec<Record> = (0..RECORDS)
        .map(|index| Record {
            key: Some(format!("key-{}", index % KEYS).into_bytes()),
            ..Record::with_value(0, vec![b'v'; VALUE_BYTES])
        })
        .collect();
    // Batches well under a segment: the active segment, which is never
    // cleaned, must not hold most of the records.
    produce_all(
        &broker,
        TOPIC,
        &[("linger.ms", "5"), ("batch.size", "4096")],
        &records,
    );
    let produced_bytes = (RECORDS * VALUE_BYTES) as f64;
    let cleaned = || {
        let scrape = scrape(admin_address);
        (total(&scrape, "sluice_cleaner_records_removed_total", &[]) > 0.0).then_some(scrape)
    };
    let deadline = Instant::now() + PUBLISH_TIMEOUT;
    let scrape = loop {
        if let Some(scrape) = cleaned() {
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "no cleaning pass counted in {PUBLISH_TIMEOUT:?}; the broker's log:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let passes = total(&scrape, "sluice_cleaner_passes_total", &[]);
    let removed_records = total(&scrape, "sluice_cleaner_records_removed_total", &[]);
    let removed_bytes = total(&scrape, "sluice_cleaner_bytes_removed_total", &[]);
    let io_bytes = total(&scrape, "sluice_cleaner_io_bytes_total", &[]);
    let busy = total(&scrape, "sluice_cleaner_busy_seconds_total", &[]);
    let shard_busy = total(&scrape, "sluice_shard_busy_seconds_total", &[]);
    eprintln!(
        "passes {passes}, records removed {removed_records}, bytes removed {removed_bytes}, \
         I/O {io_bytes} bytes, cleaner busy {busy} s of the shards' {shard_busy} s"
    );
    assert!(passes >= 1.0, "passes {passes}");
    assert!(
        removed_records <= RECORDS as f64,
        "removed {removed_records} of {RECORDS} records"
    );
    assert!(
        removed_bytes > 0.0 && removed_bytes < produced_bytes * 2.0,
        "bytes removed {removed_bytes} of about {produced_bytes} produced"
    );
    // A pass reads at least what it removes.
    assert!(
        io_bytes >= removed_bytes,
        "I/O {io_bytes} bytes for {removed_bytes} removed"
    );
    assert!(
        busy > 0.0 && busy <= shard_busy,
        "cleaner busy {busy} s, shards busy {shard_busy} s"
    );
    // Every shard reports all five, whether it cleans or not.
    for name in [
        "sluice_cleaner_passes_total",
        "sluice_cleaner_io_bytes_total",
        "sluice_cleaner_bytes_removed_total",
        "sluice_cleaner_records_removed_total",
        "sluice_cleaner_busy_seconds_total",
    ] {
        assert_eq!(
            matching(&scrape, name, &[]).count(),
            matching(&scrape, "sluice_shard_busy_seconds_total", &[]).count(),
            "{name}: one sample per shard"
        );
    }
}
