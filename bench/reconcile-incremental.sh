#!/usr/bin/env bash
# An incremental reconciliation against a full one, on two PostgreSQL copies
# of an orders table with an indexed `updated_at`: after a clean run,
# 10,000 rows change on both sides (as dual writes change them), and a few
# change on one side only. The incremental run must find exactly those few,
# reading only what changed.
#
#   bash bench/reconcile.sh incremental              # 10M rows
#   bash bench/reconcile.sh incremental 1000000      # 1M rows
#   ROUNDS=1 bash bench/reconcile-incremental.sh 100000
#
# Environment: ROUNDS (default 3; medians), PGURL_BASE (default
# postgres://postgres@127.0.0.1:5432), KEEP=1 keeps the databases.
#
# Changes after the clean run, on both sides alike unless said:
#   9,400 updates, 300 inserts, 300 deletes     10,000 changed rows, equal;
#   20 updates in the service only               changed;
#   10 updates in the service only, with a change time 3 minutes behind
#      (an application server whose clock is late; the overlap is 5 min)
#                                                changed;
#   10 inserts in the monolith only              missing in the service;
#   5 deletes of old rows in the service only    missing, found by counts.
# Every run's JSON report must show exactly 15 missing, 0 extra, 30 changed,
# except the incremental run with `incremental_deletes = "full_runs"`, which
# leaves the 5 one-sided deletes to full runs: 10 missing.
#
# Runs, interleaved per round:
#   incremental          the default: changed rows, then each side's row
#                        count and key sum, then the ranges whose counts differ;
#   incremental-light    `incremental_deletes = "full_runs"`: changed rows only;
#   incremental-clean    the default against a third copy, made from the
#                        monolith's after the changes: the 10,010 changed rows
#                        and nothing diverged, as most runs find it;
#   full                 every row (`auto`).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${1:-10000000}
ROUNDS=${ROUNDS:-3}
PGURL_BASE=${PGURL_BASE:-postgres://postgres@127.0.0.1:5432}
DB_PREFIX=strangler_bench_inc
BIN=target/release/examples/reconcile

for tool in psql /usr/bin/time python3 bc; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d)
cleanup() {
    if [ "${KEEP:-0}" != 1 ]; then
        for db in legacy service twin; do
            psql -q "$PGURL_BASE/postgres" -c "DROP DATABASE IF EXISTS ${DB_PREFIX}_$db" 2>/dev/null || true
        done
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "building the reconciler (release)…" >&2
cargo build --release -q -p reconciler --example reconcile

pg() { psql -qAtX -v ON_ERROR_STOP=1 "$PGURL_BASE/$1" -c "$2"; }
now() { date +%s.%N; }

echo "filling PostgreSQL with $ROWS rows…" >&2
t0=$(now)
pg postgres "DROP DATABASE IF EXISTS ${DB_PREFIX}_legacy"
pg postgres "CREATE DATABASE ${DB_PREFIX}_legacy"
pg "${DB_PREFIX}_legacy" "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id integer NOT NULL,
    status text NOT NULL, total_cents bigint NOT NULL, updated_at timestamptz NOT NULL)"
pg "${DB_PREFIX}_legacy" "INSERT INTO orders SELECT g, (g * 7919) % 100000,
    (ARRAY['placed','paid','shipped','delivered','cancelled'])[g % 5 + 1], (g * 37) % 100000,
    timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
    FROM generate_series(1::bigint, $ROWS) g"
# The index incremental runs read changed rows through.
pg "${DB_PREFIX}_legacy" "CREATE INDEX orders_updated_at ON orders (updated_at)"
pg "${DB_PREFIX}_legacy" "VACUUM ANALYZE orders"
pg postgres "DROP DATABASE IF EXISTS ${DB_PREFIX}_service"
pg postgres "CREATE DATABASE ${DB_PREFIX}_service TEMPLATE ${DB_PREFIX}_legacy"
echo "  ready in $(printf %.1f "$(echo "$(now) - $t0" | bc)") s" >&2

cat > "$work/mapping.toml" <<'EOF'
[capabilities.orders]
incremental_overlap = "5m"

[[capabilities.orders.tables]]
legacy = "orders"
service = "orders"
key = ["id"]
columns = { id = "id", customer_id = "customer_id", status = "status", total_cents = "total_cents", updated_at = "updated_at" }
updated_at_column = "updated_at"

[capabilities.orders_light]
incremental_overlap = "5m"
incremental_deletes = "full_runs"

[[capabilities.orders_light.tables]]
legacy = "orders"
service = "orders"
key = ["id"]
columns = { id = "id", customer_id = "customer_id", status = "status", total_cents = "total_cents", updated_at = "updated_at" }
updated_at_column = "updated_at"
EOF

# The clean run this is incremental from: both copies are equal now.
clean_from=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
sleep 1
step=$(( ROWS / 10000 ))
for db in legacy service; do
    pg "${DB_PREFIX}_$db" "UPDATE orders SET status = 'paid', total_cents = total_cents + 1,
        updated_at = timestamptz '$clean_from' + interval '1 second'
        WHERE id % $step = 1 AND id <= $(( step * 9400 ))"
    pg "${DB_PREFIX}_$db" "DELETE FROM orders WHERE id % $step = 2 AND id <= $(( step * 300 ))"
    pg "${DB_PREFIX}_$db" "INSERT INTO orders SELECT $ROWS + g, 1, 'placed', 100,
        timestamptz '$clean_from' + interval '1 second' FROM generate_series(1, 300) g"
done
svc="${DB_PREFIX}_service"
pg "$svc" "UPDATE orders SET status = 'refunded', updated_at = timestamptz '$clean_from' + interval '2 seconds'
    WHERE id % $step = 3 AND id <= $(( step * 20 ))"
pg "$svc" "UPDATE orders SET status = 'refunded', updated_at = timestamptz '$clean_from' - interval '3 minutes'
    WHERE id % $step = 4 AND id <= $(( step * 10 ))"
pg "${DB_PREFIX}_legacy" "INSERT INTO orders SELECT $ROWS + 1000 + g, 1, 'placed', 100,
    timestamptz '$clean_from' + interval '1 second' FROM generate_series(1, 10) g"
pg "$svc" "DELETE FROM orders WHERE id % $step = 5 AND id <= $(( step * 5 ))"
for db in legacy service; do pg "${DB_PREFIX}_$db" "VACUUM ANALYZE orders"; done
# The monolith's twin, for the run that finds nothing.
pg postgres "DROP DATABASE IF EXISTS ${DB_PREFIX}_twin"
pg postgres "CREATE DATABASE ${DB_PREFIX}_twin TEMPLATE ${DB_PREFIX}_legacy"
expected="15 0 30"

# run KIND: prints "seconds peak_kib missing extra changed strategies rows_read".
run() {
    local t0 t1 status=0 capability=orders since= service=$svc
    case $1 in
        incremental) since=$clean_from ;;
        incremental-light) since=$clean_from capability=orders_light ;;
        incremental-clean) since=$clean_from service=${DB_PREFIX}_twin ;;
    esac
    t0=$(now)
    if [ -n "$since" ]; then export RECONCILE_SINCE=$since; else unset RECONCILE_SINCE; fi
    /usr/bin/time -v -o "$work/time.txt" "$BIN" "$work/mapping.toml" "$capability" \
        "$PGURL_BASE/${DB_PREFIX}_legacy" "$PGURL_BASE/$service" auto >"$work/report.json" 2>"$work/stderr.txt" || status=$?
    t1=$(now)
    if [ "$status" -gt 1 ]; then
        echo "error: the $1 run failed (exit $status):" >&2
        cat "$work/stderr.txt" >&2
        exit 1
    fi
    python3 - "$work/report.json" "$(echo "$t1 - $t0" | bc)" \
        "$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["totals"]
fetched = sum(x["rows_fetched"] for x in r["tables"])
methods = ",".join(sorted({x["strategy"] for x in r["tables"]}))
print(sys.argv[2], sys.argv[3], t["missing"], t["extra"], t["changed"], methods, fetched)
EOF
}

results="$work/results.txt"
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
    for kind in incremental incremental-light incremental-clean full; do
        read -r secs kib m x c method fetched < <(run "$kind")
        want=$expected
        [ "$kind" = incremental-light ] && want="10 0 30"
        [ "$kind" = incremental-clean ] && want="0 0 0"
        if [ "$m $x $c" != "$want" ]; then
            echo "error: the $kind run found missing/extra/changed $m $x $c, expected $want" >&2
            exit 1
        fi
        echo "$kind $method $secs $kib $fetched" >>"$results"
        echo "  round $round: $kind ($method) $(printf %.2f "$secs") s, $fetched rows read, $((kib / 1024)) MB" >&2
    done
done

echo
echo "rows: $ROWS, 10,000 changed on both sides + 45 divergences, rounds: $ROUNDS (medians), $(nproc) cores, $(date -u +%Y-%m-%d)"
python3 - "$results" <<'EOF'
import statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    kind, method, secs, kib, fetched = line.split()
    runs[kind].append((float(secs), int(kib), method, int(fetched)))
print("| run | used | seconds | rows read | peak RSS MB |")
print("|---|---|---|---|---|")
for kind in ("incremental", "incremental-light", "incremental-clean", "full"):
    r = runs[kind]
    print(f"| {kind} | {r[-1][2]} | {statistics.median(x[0] for x in r):.2f} | {r[-1][3]} | {max(x[1] for x in r) / 1024:.0f} |")
EOF
