//! Interrupts an executor's thread that sleeps with work to do.
//!
//! glommio 0.9's run loop starts the task queues only if its preemption
//! timer has not fired yet; when it has (the thread was held off its core
//! between arming the timer and starting the queues, or the timer is very
//! short), the loop reports that nothing ran and parks, with tasks still
//! runnable. Parked, it sleeps in `io_uring_enter` until an I/O completion
//! or a timer it armed: with every runnable task stranded, including any
//! that would arm a timer, and no I/O in flight, nothing ends that sleep.
//! Seen in the benchmark client (a 10,000-partition run): both worker
//! executors asleep for four minutes while setting up their producers,
//! every socket empty, the broker idle; attaching a debugger, which
//! interrupts the sleep, set both going and the run finished normally. The
//! unit test below makes it happen within a second with a 10 µs timer. A
//! shard runs the same loop with the default 100 ms timer, so a shard held
//! off its core that long can park with requests half-served and wait for
//! its sockets to bring more traffic.
//!
//! Nothing inside a sleeping executor can notice. So each executor runs a
//! heartbeat task on a timer, and a plain thread watches the counts: a
//! heartbeat `stall_after` overdue while its thread sits in
//! `io_uring_enter` (read from `/proc`: a thread that is running, or
//! waiting on anything else, is left alone) means the executor sleeps with
//! work stranded or slept through its timer. The watch then sends that
//! thread a signal whose handler does nothing: `io_uring_enter` returns
//! EINTR, which glommio takes as a spurious wake-up, and its next pass runs
//! the task queues. Each interruption is logged and counted.
//!
//! An executor started with `spawn_watched` is registered before it is
//! made, so a parking before its first poll is covered too: glommio's run
//! loop arms the timer and can find it fired before it first starts the
//! queues, and then parks with the body's task never polled (seen in the
//! benchmark client with its 500 µs timer: a worker asleep for minutes
//! with no CPU time and no connection made), which a registration made
//! at that first poll came too late for. Not covered: a run loop that finds
//! the timer fired on every pass, which a timer shorter than the loop's own
//! path from arming it to starting the queues does (seen with 10 µs on one
//! VM: each wake-up the watch brought parked again at once).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::constants::{WAKE_WATCH_BEAT, WAKE_WATCH_CHECK, WAKE_WATCH_STALL_AFTER};

/// The signal that interrupts a sleeping executor. Its default action is to
/// ignore it, so nothing else in the process relies on it; a handler that
/// does nothing is installed so that it interrupts at all (an ignored
/// signal is dropped before it reaches the thread).
const WAKE_SIGNAL: libc::c_int = libc::SIGURG;

/// Sleeps interrupted by every watch in this process, for the metrics.
static INTERRUPTS_TOTAL: AtomicU64 = AtomicU64::new(0);

/// How many executor sleeps the watches of this process have interrupted.
pub fn interrupts_total() -> u64 {
    INTERRUPTS_TOTAL.load(Ordering::Relaxed)
}

/// The watch's timing: the defaults are the constants; tests shorten them.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub beat: Duration,
    pub stall_after: Duration,
    pub check: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            beat: WAKE_WATCH_BEAT,
            stall_after: WAKE_WATCH_STALL_AFTER,
            check: WAKE_WATCH_CHECK,
        }
    }
}

/// The thread a heartbeat belongs to, while its executor runs.
#[derive(Clone, Copy)]
struct Registered {
    pthread: libc::pthread_t,
    tid: libc::pid_t,
}

/// One executor's heartbeat, shared between it and the watch thread.
pub struct Heartbeat {
    beats: AtomicU64,
    /// How often it beats: the watch's timing, carried so that `spawn_watched`
    /// needs nothing else from the watch.
    beat: Duration,
    /// Held by the watch thread while it signals, and cleared before the
    /// executor's thread can exit, so a signal never goes to a thread that
    /// has ended.
    thread: Mutex<Option<Registered>>,
}

/// The watch thread; stopped and joined on drop.
pub struct WakeWatch {
    heartbeats: Vec<Arc<Heartbeat>>,
    interrupts: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WakeWatch {
    /// Starts watching `executors` heartbeats; `name` names the thread and
    /// the executors in the log (`name`-index).
    pub fn start(name: &str, executors: usize, timing: Timing) -> Result<WakeWatch, String> {
        install_handler()?;
        let heartbeats: Vec<Arc<Heartbeat>> = (0..executors)
            .map(|_| {
                Arc::new(Heartbeat {
                    beats: AtomicU64::new(0),
                    beat: timing.beat,
                    thread: Mutex::new(None),
                })
            })
            .collect();
        let interrupts = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let heartbeats = heartbeats.clone();
            let interrupts = Arc::clone(&interrupts);
            let stop = Arc::clone(&stop);
            let name = name.to_string();
            std::thread::Builder::new()
                .name(format!("{name}-wake-watch"))
                .spawn(move || watch(&name, &heartbeats, &interrupts, &stop, timing))
                .map_err(|error| format!("cannot start the wake watch thread: {error}"))?
        };
        Ok(WakeWatch {
            heartbeats,
            interrupts,
            stop,
            thread: Some(thread),
        })
    }

    /// Executor `index`'s heartbeat, for `spawn_watched`.
    pub fn heartbeat(&self, index: usize) -> Option<Arc<Heartbeat>> {
        self.heartbeats.get(index).cloned()
    }

    /// How many sleeps the watch has interrupted so far.
    pub fn interrupts(&self) -> u64 {
        self.interrupts.load(Ordering::Relaxed)
    }
}

impl Drop for WakeWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `body` on the current executor with `heartbeat` beating beside it.
async fn beating<F: Future>(heartbeat: Arc<Heartbeat>, body: F) -> F::Output {
    let beat = heartbeat.beat;
    let beats = glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(beat).await;
            heartbeat.beats.fetch_add(1, Ordering::Relaxed);
        }
    })
    .detach();
    let output = body.await;
    beats.cancel();
    output
}

/// Starts an executor made by `builder` on a thread of its own (named
/// `thread_name`), running what `body` makes under `heartbeat`. The thread
/// is registered with the watch before the executor exists and until it
/// has ended, so the watch can wake a parking that comes before the body's
/// first poll. `body` is called on the executor, as glommio's own `spawn`
/// calls it.
pub fn spawn_watched<G, F>(
    builder: glommio::LocalExecutorBuilder,
    thread_name: String,
    heartbeat: Arc<Heartbeat>,
    body: G,
) -> Result<JoinHandle<Result<F::Output, String>>, String>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future + 'static,
    F::Output: Send + 'static,
{
    // Returns only once the executor is made: glommio numbers executors as
    // they are made and orders a channel mesh's peers by that number, so
    // shards started one after the other get mesh ids in the same order
    // (made on their threads at once, shard 0 was once mesh peer 1).
    let (made_sender, made) = std::sync::mpsc::sync_channel::<()>(1);
    let handle = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let registration = Registration::new(Arc::clone(&heartbeat));
            let executor = builder.make();
            let _ = made_sender.send(());
            let executor =
                executor.map_err(|error| format!("cannot make the executor: {error}"))?;
            let output = executor.run(async move { beating(heartbeat, body()).await });
            drop(registration);
            Ok(output)
        })
        .map_err(|error| format!("cannot start an executor's thread: {error}"))?;
    // An error here is a thread that ended before sending: its join says why.
    let _ = made.recv();
    Ok(handle)
}

/// Registers the current thread for a heartbeat; unregisters on drop.
struct Registration {
    heartbeat: Arc<Heartbeat>,
}

impl Registration {
    fn new(heartbeat: Arc<Heartbeat>) -> Registration {
        // SAFETY: both only read the calling thread's identity.
        let registered = unsafe {
            Registered {
                pthread: libc::pthread_self(),
                tid: libc::gettid(),
            }
        };
        if let Ok(mut thread) = heartbeat.thread.lock() {
            *thread = Some(registered);
        }
        Registration { heartbeat }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut thread) = self.heartbeat.thread.lock() {
            *thread = None;
        }
    }
}

/// The watch thread's loop.
fn watch(
    name: &str,
    heartbeats: &[Arc<Heartbeat>],
    interrupts: &AtomicU64,
    stop: &AtomicBool,
    timing: Timing,
) {
    let started = Instant::now();
    let mut last: Vec<(u64, Instant)> = heartbeats.iter().map(|_| (0, started)).collect();
    let mut checked = started;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(timing.check);
        let now = Instant::now();
        if now.saturating_duration_since(checked) > timing.check + timing.stall_after {
            // This thread was held up too (the process stopped with
            // SIGSTOP, or the machine overloaded): the executors' silence
            // is counted from now, not taken for lost wake-ups.
            for (_, since) in &mut last {
                *since = now;
            }
        }
        checked = now;
        for (index, (heartbeat, (seen, since))) in heartbeats.iter().zip(&mut last).enumerate() {
            let beats = heartbeat.beats.load(Ordering::Relaxed);
            if beats != *seen {
                *seen = beats;
                *since = now;
                continue;
            }
            let silent = now.saturating_duration_since(*since);
            if silent < timing.stall_after {
                continue;
            }
            let Ok(thread) = heartbeat.thread.lock() else {
                continue;
            };
            let Some(registered) = *thread else {
                // Not started yet, or ended: nothing to wake.
                *since = now;
                continue;
            };
            if !asleep_in_io_uring_enter(registered.tid) {
                continue;
            }
            // SAFETY: the thread is registered, so it has not exited (it
            // unregisters first, under this lock), and the signal's handler
            // does nothing.
            let sent = unsafe { libc::pthread_kill(registered.pthread, WAKE_SIGNAL) };
            drop(thread);
            *since = now;
            if sent == 0 {
                let total = interrupts.fetch_add(1, Ordering::Relaxed) + 1;
                INTERRUPTS_TOTAL.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    executor = %format!("{name}-{index}"),
                    silent_ms = silent.as_millis() as u64,
                    interrupts = total,
                    "an executor slept in io_uring_enter with its heartbeat overdue (glommio parks one with work still runnable): its sleep was interrupted so it runs what waits"
                );
            }
        }
    }
}

/// Whether thread `tid` of this process is blocked in `io_uring_enter`
/// (`/proc/self/task/<tid>/syscall` starts with the number of the call a
/// blocked thread is in, and says "running" for one that is not blocked).
/// Unreadable counts as yes: the signal is harmless, a missed wake is not.
fn asleep_in_io_uring_enter(tid: libc::pid_t) -> bool {
    match std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) {
        Ok(line) => line
            .split_whitespace()
            .next()
            .and_then(|number| number.parse::<libc::c_long>().ok())
            .is_some_and(|number| number == libc::SYS_io_uring_enter),
        Err(_) => true,
    }
}

extern "C" fn on_wake_signal(_: libc::c_int) {}

/// Installs the do-nothing handler once per process. Without `SA_RESTART`:
/// with it, on kernel 6.18 a waiting `io_uring_enter` that the signal
/// interrupted was restarted instead of returning EINTR (seen: the test
/// executor woken ten times a second by the watch and asleep again each
/// time, until the test gave up after 30 s; the same tests had passed on
/// that machine earlier the same day). The signal is sent only to a
/// thread seen asleep in `io_uring_enter`; a call it might land in instead,
/// in the moment after that look, gets EINTR, which glommio's ring and the
/// standard library's locks retry.
fn install_handler() -> Result<(), String> {
    static INSTALL: Once = Once::new();
    static FAILED: AtomicBool = AtomicBool::new(false);
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction with a handler that does nothing (so
        // it is async-signal-safe) and an empty mask.
        let installed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_wake_signal as *const () as libc::sighandler_t;
            action.sa_flags = 0;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(WAKE_SIGNAL, &action, std::ptr::null_mut())
        };
        FAILED.store(installed != 0, Ordering::Relaxed);
    });
    if FAILED.load(Ordering::Relaxed) {
        return Err(format!(
            "cannot install the wake watch's signal handler: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Short enough for a test, the same shape as the defaults.
    const TEST_TIMING: Timing = Timing {
        beat: Duration::from_millis(20),
        stall_after: Duration::from_millis(100),
        check: Duration::from_millis(20),
    };

    /// How long a test waits for the executor before calling it stuck.
    const TEST_WAIT: Duration = Duration::from_secs(20);

    /// io_uring_params is 120 bytes; zeroed asks for nothing special.
    const IO_URING_PARAMS_BYTES: usize = 120;

    /// Blocks this thread in `io_uring_enter` on a ring of its own with
    /// nothing submitted, as an executor whose wake-ups are lost does: only
    /// a signal ends it. Returns the call's errno.
    fn sleep_in_io_uring_enter() -> i32 {
        let mut params = [0u8; IO_URING_PARAMS_BYTES];
        // SAFETY: the parameters buffer is the size the call expects; the
        // descriptor is closed before returning.
        unsafe {
            let fd = libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr());
            assert!(
                fd >= 0,
                "io_uring_setup: {}",
                std::io::Error::last_os_error()
            );
            let entered = libc::syscall(
                libc::SYS_io_uring_enter,
                fd as libc::c_int,
                0u32,
                1u32,
                1u32, // IORING_ENTER_GETEVENTS
                std::ptr::null::<libc::c_void>(),
                0usize,
            );
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            libc::close(fd as libc::c_int);
            assert_eq!(entered, -1, "io_uring_enter returned without a completion");
            errno
        }
    }

    /// A watch of one executor with the test timing.
    fn test_watch() -> WakeWatch {
        WakeWatch::start("test", 1, TEST_TIMING).expect("watch")
    }

    /// An executor running what `body` makes under `watch`'s heartbeat.
    fn watched_executor<G, F>(watch: &WakeWatch, body: G) -> JoinHandle<Result<F::Output, String>>
    where
        G: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        let heartbeat = watch.heartbeat(0).expect("heartbeat");
        spawn_watched(
            glommio::LocalExecutorBuilder::default(),
            "test-watched".to_string(),
            heartbeat,
            body,
        )
        .expect("executor")
    }

    #[test]
    fn an_executor_asleep_past_its_heartbeat_is_interrupted() {
        let watch = test_watch();
        let (sender, receiver) = mpsc::channel();
        let executor = watched_executor(&watch, move || async move {
            // A few beats first, so the watch has seen it alive.
            glommio::timer::sleep(TEST_TIMING.stall_after).await;
            let _ = sender.send(sleep_in_io_uring_enter());
        });
        let errno = receiver
            .recv_timeout(TEST_WAIT)
            .expect("the thread asleep in io_uring_enter was never interrupted");
        assert_eq!(errno, libc::EINTR);
        executor
            .join()
            .expect("executor ended")
            .expect("executor made");
        // At least the one that ended the sleep; a loaded machine can make
        // the executor's first timer late enough for another before it.
        assert!(watch.interrupts() >= 1);
    }

    /// glommio 0.9 parks an executor with tasks still runnable when its
    /// preemption timer has fired by the time it starts the task queues;
    /// with nothing else armed, it sleeps until I/O arrives. A timer about
    /// as long as the run loop's own path from arming it to starting the
    /// queues makes that happen within seconds: on one VM here 10 µs did
    /// so about once a second, on another it did so on every pass (each
    /// wake-up parked again at once, the case the watch cannot cure), where
    /// 20–80 µs stranded now and then. So the tests climb this ladder,
    /// leaving a rung whose timer strands on every pass. A shard's timer is
    /// the default 100 ms, the benchmark client's 500 µs: there it takes a
    /// thread held off its core that long.
    const STRANDING_PREEMPTS: [Duration; 5] = [
        Duration::from_micros(10),
        Duration::from_micros(20),
        Duration::from_micros(40),
        Duration::from_micros(80),
        Duration::from_micros(160),
    ];

    /// Interruptions of one try with nothing run in between that mark its
    /// timer as stranding on every pass (a wake-up the watch brings runs the
    /// task queues at once when the timer lets it, so one is enough then).
    const STRANDED_FOR_GOOD_INTERRUPTS: u64 = 10;

    /// How long the test yields waiting for a parking the heartbeat's own
    /// timer does not end (the heartbeat task stranded too), which only the
    /// watch's signal ends. Seen about once a second on a quiet machine and
    /// once in 4 s beside four busy loops; the test stops at the first.
    const STRANDING_FOR_MAX: Duration = Duration::from_secs(10);

    /// Longer than `STRANDING_FOR_MAX` and a stall period together.
    const STRANDING_WAIT: Duration = Duration::from_secs(30);

    /// How often a waiting test looks at the watch's count.
    const STRANDING_LOOK: Duration = Duration::from_millis(50);

    /// What one try brought: the executor's answer, or `None` when the watch
    /// interrupted it `STRANDED_FOR_GOOD_INTERRUPTS` times with no answer
    /// (its thread is then left asleep: nothing can end that executor, and
    /// it ends with the test process). Panics after `STRANDING_WAIT`.
    fn answer_or_stranded_for_good<T>(
        watch: &WakeWatch,
        receiver: &mpsc::Receiver<T>,
        what: &str,
    ) -> Option<T> {
        let before = watch.interrupts();
        let began = Instant::now();
        loop {
            match receiver.recv_timeout(STRANDING_LOOK) {
                Ok(answer) => return Some(answer),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{what}: the executor ended without answering")
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if watch.interrupts() - before >= STRANDED_FOR_GOOD_INTERRUPTS {
                return None;
            }
            assert!(
                began.elapsed() < STRANDING_WAIT,
                "{what}: no answer in {STRANDING_WAIT:?} and only {} interruptions",
                watch.interrupts() - before
            );
        }
    }

    #[test]
    fn an_executor_parked_with_a_task_runnable_is_woken() {
        let watch = test_watch();
        for preempt in STRANDING_PREEMPTS {
            let interrupts = Arc::clone(&watch.interrupts);
            let (sender, receiver) = mpsc::channel();
            let executor = watched_executor(&watch, move || async move {
                // The short timer only once the executor runs and is
                // registered: it strands the executor's first task too.
                let queue = glommio::executor().create_task_queue(
                    glommio::Shares::default(),
                    glommio::Latency::Matters(preempt),
                    "stranding",
                );
                // A task that is always runnable: without the watch
                // the first parking with it queued never ends.
                let yielding = glommio::spawn_local_into(
                    async move {
                        // Only interruptions from here on count.
                        let before = interrupts.load(Ordering::Relaxed);
                        let started = Instant::now();
                        let mut yields = 0u64;
                        while interrupts.load(Ordering::Relaxed) == before
                            && started.elapsed() < STRANDING_FOR_MAX
                        {
                            futures_lite::future::yield_now().await;
                            yields += 1;
                        }
                        (yields, interrupts.load(Ordering::Relaxed) - before)
                    },
                    queue,
                );
                if let Ok(yielding) = yielding {
                    let _ = sender.send(yielding.await);
                }
            });
            let what = format!("a {preempt:?} timer");
            let Some((yields, interrupted)) = answer_or_stranded_for_good(&watch, &receiver, &what)
            else {
                continue;
            };
            executor
                .join()
                .expect("executor ended")
                .expect("executor made");
            assert!(
                interrupted >= 1,
                "no parking needed the watch in {yields} yields over {STRANDING_FOR_MAX:?} with {what}"
            );
            return;
        }
        panic!("every timer in {STRANDING_PREEMPTS:?} stranded the executor on every pass");
    }

    /// How long the start test keeps starting executors, waiting for one
    /// whose first pass found its timer fired.
    const START_STRANDING_FOR_MAX: Duration = Duration::from_secs(20);

    #[test]
    fn an_executor_parked_before_its_first_poll_is_woken() {
        let watch = test_watch();
        let began = Instant::now();
        let mut starts = 0u64;
        let mut interrupted = 0u64;
        let mut rungs = STRANDING_PREEMPTS.iter();
        let mut preempt = rungs.next().copied();
        while interrupted == 0 && began.elapsed() < START_STRANDING_FOR_MAX {
            let Some(timer) = preempt else {
                panic!("every timer in {STRANDING_PREEMPTS:?} stranded the executor on every pass");
            };
            let before = watch.interrupts();
            let (sender, receiver) = mpsc::channel();
            // The short timer from the start: the run loop may find it
            // fired before it first starts the queues, and park with the
            // body never polled.
            let executor = spawn_watched(
                glommio::LocalExecutorBuilder::default().preempt_timer(timer),
                "test-start".to_string(),
                watch.heartbeat(0).expect("heartbeat"),
                move || async move {
                    let _ = sender.send(());
                },
            )
            .expect("executor");
            let what = format!("start {starts} with a {timer:?} timer");
            if answer_or_stranded_for_good(&watch, &receiver, &what).is_none() {
                preempt = rungs.next().copied();
                continue;
            }
            executor
                .join()
                .expect("thread ended")
                .expect("executor made");
            starts += 1;
            interrupted += watch.interrupts() - before;
        }
        assert!(
            interrupted >= 1,
            "no start needed the watch in {starts} starts over {START_STRANDING_FOR_MAX:?}"
        );
    }

    #[test]
    fn a_busy_executor_is_left_alone() {
        let watch = test_watch();
        let executor = watched_executor(&watch, || async {
            glommio::timer::sleep(TEST_TIMING.stall_after).await;
            // Its heartbeat cannot run for ten stall periods, but the
            // thread is running, not asleep: not this defect.
            let busy = Instant::now();
            let mut spins = 0u64;
            while busy.elapsed() < TEST_TIMING.stall_after * 10 {
                spins = std::hint::black_box(spins + 1);
            }
            spins
        });
        let spins = executor
            .join()
            .expect("executor ended")
            .expect("executor made");
        assert!(spins > 0);
        assert_eq!(watch.interrupts(), 0);
    }
}
