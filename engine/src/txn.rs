//! The partition side of transactions: Kafka's control batches (the commit
//! and abort markers a transaction coordinator writes into every partition a
//! transaction touched) and the aborted-transaction index entries that
//! read_committed fetches need.
//!
//! A control batch is a v2 batch with the transactional and control
//! attribute bits set, the producer's id and epoch, base sequence -1 and one
//! record whose key is `version i16 = 0, type i16` (0 abort, 1 commit) and
//! whose value is `version i16 = 0, coordinator_epoch i32`. The engine builds
//! them for [`TxnMarker`]s and recognises them on append and on recovery.
//!
//! An aborted transaction is remembered as Kafka's `.txnindex` entry: the
//! producer, the offsets of its first batch and of its abort marker, and the
//! last stable offset once it ended. See `docs/format.md`.

use crate::batch::{self, attributes, BatchHeader, BATCH_HEADER_BYTES};

/// What a control record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControlType {
    Abort,
    Commit,
}

impl ControlType {
    /// Kafka's control record type id.
    pub fn id(self) -> i16 {
        match self {
            ControlType::Abort => CONTROL_TYPE_ABORT,
            ControlType::Commit => CONTROL_TYPE_COMMIT,
        }
    }
}

/// Kafka's control record type ids for transaction markers.
const CONTROL_TYPE_ABORT: i16 = 0;
const CONTROL_TYPE_COMMIT: i16 = 1;
/// The control record key and end-marker value versions Kafka writes.
const CONTROL_KEY_VERSION: i16 = 0;
const MARKER_VALUE_VERSION: i16 = 0;
/// Bytes of the control record key: version i16, type i16.
const CONTROL_KEY_BYTES: usize = 4;
/// Bytes of the end-marker value: version i16, coordinator epoch i32.
const MARKER_VALUE_BYTES: usize = 6;

/// A transaction marker for one partition, as a coordinator asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Commit (`true`) or abort (`false`).
    pub commit: bool,
    pub coordinator_epoch: i32,
    /// Kafka's `transaction.version` of the transaction the marker ends
    /// (KIP-1228; WriteTxnMarkers v2 carries it, older requests mean 0). It
    /// is not written into the control batch: it only decides how strictly
    /// the partition checks the marker's producer epoch, see
    /// [`TxnMarker::bumps_epoch`].
    pub transaction_version: i8,
}

impl TxnMarker {
    /// The first transaction version whose coordinator bumps the producer
    /// epoch at every transaction end (KIP-890 part 2).
    pub const EPOCH_BUMP_TRANSACTION_VERSION: i8 = 2;

    /// Whether the marker's epoch is the one its coordinator bumped at the
    /// transaction's end, above the epoch of every batch of the
    /// transaction. A partition then refuses one at the epoch of the
    /// transaction open there (a late or duplicate marker, which would
    /// otherwise end a transaction it does not belong to); the older
    /// versions end a transaction at its own epoch, so only an older epoch
    /// is refused.
    pub fn bumps_epoch(&self) -> bool {
        self.transaction_version >= Self::EPOCH_BUMP_TRANSACTION_VERSION
    }

    pub fn control_type(&self) -> ControlType {
        if self.commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        }
    }
}

/// The record of a control batch that ends a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlRecord {
    pub control_type: ControlType,
    /// -1 if the record carries no value.
    pub coordinator_epoch: i32,
}

/// One aborted transaction of a partition (an entry of Kafka's `.txnindex`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first batch in this partition.
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
    /// The partition's last stable offset once this transaction ended.
    pub last_stable_offset: i64,
}

/// Bytes of one `.txnindex` entry: version i16, producer id i64, first
/// offset i64, last offset i64, last stable offset i64.
pub const TXN_INDEX_ENTRY_BYTES: usize = 2 + 8 + 8 + 8 + 8;
/// The `.txnindex` entry version Kafka writes.
const TXN_INDEX_VERSION: i16 = 0;

impl AbortedTxn {
    /// Appends the entry's 34 big-endian bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&TXN_INDEX_VERSION.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }
}

/// Encodes a whole `.txnindex` file.
pub fn encode_txn_index(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * TXN_INDEX_ENTRY_BYTES);
    for entry in entries {
        entry.encode_into(&mut out);
    }
    out
}

/// Decodes a `.txnindex` file. `None` if its length is not a whole number
/// of entries or an entry has an unknown version (the caller rebuilds or
/// reports it).
pub fn decode_txn_index(bytes: &[u8]) -> Option<Vec<AbortedTxn>> {
    if !bytes.len().is_multiple_of(TXN_INDEX_ENTRY_BYTES) {
        return None;
    }
    let mut entries = Vec::with_capacity(bytes.len() / TXN_INDEX_ENTRY_BYTES);
    for chunk in bytes.chunks_exact(TXN_INDEX_ENTRY_BYTES) {
        let version = i16::from_be_bytes([chunk[0], chunk[1]]);
        if version != TXN_INDEX_VERSION {
            return None;
        }
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&chunk[at..at + 8]);
            i64::from_be_bytes(bytes)
        };
        entries.push(AbortedTxn {
            producer_id: word(2),
            first_offset: word(10),
            last_offset: word(18),
            last_stable_offset: word(26),
        });
    }
    Some(entries)
}

/// Builds the control batch of `marker`, timestamped `timestamp`. Base
/// offset and leader epoch are zero; the log assigns them on append.
pub fn build_control_batch(marker: &TxnMarker, timestamp: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(CONTROL_KEY_BYTES);
    key.extend_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key.extend_from_slice(&marker.control_type().id().to_be_bytes());
    let mut value = Vec::with_capacity(MARKER_VALUE_BYTES);
    value.extend_from_slice(&MARKER_VALUE_VERSION.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut body = Vec::with_capacity(32);
    body.push(0); // record attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, 0); // offset delta
    put_varint(&mut body, key.len() as i64);
    body.extend_from_slice(&key);
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(&value);
    put_varint(&mut body, 0); // no headers
    let mut record = Vec::with_capacity(body.len() + 2);
    put_varint(&mut record, body.len() as i64);
    record.extend_from_slice(&body);
    let total = BATCH_HEADER_BYTES + record.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset
    out.extend_from_slice(&((total - batch::LOG_OVERHEAD) as i32).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
    out.push(batch::MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, set below
    out.extend_from_slice(&(attributes::TRANSACTIONAL | attributes::CONTROL).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    out.extend_from_slice(&timestamp.to_be_bytes()); // base timestamp
    out.extend_from_slice(&timestamp.to_be_bytes()); // max timestamp
    out.extend_from_slice(&marker.producer_id.to_be_bytes());
    out.extend_from_slice(&marker.producer_epoch.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    out.extend_from_slice(&1i32.to_be_bytes()); // record count
    out.extend_from_slice(&record);
    let crc = batch::compute_crc(&out);
    out[batch::CRC_AT..batch::CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Reads the transaction marker in a control batch (`bytes` is the whole,
/// already validated batch). `None` if the batch is not a control batch,
/// is compressed, or its first record is not a commit or abort marker (Kafka
/// defines other control types that end no transaction).
pub fn parse_control_batch(bytes: &[u8]) -> Option<ControlRecord> {
    let header = BatchHeader::parse(bytes).ok()?;
    if !header.is_control() || header.compression() != 0 || header.record_count < 1 {
        return None;
    }
    let mut at = BATCH_HEADER_BYTES;
    let (length, used) = read_varint(bytes.get(at..)?)?;
    at += used;
    let record_end = at.checked_add(usize::try_from(length).ok()?)?;
    let record = bytes.get(at..record_end)?;
    let mut at = 1; // record attributes
    for _ in 0..2 {
        // timestamp delta, offset delta
        let (_, used) = read_varint(record.get(at..)?)?;
        at += used;
    }
    let (key_length, used) = read_varint(record.get(at..)?)?;
    at += used;
    let key_end = at.checked_add(usize::try_from(key_length).ok()?)?;
    let key = record.get(at..key_end)?;
    at = key_end;
    if key.len() < CONTROL_KEY_BYTES {
        return None;
    }
    let control_type = match i16::from_be_bytes([key[2], key[3]]) {
        CONTROL_TYPE_ABORT => ControlType::Abort,
        CONTROL_TYPE_COMMIT => ControlType::Commit,
        _ => return None,
    };
    let (value_length, used) = read_varint(record.get(at..)?)?;
    at += used;
    let coordinator_epoch = usize::try_from(value_length)
        .ok()
        .and_then(|length| record.get(at..at.checked_add(length)?))
        .filter(|value| value.len() >= MARKER_VALUE_BYTES)
        .map_or(-1, |value| {
            i32::from_be_bytes([value[2], value[3], value[4], value[5]])
        });
    Some(ControlRecord {
        control_type,
        coordinator_epoch,
    })
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

fn read_varint(bytes: &[u8]) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Some((decoded, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::validate;

    fn marker(commit: bool) -> TxnMarker {
        TxnMarker {
            producer_id: 4242,
            producer_epoch: 7,
            commit,
            coordinator_epoch: 13,
            transaction_version: 0,
        }
    }

    #[test]
    fn control_batches_build_validate_and_parse() {
        for commit in [false, true] {
            let bytes = build_control_batch(&marker(commit), 1_700_000_000_000);
            let header = validate(&bytes, usize::MAX).expect("a valid batch");
            assert!(header.is_control());
            assert!(header.is_transactional());
            assert_eq!(header.producer_id, 4242);
            assert_eq!(header.producer_epoch, 7);
            assert_eq!(header.base_sequence, -1);
            assert_eq!(header.record_count, 1);
            assert_eq!(header.last_offset_delta, 0);
            assert_eq!(header.max_timestamp, 1_700_000_000_000);
            let parsed = parse_control_batch(&bytes).expect("a marker");
            let expected = if commit {
                ControlType::Commit
            } else {
                ControlType::Abort
            };
            assert_eq!(parsed.control_type, expected);
            assert_eq!(parsed.coordinator_epoch, 13);
        }
    }

    #[test]
    fn record_layout_matches_kafka() {
        let bytes = build_control_batch(&marker(true), 5);
        let record = &bytes[BATCH_HEADER_BYTES..];
        // length, attributes, timestamp delta, offset delta, key length 4,
        // key (0, 1), value length 6, value (0, 13), no headers.
        assert_eq!(
            record,
            &[32, 0, 0, 0, 8, 0, 0, 0, 1, 12, 0, 0, 0, 0, 0, 13, 0][..]
        );
    }

    #[test]
    fn data_and_damaged_batches_are_not_markers() {
        let data = batch::build_batch(1, &[b"value"]);
        assert_eq!(parse_control_batch(&data), None);
        let good = build_control_batch(&marker(false), 1);
        for cut in BATCH_HEADER_BYTES..good.len() {
            // Cut short: the header says control, the record is incomplete.
            let short = &good[..cut];
            if let Some(parsed) = parse_control_batch(short) {
                // Only a missing value part may still yield the type.
                assert_eq!(parsed.control_type, ControlType::Abort);
                assert_eq!(parsed.coordinator_epoch, -1);
            }
        }
        let mut other_type = good.clone();
        // Key type 2 (a leader-change record): no transaction marker.
        other_type[BATCH_HEADER_BYTES + 8] = 2;
        assert_eq!(parse_control_batch(&other_type), None);
    }

    #[test]
    fn txn_index_round_trips() {
        let entries = vec![
            AbortedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 20,
                last_stable_offset: 21,
            },
            AbortedTxn {
                producer_id: i64::MAX,
                first_offset: 0,
                last_offset: 1,
                last_stable_offset: 0,
            },
        ];
        let bytes = encode_txn_index(&entries);
        assert_eq!(bytes.len(), 2 * TXN_INDEX_ENTRY_BYTES);
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &1i64.to_be_bytes());
        assert_eq!(decode_txn_index(&bytes), Some(entries));
        assert_eq!(decode_txn_index(&bytes[..33]), None);
        let mut bad_version = bytes.clone();
        bad_version[1] = 1;
        assert_eq!(decode_txn_index(&bad_version), None);
        assert_eq!(decode_txn_index(&[]), Some(vec![]));
    }
}
