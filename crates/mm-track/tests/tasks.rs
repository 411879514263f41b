//! Per-task counting (`count_future`) on a multi-thread tokio runtime, under a real
//! `#[global_allocator]`: a task whose polls run on different worker threads, and many tasks
//! interleaved on the same workers, each get exactly their own calls.
#![cfg(not(loom))]

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::thread::{self, ThreadId};

use mm_track::{ScopeStats, TrackedAlloc, count_future};

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

/// A one-shot wake-up between tasks and threads that never allocates: a flag and a parked
/// waker (cloning a tokio waker only bumps a reference count).
#[derive(Default)]
struct Signal {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    fn fire(&self) {
        self.fired.store(true, SeqCst);
        let waker = self.waker.lock().unwrap().take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn poll_fired(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired.swap(false, SeqCst) {
            return Poll::Ready(());
        }
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.fired.swap(false, SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Moves the counted task to another worker. The task wakes a "hog" task from its own
/// worker, so tokio runs the hog next on that same worker (its LIFO slot, which other
/// workers cannot steal from); the hog then blocks that worker until the task has been
/// polled again. The task is woken from a plain thread, so the free worker polls it.
struct Rig {
    task: Signal,
    hog: Signal,
    stop: AtomicBool,
    release: Mutex<Option<mpsc::SyncSender<()>>>,
}

/// One attempt at a move: Pending on the first poll, Ready (with "did the thread change") on the poll
/// after the wake-up.
struct Hop<'a> {
    rig: &'a Rig,
    from: Option<ThreadId>,
}

impl Future for Hop<'_> {
    type Output = bool;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let here = thread::current().id();
        match self.from {
            None => {
                self.from = Some(here);
                let Poll::Pending = self.rig.task.poll_fired(cx) else {
                    unreachable!("nobody fires the task before it asks")
                };
                self.rig.hog.fire();
                Poll::Pending
            }
            Some(from) => {
                if self.rig.task.poll_fired(cx).is_pending() {
                    return Poll::Pending; // polled without our wake-up
                }
                if let Some(tx) = &*self.rig.release.lock().unwrap() {
                    tx.send(()).unwrap();
                }
                Poll::Ready(here != from)
            }
        }
    }
}

struct Fired<'a>(&'a Signal);
impl Future for Fired<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_fired(cx)
    }
}

const HOPS: usize = 32;

/// The calls one hop's work makes: a vector allocated before the move, grown and freed
/// after it (on the other worker), and a box held across the move.
fn expected(h: u64) -> ScopeStats {
    ScopeStats {
        allocs: 2,
        deallocs: 2,
        reallocs: 1,
        alloc_bytes: (100 + h) + 24 + 300,
        dealloc_bytes: (100 + h) + 24 + 300,
    }
}

#[test]
fn a_task_that_moves_between_workers_is_counted_exactly() {
    assert!(mm_track::is_active());
    let rt = runtime();
    let (release_tx, release_rx) = mpsc::sync_channel::<()>(1);
    let (blocking_tx, blocking_rx) = mpsc::sync_channel::<()>(1);
    let rig = Arc::new(Rig {
        task: Signal::default(),
        hog: Signal::default(),
        stop: AtomicBool::new(false),
        release: Mutex::new(Some(release_tx)),
    });

    // The hog: once parked, every wake-up blocks the worker it runs on until released.
    let (parked_tx, parked_rx) = mpsc::channel();
    let hog_rig = Arc::clone(&rig);
    let hog = rt.spawn(async move {
        parked_tx.send(()).unwrap();
        loop {
            Fired(&hog_rig.hog).await;
            if hog_rig.stop.load(SeqCst) {
                break;
            }
            blocking_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        }
    });
    parked_rx.recv().unwrap();
    // Wait until the hog has parked its waker.
    while rig.hog.waker.lock().unwrap().is_none() {
        thread::yield_now();
    }
    // The waker thread: wakes the task once the hog is blocking its old worker.
    let waker_rig = Arc::clone(&rig);
    let waker = thread::spawn(move || {
        while blocking_rx.recv().is_ok() {
            waker_rig.task.fire();
        }
    });

    let task_rig = Arc::clone(&rig);
    let counted = rt.spawn(count_future(async move {
        let rig = &*task_rig;
        let mut per_hop = [ScopeStats::default(); HOPS];
        let mut hop_alone = ScopeStats::default();
        let mut tries_total = 0;
        for (h, slot) in per_hop.iter_mut().enumerate() {
            let ((tries, hop), work) = count_future(async {
                let mut v: Vec<u8> = Vec::with_capacity(100 + h);
                v.push(h as u8);
                let held = black_box(Box::new([h as u8; 24]));
                v.clear();
                // The hog may still be finishing its last poll when woken, and then blocks
                // the other worker instead: hop again until the thread really changed.
                let mut hop = ScopeStats::default();
                let mut tries = 0;
                loop {
                    let (moved, stats) = count_future(Hop { rig, from: None }).await;
                    hop += stats;
                    tries += 1;
                    if moved {
                        break;
                    }
                    assert!(tries < 10_000, "hop {h}: the task never changed workers");
                }
                v.reserve_exact(300);
                v.push(held[0]);
                drop(black_box(held));
                drop(black_box(v));
                (tries, hop)
            })
            .await;
            *slot = work;
            hop_alone += hop;
            tries_total += tries;
        }
        (per_hop, hop_alone, tries_total)
    }));
    let ((per_hop, hop_alone, tries), total) = rt.block_on(counted).unwrap();

    rig.stop.store(true, SeqCst);
    rig.hog.fire();
    rt.block_on(hog).unwrap();
    drop(rig.release.lock().unwrap().take());
    drop(rig);
    drop(rt);
    waker.join().unwrap();

    println!("{HOPS} moves between workers took {tries} wake-ups");
    assert!(
        hop_alone.is_empty(),
        "the moving machinery allocated: {hop_alone:?}"
    );
    for (h, got) in per_hop.iter().enumerate() {
        assert_eq!(*got, expected(h as u64), "hop {h}");
    }
    let sum: ScopeStats = (0..HOPS as u64).map(expected).sum();
    assert_eq!(per_hop.iter().sum::<ScopeStats>(), sum);
    assert_eq!(total, sum, "the outer count is the sum of the hops");
    assert_eq!(total.net_bytes(), 0);
}

/// Yields by waking itself (tokio's `yield_now` may grow a per-worker list, which would be
/// counted in the task that yields).
struct SelfYield(bool);
impl Future for SelfYield {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn interleaved_tasks_each_get_their_own_counts() {
    assert!(mm_track::is_active());
    let rt = runtime();
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            rt.spawn(count_future(async move {
                let first = thread::current().id();
                let mut moved = false;
                let mut held = Vec::with_capacity(16); // 1 alloc of 16 x 24 bytes
                for i in 0..16u64 {
                    held.push(black_box(vec![0u8; (t + i + 1) as usize])); // 1 alloc_zeroed
                    SelfYield(false).await;
                    moved |= thread::current().id() != first;
                }
                drop(black_box(held)); // 17 deallocs
                moved
            }))
        })
        .collect();
    let results: Vec<_> = tasks.into_iter().map(|j| rt.block_on(j).unwrap()).collect();
    drop(rt);
    for (t, (_moved, stats)) in (0u64..).zip(&results) {
        let bytes = 16 * 24 + (0..16).map(|i| t + i + 1).sum::<u64>();
        let want = ScopeStats {
            allocs: 17,
            deallocs: 17,
            reallocs: 0,
            alloc_bytes: bytes,
            dealloc_bytes: bytes,
        };
        assert_eq!(*stats, want, "task {t}");
    }
    let moved = results.iter().filter(|(m, _)| *m).count();
    println!("{moved} of 64 tasks were polled on more than one worker");
}
