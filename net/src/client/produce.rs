//! Writing records (`sluice produce`): a [`Producer`] collects records into
//! one batch per partition and sends Produce requests to the partitions'
//! leaders, waiting for each request's acknowledgement before taking more
//! records.
//!
//! Design notes:
//! - One request in flight, as everywhere in this client: records of one
//!   partition reach the broker in the order given, and a failure stops
//!   the producer at a known point. A CLI reading a file does not need more.
//! - A batch is sent when it holds [`PRODUCE_BATCH_BYTES_MAX`] bytes or
//!   [`PRODUCE_BATCH_RECORDS_MAX`] records; all batches are sent when
//!   together they hold [`PRODUCE_PENDING_BYTES_MAX`], and by
//!   [`Producer::flush`]. Batches going to one leader share a request.
//! - Batches are encoded with `kafka-protocol`'s record batch encoder
//!   (magic 2, the codecs the workspace enables), as a plain producer
//!   writes them: no producer id, no sequence numbers.
//! - Partitioning follows Kafka's Java client: murmur2 of the key for keyed
//!   records (librdkafka's `murmur2_random`, not its default
//!   `consistent_random`), and the uniform sticky partitioner for records
//!   without a key.
//! - A partition answered NOT_LEADER_OR_FOLLOWER or LEADER_NOT_AVAILABLE
//!   was not written, so its batch is sent again (after fresh metadata) up
//!   to [`PRODUCE_ATTEMPTS_MAX`] times without risk of duplicates. Any other
//!   refusal ends the producer with that error.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};

use super::admin::{Admin, TopicMetadata};
use super::error::{ClientError, KafkaError};
use super::{
    PRODUCE_ATTEMPTS_MAX, PRODUCE_BATCH_BYTES_MAX, PRODUCE_BATCH_RECORDS_MAX,
    PRODUCE_PENDING_BYTES_MAX, PRODUCE_RETRY_BACKOFF_MS, PRODUCE_TIMEOUT_MS,
};
use crate::glommio_client::compression::Compression as Codec;
use crate::glommio_client::partitioner::{partition_for_key, Sticky, XorShift};
pub use crate::glommio_client::producer::Acks;

/// NOT_LEADER_OR_FOLLOWER and LEADER_NOT_AVAILABLE: the batch was not
/// written, and the partition will have a leader again shortly.
const LEADER_MOVED: [i16; 2] = [6, 5];

/// The record batch format every Produce version this client speaks takes.
const RECORD_BATCH_MAGIC: i8 = 2;

/// Bytes a record adds to a batch besides its key, value and header bytes:
/// the length, attributes, timestamp and offset deltas and the field
/// lengths, as varints of typical size. Only used to decide when a batch
/// is full, so an estimate does.
const RECORD_OVERHEAD_BYTES: usize = 16;

/// Parses Kafka's `compression.type` names (`none`, `gzip`, `snappy`,
/// `lz4`, `zstd`).
pub fn compression_from_name(name: &str) -> Option<Compression> {
    Some(match Codec::from_name(name)? {
        Codec::None => Compression::None,
        Codec::Gzip => Compression::Gzip,
        Codec::Snappy => Compression::Snappy,
        Codec::Lz4 => Compression::Lz4,
        Codec::Zstd => Compression::Zstd,
    })
}

/// How a [`Producer`] sends.
#[derive(Clone, Debug)]
pub struct ProducerSettings {
    pub acks: Acks,
    pub compression: Compression,
}

/// One record to send. Header keys are text, as every Kafka client
/// exposes them; values are bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

impl ProducerRecord {
    /// The bytes the record adds to a batch, near enough.
    fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(key, value)| key.len() + value.len() + RECORD_OVERHEAD_BYTES / 2)
            .sum();
        RECORD_OVERHEAD_BYTES + self.key.as_ref().map_or(0, Bytes::len) + self.value.len() + headers
    }
}

/// The records collected for one partition.
#[derive(Default)]
struct PendingBatch {
    records: Vec<Record>,
    bytes: usize,
}

/// One encoded batch on its way to a partition.
struct ReadyBatch {
    partition: i32,
    records: Bytes,
    count: u64,
}

/// A producer for one topic; see the module notes.
pub struct Producer<'a> {
    admin: &'a mut Admin,
    topic: TopicMetadata,
    settings: ProducerSettings,
    pending: BTreeMap<i32, PendingBatch>,
    pending_bytes: usize,
    sticky: Sticky,
    random: XorShift,
    /// Records the broker acknowledged (with acks=0: records sent).
    delivered: u64,
}

impl<'a> Producer<'a> {
    /// A producer for `topic`, which must exist.
    pub fn new(
        admin: &'a mut Admin,
        topic: &str,
        settings: ProducerSettings,
    ) -> Result<Producer<'a>, ClientError> {
        let topic = admin.describe_topic(topic)?;
        // The partitioners divide by the partition count.
        if topic.partitions.is_empty() {
            return Err(ClientError::Broker(KafkaError::new(
                LEADER_MOVED[1],
                Some(format!("Topic '{}' has no partitions yet.", topic.name)),
            )));
        }
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |time| time.as_nanos() as u64)
            ^ u64::from(std::process::id());
        Ok(Producer {
            admin,
            topic,
            settings,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            sticky: Sticky::default(),
            random: XorShift::new(seed),
            delivered: 0,
        })
    }

    /// The topic's partition count.
    pub fn partitions(&self) -> i32 {
        i32::try_from(self.topic.partitions.len()).unwrap_or(i32::MAX)
    }

    /// Records the broker has acknowledged so far (with acks=0, sent).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Adds `record` to its partition's batch: `partition`, or the one the
    /// partitioner picks. Sends batches that are full.
    pub fn send(
        &mut self,
        record: ProducerRecord,
        partition: Option<i32>,
    ) -> Result<(), ClientError> {
        let size = record.size();
        let partitions = self.partitions();
        let partition = match (partition, &record.key) {
            (Some(partition), _) => {
                // A missing leader is worth waiting for; a missing
                // partition is not.
                if let Err(error) = self.topic.leader_of(partition) {
                    if !LEADER_MOVED.contains(&error.code) {
                        return Err(ClientError::Broker(error));
                    }
                }
                partition
            }
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => {
                let random = &mut self.random;
                self.sticky
                    .next(partitions, size, PRODUCE_BATCH_BYTES_MAX, || {
                        random.next_u64()
                    })
            }
        };
        let batch = self.pending.entry(partition).or_default();
        let offset = batch.records.len() as i64;
        let headers = record
            .headers
            .into_iter()
            .map(|(key, value)| (StrBytes::from_string(key), Some(value)));
        batch.records.push(plain_record(
            offset,
            now_ms(),
            record.key,
            Some(record.value),
            headers,
        ));
        batch.bytes += size;
        self.pending_bytes += size;
        let full = batch.bytes >= PRODUCE_BATCH_BYTES_MAX
            || batch.records.len() >= PRODUCE_BATCH_RECORDS_MAX;
        if full {
            self.send_partitions(&[partition])?;
        }
        if self.pending_bytes >= PRODUCE_PENDING_BYTES_MAX {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends every batch collected so far and waits for their acks.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        let partitions: Vec<i32> = self.pending.keys().copied().collect();
        self.send_partitions(&partitions)
    }

    /// Encodes and sends the pending batches of `partitions`.
    fn send_partitions(&mut self, partitions: &[i32]) -> Result<(), ClientError> {
        let mut ready = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let Some(batch) = self.pending.remove(partition) else {
                continue;
            };
            self.pending_bytes -= batch.bytes;
            if batch.records.is_empty() {
                continue;
            }
            let mut encoded = BytesMut::with_capacity(batch.bytes);
            let options = RecordEncodeOptions {
                version: RECORD_BATCH_MAGIC,
                compression: self.settings.compression,
            };
            RecordBatchEncoder::encode(&mut encoded, &batch.records, &options).map_err(
                |error| ClientError::Encode {
                    api: ApiKey::Produce,
                    version: -1,
                    message: format!("record batch: {error}"),
                },
            )?;
            ready.push(ReadyBatch {
                partition: *partition,
                records: encoded.freeze(),
                count: batch.records.len() as u64,
            });
        }
        let mut attempt = 1;
        loop {
            let refused = self.send_batches(ready)?;
            let Some((first_error, _)) = refused.first() else {
                return Ok(());
            };
            if attempt >= PRODUCE_ATTEMPTS_MAX {
                return Err(ClientError::Broker(first_error.clone()));
            }
            attempt += 1;
            std::thread::sleep(Duration::from_millis(PRODUCE_RETRY_BACKOFF_MS));
            self.topic = self.admin.describe_topic(&self.topic.name)?;
            ready = refused.into_iter().map(|(_, batch)| batch).collect();
        }
    }

    /// One round of Produce requests, one per leader. Returns the batches
    /// refused with a retriable error; any other refusal is an `Err`.
    fn send_batches(
        &mut self,
        batches: Vec<ReadyBatch>,
    ) -> Result<Vec<(KafkaError, ReadyBatch)>, ClientError> {
        let mut retry = Vec::new();
        let mut by_leader: BTreeMap<i32, Vec<ReadyBatch>> = BTreeMap::new();
        for batch in batches {
            match self.topic.leader_of(batch.partition) {
                Ok(leader) => by_leader.entry(leader).or_default().push(batch),
                Err(error) if LEADER_MOVED.contains(&error.code) => retry.push((error, batch)),
                Err(error) => return Err(ClientError::Broker(error)),
            }
        }
        let acks = self.settings.acks;
        for (leader, batches) in by_leader {
            let mut data = TopicProduceData::default();
            data.name = TopicName(StrBytes::from_string(self.topic.name.clone()));
            data.partition_data = batches
                .iter()
                .map(|batch| {
                    let mut partition = PartitionProduceData::default();
                    partition.index = batch.partition;
                    partition.records = Some(batch.records.clone());
                    partition
                })
                .collect();
            let mut request = ProduceRequest::default();
            request.acks = acks.wire();
            request.timeout_ms = PRODUCE_TIMEOUT_MS;
            request.topic_data = vec![data];
            let connection = self.admin.connection_to(leader)?;
            let version = connection.version(ApiKey::Produce)?;
            if acks == Acks::None {
                connection.send_without_response(&request, version)?;
                self.delivered += batches.iter().map(|batch| batch.count).sum::<u64>();
                continue;
            }
            let response = connection.send(&request, version)?;
            let address = connection.address().to_string();
            let answers: Vec<_> = response
                .responses
                .into_iter()
                .filter(|answer| answer.name.0.as_str() == self.topic.name)
                .flat_map(|answer| answer.partition_responses)
                .collect();
            for batch in batches {
                let answer = answers
                    .iter()
                    .find(|answer| answer.index == batch.partition)
                    .ok_or_else(|| ClientError::Protocol {
                        address: address.clone(),
                        api: ApiKey::Produce,
                        message: format!(
                            "no result for partition {}-{}",
                            self.topic.name, batch.partition
                        ),
                    })?;
                let broker_message = answer
                    .error_message
                    .as_ref()
                    .map(|message| format!(": {}", message.as_str()))
                    .unwrap_or_default();
                let refusal = KafkaError::check(
                    answer.error_code,
                    Some(format!(
                        "partition {} refused a batch of {} record(s){broker_message}",
                        batch.partition, batch.count
                    )),
                );
                match refusal {
                    Ok(()) => self.delivered += batch.count,
                    Err(error) if LEADER_MOVED.contains(&error.code) => retry.push((error, batch)),
                    Err(error) => return Err(ClientError::Broker(error)),
                }
            }
        }
        Ok(retry)
    }
}

/// A record as a plain producer writes it (no producer id, no sequence
/// numbers), at `offset` within its batch.
pub(crate) fn plain_record(
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: impl IntoIterator<Item = (StrBytes, Option<Bytes>)>,
) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        timestamp_type: TimestampType::Creation,
        offset,
        // The encoder keeps records in one batch while offset minus
        // sequence stays the same; a plain producer's base sequence is -1.
        sequence: offset as i32 - 1,
        timestamp,
        key,
        value,
        headers: headers.into_iter().collect(),
    }
}

/// Milliseconds since the epoch: the records' create time.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |time| {
            i64::try_from(time.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_codecs() {
        assert_eq!(compression_from_name("zstd"), Some(Compression::Zstd));
        assert_eq!(compression_from_name("none"), Some(Compression::None));
        assert_eq!(compression_from_name("brotli"), None);
    }
}
