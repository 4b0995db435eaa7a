//! The record-level work of log compaction (`cleanup.policy=compact`):
//! finding the records of a v2 batch, deciding which survive, and writing
//! the batch again with only those.
//!
//! Batches are rewritten, never merged across producers: a batch keeps its
//! base offset and its last offset delta, so the offsets a batch covers stay
//! the same and the log's batches still follow on one from the next. The
//! readers, the recovery scan and a follower's appends all check that
//! continuity, and it holds without a special case for compacted logs.
//! A batch whose records are all removed shrinks to a bare header. A run of
//! such batches becomes one header; a producer's last batch keeps its own,
//! with its producer id, epoch and sequence, which a follower or a recovery
//! rebuilds the producer's state from (Kafka keeps it for the same reason).
//! Kafka also merges small cleaned segments; Sluice does not yet, so a
//! cleaned segment stays a file of its own however small.
//!
//! Compressed batches are decompressed to read their keys and compressed
//! again with the same codec when rewritten. The engine has no codecs of its
//! own: the caller passes a [`RecordCodec`].

use std::io;

use crate::batch::{
    self, attributes, BatchHeader, ATTRIBUTES_AT, BASE_SEQUENCE_AT, BATCH_HEADER_BYTES,
    LAST_OFFSET_DELTA_AT, LENGTH_AT, LOG_OVERHEAD, MAX_TIMESTAMP_AT, PRODUCER_EPOCH_AT,
    PRODUCER_ID_AT, RECORD_COUNT_AT,
};

/// Decompresses and compresses record areas for the cleaner.
pub trait RecordCodec {
    /// The records of a batch compressed with `codec` (1..=4), at most
    /// `limit` bytes of them.
    fn decompress(&self, codec: i16, input: &[u8], limit: usize) -> io::Result<Vec<u8>>;
    /// `input` compressed with `codec`.
    fn compress(&self, codec: i16, input: &[u8]) -> io::Result<Vec<u8>>;
}

/// A codec for logs of uncompressed batches only (tests, tools): a
/// compressed batch is an error, and the cleaner leaves its partition alone.
pub struct NoCodecs;

impl RecordCodec for NoCodecs {
    fn decompress(&self, codec: i16, _input: &[u8], _limit: usize) -> io::Result<Vec<u8>> {
        Err(io::Error::other(format!(
            "no codec for compression type {codec}"
        )))
    }

    fn compress(&self, codec: i16, _input: &[u8]) -> io::Result<Vec<u8>> {
        Err(io::Error::other(format!(
            "no codec for compression type {codec}"
        )))
    }
}

/// One record of a batch, located in its uncompressed record area.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    pub offset_delta: i64,
    pub timestamp_delta: i64,
    /// `None` for a record without a key (a null key).
    pub key: Option<&'a [u8]>,
    /// The value is null: a tombstone.
    pub tombstone: bool,
    /// The whole record, from its length varint to its last header.
    pub bytes: &'a [u8],
}

/// Why a batch could not be read record by record.
#[derive(Debug)]
pub enum RecordError {
    /// The records do not parse as their header says.
    Malformed(String),
    /// The codec failed.
    Codec(io::Error),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Malformed(what) => write!(f, "malformed records: {what}"),
            RecordError::Codec(error) => write!(f, "decompressing records: {error}"),
        }
    }
}

/// A batch's records as stored, uncompressed when they were compressed.
pub fn record_area<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    codec: &dyn RecordCodec,
    limit: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, RecordError> {
    let body = batch
        .get(BATCH_HEADER_BYTES..)
        .ok_or_else(|| RecordError::Malformed("batch shorter than its header".into()))?;
    match header.compression() {
        0 => Ok(std::borrow::Cow::Borrowed(body)),
        codec_id => codec
            .decompress(codec_id, body, limit)
            .map(std::borrow::Cow::Owned)
            .map_err(RecordError::Codec),
    }
}

/// The `count` records of an uncompressed record area, in order.
pub fn parse_records(area: &[u8], count: i32) -> Result<Vec<RecordView<'_>>, RecordError> {
    let count = usize::try_from(count)
        .map_err(|_| RecordError::Malformed(format!("record count {count}")))?;
    // Each record takes at least 7 bytes: a count beyond that is a lie, and
    // must not size an allocation.
    let mut records = Vec::with_capacity(count.min(area.len() / 7 + 1));
    let mut at = 0usize;
    let malformed = |what: &str, at: usize| RecordError::Malformed(format!("{what} at byte {at}"));
    for _ in 0..count {
        let (length, used) = varint(area, at).ok_or_else(|| malformed("record length", at))?;
        let start = at;
        let body = at + used;
        let end = usize::try_from(length)
            .ok()
            .and_then(|length| body.checked_add(length))
            .filter(|end| *end <= area.len())
            .ok_or_else(|| malformed("record length past the end", at))?;
        let record = &area[..end];
        let mut field = body + 1; // the record's attributes byte
        let (timestamp_delta, used) =
            varint(record, field).ok_or_else(|| malformed("timestamp delta", field))?;
        field += used;
        let (offset_delta, used) =
            varint(record, field).ok_or_else(|| malformed("offset delta", field))?;
        field += used;
        let (key_length, used) =
            varint(record, field).ok_or_else(|| malformed("key length", field))?;
        field += used;
        let key = if key_length < 0 {
            None
        } else {
            let key_end = usize::try_from(key_length)
                .ok()
                .and_then(|length| field.checked_add(length))
                .filter(|key_end| *key_end <= end)
                .ok_or_else(|| malformed("key past the record's end", field))?;
            let key = &record[field..key_end];
            field = key_end;
            Some(key)
        };
        let (value_length, _) =
            varint(record, field).ok_or_else(|| malformed("value length", field))?;
        records.push(RecordView {
            offset_delta,
            timestamp_delta,
            key,
            tombstone: value_length < 0,
            bytes: &area[start..end],
        });
        at = end;
    }
    Ok(records)
}

/// A zigzag varint (Kafka's varint and varlong) at `at`: value and length.
fn varint(bytes: &[u8], at: usize) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in bytes.get(at..)?.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Some((decoded, i + 1));
        }
    }
    None
}

/// `original` (a whole batch) written again with only `kept` of its
/// records: the same base offset, last offset delta, producer fields and
/// codec; record count, max timestamp, length and CRC of what is kept. With
/// nothing kept it is a bare header without compression (an empty record
/// area compressed is not empty, and clients read a bare header as a batch
/// with no records).
pub fn rewrite_batch(
    original: &[u8],
    header: &BatchHeader,
    kept: &[RecordView<'_>],
    codec: &dyn RecordCodec,
) -> io::Result<Vec<u8>> {
    let mut area = Vec::with_capacity(kept.iter().map(|record| record.bytes.len()).sum());
    for record in kept {
        area.extend_from_slice(record.bytes);
    }
    let mut attributes = header.attributes;
    let body = if kept.is_empty() {
        attributes &= !attributes::COMPRESSION_MASK;
        Vec::new()
    } else if header.compression() != 0 {
        codec.compress(header.compression(), &area)?
    } else {
        area
    };
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
    out.extend_from_slice(&original[..BATCH_HEADER_BYTES]);
    out.extend_from_slice(&body);
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    if !header.is_log_append_time() {
        if let Some(latest) = kept.iter().map(|record| record.timestamp_delta).max() {
            let max = header.base_timestamp.saturating_add(latest);
            out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max.to_be_bytes());
        }
    }
    let count = i32::try_from(kept.len()).unwrap_or(i32::MAX);
    out[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
    seal(&mut out)?;
    Ok(out)
}

/// A bare header (no records, no producer) covering offsets `base..=last`:
/// what a run of batches whose records were all removed becomes.
pub fn empty_batch(base: i64, last: i64, leader_epoch: i32, timestamp: i64) -> io::Result<Vec<u8>> {
    let delta = i32::try_from(last - base)
        .map_err(|_| io::Error::other(format!("an empty batch cannot span {base}..={last}")))?;
    let mut out = vec![0u8; BATCH_HEADER_BYTES];
    out[..8].copy_from_slice(&base.to_be_bytes());
    out[batch::LEADER_EPOCH_AT..batch::LEADER_EPOCH_AT + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
    out[batch::MAGIC_AT] = batch::MAGIC_V2 as u8;
    out[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&delta.to_be_bytes());
    out[batch::BASE_TIMESTAMP_AT..batch::BASE_TIMESTAMP_AT + 8]
        .copy_from_slice(&timestamp.to_be_bytes());
    out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp.to_be_bytes());
    out[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&(-1i64).to_be_bytes());
    out[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].copy_from_slice(&(-1i16).to_be_bytes());
    out[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
    seal(&mut out)?;
    Ok(out)
}

/// Sets the length field and the CRC of a batch built in `out`.
fn seal(out: &mut [u8]) -> io::Result<()> {
    let length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| io::Error::other("a rewritten batch is too large"))?;
    out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let crc = batch::compute_crc(out);
    out[batch::CRC_AT..batch::CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// The latest offset of each key in the dirty part of a log, by a 128-bit
/// hash of the key (two independently keyed SipHashes): the keys are not
/// kept, so memory is bounded by the entry count alone. Two keys sharing a
/// hash would lose the older one's latest record; at 2^-128 per pair that is
/// the same bet Kafka's cleaner makes with its MD5 map.
pub struct KeyMap {
    first: std::hash::RandomState,
    second: std::hash::RandomState,
    latest: std::collections::HashMap<u128, i64, KeyHashed>,
    entries_max: usize,
}

/// The table's own hasher for [`KeyMap`]'s entries, which are already keyed
/// SipHash outputs: it takes their low 64 bits as they are instead of
/// hashing them a third time (a third of the hashing per key looked up).
/// Keyed with random keys per map, they stay out of a client's reach: no
/// choice of record keys crowds one bucket.
#[derive(Default, Clone, Copy)]
struct KeyHashed;

impl std::hash::BuildHasher for KeyHashed {
    type Hasher = LowBits;

    fn build_hasher(&self) -> LowBits {
        LowBits(0)
    }
}

/// See [`KeyHashed`].
struct LowBits(u64);

/// An odd multiplier whose bits are spread evenly (2^64 over the golden
/// ratio), so each byte written moves every bit above it.
const SPREAD_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

impl std::hash::Hasher for LowBits {
    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u128` entries are hashed; any other input is still spread,
        // never ignored.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(SPREAD_MULTIPLIER);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What one entry of a [`KeyMap`] costs: the hash, the offset and the hash
/// table's control byte and spare capacity.
pub const KEY_MAP_ENTRY_BYTES: usize = 32;

impl KeyMap {
    /// A map that holds at most `entries_max` keys.
    pub fn new(entries_max: usize) -> KeyMap {
        KeyMap {
            first: std::hash::RandomState::new(),
            second: std::hash::RandomState::new(),
            latest: std::collections::HashMap::default(),
            entries_max: entries_max.max(1),
        }
    }

    fn hash(&self, key: &[u8]) -> u128 {
        use std::hash::BuildHasher;
        (u128::from(self.first.hash_one(key)) << 64) | u128::from(self.second.hash_one(key))
    }

    /// Records that `key` is at `offset` (offsets come in increasing order).
    pub fn insert(&mut self, key: &[u8], offset: i64) {
        let hash = self.hash(key);
        self.latest.insert(hash, offset);
    }

    /// The latest offset of `key` seen, if any.
    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(&self.hash(key)).copied()
    }

    /// The latest offset of every key, in no order.
    pub fn offsets(&self) -> impl Iterator<Item = i64> + '_ {
        self.latest.values().copied()
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// No more keys should be added.
    pub fn is_full(&self) -> bool {
        self.latest.len() >= self.entries_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build_keyed_batch, BuildBatch, KeyValue};

    fn keyed_batch(records: &[KeyValue<'_>]) -> Vec<u8> {
        build_keyed_batch(
            BuildBatch {
                base_timestamp: 1_000,
                ..BuildBatch::default()
            },
            records,
        )
    }

    #[test]
    fn parses_keys_values_and_tombstones() {
        let bytes = keyed_batch(&[
            (Some(b"a"), Some(b"1")),
            (None, Some(b"2")),
            (Some(b"bb"), None),
        ]);
        let header = batch::validate(&bytes, usize::MAX).unwrap();
        let area = record_area(&bytes, &header, &NoCodecs, usize::MAX).unwrap();
        let records = parse_records(&area, header.record_count).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].key, Some(&b"a"[..]));
        assert!(!records[0].tombstone);
        assert_eq!(records[1].key, None);
        assert_eq!(records[2].key, Some(&b"bb"[..]));
        assert!(records[2].tombstone);
        assert_eq!(records[2].offset_delta, 2);
    }

    #[test]
    fn rewritten_batch_keeps_offsets_and_checks() {
        let bytes = keyed_batch(&[
            (Some(b"a"), Some(b"1")),
            (Some(b"b"), Some(b"2")),
            (Some(b"a"), Some(b"3")),
        ]);
        let header = batch::validate(&bytes, usize::MAX).unwrap();
        let area = record_area(&bytes, &header, &NoCodecs, usize::MAX).unwrap();
        let records = parse_records(&area, header.record_count).unwrap();
        let kept = [records[1], records[2]];
        let out = rewrite_batch(&bytes, &header, &kept, &NoCodecs).unwrap();
        let rewritten = BatchHeader::parse(&out).unwrap();
        assert_eq!(rewritten.total_bytes(), out.len());
        assert_eq!(batch::compute_crc(&out), rewritten.crc);
        assert_eq!(rewritten.base_offset, header.base_offset);
        assert_eq!(rewritten.last_offset_delta, 2);
        assert_eq!(rewritten.record_count, 2);
        assert_eq!(rewritten.max_timestamp, 1_000);
        let again = parse_records(&out[BATCH_HEADER_BYTES..], 2).unwrap();
        assert_eq!(again[0].offset_delta, 1);
        assert_eq!(again[1].offset_delta, 2);
    }

    #[test]
    fn empty_batches_are_bare_headers() {
        let out = empty_batch(10, 19, 3, 1_000).unwrap();
        let header = BatchHeader::parse(&out).unwrap();
        assert_eq!(out.len(), BATCH_HEADER_BYTES);
        assert_eq!(header.base_offset, 10);
        assert_eq!(header.last_offset(), 19);
        assert_eq!(header.record_count, 0);
        assert_eq!(header.producer_id, -1);
        assert_eq!(batch::compute_crc(&out), header.crc);
        assert!(empty_batch(0, i64::from(i32::MAX) + 1, 0, 0).is_err());
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let bytes = keyed_batch(&[(Some(b"key"), Some(b"value"))]);
        let area = &bytes[BATCH_HEADER_BYTES..];
        for cut in 0..area.len() {
            assert!(parse_records(&area[..cut], 1).is_err(), "cut at {cut}");
        }
        assert!(parse_records(area, 2).is_err());
        assert!(parse_records(area, -1).is_err());
    }

    #[test]
    fn key_map_keeps_the_latest_offset() {
        let mut map = KeyMap::new(2);
        map.insert(b"a", 1);
        map.insert(b"a", 5);
        assert_eq!(map.latest(b"a"), Some(5));
        assert_eq!(map.latest(b"b"), None);
        assert!(!map.is_full());
        map.insert(b"b", 6);
        assert!(map.is_full());
    }

    #[test]
    fn the_table_takes_the_key_hash_as_it_is() {
        use std::hash::BuildHasher;
        let hashed = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128;
        assert_eq!(KeyHashed.hash_one(hashed), 0xfedc_ba98_7654_3210);
        // Bytes, which the map never hashes, are still spread.
        assert_ne!(KeyHashed.hash_one(b"a"), KeyHashed.hash_one(b"b"));
        let mut map = KeyMap::new(1 << 16);
        for key in 0u32..10_000 {
            map.insert(&key.to_le_bytes(), i64::from(key));
        }
        assert_eq!(map.len(), 10_000);
        assert!((0u32..10_000).all(|key| map.latest(&key.to_le_bytes()) == Some(i64::from(key))));
    }
}
