//! The storage backend: what the log needs from a file system, behind a trait
//! so that the property tests can run the same log code over a disk that
//! tears, loses and misdirects writes on demand.
//!
//! [`DmaStorage`] is the real backend (glommio DMA files, O_DIRECT, io_uring).
//! [`MemStorage`] models a disk with a volatile write cache and injectable
//! faults.

mod dma;
mod mem;
mod off_shard;
mod shard_read;

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::open_files::ExtraDescriptor;

pub use dma::{finish_deletions, is_doomed, DmaStorage};
pub use mem::{Fault, MemStorage};
pub use off_shard::background_calls_taken_back_total;
pub(crate) use off_shard::in_background;

/// A directory tree of files. Cheap to clone; clones share the same files.
#[allow(async_fn_in_trait)] // Shard-local futures: nothing here is ever sent to another thread.
pub trait Storage: Clone + 'static {
    type File: StorageFile;
    /// A file system opened to be synced whole.
    type FileSystem: 'static;

    /// Opens a file for direct-I/O reads and writes, creating it if asked.
    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File>;
    /// Creates a directory and its parents, on a file-system thread: a
    /// creation takes the file system's write lock, which a frozen or
    /// stalled file system holds until it thaws (a partition created in
    /// such a data directory stopped its whole shard for the freeze).
    async fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory, read on a file-system thread.
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a small file on the calling thread, so that its space is
    /// free when this returns (`remove_file` may defer the deletion).
    fn remove_file_at_once(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// As [`Storage::remove_file`], with the rename that sets the file aside
    /// made on a file-system thread. A rename waits for its directory's
    /// lock, which a sync of that directory holds across a disk write
    /// (renames of the shard's thread were seen taking 1-3 ms behind one)
    /// and a frozen file system holds until it thaws; on the shard's thread
    /// that stalls every partition and connection of the shard.
    async fn remove_file_off_shard(&self, path: &Path) -> io::Result<()> {
        self.retire_off_shard(path, false, Vec::new()).await
    }
    /// Removes a file (or a directory tree, `tree`) that this thread may
    /// still hold open through `open`: the name goes at once, set aside by
    /// a rename on a file-system thread, and the blocks are freed off the
    /// shard once those handles are closed (freeing a large file can wait
    /// on the disk for milliseconds to seconds).
    async fn retire_off_shard(
        &self,
        path: &Path,
        tree: bool,
        open: Vec<Rc<Self::File>>,
    ) -> io::Result<()>;
    /// Renames `from` over `to` (atomically, as rename(2) does; durable
    /// once the directory is synced), on a file-system thread; the file
    /// `to` named, which this thread may hold open through `open`, is
    /// freed as `retire_off_shard` frees it.
    async fn replace_off_shard(
        &self,
        from: &Path,
        to: &Path,
        open: Option<Rc<Self::File>>,
    ) -> io::Result<()>;
    /// Renames a file over `to` (atomically, as rename(2) does; durable
    /// once the directory is synced), on a file-system thread.
    async fn rename_off_shard(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.rename_all(vec![(from.to_path_buf(), to.to_path_buf())])
            .await
    }
    fn exists(&self, path: &Path) -> bool;
    /// The size of a file without opening it.
    fn file_size(&self, path: &Path) -> io::Result<u64>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    async fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Reads a small file whole (indexes, checkpoints, snapshots).
    async fn read_small(&self, path: &Path, bytes_max: u64) -> io::Result<Vec<u8>>;
    /// Replaces a small file atomically: temp file, fsync, rename, directory
    /// fsync. After a crash the file holds either the old or the new bytes.
    async fn write_small_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Replaces a small file through a temp file and a rename, with no
    /// fsync: other readers see the old file or the whole new one, but
    /// after a crash it may be missing, empty or partial. For files whose
    /// damage is detected and that are rebuilt from others (index files).
    async fn write_small_unsynced(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Writes a small file's new bytes to a temp file beside `path`, with
    /// no fsync, and returns the temp file's path: the caller renames it
    /// over `path` ([`Storage::rename_all`]) once a
    /// [`Storage::sync_file_system`] has made it durable. Many files then
    /// share one sync instead of two each.
    async fn write_small_staged(&self, path: &Path, bytes: &[u8]) -> io::Result<PathBuf>;
    /// Renames each `(from, to)` in order, as [`Storage::rename`] does,
    /// off the shard's thread; stops at the first failure.
    async fn rename_all(&self, renames: Vec<(PathBuf, PathBuf)>) -> io::Result<()>;
    /// Opens the file system that holds `path` for
    /// [`Storage::sync_file_system`]. Open it before writing what it is to
    /// make durable: a sync reports the writeback errors met since its
    /// handle was opened, not before.
    async fn open_file_system(&self, path: &Path) -> io::Result<Self::FileSystem>;
    /// Makes everything written to `file_system` durable: file data and
    /// sizes, creations, renames, truncations (`syncfs`).
    async fn sync_file_system(&self, file_system: &Self::FileSystem) -> io::Result<()>;
}

/// One open file. Writes take aligned buffers at aligned positions.
#[allow(async_fn_in_trait)]
pub trait StorageFile: 'static {
    type Buffer: IoBuffer;

    /// An aligned buffer of `len` bytes (a multiple of the I/O alignment).
    fn alloc(&self, len: usize) -> Self::Buffer;
    /// Writes the whole buffer at `pos`; a short write is an error.
    async fn write_at(&self, buffer: Self::Buffer, pos: u64) -> io::Result<()>;
    /// Reads up to `len` bytes at `pos`; fewer only at the end of the file.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// Makes every completed write durable (fdatasync).
    async fn sync(&self) -> io::Result<()>;
    /// Writes the whole buffer at `pos` and returns once it is durable,
    /// together with every write to this file that completed before this
    /// one was issued: what `write_at` then `sync` give, in one operation
    /// where the backend has one (an O_DSYNC write: one hand-off to the
    /// kernel's worker and one wake-up instead of two of each). `room`: a
    /// place in the shard's open-file budget for the second descriptor
    /// that may take, kept as long as it; without a place, and without
    /// such a descriptor already, it is a write and a sync.
    async fn write_at_durable(
        &self,
        buffer: Self::Buffer,
        pos: u64,
        room: Option<ExtraDescriptor>,
    ) -> io::Result<()>;
    async fn truncate(&self, len: u64) -> io::Result<()>;
    /// Reserves space without changing the file's size.
    async fn preallocate(&self, len: u64) -> io::Result<()>;
    /// Allocates the file's blocks up to `len` and makes `len` its size if
    /// it was smaller (unwritten blocks read as zeros). An O_DIRECT write
    /// inside the file's size and its allocated blocks is one io_uring
    /// completes on the submitting thread; one that extends the file (or
    /// lands past a size kept by `preallocate`) it hands to a worker thread.
    async fn allocate(&self, len: u64) -> io::Result<()>;
    async fn size(&self) -> io::Result<u64>;
}

/// The `ENOSPC` check used to report a full disk distinctly.
pub fn is_disk_full(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::ENOSPC)
}

/// A buffer a backend writes from; aligned for direct I/O where it matters.
pub trait IoBuffer {
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl IoBuffer for Vec<u8> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl IoBuffer for glommio::io::DmaBuffer {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.as_bytes_mut()
    }
}

/// Finishes deletions a crash or shutdown cut short (files and trees set
/// aside by the storage's remove, still present at the next open).
pub(crate) fn forget_doomed<S: Storage>(storage: &S, dir: &Path, names: &[String]) {
    for name in names.iter().filter(|name| is_doomed(name)) {
        let path = dir.join(name);
        let removed = if path.is_dir() {
            storage.remove_dir_all(&path)
        } else {
            storage.remove_file(&path)
        };
        if let Err(error) = removed {
            tracing::warn!(%error, path = %path.display(), "leftover of a deletion not removed");
        }
    }
}
