#!/usr/bin/env bash
# Runs mm-tokenizer against llama.cpp's own tokenizer test vectors: fetches the
# llama-cpp-python 0.3.36 source archive from PyPI into target/ with pip, unpacks the
# vocabularies and test vectors, and runs the
# tests with MM_TOKENIZER_VOCABS set. Fails if the vectors are missing. Also checks the
# chat templates of the same archive against Python jinja2 (mm-llm, feature chat-template).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${CARGO_TARGET_DIR:-$PWD/target}/llama-cpp-sdist"
MODELS="$DIR/llama_cpp_python-0.3.36/vendor/llama.cpp/models"
if [ ! -s "$MODELS/ggml-vocab-llama-spm.gguf.out" ]; then
    mkdir -p "$DIR"
    if [ ! -s "$DIR/llama_cpp_python-0.3.36.tar.gz" ]; then
        # pip downloads the archive and prepares its metadata (seconds: the build backend
        # and cmake come as wheels; `--no-binary :all:` would build cmake from source for
        # that); nothing is built or installed.
        python3 -m pip download --quiet --disable-pip-version-check --no-deps \
            --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$DIR" >&2
    fi
    tar -xzf "$DIR/llama_cpp_python-0.3.36.tar.gz" -C "$DIR" \
        llama_cpp_python-0.3.36/vendor/llama.cpp/models
fi
[ -s "$MODELS/ggml-vocab-llama-spm.gguf.out" ] || { echo "tokenizer-reference: vectors missing" >&2; exit 1; }
export MM_TOKENIZER_VOCABS="$MODELS" MM_TOKENIZER_REQUIRE_REFERENCE=1
cargo test --release --locked -p mm-tokenizer --test llama_cpp_vectors -- --nocapture

# Gemma 3 against sentencepiece: regenerate the committed reference ids from the real model
# and compare, then run the test that checks our ids (and the listed disagreements).
MM_GGUF_TEST_MODEL="$(bash .ci/python.sh | tail -n 1)"
PY="$PWD/.venv/bin/python"
"$PY" -c 'import sentencepiece, google.protobuf' 2>/dev/null ||
    "$PY" -m pip install --quiet --disable-pip-version-check 'sentencepiece==0.2.*' protobuf >&2
FIX=crates/mm-tokenizer/tests/fixtures/gemma3
OUT="${CARGO_TARGET_DIR:-$PWD/target}/gemma3-sentencepiece-ids.json"
"$PY" crates/mm-tokenizer/scripts/gemma_reference.py "$MM_GGUF_TEST_MODEL" "$FIX/corpus.json" "$OUT"
diff -u "$FIX/sentencepiece_ids.json" "$OUT" || { echo "tokenizer-reference: regenerated sentencepiece ids differ from the committed ones" >&2; exit 1; }
export MM_GGUF_TEST_MODEL
cargo test --release --locked -p mm-tokenizer --test gemma3 --test alloc -- --nocapture

# Chat templates: llama.cpp's 70 real templates rendered by Python's jinja2 in Hugging Face's
# environment on the committed conversations; regenerate, compare with the committed
# renderings, then check minijinja's renderings against them (and the exact template fit
# on Gemma 3).
"$PY" -c 'import jinja2' 2>/dev/null ||
    "$PY" -m pip install --quiet --disable-pip-version-check 'jinja2==3.1.*' >&2
CT=crates/mm-llm/tests/fixtures/chat_templates
CT_OUT="${CARGO_TARGET_DIR:-$PWD/target}/jinja2_renderings.json"
"$PY" crates/mm-llm/scripts/chat_template_reference.py "$MODELS/templates" "$CT/conversations.json" "$CT_OUT"
diff -u "$CT/jinja2_renderings.json" "$CT_OUT" || { echo "tokenizer-reference: regenerated jinja2 renderings differ from the committed ones" >&2; exit 1; }
cargo test --release --locked -p mm-llm --features chat-template,gguf-tokens \
    --test chat_templates --test template_fit -- --nocapture
