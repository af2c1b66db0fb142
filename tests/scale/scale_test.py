#!/usr/bin/env python3
"""Scale checks of the relay, on loopback against the real binary:

1. 10,000 concurrent idle connections, each proven to relay a byte both ways,
   with halfpipe's resident memory per connection printed.
2. 10,000 connections closed client-first and 10,000 closed upstream-first:
   once the peers have closed, no socket of halfpipe's is left in CLOSE_WAIT,
   FIN_WAIT1/2, LAST_ACK or CLOSING, and TIME_WAIT lands where the README says.

Exits non-zero on failure; prints 'N passed, N failed'. Bounded: every wait has
a deadline, and the whole run takes well under two minutes.
"""
import os
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from halfpipe_harness import (HARD_FD_LIMIT, HalfpipeProcess, Suite, open_relayed, raise_fd_limit,  # noqa: E402
                              ss_count, start_echo_server, time_wait_headroom)

suite = Suite("scale")
BINARY = suite.binary
check, test = suite.check, suite.test
# Each relayed connection costs halfpipe two descriptors; where the hard limit is
# below 20,000 plus a few, the idle test runs as many as fit and says so.
CONNECTIONS = min(int(os.environ.get("SCALE_CONNECTIONS", "10000")), (HARD_FD_LIMIT - 64) // 2)
# Churned connections come and go in waves, so they need no more descriptors.
CHURN = int(os.environ.get("SCALE_CONNECTIONS", "10000"))


def Halfpipe(upstream_port, *extra):
    return HalfpipeProcess([BINARY, "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{upstream_port}",
                            "--admin", "off", *extra], preexec_fn=raise_fd_limit)


def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    s.setblocking(False)
    return s


def open_pairs(hp_port, up, count, deadline):
    """Connects `count` clients through halfpipe; returns [(client, upstream_side)] in matching order."""
    clients, accepted = [], []
    sel = selectors.DefaultSelector()
    sel.register(up, selectors.EVENT_READ)
    batch = 200
    while len(accepted) < count and time.monotonic() < deadline:
        while len(clients) < count and len(clients) - len(accepted) < batch:
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", hp_port))
            clients.append(c)
        for _ in sel.select(0.5):
            while True:
                try:
                    a, _ = up.accept()
                except BlockingIOError:
                    break
                a.setblocking(False)
                accepted.append(a)
    sel.close()
    return clients, accepted


def exchange(senders, receivers, deadline):
    """Each sender sends its index as 8 bytes; each receiver must get exactly one index. Returns count."""
    for i, s in enumerate(senders):
        s.sendall(i.to_bytes(8, "big"))
    sel = selectors.DefaultSelector()
    for r in receivers:
        sel.register(r, selectors.EVENT_READ)
    got = set()
    pending = {r: b"" for r in receivers}
    while len(got) < len(receivers) and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            r = key.fileobj
            data = r.recv(64)
            pending[r] += data
            if len(pending[r]) >= 8:
                got.add(int.from_bytes(pending[r][:8], "big"))
                sel.unregister(r)
    sel.close()
    return len(got)


# Loopback lets a new connection take over a TIME_WAIT 4-tuple (tcp_tw_reuse, and a
# SYN with a newer timestamp), so not every close leaves one behind: the checks ask
# for most of them on the expected side and none at all on the other.
def halfpipe_side_filter(hp_port, up_port):
    # halfpipe's sockets: accepted ones have the listener port as source port; its
    # upstream connections have the upstream port as destination.
    return f"( sport = :{hp_port} or dport = :{up_port} )"


def expected_time_wait(done, headroom):
    # Loopback reuses some TIME_WAIT pairs, and other programs may take some headroom
    # meanwhile: ask for half of what could be there, and say what that was.
    return min(done, headroom) // 2


def wait_states_clear(hp_port, up_port, states, seconds):
    filt = halfpipe_side_filter(hp_port, up_port)
    deadline = time.monotonic() + seconds
    counts = {}
    while time.monotonic() < deadline:
        counts = {st: ss_count(st, filt) for st in states}
        if not any(counts.values()):
            return counts
        time.sleep(0.2)
    return counts


@test(150)
def idle():
    # The upstream peers live in another process: each process has its own descriptor limit.
    echo, up_port = start_echo_server()
    hp = Halfpipe(up_port)
    clients = []
    try:
        time.sleep(0.2)
        rss_before = hp.rss_bytes()
        clients, echoed = open_relayed(hp.port, CONNECTIONS, time.monotonic() + 90)
        check(f"{CONNECTIONS} concurrent connections each relay a byte both ways", echoed == CONNECTIONS,
              f"{echoed} round trips (descriptor hard limit {HARD_FD_LIMIT})")
        time.sleep(0.5)  # idle connections hold no relay buffer
        rss_after = hp.rss_bytes()
        per_conn = (rss_after - rss_before) / max(1, CONNECTIONS)
        fds = hp.open_fds()
        print(f"FIGURE: resident memory per idle relayed connection: {per_conn:.0f} bytes "
              f"(RSS {rss_before/1e6:.1f} MB -> {rss_after/1e6:.1f} MB, {fds} fds)", flush=True)
        check("halfpipe holds all connections open at once", fds >= 2 * CONNECTIONS, f"{fds} fds")
    finally:
        for c in clients:
            c.close()
        echo.stdin.close()
        echo.wait(30)
        code = hp.stop()
    check("halfpipe exits 0 after SIGTERM", code == 0, f"exit {code}")
    check("start-up log reports the raised descriptor limit", f"nofile={HARD_FD_LIMIT}" in hp.log_text())


def churn(hp, up, first):
    """CHURN connections in waves; `first` ('client'|'upstream') closes first, then the other."""
    done = 0
    deadline = time.monotonic() + 60
    wave = 500
    while done < CHURN and time.monotonic() < deadline:
        n = min(wave, CHURN - done)
        clients, accepted = open_pairs(hp.port, up, n, deadline)
        for c in clients:
            c.setblocking(True)
        for a in accepted:
            a.setblocking(True)
        exchange(clients, accepted, deadline)
        closers, others = (clients, accepted) if first == "client" else (accepted, clients)
        for s in closers:
            s.close()
        # The other peer sees EOF once halfpipe has passed the FIN on, then closes too.
        sel = selectors.DefaultSelector()
        for s in others:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        left = len(others)
        while left and time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                if not data:
                    sel.unregister(s)
                    s.close()
                    left -= 1
        sel.close()
        done += n
    return done


@test(140)
def churn_closes():
    up = listener()
    up_port = up.getsockname()[1]
    hp = Halfpipe(up_port)
    states = ["close-wait", "fin-wait-1", "fin-wait-2", "last-ack", "closing"]
    try:
        filt = halfpipe_side_filter(hp.port, up_port)
        headroom = time_wait_headroom()
        done = churn(hp, up, "client")
        left = wait_states_clear(hp.port, up_port, states, 10)
        check(f"{CHURN} connections churned client-first", done == CHURN, f"{done}")
        check(f"{done} client-first closes leave no half-closed socket of halfpipe's", not any(left.values()),
              str(left))
        tw_up = ss_count("time-wait", f"( dport = :{up_port} )")
        tw_listener = ss_count("time-wait", f"( sport = :{hp.port} )")
        check("client-first: TIME_WAIT on halfpipe's upstream side, not its listener side",
              tw_up >= expected_time_wait(done, headroom) and tw_listener == 0,
              f"upstream side {tw_up}, listener side {tw_listener}, TIME_WAIT headroom before {headroom}")

        # A second halfpipe keeps the TIME_WAIT counts of the two runs apart.
        up2 = listener()
        up2_port = up2.getsockname()[1]
        hp2 = Halfpipe(up2_port)
        try:
            headroom = time_wait_headroom()
            done = churn(hp2, up2, "upstream")
            left = wait_states_clear(hp2.port, up2_port, states, 10)
            check(f"{done} upstream-first closes leave no half-closed socket of halfpipe's", not any(left.values()),
                  str(left))
            tw_up = ss_count("time-wait", f"( dport = :{up2_port} )")
            tw_listener = ss_count("time-wait", f"( sport = :{hp2.port} )")
            check("upstream-first: TIME_WAIT on halfpipe's listener side, not its upstream side",
                  tw_listener >= expected_time_wait(done, headroom) and tw_up == 0,
                  f"listener side {tw_listener}, upstream side {tw_up}, TIME_WAIT headroom before {headroom}")
            closes = sum(1 for l in hp2.access_lines() if "how=fin" in l)
            check("access log: one fin line per connection", closes == done, f"{closes}")
        finally:
            hp2.stop()
            up2.close()
    finally:
        hp.stop()
        up.close()


if __name__ == "__main__":
    raise_fd_limit()
    suite.run()
