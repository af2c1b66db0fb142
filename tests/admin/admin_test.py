#!/usr/bin/env python3
"""Checks of halfpipe's admin endpoint against the real binary, over loopback:

- every route and status code: /metrics, /healthz, /readyz (503 while draining),
  /connections, POST /connections/{id}/close?how=fin|rst, 401/404/400/405/413/431,
  a lingering close after an error reply (a body still arriving after a 413 is not reset),
  malformed requests, keep-alive and pipelining, the 10 s read deadline, the limit
  of 64 concurrent admin connections (a new one closes the longest idle keep-alive
  connection, or is refused when none is idle), the bearer token;
- /connections for established, half-closed and back-pressured sessions (kernel
  TCP states, queues);
- /metrics after controlled traffic: exact counter, gauge and histogram values,
  the kernel socket census compared with `ss`, process metrics, two listeners,
  a connect in progress, an idle timeout; the gauges back at 0 once thousands of
  connections have ended at once;
- `promtool check metrics` on the output;
- end to end: a real Prometheus scrapes halfpipe every second and its HTTP API
  returns the expected values.

Usage: admin_test.py [HALFPIPE_BINARY] [-k SUBSTRING ...]
Python 3 standard library only, plus curl, promtool and prometheus from Debian.
Every test has a time budget (SIGALRM) and every wait a deadline. Prints
'N passed, N failed' and exits non-zero on any failure.
"""
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from halfpipe_harness import (LABEL, HalfpipeProcess, Suite, TestListener, abort_close,  # noqa: E402
                              free_port, read_end, recv_exact, ss_count, temp_file, time_wait_headroom,
                              wait_until)

suite = Suite("admin")
BINARY = suite.binary
check, check_eq, test, cleanups = suite.check, suite.check_eq, suite.test, suite.cleanups
TOKEN = "admin-test-token-0123456789abcdef"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

peer_sockets = []  # the test's relayed sockets, closed before halfpipe is stopped


def close_peer_sockets():
    while peer_sockets:
        try:
            peer_sockets.pop().close()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------
# halfpipe, its upstream, its clients


class Halfpipe(HalfpipeProcess):
    """halfpipe as a child process; reads the admin and listener addresses from its log."""

    def __init__(self, upstream_port=None, *extra, config=None):
        args = [BINARY]
        if config is not None:
            args += ["--config", temp_file(config, cleanups, "halfpipe-admin-test-", ".yaml")]
        else:
            args += ["--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{upstream_port}", "--admin", "127.0.0.1:0"]
        super().__init__(args + list(extra), admin=True)
        cleanups.append(self.kill)

    def stop(self, timeout=15):
        """SIGTERM once the test's relayed connections are closed: the drain then ends at once."""
        close_peer_sockets()
        return super().stop(timeout)


class Upstream(TestListener):
    def __init__(self):
        super().__init__(cleanups)

    def accept(self, timeout=5):
        a = super().accept(timeout)
        peer_sockets.append(a)
        return a


def connect(port, timeout=5):
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    cleanups.append(c.close)
    peer_sockets.append(c)
    return c


def pair(hp, up):
    """A relayed connection: (client socket, upstream-side socket)."""
    c = connect(hp.port)
    a = up.accept()
    return c, a


def token_config(upstream_port, extra=""):
    return f"""
workers: 2
drain_timeout: 5s
admin:
  address: 127.0.0.1:0
  token: {TOKEN}
listeners:
  - name: web
    bind: 127.0.0.1:0
    upstream:
      address: 127.0.0.1:{upstream_port}
{extra}"""


# ---------------------------------------------------------------------------------------
# HTTP, by hand: the tests need to send what no HTTP library would


class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version, self.status, self.reason, self.headers, self.body = version, status, reason, headers, body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.reason} {self.headers} {self.body[:80]!r}>"


class HttpConn:
    def __init__(self, addr, timeout=5):
        self.sock = socket.create_connection(addr, timeout=timeout)
        cleanups.append(self.sock.close)
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
        self.buf += chunk
        return chunk

    def request(self, method, path, headers=None, body=b"", version="HTTP/1.1"):
        self.send(build_request(method, path, headers, body, version))
        return self.read_response(head=method == "HEAD")

    def read_response(self, head=False):
        """Parses one response; None when the server closed (or reset) without one."""
        try:
            while b"\r\n\r\n" not in self.buf:
                if not self._fill():
                    return None
        except ConnectionResetError:
            return None
        head_bytes, rest = self.buf.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        if not status.isdigit():
            raise ValueError(f"not an HTTP response: {self.buf[:120]!r}")
        self.buf = rest
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if head or status.startswith("1") or status in ("204", "304"):
            body = b""
        elif "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n and self._fill():
                pass
            body, self.buf = self.buf[:n], self.buf[n:]
        else:  # delimited by the end of the connection
            try:
                while self._fill():
                    pass
            except ConnectionResetError:
                pass
            body, self.buf = self.buf, b""
        return Response(version, int(status), reason, headers, body)

    def closed_by_server(self, timeout=2):
        """True when the server ends the connection (EOF or reset) within timeout, with no more bytes."""
        if self.eof:
            return not self.buf
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(1)
        except ConnectionResetError:
            return True
        except (socket.timeout, TimeoutError):
            return False
        finally:
            self.sock.settimeout(5)
        self.buf += chunk
        return not chunk

    def close(self):
        self.sock.close()


def build_request(method, path, headers=None, body=b"", version="HTTP/1.1"):
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    hdrs = dict(headers or {})
    if body and "Content-Length" not in hdrs and "Transfer-Encoding" not in hdrs:
        hdrs["Content-Length"] = str(len(body))
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def http(hp, method, path, headers=None, body=b"", version="HTTP/1.1"):
    conn = HttpConn(hp.admin)
    try:
        r = conn.request(method, path, headers, body, version)
        if r is None:
            raise RuntimeError(f"{method} {path}: connection closed without a response")
        return r
    finally:
        conn.close()


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def sessions(hp):
    r = http(hp, "GET", "/connections")
    assert r.status == 200, r
    return r.json()


def session_of(hp, client_sock):
    port = client_sock.getsockname()[1]
    for s in sessions(hp):
        if s["client"] == f"127.0.0.1:{port}":
            return s
    return None


# ---------------------------------------------------------------------------------------
# Prometheus text format


LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")


class Metrics:
    def __init__(self, text):
        self.text = text
        self.samples = {}  # (name, frozenset(labels)) -> value
        self.types = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind
                continue
            if not line or line.startswith("#"):
                continue
            m = LINE.match(line)
            if not m:
                raise ValueError(f"unparsable metrics line: {line!r}")
            labels = frozenset(LABEL.findall(m.group(2) or ""))
            self.samples[(m.group(1), labels)] = float(m.group(3))

    def get(self, name, **labels):
        key = (name, frozenset(labels.items()))
        return self.samples.get(key)

    def series(self, name):
        return {labels: v for (n, labels), v in self.samples.items() if n == name}

    def total(self, name, **labels):
        """Sum over the series of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for labels_, v in self.series(name).items() if want <= set(labels_))


def scrape(hp):
    r = http(hp, "GET", "/metrics")
    assert r.status == 200, r
    return Metrics(r.body.decode())


def curl_metrics(hp):
    out = subprocess.run(["curl", "-sS", "--max-time", "5", hp.admin_url + "/metrics"], capture_output=True,
                         timeout=10)
    return out.returncode, out.stdout, out.stderr


# ---------------------------------------------------------------------------------------
# Routes and status codes


@test(30)
def test_routes():
    up = Upstream()
    hp = Halfpipe(config=token_config(up.port))

    r = http(hp, "GET", "/healthz")
    check_eq("GET /healthz: 200", r.status, 200)
    check_eq("GET /healthz: body", r.body, b"ok\n")
    r = http(hp, "GET", "/healthz?probe=1")
    check_eq("GET /healthz?probe=1: the query is ignored, 200", r.status, 200)
    r = http(hp, "GET", "/readyz")
    check_eq("GET /readyz: 200 while running", r.status, 200)
    check_eq("GET /readyz: body", r.body, b"ready\n")

    r = http(hp, "GET", "/metrics")
    check_eq("GET /metrics: 200", r.status, 200)
    check_eq("GET /metrics: Prometheus text format 0.0.4", r.header("content-type"),
             "text/plain; version=0.0.4; charset=utf-8")
    check("GET /metrics: declares halfpipe_connections as a gauge",
          "# TYPE halfpipe_connections gauge" in r.body.decode(), "")
    code, out, err = curl_metrics(hp)
    check("curl fetches /metrics", code == 0 and b"halfpipe_build_info" in out, f"curl exit {code} {err!r}")

    r = http(hp, "GET", "/connections")
    check_eq("GET /connections: 200", r.status, 200)
    check_eq("GET /connections: JSON", r.header("content-type"), "application/json")
    check_eq("GET /connections: empty list without connections", r.json(), [])

    for path in ["/", "/nope", "/metrics/extra", "/healthzz", "/connections/1", "/connections/1/close/now",
                 "/connections/1/open"]:
        r = http(hp, "GET", path)
        check_eq(f"GET {path}: 404", r.status, 404)
    r = http(hp, "POST", "/nope", auth())
    check_eq("POST /nope: 404", r.status, 404)

    for method, path, allow in [("POST", "/metrics", "GET"), ("PUT", "/healthz", "GET"), ("DELETE", "/readyz", "GET"),
                                ("POST", "/connections", "GET"), ("PATCH", "/metrics", "GET"),
                                ("GET", "/connections/1/close", "POST"), ("PUT", "/connections/1/close", "POST"),
                                ("DELETE", "/connections/1/close", "POST")]:
        r = http(hp, method, path, auth())
        check(f"{method} {path}: 405 with Allow: {allow}", r.status == 405 and r.header("allow") == allow,
              f"status {r.status}, Allow {r.header('allow')!r}")

    # The bearer token: POSTs need it, GETs do not.
    r = http(hp, "POST", "/connections/1/close?how=rst")
    check("POST close without a token: 401 with WWW-Authenticate: Bearer",
          r.status == 401 and (r.header("www-authenticate") or "").startswith("Bearer"),
          f"status {r.status}, WWW-Authenticate {r.header('www-authenticate')!r}")
    for name, value in [("a wrong token", "Bearer not-the-right-token-at-all"),
                        ("the token plus a character", f"Bearer {TOKEN}x"),
                        ("the token without 'Bearer '", TOKEN),
                        ("Basic credentials", "Basic YWRtaW46YWRtaW4="),
                        ("an empty bearer", "Bearer ")]:
        r = http(hp, "POST", "/connections/1/close?how=rst", {"Authorization": value})
        check_eq(f"POST close with {name}: 401", r.status, 401)
    r = http(hp, "POST", "/connections/999999/close?how=rst", auth())
    check_eq("POST close with the token, unknown id: 404", r.status, 404)
    r = http(hp, "POST", "/connections/999999/close?how=fin", auth())
    check_eq("POST close how=fin, unknown id: 404", r.status, 404)
    for path in ["/connections/abc/close", "/connections/-1/close", "/connections/1x/close",
                 "/connections/18446744073709551616/close", "/connections/0x10/close",
                 "/connections/1/close?how=bogus", "/connections/1/close?how=FIN", "/connections/1/close?how="]:
        r = http(hp, "POST", path, auth())
        check_eq(f"POST {path}: 400", r.status, 400)

    # A real session closed with the token.
    c, a = pair(hp, up)
    s = wait_until(lambda: session_of(hp, c), 5)
    check("the relayed session is listed with listener=web", s and s["listener"] == "web", s)
    if s:
        r = http(hp, "POST", f"/connections/{s['id']}/close?how=rst")
        check_eq("POST close of a live session without a token: 401", r.status, 401)
        check("... and the session lives on", session_of(hp, c) is not None, "")
        r = http(hp, "POST", f"/connections/{s['id']}/close?how=rst", auth())
        check_eq("POST close of a live session with the token: 200", r.status, 200)
        check_eq("... JSON answer", r.json() if r.status == 200 else None, {"closed": s["id"], "how": "rst"})
        check_eq("... the client reads a reset", read_end(c)[0], "reset")
        check_eq("... the upstream reads a reset", read_end(a)[0], "reset")
    check_eq("halfpipe exits 0 after SIGTERM", hp.stop(), 0)


@test(15)
def test_admin_thread_yields_to_the_relay():
    # A scrape's sock_diag walk must never take a core from the relay: the admin thread
    # runs at nice 10, the workers at the process's own.
    up = Upstream()
    hp = Halfpipe(up.port, "--workers", "2")
    # An answer means the admin thread runs, and it sets its nice value before anything else.
    check_eq("the admin endpoint answers", http(hp, "GET", "/metrics").status, 200)
    nice = hp.thread_nice()
    check_eq("exactly one thread at nice 10 (the admin endpoint)", sorted(nice.values()).count(10), 1)
    check("every other thread at nice 0", all(v == 0 for v in nice.values() if v != 10), nice)


@test(30)
def test_limits_and_malformed():
    up = Upstream()
    hp = Halfpipe(config=token_config(up.port))

    def one(raw, label, expect_status, expect_close=True):
        conn = HttpConn(hp.admin)
        conn.send(raw)
        r = conn.read_response()
        ok = check(f"{label}: {expect_status}", r is not None and r.status == expect_status, r)
        if expect_close and ok:
            check(f"{label}: connection closed after the error", conn.closed_by_server(3), "")
            check(f"{label}: response says Connection: close", (r.header("connection") or "").lower() == "close",
                  r.headers)
        conn.close()
        return r

    # Headers: 8 KiB for the whole header section.
    one(build_request("GET", "/healthz", {"X-Pad": "a" * 9000}), "GET with a 9000-byte header", 431)
    one(build_request("GET", "/healthz", {f"X-Pad-{i}": "b" * 100 for i in range(90)}),
        "GET with 90 headers of 100 bytes (9.5 KiB)", 431)
    one(build_request("GET", "/healthz", {"X-Pad": "a" * 7000}), "GET with a 7000-byte header", 200, False)

    # Bodies: 64 KiB.
    one(b"POST /connections/999999/close HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n",
        "POST announcing a 65537-byte body (headers only)", 413)
    one(b"POST /connections/999999/close HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + b"z" * 4096,
        "POST announcing a 10 MB body", 413)
    one(build_request("POST", "/connections/999999/close", auth(), b"y" * 65536),
        "POST with a body of exactly 64 KiB: routed (unknown id)", 404, False)
    chunk = b"%x\r\n%s\r\n" % (16384, b"c" * 16384)
    one(b"POST /connections/999999/close HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 5 +
        b"0\r\n\r\n", "POST with an 80 KiB chunked body", 413)

    # A client still sending a body over the limit gets the 413, then our FIN: its
    # further bytes are read and dropped, never answered with an RST.
    conn = HttpConn(hp.admin)
    conn.send(b"POST /connections/999999/close HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
    r = conn.read_response()
    check("POST announcing a 1 MB body: 413 before the body", r is not None and r.status == 413, r)
    error = None
    for _ in range(30):
        try:
            conn.sock.sendall(b"z" * 16384)
        except OSError as e:
            error = e
            break
        time.sleep(0.01)
    check("the body sent after the 413 all went out (no reset)", error is None, repr(error))
    try:
        conn.sock.shutdown(socket.SHUT_WR)
        ended = conn.sock.recv(1)
    except OSError as e:
        ended = e
    check_eq("then the connection ends with a FIN", ended, b"")
    conn.close()

    # Malformed requests.
    one(b"GARBAGE\r\n\r\n", "a request line without method, target, version", 400)
    one(b"GET /healthz\r\n\r\n", "an HTTP/0.9 request line", 400)
    one(b"GET /healthz HTTP/1.1\r\nHost: x\r\nThis line has no colon\r\n\r\n", "a header line without a colon", 400)
    one(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", "Content-Length: abc", 400)
    one(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "two different Content-Lengths", 400)
    one(b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "a bad chunk size", 400)
    one(b"GET /he\x00lthz HTTP/1.1\r\nHost: x\r\n\r\n", "a NUL in the target", 400)

    # After all that, the endpoint still answers.
    r = http(hp, "GET", "/healthz")
    check_eq("GET /healthz after the bad requests: 200", r.status, 200)
    check_eq("halfpipe exits 0 after SIGTERM", hp.stop(), 0)


@test(30)
def test_keep_alive():
    up = Upstream()
    hp = Halfpipe(up.port)

    conn = HttpConn(hp.admin)
    statuses = []
    for method, path in [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/connections"),
                         ("GET", "/nope"), ("POST", "/metrics"), ("POST", "/connections/424242/close?how=fin"),
                         ("GET", "/healthz")]:
        r = conn.request(method, path)
        statuses.append(r.status if r else None)
    check_eq("8 requests, one after the other, on one connection", statuses, [200, 200, 200, 200, 404, 405, 404, 200])
    check("... the connection stays open afterwards", not conn.closed_by_server(0.3), "")
    conn.close()

    conn = HttpConn(hp.admin)
    conn.send(build_request("GET", "/healthz") + build_request("GET", "/nope") + build_request("GET", "/readyz"))
    rs = [conn.read_response() for _ in range(3)]
    check_eq("3 pipelined requests answered in order",
             [(r.status, r.body) if r else None for r in rs], [(200, b"ok\n"), (404, b"not found\n"), (200, b"ready\n")])
    conn.close()

    conn = HttpConn(hp.admin)
    r = conn.request("GET", "/healthz", version="HTTP/1.0")
    check("HTTP/1.0 without keep-alive: answered, then closed", r and r.status == 200 and conn.closed_by_server(2), r)
    conn.close()

    conn = HttpConn(hp.admin)
    r1 = conn.request("GET", "/healthz", {"Connection": "keep-alive"}, version="HTTP/1.0")
    r2 = conn.request("GET", "/readyz", {"Connection": "keep-alive"}, version="HTTP/1.0") if r1 else None
    check("HTTP/1.0 with Connection: keep-alive: two requests on one connection",
          r1 and r2 and r1.status == 200 and r2.status == 200, (r1, r2))
    conn.close()

    conn = HttpConn(hp.admin)
    r = conn.request("GET", "/healthz", {"Connection": "close"})
    check("HTTP/1.1 with Connection: close: answered with Connection: close, then closed",
          r and r.status == 200 and (r.header("connection") or "").lower() == "close" and conn.closed_by_server(2), r)
    conn.close()

    # A response to HEAD carries no content (RFC 9110 9.3.2), whatever its status:
    # otherwise the client reads those bytes as the start of the next response.
    conn = HttpConn(hp.admin)
    conn.send(build_request("HEAD", "/healthz") + build_request("GET", "/healthz"))
    r1 = conn.read_response(head=True)
    try:
        r2 = conn.read_response()
    except ValueError:
        r2 = f"unparsable: {conn.buf[:120]!r}"
    check("HEAD /healthz then GET on one connection: the GET's response is read intact",
          r1 is not None and isinstance(r2, Response) and r2.status == 200 and r2.body == b"ok\n",
          f"HEAD -> {r1}, then GET -> {r2}")
    conn.close()
    check_eq("halfpipe exits 0 after SIGTERM", hp.stop(), 0)


@test(30)
def test_read_deadline():
    up = Upstream()
    hp = Halfpipe(up.port)
    start = time.monotonic()
    silent = HttpConn(hp.admin)
    partial = HttpConn(hp.admin)
    partial.send(b"GET /heal")
    trickle = HttpConn(hp.admin)
    trickle.send(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
    idle_after = HttpConn(hp.admin)
    r = idle_after.request("GET", "/healthz")
    idle_after_start = time.monotonic()
    check("a request answered before idling", r and r.status == 200, r)

    ended = {}
    conns = {"silent": silent, "partial": partial, "trickle": trickle, "keep-alive idle": idle_after}
    next_trickle = time.monotonic() + 0.5
    while len(ended) < len(conns) and time.monotonic() - start < 16:
        live = {name: c for name, c in conns.items() if name not in ended}
        readable, _, _ = select.select([c.sock for c in live.values()], [], [], 0.1)
        for name, c in live.items():
            if c.sock in readable:
                try:
                    data = c.sock.recv(4096)
                except ConnectionResetError:
                    data = b""
                if not data:
                    ended[name] = time.monotonic() - (idle_after_start if name == "keep-alive idle" else start)
        if time.monotonic() >= next_trickle and "trickle" not in ended:
            try:
                trickle.send(b"a")  # one byte every half second: never a complete request
            except OSError:
                pass
            next_trickle += 0.5
        # Meanwhile a well-behaved client is served at once.
    r = http(hp, "GET", "/healthz")
    check("a normal request is served while slow clients hold connections", r.status == 200, r)
    for name in conns:
        t = ended.get(name)
        check(f"{name} connection closed by the 10 s read deadline", t is not None and 9.5 <= t <= 12.5,
              f"closed after {t:.2f} s" if t is not None else "still open after 16 s")
    check_eq("halfpipe exits 0 after SIGTERM", hp.stop(), 0)


@test(30)
def test_connection_limit():
    up = Upstream()
    hp = Halfpipe(up.port)
    conns = [HttpConn(hp.admin) for _ in range(64)]
    answered = 0
    for c in conns:
        r = c.request("GET", "/healthz")
        answered += bool(r and r.status == 200)
        c.send(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the head not finished: not idle
    check_eq("64 concurrent admin connections are all served", answered, 64)

    extra = HttpConn(hp.admin)
    try:
        extra.send(build_request("GET", "/healthz"))
    except OSError:
        pass
    extra.sock.settimeout(3)
    try:
        r = extra.read_response()
    except (socket.timeout, TimeoutError):
        r = "no answer within 3 s"
    check("the 65th concurrent connection is closed without an answer while all 64 are mid-request", r is None, r)

    answered = 0
    for c in conns[:8]:
        c.send(b"\r\n")
        r = c.read_response()
        answered += bool(r and r.status == 200)
    check_eq("... while the 64 keep being served", answered, 8)

    conns[0].close()

    def new_one():
        c = HttpConn(hp.admin)
        try:
            r = c.request("GET", "/healthz")
        except OSError:
            r = None
        c.close()
        return r is not None and r.status == 200

    check("after one of the 64 closes, a new connection is served", wait_until(new_one, 3, 0.1), "")
    for c in conns[1:]:
        c.close()
    check("after all close, connections are served again", wait_until(new_one, 3, 0.1), "")
    check_eq("halfpipe exits 0 after SIGTERM", hp.stop(), 0)


@test(30)
def test_connection_limit_evicts_idle():
    up = Upstream()
    hp = Halfpipe(up.port)

    def served(c):
        try:
            r = c.request("GET", "/healthz")
        except OSError:
            return False
        return r is not None and r.status == 200

    conns = [HttpConn(hp.admin) for _ in range(64)]
    check_eq("64 keep-alive admin connections are all served", sum(map(served, conns)), 64)
    # Idle since, longest first: 2, 3, ..., 63, 0. The first byte of a request
    # makes 1 busy though it has been idle longer than all.
    r = conns[0].request("GET", "/healthz")
    check("a second request on the oldest connection", r and r.status == 200, r)
    conns[1].send(b"GET /readyz HTTP/1.1\r\n")

    def eof(c):
        """The server ended c with a FIN and no bytes (a reset is not a clean close)."""
        c.sock.settimeout(3)
        try:
            return c.sock.recv(1)
        except OSError as e:
            return repr(e)

    for i, victim in ((65, 2), (66, 3)):
        extra = HttpConn(hp.admin)
        extra.sock.settimeout(3)
        try:
            r = extra.request("GET", "/healthz")
        except OSError as e:
            r = repr(e)
        check(f"the {i}th connection is served while the 64 slots are taken",
              isinstance(r, Response) and r.status == 200, r)
        check_eq(f"... the longest idle one (connection {victim + 1} of 64) is closed for it with a FIN",
                 eof(conns[victim]), b"")
        conns.append(extra)

    conns[1].send(b"Host: 127.0.0.1\r\n\r\n")
    r = conns[1].read_response()
    check("the connection in the middle of a request head is kept and answered", r and r.status == 200, r)
    others = [c for i, c in enumerate(conns) if i not in (1, 2, 3)]
    check_eq("the other connections all still work", sum(map(served, others)), len(others))
    check_eq("halfpipe exits 0 after SIGTERM", hp.stop(), 0)


@test(30)
def test_readyz_during_drain():
    up = Upstream()
    # A drain long enough that a loaded CI machine (the admin thread runs at nice 10)
    # still answers every probe below well before it ends.
    hp = Halfpipe(up.port, "--drain-timeout", "5s")
    c, a = pair(hp, up)
    c.sendall(b"ping")
    check_eq("the relayed connection works", recv_exact(a, 4), b"ping")
    check_eq("GET /readyz before SIGTERM: 200", http(hp, "GET", "/readyz").status, 200)

    t0 = time.monotonic()
    hp.proc.send_signal(signal.SIGTERM)
    r = wait_until(lambda: (lambda r: r if r.status == 503 else None)(http(hp, "GET", "/readyz")), 4, 0.02)
    elapsed = time.monotonic() - t0
    check("GET /readyz during the drain: 503", r is not None and r.status == 503, f"after {elapsed:.2f} s: {r}")
    check("... seen before the 5 s drain ends", elapsed < 5, f"{elapsed:.2f} s")
    check_eq("... body", r.body if r else None, b"draining\n")
    r = http(hp, "GET", "/healthz")
    check_eq("GET /healthz during the drain: still 200 (alive, only not ready)", r.status, 200)
    s = sessions(hp)
    check_eq("GET /connections during the drain lists the live connection", len(s), 1)
    a.sendall(b"pong")
    check_eq("the live connection still relays during the drain", recv_exact(c, 4), b"pong")
    time.sleep(max(0, t0 + 2.0 - time.monotonic()))
    r = http(hp, "GET", "/readyz")
    check_eq("GET /readyz 2 s into the drain: still 503", r.status, 503)

    try:
        code = hp.proc.wait(10)  # no second SIGTERM: that would abort the drain
    except subprocess.TimeoutExpired:
        code = None
    total = time.monotonic() - t0
    check_eq("halfpipe exits 0 once the drain timeout ends it", code, 0)
    check("... after about 5 s", 4.8 <= total <= 8.5, f"{total:.2f} s")
    check("the connection left at the end of the drain is logged with reason=drain_timeout",
          any("reason=drain_timeout" in l for l in hp.access_lines()), hp.access_lines())


@test(30)
def test_close_rst_and_fin():
    up = Upstream()
    hp = Halfpipe(up.port)  # no token: POSTs need none
    c1, a1 = pair(hp, up)
    c2, a2 = pair(hp, up)
    s1 = wait_until(lambda: session_of(hp, c1), 5)
    s2 = wait_until(lambda: session_of(hp, c2), 5)
    check("both sessions listed", s1 and s2 and s1["id"] != s2["id"], (s1, s2))

    r = http(hp, "POST", f"/connections/{s1['id']}/close?how=rst")
    check_eq("POST close how=rst without a configured token: 200", r.status, 200)
    check_eq("... JSON answer", r.json() if r.status == 200 else None, {"closed": s1["id"], "how": "rst"})
    check_eq("how=rst: the client reads ECONNRESET", read_end(c1)[0], "reset")
    check_eq("how=rst: the upstream reads ECONNRESET", read_end(a1)[0], "reset")
    gone = wait_until(lambda: session_of(hp, c1) is None, 3)
    check("how=rst: the session leaves /connections", gone, "")
    r = http(hp, "POST", f"/connections/{s1['id']}/close?how=rst")
    check_eq("a second close of the same id: 404", r.status, 404)

    # Bytes already relayed are still read before the EOF.
    a2.sendall(b"before-fin")
    wait_until(lambda: (session_of(hp, c2) or {}).get("bytes_to_client") == 10, 3)
    c2.sendall(b"up-before")
    recv_exact(a2, 9)
    r = http(hp, "POST", f"/connections/{s2['id']}/close?how=fin")
    check_eq("POST close how=fin: 200", r.status, 200)
    check_eq("... JSON answer", r.json() if r.status == 200 else None, {"closed": s2["id"], "how": "fin"})
    check_eq("how=fin: the client reads its bytes, then EOF", read_end(c2), ("eof", b"before-fin"))
    check_eq("how=fin: the upstream reads EOF", read_end(a2), ("eof", b""))
    check("how=fin: the session leaves /connections", wait_until(lambda: session_of(hp, c2) is None, 3), "")

    m = wait_until(lambda: (lambda m: m if m.total("halfpipe_connections_closed_total") >= 2 else None)(scrape(hp)), 3)
    check_eq("closed_total{initiator=proxy,how=rst}",
             m.get("halfpipe_connections_closed_total", listener="default", initiator="proxy", how="rst"), 1)
    check_eq("closed_total{initiator=proxy,how=fin}",
             m.get("halfpipe_connections_closed_total", listener="default", initiator="proxy", how="fin"), 1)
    check_eq("no other close counted", m.total("halfpipe_connections_closed_total"), 2)
    logged = [l for l in hp.access_lines() if "reason=admin_close" in l]
    check_eq("two access lines with reason=admin_close", len(logged), 2)
    check_eq("halfpipe exits 0 after SIGTERM", hp.stop(), 0)


# ---------------------------------------------------------------------------------------
# /connections


@test(30)
def test_connections_view():
    up = Upstream()
    hp = Halfpipe(up.port)

    # Established, with bytes both ways.
    c1, a1 = pair(hp, up)
    c1.sendall(b"x" * 11)
    recv_exact(a1, 11)
    a1.sendall(b"y" * 5)
    recv_exact(c1, 5)
    s = wait_until(lambda: (lambda s: s if s and s["bytes_to_client"] == 5 else None)(session_of(hp, c1)), 3)
    check("established session listed", s is not None, sessions(hp))
    if s:
        check_eq("fields of a session", sorted(s), sorted(
            ["id", "listener", "client", "upstream", "age_seconds", "bytes_to_upstream", "bytes_to_client", "state",
             "client_socket", "upstream_socket"]))
        check_eq("fields of a socket", sorted(s["client_socket"]),
                 sorted(["state", "send_queue_bytes", "receive_queue_bytes", "rtt_seconds", "retransmits"]))
        check_eq("listener", s["listener"], "default")
        check_eq("client address", s["client"], f"127.0.0.1:{c1.getsockname()[1]}")
        check_eq("upstream address", s["upstream"], f"127.0.0.1:{up.port}")
        check("id is a positive integer", isinstance(s["id"], int) and s["id"] > 0, s["id"])
        check("age_seconds is a small positive number", 0 < s["age_seconds"] < 30, s["age_seconds"])
        check_eq("bytes_to_upstream", s["bytes_to_upstream"], 11)
        check_eq("bytes_to_client", s["bytes_to_client"], 5)
        check_eq("state", s["state"], "established")
        check_eq("client_socket.state", s["client_socket"]["state"], "ESTABLISHED")
        check_eq("upstream_socket.state", s["upstream_socket"]["state"], "ESTABLISHED")
        for side in ("client_socket", "upstream_socket"):
            k = s[side]
            check(f"{side}: queues empty, rtt a small non-negative number, retransmits 0",
                  k["send_queue_bytes"] == 0 and k["receive_queue_bytes"] == 0 and 0 <= k["rtt_seconds"] < 1 and
                  k["retransmits"] == 0, k)
        time.sleep(0.3)
        s2 = session_of(hp, c1)
        check("age_seconds grows", s2["age_seconds"] >= s["age_seconds"] + 0.25, (s["age_seconds"], s2["age_seconds"]))

    # Half-closed by the client; the upstream stays open and silent.
    c2, a2 = pair(hp, up)
    c2.sendall(b"z" * 7)
    c2.shutdown(socket.SHUT_WR)
    check_eq("the upstream reads the bytes, then EOF", read_end(a2), ("eof", b"z" * 7))
    # The peer may delay its ACK of the FIN (FIN_WAIT1 meanwhile): wait for the settled states.
    s = wait_until(lambda: (lambda s: s if s and s["state"] == "client_fin" and
                            s["upstream_socket"]["state"] == "FIN_WAIT2" else None)(session_of(hp, c2)), 3)
    s = s or session_of(hp, c2)
    check_eq("client FIN: state client_fin", s and s["state"], "client_fin")
    check_eq("client FIN: client_socket.state CLOSE_WAIT", s and s["client_socket"]["state"], "CLOSE_WAIT")
    check_eq("client FIN: upstream_socket.state FIN_WAIT2", s and s["upstream_socket"]["state"], "FIN_WAIT2")
    check_eq("client FIN: bytes_to_upstream", s and s["bytes_to_upstream"], 7)

    # Half-closed by the upstream; the client stays open.
    c3, a3 = pair(hp, up)
    a3.shutdown(socket.SHUT_WR)
    check_eq("the client reads EOF", read_end(c3), ("eof", b""))
    s = wait_until(lambda: (lambda s: s if s and s["state"] == "upstream_fin" and
                            s["client_socket"]["state"] == "FIN_WAIT2" else None)(session_of(hp, c3)), 3)
    s = s or session_of(hp, c3)
    check_eq("upstream FIN: state upstream_fin", s and s["state"], "upstream_fin")
    check_eq("upstream FIN: client_socket.state FIN_WAIT2", s and s["client_socket"]["state"], "FIN_WAIT2")
    check_eq("upstream FIN: upstream_socket.state CLOSE_WAIT", s and s["upstream_socket"]["state"], "CLOSE_WAIT")
    c3.sendall(b"still")
    check_eq("upstream FIN: the client's direction still flows", recv_exact(a3, 5), b"still")

    # Back-pressure: the upstream does not read, the client writes until it cannot.
    c4, a4 = pair(hp, up)
    c4.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 5
    stalled_since = None
    while time.monotonic() < deadline:
        try:
            sent += c4.send(b"q" * 65536)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 0.5:
                break
            time.sleep(0.02)
    s = wait_until(lambda: (lambda s: s if s and s["upstream_socket"]["send_queue_bytes"] > 0 and
                            s["client_socket"]["receive_queue_bytes"] > 0 else None)(session_of(hp, c4)), 3)
    s = s or session_of(hp, c4)
    check("back-pressure: upstream_socket.send_queue_bytes > 0 and client_socket.receive_queue_bytes > 0",
          s and s["upstream_socket"]["send_queue_bytes"] > 0 and s["client_socket"]["receive_queue_bytes"] > 0,
          s and (s["upstream_socket"], s["client_socket"], f"client sent {sent}"))
    check("back-pressure: bytes_to_upstream counts what halfpipe wrote, less than the client sent",
          s and 0 < s["bytes_to_upstream"] < sent, s and (s["bytes_to_upstream"], sent))

    check_eq("four sessions listed", len(sessions(hp)), 4)
    a2.close()  # the upstream of the half-closed session ends it
    check_eq("the client of the half-closed session reads EOF", read_end(c2)[0], "eof")
    check("the session leaves /connections", wait_until(lambda: session_of(hp, c2) is None, 3), "")
    ids = sorted(s["id"] for s in sessions(hp))
    check("session ids are unique", len(ids) == len(set(ids)), ids)
    check_eq("halfpipe exits 0 after SIGTERM", hp.stop(), 0)


# ---------------------------------------------------------------------------------------
# /metrics


def closes(m, listener):
    return {(dict(l)["initiator"], dict(l)["how"]): v for l, v in m.series("halfpipe_connections_closed_total").items()
            if dict(l)["listener"] == listener and v}


@test(60)
def test_metrics_after_traffic():
    up = Upstream()
    hp = Halfpipe(up.port)
    L = "default"
    tw_sessions = 5

    # S1: closed by the client with a FIN, after bytes both ways.
    c, a = pair(hp, up)
    c.sendall(b"u" * 100)
    recv_exact(a, 100)
    a.sendall(b"d" * 50)
    recv_exact(c, 50)
    c.shutdown(socket.SHUT_WR)
    check_eq("S1: the upstream reads EOF", read_end(a)[0], "eof")
    a.close()
    check_eq("S1: the client reads EOF", read_end(c)[0], "eof")
    c.close()

    # S2: the upstream resets.
    c, a = pair(hp, up)
    c.sendall(b"r" * 10)
    recv_exact(a, 10)
    abort_close(a)
    check_eq("S2: upstream RST reaches the client as a reset", read_end(c)[0], "reset")
    c.close()

    # S3: the client resets.
    c, a = pair(hp, up)
    c.sendall(b"s" * 4)
    recv_exact(a, 4)
    abort_close(c)
    check_eq("S3: client RST reaches the upstream as a reset", read_end(a)[0], "reset")
    a.close()

    # S4: the upstream sends a FIN first; the client answers, then closes.
    c, a = pair(hp, up)
    a.sendall(b"t" * 20)
    a.shutdown(socket.SHUT_WR)
    check_eq("S4: the client reads the bytes, then EOF", read_end(c), ("eof", b"t" * 20))
    c.sendall(b"v" * 5)
    check_eq("S4: the half-closed direction still flows", recv_exact(a, 5), b"v" * 5)
    c.close()
    check_eq("S4: the upstream reads EOF", read_end(a)[0], "eof")
    a.close()

    # TW: client-first closes without data; halfpipe's upstream sockets go to TIME_WAIT.
    for _ in range(tw_sessions):
        c, a = pair(hp, up)
        c.close()
        read_end(a)
        a.close()

    # Live: one half-closed by the client, one half-closed by the upstream, one established.
    c5, a5 = pair(hp, up)
    c5.sendall(b"h" * 7)
    c5.shutdown(socket.SHUT_WR)
    check_eq("S5: the upstream reads the bytes, then EOF", read_end(a5), ("eof", b"h" * 7))
    c7, a7 = pair(hp, up)
    a7.shutdown(socket.SHUT_WR)
    check_eq("S7: the client reads EOF", read_end(c7), ("eof", b""))
    c6, a6 = pair(hp, up)
    c6.sendall(b"e" * 3)
    recv_exact(a6, 3)
    a6.sendall(b"f" * 3)
    recv_exact(c6, 3)

    # Refused: the upstream stops listening; the next client is reset.
    up.sock.close()
    try:
        c = connect(hp.port)
        outcome = read_end(c)[0]
        c.close()
    except ConnectionResetError:  # the whole exchange fits between SYN-ACK and connect() returning
        outcome = "reset"
    check_eq("refused upstream: the client reads a reset", outcome, "reset")

    accepted = 4 + tw_sessions + 3 + 1
    closed = accepted - 3

    def settled():
        m = scrape(hp)
        done = m.total("halfpipe_connections_closed_total") == closed
        socks = m.series("halfpipe_tcp_sockets")
        transient = sum(v for l, v in socks.items() if dict(l)["state"] in ("LAST_ACK", "FIN_WAIT1", "CLOSING"))
        live = [s for s in sessions(hp) if s["state"] in ("client_fin", "upstream_fin", "established")]
        return m if done and not transient and len(live) == 3 else None

    m = wait_until(settled, 5, 0.1) or scrape(hp)
    listed = sessions(hp)

    check_eq("halfpipe_connections_accepted_total", m.get("halfpipe_connections_accepted_total", listener=L), accepted)
    gauges = {dict(l)["state"]: v for l, v in m.series("halfpipe_connections").items()}
    check_eq("halfpipe_connections by state",
             gauges, {"connecting": 0, "established": 1, "client_fin": 1, "upstream_fin": 1, "closing": 0})
    check_eq("sum of halfpipe_connections == sessions in /connections", sum(gauges.values()), len(listed))
    check_eq("halfpipe_connections_closed_total (non-zero series)", closes(m, L), {
        ("client", "fin"): 1 + tw_sessions, ("upstream", "rst"): 1, ("client", "rst"): 1, ("upstream", "fin"): 1,
        ("upstream", "error"): 1})
    check_eq("halfpipe_connections_closed_total has all 15 initiator x how series",
             len(m.series("halfpipe_connections_closed_total")), 15)
    check_eq("halfpipe_resets_translated_total{direction=upstream_to_client}",
             m.get("halfpipe_resets_translated_total", listener=L, direction="upstream_to_client"), 1)
    check_eq("halfpipe_resets_translated_total{direction=client_to_upstream}",
             m.get("halfpipe_resets_translated_total", listener=L, direction="client_to_upstream"), 1)
    check_eq("halfpipe_half_closes_total{side=client}",
             m.get("halfpipe_half_closes_total", listener=L, side="client"), 1 + tw_sessions + 1)
    check_eq("halfpipe_half_closes_total{side=upstream}",
             m.get("halfpipe_half_closes_total", listener=L, side="upstream"), 2)
    check_eq("halfpipe_bytes_total{direction=to_upstream}",
             m.get("halfpipe_bytes_total", listener=L, direction="to_upstream"), 100 + 10 + 4 + 5 + 7 + 3)
    check_eq("halfpipe_bytes_total{direction=to_client}",
             m.get("halfpipe_bytes_total", listener=L, direction="to_client"), 50 + 20 + 3)
    errors = {dict(l)["reason"]: v for l, v in m.series("halfpipe_upstream_connect_errors_total").items()}
    check_eq("halfpipe_upstream_connect_errors_total by reason", errors,
             {"refused": 1, "timeout": 0, "unreachable": 0, "port_exhausted": 0, "resolve_failed": 0, "other": 0})
    check_eq("halfpipe_connections_rejected_total{reason=max_connections}",
             m.get("halfpipe_connections_rejected_total", listener=L, reason="max_connections"), 0)
    check_eq("halfpipe_accept_errors_total (sum)", m.total("halfpipe_accept_errors_total"), 0)
    check_eq("halfpipe_connection_duration_seconds_count",
             m.get("halfpipe_connection_duration_seconds_count", listener=L), closed)
    check_eq("halfpipe_connection_transferred_bytes_count",
             m.get("halfpipe_connection_transferred_bytes_count", listener=L), closed)
    check_eq("halfpipe_connection_transferred_bytes_sum",
             m.get("halfpipe_connection_transferred_bytes_sum", listener=L), 100 + 50 + 10 + 4 + 20 + 5)
    check_eq("halfpipe_upstream_connect_duration_seconds_count (successful connects)",
             m.get("halfpipe_upstream_connect_duration_seconds_count", listener=L), accepted - 1)
    check_eq("halfpipe_half_closed_duration_seconds_count (closed sessions that were half-closed)",
             m.get("halfpipe_half_closed_duration_seconds_count", listener=L), 1 + tw_sessions + 1)
    inf = m.get("halfpipe_connection_duration_seconds_bucket", listener=L, le="+Inf")
    check_eq("halfpipe_connection_duration_seconds_bucket{le=+Inf} == _count", inf, closed)
    buckets = sorted(((float(dict(l)["le"]), v) for l, v in m.series("halfpipe_connection_duration_seconds_bucket").items()))
    check("histogram buckets are cumulative", all(b[1] <= c[1] for b, c in zip(buckets, buckets[1:])), buckets)
    check_eq("halfpipe_build_info", m.get("halfpipe_build_info", version=version()), 1)

    # Kernel census, compared with the kernel's own tables.
    socks = {(dict(l)["side"], dict(l)["state"]): v for l, v in m.series("halfpipe_tcp_sockets").items()
             if dict(l)["listener"] == L}
    tw_up = ss_count("time-wait", f"( dport = :{up.port} )")
    tw_down = ss_count("time-wait", f"( sport = :{hp.port} )")
    print(f"  (ss: TIME_WAIT toward the upstream {tw_up}, on the listener port {tw_down})")
    expected = {(side, st): 0.0 for side in ("downstream", "upstream") for st in
                ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE_WAIT",
                 "LAST_ACK", "CLOSING")}
    expected.update({("downstream", "ESTABLISHED"): 1, ("downstream", "CLOSE_WAIT"): 1,
                     ("downstream", "FIN_WAIT2"): 1, ("downstream", "TIME_WAIT"): tw_down,
                     ("upstream", "ESTABLISHED"): 1, ("upstream", "FIN_WAIT2"): 1, ("upstream", "CLOSE_WAIT"): 1,
                     ("upstream", "TIME_WAIT"): tw_up})
    check_eq("halfpipe_tcp_sockets, every side x state", socks, expected)
    check_eq("halfpipe_tcp_sockets{side=downstream,state=CLOSE_WAIT} (the client_fin session)",
             socks.get(("downstream", "CLOSE_WAIT")), 1)
    check_eq("halfpipe_tcp_sockets{side=upstream,state=FIN_WAIT2} (the client_fin session)",
             socks.get(("upstream", "FIN_WAIT2")), 1)
    check("client-first closes left TIME_WAIT on the upstream side", tw_up >= 1 and socks.get(
        ("upstream", "TIME_WAIT")) == tw_up, f"metric {socks.get(('upstream', 'TIME_WAIT'))}, ss {tw_up}, "
                                             f"client-first closes {1 + tw_sessions}")
    target = f"127.0.0.1:{up.port}"
    check_eq("halfpipe_upstream_time_wait_sockets", m.get("halfpipe_upstream_time_wait_sockets", listener=L,
                                                           upstream=target), tw_up)
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = map(int, f.read().split())
    toward = len([l for l in subprocess.run(["ss", "-Htan", f"( dport = :{up.port} )"], capture_output=True,
                                            text=True).stdout.splitlines() if l.strip()])
    check_eq("halfpipe_upstream_port_headroom == port range - sockets toward the upstream (ss)",
             m.get("halfpipe_upstream_port_headroom", listener=L, upstream=target), high - low + 1 - toward)

    # Process metrics.
    fds = hp.open_fds()
    open_fds = m.get("process_open_fds")
    check("process_open_fds > 0 and close to /proc/PID/fd", open_fds and abs(open_fds - fds) <= 3,
          f"metric {open_fds}, /proc {fds}")
    nofile = hp.wait_for_line(r"nofile=(\d+)", 1)
    check_eq("process_max_fds == the nofile limit halfpipe logged", m.get("process_max_fds"),
             float(nofile.group(1)) if nofile else None)
    rss = m.get("process_resident_memory_bytes")
    vm_rss = hp.rss_bytes()
    check("process_resident_memory_bytes > 1 MB and within 20% of VmRSS in /proc/PID/status",
          rss and vm_rss and rss > 1e6 and abs(rss - vm_rss) <= 0.2 * vm_rss, f"metric {rss}, VmRSS {vm_rss}")
    check("process_cpu_seconds_total >= 0", m.get("process_cpu_seconds_total") is not None and
          m.get("process_cpu_seconds_total") >= 0, m.get("process_cpu_seconds_total"))
    start = m.get("process_start_time_seconds")
    check("process_start_time_seconds within 5 s of the start", start and abs(start - hp.started_at) < 5,
          f"{start} vs {hp.started_at:.2f}")
    check_eq("types", {n: m.types.get(n) for n in ("halfpipe_connections", "halfpipe_connections_closed_total",
                                                   "halfpipe_connection_duration_seconds", "halfpipe_tcp_sockets",
                                                   "process_cpu_seconds_total")},
             {"halfpipe_connections": "gauge", "halfpipe_connections_closed_total": "counter",
              "halfpipe_connection_duration_seconds": "histogram", "halfpipe_tcp_sockets": "gauge",
              "process_cpu_seconds_total": "counter"})
    exported = exported_metrics()
    if exported:
        served = dict(m.types)
        extra = {n: t for n, t in served.items() if exported.get(n) != t}
        missing = {n: t for n, t in exported.items() if served.get(n) != t}
        check("the families served are exactly those of tests/deploy/exported_metrics.txt", not extra and not missing,
              f"served but not listed: {extra}; listed but not served: {missing}")

    # promtool's linter has nothing to say.
    body = http(hp, "GET", "/metrics").body
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=20)
    check("promtool check metrics: exit 0, no output",
          lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(),
          f"exit {lint.returncode}: {(lint.stdout + lint.stderr).decode()[:2000]}")

    logged = hp.access_lines()
    check_eq("one access line per closed connection", len(logged), closed)
    check_eq("halfpipe exits 0 after SIGTERM", hp.stop(), 0)


def version():
    out = subprocess.run([BINARY, "--version"], capture_output=True, text=True, timeout=10).stdout
    return out.split()[-1] if out.strip() else "?"


def exported_metrics():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy", "exported_metrics.txt")
    if not os.path.exists(path):
        return None
    out = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, kind = line.split()
                out[name] = kind
    return out


@test(30)
def test_idle_timeout_metrics():
    up = Upstream()
    hp = Halfpipe(up.port, "--idle-timeout", "1s")
    c, a = pair(hp, up)
    c.sendall(b"i" * 6)
    recv_exact(a, 6)
    t0 = time.monotonic()
    kind, _ = read_end(c, 5)
    elapsed = time.monotonic() - t0
    check_eq("idle timeout: the client reads a reset (linger rst)", kind, "reset")
    # The upper bound leaves room for a CI machine loaded by the tests beside this one.
    check("idle timeout: after about 1 s of silence", 0.9 <= elapsed <= 3.0, f"{elapsed:.2f} s")
    check_eq("idle timeout: the upstream reads a reset", read_end(a)[0], "reset")
    m = wait_until(lambda: (lambda m: m if m.total("halfpipe_connections_closed_total") else None)(scrape(hp)), 3)
    check_eq("closed_total after an idle timeout", closes(m, "default"), {("proxy", "timeout"): 1})
    check_eq("halfpipe_connections all 0", m.total("halfpipe_connections"), 0)
    check_eq("accepted_total", m.get("halfpipe_connections_accepted_total", listener="default"), 1)
    check_eq("halfpipe_connection_duration_seconds_count", m.get("halfpipe_connection_duration_seconds_count",
                                                                  listener="default"), 1)
    d = m.get("halfpipe_connection_duration_seconds_sum", listener="default")
    check("halfpipe_connection_duration_seconds_sum about 1 s", d and 0.9 <= d <= 3.0, d)
    check_eq("bytes_total to_upstream", m.get("halfpipe_bytes_total", listener="default", direction="to_upstream"), 6)
    check_eq("no TIME_WAIT left by a reset", m.total("halfpipe_tcp_sockets", state="TIME_WAIT"), 0)
    check("access line with reason=idle_timeout", any("reason=idle_timeout" in l for l in hp.access_lines()),
          hp.access_lines())
    check_eq("halfpipe exits 0 after SIGTERM", hp.stop(), 0)


@test(30)
def test_two_listeners_and_connecting():
    """Series per listener; a session waiting on a slow upstream connect is 'connecting'."""
    up = Upstream()
    # A listener whose accept queue is full drops SYNs: a connect to it stays in
    # SYN_SENT until halfpipe's connect timeout.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    cleanups.append(hole.close)
    filler = socket.create_connection(hole.getsockname(), timeout=5)
    cleanups.append(filler.close)
    hp = Halfpipe(config=f"""
workers: 1
admin: {{address: 127.0.0.1:0}}
listeners:
  - name: fast
    bind: 127.0.0.1:0
    upstream: {{address: 127.0.0.1:{up.port}}}
  - name: blackhole
    bind: 127.0.0.1:0
    upstream: {{address: 127.0.0.1:{hole.getsockname()[1]}}}
    timeouts: {{connect: 2s}}
""")
    m = hp.wait_for_line(r"event=listening listener=blackhole address=127\.0\.0\.1:(\d+)", 5)
    black_port = int(m.group(1))
    c, a = pair(hp, up)
    b = connect(black_port)
    s = wait_until(lambda: [x for x in sessions(hp) if x["listener"] == "blackhole"], 3)
    check("the blackhole session is listed as connecting, upstream '-'",
          s and s[0]["state"] == "connecting" and s[0]["upstream"] == "-", s)
    m = scrape(hp)
    for name in ("fast", "blackhole"):
        check_eq(f"halfpipe_connections has 5 states for listener {name}",
                 len([l for l in m.series("halfpipe_connections") if dict(l)["listener"] == name]), 5)
    check_eq("halfpipe_connections{listener=fast,state=established}",
             m.get("halfpipe_connections", listener="fast", state="established"), 1)
    check_eq("halfpipe_connections{listener=blackhole,state=connecting}",
             m.get("halfpipe_connections", listener="blackhole", state="connecting"), 1)
    check_eq("sum over listeners == sessions", m.total("halfpipe_connections"), len(sessions(hp)))
    unreachable = m.get("halfpipe_tcp_sockets", listener="blackhole", side="upstream", state="SYN_SENT")
    # Only counted once the census knows the upstream: an IP literal is known from the start.
    check_eq("halfpipe_tcp_sockets{listener=blackhole,side=upstream,state=SYN_SENT}", unreachable, 1)
    kind, _ = read_end(b, 4)
    check_eq("after the 2 s connect timeout the client is reset", kind, "reset")
    # The client sees its reset a moment before the session's end is counted.
    m = wait_until(lambda: (lambda m: m if m.get("halfpipe_upstream_connect_errors_total", listener="blackhole",
                                                 reason="timeout") and closes(m, "blackhole") else None)(scrape(hp)),
                   3) or scrape(hp)
    check_eq("halfpipe_upstream_connect_errors_total{listener=blackhole,reason=timeout}",
             m.get("halfpipe_upstream_connect_errors_total", listener="blackhole", reason="timeout"), 1)
    check_eq("closed_total for blackhole", closes(m, "blackhole"), {("upstream", "error"): 1})
    check_eq("nothing closed on fast", closes(m, "fast"), {})
    check_eq("halfpipe exits 0 after SIGTERM", hp.stop(), 0)


@test(90)
def test_gauges_after_mass_close():
    """After many connections end at once (clients close, then upstreams close), every
    session ends: the per-state gauges return to 0 and closed_total catches up with
    accepted_total. Rounds of ROUND connections, all peers in this process."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cleanups.append(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))
    per_round = max(100, min(2000, (hard - 200) // 2))
    up = Upstream()
    up.sock.listen(4096)
    hp = Halfpipe(up.port, "--drain-timeout", "2s")
    accepted = 0
    stuck_rounds = []
    left_before = 0
    for rnd in range(4):
        clients, uppers = [], []
        up.sock.setblocking(False)
        deadline = time.monotonic() + 20
        while len(uppers) < per_round and time.monotonic() < deadline:
            while len(clients) < per_round and len(clients) - len(uppers) < 200:
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", hp.port))
                clients.append(c)
            select.select([up.sock], [], [], 0.2)
            while True:
                try:
                    a, _ = up.sock.accept()
                except BlockingIOError:
                    break
                uppers.append(a)
        accepted += len(clients)
        for c in clients:
            c.close()
        for a in uppers:
            a.close()
        m = wait_until(lambda: (lambda m: m if m.total("halfpipe_connections") == 0 and
                                m.total("halfpipe_connections_closed_total") == accepted else None)(scrape(hp)), 5, 0.2)
        m = m or scrape(hp)
        live = m.total("halfpipe_connections")
        if live > left_before:
            stuck_rounds.append((rnd, int(live - left_before)))
            left_before = live
            states = {dict(l)["state"]: v for l, v in m.series("halfpipe_connections").items() if v}
            listed = sessions(hp)
            kinds = {}
            for x in listed:
                k = (x["state"], x["client_socket"]["state"], x["upstream_socket"]["state"])
                kinds[k] = kinds.get(k, 0) + 1
            print(f"  round {rnd}: {len(uppers)} connections; 5 s after every peer closed, {stuck_rounds[-1][1]} "
                  f"more sessions remain ({live:.0f} in all): gauges {states}, /connections (state, client_socket, "
                  f"upstream_socket): {kinds}")
        if len(uppers) != per_round:
            check(f"round {rnd}: {per_round} connections relayed", False, len(uppers))
            break
    m = scrape(hp)
    check_eq(f"after 4 rounds of {per_round} connections closed by both peers: sum of halfpipe_connections",
             m.total("halfpipe_connections"), 0)
    check_eq("closed_total == accepted_total", m.total("halfpipe_connections_closed_total"),
             m.get("halfpipe_connections_accepted_total", listener="default"))
    check_eq("/connections is empty", len(sessions(hp)), 0)
    fds = m.get("process_open_fds")
    check("process_open_fds back to a handful (no descriptor held by an ended connection)", fds is not None and
          fds < 100, fds)
    check_eq("rounds that left sessions behind: (round, sessions)", stuck_rounds, [])
    code = hp.stop(15)
    check_eq("halfpipe exits 0 after SIGTERM (drain timeout 2 s)", code, 0)


# ---------------------------------------------------------------------------------------
# A real Prometheus


class Prometheus:
    def __init__(self, target):
        self.dir = tempfile.mkdtemp(prefix="halfpipe-prometheus-")
        cleanups.append(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.port = free_port()
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: halfpipe
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ['{target}']
""")
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        cleanups.append(self.kill)
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path, **params):
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read()

    def ready(self):
        try:
            return self.get("/-/ready")[0] == 200
        except OSError:
            return False

    def query(self, expr):
        try:
            status, body = self.get("/api/v1/query", query=expr)
        except OSError:
            return None
        data = json.loads(body)
        if data.get("status") != "success":
            return None
        return [(r["metric"], float(r["value"][1])) for r in data["data"]["result"]]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def log_text(self):
        try:
            with open(os.path.join(self.dir, "prometheus.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""


@test(90)
def test_prometheus_end_to_end():
    if not os.path.exists(PROMETHEUS):
        check("prometheus binary present (apt-get install prometheus)", False, PROMETHEUS)
        return
    up = Upstream()
    hp = Halfpipe(up.port)
    half_closed, client_first = 3, 6
    # Room for the TIME_WAIT sockets the client-first closes leave, taken before they close.
    tw_room = time_wait_headroom()

    # Sessions the client half-closed while the upstream stays silent: client_fin.
    kept = []
    for _ in range(half_closed):
        c, a = pair(hp, up)
        c.shutdown(socket.SHUT_WR)
        read_end(a)
        kept.append((c, a))
    # Client-first closes: TIME_WAIT on halfpipe's upstream side.
    for _ in range(client_first):
        c, a = pair(hp, up)
        c.close()
        read_end(a)
        a.close()
    time.sleep(0.3)
    tw_ss = ss_count("time-wait", f"( dport = :{up.port} )")
    print(f"  (ss: {tw_ss} TIME_WAIT sockets toward the upstream after {client_first} client-first closes)")
    if tw_room >= 1000:
        check("ss sees TIME_WAIT toward the upstream", tw_ss >= 1, tw_ss)
    else:
        print(f"  (not checked: ss sees TIME_WAIT toward the upstream; the kernel has room for only {tw_room} "
              "more TIME_WAIT sockets, tcp_max_tw_buckets)")
    expected_tw = min(client_first, tw_ss)

    prom = Prometheus(f"{hp.admin[0]}:{hp.admin[1]}")
    ok = wait_until(prom.ready, 30, 0.2)
    if not check("Prometheus starts and is ready", ok, prom.log_text()):
        return
    t0 = time.monotonic()
    want_fin = f'halfpipe_connections{{job="halfpipe",listener="default",state="client_fin"}}'
    want_tw = f'halfpipe_tcp_sockets{{job="halfpipe",listener="default",side="upstream",state="TIME_WAIT"}}'
    fin = tw = up_ = None
    while time.monotonic() - t0 < 20:
        fin, tw, up_ = prom.query(want_fin), prom.query(want_tw), prom.query('up{job="halfpipe"}')
        if fin and tw and up_ and fin[0][1] == half_closed and tw[0][1] >= expected_tw and up_[0][1] == 1:
            break
        time.sleep(0.5)
    took = time.monotonic() - t0
    check_eq("Prometheus: up{job=halfpipe}", up_ and up_[0][1], 1)
    check_eq(f"Prometheus: {want_fin}", fin and fin[0][1], half_closed)
    check(f"Prometheus: {want_tw} >= {expected_tw}", tw and tw[0][1] >= expected_tw,
          f"{tw and tw[0][1]} (after {took:.1f} s)")
    print(f"  (Prometheus returned the expected values {took:.1f} s after it was ready)")
    r = prom.query('sum(halfpipe_connections{job="halfpipe"})')
    check_eq("Prometheus: sum(halfpipe_connections) == live sessions", r and r[0][1], half_closed)
    r = prom.query('halfpipe_connections_closed_total{job="halfpipe",initiator="client",how="fin"}')
    check_eq("Prometheus: closed_total{initiator=client,how=fin}", r and r[0][1], client_first)
    # The latest scrape's health. Under a loaded CI machine one scrape may overrun its
    # 1 s timeout (the admin thread runs at nice 10), so a clean one within 10 s will do;
    # every scrape failing still fails the test.
    def target():
        try:
            _, body = prom.get("/api/v1/targets")
            targets = json.loads(body)["data"]["activeTargets"]
            return targets[0] if targets else {}
        except (OSError, ValueError, KeyError) as e:
            return {"health": "unknown", "lastError": str(e)}
    t = wait_until(lambda: (lambda t: t if t.get("health") == "up" and not t.get("lastError") else None)(target()),
                   10, 0.5) or target()
    check("Prometheus: the target is healthy with no scrape error",
          t.get("health") == "up" and not t.get("lastError"), {k: t.get(k) for k in ("health", "lastError")})
    # Scrape warnings (a text the parser tolerates but flags) go to the log.
    r = prom.query('scrape_samples_post_metric_relabeling{job="halfpipe"}')
    check("Prometheus: samples ingested per scrape > 100", r and r[0][1] > 100, r)
    prom.kill()
    check_eq("Prometheus stopped (killed by PID)", prom.proc.poll() is not None, True)
    for c, a in kept:
        a.close()
        c.close()
    check_eq("halfpipe exits 0 after SIGTERM", hp.stop(), 0)


# ---------------------------------------------------------------------------------------


if __name__ == "__main__":
    suite.run()
