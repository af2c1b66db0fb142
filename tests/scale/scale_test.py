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
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

BINARY = sys.argv[1] if len(sys.argv) > 1 else "build/server/halfpipe"
HARD_LIMIT = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
# Each relayed connection costs halfpipe two descriptors; where the hard limit is
# below 20,000 plus a few, the idle test runs as many as fit and says so.
CONNECTIONS = min(int(os.environ.get("SCALE_CONNECTIONS", "10000")), (HARD_LIMIT - 64) // 2)
# Churned connections come and go in waves, so they need no more descriptors.
CHURN = int(os.environ.get("SCALE_CONNECTIONS", "10000"))
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}: {name}{' — ' + detail if detail else ''}", flush=True)


def raise_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (HARD_LIMIT, HARD_LIMIT))


class Halfpipe:
    def __init__(self, upstream_port, *extra):
        self.proc = subprocess.Popen(
            [BINARY, "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{upstream_port}", "--admin", "off",
             *extra],
            stdout=subprocess.PIPE, text=True, preexec_fn=raise_limit)
        self.lines = []
        deadline = time.monotonic() + 10
        self.port = None
        while self.port is None and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            m = re.search(r"event=listening .*address=127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
        if self.port is None:
            raise RuntimeError("halfpipe did not start: " + "".join(self.lines))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


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
def ss_count(state, filt):
    out = subprocess.run(["ss", "-Htan", "state", state, filt], capture_output=True, text=True).stdout
    return len([l for l in out.splitlines() if l.strip()])


def halfpipe_side_filter(hp_port, up_port):
    # halfpipe's sockets: accepted ones have the listener port as source port; its
    # upstream connections have the upstream port as destination.
    return f"( sport = :{hp_port} or dport = :{up_port} )"


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


def echo_server():
    """Child process: accepts connections and echoes what arrives until stdin closes."""
    raise_limit()
    up = listener()
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
                    conns.append(a)
                    sel.register(a, selectors.EVENT_READ)
            else:
                data = key.fileobj.recv(64)
                if data:
                    key.fileobj.sendall(data)
                else:
                    sel.unregister(key.fileobj)


def test_idle():
    # The upstream peers live in another process: each process has its own descriptor limit.
    echo = subprocess.Popen([sys.executable, __file__, "--echo-server"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    up_port = int(echo.stdout.readline())
    hp = Halfpipe(up_port)
    clients = []
    try:
        time.sleep(0.2)
        rss_before = hp.rss_bytes()
        deadline = time.monotonic() + 90
        sel = selectors.DefaultSelector()
        pending = {}
        for i in range(CONNECTIONS):
            c = socket.create_connection(("127.0.0.1", hp.port), timeout=10)
            c.sendall(i.to_bytes(8, "big"))
            c.setblocking(False)
            clients.append(c)
            pending[c] = (i, b"")
            sel.register(c, selectors.EVENT_READ)
        echoed = 0
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                c = key.fileobj
                i, got = pending[c]
                got += c.recv(64)
                if len(got) >= 8:
                    echoed += int.from_bytes(got[:8], "big") == i
                    del pending[c]
                    sel.unregister(c)
                else:
                    pending[c] = (i, got)
        sel.close()
        check(f"{CONNECTIONS} concurrent connections each relay a byte both ways", echoed == CONNECTIONS,
              f"{echoed} round trips (descriptor hard limit {HARD_LIMIT})")
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
    check("start-up log reports the raised descriptor limit", any(f"nofile={HARD_LIMIT}" in l for l in hp.lines))


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


def test_churn():
    up = listener()
    up_port = up.getsockname()[1]
    hp = Halfpipe(up_port)
    states = ["close-wait", "fin-wait-1", "fin-wait-2", "last-ack", "closing"]
    try:
        filt = halfpipe_side_filter(hp.port, up_port)
        done = churn(hp, up, "client")
        left = wait_states_clear(hp.port, up_port, states, 10)
        check(f"{CHURN} connections churned client-first", done == CHURN, f"{done}")
        check(f"{done} client-first closes leave no half-closed socket of halfpipe's", not any(left.values()),
              str(left))
        tw_up = ss_count("time-wait", f"( dport = :{up_port} )")
        tw_listener = ss_count("time-wait", f"( sport = :{hp.port} )")
        check("client-first: TIME_WAIT on halfpipe's upstream side, not its listener side",
              tw_up >= done // 2 and tw_listener == 0, f"upstream side {tw_up}, listener side {tw_listener}")

        # A second halfpipe keeps the TIME_WAIT counts of the two runs apart.
        up2 = listener()
        up2_port = up2.getsockname()[1]
        hp2 = Halfpipe(up2_port)
        try:
            done = churn(hp2, up2, "upstream")
            left = wait_states_clear(hp2.port, up2_port, states, 10)
            check(f"{done} upstream-first closes leave no half-closed socket of halfpipe's", not any(left.values()),
                  str(left))
            tw_up = ss_count("time-wait", f"( dport = :{up2_port} )")
            tw_listener = ss_count("time-wait", f"( sport = :{hp2.port} )")
            check("upstream-first: TIME_WAIT on halfpipe's listener side, not its upstream side",
                  tw_listener >= done // 2 and tw_up == 0, f"listener side {tw_listener}, upstream side {tw_up}")
            closes = sum(1 for l in hp2.lines if "event=access" in l and "how=fin" in l)
            check("access log: one fin line per connection", closes == done, f"{closes}")
        finally:
            hp2.stop()
            up2.close()
    finally:
        hp.stop()
        up.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--echo-server"]:
        echo_server()
        sys.exit(0)
    raise_limit()
    start = time.monotonic()
    test_idle()
    test_churn()
    failed = results.count(False)
    print(f"scale: {len(results) - failed} passed, {failed} failed ({time.monotonic() - start:.0f} s)")
    sys.exit(1 if failed else 0)
