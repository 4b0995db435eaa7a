//! Disk reads handed out as `Bytes` without a copy.
//!
//! A direct read lands in a buffer of the reading shard's reactor. That
//! buffer is not `Send`: it is reference counted with `Rc`, and a registered
//! buffer goes back to the reactor's own allocator when freed. A fetch
//! answered by another shard, or a response still queued on a socket, holds
//! the bytes on another thread. Copying every cold read into a fresh `Bytes`
//! made that safe at the price of one memory copy of every byte read from
//! disk. Here the buffer itself is shared instead: any thread may read it,
//! and only the shard that made it frees it. A buffer whose last holder is on
//! another thread goes back to its shard in a queue, which that shard empties
//! on its next disk read or write (Seastar's `foreign_ptr` works the same
//! way).

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, ThreadId};

use bytes::Bytes;
use glommio::io::ReadResult;

/// A read buffer moved off its shard's thread. It is only ever moved there:
/// never dereferenced, cloned or dropped.
struct Away {
    _buffer: ReadResult,
}

// SAFETY: an `Away` is created on the buffer's own thread, moved (a plain
// memory copy, which leaves the `Rc` counts inside alone) into its shard's
// `Returns` queue, and dropped only by that shard (`free_returned`) or
// leaked (`Returns::drop` away from home).
unsafe impl Send for Away {}

/// The buffers other threads let go of, waiting for their shard to free
/// them.
struct Returns {
    home: ThreadId,
    /// `buffers.len()`, readable without the lock: the shard's check on
    /// every disk operation is one atomic load while nothing is queued.
    queued: AtomicUsize,
    buffers: Mutex<Vec<Away>>,
}

impl Drop for Returns {
    fn drop(&mut self) {
        // The last holder of a shard's queue can be another thread after the
        // shard has stopped: what is still queued is leaked, not freed away
        // from home. It happens once per shard, at its end.
        let buffers = std::mem::take(
            self.buffers
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if thread::current().id() == self.home {
            drop(buffers);
        } else {
            std::mem::forget(buffers);
        }
    }
}

thread_local! {
    static RETURNS: Arc<Returns> = Arc::new(Returns {
        home: thread::current().id(),
        queued: AtomicUsize::new(0),
        buffers: Mutex::new(Vec::new()),
    });
}

/// A shard's read buffer shared as `Bytes`.
struct ShardRead {
    buffer: ManuallyDrop<ReadResult>,
    /// Where the bytes are: taken once on the home thread, so other threads
    /// never touch the buffer's own bookkeeping.
    start: *const u8,
    len: usize,
    returns: Arc<Returns>,
}

// SAFETY: other threads only read the bytes at `start` (the buffer is
// immutable once the read completed, and kept alive until `drop`), and a
// drop away from home moves the buffer to its shard's queue untouched.
unsafe impl Send for ShardRead {}

impl AsRef<[u8]> for ShardRead {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `start` and `len` describe the completed read held by
        // `buffer`, which lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.start, self.len) }
    }
}

impl Drop for ShardRead {
    fn drop(&mut self) {
        // SAFETY: `buffer` is taken here once and never used again.
        let buffer = unsafe { ManuallyDrop::take(&mut self.buffer) };
        if thread::current().id() == self.returns.home {
            drop(buffer);
            return;
        }
        let mut buffers = self
            .returns
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        buffers.push(Away { _buffer: buffer });
        self.returns.queued.store(buffers.len(), Ordering::Release);
    }
}

/// The bytes of a completed read, shared without a copy.
pub(super) fn share(buffer: ReadResult) -> Bytes {
    if buffer.is_empty() {
        return Bytes::new();
    }
    let start = buffer.as_ptr();
    let len = buffer.len();
    let returns = RETURNS.with(Arc::clone);
    Bytes::from_owner(ShardRead {
        buffer: ManuallyDrop::new(buffer),
        start,
        len,
        returns,
    })
}

/// Frees the buffers of this shard that other threads let go of.
pub(super) fn free_returned() {
    RETURNS.with(|returns| {
        if returns.queued.load(Ordering::Acquire) == 0 {
            return;
        }
        let buffers = {
            let mut buffers = returns
                .buffers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            returns.queued.store(0, Ordering::Release);
            std::mem::take(&mut *buffers)
        };
        drop(buffers);
    });
}

/// Buffers of this shard waiting to be freed (for tests).
#[cfg(test)]
fn returned_here() -> usize {
    RETURNS.with(|returns| returns.queued.load(Ordering::Acquire))
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::io::DmaFile;

    #[test]
    fn a_read_dropped_on_another_thread_is_freed_by_its_shard() {
        let dir = std::env::temp_dir().join(format!("sluice-shard-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("data");
        let written: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &written).expect("file written");
        let ex = glommio::LocalExecutorBuilder::default()
            .make()
            .expect("executor");
        let path_in = path.clone();
        ex.run(async move {
            let file = DmaFile::open(&path_in).await.expect("opened");
            let read = file.read_at(100, 5000).await.expect("read");
            let bytes = share(read);
            assert_eq!(&bytes[..], &written[100..5100]);
            let slice = bytes.slice(10..20);
            drop(bytes);
            // The last holder lets go on another thread: the buffer waits
            // for this shard instead of being freed there.
            let seen = thread::spawn(move || slice.to_vec()).join();
            assert_eq!(seen.ok().as_deref(), Some(&written[110..120]));
            assert_eq!(returned_here(), 1);
            free_returned();
            assert_eq!(returned_here(), 0);
            // A holder on the shard's own thread frees it at once.
            let read = file.read_at(0, 512).await.expect("read");
            drop(share(read));
            assert_eq!(returned_here(), 0);
            file.close().await.expect("closed");
        });
        std::fs::remove_dir_all(&dir).expect("temp dir removed");
    }
}
