#!/usr/bin/env bash
# Runs the criterion benches (all, or those named: `benches/regen.sh track pool`) with short
# warm-up and measurement times, then rewrites the generated table in docs/benchmarks.md
# (between the `generated-table` markers) from target/criterion: the groups just measured get
# new rows and the day they were measured, every other group keeps its rows. Ratios come
# from one run.
set -euo pipefail
cd "$(dirname "$0")/.."
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(track arena pool intern mmap gguf dequant sse embedding)
for b in "${benches[@]}"; do
    cargo bench -p mm-benches --bench "$b" -- --warm-up-time 1 --measurement-time 3
done
table="$(python3 benches/table.py --merge docs/benchmarks.md "${CARGO_TARGET_DIR:-target}/criterion")"
python3 - "$table" "benches/regen.sh ${benches[*]}" <<'PY'
import re, sys, platform, subprocess
table, command = sys.argv[1], sys.argv[2]
path = "docs/benchmarks.md"
text = open(path).read()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
cores = subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()
block = (f"<!-- generated-table:start -->\nCollected by `benches/table.py`; the last rerun: `{command}` on {cpu}, "
         f"{cores} cores, {rustc} (each group measured in one run, `--warm-up-time 1 --measurement-time 3`, "
         "on shared cores, so read ratios, not absolute times; the last column says when). "
         "`benches/regen.sh` with bench names reruns those and keeps the other groups' rows.\n\n"
         f"{table}\n<!-- generated-table:end -->")
if "<!-- generated-table:start -->" in text:
    text = re.sub(r"<!-- generated-table:start -->.*?<!-- generated-table:end -->", lambda _: block, text, flags=re.S)
else:
    text += "\n## Generated table (all benches, one run)\n\n" + block + "\n"
open(path, "w").write(text)
PY
echo "docs/benchmarks.md updated"
