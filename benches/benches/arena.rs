//! Bump allocation through mm-arena vs raw bumpalo vs `Box` on the system allocator.
//!
//! One iteration is one simulated request: N small allocations, then the reset (or the
//! frees, for `Box`). Run: see docs/benchmarks.md, section mm-arena.

use std::cell::RefCell;
use std::hint::black_box;

use bumpalo::Bump;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mm_arena::{ArenaConfig, RequestArena};

const SIZES: [u64; 2] = [100, 1_000];

fn small_values(c: &mut Criterion) {
    let mut group = c.benchmark_group("arena/alloc_u64_then_reset");
    for n in SIZES {
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::new("mm_arena_scope", n), &n, |b, &n| {
            b.iter(|| {
                mm_arena::scope(|arena| {
                    for i in 0..n {
                        black_box(arena.alloc(black_box(i)).unwrap());
                    }
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("mm_request_arena", n), &n, |b, &n| {
            let mut request = RequestArena::new(ArenaConfig::new()).unwrap();
            b.iter(|| {
                let arena = request.arena();
                for i in 0..n {
                    black_box(arena.alloc(black_box(i)).unwrap());
                }
                request.reset();
            })
        });
        group.bench_with_input(BenchmarkId::new("bumpalo_raw_local", n), &n, |b, &n| {
            let mut bump = Bump::new();
            b.iter(|| {
                for i in 0..n {
                    black_box(bump.alloc(black_box(i)));
                }
                bump.reset();
            })
        });
        // The same, with the arena's address visible to the optimiser's "anything may
        // change it" assumption, as for any arena that lives in a struct, a static or a
        // thread-local: its bump pointer is reloaded after every opaque call.
        group.bench_with_input(BenchmarkId::new("bumpalo_raw_escaped", n), &n, |b, &n| {
            let mut bump = Bump::new();
            b.iter(|| {
                let arena: &Bump = black_box(&bump);
                for i in 0..n {
                    black_box(arena.alloc(black_box(i)));
                }
                bump.reset();
            })
        });
        group.bench_with_input(BenchmarkId::new("bumpalo_thread_local", n), &n, |b, &n| {
            thread_local! { static BUMP: RefCell<Bump> = RefCell::new(Bump::new()); }
            b.iter(|| {
                BUMP.with(|cell| {
                    {
                        let bump = cell.borrow();
                        for i in 0..n {
                            black_box(bump.alloc(black_box(i)));
                        }
                    }
                    cell.borrow_mut().reset();
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("box_system", n), &n, |b, &n| {
            let mut boxes: Vec<Box<u64>> = Vec::with_capacity(n as usize);
            b.iter(|| {
                for i in 0..n {
                    boxes.push(Box::new(black_box(i)));
                }
                black_box(&boxes);
                boxes.clear();
            })
        });
    }
    group.finish();
}

const PIECES: [&str; 6] = [
    "system: you are a helpful assistant",
    "user: summarise this file",
    "tool_call: read_file",
    "tool_result: 4 KiB of text",
    "assistant: here is the summary",
    "user: thanks",
];

/// A request that copies strings and builds a slice: closer to prompt assembly.
fn request_shaped(c: &mut Criterion) {
    let mut group = c.benchmark_group("arena/prompt_request");
    group.throughput(Throughput::Elements(1));
    group.bench_function("mm_arena_scope", |b| {
        b.iter(|| {
            mm_arena::scope(|arena| {
                let parts = arena.alloc_slice_fill_copy(64, "").unwrap();
                for (i, slot) in parts.iter_mut().enumerate() {
                    *slot = arena.alloc_str(PIECES[i % PIECES.len()]).unwrap();
                }
                black_box(parts.iter().map(|p| p.len()).sum::<usize>())
            })
        })
    });
    group.bench_function("bumpalo_raw_local", |b| {
        let mut bump = Bump::new();
        b.iter(|| {
            let parts = bump.alloc_slice_fill_copy(64, "");
            for (i, slot) in parts.iter_mut().enumerate() {
                *slot = bump.alloc_str(PIECES[i % PIECES.len()]);
            }
            black_box(parts.iter().map(|p| p.len()).sum::<usize>());
            bump.reset();
        })
    });
    group.bench_function("string_system", |b| {
        b.iter(|| {
            let parts: Vec<String> = (0..64)
                .map(|i| PIECES[i % PIECES.len()].to_owned())
                .collect();
            black_box(parts.iter().map(|p| p.len()).sum::<usize>())
        })
    });
    group.finish();
}

criterion_group!(benches, small_values, request_shaped);
criterion_main!(benches);
