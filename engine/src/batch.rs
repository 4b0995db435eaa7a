//! Kafka v2 record batches: header layout, validation without decompression,
//! and the in-place rewrite of the two header fields the broker owns.
//!
//! A batch is stored exactly as the producer sent it. The broker changes only
//! `base_offset` and `partition_leader_epoch`, both outside the CRC, so the
//! producer's checksum stays valid on disk and on the wire.

use bytes::Bytes;

use crate::constants::BATCH_BYTES_MAX;
use crate::types::{LeaderEpoch, Offset};

// Field positions, each derived from the one before so they cannot drift.
pub const BASE_OFFSET_AT: usize = 0;
pub const LENGTH_AT: usize = BASE_OFFSET_AT + 8;
pub const LEADER_EPOCH_AT: usize = LENGTH_AT + 4;
pub const MAGIC_AT: usize = LEADER_EPOCH_AT + 4;
pub const CRC_AT: usize = MAGIC_AT + 1;
pub const ATTRIBUTES_AT: usize = CRC_AT + 4;
pub const LAST_OFFSET_DELTA_AT: usize = ATTRIBUTES_AT + 2;
pub const BASE_TIMESTAMP_AT: usize = LAST_OFFSET_DELTA_AT + 4;
pub const MAX_TIMESTAMP_AT: usize = BASE_TIMESTAMP_AT + 8;
pub const PRODUCER_ID_AT: usize = MAX_TIMESTAMP_AT + 8;
pub const PRODUCER_EPOCH_AT: usize = PRODUCER_ID_AT + 8;
pub const BASE_SEQUENCE_AT: usize = PRODUCER_EPOCH_AT + 2;
pub const RECORD_COUNT_AT: usize = BASE_SEQUENCE_AT + 4;
/// Size of the batch header; the records follow it.
pub const BATCH_HEADER_BYTES: usize = RECORD_COUNT_AT + 4;
/// Bytes before the length field's count starts (base offset + length).
pub const LOG_OVERHEAD: usize = LENGTH_AT + 4;
/// The header bytes the broker rewrites: base offset, length, leader epoch.
/// Serving a cached batch sends these from a patched copy and the rest from
/// the producer's own bytes.
pub const PATCHED_HEAD_BYTES: usize = MAGIC_AT;

/// The only record-batch format the engine stores.
pub const MAGIC_V2: i8 = 2;

const _: () = assert!(BATCH_HEADER_BYTES == 61);
const _: () = assert!(LOG_OVERHEAD == 12);

/// Attribute bits of the v2 batch header.
pub mod attributes {
    pub const COMPRESSION_MASK: i16 = 0x07;
    pub const TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
    pub const TRANSACTIONAL: i16 = 0x10;
    pub const CONTROL: i16 = 0x20;
    /// Compression codecs 0..=4: none, gzip, snappy, lz4, zstd.
    pub const COMPRESSION_CODEC_MAX: i16 = 4;
}

/// Why a batch was refused. The protocol layer maps each to a Kafka error
/// code (see `kafka_error` in sluice-net).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than a header, or a length field that disagrees with the
    /// bytes present (CORRUPT_MESSAGE).
    BadLength { declared: i64, present: usize },
    /// Magic other than 2 (UNSUPPORTED_FOR_MESSAGE_FORMAT).
    UnsupportedMagic(i8),
    /// The CRC-32C over attributes..end does not match (CORRUPT_MESSAGE).
    BadCrc { stored: u32, computed: u32 },
    /// Record count and last offset delta disagree, or the count is not
    /// positive (INVALID_RECORD).
    BadRecordCount {
        record_count: i32,
        last_offset_delta: i32,
    },
    /// A compression codec number Kafka does not define (CORRUPT_MESSAGE).
    UnknownCompression(i16),
    /// Larger than the limit in force (MESSAGE_TOO_LARGE).
    TooLarge { bytes: usize, limit: usize },
    /// A control batch whose record is not a commit or abort marker
    /// (INVALID_RECORD).
    BadControlRecord,
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::BadLength { declared, present } => {
                write!(
                    f,
                    "batch length {declared} does not match the {present} bytes present"
                )
            }
            BatchError::UnsupportedMagic(magic) => write!(f, "record batch magic {magic} is not 2"),
            BatchError::BadCrc { stored, computed } => {
                write!(
                    f,
                    "batch crc {stored:#010x} does not match computed {computed:#010x}"
                )
            }
            BatchError::BadRecordCount {
                record_count,
                last_offset_delta,
            } => write!(
                f,
                "record count {record_count} does not match last offset delta {last_offset_delta}"
            ),
            BatchError::UnknownCompression(codec) => write!(f, "unknown compression codec {codec}"),
            BatchError::TooLarge { bytes, limit } => {
                write!(f, "batch of {bytes} bytes exceeds the limit of {limit}")
            }
            BatchError::BadControlRecord => {
                write!(f, "control batch holds no transaction marker")
            }
        }
    }
}

impl std::error::Error for BatchError {}

/// The decoded fixed header of a v2 batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}
fn be_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}
fn be_i64(bytes: &[u8], at: usize) -> i64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(word)
}

impl BatchHeader {
    /// Reads the header fields. The caller has checked `bytes.len() >=
    /// BATCH_HEADER_BYTES`; anything shorter is refused here too.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::BadLength {
                declared: -1,
                present: bytes.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(bytes, BASE_OFFSET_AT),
            batch_length: be_i32(bytes, LENGTH_AT),
            leader_epoch: be_i32(bytes, LEADER_EPOCH_AT),
            magic: bytes[MAGIC_AT] as i8,
            crc: be_i32(bytes, CRC_AT) as u32,
            attributes: be_i16(bytes, ATTRIBUTES_AT),
            last_offset_delta: be_i32(bytes, LAST_OFFSET_DELTA_AT),
            base_timestamp: be_i64(bytes, BASE_TIMESTAMP_AT),
            max_timestamp: be_i64(bytes, MAX_TIMESTAMP_AT),
            producer_id: be_i64(bytes, PRODUCER_ID_AT),
            producer_epoch: be_i16(bytes, PRODUCER_EPOCH_AT),
            base_sequence: be_i32(bytes, BASE_SEQUENCE_AT),
            record_count: be_i32(bytes, RECORD_COUNT_AT),
        })
    }

    /// Bytes the whole batch occupies, header included.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn compression(&self) -> i16 {
        self.attributes & attributes::COMPRESSION_MASK
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & attributes::TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & attributes::CONTROL != 0
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & attributes::TIMESTAMP_TYPE_LOG_APPEND != 0
    }

    /// Whether the batch carries an idempotent producer's identity.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// CRC-32C over attributes..end, the v2 batch checksum.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(ATTRIBUTES_AT..).unwrap_or(&[]))
}

/// Checks one complete batch (exactly `bytes`, no trailing data) without
/// decompressing it: length, magic, CRC, compression codec and record count.
pub fn validate(bytes: &[u8], limit: usize) -> Result<BatchHeader, BatchError> {
    validate_as(bytes, limit, false)
}

/// [`validate`] for a batch read from a log rather than sent by a
/// producer: compaction removes records from batches without changing the
/// offsets they cover, so the record count may be anything from 0 to the
/// offsets covered (a follower copies such batches from its leader).
pub fn validate_stored(bytes: &[u8], limit: usize) -> Result<BatchHeader, BatchError> {
    validate_as(bytes, limit, true)
}

fn validate_as(bytes: &[u8], limit: usize, compacted: bool) -> Result<BatchHeader, BatchError> {
    let limit = limit.min(BATCH_BYTES_MAX);
    if bytes.len() > limit {
        return Err(BatchError::TooLarge {
            bytes: bytes.len(),
            limit,
        });
    }
    let header = BatchHeader::parse(bytes)?;
    let declared = LOG_OVERHEAD as i64 + i64::from(header.batch_length);
    if header.batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32
        || declared != bytes.len() as i64
    {
        return Err(BatchError::BadLength {
            declared,
            present: bytes.len(),
        });
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic(header.magic));
    }
    let computed = compute_crc(bytes);
    if computed != header.crc {
        return Err(BatchError::BadCrc {
            stored: header.crc,
            computed,
        });
    }
    if header.compression() > attributes::COMPRESSION_CODEC_MAX {
        return Err(BatchError::UnknownCompression(header.compression()));
    }
    // Kafka requires lastOffsetDelta + 1 == recordCount for v2 batches; a
    // batch that lies about its count would assign the wrong offsets.
    let covered = i64::from(header.last_offset_delta) + 1;
    let count = i64::from(header.record_count);
    let count_ok = if compacted {
        (0..=covered).contains(&count)
    } else {
        count >= 1 && count == covered
    };
    if header.last_offset_delta < 0 || !count_ok {
        return Err(BatchError::BadRecordCount {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// The batches of one partition's records, each with its header: one
/// inline, as producers send them (Kafka requires exactly one from Produce
/// v3 on), more on the heap.
pub type Batches = smallvec::SmallVec<[(BatchHeader, Bytes); 1]>;

/// Splits a record set (the `records` field of a produce partition) into its
/// batches, validating each. Returns the batches as zero-copy slices.
pub fn split_and_validate(records: &Bytes, limit: usize) -> Result<Batches, BatchError> {
    let mut batches = Batches::new();
    let mut at = 0usize;
    while at < records.len() {
        let rest = &records[at..];
        if rest.len() < LOG_OVERHEAD {
            return Err(BatchError::BadLength {
                declared: -1,
                present: rest.len(),
            });
        }
        let length = be_i32(rest, LENGTH_AT);
        if length < 0 || LOG_OVERHEAD as u64 + length as u64 > rest.len() as u64 {
            return Err(BatchError::BadLength {
                declared: LOG_OVERHEAD as i64 + i64::from(length),
                present: rest.len(),
            });
        }
        let total = LOG_OVERHEAD + length as usize;
        let slice = records.slice(at..at + total);
        let header = validate(&slice, limit)?;
        batches.push((header, slice));
        at += total;
    }
    Ok(batches)
}

/// The first `PATCHED_HEAD_BYTES` of a batch with base offset and leader
/// epoch set by the broker.
pub fn patched_head(
    batch: &[u8],
    base_offset: Offset,
    epoch: LeaderEpoch,
) -> [u8; PATCHED_HEAD_BYTES] {
    let mut head = [0u8; PATCHED_HEAD_BYTES];
    head.copy_from_slice(&batch[..PATCHED_HEAD_BYTES]);
    head[BASE_OFFSET_AT..LENGTH_AT].copy_from_slice(&base_offset.0.to_be_bytes());
    head[LEADER_EPOCH_AT..MAGIC_AT].copy_from_slice(&epoch.0.to_be_bytes());
    head
}

/// Sets the max timestamp and the log-append-time attribute for topics with
/// `message.timestamp.type=LogAppendTime`. Those fields are inside the CRC, so
/// the checksum is recomputed; this is the one case where Kafka rewrites a
/// batch body, and the caller owns a private copy of the bytes.
pub fn stamp_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = be_i16(batch, ATTRIBUTES_AT) | attributes::TIMESTAMP_TYPE_LOG_APPEND;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Builds an uncompressed v2 batch of `values` (no keys, no headers). Used by
/// tests, benchmarks and the crash-test child; clients build their own.
pub fn build_batch(base_timestamp: i64, values: &[&[u8]]) -> Vec<u8> {
    build_batch_with(
        BuildBatch {
            base_timestamp,
            ..BuildBatch::default()
        },
        values,
    )
}

/// Options for [`build_batch_with`].
#[derive(Clone, Copy, Debug)]
pub struct BuildBatch {
    pub base_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub attributes: i16,
}

impl Default for BuildBatch {
    fn default() -> Self {
        BuildBatch {
            base_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes: 0,
        }
    }
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A record to build: its key and its value, `None` for null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds an uncompressed v2 batch with the given producer fields.
pub fn build_batch_with(options: BuildBatch, values: &[&[u8]]) -> Vec<u8> {
    let records: Vec<KeyValue<'_>> = values.iter().map(|value| (None, Some(*value))).collect();
    build_keyed_batch(options, &records)
}

/// Builds an uncompressed v2 batch of `(key, value)` records (`None`: a
/// null key, or a null value: a tombstone), record `i` at offset delta `i`,
/// every record at the base timestamp.
pub fn build_keyed_batch(options: BuildBatch, records: &[KeyValue<'_>]) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let mut area = Vec::new();
    for (delta, (key, value)) in records.iter().enumerate() {
        let mut body = Vec::with_capacity(16);
        body.push(0); // record attributes
        put_varint(&mut body, 0); // timestamp delta
        put_varint(&mut body, delta as i64); // offset delta
        for field in [key, value] {
            match field {
                Some(bytes) => {
                    put_varint(&mut body, bytes.len() as i64);
                    body.extend_from_slice(bytes);
                }
                None => put_varint(&mut body, -1),
            }
        }
        put_varint(&mut body, 0); // no headers
        put_varint(&mut area, body.len() as i64);
        area.extend_from_slice(&body);
    }
    let count = records.len() as i32;
    let total = BATCH_HEADER_BYTES + area.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&((total - LOG_OVERHEAD) as i32).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&options.attributes.to_be_bytes());
    out.extend_from_slice(&(count - 1).to_be_bytes());
    out.extend_from_slice(&options.base_timestamp.to_be_bytes());
    out.extend_from_slice(&options.base_timestamp.to_be_bytes());
    out.extend_from_slice(&options.producer_id.to_be_bytes());
    out.extend_from_slice(&options.producer_epoch.to_be_bytes());
    out.extend_from_slice(&options.base_sequence.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&area);
    let crc = compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_batch_validates() {
        let batch = build_batch(1_700_000_000_000, &[b"a", b"bc", b"def"]);
        let header = validate(&batch, usize::MAX).expect("valid batch");
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.magic, MAGIC_V2);
    }

    #[test]
    fn every_corruption_is_refused() {
        let batch = build_batch(7, &[b"hello", b"world"]);
        for at in ATTRIBUTES_AT..batch.len() {
            let mut broken = batch.clone();
            broken[at] ^= 0x01;
            assert!(
                validate(&broken, usize::MAX).is_err(),
                "flip at {at} accepted"
            );
        }
        let mut wrong_magic = batch.clone();
        wrong_magic[MAGIC_AT] = 1;
        assert_eq!(
            validate(&wrong_magic, usize::MAX),
            Err(BatchError::UnsupportedMagic(1))
        );
        assert!(matches!(
            validate(&batch[..30], usize::MAX),
            Err(BatchError::BadLength { .. })
        ));
        assert!(matches!(
            validate(&batch[..batch.len() - 1], usize::MAX),
            Err(BatchError::BadLength { .. })
        ));
        assert!(matches!(
            validate(&batch, 10),
            Err(BatchError::TooLarge { .. })
        ));
    }

    #[test]
    fn count_must_match_delta() {
        let mut batch = build_batch(7, &[b"x", b"y"]);
        batch[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&5i32.to_be_bytes());
        let crc = compute_crc(&batch);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate(&batch, usize::MAX),
            Err(BatchError::BadRecordCount { .. })
        ));
    }

    #[test]
    fn head_patch_leaves_crc_valid() {
        let batch = build_batch(7, &[b"x"]);
        let head = patched_head(&batch, Offset(42), LeaderEpoch(3));
        let mut patched = batch.clone();
        patched[..PATCHED_HEAD_BYTES].copy_from_slice(&head);
        let header = validate(&patched, usize::MAX).expect("still valid");
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.leader_epoch, 3);
    }

    #[test]
    fn split_finds_each_batch_and_rejects_overrun() {
        let mut set = build_batch(1, &[b"a"]);
        set.extend_from_slice(&build_batch(2, &[b"b", b"c"]));
        let set = Bytes::from(set);
        let batches = split_and_validate(&set, usize::MAX).expect("two batches");
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].0.record_count, 2);
        let truncated = set.slice(..set.len() - 3);
        assert!(split_and_validate(&truncated, usize::MAX).is_err());
    }

    #[test]
    fn log_append_time_keeps_crc_valid() {
        let mut batch = build_batch(7, &[b"x"]);
        stamp_log_append_time(&mut batch, 99);
        let header = validate(&batch, usize::MAX).expect("valid");
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, 99);
    }
}
