#!/usr/bin/env bash
# A chaos soak of the whole stack: the sample shop and the facade, each its
# own process on PostgreSQL, under mixed client load through the facade
# while stages flip, services are killed, the route store loses its
# connections, dual writes are dropped and the monolith turns slow; then the
# data and the facade are checked.
#
#   bash bench/soak.sh                    # 10 minutes (plus about 3 to build, warm up and check)
#   SOAK_SECONDS=90 bash bench/soak.sh    # a short run
#
# Environment: SOAK_SECONDS (600), SOAK_WARMUP_SECONDS (15), SOAK_DRAIN_SECONDS
# (60: how long orders are still retried once the load stops), SOAK_WORKERS (4),
# SOAK_SHOPPER_RATE (20 requests/s), SOAK_FLIP_EVERY (3 s), SOAK_KILL_EVERY
# (30 s per service), SOAK_TERMINATE_EVERY (20 s), SOAK_DUAL_WRITE_FAULTS (0.1),
# SOAK_SLOW_MS (400), SOAK_BUILD (1; 0 uses the binaries already built),
# SOAK_PROFILE (release; `dev` runs the debug build that `cargo test` leaves,
# as CI does for a short run),
# PGURL_BASE (postgres://postgres@127.0.0.1:5432), KEEP=1 keeps the databases,
# the logs and the generated files (the script says where).
#
# What runs: `legacy-monolith --seed --fault-switches`, `catalog-service`,
# `orders-service --dual-write` and `strangler facade` (the production build,
# `--no-default-features`), on four fresh PostgreSQL databases (monolith,
# catalog, orders, the toolkit store) whose names are unique to the run and
# which are dropped at the end. The services are backfilled from the monolith
# with `strangler backfill` along demo/mapping.toml, pointed at those
# databases; the facade runs demo/strangler.toml with the run's ports, store
# and admin token. Every readiness is polled (`/health`, the admin `/ready`).
#
# The load is `soak-load` (tests/e2e/examples/soak_load.rs): the demo
# shopper's mix at a fixed rate plus a few closed-loop workers, reads and
# orders, each order with its own Idempotency-Key, retried with the same key
# and body after a transport error or a 5xx until acknowledged. A warm-up of
# the same load (no faults) comes first, and sets the facade's baseline of
# open file descriptors.
#
# Faults, from one schedule in this shell:
#   - every SOAK_FLIP_EVERY s, a stage change of catalog or orders, in turn:
#     shadow, canary 10%, 50%, 90%, service, legacy, and again
#     (`strangler routes flip … --force --reason soak`);
#   - catalog and orders SIGKILLed and restarted every SOAK_KILL_EVERY s each,
#     staggered (the restart is waited on until `/health` answers);
#   - every SOAK_TERMINATE_EVERY s, pg_terminate_backend on every connection
#     to the route store;
#   - the orders service drops SOAK_DUAL_WRITE_FAULTS of its dual writes;
#   - from 40% to 55% of the run, the monolith holds every request
#     SOAK_SLOW_MS ms (`PUT /internal/settings`, legacy-monolith/src/settings.rs).
#
# Checks at the end (any failure: exit 1, after the last line):
#   - no failed request at the client: no read without a good answer, no
#     order left unacknowledged;
#   - every acknowledged order is in both databases once the orders placed on
#     the monolith are backfilled and `reconcile run` + `repair --apply` have
#     run, and the next `reconcile run` (orders, and catalog) is clean;
#   - no duplicate: no Idempotency-Key that created more than one order,
#     across both apps;
#   - the facade's resident memory grows less than 10% from the second minute
#     (a third of the run, if shorter) to the end, and its open file
#     descriptors come back to the warm-up's baseline;
#   - the audit log holds every stage change made, in order; at least one
#     change per 6 s of run and a kill of each service happened; no process
#     panicked.
# The last line is
#   soak: N requests, F failed, O orders acknowledged, L lost, D duplicated, R flips, K kills, rss +X%
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_SECONDS=${SOAK_SECONDS:-600}
WARMUP_SECONDS=${SOAK_WARMUP_SECONDS:-15}
DRAIN_SECONDS=${SOAK_DRAIN_SECONDS:-60}
WORKERS=${SOAK_WORKERS:-4}
SHOPPER_RATE=${SOAK_SHOPPER_RATE:-20}
FLIP_EVERY=${SOAK_FLIP_EVERY:-3}
KILL_EVERY=${SOAK_KILL_EVERY:-30}
TERMINATE_EVERY=${SOAK_TERMINATE_EVERY:-20}
DUAL_WRITE_FAULTS=${SOAK_DUAL_WRITE_FAULTS:-0.1}
SLOW_MS=${SOAK_SLOW_MS:-400}
PGURL_BASE=${PGURL_BASE:-postgres://postgres@127.0.0.1:5432}
TARGET=${CARGO_TARGET_DIR:-target}
case ${SOAK_PROFILE:-release} in
    release) PROFILE_FLAGS=(--release) PROFILE_DIR=release ;;
    dev | debug) PROFILE_FLAGS=() PROFILE_DIR=debug ;;
    *) echo "error: SOAK_PROFILE must be release or dev, got ${SOAK_PROFILE}" >&2; exit 2 ;;
esac
BIN=$TARGET/$PROFILE_DIR
LOAD=$TARGET/$PROFILE_DIR/examples/soak-load

for tool in psql curl python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d)
run_id="soak_$(date +%s)_$$"
databases=(monolith catalog orders store)
monolith_pid="" catalog_pid="" orders_pid="" facade_pid="" load_pid=""
cleanup() {
    local pid
    for pid in $load_pid $facade_pid $orders_pid $catalog_pid $monolith_pid; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $load_pid $facade_pid $orders_pid $catalog_pid $monolith_pid; do
        # The apps drain in well under a second with nothing in flight.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept: databases ${run_id}_{${databases[*]// /,}}, files in $work" >&2
    else
        for db in "${databases[@]}"; do
            psql -qX "$PGURL_BASE/postgres" -c "DROP DATABASE IF EXISTS ${run_id}_$db WITH (FORCE)" >/dev/null 2>&1 || true
        done
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${SOAK_BUILD:-1}" != 0 ]; then
    echo "building the stack and the load ($PROFILE_DIR)…" >&2
    cargo build "${PROFILE_FLAGS[@]}" -q -p strangler-cli --no-default-features \
        -p legacy-monolith -p catalog-service -p orders-service
    cargo build "${PROFILE_FLAGS[@]}" -q -p end-to-end --example soak-load
fi
for program in "$BIN/strangler" "$BIN/legacy-monolith" "$BIN/catalog-service" "$BIN/orders-service" "$LOAD"; do
    [ -x "$program" ] || { echo "error: $program is not built" >&2; exit 1; }
done

pg() { psql -qAtX -v ON_ERROR_STOP=1 "$PGURL_BASE/$1" -c "$2"; }
db_url() { echo "$PGURL_BASE/${run_id}_$1"; }
for db in "${databases[@]}"; do pg postgres "CREATE DATABASE ${run_id}_$db"; done

read -r MONOLITH_PORT CATALOG_PORT ORDERS_PORT FACADE_PORT ADMIN_PORT < <(python3 -c '
import socket
sockets = [socket.socket() for _ in range(5)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))')
FACADE=http://127.0.0.1:$FACADE_PORT
export STRANGLER_ADMIN_URL=http://127.0.0.1:$ADMIN_PORT
export STRANGLER_ADMIN_TOKEN_FILE=$work/admin-token
unset STRANGLER_ADMIN_TOKEN
(umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' >"$STRANGLER_ADMIN_TOKEN_FILE")

t0=$SECONDS
elapsed() { echo $((SECONDS - t0)); }
log() { echo "[$(printf %4d "$(elapsed)") s] $*" >&2; }

# wait_ready NAME URL PID [SECONDS]: polls URL until it answers 2xx; fails
# early if the process has died.
wait_ready() {
    local name=$1 url=$2 pid=$3 deadline=$((SECONDS + ${4:-60}))
    until curl -sf -o /dev/null --max-time 2 -H "Authorization: Bearer $(cat "$STRANGLER_ADMIN_TOKEN_FILE")" "$url"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: the $name died while starting; the end of its log:" >&2
            tail -20 "$work/$name.log" >&2
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "error: the $name is not ready at $url after ${4:-60} s; the end of its log:" >&2
            tail -20 "$work/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
}

start_monolith() {
    "$BIN/legacy-monolith" --listen "127.0.0.1:$MONOLITH_PORT" --database-url "$(db_url monolith)" \
        --seed --fault-switches >>"$work/monolith.log" 2>&1 &
    monolith_pid=$!
    wait_ready monolith "http://127.0.0.1:$MONOLITH_PORT/health" "$monolith_pid" 300
}
start_catalog() {
    "$BIN/catalog-service" --listen "127.0.0.1:$CATALOG_PORT" --database-url "$(db_url catalog)" \
        --monolith-url "http://127.0.0.1:$MONOLITH_PORT" >>"$work/catalog.log" 2>&1 &
    catalog_pid=$!
    wait_ready catalog "http://127.0.0.1:$CATALOG_PORT/health" "$catalog_pid"
}
start_orders() {
    # Saga recovery sooner than its default (60 s), so that an order whose
    # saga died with the process frees its key within the run.
    "$BIN/orders-service" --listen "127.0.0.1:$ORDERS_PORT" --database-url "$(db_url orders)" \
        --monolith-url "http://127.0.0.1:$MONOLITH_PORT/" --dual-write \
        --dual-write-fault-rate "$DUAL_WRITE_FAULTS" \
        --recovery-timeout-secs 20 --recovery-interval-secs 5 >>"$work/orders.log" 2>&1 &
    orders_pid=$!
    wait_ready orders "http://127.0.0.1:$ORDERS_PORT/health" "$orders_pid"
}

log "starting the monolith (seeding PostgreSQL), the catalog and the orders service…"
start_monolith
start_catalog
start_orders

# demo/mapping.toml and demo/strangler.toml, pointed at this run's databases,
# ports and token.
python3 - "$work" "$(db_url monolith)" "$(db_url catalog)" "$(db_url orders)" "$(db_url store)" \
    "$MONOLITH_PORT" "$CATALOG_PORT" "$ORDERS_PORT" "$FACADE_PORT" "$ADMIN_PORT" <<'PY'
import sys
work, monolith, catalog, orders, store, p_monolith, p_catalog, p_orders, p_facade, p_admin = sys.argv[1:]
def rewrite(source, target, replacements):
    text = open(source).read()
    for old, new in replacements:
        assert old in text, f"{source} no longer holds {old!r}; update bench/soak.sh"
        text = text.replace(old, new)
    open(target, "w").write(text)
rewrite("demo/mapping.toml", f"{work}/mapping.toml", [
    ('legacy_database_url = ".strangler-demo/monolith.db"', f'legacy_database_url = "{monolith}"'),
    ('service_database_url = ".strangler-demo/catalog.db"', f'service_database_url = "{catalog}"'),
    ('service_database_url = ".strangler-demo/orders.db"', f'service_database_url = "{orders}"'),
])
rewrite("demo/strangler.toml", f"{work}/strangler.toml", [
    ('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{p_facade}"'),
    ('admin_listen = "127.0.0.1:9080"', f'admin_listen = "127.0.0.1:{p_admin}"'),
    ('admin_token_file = "../.strangler-demo/admin-token"', f'admin_token_file = "{work}/admin-token"'),
    ('url = "sqlite://.strangler-demo/toolkit.db?mode=rwc"', f'url = "{store}"'),
    ('"http://127.0.0.1:8081"', f'"http://127.0.0.1:{p_monolith}"'),
    ('"http://127.0.0.1:8082"', f'"http://127.0.0.1:{p_catalog}"'),
    ('"http://127.0.0.1:8083"', f'"http://127.0.0.1:{p_orders}"'),
])
PY
MAPPING=(--mapping "$work/mapping.toml")
STORE=(--store-url "$(db_url store)")

log "backfilling both services…"
"$BIN/strangler" backfill catalog "${MAPPING[@]}" >"$work/backfill-catalog.txt"
"$BIN/strangler" backfill orders "${MAPPING[@]}" >"$work/backfill-orders.txt"

log "starting the facade…"
"$BIN/strangler" facade --config "$work/strangler.toml" >"$work/facade.log" 2>&1 &
facade_pid=$!
wait_ready facade "$STRANGLER_ADMIN_URL/ready" "$facade_pid"
wait_ready facade "$FACADE/products/1" "$facade_pid"

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$facade_pid/status"; }
fd_count() { find "/proc/$facade_pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
# What the facade's descriptors are: its TCP sockets by peer and state
# ("orders ESTAB 3"), then the other kinds of descriptor.
fd_kinds() {
    {
        ss -tanpH 2>/dev/null | grep "pid=$facade_pid," || true
    } | python3 -c '
import collections, sys
ports = dict(zip(sys.argv[1:6], ["monolith", "catalog", "orders", "client", "admin client"]))
ports["5432"] = "postgres"
counts = collections.Counter()
for line in sys.stdin:
    state, _, _, local, peer = line.split()[:5]
    local_port, peer_port = local.rsplit(":", 1)[1], peer.rsplit(":", 1)[1]
    if state == "LISTEN":
        continue
    who = ports.get(local_port) if local_port in (sys.argv[4], sys.argv[5]) else ports.get(peer_port, peer)
    counts[f"{who} {state}"] += 1
print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no TCP connections")
' "$MONOLITH_PORT" "$CATALOG_PORT" "$ORDERS_PORT" "$FACADE_PORT" "$ADMIN_PORT"
    find "/proc/$facade_pid/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null |
        sed -E 's/:\[[0-9]+\]$//; s|^/.*|file|' | sort | uniq -c | tr -s ' \n' ' '
    echo
}
# The open descriptors once they stop changing (three equal readings a
# second apart, within 30 s).
settled_fds() {
    local last=-1 same=0 now
    for _ in $(seq 30); do
        now=$(fd_count)
        if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; fi
        [ "$same" -ge 2 ] && break
        last=$now
        sleep 1
    done
    echo "$now"
}

run_load() { # SECONDS ACKED_FILE OUTPUT
    "$LOAD" --facade "$FACADE" --seconds "$1" --drain-seconds "$DRAIN_SECONDS" \
        --workers "$WORKERS" --shopper-rate "$SHOPPER_RATE" --acked "$2" >"$3" 2>>"$work/load.log"
}

log "warming up for $WARMUP_SECONDS s (no faults)…"
run_load "$WARMUP_SECONDS" "$work/acked-warmup.tsv" "$work/load-warmup.json"
baseline_fds=$(settled_fds)
fd_kinds >"$work/fds-baseline.txt"
log "facade after the warm-up: $(( $(rss_kb) / 1024 )) MB resident, $baseline_fds open descriptors"

# The soak.
stages=("shadow" "canary 10" "canary 50" "canary 90" "service" "legacy")
declare -A next_stage=([catalog]=0 [orders]=0)
flips=0 flip_errors=0 kills=0 catalog_kills=0 orders_kills=0 terminated=0
: >"$work/flips.log"

flip() { # CAPABILITY: the next stage of its cycle that is not the current one
    local capability=$1 tried=0 i stage percent out
    local -a args
    while [ "$tried" -lt "${#stages[@]}" ]; do
        i=${next_stage[$capability]}
        next_stage[$capability]=$(((i + 1) % ${#stages[@]}))
        read -r stage percent <<<"${stages[$i]}"
        args=(routes flip "$capability" --to "$stage" --force --reason soak)
        [ -n "$percent" ] && args+=(--percent "$percent")
        if out=$("$BIN/strangler" "${args[@]}" 2>&1); then
            flips=$((flips + 1))
            echo "$capability ${stages[$i]}" >>"$work/flips.log"
            return
        fi
        case $out in
            # Moved there by an automatic rollback meanwhile: the next one.
            *"already at"*) tried=$((tried + 1)) ;;
            *)
                flip_errors=$((flip_errors + 1))
                echo "[$(elapsed) s] $capability → ${stages[$i]}: $out" >>"$work/flip-errors.log"
                return ;;
        esac
    done
}

kill_and_restart() { # catalog|orders
    local pid_var="${1}_pid"
    kill -KILL "${!pid_var}"
    wait "${!pid_var}" 2>/dev/null || true
    "start_$1"
    kills=$((kills + 1))
    if [ "$1" = catalog ]; then catalog_kills=$((catalog_kills + 1)); else orders_kills=$((orders_kills + 1)); fi
}

set_latency() {
    curl -sf -o /dev/null --max-time 5 -X PUT -H 'content-type: application/json' \
        -d "{\"latency_ms\": $1}" "http://127.0.0.1:$MONOLITH_PORT/internal/settings"
}

terminate_store() {
    local n
    n=$(pg postgres "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE datname = '${run_id}_store' AND pid <> pg_backend_pid()")
    terminated=$((terminated + n))
}

log "soaking for $SOAK_SECONDS s…"
"$LOAD" --facade "$FACADE" --seconds "$SOAK_SECONDS" --drain-seconds "$DRAIN_SECONDS" \
    --workers "$WORKERS" --shopper-rate "$SHOPPER_RATE" --acked "$work/acked-soak.tsv" \
    >"$work/load-soak.json" 2>>"$work/load.log" &
load_pid=$!
soak_start=$SECONDS
rss_mark=$((SOAK_SECONDS / 3 < 120 ? SOAK_SECONDS / 3 : 120))
slow_from=$((SOAK_SECONDS * 40 / 100))
slow_to=$((SOAK_SECONDS * 55 / 100))
next_flip=$FLIP_EVERY next_kill=$((KILL_EVERY / 2)) next_terminate=$TERMINATE_EVERY
next_sample=0
kill_turn=catalog flip_turn=catalog slow=off rss_mid=""
: >"$work/facade-samples.tsv"
while :; do
    at=$((SECONDS - soak_start))
    [ "$at" -ge "$SOAK_SECONDS" ] && break
    kill -0 "$load_pid" 2>/dev/null || { echo "error: the load ended early; see $work/load.log" >&2; tail -20 "$work/load.log" >&2; exit 1; }
    if [ "$at" -ge "$next_flip" ]; then
        flip "$flip_turn"
        if [ "$flip_turn" = catalog ]; then flip_turn=orders; else flip_turn=catalog; fi
        next_flip=$((next_flip + FLIP_EVERY))
    fi
    if [ "$at" -ge "$next_kill" ]; then
        kill_and_restart "$kill_turn"
        if [ "$kill_turn" = catalog ]; then kill_turn=orders; else kill_turn=catalog; fi
        next_kill=$((next_kill + KILL_EVERY / 2))
    fi
    if [ "$at" -ge "$next_terminate" ]; then
        terminate_store
        next_terminate=$((next_terminate + TERMINATE_EVERY))
    fi
    if [ "$slow" = off ] && [ "$at" -ge "$slow_from" ] && [ "$at" -lt "$slow_to" ]; then
        set_latency "$SLOW_MS" && slow=on && log "monolith slow (+$SLOW_MS ms a request)"
    elif [ "$slow" = on ] && [ "$at" -ge "$slow_to" ]; then
        set_latency 0 && slow=over && log "monolith back to its speed"
    fi
    if [ "$at" -ge "$next_sample" ]; then
        echo "$at $(rss_kb) $(fd_count)" >>"$work/facade-samples.tsv"
        next_sample=$((next_sample + 10))
    fi
    if [ -z "$rss_mid" ] && [ "$at" -ge "$rss_mark" ]; then
        rss_mid=$(rss_kb)
        log "facade at $at s: $((rss_mid / 1024)) MB resident, $(fd_count) open descriptors; $flips flips, $kills kills so far"
    fi
    sleep 0.2
done
[ "$slow" = on ] && set_latency 0
[ -n "$rss_mid" ] || rss_mid=$(rss_kb)
log "faults over ($flips flips, $flip_errors refused or failed, $kills kills, $terminated store connections terminated); the load finishes its orders…"
load_status=0
wait "$load_pid" || load_status=$?
load_pid=""
[ "$load_status" = 0 ] || { echo "error: the load failed (exit $load_status)" >&2; tail -20 "$work/load.log" >&2; exit 1; }
rss_end=$(rss_kb)
end_fds=$(fd_count)
echo "end $rss_end $end_fds" >>"$work/facade-samples.tsv"
# The facade closes pooled upstream connections idle for one to two sweeps
# of 30 s: allow 90 s for the load's extra ones to go.
for _ in $(seq 90); do
    [ "$end_fds" -le "$baseline_fds" ] && break
    sleep 1
    end_fds=$(fd_count)
done
fd_kinds >"$work/fds-end.txt"
log "facade at the end: $((rss_end / 1024)) MB resident, $end_fds open descriptors (baseline $baseline_fds)"

log "reconciling: backfill of the monolith's orders, run, repair --apply, run…"
"$BIN/strangler" backfill orders "${MAPPING[@]}" >"$work/backfill-orders-end.txt"
reconcile() { # NAME ARGS…: the exit code of `strangler reconcile ARGS`
    local name=$1 status=0
    shift
    "$BIN/strangler" reconcile "$@" "${MAPPING[@]}" "${STORE[@]}" >"$work/$name.txt" 2>&1 || status=$?
    echo "$status"
}
first_run=$(reconcile reconcile-first run orders)
repair=$(reconcile repair repair orders --apply)
second_run=$(reconcile reconcile-second run orders)
catalog_run=$(reconcile reconcile-catalog run catalog)
log "reconcile run: exit $first_run; repair --apply: exit $repair; run again: exit $second_run; catalog: exit $catalog_run"

pg "${run_id}_orders" "COPY (SELECT id FROM orders WHERE state IN ('placed', 'cancelled')) TO STDOUT" >"$work/orders-ids.txt"
pg "${run_id}_monolith" "COPY (SELECT id FROM orders) TO STDOUT" >"$work/monolith-ids.txt"
keys_sql="COPY (SELECT idempotency_key, resource_id FROM idempotency_keys
                WHERE scope = 'POST /orders' AND response_status IS NOT NULL) TO STDOUT"
pg "${run_id}_orders" "$keys_sql" >"$work/orders-keys.tsv"
pg "${run_id}_monolith" "$keys_sql" >"$work/monolith-keys.tsv"
"$BIN/strangler" routes history --limit 10000 --output json >"$work/history.json"
grep -h 'panicked at' "$work"/*.log >"$work/panics.txt" || true

python3 - "$work" "$flips" "$kills" "$catalog_kills" "$orders_kills" "$rss_mid" "$rss_end" "$baseline_fds" \
    "$end_fds" "$first_run" "$repair" "$second_run" "$catalog_run" "$SOAK_SECONDS" <<'PY'
import json, sys
(work, flips, kills, catalog_kills, orders_kills, rss_mid, rss_end, baseline_fds, end_fds,
 first_run, repair, second_run, catalog_run, seconds) = sys.argv[1:]
flips, kills, seconds = int(flips), int(kills), int(seconds)
loads = [json.load(open(f"{work}/load-{phase}.json")) for phase in ("warmup", "soak")]
requests = sum(l["requests"] for l in loads)
failed = sum(l["failed"] for l in loads)
acked, answers = [], {}
for phase in ("warmup", "soak"):
    for line in open(f"{work}/acked-{phase}.tsv"):
        key, order_id, _customer, side, fallback = line.rstrip("\n").split("\t")
        acked.append((key, int(order_id)))
        answers[key] = f"acknowledged {order_id} from {side}" + ("" if fallback == "-" else f" (fallback: {fallback})")
ids = lambda name: {int(x) for x in open(f"{work}/{name}-ids.txt").read().split()}
in_orders, in_monolith = ids("orders"), ids("monolith")
lost = [(k, i) for k, i in acked if i not in in_orders or i not in in_monolith]
# Every order an Idempotency-Key created, in either app.
created = {}
for app in ("orders", "monolith"):
    for line in open(f"{work}/{app}-keys.tsv"):
        key, order_id = line.rstrip("\n").split("\t")
        created.setdefault(key, set()).add(int(order_id))
duplicated = {k: f"orders {sorted(v)}, {answers.get(k, 'never acknowledged')}" for k, v in created.items() if len(v) > 1}
unexpected = [(k, i) for k, i in acked if k in created and i not in created[k]]

history = json.load(open(f"{work}/history.json"))
history.sort(key=lambda t: t["id"])
soak_changes = [f'{t["capability"]} {t["to"]}' for t in history if t["reason"] == "soak"]
made = []
for line in open(f"{work}/flips.log"):
    capability, stage = line.split(" ", 1)
    stage = stage.strip()
    made.append(f"{capability} {stage}%" if stage.startswith("canary") else f"{capability} {stage}")
auto = [t for t in history if t["actor"] == "auto-rollback"]

def describe(moment):
    return " / ".join(open(f"{work}/fds-{moment}.txt").read().split("\n")).strip(" /")

growth = (int(rss_end) - int(rss_mid)) * 100.0 / int(rss_mid)
panics = open(f"{work}/panics.txt").read().strip()
checks = [
    ("no failed request at the client", failed == 0,
     f"{failed} failed: " + "; ".join(f'{l["reads"]["failed"]} reads, {l["orders"]["unacknowledged"]} orders unacknowledged' for l in loads)),
    ("every acknowledged order in both databases", not lost,
     f"{len(lost)} lost, e.g. {lost[:5]}"),
    ("no Idempotency-Key created two orders", not duplicated,
     f"{len(duplicated)} keys: " + "; ".join(f"{k}: {v}" for k, v in list(duplicated.items())[:5])),
    ("each acknowledged order is its key's", not unexpected, f"{unexpected[:5]}"),
    ("reconcile run, repair --apply, run: clean", first_run in ("0", "1") and repair in ("0", "1") and second_run == "0",
     f"exits {first_run}, {repair}, {second_run} (0 clean, 1 diverged, 2 error); see reconcile-*.txt, repair.txt"),
    ("catalog reconciles clean", catalog_run == "0", f"exit {catalog_run}"),
    ("facade memory grows < 10%", growth < 10.0, f"{int(rss_mid) / 1024:.1f} MB → {int(rss_end) / 1024:.1f} MB"),
    ("facade descriptors back to baseline", int(end_fds) <= int(baseline_fds),
     f"{end_fds} open, baseline {baseline_fds}; at the baseline: {describe('baseline')}; at the end: {describe('end')}"),
    ("audit log holds every stage change", soak_changes == made,
     f"{len(made)} made, {len(soak_changes)} with reason soak in the log"),
    ("enough faults", flips >= seconds // 6 and int(catalog_kills) > 0 and int(orders_kills) > 0,
     f"{flips} flips (at least {seconds // 6}), {catalog_kills} + {orders_kills} kills"),
    ("no process panicked", not panics, panics[:500]),
]
ok = True
for name, passed, detail in checks:
    print(f"  {'ok  ' if passed else 'FAIL'} {name}" + ("" if passed else f": {detail}"), file=sys.stderr)
    ok = ok and passed
soak = loads[1]
print(f"  load: {json.dumps(soak)}", file=sys.stderr)
samples = [line.split() for line in open(f"{work}/facade-samples.tsv")]
print("  facade every minute (s: MB resident, open descriptors): " + ", ".join(
    f"{at}: {int(kb) / 1024:.1f}, {fds}" for at, kb, fds in samples if at == "end" or int(at) % 60 == 0), file=sys.stderr)
print(f"  automatic rollbacks: {len(auto)}; repair: see {work}/repair.txt", file=sys.stderr)
print(f"soak: {requests} requests, {failed} failed, {len(acked)} orders acknowledged, {len(lost)} lost, "
      f"{sum(len(created[k]) - 1 for k in duplicated)} duplicated, {flips} flips, {kills} kills, rss {growth:+.1f}%")
sys.exit(0 if ok else 1)
PY
