//! File-system calls that can wait on the disk, made on plain threads
//! instead of the shard's.
//!
//! A call that creates a file, renames one or makes a directory takes the
//! file system's write lock, and waits as long as the file system does: a
//! frozen file system (`fsfreeze`, snapshot tools) or a stalled volume
//! makes it wait for as long as the stall lasts. Made on the shard's own
//! thread, that stalled every partition and connection of the shard (the
//! frozen-disk test: metadata requests unanswered for 32 s, the broker's
//! liveness check 31,874 ms late). On a thread of their own, only the
//! partition that needs the file waits; everything else is answered.
//!
//! The threads are plain ones, not glommio's blocking pool: a pool thread
//! still busy when its executor ends panics handing back its result,
//! while these owe no executor anything. The result travels in a slot the
//! waiting task polls; the thread wakes the task through its waker, which
//! glommio lets other threads use.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::constants::{FS_CALLS_QUEUED_MAX, FS_THREADS};

type Call = Box<dyn FnOnce() + Send>;

/// Where a call's result waits for its task.
struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// A call's result, once its thread has made it.
struct Pending<T>(Arc<Mutex<Slot<T>>>);

impl<T> Future for Pending<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<T> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = slot.value.take() {
            return Poll::Ready(value);
        }
        match &slot.waker {
            Some(waker) if waker.will_wake(context.waker()) => {}
            _ => slot.waker = Some(context.waker().clone()),
        }
        Poll::Pending
    }
}

/// Runs `call` on one of the process's file-system threads and resolves to
/// its result. When the threads' queue is full, or they could not be
/// started, the call is made here and now: slowly, but surely.
pub(crate) fn off_shard<T, F>(call: F) -> impl Future<Output = T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    let filled = Arc::clone(&slot);
    let job: Call = Box::new(move || {
        let value = call();
        let waker = {
            let mut slot = filled.lock().unwrap_or_else(PoisonError::into_inner);
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    });
    let refused = match queue() {
        Some(sender) => match sender.try_send(job) {
            Ok(()) => None,
            Err(mpsc::TrySendError::Full(job) | mpsc::TrySendError::Disconnected(job)) => Some(job),
        },
        None => Some(job),
    };
    if let Some(job) = refused {
        job();
    }
    Pending(slot)
}

/// The threads' queue, started at the first call; `None` if no thread
/// could be started.
static QUEUE: OnceLock<Option<mpsc::SyncSender<Call>>> = OnceLock::new();

fn queue() -> Option<&'static mpsc::SyncSender<Call>> {
    QUEUE
        .get_or_init(|| {
            let (sender, receiver) = mpsc::sync_channel::<Call>(FS_CALLS_QUEUED_MAX);
            let receiver = Arc::new(Mutex::new(receiver));
            let mut started = 0;
            for number in 0..FS_THREADS {
                let receiver = Arc::clone(&receiver);
                let spawned = std::thread::Builder::new()
                    .name(format!("sluice-fs-{number}"))
                    .spawn(move || loop {
                        // One thread takes the next call at a time; the
                        // lock is let go before the call runs.
                        let next = receiver
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .recv();
                        match next {
                            Ok(call) => call(),
                            Err(mpsc::RecvError) => return,
                        }
                    });
                match spawned {
                    Ok(_) => started += 1,
                    Err(error) => {
                        tracing::warn!(%error, "a file-system thread could not be started");
                    }
                }
            }
            (started > 0).then_some(sender)
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_made_elsewhere_wakes_its_task() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let here = std::thread::current().id();
                let (there, value) = off_shard(|| (std::thread::current().id(), 6 * 7)).await;
                assert_eq!(value, 42);
                assert_ne!(there, here, "the call ran on the shard's thread");
            })
            .expect("executor")
            .join()
            .expect("join");
    }
}
