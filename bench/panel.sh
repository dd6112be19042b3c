#!/usr/bin/env bash
# What the control panel costs: how fast the overview loads with 50
# capabilities, and the facade's proxy throughput with ten panels open
# (each holding the live overview stream) against none, interleaved.
#
#   bash bench/panel.sh                      # about 2 minutes
#   ROUNDS=1 DURATION=5 bash bench/panel.sh  # quick look
#
# Needs wrk, nginx (the upstream; Debian: apt-get install wrk nginx-light)
# and curl, and builds the facade in release mode. Everything listens on
# 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/facade-config.sh

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CAPABILITIES=${CAPABILITIES:-50}
PANELS=${PANELS:-10}
UPSTREAM_PORT=${UPSTREAM_PORT:-18931}
FACADE_PORT=${FACADE_PORT:-18933}
ADMIN_PORT=$((FACADE_PORT + 1))

for tool in wrk nginx curl; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install wrk nginx-light curl)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
panels=()
cleanup() {
    for pid in "${panels[@]}" "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/upstream/nginx.pid" ] && kill "$(cat "$work/upstream/nginx.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "building the facade (release)…" >&2
cargo build --release -q -p strangler-cli

nginx_instance upstream "
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / {
            default_type application/json;
            return 200 '{\"id\":1,\"sku\":\"SKU-00001\",\"name\":\"Vintage Umbrella\",\"price_cents\":3796,\"stock\":140}';
        }
    }"

# The benchmark's one capability (`catalog`, /products/{id}) and
# CAPABILITIES - 1 more, each with a route of its own, at every stage.
facade_config "$work/strangler.toml" "$FACADE_PORT" legacy "$UPSTREAM_PORT" "$work/store.db"
stages=(legacy shadow "canary 10%" service retired)
for n in $(seq 2 "$CAPABILITIES"); do
    cat >> "$work/strangler.toml" <<CONFIG
[capabilities.cap$n]
legacy = "legacy"
service = "catalog"
initial = "${stages[$((n % 5))]}"
[[routes]]
capability = "cap$n"
path = "/cap$n/*"
CONFIG
done
STRANGLER_ADMIN_TOKEN=bench-token RUST_LOG=warn setsid ./target/release/strangler facade \
    --config "$work/strangler.toml" 2> "$work/facade.log" &
pids+=("$!")
wait_until_answering "$FACADE_PORT"

# Log in as a browser does; the jar keeps the session cookie.
curl -sf -o /dev/null -c "$work/jar" "http://127.0.0.1:$ADMIN_PORT/?token=bench-token"
overview="http://127.0.0.1:$ADMIN_PORT/panel/api/overview"
count=$(curl -sf -b "$work/jar" "$overview" | grep -o '"stage_name"' | wc -l)
[ "$count" -eq "$CAPABILITIES" ] || { echo "error: the overview lists $count capabilities, not $CAPABILITIES" >&2; exit 1; }

# Overview load time: the page's first request, built fresh each time
# (one second apart, past the one-second cache every open page shares).
times=()
for _ in $(seq 10); do
    sleep 1.1
    times+=("$(curl -sf -o /dev/null -w '%{time_total}' -b "$work/jar" "$overview")")
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
load_ms=$(echo "${times[*]}" | median | awk '{ printf "%.1f", $1 * 1000 }')
worst_ms=$(printf '%s\n' "${times[@]}" | sort -g | tail -1 | awk '{ printf "%.1f", $1 * 1000 }')
echo "overview with $CAPABILITIES capabilities: median ${load_ms} ms, worst ${worst_ms} ms (10 fresh builds)" >&2

open_panels() {
    for _ in $(seq "$PANELS"); do
        curl -sfN -b "$work/jar" "http://127.0.0.1:$ADMIN_PORT/panel/api/events" > /dev/null &
        panels+=("$!")
    done
}
close_panels() {
    for pid in "${panels[@]}"; do kill "$pid" 2>/dev/null || true; done
    panels=()
}
measure() {
    wrk -t2 -c64 -d"${DURATION}s" "http://127.0.0.1:$FACADE_PORT/products/1" | awk '/Requests\/sec/ { printf "%.0f\n", $2 }'
}

# The panels' own cost, without the noise of a throughput run: the
# facade's CPU time (user + system, from /proc) over IDLE_SECONDS with no
# proxy traffic, with no panel and with PANELS panels open.
IDLE_SECONDS=${IDLE_SECONDS:-20}
facade_pid=${pids[-1]}
ticks_per_second=$(getconf CLK_TCK)
idle_none=$(idle_cpu_ticks "$facade_pid" "$IDLE_SECONDS")
open_panels
idle_open=$(idle_cpu_ticks "$facade_pid" "$IDLE_SECONDS")
close_panels
panel_share=$(awk -v a="$idle_none" -v b="$idle_open" -v t="$ticks_per_second" -v s="$IDLE_SECONDS" -v c="$(nproc)" \
    'BEGIN { printf "%.2f", 100 * (b - a) / t / s / c }')
echo "facade CPU over ${IDLE_SECONDS}s without traffic: $idle_none ticks with no panel, $idle_open with $PANELS open: ${panel_share}% of the machine's $(nproc) cores" >&2

none=()
open=()
for round in $(seq "$ROUNDS"); do
    r=$(measure); none+=("$r"); echo "round $round, no panel: $r req/s" >&2
    open_panels
    r=$(measure); open+=("$r"); echo "round $round, $PANELS panels: $r req/s" >&2
    close_panels
done
none_rps=$(echo "${none[*]}" | median)
open_rps=$(echo "${open[*]}" | median)
echo
echo "| capabilities | overview load (median, worst) | CPU of $PANELS open panels | proxy req/s, no panel | proxy req/s, $PANELS panels open | ratio |"
echo "|---|---|---|---|---|---|"
awk -v c="$CAPABILITIES" -v l="$load_ms" -v w="$worst_ms" -v p="$panel_share" -v a="$none_rps" -v b="$open_rps" \
    'BEGIN { printf "| %s | %s ms, %s ms | %s%% of the cores | %s | %s | %.3f |\n", c, l, w, p, a, b, b / a }'
