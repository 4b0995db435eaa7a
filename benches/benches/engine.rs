//! Engine micro-benchmarks: batch validation (CRC-32C), index lookup, the
//! cleaner's key map, and the cross-shard hand-off. Baselines in the same
//! run: a plain memcpy of the same bytes (for validation), one 64-bit
//! SipHash of each key (for the key map) and a same-shard call (for the
//! mesh).

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_engine::batch::{build_batch, validate};
use sluice_engine::compaction::KeyMap;
use sluice_engine::index::{OffsetEntry, SegmentIndex, TimeEntry};
use sluice_engine::shard::{mesh_plan, run_shards, ShardPlan};
use sluice_engine::{Mesh, ShardId};

fn batch_of(bytes: usize) -> Vec<u8> {
    let record = vec![7u8; 1024];
    let count = (bytes / 1032).max(1);
    let values: Vec<&[u8]> = (0..count).map(|_| record.as_slice()).collect();
    build_batch(1, &values)
}

fn validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_validation");
    for size in [16 * 1024, 1024 * 1024] {
        let batch = batch_of(size);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("validate_crc32c", batch.len()),
            &batch,
            |b, batch| b.iter(|| validate(black_box(batch), usize::MAX).expect("valid")),
        );
        group.bench_with_input(
            BenchmarkId::new("memcpy_baseline", batch.len()),
            &batch,
            |b, batch| {
                let mut target = vec![0u8; batch.len()];
                b.iter(|| target.copy_from_slice(black_box(batch)))
            },
        );
    }
    group.finish();
}

fn index_lookup(c: &mut Criterion) {
    // A full 1 GiB segment at Kafka's default index interval: 262,144 entries,
    // and a time entry beside each (timestamps rising, as appends make them).
    let entries = (1u64 << 30) / 4096;
    let index = SegmentIndex {
        offsets: (0..entries as u32)
            .map(|i| OffsetEntry {
                relative_offset: i * 4,
                position: i * 4096,
            })
            .collect(),
        times: (0..entries as u32)
            .map(|i| TimeEntry {
                timestamp: i64::from(i),
                relative_offset: i * 4,
            })
            .collect(),
    };
    let mut probe = 0u32;
    let mut next_probe = move || {
        probe = probe.wrapping_mul(1_103_515_245).wrapping_add(12_345) % (entries as u32 * 4);
        probe
    };
    c.bench_function("index_lookup_1GiB_segment", |b| {
        b.iter(|| black_box(index.position_for(black_box(next_probe()))))
    });
    // What a read from an index entry cost while the log handed out a copy
    // of the segment's index for each (before `PartitionLog::read_start`).
    c.bench_function("index_copy_and_lookup_1GiB_segment", |b| {
        b.iter(|| {
            let copy = black_box(&index).clone();
            black_box(copy.position_for(black_box(next_probe())))
        })
    });
}

/// Round trip of one request to another shard and back, against the same
/// request served on the caller's shard. Timed inside the executors; criterion
/// gets the per-iteration time through `iter_custom`.
fn cross_shard(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_shard_handoff");
    group.sample_size(10);
    for remote in [false, true] {
        let name = if remote {
            "mesh_round_trip"
        } else {
            "local_call_baseline"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let plan = mesh_plan::<Bytes, usize>(2);
                let elapsed = std::sync::Arc::new(std::sync::Mutex::new(Duration::ZERO));
                let recorded = std::sync::Arc::clone(&elapsed);
                let shard_plan = ShardPlan {
                    shards: 2,
                    pin: false,
                    spin_before_park: Some(Duration::from_micros(50)),
                };
                run_shards(&shard_plan, move |shard| {
                    let plan = plan.clone();
                    let recorded = std::sync::Arc::clone(&recorded);
                    async move {
                        let mesh = Mesh::join(plan).await.expect("join");
                        mesh.set_handler(Rc::new(|bytes: Bytes| {
                            Box::pin(async move { bytes.len() })
                        }));
                        if shard.0 == 0 {
                            let target = if remote { ShardId(1) } else { ShardId(0) };
                            let payload = Bytes::from_static(&[0u8; 64]);
                            let start = Instant::now();
                            for _ in 0..iterations {
                                black_box(mesh.call(target, payload.clone()).await);
                            }
                            *recorded.lock().expect("lock") = start.elapsed();
                            // Tell shard 1 it may stop.
                            let _ = mesh.call(ShardId(1), Bytes::new()).await;
                        } else {
                            // Serve until shard 0 sends the empty stop message.
                            let stop = Rc::new(std::cell::Cell::new(false));
                            let seen = Rc::clone(&stop);
                            mesh.set_handler(Rc::new(move |bytes: Bytes| {
                                if bytes.is_empty() {
                                    seen.set(true);
                                }
                                Box::pin(async move { bytes.len() })
                            }));
                            while !stop.get() {
                                glommio::timer::sleep(Duration::from_millis(1)).await;
                            }
                            glommio::timer::sleep(Duration::from_millis(5)).await;
                        }
                    }
                })
                .expect("shards run");
                let total = *elapsed.lock().expect("lock");
                total
            })
        });
    }
    group.finish();
}

/// Keys the key-map benchmark records and looks up: as many as the
/// compacted fixed-rate workload (`perf/workloads/compacted-keyed-fixed-rate.toml`)
/// writes, each 16 bytes (its keys are 12: `key-00001234`).
const KEY_MAP_BENCH_KEYS: u64 = 10_000;

fn key_map(c: &mut Criterion) {
    let keys: Vec<[u8; 16]> = (0..KEY_MAP_BENCH_KEYS)
        .map(|i| {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
            key[8..].copy_from_slice(&i.to_be_bytes());
            key
        })
        .collect();
    let mut group = c.benchmark_group("cleaner_key_map");
    group.throughput(Throughput::Elements(KEY_MAP_BENCH_KEYS));
    // One pass's work per key: recorded while the dirty part is read, then
    // looked up while each segment is copied.
    group.bench_function("insert_then_latest", |b| {
        b.iter(|| {
            let mut map = KeyMap::new(KEY_MAP_BENCH_KEYS as usize);
            for (offset, key) in keys.iter().enumerate() {
                map.insert(key, offset as i64);
            }
            let mut kept = 0usize;
            for (offset, key) in keys.iter().enumerate() {
                kept += usize::from(map.latest(key) == Some(offset as i64));
            }
            black_box(kept)
        })
    });
    group.bench_function("siphash_baseline", |b| {
        use std::hash::BuildHasher;
        let state = std::hash::RandomState::new();
        b.iter(|| {
            let mut folded = 0u64;
            for key in &keys {
                folded ^= state.hash_one(black_box(key));
            }
            black_box(folded)
        })
    });
    group.finish();
}

criterion_group!(benches, validation, index_lookup, key_map, cross_shard);
criterion_main!(benches);
