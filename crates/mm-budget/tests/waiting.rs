//! Waiting reservations: they complete when a release makes room, time out without
//! reserving anything, and no wake-up is lost under many threads (a lost wake-up would leave
//! a waiter parked until its generous deadline, and the test would fail with `TimedOut`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use mm_budget::{BudgetError, MemoryBudget};

/// A hang detector, not a timing assertion: far longer than any wait here should take.
const HANG: Duration = Duration::from_secs(120);

/// A runtime-free timer future: ready once `at` has passed (a helper thread wakes it).
struct Deadline {
    at: Instant,
    armed: bool,
}

impl Deadline {
    fn after(d: Duration) -> Self {
        Self {
            at: Instant::now() + d,
            armed: false,
        }
    }
}

impl Future for Deadline {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        if !self.armed {
            self.armed = true;
            let (at, waker) = (self.at, cx.waker().clone());
            std::thread::spawn(move || {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                waker.wake();
            });
        }
        Poll::Pending
    }
}

#[test]
fn a_waiter_completes_when_a_release_makes_room() {
    let budget = MemoryBudget::with_limit(100).unwrap();
    let held = budget.try_reserve(80).unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| block_on(budget.reserve_wait(50)).map(|r| r.bytes()));
        let blocking = s.spawn(|| {
            budget
                .reserve_blocking(20, Instant::now() + HANG)
                .map(|r| r.bytes())
        });
        // The blocking one fits at once (80 + 20); the async one needs the release.
        assert_eq!(blocking.join().unwrap().unwrap(), 20);
        drop(held);
        assert_eq!(waiter.join().unwrap().unwrap(), 50);
    });
    assert_eq!(budget.used(), 0);
}

#[test]
fn deadlines_give_up_without_reserving() {
    let budget = MemoryBudget::with_limit(100).unwrap();
    let _held = budget.try_reserve(90).unwrap();
    let err = block_on(budget.reserve_before(20, std::future::ready(()))).unwrap_err();
    assert!(
        matches!(
            err,
            BudgetError::TimedOut {
                requested: 20,
                available: 10,
                limit: 100
            }
        ),
        "{err}"
    );
    let err =
        block_on(budget.reserve_before(20, Deadline::after(Duration::from_millis(5)))).unwrap_err();
    assert!(matches!(err, BudgetError::TimedOut { .. }), "{err}");
    let err = budget.reserve_blocking(20, Instant::now()).unwrap_err();
    assert!(matches!(err, BudgetError::TimedOut { .. }), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(budget.used(), 90, "a timed-out wait reserves nothing");
    // What fits is granted at once, deadline or not; what never fits fails at once.
    assert_eq!(
        budget.reserve_blocking(10, Instant::now()).unwrap().bytes(),
        10
    );
    assert!(matches!(
        block_on(budget.reserve_wait(101)),
        Err(BudgetError::RequestTooLarge { .. })
    ));
}

#[test]
fn no_wake_up_is_lost_under_contention() {
    // Only one 60-byte reservation fits in 100 bytes at a time, so almost every request
    // waits for another's release.
    let budget = MemoryBudget::with_limit(100).unwrap();
    let done = AtomicU64::new(0);
    const ROUNDS: u64 = 300;
    // A lost wake-up of an async waiter (no deadline) would hang: end the process instead.
    let (finished, watch) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = watch.recv_timeout(HANG) {
            eprintln!("no_wake_up_is_lost_under_contention: a waiter was never woken");
            std::process::exit(1);
        }
    });
    std::thread::scope(|s| {
        for t in 0..6 {
            let (budget, done) = (&budget, &done);
            s.spawn(move || {
                for _ in 0..ROUNDS {
                    let r = if t % 2 == 0 {
                        budget.reserve_blocking(60, Instant::now() + HANG)
                    } else {
                        block_on(budget.reserve_wait(60))
                    };
                    let r = r.expect("a waiter was not woken");
                    assert!(budget.used() <= 100);
                    std::hint::black_box(&r);
                    drop(r);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let _ = finished.send(());
    assert_eq!(done.load(Ordering::Relaxed), 6 * ROUNDS);
    assert_eq!(budget.used(), 0);
}
