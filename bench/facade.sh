#!/usr/bin/env bash
# Facade throughput, latency and memory, side by side with nginx, in one run.
#
#   bash bench/facade.sh            # full run (about 4 minutes)
#   ROUNDS=1 DURATION=5 bash bench/facade.sh   # quick look
#   SETUPS="facade shadow canary" CONNECTIONS=64 ROUNDS=7 bash bench/facade.sh
#                                   # more rounds for the stages' ratios
#   SETUPS="facade traced" CONNECTIONS=64 ROUNDS=7 bash bench/facade.sh
#                                   # tracing on (1% sampled) against off
#   BASELINE=/tmp/old/strangler SETUPS="nginx facade baseline" bash bench/facade.sh
#                                   # this build side by side with another
#   SETUPS="facade panels" CONNECTIONS=64 ROUNDS=7 bash bench/facade.sh
#                                   # ten open control panels against none
#
# Needs wrk and nginx (Debian: apt-get install wrk nginx-light) and builds
# the facade in release mode. Everything listens on 127.0.0.1 only.
#
# One nginx serves as the upstream (a fixed small JSON answer) for every
# setup, so the only difference between them is the hop in the middle:
#   direct  wrk -> upstream
#   nginx   wrk -> nginx reverse proxy (upstream keep-alive) -> upstream
#   facade  wrk -> strangler facade (capability on legacy) -> upstream
#   shadow  the same, with the capability in shadow: every answer is copied
#           and compared with a second call (the "service", same upstream)
#   canary  the same, with the capability at canary 50% (client-keyed)
#   traced  the facade setup with OpenTelemetry traces on: exported over
#           OTLP/HTTP to a local sink that decodes and discards them
#           (test-harness's otlp_sink example), sampled at
#           parentbased_traceidratio with TRACE_RATIO (default 0.01); wrk
#           sends no traceparent, so every request is a new trace decided
#           by the ratio
#   baseline  the facade setup run by the build at $BASELINE, if given
#   panels  the facade setup's own facade while PANELS (default 10) control
#           panels are open on it, each logged in and holding the live
#           overview stream (what an open browser tab holds), opened just
#           before each of its runs and closed after, so that the facade
#           runs carry none. The run also measures the panels' CPU share
#           with no proxy traffic (the facade's CPU time from /proc over
#           IDLE_SECONDS, default 20, with no panel and with the panels
#           open), which the noisy throughput ratio cannot resolve.
#           (bench/panel.sh does the same with 50 capabilities, and times
#           the overview.)
# Runs are interleaved (direct, nginx, facade, …, direct, …) and repeated, at 1
# and 64 connections, because this machine is shared and noisy: compare the
# ratios within one run, not absolute numbers across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/facade-config.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
SETUPS=${SETUPS:-direct nginx facade shadow canary}
CONNECTIONS=${CONNECTIONS:-1 64}
UPSTREAM_PORT=${UPSTREAM_PORT:-18901}
NGINX_PORT=${NGINX_PORT:-18902}
FACADE_PORT=${FACADE_PORT:-18903}
SHADOW_PORT=${SHADOW_PORT:-18905}
CANARY_PORT=${CANARY_PORT:-18907}
BASELINE_PORT=${BASELINE_PORT:-18909}
TRACED_PORT=${TRACED_PORT:-18911}
SINK_PORT=${SINK_PORT:-18913}
TRACE_RATIO=${TRACE_RATIO:-0.01}
PANELS=${PANELS:-10}
IDLE_SECONDS=${IDLE_SECONDS:-20}

for tool in wrk nginx curl; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install wrk nginx-light curl)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
panels=()
cleanup() {
    for pid in "${panels[@]}" "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for name in upstream proxy; do
        [ -f "$work/$name/nginx.pid" ] && kill "$(cat "$work/$name/nginx.pid")" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

echo "building the facade (release)…" >&2
cargo build --release -q -p strangler-cli
if [[ " $SETUPS " == *" traced "* ]]; then
    # The sink takes 1% of the requests' spans: the dev build is enough.
    cargo build -q -p test-harness --example otlp_sink
fi

# Two nginx instances, never one: the upstream, and nginx the reverse proxy.
# With both in one instance, nginx would proxy to itself inside its own
# worker processes, answering the upstream's half of a request in the same
# event loop without waking another process. No deployment looks like
# that, and it flatters nginx against any proxy that runs on its own, as
# the facade does: with the same facade build, the same hour, it measured
# 0.70x nginx against one instance and 0.81x against two.
nginx_instance upstream "
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / {
            default_type application/json;
            return 200 '{\"id\":1,\"sku\":\"SKU-00001\",\"name\":\"Vintage Umbrella\",\"price_cents\":3796,\"stock\":140}';
        }
    }"
nginx_instance proxy "$(nginx_proxy "$NGINX_PORT" "$UPSTREAM_PORT")"

# One facade per stage: the same configuration but for the capability's
# initial stage, ports (admin on the next port) and store.
# Environment variables for a setup's facade (`name=value` words).
facade_env() {
    case $1 in
        traced) echo "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT OTEL_SERVICE_NAME=bench-facade OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=$TRACE_RATIO" ;;
        *) echo "OTEL_SDK_DISABLED=true" ;;
    esac
}
start_facade() {
    local name=$1 port=$2 stage=$3 binary=${4:-./target/release/strangler}
    facade_config "$work/$name.toml" "$port" "$stage" "$UPSTREAM_PORT" "$work/$name.db"
    # In a session of its own, as nginx puts itself when it daemonizes (and
    # as a service manager starts a service): with the kernel's autogroup
    # scheduling on, the CPU is shared out by session first, and a facade
    # left in this script's session would share wrk's share.
    # shellcheck disable=SC2046 # one word per variable
    env $(facade_env "$name") STRANGLER_ADMIN_TOKEN=bench-token RUST_LOG=warn setsid "$binary" facade --config "$work/$name.toml" \
        2> "$work/$name.log" &
    pids+=("$!")
    wait_until_answering "$port"
}
start_facade facade "$FACADE_PORT" legacy
facade_pid=${pids[-1]}
start_facade shadow "$SHADOW_PORT" shadow
start_facade canary "$CANARY_PORT" "canary 50%"
if [[ " $SETUPS " == *" traced "* ]]; then
    ./target/debug/examples/otlp_sink "127.0.0.1:$SINK_PORT" > "$work/sink.log" &
    sink_pid=$!
    pids+=("$sink_pid")
    start_facade traced "$TRACED_PORT" legacy
    traced_pid=${pids[-1]}
fi
if [ -n "${BASELINE:-}" ]; then
    start_facade baseline "$BASELINE_PORT" legacy "$BASELINE"
elif [[ " $SETUPS " == *" baseline "* ]]; then
    echo "error: the baseline setup needs BASELINE=/path/to/another/strangler" >&2
    exit 1
fi
curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/products/1"

# The panels: logged in once as a browser is (the jar keeps the session
# cookie), each then holding the live overview stream as an open tab does.
panel_admin="http://127.0.0.1:$((FACADE_PORT + 1))"
panel_rounds=0
if [[ " $SETUPS " == *" panels "* ]]; then
    curl -sf -o /dev/null -c "$work/panel-jar" "$panel_admin/?token=bench-token"
fi
open_panels() {
    panel_rounds=$((panel_rounds + 1))
    for n in $(seq "$PANELS"); do
        curl -sfN -b "$work/panel-jar" "$panel_admin/panel/api/events" > "$work/panel-$panel_rounds-$n.sse" &
        panels+=("$!")
    done
}
close_panels() {
    for pid in "${panels[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${panels[@]}"; do wait "$pid" 2>/dev/null || true; done
    panels=()
    # Each panel must have been served: a stream that got no overview was
    # no open panel, and the run would flatter the facade.
    for n in $(seq "$PANELS"); do
        grep -q '^event: overview' "$work/panel-$panel_rounds-$n.sse" ||
            { echo "error: panel $n got no overview (is the session valid?)" >&2; exit 1; }
    done
}

# One wrk run: prints "requests_per_second p50_ms p99_ms".
measure() {
    local port=$1 connections=$2 threads=1
    [ "$connections" -gt 1 ] && threads=2
    wrk -t"$threads" -c"$connections" -d"${DURATION}s" --latency "http://127.0.0.1:$port/products/1" |
        awk '
            function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
            /Requests\/sec/ { rps = $2 }
            $1 == "50%" { p50 = ms($2) }
            $1 == "99%" { p99 = ms($2) }
            END { printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}

declare -A rps p50 p99
for connections in $CONNECTIONS; do
    for round in $(seq "$ROUNDS"); do
        for setup in $SETUPS; do
            case $setup in
                direct) port=$UPSTREAM_PORT ;;
                nginx) port=$NGINX_PORT ;;
                facade) port=$FACADE_PORT ;;
                shadow) port=$SHADOW_PORT ;;
                canary) port=$CANARY_PORT ;;
                baseline) port=$BASELINE_PORT ;;
                traced) port=$TRACED_PORT ;;
                panels) port=$FACADE_PORT ;;
                *) echo "error: unknown setup '$setup' (direct, nginx, facade, shadow, canary, traced, baseline, panels)" >&2; exit 1 ;;
            esac
            [ "$setup" = panels ] && open_panels
            read -r r a b < <(measure "$port" "$connections")
            [ "$setup" = panels ] && close_panels
            echo "c=$connections round=$round $setup: $r req/s, p50 ${a} ms, p99 ${b} ms" >&2
            rps[$setup,$connections]+="$r "
            p50[$setup,$connections]+="$a "
            p99[$setup,$connections]+="$b "
        done
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "Medians of $ROUNDS interleaved rounds of ${DURATION}s (wrk, /products/1, ~90-byte JSON):"
echo
printf '| connections | setup | requests/s | p50 ms | p99 ms | throughput vs direct | throughput vs nginx | p99 vs nginx | throughput vs facade | p99 vs facade |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for connections in $CONNECTIONS; do
    # A setup left out of the run leaves the ratios against it empty ("-").
    direct_rps=$(echo "${rps[direct,$connections]:-0}" | median)
    nginx_rps=$(echo "${rps[nginx,$connections]:-0}" | median)
    nginx_p99=$(echo "${p99[nginx,$connections]:-0}" | median)
    facade_rps=$(echo "${rps[facade,$connections]:-0}" | median)
    facade_p99=$(echo "${p99[facade,$connections]:-0}" | median)
    for setup in $SETUPS; do
        r=$(echo "${rps[$setup,$connections]}" | median)
        a=$(echo "${p50[$setup,$connections]}" | median)
        b=$(echo "${p99[$setup,$connections]}" | median)
        awk -v c="$connections" -v s="$setup" -v r="$r" -v a="$a" -v b="$b" -v d="$direct_rps" -v nr="$nginx_rps" -v n="$nginx_p99" \
            -v fr="$facade_rps" -v fp="$facade_p99" \
            'function ratio(x, y) { return y > 0 ? sprintf("%.2f", x / y) : "-" }
             BEGIN { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c, s, r, a, b, ratio(r, d), ratio(r, nr), ratio(b, n), ratio(r, fr), ratio(b, fp) }'
    done
done
# The shadow facade's outcomes, to show the copies were really made.
echo
echo "shadow facade: $(curl -s -H 'Authorization: Bearer bench-token' "http://127.0.0.1:$((SHADOW_PORT + 1))/metrics" | grep '^strangler_facade_shadow_total' | tr '\n' ' ')"
# The traced facade's spans, to show they were really exported: the sink
# counts what it received once the facade has flushed on SIGTERM.
if [ -n "${sink_pid:-}" ]; then
    kill -TERM "$traced_pid" && while kill -0 "$traced_pid" 2>/dev/null; do sleep 0.1; done
    kill -TERM "$sink_pid" && wait "$sink_pid" 2>/dev/null || true
    echo "traced facade (ratio $TRACE_RATIO): $(tail -1 "$work/sink.log")"
fi

# The panels' own cost, without the noise of a throughput run: the facade's
# CPU time (user + system ticks, from /proc) over IDLE_SECONDS with no proxy
# traffic, first with no panel, then with PANELS open.
if [[ " $SETUPS " == *" panels "* ]]; then
    idle_none=$(idle_cpu_ticks "$facade_pid" "$IDLE_SECONDS")
    open_panels
    idle_open=$(idle_cpu_ticks "$facade_pid" "$IDLE_SECONDS")
    close_panels
    echo
    awk -v a="$idle_none" -v b="$idle_open" -v t="$(getconf CLK_TCK)" -v s="$IDLE_SECONDS" -v c="$(nproc)" -v p="$PANELS" \
        'BEGIN { printf "panels: facade CPU over %ss without proxy traffic: %d ticks with no panel, %d with %s open: %.2f%% of the machine'"'"'s %d cores\n", s, a, b, p, 100 * (b - a) / t / s / c, c }'
fi

# Memory: resident set of the facade with 1,000 client connections open,
# first idle (each has made one request and stays open), then under load.
echo
python3 - "$FACADE_PORT" "$facade_pid" <<'PY'
import socket, sys, time
port, pid = int(sys.argv[1]), sys.argv[2]
conns = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /products/1 HTTP/1.1\r\nHost: bench\r\n\r\n")
    s.recv(4096)
    conns.append(s)
time.sleep(1)
rss = int(next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")))
print(f"facade resident memory with 1,000 idle keep-alive connections: {rss // 1024} MB")
for s in conns:
    s.close()
PY
wrk -t2 -c1000 -d"${DURATION}s" "http://127.0.0.1:$FACADE_PORT/products/1" > "$work/wrk-1000.txt" &
wrk_pid=$!
peak=0
while kill -0 "$wrk_pid" 2>/dev/null; do
    rss=$(awk '/VmRSS/ { print $2 }' "/proc/$facade_pid/status")
    [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.2
done
echo "facade resident memory with 1,000 open connections under load: peak $((peak / 1024)) MB ($(grep Requests/sec "$work/wrk-1000.txt" | awk '{ print $2 }') req/s)"
