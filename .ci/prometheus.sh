#!/usr/bin/env bash
# The report as metrics consumers see it. First the `metrics` facade bridge (a feature the
# workspace test stage leaves off), then the report as Prometheus sees it: `promtool check metrics` lints the exposition, then a real
# Prometheus server (Debian's `prometheus` package) scrapes examples/metrics_endpoint on
# loopback every second, and its HTTP API must return the budget's used bytes and a counter's
# rate(). Everything runs under target/prometheus-ci, bounded in time; both processes are
# killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in prometheus:prometheus promtool:prometheus curl:curl jq:jq; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
prometheus --version 2>&1 | head -n 1

cargo clippy --locked -q -p memory-manager --features metrics --lib --tests -- -D warnings
cargo test --locked -q -p memory-manager --features metrics --test metrics_bridge

TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
WORK="$TARGET/prometheus-ci"
rm -rf "$WORK"
mkdir -p "$WORK/data"
cargo build --locked -q -p memory-manager --example metrics_endpoint
ENDPOINT="$TARGET/debug/examples/metrics_endpoint"

echo "promtool check metrics:"
"$ENDPOINT" --print > "$WORK/exposition.prom"
promtool check metrics < "$WORK/exposition.prom"
echo "  $(grep -c '^# TYPE' "$WORK/exposition.prom") families, $(grep -vc '^#' "$WORK/exposition.prom") samples, no lint"

# Two free loopback ports (the kernel picks; a race with another binder is unlikely and
# would fail loudly below).
read -r APP_PORT PROM_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()')

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# The endpoint serves for at most 150 s, whatever happens to this script.
"$ENDPOINT" "127.0.0.1:$APP_PORT" 150 2> "$WORK/endpoint.log" &
pids+=($!)

cat > "$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: memory-manager
    static_configs:
      - targets: ["127.0.0.1:$APP_PORT"]
EOF
promtool check config "$WORK/prometheus.yml"

timeout 150 prometheus \
    --config.file="$WORK/prometheus.yml" \
    --storage.tsdb.path="$WORK/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" \
    --log.level=warn > "$WORK/prometheus.log" 2>&1 &
pids+=($!)

API="http://127.0.0.1:$PROM_PORT/api/v1"
# Prints the first sample's value of an instant query, or nothing.
query() {
    curl -fsS --max-time 2 --get "$API/query" --data-urlencode "query=$1" 2>/dev/null \
        | jq -r 'select(.status == "success") | .data.result[0].value[1] // empty'
}

# Bounded waits: 60 s for the first scrape to land, then 30 s for a rate over >= 2 samples.
used=""
for _ in $(seq 1 120); do
    used=$(query 'mm_budget_used_bytes{job="memory-manager",service="metrics-endpoint"}' || true)
    [ -n "$used" ] && break
    sleep 0.5
done
if [ -z "$used" ]; then
    echo "Prometheus never returned mm_budget_used_bytes; its log and the target's health:"
    tail -n 20 "$WORK/prometheus.log" "$WORK/endpoint.log" || true
    curl -fsS --max-time 2 "$API/targets" | jq '.data.activeTargets[] | {health, lastError}' || true
    exit 1
fi
echo "query mm_budget_used_bytes -> $used"
python3 -c "import sys; sys.exit(0 if float('$used') > 0 else 1)" || { echo "used bytes should be above 0 (idle buffers, the mapped model)"; exit 1; }

rate=""
for _ in $(seq 1 60); do
    rate=$(query 'rate(mm_interner_calls_total{job="memory-manager"}[5s])' || true)
    if [ -n "$rate" ] && python3 -c "import sys; sys.exit(0 if float('$rate') > 0 else 1)"; then
        break
    fi
    rate=""
    sleep 0.5
done
[ -n "$rate" ] || { echo "rate(mm_interner_calls_total[5s]) never became positive"; exit 1; }
echo "query rate(mm_interner_calls_total[5s]) -> $rate per second"

# The counters really are counters to Prometheus (its metadata API reports the scraped type).
ctype=$(curl -fsS --max-time 2 --get "$API/metadata" --data-urlencode "metric=mm_interner_calls_total" \
    | jq -r '.data.mm_interner_calls_total[0].type')
echo "metadata type of mm_interner_calls_total -> $ctype"
[ "$ctype" = counter ]
