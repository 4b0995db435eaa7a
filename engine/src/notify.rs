//! A shard-local wake-up signal: tasks wait until a condition over shared
//! state holds, and whoever changes that state calls `notify`. No polling
//! loops, no timers: a waiter runs again only when something changed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// One waker that stands for a task's waker wherever a task waits on many
/// signals at once: it passes each wake on to the task's current waker.
/// Registering the task's own waker with each signal takes a reference to
/// the task per signal, and glommio counts a task's references in 16 bits
/// (its waker panics on the 32,768th); a fetch long-polling 50,000
/// partitions of one shard took that shard down. Clones of this waker count
/// on the relay instead.
pub struct Relay {
    target: Arc<RelayTarget>,
    waker: Waker,
}

#[derive(Default)]
struct RelayTarget {
    waker: Mutex<Option<Waker>>,
}

impl Wake for RelayTarget {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // A poisoned lock only means a wake panicked; the waker is intact.
        let target = match self.waker.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(target) = target {
            target.wake();
        }
    }
}

impl Default for Relay {
    fn default() -> Relay {
        let target = Arc::new(RelayTarget::default());
        let waker = Waker::from(Arc::clone(&target));
        Relay { target, waker }
    }
}

impl Relay {
    /// Makes `waker` the one woken from now on.
    pub fn set(&self, waker: &Waker) {
        let mut target = match self.target.waker.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !target.as_ref().is_some_and(|known| known.will_wake(waker)) {
            *target = Some(waker.clone());
        }
    }

    /// The waker to register in the task's place.
    pub fn waker(&self) -> &Waker {
        &self.waker
    }
}

/// Wakes every waiting task when notified. Cheap to clone; clones share waiters.
#[derive(Clone, Default)]
pub struct Signal {
    shared: Rc<Shared>,
}

#[derive(Default)]
struct Shared {
    waiters: RefCell<Vec<Waker>>,
    /// Counts notifies: a waiter registered at generation `g` is no longer
    /// in the list once the generation moved past `g`.
    generation: Cell<u64>,
}

impl Signal {
    pub fn new() -> Signal {
        Signal::default()
    }

    /// Wakes every task waiting right now.
    pub fn notify(&self) {
        self.shared
            .generation
            .set(self.shared.generation.get().wrapping_add(1));
        let waiters = std::mem::take(&mut *self.shared.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }

    /// How many notifies there have been (wrapping).
    pub fn generation(&self) -> u64 {
        self.shared.generation.get()
    }

    /// Registers `waker` for the next notify (once, however often it is
    /// called before that).
    pub fn register(&self, waker: &Waker) {
        let mut waiters = self.shared.waiters.borrow_mut();
        if !waiters.iter().any(|waiting| waiting.will_wake(waker)) {
            waiters.push(waker.clone());
        }
    }

    /// Registers `waker` for the next notify without looking for it first;
    /// for a caller that knows from [`Signal::generation`] that it is not
    /// registered (a task watching many signals with one condition).
    pub fn register_fresh(&self, waker: &Waker) -> u64 {
        self.shared.waiters.borrow_mut().push(waker.clone());
        self.shared.generation.get()
    }

    /// Forgets `waker` if it is still registered: a task that stops waiting
    /// before a notify leaves no stale entry behind for others to scan.
    pub fn unregister(&self, waker: &Waker) {
        self.shared
            .waiters
            .borrow_mut()
            .retain(|waiting| !waiting.will_wake(waker));
    }

    /// Resolves once `ready` returns `Some`, re-checking after each notify.
    pub fn wait_for<T, F: FnMut() -> Option<T>>(&self, ready: F) -> WaitFor<F> {
        WaitFor {
            signal: self.clone(),
            ready,
        }
    }
}

/// The future returned by [`Signal::wait_for`].
pub struct WaitFor<F> {
    signal: Signal,
    ready: F,
}

impl<T, F: FnMut() -> Option<T> + Unpin> Future for WaitFor<F> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(value) = (self.ready)() {
            return Poll::Ready(value);
        }
        self.signal.register(cx.waker());
        Poll::Pending
    }
}

/// First come, first served: a task takes a [`Turn`] without awaiting, in
/// the order its work arrived, and later waits for it; turns are granted in
/// the order they were taken, whatever happens in between. A turn ends when
/// it is dropped, so a task that gives up (an error, a cancelled future)
/// never blocks the ones behind it.
///
/// This is what keeps a connection's pipelined requests in order where
/// their handlers run concurrently: taking the turn is synchronous, so the
/// order of taking is the order the requests were first polled, and that is
/// the order they arrived in.
#[derive(Clone, Default)]
pub struct Turns {
    shared: Rc<TurnsShared>,
}

#[derive(Default)]
struct TurnsShared {
    /// The ticket the next `take` hands out.
    next: Cell<u64>,
    /// The ticket whose turn it is: every ticket below it has ended.
    serving: Cell<u64>,
    /// Tickets that ended before their turn came (their holder gave up);
    /// skipped when the turn reaches them.
    ended_early: RefCell<std::collections::BTreeSet<u64>>,
    /// The waker of each ticket waiting for its turn.
    waiting: RefCell<std::collections::BTreeMap<u64, Waker>>,
}

impl Turns {
    pub fn new() -> Turns {
        Turns::default()
    }

    /// Takes the next turn. It is granted once every turn taken before it
    /// has ended.
    pub fn take(&self) -> Turn {
        let ticket = self.shared.next.get();
        self.shared.next.set(ticket + 1);
        Turn {
            shared: Rc::clone(&self.shared),
            ticket,
        }
    }

    /// Turns taken and not yet ended.
    pub fn outstanding(&self) -> u64 {
        let shared = &self.shared;
        shared.next.get() - shared.serving.get() - shared.ended_early.borrow().len() as u64
    }
}

/// A place in a [`Turns`] queue; ends when dropped.
pub struct Turn {
    shared: Rc<TurnsShared>,
    ticket: u64,
}

impl Turn {
    /// Resolves when every turn taken before this one has ended.
    pub fn granted(&self) -> TurnGranted<'_> {
        TurnGranted { turn: self }
    }

    /// Whether every turn taken before this one has ended.
    pub fn is_granted(&self) -> bool {
        self.shared.serving.get() == self.ticket
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.waiting.borrow_mut().remove(&self.ticket);
        if shared.serving.get() != self.ticket {
            assert!(shared.serving.get() < self.ticket, "a turn ended twice");
            shared.ended_early.borrow_mut().insert(self.ticket);
            return;
        }
        let mut serving = self.ticket + 1;
        {
            let mut ended_early = shared.ended_early.borrow_mut();
            while ended_early.remove(&serving) {
                serving += 1;
            }
        }
        shared.serving.set(serving);
        let waker = shared.waiting.borrow_mut().remove(&serving);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The future returned by [`Turn::granted`].
pub struct TurnGranted<'a> {
    turn: &'a Turn,
}

impl Future for TurnGranted<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let turn = self.turn;
        if turn.is_granted() {
            return Poll::Ready(());
        }
        turn.shared
            .waiting
            .borrow_mut()
            .insert(turn.ticket, cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn waiter_resumes_after_condition_changes() {
        let signal = Signal::new();
        let value = Rc::new(Cell::new(0));
        let waited = {
            let value = Rc::clone(&value);
            signal.wait_for(move || (value.get() >= 2).then_some(value.get()))
        };
        let mut waited = Box::pin(waited);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(waited.as_mut().poll(&mut cx).is_pending());
        value.set(1);
        signal.notify();
        assert!(waited.as_mut().poll(&mut cx).is_pending());
        value.set(2);
        signal.notify();
        assert_eq!(waited.as_mut().poll(&mut cx), Poll::Ready(2));
    }

    fn granted_now(turn: &Turn) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut granted = std::pin::pin!(turn.granted());
        granted.as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn turns_are_granted_in_the_order_taken() {
        let turns = Turns::new();
        let first = turns.take();
        let second = turns.take();
        let third = turns.take();
        assert!(granted_now(&first));
        assert!(!granted_now(&second));
        assert!(!granted_now(&third));
        assert_eq!(turns.outstanding(), 3);
        drop(first);
        assert!(granted_now(&second));
        assert!(!granted_now(&third));
        drop(second);
        assert!(granted_now(&third));
        drop(third);
        assert_eq!(turns.outstanding(), 0);
        assert!(granted_now(&turns.take()));
    }

    #[test]
    fn a_turn_given_up_early_does_not_block_the_ones_behind() {
        let turns = Turns::new();
        let first = turns.take();
        let second = turns.take();
        let third = turns.take();
        let fourth = turns.take();
        // The second and third give up while the first still runs.
        drop(third);
        drop(second);
        assert!(!granted_now(&fourth));
        assert_eq!(turns.outstanding(), 2);
        drop(first);
        assert!(granted_now(&fourth));
        assert_eq!(turns.outstanding(), 1);
    }

    #[test]
    fn the_next_waiter_is_woken_when_a_turn_ends() {
        struct Flag(std::sync::atomic::AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let flag = std::sync::Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
        let waker = Waker::from(std::sync::Arc::clone(&flag));
        let turns = Turns::new();
        let first = turns.take();
        let second = turns.take();
        let mut cx = Context::from_waker(&waker);
        let mut granted = std::pin::pin!(second.granted());
        assert!(granted.as_mut().poll(&mut cx).is_pending());
        drop(first);
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(granted.as_mut().poll(&mut cx).is_ready());
    }
}
