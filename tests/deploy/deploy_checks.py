#!/usr/bin/env python3
"""Checks of halfpipe's deploy/ and dashboards/ files, run by check_deploy.sh.

Each subcommand prints what is wrong and exits 1, or exits 0. Run from the repository
root. Subcommands:

  dashboard-structure               uid, schemaVersion, variables, datasources, layout
  dashboard-rules OUT.yml           write every dashboard PromQL as a recording rule
  dashboard-metrics                 every metric a panel uses is exported (and every
                                    exported metric is shown somewhere)
  rules-metrics                     every metric an alert/recording rule uses is exported
  unit FILE                         hardening directives of the systemd unit
  sysctl FILE                       keys exist in /proc/sys, required keys present
  k8s DIR [CONFIG_OUT]              manifests parse and agree with each other
  dockerfile FILE                   bookworm multi-stage build, non-root runtime
  live-metrics BIN                  (if the binary serves /metrics) names and types agree
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

METRICS_FILE = "tests/deploy/exported_metrics.txt"
DASHBOARD = "dashboards/halfpipe.json"
RULES = "deploy/prometheus/halfpipe.rules.yml"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Series Prometheus makes itself for every target, allowed in alert rules only.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                 "scrape_samples_post_metric_relabeling", "scrape_series_added"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and",
                   "or", "unless", "bool", "offset", "inf", "nan", "start", "end", "atan2"}
DRAIN_TIMEOUT_DEFAULT_S = 30.0

errors = []


def fail(msg):
    errors.append(msg)


def finish():
    for e in errors:
        print("  " + e)
    sys.exit(1 if errors else 0)


def load_yaml_all(path):
    import yaml  # imported late: only the subcommands that need it require PyYAML
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# ---------------------------------------------------------------------------- metrics list

def exported_metrics():
    """name -> type from tests/deploy/exported_metrics.txt."""
    out = {}
    with open(METRICS_FILE) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            name = parts[0]
            kind = parts[1] if len(parts) > 1 else "untyped"
            if kind not in ("gauge", "counter", "histogram", "untyped"):
                fail(f"{METRICS_FILE}:{n}: unknown type {kind!r}")
            if name in out:
                fail(f"{METRICS_FILE}:{n}: {name} listed twice")
            out[name] = kind
    return out


# ---------------------------------------------------------------------------- PromQL names

def promql_metric_names(expr):
    """Metric names an expression selects. A light lexer, not a parser: promtool has
    already checked the syntax; this only has to tell metric names from function
    names, keywords, label names and literals."""
    if "__name__" in expr:
        return None  # selecting by __name__ hides the name from this check
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"#[^\n]*", " ", s)
    s = re.sub(r"\{[^}]*\}", " ", s)          # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)         # range and subquery durations
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\b(offset)\s+-?\w+", " ", s)
    s = re.sub(r"@\s*[\w.]+", " ", s)
    names = []
    for m in re.finditer(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*", s):
        name = m.group(0)
        if s[m.end():].lstrip().startswith("("):
            continue  # function or aggregation operator
        if name.lower() in PROMQL_KEYWORDS:
            continue
        names.append(name)
    return names


def check_names(where, expr, metrics, extra_allowed=()):
    names = promql_metric_names(expr)
    if names is None:
        fail(f"{where}: selects by __name__; name the metric instead")
        return set()
    used = set()
    for name in names:
        if name in extra_allowed:
            continue
        if name in metrics:
            if metrics[name] == "histogram":
                fail(f"{where}: {name} is a histogram: query {name}_bucket, _sum or _count")
            used.add(name)
            continue
        base = next((name[: -len(sfx)] for sfx in HISTOGRAM_SUFFIXES if name.endswith(sfx)), None)
        if base is not None and metrics.get(base) == "histogram":
            used.add(base)
            continue
        fail(f"{where}: metric {name} is not exported by halfpipe (not in {METRICS_FILE})")
    return used


# ---------------------------------------------------------------------------- dashboard

TEMPLATE_SUBST = [
    (r"\$\{?__rate_interval\}?", "1m"),
    (r"\$\{?__interval\}?", "1m"),
    (r"\$\{?__range\}?", "1h"),
    (r"\$\{listener(?::\w+)?\}|\$listener\b|\[\[listener\]\]", ".*"),
    (r"\$\{instance(?::\w+)?\}|\$instance\b|\[\[instance\]\]", ".*"),
]


def substitute(expr):
    for pat, val in TEMPLATE_SUBST:
        expr = re.sub(pat, val, expr)
    return expr


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def dashboard_exprs(dash):
    """(where, raw expr) for every PromQL in the dashboard: panel targets, annotation
    queries, and the selectors inside label_values() of the variables."""
    out = []
    for p in all_panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if "expr" in t:
                out.append((f"panel {p.get('id')} {p.get('title')!r} target {t.get('refId')}", t["expr"]))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append((f"annotation {a.get('name')!r}", a["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*", q, re.S)
        if m:
            out.append((f"variable {v.get('name')}", m.group(1)))
        elif re.fullmatch(r"\s*label_values\(\s*[A-Za-z_]\w*\s*\)\s*", q):
            pass
        elif q.strip().startswith("query_result("):
            out.append((f"variable {v.get('name')}", q.strip()[len("query_result("):-1]))
        else:
            fail(f"variable {v.get('name')}: query {q!r} is not label_values(...)/query_result(...)")
    return out


def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def cmd_dashboard_structure():
    d = load_dashboard()
    if d.get("uid") != "halfpipe":
        fail(f"uid is {d.get('uid')!r}, want 'halfpipe'")
    sv = d.get("schemaVersion")
    if not isinstance(sv, int) or not 36 <= sv <= 41:
        fail(f"schemaVersion {sv!r}: want about 39")
    if d.get("id") not in (None,):
        fail("id must be null so that imports and provisioning do not clash")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        fail("variable 'datasource' must be of type datasource with query 'prometheus'")
    for name in ("instance", "listener"):
        v = variables.get(name)
        if not v or v.get("type") != "query":
            fail(f"variable {name!r} missing or not a query variable")
        elif v.get("datasource", {}).get("uid") != "${datasource}":
            fail(f"variable {name!r} must query ${{datasource}}")
        elif v.get("includeAll") and v.get("allValue") != ".*":
            fail(f"variable {name!r}: allValue must be '.*' (panels match with =~)")

    ids = set()
    cells = {}
    panels = list(all_panels(d.get("panels", [])))
    for p in panels:
        pid, title = p.get("id"), p.get("title")
        where = f"panel {pid} {title!r}"
        if pid in ids:
            fail(f"{where}: duplicate id")
        ids.add(pid)
        if not title:
            fail(f"{where}: no title")
        g = p.get("gridPos", {})
        x, y, w, h = (g.get(k) for k in ("x", "y", "w", "h"))
        if None in (x, y, w, h) or x < 0 or w < 1 or x + w > 24 or h < 1:
            fail(f"{where}: bad gridPos {g}")
        else:
            for cx in range(x, x + w):
                for cy in range(y, y + h):
                    if (cx, cy) in cells:
                        fail(f"{where}: overlaps panel {cells[(cx, cy)]}")
                        break
                    cells[(cx, cy)] = pid
                else:
                    continue
                break
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            fail(f"{where}: datasource must be ${{datasource}}")
        targets = p.get("targets", [])
        if not targets:
            fail(f"{where}: no targets")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            fail(f"{where}: refIds {refs} must be unique")
        for t in targets:
            if t.get("datasource", {}).get("uid") != "${datasource}":
                fail(f"{where} target {t.get('refId')}: datasource must be ${{datasource}}")
            if not t.get("expr", "").strip():
                fail(f"{where} target {t.get('refId')}: empty expr")
            uses_listener_metric = re.search(r"\bhalfpipe_", t.get("expr", ""))
            if uses_listener_metric and "$listener" not in t["expr"] and "halfpipe_build_info" not in t["expr"]:
                fail(f"{where} target {t.get('refId')}: halfpipe_* query ignores $listener")
            if re.search(r"\b(halfpipe|process)_", t.get("expr", "")) and "$instance" not in t["expr"]:
                fail(f"{where} target {t.get('refId')}: query ignores $instance")
        if p.get("type") == "heatmap":
            for t in targets:
                if t.get("format") != "heatmap" or "_bucket" not in t.get("expr", "") \
                        or not re.search(r"by\s*\(\s*le\s*\)", t.get("expr", "")):
                    fail(f"{where}: heatmap targets must sum _bucket series by (le) with format heatmap")
            if p.get("options", {}).get("calculate") is not False:
                fail(f"{where}: heatmap must show the histogram's buckets (calculate: false)")

    # Panels the deployment notes rely on.
    text = json.dumps(d)
    tw = [p for p in panels if "halfpipe_tcp_sockets" in json.dumps(p.get("targets", []))
          and any("TIME_WAIT" in json.dumps(o.get("matcher", {})) and
                  any(pr.get("id") == "color" for pr in o.get("properties", []))
                  for o in p.get("fieldConfig", {}).get("overrides", []))]
    if not tw:
        fail("no kernel TCP state panel with a color override for TIME_WAIT")
    stacked = [p for p in panels if "halfpipe_connections{" in json.dumps(p.get("targets", []))
               and p.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
               .get("stacking", {}).get("mode") == "normal"]
    if not stacked:
        fail("no stacked relay state panel")
    if sum(1 for p in panels if p.get("type") == "heatmap") < 2:
        fail("want heatmaps for upstream connect latency and connection duration")
    for needed in ("halfpipe_upstream_time_wait_sockets", "halfpipe_upstream_port_headroom"):
        if needed not in text:
            fail(f"dashboard does not show {needed}")
    finish()


def cmd_dashboard_rules(out_path):
    d = load_dashboard()
    lines = ["# Generated by tests/deploy/deploy_checks.py from " + DASHBOARD,
             "groups:", "  - name: dashboard_exprs", "    rules:"]
    count = 0
    for i, (where, expr) in enumerate(dashboard_exprs(d)):
        e = substitute(expr)
        left = re.search(r"\$\{?\w+|\[\[\w+\]\]", e)
        if left:
            fail(f"{where}: unknown template variable {left.group(0)}")
            continue
        lines.append(f"      # {where}")
        slug = re.sub(r"[^A-Za-z0-9_]+", "_", where).strip("_")
        lines.append(f"      - record: dashboard:{slug}_{i}")
        lines.append("        expr: " + json.dumps(e))  # JSON strings are valid YAML
        count += 1
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"  {count} expressions -> {out_path}")
    finish()


def cmd_dashboard_metrics():
    metrics = exported_metrics()
    used = set()
    for where, expr in dashboard_exprs(load_dashboard()):
        used |= check_names(where, substitute(expr), metrics)
    for name in sorted(set(metrics) - used):
        fail(f"exported metric {name} is on no dashboard panel")
    print(f"  {len(used)} of {len(metrics)} exported metrics used")
    finish()


def cmd_rules_metrics():
    metrics = exported_metrics()
    recorded = set()
    exprs = []
    for doc in load_yaml_all(RULES):
        for g in doc.get("groups", []):
            for r in g.get("rules", []):
                if "record" in r:
                    recorded.add(r["record"])
                exprs.append((f"{g['name']}/{r.get('alert') or r.get('record')}", r["expr"]))
    used = set()
    for where, expr in exprs:
        used |= check_names(where, expr, metrics, extra_allowed=recorded | SCRAPE_SERIES)
    print(f"  {len(exprs)} rules, {len(used)} exported metrics used")
    finish()


# ---------------------------------------------------------------------------- systemd unit

def systemd_seconds(v):
    """A systemd time span ("45s", "1min 30s", "90") in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
             "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
             "ms": 1e-3, "msec": 1e-3, "us": 1e-6, "usec": 1e-6}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", v.strip())
    if not parts or re.sub(r"[\d.\sa-z]", "", v):
        raise ValueError(v)
    for num, unit in parts:
        if unit not in units:
            raise ValueError(v)
        total += float(num) * units[unit]
    return total


def cmd_unit(path):
    directives = {}
    section = None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            if "=" not in line:
                fail(f"{path}:{n}: not a directive: {line}")
                continue
            k, v = (s.strip() for s in line.split("=", 1))
            directives.setdefault((section, k), []).append(v)

    def last(k):
        vs = directives.get(("Service", k))
        return vs[-1] if vs else None

    want = {
        "DynamicUser": "yes", "NoNewPrivileges": "yes", "LimitNOFILE": "1048576",
        "ProtectSystem": "strict", "PrivateTmp": "yes", "KillSignal": "SIGTERM",
        "ExecStart": "/usr/local/bin/halfpipe --config /etc/halfpipe/halfpipe.yaml",
        "CapabilityBoundingSet": "",
    }
    for k, v in want.items():
        if last(k) != v:
            fail(f"{path}: {k}={last(k)!r}, want {v!r}")
    if last("ProtectHome") not in ("yes", "read-only", "tmpfs"):
        fail(f"{path}: ProtectHome={last('ProtectHome')!r}")
    families = set(" ".join(directives.get(("Service", "RestrictAddressFamilies"), [])).split())
    if families != {"AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"}:
        fail(f"{path}: RestrictAddressFamilies {sorted(families)}, want AF_INET AF_INET6 AF_NETLINK AF_UNIX")
    filters = directives.get(("Service", "SystemCallFilter"), [])
    if not any(f.split()[0] == "@system-service" for f in filters):
        fail(f"{path}: SystemCallFilter=@system-service missing")
    if any("@resources" in f for f in filters if f.startswith("~")):
        fail(f"{path}: denying @resources blocks setrlimit, which halfpipe needs to raise RLIMIT_NOFILE")
    if last("ProcSubset") == "pid":
        fail(f"{path}: ProcSubset=pid hides /proc/sys/net/ipv4/ip_local_port_range (port headroom)")
    if last("PrivateNetwork") == "yes":
        fail(f"{path}: PrivateNetwork=yes cuts halfpipe off the network")
    if last("AmbientCapabilities"):
        fail(f"{path}: AmbientCapabilities set by default; keep it a commented option")
    try:
        stop = systemd_seconds(last("TimeoutStopSec") or "")
        if stop <= DRAIN_TIMEOUT_DEFAULT_S:
            fail(f"{path}: TimeoutStopSec={stop:g}s must exceed drain_timeout (30s)")
    except ValueError:
        fail(f"{path}: TimeoutStopSec={last('TimeoutStopSec')!r} is not a time span")
    with open(path) as f:
        if "AmbientCapabilities=CAP_NET_BIND_SERVICE" not in f.read():
            fail(f"{path}: document AmbientCapabilities=CAP_NET_BIND_SERVICE for ports < 1024")
    finish()


# ---------------------------------------------------------------------------- sysctl

def cmd_sysctl(path):
    active = {}
    commented = set()
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith(("#", ";")):
                m = re.fullmatch(r"[#;]\s*([a-z][a-z0-9_]*(?:\.[a-z0-9_-]+)+)\s*=\s*\S.*", line)
                if m:
                    commented.add(m.group(1))
                continue
            m = re.fullmatch(r"-?([a-z][a-z0-9_]*(?:[./][a-z0-9_-]+)+)\s*=\s*(.+)", line)
            if not m:
                fail(f"{path}:{n}: not 'key = value': {line}")
                continue
            active[m.group(1).replace("/", ".")] = m.group(2).strip()
    for key in sorted(set(active) | commented):
        proc = "/proc/sys/" + key.replace(".", "/")
        if os.path.isdir("/proc/sys/net") and not os.path.exists(proc):
            fail(f"{path}: {key}: no such sysctl ({proc})")
    for key in ("net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse",
                "net.ipv4.tcp_max_tw_buckets", "net.core.somaxconn",
                "net.ipv4.tcp_max_syn_backlog"):
        if key not in active:
            fail(f"{path}: {key} is not set")
    if "fs.file-max" not in active and "fs.file-max" not in commented:
        fail(f"{path}: no fs.file-max note")
    rng = active.get("net.ipv4.ip_local_port_range", "").split()
    if len(rng) != 2 or not all(x.isdigit() for x in rng):
        fail(f"{path}: ip_local_port_range {rng}: want two ports")
    else:
        lo, hi = map(int, rng)
        if not 1024 <= lo < hi <= 65535:
            fail(f"{path}: ip_local_port_range {lo} {hi} out of 1024..65535")
        if lo % 2 == hi % 2:
            fail(f"{path}: ip_local_port_range ends should differ in parity")
    if active.get("net.ipv4.tcp_tw_reuse") not in (None, "0", "1", "2"):
        fail(f"{path}: tcp_tw_reuse must be 0, 1 or 2")
    with open(path) as f:
        text = f.read()
    for phrase in ("TIME_WAIT", "upstream", "listener", "abortive"):
        if phrase.lower() not in text.lower():
            fail(f"{path}: the explanation should mention {phrase}")
    finish()


# ---------------------------------------------------------------------------- kubernetes

def parse_duration_s(v):
    m = re.fullmatch(r"((?:\d+(?:h|ms|m|s))+)", str(v))
    if not m:
        raise ValueError(v)
    mult = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3}
    return sum(float(n) * mult[u] for n, u in re.findall(r"(\d+)(ms|h|m|s)", v))


def cmd_k8s(directory, config_out=None):
    import yaml
    docs = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith((".yaml", ".yml")):
            continue
        path = os.path.join(directory, name)
        try:
            for d in load_yaml_all(path):
                docs.append((name, d))
        except yaml.YAMLError as e:
            fail(f"{path}: {e}")
    if errors:
        finish()
    by_kind = {}
    for name, d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            fail(f"{name}: a document without apiVersion/kind")
            continue
        if d["kind"] != "Kustomization" and not d.get("metadata", {}).get("name"):
            fail(f"{name}: {d['kind']} without metadata.name")
        by_kind.setdefault(d["kind"], []).append((name, d))
    print(f"  parsed {len(docs)} documents: " + ", ".join(sorted(by_kind)))
    for kind in ("Deployment", "Service", "ConfigMap", "PodMonitor"):
        if kind not in by_kind:
            fail(f"no {kind}")
    if errors:
        finish()

    kust = by_kind.get("Kustomization")
    if kust:
        listed = set(kust[0][1].get("resources", []))
        files = {n for n, d in docs if d.get("kind") != "Kustomization"}
        if listed != files:
            fail(f"kustomization.yaml resources {sorted(listed)} != manifests {sorted(files)}")

    cm = by_kind["ConfigMap"][0][1]
    cfg_text = cm.get("data", {}).get("halfpipe.yaml")
    if not cfg_text:
        fail("ConfigMap has no halfpipe.yaml")
        finish()
    cfg = yaml.safe_load(cfg_text)
    if config_out:
        with open(config_out, "w") as f:
            f.write(cfg_text)
    drain = parse_duration_s(cfg.get("drain_timeout", "30s"))
    admin = cfg.get("admin", {})
    admin_port = int(str(admin.get("address", "127.0.0.1:9901")).rsplit(":", 1)[1])
    if str(admin.get("address", "")).startswith("127."):
        fail("ConfigMap: admin.address on loopback: probes and Prometheus cannot reach it")
    listener_ports = set()
    for lst in cfg.get("listeners", []):
        binds = lst.get("bind")
        for b in binds if isinstance(binds, list) else [binds]:
            listener_ports.add(int(str(b).rsplit(":", 1)[1]))

    dep = by_kind["Deployment"][0][1]
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"].get("labels", {})
    sel = dep["spec"]["selector"]["matchLabels"]
    if any(pod_labels.get(k) != v for k, v in sel.items()):
        fail("Deployment selector does not match its pod labels")
    spec = pod["spec"]
    c = spec["containers"][0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}

    prestop = 0.0
    pre = c.get("lifecycle", {}).get("preStop", {})
    cmd = pre.get("exec", {}).get("command", [])
    if len(cmd) == 2 and os.path.basename(cmd[0]) == "sleep":
        prestop = float(cmd[1])
    elif "sleep" in pre:
        prestop = float(pre["sleep"].get("seconds", 0))
    elif pre:
        fail("preStop is neither a sleep command nor a sleep action: cannot bound its time")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if not grace > prestop + drain:
        fail(f"terminationGracePeriodSeconds {grace} must exceed preStop {prestop:g}s + drain_timeout {drain:g}s")

    def port_of(ref):
        return ports.get(ref) if isinstance(ref, str) else ref

    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        hg = c.get(probe, {}).get("httpGet", {})
        if hg.get("path") != path:
            fail(f"{probe} path {hg.get('path')!r}, want {path}")
        if port_of(hg.get("port")) != admin_port:
            fail(f"{probe} port {hg.get('port')!r} is not the admin port {admin_port}")
    for lp in listener_ports:
        if lp not in ports.values():
            fail(f"listener port {lp} is not a containerPort")
    if ports.get("admin") != admin_port:
        fail(f"containerPort 'admin' {ports.get('admin')} != admin.address port {admin_port}")

    res = c.get("resources", {})
    for k in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(res.get(k, {})):
            fail(f"resources.{k} must set cpu and memory")
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        fail("runAsNonRoot is not set")
    if csc.get("allowPrivilegeEscalation") is not False:
        fail("allowPrivilegeEscalation must be false")
    if csc.get("readOnlyRootFilesystem") is not True:
        fail("readOnlyRootFilesystem must be true")
    if "ALL" not in csc.get("capabilities", {}).get("drop", []):
        fail("capabilities.drop must include ALL")
    ann = pod["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(admin_port) \
            or ann.get("prometheus.io/path") != "/metrics":
        fail("pod annotations prometheus.io/scrape, port, path do not point at the admin /metrics")
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    args = c.get("args", [])
    cfg_path = args[args.index("--config") + 1] if "--config" in args else None
    ok = False
    for name, m in mounts.items():
        cmref = vols.get(name, {}).get("configMap", {}).get("name")
        if cmref == cm["metadata"]["name"] and cfg_path == m["mountPath"].rstrip("/") + "/halfpipe.yaml":
            ok = True
    if not ok:
        fail(f"--config {cfg_path} is not the mounted ConfigMap's halfpipe.yaml")

    svc = by_kind["Service"][0][1]
    if any(pod_labels.get(k) != v for k, v in svc["spec"].get("selector", {}).items()):
        fail("Service selector does not match the pod labels")
    for p in svc["spec"].get("ports", []):
        if port_of(p.get("targetPort", p.get("port"))) not in listener_ports:
            fail(f"Service port {p.get('name')} does not target a listener port")

    pm = by_kind["PodMonitor"][0][1]
    if any(pod_labels.get(k) != v for k, v in pm["spec"]["selector"].get("matchLabels", {}).items()):
        fail("PodMonitor selector does not match the pod labels")
    eps = pm["spec"].get("podMetricsEndpoints", [])
    if not eps or port_of(eps[0].get("port")) != admin_port or eps[0].get("path", "/metrics") != "/metrics":
        fail("PodMonitor endpoint is not the admin port's /metrics")
    if pod_labels.get(pm["spec"].get("jobLabel", ""), None) != "halfpipe":
        fail("PodMonitor jobLabel must give job=\"halfpipe\" (the alert rules select it)")
    finish()


# ---------------------------------------------------------------------------- Dockerfile

def cmd_dockerfile(path):
    with open(path) as f:
        text = f.read()
    logical = re.sub(r"\\\n", " ", text)
    instr = [(l.split(None, 1)[0].upper(), (l.split(None, 1) + [""])[1])
             for l in logical.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    froms = [a for i, a in instr if i == "FROM"]
    if len(froms) < 2:
        fail("want a multi-stage build (two FROMs)")
    if not froms or not froms[0].split()[0].startswith("debian:bookworm"):
        fail(f"build stage must be FROM debian:bookworm, is {froms[:1]}")
    if froms and not froms[-1].split()[0].startswith("debian:bookworm"):
        fail(f"runtime stage must be debian:bookworm(-slim), is {froms[-1]}")
    if "deploy/install-deps.sh" not in text:
        fail("the build stage must install packages with deploy/install-deps.sh")
    last_stage = logical.split("\nFROM ")[-1]
    users = re.findall(r"^USER\s+(\S+)", last_stage, re.M)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        fail("the runtime stage must end with a non-root USER")
    elif not users[-1].split(":")[0].isdigit():
        fail("USER should be numeric so Kubernetes runAsNonRoot can check it")
    if not re.search(r'^ENTRYPOINT\s+\["/usr/local/bin/halfpipe"', last_stage, re.M):
        fail("ENTRYPOINT must be [\"/usr/local/bin/halfpipe\", ...]")
    if not re.search(r"^STOPSIGNAL\s+SIGTERM", last_stage, re.M):
        fail("STOPSIGNAL SIGTERM missing")
    finish()


# ---------------------------------------------------------------------------- live /metrics

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cmd_live_metrics(binary):
    """Exit 0 and compare, 1 on a mismatch, 77 when the binary serves no /metrics."""
    metrics = exported_metrics()
    port = free_port()
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9",
                             "--admin", f"127.0.0.1:{port}", "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    body = None
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if body is None:
        print(f"  {binary} serves no /metrics on its admin endpoint (not implemented yet?)")
        sys.exit(77)
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)", body, re.M))
    for name, kind in metrics.items():
        if name not in types:
            fail(f"listed metric {name} is not in {binary}'s /metrics")
        elif kind != "untyped" and types[name] != kind:
            fail(f"{name}: /metrics says {types[name]}, {METRICS_FILE} says {kind}")
    for name in sorted(types):
        if name.startswith("halfpipe_") and name not in metrics:
            fail(f"{binary} exports {name}, missing from {METRICS_FILE} (and so from the dashboard)")
    print(f"  /metrics has {len(types)} metric families")
    finish()


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    cmd, args = sys.argv[1], sys.argv[2:]
    table = {
        "dashboard-structure": cmd_dashboard_structure,
        "dashboard-rules": cmd_dashboard_rules,
        "dashboard-metrics": cmd_dashboard_metrics,
        "rules-metrics": cmd_rules_metrics,
        "unit": cmd_unit,
        "sysctl": cmd_sysctl,
        "k8s": cmd_k8s,
        "dockerfile": cmd_dockerfile,
        "live-metrics": cmd_live_metrics,
    }
    if cmd not in table:
        print(__doc__)
        sys.exit(2)
    exported_metrics() if cmd in ("dashboard-metrics", "rules-metrics", "live-metrics") else None
    if errors:
        finish()
    table[cmd](*args)


if __name__ == "__main__":
    main()
