//! Input formats shared by the fuzz targets in `fuzz_targets/` and the seed
//! generator in `examples/make_corpus.rs`, so that seeds and targets agree on
//! how an input's bytes are split.
//!
//! A checksum stops a mutated input at the first check it meets, so most
//! targets take a flag that recomputes the checksums of whatever the input
//! holds after mutation: half of the inputs then reach the code behind it.

use std::sync::OnceLock;

use sluice_engine::batch::{ATTRIBUTES_AT, BATCH_HEADER_BYTES, CRC_AT, LENGTH_AT, LOG_OVERHEAD};

/// The environment variable naming known crashes to step around.
pub const SKIP_KNOWN_VAR: &str = "SLUICE_FUZZ_SKIP_KNOWN";

/// Crashes found and reported but not fixed yet, by the name
/// `SLUICE_FUZZ_SKIP_KNOWN` uses (reproducers in `known_crashes/`). A shallow
/// crash would otherwise end every run within seconds and hide anything
/// behind it; a run that names them keeps looking for new ones. Fixed ones
/// leave this list, and their reproducers move to `regressions/`. Empty:
/// every crash found so far is fixed.
pub mod known {}

/// Whether `SLUICE_FUZZ_SKIP_KNOWN` (comma separated, or `all`) names the
/// known crash `name`. Unset, nothing is skipped: a plain run fails on every
/// open bug, as it should.
pub fn skips_known(name: &str) -> bool {
    static SKIPPED: OnceLock<Vec<String>> = OnceLock::new();
    SKIPPED
        .get_or_init(|| {
            std::env::var(SKIP_KNOWN_VAR)
                .unwrap_or_default()
                .split(',')
                .map(|part| part.trim().to_string())
                .filter(|part| !part.is_empty())
                .collect()
        })
        .iter()
        .any(|skipped| skipped == name || skipped == "all")
}

/// Bytes of a chunk's length prefix in [`split_chunks`].
const CHUNK_LENGTH_BYTES: usize = 2;

/// Most chunks one input is split into; more would only repeat files.
pub const CHUNKS_MAX: usize = 16;

/// Recomputes the CRC-32C of every whole batch in a record set, in place,
/// walking it by the batches' own length fields as the broker does. Stops at
/// the first length that is negative or runs past the end.
pub fn fix_batch_crcs(records: &mut [u8]) {
    let mut at = 0usize;
    while let Some(length) = records.get(at + LENGTH_AT..at + LOG_OVERHEAD) {
        let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
        let Ok(length) = usize::try_from(length) else {
            return;
        };
        let Some(end) = at
            .checked_add(LOG_OVERHEAD + length)
            .filter(|end| *end <= records.len())
        else {
            return;
        };
        if end - at >= BATCH_HEADER_BYTES {
            let crc = crc32c::crc32c(&records[at + ATTRIBUTES_AT..end]);
            records[at + CRC_AT..at + ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        }
        at = end;
    }
}

/// Splits `data` into `(tag, bytes)` chunks: a tag byte, a big-endian u16
/// length, that many bytes. A last chunk cut short keeps what is there, so
/// every input means something.
pub fn split_chunks(data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut chunks = Vec::new();
    let mut rest = data;
    while chunks.len() < CHUNKS_MAX {
        let Some((&tag, after)) = rest.split_first() else {
            break;
        };
        let Some((length, after)) = after.split_first_chunk::<CHUNK_LENGTH_BYTES>() else {
            chunks.push((tag, after));
            break;
        };
        let length = usize::from(u16::from_be_bytes(*length)).min(after.len());
        let (bytes, after) = after.split_at(length);
        chunks.push((tag, bytes));
        rest = after;
    }
    chunks
}

/// The inverse of [`split_chunks`], for the seed generator.
pub fn join_chunks(chunks: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, bytes) in chunks {
        let length = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        out.push(*tag);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&bytes[..usize::from(length)]);
    }
    out
}

/// Files of a partition directory in the `engine_files` target, by tag
/// (`tag % ENGINE_FILE_TAGS`).
pub mod engine_file {
    pub const SEGMENT: u8 = 0;
    pub const OFFSET_INDEX: u8 = 1;
    pub const TIME_INDEX: u8 = 2;
    pub const TXN_INDEX: u8 = 3;
    pub const PRODUCER_SNAPSHOT: u8 = 4;
    pub const RECOVERY_POINT: u8 = 5;
    pub const LOG_START: u8 = 6;
    pub const EPOCH_CHECKPOINT: u8 = 7;
    /// Number of tags above.
    pub const TAGS: u8 = 8;
}

/// Flag bits of the `engine_files` target's first byte.
pub mod engine_flags {
    /// Input is the metadata store's snapshot file instead of a log directory.
    pub const METADATA_STORE: u8 = 0x80;
    /// Checkpoint-framed chunks are payloads: frame them with a valid CRC.
    pub const FRAME: u8 = 0x01;
    /// Recompute the segment's batch CRCs.
    pub const FIX_BATCH_CRCS: u8 = 0x02;
    /// Frame producer state as version 1 (before transactions) instead of 2.
    pub const PRODUCER_FRAME_V1: u8 = 0x04;
}

/// Modes of the `metadata_records` target (`first byte % MODES`).
pub mod metadata_mode {
    pub const RECORDS: u8 = 0;
    pub const RAFT_SNAPSHOT: u8 = 1;
    pub const WAL: u8 = 2;
    pub const MODES: u8 = 3;
}

/// Files of the metadata WAL directory in the `metadata_records` target.
pub mod wal_file {
    pub const STATE: u8 = 0;
    pub const SNAPSHOT: u8 = 1;
    pub const LOG: u8 = 2;
    pub const TAGS: u8 = 3;
}

/// Modes of the `coordinator_records` target (`first byte % MODES`).
pub mod coordinator_mode {
    /// Chunk 0 is a `__consumer_offsets` key, chunk 1 its value (or none).
    pub const OFFSETS_RECORD: u8 = 0;
    /// Chunk 0 is a `__transaction_state` key, chunk 1 its value.
    pub const TXN_RECORD: u8 = 1;
    /// The rest is a record set replayed like a coordinator partition.
    pub const BATCHES: u8 = 2;
    pub const MODES: u8 = 3;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip() {
        let joined = join_chunks(&[(1, b"abc"), (7, b""), (3, b"z")]);
        assert_eq!(
            split_chunks(&joined),
            vec![(1, &b"abc"[..]), (7, &b""[..]), (3, &b"z"[..])]
        );
    }
}
