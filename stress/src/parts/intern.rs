//! mm-intern through the facade: the heap a token stream costs as interned symbols (the
//! manager's interner plus one 4-byte `Symbol` per token) against the same stream kept as
//! owned `String`s (24 bytes per token plus the text), both measured with `mm_track::count`
//! on this thread.

use memory_manager::{MemoryConfig, MemoryManager, Symbol};

use super::mb;
use crate::Options;
use crate::check::{Check, Report, fmt_num};
use crate::workload::{Rng, vocabulary};

const PART: &str = "mm-intern";

/// Runs the interner check.
pub fn run(opts: &Options, report: &mut Report) {
    let (tokens, distinct) = if opts.quick {
        (100_000, 2_000)
    } else {
        (400_000, 8_000)
    };
    let vocab = vocabulary(distinct, 7);
    let mut rng = Rng::new(99);
    let stream: Vec<&str> = (0..tokens)
        .map(|_| vocab[rng.skewed(vocab.len())].as_str())
        .collect();
    let _ = mm_track::count(|| ());

    let (owned, owned_stats) = mm_track::count(|| {
        let mut v: Vec<String> = Vec::with_capacity(stream.len());
        v.extend(stream.iter().map(|t| (*t).to_owned()));
        v
    });
    let manager = match MemoryManager::new(MemoryConfig::default().with_max_memory(1 << 30)) {
        Ok(m) => m,
        Err(e) => {
            report.push(
                Check::holds(PART, "interner: manager builds", false, "yes").detail(e.to_string()),
            );
            return;
        }
    };
    let (symbols, interned_stats) = mm_track::count(|| {
        let interner = manager.interner();
        let mut v: Vec<Symbol> = Vec::with_capacity(stream.len());
        v.extend(stream.iter().map(|t| interner.get_or_intern(t)));
        v
    });
    // The symbols resolve to the very tokens, so the comparison is of equal content.
    let same = symbols.len() == owned.len()
        && symbols
            .iter()
            .zip(&owned)
            .all(|(s, o)| manager.interner().resolve(*s) == o.as_str());
    let owned_bytes = owned_stats.net_bytes() as f64;
    let interned_bytes = interned_stats.net_bytes() as f64;
    let savings = (1.0 - interned_bytes / owned_bytes.max(1.0)) * 100.0;
    let stats = manager.interner().stats();
    report.push(
        Check::at_least(
            PART,
            "interned tokens save heap vs owned Strings",
            (savings * 100.0).round() / 100.0,
            "%",
            50.0,
        )
        .detail(format!(
            "{} tokens, {} distinct: owned {}, interned {} (interner {} strings, {} held; its own saved-bytes figure {})",
            fmt_num(tokens as f64),
            fmt_num(stats.strings as f64),
            mb(owned_bytes),
            mb(interned_bytes),
            stats.strings,
            mb(stats.held_bytes() as f64),
            mb(stats.saved_bytes() as f64)
        ))
        .require(same, "a symbol did not resolve to its token")
        .require(mm_track::is_active(), "the tracker is not the global allocator"),
    );
}
