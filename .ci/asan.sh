#!/usr/bin/env bash
# The test suite and a small mm-stress run under AddressSanitizer + LeakSanitizer (nightly).
#
# - The explicit --target keeps proc-macro crates (built for the host) out of the sanitizer.
# - The system allocator is kept: the sanitizer cannot see inside mimalloc, so the bench crate
#   (the only user of mimalloc) is left out.
# - Tests that measure RSS or page residency skip themselves when MM_UNDER_SANITIZER is set,
#   since the sanitizer's shadow memory and quarantine change those figures.
# - Own target directory (CARGO_TARGET_DIR_ASAN, default target/asan): the flag rebuilds every
#   dependency.
# - Doctests are not run here (they need the host toolchain layout); `cargo test` covers them.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component add rust-src --toolchain nightly >/dev/null 2>&1 || true
target=x86_64-unknown-linux-gnu
export RUSTFLAGS="-Zsanitizer=address ${RUSTFLAGS_ASAN_EXTRA:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_ASAN:-target/asan}"
# -O1 as the sanitizer documentation advises: the debug build at -O0 runs the heavier tests
# several times slower under the sanitizer. Debug assertions stay on; line tables suffice for
# the reports and keep link times down.
export CARGO_PROFILE_DEV_OPT_LEVEL=1
export CARGO_PROFILE_DEV_DEBUG=line-tables-only
# Third-party crates and mm-cli (rmcp's and clap's generated code) at -O0: they are still
# instrumented, and building them at -O1 took 140 s more of this stage than the tests lose
# in running slower (about 13 s: at -O0 and -O1, rustc reuses the instances of generic code,
# such as slice iterators, that a dependency already built, so the workspace's -O1 code
# calls some -O0 functions).
profile=(--config 'profile.dev.package."*".opt-level=0' --config 'profile.dev.package.mm-cli.opt-level=0')
export CARGO_INCREMENTAL=0
# detect_leaks turns LeakSanitizer on (the default on x86_64 Linux, set here to be explicit);
# a leak or an invalid access fails the test binary with a non-zero exit.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1${ASAN_OPTIONS_EXTRA:+:$ASAN_OPTIONS_EXTRA}"
export MM_UNDER_SANITIZER=1
# llm-service (the reference service) is left out: its only unsafe code is the map contract of
# `ModelSlot::register`, and every crate under it runs here; its axum/hyper/reqwest stack under
# the sanitizer cost minutes of the CI budget (`.ci/service-load.sh` runs it for real).
packages=(${ASAN_PACKAGES:---workspace --exclude mm-benches --exclude llm-service})
cargo +nightly test --target "$target" "${packages[@]}" "${profile[@]}" --no-fail-fast --lib --tests --bins
# The main job, small: no leak, no invalid access across the whole stack. The binary is the
# one the tests above built (mm-stress's CLI test runs it); `cargo run -p mm-stress` would
# resolve features for that one package and rebuild part of the tree.
if [ -z "${ASAN_PACKAGES:-}" ]; then
    "$CARGO_TARGET_DIR/$target/debug/mm-stress" ${MM_STRESS_ASAN_ARGS:---quick}
fi
