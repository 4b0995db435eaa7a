//! The child process of the kill -9 crash test (`engine/tests/crash_kill9.rs`).
//!
//! Usage: `log-crash-child <partition dir> <cycle>`
//!
//! Opens a real `PartitionLog<DmaStorage>` in the directory (recovering
//! whatever an earlier child left when it was killed) and runs several
//! writer tasks against it until killed. Each writer appends batches whose
//! record values say who wrote them and carry their own checksum, waits for
//! each to be durable, and only then prints it on stdout:
//!
//! `ack <base offset> <last offset> <cycle> <writer> <sequence> <batch crc>`
//!
//! A record value is, big-endian:
//!
//! ```text
//!   0  4  magic "SLCT"
//!   4  4  cycle
//!   8  2  writer
//!  10  8  sequence (per writer, from 0)
//!  18  2  index of the record in its batch
//!  20  4  payload length n
//!  24  n  payload
//! 24+n 4  CRC-32C of bytes 0..24+n
//! ```
//!
//! The crash test checks after every kill that each acknowledged batch is in
//! the log with that content, and that every record in the log is whole.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use sluice_engine::batch;
use sluice_engine::{BatchCache, DmaStorage, LogConfig, PartitionLog};

/// Concurrent writers on the one partition: their appends share group
/// commits and interleave in the log.
const WRITERS: u16 = 4;
/// Small segments, so kills land during rolls and seals too.
const SEGMENT_BYTES: u64 = 256 * 1024;
/// Bytes between recovery points in the child (tiny, to exercise them).
const RECOVERY_POINT_INTERVAL_BYTES: u64 = 16 * 1024;
const CACHE_BYTES: usize = 8 * 1024 * 1024;
const RECORDS_PER_BATCH_MAX: u64 = 8;
const PAYLOAD_BYTES_MAX: u64 = 2048;
/// Pause before retrying an append the log refused (disk trouble).
const APPEND_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(10);
/// "SLCT": marks a record value written by this program.
const VALUE_MAGIC: u32 = 0x534c_4354;
/// Bytes of a value around its payload.
const VALUE_OVERHEAD_BYTES: usize = 28;

/// xorshift64*: deterministic payloads and sizes per writer.
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

fn encode_value(cycle: u32, writer: u16, sequence: u64, index: u16, payload: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(VALUE_OVERHEAD_BYTES + payload.len());
    value.extend_from_slice(&VALUE_MAGIC.to_be_bytes());
    value.extend_from_slice(&cycle.to_be_bytes());
    value.extend_from_slice(&writer.to_be_bytes());
    value.extend_from_slice(&sequence.to_be_bytes());
    value.extend_from_slice(&index.to_be_bytes());
    value.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    value.extend_from_slice(payload);
    let crc = crc32c::crc32c(&value);
    value.extend_from_slice(&crc.to_be_bytes());
    value
}

async fn write_forever(log: Rc<PartitionLog<DmaStorage>>, cycle: u32, writer: u16) {
    let mut rng =
        Rng((u64::from(cycle) << 16 | u64::from(writer)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    for sequence in 0u64.. {
        let records = 1 + rng.next() % RECORDS_PER_BATCH_MAX;
        let values: Vec<Vec<u8>> = (0..records)
            .map(|index| {
                let length = (rng.next() % PAYLOAD_BYTES_MAX) as usize;
                let payload: Vec<u8> = (0..length).map(|_| rng.next() as u8).collect();
                encode_value(cycle, writer, sequence, index as u16, &payload)
            })
            .collect();
        let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let built = Bytes::from(batch::build_batch(sluice_engine::types::now_ms(), &slices));
        let batches = match batch::split_and_validate(&built, usize::MAX) {
            Ok(batches) => batches,
            Err(error) => panic!("a built batch failed validation: {error}"),
        };
        let crc = batches[0].0.crc;
        let appended = loop {
            log.wait_for_room().await;
            match log.append(&batches) {
                Ok(appended) => break appended,
                Err(error) => {
                    eprintln!("log-crash-child: append refused, retrying: {error}");
                    glommio::timer::sleep(APPEND_RETRY_DELAY).await;
                }
            }
        };
        if let Err(error) = log.wait_durable(appended.last_offset.0 + 1).await {
            // Not acknowledged: the test must not count on it.
            eprintln!("log-crash-child: wait_durable failed: {error}");
            continue;
        }
        let mut stdout = std::io::stdout().lock();
        let line = format!(
            "ack {} {} {cycle} {writer} {sequence} {crc}\n",
            appended.base_offset, appended.last_offset
        );
        // One write per line, flushed at once: a kill leaves at most one
        // partial line, which the test ignores.
        if stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return;
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(cycle)) = (
        args.get(1),
        args.get(2).and_then(|cycle| cycle.parse().ok()),
    ) else {
        eprintln!("usage: log-crash-child <partition dir> <cycle>");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    let executor = LocalExecutorBuilder::new(Placement::Unbound).name("log-crash-child");
    let handle = executor.spawn(move || async move {
        let config = LogConfig {
            segment_bytes: SEGMENT_BYTES,
            // Frequent recovery points: kills land before, during and after
            // their writes, and recovery resumes from them.
            recovery_point_interval_bytes: RECOVERY_POINT_INTERVAL_BYTES,
            ..LogConfig::default()
        };
        let log =
            match PartitionLog::open(DmaStorage, dir, config, BatchCache::new(CACHE_BYTES)).await {
                Ok(log) => log,
                Err(error) => {
                    eprintln!("log-crash-child: {error}");
                    return ExitCode::FAILURE;
                }
            };
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| glommio::spawn_local(write_forever(Rc::clone(&log), cycle, writer)))
            .collect();
        for writer in writers {
            writer.await;
        }
        ExitCode::SUCCESS
    });
    match handle.map(|handle| handle.join()) {
        Ok(Ok(code)) => code,
        Ok(Err(error)) => {
            eprintln!("log-crash-child: the executor failed: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("log-crash-child: cannot start an executor: {error}");
            ExitCode::FAILURE
        }
    }
}
