//! Loom models of the counting core: per-thread `Local` counters (hot words rolled into
//! cumulative counters, folded into `Shared` when due) driven exactly as the allocator glue
//! drives them.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::AtomicU64;
use loom::thread;
use mm_track::model::{Local, ROLL_BYTES, Shared};

/// A size that fills a hot word at once, so the call rolls (and, past the slack, folds).
const K: u64 = ROLL_BYTES;

fn shared() -> Arc<Shared<AtomicU64>> {
    Arc::new(Shared::with(|| AtomicU64::new(0)))
}

/// Plays one thread's calls, settling (roll, and fold when due) whenever a call asks for it as
/// the allocator's slow path does, and folding once more at the end (the thread-exit hook).
fn run(shared: &Shared<AtomicU64>, calls: &[(char, u64, u64)]) {
    let local = Local::new(16);
    for &(op, a, b) in calls {
        let due = match op {
            'a' => local.record_alloc(a),
            'z' => local.record_alloc_zeroed(a),
            'd' => local.record_dealloc(a),
            _ => local.record_realloc(a, b),
        };
        if due {
            local.settle(shared, true);
        }
    }
    local.fold(shared, false);
}

/// Whatever the interleaving of two threads' batched folds, the totals after both threads
/// have finished are exactly the sum of their calls (no delta lost or folded twice), for
/// calls that stay in the hot words, calls that fill them, and a realloc.
#[test]
fn folded_totals_are_exact_after_join() {
    loom::model(|| {
        let s = shared();
        let s2 = Arc::clone(&s);
        let t = thread::spawn(move || {
            run(
                &s2,
                &[('a', 10, 0), ('z', K, 0), ('d', 10, 0), ('r', K, 2 * K)],
            );
        });
        run(&s, &[('a', K, 0), ('a', 4, 0), ('d', 4, 0)]);
        t.join().unwrap();
        let snap = s.snapshot();
        assert_eq!(snap.allocs, 4);
        assert_eq!(snap.zeroed_allocs, 1);
        assert_eq!(snap.deallocs, 2);
        assert_eq!(snap.reallocs, 1);
        assert_eq!(snap.total_alloc_bytes, 10 + K + 2 * K + K + 4);
        assert_eq!(snap.live_bytes, 3 * K);
        assert_eq!(s.folded_live(), 3 * K as i64);
        assert!(snap.peak_bytes >= 3 * K);
    });
}

/// When one thread frees a block another allocated, the raw folded total may dip below zero
/// for a moment, but a concurrent snapshot never shows a negative (wrapped-around) live
/// figure and never a peak below live; after both fold, live is exactly zero again.
#[test]
fn cross_thread_free_never_shows_a_wrapped_live_figure() {
    loom::model(|| {
        let s = shared();
        let (sa, sb) = (Arc::clone(&s), Arc::clone(&s));
        let a = thread::spawn(move || run(&sa, &[('a', 100, 0)]));
        let b = thread::spawn(move || run(&sb, &[('d', 100, 0)]));
        let seen = s.snapshot();
        assert!(seen.live_bytes <= 100, "wrapped live: {seen:?}");
        assert!(seen.peak_bytes >= seen.live_bytes);
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(s.folded_live(), 0);
        assert_eq!(s.snapshot().live_bytes, 0);
    });
}

/// The peak is the largest folded live value: two threads each holding 100 bytes at once
/// can fold to a peak of 100 or 200 depending on the order, never less than 100, and every
/// snapshot taken meanwhile has `peak_bytes >= live_bytes`.
#[test]
fn peak_is_the_folded_maximum() {
    loom::model(|| {
        let s = shared();
        let (s1, s2) = (Arc::clone(&s), Arc::clone(&s));
        let hold = |s: &Shared<AtomicU64>| {
            let l = Local::new(0);
            l.record_alloc(100);
            l.fold(s, true);
            l.record_dealloc(100);
            l.fold(s, true);
        };
        let t1 = thread::spawn(move || hold(&s1));
        let t2 = thread::spawn(move || hold(&s2));
        let seen = s.snapshot();
        assert!(seen.peak_bytes >= seen.live_bytes, "{seen:?}");
        t1.join().unwrap();
        t2.join().unwrap();
        let end = s.snapshot();
        assert_eq!(end.live_bytes, 0);
        assert!(end.peak_bytes == 100 || end.peak_bytes == 200, "{end:?}");
    });
}
