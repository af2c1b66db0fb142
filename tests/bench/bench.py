#!/usr/bin/env python3
"""Benchmarks halfpipe against HAProxy (mode tcp), nginx stream and socat.

Started by tests/bench/run_bench.sh (which installs the tools first); see its header for
the knobs. Python 3 standard library only.

Every server runs on 127.0.0.1 with free ports picked by binding port 0, from the
templates in tests/bench/conf/. One pass per worker count in WORKERS: each pass starts
its own proxy processes (halfpipe --workers N, HAProxy nbthread N, nginx
worker_processes N; socat, which forks a process per connection, in the one-worker pass
only) and stops them when it ends. Tests, interleaved and rotated per repetition
(A B C D E, then B C D E A, ...), with direct in every repetition of every pass:
  - wrk keep-alive, -t1 -c{CONCS} --latency: req/s, p50, p99, CPU us/request of the proxy
  - wrk with 'Connection: close': req/s, socket errors, new TIME_WAIT sockets by side
  - iperf3 -t IPERF_SECONDS: throughput (HAProxy also with option splice-auto, halfpipe
    also with relay: splice); one-worker pass only, as one stream is one connection
  - memory: PSS/RSS growth of the proxy per idle relayed connection (MEM_CONNS of them);
    one-worker pass only
Writes results/latest.{md,json,png}; every run in the JSON names its pass ("workers"). The
targets (targets.py) are judged at the head of latest.md, in the JSON and in the last lines
printed.
"""

import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import time

import targets

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = os.path.join(HERE, "conf")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def env_int(name, default):
    return int(os.environ.get(name, default))


QUICK = os.environ.get("QUICK", "0") not in ("0", "", "false", "no")
HALFPIPE = os.environ.get("HALFPIPE_BIN", "build/server/halfpipe")
REPS = env_int("REPS", 3)
DURATION = env_int("DURATION", 2 if QUICK else 5)
CONCS = [int(c) for c in os.environ.get("CONCS", "50" if QUICK else "10 50 200").split()]
IPERF_SECONDS = env_int("IPERF_SECONDS", 2 if QUICK else 10)


def default_mem_conns():
    """10,000 idle relayed connections, as the benchmark's spec asks, or as many as the
    descriptor limit allows: the proxies inherit this script's limit (raised to the hard
    one), and each relayed connection holds two of their descriptors, client and upstream.
    The reserve covers listeners, epoll, logs, pipes for splice and HAProxy's margin
    (conf/haproxy.cfg.tmpl)."""
    if QUICK:
        return 500
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return 10000
    return max(100, min(10000, (hard - 400) // 2))


MEM_CONNS = env_int("MEM_CONNS", default_mem_conns())
RESULTS = os.environ.get("RESULTS_DIR", os.path.join(HERE, "results"))
WORK = os.environ.get("BENCH_WORK") or "/tmp/halfpipe-bench.%d" % os.getpid()
PIDFILE = os.path.join(WORK, "pids")

WORKERS = [int(w) for w in os.environ.get("WORKERS", "1 2").split()]
# Passes of two workers or more keep each worker on a CPU of its own, in every proxy.
PIN = os.environ.get("PIN", "0") not in ("0", "", "false", "no")

PROXIES = ["halfpipe", "haproxy", "nginx", "socat"]
TARGETS = ["direct"] + PROXIES
SPLICE_PROXIES = ["haproxy", "halfpipe"]  # also measured with splice(), iperf3 only
SPLICE_TARGETS = [p + "-splice" for p in SPLICE_PROXIES]
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def pass_proxies(workers):
    """The proxies in a pass: socat forks a process per connection, it has no worker count."""
    return PROXIES if workers == 1 else [p for p in PROXIES if p != "socat"]


def instance(target, workers):
    """Names one running copy of a target: its processes, config and ports."""
    return target if workers == 1 or target == "direct" else "%s_w%d" % (target, workers)


def workers_of(row):
    return row.get("workers", 1)  # runs saved before the two-worker pass have no field


def rotated(seq, rep):
    k = rep % len(seq)
    return seq[k:] + seq[:k]


# ---------------------------------------------------------------- processes

class Procs:
    def __init__(self):
        self.procs = []  # Popen, in start order

    def start(self, name, argv):
        out = open(os.path.join(WORK, name + ".log"), "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        self.procs.append(p)
        self.write_pidfile()
        return p

    def stop(self, procs):
        for p in reversed(procs):
            stop_tree(p)
        self.procs = [p for p in self.procs if p not in procs]
        self.write_pidfile()

    def stop_all(self):
        self.stop(list(self.procs))

    def write_pidfile(self):
        # what run_bench.sh's trap stops if bench.py itself is killed hard
        with open(PIDFILE, "w") as f:
            f.writelines("%d\n" % p.pid for p in self.procs)


def stop_tree(p):
    if p.poll() is not None:
        return
    kids = descendants(p.pid)
    try:
        p.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    for k in kids:  # e.g. socat children still relaying
        try:
            os.kill(k, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def read_stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); field n is rest[n-3]
    return {"ppid": int(rest[1]), "utime": int(rest[11]), "stime": int(rest[12]),
            "cutime": int(rest[13]), "cstime": int(rest[14])}


def all_ppids():
    m = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                m[int(d)] = read_stat(int(d))["ppid"]
            except (OSError, ValueError, IndexError):
                pass
    return m


def descendants(pid):
    ppids = all_ppids()
    out, todo = [], [pid]
    while todo:
        cur = todo.pop()
        for p, pp in ppids.items():
            if pp == cur:
                out.append(p)
                todo.append(p)
    return out


def tree_cpu_ticks(pid):
    """utime+stime+cutime+cstime summed over a live process tree: reaped children
    (socat's forks) are in their parent's cutime/cstime, so this never goes backwards."""
    total = 0
    for p in [pid] + descendants(pid):
        try:
            s = read_stat(p)
        except (OSError, ValueError, IndexError):
            continue
        total += s["utime"] + s["stime"] + s["cutime"] + s["cstime"]
    return total


def tree_mem_kib(pid):
    pss = rss = 0
    for p in [pid] + descendants(pid):
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
        except OSError:
            pass
    return pss, rss


# ---------------------------------------------------------------- ports, configs

def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def render(template, out_name, values):
    with open(os.path.join(CONF, template)) as f:
        text = string.Template(f.read()).safe_substitute(values)
    path = os.path.join(WORK, out_name)
    with open(path, "w") as f:
        f.write(text)
    return path


def wait_port(port, proc, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process for port %d exited with %s" % (port, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d not listening after %.0fs" % (port, timeout))


# ---------------------------------------------------------------- parsers

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def parse_wrk(out):
    r = {"rps": None, "requests": None, "p50_ms": None, "p99_ms": None,
         "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}, "non2xx": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        r["requests"] = int(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(r"^\s+%s(?:\.0+)?%%\s+(\S+)" % pct, out, re.M)
        if m:
            r[key] = to_ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["errors"] = dict(zip(["connect", "read", "write", "timeout"], map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    return r


def time_wait_tuples(ports):
    """TIME_WAIT sockets whose local or peer port is one of ports, as (local, peer)."""
    out = subprocess.run(["ss", "-Htan", "state", "time-wait"], capture_output=True,
                         text=True).stdout
    res = set()
    for line in out.splitlines():
        f = line.split()
        if len(f) < 2:
            continue
        local, peer = f[-2], f[-1]
        lp, pp = int(local.rsplit(":", 1)[1]), int(peer.rsplit(":", 1)[1])
        if lp in ports or pp in ports:
            res.add((local, peer))
    return res


# ---------------------------------------------------------------- the bench

def nginx_argv(name, cfg):
    return ["nginx", "-p", WORK, "-e", os.path.join(WORK, name + ".error.log"), "-c", cfg]


def socat_argv(port, to_port):
    return ["socat", "TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr" % port,
            "TCP:127.0.0.1:%d" % to_port]


class Bench:
    def __init__(self):
        self.procs = Procs()
        self.runs = []
        self.errors = []
        self.http_port, self.iperf_port, self.pid = {}, {}, {}
        self.iperf_pid = {}  # the process tree relaying each iperf3 target

    def setup(self):
        """Free ports for every pass's proxies, the backend (one listen port per target and
        pass, so that TIME_WAIT sockets can be told apart by port) and the iperf3 server."""
        os.makedirs(os.path.join(WORK, "nginx-tmp"), exist_ok=True)
        self.procs.write_pidfile()
        insts = [(p, instance(p, w)) for w in WORKERS for p in pass_proxies(w)]
        names = (["backend_direct", "iperf"] + ["backend_" + i for _, i in insts]
                 + ["%s_%s" % (i, k) for _, i in insts for k in ("http", "iperf")]
                 + ["%s_iperf_splice" % i for p, i in insts if p in SPLICE_PROXIES])
        self.port = P = dict(zip(names, free_ports(len(names))))
        backends = [P[n] for n in names if n.startswith("backend_")]
        listens = "\n".join("        listen 127.0.0.1:%d;" % port for port in backends)
        cfg = render("backend-nginx.conf.tmpl", "backend-nginx.conf",
                     {"WORK": WORK, "BACKEND_LISTENS": listens})
        self.backend = self.procs.start("backend-nginx", nginx_argv("backend-nginx", cfg))
        self.iperf_srv = self.procs.start("iperf3-server", ["iperf3", "-s", "-p", str(P["iperf"])])
        for port in backends:
            wait_port(port, self.backend)
        wait_port(P["iperf"], self.iperf_srv)
        self.http_port["direct"] = P["backend_direct"]
        self.iperf_port["direct"] = P["iperf"]
        log("servers up:", json.dumps(P))

    def start_proxies(self, workers):
        """Starts the pass's proxies, returns their processes."""
        started = []
        for p in pass_proxies(workers):
            inst = instance(p, workers)
            procs = self.start_proxy(p, inst, workers)
            started += procs
            self.pid[inst] = procs[0].pid  # the process tree relaying HTTP
            self.http_port[inst] = self.port[inst + "_http"]
            wait_port(self.port[inst + "_http"], procs[0])
            wait_port(self.port[inst + "_iperf"], procs[-1])
            if workers == 1:
                self.iperf_port[p] = self.port[inst + "_iperf"]
                self.iperf_pid[p] = procs[-1].pid
            if workers == 1 and p in SPLICE_PROXIES:
                self.iperf_port[p + "-splice"] = self.port[inst + "_iperf_splice"]
                self.iperf_pid[p + "-splice"] = procs[-1].pid
                wait_port(self.port[inst + "_iperf_splice"], None)
        # the readiness probes above left TIME_WAIT/closed sockets; let them be
        time.sleep(0.5)
        log("%d-worker proxies up: %s" % (workers, ", ".join(pass_proxies(workers))))
        return started

    def start_proxy(self, proxy, inst, workers):
        P = self.port
        vals = {"WORK": WORK, "NAME": inst, "WORKERS": workers, "HTTP_PORT": P[inst + "_http"],
                "BACKEND_PORT": P["backend_" + inst], "IPERF_PROXY_PORT": P[inst + "_iperf"],
                "IPERF_PORT": P["iperf"], "IPERF_SPLICE_PORT": P.get(inst + "_iperf_splice", 0),
                "MAXCONN": max(7000, MEM_CONNS + 20)}
        pin = PIN and workers > 1
        # Thread t of process 1 on CPU t-1; nginx's auto does the same for its processes.
        vals["HAPROXY_CPU_MAP"] = "cpu-map auto:1/1-%d 0-%d" % (workers, workers - 1) if pin else ""
        vals["NGINX_CPU_AFFINITY"] = "worker_cpu_affinity auto;" if pin else ""
        if proxy == "halfpipe":
            cfg = render("halfpipe.yaml.tmpl", inst + ".yaml", vals)
            return [self.procs.start(inst, [HALFPIPE, "--config", cfg, "--workers", str(workers),
                                            "--admin", "off"] + (["--cpu-affinity", "spread"] if pin else []))]
        if proxy == "haproxy":
            cfg = render("haproxy.cfg.tmpl", inst + ".cfg", vals)
            return [self.procs.start(inst, ["haproxy", "-db", "-f", cfg])]
        if proxy == "nginx":
            name = inst.replace("nginx", "nginx-stream")
            cfg = render("nginx-stream.conf.tmpl", name + ".conf", dict(vals, NAME=name))
            return [self.procs.start(name, nginx_argv(name, cfg))]
        return [self.procs.start("socat-http", socat_argv(P[inst + "_http"], P["backend_" + inst])),
                self.procs.start("socat-iperf", socat_argv(P[inst + "_iperf"], P["iperf"]))]

    # -- one wrk run
    def wrk(self, rep, target, workers, conc, close):
        inst = instance(target, workers)
        port = self.http_port[inst]
        backend = self.port["backend_" + inst]
        watched = {port, backend}
        tw_before = time_wait_tuples(watched) if close else set()
        cpu0 = tree_cpu_ticks(self.pid[inst]) if target != "direct" else None
        bcpu0 = tree_cpu_ticks(self.backend.pid)
        argv = ["wrk", "-t1", "-c%d" % conc, "-d%ds" % DURATION, "--latency"]
        if close:
            argv += ["-H", "Connection: close"]
        argv.append("http://127.0.0.1:%d/" % port)
        t0 = time.time()
        res = subprocess.run(argv, capture_output=True, text=True, timeout=DURATION + 60)
        r = parse_wrk(res.stdout)
        run = {"test": "http_close" if close else "http_keepalive", "rep": rep, "target": target,
               "workers": workers, "conc": conc, "port": port, "backend_port": backend,
               "wall_s": time.time() - t0, "wrk_rc": res.returncode, **r}
        if cpu0 is not None:
            d = tree_cpu_ticks(self.pid[inst]) - cpu0
            run["proxy_cpu_s"] = d / CLK_TCK
            run["cpu_us_per_req"] = (d / CLK_TCK * 1e6 / r["requests"]) if r["requests"] else None
        run["backend_cpu_s"] = (tree_cpu_ticks(self.backend.pid) - bcpu0) / CLK_TCK
        if close:
            new = time_wait_tuples(watched) - tw_before
            lp = lambda a: int(a.rsplit(":", 1)[1])
            tw = {"client": sum(1 for l, p in new if lp(p) == port),
                  "backend": sum(1 for l, p in new if lp(l) == backend)}
            if target != "direct":
                tw["proxy_front"] = sum(1 for l, p in new if lp(l) == port)
                tw["proxy_upstream"] = sum(1 for l, p in new if lp(p) == backend)
            run["time_wait"] = tw
        if r["rps"] is None:
            self.errors.append("wrk %s workers=%d c=%d close=%s: no result (rc=%d): %s" % (
                target, workers, conc, close, res.returncode, (res.stderr or res.stdout)[-300:]))
        self.runs.append(run)
        log("rep %d w%d %-14s %-8s c=%-3d rps=%s p99=%s err=%s%s" % (
            rep, workers, run["test"], target, conc, r["rps"], r["p99_ms"], r["errors"],
            " tw=%s" % run.get("time_wait") if close else ""))

    def iperf(self, rep, target):
        port = self.iperf_port[target]
        argv = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(IPERF_SECONDS), "-J"]
        pid = self.iperf_pid.get(target)
        cpu0 = tree_cpu_ticks(pid) if pid else None
        res = subprocess.run(argv, capture_output=True, text=True, timeout=IPERF_SECONDS + 60)
        bps = received = None
        try:
            j = json.loads(res.stdout)
            bps = j["end"]["sum_received"]["bits_per_second"]
            received = j["end"]["sum_received"]["bytes"]
        except (ValueError, KeyError) as e:
            self.errors.append("iperf3 %s: %s %s" % (target, e, res.stdout[-300:] + res.stderr[-300:]))
        run = {"test": "iperf3", "rep": rep, "target": target, "workers": 1,
               "port": port, "gbit_s": bps / 1e9 if bps else None, "rc": res.returncode}
        if cpu0 is not None:
            run["proxy_cpu_s"] = (tree_cpu_ticks(pid) - cpu0) / CLK_TCK
            run["cpu_s_per_gb"] = run["proxy_cpu_s"] / (received / 1e9) if received else None
        self.runs.append(run)
        log("rep %d iperf3 %-14s %s Gbit/s, proxy CPU %s s/GB" % (
            rep, target, bps and round(bps / 1e9, 2),
            run.get("cpu_s_per_gb") and round(run["cpu_s_per_gb"], 3)))
        time.sleep(0.3)  # iperf3 -s serves one test at a time: let it reset

    def memory(self, target):
        port = self.http_port[target]
        pid = self.pid[target]
        pss0, rss0 = tree_mem_kib(pid)
        socks, failed, ok = [], 0, 0
        req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
        # one at a time: connect, one request, wait for the answer, leave it idle (opening
        # them all at once would overflow socat's listen backlog of 5 and cost SYN retries)
        for _ in range(MEM_CONNS):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                socks.append(s)
                s.sendall(req)
                buf = b""
                while not buf.endswith(b"ok"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                ok += buf.endswith(b"ok")
            except OSError:
                failed += 1
        time.sleep(1.0)
        pss1, rss1 = tree_mem_kib(pid)
        for s in socks:
            s.close()
        n = max(ok, 1)
        run = {"test": "idle_memory", "target": target, "workers": 1, "conns": MEM_CONNS,
               "relayed": ok, "failed": failed, "pss_before_kib": pss0, "pss_after_kib": pss1,
               "rss_before_kib": rss0, "rss_after_kib": rss1,
               "pss_kib_per_conn": (pss1 - pss0) / n, "rss_kib_per_conn": (rss1 - rss0) / n}
        self.runs.append(run)
        log("memory %-8s relayed=%d/%d pss/conn=%.2f KiB rss/conn=%.2f KiB" % (
            target, ok, MEM_CONNS, run["pss_kib_per_conn"], run["rss_kib_per_conn"]))
        time.sleep(2.0)  # let the proxies (socat's children) wind down

    def run_all(self):
        for workers in WORKERS:
            started = self.start_proxies(workers)
            try:
                self.run_pass(workers)
            finally:
                self.procs.stop(started)  # idle or not, no process of this pass in the next

    def run_pass(self, workers):
        """iperf3 and idle memory in the one-worker pass only: one iperf3 stream is one
        connection, relayed by one worker whatever the count."""
        order = ["direct"] + pass_proxies(workers)
        for rep in range(REPS):
            for conc in CONCS:
                for close in (False, True):
                    for t in rotated(order, rep):
                        self.wrk(rep, t, workers, conc, close)
            if workers == 1:
                for t in rotated(TARGETS + SPLICE_TARGETS, rep):
                    self.iperf(rep, t)
        if workers == 1:
            for t in PROXIES:
                self.memory(t)


# ---------------------------------------------------------------- report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio_to_direct(runs, direct, field):
    """Median of the ratios to the direct run of the same repetition (direct: rep -> value)."""
    return med([r[field] / direct[r["rep"]] for r in runs if r[field] and direct.get(r["rep"])])


def http_row(test, target, workers, conc, tr, direct):
    row = {"target": target, "workers": workers, "conc": conc, "reps": len(tr),
           "rps": med([r["rps"] for r in tr]), "ratio": ratio_to_direct(tr, direct, "rps"),
           "p50_ms": med([r["p50_ms"] for r in tr]), "p99_ms": med([r["p99_ms"] for r in tr]),
           "cpu_us_per_req": med([r.get("cpu_us_per_req") for r in tr])}
    if test == "http_close":
        row["connect_errors"] = med([r["errors"]["connect"] for r in tr])
        row["other_socket_errors"] = med([r["errors"]["read"] + r["errors"]["write"]
                                          + r["errors"]["timeout"] for r in tr])
        for k in ("client", "proxy_front", "proxy_upstream", "backend"):
            row["tw_" + k] = med([r["time_wait"].get(k) for r in tr])
    return row


def summarize(runs):
    """Rows per test; the HTTP ones per pass (workers) and connection count, each ratio
    to the direct run of the same repetition of the same pass."""
    s = {"http_keepalive": [], "http_close": [], "iperf3": [], "idle_memory": []}
    for test in ("http_keepalive", "http_close"):
        tests = [r for r in runs if r["test"] == test]
        for workers, conc in sorted({(workers_of(r), r["conc"]) for r in tests}):
            rs = [r for r in tests if workers_of(r) == workers and r["conc"] == conc]
            direct = {r["rep"]: r["rps"] for r in rs if r["target"] == "direct"}
            for t in TARGETS:
                tr = [r for r in rs if r["target"] == t]
                if tr:
                    s[test].append(http_row(test, t, workers, conc, tr, direct))
    it = [r for r in runs if r["test"] == "iperf3"]
    direct = {r["rep"]: r["gbit_s"] for r in it if r["target"] == "direct"}
    for t in TARGETS + SPLICE_TARGETS:
        tr = [r for r in it if r["target"] == t]
        if tr:
            s["iperf3"].append({"target": t, "workers": 1, "reps": len(tr),
                                "gbit_s": med([r["gbit_s"] for r in tr]),
                                "ratio": ratio_to_direct(tr, direct, "gbit_s"),
                                "cpu_s_per_gb": med([r.get("cpu_s_per_gb") for r in tr])})
    s["idle_memory"] = [r for r in runs if r["test"] == "idle_memory"]
    return s


def fmt(x, nd=0):
    if x is None:
        return "n/a"
    return ("{:,.%df}" % nd).format(x)


def table(head, rows):
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    return (["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
            + ["| " + " | ".join(r) + " |" for r in rows])


def pass_counts(rows):
    return sorted({workers_of(r) for r in rows})


def workers_phrase(workers):
    n = NUMBER_WORDS.get(workers, str(workers))
    return "%s worker%s" % (n, "" if workers == 1 else "s")


def pass_heading(title, workers):
    """A pass's section heading, and for a multi-worker pass what it leaves out."""
    L = ["", "## %s, %s" % (title, workers_phrase(workers)), ""]
    if workers > 1:
        L += ["halfpipe `--workers %d`, HAProxy `nbthread %d`, nginx `worker_processes %d`; "
              "direct measured again in this pass. socat is not in it: it forks a process per "
              "connection and has no worker setting." % (workers, workers, workers), ""]
        if PIN:
            L += ["Each worker is kept on a CPU of its own (PIN=1): halfpipe `--cpu-affinity spread`, "
                  "HAProxy `cpu-map auto:1/1-%d 0-%d`, nginx `worker_cpu_affinity auto`."
                  % (workers, workers - 1), ""]
    return L


def keepalive_section(rows, params):
    L = []
    for w in pass_counts(rows):
        L += pass_heading("HTTP keep-alive (wrk -t1 -d%ds --latency)" % params["DURATION"], w)
        L += table(["target", "conns", "req/s", "×direct", "p50 ms", "p99 ms",
                    "proxy CPU µs/req"],
                   [[r["target"], "%d" % r["conc"], fmt(r["rps"]), fmt(r["ratio"], 2),
                     fmt(r["p50_ms"], 2), fmt(r["p99_ms"], 2), fmt(r["cpu_us_per_req"], 1)]
                    for r in rows if workers_of(r) == w])
    return L


def close_section(rows):
    explained = [
        "TIME_WAIT: sockets that entered TIME_WAIT during the run, by side: *client* = wrk's "
        "end, *proxy front* = the proxy's accepted socket, *proxy upstream* = the proxy's socket "
        "toward the backend, *backend* = nginx's end. These are the (local, peer) pairs in "
        "TIME_WAIT right after the run that were not there before it: a lower bound and a "
        "snapshot, since loopback reuses TIME_WAIT pairs (net.ipv4.tcp_tw_reuse=2) and "
        "earlier repetitions' pairs are still there for 60 s.", ""]
    proxy_side = lambda r, k: fmt(r[k]) if r["target"] != "direct" else "–"
    L = []
    for w in pass_counts(rows):
        L += pass_heading("HTTP with `Connection: close` (one TCP connection per request)", w)
        L += explained if w == min(pass_counts(rows)) else []
        L += table(["target", "conns", "req/s", "×direct", "connect errors", "other socket errors",
                    "TW client", "TW proxy front", "TW proxy upstream", "TW backend",
                    "proxy CPU µs/req"],
                   [[r["target"], "%d" % r["conc"], fmt(r["rps"]), fmt(r["ratio"], 2),
                     fmt(r["connect_errors"]), fmt(r["other_socket_errors"]), fmt(r["tw_client"]),
                     proxy_side(r, "tw_proxy_front"), proxy_side(r, "tw_proxy_upstream"),
                     fmt(r["tw_backend"]), fmt(r["cpu_us_per_req"], 1)]
                    for r in rows if workers_of(r) == w])
    return L


def one_worker_sections(s, params):
    """iperf3 and idle memory, when the one-worker pass ran."""
    if not s["iperf3"] and not s["idle_memory"]:
        return []
    L = ["", "## Throughput (iperf3 -t %d, one stream), one worker" % params["IPERF_SECONDS"], ""]
    L += table(["target", "Gbit/s", "×direct", "proxy CPU s/GB"],
               [[r["target"], fmt(r["gbit_s"], 2), fmt(r["ratio"], 2), fmt(r["cpu_s_per_gb"], 3)]
                for r in s["iperf3"]])
    L += ["", "## Memory per idle relayed connection (%d connections, one request each, then "
          "idle), one worker" % params["MEM_CONNS"], ""]
    if params["MEM_CONNS"] < 10000 and params.get("NOFILE"):
        L += ["Fewer than 10,000: each relayed connection holds two of a proxy's descriptors, and "
              "the hard limit on open files here is %d." % params["NOFILE"], ""]
    L += table(["proxy", "relayed", "PSS KiB/conn", "RSS KiB/conn", "PSS before → after (KiB)"],
               [[r["target"], "%d/%d" % (r["relayed"], r["conns"]), fmt(r["pss_kib_per_conn"], 2),
                 fmt(r["rss_kib_per_conn"], 2),
                 "%s → %s" % (fmt(r["pss_before_kib"]), fmt(r["pss_after_kib"]))]
                for r in s["idle_memory"]])
    return L


def passes_note(passes):
    words = [NUMBER_WORDS.get(w, str(w)) for w in passes]
    note = "- workers: %s per proxy" % words[0] + "".join(", then %s" % w for w in words[1:])
    if len(passes) > 1:
        note += (" (a pass each, with its own proxy processes and its own direct runs; socat "
                 "forks a process per connection and is in the one-worker pass only)")
    return note + (". iperf3 and idle memory are measured with one worker only: one iperf3 "
                   "stream is one connection, which one worker relays.")


def write_markdown(path, machine, params, s, runs, errors):
    passes = pass_counts(s["http_keepalive"] + s["http_close"]) or [1]
    L = ["# halfpipe benchmarks", "",
         "- date: %s" % machine["date"],
         "- machine: %s, nproc %s, kernel %s" % (machine["cpu_model"], machine["nproc"], machine["kernel"]),
         "- versions: %s" % "; ".join("%s %s" % kv for kv in machine["versions"].items()),
         "- parameters: %s" % ", ".join("%s=%s" % kv for kv in params.items()),
         "- everything on one machine over loopback: wrk, the backend (nginx), the proxy and "
         "iperf3 share the cores, so the numbers compare proxies with each other, not with a "
         "real network.",
         passes_note(passes),
         "- values are medians over the repetitions; ×direct is the median of the per-repetition "
         "ratios to the direct run of the same repetition (and pass). CPU is the proxy's "
         "utime+stime (whole process tree, all threads) per request, and per GB that iperf3 "
         "received."]
    for w in passes:
        L += targets.markdown(targets.evaluate(runs, w), "Targets, " + workers_phrase(w))
    L += keepalive_section(s["http_keepalive"], params)
    L += close_section(s["http_close"])
    L += one_worker_sections(s, params)
    if errors:
        L += ["", "## Errors", ""] + ["- " + e.replace("\n", " ") for e in errors]
    L += ["", "![req/s and throughput](latest.png)", ""]
    with open(path, "w") as f:
        f.write("\n".join(L))


# ---------------------------------------------------------------- chart

def panel(title, ylabel, series, rows, ymax=None):
    """One bar chart: rows are (label, [a value per series])."""
    return {"title": title, "ylabel": ylabel, "series": series, "rows": rows, "ymax": ymax}


def http_panel(rows, label, workers, concs, ymax):
    rps = {}
    for r in rows:
        if workers_of(r) == workers:
            rps.setdefault(r["target"], {})[r["conc"]] = r["rps"]
    by = "by connections" if len(concs) > 1 else "%d connections" % concs[0]
    return panel("%s req/s (wrk -t1), %s, %s" % (label, by, workers_phrase(workers)), "requests/s",
                 ["c%d" % c for c in concs],
                 [(t, [rps[t].get(c) or 0 for c in concs]) for t in TARGETS if t in rps], ymax)


def chart_grid(s):
    """A row per pass: keep-alive and close req/s by connections, both passes on the same
    scale per test; iperf3 throughput ends the one-worker row."""
    concs = sorted({r["conc"] for r in s["http_keepalive"]})
    if not concs:
        raise RuntimeError("no wrk results to chart")
    tests = (("http_keepalive", "HTTP keep-alive"), ("http_close", "HTTP Connection: close"))
    ymax = {t: 1.08 * max([r["rps"] or 0 for r in s[t]] + [1]) for t, _ in tests}
    grid = []
    for w in pass_counts(s["http_keepalive"]):
        grid.append([http_panel(s[t], label, w, concs, ymax[t]) for t, label in tests])
    if s["iperf3"]:
        grid[0].append(panel("iperf3 throughput, one stream, one worker", "Gbit/s", ["Gbit/s"],
                             [(r["target"], [r["gbit_s"] or 0]) for r in s["iperf3"]]))
    return grid


def gnuplot_panel(p, dat):
    """Writes the panel's data file, returns the gnuplot lines that draw it."""
    with open(dat, "w") as f:
        f.write("target " + " ".join(p["series"]) + "\n")
        f.writelines("%s %s\n" % (label, " ".join(map(str, vals))) for label, vals in p["rows"])
    many = len(p["series"]) > 1
    return ['set title "%s"' % p["title"], 'set ylabel "%s"' % p["ylabel"],
            "set key %s" % ("top right" if many else "off"),
            "set yrange [0:%s]" % (p["ymax"] or "*"),
            "plot for [i=2:%d] '%s' using i:xtic(1)%s" % (
                len(p["series"]) + 1, dat, "" if many else ' linecolor rgb "#4477aa"')]


def gnuplot_chart(path, title, grid, work):
    ncols = max(len(row) for row in grid)
    gp = ['set terminal pngcairo size %d,%d font ",10"' % (600 * ncols, 560 * len(grid)),
          "set output '%s'" % path,
          'set multiplot layout %d,%d title "%s"' % (len(grid), ncols, title.replace('"', "'")),
          "set style data histograms", "set style histogram clustered gap 1",
          "set style fill solid 0.8 border -1", "set key top right autotitle columnhead",
          "set grid ytics", "set xtics rotate by -30"]
    for i, row in enumerate(grid):
        for j, p in enumerate(row):
            gp += gnuplot_panel(p, os.path.join(work, "panel%d-%d.dat" % (i, j)))
        gp += ["set multiplot next"] * (ncols - len(row))
    gp.append("unset multiplot")
    script = os.path.join(work, "chart.gp")
    with open(script, "w") as f:
        f.write("\n".join(gp) + "\n")
    r = subprocess.run(["gnuplot", script], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("gnuplot failed: " + r.stderr[-500:])


def matplotlib_chart(path, title, grid):
    import matplotlib  # python3-matplotlib, the fallback
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ncols = max(len(row) for row in grid)
    fig, axes = plt.subplots(len(grid), ncols, figsize=(6 * ncols, 5.6 * len(grid)), squeeze=False)
    for ax_row, row in zip(axes, grid):
        for k, ax in enumerate(ax_row):
            if k >= len(row):
                ax.axis("off")
                continue
            p = row[k]
            width = 0.8 / len(p["series"])
            xs = range(len(p["rows"]))
            for i, name in enumerate(p["series"]):
                ax.bar([x + i * width for x in xs], [v[i] for _, v in p["rows"]], width, label=name)
            ax.set_xticks([x + 0.4 - width / 2 for x in xs], [t for t, _ in p["rows"]], rotation=30)
            ax.set_title(p["title"])
            ax.set_ylabel(p["ylabel"])
            ax.set_ylim(0, p["ymax"])
            if len(p["series"]) > 1:
                ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)


def write_chart(path, machine, s):
    work = os.path.join(WORK, "chart")
    os.makedirs(work, exist_ok=True)
    grid = chart_grid(s)
    title = "halfpipe vs HAProxy / nginx stream / socat (loopback) - %s, nproc %s, %s" % (
        machine["cpu_model"], machine["nproc"], machine["date"])
    if shutil.which("gnuplot"):
        gnuplot_chart(path, title, grid, work)
    else:
        matplotlib_chart(path, title, grid)


def socat_version():
    try:
        out = subprocess.run(["socat", "-V"], capture_output=True, text=True).stdout
    except OSError:
        return "missing"
    m = re.search(r"socat version (\S+)", out)
    return m.group(1) if m else "?"


def machine_info():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def ver(argv, pat=None):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            out = (r.stdout + r.stderr).strip().splitlines()
            return out[0] if out else ""
        except OSError:
            return "missing"
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "nproc": os.cpu_count(),
            "cpu_model": model, "kernel": os.uname().release,
            "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
            "versions": {"halfpipe": ver([HALFPIPE, "--version"]).split()[-1],
                         "haproxy": ver(["haproxy", "-v"]).split()[2],
                         "nginx": ver(["nginx", "-v"]).split("/")[-1],
                         "socat": socat_version(),
                         "wrk": ver(["wrk", "-v"]).split()[1],
                         "iperf3": ver(["iperf3", "-v"]).split()[1]}}


def rerender(json_path):
    """bench.py --report results/latest.json: rewrite latest.md/png from a saved run."""
    with open(json_path) as f:
        d = json.load(f)
    global WORK
    WORK = "/tmp/halfpipe-bench-report.%d" % os.getpid()
    os.makedirs(WORK, exist_ok=True)
    s = summarize(d["runs"])
    out = os.path.dirname(os.path.abspath(json_path))
    write_markdown(os.path.join(out, "latest.md"), d["machine"], d["params"], s, d["runs"], d["errors"])
    write_chart(os.path.join(out, "latest.png"), d["machine"], s)
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        return rerender(sys.argv[2])
    if not WORKERS or min(WORKERS) < 1 or len(set(WORKERS)) < len(WORKERS):
        log("WORKERS must list distinct worker counts of 1 or more, e.g. \"1 2\"")
        return 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    machine = machine_info()
    params = {"QUICK": int(QUICK), "REPS": REPS, "DURATION": DURATION, "CONCS": CONCS,
              "WORKERS": WORKERS, "PIN": int(PIN), "IPERF_SECONDS": IPERF_SECONDS, "MEM_CONNS": MEM_CONNS,
              "NOFILE": resource.getrlimit(resource.RLIMIT_NOFILE)[1]}
    log("params", params, "work dir", WORK)
    b = Bench()
    t0 = time.time()
    try:
        b.setup()
        b.run_all()
    except KeyboardInterrupt:
        b.errors.append("interrupted")
    except Exception as e:  # report what we have
        b.errors.append("aborted: %r" % e)
        log("ERROR", repr(e))
    finally:
        b.procs.stop_all()
    params["elapsed_s"] = round(time.time() - t0, 1)
    s = summarize(b.runs)
    verdicts = {w: targets.evaluate(b.runs, w) for w in WORKERS}
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump({"machine": machine, "params": params, "ports": getattr(b, "port", {}),
                   "summary": s, "targets": verdicts, "runs": b.runs, "errors": b.errors}, f, indent=1)
    write_markdown(os.path.join(RESULTS, "latest.md"), machine, params, s, b.runs, b.errors)
    try:
        write_chart(os.path.join(RESULTS, "latest.png"), machine, s)
    except Exception as e:
        b.errors.append("chart: %r" % e)
        log("chart failed:", repr(e))
    for w, rows in verdicts.items():
        for line in targets.summary_lines(rows):
            log("target, %s: %s" % (workers_phrase(w), line))
    log("wrote", RESULTS + "/latest.{md,json,png}", "in %.0fs" % params["elapsed_s"])
    return 1 if b.errors else 0


if __name__ == "__main__":
    sys.exit(main())
