//! An in-memory disk for tests, modelling a volatile write cache and the
//! faults real disks show: lost unsynced writes, torn writes (a prefix of a
//! write's sectors lands), misdirected writes, EIO and ENOSPC.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::{Storage, StorageFile};
use crate::open_files::ExtraDescriptor;

/// Granularity at which a torn write stops: one disk sector.
const SECTOR_BYTES: usize = 512;

/// How often a held sync looks whether it was released.
const SYNC_HOLD_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// A fault to inject into the next matching operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The next write fails with EIO and changes nothing.
    WriteEio,
    /// The next write fails with ENOSPC and changes nothing.
    WriteNoSpace,
    /// The next sync fails with EIO; the writes stay volatile.
    SyncEio,
    /// The next write lands `by` bytes away from where it was aimed.
    MisdirectWrite { by: i64 },
}

#[derive(Default)]
struct MemFile {
    /// What a crash now would keep for certain.
    durable: Vec<u8>,
    /// What reads see: durable plus every completed write.
    current: Vec<u8>,
    /// Completed writes since the last sync, oldest first.
    unsynced: Vec<(u64, Vec<u8>)>,
}

fn write_into(target: &mut Vec<u8>, pos: u64, data: &[u8]) {
    let end = pos as usize + data.len();
    if target.len() < end {
        target.resize(end, 0);
    }
    target[pos as usize..end].copy_from_slice(data);
}

#[derive(Default)]
struct State {
    files: BTreeMap<PathBuf, Rc<RefCell<MemFile>>>,
    faults: VecDeque<Fault>,
    rng: u64,
    /// Writes completed since this disk was made (see `writes`).
    writes: u64,
    /// Reads made since this disk was made (see `reads`).
    reads: u64,
    /// The next sync is to wait (see `hold_next_sync`).
    hold_next_sync: bool,
    /// The next directory sync is to wait (see `hold_next_sync_dir`).
    hold_next_sync_dir: bool,
    /// A held sync waits while set.
    sync_held: bool,
    /// Handles from `open` not dropped yet (see `open_handles`).
    open_handles: usize,
    /// Small files written whole since this disk was made (see
    /// `small_writes`).
    small_writes: u64,
    /// Syncs of one file or directory (a small file written atomically
    /// counts as one) since this disk was made (see `file_syncs`).
    file_syncs: u64,
    /// Syncs of the whole file system since this disk was made.
    file_system_syncs: u64,
    /// Durable writes (a write and the sync of its file in one) since
    /// this disk was made (see `durable_writes`).
    durable_writes: u64,
    /// Writes that reached past their file's end (see `extending_writes`).
    extending_writes: u64,
}

impl State {
    fn take_fault(&mut self, matches: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let at = self.faults.iter().position(matches)?;
        self.faults.remove(at)
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic per seed so failing cases replay.
        let mut x = self.rng.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// An in-memory disk. Clones share the same files.
#[derive(Clone, Default)]
pub struct MemStorage {
    state: Rc<RefCell<State>>,
}

impl MemStorage {
    pub fn new(seed: u64) -> MemStorage {
        let storage = MemStorage::default();
        storage.state.borrow_mut().rng = seed;
        storage
    }

    /// Queues a fault for the next operation it applies to.
    pub fn inject(&self, fault: Fault) {
        self.state.borrow_mut().faults.push_back(fault);
    }

    /// The next sync to start waits until [`MemStorage::release_sync`]
    /// (later ones do not): lets a test run other operations while one
    /// sync is in flight.
    pub fn hold_next_sync(&self) {
        self.state.borrow_mut().hold_next_sync = true;
    }

    /// The next directory sync to start waits until
    /// [`MemStorage::release_sync`]: lets a test crash the disk right after
    /// a rename that the log makes durable with that sync.
    pub fn hold_next_sync_dir(&self) {
        self.state.borrow_mut().hold_next_sync_dir = true;
    }

    /// Lets the held sync finish; a hold whose sync has not started yet is
    /// dropped, so that the sync does not wait for a release that already
    /// came (a test's pass may reach its sync only after the test released
    /// it: it then waited for good).
    pub fn release_sync(&self) {
        let mut state = self.state.borrow_mut();
        state.sync_held = false;
        state.hold_next_sync = false;
        state.hold_next_sync_dir = false;
    }

    /// How many writes have completed, to every file: lets tests check how
    /// the log batches its writes.
    pub fn writes(&self) -> u64 {
        self.state.borrow().writes
    }

    /// Small files (indexes, checkpoints, recovery points) written whole
    /// since this disk was made.
    pub fn small_writes(&self) -> u64 {
        self.state.borrow().small_writes
    }

    /// Syncs of single files and directories since this disk was made
    /// (a small file written atomically counts as one).
    pub fn file_syncs(&self) -> u64 {
        self.state.borrow().file_syncs
    }

    /// Durable writes (`StorageFile::write_at_durable`) since this disk
    /// was made; they are not counted in `file_syncs`.
    pub fn durable_writes(&self) -> u64 {
        self.state.borrow().durable_writes
    }

    /// Writes that reached past their file's end since this disk was made:
    /// the ones ext4 hands to an io_uring worker and whose sync must write
    /// the file's new size too.
    pub fn extending_writes(&self) -> u64 {
        self.state.borrow().extending_writes
    }

    /// Syncs of the whole file system since this disk was made.
    pub fn file_system_syncs(&self) -> u64 {
        self.state.borrow().file_system_syncs
    }

    /// Files opened through this disk and not closed yet, as a process's
    /// descriptors would be.
    pub fn open_handles(&self) -> usize {
        self.state.borrow().open_handles
    }

    /// How many reads have been made, of every file: lets tests check how
    /// many the log needs.
    pub fn reads(&self) -> u64 {
        self.state.borrow().reads
    }

    /// Simulates power loss: returns the disk as a restart would find it.
    /// Each unsynced write independently survives whole, survives as a prefix
    /// of its sectors (torn), or is lost.
    pub fn crash(&self) -> MemStorage {
        let mut state = self.state.borrow_mut();
        let mut files = BTreeMap::new();
        let paths: Vec<PathBuf> = state.files.keys().cloned().collect();
        for path in paths {
            let file = Rc::clone(&state.files[&path]);
            let file = file.borrow();
            let mut content = file.durable.clone();
            for (pos, data) in &file.unsynced {
                match state.next_random() % 3 {
                    0 => write_into(&mut content, *pos, data),
                    1 => {
                        let sectors = data.len().div_ceil(SECTOR_BYTES);
                        let kept = (state.next_random() as usize % (sectors + 1)) * SECTOR_BYTES;
                        write_into(&mut content, *pos, &data[..kept.min(data.len())]);
                    }
                    _ => {}
                }
            }
            let survivor = MemFile {
                durable: content.clone(),
                current: content,
                unsynced: vec![],
            };
            files.insert(path, Rc::new(RefCell::new(survivor)));
        }
        let rng = state.next_random();
        MemStorage {
            state: Rc::new(RefCell::new(State {
                files,
                rng,
                // A new disk's counts start at zero.
                ..State::default()
            })),
        }
    }

    /// A copy of the disk exactly as it is (a clean stop: nothing lost).
    pub fn snapshot(&self) -> MemStorage {
        let state = self.state.borrow();
        let files = state
            .files
            .iter()
            .map(|(path, file)| {
                let file = file.borrow();
                let copy = MemFile {
                    durable: file.current.clone(),
                    current: file.current.clone(),
                    unsynced: vec![],
                };
                (path.clone(), Rc::new(RefCell::new(copy)))
            })
            .collect();
        MemStorage {
            state: Rc::new(RefCell::new(State {
                files,
                rng: state.rng,
                ..State::default()
            })),
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

/// The model's one file system, opened to be synced.
#[derive(Debug)]
pub struct MemFileSystem;

impl Storage for MemStorage {
    type File = MemStorageFile;
    type FileSystem = MemFileSystem;

    async fn open(&self, path: &Path, create: bool) -> io::Result<MemStorageFile> {
        let mut state = self.state.borrow_mut();
        let file = match state.files.get(path) {
            Some(file) => Rc::clone(file),
            None if create => {
                let file = Rc::new(RefCell::new(MemFile::default()));
                state.files.insert(path.to_path_buf(), Rc::clone(&file));
                file
            }
            None => return Err(not_found(path)),
        };
        state.open_handles += 1;
        Ok(MemStorageFile {
            file,
            storage: self.clone(),
        })
    }

    async fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    async fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.state.borrow();
        let mut names: Vec<String> = Vec::new();
        for file in state.files.keys() {
            if let Ok(rest) = file.strip_prefix(path) {
                if let Some(first) = rest.components().next() {
                    let name = first.as_os_str().to_string_lossy().into_owned();
                    if names.last() != Some(&name) && !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        Ok(names)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self.state.borrow_mut().files.remove(path) {
            Some(_) => Ok(()),
            None => Err(not_found(path)),
        }
    }

    fn remove_file_at_once(&self, path: &Path) -> io::Result<()> {
        self.remove_file(path)
    }

    /// The model frees nothing on a disk, so it removes at once; handles
    /// still open keep reading what they read before, as on a real disk.
    /// A file-system thread's call takes a while: other tasks of the shard
    /// run before it is made.
    async fn retire_off_shard(
        &self,
        path: &Path,
        tree: bool,
        _open: Vec<Rc<MemStorageFile>>,
    ) -> io::Result<()> {
        futures_lite::future::yield_now().await;
        if tree {
            self.remove_dir_all(path)
        } else {
            self.remove_file(path)
        }
    }

    async fn replace_off_shard(
        &self,
        from: &Path,
        to: &Path,
        _open: Option<Rc<MemStorageFile>>,
    ) -> io::Result<()> {
        futures_lite::future::yield_now().await;
        self.rename(from, to)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.state
            .borrow_mut()
            .files
            .retain(|file, _| !file.starts_with(path));
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.state.borrow();
        state.files.keys().any(|file| file.starts_with(path))
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        let state = self.state.borrow();
        let file = state.files.get(path).ok_or_else(|| not_found(path))?;
        let len = file.borrow().current.len() as u64;
        Ok(len)
    }

    async fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        let held = {
            let mut state = self.state.borrow_mut();
            state.file_syncs += 1;
            let held = std::mem::take(&mut state.hold_next_sync_dir);
            state.sync_held |= held;
            held
        };
        while held && self.state.borrow().sync_held {
            glommio::timer::sleep(SYNC_HOLD_POLL).await;
        }
        Ok(())
    }

    async fn read_small(&self, path: &Path, bytes_max: u64) -> io::Result<Vec<u8>> {
        let state = self.state.borrow();
        let file = state.files.get(path).ok_or_else(|| not_found(path))?;
        let content = file.borrow().current.clone();
        if content.len() as u64 > bytes_max {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "file too large"));
        }
        Ok(content)
    }

    async fn write_small_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.state.borrow_mut().file_syncs += 1;
        self.replace_small(path, bytes, bytes.to_vec());
        Ok(())
    }

    async fn write_small_unsynced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        // A crash loses the bytes, leaving an empty file.
        self.replace_small(path, bytes, Vec::new());
        Ok(())
    }

    async fn write_small_staged(&self, path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        // Unsynced: a crash before the file system's sync empties it.
        self.replace_small(&temp, bytes, Vec::new());
        Ok(temp)
    }

    async fn rename_all(&self, renames: Vec<(PathBuf, PathBuf)>) -> io::Result<()> {
        futures_lite::future::yield_now().await;
        for (from, to) in renames {
            self.rename(&from, &to)?;
        }
        Ok(())
    }

    /// The model holds one file system.
    async fn open_file_system(&self, _path: &Path) -> io::Result<MemFileSystem> {
        Ok(MemFileSystem)
    }

    /// Every file's writes become durable.
    async fn sync_file_system(&self, _file_system: &MemFileSystem) -> io::Result<()> {
        self.fail_if_sync_faulted()?;
        let mut state = self.state.borrow_mut();
        for file in state.files.values() {
            let mut file = file.borrow_mut();
            file.durable = file.current.clone();
            file.unsynced.clear();
        }
        state.file_system_syncs += 1;
        Ok(())
    }
}

impl MemStorage {
    /// Directory changes are durable at once here (the model's volatile
    /// cache holds file contents only).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let file = state.files.remove(from).ok_or_else(|| not_found(from))?;
        state.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    /// EIO if a `SyncEio` fault is queued (taking it).
    fn fail_if_sync_faulted(&self) -> io::Result<()> {
        let fault = self
            .state
            .borrow_mut()
            .take_fault(|fault| *fault == Fault::SyncEio);
        match fault {
            Some(_) => Err(io::Error::from_raw_os_error(libc::EIO)),
            None => Ok(()),
        }
    }

    fn replace_small(&self, path: &Path, bytes: &[u8], durable: Vec<u8>) {
        let file = MemFile {
            durable,
            current: bytes.to_vec(),
            unsynced: vec![],
        };
        let mut state = self.state.borrow_mut();
        state.small_writes += 1;
        state
            .files
            .insert(path.to_path_buf(), Rc::new(RefCell::new(file)));
    }
}

/// An open in-memory file.
pub struct MemStorageFile {
    file: Rc<RefCell<MemFile>>,
    storage: MemStorage,
}

impl Drop for MemStorageFile {
    fn drop(&mut self) {
        let mut state = self.storage.state.borrow_mut();
        state.open_handles = state.open_handles.saturating_sub(1);
    }
}

impl MemStorageFile {
    /// What a sync does once counted: waits if held, fails if a sync
    /// fault is queued, else makes the file's current bytes durable.
    async fn make_durable(&self) -> io::Result<()> {
        let held = {
            let mut state = self.storage.state.borrow_mut();
            let held = std::mem::take(&mut state.hold_next_sync);
            state.sync_held |= held;
            held
        };
        while held && self.storage.state.borrow().sync_held {
            glommio::timer::sleep(SYNC_HOLD_POLL).await;
        }
        self.storage.fail_if_sync_faulted()?;
        let mut file = self.file.borrow_mut();
        file.durable = file.current.clone();
        file.unsynced.clear();
        Ok(())
    }
}

impl StorageFile for MemStorageFile {
    type Buffer = Vec<u8>;

    fn alloc(&self, len: usize) -> Vec<u8> {
        vec![0; len]
    }

    async fn write_at(&self, buffer: Vec<u8>, pos: u64) -> io::Result<()> {
        let fault = self.storage.state.borrow_mut().take_fault(|fault| {
            matches!(
                fault,
                Fault::WriteEio | Fault::WriteNoSpace | Fault::MisdirectWrite { .. }
            )
        });
        let pos = match fault {
            Some(Fault::WriteEio) => return Err(io::Error::from_raw_os_error(libc::EIO)),
            Some(Fault::WriteNoSpace) => return Err(io::Error::from_raw_os_error(libc::ENOSPC)),
            Some(Fault::MisdirectWrite { by }) => (pos as i64 + by).max(0) as u64,
            _ => pos,
        };
        let mut file = self.file.borrow_mut();
        {
            let mut state = self.storage.state.borrow_mut();
            state.writes += 1;
            if pos + buffer.len() as u64 > file.current.len() as u64 {
                state.extending_writes += 1;
            }
        }
        write_into(&mut file.current, pos, &buffer);
        file.unsynced.push((pos, buffer));
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.storage.state.borrow_mut().reads += 1;
        let file = self.file.borrow();
        let start = (pos as usize).min(file.current.len());
        let end = (start + len).min(file.current.len());
        Ok(Bytes::copy_from_slice(&file.current[start..end]))
    }

    async fn sync(&self) -> io::Result<()> {
        self.storage.state.borrow_mut().file_syncs += 1;
        self.make_durable().await
    }

    async fn write_at_durable(
        &self,
        buffer: Vec<u8>,
        pos: u64,
        _room: Option<ExtraDescriptor>,
    ) -> io::Result<()> {
        self.write_at(buffer, pos).await?;
        self.storage.state.borrow_mut().durable_writes += 1;
        self.make_durable().await
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let mut file = self.file.borrow_mut();
        file.current.resize(len as usize, 0);
        // Truncation is metadata the file system journals; model it as durable.
        if (len as usize) < file.durable.len() {
            file.durable.truncate(len as usize);
        }
        file.unsynced.retain(|(pos, _)| *pos < len);
        Ok(())
    }

    async fn preallocate(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }

    async fn allocate(&self, len: u64) -> io::Result<()> {
        // The new size is metadata no sync has covered yet: a crash may
        // lose it (`crash` starts from the durable content), a kill keeps
        // it (`snapshot` copies the current one), zeros and all.
        let mut file = self.file.borrow_mut();
        if (len as usize) > file.current.len() {
            file.current.resize(len as usize, 0);
        }
        Ok(())
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.file.borrow().current.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long the test lets a sync released before it started take.
    const RELEASED_SYNC_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(2);

    /// A sync that starts after the release of its hold does not wait for
    /// another release: a test that released it would wait for good.
    #[test]
    fn a_hold_released_before_its_sync_starts_holds_nothing() {
        let synced = glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let storage = MemStorage::new(1);
                let file = match storage.open(Path::new("/data/held"), true).await {
                    Ok(file) => file,
                    Err(error) => panic!("open failed: {error}"),
                };
                storage.hold_next_sync();
                storage.release_sync();
                glommio::timer::timeout(RELEASED_SYNC_WAIT_MAX, async {
                    Ok(file.sync().await.is_ok())
                })
                .await
            })
            .expect("executor")
            .join()
            .expect("join");
        assert!(
            matches!(synced, Ok(true)),
            "the sync waited for a release that had already come: {synced:?}"
        );
    }
}
