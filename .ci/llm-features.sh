#!/usr/bin/env bash
# mm-llm's optional exact token counter (feature `exact-tokens`, OpenAI BPE vocabularies
# shipped inside the bpe-openai crate) and the GGUF model's own tokenizer (feature
# `gguf-tokens`, mm-tokenizer): the default `cargo test --workspace` does not build it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo clippy -p mm-llm --all-targets --features exact-tokens -- -D warnings
cargo test -p mm-llm --features exact-tokens
cargo clippy -p mm-llm --all-targets --features gguf-tokens -- -D warnings
cargo test -p mm-llm --features gguf-tokens --lib
# The model's chat template (feature `chat-template`, minijinja), alone and with the GGUF
# tokenizer (the exact template fit). The real-template comparison runs in tok-ref, where
# llama.cpp's templates are fetched.
cargo clippy -p mm-llm --all-targets --features chat-template,gguf-tokens -- -D warnings
cargo test -p mm-llm --features chat-template
cargo test -p mm-llm --features chat-template,gguf-tokens --test template_fit
