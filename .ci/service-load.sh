#!/usr/bin/env bash
# Load stage for examples/llm-service: the release service and the upstream stub on
# loopback, driven by wrk (Debian's package) for MM_LOAD_SECONDS (default 10) per route and
# round; the same routes built without this project (`--baseline`) in the same run for the
# ratio; then the pressure story (a burst beyond a low MM_MAX_MEMORY_MB gets 503s, the
# process survives, and it serves again after). Prints one table; fails when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
need=()
for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
MODEL="${MM_GGUF_TEST_MODEL:-$(bash .ci/python.sh | tail -n 1)}"
NAME=$(basename "$MODEL" .gguf)
DUR="${MM_LOAD_SECONDS:-10}"
cargo build --release --locked -q -p llm-service
# The real-model test of the service, which `cargo test --workspace` skips without the model.
MM_GGUF_TEST_MODEL="$MODEL" MM_GGUF_REQUIRE_REFERENCE=1 \
    cargo test --release --locked -q -p llm-service --test process
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "service-load: FAIL: $*" >&2; exit 1; }

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

cat > "$WORK/embeddings.lua" <<'LUA'
local model = os.getenv("MODEL")
local texts = {}
for i = 1, 64 do
  texts[i] = "request " .. i .. ": the memory manager keeps a service inside its budget"
end
local bodies = {}
for i, t in ipairs(texts) do
  bodies[i] = '{"model":"' .. model .. '","input":"' .. t .. '"}'
end
local n = 0
request = function()
  n = n % #bodies + 1
  return wrk.format("POST", "/v1/embeddings", {["Content-Type"] = "application/json"}, bodies[n])
end
LUA
cat > "$WORK/chat.lua" <<'LUA'
local model = os.getenv("MODEL")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"' .. model .. '","stream":true,"messages":[' ..
  '{"role":"system","content":"You answer in one sentence."},' ..
  '{"role":"user","content":"What is a GGUF file?"},' ..
  '{"role":"assistant","content":"A single file with a model and its metadata."},' ..
  '{"role":"user","content":"And why map it instead of reading it?"}]}'
LUA

STUB_PORT=18390
"$BIN/llm-stub" --addr "127.0.0.1:$STUB_PORT" --pace-ms 0 2>"$WORK/stub.log" &
PIDS+=($!)

wait_up() {
    for _ in $(seq 1 200); do
        curl -sf "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "nothing answers on port $1"
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
live_heap() { curl -sf "http://127.0.0.1:$1/memory" | json 'd["allocator"]["live_bytes"]'; }
allocs() { curl -sf "http://127.0.0.1:$1/debug/allocs" | json "d['$2']['requests'], d['$2']['allocs']"; }

ROWS=()
# run MODE PORT ROUTE ROUND: one wrk run, one table row.
run() {
    local mode=$1 port=$2 route=$3 round=$4 path
    case $route in embeddings) path=/v1/embeddings ;; chat) path=/v1/chat/completions ;; esac
    read -r r0 a0 < <(allocs "$port" "$route")
    MODEL="$NAME" wrk -t2 -c32 -d"${DUR}s" --latency -s "$WORK/$route.lua" \
        "http://127.0.0.1:$port$path" > "$WORK/wrk.txt" 2>&1 || fail "wrk: $(cat "$WORK/wrk.txt")"
    read -r r1 a1 < <(allocs "$port" "$route")
    local rps p50 p99 bad
    rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk.txt")
    p50=$(awk '$1 == "50%" {print $2}' "$WORK/wrk.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.txt")
    bad=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.txt")
    [ -z "$bad" ] || fail "$mode $route: $bad non-2xx responses under normal load"
    local per
    per=$(python3 -c "r=$r1-$r0; print(f'{($a1-$a0)/r:.2f}' if r else 'n/a')")
    local heap
    heap=$(live_heap "$port")
    ROWS+=("$(printf '%-9s %-11s %5s %10s %9s %9s %12s %14s' "$mode" "$route" "$round" "$rps" "$p50" "$p99" "$per" "$heap")")
    eval "LAST_${mode}_${route}_${round}=\"$rps $per $heap\""
}

# serve MODE PORT [flags]: starts the service, warms both routes, runs 2 rounds per route.
serve() {
    local mode=$1 port=$2; shift 2
    MM_MAX_MEMORY_MB=1024 "$BIN/llm-service" --model "$MODEL" --addr "127.0.0.1:$port" \
        --upstream "http://127.0.0.1:$STUB_PORT" "$@" 2>"$WORK/$mode.log" &
    local pid=$!
    PIDS+=($pid)
    wait_up "$port"
    local rss0
    rss0=$(rss_kib "$pid")
    for route in embeddings chat; do
        local path=/v1/embeddings
        [ "$route" = chat ] && path=/v1/chat/completions
        MODEL="$NAME" wrk -t2 -c32 -d2s -s "$WORK/$route.lua" "http://127.0.0.1:$port$path" >/dev/null
    done
    for round in 1 2; do
        for route in embeddings chat; do run "$mode" "$port" "$route" "$round"; done
    done
    local rss1
    rss1=$(rss_kib "$pid")
    RSS+=("$(printf '%-9s RSS before %7d KiB, after %7d KiB' "$mode" "$rss0" "$rss1")")
    kill -TERM "$pid"
    wait "$pid" || fail "$mode: exit status $? after SIGTERM"
}

RSS=()
serve managed 18391
serve baseline 18392 --baseline

echo "::: llm-service load: $DUR s per route and round, wrk -t2 -c32, model $NAME :::"
printf '%-9s %-11s %5s %10s %9s %9s %12s %14s\n' mode route round "req/s" p50 p99 "allocs/req" "live heap B"
printf '%s\n' "${ROWS[@]}"
printf '%s\n' "${RSS[@]}"
for route in embeddings chat; do
    python3 - "$route" "$(eval echo "\$LAST_managed_${route}_2")" "$(eval echo "\$LAST_baseline_${route}_2")" <<'PY'
import sys
route, m, b = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
print(f"{route}: managed/baseline req/s {float(m[0]) / float(b[0]):.2f}x, allocs/req {m[1]} vs {b[1]}")
PY
done

# Checks: live heap flat across rounds and no allocation per warm embeddings request.
python3 - "$LAST_managed_embeddings_1" "$LAST_managed_embeddings_2" "$LAST_managed_chat_1" "$LAST_managed_chat_2" <<'PY' || fail "managed checks"
import sys
e1, e2, c1, c2 = (a.split() for a in sys.argv[1:])
ok = True
for name, a, b in (("embeddings", e1, e2), ("chat", c1, c2)):
    h1, h2 = int(a[2]), int(b[2])
    flat = h2 <= h1 * 1.05 + (1 << 20)
    print(f"live heap {name}: round 1 {h1} B, round 2 {h2} B: {'flat' if flat else 'GREW'}")
    ok &= flat
zero = e2[1] == "0.00"
print(f"allocations per warm embeddings request (round 2): {e2[1]}: {'PASS' if zero else 'FAIL'}")
ok &= zero
sys.exit(0 if ok else 1)
PY

# The pressure story: 48 MiB, 4 MiB per stream, streams of 1.75 s; a burst of 64
# connections must get 503s; the process must live; afterwards both routes answer 200.
PRESS_STUB=18393
"$BIN/llm-stub" --addr "127.0.0.1:$PRESS_STUB" --pace-ms 50 2>>"$WORK/stub.log" &
PIDS+=($!)
CG=""
if [ -w /sys/fs/cgroup/cgroup.subtree_control ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    grep -qw memory /sys/fs/cgroup/cgroup.subtree_control || echo +memory > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
    CG=/sys/fs/cgroup/mm-service-load-$$
    if mkdir "$CG" 2>/dev/null && echo $((512 << 20)) > "$CG/memory.max" 2>/dev/null; then
        :
    else
        rmdir "$CG" 2>/dev/null || true
        CG=""
    fi
fi
MM_MAX_MEMORY_MB=48 "$BIN/llm-service" --model "$MODEL" --addr 127.0.0.1:18394 \
    --upstream "http://127.0.0.1:$PRESS_STUB" --stream-reserve-kib 4096 2>"$WORK/pressure.log" &
PPID_SVC=$!
PIDS+=($PPID_SVC)
if [ -n "$CG" ]; then
    echo "$PPID_SVC" > "$CG/cgroup.procs" || CG=""
fi
wait_up 18394
MODEL="$NAME" wrk -t2 -c64 -d5s -s "$WORK/chat.lua" "http://127.0.0.1:18394/v1/chat/completions" > "$WORK/burst.txt" 2>&1 || true
refused=$(awk '/Non-2xx/ {print $NF}' "$WORK/burst.txt")
served=$(awk '/requests in/ {print $1}' "$WORK/burst.txt")
kill -0 "$PPID_SVC" 2>/dev/null || fail "pressure: the service died during the burst"
sleep 2
after_chat=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
    -d "{\"model\":\"$NAME\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" \
    http://127.0.0.1:18394/v1/chat/completions)
after_embed=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
    -d "{\"model\":\"$NAME\",\"input\":\"after the burst\"}" http://127.0.0.1:18394/v1/embeddings)
health=$(curl -sf http://127.0.0.1:18394/healthz)
oom="n/a (no cgroup v2 memory controller to use)"
if [ -n "$CG" ]; then
    oom="$(awk '/^oom_kill / {print $2}' "$CG/memory.events") OOM kills in a cgroup of 512 MiB"
fi
echo "::: pressure: MM_MAX_MEMORY_MB=48, 4 MiB per stream, burst wrk -c64 -d5s :::"
echo "burst: ${served:-0} requests, ${refused:-0} refused with 503; service alive; after: chat $after_chat, embeddings $after_embed; $oom"
echo "health after: $health"
[ "${refused:-0}" -gt 0 ] || fail "pressure: no 503 during the burst"
[ "$after_chat" = 200 ] && [ "$after_embed" = 200 ] || fail "pressure: not recovered (chat $after_chat, embeddings $after_embed)"
kill -TERM "$PPID_SVC"; wait "$PPID_SVC" || fail "pressure: exit status after SIGTERM"
if [ -n "$CG" ]; then rmdir "$CG" 2>/dev/null || true; fi
echo "service-load: PASS"
