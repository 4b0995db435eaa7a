//! `sluice-engine-bench`: engine-level throughput, durability, recovery and
//! memory measurements, each next to the machine's own limit measured in the
//! same run (raw O_DIRECT writes through the same glommio DMA path, raw
//! fdatasync). Runs alternate between the engine and the baseline so that a
//! noisy neighbour hits both alike; medians are reported.
//!
//! ```text
//! sluice-engine-bench append  --dir D [--partitions 1] [--batch-bytes 65536] [--mib 1024] [--runs 3]
//! sluice-engine-bench durable --dir D [--writers 8] [--batch-bytes 1024] [--seconds 5]
//! sluice-engine-bench fill    --dir D --mib N      (writes N MiB, then dies like kill -9)
//! sluice-engine-bench recover --dir D              (times opening the log)
//! sluice-engine-bench idle-memory --dir D [--partitions 10000]
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::io::{DmaFile, OpenOptions};
use sluice_benches::{median, percentiles};
use sluice_engine::batch::{self, build_batch};
use sluice_engine::{BatchCache, DmaStorage, LogConfig, PartitionLog};

/// Cache budget for the benchmark's shard: small, so memory stays bounded
/// and appended data is evicted once on disk.
const CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Direct writes kept in flight by the raw baseline.
const BASELINE_IN_FLIGHT: usize = 8;
/// The raw baseline writes at least this much per request: the disk's best
/// sequential bandwidth, not its bandwidth at small blocks (the engine
/// coalesces small batches into large writes, so small-block raw writes
/// would flatter it).
const BASELINE_BLOCK_BYTES_MIN: usize = 1024 * 1024;
/// How often `fill` waits for durability.
const FILL_SYNC_EVERY_BYTES: u64 = 16 * 1024 * 1024;
/// Record value size inside benchmark batches.
const RECORD_BYTES: usize = 1024;

fn arg<T: std::str::FromStr>(args: &HashMap<String, String>, name: &str, default: T) -> T {
    args.get(name)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn parse_args(raw: &[String]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let mut iter = raw.iter();
    while let Some(flag) = iter.next() {
        if let Some(name) = flag.strip_prefix("--") {
            let value = iter.next().cloned().unwrap_or_default();
            map.insert(name.to_string(), value);
        }
    }
    map
}

/// A valid batch of about `bytes` bytes made of 1 KiB records.
fn make_batch(bytes: usize) -> (batch::BatchHeader, Bytes) {
    let record = vec![0x5au8; RECORD_BYTES.min(bytes)];
    let count = (bytes / (RECORD_BYTES + 8)).max(1);
    let values: Vec<&[u8]> = (0..count).map(|_| record.as_slice()).collect();
    let raw = Bytes::from(build_batch(1_700_000_000_000, &values));
    let mut batches =
        batch::split_and_validate(&raw, usize::MAX).expect("benchmark batch is valid");
    batches.remove(0)
}

/// Segment size for a run: large enough that each partition's share fits in
/// one or two segments, small enough that preallocating every partition's
/// segment does not reserve more disk than the run writes.
fn segment_bytes_for(partitions: usize, total: u64) -> u64 {
    let share = total / partitions.max(1) as u64;
    (share * 2).next_power_of_two().clamp(16 << 20, 1 << 30)
}

fn run_local<F, T>(future: impl FnOnce() -> F + Send + 'static) -> T
where
    F: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .spawn(future)
        .expect("executor starts")
        .join()
        .expect("executor runs")
}

fn fresh_dir(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("benchmark directory");
    dir
}

/// Appends `total` bytes in `batch_bytes` batches round-robin over
/// `partitions` logs, then waits until all of it is durable. MB/s.
async fn engine_append(dir: PathBuf, partitions: usize, batch_bytes: usize, total: u64) -> f64 {
    let cache = BatchCache::new(CACHE_BYTES);
    let config = LogConfig {
        segment_bytes: segment_bytes_for(partitions, total),
        max_message_bytes: (2 * batch_bytes).max(1 << 20) as u32,
        ..LogConfig::default()
    };
    let mut logs = Vec::with_capacity(partitions);
    for partition in 0..partitions {
        let log = PartitionLog::open(
            DmaStorage,
            dir.join(format!("bench-{partition}")),
            config.clone(),
            Rc::clone(&cache),
        )
        .await
        .expect("log opens");
        logs.push(log);
    }
    let (header, bytes) = make_batch(batch_bytes);
    let raw: Bytes = {
        let mut whole = bytes.to_vec();
        whole.truncate(bytes.len());
        Bytes::from(whole)
    };
    let start = Instant::now();
    let mut written = 0u64;
    let mut next = 0usize;
    while written < total {
        let log = &logs[next % partitions];
        next += 1;
        if log.is_backlogged() {
            log.wait_for_room().await;
        }
        // Validation is part of the produce path: include it.
        let batches = batch::split_and_validate(&raw, usize::MAX).expect("valid");
        log.append(&batches).expect("append");
        written += raw.len() as u64;
    }
    let _ = header;
    for log in &logs {
        let end = log.offsets().leo;
        log.wait_durable(end).await.expect("durable");
    }
    let elapsed = start.elapsed().as_secs_f64();
    for log in &logs {
        log.close().await.expect("close");
    }
    // The rate counts only bytes that really are in the segment files.
    let on_disk: u64 = (0..partitions)
        .flat_map(|partition| {
            std::fs::read_dir(dir.join(format!("bench-{partition}"))).expect("dir")
        })
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
        .map(|entry| entry.metadata().map(|meta| meta.len()).unwrap_or(0))
        .sum();
    assert_eq!(on_disk, written, "segment files hold every appended byte");
    written as f64 / elapsed / 1e6
}

/// The disk's own O_DIRECT sequential write bandwidth through the same
/// glommio DMA path: `block` bytes per write, a few in flight, one file per
/// "partition", then fdatasync. MB/s.
async fn raw_append(dir: PathBuf, partitions: usize, block: usize, total: u64) -> f64 {
    let block = block.div_ceil(4096) * 4096;
    let mut files = Vec::with_capacity(partitions);
    for partition in 0..partitions {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(dir.join(format!("raw-{partition}")))
            .await
            .expect("raw file");
        let _ = file
            .pre_allocate(segment_bytes_for(partitions, total), true)
            .await;
        files.push(Rc::new(file));
    }
    let positions: Vec<Cell<u64>> = (0..partitions).map(|_| Cell::new(0)).collect();
    let start = Instant::now();
    let mut written = 0u64;
    let mut in_flight: Vec<glommio::task::JoinHandle<()>> = Vec::new();
    let mut next = 0usize;
    while written < total {
        let index = next % partitions;
        next += 1;
        let file: Rc<DmaFile> = Rc::clone(&files[index]);
        let position = positions[index].get();
        positions[index].set(position + block as u64);
        let mut buffer = file.alloc_dma_buffer(block);
        buffer.as_bytes_mut().fill(0x5a);
        in_flight.push(
            glommio::spawn_local(async move {
                file.write_at(buffer, position).await.expect("raw write");
            })
            .detach(),
        );
        if in_flight.len() >= BASELINE_IN_FLIGHT * partitions.min(64) {
            let first = in_flight.remove(0);
            first.await;
        }
        written += block as u64;
    }
    for task in in_flight {
        task.await;
    }
    for file in &files {
        file.fdatasync().await.expect("sync");
    }
    let elapsed = start.elapsed().as_secs_f64();
    for file in files {
        if let Ok(file) = Rc::try_unwrap(file) {
            let _ = file.close().await;
        }
    }
    written as f64 / elapsed / 1e6
}

fn append_command(args: &HashMap<String, String>) {
    let base = PathBuf::from(arg(args, "dir", "bench-data".to_string()));
    let partitions: usize = arg(args, "partitions", 1);
    let batch_bytes: usize = arg(args, "batch-bytes", 65536);
    let mib: u64 = arg(args, "mib", 1024);
    let runs: usize = arg(args, "runs", 3);
    let total = mib << 20;
    let mut engine = Vec::new();
    let mut raw = Vec::new();
    for run in 0..runs {
        let dir = fresh_dir(&base, "raw");
        let block = batch_bytes.max(BASELINE_BLOCK_BYTES_MIN);
        let rate = run_local(move || raw_append(dir, partitions, block, total));
        raw.push(rate);
        let dir = fresh_dir(&base, "engine");
        let rate = run_local(move || engine_append(dir, partitions, batch_bytes, total));
        engine.push(rate);
        eprintln!(
            "run {run}: engine {:.0} MB/s, raw O_DIRECT {:.0} MB/s",
            engine[run], raw[run]
        );
    }
    let _ = std::fs::remove_dir_all(&base);
    let engine_median = median(&mut engine);
    let raw_median = median(&mut raw);
    println!(
        "append partitions={partitions} batch_bytes={batch_bytes} total_mib={mib} runs={runs}: \
         engine median {engine_median:.0} MB/s, disk O_DIRECT (>= 1 MiB writes, 8 in flight) median {raw_median:.0} MB/s, ratio {:.2}",
        engine_median / raw_median
    );
}

fn durable_command(args: &HashMap<String, String>) {
    let base = PathBuf::from(arg(args, "dir", "bench-data".to_string()));
    let writers: usize = arg(args, "writers", 8);
    let batch_bytes: usize = arg(args, "batch-bytes", 1024);
    let seconds: u64 = arg(args, "seconds", 5);
    let duration = Duration::from_secs(seconds);
    let dir = fresh_dir(&base, "sync");
    let (syncs_per_second, sync_latency) = run_local(move || async move {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(dir.join("sync"))
            .await
            .expect("file");
        let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
        let start = Instant::now();
        let mut count = 0u64;
        while start.elapsed() < duration {
            let mut buffer = file.alloc_dma_buffer(4096);
            buffer.as_bytes_mut().fill(1);
            let began = Instant::now();
            file.write_at(buffer, count * 4096).await.expect("write");
            file.fdatasync().await.expect("sync");
            let _ = histogram.record(began.elapsed().as_micros() as u64);
            count += 1;
        }
        let _ = file.close().await;
        (
            count as f64 / start.elapsed().as_secs_f64(),
            percentiles(&histogram),
        )
    });
    let dir = fresh_dir(&base, "durable");
    let (appends_per_second, latency) = run_local(move || async move {
        let cache = BatchCache::new(CACHE_BYTES);
        let log = PartitionLog::open(
            DmaStorage,
            dir.join("durable-0"),
            LogConfig::default(),
            cache,
        )
        .await
        .expect("log");
        let (_, bytes) = make_batch(batch_bytes);
        let histogram = Rc::new(std::cell::RefCell::new(
            hdrhistogram::Histogram::<u64>::new(3).expect("histogram"),
        ));
        let count = Rc::new(Cell::new(0u64));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..writers {
            let log = Rc::clone(&log);
            let bytes = bytes.clone();
            let histogram = Rc::clone(&histogram);
            let count = Rc::clone(&count);
            tasks.push(
                glommio::spawn_local(async move {
                    while start.elapsed() < duration {
                        let batches = batch::split_and_validate(&bytes, usize::MAX).expect("valid");
                        let began = Instant::now();
                        let appended = log.append(&batches).expect("append");
                        log.wait_durable(appended.last_offset.0 + 1)
                            .await
                            .expect("durable");
                        let _ = histogram
                            .borrow_mut()
                            .record(began.elapsed().as_micros() as u64);
                        count.set(count.get() + 1);
                    }
                })
                .detach(),
            );
        }
        for task in tasks {
            task.await;
        }
        let rate = count.get() as f64 / start.elapsed().as_secs_f64();
        log.close().await.expect("close");
        let summary = percentiles(&histogram.borrow());
        (rate, summary)
    });
    let _ = std::fs::remove_dir_all(&base);
    println!(
        "durable writers={writers} batch_bytes={batch_bytes}: {appends_per_second:.0} durable appends/s \
         (latency µs {latency}); raw 4 KiB write+fdatasync {syncs_per_second:.0}/s (latency µs {sync_latency})"
    );
}

fn fill_command(args: &HashMap<String, String>) {
    let base = PathBuf::from(arg(args, "dir", "bench-data".to_string()));
    let mib: u64 = arg(args, "mib", 1024);
    std::fs::create_dir_all(&base).expect("dir");
    run_local(move || async move {
        let cache = BatchCache::new(CACHE_BYTES);
        let log = PartitionLog::open(DmaStorage, base.join("fill-0"), LogConfig::default(), cache)
            .await
            .expect("log");
        // 512 KiB batches stay under the default max.message.bytes.
        let (_, bytes) = make_batch(512 << 10);
        let mut written = 0u64;
        while written < mib << 20 {
            if log.is_backlogged() {
                log.wait_for_room().await;
            }
            let batches = batch::split_and_validate(&bytes, usize::MAX).expect("valid");
            let appended = log.append(&batches).expect("append");
            written += bytes.len() as u64;
            if written % FILL_SYNC_EVERY_BYTES < bytes.len() as u64 {
                // A durable producer now and then, as a broker under
                // acks=all load would see: recovery points follow the syncs.
                log.wait_durable(appended.last_offset.0 + 1)
                    .await
                    .expect("durable");
            }
        }
        let end = log.offsets().leo;
        log.wait_durable(end).await.expect("durable");
        // The broker would keep running: give the recovery point after the
        // last sync the moment it takes to land.
        glommio::timer::sleep(Duration::from_millis(200)).await;
        println!("filled {written} bytes, log end offset {end}; dying without a clean close");
        // Ends the process the way kill -9 would: no close, no truncation.
        std::process::abort();
    })
}

fn recover_command(args: &HashMap<String, String>) {
    let base = PathBuf::from(arg(args, "dir", "bench-data".to_string()));
    let (elapsed, leo, segments) = run_local(move || async move {
        let cache = BatchCache::new(CACHE_BYTES);
        let start = Instant::now();
        let log = PartitionLog::open(DmaStorage, base.join("fill-0"), LogConfig::default(), cache)
            .await
            .expect("log");
        let elapsed = start.elapsed();
        (elapsed, log.offsets().leo, log.segment_count())
    });
    println!(
        "recover: opened log with {segments} segments, log end offset {leo}, in {:.3} s",
        elapsed.as_secs_f64()
    );
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn idle_memory_command(args: &HashMap<String, String>) {
    let base = PathBuf::from(arg(args, "dir", "bench-data".to_string()));
    let partitions: usize = arg(args, "partitions", 10_000);
    let dir = fresh_dir(&base, "idle");
    let (before, after) = run_local(move || async move {
        let cache = BatchCache::new(CACHE_BYTES);
        let config = LogConfig {
            preallocate: false,
            ..LogConfig::default()
        };
        let before = resident_bytes();
        let mut logs = Vec::with_capacity(partitions);
        for partition in 0..partitions {
            let log = PartitionLog::open(
                DmaStorage,
                dir.join(format!("idle-{partition}")),
                config.clone(),
                Rc::clone(&cache),
            )
            .await
            .expect("log");
            logs.push(log);
        }
        let after = resident_bytes();
        for log in &logs {
            let _ = log.close().await;
        }
        (before, after)
    });
    let _ = std::fs::remove_dir_all(&base);
    println!(
        "idle-memory: {partitions} open empty partitions add {:.1} MiB resident, {:.0} bytes per partition",
        (after.saturating_sub(before)) as f64 / (1 << 20) as f64,
        after.saturating_sub(before) as f64 / partitions as f64
    );
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = raw.first() else {
        eprintln!("usage: sluice-engine-bench append|durable|fill|recover|idle-memory [--dir D] [options]");
        std::process::exit(2);
    };
    let args = parse_args(&raw[1..]);
    match command.as_str() {
        "append" => append_command(&args),
        "durable" => durable_command(&args),
        "fill" => fill_command(&args),
        "recover" => recover_command(&args),
        "idle-memory" => idle_memory_command(&args),
        other => {
            eprintln!("unknown command '{other}'");
            std::process::exit(2);
        }
    }
}
