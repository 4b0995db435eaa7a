//! Reading records (`sluice consume`): Fetch, sent to each partition's
//! leader, and a walk over the fetched record batches.
//!
//! Design notes:
//! - No fetch session (session id 0, epoch -1): every request names its
//!   partitions and offsets, which is all a one-shot reader needs.
//! - Isolation level read_uncommitted: records of open and aborted
//!   transactions are returned too; transaction markers (control batches)
//!   are skipped by [`for_each_record`].
//! - Batches are read with the glommio client's reader, which checks each
//!   batch's CRC and bounds decompression, and whose records are slices of
//!   the response: nothing is copied per record.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::batch::{self, attributes, BatchHeader, LOG_OVERHEAD};

use super::admin::{Admin, TopicMetadata};
use super::error::{ClientError, KafkaError};
use crate::glommio_client::records::{complete_batches, BatchIter, Record};

/// Fetch's `replica_id` of an ordinary consumer.
const CONSUMER_REPLICA_ID: i32 = -1;
/// The session epoch that asks for no fetch session.
const NO_SESSION_EPOCH: i32 = -1;
/// Kafka's isolation level ids.
const READ_UNCOMMITTED: i8 = 0;
/// A fetch offset is not checked against a leader epoch.
const NO_LEADER_EPOCH: i32 = -1;

/// How much one Fetch may wait for and carry.
#[derive(Clone, Copy, Debug)]
pub struct FetchLimits {
    /// How long the broker may wait for the first byte of records.
    pub max_wait_ms: i32,
    pub partition_bytes_max: i32,
    pub response_bytes_max: i32,
}

/// What a leader returned for one partition.
#[derive(Clone, Debug)]
pub struct PartitionRecords {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Record batches; the last may be cut short, as Kafka allows.
    pub records: Bytes,
}

/// One partition's answer, or the broker's error for it.
#[derive(Clone, Debug)]
pub struct FetchedPartition {
    pub partition: i32,
    pub result: Result<PartitionRecords, KafkaError>,
}

impl Admin {
    /// Fetches `topic`'s records from each `(partition, offset)`, asking
    /// each partition's leader in turn. A partition without a leader, or
    /// one the broker refuses, carries its error; the answers come back in
    /// the order asked.
    pub fn fetch(
        &mut self,
        topic: &TopicMetadata,
        positions: &[(i32, i64)],
        limits: FetchLimits,
    ) -> Result<Vec<FetchedPartition>, ClientError> {
        let mut answers: Vec<FetchedPartition> = Vec::with_capacity(positions.len());
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        for &(partition, offset) in positions {
            match topic.leader_of(partition) {
                Ok(leader) => by_leader
                    .entry(leader)
                    .or_default()
                    .push((partition, offset)),
                Err(error) => answers.push(FetchedPartition {
                    partition,
                    result: Err(error),
                }),
            }
        }
        for (leader, asked) in by_leader {
            let connection = self.connection_to(leader)?;
            let version = connection.version(ApiKey::Fetch)?;
            let mut fetched = FetchTopic::default();
            fetched.topic = TopicName(StrBytes::from_string(topic.name.clone()));
            fetched.partitions = asked
                .iter()
                .map(|&(partition, offset)| {
                    let mut entry = FetchPartition::default();
                    entry.partition = partition;
                    entry.current_leader_epoch = NO_LEADER_EPOCH;
                    entry.fetch_offset = offset;
                    entry.log_start_offset = -1;
                    entry.partition_max_bytes = limits.partition_bytes_max;
                    entry
                })
                .collect();
            let mut request = FetchRequest::default();
            request.replica_id = BrokerId(CONSUMER_REPLICA_ID);
            request.max_wait_ms = limits.max_wait_ms;
            request.min_bytes = 1;
            request.max_bytes = limits.response_bytes_max;
            request.isolation_level = READ_UNCOMMITTED;
            request.session_id = 0;
            request.session_epoch = NO_SESSION_EPOCH;
            request.topics = vec![fetched];
            let response = connection.send(&request, version)?;
            KafkaError::check(response.error_code, None)?;
            let address = connection.address().to_string();
            let mut answered: Vec<_> = response
                .responses
                .into_iter()
                .filter(|answer| answer.topic.0.as_str() == topic.name)
                .flat_map(|answer| answer.partitions)
                .collect();
            for (partition, _) in asked {
                let index = answered
                    .iter()
                    .position(|answer| answer.partition_index == partition)
                    .ok_or_else(|| ClientError::Protocol {
                        address: address.clone(),
                        api: ApiKey::Fetch,
                        message: format!("no result for partition {}-{partition}", topic.name),
                    })?;
                let answer = answered.swap_remove(index);
                let result =
                    KafkaError::check(answer.error_code, None).map(|()| PartitionRecords {
                        high_watermark: answer.high_watermark,
                        log_start_offset: answer.log_start_offset,
                        records: answer.records.unwrap_or_default(),
                    });
                answers.push(FetchedPartition { partition, result });
            }
        }
        answers.sort_by_key(|answer| {
            positions
                .iter()
                .position(|(partition, _)| *partition == answer.partition)
        });
        Ok(answers)
    }
}

/// Why [`for_each_record`] stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    Continue,
    Stop,
}

/// Calls `each` for every data record in `records` at or after `from`
/// (a batch may begin before the offset asked for), with the record's
/// timestamp already the log-append time where the topic keeps that.
/// Returns the offset to fetch next: past the last complete batch, or
/// past the last record visited when `each` stopped; `from` when there
/// was no complete batch.
pub fn for_each_record(
    records: &Bytes,
    from: i64,
    mut each: impl FnMut(&Record<'_>) -> Visit,
) -> Result<i64, String> {
    let (end, next_offset) = complete_batches(records);
    check_crcs(&records[..end])?;
    let mut position = from;
    // The CRCs are checked above: the reader's own check would also refuse
    // what compaction leaves, batches with fewer records than offsets.
    for batch in BatchIter::new(records.slice(..end), false) {
        let batch = batch.map_err(|error| error.to_string())?;
        let header = &batch.header;
        let batch_next = header
            .base_offset
            .saturating_add(i64::from(header.last_offset_delta))
            .saturating_add(1);
        if batch.is_control() {
            position = position.max(batch_next);
            continue;
        }
        let log_append_time = header.attributes & attributes::TIMESTAMP_TYPE_LOG_APPEND != 0;
        for record in batch.records() {
            let mut record = record.map_err(|error| error.to_string())?;
            if record.offset < from {
                continue;
            }
            if log_append_time {
                record.timestamp = header.max_timestamp;
            }
            position = record.offset.saturating_add(1);
            if each(&record) == Visit::Stop {
                return Ok(position);
            }
        }
        position = position.max(batch_next);
    }
    Ok(next_offset.map_or(from, |next| next.max(position)))
}

/// Checks the CRC of each batch in `records`, which holds complete
/// batches only (see [`complete_batches`]).
fn check_crcs(mut records: &[u8]) -> Result<(), String> {
    while !records.is_empty() {
        let header = BatchHeader::parse(records).map_err(|error| error.to_string())?;
        let length = usize::try_from(header.batch_length)
            .map_err(|_| format!("batch length {}", header.batch_length))?;
        let Some((batch, rest)) = records.split_at_checked(LOG_OVERHEAD + length) else {
            return Err(format!("batch length {length} past the records"));
        };
        let computed = batch::compute_crc(batch);
        if computed != header.crc {
            return Err(format!(
                "batch at offset {} has CRC {computed:#010x}, expected {:#010x}",
                header.base_offset, header.crc
            ));
        }
        records = rest;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};

    use crate::client::produce::plain_record;

    fn batch(first: i64, count: i64, compression: Compression) -> Bytes {
        let records: Vec<_> = (first..first + count)
            .map(|offset| {
                let headers = [
                    (StrBytes::from_static_str("h"), Some(Bytes::from("1"))),
                    (StrBytes::from_static_str("n"), None),
                ];
                let key = Some(Bytes::from(format!("k{offset}")));
                let value = Some(Bytes::from(format!("v{offset}")));
                plain_record(offset, 1_000 + offset, key, value, headers)
            })
            .collect();
        let mut encoded = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut encoded, &records, &options).expect("encodes");
        encoded.freeze()
    }

    #[test]
    fn visits_records_from_the_offset_asked_with_headers() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut both = BytesMut::new();
            both.extend_from_slice(&batch(10, 5, compression));
            both.extend_from_slice(&batch(15, 5, compression));
            let both = both.freeze();
            let mut seen = Vec::new();
            let next = for_each_record(&both, 12, |record| {
                let headers: Vec<_> = record
                    .headers
                    .iter()
                    .map(|header| header.expect("header"))
                    .collect();
                assert_eq!(headers, [(&b"h"[..], Some(&b"1"[..])), (&b"n"[..], None)]);
                assert_eq!(record.timestamp, 1_000 + record.offset);
                seen.push((record.offset, record.value.map(<[u8]>::to_vec)));
                Visit::Continue
            })
            .expect("reads");
            assert_eq!(next, 20);
            assert_eq!(seen.len(), 8);
            assert_eq!(seen[0], (12, Some(b"v12".to_vec())));
            let stopped = for_each_record(&both, 10, |record| {
                if record.offset == 16 {
                    Visit::Stop
                } else {
                    Visit::Continue
                }
            })
            .expect("reads");
            assert_eq!(stopped, 17);
        }
    }

    #[test]
    fn a_corrupt_batch_is_refused() {
        let whole = batch(0, 3, Compression::None);
        let mut corrupt = BytesMut::from(&whole[..]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x55;
        let error = for_each_record(&corrupt.freeze(), 0, |_| Visit::Continue);
        assert!(error.is_err_and(|error| error.contains("CRC")));
    }

    #[test]
    fn a_cut_short_batch_is_left_for_the_next_fetch() {
        let whole = batch(0, 3, Compression::None);
        let cut = whole.slice(..whole.len() - 1);
        let next = for_each_record(&cut, 0, |_| panic!("no complete batch")).expect("reads");
        assert_eq!(next, 0);
    }
}
