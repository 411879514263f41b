//! Per-task counting: a future wrapper that adds up the allocator calls made while its inner
//! future is polled, on whichever thread polls it.

use core::future::{Future, IntoFuture};
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::counters::ScopeStats;
use crate::global;

pin_project_lite::pin_project! {
    /// The future returned by [`count_future`]: resolves to the inner output and the
    /// allocator calls made while the inner future was being polled.
    ///
    /// Each poll is one [`crate::count`] scope on the thread that polls it, and the scopes
    /// are summed, so a task that an executor moves between worker threads is counted
    /// exactly, wherever each poll runs. The inner future is dropped inside its last poll,
    /// so whatever it frees on completion is counted too.
    ///
    /// Not counted: work the inner future hands to other tasks or threads (a spawned task,
    /// a blocking pool, an I/O driver thread), the executor's own bookkeeping between polls,
    /// and the drop of a future that is cancelled (dropped before it completes).
    #[derive(Debug)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct CountFuture<F> {
        #[pin]
        inner: Option<F>,
        stats: ScopeStats,
    }
}

/// Wraps `fut` so that it resolves to `(output, stats)`: its output and the allocator calls
/// made while it was polled, summed over every poll on whatever thread made it.
///
/// Runtime-agnostic: it only brackets each `poll` with two reads of the polling thread's
/// counters (a few thread-local loads each; it never allocates), so it works on any
/// executor, single- or multi-threaded. Wrappers nest: an inner `count_future` sees its own
/// polls, the outer one sees those and everything else. As with [`crate::count`], every
/// figure is 0 when no [`crate::TrackedAlloc`] is the global allocator.
///
/// ```
/// use std::task::{Context, Poll, Waker};
///
/// let mut fut = std::pin::pin!(mm_track::count_future(async { 6 * 7 }));
/// let mut cx = Context::from_waker(Waker::noop());
/// let Poll::Ready((answer, stats)) = fut.as_mut().poll(&mut cx) else { unreachable!() };
/// assert_eq!(answer, 42);
/// assert!(stats.is_empty());
/// ```
pub fn count_future<F: IntoFuture>(fut: F) -> CountFuture<F::IntoFuture> {
    CountFuture {
        inner: Some(fut.into_future()),
        stats: ScopeStats::default(),
    }
}

impl<F> CountFuture<F> {
    /// The calls counted so far (over the polls made until now).
    pub fn stats(&self) -> ScopeStats {
        self.stats
    }
}

impl<F: Future> Future for CountFuture<F> {
    type Output = (F::Output, ScopeStats);

    /// Polls the inner future inside a counting scope on the current thread.
    ///
    /// # Panics
    ///
    /// When polled again after it returned `Ready` (like any completed `async` block).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let before = global::thread_totals();
        let inner = this
            .inner
            .as_mut()
            .as_pin_mut()
            .expect("CountFuture polled after it completed");
        let poll = inner.poll(cx);
        if poll.is_ready() {
            // Dropped here, inside the scope, so its last frees are the task's too.
            this.inner.set(None);
        }
        *this.stats += global::thread_totals().since(before);
        poll.map(|out| (out, *this.stats))
    }
}
