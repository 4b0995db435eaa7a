//! The records of `__transaction_state`, in Kafka's TransactionLog schemas.
//!
//! Key (version 0): the transactional id. Value version 0: producer id,
//! producer epoch, transaction timeout, status, the partitions of the
//! transaction (topic, partition ids), last update and start timestamps.
//! Version 1 is the flexible form of the same fields plus tagged fields:
//! previous producer id (tag 0), next producer id (tag 1) and the client's
//! transaction version (tag 2). Sluice writes v0 unless a tagged field has a
//! non-default value, and reads both. A null value is a tombstone: the id
//! expired.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::Reader;
use crate::groups::records::RecordError;

/// The key version Kafka writes.
const KEY_VERSION: i16 = 0;
/// Value versions: 0 classic, 1 flexible with tagged fields.
const VALUE_VERSION_CLASSIC: i16 = 0;
const VALUE_VERSION_FLEXIBLE: i16 = 1;
/// Tags of the v1 value's tagged fields.
const TAG_PREVIOUS_PRODUCER_ID: i32 = 0;
const TAG_NEXT_PRODUCER_ID: i32 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: i32 = 2;

/// Kafka's transaction states, with their ids in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnStatus {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnStatus {
    pub fn id(self) -> i8 {
        match self {
            TxnStatus::Empty => 0,
            TxnStatus::Ongoing => 1,
            TxnStatus::PrepareCommit => 2,
            TxnStatus::PrepareAbort => 3,
            TxnStatus::CompleteCommit => 4,
            TxnStatus::CompleteAbort => 5,
            TxnStatus::Dead => 6,
            TxnStatus::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnStatus> {
        Some(match id {
            0 => TxnStatus::Empty,
            1 => TxnStatus::Ongoing,
            2 => TxnStatus::PrepareCommit,
            3 => TxnStatus::PrepareAbort,
            4 => TxnStatus::CompleteCommit,
            5 => TxnStatus::CompleteAbort,
            6 => TxnStatus::Dead,
            7 => TxnStatus::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions use (Kafka's
    /// `TransactionState.stateName`).
    pub fn name(self) -> &'static str {
        match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
            TxnStatus::Dead => "Dead",
            TxnStatus::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnStatus> {
        (0..=7)
            .filter_map(TxnStatus::from_id)
            .find(|status| status.name() == name)
    }
}

/// A transaction's state as one value record holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnValue {
    pub producer_id: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    /// Topic → partition ids, sorted.
    pub partitions: Vec<(String, Vec<i32>)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
    pub client_transaction_version: i16,
}

/// The key of a transactional id's records.
pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + transactional_id.len());
    out.put_i16(KEY_VERSION);
    put_string(&mut out, transactional_id);
    out.freeze()
}

/// The transactional id of a key; `None` for a key version Sluice does not
/// know (skipped on replay).
pub fn decode_key(bytes: Bytes) -> Result<Option<String>, RecordError> {
    let mut reader = Reader::new(bytes);
    let version = reader.i16()?;
    if version != KEY_VERSION {
        return Ok(None);
    }
    Ok(Some(reader.string()?.to_string()))
}

fn put_string(out: &mut BytesMut, text: &str) {
    // Transactional ids and topic names are bounded far below i16::MAX by
    // the requests that bring them.
    out.put_i16(text.len().min(i16::MAX as usize) as i16);
    out.put_slice(&text.as_bytes()[..text.len().min(i16::MAX as usize)]);
}

fn put_unsigned_varint(out: &mut BytesMut, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

fn put_compact_string(out: &mut BytesMut, text: &str) {
    put_unsigned_varint(out, text.len() as u64 + 1);
    out.put_slice(text.as_bytes());
}

/// Encodes a value record.
pub fn encode_value(value: &TxnValue) -> Bytes {
    let flexible = value.previous_producer_id != -1
        || value.next_producer_id != -1
        || value.client_transaction_version != 0;
    let mut out = BytesMut::with_capacity(64);
    out.put_i16(if flexible {
        VALUE_VERSION_FLEXIBLE
    } else {
        VALUE_VERSION_CLASSIC
    });
    out.put_i64(value.producer_id);
    out.put_i16(value.producer_epoch);
    out.put_i32(value.timeout_ms);
    out.put_i8(value.status.id());
    if flexible {
        put_unsigned_varint(&mut out, value.partitions.len() as u64 + 1);
        for (topic, partitions) in &value.partitions {
            put_compact_string(&mut out, topic);
            put_unsigned_varint(&mut out, partitions.len() as u64 + 1);
            for partition in partitions {
                out.put_i32(*partition);
            }
            put_unsigned_varint(&mut out, 0); // no tagged fields
        }
    } else {
        out.put_i32(value.partitions.len() as i32);
        for (topic, partitions) in &value.partitions {
            put_string(&mut out, topic);
            out.put_i32(partitions.len() as i32);
            for partition in partitions {
                out.put_i32(*partition);
            }
        }
    }
    out.put_i64(value.last_update_ms);
    out.put_i64(value.start_ms);
    if flexible {
        let mut tags: Vec<(i32, Vec<u8>)> = Vec::new();
        if value.previous_producer_id != -1 {
            tags.push((
                TAG_PREVIOUS_PRODUCER_ID,
                value.previous_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if value.next_producer_id != -1 {
            tags.push((
                TAG_NEXT_PRODUCER_ID,
                value.next_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if value.client_transaction_version != 0 {
            tags.push((
                TAG_CLIENT_TRANSACTION_VERSION,
                value.client_transaction_version.to_be_bytes().to_vec(),
            ));
        }
        put_unsigned_varint(&mut out, tags.len() as u64);
        for (tag, bytes) in tags {
            put_unsigned_varint(&mut out, tag as u64);
            put_unsigned_varint(&mut out, bytes.len() as u64);
            out.put_slice(&bytes);
        }
    }
    out.freeze()
}

/// Decodes a value record (v0 or v1).
pub fn decode_value(bytes: Bytes) -> Result<TxnValue, RecordError> {
    let mut reader = Reader::new(bytes);
    let version = reader.i16()?;
    if !(VALUE_VERSION_CLASSIC..=VALUE_VERSION_FLEXIBLE).contains(&version) {
        return Err(RecordError::UnknownVersion(version));
    }
    let flexible = version >= VALUE_VERSION_FLEXIBLE;
    let producer_id = reader.i64()?;
    let producer_epoch = reader.i16()?;
    let timeout_ms = reader.i32()?;
    let status_id = reader.i8()?;
    let status = TxnStatus::from_id(status_id)
        .ok_or_else(|| RecordError::Record(format!("unknown transaction status {status_id}")))?;
    let partitions = reader
        .nullable_array_v(flexible, |reader| {
            let topic: kafka_protocol::protocol::StrBytes = reader.string_v(flexible)?;
            let ids = reader.array_v(flexible, |reader| reader.i32())?;
            if flexible {
                reader.tagged_fields(&mut Default::default())?;
            }
            Ok((topic.to_string(), ids))
        })?
        .unwrap_or_default();
    let last_update_ms = reader.i64()?;
    let start_ms = reader.i64()?;
    let mut value = TxnValue {
        producer_id,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch,
        timeout_ms,
        status,
        partitions,
        last_update_ms,
        start_ms,
        client_transaction_version: 0,
    };
    if flexible {
        let mut tags = std::collections::BTreeMap::new();
        reader.tagged_fields(&mut tags)?;
        let long = |bytes: &Bytes| -> Option<i64> {
            let array: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
            Some(i64::from_be_bytes(array))
        };
        if let Some(id) = tags.get(&TAG_PREVIOUS_PRODUCER_ID).and_then(long) {
            value.previous_producer_id = id;
        }
        if let Some(id) = tags.get(&TAG_NEXT_PRODUCER_ID).and_then(long) {
            value.next_producer_id = id;
        }
        if let Some(bytes) = tags.get(&TAG_CLIENT_TRANSACTION_VERSION) {
            if let Some(array) = bytes.get(..2).and_then(|b| <[u8; 2]>::try_from(b).ok()) {
                value.client_transaction_version = i16::from_be_bytes(array);
            }
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(client_transaction_version: i16) -> TxnValue {
        TxnValue {
            producer_id: 1000,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 3,
            timeout_ms: 60_000,
            status: TxnStatus::Ongoing,
            partitions: vec![("a".into(), vec![0, 2]), ("b".into(), vec![1])],
            last_update_ms: 17,
            start_ms: 11,
            client_transaction_version,
        }
    }

    #[test]
    fn values_round_trip_in_both_versions() {
        for version in [0, 2] {
            let value = sample(version);
            let bytes = encode_value(&value);
            assert_eq!(&bytes[..2], &[0, if version == 0 { 0 } else { 1 }]);
            assert_eq!(decode_value(bytes).unwrap(), value);
        }
    }

    #[test]
    fn v0_layout_matches_kafka() {
        let value = TxnValue {
            partitions: vec![("t".into(), vec![5])],
            ..sample(0)
        };
        let bytes = encode_value(&value);
        let mut expected = vec![0u8, 0];
        expected.extend_from_slice(&1000i64.to_be_bytes());
        expected.extend_from_slice(&3i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(1);
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&[0, 1, b't']);
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&5i32.to_be_bytes());
        expected.extend_from_slice(&17i64.to_be_bytes());
        expected.extend_from_slice(&11i64.to_be_bytes());
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn keys_round_trip_and_damage_is_an_error() {
        let key = encode_key("my-txn");
        assert_eq!(&key[..], &[0, 0, 0, 6, b'm', b'y', b'-', b't', b'x', b'n']);
        assert_eq!(decode_key(key).unwrap().as_deref(), Some("my-txn"));
        let bytes = encode_value(&sample(0));
        for cut in 0..bytes.len() {
            assert!(decode_value(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
        assert!(decode_key(Bytes::from_static(&[0, 0, 0, 9, b'a'])).is_err());
    }
}
