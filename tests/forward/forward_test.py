#!/usr/bin/env python3
"""Forward-proxy listeners (mode connect and socks5) against the real binary, over loopback:

- curl through an HTTP CONNECT proxy (-p -x), through SOCKS5 with the proxy resolving
  (--socks5-hostname) and with curl resolving (--socks5), and to an IPv6 target: the page
  arrives intact and the access log names the mode and the destination;
- raw CONNECT: bytes pipelined after the head reach the upstream; 405, 400 (malformed
  request line, missing port, port 0), 431 (head over 8 KiB), 403 (ACL, own listener,
  DNS rebinding), 502 (refused); a slow head is closed after timeouts.handshake and counted
  as handshake_incomplete;
- raw SOCKS5 (RFC 1928): IPv4, IPv6 and domain address types, the BND.ADDR/BND.PORT of
  the reply, pipelined payload; replies 0x07 (BIND, UDP ASSOCIATE), 0x08 (address type),
  0x02 (ACL), 0x05 (refused), method 0xFF when only username/password is offered;
- every error reply ends with a lingering close: a client that keeps sending after it sees
  our FIN, never an RST; timeouts.lingering_close bounds it (and off turns it off), and the
  drain cuts it short;
- a tunnel relays a half-close (data, FIN, a late answer, FIN) and an upstream reset;
- rejected handshakes leave no session behind (/connections empty, halfpipe_connections 0);
- authentication from a users file of crypt(3) hashes: curl with Basic proxy credentials and
  socks5h://user:pass@, raw 407 answers (none, wrong scheme, bad base64, wrong password,
  unknown user), RFC 1929 failures, user= in the access log, no secret in the log,
  auth_required/auth_failed counters, password hashing off the relay threads, a cheap
  check of remembered logins (guesses at a remembered user cost the worker little), and --check
  naming the users file's line.

Nothing here leaves loopback: targets are 127.0.0.1, ::1 and `localhost` (/etc/hosts);
denied destinations are refused before any connect.

Usage: forward_test.py [HALFPIPE_BINARY] [-k SUBSTRING ...]
Python 3 standard library only, plus curl. Every test has a time budget (SIGALRM) and
every wait a deadline. Prints PASS/FAIL lines and 'N passed, N failed'; exits non-zero on
any failure.
"""
import base64
import http.client
import http.server
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from halfpipe_harness import (HalfpipeProcess, Suite, TestListener, abort_close, free_port,  # noqa: E402
                              metric_sum, read_end, recv_exact, temp_file, wait_until)

suite = Suite("forward")
BINARY = suite.binary
check, check_eq, test, cleanups = suite.check, suite.check_eq, suite.test, suite.cleanups


# ---------------------------------------------------------------------------------------
# halfpipe


class Halfpipe(HalfpipeProcess):
    """halfpipe as a child process, with its admin endpoint; listener ports come from its log.

    Quick form: Halfpipe(mode="connect"|"socks5"), one listener named "default".
    Config form: Halfpipe(config=YAML, listeners=[names]).
    """

    def __init__(self, mode=None, config=None, listeners=("default",)):
        args = [BINARY]
        if config is not None:
            args += ["--config", temp_file(config, cleanups, "halfpipe-forward-test-", ".yaml")]
        else:
            args += ["--listen", "127.0.0.1:0", "--mode", mode, "--admin", "127.0.0.1:0", "--drain-timeout", "2s"]
        super().__init__(args, admin=True, listeners=listeners)
        cleanups.append(lambda: self.stop(5))

    def admin_get(self, path):
        conn = http.client.HTTPConnection(self.admin[0], self.admin[1], timeout=5)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def metrics(self):
        status, body = self.admin_get("/metrics")
        assert status == 200, status
        return body.decode()

    def metric(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels`."""
        return metric_sum(self.metrics(), name, labels)

    def connections(self):
        status, body = self.admin_get("/connections")
        assert status == 200, status
        return json.loads(body)


def forward_config(acl=None, handshake=None, socks=False, auth=None, workers=2, lingering_close=None):
    """YAML: listener `fwd` (connect) and, with socks, `sox` (socks5), sharing acl, auth and timeouts."""
    timeouts = {"handshake": handshake, "lingering_close": lingering_close}

    def listener(name, mode):
        out = f"  - name: {name}\n    mode: {mode}\n    bind: 127.0.0.1:0\n"
        if acl:
            out += "    acl:\n" + "".join(f"      - {rule}\n" for rule in acl)
        if auth:
            out += "    auth:\n" + "".join(f"      {key}: {value}\n" for key, value in auth.items())
        if any(timeouts.values()):
            out += "    timeouts:\n" + "".join(f"      {k}: {v}\n" for k, v in timeouts.items() if v)
        return out
    text = f"workers: {workers}\ndrain_timeout: 2s\nadmin:\n  address: 127.0.0.1:0\nlisteners:\n" + listener("fwd", "connect")
    if socks:
        text += listener("sox", "socks5")
    return text


def assert_nothing_left(hp, what):
    """After rejected handshakes: no session in /connections, the state gauges at 0."""
    def clean():
        return hp.connections() == [] and hp.metric("halfpipe_connections") == 0
    wait_until(clean, 3)
    check_eq(f"{what}: /connections is empty", hp.connections(), [])
    check_eq(f"{what}: halfpipe_connections gauges sum to 0", hp.metric("halfpipe_connections"), 0)


# ---------------------------------------------------------------------------------------
# Test upstreams


BODY = random.Random(1928).randbytes(256 * 1024)


class PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


class V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def http_upstream(v6=False):
    """A threaded HTTP server on 127.0.0.1:0 (or [::1]:0) serving BODY; returns its port."""
    server = (V6Server if v6 else http.server.ThreadingHTTPServer)(("::1" if v6 else "127.0.0.1", 0), PageHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def close():
        server.shutdown()
        server.server_close()
    cleanups.append(close)
    return server.server_address[1]


class RawUpstream(TestListener):
    def __init__(self, v6=False):
        super().__init__(cleanups, v6=v6, backlog=64)


# ---------------------------------------------------------------------------------------
# Clients


def connect(port, timeout=5):
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    cleanups.append(c.close)
    return c


def read_head(sock, timeout=5):
    """Reads an HTTP response head: (status or None, head text, bytes after the head, how it ended)."""
    data = b""
    deadline = time.monotonic() + timeout
    how = "head"
    while b"\r\n\r\n" not in data:
        try:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
        except ConnectionResetError:
            how = "reset"
            break
        except (socket.timeout, TimeoutError):
            how = "timeout"
            break
        if not chunk:
            how = "eof"
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    m = re.match(r"HTTP/1\.[01] (\d{3}) ", text)
    return (int(m.group(1)) if m else None), text, rest, how


def connect_head(authority, extra=""):
    return f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n".encode("latin-1")


def tunnel(hp_port, authority, payload=b""):
    """A CONNECT tunnel: (client socket, status, head, bytes after the head)."""
    c = connect(hp_port)
    c.sendall(connect_head(authority) + payload)
    status, head, rest, _ = read_head(c)
    return c, status, head, rest


def socks_addr(atyp, host):
    if atyp == 1:
        return socket.inet_pton(socket.AF_INET, host)
    if atyp == 4:
        return socket.inet_pton(socket.AF_INET6, host)
    name = host.encode()
    return bytes([len(name)]) + name


def socks_request(host, port, atyp=1, cmd=1):
    return b"\x05" + bytes([cmd]) + b"\x00" + bytes([atyp]) + socks_addr(atyp, host) + struct.pack(">H", port)


GREETING = b"\x05\x01\x00"


def read_socks_reply(sock, timeout=5):
    """Reads a SOCKS5 reply: (REP or None, ATYP, BND.ADDR text, BND.PORT, raw bytes)."""
    head = recv_exact(sock, 4, timeout)
    if len(head) < 4:
        return None, None, None, None, head
    atyp = head[3]
    n = {1: 4, 4: 16}.get(atyp)
    if n is None:
        return head[1], atyp, None, None, head
    rest = recv_exact(sock, n + 2, timeout)
    raw = head + rest
    if len(rest) < n + 2:
        return head[1], atyp, None, None, raw
    addr = socket.inet_ntop(socket.AF_INET if atyp == 1 else socket.AF_INET6, rest[:n])
    return head[1], atyp, addr, struct.unpack(">H", rest[n:])[0], raw


def socks_tunnel(hp_port, host, port, atyp=1, payload=b""):
    """Greeting, request (and payload) in one write: (socket, method reply, REP, BND.ADDR, BND.PORT)."""
    c = connect(hp_port)
    c.sendall(GREETING + socks_request(host, port, atyp) + payload)
    method = recv_exact(c, 2)
    rep, _, addr, bport, _ = read_socks_reply(c)
    return c, method, rep, addr, bport


def curl(args, timeout=20):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(["curl", "-sS", "--max-time", "10"] + args, capture_output=True, env=env, timeout=timeout)


def check_curl(hp, what, args, mode, destination):
    r = curl(args)
    check_eq(f"{what}: curl exit status", r.returncode, 0)
    if r.returncode != 0:
        print("    curl stderr:", r.stderr.decode(errors="replace").strip())
    check(f"{what}: body intact ({len(BODY)} bytes)", r.stdout == BODY,
          f"observed {len(r.stdout)} bytes, equal={r.stdout == BODY}")
    pattern = (r"event=access listener=default .*bytes_to_client=(\d+) .* mode=" + mode +
               r" destination=" + re.escape(destination) + r"(\s|$)")
    m = hp.wait_for_line(pattern, 5)
    check(f"{what}: access log has mode={mode} destination={destination}", m, "".join(hp.access_lines()))
    if m:
        check(f"{what}: access log bytes_to_client >= body", int(m.group(1)) >= len(BODY), m.group(0))


# ---------------------------------------------------------------------------------------
# curl end to end


@test(20)
def curl_http_connect():
    up = http_upstream()
    hp = Halfpipe(mode="connect")
    check_curl(hp, "curl -p -x", ["-p", "-x", f"http://127.0.0.1:{hp.port}", f"http://127.0.0.1:{up}/"],
               "connect", f"127.0.0.1:{up}")


@test(20)
def curl_socks5_hostname():
    up = http_upstream()
    hp = Halfpipe(mode="socks5")
    check_curl(hp, "curl --socks5-hostname localhost", ["--socks5-hostname", f"127.0.0.1:{hp.port}",
                                                        f"http://localhost:{up}/"], "socks5", f"localhost:{up}")


@test(20)
def curl_socks5_local_resolve():
    up = http_upstream()
    hp = Halfpipe(mode="socks5")
    # -4: curl resolves localhost to 127.0.0.1 itself and sends an IPv4 address (ATYP 1).
    check_curl(hp, "curl -4 --socks5 localhost", ["-4", "--socks5", f"127.0.0.1:{hp.port}", f"http://localhost:{up}/"],
               "socks5", f"127.0.0.1:{up}")


@test(20)
def curl_ipv6_target():
    up = http_upstream(v6=True)
    hp = Halfpipe(mode="connect")
    check_curl(hp, "curl -p -x to [::1]", ["-g", "-p", "-x", f"http://127.0.0.1:{hp.port}", f"http://[::1]:{up}/"],
               "connect", f"[::1]:{up}")
    hp2 = Halfpipe(mode="socks5")
    check_curl(hp2, "curl --socks5-hostname to [::1]", ["-g", "--socks5-hostname", f"127.0.0.1:{hp2.port}",
                                                        f"http://[::1]:{up}/"], "socks5", f"[::1]:{up}")


# ---------------------------------------------------------------------------------------
# Raw CONNECT


@test(15)
def connect_pipelined_payload():
    up = RawUpstream()
    hp = Halfpipe(mode="connect")
    payload = b"PIPELINED-PAYLOAD\n" * 10
    c, status, head, rest = tunnel(hp.port, f"127.0.0.1:{up.port}", payload)
    check_eq("200 for CONNECT", status, 200)
    check_eq("status line", head.split("\r\n")[0], "HTTP/1.1 200 Connection established")
    check_eq("nothing after the 200 head yet", rest, b"")
    a = up.accept()
    check_eq("upstream received the bytes pipelined after the head", recv_exact(a, len(payload)), payload)
    a.sendall(b"pong")
    check_eq("client receives the upstream's bytes", recv_exact(c, 4), b"pong")
    c.sendall(b"ping")
    check_eq("upstream receives the client's later bytes", recv_exact(a, 4), b"ping")
    c.close()
    check_eq("upstream reads EOF after the client closes", read_end(a, 3)[0], "eof")
    a.close()
    m = hp.wait_for_line(r"event=access .*bytes_to_upstream=(\d+) .*mode=connect destination=127\.0\.0\.1:%d" % up.port, 5)
    check("access log line for the tunnel", m, "".join(hp.access_lines()))
    if m:
        check_eq("access log bytes_to_upstream counts the pipelined bytes", int(m.group(1)), len(payload) + 4)
    # The head split over two writes, the payload riding on the second.
    head = connect_head(f"127.0.0.1:{up.port}")
    c = connect(hp.port)
    c.sendall(head[:-2])
    time.sleep(0.2)
    c.sendall(head[-2:] + b"SECOND-WRITE")
    status, _, rest, _ = read_head(c)
    check_eq("head in two writes: 200", status, 200)
    a = up.accept()
    check_eq("head in two writes: upstream received the payload after the head", recv_exact(a, 12), b"SECOND-WRITE")


def expect_rejection(hp, request, status, what, chunks=None):
    """Sends request (in one write, or chunks), expects `status` then the end of the connection."""
    c = connect(hp.port)
    try:
        for chunk in (chunks or [request]):
            c.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError) as e:
        check(f"{what}: request sent", False, repr(e))
    observed, head, rest, how = read_head(c)
    check_eq(f"{what}: status", observed, status)
    if observed is None:
        print(f"    ({what}: connection ended by {how} with {head!r})")
    end, extra = read_end(c, 3)
    check(f"{what}: connection closed with FIN after the response", end == "eof" and rest + extra == b"",
          f"{end}, extra bytes {rest + extra!r}")
    c.close()
    return head


@test(20)
def connect_bad_requests():
    up = RawUpstream()
    hp = Halfpipe(mode="connect")
    target = f"127.0.0.1:{up.port}"
    head = expect_rejection(hp, f"GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n".encode(), 405, "GET")
    check("405 carries Allow: CONNECT", "\r\nAllow: CONNECT" in head, head)
    expect_rejection(hp, b"CONNECT\r\n\r\n", 400, "request line without target and version")
    expect_rejection(hp, f"CONNECT {target}\r\n\r\n".encode(), 400, "request line without version")
    expect_rejection(hp, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "binary garbage")
    expect_rejection(hp, connect_head("127.0.0.1"), 400, "missing port")
    expect_rejection(hp, connect_head("127.0.0.1:"), 400, "empty port")
    expect_rejection(hp, connect_head("127.0.0.1:0"), 400, "port 0")
    expect_rejection(hp, connect_head("127.0.0.1:65536"), 400, "port 65536")
    expect_rejection(hp, connect_head("::1:80"), 400, "IPv6 literal without brackets")
    big = connect_head(target, "X-Filler: " + "a" * 9000 + "\r\n")
    expect_rejection(hp, big, 431, "head over 8 KiB in one write")
    # The same in 1 KiB writes: the limit is reached across several reads.
    expect_rejection(hp, big, 431, "head over 8 KiB in pieces", [big[i:i + 1024] for i in range(0, len(big), 1024)])
    check("upstream was never connected", up.accepted_nothing())
    # The limit is 8 KiB of head, final CRLF included: 8192 bytes pass, 8193 do not.
    base = len(connect_head(target, "X-Filler: \r\n"))
    for size, status in ((8193, 431), (8192, 200)):
        c = connect(hp.port)
        c.sendall(connect_head(target, "X-Filler: " + "a" * (size - base) + "\r\n"))
        check_eq(f"head of exactly {size} bytes: status", read_head(c)[0], status)
        if status == 200:
            up.accept().close()
        c.close()
    check_eq("halfpipe_forward_rejections_total{reason=bad_request}",
             hp.metric("halfpipe_forward_rejections_total", reason="bad_request"), 12)
    assert_nothing_left(hp, "after malformed and oversized heads")
    m = hp.wait_for_line(r"event=access .*initiator=client how=error reason=bad_request", 3)
    check("access log: initiator=client how=error reason=bad_request", m, "".join(hp.access_lines()))


ACL = ['{deny: 127.0.0.2/32}', '{allow: any, host: "*.localhost", ports: "1-65535"}',
       '{allow: 127.0.0.0/8, ports: "1024-65535"}']


@test(15)
def connect_acl_denied():
    up = RawUpstream()
    hp = Halfpipe(config=forward_config(acl=ACL), listeners=["fwd"])
    for authority, why in ((f"127.0.0.2:{up.port}", "deny rule 127.0.0.2/32"),
                           ("127.0.0.1:80", "port outside every allow rule"),
                           (f"[::1]:{up.port}", "no rule matches ::1")):
        c, status, head, _ = tunnel(hp.port, authority)
        check_eq(f"403 for {authority} ({why})", status, 403)
        check_eq(f"{authority}: closed after the 403", read_end(c, 3)[0], "eof")
    check("upstream was never connected", up.accepted_nothing())
    c, status, _, _ = tunnel(hp.port, f"127.0.0.1:{up.port}")
    check_eq("200 for an allowed destination (127.0.0.1, port >= 1024)", status, 200)
    up.accept()
    c.close()
    check_eq("halfpipe_forward_rejections_total{reason=destination_denied}",
             hp.metric("halfpipe_forward_rejections_total", listener="fwd", reason="destination_denied"), 3)
    m = hp.wait_for_line(r"event=access .*reason=destination_denied .*mode=connect destination=127\.0\.0\.2:%d" % up.port, 3)
    check("access log: reason=destination_denied destination=127.0.0.2", m, "".join(hp.access_lines()))


@test(15)
def connect_refused():
    hp = Halfpipe(mode="connect")
    port = free_port()
    c, status, head, _ = tunnel(hp.port, f"127.0.0.1:{port}")
    check_eq("502 for a refused port", status, 502)
    check_eq("closed after the 502", read_end(c, 3)[0], "eof")
    check_eq("halfpipe_upstream_connect_errors_total{reason=refused}",
             hp.metric("halfpipe_upstream_connect_errors_total", reason="refused"), 1)
    m = hp.wait_for_line(r"event=access .*initiator=upstream how=error reason=connect_refused .*mode=connect "
                         r"destination=127\.0\.0\.1:%d" % port, 3)
    check("access log: reason=connect_refused", m, "".join(hp.access_lines()))


@test(15)
def connect_own_listener():
    hp = Halfpipe(config=forward_config(socks=True), listeners=["fwd", "sox"])
    admin_port = hp.admin[1]
    # The IPv4-mapped form of a loopback address reaches the same sockets.
    for authority in (f"127.0.0.1:{hp.port}", f"localhost:{hp.port}", f"127.0.0.1:{hp.ports['sox']}",
                      f"[::ffff:127.0.0.1]:{hp.port}", f"[::ffff:127.0.0.1]:{admin_port}",
                      f"[::ffff:127.0.0.2]:{hp.ports['sox']}"):
        c, status, _, _ = tunnel(hp.port, authority)
        check_eq(f"403 for CONNECT to halfpipe's own listener {authority}", status, 403)
        check_eq(f"{authority}: closed after the 403", read_end(c, 3)[0], "eof")
    c, _, rep, _, _ = socks_tunnel(hp.ports["sox"], "127.0.0.1", hp.port)
    check_eq("SOCKS5 to halfpipe's connect listener: 0x02", rep, 0x02)
    c, _, rep, _, _ = socks_tunnel(hp.ports["sox"], "127.0.0.1", hp.ports["sox"])
    check_eq("SOCKS5 to halfpipe's own socks listener: 0x02", rep, 0x02)
    check_eq("halfpipe_forward_rejections_total{reason=destination_denied}",
             hp.metric("halfpipe_forward_rejections_total", reason="destination_denied"), 8)
    assert_nothing_left(hp, "after loops refused")


@test(15)
def connect_unspecified_address():
    # Linux connects 0.0.0.0 and :: to loopback: an ACL that denies loopback but allows
    # everything else must not let them through.
    up = RawUpstream()
    acl = ['{deny: 127.0.0.0/8}', '{deny: "::1/128"}', '{allow: 0.0.0.0/0}', '{allow: "::/0"}']
    hp = Halfpipe(config=forward_config(acl=acl), listeners=["fwd"])
    for authority in (f"0.0.0.0:{up.port}", f"[::]:{up.port}", f"[::ffff:0.0.0.0]:{up.port}",
                      f"[::ffff:127.0.0.1]:{up.port}"):
        c, status, _, _ = tunnel(hp.port, authority)
        check_eq(f"403 for {authority}", status, 403)
        check_eq(f"{authority}: closed after the 403", read_end(c, 3)[0], "eof")
    check("upstream was never connected", up.accepted_nothing())
    check_eq("halfpipe_forward_rejections_total{reason=destination_denied}",
             hp.metric("halfpipe_forward_rejections_total", listener="fwd", reason="destination_denied"), 4)


def keep_sending(sock, seconds):
    """Sends a chunk every 10 ms for `seconds`, as a client still uploading would:
    (seconds until a send failed or None, the error)."""
    started = time.monotonic()
    sock.settimeout(1)
    while time.monotonic() - started < seconds:
        try:
            sock.sendall(b"x" * 4096)
        except OSError as e:
            return time.monotonic() - started, e
        time.sleep(0.01)
    return None, None


def refused_connect(hp_port, authority):
    """A CONNECT that gets an error reply: (socket, status)."""
    c = connect(hp_port)
    c.sendall(connect_head(authority))
    status, _, _, _ = read_head(c)
    return c, status


def refused_socks(hp_port, request):
    """A SOCKS5 request that gets an error reply: (socket, REP)."""
    c = connect(hp_port)
    c.sendall(GREETING + request)
    recv_exact(c, 2)
    rep = read_socks_reply(c)[0]
    return c, rep


@test(20)
def refusals_linger_instead_of_resetting():
    # A client that keeps sending after an error reply (an upload already under way, a
    # head still arriving) must see our FIN and never an RST: a close with its bytes
    # unread, or arriving later, makes the kernel reset it, and the reset can cost the
    # client the reply itself.
    hp = Halfpipe(config=forward_config(socks=True), listeners=["fwd", "sox"])
    denied_port = free_port()
    cases = [("CONNECT to 0.0.0.0 (403)", lambda: refused_connect(hp.port, f"0.0.0.0:{denied_port}"), 403),
             ("CONNECT to a refused port (502)", lambda: refused_connect(hp.port, f"127.0.0.1:{denied_port}"), 502),
             ("SOCKS5 to 0.0.0.0 (0x02)", lambda: refused_socks(hp.ports["sox"], socks_request("0.0.0.0", denied_port)),
              0x02),
             ("SOCKS5 BIND (0x07)", lambda: refused_socks(hp.ports["sox"], socks_request("127.0.0.1", denied_port, cmd=2)),
              0x07)]
    for what, start, expected in cases:
        c, answer = start()
        check_eq(f"{what}: the reply", answer, expected)
        failed_after, error = keep_sending(c, 0.3)
        check(f"{what}: the client's sends after the reply all went through", error is None,
              f"{error!r} after {failed_after}")
        try:
            c.shutdown(socket.SHUT_WR)
        except OSError as e:  # ENOTCONN: a reset closed it already
            check(f"{what}: the client can still send its FIN", False, repr(e))
        end, extra = read_end(c, 3)
        check_eq(f"{what}: the connection ends with our FIN", (end, extra), ("eof", b""))
        check_eq(f"{what}: no reset reached the client (SO_ERROR)", c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), 0)
        c.close()
    assert_nothing_left(hp, "after lingering closes")
    check_eq("halfpipe_forward_rejections_total{reason=destination_denied}",
             hp.metric("halfpipe_forward_rejections_total", reason="destination_denied"), 2)
    check_eq("halfpipe_forward_rejections_total{reason=bad_request}",
             hp.metric("halfpipe_forward_rejections_total", reason="bad_request"), 1)


@test(20)
def lingering_close_is_bounded():
    hp = Halfpipe(config=forward_config(lingering_close="300ms"), listeners=["fwd"])
    c, status = refused_connect(hp.port, "0.0.0.0:1")
    check_eq("403", status, 403)
    c.settimeout(3)
    failed_after, error = keep_sending(c, 3)
    # The first send after halfpipe's close draws the RST; the one after it fails.
    check("a client that never stops sending is reset once timeouts.lingering_close (300 ms) is over",
          error is not None and 0.2 <= failed_after <= 1.5, f"{error!r} after {failed_after}")
    assert_nothing_left(hp, "after a lingering close ran out")
    hp.stop(5)

    hp = Halfpipe(config=forward_config(lingering_close="off"), listeners=["fwd"])
    c, status = refused_connect(hp.port, "0.0.0.0:1")
    check_eq("lingering_close off: 403", status, 403)
    failed_after, error = keep_sending(c, 3)
    check("lingering_close off: the client's next sends are reset at once", error is not None and failed_after < 0.2,
          f"{error!r} after {failed_after}")


@test(20)
def drain_cuts_a_lingering_close_short():
    hp = Halfpipe(config=forward_config(lingering_close="10s"), listeners=["fwd"])
    c, status = refused_connect(hp.port, "0.0.0.0:1")
    check_eq("403", status, 403)
    check_eq("read: our FIN follows the reply", read_end(c, 3)[0], "eof")
    sessions = hp.connections()
    check_eq("the lingering session is listed as closing", [x["state"] for x in sessions], ["closing"])
    started = time.monotonic()
    status = hp.stop(10)
    elapsed = time.monotonic() - started
    check_eq("halfpipe exits cleanly", status, 0)
    check("the drain (2 s) ended the 10 s lingering close", elapsed < 4, f"{elapsed:.2f} s")


@test(15)
def slow_handshake():
    up = RawUpstream()
    hp = Halfpipe(config=forward_config(handshake="1s", socks=True), listeners=["fwd", "sox"])
    partial = {"fwd": f"CONNECT 127.0.0.1:{up.port} HTTP/1.1\r\nHo".encode(), "sox": GREETING + b"\x05\x01"}
    clients = {}
    for name, data in partial.items():
        c = connect(hp.ports[name])
        c.sendall(data)
        clients[name] = (c, time.monotonic())
    for name, (c, started) in clients.items():
        end, data = read_end(c, 4)
        elapsed = time.monotonic() - started
        check(f"{name}: stalled handshake closed (EOF or reset)", end in ("eof", "reset"), f"{end} after {elapsed:.2f} s")
        check(f"{name}: closed about timeouts.handshake (1 s) after accept", 0.8 <= elapsed <= 2.5, f"{elapsed:.2f} s")
        expected = b"\x05\x00" if name == "sox" else b""
        check_eq(f"{name}: bytes before the close", data, expected)
    for name in clients:
        check_eq(f"{name}: halfpipe_forward_rejections_total{{reason=handshake_incomplete}}",
                 hp.metric("halfpipe_forward_rejections_total", listener=name, reason="handshake_incomplete"), 1)
    check("upstream was never connected", up.accepted_nothing())
    m = hp.wait_for_line(r"event=access listener=fwd .*initiator=proxy how=timeout reason=handshake_incomplete", 3)
    check("access log: how=timeout reason=handshake_incomplete", m, "".join(hp.access_lines()))
    assert_nothing_left(hp, "after stalled handshakes")


# ---------------------------------------------------------------------------------------
# Raw SOCKS5


@test(20)
def socks5_address_types():
    up4 = RawUpstream()
    up6 = RawUpstream(v6=True)
    hp = Halfpipe(mode="socks5")
    cases = [("IPv4", up4, "127.0.0.1", 1, f"127.0.0.1:{up4.port}"),
             ("IPv6", up6, "::1", 4, f"[::1]:{up6.port}"),
             ("domain", up4, "localhost", 3, f"localhost:{up4.port}")]
    for what, up, host, atyp, destination in cases:
        payload = f"pipelined {what}".encode()
        c, method, rep, addr, bport = socks_tunnel(hp.port, host, up.port, atyp, payload)
        check_eq(f"{what}: method reply (no auth)", method, b"\x05\x00")
        check_eq(f"{what}: REP succeeded", rep, 0x00)
        a = up.accept()
        peer = a.getpeername()
        check_eq(f"{what}: BND.ADDR is the upstream connection's local address", addr, peer[0])
        check_eq(f"{what}: BND.PORT is the upstream connection's local port", bport, peer[1])
        check_eq(f"{what}: upstream received the payload pipelined after the request", recv_exact(a, len(payload)), payload)
        a.sendall(b"reply")
        check_eq(f"{what}: client receives the upstream's bytes", recv_exact(c, 5), b"reply")
        c.close()
        check_eq(f"{what}: upstream reads EOF", read_end(a, 3)[0], "eof")
        a.close()
        m = hp.wait_for_line(r"event=access .*mode=socks5 destination=" + re.escape(destination) + r"(\s|$)", 5)
        check(f"{what}: access log mode=socks5 destination={destination}", m, "".join(hp.access_lines()))
    # Greeting and request in separate writes, as most clients do.
    c = connect(hp.port)
    c.sendall(b"\x05\x02\x00\x02")
    check_eq("two methods offered: no-auth chosen", recv_exact(c, 2), b"\x05\x00")
    c.sendall(socks_request("127.0.0.1", up4.port) + b"AFTER-REQUEST")
    check_eq("separate request: REP succeeded", read_socks_reply(c)[0], 0x00)
    a = up4.accept()
    check_eq("separate request: upstream received the payload sent with the request", recv_exact(a, 13),
             b"AFTER-REQUEST")


@test(20)
def socks5_errors():
    up = RawUpstream()
    hp = Halfpipe(config=forward_config(acl=ACL, socks=True), listeners=["fwd", "sox"])
    port = hp.ports["sox"]

    def request_reply(what, request, expected_rep):
        c = connect(port)
        c.sendall(GREETING + request)
        check_eq(f"{what}: method reply", recv_exact(c, 2), b"\x05\x00")
        rep, atyp, addr, bport, raw = read_socks_reply(c)
        check_eq(f"{what}: REP", rep, expected_rep)
        check(f"{what}: a full reply (10 bytes)", len(raw) == 10, raw.hex())
        end, extra = read_end(c, 3)
        check(f"{what}: closed after the reply", end in ("eof", "reset") and extra == b"", f"{end} {extra!r}")

    request_reply("BIND", socks_request("127.0.0.1", up.port, cmd=2), 0x07)
    request_reply("UDP ASSOCIATE", socks_request("127.0.0.1", up.port, cmd=3), 0x07)
    request_reply("ATYP 0x05", b"\x05\x01\x00\x05\x7f\x00\x00\x01\x00\x50", 0x08)
    request_reply("denied 127.0.0.2", socks_request("127.0.0.2", up.port), 0x02)
    request_reply("denied port 80", socks_request("127.0.0.1", 80), 0x02)
    request_reply("denied ::1 (no rule)", socks_request("::1", up.port, atyp=4), 0x02)
    refused = free_port()
    request_reply("refused", socks_request("127.0.0.1", refused), 0x05)
    check("upstream was never connected", up.accepted_nothing())

    c = connect(port)
    c.sendall(b"\x05\x01\x02")
    check_eq("only username/password offered: method 0xFF", recv_exact(c, 2), b"\x05\xff")
    check(f"only username/password offered: closed", read_end(c, 3)[0] in ("eof", "reset"))
    c = connect(port)
    c.sendall(b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00")
    end, data = read_end(c, 3)
    check("SOCKS4 greeting: closed without a reply", end in ("eof", "reset") and data == b"", f"{end} {data!r}")

    check_eq("halfpipe_forward_rejections_total{reason=destination_denied}",
             hp.metric("halfpipe_forward_rejections_total", listener="sox", reason="destination_denied"), 3)
    check_eq("halfpipe_forward_rejections_total{reason=bad_request}",
             hp.metric("halfpipe_forward_rejections_total", listener="sox", reason="bad_request"), 5)
    check_eq("halfpipe_upstream_connect_errors_total{reason=refused}",
             hp.metric("halfpipe_upstream_connect_errors_total", reason="refused"), 1)
    assert_nothing_left(hp, "after refused SOCKS5 requests")


# ---------------------------------------------------------------------------------------
# Close semantics through a tunnel


@test(15)
def tunnel_half_close():
    up = RawUpstream()
    hp = Halfpipe(mode="connect")
    c, status, _, _ = tunnel(hp.port, f"127.0.0.1:{up.port}")
    check_eq("200", status, 200)
    a = up.accept()
    seen = {}

    def upstream_side():
        seen["end"], seen["data"] = read_end(a, 5)
        time.sleep(1)
        seen["answered_at"] = time.monotonic()
        a.sendall(b"late answer")
        a.close()
    t = threading.Thread(target=upstream_side, daemon=True)
    t.start()
    c.sendall(b"question")
    c.shutdown(socket.SHUT_WR)
    end, data = read_end(c, 5)
    t.join(6)
    check_eq("upstream read the data then EOF", (seen.get("end"), seen.get("data")), ("eof", b"question"))
    check_eq("client got the answer sent 1 s after its FIN, then EOF", (end, data), ("eof", b"late answer"))
    m = hp.wait_for_line(r"event=access .*mode=connect", 5)
    check("access log: the client's FIN came first", m and " first_fin=client " in m.group(0), "".join(hp.access_lines()))


@test(15)
def tunnel_reset():
    up = RawUpstream()
    hp = Halfpipe(mode="connect")
    c, status, _, _ = tunnel(hp.port, f"127.0.0.1:{up.port}")
    check_eq("200", status, 200)
    a = up.accept()
    c.sendall(b"x")
    check_eq("upstream got the byte", recv_exact(a, 1), b"x")
    abort_close(a)
    end, data = read_end(c, 5)
    check_eq("client reads ECONNRESET after the upstream's reset", (end, data), ("reset", b""))
    m = hp.wait_for_line(r"event=access .*initiator=upstream how=rst .*mode=connect", 5)
    check("access log: initiator=upstream how=rst", m, "".join(hp.access_lines()))


# ---------------------------------------------------------------------------------------
# DNS rebinding: a name is only as allowed as every address it resolves to


@test(15)
def dns_rebinding():
    up = RawUpstream()
    acl = ['{deny: 127.0.0.0/8}', '{allow: any, host: localhost}']
    hp = Halfpipe(config=forward_config(acl=acl, socks=True), listeners=["fwd", "sox"])
    c, status, _, _ = tunnel(hp.port, f"localhost:{up.port}")
    check_eq("CONNECT localhost: 403 (localhost resolves to a denied 127.0.0.1)", status, 403)
    check_eq("closed after the 403", read_end(c, 3)[0], "eof")
    c, status, _, _ = tunnel(hp.port, f"127.0.0.1:{up.port}")
    check_eq("CONNECT 127.0.0.1: 403", status, 403)
    c, method, rep, _, _ = socks_tunnel(hp.ports["sox"], "localhost", up.port, atyp=3)
    check_eq("SOCKS5 domain localhost: 0x02", rep, 0x02)
    check("upstream was never connected", up.accepted_nothing())
    check_eq("halfpipe_forward_rejections_total{reason=destination_denied}",
             hp.metric("halfpipe_forward_rejections_total", reason="destination_denied"), 3)
    m = hp.wait_for_line(r"event=access .*reason=destination_denied .*mode=connect destination=localhost:%d" % up.port, 3)
    check("access log: destination=localhost reason=destination_denied", m, "".join(hp.access_lines()))


# ---------------------------------------------------------------------------------------
# Authentication: Basic proxy credentials (CONNECT) and username/password (SOCKS5)

# SHA-512 crypt of "x", as `openssl passwd -6` or Python's crypt module write it: hashes
# from other tools are accepted as they are.
SHA512_OF_X = "$6$5WSkb02jP1RnAMxw$Qm8FxnNpzAKI9soVqvcgQkFQ4XpWzL6gfsbP6ri.mqoRdO6xAz7z4.oThMFr02x4f7zgotUw2kbg6rG4iZ1B10"
ALICE_PASSWORD = "wonder:land"  # a colon in a password is legal in Basic credentials


def hash_password(password):
    r = subprocess.run([BINARY, "--hash-password"], input=(password + "\n").encode(), capture_output=True, timeout=10)
    check_eq("halfpipe --hash-password exit status", r.returncode, 0)
    return r.stdout.decode().strip()


def users_file(lines):
    text = "# forward proxy users\n" + "".join(line + "\n" for line in lines)
    return temp_file(text, cleanups, "halfpipe-forward-users-")


def auth_proxy(**kwargs):
    """Listeners fwd (connect) and sox (socks5) for alice (yescrypt) and bob (SHA-512 crypt)."""
    alice = hash_password(ALICE_PASSWORD)
    check("--hash-password makes a yescrypt hash", alice.startswith("$y$"), alice)
    path = users_file([f"alice:{alice}", f"bob:{SHA512_OF_X}"])
    hp = Halfpipe(config=forward_config(socks=True, auth={"users_file": path, "realm": '"corp proxy"'}, **kwargs),
                  listeners=["fwd", "sox"])
    return hp


def basic(user, password):
    return "Proxy-Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() + "\r\n"


def no_secret_logged(hp, secrets):
    with hp.cond:
        log = "".join(hp.lines)
    leaked = [s for s in secrets if s in log]
    check("no password or credential appears in the log", not leaked, leaked)


@test(30)
def auth_curl():
    up = http_upstream()
    hp = auth_proxy()
    fwd, sox = hp.ports["fwd"], hp.ports["sox"]
    target = f"http://127.0.0.1:{up}/"
    r = curl(["-p", "-x", f"http://127.0.0.1:{fwd}", "-U", f"alice:{ALICE_PASSWORD}", target])
    check_eq("curl -p -x with alice's credentials: exit 0", r.returncode, 0)
    check("curl -p -x with credentials: body intact", r.stdout == BODY, f"{len(r.stdout)} bytes")
    m = hp.wait_for_line(r"event=access listener=fwd .*mode=connect destination=127\.0\.0\.1:%d user=alice(\s|$)" % up, 5)
    check("access log names user=alice", m, "".join(hp.access_lines()))
    r = curl(["-x", f"socks5h://bob:x@127.0.0.1:{sox}", f"http://localhost:{up}/"])
    check_eq("curl socks5h://bob:x@ (SHA-512 crypt hash): exit 0", r.returncode, 0)
    check("curl through SOCKS5 with credentials: body intact", r.stdout == BODY, f"{len(r.stdout)} bytes")
    m = hp.wait_for_line(r"event=access listener=sox .*mode=socks5 destination=localhost:%d user=bob(\s|$)" % up, 5)
    check("access log names user=bob", m, "".join(hp.access_lines()))

    r = curl(["-p", "-x", f"http://127.0.0.1:{fwd}", target])
    check("curl -p -x without credentials fails with 407", r.returncode != 0 and b"407" in r.stderr, r.stderr)
    r = curl(["-p", "-x", f"http://127.0.0.1:{fwd}", "-U", "alice:wrong", target])
    check("curl -p -x with a wrong password fails with 407", r.returncode != 0 and b"407" in r.stderr, r.stderr)
    r = curl(["-x", f"socks5h://bob:y@127.0.0.1:{sox}", target])
    check("curl SOCKS5 with a wrong password fails", r.returncode != 0 and r.stdout == b"", r.stderr)
    r = curl(["--socks5-hostname", f"127.0.0.1:{sox}", target])
    check("curl SOCKS5 without credentials fails", r.returncode != 0 and r.stdout == b"", r.stderr)
    check_eq("halfpipe_forward_rejections_total{reason=auth_failed}",
             hp.metric("halfpipe_forward_rejections_total", reason="auth_failed"), 2)
    check_eq("halfpipe_forward_rejections_total{reason=auth_required}",
             hp.metric("halfpipe_forward_rejections_total", reason="auth_required"), 2)
    no_secret_logged(hp, [ALICE_PASSWORD, "wrong", basic("alice", ALICE_PASSWORD).split()[-1]])


@test(25)
def auth_connect_raw():
    up = RawUpstream()
    hp = auth_proxy()
    fwd = hp.ports["fwd"]
    authority = f"127.0.0.1:{up.port}"

    def refused(what, extra, reason):
        c = connect(fwd)
        c.sendall(connect_head(authority, extra))
        status, head, rest, _ = read_head(c)
        check_eq(f"{what}: 407", status, 407)
        check(f"{what}: Proxy-Authenticate: Basic realm=\"corp proxy\"",
              'Proxy-Authenticate: Basic realm="corp proxy"' in head, head)
        check(f"{what}: Connection: close", "Connection: close" in head, head)
        check_eq(f"{what}: then closed", read_end(c, 3), ("eof", b""))
        m = hp.wait_for_line(r"event=access listener=fwd .*initiator=proxy how=limit reason=%s .*destination=%s"
                             % (reason, re.escape(authority)), 3)
        check(f"{what}: access log reason={reason}", m, "".join(hp.access_lines()))

    refused("no credentials", "", "auth_required")
    refused("Bearer instead of Basic", "Proxy-Authorization: Bearer abc\r\n", "auth_required")
    refused("undecodable Basic", "Proxy-Authorization: Basic !!!\r\n", "auth_required")
    refused("wrong password", basic("alice", "wonderland"), "auth_failed")
    refused("unknown user", basic("mallory", ALICE_PASSWORD), "auth_failed")
    refused("another user's password", basic("bob", ALICE_PASSWORD), "auth_failed")
    check("upstream was never connected", up.accepted_nothing())

    c = connect(fwd)
    c.sendall(connect_head(authority, basic("alice", ALICE_PASSWORD)) + b"pipelined")
    status, _, _, _ = read_head(c)
    check_eq("alice: 200", status, 200)
    a = up.accept()
    check_eq("alice: pipelined bytes reach the upstream", recv_exact(a, 9), b"pipelined")
    a.sendall(b"reply")
    check_eq("alice: the tunnel relays back", recv_exact(c, 5), b"reply")
    # The second tunnel is verified from the cache of verified pairs (unit-tested); it must work the same.
    c2 = connect(fwd)
    c2.sendall(connect_head(authority, basic("alice", ALICE_PASSWORD)))
    check_eq("alice again: 200", read_head(c2)[0], 200)
    up.accept()
    check_eq("halfpipe_forward_rejections_total{reason=auth_required}",
             hp.metric("halfpipe_forward_rejections_total", listener="fwd", reason="auth_required"), 3)
    check_eq("halfpipe_forward_rejections_total{reason=auth_failed}",
             hp.metric("halfpipe_forward_rejections_total", listener="fwd", reason="auth_failed"), 3)
    no_secret_logged(hp, [ALICE_PASSWORD, "wonderland", basic("alice", ALICE_PASSWORD).split()[-1]])


def rfc1929(user, password):
    return bytes([1, len(user)]) + user.encode() + bytes([len(password)]) + password.encode()


@test(25)
def auth_socks5_raw():
    up = RawUpstream()
    hp = auth_proxy()
    sox = hp.ports["sox"]

    c = connect(sox)
    c.sendall(GREETING)
    check_eq("no-auth only: method 0xFF", recv_exact(c, 2), b"\x05\xff")
    check("no-auth only: closed", read_end(c, 3)[0] in ("eof", "reset"))

    for what, user, password in (("wrong password", "bob", "y"), ("unknown user", "carol", "x")):
        c = connect(sox)
        c.sendall(b"\x05\x02\x00\x02" + rfc1929(user, password) + socks_request("127.0.0.1", up.port))
        check_eq(f"{what}: method 0x02 chosen", recv_exact(c, 2), b"\x05\x02")
        check_eq(f"{what}: RFC 1929 status 0x01", recv_exact(c, 2), b"\x01\x01")
        check_eq(f"{what}: then closed", read_end(c, 3), ("eof", b""))
    check("upstream was never connected", up.accepted_nothing())

    c = connect(sox)
    # Greeting, credentials, request and payload in one write.
    c.sendall(b"\x05\x01\x02" + rfc1929("bob", "x") + socks_request("127.0.0.1", up.port) + b"early")
    check_eq("bob: method 0x02", recv_exact(c, 2), b"\x05\x02")
    check_eq("bob: RFC 1929 success", recv_exact(c, 2), b"\x01\x00")
    rep, _, _, _, _ = read_socks_reply(c)
    check_eq("bob: REP succeeded", rep, 0)
    a = up.accept()
    check_eq("bob: pipelined payload reaches the upstream", recv_exact(a, 5), b"early")
    check_eq("halfpipe_forward_rejections_total{reason=auth_required}",
             hp.metric("halfpipe_forward_rejections_total", listener="sox", reason="auth_required"), 1)
    check_eq("halfpipe_forward_rejections_total{reason=auth_failed}",
             hp.metric("halfpipe_forward_rejections_total", listener="sox", reason="auth_failed"), 2)
    m = hp.wait_for_line(r"event=access listener=sox .*initiator=proxy how=limit reason=auth_failed", 3)
    check("access log: reason=auth_failed", m, "".join(hp.access_lines()))


def bob_tunnel_on_one_worker():
    """An auth proxy with one worker, and bob's tunnel through it (bob is now remembered):
    (halfpipe, its connect port, upstream, client socket)."""
    up = RawUpstream()
    hp = auth_proxy(workers=1)
    fwd = hp.ports["fwd"]
    c = connect(fwd)
    c.sendall(connect_head(f"127.0.0.1:{up.port}", basic("bob", "x")))
    check_eq("bob: 200", read_head(c)[0], 200)
    return hp, fwd, up, c


@test(25)
def auth_hashing_does_not_stall_the_relay():
    # One worker: if the slow password hash ran there, every tunnel on it would wait.
    hp, fwd, up, c = bob_tunnel_on_one_worker()
    a = up.accept()
    guessers = []
    for i in range(40):  # 25-100 ms of yescrypt each, one after another on the password thread
        g = connect(fwd)
        g.sendall(connect_head(f"127.0.0.1:{up.port}", basic("alice", f"guess{i}")))
        guessers.append(g)
    times = []
    for _ in range(10):
        t = time.monotonic()
        c.sendall(b"p")
        if recv_exact(a, 1) != b"p":
            break
        a.sendall(b"q")
        if recv_exact(c, 1) != b"q":
            break
        times.append(time.monotonic() - t)
        time.sleep(0.02)
    statuses = [read_head(g, 10)[0] for g in guessers]
    check_eq("every guess gets 407", statuses, [407] * 40)
    nice = list(hp.thread_nice().values())
    check_eq("two threads at nice 10, the password checks' and the admin endpoint's", nice.count(10), 2)
    times.sort()
    median = times[len(times) // 2] if len(times) == 10 else None
    check("round trips through a tunnel stay fast while passwords are hashed (median < 5 ms)",
          median is not None and median < 0.005, f"round trips ms: {[round(t * 1000, 1) for t in times]}")


@test(30)
def auth_guesses_at_a_remembered_user_cost_the_workers_little():
    # A remembered login is checked on the worker, and so is every wrong password for
    # that user before it goes to the password thread: that check must be cheap, or
    # guessing at a user who logged in recently stalls the relay.
    hp, fwd, up, c = bob_tunnel_on_one_worker()
    names = sorted(hp.thread_cpu_seconds())
    check("threads are named for their job", {"halfpipe-w0", "halfpipe-admin", "halfpipe-auth"} <= set(names), names)
    chunk, rounds = 50, 5

    def guess(user, i):
        g = connect(fwd)
        g.sendall(connect_head(f"127.0.0.1:{up.port}", basic(user, f"guess{i}")))
        status = read_head(g, 10)[0]
        g.close()
        return status

    # alice never logged in: her guesses skip the memo and show what a guess costs the
    # worker anyway (accept, parse, reply, close). Taken in turns with bob's, so that
    # both see the same machine.
    cpu = {"alice": 0.0, "bob": 0.0}
    statuses = []
    for r in range(rounds):
        for user in ("alice", "bob"):
            before = hp.thread_cpu_seconds()["halfpipe-w0"]
            statuses += [guess(user, r * chunk + i) for i in range(chunk)]
            cpu[user] += hp.thread_cpu_seconds()["halfpipe-w0"] - before
    check("every guess is turned away (407, or 503 while the password thread is busy)",
          set(statuses) <= {407, 503}, statuses)
    plain, remembered = cpu["alice"] / (chunk * rounds), cpu["bob"] / (chunk * rounds)
    # 1,000 rounds of SHA-512 crypt per guess would add 0.3 ms each.
    check("a guess at a remembered user costs the worker less than 0.15 ms more than one at another user",
          remembered - plain < 0.00015, f"{remembered * 1000:.3f} against {plain * 1000:.3f} ms per guess")


@test(30)
def auth_queue_is_bounded():
    # 90 wrong guesses at once against a yescrypt hash (25-100 ms each, one thread): 64
    # checks are queued and the rest are refused with 503 at once; of the queued ones,
    # those whose 500 ms handshake deadline passed while they waited are closed unanswered.
    alice = hash_password(ALICE_PASSWORD)
    path = users_file([f"alice:{alice}"])
    hp = Halfpipe(config=forward_config(auth={"users_file": path}, handshake="500ms", workers=1), listeners=["fwd"])
    guesses = []
    for i in range(90):
        g = connect(hp.ports["fwd"], timeout=15)
        g.sendall(connect_head("127.0.0.1:9", basic("alice", f"guess{i}")))
        guesses.append(g)
    outcomes = []
    for g in guesses:
        status, _, _, how = read_head(g, 15)
        outcomes.append(status if status else how)
    busy, failed, unanswered = outcomes.count(503), outcomes.count(407), outcomes.count("eof")
    check("some guesses are refused at once with 503", busy >= 1, outcomes)
    check("the queued guesses get 407 until the handshake deadline, then are closed unanswered",
          failed >= 1 and unanswered >= 1, outcomes)
    check_eq("every guess ends one of these three ways", busy + failed + unanswered, 90)
    check("at most 64 guesses were queued", failed + unanswered <= 64, f"{failed} + {unanswered}")
    check_eq("halfpipe_forward_rejections_total{reason=auth_overloaded}",
             hp.metric("halfpipe_forward_rejections_total", reason="auth_overloaded"), busy)
    check_eq("halfpipe_forward_rejections_total{reason=auth_failed}",
             hp.metric("halfpipe_forward_rejections_total", reason="auth_failed"), failed)
    check_eq("halfpipe_forward_rejections_total{reason=handshake_incomplete}",
             hp.metric("halfpipe_forward_rejections_total", reason="handshake_incomplete"), unanswered)
    assert_nothing_left(hp, "after the guesses")


@test(10)
def auth_users_file_errors():
    path = users_file(["alice:hunter2"])
    config_path = temp_file(forward_config(auth={"users_file": path}), cleanups, "halfpipe-forward-test-", ".yaml")
    r = subprocess.run([BINARY, "--config", config_path, "--check"], capture_output=True, timeout=10)
    check_eq("--check with a plain-text password: exit 1", r.returncode, 1)
    err = r.stderr.decode()
    check("the error names the key, the users file and its line",
          re.search(r":\d+: listeners\[0\]\.auth\.users_file: " + re.escape(path) + r":2: user \"alice\"", err), err)
    check("the error does not repeat the password", "hunter2" not in err, err)


# The whole run stays under 125 s: a test gets at most what is left of the run budget
# (cleanups after it take at most a few seconds more), and tests that find it spent fail unrun.
if __name__ == "__main__":
    suite.run(run_budget=110)
