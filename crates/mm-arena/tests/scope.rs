//! Behaviour of the thread arena scopes: nesting, reset, panics, limits, stats.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mm_arena::{ArenaConfig, ArenaError};

#[test]
fn reset_happens_only_when_the_outermost_scope_ends() {
    let before = mm_arena::thread_stats().resets;
    mm_arena::scope(|outer| {
        let a = outer.alloc(1u64).unwrap();
        mm_arena::scope(|inner| {
            let b = inner.alloc(2u64).unwrap();
            assert_eq!(*a + *b, 3);
        });
        // The inner scope did not reset: `a` is still readable and the count did not move.
        assert_eq!(mm_arena::thread_stats().resets, before);
        assert!(mm_arena::thread_stats().in_use_bytes >= 16);
        *a += 1;
        assert_eq!(*a, 2);
    });
    let after = mm_arena::thread_stats();
    assert_eq!(after.resets, before + 1);
    assert_eq!(after.in_use_bytes, 0);
    assert!(after.high_water_bytes >= 16);
}

#[test]
fn memory_is_reused_after_reset() {
    let addr = |_: ()| mm_arena::scope(|a| a.alloc([0u8; 64]).unwrap().as_ptr() as usize);
    let first = addr(());
    let second = addr(());
    assert_eq!(
        first, second,
        "the retained chunk is bumped from the same start"
    );
}

#[test]
fn chunk_allocations_stop_after_warm_up() {
    let request = || {
        mm_arena::scope(|a| {
            for i in 0..500u32 {
                a.alloc_slice_fill_copy(20, i).unwrap();
            }
        })
    };
    for _ in 0..8 {
        request();
    }
    let warm = mm_arena::thread_stats().chunk_allocations;
    assert!(warm >= 1);
    for _ in 0..100 {
        request();
    }
    assert_eq!(mm_arena::thread_stats().chunk_allocations, warm);
    assert!(mm_arena::thread_stats().retained_bytes >= 500 * 80);
}

#[test]
fn a_panic_inside_a_scope_resets_and_leaves_the_arena_usable() {
    let before = mm_arena::thread_stats().resets;
    let caught = catch_unwind(AssertUnwindSafe(|| {
        mm_arena::scope(|a| {
            let _ = a.alloc_str("partial request").unwrap();
            mm_arena::scope(|_| panic!("handler bug"));
        })
    }));
    assert!(caught.is_err());
    assert!(!mm_arena::in_scope());
    assert_eq!(mm_arena::thread_stats().resets, before + 1);
    assert_eq!(mm_arena::thread_stats().in_use_bytes, 0);
    let s = mm_arena::scope(|a| a.alloc_str("next request").unwrap().len());
    assert_eq!(s, 12);
}

#[test]
fn a_panic_caught_inside_the_outer_scope_does_not_reset_it() {
    let before = mm_arena::thread_stats().resets;
    mm_arena::scope(|outer| {
        let kept = outer.alloc(41u32).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            mm_arena::scope(|inner| {
                inner.alloc(0u32).unwrap();
                panic!("inner failure");
            })
        }));
        assert!(r.is_err());
        assert!(mm_arena::in_scope());
        assert_eq!(mm_arena::thread_stats().resets, before);
        *kept += 1;
        assert_eq!(*kept, 42);
    });
    assert_eq!(mm_arena::thread_stats().resets, before + 1);
}

#[test]
fn limit_turns_a_runaway_request_into_a_typed_error() {
    std::thread::spawn(|| {
        mm_arena::configure_thread(&ArenaConfig::new().with_allocation_limit(Some(64 * 1024)))
            .unwrap();
        let small = mm_arena::scope(|a| a.alloc_slice_fill_copy(1000, 1u8).map(|s| s.len()));
        assert_eq!(small, Ok(1000));
        let big = mm_arena::scope(|a| a.alloc_slice_fill_copy(1 << 20, 1u8).map(|s| s.len()));
        match big {
            Err(ArenaError::LimitExceeded {
                requested, limit, ..
            }) => {
                assert_eq!(requested, 1 << 20);
                assert_eq!(limit, 64 * 1024);
            }
            other => panic!("expected LimitExceeded, got {other:?}"),
        }
        // Overflowing sizes are refused before touching the allocator.
        let huge = mm_arena::scope(|a| a.alloc_slice_fill_copy(usize::MAX / 2, 0u64).map(|_| ()));
        assert!(matches!(huge, Err(ArenaError::SizeOverflow { .. })));
        assert!(mm_arena::thread_stats().retained_bytes <= 64 * 1024);
    })
    .join()
    .unwrap();
}

#[test]
fn bad_configuration_is_refused() {
    let zero = ArenaConfig::new().with_allocation_limit(Some(0));
    assert_eq!(
        mm_arena::configure_thread(&zero),
        Err(ArenaError::ZeroLimit)
    );
    let inverted = ArenaConfig::new()
        .with_initial_capacity(1 << 20)
        .with_allocation_limit(Some(4096));
    assert!(matches!(
        inverted.validate(),
        Err(ArenaError::LimitExceeded { .. })
    ));
    let inside = mm_arena::scope(|_| mm_arena::configure_thread(&ArenaConfig::new()));
    assert_eq!(inside, Err(ArenaError::InsideScope));
    assert_eq!(
        mm_arena::scope(|_| mm_arena::trim_thread()),
        Err(ArenaError::InsideScope)
    );
}

#[test]
fn global_stats_see_other_threads() {
    // Under Miri (which writes each byte in the interpreter) a smaller slice.
    let len = if cfg!(miri) { 30_000 } else { 300_000 };
    let before = mm_arena::global_stats();
    std::thread::spawn(move || {
        mm_arena::scope(|a| {
            a.alloc_slice_fill_copy(len, 0u8).unwrap();
        })
    })
    .join()
    .unwrap();
    let after = mm_arena::global_stats();
    assert!(after.resets > before.resets);
    assert!(after.high_water_bytes >= len as u64);
    assert!(after.chunk_allocations > before.chunk_allocations);
}

#[test]
fn scope_works_from_a_thread_local_destructor() {
    struct UsesArenaOnDrop;
    impl Drop for UsesArenaOnDrop {
        fn drop(&mut self) {
            let n = mm_arena::scope(|a| *a.alloc(5u8).unwrap());
            assert_eq!(n, 5);
        }
    }
    thread_local! { static LATE: UsesArenaOnDrop = const { UsesArenaOnDrop }; }
    std::thread::spawn(|| {
        // Touch the arena first so its destructor may run before LATE's.
        mm_arena::scope(|a| {
            a.alloc(1u8).unwrap();
        });
        LATE.with(|_| {});
    })
    .join()
    .unwrap();
}

#[test]
fn arena_collections_grow_in_the_arena_and_respect_its_limit() {
    let words = mm_arena::scope(|arena| {
        let mut v = arena.vec::<&str>();
        v.extend("a bb ccc".split(' '));
        let mut s = arena.string_with_capacity(8).expect("8 bytes fit");
        s.push_str("joined:");
        for w in &v {
            s.push_str(w);
        }
        assert!(arena.consumed_bytes() >= 8);
        s.len()
    });
    assert_eq!(words, "joined:abbccc".len());
    let refused =
        mm_arena::RequestArena::new(mm_arena::ArenaConfig::new().with_allocation_limit(Some(4096)))
            .map(|request| {
                let arena = request.arena();
                (
                    arena
                        .vec_with_capacity::<u64>(1 << 20)
                        .map(|v| v.capacity()),
                    arena.string_with_capacity(1 << 20).map(|s| s.capacity()),
                    arena
                        .vec_with_capacity::<u64>(usize::MAX)
                        .map(|v| v.capacity()),
                )
            })
            .expect("a 4 KiB limit is valid");
    assert!(
        matches!(refused.0, Err(ArenaError::LimitExceeded { .. })),
        "{refused:?}"
    );
    assert!(
        matches!(refused.1, Err(ArenaError::LimitExceeded { .. })),
        "{refused:?}"
    );
    assert!(
        matches!(refused.2, Err(ArenaError::SizeOverflow { .. })),
        "{refused:?}"
    );
}
