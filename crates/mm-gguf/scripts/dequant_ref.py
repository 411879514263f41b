#!/usr/bin/env python3
"""Write the dequantization reference fixtures for mm-gguf's tests, using gguf-py.

For every ggml type that gguf-py 0.19's `gguf.quants.dequantize` supports, this makes raw
blocks and stores them with gguf-py's dequantized output, so `cargo test` can check our
kernels for bit-identity without Python:

* random raw blocks whose f16 scale fields are random *finite* halves (including zero,
  negative zero, subnormals and the largest half), the rest random bytes;
* for the types gguf-py can quantize (BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, TQ1_0, TQ2_0,
  MXFP4), also random floats quantized by gguf-py;
* F16: all 65,536 bit patterns (NaN payloads included); F32/BF16: random bit patterns.

The plain integer types and F64 (which gguf-py does not dequantize) get fixtures from
numpy's `astype(np.float32)`, the conversion gguf-py's readers use.

Each fixture is `<TYPE>.bin`:
    b"MMDQ", u32 type id, u32 block count, u32 bytes per block, u32 values per block,
    then the raw blocks, then the f32 values (all little-endian).
`table.txt` lists gguf-py's type table (`id name block_size type_size`) and `source.txt`
says which library produced each fixture.

Usage: python3 scripts/dequant_ref.py [OUT_DIR] [--seed N] [--check]
  OUT_DIR defaults to tests/fixtures/dequant next to this script's crate.
  --check regenerates into a temporary directory and fails if it differs from OUT_DIR
  (the fixtures are deterministic for a given seed, numpy and gguf version).
Needs: gguf==0.19.0, numpy.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import struct
import sys
import tempfile

import numpy as np
import gguf
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf import quants

# Byte offsets of the f16 scale fields in each type's block (see ggml-common.h).
F16_SCALES: dict[T, list[int]] = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ2_XXS: [0], T.IQ2_XS: [0], T.IQ2_S: [0], T.IQ3_XXS: [0], T.IQ3_S: [0],
    T.IQ1_S: [0], T.IQ4_NL: [0], T.IQ4_XS: [0], T.TQ1_0: [52], T.TQ2_0: [64],
}
# Types whose raw bytes are all meaningful as they are (no f16 scale to constrain), apart
# from IQ1_M, whose f16 scale is spread over four nibbles and is handled below.
FREE_BYTES = {T.MXFP4, T.NVFP4}
QUANTIZABLE = {T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.TQ1_0, T.TQ2_0, T.MXFP4}
NUMPY_PLAIN = {T.I8: np.int8, T.I16: np.int16, T.I32: np.int32, T.I64: np.int64, T.F64: np.float64}

SPECIAL_HALVES = [0x0000, 0x8000, 0x0001, 0x83FF, 0x7BFF, 0xFBFF, 0x3C00, 0x0400]


def finite_halves(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random finite f16 bit patterns, the first few of them special values."""
    h = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    bad = (h & 0x7C00) == 0x7C00
    h[bad] &= 0xBFFF  # clear the top exponent bit: finite
    k = min(n, len(SPECIAL_HALVES))
    h[:k] = SPECIAL_HALVES[:k]
    return h


def raw_blocks(rng: np.random.Generator, qtype: T, n_blocks: int) -> np.ndarray:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint32).astype(np.uint8)
    if qtype in F16_SCALES:
        for off in F16_SCALES[qtype]:
            h = finite_halves(rng, n_blocks)
            rng.shuffle(h)
            blocks[:, off:off + 2] = h.view(np.uint8).reshape(n_blocks, 2)
    elif qtype == T.IQ1_M:
        # The scale's four nibbles are the top nibbles of the four u16 scale words (48..56).
        h = finite_halves(rng, n_blocks)
        rng.shuffle(h)
        words = blocks[:, 48:56].copy().view(np.uint16).reshape(n_blocks, 4)
        for k in range(4):
            words[:, k] = (words[:, k] & 0x0FFF) | (((h >> (4 * k)) & 0xF) << 12)
        blocks[:, 48:56] = words.view(np.uint8).reshape(n_blocks, 8)
    elif qtype not in FREE_BYTES:
        raise ValueError(f"no scale layout for {qtype.name}")
    return blocks


def quantized_blocks(rng: np.random.Generator, qtype: T, n_blocks: int) -> np.ndarray:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    x = rng.standard_normal(size=(n_blocks, block_size)).astype(np.float32)
    x *= np.float32(10.0) ** rng.integers(-3, 3, size=(n_blocks, 1)).astype(np.float32)
    x[0, :] = 0.0  # an all-zero block exercises d == 0
    q = quants.quantize(x, qtype)
    return np.asarray(q, dtype=np.uint8).reshape(n_blocks, type_size)


def make(rng: np.random.Generator, qtype: T) -> tuple[np.ndarray, np.ndarray, str]:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    if qtype == T.F16:
        raw = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.uint8)
        return raw, quants.dequantize(raw, qtype), "gguf"
    if qtype in (T.F32, T.BF16):
        n = 4096
        raw = rng.integers(0, 256, size=n * type_size, dtype=np.uint32).astype(np.uint8)
        if qtype == T.BF16:
            finite = rng.standard_normal(size=512).astype(np.float32)
            raw = np.concatenate([raw, quants.quantize(finite, qtype).view(np.uint8).ravel()])
        return raw, quants.dequantize(raw, qtype), "gguf"
    if qtype in NUMPY_PLAIN:
        dt = np.dtype(NUMPY_PLAIN[qtype]).newbyteorder("<")
        raw = rng.integers(0, 256, size=1024 * type_size, dtype=np.uint32).astype(np.uint8)
        vals = raw.view(dt)
        if qtype == T.F64:
            # Mostly finite values across the whole f64 range, some past f32's.
            vals = (rng.standard_normal(1024) * 10.0 ** rng.integers(-60, 60, 1024)).astype(dt)
            vals[:4] = [np.inf, -np.inf, 0.0, -0.0]
            raw = vals.view(np.uint8)
        return raw, vals.astype(np.float32), "numpy"
    n_raw = 24 if block_size <= 64 else 12
    parts = [raw_blocks(rng, qtype, n_raw)]
    if qtype in QUANTIZABLE:
        parts.append(quantized_blocks(rng, qtype, 3))
    raw = np.concatenate(parts).ravel()
    return raw, quants.dequantize(raw, qtype), "gguf"


def supported(qtype: T) -> bool:
    return qtype in (T.F32, T.F16) or qtype in quants._type_traits or qtype in NUMPY_PLAIN


def write_all(out_dir: str, seed: int) -> None:
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(os.path.join(out_dir, "table.txt"), "w") as f:
        f.write(f"# gguf-py {gguf.__version__ if hasattr(gguf, '__version__') else '0.19.0'}: id name block_size type_size\n")
        for t in T:
            bs, ts = GGML_QUANT_SIZES[t]
            f.write(f"{t.value} {t.name} {bs} {ts}\n")
    sources = []
    for t in T:
        if not supported(t):
            continue
        raw, out, source = make(rng, t)
        block_size, type_size = GGML_QUANT_SIZES[t]
        raw = np.ascontiguousarray(raw, dtype=np.uint8).ravel()
        out = np.ascontiguousarray(out, dtype=np.float32).ravel()
        n_blocks = raw.size // type_size
        assert raw.size == n_blocks * type_size and out.size == n_blocks * block_size, t.name
        with open(os.path.join(out_dir, f"{t.name}.bin"), "wb") as f:
            f.write(b"MMDQ" + struct.pack("<4I", t.value, n_blocks, type_size, block_size))
            f.write(raw.tobytes())
            f.write(out.astype("<f4").tobytes())
        sources.append(f"{t.name} {source} {n_blocks}")
    with open(os.path.join(out_dir, "source.txt"), "w") as f:
        f.write(f"# type  library  blocks   (seed {seed}, numpy {np.__version__})\n")
        f.write("\n".join(sources) + "\n")


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", default=os.path.join(here, "..", "tests", "fixtures", "dequant"))
    ap.add_argument("--seed", type=int, default=20260601)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if not args.check:
        write_all(args.out_dir, args.seed)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        write_all(tmp, args.seed)
        names = sorted(n for n in os.listdir(tmp) if n.endswith(".bin"))
        _, mismatch, errors = filecmp.cmpfiles(args.out_dir, tmp, names, shallow=False)
        if mismatch or errors:
            print(f"fixtures differ from gguf-py's output: {mismatch + errors}", file=sys.stderr)
            return 1
    print(f"{len(names)} fixtures match gguf-py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
