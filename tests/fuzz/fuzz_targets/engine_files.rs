//! The engine's on-disk readers: segment recovery scan, offset and time
//! indexes, `.txnindex`, producer snapshots, `recovery-point`,
//! `log-start-offset`, `leader-epoch-checkpoint`, and the metadata store's
//! snapshot file.
//!
//! Input: byte 0 holds flags (`sluice_fuzz::engine_flags`). Without
//! `METADATA_STORE` the rest is a list of chunks (`sluice_fuzz::split_chunks`)
//! naming the files of one partition directory; they are written to an
//! in-memory disk and read back with the engine's own readers in the order
//! `PartitionLog::open` uses them (`sluice_engine::log::fuzz_api::recover`).
//! With `METADATA_STORE` the rest is `meta/cluster.snapshot`, loaded by
//! `FileMetadataStore::load`. `FRAME` treats checkpoint files as payloads
//! and frames them with a valid CRC, so the decoders behind it are reached.
#![no_main]

use std::path::PathBuf;

use futures_lite::future::block_on;
use libfuzzer_sys::fuzz_target;
use sluice_engine::index::SegmentIndex;
use sluice_engine::log::fuzz_api::{self, LogDirFiles};
use sluice_engine::metadata::{self, FileMetadataStore, MetadataStore};
use sluice_engine::recovery_point::{RecoveryPoint, RECOVERY_POINT_BYTES};
use sluice_engine::storage::MemStorage;
use sluice_engine::{txn, Storage};
use sluice_fuzz::{engine_file, engine_flags};

/// The frame version of `log-start-offset` (the checkpoint version).
const LOG_START_FRAME_VERSION: u16 = 1;
/// The producer-snapshot frame version before transactions.
const PRODUCER_FRAME_VERSION_V1: u16 = 1;
/// The node id the single-node metadata store assigns every partition to.
const METADATA_NODE_ID: i32 = 1;
/// Where `FileMetadataStore` keeps its snapshot and its space reserve under
/// the data directory (private names in `engine/src/metadata.rs`).
const METADATA_SNAPSHOT_PATH: &str = "meta/cluster.snapshot";
const METADATA_RESERVE_PATH: &str = "meta/space.reserve";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if flags & engine_flags::METADATA_STORE != 0 {
        metadata_store(flags, rest);
    } else {
        log_dir(flags, rest);
    }
});

fn log_dir(flags: u8, rest: &[u8]) {
    let frame = flags & engine_flags::FRAME != 0;
    let producer_version = if flags & engine_flags::PRODUCER_FRAME_V1 != 0 {
        PRODUCER_FRAME_VERSION_V1
    } else {
        fuzz_api::PRODUCER_SNAPSHOT_FRAME_VERSION
    };
    let framed = |bytes: &[u8], version: u16| {
        if frame {
            fuzz_api::encode_checkpoint_frame(bytes, version)
        } else {
            bytes.to_vec()
        }
    };
    let mut files = LogDirFiles::default();
    for (tag, bytes) in sluice_fuzz::split_chunks(rest) {
        match tag % engine_file::TAGS {
            engine_file::SEGMENT => files.segment = bytes.to_vec(),
            engine_file::OFFSET_INDEX => files.offset_index = Some(bytes.to_vec()),
            engine_file::TIME_INDEX => files.time_index = Some(bytes.to_vec()),
            engine_file::TXN_INDEX => files.txn_index = Some(bytes.to_vec()),
            engine_file::PRODUCER_SNAPSHOT => {
                files.producer_snapshot = Some(framed(bytes, producer_version))
            }
            engine_file::RECOVERY_POINT => {
                files.recovery_point = Some(framed(bytes, producer_version))
            }
            engine_file::LOG_START => {
                files.log_start = Some(framed(bytes, LOG_START_FRAME_VERSION))
            }
            _ => files.epoch_checkpoint = Some(bytes.to_vec()),
        }
    }
    if flags & engine_flags::FIX_BATCH_CRCS != 0 {
        sluice_fuzz::fix_batch_crcs(&mut files.segment);
    }

    // The pure decoders directly, whatever the recovery path makes of them.
    if let (Some(offsets), Some(times)) = (&files.offset_index, &files.time_index) {
        if let Some(index) = SegmentIndex::decode(offsets, times, files.segment.len() as u64) {
            assert!(index
                .offsets
                .iter()
                .all(|entry| (entry.position as usize) < files.segment.len().max(1)));
        }
    }
    if let Some(bytes) = &files.txn_index {
        let _ = txn::decode_txn_index(bytes);
    }
    if let Some(payload) = files.recovery_point.as_ref().filter(|_| !frame) {
        let _ = RecoveryPoint::decode(payload.get(..RECOVERY_POINT_BYTES).unwrap_or(payload));
    }

    if let Ok(recovered) = fuzz_api::recover(&files) {
        // Recovery keeps a prefix of the segment and never invents data.
        assert!(recovered.valid_bytes <= files.segment.len() as u64);
        assert!(recovered.batches as u64 <= recovered.valid_bytes);
        assert!(recovered.next_offset >= fuzz_api::SEGMENT_BASE || recovered.resumed);
    }
}

fn metadata_store(flags: u8, rest: &[u8]) {
    let bytes = if flags & engine_flags::FRAME != 0 {
        metadata::encode_snapshot(rest)
    } else {
        rest.to_vec()
    };
    let storage = MemStorage::new(1);
    let data_dir = PathBuf::from("/fuzz/data");
    let loaded = block_on(async {
        // With the reserve present, `keep_reserve` writes nothing.
        storage
            .write_small_atomic(&data_dir.join(METADATA_RESERVE_PATH), &[])
            .await
            .ok()?;
        storage
            .write_small_atomic(&data_dir.join(METADATA_SNAPSHOT_PATH), &bytes)
            .await
            .ok()?;
        let store = FileMetadataStore::new(storage.clone(), data_dir.clone(), METADATA_NODE_ID);
        store.load().await.ok()
    });
    if let Some(Some(image)) = loaded {
        for topic in image.topics.values() {
            assert_eq!(
                topic.placement.len(),
                usize::try_from(topic.partitions).unwrap_or(0)
            );
        }
    }
}
