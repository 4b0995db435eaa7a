//! Wakes the worker executors from a plain thread, so none can sleep with
//! work queued.
//!
//! glommio 0.9's run loop reports "nothing ran" when its preemption timer
//! has already fired as it starts the task queues, and then parks with
//! runnable tasks still queued. The timer fires that early when the thread
//! is descheduled for longer than the timer between arming and checking it,
//! which is common when clients and broker share two cores. Tasks that are
//! runnable have no I/O armed, so the executor slept until some timer fired
//! (io_uring tracepoints: a worker asleep on its ring with only the
//! ring-link poll and the 2 s reporter timer armed while its sockets held
//! unread responses; fixed-rate runs had 3-8 such stalls of 0.4-2.5 s per
//! 20 s). A timer task on the executor does not bound this: when it is
//! itself runnable at that moment it is stranded with the rest. A wake from
//! another thread is delivered through the executor's eventfd, which ends
//! any sleep; the next pass of the run loop then runs what was queued.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often every executor is woken: the longest a stranded task waits.
const NUDGE_INTERVAL: Duration = Duration::from_millis(1);

/// Where one executor's nudge task leaves its waker.
#[derive(Default)]
pub struct Slot {
    waker: Mutex<Option<Waker>>,
}

impl Slot {
    /// Runs on the executor until `done()` holds, letting the nudger thread
    /// wake it; the waker is taken back before returning, so the thread
    /// never wakes a task of an executor that has ended.
    pub async fn serve(&self, done: impl Fn() -> bool) {
        while !done() {
            Nudged {
                slot: self,
                registered: false,
            }
            .await;
        }
        if let Ok(mut waker) = self.waker.lock() {
            waker.take();
        }
    }
}

/// Ready on the poll after the one that registered its waker.
struct Nudged<'a> {
    slot: &'a Slot,
    registered: bool,
}

impl Future for Nudged<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered {
            return Poll::Ready(());
        }
        if let Ok(mut waker) = self.slot.waker.lock() {
            *waker = Some(cx.waker().clone());
        }
        self.registered = true;
        Poll::Pending
    }
}

/// The thread that wakes every slot each `NUDGE_INTERVAL`; stopped and
/// joined on drop.
pub struct Nudger {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Nudger {
    pub fn start(slots: Vec<Arc<Slot>>) -> Result<Nudger, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("perf-nudger".to_string())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(NUDGE_INTERVAL);
                    for slot in &slots {
                        if let Ok(waker) = slot.waker.lock() {
                            if let Some(waker) = waker.as_ref() {
                                waker.wake_by_ref();
                            }
                        }
                    }
                }
            })
            .map_err(|error| format!("cannot start the nudger thread: {error}"))?;
        Ok(Nudger {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Nudger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
