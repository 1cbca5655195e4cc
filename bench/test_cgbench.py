"""Unit tests of the bench harness's pure parts (no Envoy): host-call floor
plans, percentiles, the floor and fixed-rate tables, offered rates.
`make bench-test` runs them (`python3 -m unittest discover -s bench`)."""

import re
import sys
import unittest
from pathlib import Path
from types import SimpleNamespace

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cgbench import floor, load, main, report, scenarios  # noqa: E402

PLAN_RS = Path(__file__).resolve().parent / "noop/src/plan.rs"

A = {"proxy_get_current_time_nanoseconds": 1.0, "proxy_get_header_map_pairs": 1.0,
     "proxy_replace_header_map_value": 2.0}
G = {"proxy_define_metric": 0.02, "proxy_get_buffer_bytes": 1.0,
     "proxy_get_current_time_nanoseconds": 6.0, "proxy_get_header_map_pairs": 1.0,
     "proxy_get_header_map_value": 1.0, "proxy_get_shared_data": 1.14,
     "proxy_increment_metric": 5.0, "proxy_record_metric": 1.0,
     "proxy_replace_header_map_value": 7.0, "proxy_set_buffer_bytes": 1.0,
     "proxy_set_property": 1.0, "proxy_set_shared_data": 1.06}
# (f): the routing feedback reaches shared data on a fraction of requests.
F = {"proxy_get_buffer_bytes": 1.0, "proxy_get_current_time_nanoseconds": 5.0,
     "proxy_get_header_map_pairs": 1.0, "proxy_get_header_map_value": 1.0,
     "proxy_get_shared_data": 0.14, "proxy_increment_metric": 2.0, "proxy_record_metric": 1.0,
     "proxy_replace_header_map_value": 3.0, "proxy_set_property": 1.0,
     "proxy_set_shared_data": 0.06}


def tokens(text):
    return dict(t.split("=", 1) for t in text.split())


class FloorPlan(unittest.TestCase):
    def test_pass_through_is_not_held_and_writes_the_answer_header(self):
        got = tokens(floor.plan(scenarios.scenario("a"), A))
        self.assertEqual(got, {
            "request_headers.get_header_map_pairs": "1",
            "request_headers.get_current_time_nanoseconds": "1",
            "request_headers.replace_header_map_value": "1",
            "response_headers.replace_header_map_value": "1",
        })

    def test_full_pipeline_is_held_with_its_body_work(self):
        got = tokens(floor.plan(scenarios.scenario("g"), G))
        self.assertEqual(got.pop("hold"), "1")
        self.assertEqual(got.pop("request_body.sha256"), "1")  # verified
        self.assertEqual(got.pop("request_body.utf8_copy"), "1")  # masked
        self.assertEqual(got["response_headers.replace_header_map_value"], "2")  # trace id, verified
        self.assertEqual(got["request_body.replace_header_map_value"], "5")
        self.assertEqual(got["request_body.get_shared_data"], "1.14")  # drawn once verified
        self.assertNotIn("define_metric", " ".join(got))
        got = tokens(floor.plan(scenarios.scenario("f"), F))
        self.assertEqual(got["request_headers.get_shared_data"], "0.14")  # unsigned: with the headers
        self.assertNotIn("request_body.sha256", got)
        self.assertNotIn("request_body.utf8_copy", got)
        # (m) masks without a signature, (s) verifies without masking.
        got = tokens(floor.plan(scenarios.scenario("m"), {**F, "proxy_set_buffer_bytes": 1.0}))
        self.assertEqual((got.get("request_body.utf8_copy"), got.get("request_body.sha256")),
                         ("1", None))
        got = tokens(floor.plan(scenarios.scenario("s"), F))
        self.assertEqual((got.get("request_body.utf8_copy"), got.get("request_body.sha256")),
                         (None, "1"))

    def test_every_counted_call_is_made_in_some_phase(self):
        for target, calls in (("a", A), ("f", F), ("g", G)):
            per_call = {}
            for key, n in tokens(floor.plan(scenarios.scenario(target), calls)).items():
                if key not in ("hold", "route"):
                    call = key.split(".", 1)[1]
                    per_call[call] = per_call.get(call, 0) + float(n)
            for name, n in calls.items():
                name = name.removeprefix("proxy_")
                if name != "define_metric":
                    self.assertAlmostEqual(per_call.get(name, 0), n, places=3, msg=(target, name))

    def test_every_call_it_asks_is_one_the_floor_filter_knows(self):
        known = set(re.findall(r'Call::\w+ => "(\w+)"', PLAN_RS.read_text()))
        phases = set(re.findall(r'Phase::\w+ => "(\w+)"', PLAN_RS.read_text()))
        self.assertIn("get_buffer_bytes", known)
        for target, calls in (("a", A), ("g", G), ("d", G)):
            for key in tokens(floor.plan(scenarios.scenario(target), calls)):
                if key in ("hold", "route"):
                    continue
                phase, call = key.split(".", 1)
                self.assertIn(phase, phases, key)
                self.assertIn(call, known, key)

    def test_routed_floors_write_the_route_header_by_the_channels_weights(self):
        self.assertEqual(tokens(floor.plan(scenarios.scenario("f"), F))["route"], "r1:60/r2:35/r3:5")
        self.assertEqual(tokens(floor.plan(scenarios.scenario("g"), G))["route"], "r1:60/r2:35/r3:5")
        self.assertTrue(scenarios.PROXIES["floor-f"].routed and scenarios.PROXIES["floor-g"].routed)
        # (a) is outside the channel, (c) has no routing.
        self.assertNotIn("route", tokens(floor.plan(scenarios.scenario("a"), A)))
        self.assertNotIn("route", tokens(floor.plan(scenarios.scenario("c"), G)))

    def test_an_unknown_host_call_is_refused(self):
        with self.assertRaises(ValueError):
            floor.plan(scenarios.scenario("a"), {**A, "proxy_call_foreign_function": 1.0})

    def test_every_floor_reproduces_a_counted_scenario_with_a_target(self):
        for s in scenarios.SCENARIOS:
            if s.floor_of:
                ours = scenarios.scenario(s.floor_of)
                self.assertTrue(ours.hostcalls and ours.target, s.key)
                self.assertEqual((s.shape, s.baseline), (ours.shape, ours.baseline), s.key)


class Percentile(unittest.TestCase):
    def test_nearest_rank(self):
        values = list(range(1, 101))
        self.assertEqual(load.percentile(values, 50), 50)
        self.assertEqual(load.percentile(values, 99), 99)
        self.assertEqual(load.percentile(values, 99.9), 100)
        self.assertEqual(load.percentile([7], 99), 7)
        self.assertIsNone(load.percentile([], 50))


def fake_run(**kw):
    chosen, _ = scenarios.select(kw.pop("only"))
    args = SimpleNamespace(rate_clients=16, rate_requests=1000, rate_rounds=2, rates="1000,half")
    run = SimpleNamespace(scenarios=chosen, failed={}, floor_plans={}, rate_results={},
                          rate_failed="", results={}, args=args)
    run.scenario = lambda key: next((s for s in chosen if s.key == key), None)
    for k, v in kw.items():
        setattr(run, k, v)
    return run


def row(lines, start):
    return next(line for line in lines if line.startswith(start))


class Tables(unittest.TestCase):
    def test_floor_verdicts(self):
        run = fake_run(only=["noop", "a", "fa", "c", "fc", "g", "fg"])
        med = {"noop": {"cpu_us": 40.0}, "a": {"cpu_us": 41.0}, "fa": {"cpu_us": 40.5},
               "c": {"cpu_us": 60.0}, "fc": {"cpu_us": 44.0},
               "g": {"cpu_us": 70.0}, "fg": {"cpu_us": 55.0}}
        lines = report.floor_section(run, med)
        self.assertIn("| met |", row(lines, "| (a)"))
        # (c): target 1.15 × 40 = 46 µs; floor 44: reachable with ≤ 2.0 µs own compute.
        self.assertIn("reachable if own compute drops from 16.0 to ≤ 2.0 µs", row(lines, "| (c)"))
        # (g): floor 55 > 1.25 × 40 = 50.
        self.assertIn("not reachable: the floor alone is 1.38×", row(lines, "| (g)"))

    def test_a_floor_without_counts_says_why(self):
        run = fake_run(only=["noop", "c", "fc"])
        run.failed["fc"] = "no host-call count of (c): not counted"
        lines = report.floor_section(run, {"noop": {"cpu_us": 40.0}, "c": {"cpu_us": 60.0}})
        self.assertIn("FAILED: no host-call count", row(lines, "| (c)"))

    def test_fixed_rate_added_latency(self):
        run = fake_run(only=["gd", "gs"])
        fast = {"rps": 1000.0, "cpu_us": 50.0, "errors": 0, "lat_us": [500] * 98 + [900, 2000]}
        slow = {"rps": 1000.0, "cpu_us": 90.0, "errors": 0, "lat_us": [800] * 98 + [1500, 2500]}
        run.rate_results = {("gd", 1000): [fast, fast], ("gs", 1000): [slow, slow]}
        lines = report.fixed_rate_section(run, {})
        added = row(lines, "| 1000 | (gs) − (gd)")
        cells = [c.strip() for c in added.split("|")]
        self.assertEqual(cells[3:7], ["+0.30", "+0.60", "+0.50", "+40.0"])  # p50, p99, p99.9, CPU
        self.assertEqual(cells[8], "met")
        run.rate_results[("gs", 1000)] = [{**slow, "lat_us": [800] * 98 + [1950, 2500]}]
        self.assertEqual(row(report.fixed_rate_section(run, {}), "| 1000 | (gs) − (gd)")
                         .split("|")[8].strip(), "not met")  # +1.05 ms
        self.assertIn("| 1000 | 16.0 | (gd) | 1000 | 200 | 0.50 | 0.90 | 2.00 |", "\n".join(lines))

    def test_offered_rates(self):
        run = fake_run(only=["gd", "gs"])
        run.results = {"gd": [{"rps": 28000.0}], "gs": [{"rps": 12046.0}, {"rps": 11294.0},
                                                         {"rps": 12100.0}]}
        self.assertEqual(main.offered_rates(run, ["gd", "gs"]), [1000, 6000])
        run.args.rates = "1000"
        self.assertEqual(main.offered_rates(run, ["gd", "gs"]), [1000])


class Twins(unittest.TestCase):
    def test_each_targeted_scenario_gets_a_twin_on_the_baseline_build(self):
        chosen, proxies = scenarios.select(["noop", "c", "f", "s"])
        got, got_proxies = scenarios.with_twins(chosen, proxies)
        twins = {s.key: s for s in got if s.twin_of}
        self.assertEqual(sorted(twins), ["base-c", "base-f"])  # (s) has no twin
        # Each twin right after ours, so a round runs the two back to back.
        self.assertEqual([s.key for s in got], ["noop", "c", "base-c", "s", "f", "base-f"])
        c = twins["base-c"]
        self.assertEqual((c.twin_of, c.shape, c.proxy), ("c", "1k", "base-guard-sig1k"))
        # The same configuration on the other build; routing stays routed.
        self.assertEqual(got_proxies["base-guard-sig1k"].kind, "baseline")
        self.assertEqual(got_proxies["base-guard-sig1k"].config, proxies["guard-sig1k"].config)
        self.assertTrue(got_proxies["base-guard-routing"].routed)
        # Its probe still checks what the scenario promises to the caller.
        self.assertTrue(c.expect.verified and c.expect.masked and c.expect.forged_status == 401)
        self.assertFalse(c.expect.counters_moved or c.hostcalls or c.target)

    def test_the_twin_table_compares_cpu_in_the_same_run(self):
        chosen, _ = scenarios.with_twins(scenarios.select(["noop", "c"])[0], {})
        run = SimpleNamespace(scenarios=chosen, ctx={"baseline_wasm": "old.wasm, 1 bytes"},
                              scenario=lambda k: next(s for s in chosen if s.key == k),
                              results={"c": [{"cpu_us": 15.0}, {"cpu_us": 18.0}],
                                       "base-c": [{"cpu_us": 20.0}, {"cpu_us": 16.0}]})
        med = {"noop": {"cpu_us": 10.0, "rps": 100.0}, "c": {"cpu_us": 15.0, "rps": 60.0},
               "base-c": {"cpu_us": 20.0, "rps": 50.0}}
        rows = [line for line in report.twins_section(run, med) if line.startswith("| (c)")]
        self.assertEqual(rows, ["| (c) 1 KiB JSON, standard-webhooks verified + masked | 15.0 | 20.0 | "
                                "0.75 | 1.50 | 2.00 | 60 | 50 | 0.75, 1.12 |"])


if __name__ == "__main__":
    unittest.main()
