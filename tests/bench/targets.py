"""The targets halfpipe is held to, checked against one benchmark run.

Each target is a ratio of halfpipe to a peer within one repetition of one pass (each
repetition runs every proxy back to back), and is met when the median of these ratios
over the repetitions meets it. Beside it stands their range: how far run-to-run noise
moves the ratio on this machine.

Used by bench.py, for latest.md, latest.json and the summary printed at the end of a run.
"""

import statistics

KEEPALIVE_MIN = 1.10  # req/s against the better of HAProxy and nginx stream
CPU_MAX = 0.80        # CPU per keep-alive request against HAProxy's
CLOSE_MIN = 1.00      # Connection: close req/s against HAProxy's
IPERF_MIN = 1.00      # iperf3 throughput against HAProxy with splice
IDLE_BYTES_MAX = 2000  # resident bytes per idle relayed connection


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _by_rep(runs, target, field):
    return {r["rep"]: r.get(field) for r in runs if r["target"] == target and r.get(field) is not None}


def _paired(runs, field, peers, pick):
    """halfpipe's value over pick(peers' values), per repetition that has them all."""
    mine = _by_rep(runs, "halfpipe", field)
    theirs = [_by_rep(runs, p, field) for p in peers]
    out = []
    for rep, v in sorted(mine.items()):
        vals = [t.get(rep) for t in theirs]
        if all(x is not None for x in vals) and pick(vals):
            out.append(v / pick(vals))
    return out


def _cell(ratios):
    if not ratios:
        return {"ratio": None, "low": None, "high": None}
    return {"ratio": statistics.median(ratios), "low": min(ratios), "high": max(ratios)}


def evaluate(runs, workers=1):
    """One row per target, each with a cell per connection count (HTTP) or one cell."""
    pass_runs = [r for r in runs if r.get("workers", 1) == workers]
    rows = []
    ka = [r for r in pass_runs if r["test"] == "http_keepalive"]
    cl = [r for r in pass_runs if r["test"] == "http_close"]
    concs = sorted({r["conc"] for r in ka + cl})

    def per_conc(test_runs, fn):
        return {c: fn([r for r in test_runs if r["conc"] == c]) for c in concs}

    def keepalive(rs):
        c = _cell(_paired(rs, "rps", ["haproxy", "nginx"], max))
        mine = _med(_by_rep(rs, "halfpipe", "p99_ms").values())
        peers = [_med(_by_rep(rs, p, "p99_ms").values()) for p in ("haproxy", "nginx")]
        peers = [p for p in peers if p is not None]
        c["p99_ms"], c["peer_p99_ms"] = mine, (min(peers) if peers else None)
        c["met"] = (c["ratio"] is not None and c["ratio"] >= KEEPALIVE_MIN
                    and mine is not None and bool(peers) and mine <= min(peers))
        return c

    def cpu(rs):
        c = _cell(_paired(rs, "cpu_us_per_req", ["haproxy"], lambda v: v[0]))
        c["met"] = c["ratio"] is not None and c["ratio"] <= CPU_MAX
        return c

    def close(rs):
        c = _cell(_paired(rs, "rps", ["haproxy"], lambda v: v[0]))
        c["connect_errors"] = sum(r["errors"]["connect"] for r in rs if r["target"] == "halfpipe")
        c["met"] = c["ratio"] is not None and c["ratio"] >= CLOSE_MIN and c["connect_errors"] == 0
        return c

    if ka:
        rows.append({"target": "keep-alive req/s ≥ %.2f× the better of HAProxy and nginx, p99 no worse "
                               "than the lower of theirs" % KEEPALIVE_MIN,
                     "cells": per_conc(ka, keepalive)})
        rows.append({"target": "CPU per keep-alive request ≤ %.2f× HAProxy's" % CPU_MAX,
                     "cells": per_conc(ka, cpu)})
    if cl:
        rows.append({"target": "`Connection: close` req/s ≥ %.2f× HAProxy's, no connect error" % CLOSE_MIN,
                     "cells": per_conc(cl, close)})
    it = [r for r in runs if r["test"] == "iperf3"]
    if workers == 1 and it:
        c = _cell(_paired(it, "gbit_s", ["haproxy-splice"], lambda v: v[0]))
        c["met"] = c["ratio"] is not None and c["ratio"] >= IPERF_MIN
        rows.append({"target": "iperf3 throughput ≥ HAProxy with splice", "cells": {"": c}})
    mem = [r for r in runs if r["test"] == "idle_memory" and r["target"] == "halfpipe"]
    if workers == 1 and mem:
        per_conn = mem[-1]["pss_kib_per_conn"] * 1024
        rows.append({"target": "≤ %s B resident per idle relayed connection (%s connections)"
                               % (format(IDLE_BYTES_MAX, ","), format(mem[-1]["conns"], ",")),
                     "cells": {"": {"bytes": per_conn, "met": per_conn <= IDLE_BYTES_MAX}}})
    return rows


def _text(cell):
    if "bytes" in cell:
        return "%s B" % format(round(cell["bytes"]), ",")
    if cell.get("ratio") is None:
        return "n/a"
    t = "%.2f×" % cell["ratio"]
    if cell.get("low") is not None:
        t += " (%.2f–%.2f)" % (cell["low"], cell["high"])
    if cell.get("p99_ms") is not None and cell.get("peer_p99_ms") is not None:
        t += ", p99 %.2f / %.2f ms" % (cell["p99_ms"], cell["peer_p99_ms"])
    if cell.get("connect_errors"):
        t += ", %d connect errors" % cell["connect_errors"]
    return t + (" ✓" if cell.get("met") else " ✗")


def markdown(rows, title):
    """The targets as a Markdown section; [] without rows."""
    if not rows:
        return []
    concs = sorted({c for r in rows for c in r["cells"] if c != ""})
    head = ["target"] + ["c%d" % c for c in concs] + ["other", "met"]
    L = ["", "## %s" % title, "",
         "halfpipe ÷ the peer within each repetition (every proxy runs back to back within one): "
         "the median over the repetitions, and in brackets the lowest and highest. p99: "
         "halfpipe's median / the lower of HAProxy's and nginx's. ✓ met, ✗ not met.", "",
         "| " + " | ".join(head) + " |", "|---|" + "---|" * (len(head) - 1)]
    for r in rows:
        cells = r["cells"]
        line = [r["target"]] + [_text(cells[c]) if c in cells else "" for c in concs]
        line.append(_text(cells[""]) if "" in cells else "")
        line.append("yes" if all(c.get("met") for c in cells.values()) else "no")
        L.append("| " + " | ".join(line) + " |")
    return L


def summary_lines(rows):
    """One plain line per target, for the end of a run."""
    out = []
    for r in rows:
        parts = ["%s %s" % (("c%d" % c) if c != "" else "", _text(cell)) for c, cell in r["cells"].items()]
        out.append("%s: %s" % (r["target"], "; ".join(p.strip() for p in parts)))
    return out
