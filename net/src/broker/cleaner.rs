//! The log cleaner of compacted topics: one task per shard, on the shard's
//! background task queue, compacting the shard's logs whose
//! `cleanup.policy` holds `compact` (the engine's `PartitionLog::compact`).

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sluice_engine::batch::BatchHeader;
use sluice_engine::compaction::{parse_records, record_area, RecordCodec, KEY_MAP_ENTRY_BYTES};
use sluice_engine::constants::BATCH_BYTES_MAX;
use sluice_engine::log::CompactionLimits;

use super::{Broker, Log};
use crate::glommio_client::compression::{self, Compression};

/// The broker's codecs, lent to the cleaner to read and rewrite compressed
/// batches.
pub struct WireCodecs;

fn codec_of(id: i16) -> io::Result<Compression> {
    Compression::from_attribute(id)
        .ok_or_else(|| io::Error::other(format!("unknown compression type {id}")))
}

impl RecordCodec for WireCodecs {
    fn decompress(&self, codec: i16, input: &[u8], limit: usize) -> io::Result<Vec<u8>> {
        compression::decompress(codec_of(codec)?, input, limit)
            .map_err(|error| io::Error::other(error.to_string()))
    }

    fn compress(&self, codec: i16, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = BytesMut::new();
        compression::compress(codec_of(codec)?, input, &mut out)
            .map_err(|error| io::Error::other(error.to_string()))?;
        Ok(out.to_vec())
    }
}

impl Broker {
    /// Cleans this shard's compacted logs, forever: a log at a time, the
    /// next right after one was cleaned, and `log.cleaner.backoff.ms`
    /// between rounds that found nothing to do. A log whose cleaning fails
    /// (a damaged segment, a codec error, a full disk) is left alone until
    /// the broker restarts, with one log line; it keeps serving.
    pub async fn run_cleaner(self: Rc<Self>) {
        let config = self.config.cleaner.clone();
        if !config.enable {
            return;
        }
        let limits = CompactionLimits {
            key_map_entries_max: usize::try_from(config.dedupe_buffer_bytes).unwrap_or(usize::MAX)
                / KEY_MAP_ENTRY_BYTES,
            io_bytes_per_second: config.io_max_bytes_per_second,
            merge_segments: config.merge_segments,
        };
        let backoff = Duration::from_millis(config.backoff_ms.max(1));
        let mut stopped: HashSet<PathBuf> = HashSet::new();
        loop {
            glommio::timer::sleep(backoff).await;
            loop {
                if self.shutting_down.get() {
                    return;
                }
                let logs: Vec<Rc<Log>> = self
                    .logs
                    .borrow()
                    .iter()
                    .map(|(_, _, log)| Rc::clone(log))
                    .filter(|log| log.config().compact && !stopped.contains(log.dir()))
                    .collect();
                let mut cleaned_any = false;
                for log in logs {
                    if self.shutting_down.get() {
                        return;
                    }
                    let now = sluice_engine::types::now_ms();
                    match log.compact(now, &limits, &WireCodecs).await {
                        Ok(Some(report)) => {
                            cleaned_any = true;
                            self.metrics.cleaner_pass(
                                report.io_bytes,
                                report.bytes_before.saturating_sub(report.bytes_after),
                                report.records_removed,
                            );
                            tracing::info!(
                                dir = %log.dir().display(),
                                segments = report.segments_cleaned,
                                rewritten = report.segments_rewritten,
                                merged = report.segments_merged,
                                bytes_before = report.bytes_before,
                                bytes_after = report.bytes_after,
                                records_removed = report.records_removed,
                                "log cleaned"
                            );
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(
                                %error,
                                dir = %log.dir().display(),
                                "cleaning failed; this partition is not cleaned again until a restart"
                            );
                            stopped.insert(log.dir().to_path_buf());
                        }
                    }
                }
                if !cleaned_any {
                    break;
                }
            }
        }
    }
}

/// One cleaning pass over `log` for a test, which must be due.
#[cfg(test)]
pub(crate) async fn clean_now(log: &Log) -> sluice_engine::log::CompactionReport {
    let limits = CompactionLimits {
        key_map_entries_max: 1 << 16,
        io_bytes_per_second: 0,
        merge_segments: true,
    };
    log.compact(sluice_engine::types::now_ms(), &limits, &WireCodecs)
        .await
        .expect("a cleaning pass")
        .expect("the pass was due")
}

/// Record errors a Produce response lists at most; the rest are counted in
/// the partition's error message.
const RECORD_ERRORS_MAX: usize = 100;

/// Checks that every record of a batch produced to a compacted topic has a
/// key, as Kafka does. On failure: the partition's error message and the
/// index and message of each record without a key.
pub(crate) fn check_keys(
    topic: &str,
    partition: i32,
    batches: &[(BatchHeader, Bytes)],
) -> Result<(), (String, Vec<(i32, String)>)> {
    let without_key = format!(
        "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
    );
    let mut errors = Vec::new();
    let mut keyless = 0usize;
    for (header, bytes) in batches {
        let area = record_area(bytes, header, &WireCodecs, BATCH_BYTES_MAX).map_err(|error| {
            (
                format!("records of {topic}-{partition} do not read: {error}"),
                Vec::new(),
            )
        })?;
        let records = parse_records(&area, header.record_count).map_err(|error| {
            (
                format!("records of {topic}-{partition} do not read: {error}"),
                Vec::new(),
            )
        })?;
        for (index, record) in records.iter().enumerate() {
            if record.key.is_none() {
                keyless += 1;
                if errors.len() < RECORD_ERRORS_MAX {
                    errors.push((
                        i32::try_from(index).unwrap_or(i32::MAX),
                        without_key.clone(),
                    ));
                }
            }
        }
    }
    if keyless == 0 {
        return Ok(());
    }
    Err((
        format!("{without_key} ({keyless} records without a key)"),
        errors,
    ))
}
