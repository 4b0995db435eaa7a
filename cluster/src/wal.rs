//! The metadata log on disk, in `<data_dir>/meta/raft/`:
//!
//! - `snapshot`: the latest snapshot (index, term, voters, the image's
//!   records), replaced atomically;
//! - `state`: the hard state (term, vote, commit), replaced atomically when
//!   the term or the vote changes (a stale commit index is safe: it is
//!   learned again from the leader; a lost vote is not, so it is synced
//!   before any message that depends on it leaves);
//! - `log`: the entries after the snapshot, appended as checksummed frames
//!   through direct I/O and synced before raft-rs is told they are stored.
//!
//! After a crash the log is read up to the first frame that is cut short or
//! fails its checksum, and cut there, so a later append cannot leave stale
//! frames behind the new end. Formats: `docs/format.md`.

use std::path::{Path, PathBuf};

use raft::prelude::{ConfState, Entry, EntryType, HardState, Snapshot};
use sluice_engine::constants::IO_ALIGNMENT;
use sluice_engine::metadata::{decode_snapshot, encode_snapshot, keep_reserve, release_reserve};
use sluice_engine::storage::is_disk_full;
use sluice_engine::{IoBuffer, Storage, StorageFile};

use crate::codec::{DecodeError, Reader, Writer};
use crate::constants::{METADATA_LOG_BYTES_MAX, METADATA_SNAPSHOT_BYTES_MAX};

const DIR: &str = "meta/raft";
const LOG_FILE: &str = "log";
const STATE_FILE: &str = "state";
const SNAPSHOT_FILE: &str = "snapshot";
/// Frame header: body length u32 and CRC-32C u32 of the body.
const FRAME_HEADER_BYTES: usize = 8;

/// What was on disk at start.
#[derive(Default)]
pub struct Persisted {
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

impl Persisted {
    /// True for a directory that never held a metadata log.
    pub fn is_empty(&self) -> bool {
        self.snapshot.get_metadata().index == 0
            && self.entries.is_empty()
            && self.hard_state.term == 0
    }
}

/// Why the metadata log could not be read or written.
#[derive(Debug)]
pub struct WalError(pub String);

impl std::fmt::Display for WalError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

fn io_error(action: &str, path: &Path, error: std::io::Error) -> WalError {
    WalError(format!("{action} {}: {error}", path.display()))
}

fn corrupt(path: &Path, error: impl std::fmt::Display) -> WalError {
    WalError(format!(
        "{} is unreadable ({error}); restore the data directory from a backup or let this \
         node catch up from the quorum by removing {}",
        path.display(),
        path.parent().unwrap_or(path).display()
    ))
}

fn encode_entry(entry: &Entry, writer: &mut Writer) {
    writer.u64(entry.index);
    writer.u64(entry.term);
    writer.u8(entry.get_entry_type() as u8);
    writer.blob(&entry.context);
    writer.blob(&entry.data);
}

fn decode_entry(reader: &mut Reader<'_>) -> Result<Entry, DecodeError> {
    let mut entry = Entry {
        index: reader.u64()?,
        term: reader.u64()?,
        ..Default::default()
    };
    let entry_type = match reader.u8()? {
        0 => EntryType::EntryNormal,
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        other => return Err(DecodeError(format!("unknown entry type {other}"))),
    };
    entry.set_entry_type(entry_type);
    entry.context = reader.blob()?.to_vec().into();
    entry.data = reader.blob()?.to_vec().into();
    Ok(entry)
}

fn frame(entry: &Entry, out: &mut Vec<u8>) {
    let mut body = Writer::default();
    encode_entry(entry, &mut body);
    out.extend_from_slice(&(body.bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body.bytes).to_be_bytes());
    out.extend_from_slice(&body.bytes);
}

/// Reads frames up to the first one that is incomplete or corrupt; returns
/// the entries and the length of the valid prefix.
fn read_frames(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= FRAME_HEADER_BYTES {
        let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let crc = u32::from_be_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let start = at + FRAME_HEADER_BYTES;
        let Some(end) = start
            .checked_add(len as usize)
            .filter(|end| *end <= bytes.len())
        else {
            break;
        };
        let body = &bytes[start..end];
        if len == 0 || crc32c::crc32c(body) != crc {
            break;
        }
        let mut reader = Reader::new(body);
        let Ok(entry) = decode_entry(&mut reader) else {
            break;
        };
        if reader.finish().is_err() {
            break;
        }
        // An entry replaces every entry at or after its index.
        if let Some(first) = entries.first().map(|first| first.index) {
            // Indexes come from disk: a huge one must not overflow the sum.
            if entry.index < first || entry.index > first.saturating_add(entries.len() as u64) {
                break;
            }
            entries.truncate((entry.index - first) as usize);
        }
        entries.push(entry);
        at = end;
    }
    (entries, at)
}

fn encode_hard_state(state: &HardState) -> Vec<u8> {
    let mut writer = Writer::default();
    writer.u64(state.term);
    writer.u64(state.vote);
    writer.u64(state.commit);
    encode_snapshot(&writer.bytes)
}

fn decode_hard_state(bytes: &[u8]) -> Result<HardState, String> {
    let payload = decode_snapshot(bytes)?;
    let mut reader = Reader::new(payload);
    let state = HardState {
        term: reader.u64().map_err(|error| error.0)?,
        vote: reader.u64().map_err(|error| error.0)?,
        commit: reader.u64().map_err(|error| error.0)?,
        ..Default::default()
    };
    reader.finish().map_err(|error| error.0)?;
    Ok(state)
}

pub fn encode_raft_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    let metadata = snapshot.get_metadata();
    let mut writer = Writer::default();
    writer.u64(metadata.index);
    writer.u64(metadata.term);
    let conf = metadata.get_conf_state();
    for ids in [&conf.voters, &conf.learners] {
        writer.u32(ids.len() as u32);
        for id in ids {
            writer.u64(*id);
        }
    }
    writer.blob(&snapshot.data);
    writer.bytes
}

pub fn decode_raft_snapshot(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let mut reader = Reader::new(bytes);
    let mut snapshot = Snapshot::default();
    let index = reader.u64()?;
    let term = reader.u64()?;
    let mut conf = ConfState::default();
    for target in 0..2 {
        let count = reader.count(8)?;
        let ids = (0..count)
            .map(|_| reader.u64())
            .collect::<Result<Vec<u64>, DecodeError>>()?;
        if target == 0 {
            conf.voters = ids;
        } else {
            conf.learners = ids;
        }
    }
    snapshot.data = reader.blob()?.to_vec().into();
    reader.finish()?;
    let metadata = snapshot.mut_metadata();
    metadata.index = index;
    metadata.term = term;
    metadata.set_conf_state(conf);
    Ok(snapshot)
}

/// The durable metadata log of one node.
pub struct Wal<S: Storage> {
    storage: S,
    data_dir: PathBuf,
    dir: PathBuf,
    file: Option<S::File>,
    /// Logical length of the log file (the valid frames).
    end: u64,
    /// The bytes of the last, partial page: rewritten with the next append
    /// because direct I/O writes whole pages.
    tail: Vec<u8>,
}

impl<S: Storage> Wal<S> {
    pub fn new(storage: S, data_dir: &Path) -> Self {
        Wal {
            storage,
            data_dir: data_dir.to_path_buf(),
            dir: data_dir.join(DIR),
            file: None,
            end: 0,
            tail: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Replaces a small file; on a full disk, once more after giving up
    /// the metadata space reserve (the write may be the topic deletion that
    /// frees the disk).
    async fn write_small(&self, path: &Path, bytes: &[u8]) -> Result<(), WalError> {
        let mut written = self.storage.write_small_atomic(path, bytes).await;
        if written.as_ref().is_err_and(is_disk_full)
            && release_reserve(&self.storage, &self.data_dir)
        {
            written = self.storage.write_small_atomic(path, bytes).await;
        }
        written.map_err(|error| io_error("write", path, error))
    }

    /// A new handle on the same log, unopened: a node whose writes failed
    /// opens it again from what the disk holds, as a restart would.
    pub fn reopened(&self) -> Wal<S> {
        Wal::new(self.storage.clone(), &self.data_dir)
    }

    /// Whether the disk has room for metadata again: the metadata space
    /// reserve exists, or could be made now.
    pub async fn has_room(&self) -> bool {
        keep_reserve(&self.storage, &self.data_dir).await
    }

    /// True when the data directory never held a metadata log.
    pub fn is_new(&self) -> bool {
        !self.storage.exists(&self.path(SNAPSHOT_FILE))
    }

    /// Reads what is on disk and opens the log for appending.
    pub async fn open(&mut self) -> Result<Persisted, WalError> {
        self.storage
            .create_dir_all(&self.dir)
            .await
            .map_err(|error| io_error("create", &self.dir, error))?;
        keep_reserve(&self.storage, &self.data_dir).await;
        let mut persisted = Persisted::default();
        let state_path = self.path(STATE_FILE);
        if self.storage.exists(&state_path) {
            let bytes = self
                .storage
                .read_small(&state_path, IO_ALIGNMENT)
                .await
                .map_err(|error| io_error("read", &state_path, error))?;
            persisted.hard_state =
                decode_hard_state(&bytes).map_err(|error| corrupt(&state_path, error))?;
        }
        let snapshot_path = self.path(SNAPSHOT_FILE);
        if self.storage.exists(&snapshot_path) {
            let bytes = self
                .storage
                .read_small(&snapshot_path, METADATA_SNAPSHOT_BYTES_MAX)
                .await
                .map_err(|error| io_error("read", &snapshot_path, error))?;
            let payload =
                decode_snapshot(&bytes).map_err(|error| corrupt(&snapshot_path, error))?;
            persisted.snapshot =
                decode_raft_snapshot(payload).map_err(|error| corrupt(&snapshot_path, error))?;
        }
        let log_path = self.path(LOG_FILE);
        let file = self
            .storage
            .open(&log_path, true)
            .await
            .map_err(|error| io_error("open", &log_path, error))?;
        let size = file
            .size()
            .await
            .map_err(|error| io_error("size", &log_path, error))?;
        if size > METADATA_LOG_BYTES_MAX {
            return Err(corrupt(
                &log_path,
                format!("{size} bytes, more than the {METADATA_LOG_BYTES_MAX} a log can hold"),
            ));
        }
        let bytes = file
            .read_at(0, size as usize)
            .await
            .map_err(|error| io_error("read", &log_path, error))?;
        let (mut entries, valid) = read_frames(&bytes);
        if (valid as u64) < size {
            // A torn or unfinished append: cut it off so that later
            // appends are not followed by stale frames.
            file.truncate(valid as u64)
                .await
                .map_err(|error| io_error("truncate", &log_path, error))?;
            file.sync()
                .await
                .map_err(|error| io_error("sync", &log_path, error))?;
        }
        self.end = valid as u64;
        let page_start = self.end - self.end % IO_ALIGNMENT;
        self.tail = bytes[page_start as usize..valid].to_vec();
        self.file = Some(file);
        // Entries the snapshot already covers are dropped; a gap after the
        // snapshot (a crash between saving it and resetting the log) drops
        // the rest, which the leader sends again.
        let snapshot_index = persisted.snapshot.get_metadata().index;
        entries.retain(|entry| entry.index > snapshot_index);
        if entries
            .first()
            .is_some_and(|first| first.index != snapshot_index + 1)
        {
            entries.clear();
        }
        persisted.entries = entries;
        Ok(persisted)
    }

    /// Appends entries (an entry replaces any at or after its index on
    /// replay). Not durable until [`Wal::sync`].
    pub async fn append(&mut self, entries: &[Entry]) -> Result<(), WalError> {
        if entries.is_empty() {
            return Ok(());
        }
        let log_path = self.path(LOG_FILE);
        let mut frames = Vec::new();
        for entry in entries {
            frame(entry, &mut frames);
        }
        if self.end + frames.len() as u64 > METADATA_LOG_BYTES_MAX {
            return Err(WalError(format!(
                "{} would pass {METADATA_LOG_BYTES_MAX} bytes; the log is compacted into \
                 snapshots long before that, so a snapshot is failing to be saved",
                log_path.display()
            )));
        }
        let Some(file) = &self.file else {
            return Err(WalError(format!("{} is not open", log_path.display())));
        };
        let page_start = self.end - self.end % IO_ALIGNMENT;
        let mut bytes = self.tail.clone();
        bytes.extend_from_slice(&frames);
        let padded = bytes.len().div_ceil(IO_ALIGNMENT as usize) * IO_ALIGNMENT as usize;
        let mut released = false;
        loop {
            let mut buffer = file.alloc(padded);
            let target = buffer.bytes_mut();
            target[..bytes.len()].copy_from_slice(&bytes);
            target[bytes.len()..].fill(0);
            match file.write_at(buffer, page_start).await {
                Ok(()) => break,
                Err(error)
                    if is_disk_full(&error)
                        && !released
                        && release_reserve(&self.storage, &self.data_dir) =>
                {
                    released = true;
                }
                // The tail is kept, so a later append rewrites the page.
                Err(error) => return Err(io_error("write", &log_path, error)),
            }
        }
        self.end += frames.len() as u64;
        let new_page_start = self.end - self.end % IO_ALIGNMENT;
        self.tail = bytes[(new_page_start - page_start) as usize..].to_vec();
        Ok(())
    }

    pub async fn sync(&self) -> Result<(), WalError> {
        let log_path = self.path(LOG_FILE);
        match &self.file {
            Some(file) => file
                .sync()
                .await
                .map_err(|error| io_error("sync", &log_path, error)),
            None => Err(WalError(format!("{} is not open", log_path.display()))),
        }
    }

    pub async fn save_hard_state(&self, state: &HardState) -> Result<(), WalError> {
        let path = self.path(STATE_FILE);
        self.write_small(&path, &encode_hard_state(state)).await
    }

    /// Saves a snapshot and rewrites the log with only the entries after
    /// it (`kept`). Crash-safe in either order: on open, entries the
    /// snapshot covers are dropped.
    pub async fn save_snapshot(
        &mut self,
        snapshot: &Snapshot,
        kept: &[Entry],
    ) -> Result<(), WalError> {
        let snapshot_path = self.path(SNAPSHOT_FILE);
        let bytes = encode_snapshot(&encode_raft_snapshot(snapshot));
        self.write_small(&snapshot_path, &bytes).await?;
        let log_path = self.path(LOG_FILE);
        let mut frames = Vec::new();
        for entry in kept {
            frame(entry, &mut frames);
        }
        self.file = None;
        self.write_small(&log_path, &frames).await?;
        let file = self
            .storage
            .open(&log_path, false)
            .await
            .map_err(|error| io_error("open", &log_path, error))?;
        self.end = frames.len() as u64;
        let page_start = self.end - self.end % IO_ALIGNMENT;
        self.tail = frames[page_start as usize..].to_vec();
        self.file = Some(file);
        keep_reserve(&self.storage, &self.data_dir).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::MemStorage;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        futures_lite::future::block_on(future)
    }

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    /// Found by fuzzing: after a frame at index `u64::MAX`, the check of
    /// where the next frame may go overflowed. The next one at the same
    /// index replaces it, as any rewritten entry does.
    #[test]
    fn frames_at_the_largest_index_do_not_overflow() {
        let mut bytes = Vec::new();
        frame(&entry(u64::MAX, 1, b"a"), &mut bytes);
        frame(&entry(u64::MAX, 2, b"b"), &mut bytes);
        let (entries, valid) = read_frames(&bytes);
        assert_eq!(valid, bytes.len());
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].index, entries[0].term), (u64::MAX, 2));
    }

    #[test]
    fn entries_survive_a_crash_once_synced_and_torn_tails_are_cut() {
        let storage = MemStorage::new(7);
        let dir = Path::new("/d");
        let mut wal = Wal::new(storage.clone(), dir);
        assert!(block_on(wal.open()).unwrap().is_empty());
        let big = vec![9u8; 5000];
        block_on(wal.append(&[entry(1, 1, b"a"), entry(2, 1, &big)])).unwrap();
        block_on(wal.sync()).unwrap();
        // A divergent tail replaced by a new leader's entry.
        block_on(wal.append(&[entry(2, 2, b"b"), entry(3, 2, b"c")])).unwrap();
        block_on(wal.sync()).unwrap();
        let state = HardState {
            term: 2,
            vote: 3,
            ..Default::default()
        };
        block_on(wal.save_hard_state(&state)).unwrap();
        block_on(wal.append(&[entry(4, 2, b"unsynced")])).unwrap();
        let storage = storage.crash();
        let mut wal = Wal::new(storage.clone(), dir);
        let persisted = block_on(wal.open()).unwrap();
        let found: Vec<(u64, u64)> = persisted
            .entries
            .iter()
            .map(|entry| (entry.index, entry.term))
            .collect();
        assert!(
            found == vec![(1, 1), (2, 2), (3, 2)] || found == vec![(1, 1), (2, 2), (3, 2), (4, 2)],
            "{found:?}"
        );
        assert_eq!(persisted.hard_state.vote, 3);
        // Appending after recovery continues the log.
        let next = persisted.entries.len() as u64 + 1;
        block_on(wal.append(&[entry(next, 3, b"d")])).unwrap();
        block_on(wal.sync()).unwrap();
        let mut wal = Wal::new(storage.clone(), dir);
        let persisted = block_on(wal.open()).unwrap();
        assert_eq!(persisted.entries.last().unwrap().index, next);
        assert_eq!(&persisted.entries.last().unwrap().data[..], b"d");
    }

    #[test]
    fn a_snapshot_compacts_the_log() {
        let storage = MemStorage::new(8);
        let dir = Path::new("/d");
        let mut wal = Wal::new(storage.clone(), dir);
        block_on(wal.open()).unwrap();
        let entries: Vec<Entry> = (1..=10).map(|index| entry(index, 1, b"x")).collect();
        block_on(wal.append(&entries)).unwrap();
        block_on(wal.sync()).unwrap();
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 8;
        snapshot.mut_metadata().term = 1;
        snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        snapshot.data = b"image".to_vec().into();
        block_on(wal.save_snapshot(&snapshot, &entries[8..])).unwrap();
        block_on(wal.append(&[entry(11, 1, b"y")])).unwrap();
        block_on(wal.sync()).unwrap();
        let storage = storage.crash();
        let mut wal = Wal::new(storage, dir);
        let persisted = block_on(wal.open()).unwrap();
        assert_eq!(persisted.snapshot.get_metadata().index, 8);
        assert_eq!(
            persisted.snapshot.get_metadata().get_conf_state().voters,
            vec![1, 2, 3]
        );
        assert_eq!(&persisted.snapshot.data[..], b"image");
        let indexes: Vec<u64> = persisted.entries.iter().map(|entry| entry.index).collect();
        assert_eq!(indexes, vec![9, 10, 11]);
    }

    #[test]
    fn garbage_in_the_log_is_cut_not_trusted() {
        let mut bytes = Vec::new();
        frame(&entry(1, 1, b"a"), &mut bytes);
        let valid = bytes.len();
        bytes.extend_from_slice(&[0xff; 40]);
        let (entries, end) = read_frames(&bytes);
        assert_eq!(entries.len(), 1);
        assert_eq!(end, valid);
        for cut in 0..valid {
            let (entries, end) = read_frames(&bytes[..cut]);
            assert!(entries.is_empty() && end == 0);
        }
    }
}
