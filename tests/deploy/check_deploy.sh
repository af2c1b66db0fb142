#!/usr/bin/env bash
# Checks of the deployment files (deploy/) and the Grafana dashboard (dashboards/):
# Prometheus config and alert rules (promtool, with unit tests), every dashboard PromQL
# parsed by promtool and checked against the metrics halfpipe exports
# (tests/deploy/exported_metrics.txt), the systemd unit, the sysctl file, the Kubernetes
# manifests and the Dockerfile. Needs promtool (Debian package prometheus, installed by
# `deploy/install-deps.sh test`) and python3 with PyYAML (python3-yaml).
#
# Run from anywhere: tests/deploy/check_deploy.sh. Checks that need the halfpipe binary
# use $HALFPIPE_BIN, else build/server/halfpipe, and are skipped without it.
# Exits 1 if any check failed; the last line reads "N passed, N failed, N skipped".
set -u

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT" || exit 1
CHECKS=tests/deploy/deploy_checks.py

passed=0 failed=0 skipped=0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

indent() { sed 's/^/    /'; }

# check NAME COMMAND...: exit 0 passes, 77 skips, anything else fails.
check() {
  local name=$1 out rc
  shift
  out="$("$@" 2>&1)"
  rc=$?
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1)); echo "PASS: $name"
  elif [ "$rc" -eq 77 ]; then
    skipped=$((skipped + 1)); echo "SKIP: $name"
  else
    failed=$((failed + 1)); echo "FAIL: $name (exit $rc)"
  fi
  [ -n "$out" ] && printf '%s\n' "$out" | indent
  return 0
}

skip() {
  skipped=$((skipped + 1)); echo "SKIP: $1: $2"
}

missing() {
  failed=$((failed + 1)); echo "FAIL: $1: $2"
}

# --- tools ----------------------------------------------------------------------------------
PROMTOOL="$(command -v promtool || true)"
PY=""
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import yaml' >/dev/null 2>&1; then
    PY="$p"; break
  fi
done
PY_ANY="$(command -v python3 || true)"
[ -z "$PY" ] && echo "note: no python3 with PyYAML (apt-get install python3-yaml): YAML checks skipped"

BIN="${HALFPIPE_BIN:-$ROOT/build/server/halfpipe}"
[ -x "$BIN" ] || BIN=""

# --- Prometheus -----------------------------------------------------------------------------
if [ -n "$PROMTOOL" ]; then
  check "promtool check config deploy/prometheus/prometheus.yml" \
    "$PROMTOOL" check config deploy/prometheus/prometheus.yml
  check "promtool check rules deploy/prometheus/halfpipe.rules.yml" \
    "$PROMTOOL" check rules deploy/prometheus/halfpipe.rules.yml
  check "promtool test rules deploy/prometheus/halfpipe.rules.test.yml" \
    "$PROMTOOL" test rules deploy/prometheus/halfpipe.rules.test.yml
else
  missing "promtool" "not installed (Debian package prometheus: deploy/install-deps.sh test)"
fi
if [ -n "$PY" ]; then
  check "alert rules use only exported metrics" "$PY" "$CHECKS" rules-metrics
else
  skip "alert rules use only exported metrics" "no PyYAML"
fi

# --- dashboard ------------------------------------------------------------------------------
dashboard_promql() {
  local rc=0
  "$PY_ANY" "$CHECKS" dashboard-rules "$tmp/dashboard.rules.yml" || rc=1
  [ -s "$tmp/dashboard.rules.yml" ] || return 1
  "$PROMTOOL" check rules "$tmp/dashboard.rules.yml" || rc=1
  return "$rc"
}
if [ -n "$PY_ANY" ]; then
  check "dashboard structure (dashboards/halfpipe.json)" "$PY_ANY" "$CHECKS" dashboard-structure
  if [ -n "$PROMTOOL" ]; then
    check "dashboard PromQL parses (promtool check rules on every panel expr)" dashboard_promql
  else
    missing "dashboard PromQL parses" "no promtool"
  fi
  check "dashboard uses only exported metrics" "$PY_ANY" "$CHECKS" dashboard-metrics
else
  missing "dashboard checks" "no python3"
fi

# --- systemd --------------------------------------------------------------------------------
if [ -n "$PY_ANY" ]; then
  check "systemd unit hardening (deploy/halfpipe.service)" "$PY_ANY" "$CHECKS" unit deploy/halfpipe.service
fi
systemd_verify() {
  # verify insists that the binaries of ExecStart= and ExecReload= exist: check a copy that
  # points at the built binary, or at /bin/true when there is none. Any warning counts as a
  # failure.
  local exe="${BIN:-/bin/true}" out rc
  sed -E "s#^(ExecStart|ExecReload)=/usr/local/bin/halfpipe #\1=$exe #" deploy/halfpipe.service > "$tmp/halfpipe.service"
  out="$(systemd-analyze verify --man=no "$tmp/halfpipe.service" 2>&1)"
  rc=$?
  [ -n "$out" ] && printf '%s\n' "$out"
  [ "$rc" -eq 0 ] && [ -z "$out" ]
}
if command -v systemd-analyze >/dev/null 2>&1; then
  check "systemd-analyze verify deploy/halfpipe.service" systemd_verify
else
  skip "systemd-analyze verify deploy/halfpipe.service" "systemd-analyze not installed"
fi

# --- sysctl ---------------------------------------------------------------------------------
if [ -n "$PY_ANY" ]; then
  check "sysctl settings (deploy/sysctl.d/90-halfpipe.conf)" "$PY_ANY" "$CHECKS" sysctl deploy/sysctl.d/90-halfpipe.conf
fi

# --- Kubernetes -----------------------------------------------------------------------------
if [ -n "$PY" ]; then
  check "Kubernetes manifests parse and agree (deploy/kubernetes)" \
    "$PY" "$CHECKS" k8s deploy/kubernetes "$tmp/configmap-halfpipe.yaml"
  if [ -n "$BIN" ] && [ -s "$tmp/configmap-halfpipe.yaml" ]; then
    check "ConfigMap halfpipe.yaml passes halfpipe --check" \
      "$BIN" --config "$tmp/configmap-halfpipe.yaml" --check
  else
    skip "ConfigMap halfpipe.yaml passes halfpipe --check" "no halfpipe binary (set HALFPIPE_BIN or build it)"
  fi
else
  skip "Kubernetes manifests" "no PyYAML"
fi

# --- Docker ---------------------------------------------------------------------------------
if [ -n "$PY_ANY" ]; then
  check "Dockerfile (deploy/Dockerfile)" "$PY_ANY" "$CHECKS" dockerfile deploy/Dockerfile
fi

# --- the binary's own /metrics ----------------------------------------------------------------
if [ -n "$BIN" ] && [ -n "$PY_ANY" ]; then
  check "exported_metrics.txt matches the binary's /metrics" "$PY_ANY" "$CHECKS" live-metrics "$BIN"
else
  skip "exported_metrics.txt matches the binary's /metrics" "no halfpipe binary"
fi

echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
