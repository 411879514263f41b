#!/usr/bin/env python3
"""Writes the embedding-cache traces used by benches/benches/embedding.rs.

Each trace is a sequence of text ids (little-endian u32, one per lookup). Run from this
directory: `python3 gen.py` (deterministic: fixed seeds, Python's Mersenne Twister).

- scan.u32: 100,000 lookups. Blocks of 15,000 lookups drawn from a Zipf(1.0) popularity over
  20,000 texts, each followed by a scan of 5,000 texts never seen before and never seen again
  (a re-index, a batch job). A cache of 1,000 entries is meant to keep the popular texts
  through the scans.
- shift.u32: 100,000 lookups from a Zipf(0.9) popularity over 8,000 ranks, where the text
  behind each rank moves every 10,000 lookups (rank r is text r + 1,000 * phase), so the
  1,000 most popular texts of a phase are new and the old ones fall down the ranking.
"""
import bisect
import random
import struct


def zipf_sampler(n, s, rng):
    cum, total = [], 0.0
    for r in range(1, n + 1):
        total += 1.0 / r ** s
        cum.append(total)
    return lambda: bisect.bisect_left(cum, rng.random() * total)


def write(name, ids):
    with open(name, "wb") as f:
        f.write(struct.pack(f"<{len(ids)}I", *ids))
    print(f"{name}: {len(ids)} lookups, {len(set(ids))} distinct texts")


def scan_trace():
    rng = random.Random(14)
    draw = zipf_sampler(20_000, 1.0, rng)
    ids, fresh = [], 1_000_000
    while len(ids) < 100_000:
        ids.extend(draw() for _ in range(15_000))
        ids.extend(range(fresh, fresh + 5_000))
        fresh += 5_000
    return ids[:100_000]


def shift_trace():
    rng = random.Random(41)
    draw = zipf_sampler(8_000, 0.9, rng)
    return [draw() + 1_000 * (i // 10_000) for i in range(100_000)]


if __name__ == "__main__":
    write("scan.u32", scan_trace())
    write("shift.u32", shift_trace())
