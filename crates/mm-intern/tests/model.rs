//! Property test: the interner against a plain `HashMap` model, for arbitrary strings
//! (empty, multibyte, long enough for dedicated chunks) and shard counts.

use std::collections::HashMap;

use mm_intern::{Interner, InternerConfig, Symbol};
use proptest::prelude::*;

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-d]{0,3}",
        2 => "\\PC{0,12}",
        1 => (1000usize..1100).prop_map(|n| "é".repeat(n / 2)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn behaves_like_a_map_from_text_to_symbol(
        words in prop::collection::vec(any_string(), 0..300),
        shard_bits in 0u32..5,
    ) {
        let interner =
            Interner::with_config(InternerConfig::default().shards(1 << shard_bits)).unwrap();
        let mut model: HashMap<String, Symbol> = HashMap::new();
        for w in &words {
            prop_assert_eq!(interner.get(w), model.get(w).copied());
            let sym = interner.get_or_intern(w);
            if let Some(&known) = model.get(w) {
                prop_assert_eq!(sym, known);
            } else {
                // A new string never reuses another string's symbol.
                prop_assert!(!model.values().any(|&s| s == sym));
                model.insert(w.clone(), sym);
            }
        }
        for (w, &sym) in &model {
            prop_assert_eq!(interner.resolve(sym), w.as_str());
        }
        let stats = interner.stats();
        prop_assert_eq!(stats.strings, model.len() as u64);
        prop_assert_eq!(stats.calls, words.len() as u64);
        prop_assert_eq!(stats.requested_bytes, words.iter().map(|w| w.len() as u64).sum::<u64>());
        prop_assert_eq!(stats.string_bytes, model.keys().map(|w| w.len() as u64).sum::<u64>());
        prop_assert!(stats.arena_bytes >= stats.string_bytes);

        let frozen = interner.freeze();
        for (w, &sym) in &model {
            prop_assert_eq!(frozen.get(w), Some(sym));
            prop_assert_eq!(frozen.resolve(sym), w.as_str());
        }
        prop_assert_eq!(frozen.stats().arena_bytes, stats.string_bytes);
    }
}
