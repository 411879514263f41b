#!/usr/bin/env python3
"""Prints a Markdown table of every criterion result under target/criterion (or the
directories given): per group and parameter, each function's median time, its ratio to
the fastest member of the same group (so a ratio is always read from one run) and the day
the group was measured.

With `--merge FILE`, the rows of the generated block in FILE (a Markdown file with
`generated-table` markers) are kept for every group the criterion directories do not hold,
so rerunning some benches updates their groups and leaves the others as they were."""
import datetime
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

HEADER = ("| group | parameter | function | median | vs fastest | measured |\n"
          "|---|---|---|---:|---:|---|")


def fmt_ns(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def measured(roots):
    """(group, parameter) -> (day, [(function, median ns)]) from criterion's files."""
    groups = defaultdict(list)
    days = {}
    for bench in sorted(b for root in roots for b in root.glob("**/new/benchmark.json")):
        meta = json.loads(bench.read_text())
        estimates = bench.parent / "estimates.json"
        est = json.loads(estimates.read_text())
        key = (meta["group_id"], meta.get("value_str") or "")
        groups[key].append((meta.get("function_id") or meta["group_id"], est["median"]["point_estimate"]))
        day = datetime.datetime.fromtimestamp(estimates.stat().st_mtime, datetime.timezone.utc).date()
        days[key] = max(days.get(key, day), day)
    return {key: (days[key].isoformat(), rows) for key, rows in groups.items()}


def kept_rows(path: Path, fresh_groups):
    """Rows of the existing generated block whose group was not measured again."""
    text = path.read_text()
    block = re.search(r"<!-- generated-table:start -->(.*?)<!-- generated-table:end -->", text, re.S)
    rows = []
    if not block:
        return rows
    for line in block.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or cells[0] == "group" or cells[0].startswith("---"):
            continue
        if cells[0] in fresh_groups:
            continue
        if len(cells) == 5:
            cells.append("")
        rows.append(cells[:6])
    return rows


def main() -> int:
    args = sys.argv[1:]
    merge = None
    if len(args) >= 2 and args[0] == "--merge":
        merge, args = Path(args[1]), args[2:]
    roots = [Path(a) for a in args] or [Path("target/criterion")]
    groups = measured(roots)
    if not groups and merge is None:
        print(f"no criterion results under {roots}", file=sys.stderr)
        return 1
    rows = []
    for (group, param), (day, results) in groups.items():
        fastest = min(t for _, t in results)
        for name, t in sorted(results, key=lambda r: r[1]):
            rows.append([group, param, name, fmt_ns(t), f"{t / fastest:.2f}x", day])
    if merge is not None:
        rows += kept_rows(merge, {group for group, _ in groups})
    # By group and parameter; within a group the rows keep their order (fastest first).
    rows.sort(key=lambda r: (r[0], r[1]))
    print(HEADER)
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
