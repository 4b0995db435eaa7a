//! The cluster crate's decoders: metadata records (`records::decode_records`
//! and the image they build), raft snapshots (`wal::decode_raft_snapshot`)
//! and the metadata WAL directory (`wal::Wal::open`: hard state, snapshot,
//! log frames), as a restarting node replays them.
//!
//! Input: byte 0 picks the mode (`sluice_fuzz::metadata_mode`, low bits) and
//! holds flags for the WAL mode (`FRAME_FILES`: frame `state` and `snapshot`
//! payloads with a valid CRC; `FIX_LOG_CRCS`: recompute each log frame's
//! CRC). The rest is the mode's bytes; the WAL mode splits it into chunks
//! (`sluice_fuzz::split_chunks`, tags `sluice_fuzz::wal_file`).
//!
//! The controller-port forwarding codec (`net/src/broker/forward.rs`) is not
//! here: its module is private to sluice-net.
#![no_main]

use std::path::PathBuf;

use futures_lite::future::block_on;
use libfuzzer_sys::fuzz_target;
use raft::prelude::EntryType;
use sluice_cluster::records::{decode_records, encode_records, image_from_records, image_records};
use sluice_cluster::wal::{decode_raft_snapshot, encode_raft_snapshot, Wal};
use sluice_engine::metadata::encode_snapshot;
use sluice_engine::storage::MemStorage;
use sluice_engine::Storage;
use sluice_fuzz::{metadata_mode, wal_file};

/// The low bits of byte 0 pick the mode; the high bits are WAL flags.
const MODE_MASK: u8 = 0x0f;
const FRAME_FILES: u8 = 0x10;
const FIX_LOG_CRCS: u8 = 0x20;
/// A WAL frame: body length u32, CRC-32C of the body u32, body.
const WAL_FRAME_HEADER_BYTES: usize = 8;
/// Where `Wal` and the metadata reserve live under the data directory
/// (private names in `cluster/src/wal.rs` and `engine/src/metadata.rs`).
const WAL_DIR: &str = "meta/raft";
const METADATA_RESERVE_PATH: &str = "meta/space.reserve";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match (mode & MODE_MASK) % metadata_mode::MODES {
        metadata_mode::RECORDS => records(rest),
        metadata_mode::RAFT_SNAPSHOT => raft_snapshot(rest),
        _ => wal(mode, rest),
    }
});

/// What a node does with a committed entry or a snapshot's data.
fn records(bytes: &[u8]) {
    let Ok(records) = decode_records(bytes) else {
        return;
    };
    // What decodes re-encodes to records that decode the same. (Not to the
    // same bytes: a config list with a repeated name decodes to one entry,
    // and a version 2 partition record without a reassignment re-encodes as
    // version 1.)
    assert_eq!(
        decode_records(&encode_records(&records)).as_ref(),
        Ok(&records)
    );
    let image = image_from_records(&records);
    // A snapshot of the image rebuilds the same image.
    let snapshot = encode_records(&image_records(&image));
    let Ok(again) = decode_records(&snapshot) else {
        panic!("a snapshot of a replayed image does not decode");
    };
    assert_eq!(image_from_records(&again), image);
}

fn raft_snapshot(bytes: &[u8]) {
    let Ok(snapshot) = decode_raft_snapshot(bytes) else {
        return;
    };
    assert_eq!(encode_raft_snapshot(&snapshot), bytes);
    records(&snapshot.data);
}

fn wal(flags: u8, rest: &[u8]) {
    let storage = MemStorage::new(1);
    let data_dir = PathBuf::from("/fuzz/data");
    let dir = data_dir.join(WAL_DIR);
    let frame = |bytes: &[u8]| {
        if flags & FRAME_FILES != 0 {
            encode_snapshot(bytes)
        } else {
            bytes.to_vec()
        }
    };
    let mut files = Vec::new();
    for (tag, bytes) in sluice_fuzz::split_chunks(rest) {
        match tag % wal_file::TAGS {
            wal_file::STATE => files.push(("state", frame(bytes))),
            wal_file::SNAPSHOT => files.push(("snapshot", frame(bytes))),
            _ => {
                let mut log = bytes.to_vec();
                if flags & FIX_LOG_CRCS != 0 {
                    fix_frame_crcs(&mut log);
                }
                files.push(("log", log));
            }
        }
    }
    let persisted = block_on(async {
        // With the reserve present, `keep_reserve` writes nothing.
        storage
            .write_small_atomic(&data_dir.join(METADATA_RESERVE_PATH), &[])
            .await
            .ok()?;
        for (name, bytes) in &files {
            storage
                .write_small_atomic(&dir.join(name), bytes)
                .await
                .ok()?;
        }
        let mut wal = Wal::new(storage.clone(), &data_dir);
        wal.open().await.ok()
    });
    let Some(persisted) = persisted else {
        return;
    };
    // Replay as `MetadataNode` does: the snapshot's records, then entries.
    let snapshot_index = persisted.snapshot.get_metadata().index;
    let mut previous = snapshot_index;
    if !persisted.snapshot.data.is_empty() {
        let _ = decode_records(&persisted.snapshot.data);
    }
    for entry in &persisted.entries {
        // Open keeps only a gapless run after the snapshot.
        assert_eq!(entry.index, previous + 1);
        previous = entry.index;
        if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
            let _ = decode_records(&entry.data);
        }
    }
}

fn fix_frame_crcs(log: &mut [u8]) {
    let mut at = 0usize;
    while let Some(header) = log.get(at..at + WAL_FRAME_HEADER_BYTES) {
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let start = at + WAL_FRAME_HEADER_BYTES;
        let Some(end) = start.checked_add(length).filter(|end| *end <= log.len()) else {
            return;
        };
        let crc = crc32c::crc32c(&log[start..end]);
        log[at + 4..start].copy_from_slice(&crc.to_be_bytes());
        at = end;
    }
}
