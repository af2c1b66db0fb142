"""What the Python end-to-end tests share: a runner with a time budget per test, halfpipe
as a child process whose log is read as it runs, socket helpers, and a reader of the
Prometheus text format. Python 3 standard library only.

A test script puts this folder on sys.path and imports what it needs:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
    from halfpipe_harness import Suite, HalfpipeProcess
"""
import os
import re
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback


# ---------------------------------------------------------------------------------------
# Running tests


class TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout("test exceeded its time budget")


class Suite:
    """Checks, tests with a time budget (SIGALRM), and cleanups run after each test.

    argv: [HALFPIPE_BINARY] [-k SUBSTRING ...]; the binary defaults to build/server/halfpipe.
    """

    def __init__(self, name, argv=None):
        args = list(sys.argv[1:] if argv is None else argv)
        self.filters = []
        while "-k" in args:
            i = args.index("-k")
            self.filters.append(args[i + 1])
            del args[i:i + 2]
        self.binary = args[0] if args and not args[0].startswith("--") else "build/server/halfpipe"
        self.name = name
        self.results = []  # (test, check name, ok)
        self.current = "-"
        self.cleanups = []  # callables run at the end of each test, last first
        self.tests = []

    def check(self, name, ok, detail=""):
        self.results.append((self.current, name, bool(ok)))
        print(f"  {'PASS' if ok else 'FAIL'}: {name}{' — ' + str(detail) if detail != '' else ''}", flush=True)
        return bool(ok)

    def check_eq(self, name, observed, expected):
        return self.check(name, observed == expected, f"expected {expected!r}, observed {observed!r}")

    def test(self, budget):
        """Decorator: registers a test that may take at most `budget` seconds."""
        def register(fn):
            self.tests.append((fn, budget))
            return fn
        return register

    def run_cleanups(self):
        while self.cleanups:
            try:
                self.cleanups.pop()()
            except Exception:  # noqa: BLE001 - one failed cleanup must not skip the others
                pass

    def run(self, run_budget=None):
        """Runs the registered tests (those matching -k), then exits with the summary.

        With run_budget, a test gets at most what is left of it, and tests that find it
        spent fail unrun: the whole run stays bounded."""
        signal.signal(signal.SIGALRM, _on_alarm)
        start = time.monotonic()
        for fn, budget in self.tests:
            name = fn.__name__
            if self.filters and not any(f in name for f in self.filters):
                continue
            self.current = name
            if run_budget is not None:
                left = int(run_budget - (time.monotonic() - start))
                if left < 2:
                    self.check(f"{name} run (the {run_budget} s run budget is spent)", False)
                    continue
                budget = min(budget, left)
            print(f"== {name} (budget {budget} s)", flush=True)
            t = time.monotonic()
            signal.alarm(budget)
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - a crash is a failure, with its traceback
                traceback.print_exc()
                self.check(f"{name} ran to completion", False, f"{type(e).__name__}: {e}")
            finally:
                signal.alarm(0)
                self.run_cleanups()
            print(f"   ({time.monotonic() - t:.1f} s)", flush=True)
        self.finish(start)

    def finish(self, start=None):
        failed = [r for r in self.results if not r[2]]
        if failed:
            print("\nFailures:")
            for test_name, check_name, _ in failed:
                print(f"  {test_name}: {check_name}")
        took = f" ({time.monotonic() - start:.0f} s)" if start is not None else ""
        print(f"{self.name}: {len(self.results) - len(failed)} passed, {len(failed)} failed{took}")
        sys.exit(1 if failed or not self.results else 0)


def temp_file(text, cleanups, prefix, suffix=""):
    """Writes `text` to a new temporary file, removed by `cleanups`; returns its path."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    cleanups.append(lambda: os.unlink(path))
    return path


def wait_until(predicate, timeout, interval=0.05):
    """Polls predicate() until it returns a truthy value or timeout passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ---------------------------------------------------------------------------------------
# halfpipe as a child process


HARD_FD_LIMIT = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def raise_fd_limit():
    """preexec_fn for children that hold thousands of sockets: soft limit up to the hard one."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (HARD_FD_LIMIT, HARD_FD_LIMIT))


class HalfpipeProcess:
    """halfpipe started with `args`; its log is collected by a thread, and the addresses it
    announces are read from it: `admin` (host, port) when admin=True, `ports` per listener
    name (`listeners`: the names to wait for, or a count of the first ones to appear),
    `port` and `listener` for the first. `keep(line)` decides which lines are kept (a run
    with 10,000 connections need not keep their access log)."""

    def __init__(self, args, *, admin=False, listeners=1, preexec_fn=None, keep=None, start_timeout=10, env=None):
        self.args = list(args)
        self.keep = keep
        self.started_at = time.time()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     errors="replace", preexec_fn=preexec_fn, env=env)
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.admin = None
        if admin:
            m = self.wait_for_line(r"event=admin_listening address=(\S+):(\d+)", start_timeout)
            if m:
                self.admin = (m.group(1), int(m.group(2)))
        self.ports = {}
        if isinstance(listeners, int):
            deadline = time.monotonic() + start_timeout
            while len(self.ports) < listeners and time.monotonic() < deadline:
                m = self.wait_for_line(r"event=listening listener=(\S+) address=(?:127\.0\.0\.1|\[::1\]):(\d+)",
                                       deadline - time.monotonic(), skip=lambda m: m.group(1) in self.ports)
                if m:
                    self.ports[m.group(1)] = int(m.group(2))
            wanted = listeners
        else:
            for name in listeners:
                m = self.wait_for_line(r"event=listening listener=" + re.escape(name) +
                                       r" address=(?:127\.0\.0\.1|\[::1\]):(\d+)", start_timeout)
                if m:
                    self.ports[name] = int(m.group(1))
            wanted = len(listeners)
        if (admin and not self.admin) or len(self.ports) < wanted:
            self.kill()
            raise RuntimeError("halfpipe did not start: " + self.log_text())
        self.listener = next(iter(self.ports), None)
        self.port = self.ports.get(self.listener)

    def _read(self):
        for line in self.proc.stdout:
            if self.keep and not self.keep(line):
                continue
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for_line(self, pattern, timeout, start=0, skip=None):
        """The first match of `pattern` in the log from line `start` on (skipping matches
        for which skip(m) is true), waiting up to `timeout` seconds; None if none came."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    m = regex.search(line)
                    if m and not (skip and skip(m)):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.proc.stdout.readable()):
                    return None
                self.cond.wait(min(left, 0.2))

    def log_text(self):
        with self.cond:
            return "".join(self.lines)

    def access_lines(self):
        with self.cond:
            return [l for l in self.lines if "event=access" in l]

    @property
    def admin_url(self):
        return f"http://{self.admin[0]}:{self.admin[1]}"

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def thread_nice(self):
        """{thread id: nice value} of every thread (field 19 of /proc/PID/task/TID/stat)."""
        nice = {}
        for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
            with open(f"/proc/{self.proc.pid}/task/{tid}/stat") as f:
                nice[int(tid)] = int(f.read().rsplit(")", 1)[1].split()[16])  # fields[0] is field 3
        return nice

    def thread_cpu_seconds(self):
        """{thread name: CPU seconds} summed over the threads of each name, to the
        nanosecond (the first field of /proc/PID/task/TID/schedstat)."""
        cpu = {}
        for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{tid}/comm") as f:
                    name = f.read().strip()
                with open(f"/proc/{self.proc.pid}/task/{tid}/schedstat") as f:
                    ns = int(f.read().split()[0])
            except FileNotFoundError:  # the thread ended meanwhile
                continue
            cpu[name] = cpu.get(name, 0.0) + ns / 1e9
        return cpu

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; the exit status or None."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------
# Sockets


class TestListener:
    """A listening socket on loopback port 0, standing in for an upstream. It and every
    socket it accepts are closed by `cleanups` (a Suite's) at the end of the test."""

    def __init__(self, cleanups, v6=False, backlog=256):
        self.cleanups = cleanups
        self.sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("::1" if v6 else "127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        cleanups.append(self.sock.close)

    def accept(self, timeout=5):
        self.sock.settimeout(timeout)
        a, _ = self.sock.accept()
        a.settimeout(5)
        self.cleanups.append(a.close)
        return a

    def accepted_nothing(self, wait=0.2):
        """True when no connection arrives within `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            a, _ = self.sock.accept()
        except (socket.timeout, TimeoutError):
            return True
        a.close()
        return False


def recv_exact(sock, n, timeout=5):
    """Up to n bytes: fewer only if the peer closed first."""
    sock.settimeout(timeout)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_end(sock, timeout=5):
    """Reads until the connection ends: ('eof'|'reset'|'timeout', bytes read)."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return "reset", data
        except (socket.timeout, TimeoutError):
            return "timeout", data
        if not chunk:
            return "eof", data
        data += chunk


def abort_close(sock):
    """close() with SO_LINGER {1, 0}: the peer reads ECONNRESET."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def free_port():
    """A loopback port nobody listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def time_wait_headroom():
    """TIME_WAIT sockets the kernel can still create: past tcp_max_tw_buckets it closes
    connections without one ("time wait bucket table overflow"), so on a host already
    full of them (after a benchmark, say) no new TIME_WAIT shows up."""
    with open("/proc/sys/net/ipv4/tcp_max_tw_buckets") as f:
        limit = int(f.read())
    in_use = 0
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                in_use = int(fields[fields.index("tw") + 1])
    return max(0, limit - in_use)


def ss_count(state, filt):
    """How many TCP sockets `ss` lists in `state` matching the filter expression."""
    out = subprocess.run(["ss", "-Htan", "state", state, filt], capture_output=True, text=True, timeout=10).stdout
    return len([l for l in out.splitlines() if l.strip()])


def open_relayed(port, count, deadline):
    """count connections, each proven to relay 8 bytes both ways; returns the sockets."""
    clients = []
    sel = selectors.DefaultSelector()
    pending = {}
    ok = 0
    batch = 500
    while (len(clients) < count or pending) and time.monotonic() < deadline:
        while len(clients) < count and len(pending) < batch:
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            i = len(clients)
            c.sendall(i.to_bytes(8, "big"))
            c.setblocking(False)
            clients.append(c)
            pending[c] = (i, b"")
            sel.register(c, selectors.EVENT_READ)
        for key, _ in sel.select(0.5):
            c = key.fileobj
            i, got = pending[c]
            got += c.recv(64)
            if len(got) >= 8:
                ok += int.from_bytes(got[:8], "big") == i
                del pending[c]
                sel.unregister(c)
            else:
                pending[c] = (i, got)
    sel.close()
    return clients, ok


def echo_server(nodelay=False, close_on_eof=False):
    """Run in a child process: accepts connections on 127.0.0.1:0 (port printed on stdout)
    and echoes what arrives, until stdin closes. Children have descriptor limits of their
    own, so a test can hold 10,000 relayed connections with the peers out here. With
    close_on_eof a client's FIN is answered with a close, so that connections can end
    cleanly; otherwise they stay half-closed until stdin closes."""
    raise_fd_limit()
    up = socket.socket()
    up.bind(("127.0.0.1", 0))
    up.listen(4096)
    up.setblocking(False)
    print(up.getsockname()[1], flush=True)
    sel = selectors.DefaultSelector()
    sel.register(up, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    conns = []
    while True:
        for key, _ in sel.select(1):
            if key.fileobj is sys.stdin:
                for c in conns:
                    c.close()
                return
            if key.fileobj is up:
                while True:
                    try:
                        a, _ = up.accept()
                    except BlockingIOError:
                        break
                    if nodelay:
                        a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns.append(a)
                    sel.register(a, selectors.EVENT_READ)
            else:
                try:
                    data = key.fileobj.recv(65536)
                except ConnectionResetError:
                    data = b""
                if data:
                    key.fileobj.sendall(data)
                else:
                    sel.unregister(key.fileobj)
                    if close_on_eof:
                        key.fileobj.close()


def start_echo_server(nodelay=False, close_on_eof=False):
    """echo_server() in a child process: (Popen, port). Close its stdin to stop it."""
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--echo-server"] +
                             (["--nodelay"] if nodelay else []) + (["--close-on-eof"] if close_on_eof else []),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(child.stdout.readline())
    return child, port


# ---------------------------------------------------------------------------------------
# Prometheus text format


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_sum(text, name, labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        have = dict(LABEL.findall(m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


if __name__ == "__main__" and "--echo-server" in sys.argv:
    echo_server(nodelay="--nodelay" in sys.argv, close_on_eof="--close-on-eof" in sys.argv)
