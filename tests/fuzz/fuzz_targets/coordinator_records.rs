//! The coordinators' record decoders, as replay on load uses them:
//! `__consumer_offsets` keys and values (offsets, classic group metadata and
//! the KIP-848 consumer-group records) and `__transaction_state` keys and
//! values, plus the batch reader both coordinators share.
//!
//! Input: byte 0 picks the mode (`sluice_fuzz::coordinator_mode`). The
//! record modes split the rest into chunks (`sluice_fuzz::split_chunks`):
//! the first is the key, the second, if any, the value (none: a tombstone).
//! The batch mode reads the rest as a partition's record set.
//!
//! The dispatch from key to value decoder mirrors `groups::replay::State::
//! apply` and `txn` loading, which are private to sluice-net.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_engine::batch::BatchHeader;
use sluice_engine::txn::parse_control_batch;
use sluice_fuzz::coordinator_mode;
use sluice_net::groups::consumer_records::{self, ConsumerKey};
use sluice_net::groups::records::{self, RecordKey};
use sluice_net::txn::records as txn_records;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % coordinator_mode::MODES {
        coordinator_mode::OFFSETS_RECORD | coordinator_mode::TXN_RECORD => {
            let chunks = sluice_fuzz::split_chunks(rest);
            let Some(&(_, key)) = chunks.first() else {
                return;
            };
            let key = Bytes::copy_from_slice(key);
            let value = chunks
                .get(1)
                .map(|&(_, value)| Bytes::copy_from_slice(value));
            if mode % coordinator_mode::MODES == coordinator_mode::OFFSETS_RECORD {
                offsets_record(key, value);
            } else {
                txn_record(key, value);
            }
        }
        _ => batches(Bytes::copy_from_slice(rest)),
    }
});

/// `groups::replay::State::apply` for one record.
fn offsets_record(key: Bytes, value: Option<Bytes>) {
    let Ok(Some(key)) = records::decode_key(key) else {
        return;
    };
    let Some(value) = value else {
        return;
    };
    match key {
        RecordKey::Offset { .. } => {
            let _ = records::decode_offset_value(value);
        }
        RecordKey::Group { .. } => {
            if let Ok(group) = records::decode_group_value(value) {
                for member in &group.members {
                    let _ = records::subscription_topics(&member.subscription);
                }
            }
        }
        RecordKey::Consumer { key, .. } => match key {
            ConsumerKey::Metadata => {
                let _ = consumer_records::decode_metadata(value);
            }
            ConsumerKey::PartitionMetadata => {
                let _ = consumer_records::decode_partition_metadata(value);
            }
            ConsumerKey::Member(_) => {
                let _ = consumer_records::decode_member(value);
            }
            ConsumerKey::TargetMetadata => {
                let _ = consumer_records::decode_target_metadata(value);
            }
            ConsumerKey::TargetMember(_) => {
                let _ = consumer_records::decode_target_member(value);
            }
            ConsumerKey::CurrentAssignment(_) => {
                let _ = consumer_records::decode_current(value);
            }
        },
    }
}

/// `__transaction_state` loading for one record.
fn txn_record(key: Bytes, value: Option<Bytes>) {
    let Ok(Some(_transactional_id)) = txn_records::decode_key(key) else {
        return;
    };
    if let Some(value) = value {
        if let Ok(decoded) = txn_records::decode_value(value) {
            // Values round-trip: what loads is what a rewrite stores.
            let encoded = txn_records::encode_value(&decoded);
            assert_eq!(txn_records::decode_value(encoded), Ok(decoded));
        }
    }
}

/// A coordinator partition's batches as the load scan reads them.
fn batches(records: Bytes) {
    let (batches, end) = records::split_batches(&records);
    assert!(end <= records.len());
    for batch in batches {
        if parse_control_batch(&batch).is_some() {
            let _ = BatchHeader::parse(&batch);
            continue;
        }
        let Ok((_header, parsed)) = records::parse_batch(batch) else {
            continue;
        };
        for record in parsed {
            if let Some(key) = record.key {
                offsets_record(key.clone(), record.value.clone());
                txn_record(key, record.value);
            }
        }
    }
}
