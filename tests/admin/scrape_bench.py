#!/usr/bin/env python3
"""Benchmark (not a test): what a Prometheus scrape costs with ~9,900 live relayed connections.

1. Opens CONNECTIONS idle relayed connections through halfpipe (each proven to relay
   8 bytes both ways). The upstream peers live in a child process: every process has
   its own descriptor limit (20,000 here), and halfpipe needs two per connection.
2. Times GET /metrics: median, p99 and max over 50 scrapes (keep-alive), and the same
   with no connection open, for reference; also GET /connections.
3. Measures the relay's round trip on one ping-pong connection (64 bytes, client ->
   halfpipe -> echo -> halfpipe -> client) with nothing else going on, then while a
   separate process scrapes /metrics back to back, then while one polls /connections.

Usage: scrape_bench.py [HALFPIPE_BINARY]
Environment: BENCH_CONNECTIONS (default 9900), BENCH_PHASE_SECONDS (ping-pong time per
phase, default 4; phases idle / scraping alternate twice, so that load drifting on a
shared machine hits both), BENCH_SCRAPES (default 50), BENCH_WORKERS (halfpipe
--workers, default: its own).
Prints FIGURE lines; exits 0 unless the setup itself fails. The target: a scrape
under 50 ms, and no stall of the relay while scraping.
"""
import http.client
import json
import math
import os
import select
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from halfpipe_harness import (HARD_FD_LIMIT, HalfpipeProcess, metric_sum, open_relayed, raise_fd_limit,  # noqa: E402
                              start_echo_server)

CONNECTIONS = min(int(os.environ.get("BENCH_CONNECTIONS", "9900")), (HARD_FD_LIMIT - 150) // 2)
PHASE_SECONDS = float(os.environ.get("BENCH_PHASE_SECONDS", "4"))
SCRAPES = int(os.environ.get("BENCH_SCRAPES", "50"))
PAYLOAD = b"p" * 64


def conditions():
    """Load average and the network namespace's TCP sockets: the census walks all of them."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    tcp = "?"
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    tcp = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"load average {load}; TCP sockets in the namespace: {tcp}"


def percentile(values, p):
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def summary_ms(values):
    return (f"median {statistics.median(values) * 1e3:.2f} ms, p99 {percentile(values, 99) * 1e3:.2f} ms, "
            f"max {max(values) * 1e3:.2f} ms (n={len(values)})")


def summary_us(values):
    return (f"median {statistics.median(values) * 1e6:.0f} us, p99 {percentile(values, 99) * 1e6:.0f} us, "
            f"p99.9 {percentile(values, 99.9) * 1e6:.0f} us, max {max(values) * 1e6:.0f} us (n={len(values)})")


# ---------------------------------------------------------------------------------------
# Child processes


def request_loop(host, port, path):
    """Requests `path` back to back on one keep-alive connection until stdin closes;
    prints a JSON list of the latencies (seconds)."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    latencies = []
    while not select.select([sys.stdin], [], [], 0)[0]:
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        latencies.append(time.perf_counter() - t)
    print(json.dumps(latencies), flush=True)


# ---------------------------------------------------------------------------------------


def Halfpipe(binary, upstream_port):
    args = [binary, "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{upstream_port}", "--admin",
            "127.0.0.1:0", "--drain-timeout", "5s"]
    if os.environ.get("BENCH_WORKERS"):
        args += ["--workers", os.environ["BENCH_WORKERS"]]
    # 10,000 connections' access log lines are not worth keeping.
    hp = HalfpipeProcess(args, admin=True, preexec_fn=raise_fd_limit, keep=lambda line: "event=access" not in line)
    hp.upstream_port = upstream_port
    return hp


def timed_requests(admin, path, n):
    conn = http.client.HTTPConnection(admin[0], admin[1], timeout=30)
    latencies, size = [], 0
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        latencies.append(time.perf_counter() - t)
        size = len(body)
        if r.status != 200:
            raise RuntimeError(f"GET {path}: {r.status}")
    conn.close()
    return latencies, size, body


def pings(sock, seconds):
    rtts = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        sock.sendall(PAYLOAD)
        got = 0
        while got < len(PAYLOAD):
            chunk = sock.recv(len(PAYLOAD) - got)
            if not chunk:
                raise RuntimeError("ping connection closed")
            got += len(chunk)
        rtts.append(time.perf_counter() - t)
    return rtts


def with_background(admin, path, fn):
    """Runs fn() while a separate process requests `path` back to back; returns (fn's result, latencies)."""
    loader = subprocess.Popen([sys.executable, __file__, "--request-loop", admin[0], str(admin[1]), path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)  # let it get going
    try:
        result = fn()
    finally:
        loader.stdin.close()  # the loop stops at its next request and prints its latencies
        out = loader.stdout.read()
        loader.wait(60)
    return result, json.loads(out) if out.strip() else []


def metric(text, name, **labels):
    return metric_sum(text, name, labels)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/server/halfpipe"
    raise_fd_limit()
    print(f"scrape_bench: {CONNECTIONS} connections, descriptor hard limit {HARD_FD_LIMIT}, {os.cpu_count()} CPUs",
          flush=True)
    print(f"  before: {conditions()}", flush=True)
    echo, up_port = start_echo_server(nodelay=True)
    hp = Halfpipe(binary, up_port)
    clients = []
    ping_sock = None
    try:
        lat, size, _ = timed_requests(hp.admin, "/metrics", SCRAPES)
        print(f"FIGURE: /metrics, no connection: {summary_ms(lat)}, {size} bytes", flush=True)

        ping_sock = socket.create_connection(("127.0.0.1", hp.port), timeout=10)
        ping_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pings(ping_sock, 0.2)  # warm up

        t = time.monotonic()
        clients, ok = open_relayed(hp.port, CONNECTIONS, time.monotonic() + 120)
        print(f"opened {len(clients)} relayed connections, {ok} round trips verified, "
              f"in {time.monotonic() - t:.1f} s", flush=True)
        if ok != CONNECTIONS:
            print("setup failed: not every connection relayed", flush=True)
            return 1
        time.sleep(1)
        print(f"  with the connections open: {conditions()}", flush=True)

        lat, size, body = timed_requests(hp.admin, "/metrics", SCRAPES)
        text = body.decode()
        established = metric(text, "halfpipe_connections", listener="default", state="established")
        sockets = metric(text, "halfpipe_tcp_sockets", listener="default", side="downstream", state="ESTABLISHED")
        fds = [line.split()[1] for line in text.splitlines() if line.startswith("process_open_fds ")]
        print(f"  /metrics says: halfpipe_connections{{state=established}} {established}, "
              f"halfpipe_tcp_sockets{{side=downstream,state=ESTABLISHED}} {sockets}, "
              f"process_open_fds {fds[0] if fds else '?'}", flush=True)
        print(f"FIGURE: /metrics with {CONNECTIONS + 1} connections: {summary_ms(lat)}, {size} bytes "
              f"(target: under 50 ms)", flush=True)
        scrape_ok = percentile(lat, 99) < 0.050
        # Reference costs of the two big parts of a scrape, done from outside: listing
        # halfpipe's descriptors (process_open_fds) and a sock_diag dump of its sockets (ss).
        fd_times, ss_times = [], []
        for _ in range(10):
            t = time.perf_counter()
            n_fds = len(os.listdir(f"/proc/{hp.proc.pid}/fd"))
            fd_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run(["ss", "-Htan", f"( sport = :{hp.port} or dport = :{hp.upstream_port} )"],
                           stdout=subprocess.DEVNULL, check=False)
            ss_times.append(time.perf_counter() - t)
        print(f"  reference: listing /proc/PID/fd ({n_fds} entries) {statistics.median(fd_times) * 1e3:.1f} ms; "
              f"ss dumping halfpipe's sockets {statistics.median(ss_times) * 1e3:.1f} ms (medians of 10)", flush=True)

        clat, csize, _ = timed_requests(hp.admin, "/connections", 10)
        print(f"FIGURE: /connections with {CONNECTIONS + 1} connections: {summary_ms(clat)}, {csize} bytes",
              flush=True)

        base, loaded, scrape_lat = [], [], []
        for phase in range(2):
            base += pings(ping_sock, PHASE_SECONDS)
            rtts, lats = with_background(hp.admin, "/metrics", lambda: pings(ping_sock, PHASE_SECONDS))
            loaded += rtts
            scrape_lat += lats
        base += pings(ping_sock, PHASE_SECONDS)
        polled, conn_lat = with_background(hp.admin, "/connections", lambda: pings(ping_sock, PHASE_SECONDS))
        print(f"FIGURE: relay round trip, admin idle:                {summary_us(base)}", flush=True)
        print(f"FIGURE: relay round trip, /metrics scraped in a loop: {summary_us(loaded)}; "
              f"{len(scrape_lat)} scrapes meanwhile, {summary_ms(scrape_lat) if scrape_lat else '-'}", flush=True)
        print(f"FIGURE: relay round trip, /connections in a loop:    {summary_us(polled)}; "
              f"{len(conn_lat)} requests meanwhile, {summary_ms(conn_lat) if conn_lat else '-'}", flush=True)
        slow = lambda rtts, ms: sum(1 for r in rtts if r > ms / 1e3)
        print(f"FIGURE: round trips over 1 ms / 10 ms: idle {slow(base, 1)} / {slow(base, 10)} of {len(base)}; "
              f"scraping {slow(loaded, 1)} / {slow(loaded, 10)} of {len(loaded)}; /connections "
              f"{slow(polled, 1)} / {slow(polled, 10)} of {len(polled)}", flush=True)
        print(f"summary: scrape p99 {percentile(lat, 99) * 1e3:.1f} ms ({'meets' if scrape_ok else 'misses'} the "
              f"50 ms target); relay p99 {percentile(base, 99) * 1e6:.0f} us idle vs "
              f"{percentile(loaded, 99) * 1e6:.0f} us while scraping; max {max(base) * 1e6:.0f} us idle vs "
              f"{max(loaded) * 1e6:.0f} us while scraping", flush=True)
        print(f"  after: {conditions()}", flush=True)
    finally:
        if ping_sock:
            ping_sock.close()
        for c in clients:
            c.close()
        echo.stdin.close()
        try:
            echo.wait(60)
        except subprocess.TimeoutExpired:
            echo.kill()
        # Every peer has closed: every session should end. Those left are a relay bug.
        time.sleep(3)
        try:
            _, _, body = timed_requests(hp.admin, "/metrics", 1)
            left = sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                       if line.startswith("halfpipe_connections{"))
            print(f"  3 s after every peer closed: {left:.0f} sessions still live"
                  f"{' (expected 0: sessions that never end)' if left else ''}", flush=True)
        except (OSError, RuntimeError, http.client.HTTPException) as e:
            print(f"  could not scrape after closing: {e}", flush=True)
        code = hp.stop(30)
        print(f"halfpipe exited {code}", flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--request-loop"]:
        request_loop(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        sys.exit(0)
    sys.exit(main())
