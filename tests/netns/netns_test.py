#!/usr/bin/env python3
"""Upstream connect failures that loopback alone cannot produce, each in a network
namespace of its own (so its port range and firewall touch nothing else):

- port exhaustion: a two-port ephemeral range; the third upstream connect fails
  with EADDRNOTAVAIL, reported as reason=port_exhausted, client reset at once;
- connect timeout: SYNs to the upstream dropped by nftables; the client is reset
  after the connect timeout, reason=connect_timeout;
- unreachable: nftables answers with ICMP host-unreachable; reason=connect_unreachable;
- handover: a second halfpipe binds the same listener and admin ports, the first is
  stopped with connections still in its accept queue; with net.ipv4.tcp_migrate_req=1
  (a per-namespace sysctl) the kernel hands them to the second and none is lost; with
  0 the queued ones are reset;
- reload: SIGHUP starts a successor with the config as it is on disk; it tells the old
  process and the service manager (sd_notify: MAINPID, READY) that it listens, the old
  one drains and exits, and no client is refused or reset meanwhile; a successor with
  a bad config is reaped and the old process serves on; one that cannot bind an address
  never listened on the others, so no client is reset;
- resolve timeout: the namespace's resolv.conf names a DNS server that never answers;
  a lookup gives up after resolve_timeout (reason=resolve_failed), so 70 such names
  cannot hold every lookup thread for longer, and a name /etc/hosts answers gets
  through; with resolve_timeout off (glibc's 5 s, two tries) it does not.

Needs root, iproute2 and nft. Prints 'N passed, N failed'; every wait is bounded.
"""
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from halfpipe_harness import HalfpipeProcess, Suite, read_end, start_echo_server, wait_until  # noqa: E402

suite = Suite("netns")
BINARY = os.path.abspath(suite.binary)
check = suite.check
check_eq = suite.check_eq


def Halfpipe(upstream, *extra, admin="off", drain_timeout="1s"):
    # A fixed listen port: port 0 would take one from the namespace's tiny ephemeral range.
    return HalfpipeProcess([BINARY, "--listen", "127.0.0.1:8000", "--upstream", upstream, "--admin", admin,
                            "--workers", "1", "--drain-timeout", drain_timeout, *extra], admin=admin != "off")


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


def process_state(pid):
    """R, S, T (stopped), ... from /proc/PID/stat; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


HANDOVER_CLIENTS = 200
HANDOVER_DRAIN_S = 10


def relay_outcomes(clients, seconds):
    """Each client sends its index, must read it back, then half-closes and must read a
    clean EOF: 'ok', 'reset', 'eof' (closed early), 'garbled' or 'timeout' per client."""
    deadline = time.monotonic() + seconds
    outcome = {}
    for i, c in enumerate(clients):
        try:
            c.sendall(i.to_bytes(8, "big"))
        except (ConnectionResetError, BrokenPipeError):
            outcome[i] = "reset"
    for i, c in enumerate(clients):
        if i in outcome:
            continue
        how, data = "eof", b""
        try:
            c.settimeout(max(0.01, deadline - time.monotonic()))
            while len(data) < 8:
                chunk = c.recv(8 - len(data))
                if not chunk:
                    break
                data += chunk
            else:
                how = "ok" if data == i.to_bytes(8, "big") else "garbled"
        except ConnectionResetError:
            how = "reset"
        except (socket.timeout, TimeoutError):
            how = "timeout"
        outcome[i] = how
    for i, c in enumerate(clients):
        if outcome[i] != "ok":
            continue
        c.shutdown(socket.SHUT_WR)
        end, extra = read_end(c, max(0.01, deadline - time.monotonic()))
        outcome[i] = "ok" if end == "eof" and not extra else end
    return [outcome[i] for i in range(len(clients))]


def handover(migrate):
    """Clients wait in A's accept queue (A stopped) while B starts on the same ports;
    then A gets SIGTERM and runs again. Each client must be relayed by A (accepted
    before its listener closed) or by B (migrated by the kernel), or else it was reset."""
    with open("/proc/sys/net/ipv4/tcp_migrate_req", "w") as f:
        f.write(str(migrate))
    echo, echo_port = start_echo_server(close_on_eof=True)
    upstream = f"127.0.0.1:{echo_port}"
    a = b = None
    try:
        a = Halfpipe(upstream, admin="127.0.0.1:9901", drain_timeout=f"{HANDOVER_DRAIN_S}s")
        os.kill(a.proc.pid, signal.SIGSTOP)
        check("A stops", wait_until(lambda: process_state(a.proc.pid) == "T", 5))
        clients = [socket.create_connection(("127.0.0.1", a.port), timeout=5) for _ in range(HANDOVER_CLIENTS)]
        b = Halfpipe(upstream, admin="127.0.0.1:9901", drain_timeout=f"{HANDOVER_DRAIN_S}s")
        check("a second halfpipe binds the same listener and admin ports", b.port == a.port and b.admin == a.admin)
        stopped_at = time.monotonic()
        os.kill(a.proc.pid, signal.SIGTERM)
        os.kill(a.proc.pid, signal.SIGCONT)
        check("A drains", log_line(a, r"event=draining", 5) is not None)
        outcomes = relay_outcomes(clients, 10)
        for c in clients:
            c.close()
        try:
            a_status = a.proc.wait(HANDOVER_DRAIN_S + 5)
        except subprocess.TimeoutExpired:
            a_status = None
        took = time.monotonic() - stopped_at
        counts = {k: outcomes.count(k) for k in sorted(set(outcomes))}
        # The access log lines of the last sessions may still be on their way through the pipes.
        wait_until(lambda: len(a.access_lines()) + len(b.access_lines()) >= counts.get("ok", 0), 5)
        by_a, by_b = len(a.access_lines()), len(b.access_lines())
        print(f"  tcp_migrate_req={migrate}: {HANDOVER_CLIENTS} queued clients: {counts}; "
              f"relayed by A {by_a}, by B {by_b}", flush=True)
        # How many A accepted before its listener closed is a race; what becomes of the others is not.
        if migrate:
            check_eq("every queued client is relayed and closes cleanly", counts, {"ok": HANDOVER_CLIENTS})
            check_eq("B relays every client A had not accepted", by_b, HANDOVER_CLIENTS - by_a)
        else:
            check_eq("without migration every client A had not accepted is reset",
                     counts, {k: v for k, v in (("ok", by_a), ("reset", HANDOVER_CLIENTS - by_a)) if v})
            check_eq("none of them reaches B", by_b, 0)
        check("A exits 0 before its drain timeout", a_status == 0 and took < HANDOVER_DRAIN_S,
              f"status {a_status} after {took:.2f} s")
        check("A drained without a timeout", "event=drain_timeout" not in a.log_text())
        fresh = [socket.create_connection(("127.0.0.1", b.port), timeout=5) for _ in range(5)]
        check_eq("B serves new connections", relay_outcomes(fresh, 5), ["ok"] * len(fresh))
        for c in fresh:
            c.close()
    finally:
        for hp in (b, a):
            if hp:
                if hp.proc.poll() is None:
                    os.kill(hp.proc.pid, signal.SIGCONT)
                hp.stop()
        echo.stdin.close()
        echo.wait(5)


def inner_handover_migrate():
    handover(1)


def inner_handover_no_migrate():
    handover(0)


RELOAD_DRAIN_S = 5


def write_reload_config(path, upstream_port, valid=True):
    with open(path, "w") as f:
        f.write(f"workers: 1\ndrain_timeout: {RELOAD_DRAIN_S}s\nadmin: {{address: 127.0.0.1:9901}}\n"
                f"listeners:\n  - name: web\n"
                f"    bind: 127.0.0.1:8000\n    upstream: {{address: 127.0.0.1:{upstream_port}}}\n"
                + ("" if valid else "    buffer_size: a lot\n"))


class NotifySocket:
    """The service manager's end of sd_notify(3): a datagram socket named by NOTIFY_SOCKET."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="halfpipe-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def next(self, seconds):
        """The next notice, or None if none comes within `seconds`."""
        self.sock.settimeout(seconds)
        try:
            return self.sock.recv(4096).decode()
        except (socket.timeout, TimeoutError):
            return None

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def children_of(pid):
    """The processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def admin_status(path):
    """The status of GET path at the admin address (127.0.0.1:9901), or None."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", 9901, timeout=5)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return None


def drained_exit(hp):
    """The old process's exit status once it has drained, or None if it did not exit in time."""
    try:
        return hp.proc.wait(RELOAD_DRAIN_S + 5)
    except subprocess.TimeoutExpired:
        return None


def stop_successor(pid):
    """SIGTERM to a successor (not our child: its parent has exited), then wait until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    wait_until(lambda: process_state(pid) in (None, "Z"), 10)


def hammer(port, stop, outcomes):
    """New connections one after another until `stop`: one relay_outcomes() each."""
    while not stop.is_set():
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError as e:
            outcomes.append(type(e).__name__)
            continue
        outcomes += relay_outcomes([c], 5)
        c.close()


class Hammer:
    """hammer() on a thread of its own until finish(), which checks that every client
    was relayed and closed cleanly."""

    def __init__(self, port):
        self.stop, self.outcomes = threading.Event(), []
        self.thread = threading.Thread(target=hammer, args=(port, self.stop, self.outcomes), daemon=True)
        self.thread.start()

    def finish(self, during, expectation):
        self.stop.set()
        self.thread.join(10)
        counts = {k: self.outcomes.count(k) for k in sorted(set(self.outcomes))}
        print(f"  clients {during}: {counts}", flush=True)
        check(expectation, set(counts) == {"ok"} and counts["ok"] >= 20, counts)


def started_under_notify(upstream_port, binary=BINARY, env=None):
    """halfpipe from a config file (upstream_port), with a NOTIFY_SOCKET of ours (and
    `env` added): (halfpipe, the notify socket, the config's path). It must say READY=1
    first."""
    notify = NotifySocket()
    config = os.path.join(notify.dir, "halfpipe.yaml")
    write_reload_config(config, upstream_port)
    hp = HalfpipeProcess([binary, "--config", config], env={**os.environ, "NOTIFY_SOCKET": notify.path, **(env or {})},
                         admin=True)
    check_eq("READY=1 to the service manager once it listens", notify.next(5), "READY=1")
    return hp, notify, config


def end_reload_case(hp, notify, echo, successor=None):
    """What every reload case leaves: its successor, halfpipe, the echo server, the notify socket."""
    if successor:
        stop_successor(successor)
    hp.stop()
    echo.stdin.close()
    echo.wait(5)
    notify.close()


def inner_reload():
    """SIGHUP: a successor with the config as it is now on disk takes over the ports; the
    old process drains what it has. Not one client is refused or reset meanwhile."""
    with open("/proc/sys/net/ipv4/tcp_migrate_req", "w") as f:
        f.write("1")
    echo_a, port_a = start_echo_server(close_on_eof=True)
    echo_b, port_b = start_echo_server(close_on_eof=True)
    hp, notify, config = started_under_notify(port_a)
    successor = None
    try:
        held = socket.create_connection(("127.0.0.1", hp.port), timeout=5)
        held.sendall(b"before")
        check_eq("a connection opened before the reload relays", held.recv(6), b"before")
        clients = Hammer(hp.port)
        time.sleep(0.3)
        write_reload_config(config, port_b)
        os.kill(hp.proc.pid, signal.SIGHUP)
        check_eq("RELOADING=1 at SIGHUP", notify.next(5), "RELOADING=1")
        notice = notify.next(10) or ""
        m = re.fullmatch(r"MAINPID=(\d+)\nREADY=1", notice)
        check("the successor tells the service manager it is the main process now, and ready", m, repr(notice))
        successor = int(m.group(1)) if m else None
        check("the successor is another process", successor not in (None, hp.proc.pid), successor)
        check("event=reload_handover names it", log_line(hp, r"event=reload_handover successor_pid=%s" % successor, 5))
        check("the old process drains", log_line(hp, r"event=draining signal=1 ", 5))
        readyz = [admin_status("/readyz") for _ in range(20)]
        check_eq("the admin address answers from the successor only: /readyz 200, never the drain's 503",
                 readyz, [200] * 20)
        os.kill(hp.proc.pid, signal.SIGTERM)
        check("a SIGTERM to the draining old process is its first stop signal, not a second",
              log_line(hp, r"event=drain_aborted", 0.5) is None)
        time.sleep(0.5)
        clients.finish("during the reload", "every client during the reload was relayed and closed cleanly")
        held.sendall(b"after")
        check_eq("the connection opened before still relays, through the old process", held.recv(5), b"after")
        fresh = socket.create_connection(("127.0.0.1", hp.port), timeout=5)
        check_eq("a new connection relays", relay_outcomes([fresh], 5), ["ok"])
        fresh.close()
        check("new connections go to the upstream of the new config",
              log_line(hp, r"event=access .*upstream=127\.0\.0\.1:%d " % port_b, 5))
        held.close()
        status = drained_exit(hp)
        check_eq("the old process exits 0 once its last connection is closed", status, 0)
        check("it drained without a timeout", "event=drain_timeout" not in hp.log_text())
    finally:
        if successor:
            stop_successor(successor)
        hp.stop()
        for echo in (echo_a, echo_b):
            echo.stdin.close()
            echo.wait(5)
        notify.close()


def inner_reload_bad_config():
    """A successor that cannot start (here: an invalid config) is reaped, and the old
    process goes on serving; the next SIGHUP, with the config fixed, works."""
    echo, port = start_echo_server(close_on_eof=True)
    link_dir = tempfile.mkdtemp(prefix="halfpipe-link-")
    link = os.path.join(link_dir, "halfpipe")
    os.symlink(BINARY, link)
    hp, notify, config = started_under_notify(port, binary=link)
    successor = None
    try:
        write_reload_config(config, port, valid=False)
        os.kill(hp.proc.pid, signal.SIGHUP)
        check_eq("RELOADING=1 at SIGHUP", notify.next(5), "RELOADING=1")
        check("event=reload_failed with the successor's exit status",
              log_line(hp, r'event=reload_failed successor_pid=\d+ reason="exited with status 2"', 10))
        check("the successor said why", log_line(hp, r"invalid configuration: .*buffer_size", 5))
        check_eq("READY=1 again: the old process still serves", notify.next(5), "READY=1")
        check_eq("no successor is left behind", children_of(hp.proc.pid), [])
        c = socket.create_connection(("127.0.0.1", hp.port), timeout=5)
        check_eq("it still relays", relay_outcomes([c], 5), ["ok"])
        c.close()
        check("and does not drain", "event=draining" not in hp.log_text())
        write_reload_config(config, port)
        os.kill(hp.proc.pid, signal.SIGHUP)
        check_eq("the next SIGHUP: RELOADING=1", notify.next(5), "RELOADING=1")
        m = re.fullmatch(r"MAINPID=(\d+)\nREADY=1", notify.next(10) or "")
        check("with the config fixed, the successor takes over", m)
        successor = int(m.group(1)) if m else None
        if successor:
            with open(f"/proc/{successor}/cmdline", "rb") as f:
                started_as = f.read().split(b"\0")[0].decode()
            check_eq("the successor is started by the path this one was (a symlink kept, so an upgrade that "
                     "turns the link is picked up)", started_as, link)
        status = drained_exit(hp)
        check_eq("the old process exits 0", status, 0)
    finally:
        end_reload_case(hp, notify, echo, successor)
        shutil.rmtree(link_dir, ignore_errors=True)


def halfpipe_wrapper(directory, before):
    """A script in `directory` that runs the shell line `before`, then halfpipe. exec -a
    keeps the script's path as argv[0]: the path a successor is started by."""
    path = os.path.join(directory, "halfpipe")
    with open(path, "w") as f:
        f.write(f'#!/bin/bash\n{before}\nexec -a "$0" {BINARY} "$@"\n')
    os.chmod(path, 0o755)
    return path


def inner_reload_successor_closes_the_pipe():
    """A successor that closes the pipe without saying it listens, and lives on (here a
    wrapper closes the descriptor), is told to stop within a second; the old process
    serves on and still answers signals."""
    echo, port = start_echo_server(close_on_eof=True)
    work = tempfile.mkdtemp(prefix="halfpipe-closing-wrapper-")
    wrapper = halfpipe_wrapper(work, "exec 3>&-")
    hp, notify, config = started_under_notify(port, binary=wrapper)
    try:
        os.kill(hp.proc.pid, signal.SIGHUP)
        started = time.monotonic()
        m = hp.wait_for_line(r'event=reload_failed successor_pid=(\d+) reason="closed the pipe without saying it '
                             r'listens"', 5)
        took = time.monotonic() - started
        check("event=reload_failed: closed the pipe without saying it listens, within about a second",
              m is not None and took < 3, f"{took:.2f} s")
        if m:
            check("the successor, told to stop, drains, exits and is reaped (no zombie)",
                  wait_until(lambda: process_state(int(m.group(1))) is None, 10))
            check("event=successor_reaped", log_line(hp, r"event=successor_reaped successor_pid=%s" % m.group(1), 5))
        c = socket.create_connection(("127.0.0.1", hp.port), timeout=5)
        check_eq("the old process still relays", relay_outcomes([c], 5), ["ok"])
        c.close()
        os.kill(hp.proc.pid, signal.SIGTERM)
        check_eq("and still answers SIGTERM: exits 0", drained_exit(hp), 0)
    finally:
        hp.stop()
        echo.stdin.close()
        echo.wait(5)
        notify.close()
        shutil.rmtree(work, ignore_errors=True)


def inner_reload_queued():
    """A SIGHUP while a reload runs is not lost: it runs once that reload is over, run
    again after a failure, or passed on to the successor after a handover."""
    echo, port = start_echo_server(close_on_eof=True)
    work = tempfile.mkdtemp(prefix="halfpipe-slow-start-")
    delay = os.path.join(work, "delay")
    # A halfpipe that takes a while to start, as a large config may.
    wrapper = halfpipe_wrapper(work, f'sleep "$(cat {delay} 2>/dev/null || echo 0)"')
    hp, notify, config = started_under_notify(port, binary=wrapper)
    successors = []
    try:
        with open(delay, "w") as f:
            f.write("1")
        write_reload_config(config, port, valid=False)
        os.kill(hp.proc.pid, signal.SIGHUP)
        check_eq("RELOADING=1", notify.next(5), "RELOADING=1")
        time.sleep(0.3)
        os.kill(hp.proc.pid, signal.SIGHUP)
        check("a second SIGHUP during the reload is queued", log_line(hp, r"event=reload_queued", 5))
        check("the first reload fails (bad config)", log_line(hp, r"event=reload_failed", 5))
        with open(delay, "w") as f:
            f.write("0")
        write_reload_config(config, port)
        notices = [notify.next(10) for _ in range(3)]
        check_eq("the queued reload runs after it: READY=1, RELOADING=1, then a successor",
                 [re.sub(r"MAINPID=\d+", "MAINPID=n", n or "") for n in notices],
                 ["READY=1", "RELOADING=1", "MAINPID=n\nREADY=1"])
        m = re.match(r"MAINPID=(\d+)", notices[2] or "")
        if m:
            successors.append(int(m.group(1)))
        status = drained_exit(hp)
        check_eq("the old process exits 0", status, 0)
        if not successors:
            return
        # Now the successor is the service; a SIGHUP queued during its reload goes on
        # to its own successor once that one has taken over.
        with open(delay, "w") as f:
            f.write("1")
        os.kill(successors[0], signal.SIGHUP)
        time.sleep(0.3)
        os.kill(successors[0], signal.SIGHUP)
        notices = [notify.next(10) for _ in range(4)]
        for n in notices:
            m = re.match(r"MAINPID=(\d+)", n or "")
            if m:
                successors.append(int(m.group(1)))
        check_eq("after a handover the queued SIGHUP reloads the successor in turn",
                 [re.sub(r"MAINPID=\d+", "MAINPID=n", n or "") for n in notices],
                 ["RELOADING=1", "MAINPID=n\nREADY=1", "RELOADING=1", "MAINPID=n\nREADY=1"])
        check("event=reload_passed_on", log_line(hp, r"event=reload_passed_on successor_pid=%d" %
                                                 (successors[1] if len(successors) > 1 else -1), 5))
    finally:
        for pid in successors:
            stop_successor(pid)
        hp.stop()
        echo.stdin.close()
        echo.wait(5)
        notify.close()
        shutil.rmtree(work, ignore_errors=True)


def reload_with_held_connection(port):
    """halfpipe under a notify socket, a connection held through it, then a reload that
    hands over: (halfpipe, notify socket, held connection, successor PID or None)."""
    hp, notify, config = started_under_notify(port)
    held = socket.create_connection(("127.0.0.1", hp.port), timeout=5)
    held.sendall(b"before")
    check_eq("a connection opened before the reload relays", held.recv(6), b"before")
    os.kill(hp.proc.pid, signal.SIGHUP)
    check_eq("RELOADING=1 at SIGHUP", notify.next(5), "RELOADING=1")
    m = re.fullmatch(r"MAINPID=(\d+)\nREADY=1", notify.next(10) or "")
    check("the successor takes over", m)
    check("the old process drains", log_line(hp, r"event=draining signal=1 ", 5))
    return hp, notify, held, int(m.group(1)) if m else None


def inner_reload_successor_lost():
    """The successor dies (here: SIGKILL) while the old process still drains. systemd
    cannot see that end (the successor is not its child), and nothing would listen
    until the old process exits: the old one becomes the main process again, and
    serves, with its config, as before the reload."""
    echo, port = start_echo_server(close_on_eof=True)
    hp, notify, held, successor = reload_with_held_connection(port)
    try:
        if successor is None:
            return
        os.kill(successor, signal.SIGKILL)
        check_eq("the old process tells the service manager it is the main process again",
                 notify.next(5), "MAINPID=%d\nREADY=1" % hp.proc.pid)
        check("event=successor_lost names it and how it ended",
              log_line(hp, r'event=successor_lost successor_pid=%d how="killed by signal 9"' % successor, 5))
        check("event=reload_taken_back", log_line(hp, r"event=reload_taken_back live=1", 5))
        check_eq("the successor is reaped, not left a zombie", process_state(successor), None)
        fresh = None
        for _ in range(50):  # the listeners open on the worker's thread, just after the log line
            try:
                fresh = socket.create_connection(("127.0.0.1", hp.port), timeout=5)
                break
            except ConnectionRefusedError:
                time.sleep(0.02)
        check_eq("new connections are relayed again", relay_outcomes([fresh], 5) if fresh else ["refused"], ["ok"])
        if fresh:
            fresh.close()
        check_eq("/readyz is 200 again", [admin_status("/readyz") for _ in range(5)], [200] * 5)
        held.sendall(b"after")
        check_eq("the held connection still relays", held.recv(5), b"after")
        time.sleep(RELOAD_DRAIN_S + 0.5)
        check("no drain ran out meanwhile: it serves, it does not drain",
              "event=drain_timeout" not in hp.log_text() and hp.proc.poll() is None)
        os.kill(hp.proc.pid, signal.SIGHUP)
        check_eq("a later SIGHUP reloads again", notify.next(5), "RELOADING=1")
        m = re.fullmatch(r"MAINPID=(\d+)\nREADY=1", notify.next(10) or "")
        check("and hands over to a new successor", m)
        if m:
            successor = int(m.group(1))
        held.close()
        check_eq("the old process exits 0 once drained", drained_exit(hp), 0)
    finally:
        end_reload_case(hp, notify, echo, successor)


def inner_reload_successor_stopped():
    """A successor that exits 0 was told to stop (systemctl stop signals the main
    process only) and drained: the old process does not take the service back."""
    echo, port = start_echo_server(close_on_eof=True)
    hp, notify, held, successor = reload_with_held_connection(port)
    try:
        if successor is None:
            return
        os.kill(successor, signal.SIGTERM)
        check("event=successor_exited", log_line(hp, r'event=successor_exited successor_pid=%d how="exited with '
                                                 r'status 0"' % successor, 10))
        notices = []
        while (n := notify.next(1)) is not None:
            notices.append(n)
        check_eq("the old process does not claim the service (the successor's own STOPPING=1 only)", notices,
                 ["STOPPING=1"])
        check("it goes on draining", "event=reload_taken_back" not in hp.log_text())
        held.close()
        check_eq("and exits 0 once drained", drained_exit(hp), 0)
    finally:
        end_reload_case(hp, notify, echo)


def inner_reload_fails_before_listening():
    """A successor that cannot bind one of its addresses has not listened on any other:
    no client was queued on its sockets, so none is reset when it exits, even with
    tcp_migrate_req=0, where nothing would move them back."""
    shim = os.environ.get("HALFPIPE_BIND_REFUSED_SHIM")
    if not check("bind_refused_shim is built (HALFPIPE_BIND_REFUSED_SHIM)", shim and os.path.exists(shim), shim):
        return
    with open("/proc/sys/net/ipv4/tcp_migrate_req", "w") as f:
        f.write("0")
    echo, port = start_echo_server(close_on_eof=True)
    flag_dir = tempfile.mkdtemp(prefix="halfpipe-refuse-bind-")
    flag = os.path.join(flag_dir, "refuse")
    hp, notify, config = started_under_notify(port, env={"LD_PRELOAD": shim, "HALFPIPE_REFUSE_BIND": flag,
                                                         "HALFPIPE_REFUSE_BIND_PORT": "9901"})
    try:
        open(flag, "w").close()  # from now on a bind to the admin port takes 1 s and fails
        clients = Hammer(hp.port)
        time.sleep(0.2)
        os.kill(hp.proc.pid, signal.SIGHUP)
        check_eq("RELOADING=1", notify.next(5), "RELOADING=1")
        check("the successor fails on the admin address",
              log_line(hp, r'event=reload_failed successor_pid=\d+ reason="exited with status 1"', 5))
        time.sleep(0.2)
        clients.finish("during the failed reload",
                       "every client during the failed reload was relayed by the old process")
    finally:
        hp.stop()
        echo.stdin.close()
        echo.wait(5)
        notify.close()
        shutil.rmtree(flag_dir, ignore_errors=True)


def inner_reload_refused_without_service_manager():
    """Without a service manager to follow the new PID, SIGHUP is refused: a supervisor
    watching this PID would start a second copy, a container's init would end."""
    echo, port = start_echo_server(close_on_eof=True)
    hp = Halfpipe(f"127.0.0.1:{port}")
    try:
        os.kill(hp.proc.pid, signal.SIGHUP)
        check("event=reload_refused reason=no_service_manager",
              log_line(hp, r"event=reload_refused reason=no_service_manager", 5))
        check_eq("no successor was started", children_of(hp.proc.pid), [])
        c = socket.create_connection(("127.0.0.1", hp.port), timeout=5)
        check_eq("it still relays", relay_outcomes([c], 5), ["ok"])
        c.close()
    finally:
        hp.stop()
        echo.stdin.close()
        echo.wait(5)


# Files `ip netns exec` puts over /etc/<name> for a case (from /etc/netns/<namespace>/).
NAMESPACE_ETC = {
    "resolve_timeout": {"resolv.conf": "nameserver 127.0.0.1\n",
                        "hosts": "127.0.0.1 localhost\n127.0.0.1 answered.test\n"},
}


def inner_resolve_timeout():
    # The DNS server: reads every query, answers none.
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 53))
    queries = []
    threading.Thread(target=lambda: [queries.append(dns.recv(512)) for _ in iter(int, 1)], daemon=True).start()
    echo, port = start_echo_server(close_on_eof=True)

    def connect_to(hp, host):
        c = socket.create_connection(("127.0.0.1", hp.port), timeout=5)
        c.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        return c

    def status_within(c, seconds):
        """The reply's status code and when it came, or (None, seconds)."""
        c.settimeout(seconds)
        start = time.monotonic()
        try:
            head = c.recv(4096)
        except (socket.timeout, OSError):
            return None, time.monotonic() - start
        m = re.match(rb"HTTP/1\.1 (\d+)", head)
        return (int(m.group(1)) if m else None), time.monotonic() - start

    def flood(hp, count):
        """`count` CONNECTs to distinct names the DNS server leaves unanswered."""
        return [connect_to(hp, f"n{i}.never.test") for i in range(count)]

    def quick(*extra):
        return HalfpipeProcess([BINARY, "--listen", "127.0.0.1:8000", "--mode", "connect", "--admin", "off",
                                "--workers", "1", *extra])

    hp = quick("--resolve-timeout", "1s")
    try:
        check("the start-up line names resolve_timeout=1000ms",
              log_line(hp, r"event=starting .*resolve_timeout=1000ms ", 3))
        c = connect_to(hp, "one.never.test")
        status, took = status_within(c, 5)
        check("a name the DNS server leaves unanswered fails after about 1 s",
              status is not None and status != 200 and 0.8 <= took < 2.5, f"{status} after {took:.2f} s")
        line = log_line(hp, r"event=access .*reason=resolve_failed", 3)
        check("access log says resolve_failed", line is not None, (line or "").strip())
        check("the DNS server was asked", wait_until(lambda: len(queries) > 0, 2), len(queries))
        c.close()
        flooded = time.monotonic()
        held = flood(hp, 70)  # more names than lookup threads (64)
        time.sleep(0.3)
        start = time.monotonic()
        c = connect_to(hp, "answered.test")
        status, took = status_within(c, 5)
        check("behind 70 unanswered names, a name /etc/hosts answers gets through within 1 s and a bit",
              status == 200 and time.monotonic() - start < 2.5, f"{status} after {time.monotonic() - start:.2f} s")
        c.close()
        # 64 lookups at once, then the 6 left on threads that looked up before: each
        # bounded, so every one has failed (502) within about two seconds.
        replies = [status_within(h, max(0.1, flooded + 3.5 - time.monotonic()))[0] for h in held]
        check("each of the 70 unanswered names failed with 502 within 3.5 s", replies == [502] * 70,
              {r: replies.count(r) for r in set(replies)})
        for h in held:
            h.close()
    finally:
        check_eq("halfpipe exits 0 on SIGTERM, its lookups over", hp.stop(), 0)

    # The same without the bound: glibc holds each lookup thread 10 s (5 s, two tries).
    hp = quick("--resolve-timeout", "off", "--connect-timeout", "2s")
    try:
        check("the start-up line names resolve_timeout=off", log_line(hp, r"event=starting .*resolve_timeout=off ", 3))
        held = flood(hp, 70)
        time.sleep(0.3)
        c = connect_to(hp, "answered.test")
        status, took = status_within(c, 4)
        check("with resolve_timeout off the answered name waits behind them until its connect deadline",
              status != 200, f"{status} after {took:.2f} s")
        c.close()
        for h in held:
            h.close()
    finally:
        # Lookup threads still wait for the DNS server: the process exits all the same.
        check_eq("halfpipe exits 0 on SIGTERM, lookups still pending", hp.stop(), 0)
        echo.stdin.close()
        echo.wait(5)
        dns.close()


def run_in_namespace(case):
    ns = f"halfpipe-test-{os.getpid()}-{case}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    etc = os.path.join("/etc/netns", ns)
    try:
        if case in NAMESPACE_ETC:
            os.makedirs(etc)
            for name, text in NAMESPACE_ETC[case].items():
                with open(os.path.join(etc, name), "w") as f:
                    f.write(text)
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
        shutil.rmtree(etc, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", ns])


if __name__ == "__main__":
    if "--inner" in sys.argv:
        case = sys.argv[sys.argv.index("--inner") + 1]
        suite.current = case
        globals()["inner_" + case]()
        sys.exit(1 if any(not ok for _, _, ok in suite.results) else 0)
    for case in ("port_exhaustion", "source_address", "connect_timeout", "unreachable", "handover_migrate",
                 "handover_no_migrate", "reload", "reload_bad_config", "reload_queued",
                 "reload_fails_before_listening", "reload_successor_closes_the_pipe", "reload_successor_lost",
                 "reload_successor_stopped",
                 "reload_refused_without_service_manager", "resolve_timeout"):
        run_in_namespace(case)
    suite.finish()
