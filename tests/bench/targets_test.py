#!/usr/bin/env python3
"""The benchmark's target verdicts (targets.py) on made-up runs whose answers are known.
Runs in a second; the benchmark itself is not part of the test run."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import targets  # noqa: E402


def http(test, rep, target, conc, rps, p99=1.0, cpu=None, connect_errors=0, workers=1):
    r = {"test": test, "rep": rep, "target": target, "conc": conc, "workers": workers, "rps": rps,
         "p99_ms": p99, "errors": {"connect": connect_errors, "read": 0, "write": 0, "timeout": 0}}
    if cpu is not None:
        r["cpu_us_per_req"] = cpu
    return r


def keepalive_runs(hp, ha, ng, hp_p99=1.0, peer_p99=(1.2, 1.3)):
    """One connection count (50), a repetition per tuple element."""
    runs = []
    for rep, (a, b, c) in enumerate(zip(hp, ha, ng)):
        runs += [http("http_keepalive", rep, "direct", 50, 100.0),
                 http("http_keepalive", rep, "halfpipe", 50, a, hp_p99, cpu=16.0),
                 http("http_keepalive", rep, "haproxy", 50, b, peer_p99[0], cpu=20.0),
                 http("http_keepalive", rep, "nginx", 50, c, peer_p99[1], cpu=21.0)]
    return runs


def row(rows, prefix):
    return next(r for r in rows if r["target"].startswith(prefix))


class KeepAlive(unittest.TestCase):
    def test_the_median_of_per_repetition_ratios_against_the_better_peer(self):
        # Ratios per repetition: 66/60 = 1.10, 70/50 = 1.40, 50/55 = 0.91 → median 1.10.
        rows = targets.evaluate(keepalive_runs([66, 70, 50], [60, 50, 40], [40, 48, 55]))
        cell = row(rows, "keep-alive")["cells"][50]
        self.assertAlmostEqual(cell["ratio"], 1.10, places=6)
        self.assertAlmostEqual(cell["low"], 50 / 55, places=6)
        self.assertAlmostEqual(cell["high"], 1.40, places=6)
        self.assertTrue(cell["met"])

    def test_short_of_the_ratio_is_not_met(self):
        rows = targets.evaluate(keepalive_runs([60, 60, 60], [57, 57, 57], [50, 50, 50]))
        self.assertFalse(row(rows, "keep-alive")["cells"][50]["met"])

    def test_a_worse_p99_fails_even_with_the_ratio(self):
        rows = targets.evaluate(keepalive_runs([80, 80, 80], [50, 50, 50], [50, 50, 50], hp_p99=1.25))
        cell = row(rows, "keep-alive")["cells"][50]
        self.assertGreaterEqual(cell["ratio"], 1.10)
        self.assertEqual(cell["peer_p99_ms"], 1.2)  # the lower of the two
        self.assertFalse(cell["met"])

    def test_cpu_against_haproxy(self):
        rows = targets.evaluate(keepalive_runs([60] * 3, [50] * 3, [50] * 3))
        cell = row(rows, "CPU")["cells"][50]
        self.assertAlmostEqual(cell["ratio"], 0.8, places=6)
        self.assertTrue(cell["met"])

    def test_a_repetition_missing_a_peer_is_left_out(self):
        runs = keepalive_runs([66, 70, 50], [60, 50, 40], [40, 48, 55])
        runs = [r for r in runs if not (r["rep"] == 2 and r["target"] == "nginx")]
        cell = row(targets.evaluate(runs), "keep-alive")["cells"][50]
        self.assertAlmostEqual(cell["ratio"], (1.10 + 1.40) / 2, places=6)


class Others(unittest.TestCase):
    def test_close_needs_the_rate_and_no_connect_error(self):
        runs = [http("http_close", rep, t, 10, v, connect_errors=e)
                for rep in range(3) for t, v, e in (("halfpipe", 11, 0), ("haproxy", 10, 0))]
        self.assertTrue(row(targets.evaluate(runs), "`Connection: close`")["cells"][10]["met"])
        runs[0]["errors"]["connect"] = 1
        cell = row(targets.evaluate(runs), "`Connection: close`")["cells"][10]
        self.assertEqual(cell["connect_errors"], 1)
        self.assertFalse(cell["met"])

    def test_iperf_and_memory(self):
        runs = [{"test": "iperf3", "rep": rep, "target": t, "workers": 1, "gbit_s": v}
                for rep in range(3) for t, v in (("halfpipe", 20.0), ("haproxy-splice", 25.0))]
        runs.append({"test": "idle_memory", "target": "halfpipe", "workers": 1, "conns": 9800,
                     "pss_kib_per_conn": 1.5})
        rows = targets.evaluate(runs)
        self.assertAlmostEqual(row(rows, "iperf3")["cells"][""]["ratio"], 0.8, places=6)
        self.assertFalse(row(rows, "iperf3")["cells"][""]["met"])
        self.assertEqual(row(rows, "≤ 2,000 B")["cells"][""]["bytes"], 1536)
        self.assertTrue(row(rows, "≤ 2,000 B")["cells"][""]["met"])

    def test_a_two_worker_pass_is_judged_on_its_own_runs(self):
        one = keepalive_runs([60] * 3, [50] * 3, [50] * 3)
        two = [dict(r, workers=2, rps=r["rps"] * (2 if r["target"] == "halfpipe" else 1)) for r in one]
        self.assertAlmostEqual(row(targets.evaluate(one + two, 1), "keep-alive")["cells"][50]["ratio"], 1.2)
        self.assertAlmostEqual(row(targets.evaluate(one + two, 2), "keep-alive")["cells"][50]["ratio"], 2.4)
        self.assertFalse(any(r["target"].startswith("iperf3") for r in targets.evaluate(one + two, 2)))

    def test_markdown_marks_each_cell(self):
        lines = targets.markdown(targets.evaluate(keepalive_runs([60] * 3, [57] * 3, [50] * 3)), "Targets")
        ka = next(l for l in lines if l.startswith("| keep-alive"))
        self.assertIn("1.05× (1.05–1.05)", ka)
        self.assertIn("✗", ka)
        self.assertTrue(ka.endswith("| no |"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
