#!/usr/bin/env python3
"""Encoding throughput of the peers on the Gemma 3 corpus, one thread, one message at a
time: HF `tokenizers` (a BPE model with byte fallback built from the GGUF's pieces, its
merges derived from the piece scores the way HF's SentencePiece converter does) and
`sentencepiece` (the model of gemma_reference.py). Prints MB/s and how many corpus cases
each gives the same ids as sentencepiece.

usage: bench_peers.py MODEL.gguf corpus.json [seconds]
"""
import json
import sys
import time

import gguf
from tokenizers import Tokenizer, decoders, models, normalizers

from gemma_reference import build_model


def hf_tokenizer(path):
    r = gguf.GGUFReader(path)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    scores = r.fields["tokenizer.ggml.scores"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    vocab = {t: i for i, t in enumerate(tokens)}
    # A merge (a, b) for every normal piece that splits into two pieces; ranked by the
    # merged piece's score (higher first), as SentencePiece BPE merges.
    merges = []
    for i, t in enumerate(tokens):
        if types[i] != 1 or len(t) < 2:
            continue
        for k in range(1, len(t)):
            a, b = t[:k], t[k:]
            if a in vocab and b in vocab:
                merges.append((-scores[i], vocab[a], vocab[b], a, b))
    merges.sort()
    bpe = models.BPE(vocab=vocab, merges=[(a, b) for *_, a, b in merges], byte_fallback=True,
                     unk_token=tokens[3], fuse_unk=True)
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback()])
    return tok


def rate(encode, texts, seconds):
    nbytes = sum(len(t.encode()) for t in texts)
    for t in texts:
        encode(t)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for t in texts:
            encode(t)
        n += 1
    return n * nbytes / (time.perf_counter() - t0) / 1e6


def main():
    model, corpus = sys.argv[1:3]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
    texts = [c["text"] for c in json.load(open(corpus, encoding="utf-8"))]
    sp = build_model(model)
    t0 = time.perf_counter()
    hf = hf_tokenizer(model)
    print(f"hf tokenizers: built from the GGUF in {time.perf_counter() - t0:.2f} s")
    same = sum(hf.encode(t, add_special_tokens=False).ids == sp.encode(t) for t in texts)
    print(f"hf tokenizers: {same}/{len(texts)} cases equal to sentencepiece")
    print(f"hf tokenizers encode: {rate(lambda t: hf.encode(t, add_special_tokens=False), texts, seconds):.2f} MB/s")
    print(f"sentencepiece encode: {rate(sp.encode, texts, seconds):.2f} MB/s")


if __name__ == "__main__":
    main()
