//! Instruction-count probe for the interner against string-interner, for cachegrind (the
//! benches' wall-clock figures move with machine load; instruction counts do not):
//!
//! ```text
//! cargo build --release -p mm-intern --example probe
//! for w in none si-fill mm-fill si-get mm-get si-resolve mm-resolve; do
//!   valgrind --tool=cachegrind --cache-sim=no target/release/examples/probe $w 2>&1 | grep 'I *refs'
//! done
//! ```
//!
//! Every workload builds the bench's 100k-token stream first (`none` does only that);
//! `*-fill` interns it into 5 fresh interners, `*-get` and `*-resolve` fill once and then
//! look up or resolve every token 5 times. Subtract `none` (and for get/resolve one fill)
//! and divide by 500,000 for instructions per call.

#[path = "../tests/common/corpus.rs"]
mod corpus;

use std::hint::black_box;

type Si = string_interner::DefaultStringInterner;

fn main() {
    let Some(which) = std::env::args().nth(1) else {
        eprintln!("usage: probe none|si-fill|mm-fill|si-get|mm-get|si-resolve|mm-resolve");
        std::process::exit(2);
    };
    let tokens = corpus::token_stream(100_000, 30_000, 0x5EED);
    let si = || {
        let mut r = Si::default();
        let syms: Vec<_> = tokens.iter().map(|t| r.get_or_intern(t)).collect();
        (r, syms)
    };
    let mm = || {
        let r = mm_intern::Interner::new();
        let syms: Vec<_> = tokens.iter().map(|t| r.get_or_intern(t)).collect();
        (r, syms)
    };
    for _ in 0..5 {
        match which.as_str() {
            "none" => {}
            "si-fill" => drop(black_box(si())),
            "mm-fill" => drop(black_box(mm())),
            _ => break,
        }
    }
    match which.as_str() {
        "si-get" | "si-resolve" => {
            let (r, syms) = si();
            for _ in 0..5 {
                if which == "si-get" {
                    tokens.iter().for_each(|t| {
                        black_box(r.get(t));
                    });
                } else {
                    syms.iter().for_each(|s| {
                        black_box(r.resolve(*s));
                    });
                }
            }
        }
        "mm-get" | "mm-resolve" => {
            let (r, syms) = mm();
            for _ in 0..5 {
                if which == "mm-get" {
                    tokens.iter().for_each(|t| {
                        black_box(r.get(t));
                    });
                } else {
                    syms.iter().for_each(|s| {
                        black_box(r.resolve(*s));
                    });
                }
            }
        }
        _ => {}
    }
    black_box(&tokens);
}
