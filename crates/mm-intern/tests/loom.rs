//! Loom models of the interner: shard locking, limit accounting, lock-free lookups and
//! resolves racing inserts (span directory growth and in-place table rebuilds), and the
//! per-thread call counters.
//!
//! Under `cfg(loom)` the crate uses two-span segments, one usable segment in the span
//! table's inline directory (the next ones go through its overflow directory, which starts
//! with one entry) and one string per table group before growing, so that two or three
//! strings already cross every growth path of the real code.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p mm-intern --test loom`
#![cfg(loom)]

use loom::{sync::Arc, thread};
use mm_intern::{InternError, Interner, InternerConfig};

fn interner(config: InternerConfig) -> Arc<Interner> {
    Arc::new(Interner::with_config(config).unwrap())
}

/// Two threads interning the same new string in every interleaving get one symbol, and the
/// string is stored once: the lock-free miss is confirmed under the shard lock.
#[test]
fn racing_inserts_of_one_string_store_it_once() {
    loom::model(|| {
        let i = interner(InternerConfig::default().shards(2));
        let other = {
            let i = i.clone();
            thread::spawn(move || i.get_or_intern("token"))
        };
        let mine = i.get_or_intern("token");
        assert_eq!(other.join().unwrap(), mine);
        assert_eq!(i.len(), 1);
        assert_eq!(i.stats().calls, 2);
        assert_eq!(i.resolve(mine), "token");
    });
}

/// True if `b` lands in `a`'s shard of a 2-shard interner (the hasher is fixed under loom,
/// so this is the same in every execution): a shard's first strings take consecutive
/// symbols from its own span segment, so in a fresh interner `b` gets the symbol after
/// `a`'s exactly when it is in `a`'s shard.
fn same_shard(a: &str, b: &str) -> bool {
    let probe = Interner::with_config(InternerConfig::default().shards(2)).unwrap();
    let a = probe.get_or_intern(a).to_u32();
    probe.get_or_intern(b).to_u32() == a + 1
}

/// Two strings that land in different shards of a 2-shard interner.
fn strings_in_two_shards() -> (String, String) {
    let first = "left".to_string();
    let second = (0..)
        .map(|n| format!("right{n}"))
        .find(|s| !same_shard(&first, s))
        .unwrap();
    (first, second)
}

/// With room for one string, exactly one of two threads interning different strings wins,
/// in every interleaving, and the loser gets the typed error: the limit's reservation is
/// never over-committed and a refused string leaves nothing behind. Run with the two
/// strings in one shard (one lock) and in two shards (two locks, only the atomic
/// reservation between them).
#[test]
fn string_limit_admits_exactly_one_of_two_racers() {
    for shards in [1, 2] {
        loom::model(move || {
            let (left, right) = strings_in_two_shards();
            let i = interner(InternerConfig::default().shards(shards).max_strings(1));
            let other = {
                let i = i.clone();
                thread::spawn(move || i.try_get_or_intern(&left))
            };
            let mine = i.try_get_or_intern(&right);
            let theirs = other.join().unwrap();
            assert_eq!(mine.is_ok() as u8 + theirs.is_ok() as u8, 1);
            for r in [mine, theirs] {
                if let Err(e) = r {
                    assert_eq!(e, InternError::TooManyStrings { limit: 1 });
                }
            }
            assert_eq!(i.len(), 1);
        });
    }
}

/// A `&str` resolved before another thread inserts into the same shard still reads the
/// original text afterwards, and the new string resolves too: an insert never moves or
/// rewrites stored bytes.
#[test]
fn resolved_text_survives_a_concurrent_insert() {
    loom::model(|| {
        let i = interner(InternerConfig::default().shards(1));
        let first = i.get_or_intern("first");
        let writer = {
            let i = i.clone();
            thread::spawn(move || i.get_or_intern("second"))
        };
        let text = i.resolve(first);
        let second = writer.join().unwrap();
        assert_eq!(text, "first");
        assert_eq!(i.resolve(second), "second");
        assert_eq!(i.get("first"), Some(first));
    });
}

/// While a writer adds two strings to a one-shard interner (each grows the span directory
/// and rebuilds the index table in place), a reader's lock-free `get` of an already
/// published string always finds it (a hidden entry is confirmed under the lock, never
/// reported missing), its `resolve` reads the right text, and a string the writer publishes
/// is either not found yet or found with a symbol that resolves to its own text.
#[test]
fn lock_free_reads_see_published_strings_through_table_rebuilds() {
    loom::model(|| {
        let i = interner(InternerConfig::default().shards(1));
        // Symbols of a one-shard interner are consecutive: a second one filled in the same order
        // gives the symbols the writer's strings will get, so the reader can try to resolve
        // them before any synchronisation with the writer (only the published count guards
        // that read).
        let probe = Interner::with_config(InternerConfig::default().shards(1)).unwrap();
        let future: Vec<_> = ["a", "bb", "ccc"].map(|s| probe.get_or_intern(s)).into();
        let a = i.get_or_intern("a");
        let writer = {
            let i = i.clone();
            thread::spawn(move || (i.get_or_intern("bb"), i.get_or_intern("ccc")))
        };
        assert_eq!(i.get("a"), Some(a));
        assert_eq!(i.resolve(a), "a");
        for (sym, text) in future.iter().zip(["a", "bb", "ccc"]) {
            if let Some(seen) = i.try_resolve(*sym) {
                assert_eq!(seen, text);
            }
        }
        if let Some(b) = i.get("bb") {
            assert_eq!(i.resolve(b), "bb");
        }
        let (b, c) = writer.join().unwrap();
        assert_eq!(i.get("bb"), Some(b));
        assert_eq!(i.get("ccc"), Some(c));
        assert_eq!(i.resolve(c), "ccc");
        assert_eq!(i.len(), 3);
    });
}

/// Two writers in two shards claim span segments at the same time: the one inline
/// segment, the overflow directory as it is made, and again as it grows (the first one
/// retired), while a reader looks the strings up and resolves every symbol they may get,
/// before any synchronisation with the writers: each lookup finds nothing or the right
/// symbol, each symbol resolves to nothing or to one of the writers' strings, never to
/// garbage; after the joins every string resolves and is found.
#[test]
fn segment_claims_race_through_the_overflow_directory() {
    // The strings, and symbols covering every value they may get, found once (in a
    // one-thread model: the interner's atomics need one) so that the searches do not count
    // against the model's branches.
    let found = std::sync::Arc::new(std::sync::Mutex::new(None));
    let out = found.clone();
    let mut search = loom::model::Builder::new();
    search.max_branches = 1 << 20;
    search.check(move || {
        let mut mates = (0..)
            .map(|n| format!("s{n}"))
            .filter(|s| same_shard("s", s));
        let mine = [
            "s".to_string(),
            mates.next().unwrap(),
            mates.next().unwrap(),
        ];
        let theirs = (0..)
            .map(|n| format!("t{n}"))
            .find(|t| !same_shard("s", t))
            .unwrap();
        let probe = Interner::with_config(InternerConfig::default().shards(1)).unwrap();
        let symbols: Vec<_> = (0..6)
            .map(|n| probe.get_or_intern(&n.to_string()))
            .collect();
        *out.lock().unwrap() = Some((mine, theirs, symbols));
    });
    let (mine, theirs, symbols) = found.lock().unwrap().take().unwrap();
    loom::model(move || {
        let i = interner(InternerConfig::default().shards(2));
        let a = {
            let (i, mine) = (i.clone(), mine.clone());
            thread::spawn(move || mine.map(|s| i.get_or_intern(&s)))
        };
        let b = {
            let (i, theirs) = (i.clone(), theirs.clone());
            thread::spawn(move || i.get_or_intern(&theirs))
        };
        let all: Vec<&str> = mine.iter().chain([&theirs]).map(String::as_str).collect();
        for sym in &symbols {
            if let Some(seen) = i.try_resolve(*sym) {
                assert!(all.contains(&seen), "{seen:?}");
            }
        }
        if let Some(sym) = i.get(&theirs) {
            assert_eq!(i.resolve(sym), theirs);
        }
        let (mine_syms, their_sym) = (a.join().unwrap(), b.join().unwrap());
        for (s, sym) in mine.iter().zip(mine_syms).chain([(&theirs, their_sym)]) {
            assert_eq!(i.resolve(sym), s);
            assert_eq!(i.get(s), Some(sym));
        }
        assert_eq!(i.len(), 4);
    });
}

/// Calls from two threads, each counted on its own per-thread slot with a plain load and
/// store, add up exactly once both are joined; a third thread that starts after the first
/// exited may reuse its slot and still adds up.
#[test]
fn call_counts_are_exact_across_threads_and_slot_reuse() {
    loom::model(|| {
        let i = interner(InternerConfig::default().shards(1));
        let spawn = |i: &Arc<Interner>, s: &'static str| {
            let i = i.clone();
            thread::spawn(move || {
                i.get_or_intern(s);
            })
        };
        let first = spawn(&i, "x");
        i.get_or_intern("yy");
        first.join().unwrap();
        spawn(&i, "x").join().unwrap();
        let stats = i.stats();
        assert_eq!(stats.calls, 3);
        assert_eq!(stats.requested_bytes, 1 + 2 + 1);
        assert_eq!(stats.strings, 2);
    });
}
