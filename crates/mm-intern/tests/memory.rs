//! Memory measured with `mm-track` as the global allocator: the interner's own accounting
//! against live-byte deltas, the saving against owned `String`s on an English-like token
//! stream, and bytes per unique string against lasso and string-interner.
//!
//! Every figure is the calling thread's net allocation inside an `mm_track::count` scope, so
//! tests running in parallel do not disturb each other. Run with `--nocapture` to see them.

mod common;

use mm_intern::{Interner, InternerConfig, Symbol};
use mm_track::TrackedAlloc;

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

/// The stream the memory target is measured on: 200k tokens over a 30k-word vocabulary.
fn stream() -> Vec<String> {
    common::corpus::token_stream(200_000, 30_000, 0x5EED)
}

fn net<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let (r, stats) = mm_track::count(f);
    let net = stats.net_bytes();
    assert!(net >= 0, "scope freed more than it allocated: {stats:?}");
    (r, net as u64)
}

#[test]
fn held_bytes_match_live_byte_deltas_exactly() {
    assert!(
        mm_track::is_active(),
        "TrackedAlloc must be the global allocator"
    );
    let tokens = stream();
    for shards in [1, 16] {
        let config = InternerConfig::default().shards(shards);
        let (interner, built) = net(|| {
            let interner = Interner::with_config(config).unwrap();
            for t in &tokens {
                interner.get_or_intern(t);
            }
            interner
        });
        let stats = interner.stats();
        assert_eq!(stats.held_bytes(), built, "shards {shards}: {stats:?}");
        assert_eq!(
            stats.requested_bytes,
            tokens.iter().map(|t| t.len() as u64).sum::<u64>()
        );
        assert_eq!(stats.calls, tokens.len() as u64);

        // Lookups and resolves allocate nothing.
        let ((), lookups) = mm_track::count(|| {
            for t in tokens.iter().take(1000) {
                let sym = interner.get(t).unwrap();
                assert_eq!(interner.resolve(sym), t);
            }
        });
        assert!(lookups.is_empty(), "{lookups:?}");

        // Freezing gives capacity back; the frozen stats follow the live bytes too.
        let before = stats.held_bytes() as i64;
        let (frozen, freeze) = mm_track::count(|| interner.freeze());
        let after = frozen.stats();
        assert_eq!(after.held_bytes() as i64, before + freeze.net_bytes());
        assert!(after.held_bytes() < stats.held_bytes(), "{after:?}");
        assert_eq!(after.arena_bytes, after.string_bytes);

        // Dropping gives back exactly what was held.
        let ((), dropped) = mm_track::count(|| drop(frozen));
        assert_eq!(dropped.net_bytes(), -(after.held_bytes() as i64));
    }
}

#[test]
fn token_stream_takes_at_least_half_less_memory_than_owned_strings() {
    assert!(
        mm_track::is_active(),
        "TrackedAlloc must be the global allocator"
    );
    let tokens = stream();
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();

    // What a tokenizer's caller keeps without interning: one owned String per token.
    let (owned, owned_bytes) = net(|| refs.iter().map(|t| t.to_string()).collect::<Vec<_>>());
    let payload: u64 = refs.iter().map(|t| t.len() as u64).sum();
    assert_eq!(
        owned_bytes,
        payload + (owned.len() * size_of::<String>()) as u64
    );

    // With interning: one Symbol per token plus the interner.
    let ((interner, symbols), interned_bytes) = net(|| {
        let interner = Interner::new();
        let symbols: Vec<Symbol> = refs.iter().map(|t| interner.get_or_intern(t)).collect();
        (interner, symbols)
    });
    let stats = interner.stats();
    let unique = stats.strings;
    println!(
        "tokens {} unique {unique} | owned Vec<String> {owned_bytes} B (payload {payload} B) \
         | interned Vec<Symbol>+interner {interned_bytes} B (interner {} B) \
         | saving {:.1}% whole, {:.1}% payload; saved_bytes {}",
        refs.len(),
        stats.held_bytes(),
        100.0 * (1.0 - interned_bytes as f64 / owned_bytes as f64),
        100.0 * (1.0 - stats.held_bytes() as f64 / payload as f64),
        stats.saved_bytes(),
    );
    // The stream must be realistic enough to mean something: many distinct words.
    assert!(unique > 5_000, "only {unique} distinct tokens");
    assert!(
        interned_bytes * 2 <= owned_bytes,
        "whole: {interned_bytes} vs {owned_bytes}"
    );
    // Against the payload alone (no String headers) the saving is smaller; it must at least
    // be a saving, and freezing (which gives back spare capacity) must make it bigger.
    assert!(
        stats.held_bytes() < payload,
        "payload: {stats:?} vs {payload}"
    );
    let frozen = interner.freeze();
    let frozen_held = frozen.stats().held_bytes();
    println!(
        "frozen interner {frozen_held} B: saving {:.1}% of payload",
        100.0 * (1.0 - frozen_held as f64 / payload as f64)
    );
    assert!(frozen_held < stats.held_bytes());
    assert_eq!(
        stats.saved_bytes(),
        payload as i64 - stats.held_bytes() as i64
    );
    for (t, s) in refs.iter().zip(&symbols).step_by(97) {
        assert_eq!(frozen.resolve(*s), *t);
    }
}

/// Per unique 26-byte string, net bytes held by each interner for 100k of them.
#[test]
fn bytes_per_unique_string_against_lasso_and_string_interner() {
    assert!(
        mm_track::is_active(),
        "TrackedAlloc must be the global allocator"
    );
    const N: usize = 100_000;
    let words: Vec<String> = (0..N)
        .map(|i| format!("interned-token-no-{i:08}"))
        .collect();
    assert!(words.iter().all(|w| w.len() == 26));
    let per = |bytes: u64| bytes as f64 / N as f64;

    let (ours, ours_bytes) = net(|| {
        let i = Interner::new();
        words.iter().for_each(|w| {
            i.get_or_intern(w);
        });
        i
    });
    let (_ours1, ours1_bytes) = net(|| {
        let i = Interner::with_config(InternerConfig::default().shards(1)).unwrap();
        words.iter().for_each(|w| {
            i.get_or_intern(w);
        });
        i
    });
    let (_frozen, freeze) = mm_track::count(|| ours.freeze());
    let frozen_bytes = (ours_bytes as i64 + freeze.net_bytes()) as u64;
    let (_rodeo, rodeo_bytes) = net(|| {
        let mut r = lasso::Rodeo::default();
        words.iter().for_each(|w| {
            r.get_or_intern(w);
        });
        r
    });
    let (_threaded, threaded_bytes) = net(|| {
        let r = lasso::ThreadedRodeo::default();
        words.iter().for_each(|w| {
            r.get_or_intern(w);
        });
        r
    });
    let (_si, si_bytes) = net(|| {
        let mut r = string_interner::DefaultStringInterner::default();
        words.iter().for_each(|w| {
            r.get_or_intern(w);
        });
        r
    });
    println!(
        "bytes per unique 26-byte string: mm-intern 16 shards {:.1}, 1 shard {:.1}, \
         frozen {:.1} | lasso Rodeo {:.1}, ThreadedRodeo {:.1} | string-interner {:.1} \
         | owned String {}",
        per(ours_bytes),
        per(ours1_bytes),
        per(frozen_bytes),
        per(rodeo_bytes),
        per(threaded_bytes),
        per(si_bytes),
        26 + size_of::<String>(),
    );
    assert!(
        ours_bytes < rodeo_bytes,
        "{ours_bytes} vs Rodeo {rodeo_bytes}"
    );
    assert!(
        ours_bytes < threaded_bytes,
        "{ours_bytes} vs ThreadedRodeo {threaded_bytes}"
    );
    assert!(
        ours_bytes < si_bytes,
        "{ours_bytes} vs string-interner {si_bytes}"
    );
    assert!(frozen_bytes < ours_bytes);
}
