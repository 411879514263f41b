#!/usr/bin/env python3
"""Prints a Markdown table of every criterion result under target/criterion (or the
directories given): per group and parameter, each function's median time and its ratio to
the fastest member of the same group, so a ratio is always read from one run."""
import json
import sys
from collections import defaultdict
from pathlib import Path


def fmt_ns(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def main() -> int:
    roots = [Path(a) for a in sys.argv[1:]] or [Path("target/criterion")]
    groups = defaultdict(list)
    for bench in sorted(b for root in roots for b in root.glob("**/new/benchmark.json")):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        key = (meta["group_id"], meta.get("value_str") or "")
        groups[key].append((meta.get("function_id") or meta["group_id"], est["median"]["point_estimate"]))
    if not groups:
        print(f"no criterion results under {roots}", file=sys.stderr)
        return 1
    print("| group | parameter | function | median | vs fastest |")
    print("|---|---|---|---:|---:|")
    for (group, param), rows in sorted(groups.items()):
        fastest = min(t for _, t in rows)
        for name, t in sorted(rows, key=lambda r: r[1]):
            print(f"| {group} | {param} | {name} | {fmt_ns(t)} | {t / fastest:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
