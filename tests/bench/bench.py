#!/usr/bin/env python3
"""Benchmarks halfpipe against HAProxy (mode tcp), nginx stream and socat.

Started by tests/bench/run_bench.sh (which installs the tools first); see its header for
the knobs. Python 3 standard library only.

Every server runs on 127.0.0.1 with free ports picked by binding port 0, from the
templates in tests/bench/conf/. Tests, interleaved and rotated per repetition
(A B C D E, then B C D E A, ...):
  - wrk keep-alive, -t1 -c{CONCS} --latency: req/s, p50, p99, CPU us/request of the proxy
  - wrk with 'Connection: close': req/s, socket errors, new TIME_WAIT sockets by side
  - iperf3 -t IPERF_SECONDS: throughput (HAProxy also with option splice-auto, halfpipe
    also with relay: splice)
  - memory: PSS/RSS growth of the proxy per idle relayed connection (MEM_CONNS of them)
Writes results/latest.{md,json,png}.
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
MEM_CONNS = env_int("MEM_CONNS", 500 if QUICK else 2000)
RESULTS = os.environ.get("RESULTS_DIR", os.path.join(HERE, "results"))
WORK = os.environ.get("BENCH_WORK") or "/tmp/halfpipe-bench.%d" % os.getpid()
PIDFILE = os.path.join(WORK, "pids")

PROXIES = ["halfpipe", "haproxy", "nginx", "socat"]
TARGETS = ["direct"] + PROXIES
SPLICE_TARGETS = ["haproxy-splice", "halfpipe-splice"]  # iperf3 only


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

class Procs:
    def __init__(self):
        self.procs = []  # (name, Popen)

    def start(self, name, argv):
        out = open(os.path.join(WORK, name + ".log"), "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        self.procs.append((name, p))
        with open(PIDFILE, "a") as f:
            f.write("%d\n" % p.pid)
        return p

    def stop_all(self):
        for name, p in reversed(self.procs):
            if p.poll() is not None:
                continue
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
        self.procs = []
        open(PIDFILE, "w").close()  # all stopped: nothing left for run_bench.sh's trap


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

class Bench:
    def __init__(self):
        self.procs = Procs()
        self.runs = []
        self.errors = []

    def setup(self):
        os.makedirs(os.path.join(WORK, "nginx-tmp"), exist_ok=True)
        open(PIDFILE, "w").close()
        names = (["backend_" + t for t in TARGETS] + ["iperf"]
                 + ["%s_http" % p for p in PROXIES] + ["%s_iperf" % p for p in PROXIES]
                 + ["haproxy_iperf_splice", "halfpipe_iperf_splice"])
        self.port = dict(zip(names, free_ports(len(names))))
        P = self.port
        listens = "\n".join("        listen 127.0.0.1:%d;" % P["backend_" + t] for t in TARGETS)
        cfg = render("backend-nginx.conf.tmpl", "backend-nginx.conf",
                     {"WORK": WORK, "BACKEND_LISTENS": listens})
        self.backend = self.procs.start("backend-nginx", ["nginx", "-p", WORK, "-e",
                                        os.path.join(WORK, "backend-nginx.error.log"), "-c", cfg])
        self.iperf_srv = self.procs.start("iperf3-server", ["iperf3", "-s", "-p", str(P["iperf"])])
        for t in TARGETS:
            wait_port(P["backend_" + t], self.backend)
        wait_port(P["iperf"], self.iperf_srv)

        self.http_port = {"direct": P["backend_direct"]}
        self.iperf_port = {"direct": P["iperf"]}
        self.pid = {}
        for p in PROXIES:
            vals = {"WORK": WORK, "HTTP_PORT": P[p + "_http"], "BACKEND_PORT": P["backend_" + p],
                    "IPERF_PROXY_PORT": P[p + "_iperf"], "IPERF_PORT": P["iperf"],
                    "IPERF_SPLICE_PORT": P[p + "_iperf_splice"] if p + "_iperf_splice" in P else 0}
            self.http_port[p] = P[p + "_http"]
            self.iperf_port[p] = P[p + "_iperf"]
            if p == "halfpipe":
                cfg = render("halfpipe.yaml.tmpl", "halfpipe.yaml", vals)
                procs = [self.procs.start("halfpipe", [HALFPIPE, "--config", cfg,
                                                       "--workers", "1", "--admin", "off"])]
                self.iperf_port["halfpipe-splice"] = P["halfpipe_iperf_splice"]
            elif p == "haproxy":
                cfg = render("haproxy.cfg.tmpl", "haproxy.cfg", vals)
                procs = [self.procs.start("haproxy", ["haproxy", "-db", "-f", cfg])]
                self.iperf_port["haproxy-splice"] = P["haproxy_iperf_splice"]
            elif p == "nginx":
                cfg = render("nginx-stream.conf.tmpl", "nginx-stream.conf", vals)
                procs = [self.procs.start("nginx-stream", ["nginx", "-p", WORK, "-e",
                                          os.path.join(WORK, "nginx-stream.error.log"), "-c", cfg])]
            elif p == "socat":
                procs = [self.procs.start("socat-http", [
                            "socat", "TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr" % P[p + "_http"],
                            "TCP:127.0.0.1:%d" % P["backend_socat"]]),
                         self.procs.start("socat-iperf", [
                            "socat", "TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr" % P[p + "_iperf"],
                            "TCP:127.0.0.1:%d" % P["iperf"]])]
            self.pid[p] = procs[0].pid  # the process tree relaying HTTP
            wait_port(P[p + "_http"], procs[0])
            wait_port(P[p + "_iperf"], procs[-1])
        for t in SPLICE_TARGETS:
            if t in self.iperf_port:
                wait_port(self.iperf_port[t], None)
        # the readiness probes above left TIME_WAIT/closed sockets; let them be
        time.sleep(0.5)
        log("servers up:", json.dumps(P))

    # -- one wrk run
    def wrk(self, rep, target, conc, close):
        port = self.http_port[target]
        backend = self.port["backend_" + target]
        watched = {port, backend}
        tw_before = time_wait_tuples(watched) if close else set()
        cpu0 = tree_cpu_ticks(self.pid[target]) if target != "direct" else None
        bcpu0 = tree_cpu_ticks(self.backend.pid)
        argv = ["wrk", "-t1", "-c%d" % conc, "-d%ds" % DURATION, "--latency"]
        if close:
            argv += ["-H", "Connection: close"]
        argv.append("http://127.0.0.1:%d/" % port)
        t0 = time.time()
        res = subprocess.run(argv, capture_output=True, text=True, timeout=DURATION + 60)
        r = parse_wrk(res.stdout)
        run = {"test": "http_close" if close else "http_keepalive", "rep": rep, "target": target,
               "conc": conc, "port": port, "backend_port": backend, "wall_s": time.time() - t0,
               "wrk_rc": res.returncode, **r}
        if cpu0 is not None:
            d = tree_cpu_ticks(self.pid[target]) - cpu0
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
            self.errors.append("wrk %s c=%d close=%s: no result (rc=%d): %s" % (
                target, conc, close, res.returncode, (res.stderr or res.stdout)[-300:]))
        self.runs.append(run)
        log("rep %d %-14s %-8s c=%-3d rps=%s p99=%s err=%s%s" % (
            rep, run["test"], target, conc, r["rps"], r["p99_ms"], r["errors"],
            " tw=%s" % run.get("time_wait") if close else ""))

    def iperf(self, rep, target):
        port = self.iperf_port[target]
        argv = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(IPERF_SECONDS), "-J"]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=IPERF_SECONDS + 60)
        bps = None
        try:
            j = json.loads(res.stdout)
            bps = j["end"]["sum_received"]["bits_per_second"]
        except (ValueError, KeyError) as e:
            self.errors.append("iperf3 %s: %s %s" % (target, e, res.stdout[-300:] + res.stderr[-300:]))
        self.runs.append({"test": "iperf3", "rep": rep, "target": target, "port": port,
                          "gbit_s": bps / 1e9 if bps else None, "rc": res.returncode})
        log("rep %d iperf3 %-14s %s Gbit/s" % (rep, target, bps and round(bps / 1e9, 2)))
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
        run = {"test": "idle_memory", "target": target, "conns": MEM_CONNS, "relayed": ok,
               "failed": failed, "pss_before_kib": pss0, "pss_after_kib": pss1,
               "rss_before_kib": rss0, "rss_after_kib": rss1,
               "pss_kib_per_conn": (pss1 - pss0) / n, "rss_kib_per_conn": (rss1 - rss0) / n}
        self.runs.append(run)
        log("memory %-8s relayed=%d/%d pss/conn=%.2f KiB rss/conn=%.2f KiB" % (
            target, ok, MEM_CONNS, run["pss_kib_per_conn"], run["rss_kib_per_conn"]))
        time.sleep(2.0)  # let the proxies (socat's children) wind down

    def run_all(self):
        for rep in range(REPS):
            order = TARGETS[rep % len(TARGETS):] + TARGETS[:rep % len(TARGETS)]
            for conc in CONCS:
                for close in (False, True):
                    for t in order:
                        self.wrk(rep, t, conc, close)
            iorder = TARGETS + SPLICE_TARGETS
            k = rep % len(iorder)
            for t in iorder[k:] + iorder[:k]:
                self.iperf(rep, t)
        for t in PROXIES:
            self.memory(t)


# ---------------------------------------------------------------- report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(runs):
    s = {"http_keepalive": [], "http_close": [], "iperf3": [], "idle_memory": []}
    for test in ("http_keepalive", "http_close"):
        concs = sorted({r["conc"] for r in runs if r["test"] == test})
        for conc in concs:
            rs = [r for r in runs if r["test"] == test and r["conc"] == conc]
            direct = {r["rep"]: r["rps"] for r in rs if r["target"] == "direct"}
            for t in TARGETS:
                tr = [r for r in rs if r["target"] == t]
                if not tr:
                    continue
                ratios = [r["rps"] / direct[r["rep"]] for r in tr
                          if r["rps"] and direct.get(r["rep"])]
                row = {"target": t, "conc": conc, "reps": len(tr),
                       "rps": med([r["rps"] for r in tr]), "ratio": med(ratios),
                       "p50_ms": med([r["p50_ms"] for r in tr]),
                       "p99_ms": med([r["p99_ms"] for r in tr]),
                       "cpu_us_per_req": med([r.get("cpu_us_per_req") for r in tr])}
                if test == "http_close":
                    row["connect_errors"] = med([r["errors"]["connect"] for r in tr])
                    row["other_socket_errors"] = med([r["errors"]["read"] + r["errors"]["write"]
                                                      + r["errors"]["timeout"] for r in tr])
                    for k in ("client", "proxy_front", "proxy_upstream", "backend"):
                        row["tw_" + k] = med([r["time_wait"].get(k) for r in tr])
                s[test].append(row)
    it = [r for r in runs if r["test"] == "iperf3"]
    direct = {r["rep"]: r["gbit_s"] for r in it if r["target"] == "direct"}
    for t in TARGETS + SPLICE_TARGETS:
        tr = [r for r in it if r["target"] == t]
        if tr:
            s["iperf3"].append({"target": t, "reps": len(tr), "gbit_s": med([r["gbit_s"] for r in tr]),
                                "ratio": med([r["gbit_s"] / direct[r["rep"]] for r in tr
                                              if r["gbit_s"] and direct.get(r["rep"])])})
    s["idle_memory"] = [r for r in runs if r["test"] == "idle_memory"]
    return s


def fmt(x, nd=0):
    if x is None:
        return "n/a"
    return ("{:,.%df}" % nd).format(x)


def write_markdown(path, machine, params, s, errors):
    L = ["# halfpipe benchmarks", "",
         "- date: %s" % machine["date"],
         "- machine: %s, nproc %s, kernel %s" % (machine["cpu_model"], machine["nproc"], machine["kernel"]),
         "- versions: %s" % "; ".join("%s %s" % kv for kv in machine["versions"].items()),
         "- parameters: %s" % ", ".join("%s=%s" % kv for kv in params.items()),
         "- everything on one machine over loopback: wrk, the backend (nginx), the proxy and "
         "iperf3 share the cores, so the numbers compare proxies with each other, not with a "
         "real network.",
         "- values are medians over the repetitions; ×direct is the median of the per-repetition "
         "ratios to the direct run of the same repetition. CPU is the proxy's utime+stime (whole "
         "process tree) per request.", ""]
    L += ["## HTTP keep-alive (wrk -t1 -d%ds --latency)" % params["DURATION"], "",
          "| target | conns | req/s | ×direct | p50 ms | p99 ms | proxy CPU µs/req |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    for r in s["http_keepalive"]:
        L.append("| %s | %d | %s | %s | %s | %s | %s |" % (
            r["target"], r["conc"], fmt(r["rps"]), fmt(r["ratio"], 2), fmt(r["p50_ms"], 2),
            fmt(r["p99_ms"], 2), fmt(r["cpu_us_per_req"], 1)))
    L += ["", "## HTTP with `Connection: close` (one TCP connection per request)", "",
          "TIME_WAIT: sockets that entered TIME_WAIT during the run, by side: *client* = wrk's "
          "end, *proxy front* = the proxy's accepted socket, *proxy upstream* = the proxy's socket "
          "toward the backend, *backend* = nginx's end. These are the (local, peer) pairs in "
          "TIME_WAIT right after the run that were not there before it: a lower bound and a "
          "snapshot, since loopback reuses TIME_WAIT pairs (net.ipv4.tcp_tw_reuse=2) and "
          "earlier repetitions' pairs are still there for 60 s.", "",
          "| target | conns | req/s | ×direct | connect errors | other socket errors | "
          "TW client | TW proxy front | TW proxy upstream | TW backend | proxy CPU µs/req |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in s["http_close"]:
        L.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["target"], r["conc"], fmt(r["rps"]), fmt(r["ratio"], 2), fmt(r["connect_errors"]),
            fmt(r["other_socket_errors"]), fmt(r["tw_client"]),
            fmt(r["tw_proxy_front"]) if r["target"] != "direct" else "–",
            fmt(r["tw_proxy_upstream"]) if r["target"] != "direct" else "–",
            fmt(r["tw_backend"]), fmt(r["cpu_us_per_req"], 1)))
    L += ["", "## Throughput (iperf3 -t %d, one stream)" % params["IPERF_SECONDS"], "",
          "| target | Gbit/s | ×direct |", "|---|---:|---:|"]
    for r in s["iperf3"]:
        L.append("| %s | %s | %s |" % (r["target"], fmt(r["gbit_s"], 2), fmt(r["ratio"], 2)))
    L += ["", "## Memory per idle relayed connection (%d connections, one request each, then idle)"
          % params["MEM_CONNS"], "",
          "| proxy | relayed | PSS KiB/conn | RSS KiB/conn | PSS before → after (KiB) |",
          "|---|---:|---:|---:|---:|"]
    for r in s["idle_memory"]:
        L.append("| %s | %d/%d | %s | %s | %s → %s |" % (
            r["target"], r["relayed"], r["conns"], fmt(r["pss_kib_per_conn"], 2),
            fmt(r["rss_kib_per_conn"], 2), fmt(r["pss_before_kib"]), fmt(r["pss_after_kib"])))
    if errors:
        L += ["", "## Errors", ""] + ["- " + e.replace("\n", " ") for e in errors]
    L += ["", "![req/s and throughput](latest.png)", ""]
    with open(path, "w") as f:
        f.write("\n".join(L))


def write_chart(path, machine, s):
    work = os.path.join(WORK, "chart")
    os.makedirs(work, exist_ok=True)
    concs = sorted({r["conc"] for r in s["http_keepalive"]})
    if not concs or not s["iperf3"]:
        raise RuntimeError("no wrk or iperf3 results to chart")
    for test, name in (("http_close", "close.dat"), ("http_keepalive", "rps.dat")):
        rows = {}
        for r in s[test]:
            rows.setdefault(r["target"], {})[r["conc"]] = r["rps"]
        with open(os.path.join(work, name), "w") as f:
            f.write("target " + " ".join("c%d" % c for c in concs) + "\n")
            for t in TARGETS:
                if t in rows:
                    f.write(t + " " + " ".join(str(rows[t].get(c) or 0) for c in concs) + "\n")
    with open(os.path.join(work, "iperf.dat"), "w") as f:
        f.write("target gbit\n")
        for r in s["iperf3"]:
            f.write("%s %s\n" % (r["target"], r["gbit_s"] or 0))
    title = "%s, nproc %s, %s" % (machine["cpu_model"], machine["nproc"], machine["date"])
    if shutil.which("gnuplot"):
        gp = """
set terminal pngcairo size 1800,600 font ",10"
set output '%(out)s'
set multiplot layout 1,3 title "halfpipe vs HAProxy / nginx stream / socat (loopback) - %(title)s"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top right autotitle columnhead
set grid ytics
set yrange [0:*]
set xtics rotate by -30
set title "HTTP keep-alive req/s (wrk -t1), by connections"
set ylabel "requests/s"
plot for [i=2:%(ncol)d] '%(rps)s' using i:xtic(1)
set title "HTTP Connection: close req/s (wrk -t1), by connections"
plot for [i=2:%(ncol)d] '%(close)s' using i:xtic(1)
set title "iperf3 throughput"
set ylabel "Gbit/s"
set key off
plot '%(iperf)s' using 2:xtic(1) linecolor rgb "#4477aa"
unset multiplot
""" % {"out": path, "title": title.replace('"', "'"), "ncol": len(concs) + 1,
           "rps": os.path.join(work, "rps.dat"),
           "close": os.path.join(work, "close.dat"), "iperf": os.path.join(work, "iperf.dat")}
        with open(os.path.join(work, "chart.gp"), "w") as f:
            f.write(gp)
        r = subprocess.run(["gnuplot", os.path.join(work, "chart.gp")], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("gnuplot failed: " + r.stderr[-500:])
        return
    import matplotlib  # python3-matplotlib, the fallback
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 6))
    names = [t for t in TARGETS if t in rows]
    w = 0.8 / max(len(concs), 1)
    for i, c in enumerate(concs):
        a.bar([x + i * w for x in range(len(names))], [rows[t].get(c) or 0 for t in names], w,
              label="c%d" % c)
    a.set_xticks([x + 0.4 - w / 2 for x in range(len(names))], names)
    a.set_title("HTTP keep-alive req/s (wrk -t1)")
    a.legend()
    b.bar([r["target"] for r in s["iperf3"]], [r["gbit_s"] or 0 for r in s["iperf3"]])
    b.set_title("iperf3 throughput, Gbit/s")
    fig.suptitle(title)
    fig.savefig(path)


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
    write_markdown(os.path.join(out, "latest.md"), d["machine"], d["params"], s, d["errors"])
    write_chart(os.path.join(out, "latest.png"), d["machine"], s)
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        return rerender(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    machine = machine_info()
    params = {"QUICK": int(QUICK), "REPS": REPS, "DURATION": DURATION, "CONCS": CONCS,
              "IPERF_SECONDS": IPERF_SECONDS, "MEM_CONNS": MEM_CONNS}
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
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump({"machine": machine, "params": params, "ports": getattr(b, "port", {}),
                   "summary": s, "runs": b.runs, "errors": b.errors}, f, indent=1)
    write_markdown(os.path.join(RESULTS, "latest.md"), machine, params, s, b.errors)
    try:
        write_chart(os.path.join(RESULTS, "latest.png"), machine, s)
    except Exception as e:
        b.errors.append("chart: %r" % e)
        log("chart failed:", repr(e))
    log("wrote", RESULTS + "/latest.{md,json,png}", "in %.0fs" % params["elapsed_s"])
    return 1 if b.errors else 0


if __name__ == "__main__":
    sys.exit(main())
