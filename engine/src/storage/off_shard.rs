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
//!
//! A second pool runs work that is not a file-system call but that a shard
//! can put off to the CPU's idle time (`in_background`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::constants::{
    BACKGROUND_CALLS_QUEUED_MAX, BACKGROUND_START_WAIT_MAX, BACKGROUND_THREADS,
    FS_CALLS_QUEUED_MAX, FS_THREADS,
};

type Call = Box<dyn FnOnce() + Send>;

/// A queued call, taken by the first of a pool thread and its waiting task
/// to get to it: a thread runs what it finds; it finds nothing when the
/// task took the call back.
type Ticket = Arc<Mutex<Option<Call>>>;

static TAKEN_BACK_TOTAL: AtomicU64 = AtomicU64::new(0);

/// How many background calls of this process their shards took back and
/// made themselves, because no idle CPU had started them in time.
pub fn background_calls_taken_back_total() -> u64 {
    TAKEN_BACK_TOTAL.load(Ordering::Relaxed)
}

/// Where a call's result waits for its task: its value, or the payload of
/// its panic, which the task resumes (a panicking call must not leave its
/// task waiting for good, nor end the thread that made it).
struct Slot<T> {
    value: Option<std::thread::Result<T>>,
    waker: Option<Waker>,
}

/// A call's result, once its thread has made it.
struct Pending<T>(Arc<Mutex<Slot<T>>>);

impl<T> Future for Pending<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<T> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.value.take() {
            Some(Ok(value)) => return Poll::Ready(value),
            Some(Err(payload)) => {
                drop(slot);
                std::panic::resume_unwind(payload)
            }
            None => {}
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
    // Never taken back: a file-system call may wait on the disk for as
    // long as it stalls, which is what the shard must not do.
    run_on(&FILE_SYSTEM, None, call)
}

/// Runs `call`, work a shard can put off, on a thread of the process's
/// background pool, which the kernel runs only when no other thread wants
/// its CPU (`SCHED_IDLE`), and resolves to its result. The work a shard
/// does itself competes with its producers and consumers for the CPU, and
/// so does a plain thread's: on a machine the clients and shards keep busy,
/// a busy loop taking 2 % of one core raised producers' ack p99 as much as
/// the cleaner did (README, "Compaction"). Made here and now when the
/// pool's queue is full or it has no thread.
///
/// The idle time may never come: beside threads that keep every core busy
/// the pool's threads were seen to get no CPU for about two minutes, and
/// the work waiting on them (a cleaning pass) with them. So a call no
/// thread has started within `BACKGROUND_START_WAIT_MAX` is taken back and
/// made here: the shard's work goes on at the price of that call's CPU
/// taken from its requests, as it was before the pool existed.
pub(crate) fn in_background<T, F>(call: F) -> impl Future<Output = T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    run_on(&BACKGROUND, Some(BACKGROUND_START_WAIT_MAX), call)
}

/// Queues `call` on `pool` now, and resolves to its result; with
/// `take_back_after`, the waiting task makes the call itself if no thread
/// has started it by then. Queued at once, not at the first poll: the
/// caller goes on with other work meanwhile (the cleaner reads its next
/// chunk).
fn run_on<T, F>(
    pool: &'static Pool,
    take_back_after: Option<Duration>,
    call: F,
) -> impl Future<Output = T>
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
        let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
        let waker = {
            let mut slot = filled.lock().unwrap_or_else(PoisonError::into_inner);
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    });
    let ticket: Ticket = Arc::new(Mutex::new(Some(job)));
    let queued = match pool.queue() {
        Some(sender) => match sender.try_send(Arc::clone(&ticket)) {
            Ok(()) => true,
            Err(mpsc::TrySendError::Full(_) | mpsc::TrySendError::Disconnected(_)) => false,
        },
        None => false,
    };
    if !queued {
        take_and_make(&ticket);
    }
    let queued_at = Instant::now();
    let mut pending = Pending(slot);
    async move {
        let Some(wait) = take_back_after.filter(|_| queued) else {
            return pending.await;
        };
        let answered = futures_lite::future::or(async { Some((&mut pending).await) }, async {
            glommio::timer::sleep(wait.saturating_sub(queued_at.elapsed())).await;
            None
        })
        .await;
        if let Some(value) = answered {
            return value;
        }
        // Not started in time: made here, unless a thread has just begun it.
        if take_and_make(&ticket) {
            TAKEN_BACK_TOTAL.fetch_add(1, Ordering::Relaxed);
        }
        pending.await
    }
}

/// Makes the ticket's call here if no thread has taken it; whether it did.
fn take_and_make(ticket: &Ticket) -> bool {
    let call = ticket.lock().unwrap_or_else(PoisonError::into_inner).take();
    let made = call.is_some();
    if let Some(call) = call {
        call();
    }
    made
}

/// A set of plain threads taking calls from one queue, started at the
/// first call.
struct Pool {
    name: &'static str,
    threads: usize,
    queued_max: usize,
    /// The threads run under `SCHED_IDLE`.
    idle_priority: bool,
    /// `None` if no thread could be started.
    queue: OnceLock<Option<mpsc::SyncSender<Ticket>>>,
}

static FILE_SYSTEM: Pool = Pool {
    name: "sluice-fs",
    threads: FS_THREADS,
    queued_max: FS_CALLS_QUEUED_MAX,
    idle_priority: false,
    queue: OnceLock::new(),
};

static BACKGROUND: Pool = Pool {
    name: "sluice-bg",
    threads: BACKGROUND_THREADS,
    queued_max: BACKGROUND_CALLS_QUEUED_MAX,
    idle_priority: true,
    queue: OnceLock::new(),
};

impl Pool {
    fn queue(&'static self) -> Option<&'static mpsc::SyncSender<Ticket>> {
        self.queue
            .get_or_init(|| {
                let (sender, receiver) = mpsc::sync_channel::<Ticket>(self.queued_max);
                let receiver = Arc::new(Mutex::new(receiver));
                let mut started = 0;
                for number in 0..self.threads {
                    let receiver = Arc::clone(&receiver);
                    let spawned = std::thread::Builder::new()
                        .name(format!("{}-{number}", self.name))
                        .spawn(move || {
                            if self.idle_priority {
                                lower_to_idle_priority();
                            }
                            loop {
                                // One thread takes the next call at a time;
                                // the lock is let go before the call runs.
                                let next = receiver
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .recv();
                                let ticket = match next {
                                    Ok(ticket) => ticket,
                                    Err(mpsc::RecvError) => return,
                                };
                                // Empty when its task took the call back.
                                take_and_make(&ticket);
                            }
                        });
                    match spawned {
                        Ok(_) => started += 1,
                        Err(error) => {
                            tracing::warn!(%error, pool = self.name, "a thread could not be started");
                        }
                    }
                }
                (started > 0).then_some(sender)
            })
            .as_ref()
    }
}

/// Puts the calling thread under `SCHED_IDLE`. Where the kernel refuses
/// (a container's seccomp profile, say), the thread runs at its normal
/// priority: the work still gets done, only not in the CPU's idle time.
fn lower_to_idle_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param
    // that outlives the call, and SCHED_IDLE takes priority 0.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if result != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "a background thread could not be put under SCHED_IDLE");
    }
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

    #[test]
    fn background_work_runs_in_the_idle_time_of_the_cpu() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let here = std::thread::current().id();
                // SAFETY: sched_getscheduler only reads the calling
                // thread's policy.
                // Never taken back: on a machine other tests keep busy the
                // pool may not start it for a while.
                let (there, policy) = run_on(&BACKGROUND, None, || {
                    (std::thread::current().id(), unsafe {
                        libc::sched_getscheduler(0)
                    })
                })
                .await;
                assert_ne!(there, here, "the work ran on the shard's thread");
                assert_eq!(policy, libc::SCHED_IDLE, "the background thread's policy");
                // SAFETY: as above.
                let own = unsafe { libc::sched_getscheduler(0) };
                assert_eq!(own, libc::SCHED_OTHER, "the shard's own policy changed");
            })
            .expect("executor")
            .join()
            .expect("join");
    }

    /// How long a test waits for what should come at once, or within
    /// `BACKGROUND_START_WAIT_MAX`, before it fails.
    const TEST_WAIT_MAX: Duration = Duration::from_secs(30);

    #[test]
    fn a_call_no_idle_cpu_starts_is_made_by_its_shard() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let here = std::thread::current().id();
                // Every pool thread held by a call that waits for the test
                // (never taken back: the shard would wait on itself), as a
                // pool starved of CPU holds its calls.
                let (started_sender, started) = mpsc::channel::<()>();
                let (release, released) = mpsc::channel::<()>();
                let released = Arc::new(Mutex::new(released));
                let mut holds = Vec::new();
                for _ in 0..BACKGROUND_THREADS {
                    let started_sender = started_sender.clone();
                    let released = Arc::clone(&released);
                    holds.push(glommio::spawn_local(run_on(&BACKGROUND, None, move || {
                        let _ = started_sender.send(());
                        let _ = released
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .recv();
                    })));
                }
                // Other tests' calls may hold a thread first: waited for
                // off the shard's thread, so the holds' tasks can run.
                let all_started = off_shard(move || {
                    (0..BACKGROUND_THREADS).all(|_| started.recv_timeout(TEST_WAIT_MAX).is_ok())
                })
                .await;
                assert!(all_started, "the pool's threads did not take the holds");
                let before = background_calls_taken_back_total();
                let asked = Instant::now();
                let answered = glommio::timer::timeout(TEST_WAIT_MAX, async {
                    Ok(in_background(|| std::thread::current().id()).await)
                })
                .await;
                let waited = asked.elapsed();
                for _ in 0..BACKGROUND_THREADS {
                    let _ = release.send(());
                }
                for hold in holds {
                    hold.await;
                }
                let there = answered.expect("a call behind a busy pool was never made");
                assert_eq!(there, here, "the call was not made by its shard");
                assert!(
                    waited >= BACKGROUND_START_WAIT_MAX,
                    "taken back after {waited:?}, before the pool had its chance"
                );
                assert!(background_calls_taken_back_total() > before);
            })
            .expect("executor")
            .join()
            .expect("join");
    }

    /// How long the panicking call's task waits before giving up. Long:
    /// the background threads run under `SCHED_IDLE`, so while other tests
    /// keep both cores busy (the wake watch's yielding loops, a busy
    /// executor) they may not run at all; 5 s was once too short beside two
    /// busy loops.
    const PANIC_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(60);

    #[test]
    fn a_panicking_call_panics_its_task_and_the_thread_goes_on() {
        let waiting = glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                // Without the panic passed on, the task would wait for
                // good: it gives up instead, and the test fails.
                let _ = glommio::timer::timeout(PANIC_WAIT_MAX, async {
                    Ok(in_background(|| -> u32 { panic!("a planted panic") }).await)
                })
                .await;
            })
            .expect("executor")
            .join();
        assert!(
            waiting.is_err(),
            "the task waiting for the panicked call went on"
        );
        for _ in 0..BACKGROUND_THREADS * 2 {
            let answered = glommio::LocalExecutorBuilder::default()
                .spawn(|| async { in_background(|| 6 * 7).await })
                .expect("executor")
                .join()
                .expect("join");
            assert_eq!(answered, 42, "a later call was not answered");
        }
    }
}
