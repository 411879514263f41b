//! Instruction-count probe for the interner against string-interner, for cachegrind (the
//! benches' wall-clock figures move with machine load; instruction counts do not):
//!
//! ```text
//! cargo build --release -p mm-intern --example probe
//! for w in none si-fill mm-fill mm-fill-mut si-get mm-get si-resolve mm-resolve; do
//!   valgrind --tool=cachegrind --cache-sim=no target/release/examples/probe $w 2>&1 | grep 'I *refs'
//! done
//! ```
//!
//! Every workload builds the bench's 100k-token stream first (`none` does only that);
//! `*-fill` interns it into 5 fresh interners (`mm-fill-mut` through `&mut`,
//! `Interner::get_or_intern_mut`, the others as each crate's API has it), `*-get` and `*-resolve` fill once and then
//! look up or resolve every token 5 times. Subtract `none` (and for get/resolve one fill)
//! and divide by 500,000 for instructions per call.
//!
//! `time` is a wall-clock probe for a loaded machine instead: the criterion groups' cases
//! (fill, hits and resolve at one thread; fill and hits at two threads on one shared
//! interner, string-interner behind a `Mutex` or `RwLock`) run in interleaved rounds in one
//! process, and each case's fastest round is reported (nanoseconds per call, and the ratio
//! to string-interner's fastest). Rounds: `MM_PROBE_ROUNDS` (default 21).
//!
//! ```text
//! cargo run --release -p mm-intern --example probe -- time
//! ```

#[path = "../tests/common/corpus.rs"]
mod corpus;

use std::{
    hint::black_box,
    sync::{Mutex, RwLock},
    time::{Duration, Instant},
};

type Si = string_interner::DefaultStringInterner;

fn main() {
    let Some(which) = std::env::args().nth(1) else {
        eprintln!(
            "usage: probe none|si-fill|mm-fill|mm-fill-mut|si-get|mm-get|si-resolve|mm-resolve|time"
        );
        std::process::exit(2);
    };
    let tokens = corpus::token_stream(100_000, 30_000, 0x5EED);
    match which.as_str() {
        "none" => {}
        "si-fill" => (0..5).for_each(|_| drop(black_box(si_fill(&tokens)))),
        "mm-fill" => (0..5).for_each(|_| drop(black_box(mm_fill(&tokens)))),
        "mm-fill-mut" => (0..5).for_each(|_| drop(black_box(mm_fill_mut(&tokens)))),
        "si-get" => {
            let (r, _) = si_fill(&tokens);
            (0..5).for_each(|_| si_get(&r, &tokens));
        }
        "mm-get" => {
            let (r, _) = mm_fill(&tokens);
            (0..5).for_each(|_| mm_get(&r, &tokens));
        }
        "si-resolve" => {
            let (r, syms) = si_fill(&tokens);
            (0..5).for_each(|_| si_resolve(&r, &syms));
        }
        "mm-resolve" => {
            let (r, syms) = mm_fill(&tokens);
            (0..5).for_each(|_| mm_resolve(&r, &syms));
        }
        "time" => time_all(&tokens),
        _ => {
            eprintln!("unknown workload {which}");
            std::process::exit(2);
        }
    }
    black_box(&tokens);
}

// One function per measured loop, never inlined, so that each loop is compiled on its own
// and its instruction count does not depend on what else `main` contains.

#[inline(never)]
fn si_fill(tokens: &[String]) -> (Si, Vec<string_interner::DefaultSymbol>) {
    let mut r = Si::default();
    let syms = tokens.iter().map(|t| r.get_or_intern(t)).collect();
    (r, syms)
}

#[inline(never)]
fn mm_fill(tokens: &[String]) -> (mm_intern::Interner, Vec<mm_intern::Symbol>) {
    let r = mm_intern::Interner::new();
    let syms = tokens.iter().map(|t| r.get_or_intern(t)).collect();
    (r, syms)
}

/// `mm_fill` through `&mut` (`Interner::get_or_intern_mut`), as `si_fill` has it.
#[inline(never)]
fn mm_fill_mut(tokens: &[String]) -> (mm_intern::Interner, Vec<mm_intern::Symbol>) {
    let mut r = mm_intern::Interner::new();
    let syms = tokens.iter().map(|t| r.get_or_intern_mut(t)).collect();
    (r, syms)
}

#[inline(never)]
fn si_get(r: &Si, tokens: &[String]) {
    tokens.iter().for_each(|t| {
        black_box(r.get(t));
    });
}

#[inline(never)]
fn mm_get(r: &mm_intern::Interner, tokens: &[String]) {
    tokens.iter().for_each(|t| {
        black_box(r.get(t));
    });
}

#[inline(never)]
fn si_resolve(r: &Si, syms: &[string_interner::DefaultSymbol]) {
    syms.iter().for_each(|s| {
        black_box(r.resolve(*s));
    });
}

#[inline(never)]
fn mm_resolve(r: &mm_intern::Interner, syms: &[mm_intern::Symbol]) {
    syms.iter().for_each(|s| {
        black_box(r.resolve(*s));
    });
}

/// Runs `work` over the two halves of `tokens` on two threads, and returns the time from
/// before the spawn to the end of both (the spawn, tens of microseconds, is included: a
/// clock started after a barrier misses whatever the other thread did while this one was
/// being woken, which on a loaded machine can be most of its half).
fn two_threads(tokens: &[String], work: impl Fn(&[String]) + Sync) -> Duration {
    let (left, right) = tokens.split_at(tokens.len() / 2);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| work(left));
        work(right);
    });
    start.elapsed()
}

/// The time `f` takes; what it returns is dropped after the clock stops.
fn timed<R>(f: impl FnOnce() -> R) -> Duration {
    let start = Instant::now();
    let kept = f();
    let took = start.elapsed();
    drop(kept);
    took
}

type Case<'a> = (&'static str, &'static str, Box<dyn Fn() -> Duration + 'a>);

/// A case named `name` in group `group` that `run` times once per round.
fn case<'a>(group: &'static str, name: &'static str, run: impl Fn() -> Duration + 'a) -> Case<'a> {
    (group, name, Box::new(run))
}

/// Times `op` over every token on one thread.
fn each<'a, T>(tokens: &'a [String], op: impl Fn(&str) -> T + 'a) -> impl Fn() -> Duration + 'a {
    move || {
        timed(|| {
            tokens.iter().for_each(|t| {
                black_box(op(t));
            })
        })
    }
}

/// Times interning every token into a fresh interner made by `new` (dropped after the
/// clock stops), on one thread.
fn fill<'a, R, T>(
    tokens: &'a [String],
    new: impl Fn() -> R + 'a,
    intern: impl Fn(&mut R, &str) -> T + 'a,
) -> impl Fn() -> Duration + 'a {
    move || {
        timed(|| {
            let mut r = new();
            tokens.iter().for_each(|t| {
                black_box(intern(&mut r, t));
            });
            r
        })
    }
}

/// Times `op` on the interner `make` returns, over the tokens' two halves on two threads.
fn shared<'a, R: Sync, T>(
    tokens: &'a [String],
    make: impl Fn() -> R + 'a,
    op: impl Fn(&R, &str) -> T + Sync + 'a,
) -> impl Fn() -> Duration + 'a {
    move || {
        let r = make();
        two_threads(tokens, |part| {
            part.iter().for_each(|t| {
                black_box(op(&r, t));
            })
        })
    }
}

/// The wall-clock probe: see the module docs.
#[inline(never)]
fn time_all(tokens: &[String]) {
    let rounds: usize = std::env::var("MM_PROBE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(21);
    let mut si = Si::default();
    let si_syms: Vec<_> = tokens.iter().map(|t| si.get_or_intern(t)).collect();
    let mm = mm_intern::Interner::new();
    let mm_syms: Vec<_> = tokens.iter().map(|t| mm.get_or_intern(t)).collect();
    let si_shared = RwLock::new(si.clone());
    let lasso_shared = lasso::ThreadedRodeo::<lasso::Spur>::new();
    for t in tokens {
        lasso_shared.get_or_intern(t);
    }
    let (fill1, hits1, resolve1) = ("fill, 1 thread", "hits, 1 thread", "resolve, 1 thread");
    let (fill2, hits2) = ("fill, 2 threads", "hits, 2 threads");
    let cases: Vec<Case<'_>> = vec![
        case(
            fill1,
            "string-interner",
            fill(tokens, Si::default, |r, t| r.get_or_intern(t)),
        ),
        case(
            fill1,
            "mm-intern",
            fill(tokens, mm_intern::Interner::new, |r, t| r.get_or_intern(t)),
        ),
        case(
            fill1,
            "mm-intern-mut",
            fill(tokens, mm_intern::Interner::new, |r, t| {
                r.get_or_intern_mut(t)
            }),
        ),
        case(hits1, "string-interner", each(tokens, |t| si.get(t))),
        case(hits1, "mm-intern", each(tokens, |t| mm.get(t))),
        case(resolve1, "string-interner", || {
            timed(|| {
                black_box(
                    si_syms
                        .iter()
                        .map(|s| si.resolve(*s).map_or(0, str::len))
                        .sum::<usize>(),
                )
            })
        }),
        case(resolve1, "mm-intern", || {
            timed(|| black_box(mm_syms.iter().map(|s| mm.resolve(*s).len()).sum::<usize>()))
        }),
        case(
            fill2,
            "string-interner-mutex",
            shared(
                tokens,
                || Mutex::new(Si::default()),
                |r, t| r.lock().unwrap().get_or_intern(t),
            ),
        ),
        case(
            fill2,
            "lasso-ThreadedRodeo",
            shared(tokens, lasso::ThreadedRodeo::<lasso::Spur>::new, |r, t| {
                r.get_or_intern(t)
            }),
        ),
        case(
            fill2,
            "mm-intern",
            shared(tokens, mm_intern::Interner::new, |r, t| r.get_or_intern(t)),
        ),
        case(
            hits2,
            "string-interner-rwlock",
            shared(tokens, || &si_shared, |r, t| r.read().unwrap().get(t)),
        ),
        case(
            hits2,
            "lasso-ThreadedRodeo",
            shared(tokens, || &lasso_shared, |r, t| r.get(t)),
        ),
        case(hits2, "mm-intern", shared(tokens, || &mm, |r, t| r.get(t))),
    ];
    let mut best = vec![Duration::MAX; cases.len()];
    for _ in 0..rounds {
        for (b, (_, _, case)) in best.iter_mut().zip(&cases) {
            *b = (*b).min(case());
        }
    }
    let per_call = |d: Duration| d.as_nanos() as f64 / tokens.len() as f64;
    println!("fastest of {rounds} interleaved rounds, ns per call (whole stream / calls)");
    let mut base = 0.0;
    for ((group, name, _), b) in cases.iter().zip(&best) {
        let ns = per_call(*b);
        if name.starts_with("string-interner") {
            base = ns;
        }
        println!("{group:<18} {name:<24} {ns:>7.2} ns  {:>5.2}x", ns / base);
    }
}
