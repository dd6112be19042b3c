#!/usr/bin/env bash
# The reconciler against its floor: how long it takes to find exactly the
# injected differences between two copies of an orders table, side by side
# with the time it takes merely to stream both tables out sorted by key.
#
#   bash bench/reconcile.sh              # 1M rows: PG dense, PG sparse, MariaDB->PG dense
#   bash bench/reconcile.sh 10000000     # 10M rows (long: about 10 minutes)
#   ROUNDS=1 CASES="pg-sparse" STRATEGIES="auto" bash bench/reconcile.sh 100000
#   bash bench/reconcile.sh incremental  # incremental against full, 10M rows
#                                        # (bench/reconcile-incremental.sh)
#
# Environment: ROUNDS (default 3; medians are reported), CASES (any of
# pg-dense pg-sparse my-dense mm-sparse; default the first three, and only the PG cases
# above 1M rows), STRATEGIES (default "merge bisect auto"), PGURL_BASE
# (default postgres://postgres@127.0.0.1:5432), MYSQL_ARGS (default
# "-h 127.0.0.1 -P 3306 -u root"), KEEP=1 keeps the databases, LINKS (any
# of loopback shaped; default loopback).
#
# LINKS=shaped puts PostgreSQL across a shaped link (root only): a network
# namespace `strangler_bench_net` joined to this one by a veth pair, each
# end shaped to RATE (default 100mbit) by `tc tbf`, and a forwarder
# (bench/delay_forwarder.py) on the host end that holds every byte DELAY_MS
# (default 5) each way and relays to PostgreSQL. The reconciler and the
# floor's psql both run inside the namespace, so both cross the link. The
# delay is added in user space because `tc netem` is often missing from VM
# kernels (this machine's among them); where netem exists, the forwarder
# adds the same delay that netem would. All of it is torn down at the end.
#   LINKS="loopback shaped" CASES="pg-dense pg-sparse" bash bench/reconcile.sh
#
# mm-sparse compares the MariaDB monolith with a MariaDB service copy
# holding the sparse case's differences: one engine, so bisection applies
# (checksums are MD5 slices on MariaDB).
#
# The floor is both sides streamed out at once, sorted by key, into
# /dev/null: `COPY (SELECT … ORDER BY id) TO STDOUT` through psql for
# PostgreSQL, `mysql --quick -e "SELECT … ORDER BY id"` for MariaDB. The two
# run in parallel because the reconciler reads both sides at once; run one
# after the other they would make a floor twice as high and every ratio
# look twice as good. A round measures the floor and then each strategy, so
# every ratio compares figures taken under the same machine load.
#
# Differences, applied to copies that start identical:
#   dense   0.1% of the rows, a third each missing (deleted from the
#           service), extra (deleted from the monolith) and changed (status
#           and total changed in the service), spread evenly over the keys;
#   sparse  5 rows: 2 missing, 1 extra, 2 changed.
# Each run's JSON report must show exactly those counts or the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = incremental ]; then
    shift
    exec bash bench/reconcile-incremental.sh "$@"
fi

ROWS=${1:-1000000}
ROUNDS=${ROUNDS:-3}
STRATEGIES=${STRATEGIES:-merge bisect auto}
if [ -z "${CASES:-}" ]; then
    if [ "$ROWS" -gt 1000000 ]; then CASES="pg-dense pg-sparse"; else CASES="pg-dense pg-sparse my-dense"; fi
fi
PGURL_BASE=${PGURL_BASE:-postgres://postgres@127.0.0.1:5432}
MYSQL_ARGS=${MYSQL_ARGS:--h 127.0.0.1 -P 3306 -u root}
DB_PREFIX=strangler_bench
LINKS=${LINKS:-loopback}
RATE=${RATE:-100mbit}
DELAY_MS=${DELAY_MS:-5}
NETNS=strangler_bench_net
SHAPED_PG=postgres://postgres@10.77.0.1:6432
# The reconciler as `strangler reconcile run` calls it, minus the CLI's
# other dependencies (reconciler/examples/reconcile.rs).
BIN=target/release/examples/reconcile

for tool in psql /usr/bin/time python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done
case " $CASES " in *" my-"*)
    command -v mysql >/dev/null || { echo "error: the mysql client is not installed (apt-get install mariadb-client)" >&2; exit 1; } ;;
esac

work=$(mktemp -d)
cleanup() {
    if [ "${KEEP:-0}" != 1 ]; then
        for db in legacy dense sparse base; do
            psql -q "$PGURL_BASE/postgres" -c "DROP DATABASE IF EXISTS ${DB_PREFIX}_$db" 2>/dev/null || true
        done
        # shellcheck disable=SC2086
        mysql $MYSQL_ARGS -e "DROP DATABASE IF EXISTS ${DB_PREFIX}_legacy; DROP DATABASE IF EXISTS ${DB_PREFIX}_sparse" 2>/dev/null || true
    fi
    if [ -n "${forwarder:-}" ]; then kill "$forwarder" 2>/dev/null || true; fi
    ip netns del "$NETNS" 2>/dev/null || true
    ip link del sbench0 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

case " $LINKS " in *" shaped "*)
    [ "$(id -u)" = 0 ] || { echo "error: LINKS=shaped needs root (network namespaces)" >&2; exit 1; }
    command -v tc >/dev/null || { echo "error: tc is not installed (apt-get install iproute2)" >&2; exit 1; }
    ip netns del "$NETNS" 2>/dev/null || true
    ip link del sbench0 2>/dev/null || true
    ip netns add "$NETNS"
    ip link add sbench0 type veth peer name sbench1
    ip link set sbench1 netns "$NETNS"
    ip addr add 10.77.0.1/24 dev sbench0
    ip link set sbench0 up
    ip netns exec "$NETNS" ip addr add 10.77.0.2/24 dev sbench1
    ip netns exec "$NETNS" ip link set sbench1 up
    ip netns exec "$NETNS" ip link set lo up
    tc qdisc add dev sbench0 root tbf rate "$RATE" burst 128kb latency 50ms
    ip netns exec "$NETNS" tc qdisc add dev sbench1 root tbf rate "$RATE" burst 128kb latency 50ms
    python3 bench/delay_forwarder.py 10.77.0.1 6432 127.0.0.1 "${PGURL_BASE##*:}" "$DELAY_MS" >"$work/forwarder.log" 2>&1 &
    forwarder=$!
    for _ in $(seq 1 50); do grep -q ready "$work/forwarder.log" 2>/dev/null && break; sleep 0.1; done
    grep -q ready "$work/forwarder.log" || { echo "error: the delay forwarder did not start:" >&2; cat "$work/forwarder.log" >&2; exit 1; }
    echo "shaped link: $RATE each way through tbf, ${DELAY_MS} ms each way through the forwarder" >&2
    ;;
esac

echo "building the reconciler (release)…" >&2
cargo build --release -q -p reconciler --example reconcile

pg() { psql -qAtX -v ON_ERROR_STOP=1 "$PGURL_BASE/$1" -c "$2"; }
# shellcheck disable=SC2086
my() { mysql $MYSQL_ARGS -N -B "$@"; }
now() { date +%s.%N; }

COLUMNS_SQL="id, customer_id, status, total_cents, created_at"
# Deterministic rows from the key, so that both sides start identical.
PG_ROWS="SELECT g, (g * 7919) % 100000, (ARRAY['placed','paid','shipped','delivered','cancelled'])[g % 5 + 1],
         (g * 37) % 100000, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
         FROM generate_series(1::bigint, $ROWS) g"
PG_TABLE="CREATE TABLE orders (id bigint PRIMARY KEY, customer_id integer NOT NULL, status text NOT NULL,
          total_cents bigint NOT NULL, created_at timestamptz NOT NULL)"

# Which keys differ. Dense: per 3,000 keys, one of each kind.
dense_missing="id % 3000 = 1"
dense_extra="id % 3000 = 1001"
dense_changed="id % 3000 = 2001"
s() { echo $(( ROWS * $1 / 7 + 3 )); }
sparse_missing="id IN ($(s 1), $(s 4))"
sparse_extra="id IN ($(s 2))"
sparse_changed="id IN ($(s 3), $(s 6))"
CHANGE="status = 'refunded', total_cents = total_cents + 1"

echo "filling PostgreSQL with $ROWS rows…" >&2
t0=$(now)
pg postgres "DROP DATABASE IF EXISTS ${DB_PREFIX}_base"
pg postgres "CREATE DATABASE ${DB_PREFIX}_base"
pg "${DB_PREFIX}_base" "$PG_TABLE"
pg "${DB_PREFIX}_base" "INSERT INTO orders ($COLUMNS_SQL) $PG_ROWS"
pg "${DB_PREFIX}_base" "VACUUM ANALYZE orders"
# Byte copies of the filled database are much faster than filling again.
for db in legacy dense sparse; do
    pg postgres "DROP DATABASE IF EXISTS ${DB_PREFIX}_$db"
    pg postgres "CREATE DATABASE ${DB_PREFIX}_$db TEMPLATE ${DB_PREFIX}_base"
done
pg postgres "DROP DATABASE ${DB_PREFIX}_base"
count() { pg "$1" "WITH d AS ($2 RETURNING 1) SELECT count(*) FROM d"; }
# The monolith's copy serves both cases: the extra keys of the two cases are
# deleted from it, and each service copy gets its own missing/changed keys
# plus the other case's extra keys deleted, so that those are not differences.
dense_x=$(count "${DB_PREFIX}_legacy" "DELETE FROM orders WHERE $dense_extra")
sparse_x=$(count "${DB_PREFIX}_legacy" "DELETE FROM orders WHERE $sparse_extra")
pg "${DB_PREFIX}_dense" "DELETE FROM orders WHERE $sparse_extra" >/dev/null
pg "${DB_PREFIX}_sparse" "DELETE FROM orders WHERE $dense_extra" >/dev/null
dense_m=$(count "${DB_PREFIX}_dense" "DELETE FROM orders WHERE $dense_missing")
dense_c=$(count "${DB_PREFIX}_dense" "UPDATE orders SET $CHANGE WHERE $dense_changed")
sparse_m=$(count "${DB_PREFIX}_sparse" "DELETE FROM orders WHERE $sparse_missing")
sparse_c=$(count "${DB_PREFIX}_sparse" "UPDATE orders SET $CHANGE WHERE $sparse_changed")
for db in legacy dense sparse; do pg "${DB_PREFIX}_$db" "VACUUM ANALYZE orders"; done
echo "  PostgreSQL ready in $(printf %.1f "$(echo "$(now) - $t0" | bc)") s" >&2

case " $CASES " in *" my-dense "*|*" mm-sparse "*)
    echo "filling MariaDB with $ROWS rows…" >&2
    t0=$(now)
    my -e "DROP DATABASE IF EXISTS ${DB_PREFIX}_legacy; CREATE DATABASE ${DB_PREFIX}_legacy"
    my "${DB_PREFIX}_legacy" -e "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INT NOT NULL,
        status VARCHAR(20) NOT NULL, total_cents BIGINT NOT NULL, created_at DATETIME(6) NOT NULL)"
    my "${DB_PREFIX}_legacy" -e "SET SESSION unique_checks = 0;
        INSERT INTO orders ($COLUMNS_SQL)
        SELECT seq, (seq * 7919) % 100000, ELT(seq % 5 + 1, 'placed','paid','shipped','delivered','cancelled'),
               (seq * 37) % 100000, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND
        FROM seq_1_to_$ROWS;
        DELETE FROM orders WHERE $dense_extra OR $sparse_extra;
        ANALYZE TABLE orders" >/dev/null
    # mm-sparse: a MariaDB service copy with the sparse case's differences,
    # compared with the MariaDB monolith (the same engine: checksums apply).
    my -e "DROP DATABASE IF EXISTS ${DB_PREFIX}_sparse; CREATE DATABASE ${DB_PREFIX}_sparse"
    my "${DB_PREFIX}_sparse" -e "CREATE TABLE orders LIKE ${DB_PREFIX}_legacy.orders;
        INSERT INTO orders SELECT * FROM ${DB_PREFIX}_legacy.orders;
        INSERT INTO orders ($COLUMNS_SQL)
        SELECT seq, (seq * 7919) % 100000, ELT(seq % 5 + 1, 'placed','paid','shipped','delivered','cancelled'),
               (seq * 37) % 100000, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND
        FROM seq_1_to_$ROWS WHERE $(echo "$sparse_extra" | sed 's/^id/seq/');
        DELETE FROM orders WHERE $sparse_missing;
        UPDATE orders SET $CHANGE WHERE $sparse_changed;
        ANALYZE TABLE orders" >/dev/null
    echo "  MariaDB ready in $(printf %.1f "$(echo "$(now) - $t0" | bc)") s" >&2
    ;;
esac

cat > "$work/mapping.toml" <<'EOF'
[[capabilities.orders.tables]]
legacy = "orders"
service = "orders"
key = ["id"]
columns = { id = "id", customer_id = "customer_id", status = "status", total_cents = "total_cents", created_at = "created_at" }

# Across engines the timestamps are spelled differently (2024-01-01
# 00:00:01+00 against 2024-01-01 00:00:01.000000): compare them as instants.
[[capabilities.orders_x.tables]]
legacy = "orders"
service = "orders"
key = ["id"]
columns = { id = "id", customer_id = "customer_id", status = "status", total_cents = "total_cents", created_at = "created_at" }
normalize = { created_at = "timestamp_ms" }
EOF

# through LINK CMD…: runs CMD inside the shaped link's namespace or here.
through() {
    local link=$1
    shift
    if [ "$link" = shaped ]; then ip netns exec "$NETNS" "$@"; else "$@"; fi
}
# pg_base LINK: where PostgreSQL is reached over LINK.
pg_base() { if [ "$1" = shaped ]; then echo "$SHAPED_PG"; else echo "$PGURL_BASE"; fi; }

# floor CASE LINK: both sides streamed out sorted, in parallel; prints seconds.
floor() {
    local service="${DB_PREFIX}_${1#*-}" link=$2 t0 base
    base=$(pg_base "$link")
    t0=$(now)
    if [ "${1%%-*}" = mm ]; then
        my --quick "${DB_PREFIX}_legacy" -e "SELECT $COLUMNS_SQL FROM orders ORDER BY id" >/dev/null &
        my --quick "${DB_PREFIX}_sparse" -e "SELECT $COLUMNS_SQL FROM orders ORDER BY id" >/dev/null &
        wait
        echo "$(now) - $t0" | bc
        return
    elif [ "${1%%-*}" = my ]; then
        my --quick "${DB_PREFIX}_legacy" -e "SELECT $COLUMNS_SQL FROM orders ORDER BY id" >/dev/null &
    else
        through "$link" psql -qAtX "$base/${DB_PREFIX}_legacy" -c "COPY (SELECT $COLUMNS_SQL FROM orders ORDER BY id) TO STDOUT" >/dev/null &
    fi
    through "$link" psql -qAtX "$base/$service" -c "COPY (SELECT $COLUMNS_SQL FROM orders ORDER BY id) TO STDOUT" >/dev/null &
    wait
    echo "$(now) - $t0" | bc
}

# reconcile CASE STRATEGY LINK: prints "seconds peak_kib missing extra changed".
reconcile() {
    local case=$1 strategy=$2 link=$3 legacy capability=orders base
    base=$(pg_base "$link")
    local service="$base/${DB_PREFIX}_${case#*-}"
    if [ "${case%%-*}" = my ]; then
        legacy="mysql://root@127.0.0.1:3306/${DB_PREFIX}_legacy"
        capability=orders_x
    elif [ "${case%%-*}" = mm ]; then
        legacy="mysql://root@127.0.0.1:3306/${DB_PREFIX}_legacy"
        service="mysql://root@127.0.0.1:3306/${DB_PREFIX}_${case#*-}"
    else
        legacy="$base/${DB_PREFIX}_legacy"
    fi
    local t0 t1 status=0
    t0=$(now)
    through "$link" /usr/bin/time -v -o "$work/time.txt" "$BIN" "$work/mapping.toml" "$capability" \
        "$legacy" "$service" "$strategy" >"$work/report.json" 2>"$work/stderr.txt" || status=$?
    t1=$(now)
    if [ "$status" -gt 1 ]; then
        echo "error: $case $strategy failed (exit $status):" >&2
        cat "$work/stderr.txt" >&2
        exit 1
    fi
    local kib
    kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
    python3 - "$work/report.json" "$(echo "$t1 - $t0" | bc)" "$kib" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["totals"]
methods = ",".join(sorted({x["strategy"] for x in r["tables"]}))
print(sys.argv[2], sys.argv[3], t["missing"], t["extra"], t["changed"], methods)
EOF
}

# MariaDB's copy lacks both cases' extra keys, as the PostgreSQL monolith's
# does, and is compared with the dense service copy.
declare -A expected=(
    [pg-dense]="$dense_m $dense_x $dense_c" [pg-sparse]="$sparse_m $sparse_x $sparse_c"
    [my-dense]="$dense_m $dense_x $dense_c"
    [mm-sparse]="$sparse_m $sparse_x $sparse_c"
)

results="$work/results.txt"
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
    for link in $LINKS; do
        for case in $CASES; do
            # MariaDB is not put behind the shaped link.
            if [ "$link" = shaped ] && [ "${case%%-*}" != pg ]; then continue; fi
            label=$case
            [ "$link" = loopback ] || label="$case@$link"
            f=$(floor "$case" "$link")
            echo "$round $label floor - $f 0 - - -" >>"$results"
            for strategy in $STRATEGIES; do
                read -r secs kib m x c method < <(reconcile "$case" "$strategy" "$link")
                if [ "$m $x $c" != "${expected[$case]}" ]; then
                    echo "error: $label $strategy found missing/extra/changed $m $x $c, injected ${expected[$case]}" >&2
                    exit 1
                fi
                echo "$round $label $strategy $method $secs $kib $m $x $c $f" >>"$results"
                echo "  round $round $label: floor $(printf %.2f "$f") s, $strategy ($method) $(printf %.2f "$secs") s, $((kib / 1024)) MB" >&2
            done
        done
    done
done

echo
echo "rows: $ROWS, rounds: $ROUNDS (medians), $(nproc) cores, $(date -u +%Y-%m-%d)"
python3 - "$results" <<'EOF'
import statistics, sys
from collections import defaultdict
# The ratio to the floor is taken per round (against that round's floor),
# then the median over rounds: the machine is shared, and a figure and its
# floor measured seconds apart see the same load.
runs = defaultdict(list)
order = []
for line in open(sys.argv[1]):
    fields = line.split()
    round_, case, strategy, method, secs, kib, m, x, c = fields[:9]
    floor = float(fields[9]) if len(fields) > 9 else float(secs)
    if (case, strategy) not in runs:
        order.append((case, strategy))
    runs[(case, strategy)].append((float(secs), int(kib), method, m, x, c, float(secs) / floor))
print("| case | strategy | used | seconds | × floor | peak RSS MB | missing | extra | changed |")
print("|---|---|---|---|---|---|---|---|---|")
for case, strategy in order:
    r = runs[(case, strategy)]
    secs = statistics.median(x[0] for x in r)
    if strategy == "floor":
        print(f"| {case} | floor (both sides streamed, in parallel) | | {secs:.2f} | 1.00 | | | | |")
        continue
    ratio = statistics.median(x[6] for x in r)
    kib = max(x[1] for x in r)
    _, _, method, m, x, c, _ = r[-1]
    print(f"| {case} | {strategy} | {method} | {secs:.2f} | {ratio:.2f} | {kib / 1024:.0f} | {m} | {x} | {c} |")
# `auto` against the better forced strategy of the same case, per round.
print()
for case in dict.fromkeys(c for c, _ in order):
    forced = [s for s in ("merge", "bisect") if (case, s) in runs]
    if (case, "auto") not in runs or not forced:
        continue
    rounds = len(runs[(case, "auto")])
    per_round = [
        runs[(case, "auto")][i][0] / min(runs[(case, s)][i][0] for s in forced)
        for i in range(rounds)
    ]
    best = min(forced, key=lambda s: statistics.median(x[0] for x in runs[(case, s)]))
    line = f"{case}: auto / best forced ({best}) = {statistics.median(per_round):.2f}"
    if (case, "merge") in runs and (case, "bisect") in runs:
        speedup = statistics.median(
            runs[(case, "merge")][i][0] / runs[(case, "bisect")][i][0] for i in range(rounds)
        )
        line += f"; merge / bisect = {speedup:.2f}"
    print(line)
EOF
