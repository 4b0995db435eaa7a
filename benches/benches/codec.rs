//! Wire-codec micro-benchmarks: Produce request decoding (Sluice's
//! bounds-checked decoder against kafka-protocol's, the baseline) and Fetch
//! response encoding (scatter-gather slices against kafka-protocol's copying
//! encoder, the baseline).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceRequest, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_engine::batch::build_batch;
use sluice_net::codec::decode_request;
use sluice_net::handlers::fetch::encode_single_partition;

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;

fn produce_request(partitions: i32, batch_bytes: usize) -> Bytes {
    let record = vec![3u8; 1024];
    let values: Vec<&[u8]> = (0..(batch_bytes / 1032).max(1))
        .map(|_| record.as_slice())
        .collect();
    let batch = Bytes::from(build_batch(1, &values));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("bench"));
    topic.partition_data = (0..partitions)
        .map(|index| {
            let mut partition = PartitionProduceData::default();
            partition.index = index;
            partition.records = Some(batch.clone());
            partition
        })
        .collect();
    let mut request = ProduceRequest::default();
    request.acks = 1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic];
    let mut out = BytesMut::new();
    request.encode(&mut out, PRODUCE_VERSION).expect("encodes");
    out.freeze()
}

fn produce_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("produce_request_decode");
    for partitions in [1, 100] {
        let body = produce_request(partitions, 16 * 1024);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("sluice_checked", partitions),
            &body,
            |b, body| {
                b.iter(|| {
                    decode_request(
                        ApiKey::Produce as i16,
                        PRODUCE_VERSION,
                        black_box(body.clone()),
                    )
                    .expect("decodes")
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("kafka_protocol_baseline", partitions),
            &body,
            |b, body| {
                b.iter(|| {
                    ProduceRequest::decode(&mut black_box(body.clone()), PRODUCE_VERSION)
                        .expect("decodes")
                })
            },
        );
    }
    group.finish();
}

fn fetch_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("fetch_response_encode");
    for total in [64 * 1024, 1024 * 1024] {
        // Records as the log returns them: one slice per 16 KiB batch.
        let chunks: Vec<Bytes> = (0..total / (16 * 1024))
            .map(|_| Bytes::from(vec![9u8; 16 * 1024]))
            .collect();
        let joined: Bytes = chunks
            .iter()
            .flat_map(|chunk| chunk.iter().copied())
            .collect::<Vec<u8>>()
            .into();
        group.throughput(Throughput::Bytes(total as u64));
        group.bench_with_input(
            BenchmarkId::new("scatter_gather", total),
            &chunks,
            |b, chunks| {
                b.iter(|| {
                    encode_single_partition(FETCH_VERSION, "bench", black_box(chunks.clone()))
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("copying_baseline", total),
            &joined,
            |b, joined| {
                b.iter(|| {
                    let mut partition = PartitionData::default();
                    partition.records = Some(joined.clone());
                    let mut topic = FetchableTopicResponse::default();
                    topic.topic = TopicName(StrBytes::from_static_str("bench"));
                    topic.partitions = vec![partition];
                    let mut response = FetchResponse::default();
                    response.responses = vec![topic];
                    let mut out = BytesMut::new();
                    response.encode(&mut out, FETCH_VERSION).expect("encodes");
                    black_box(out.freeze())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, produce_decode, fetch_encode);
criterion_main!(benches);
