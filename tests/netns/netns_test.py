#!/usr/bin/env python3
"""Upstream connect failures that loopback alone cannot produce, each in a network
namespace of its own (so its port range and firewall touch nothing else):

- port exhaustion: a two-port ephemeral range; the third upstream connect fails
  with EADDRNOTAVAIL, reported as reason=port_exhausted, client reset at once;
- connect timeout: SYNs to the upstream dropped by nftables; the client is reset
  after the connect timeout, reason=connect_timeout;
- unreachable: nftables answers with ICMP host-unreachable; reason=connect_unreachable.

Needs root, iproute2 and nft. Prints 'N passed, N failed'; every wait is bounded.
"""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from halfpipe_harness import HalfpipeProcess, Suite  # noqa: E402

suite = Suite("netns")
BINARY = os.path.abspath(suite.binary)
check = suite.check


def Halfpipe(upstream, *extra):
    # A fixed listen port: port 0 would take one from the namespace's tiny ephemeral range.
    return HalfpipeProcess([BINARY, "--listen", "127.0.0.1:8000", "--upstream", upstream, "--admin", "off",
                            "--workers", "1", "--drain-timeout", "1s", *extra])


def log_line(hp, pattern, seconds):
    """The first log line matching `pattern` within `seconds`, or None."""
    m = hp.wait_for_line(pattern, seconds)
    return m.string if m else None


def read_outcome(sock, seconds):
    """'reset', 'eof' or 'timeout', and how long it took."""
    sock.settimeout(seconds)
    start = time.monotonic()
    try:
        while True:
            if not sock.recv(4096):
                return "eof", time.monotonic() - start
    except ConnectionResetError:
        return "reset", time.monotonic() - start
    except socket.timeout:
        return "timeout", time.monotonic() - start


def client_from(port):
    # An explicit source port outside the tiny ephemeral range, so clients do not
    # compete with halfpipe's upstream connects for the two ports.
    c = socket.socket()
    c.bind(("127.0.0.1", port))
    c.connect(("127.0.0.1", hp_port_holder[0]))
    return c


hp_port_holder = [0]


def inner_port_exhaustion():
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
        f.write("40000 40001")
    up = socket.socket()
    up.bind(("127.0.0.1", 9000))
    up.listen(16)
    hp = Halfpipe("127.0.0.1:9000")
    hp_port_holder[0] = hp.port
    try:
        first, second = client_from(50001), client_from(50002)
        a1, _ = up.accept()
        a2, _ = up.accept()
        third = client_from(50003)
        outcome, took = read_outcome(third, 3)
        check("third client is reset when no source port is left", outcome == "reset" and took < 1,
              f"{outcome} after {took:.3f} s")
        line = log_line(hp, r"event=access .*reason=port_exhausted", 3)
        check("access log names port exhaustion", line is not None and "how=error" in line, (line or "").strip())
        first.sendall(b"ping")
        check("connections already relayed keep working", a1.recv(4) == b"ping")
        for s in (first, second, third, a1, a2):
            s.close()
    finally:
        hp.stop()
        up.close()


def inner_source_address():
    """With a fixed source address, IP_BIND_ADDRESS_NO_PORT lets the kernel pick the
    port at connect() against the whole 4-tuple: two upstreams can both use each of
    the two ports. A bind() that picked the port itself would stop at two in all."""
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
        f.write("40000 40001")
    ups = []
    for port in (9000, 9001):
        u = socket.socket()
        u.bind(("127.0.0.1", port))
        u.listen(16)
        ups.append(u)
    config = "/tmp/halfpipe-netns-source.yaml"
    with open(config, "w") as f:
        f.write("""workers: 1
drain_timeout: 1s
admin: off
listeners:
  - name: a
    bind: 127.0.0.1:8000
    upstream: {address: 127.0.0.1:9000, source_address: 127.0.0.2}
  - name: b
    bind: 127.0.0.1:8001
    upstream: {address: 127.0.0.1:9001, source_address: 127.0.0.2}
""")
    hp = HalfpipeProcess([BINARY, "--config", config], listeners=["a", "b"])
    try:
        clients, accepted = [], []
        source_port = 50001
        for listen_port, up in ((8000, ups[0]), (8001, ups[1])):
            for _ in range(2):
                c = socket.socket()
                c.bind(("127.0.0.1", source_port))
                source_port += 1
                c.connect(("127.0.0.1", listen_port))
                clients.append(c)
                up.settimeout(3)
                try:
                    a, peer = up.accept()
                    accepted.append(peer)
                except socket.timeout:
                    pass
        check("four upstream connections share two source ports", len(accepted) == 4, str(accepted))
        check("they come from the configured source address", all(p[0] == "127.0.0.2" for p in accepted))
        for c in clients:
            c.close()
    finally:
        hp.stop(10)
        for u in ups:
            u.close()
        os.unlink(config)


def nft(*rule):
    subprocess.run(["nft", *rule], check=True)


def inner_connect_timeout():
    nft("add", "table", "inet", "hp")
    nft("add", "chain", "inet", "hp", "out", "{ type filter hook output priority 0; }")
    nft("add", "rule", "inet", "hp", "out", "tcp", "dport", "9001", "drop")
    up = socket.socket()
    up.bind(("127.0.0.1", 9001))
    up.listen(16)
    hp = Halfpipe("127.0.0.1:9001", "--connect-timeout", "500ms")
    try:
        c = socket.create_connection(("127.0.0.1", hp.port))
        outcome, took = read_outcome(c, 5)
        check("client reset after the connect timeout", outcome == "reset" and 0.4 <= took < 1.5,
              f"{outcome} after {took:.3f} s")
        line = log_line(hp, r"event=access .*reason=connect_timeout", 3)
        check("access log says connect_timeout", line is not None, (line or "").strip())
        c.close()
    finally:
        hp.stop()
        up.close()


def inner_unreachable():
    nft("add", "table", "inet", "hp2")
    nft("add", "chain", "inet", "hp2", "out", "{ type filter hook output priority 0; }")
    nft("add", "rule", "inet", "hp2", "out", "tcp", "dport", "9002", "reject", "with", "icmpx", "type",
        "host-unreachable")
    hp = Halfpipe("127.0.0.1:9002")
    try:
        c = socket.create_connection(("127.0.0.1", hp.port))
        outcome, took = read_outcome(c, 5)
        check("client reset at once when the upstream is unreachable", outcome == "reset" and took < 1,
              f"{outcome} after {took:.3f} s")
        line = log_line(hp, r"event=access .*reason=connect_unreachable", 3)
        check("access log says connect_unreachable", line is not None, (line or "").strip())
        c.close()
    finally:
        hp.stop()


def run_in_namespace(case):
    ns = f"halfpipe-test-{os.getpid()}-{case}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, BINARY, "--inner", case],
                             capture_output=True, text=True, timeout=60)
        sys.stdout.write(out.stdout)
        sys.stderr.write(out.stderr)
        outcomes = [l.strip() for l in out.stdout.splitlines() if l.strip().startswith(("PASS:", "FAIL:"))]
        for line in outcomes:
            suite.results.append((case, line, line.startswith("PASS")))
        if out.returncode != 0 and not any(l.startswith("FAIL") for l in outcomes):
            suite.current = case
            check(f"{case} ran", False, f"exit {out.returncode}")
    finally:
        subprocess.run(["ip", "netns", "del", ns])


if __name__ == "__main__":
    if "--inner" in sys.argv:
        case = sys.argv[sys.argv.index("--inner") + 1]
        suite.current = case
        globals()["inner_" + case]()
        sys.exit(1 if any(not ok for _, _, ok in suite.results) else 0)
    for case in ("port_exhaustion", "source_address", "connect_timeout", "unreachable"):
        run_in_namespace(case)
    suite.finish()
