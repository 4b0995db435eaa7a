//! A shard-local wake-up signal: tasks wait until a condition over shared
//! state holds, and whoever changes that state calls `notify`. No polling
//! loops, no timers: a waiter runs again only when something changed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

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
}
