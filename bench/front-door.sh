#!/usr/bin/env bash
# The facade as the front door, side by side with nginx, in one run:
#   plain HTTP/1.1 keep-alive, HTTPS keep-alive (TLS 1.3, same certificate),
#   new TLS connections per second (a full handshake per request),
#   HTTP/2 over TLS (many streams on a few connections), and the facade's
#   memory with 1,000 idle TLS connections.
#
#   bash bench/front-door.sh                   # full run (about 6 minutes)
#   ROUNDS=1 DURATION=5 bash bench/front-door.sh   # quick look
#   TESTS="plain tls" bash bench/front-door.sh     # some of: plain tls handshake h2 dedicated memory
#
# Needs wrk, nginx, h2load and openssl (Debian: apt-get install wrk
# nginx-light nghttp2-client openssl) and builds the facade in release mode.
# Everything listens on 127.0.0.1.
#
# nginx is tuned as its users tune it: `worker_processes auto`, upstream
# keep-alive, a shared TLS session cache, TLS 1.3 only, `http2` on its TLS
# listener; and it is measured twice, with and without `reuseport` on the
# listen line, because which one is faster depends on how the processes are
# started on this machine. The faster of the two is the one compared
# against. Every server is started the same way (a session of its own, as a
# daemon or service manager starts it), and the runs are interleaved in
# rounds, so that the ratios within one run are what counts on a shared,
# noisy machine.
#
# `dedicated` repeats plain HTTP/1.1 at 64 connections with each proxy
# alone on the last core and wrk and the upstream on the others (taskset),
# as a front door runs in production, apart from its clients and its
# backends: there the proxy's own cost per request decides the
# throughput, where in `plain` three quarters of the two cores go to wrk,
# the upstream and their loopback traffic, which both proxies pay alike.
# nginx is measured there three ways (`worker_processes auto` with and
# without `reuseport`, and one worker, the usual tuning for one core); the
# fastest counts. The facade runs with its defaults, which give it one
# proxy thread on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/facade-config.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
TESTS=${TESTS:-plain tls handshake h2 dedicated memory}
BASE=${BASE_PORT:-19100}
UPSTREAM_PORT=$BASE
NGINX_PORT=$((BASE + 1))      # plain, without reuseport
NGINX_RP_PORT=$((BASE + 2))   # plain, with reuseport
NGINX_TLS_PORT=$((BASE + 3))
NGINX_TLS_RP_PORT=$((BASE + 4))
FACADE_PORT=$((BASE + 10))    # admin on +1
FACADE_TLS_PORT=$((BASE + 12))
# `dedicated`: an upstream on the client cores, proxies on the last core.
DEDICATED_UPSTREAM_PORT=$((BASE + 20))
DEDICATED_NGINX_PORT=$((BASE + 21))
DEDICATED_NGINX_RP_PORT=$((BASE + 22))
DEDICATED_NGINX_ONE_PORT=$((BASE + 23))
DEDICATED_FACADE_PORT=$((BASE + 24))  # admin on +1
CORES=$(nproc)
PROXY_CORE=$((CORES - 1))
CLIENT_CORES=0
[ "$CORES" -gt 2 ] && CLIENT_CORES=0-$((CORES - 2))

if [[ " $TESTS " == *" dedicated "* ]] && [ "$CORES" -lt 2 ]; then
    echo "error: the dedicated test needs at least 2 cores (this machine has $CORES); leave it out of TESTS" >&2
    exit 1
fi
for tool in wrk nginx h2load openssl curl python3 taskset; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool is not installed (apt-get install wrk nginx-light nghttp2-client openssl curl)" >&2
        exit 1
    }
done

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pidfile in "$work"/*/nginx.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

echo "building the facade (release)…" >&2
cargo build --release -q -p strangler-cli

# One certificate for both: ECDSA P-256, as most sites now serve.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench.test" -addext "subjectAltName=DNS:bench.test,IP:127.0.0.1" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# The proxy's location block, as in bench/facade-config.sh.
location_block() {
    nginx_proxy 0 "$UPSTREAM_PORT" | sed -n '/location \//,/^        }/p'
}

nginx_instance upstream "
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / {
            default_type application/json;
            return 200 '{\"id\":1,\"sku\":\"SKU-00001\",\"name\":\"Vintage Umbrella\",\"price_cents\":3796,\"stock\":140}';
        }
    }"
upstream_block="upstream shop { server 127.0.0.1:$UPSTREAM_PORT; keepalive 256; }"
nginx_instance nginx "$upstream_block
    server { listen 127.0.0.1:$NGINX_PORT; $(location_block) }"
nginx_instance nginx-rp "$upstream_block
    server { listen 127.0.0.1:$NGINX_RP_PORT reuseport; $(location_block) }"
tls_server() {
    local port=$1 options=$2
    echo "server {
        listen 127.0.0.1:$port ssl http2 $options;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        ssl_protocols TLSv1.3;
        $(location_block)
    }"
}
nginx_instance nginx-tls "$upstream_block
    $(tls_server "$NGINX_TLS_PORT" "")"
nginx_instance nginx-tls-rp "$upstream_block
    $(tls_server "$NGINX_TLS_RP_PORT" reuseport)"

facade_config "$work/facade.toml" "$FACADE_PORT" legacy "$UPSTREAM_PORT" "$work/facade.db"
# The same configuration with a TLS listener beside the plain one.
python3 - "$work/facade.toml" "$FACADE_TLS_PORT" "$work" <<'PY'
import sys
path, port, work = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
text = text.replace("[facade]\n", f'[facade]\ntls_listen = "127.0.0.1:{port}"\n', 1)
text = text.replace("[store]", f'[[facade.certificates]]\ncert = "{work}/cert.pem"\nkey = "{work}/key.pem"\n[store]', 1)
open(path, "w").write(text)
PY
STRANGLER_ADMIN_TOKEN=bench-token RUST_LOG=warn setsid ./target/release/strangler facade --config "$work/facade.toml" \
    2> "$work/facade.log" &
facade_pid=$!
pids+=("$facade_pid")
wait_until_answering "$FACADE_PORT"
for url in "http://127.0.0.1:$NGINX_PORT" "http://127.0.0.1:$NGINX_RP_PORT" "https://127.0.0.1:$NGINX_TLS_PORT" \
    "https://127.0.0.1:$NGINX_TLS_RP_PORT" "https://127.0.0.1:$FACADE_TLS_PORT"; do
    curl -sfk -o /dev/null "$url/products/1" || { echo "error: $url does not answer" >&2; cat "$work/facade.log" >&2; exit 1; }
done

# The `dedicated` layout: every server started as above, but pinned.
if [[ " $TESTS " == *" dedicated "* ]]; then
    pinned_nginx() {
        local name=$1 cores=$2 workers=$3 server=$4
        WORKER_PROCESSES=$workers PIN_CORES=$cores nginx_instance "$name" "$server"
    }
    pinned_nginx dedicated-upstream "$CLIENT_CORES" auto "
    server {
        listen 127.0.0.1:$DEDICATED_UPSTREAM_PORT;
        location / {
            default_type application/json;
            return 200 '{\"id\":1,\"sku\":\"SKU-00001\",\"name\":\"Vintage Umbrella\",\"price_cents\":3796,\"stock\":140}';
        }
    }"
    dedicated_upstream="upstream shop { server 127.0.0.1:$DEDICATED_UPSTREAM_PORT; keepalive 256; }"
    pinned_nginx dedicated-nginx "$PROXY_CORE" auto "$dedicated_upstream
    server { listen 127.0.0.1:$DEDICATED_NGINX_PORT; $(location_block) }"
    pinned_nginx dedicated-nginx-rp "$PROXY_CORE" auto "$dedicated_upstream
    server { listen 127.0.0.1:$DEDICATED_NGINX_RP_PORT reuseport; $(location_block) }"
    pinned_nginx dedicated-nginx-one "$PROXY_CORE" 1 "$dedicated_upstream
    server { listen 127.0.0.1:$DEDICATED_NGINX_ONE_PORT; $(location_block) }"
    facade_config "$work/dedicated.toml" "$DEDICATED_FACADE_PORT" legacy "$DEDICATED_UPSTREAM_PORT" "$work/dedicated.db"
    STRANGLER_ADMIN_TOKEN=bench-token RUST_LOG=warn setsid taskset -c "$PROXY_CORE" ./target/release/strangler facade \
        --config "$work/dedicated.toml" 2> "$work/dedicated.log" &
    pids+=("$!")
    wait_until_answering "$DEDICATED_FACADE_PORT"
    for port in "$DEDICATED_NGINX_PORT" "$DEDICATED_NGINX_RP_PORT" "$DEDICATED_NGINX_ONE_PORT" "$DEDICATED_FACADE_PORT"; do
        curl -sf -o /dev/null "http://127.0.0.1:$port/products/1" ||
            { echo "error: port $port does not answer" >&2; cat "$work/dedicated.log" >&2; exit 1; }
    done
fi

# One wrk run: prints "requests_per_second p50_ms p99_ms". With WRK_CORES
# set, wrk runs on those cores only.
wrk_run() {
    local url=$1 connections=$2 threads=2
    shift 2
    [ "$connections" -eq 1 ] && threads=1
    ${WRK_CORES:+taskset -c "$WRK_CORES"} wrk -t"$threads" -c"$connections" -d"${DURATION}s" --latency "$@" "$url/products/1" |
        awk '
            function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
            /Requests\/sec/ { rps = $2 }
            $1 == "50%" { p50 = ms($2) }
            $1 == "99%" { p99 = ms($2) }
            END { printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}

# One h2load run over TLS: 4 connections, 32 streams each; prints
# "requests_per_second - -", counting answered requests only (the streams
# still open when the time is up are cut, and not counted).
h2_run() {
    local url=$1
    h2load -c4 -m32 -t2 -D "$DURATION" "$url/products/1" 2>/dev/null |
        awk '/^finished in/ { seconds = $3 + 0 } /^requests:/ { succeeded = $8 }
             END { printf "%.0f - -\n", (seconds > 0 ? succeeded / seconds : 0) }'
}

declare -A rps p50 p99
record() {
    local key=$1 result
    result=$2
    read -r r a b <<< "$result"
    echo "$key round=$round: $r req/s, p50 ${a} ms, p99 ${b} ms" >&2
    rps[$key]+="$r "
    p50[$key]+="$a "
    p99[$key]+="$b "
}

for round in $(seq "$ROUNDS"); do
    for test in $TESTS; do
        case $test in
            plain)
                for c in 1 64; do
                    record "plain c=$c nginx" "$(wrk_run "http://127.0.0.1:$NGINX_PORT" "$c")"
                    record "plain c=$c nginx-reuseport" "$(wrk_run "http://127.0.0.1:$NGINX_RP_PORT" "$c")"
                    record "plain c=$c facade" "$(wrk_run "http://127.0.0.1:$FACADE_PORT" "$c")"
                done ;;
            tls)
                record "tls nginx" "$(wrk_run "https://127.0.0.1:$NGINX_TLS_PORT" 64)"
                record "tls nginx-reuseport" "$(wrk_run "https://127.0.0.1:$NGINX_TLS_RP_PORT" 64)"
                record "tls facade" "$(wrk_run "https://127.0.0.1:$FACADE_TLS_PORT" 64)" ;;
            handshake)
                record "handshake nginx" "$(wrk_run "https://127.0.0.1:$NGINX_TLS_PORT" 64 -H 'Connection: close')"
                record "handshake nginx-reuseport" "$(wrk_run "https://127.0.0.1:$NGINX_TLS_RP_PORT" 64 -H 'Connection: close')"
                record "handshake facade" "$(wrk_run "https://127.0.0.1:$FACADE_TLS_PORT" 64 -H 'Connection: close')" ;;
            h2)
                record "h2 nginx" "$(h2_run "https://127.0.0.1:$NGINX_TLS_PORT")"
                record "h2 nginx-reuseport" "$(h2_run "https://127.0.0.1:$NGINX_TLS_RP_PORT")"
                record "h2 facade" "$(h2_run "https://127.0.0.1:$FACADE_TLS_PORT")" ;;
            dedicated)
                for setup in "nginx $DEDICATED_NGINX_PORT" "nginx-reuseport $DEDICATED_NGINX_RP_PORT" \
                    "nginx-one-worker $DEDICATED_NGINX_ONE_PORT" "facade $DEDICATED_FACADE_PORT"; do
                    read -r name port <<< "$setup"
                    record "dedicated $name" "$(WRK_CORES=$CLIENT_CORES wrk_run "http://127.0.0.1:$port" 64)"
                done ;;
            memory) ;;
            *) echo "error: unknown test '$test' (plain tls handshake h2 dedicated memory)" >&2; exit 1 ;;
        esac
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "Medians of $ROUNDS interleaved rounds of ${DURATION}s (/products/1, ~90-byte JSON; TLS 1.3, ECDSA P-256):"
echo
echo "| test | nginx req/s | nginx reuseport req/s | facade req/s | facade / best nginx | p50 ms (nginx best, facade) | p99 ms (nginx best, facade) |"
echo "|---|---|---|---|---|---|---|"
for test in "plain c=1" "plain c=64" tls handshake h2; do
    [ -n "${rps[$test facade]:-}" ] || continue
    n=$(echo "${rps[$test nginx]}" | median)
    nr=$(echo "${rps[$test nginx-reuseport]}" | median)
    f=$(echo "${rps[$test facade]}" | median)
    best=nginx
    awk -v a="$nr" -v b="$n" 'BEGIN { exit !(a > b) }' && best=nginx-reuseport
    bn=$(echo "${rps[$test $best]}" | median)
    np50=$(echo "${p50[$test $best]}" | median); fp50=$(echo "${p50[$test facade]}" | median)
    np99=$(echo "${p99[$test $best]}" | median); fp99=$(echo "${p99[$test facade]}" | median)
    awk -v t="$test" -v n="$n" -v nr="$nr" -v f="$f" -v bn="$bn" -v np50="$np50" -v fp50="$fp50" -v np99="$np99" -v fp99="$fp99" \
        'BEGIN { printf "| %s | %s | %s | %s | %.2f | %s, %s | %s, %s |\n", t, n, nr, f, (bn > 0 ? f / bn : 0), np50, fp50, np99, fp99 }'
done

if [ -n "${rps[dedicated facade]:-}" ]; then
    echo
    echo "dedicated: plain HTTP/1.1 at 64 connections, each proxy alone on core $PROXY_CORE, wrk and the upstream on $CLIENT_CORES:"
    echo
    echo "| setup | requests/s | p50 ms | p99 ms | facade / this, round by round |"
    echo "|---|---|---|---|---|"
    for name in nginx nginx-reuseport nginx-one-worker facade; do
        ratios=$(paste -d' ' <(echo "${rps[dedicated facade]}" | tr ' ' '\n' | grep -v '^$') \
            <(echo "${rps[dedicated $name]}" | tr ' ' '\n' | grep -v '^$') |
            awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 / $2 }')
        echo "| $name | $(echo "${rps[dedicated $name]}" | median) | $(echo "${p50[dedicated $name]}" | median) | $(echo "${p99[dedicated $name]}" | median) | $ratios |"
    done
    # Against the fastest nginx of each round.
    for round in $(seq "$ROUNDS"); do
        best=0
        for name in nginx nginx-reuseport nginx-one-worker; do
            value=$(echo "${rps[dedicated $name]}" | awk -v r="$round" '{ print $r }')
            awk -v a="$value" -v b="$best" 'BEGIN { exit !(a > b) }' && best=$value
        done
        facade=$(echo "${rps[dedicated facade]}" | awk -v r="$round" '{ print $r }')
        awk -v f="$facade" -v b="$best" 'BEGIN { printf "%.2f\n", f / b }'
    done | tr '\n' ' ' | awk '{ printf "\nfacade / fastest nginx of the round: %s\n", $0 }'
    n=$(for name in nginx nginx-reuseport nginx-one-worker; do echo "${rps[dedicated $name]}" | median; done | sort -g | tail -1)
    awk -v f="$(echo "${rps[dedicated facade]}" | median)" -v n="$n" 'BEGIN { printf "facade median / best nginx median: %.2f\n", f / n }'
fi

if [[ " $TESTS " == *" memory "* ]]; then
    echo
    python3 - "$FACADE_TLS_PORT" "$facade_pid" <<'PY'
import socket, ssl, sys, time
port, pid = int(sys.argv[1]), sys.argv[2]
def rss():
    return int(next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS"))) // 1024
before = rss()
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
conns = []
for _ in range(1000):
    s = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="bench.test")
    s.sendall(b"GET /products/1 HTTP/1.1\r\nHost: bench.test\r\n\r\n")
    s.recv(4096)
    conns.append(s)
time.sleep(1)
print(f"facade resident memory: {before} MB before, {rss()} MB with 1,000 idle TLS keep-alive connections")
for s in conns:
    s.close()
PY
fi
