#!/usr/bin/env bash
# Instructions the facade executes per proxied request, counted by
# callgrind: unlike requests per second, the count does not move with the
# load of a shared machine, so it shows what a change to the hot path saves.
#
#   bash bench/facade-instructions.sh
#   BINARY=/path/to/strangler bash bench/facade-instructions.sh   # another build
#   PROXY=nginx bash bench/facade-instructions.sh                 # nginx, for scale
#   KEEP=/tmp/facade.callgrind bash bench/facade-instructions.sh  # keep the dump for callgrind_annotate
#
# Needs valgrind, wrk and nginx (Debian: apt-get install valgrind wrk
# nginx-light). The facade runs the configuration of bench/facade.sh
# (bench/facade-config.sh: a capability on legacy, one route, no access log) in
# front of nginx answering a fixed JSON. After a warm-up the counters are
# zeroed, wrk sends requests for DURATION seconds over 8 connections, and
# the counters are dumped: the total divided by the requests wrk counted is
# the figure. It includes everything the process did meanwhile (the
# runtime, timers, the route watcher), which is what a request costs.
#
# PROXY=nginx counts nginx instead, configured as bench/facade.sh's reverse
# proxy (upstream keep-alive, X-Forwarded-*, a request id), in one process
# (no master, one worker) so that callgrind sees all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/facade-config.sh

DURATION=${DURATION:-8}
UPSTREAM_PORT=${UPSTREAM_PORT:-18911}
FACADE_PORT=${FACADE_PORT:-18913}

for tool in valgrind callgrind_control callgrind_annotate wrk nginx; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install valgrind wrk nginx-light)" >&2; exit 1; }
done

work=$(mktemp -d)
cleanup() {
    pkill -INT -f "callgrind-out-file=$work" 2>/dev/null || true
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

PROXY=${PROXY:-facade}
case $PROXY in
    facade | nginx) ;;
    *) echo "error: PROXY must be facade or nginx, not '$PROXY'" >&2; exit 1 ;;
esac
if [ "$PROXY" = facade ] && [ -z "${BINARY:-}" ]; then
    echo "building the facade (release)…" >&2
    cargo build --release -q -p strangler-cli
    BINARY=./target/release/strangler
fi

cat > "$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
daemon on;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work;
    proxy_temp_path $work;
    fastcgi_temp_path $work;
    uwsgi_temp_path $work;
    scgi_temp_path $work;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / {
            default_type application/json;
            return 200 '{"id":1,"sku":"SKU-00001","name":"Vintage Umbrella","price_cents":3796,"stock":140}';
        }
    }
}
EOF
nginx -c "$work/nginx.conf" -p "$work"

if [ "$PROXY" = facade ]; then
    facade_config "$work/facade.toml" "$FACADE_PORT" legacy "$UPSTREAM_PORT" "$work/facade.db"
    STRANGLER_ADMIN_TOKEN=bench-token RUST_LOG=warn valgrind --tool=callgrind \
        --callgrind-out-file="$work/callgrind.out" "$BINARY" facade --config "$work/facade.toml" \
        2> "$work/valgrind.log" &
else
    mkdir -p "$work/proxy"
    cat > "$work/proxy/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $work/proxy/nginx.pid;
error_log $work/proxy/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/proxy;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/proxy;
    uwsgi_temp_path $work/proxy;
    scgi_temp_path $work/proxy;
    keepalive_requests 1000000;
$(nginx_proxy "$FACADE_PORT" "$UPSTREAM_PORT")
}
EOF
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
        nginx -c "$work/proxy/nginx.conf" -p "$work/proxy" 2> "$work/valgrind.log" &
fi
ready=
for _ in $(seq 240); do
    curl -sf -o /dev/null "http://127.0.0.1:$FACADE_PORT/products/1" && { ready=1; break; }
    sleep 0.5
done
[ -n "$ready" ] || { echo "error: the $PROXY did not start under valgrind; see below" >&2; cat "$work/valgrind.log" >&2; exit 1; }

wrk -t1 -c8 -d3s "http://127.0.0.1:$FACADE_PORT/products/1" > /dev/null
callgrind_control -z > /dev/null 2>&1
requests=$(wrk -t1 -c8 -d"${DURATION}s" "http://127.0.0.1:$FACADE_PORT/products/1" | awk '/requests in/ { print $1 }')
callgrind_control -d > /dev/null 2>&1
dump=$(ls "$work"/callgrind.out.* | head -1)
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
[ -n "${KEEP:-}" ] && cp "$dump" "$KEEP"
echo "requests: $requests"
echo "instructions: $total"
echo "instructions per proxied request ($PROXY): $((total / requests))"
