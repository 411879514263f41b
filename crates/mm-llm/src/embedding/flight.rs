//! Single flight: one computation per missing key, however many callers ask for it at once.
//!
//! The first caller to miss a key registers a [`Flight`] in the key's shard (under the shard
//! lock) and computes; later callers find the flight there and wait on it, blocking on a
//! condition variable ([`Flight::wait`]) or as a future ([`FlightWait`], woken through the
//! wakers it registered: no runtime needed). The computing caller finishes the flight with the
//! handle it cached, or abandons it (an error, a panic, a dropped future): waiters then start
//! over, and one of them computes, so an error is never handed to, or cached for, others.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::Embedding;
use crate::sync::{Condvar, Mutex, lock};

/// What waiters of a flight get.
#[derive(Debug)]
enum Outcome {
    Pending,
    Ready(Embedding),
    /// The computation failed or was dropped; waiters retry.
    Abandoned,
}

#[derive(Debug)]
struct State {
    outcome: Outcome,
    wakers: Vec<Waker>,
}

/// One computation in progress, shared by its leader and its waiters.
#[derive(Debug)]
pub(super) struct Flight {
    state: Mutex<State>,
    done: Condvar,
}

impl Flight {
    pub(super) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                outcome: Outcome::Pending,
                wakers: Vec::new(),
            }),
            done: Condvar::new(),
        }
    }

    /// Ends the flight: `Some` hands the vector to every waiter, `None` sends them back to
    /// retry.
    pub(super) fn finish(&self, result: Option<Embedding>) {
        let wakers = {
            let mut state = lock(&self.state);
            state.outcome = match result {
                Some(e) => Outcome::Ready(e),
                None => Outcome::Abandoned,
            };
            std::mem::take(&mut state.wakers)
        };
        self.done.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Blocks until the flight ends: its vector, or `None` if it was abandoned.
    pub(super) fn wait(&self) -> Option<Embedding> {
        let mut state = lock(&self.state);
        loop {
            match &state.outcome {
                Outcome::Pending => {
                    state = self
                        .done
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                Outcome::Ready(e) => return Some(e.clone()),
                Outcome::Abandoned => return None,
            }
        }
    }

    fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<Option<Embedding>> {
        let mut state = lock(&self.state);
        match &state.outcome {
            Outcome::Pending => {
                if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    state.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
            Outcome::Ready(e) => Poll::Ready(Some(e.clone())),
            Outcome::Abandoned => Poll::Ready(None),
        }
    }
}

/// A future that resolves when a flight ends (see [`Flight::wait`]).
#[derive(Debug)]
pub(super) struct FlightWait<'a>(pub(super) &'a Flight);

impl Future for FlightWait<'_> {
    type Output = Option<Embedding>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll_wait(cx)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountWake(AtomicUsize);
    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn waiters_get_the_outcome_and_futures_are_woken_once() {
        let f = Arc::new(Flight::new());
        let counter = Arc::new(CountWake(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = FlightWait(&f);
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        let blocked = {
            let f = f.clone();
            std::thread::spawn(move || f.wait().map(|e| e.to_vec()))
        };
        f.finish(Some(Embedding::owned(&[1.0, 2.0])));
        assert_eq!(blocked.join().unwrap(), Some(vec![1.0, 2.0]));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "one waker, woken once");
        match Pin::new(&mut fut).poll(&mut cx) {
            Poll::Ready(Some(e)) => assert_eq!(*e, [1.0, 2.0]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_abandoned_flight_sends_waiters_back() {
        let f = Flight::new();
        f.finish(None);
        assert!(f.wait().is_none());
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(
            Pin::new(&mut FlightWait(&f)).poll(&mut cx),
            Poll::Ready(None)
        ));
    }
}
