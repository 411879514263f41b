//! Behaviour of `Interner` and `FrozenInterner` across threads, limits and freezing.

use std::collections::HashSet;

use mm_intern::{InternError, Interner, InternerConfig, Symbol};

#[test]
fn equal_text_gives_equal_symbols_and_resolves_back() {
    let interner = Interner::new();
    let words = ["alpha", "beta", "", "gamma", "alpha", "ünïcödé", "", "beta"];
    let syms: Vec<Symbol> = words.iter().map(|w| interner.get_or_intern(w)).collect();
    assert_eq!(syms[0], syms[4]);
    assert_eq!(syms[1], syms[7]);
    assert_eq!(syms[2], syms[6]);
    assert_eq!(interner.len(), 5);
    let distinct: HashSet<Symbol> = syms.iter().copied().collect();
    assert_eq!(distinct.len(), 5);
    for (w, s) in words.iter().zip(&syms) {
        assert_eq!(interner.resolve(*s), *w);
        assert_eq!(interner.get(w), Some(*s));
    }
}

#[test]
fn get_never_stores_and_is_not_counted() {
    let interner = Interner::new();
    assert_eq!(interner.get("missing"), None);
    assert!(interner.is_empty());
    interner.get_or_intern("here");
    assert_eq!(interner.get("missing"), None);
    let stats = interner.stats();
    assert_eq!(
        (stats.strings, stats.calls, stats.requested_bytes),
        (1, 1, 4)
    );
}

#[test]
fn stats_count_every_call_and_each_unique_string_once() {
    let interner = Interner::with_config(InternerConfig::default().shards(4)).unwrap();
    for _ in 0..3 {
        interner.get_or_intern("abc");
        interner.get_or_intern("de");
    }
    let stats = interner.stats();
    assert_eq!(stats.calls, 6);
    assert_eq!(stats.requested_bytes, 15);
    assert_eq!(stats.string_bytes, 5);
    assert_eq!(stats.strings, 2);
    assert!(stats.arena_bytes >= 5);
    assert_eq!(stats.saved_bytes(), 15 - stats.held_bytes() as i64);
}

#[test]
fn resolved_strings_stay_valid_while_other_threads_intern() {
    let interner = Interner::with_config(InternerConfig::default().shards(1)).unwrap();
    let first = interner.get_or_intern("first-string");
    let held: &str = interner.resolve(first);
    let ptr = held.as_ptr();
    std::thread::scope(|s| {
        for t in 0..2 {
            let interner = &interner;
            s.spawn(move || {
                for i in 0..20_000 {
                    interner.get_or_intern(&format!("{t}-{i}"));
                }
            });
        }
        // Read it over and over while the one shard grows underneath.
        for _ in 0..10_000 {
            assert_eq!(held, "first-string");
        }
    });
    assert_eq!(held, "first-string");
    assert_eq!(interner.resolve(first).as_ptr(), ptr);
    assert_eq!(interner.len(), 40_001);
}

#[test]
fn concurrent_interning_of_overlapping_sets_agrees_on_symbols() {
    let interner = Interner::with_config(InternerConfig::default().shards(2)).unwrap();
    let words: Vec<String> = (0..5_000).map(|i| format!("w{i}")).collect();
    let per_thread: Vec<Vec<Symbol>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (interner, words) = (&interner, &words);
                s.spawn(move || {
                    // Each thread walks the words in a different order (multipliers coprime to 5000).
                    let mut syms = vec![None; words.len()];
                    for k in 0..words.len() {
                        let i = (k * [1, 3, 7, 9][t] + t * 997) % words.len();
                        syms[i] = Some(interner.get_or_intern(&words[i]));
                    }
                    syms.into_iter().map(Option::unwrap).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(per_thread.iter().all(|s| s == &per_thread[0]));
    assert_eq!(interner.len(), words.len());
    let stats = interner.stats();
    assert_eq!(stats.calls, 4 * words.len() as u64);
    for (w, s) in words.iter().zip(&per_thread[0]) {
        assert_eq!(interner.resolve(*s), w);
    }
}

#[test]
fn max_strings_gives_a_typed_error_and_stores_nothing_more() {
    let interner = Interner::with_config(InternerConfig::default().max_strings(3)).unwrap();
    for w in ["a", "b", "c"] {
        interner.try_get_or_intern(w).unwrap();
    }
    assert_eq!(
        interner.try_get_or_intern("d"),
        Err(InternError::TooManyStrings { limit: 3 })
    );
    // Known strings still resolve to their symbols at the limit.
    assert!(interner.try_get_or_intern("a").is_ok());
    assert_eq!(interner.len(), 3);
    assert_eq!(interner.stats().calls, 4);
}

#[test]
fn max_bytes_gives_a_typed_error_with_the_figures() {
    let interner = Interner::with_config(InternerConfig::default().max_bytes(10)).unwrap();
    interner.try_get_or_intern("123456").unwrap();
    assert_eq!(
        interner.try_get_or_intern("12345"),
        Err(InternError::TooManyBytes {
            len: 5,
            stored: 6,
            limit: 10
        })
    );
    interner.try_get_or_intern("1234").unwrap();
    assert_eq!(interner.stats().string_bytes, 10);
    let err = interner.try_get_or_intern("x").unwrap_err();
    assert!(err.to_string().contains("max_bytes"), "{err}");
}

#[test]
fn limits_hold_exactly_under_concurrency() {
    // Under Miri (which interprets every instruction) a tenth: the race is the same.
    let limit: u64 = if cfg!(miri) { 100 } else { 1_000 };
    let per_thread = limit * 6 / 10;
    let interner = Interner::with_config(
        InternerConfig::default()
            .max_strings(limit)
            .max_bytes(1 << 20),
    )
    .unwrap();
    let accepted: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let interner = &interner;
                s.spawn(move || {
                    (0..per_thread)
                        .filter(|i| interner.try_get_or_intern(&format!("{t}:{i}")).is_ok())
                        .count() as u64
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(accepted, limit);
    assert_eq!(interner.len() as u64, limit);
}

#[test]
#[should_panic(expected = "unique strings")]
fn get_or_intern_panics_with_the_limit_message() {
    let interner = Interner::with_config(InternerConfig::default().max_strings(0)).unwrap();
    interner.get_or_intern("x");
}

#[test]
fn invalid_shard_counts_are_rejected() {
    for bad in [0, 3, 512] {
        assert_eq!(
            Interner::with_config(InternerConfig::default().shards(bad)).err(),
            Some(InternError::InvalidShardCount(bad))
        );
    }
    for good in [1, 2, 256] {
        assert_eq!(
            Interner::with_config(InternerConfig::default().shards(good))
                .unwrap()
                .shards(),
            good
        );
    }
}

#[test]
fn foreign_symbols_are_none_not_ub() {
    let big = Interner::new();
    let syms: Vec<Symbol> = (0..100)
        .map(|i| big.get_or_intern(&i.to_string()))
        .collect();
    let small = Interner::new();
    small.get_or_intern("only");
    let unknown = syms
        .iter()
        .filter(|s| small.try_resolve(**s).is_none())
        .count();
    assert!(unknown >= 90, "{unknown}");
    let frozen = small.freeze();
    assert!(
        syms.iter()
            .filter(|s| frozen.try_resolve(**s).is_none())
            .count()
            >= 90
    );
}

#[test]
fn freeze_keeps_every_symbol_and_lookup() {
    let interner = Interner::new();
    let words: Vec<String> = (0..10_000).map(|i| format!("token{i}")).collect();
    let syms: Vec<Symbol> = words.iter().map(|w| interner.get_or_intern(w)).collect();
    let before = interner.stats();
    let frozen = interner.freeze();
    let after = frozen.stats();
    assert_eq!(frozen.len(), words.len());
    assert_eq!(after.strings, before.strings);
    assert_eq!(after.requested_bytes, before.requested_bytes);
    assert!(after.held_bytes() < before.held_bytes());
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (frozen, words, syms) = (&frozen, &words, &syms);
            s.spawn(move || {
                for (w, sym) in words.iter().zip(syms) {
                    assert_eq!(frozen.get(w), Some(*sym));
                    assert_eq!(frozen.resolve(*sym), w);
                }
            });
        }
    });
    assert_eq!(frozen.get("not there"), None);
}

#[test]
fn long_strings_are_stored_whole() {
    let interner = Interner::new();
    let long = "ab".repeat(50_000);
    let sym = interner.get_or_intern(&long);
    assert_eq!(interner.get_or_intern(&long), sym);
    assert_eq!(interner.resolve(sym), long);
    let stats = interner.stats();
    assert_eq!(stats.string_bytes, 100_000);
    assert!(stats.arena_bytes >= 100_000);
}

#[test]
fn interning_a_resolved_substring_works() {
    let interner = Interner::with_config(InternerConfig::default().shards(1)).unwrap();
    let s = interner.resolve(interner.get_or_intern("hello world"));
    let sub = interner.get_or_intern(&s[6..]);
    assert_eq!(interner.resolve(sub), "world");
    assert_eq!(s, "hello world");
}

#[test]
fn batch_interning_matches_per_call_interning() {
    // Under Miri a fifth of the words, with the same share of repeats.
    let (n, distinct) = if cfg!(miri) { (200, 60) } else { (1_000, 300) };
    let words: Vec<String> = (0..n).map(|i| format!("w{}", i % distinct)).collect();
    let per_call = Interner::with_config(InternerConfig::default().shards(8)).unwrap();
    let expected: Vec<&str> = words.iter().map(String::as_str).collect();
    let batched = Interner::with_config(InternerConfig::default().shards(8)).unwrap();
    let mut out = vec![batched.get_or_intern("already-there")];
    batched.try_intern_batch(&words, &mut out).unwrap();
    assert_eq!(out.len(), 1 + words.len());
    for (w, s) in expected.iter().zip(&out[1..]) {
        assert_eq!(batched.resolve(*s), *w);
        assert_eq!(batched.get(w), Some(*s));
        per_call.get_or_intern(w);
    }
    let (a, b) = (per_call.stats(), batched.stats());
    assert_eq!((a.strings + 1, a.calls + 1), (b.strings, b.calls));
    assert_eq!(a.requested_bytes + 13, b.requested_bytes);
}

#[test]
fn batch_error_leaves_output_unchanged() {
    let interner = Interner::with_config(InternerConfig::default().max_strings(500)).unwrap();
    let words: Vec<String> = (0..600).map(|i| format!("w{i}")).collect();
    let mut out = Vec::new();
    assert_eq!(
        interner.try_intern_batch(&words, &mut out),
        Err(InternError::TooManyStrings { limit: 500 })
    );
    assert!(out.is_empty());
    assert_eq!(interner.len(), 500);
    // Within the limit it goes through.
    interner.try_intern_batch(&words[..10], &mut out).unwrap();
    assert_eq!(out.len(), 10);
}

#[test]
fn interners_are_send_and_sync() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Interner>();
    shared::<mm_intern::FrozenInterner>();
    shared::<Symbol>();
    shared::<InternError>();
}

#[test]
fn freeze_keeps_empty_long_and_unicode_strings() {
    let interner = Interner::with_config(InternerConfig::default().shards(2)).unwrap();
    let long = "é".repeat(40_000);
    let mid = "m".repeat(2_000);
    let words = ["", "a", long.as_str(), "日本語", mid.as_str(), ""];
    let syms: Vec<Symbol> = words.iter().map(|w| interner.get_or_intern(w)).collect();
    assert_eq!(syms[0], syms[5]);
    let frozen = interner.freeze();
    assert_eq!(frozen.len(), 5);
    for (w, sym) in words.iter().zip(&syms) {
        assert_eq!(frozen.resolve(*sym), *w);
        assert_eq!(frozen.get(w), Some(*sym));
    }
    let stats = frozen.stats();
    assert_eq!(stats.string_bytes, (1 + long.len() + 9 + mid.len()) as u64);
    // One 8-byte length in front of the string of 64 KiB or more.
    assert_eq!(stats.arena_bytes, stats.string_bytes + 8);
    assert_eq!(frozen.get("b"), None);
}

#[test]
fn symbols_of_one_shard_are_consecutive() {
    let interner = Interner::with_config(InternerConfig::default().shards(1)).unwrap();
    let raw: Vec<u32> = (0..600)
        .map(|i| interner.get_or_intern(&i.to_string()).to_u32())
        .collect();
    assert!(raw.windows(2).all(|w| w[1] == w[0] + 1), "{raw:?}");
    let empty = Interner::new().freeze();
    assert!(empty.is_empty());
    assert_eq!(empty.try_resolve(interner.get_or_intern("0")), None);
}

/// The exclusive path stores the same strings under the same symbols as the shared one
/// (one shard, so symbols depend on the insertion order only), mixes freely with it, and
/// counts every call and byte exactly, through table growth, span segment claims, long
/// and empty strings.
#[test]
fn exclusive_interning_matches_shared_interning() {
    let one = || Interner::with_config(InternerConfig::default().shards(1)).unwrap();
    // Under Miri fewer, still past one span segment (256 strings) and several rebuilds.
    let n = if cfg!(miri) { 600 } else { 3000 };
    let words: Vec<String> = (0..n)
        .map(|i| match i % 5 {
            0 => String::new(),
            1 => format!("a fairly long word number {}", i % 700),
            _ => format!("w{}", i % 1100),
        })
        .collect();
    let shared = one();
    let shared_syms: Vec<Symbol> = words.iter().map(|w| shared.get_or_intern(w)).collect();
    let mut mixed = one();
    let mixed_syms: Vec<Symbol> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i % 3 == 0 {
                mixed.get_or_intern(w)
            } else {
                mixed.get_or_intern_mut(w)
            }
        })
        .collect();
    assert_eq!(shared_syms, mixed_syms);
    assert_eq!(shared.len(), mixed.len());
    for (w, sym) in words.iter().zip(&mixed_syms) {
        assert_eq!(mixed.get(w), Some(*sym));
        assert_eq!(mixed.resolve(*sym), w);
    }
    let (a, b) = (shared.stats(), mixed.stats());
    assert_eq!((a.calls, a.requested_bytes), (b.calls, b.requested_bytes));
    assert_eq!(
        (a.string_bytes, a.held_bytes()),
        (b.string_bytes, b.held_bytes())
    );
    let total: usize = words.iter().map(String::len).sum();
    assert_eq!(b.requested_bytes, total as u64);
    // Shared again after the exclusive phase: other threads see every string.
    let mixed = mixed;
    std::thread::scope(|s| {
        s.spawn(|| {
            for (w, sym) in words.iter().zip(&mixed_syms) {
                assert_eq!(mixed.get_or_intern(w), *sym);
            }
        });
    });
    assert_eq!(mixed.stats().calls, 2 * words.len() as u64);
}

#[test]
fn exclusive_interning_keeps_the_limits() {
    let mut interner =
        Interner::with_config(InternerConfig::default().max_strings(2).max_bytes(100)).unwrap();
    interner.try_get_or_intern_mut("a").unwrap();
    interner.try_get_or_intern_mut("b").unwrap();
    assert_eq!(
        interner.try_get_or_intern_mut("c"),
        Err(InternError::TooManyStrings { limit: 2 })
    );
    assert!(interner.try_get_or_intern_mut("a").is_ok());
    assert_eq!(interner.len(), 2);
    assert_eq!(interner.stats().calls, 3);
    let mut bytes = Interner::with_config(InternerConfig::default().max_bytes(4)).unwrap();
    bytes.get_or_intern_mut("abc");
    assert_eq!(
        bytes.try_get_or_intern_mut("de"),
        Err(InternError::TooManyBytes {
            len: 2,
            stored: 3,
            limit: 4
        })
    );
    assert_eq!(bytes.get("de"), None);
    // The refused reservation was given back: one byte still fits.
    assert!(bytes.try_get_or_intern_mut("f").is_ok());
}

#[test]
#[should_panic(expected = "get_or_intern_mut")]
fn get_or_intern_mut_panics_with_the_limit_message() {
    let mut interner = Interner::with_config(InternerConfig::default().max_strings(0)).unwrap();
    interner.get_or_intern_mut("x");
}
