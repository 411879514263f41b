//! mm-intern against lasso (`Rodeo`, `ThreadedRodeo`) and string-interner, side by side on
//! the same English-like token stream (`crates/mm-intern/tests/common/corpus.rs`: 100k
//! tokens, Zipf over a 30k-word vocabulary).
//!
//! Groups:
//! - `intern/fill`: intern the whole stream into a fresh interner (about 1 in 7 calls
//!   inserts, the rest hit), one thread. Every crate with its default hasher (lasso: std
//!   SipHash; string-interner and mm-intern: foldhash). `mm-intern-batch` uses
//!   `Interner::try_intern_batch`, which takes each shard lock once per 256 strings;
//!   `mm-intern-mut` uses `Interner::get_or_intern_mut`, the `&mut self` path (no lock,
//!   plain counter adds), as string-interner's and `Rodeo`'s `&mut self` interning.
//! - `intern/fill-2-threads`: the same stream split in two halves interned by two threads
//!   at once into one shared interner, against string-interner behind a `Mutex` and
//!   lasso's `ThreadedRodeo` (the 1-thread figure of each, whole stream on one thread, is
//!   in the same group for the ratio).
//! - `intern/get-2-threads`: hits only on one shared, filled interner, the stream's halves
//!   looked up by two threads at once (string-interner behind an `RwLock`, read-locked per
//!   call).
//! - `intern/get`: look up every token in a filled interner (hits only).
//! - `intern/resolve`: resolve every token's symbol.
//!
//! Run: `cargo bench -p mm-benches --bench intern -- --warm-up-time 1 --measurement-time 3`

use std::{
    hint::black_box,
    sync::{Mutex, RwLock},
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mm_intern::Interner;

#[path = "../../crates/mm-intern/tests/common/corpus.rs"]
mod corpus;

type SiInterner = string_interner::DefaultStringInterner;

fn tokens() -> Vec<String> {
    corpus::token_stream(100_000, 30_000, 0x5EED)
}

fn fill(c: &mut Criterion) {
    let tokens = tokens();
    let mut g = c.benchmark_group("intern/fill");
    g.throughput(Throughput::Elements(tokens.len() as u64));
    g.bench_function("lasso-Rodeo", |b| {
        b.iter(|| {
            let mut r = lasso::Rodeo::default();
            for t in &tokens {
                black_box(r.get_or_intern(t));
            }
            r
        })
    });
    g.bench_function("lasso-ThreadedRodeo", |b| {
        b.iter(|| {
            let r = lasso::ThreadedRodeo::default();
            for t in &tokens {
                black_box(r.get_or_intern(t));
            }
            r
        })
    });
    g.bench_function("string-interner", |b| {
        b.iter(|| {
            let mut r = SiInterner::default();
            for t in &tokens {
                black_box(r.get_or_intern(t));
            }
            r
        })
    });
    g.bench_function("mm-intern", |b| {
        b.iter(|| {
            let r = Interner::new();
            for t in &tokens {
                black_box(r.get_or_intern(t));
            }
            r
        })
    });
    g.bench_function("mm-intern-mut", |b| {
        b.iter(|| {
            let mut r = Interner::new();
            for t in &tokens {
                black_box(r.get_or_intern_mut(t));
            }
            r
        })
    });
    g.bench_function("mm-intern-batch", |b| {
        b.iter(|| {
            let r = Interner::new();
            let mut out = Vec::with_capacity(tokens.len());
            r.try_intern_batch(&tokens, &mut out).unwrap();
            (r, out)
        })
    });
    g.finish();
}

/// Runs `work` over the whole stream on one thread, or over its two halves on two threads
/// at once, all against the same shared interner.
fn split<'a>(threads: usize, tokens: &'a [String], work: impl Fn(&'a [String]) + Sync) {
    if threads == 1 {
        work(tokens);
    } else {
        let (left, right) = tokens.split_at(tokens.len() / 2);
        std::thread::scope(|s| {
            s.spawn(|| work(left));
            work(right);
        });
    }
}

fn fill_two_threads(c: &mut Criterion) {
    let tokens = tokens();
    let mut g = c.benchmark_group("intern/fill-2-threads");
    g.throughput(Throughput::Elements(tokens.len() as u64));
    for threads in [1, 2] {
        g.bench_with_input(
            BenchmarkId::new("string-interner-mutex", threads),
            &threads,
            |b, &threads| {
                b.iter(|| {
                    let r = Mutex::new(SiInterner::default());
                    split(threads, &tokens, |part| {
                        for t in part {
                            black_box(r.lock().unwrap().get_or_intern(t));
                        }
                    });
                    r
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("lasso-ThreadedRodeo", threads),
            &threads,
            |b, &threads| {
                b.iter(|| {
                    let r = lasso::ThreadedRodeo::default();
                    split(threads, &tokens, |part| {
                        for t in part {
                            black_box(r.get_or_intern(t));
                        }
                    });
                    r
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("mm-intern", threads),
            &threads,
            |b, &threads| {
                b.iter(|| {
                    let r = Interner::new();
                    split(threads, &tokens, |part| {
                        for t in part {
                            black_box(r.get_or_intern(t));
                        }
                    });
                    r
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("mm-intern-batch", threads),
            &threads,
            |b, &threads| {
                b.iter(|| {
                    let r = Interner::new();
                    split(threads, &tokens, |part| {
                        let mut out = Vec::with_capacity(part.len());
                        r.try_intern_batch(part, &mut out).unwrap();
                        black_box(out);
                    });
                    r
                })
            },
        );
    }
    g.finish();
}

/// Hits only, on one shared, filled interner: the stream looked up by one thread, or its
/// halves by two threads at once.
fn get_two_threads(c: &mut Criterion) {
    let tokens = tokens();
    let si = RwLock::new(SiInterner::default());
    let threaded = lasso::ThreadedRodeo::default();
    let ours = Interner::new();
    for t in &tokens {
        si.write().unwrap().get_or_intern(t);
        threaded.get_or_intern(t);
        ours.get_or_intern(t);
    }
    let mut g = c.benchmark_group("intern/get-2-threads");
    g.throughput(Throughput::Elements(tokens.len() as u64));
    for threads in [1, 2] {
        g.bench_with_input(
            BenchmarkId::new("string-interner-rwlock", threads),
            &threads,
            |b, &threads| {
                b.iter(|| {
                    split(threads, &tokens, |part| {
                        for t in part {
                            black_box(si.read().unwrap().get(t));
                        }
                    })
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("lasso-ThreadedRodeo", threads),
            &threads,
            |b, &threads| {
                b.iter(|| {
                    split(threads, &tokens, |part| {
                        for t in part {
                            black_box(threaded.get(t));
                        }
                    })
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("mm-intern", threads),
            &threads,
            |b, &threads| {
                b.iter(|| {
                    split(threads, &tokens, |part| {
                        for t in part {
                            black_box(ours.get(t));
                        }
                    })
                })
            },
        );
    }
    g.finish();
}

fn lookups(c: &mut Criterion) {
    let tokens = tokens();
    let mut rodeo = lasso::Rodeo::default();
    let threaded = lasso::ThreadedRodeo::default();
    let mut si = SiInterner::default();
    let ours = Interner::new();
    for t in &tokens {
        rodeo.get_or_intern(t);
        threaded.get_or_intern(t);
        si.get_or_intern(t);
        ours.get_or_intern(t);
    }
    let frozen_source = Interner::new();
    for t in &tokens {
        frozen_source.get_or_intern(t);
    }
    let frozen = frozen_source.freeze();

    let mut g = c.benchmark_group("intern/get");
    g.throughput(Throughput::Elements(tokens.len() as u64));
    g.bench_function("lasso-Rodeo", |b| {
        b.iter(|| {
            tokens.iter().for_each(|t| {
                black_box(rodeo.get(t));
            })
        })
    });
    g.bench_function("lasso-ThreadedRodeo", |b| {
        b.iter(|| {
            tokens.iter().for_each(|t| {
                black_box(threaded.get(t));
            })
        })
    });
    g.bench_function("string-interner", |b| {
        b.iter(|| {
            tokens.iter().for_each(|t| {
                black_box(si.get(t));
            })
        })
    });
    g.bench_function("mm-intern", |b| {
        b.iter(|| {
            tokens.iter().for_each(|t| {
                black_box(ours.get(t));
            })
        })
    });
    g.bench_function("mm-intern-frozen", |b| {
        b.iter(|| {
            tokens.iter().for_each(|t| {
                black_box(frozen.get(t));
            })
        })
    });
    g.finish();

    let rodeo_syms: Vec<_> = tokens.iter().map(|t| rodeo.get(t).unwrap()).collect();
    let threaded_syms: Vec<_> = tokens.iter().map(|t| threaded.get(t).unwrap()).collect();
    let si_syms: Vec<_> = tokens.iter().map(|t| si.get(t).unwrap()).collect();
    let ours_syms: Vec<_> = tokens.iter().map(|t| ours.get(t).unwrap()).collect();
    let frozen_syms: Vec<_> = tokens.iter().map(|t| frozen.get(t).unwrap()).collect();
    let mut g = c.benchmark_group("intern/resolve");
    g.throughput(Throughput::Elements(tokens.len() as u64));
    g.bench_function("lasso-Rodeo", |b| {
        b.iter(|| {
            rodeo_syms
                .iter()
                .map(|s| rodeo.resolve(s).len())
                .sum::<usize>()
        })
    });
    g.bench_function("lasso-ThreadedRodeo", |b| {
        b.iter(|| {
            threaded_syms
                .iter()
                .map(|s| threaded.resolve(s).len())
                .sum::<usize>()
        })
    });
    g.bench_function("string-interner", |b| {
        b.iter(|| {
            si_syms
                .iter()
                .map(|s| si.resolve(*s).map_or(0, str::len))
                .sum::<usize>()
        })
    });
    g.bench_function("mm-intern", |b| {
        b.iter(|| {
            ours_syms
                .iter()
                .map(|s| ours.resolve(*s).len())
                .sum::<usize>()
        })
    });
    g.bench_function("mm-intern-frozen", |b| {
        b.iter(|| {
            frozen_syms
                .iter()
                .map(|s| frozen.resolve(*s).len())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, fill, fill_two_threads, get_two_threads, lookups);
criterion_main!(benches);
