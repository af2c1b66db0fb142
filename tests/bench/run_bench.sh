#!/usr/bin/env bash
# Benchmarks halfpipe against HAProxy (mode tcp), nginx stream and socat, on loopback.
#
# One command, as root on Debian 12, from the repository root:
#
#   tests/bench/run_bench.sh            # full run, about 19 minutes (WORKERS=1: about 12)
#   QUICK=1 tests/bench/run_bench.sh    # smoke run, about 3.5 minutes
#
# It installs what is missing with apt-get (wrk, iperf3, haproxy, nginx,
# libnginx-mod-stream, socat, gnuplot-nox), starts an nginx backend (`return 200 "ok"`),
# an iperf3 server, and the four proxies in front of them on 127.0.0.1 with free ports
# (configs: tests/bench/conf/*.tmpl), runs the tests interleaved and rotated per
# repetition, stops every process it started (by PID), and writes
#   tests/bench/results/latest.md    Markdown tables (medians, ratios to direct)
#   tests/bench/results/latest.json  every run, the summary, the machine, the parameters
#   tests/bench/results/latest.png   req/s and throughput per proxy
#
# The proxies run one worker each (halfpipe --workers 1, HAProxy nbthread 1, nginx
# worker_processes 1), then, in a second pass on their own processes and ports, two
# (socat forks a process per connection and has no worker setting: one-worker pass only).
# Each pass runs both wrk tests at every CONCS value with direct in every repetition;
# iperf3 (one stream: one connection, one worker) and idle memory run in the one-worker
# pass only.
#
# Knobs (environment variables; defaults for the full run, QUICK=1 values in brackets):
#   HALFPIPE_BIN   halfpipe binary            (build/server/halfpipe: build it first)
#   REPS           repetitions                3   [3]
#   DURATION       seconds per wrk run        5   [2]
#   CONCS          wrk connection counts      "10 50 200"   ["50"]
#   WORKERS        worker counts, a pass each ("1" skips the two-worker pass)   "1 2"   ["1 2"]
#   PIN=1          in passes of two workers or more, every proxy keeps each worker on a CPU of
#                  its own: halfpipe --cpu-affinity spread, HAProxy cpu-map, nginx
#                  worker_cpu_affinity auto   (default: the kernel places them)
#   IPERF_SECONDS  seconds per iperf3 run     10  [2]
#   MEM_CONNS      idle relayed connections for the memory test   10000, or what the open-file limit allows   [500]
#   RESULTS_DIR    where latest.* go          tests/bench/results
#   NO_INSTALL=1   do not call apt-get (fail if a tool is missing)
#
# Exit status: 0 when every run produced a number, 1 when some failed (the reports are
# still written, with an "Errors" section).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [[ -z "${HALFPIPE_BIN:-}" ]]; then
    HALFPIPE_BIN="$repo/build/server/halfpipe"
fi
export HALFPIPE_BIN
if [[ ! -x "$HALFPIPE_BIN" ]]; then
    echo "run_bench: no halfpipe binary at $HALFPIPE_BIN (build it, or set HALFPIPE_BIN)" >&2
    exit 2
fi

# --- install what is missing ------------------------------------------------------------
packages=(wrk iperf3 haproxy nginx libnginx-mod-stream socat)
if ! dpkg-query -W -f='${Status}' python3-matplotlib 2>/dev/null | grep -q 'ok installed'; then
    packages+=(gnuplot-nox)   # the chart: gnuplot, or matplotlib when that is already there
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if (( ${#missing[@]} )); then
    if [[ "${NO_INSTALL:-0}" == 1 ]]; then
        echo "run_bench: missing packages: ${missing[*]} (NO_INSTALL=1)" >&2
        exit 2
    fi
    echo "run_bench: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Distribution packages start their service on install unless policy-rc.d says no;
    # this script starts its own instances, so keep the system ones from grabbing port 80.
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get install -y --no-install-recommends "${missing[@]}" ||
        { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
    if (( made_policy )); then rm -f /usr/sbin/policy-rc.d; fi
fi

# --- run, and stop every process we started on the way out -----------------------------
work="$(mktemp -d /tmp/halfpipe-bench.XXXXXX)"
export BENCH_WORK="$work"
bench_pid=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$bench_pid" ]] && kill -0 "$bench_pid" 2>/dev/null; then
        kill -TERM "$bench_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$bench_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$bench_pid" 2>/dev/null || true
    fi
    # bench.py stops its servers itself; this catches whatever it could not (killed hard)
    if [[ -f "$work/pids" ]]; then
        while read -r pid; do
            [[ -n "$pid" ]] || continue
            for child in $(pgrep -P "$pid" 2>/dev/null); do kill -KILL "$child" 2>/dev/null || true; done
            kill -TERM "$pid" 2>/dev/null || true
        done < "$work/pids"
        sleep 0.5
        while read -r pid; do
            [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
        done < "$work/pids"
    fi
    if [[ "${KEEP_WORK:-0}" != 1 ]]; then rm -rf "$work"; else echo "run_bench: logs in $work" >&2; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ulimit -n "$(ulimit -Hn)"   # the memory test holds thousands of sockets
python3 "$here/bench.py" &
bench_pid=$!
wait "$bench_pid"
