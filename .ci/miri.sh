#!/usr/bin/env bash
# Miri over the tests of the crates that contain `unsafe`: mm-track, mm-intern, mm-pool,
# mm-arena, mm-mmap (its non-file parts: Miri cannot map files) and mm-gguf (parsing and the
# scalar kernels; the AVX2 kernels need their own build: .ci/miri-dequant-avx2.sh).
#
# Miri interprets every instruction, roughly 100-1000x slower than native code, so the stage
# runs a chosen set of test targets and leaves out, by name, the tests listed below: heavy
# loops (tens of thousands of allocations, many threads), tests that map files, and tests
# that measure memory. docs/hardening.md lists every exclusion with its reason. Budget: about
# 10 minutes on 2 cores. Run one crate alone with MIRI_ONLY=<package>.
#
# -Zmiri-disable-isolation: proptest reads the clock and environment, and some tests read
# /proc; MM_UNDER_SANITIZER=1 makes tests that measure RSS or page residency skip themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component add miri rust-src --toolchain nightly
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_MIRI:-target/miri}"
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
export MM_UNDER_SANITIZER=1
export CARGO_INCREMENTAL=0
cargo +nightly miri setup

# package | test targets | tests left out (substring filters, passed as --skip)
plan=(
    "mm-track | --lib --test scopes --test inactive |
        live_bytes_return_to_baseline_after_threads_exit
        calls_fold_before_a_batch_is_held"
    "mm-intern | --lib --test interner --test lasso_issue_48 |
        chunks_grow_geometrically_up_to_the_cap
        resolved_bytes_do_not_move_while_the_store_grows
        concurrent_interning_of_overlapping_sets_agrees_on_symbols
        freeze_keeps_every_symbol_and_lookup
        resolved_strings_stay_valid_while_other_threads_intern
        interner_memory_does_not_depend_on_thread_count"
    "mm-pool | --test buffer_pool --test object_pool |
        steady_state_reuse_is_above_95_percent
        bound_holds_with_more_threads_than_places"
    "mm-arena | --test request_arena --test scope --test trim --test zero_alloc |
        chunk_allocations_stop_after_warm_up
        ten_thousand_requests_make_zero_heap_allocations_after_warm_up"
    "mm-mmap | --lib | "
    "mm-gguf | --lib --test dequant_kernels --test dequant_fixtures |
        fast_equals_scalar_on_random_blocks
        chunked_walk_matches_gguf_py
        output_len_agrees_with_fixtures
        scalar_and_fast_match_gguf_py"
)

for entry in "${plan[@]}"; do
    IFS='|' read -r pkg targets skips <<<"$(tr '\n' ' ' <<<"$entry")"
    pkg=$(xargs <<<"$pkg")
    if [ -n "${MIRI_ONLY:-}" ] && [ "$pkg" != "$MIRI_ONLY" ]; then continue; fi
    skip_args=()
    for s in $skips; do skip_args+=(--skip "$s"); done
    echo "miri: $pkg ($(wc -w <<<"$skips") test(s) left out)"
    # shellcheck disable=SC2086
    # --report-time prints each test's duration, to spot a test that grew too heavy.
    cargo +nightly miri test -p "$pkg" $targets -- -Zunstable-options --report-time \
        "${skip_args[@]}"
done

