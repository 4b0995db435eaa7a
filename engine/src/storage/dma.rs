//! The real backend: glommio DMA files (O_DIRECT through io_uring).

use std::cell::RefCell;
use std::collections::HashSet;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use super::off_shard::off_shard;
use super::{shard_read, Storage, StorageFile};
use crate::constants::{DELETIONS_QUEUED_MAX, IO_ALIGNMENT, READ_INLINE_BYTES_MAX};
use crate::open_files::ExtraDescriptor;

/// How often a stopping shard looks whether the deletion thread is done.
const DELETIONS_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How often a removed file's handle is looked at again while a reader
/// still shares it (a read in flight: milliseconds), and for how long in
/// all for the handles of one removal.
const RETIRE_POLL_INTERVAL: Duration = Duration::from_millis(10);
const RETIRE_WAIT_MAX: Duration = Duration::from_secs(10);

/// Files on a real file system, written with direct I/O.
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaStorage;

fn glommio_error(error: glommio::GlommioError<()>) -> io::Error {
    match error {
        glommio::GlommioError::IoError(error) => error,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

thread_local! {
    /// Devices on which this thread's reactor has decided io_uring polling
    /// with a real read (see `probe_polling`).
    static PROBED_DEVICES: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// Probe files made by this process. Process-wide, not per thread: shards
/// probe at the same time, and per-thread numbers gave two shards the same
/// file name (one removed it while the other was opening it: ENOENT at
/// start-up).
static PROBE_FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// glommio decides once per thread and device whether DMA files go through
/// the io_uring poll ring, by reading the first page of the first file it
/// opens there. If that file is empty (a new segment) the read finishes
/// without any I/O and glommio concludes the device can be polled; on a
/// device that cannot (virtio and most cloud disks), every later DMA read in
/// the thread then fails with EOPNOTSUPP. So before the first open on a
/// device, a one-page probe file is opened to make glommio decide on a real
/// read. (Found by the kill -9 crash test: reopening after a kill that left
/// an empty last segment failed.)
async fn probe_polling(dir: &Path) -> io::Result<()> {
    let device = std::fs::metadata(dir)?.dev();
    if PROBED_DEVICES.with(|probed| probed.borrow().contains(&device)) {
        return Ok(());
    }
    let number = PROBE_FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let probe = dir.join(format!(
        ".sluice-poll-probe-{}-{number}",
        std::process::id()
    ));
    let written = probe.clone();
    off_shard(move || std::fs::write(&written, [0u8; IO_ALIGNMENT as usize])).await?;
    let opened = dma_open(&probe, false, false).await;
    let removing = probe.clone();
    let removed = off_shard(move || std::fs::remove_file(&removing)).await;
    let file = opened?;
    file.close().await.map_err(glommio_error)?;
    removed?;
    PROBED_DEVICES.with(|probed| probed.borrow_mut().insert(device));
    Ok(())
}

/// Where the kernel shows this process's open descriptors.
const PROC_FDS: &str = "/proc/self/fd";

/// Opens `path` with glommio for direct I/O (`write`: read and write;
/// `create`: make it if missing), through a descriptor of its own.
///
/// glommio opens the file and then looks the path up once more (statfs)
/// and panics if it is gone by then. A partition's directory is renamed
/// aside the moment its topic is deleted and then removed by the deletion
/// thread, and retention renames a segment aside, while a writer or reader
/// of the shard may be opening a file there: that took the shard, and so
/// the broker, down (`bin/tests/delete_while_writing.rs`). So the file is
/// opened here first, plainly (creating it if asked), and glommio opens
/// `/proc/self/fd/<that descriptor>`: both of its look-ups reach the same
/// file, wherever it has been renamed and even once unlinked. The plain
/// open is made on a file-system thread (`off_shard`): creating a file
/// waits for a frozen or stalled file system. glommio's own open of an
/// existing file through its descriptor needs no write access to the
/// file system (its statfs and reads of the device's sysfs files are
/// synchronous, but take no file-system lock).
/// Without /proc (not mounted) glommio opens the plain path. The path
/// glommio keeps is stale once the descriptor here is closed: nothing
/// asks glommio for anything by path after the open (a file's size comes
/// from `fstat` on its own descriptor).
async fn dma_open(path: &Path, write: bool, create: bool) -> io::Result<DmaFile> {
    let mut options = OpenOptions::new();
    options.read(true).write(write);
    if !proc_fds_mounted() {
        options.create(create);
        return options.dma_open(path).await.map_err(glommio_error);
    }
    let opening = path.to_path_buf();
    let plain = off_shard(move || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .create(create)
            .open(&opening)
    })
    .await?;
    let through = proc_fd_path(plain.as_raw_fd());
    let opened = options.dma_open(&through).await.map_err(glommio_error);
    // Held until glommio's second look-up is done.
    drop(plain);
    opened
}

/// The /proc entry of this process's descriptor `fd`: opening it opens
/// the descriptor's file, whatever its name now.
fn proc_fd_path(fd: std::os::fd::RawFd) -> PathBuf {
    Path::new(PROC_FDS).join(fd.to_string())
}

/// Whether `/proc/self/fd` exists: looked up once per process, since /proc
/// is not mounted or unmounted under a running broker.
fn proc_fds_mounted() -> bool {
    static MOUNTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MOUNTED.get_or_init(|| Path::new(PROC_FDS).is_dir())
}

/// What a removed file or directory is renamed to before it is deleted:
/// `.<name>.deleted-<pid>-<nanos>-<n>`, next to where it was. The leading
/// dot keeps it out of segment and partition listings; pid, time and a
/// counter keep it unique within a process and across restarts.
const DOOMED_MARKER: &str = ".deleted-";

static DOOMED_NAMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether a directory entry is something set aside for deletion (left
/// behind by a crash or a shutdown before its deletion ran).
pub fn is_doomed(name: &str) -> bool {
    name.starts_with('.') && name.contains(DOOMED_MARKER)
}

/// Renames `path` out of the way (cheap, and frees the name at once, so a
/// new segment of the same name can be created right after) and returns the
/// new path. A name already set aside is returned as it is.
fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let Some(doomed) = doomed_name(path) else {
        return Ok(path.to_path_buf());
    };
    std::fs::rename(path, &doomed)?;
    Ok(doomed)
}

/// Renames `from` over `to`, having first linked the file `to` names
/// under a set-aside name, which it returns (`None`: `to` named nothing,
/// or a set-aside name already).
fn link_aside_and_rename(from: &Path, to: &Path) -> io::Result<Option<PathBuf>> {
    let kept = match doomed_name(to) {
        Some(doomed) => match std::fs::hard_link(to, &doomed) {
            Ok(()) => Some(doomed),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(error),
        },
        None => None,
    };
    if let Err(error) = std::fs::rename(from, to) {
        if let Some(doomed) = kept {
            // A second name of a file still named `to`: nothing freed.
            let _ = std::fs::remove_file(&doomed);
        }
        return Err(error);
    }
    Ok(kept)
}

/// The name `path` is set aside under, or `None` if it is set aside already.
fn doomed_name(path: &Path) -> Option<PathBuf> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    if is_doomed(&name) {
        return None;
    }
    let number = DOOMED_NAMES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or_default();
    Some(path.with_file_name(format!(
        ".{name}{DOOMED_MARKER}{}-{nanos}-{number}",
        std::process::id()
    )))
}

/// Deletes a set-aside file or tree once this shard's `open` handles into
/// it are closed. Whoever drops the last reference to a file's blocks frees
/// them, and that is the last close as much as the unlink: a handle
/// dropped after the deletion thread's unlink is closed by the shard's
/// ring, and the kernel then frees the file (and waits for its discards)
/// on the shard's thread. Profiled under the compacted fixed-rate load,
/// such closes freed 655 MB in 40 s on the two shards, most of what the
/// cleaner replaced. So each handle is closed here first (after any
/// reader that still shares it lets go, for up to `RETIRE_WAIT_MAX`), and
/// only then is the name queued for deletion.
fn forget_after_close(doomed: PathBuf, tree: bool, open: Vec<Rc<DmaStorageFile>>) {
    if open.is_empty() {
        forget_later(doomed, tree);
        return;
    }
    // Counted from now, so that a stopping shard waits for the closes too.
    DELETIONS_PENDING.fetch_add(1, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + RETIRE_WAIT_MAX;
    glommio::spawn_local(async move {
        for handle in open {
            close_when_unshared(handle, deadline).await;
        }
        forget_later(doomed, tree);
        DELETIONS_PENDING.fetch_sub(1, Ordering::SeqCst);
    })
    .detach();
}

/// Closes `handle` once no one else holds it. A reader that holds it past
/// `deadline` keeps it; the file is then freed wherever that reader drops
/// it.
async fn close_when_unshared(mut handle: Rc<DmaStorageFile>, deadline: std::time::Instant) {
    loop {
        match Rc::try_unwrap(handle) {
            Ok(owned) => {
                if let Err(error) = owned.close().await {
                    tracing::debug!(%error, "closing a removed file failed");
                }
                return;
            }
            Err(shared) => {
                if std::time::Instant::now() >= deadline {
                    return;
                }
                handle = shared;
                glommio::timer::sleep(RETIRE_POLL_INTERVAL).await;
            }
        }
    }
}

/// Deletes a set-aside file or tree on the process's deletion thread.
/// Freeing a large file's blocks can take seconds where the file system
/// discards them as it frees them (ext4 mounted with `discard`, without a
/// journal, sends the discard and waits for it inside `unlink`): on the
/// shard's own thread that stalled every partition and connection of the
/// shard (measured: DeleteTopics of 100 partitions of 64 MiB segments took
/// 2.4 s, the shard answering nothing meanwhile). Kafka defers segment
/// deletion for the same reason (`file.delete.delay.ms`). A deletion cut
/// short by a shutdown or crash is finished by the next open.
///
/// The thread is a plain one, not glommio's blocking pool: a pool thread
/// still deleting when its executor ended panicked handing back its result,
/// so a shutdown had to wait for every deletion however long it took. A
/// plain thread owes no executor an answer; the process may end under it.
fn forget_later(doomed: PathBuf, tree: bool) {
    DELETIONS_PENDING.fetch_add(1, Ordering::SeqCst);
    let deletion = Deletion { path: doomed, tree };
    // The queue is bounded; when it is full (or the thread could not be
    // started) the shard deletes the file itself, slowly but surely.
    let refused = match deleter() {
        Some(sender) => match sender.try_send(deletion) {
            Ok(()) => None,
            Err(
                mpsc::TrySendError::Full(deletion) | mpsc::TrySendError::Disconnected(deletion),
            ) => Some(deletion),
        },
        None => Some(deletion),
    };
    if let Some(deletion) = refused {
        deletion.run();
    }
}

/// One set-aside file or tree to delete.
struct Deletion {
    path: PathBuf,
    tree: bool,
}

impl Deletion {
    fn run(self) {
        let removed = if self.tree {
            std::fs::remove_dir_all(&self.path)
        } else {
            std::fs::remove_file(&self.path)
        };
        if let Err(error) = removed {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::warn!(%error, path = %self.path.display(), "deleting a removed file failed");
            }
        }
        DELETIONS_PENDING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Deletions queued or running, process-wide.
static DELETIONS_PENDING: AtomicUsize = AtomicUsize::new(0);

/// The deletion thread's queue, started at the first deletion; `None` if
/// the thread could not be started.
static DELETER: OnceLock<Option<mpsc::SyncSender<Deletion>>> = OnceLock::new();

fn deleter() -> Option<&'static mpsc::SyncSender<Deletion>> {
    DELETER
        .get_or_init(|| {
            let (sender, receiver) = mpsc::sync_channel::<Deletion>(DELETIONS_QUEUED_MAX);
            let started = std::thread::Builder::new()
                .name("sluice-deleter".into())
                .spawn(move || {
                    for deletion in receiver {
                        deletion.run();
                    }
                });
            match started {
                Ok(_) => Some(sender),
                Err(error) => {
                    tracing::warn!(%error, "no deletion thread; shards delete files themselves");
                    None
                }
            }
        })
        .as_ref()
}

/// Waits, up to `wait_max`, for the deferred deletions to end; returns how
/// many are still queued or running. A deletion still running at the bound
/// is finished by the next open. The deletion thread cannot wake a shard,
/// so this polls, once per `DELETIONS_POLL_INTERVAL`, at shutdown only.
pub async fn finish_deletions(wait_max: std::time::Duration) -> usize {
    let deadline = std::time::Instant::now() + wait_max;
    loop {
        let pending = DELETIONS_PENDING.load(Ordering::SeqCst);
        if pending == 0 || std::time::Instant::now() >= deadline {
            return pending;
        }
        glommio::timer::sleep(DELETIONS_POLL_INTERVAL).await;
    }
}

impl Storage for DmaStorage {
    type File = DmaStorageFile;
    type FileSystem = Arc<std::fs::File>;

    async fn open(&self, path: &Path, create: bool) -> io::Result<DmaStorageFile> {
        probe_polling(path.parent().unwrap_or(Path::new("."))).await?;
        let file = dma_open(path, true, create).await?;
        Ok(DmaStorageFile {
            file,
            durable: RefCell::new(DurableHandle::NotOpened),
        })
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        off_shard(move || std::fs::create_dir_all(path)).await
    }

    async fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let path = path.to_path_buf();
        off_shard(move || {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(path)? {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
            Ok(names)
        })
        .await
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let doomed = set_aside(path)?;
        forget_later(doomed, false);
        Ok(())
    }

    fn remove_file_at_once(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    async fn retire_off_shard(
        &self,
        path: &Path,
        tree: bool,
        open: Vec<Rc<DmaStorageFile>>,
    ) -> io::Result<()> {
        let path = path.to_path_buf();
        let doomed = off_shard(move || set_aside(&path)).await?;
        forget_after_close(doomed, tree, open);
        Ok(())
    }

    /// The file `to` names is first linked under a set-aside name, so the
    /// rename only drops a name, never the file's blocks, whatever the
    /// shard still holds open; a crash between the two leaves both names,
    /// and the next open removes the set-aside one (a name only).
    async fn replace_off_shard(
        &self,
        from: &Path,
        to: &Path,
        open: Option<Rc<DmaStorageFile>>,
    ) -> io::Result<()> {
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        if let Some(doomed) = off_shard(move || link_aside_and_rename(&from, &to)).await? {
            forget_after_close(doomed, false, open.into_iter().collect());
        }
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let doomed = set_aside(path)?;
        forget_later(doomed, true);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let directory = glommio::io::Directory::open(path)
            .await
            .map_err(glommio_error)?;
        directory.sync().await.map_err(glommio_error)?;
        directory.close().await.map_err(glommio_error)
    }

    async fn read_small(&self, path: &Path, bytes_max: u64) -> io::Result<Vec<u8>> {
        let size = std::fs::metadata(path)?.len();
        if size > bytes_max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {size} bytes, more than the {bytes_max} expected",
                    path.display()
                ),
            ));
        }
        if size <= READ_INLINE_BYTES_MAX {
            return std::fs::read(path);
        }
        // An index of a large segment is megabytes: read from a cold page
        // cache on a slow disk, tens of milliseconds the shard's other
        // partitions would wait for.
        let path = path.to_path_buf();
        off_shard(move || std::fs::read(path)).await
    }

    /// Every step goes through the reactor (io_uring, or glommio's
    /// blocking-thread pool for the rename): these files are written at
    /// every segment roll and recovery point, often for many partitions at
    /// once, and a blocking fsync here would stall every partition and
    /// connection of the shard for the disk's sync latency each time.
    async fn write_small_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.replace_small(path, bytes, true).await
    }

    async fn write_small_unsynced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.replace_small(path, bytes, false).await
    }

    async fn write_small_staged(&self, path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
        write_temp(path, bytes, false).await
    }

    /// On a file-system thread: a rename waits on the directory's lock for
    /// as long as the file system stalls.
    async fn rename_all(&self, renames: Vec<(PathBuf, PathBuf)>) -> io::Result<()> {
        off_shard(move || {
            renames
                .iter()
                .try_for_each(|(from, to)| std::fs::rename(from, to))
        })
        .await
    }

    /// A descriptor of the directory `path`, opened on a file-system
    /// thread (a stalled file system stalls the open).
    async fn open_file_system(&self, path: &Path) -> io::Result<Arc<std::fs::File>> {
        let path = path.to_path_buf();
        off_shard(move || std::fs::File::open(&path).map(Arc::new)).await
    }

    /// `syncfs(2)` on a file-system thread: it waits for the writeback of
    /// every dirty inode of the file system and a flush of the disk's cache.
    /// Since Linux 5.8 it reports a writeback error met since its
    /// descriptor was opened (`open_file_system`), so background writeback
    /// of the staged files that failed before the sync is reported too.
    /// (The segments' own writes are O_DIRECT and report their errors
    /// themselves.)
    async fn sync_file_system(&self, file_system: &Arc<std::fs::File>) -> io::Result<()> {
        let directory = Arc::clone(file_system);
        off_shard(move || {
            // SAFETY: the descriptor is open for the length of the call:
            // `directory` holds it.
            if unsafe { libc::syncfs(directory.as_raw_fd()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
        .await
    }
}

/// The temp file beside `path` that a replacement of it is written to.
fn temp_path(path: &Path) -> PathBuf {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    PathBuf::from(temp)
}

impl DmaStorage {
    /// Writes `bytes` to a temp file beside `path` and renames it over
    /// `path`; `durable`: with the file's fsync before the rename and the
    /// directory's after it.
    async fn replace_small(&self, path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
        let parent = path.parent().unwrap_or(Path::new("."));
        let temp = write_temp(path, bytes, durable).await?;
        glommio::io::rename(&temp, path)
            .await
            .map_err(glommio_error)?;
        if durable {
            self.sync_dir(parent).await?;
        }
        Ok(())
    }
}

/// Writes `bytes` to the temp file beside `path` (synced if `durable`)
/// and returns its path. On an error the temp file is removed: one cut
/// short by a full disk would hold on to the space it got; the file at
/// `path` is untouched.
async fn write_temp(path: &Path, bytes: &[u8], durable: bool) -> io::Result<PathBuf> {
    let temp = temp_path(path);
    let file = glommio::io::BufferedFile::create(&temp)
        .await
        .map_err(glommio_error)?;
    let written = write_all_buffered(&file, bytes).await;
    let synced = match written {
        Ok(()) if durable => file.fdatasync().await.map_err(glommio_error),
        other => other,
    };
    let closed = file.close().await.map_err(glommio_error);
    if let Err(error) = synced.and(closed) {
        let _ = std::fs::remove_file(&temp);
        return Err(error);
    }
    Ok(temp)
}

/// Writes all of `bytes` at the start of `file`.
async fn write_all_buffered(file: &glommio::io::BufferedFile, bytes: &[u8]) -> io::Result<()> {
    let mut position = 0usize;
    while position < bytes.len() {
        let written = file
            .write_at(bytes[position..].to_vec(), position as u64)
            .await
            .map_err(glommio_error)?;
        if written == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("wrote 0 of {} bytes", bytes.len() - position),
            ));
        }
        position += written;
    }
    Ok(())
}

/// An open DMA file.
#[derive(Debug)]
pub struct DmaStorageFile {
    file: DmaFile,
    /// A second descriptor of the same file opened with O_DSYNC, for
    /// durable writes; opened at the first one.
    durable: RefCell<DurableHandle>,
}

/// The O_DSYNC descriptor of a [`DmaStorageFile`].
#[derive(Debug)]
enum DurableHandle {
    /// Not opened yet, or refused for want of room in the shard's open-file
    /// budget: durable writes are a write and an fdatasync meanwhile.
    NotOpened,
    Open(Rc<DurableFile>),
    /// It could not be opened (no /proc to reopen the file through, or the
    /// open failed): durable writes are a write and an fdatasync.
    Unavailable,
}

/// An O_DSYNC descriptor with its place in the open-file budget.
#[derive(Debug)]
struct DurableFile {
    file: DmaFile,
    room: ExtraDescriptor,
}

impl DmaStorageFile {
    /// Closes the file's descriptors.
    async fn close(self) -> io::Result<()> {
        if let DurableHandle::Open(durable) = self.durable.into_inner() {
            if let Ok(DurableFile { file, room }) = Rc::try_unwrap(durable) {
                let closed = file.close().await.map_err(glommio_error);
                drop(room);
                closed?;
            }
        }
        self.file.close().await.map_err(glommio_error)
    }

    /// The O_DSYNC descriptor, opened on first use in `room`; `None` if it
    /// cannot be.
    async fn durable_handle(&self, room: Option<ExtraDescriptor>) -> Option<Rc<DurableFile>> {
        match &*self.durable.borrow() {
            DurableHandle::Open(handle) => return Some(Rc::clone(handle)),
            DurableHandle::Unavailable => return None,
            DurableHandle::NotOpened => {}
        }
        let room = room?;
        let opened = if proc_fds_mounted() {
            // Through this descriptor's /proc entry: the same inode even
            // if the file was renamed since it was opened.
            let through = proc_fd_path(self.file.as_raw_fd());
            let mut options = OpenOptions::new();
            options.write(true).custom_flags(libc::O_DSYNC);
            options.dma_open(&through).await.map_err(glommio_error)
        } else {
            Err(io::Error::other("/proc/self/fd is not mounted"))
        };
        let mut state = self.durable.borrow_mut();
        if let DurableHandle::Open(handle) = &*state {
            // Opened by another write meanwhile; the one opened here is
            // dropped, which closes it.
            return Some(Rc::clone(handle));
        }
        match opened {
            Ok(file) => {
                let handle = Rc::new(DurableFile { file, room });
                *state = DurableHandle::Open(Rc::clone(&handle));
                Some(handle)
            }
            Err(error) => {
                tracing::debug!(%error, "no O_DSYNC descriptor; durable writes sync apart");
                *state = DurableHandle::Unavailable;
                None
            }
        }
    }
}

/// A direct write of the whole buffer through `file`; a short write is an
/// error.
async fn write_whole(file: &DmaFile, buffer: DmaBuffer, pos: u64) -> io::Result<()> {
    // A shard that writes but no longer reads still frees the read
    // buffers other shards let go of.
    shard_read::free_returned();
    let len = buffer.len();
    let written = file.write_at(buffer, pos).await.map_err(glommio_error)?;
    if written != len {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short direct write: {written} of {len} bytes at {pos}"),
        ));
    }
    Ok(())
}

impl StorageFile for DmaStorageFile {
    type Buffer = DmaBuffer;

    fn alloc(&self, len: usize) -> DmaBuffer {
        debug_assert!((len as u64).is_multiple_of(IO_ALIGNMENT));
        self.file.alloc_dma_buffer(len)
    }

    async fn write_at(&self, buffer: DmaBuffer, pos: u64) -> io::Result<()> {
        write_whole(&self.file, buffer, pos).await
    }

    async fn write_at_durable(
        &self,
        buffer: DmaBuffer,
        pos: u64,
        room: Option<ExtraDescriptor>,
    ) -> io::Result<()> {
        // An O_DSYNC write completes once its data, and the metadata
        // needed to read it back, are on stable storage: the kernel syncs
        // the file's range after the write (`generic_write_sync`), which
        // for ext4 is the fdatasync of the whole inode and a device cache
        // flush, so writes completed before this one are covered too. On
        // this disk (fio, 4 KiB extending writes at depth 1) that is one
        // hand-off to an io_uring worker and one context switch per
        // durable write instead of three, at about the same device time.
        match self.durable_handle(room).await {
            Some(durable) => write_whole(&durable.file, buffer, pos).await,
            None => {
                self.write_at(buffer, pos).await?;
                self.sync().await
            }
        }
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        shard_read::free_returned();
        let result = self.file.read_at(pos, len).await.map_err(glommio_error)?;
        Ok(shard_read::share(result))
    }

    async fn sync(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(glommio_error)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len).await.map_err(glommio_error)
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        self.file
            .pre_allocate(len, true)
            .await
            .map_err(glommio_error)
    }

    async fn allocate(&self, len: u64) -> io::Result<()> {
        self.file
            .pre_allocate(len, false)
            .await
            .map_err(glommio_error)
    }

    async fn size(&self) -> io::Result<u64> {
        // fstat on the descriptor, not glommio's statx of the path it was
        // opened by: that path names a descriptor closed since (see
        // `dma_open`), and the file may have been renamed.
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat writes a whole `stat` into memory this function
        // owns; the descriptor is this file's, open while `self` lives.
        let result = unsafe { libc::fstat(self.file.as_raw_fd(), stat.as_mut_ptr()) };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstat succeeded, so it initialised the whole struct.
        let stat = unsafe { stat.assume_init() };
        u64::try_from(stat.st_size).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("negative file size {}", stat.st_size),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long the test waits for the deletion thread.
    const DELETION_WAIT_MAX: Duration = Duration::from_secs(5);

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-dma-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    }

    /// Runs `body` on an executor of its own with a fresh scratch
    /// directory, removed afterwards.
    fn in_scratch_dir<F, Fut>(name: &str, body: F)
    where
        F: FnOnce(PathBuf) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let dir = scratch_dir(name);
        let body_dir = dir.clone();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || body(body_dir))
            .expect("executor starts")
            .join()
            .expect("test body completes");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn doomed_entries(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .expect("list scratch directory")
            .filter_map(Result::ok)
            .filter(|entry| is_doomed(&entry.file_name().to_string_lossy()))
            .count()
    }

    async fn wait_until_no_doomed(dir: &Path) -> bool {
        let deadline = std::time::Instant::now() + DELETION_WAIT_MAX;
        while std::time::Instant::now() < deadline {
            if doomed_entries(dir) == 0 {
                return true;
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// A durable write goes through a second descriptor of the file, opened
    /// with O_DSYNC through the first one (so the file renamed meanwhile is
    /// still the one written), and lands where asked beside plain writes.
    #[test]
    fn a_durable_write_goes_through_an_o_dsync_descriptor() {
        in_scratch_dir("durable", |dir| async move {
            let storage = DmaStorage;
            let path = dir.join("segment");
            let file = storage.open(&path, true).await.expect("create");
            let mut plain = file.alloc(IO_ALIGNMENT as usize);
            plain.as_bytes_mut().fill(b'a');
            file.write_at(plain, 0).await.expect("plain write");
            let renamed = dir.join("renamed");
            std::fs::rename(&path, &renamed).expect("rename");
            let mut durable = file.alloc(IO_ALIGNMENT as usize);
            durable.as_bytes_mut().fill(b'b');
            let budget = crate::open_files::OpenFiles::new(2);
            let room = budget.extra_descriptor();
            assert!(room.is_some(), "a budget of 2 has room for one more");
            file.write_at_durable(durable, IO_ALIGNMENT, room)
                .await
                .expect("durable write");
            assert_eq!(budget.extra_descriptors(), 1, "held by the descriptor");
            let flags = match &*file.durable.borrow() {
                // SAFETY: F_GETFL reads the flags of a descriptor the
                // handle keeps open; it touches no memory of ours.
                DurableHandle::Open(handle) => unsafe {
                    libc::fcntl(handle.file.as_raw_fd(), libc::F_GETFL)
                },
                other => panic!("no O_DSYNC descriptor: {other:?}"),
            };
            assert!(
                flags >= 0 && flags & libc::O_DSYNC == libc::O_DSYNC,
                "the durable descriptor's flags {flags:#o} lack O_DSYNC"
            );
            let bytes = std::fs::read(&renamed).expect("read back");
            let half = IO_ALIGNMENT as usize;
            assert_eq!(bytes.len(), 2 * half);
            assert!(bytes[..half].iter().all(|&byte| byte == b'a'));
            assert!(bytes[half..].iter().all(|&byte| byte == b'b'));
            file.close().await.expect("close");
            assert_eq!(budget.extra_descriptors(), 0, "given back at the close");
        });
    }

    /// A staged file is left under its temp name for the caller's rename,
    /// and the file system opened before it was written syncs it; a data
    /// directory that is gone cannot be opened to be synced.
    #[test]
    fn a_staged_file_waits_for_its_rename_and_the_file_system_syncs() {
        in_scratch_dir("staged", |dir| async move {
            let storage = DmaStorage;
            let path = dir.join("recovery-point");
            let file_system = storage.open_file_system(&dir).await.expect("open");
            let temp = storage
                .write_small_staged(&path, b"point")
                .await
                .expect("staged");
            assert!(!path.exists(), "the staged file took its name early");
            storage.sync_file_system(&file_system).await.expect("sync");
            storage
                .rename_all(vec![(temp, path.clone())])
                .await
                .expect("rename");
            assert_eq!(std::fs::read(&path).expect("renamed"), b"point");
            assert!(storage
                .open_file_system(&dir.join("missing"))
                .await
                .is_err());
        });
    }

    /// A file replaced or removed while this thread holds it open keeps a
    /// name until the last handle here is closed: were it deleted first,
    /// the shard's own close would free its blocks (and wait for the
    /// disk's discards) on the shard's thread.
    #[test]
    fn a_removed_file_is_deleted_only_after_its_handles_close() {
        in_scratch_dir("retire", |dir| async move {
            let storage = DmaStorage;
            let segment = dir.join("00000000000000000000.log");
            let copy = dir.join("00000000000000000000.log.cleaned");
            std::fs::write(&segment, vec![1u8; 8192]).expect("segment");
            std::fs::write(&copy, vec![2u8; 4096]).expect("copy");
            let handle = Rc::new(storage.open(&segment, false).await.expect("open"));
            let reader = Rc::clone(&handle);

            storage
                .replace_off_shard(&copy, &segment, Some(handle))
                .await
                .expect("replace");
            assert_eq!(
                std::fs::read(&segment).expect("new segment"),
                vec![2u8; 4096]
            );
            glommio::timer::sleep(Duration::from_millis(50)).await;
            assert_eq!(doomed_entries(&dir), 1, "deleted while a reader held it");
            let old = reader.read_at(0, 8192).await.expect("old file still reads");
            assert_eq!(&old[..], &[1u8; 8192][..]);
            drop(reader);
            assert!(
                wait_until_no_doomed(&dir).await,
                "not deleted after its close"
            );

            let handle = Rc::new(storage.open(&segment, false).await.expect("open"));
            let reader = Rc::clone(&handle);
            storage
                .retire_off_shard(&segment, false, vec![handle])
                .await
                .expect("retire");
            assert!(!segment.exists());
            glommio::timer::sleep(Duration::from_millis(50)).await;
            assert_eq!(doomed_entries(&dir), 1, "deleted while a reader held it");
            drop(reader);
            assert!(
                wait_until_no_doomed(&dir).await,
                "not deleted after its close"
            );
        });
    }
}
