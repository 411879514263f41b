#!/usr/bin/env bash
# Runs the GGUF and SSE parser fuzz targets, each for a bounded time (default 60 s; FUZZ_SECONDS to
# change) from the committed seed corpus of malformed files. Needs a nightly toolchain;
# installs cargo-fuzz from crates.io when it is missing. A crash fails the stage and leaves
# the input in fuzz/artifacts/gguf_parse/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_BUDGET="${FUZZ_SECONDS:-60}"
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo +nightly install cargo-fuzz --locked
fi
# New inputs go to a scratch directory so the committed corpus only changes on purpose.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in gguf_parse sse_parse; do
    mkdir -p "$work/$target" "corpus/$target"
    cargo +nightly fuzz run "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_BUDGET" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1
done
