//! Record batches as the produce path checks them, and as a fetching client
//! decompresses them.
//!
//! Input: byte 0 holds flags (bit 0: recompute every batch's CRC-32C after
//! mutation, so half of the inputs get past the checksum; bit 1: the client
//! checks CRCs; bits 2-3: which size limit the produce path applies), the
//! rest is the `records` field of one produce partition.
//!
//! The broker never decompresses a producer's batch (the engine validates
//! the header only and stores the bytes as sent); decompression happens in
//! the client (`glommio_client::records::BatchIter`), capped at
//! `DECOMPRESSED_BATCH_BYTES_MAX`. Both are run here.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_engine::batch::{self, BATCH_HEADER_BYTES};
use sluice_engine::constants::{BATCH_BYTES_MAX, MESSAGE_BYTES_MAX_DEFAULT};
use sluice_engine::log::fuzz_api;
use sluice_engine::txn;
use sluice_net::glommio_client::records::BatchIter;

const FIX_CRCS: u8 = 0x01;
const CLIENT_CHECKS_CRCS: u8 = 0x02;
const LIMIT_SHIFT: u8 = 2;
const LIMIT_MASK: u8 = 0x03;

/// Limits the produce path meets: a topic's default `max.message.bytes`,
/// the smallest it clamps to, the engine's own bound, and none.
const LIMITS: [usize; 4] = [
    MESSAGE_BYTES_MAX_DEFAULT as usize,
    BATCH_HEADER_BYTES,
    BATCH_BYTES_MAX,
    usize::MAX,
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut records = rest.to_vec();
    if flags & FIX_CRCS != 0 {
        sluice_fuzz::fix_batch_crcs(&mut records);
    }
    let records = Bytes::from(records);
    let limit = LIMITS[usize::from((flags >> LIMIT_SHIFT) & LIMIT_MASK)];

    // The produce path (`Broker::produce`): split and validate with the
    // limit clamped as there, then the control-marker check of `append`.
    if let Ok(batches) = batch::split_and_validate(&records, limit.max(BATCH_HEADER_BYTES)) {
        let mut total = 0usize;
        for (header, bytes) in &batches {
            assert_eq!(header.total_bytes(), bytes.len());
            assert!(bytes.len() <= limit.clamp(BATCH_HEADER_BYTES, BATCH_BYTES_MAX));
            assert_eq!(
                i64::from(header.last_offset_delta) + 1,
                i64::from(header.record_count)
            );
            assert_eq!(batch::compute_crc(bytes), header.crc);
            total += bytes.len();
            if header.is_control() {
                let _ = txn::parse_control_batch(bytes);
            }
            // ListOffsets by timestamp reads the records of a stored batch.
            let targets = [
                i64::MIN,
                header.base_timestamp,
                header.max_timestamp,
                i64::MAX,
            ];
            for target in targets {
                let _ = fuzz_api::find_record_at_or_after(bytes, target);
            }
        }
        assert_eq!(total, records.len());
    }

    // The client's fetch path: walk, verify, decompress, read every record.
    for batch in BatchIter::new(records, flags & CLIENT_CHECKS_CRCS != 0) {
        let Ok(batch) = batch else {
            break;
        };
        for record in batch.records() {
            if record.is_err() {
                break;
            }
        }
    }
});
