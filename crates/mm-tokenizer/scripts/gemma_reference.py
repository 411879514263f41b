#!/usr/bin/env python3
"""Reference token ids for the Gemma 3 corpus, from `sentencepiece` with a model built
from the GGUF file's own pieces, scores and token types.

usage: gemma_reference.py MODEL.gguf corpus.json out.json

The GGUF vocabulary has no SentencePiece model file, so one is assembled: BPE, byte
fallback, identity normalization with `▁` for spaces and the dummy prefix as the file's
`tokenizer.ggml.add_space_prefix` says. The encoding is plain (no BOS/EOS, control
tokens written in the text stay text), as `Tokenizer::encode(text, EncodeOptions::new())`.
"""
import json
import sys

import gguf
from sentencepiece import SentencePieceProcessor
from sentencepiece import sentencepiece_model_pb2 as pb


def field(r, key):
    f = r.fields.get(key)
    return None if f is None else f.contents()


def build_model(path):
    r = gguf.GGUFReader(path)
    tokens = field(r, "tokenizer.ggml.tokens")
    scores = field(r, "tokenizer.ggml.scores")
    types = field(r, "tokenizer.ggml.token_type")
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.vocab_size = len(tokens)
    for key, attr in [("unknown", "unk_id"), ("bos", "bos_id"), ("eos", "eos_id"), ("padding", "pad_id")]:
        v = field(r, f"tokenizer.ggml.{key}_token_id")
        setattr(m.trainer_spec, attr, -1 if v is None else int(v))
    add_prefix = field(r, "tokenizer.ggml.add_space_prefix")
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = True if add_prefix is None else bool(add_prefix)
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    for text, score, ty in zip(tokens, scores, types):
        p = m.pieces.add()
        p.piece = text
        p.score = float(score)
        # GGUF token types use SentencePiece's numbering (1 normal ... 6 byte).
        p.type = int(ty) if 1 <= int(ty) <= 6 else 1
    sp = SentencePieceProcessor()
    sp.LoadFromSerializedProto(m.SerializeToString())
    return sp


def main():
    model, corpus, out = sys.argv[1:4]
    sp = build_model(model)
    cases = json.load(open(corpus, encoding="utf-8"))
    ref = {c["name"]: sp.encode(c["text"]) for c in cases}
    with open(out, "w", encoding="utf-8") as f:
        # One case per line, so a change reads as a one-line diff.
        lines = [f"{json.dumps(k)}: {json.dumps(ref[k])}" for k in sorted(ref)]
        f.write("{\n" + ",\n".join(lines) + "\n}\n")


if __name__ == "__main__":
    main()
