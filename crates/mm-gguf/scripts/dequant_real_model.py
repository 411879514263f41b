#!/usr/bin/env python3
"""Digest gguf-py's dequantization of every tensor of a GGUF model, for
tests/dequant_real_model.rs.

For each tensor, `gguf.quants.dequantize` (gguf-py 0.19) decodes the raw data to float32
and this prints one line:

    NAME TYPE N_VALUES H1 H2

with, over the float32 bit patterns b[i] (as unsigned 64-bit, wrapping arithmetic),
H1 = sum(b[i] * (2i + 1)) and H2 = sum(b[i] * b[i]), both mod 2^64, in hex. Changing any
single value changes H1; the Rust test computes the same sums over mm-gguf's output.

Usage: python3 scripts/dequant_real_model.py MODEL.gguf > digests.txt
Needs: gguf==0.19.0, numpy.
"""
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

# Values per digest step: bounds the temporary uint64 arrays to a few tens of MB.
STEP = 1 << 22


def digest(values: np.ndarray) -> tuple[int, int]:
    bits = np.ascontiguousarray(values, dtype=np.float32).ravel().view(np.uint32)
    h1 = np.uint64(0)
    h2 = np.uint64(0)
    with np.errstate(over="ignore"):
        for start in range(0, bits.size, STEP):
            b = bits[start:start + STEP].astype(np.uint64)
            odd = np.arange(start, start + b.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
            h1 += np.sum(b * odd, dtype=np.uint64)
            h2 += np.sum(b * b, dtype=np.uint64)
    return int(h1), int(h2)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    reader = GGUFReader(sys.argv[1])
    out = sys.stdout
    for t in reader.tensors:
        values = dequantize(np.asarray(t.data).view(np.uint8).ravel(), t.tensor_type)
        n = values.size
        if n != int(t.n_elements):
            print(f"{t.name}: {n} values, expected {t.n_elements}", file=sys.stderr)
            return 1
        h1, h2 = digest(values)
        out.write(f"{t.name} {t.tensor_type.name} {n} {h1:016x} {h2:016x}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
