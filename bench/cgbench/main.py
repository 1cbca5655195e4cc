"""The run: start the upstream and one proxy Envoy per configuration, probe
every scenario, load them with wrk in alternating rounds, count host calls
with the `hostcall-count` build, and write the report."""

import argparse
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import fleet, floor, hostcalls, load, report, scenarios, system
from .common import READY_TIMEOUT_S, ROOT, BenchError
from .envoy import Envoy, proxy_bootstrap, upstream_bootstrap
from .probe import probe
from .shapes import request_shapes, write_lua
from .upstream import EchoServer, Verifier

QUICK = {"duration": 2, "warmup": 1, "rounds": 1, "hostcall_requests": 50, "rate_requests": 2000,
         "rate_rounds": 1}


def env_int(name, default):
    return int(os.environ.get(name, default))


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/run.py",
                                 description="Envoy benchmark of callback-guard (make bench)")
    ap.add_argument("--envoy", default=str(ROOT / ".venv/bin/envoy"))
    ap.add_argument("--guard-wasm", default=str(ROOT / "target/wasm32-wasip1/release/callback_guard.wasm"))
    ap.add_argument("--count-wasm", default=str(
        ROOT / "target/hostcall-count/wasm32-wasip1/release/callback_guard.wasm"),
        help="the filter built with --features hostcall-count")
    ap.add_argument("--noop-wasm", default=str(ROOT / "target/noop/wasm32-wasip1/release/noop_filter.wasm"))
    ap.add_argument("--baseline-wasm", default=os.environ.get("BENCH_BASELINE_WASM", ""),
                    help="another build of callback_guard.wasm (say, an older commit's) to run "
                         "next to ours on the same scenarios in the same run (BENCH_BASELINE_WASM)")
    ap.add_argument("--baseline-label", default=os.environ.get("BENCH_BASELINE_LABEL", ""),
                    help="what the baseline build is, for the report (BENCH_BASELINE_LABEL), "
                         "say `commit 5306c08`")
    ap.add_argument("--verifier", default=str(ROOT / "target/ext-authz-verifier/release/ext-authz-verifier"))
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
                    help="a few seconds per scenario, one round, report to target/bench/ (BENCH_QUICK=1)")
    ap.add_argument("--duration", type=int, default=env_int("BENCH_DURATION", 5))
    ap.add_argument("--warmup", type=int, default=env_int("BENCH_WARMUP", 2))
    ap.add_argument("--rounds", type=int, default=env_int("BENCH_ROUNDS", 5))
    ap.add_argument("--connections", type=int, default=env_int("BENCH_CONNECTIONS", 16))
    ap.add_argument("--hostcall-requests", type=int, default=env_int("BENCH_HOSTCALL_REQUESTS", 1000))
    ap.add_argument("--rates", default=os.environ.get("BENCH_RATES", "1000,half"),
                    help="offered req/s of the fixed-rate runs (h2load); `half`: 50%% of the "
                         "slowest fixed-rate scenario's wrk throughput in this run")
    ap.add_argument("--rate-requests", type=int, default=env_int("BENCH_RATE_REQUESTS", 10000),
                    help="requests per fixed-rate run")
    ap.add_argument("--rate-rounds", type=int, default=env_int("BENCH_RATE_ROUNDS", 3))
    ap.add_argument("--rate-clients", type=int, default=env_int("BENCH_RATE_CLIENTS", 16),
                    help="h2load connections per fixed-rate run (each at rate/clients req/s)")
    ap.add_argument("--budget", type=int, default=env_int("BENCH_BUDGET_S", 1800),
                    help="seconds; rounds that would not fit are dropped (and said so)")
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""),
                    help="comma-separated scenario keys; default all")
    ap.add_argument("--out", default=os.environ.get("BENCH_OUT", ""),
                    help="report file (default BENCHMARKS.md, target/bench/BENCHMARKS.quick.md with --quick)")
    args = ap.parse_args(argv)
    if args.quick:
        explicit = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
        for k, v in QUICK.items():
            if k not in explicit and f"BENCH_{k.upper()}" not in os.environ:
                setattr(args, k, v)
    work = ROOT / "target" / "bench"
    args.out = Path(args.out) if args.out else (
        work / "BENCHMARKS.quick.md" if args.quick else ROOT / "BENCHMARKS.md")
    return args, work


@dataclass
class Run:
    args: argparse.Namespace
    work: Path
    scenarios: tuple
    proxies: dict
    quick: bool
    ctx: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    elapsed: float = 0.0
    results: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    rounds_done: int = 0
    hostcalls: dict = field(default_factory=dict)
    hostcall_failed: dict = field(default_factory=dict)
    hostcalls_skipped: str = ""
    floor_plans: dict = field(default_factory=dict)
    rate_results: dict = field(default_factory=dict)  # (key, offered rps) -> [h2load runs]
    rate_failed: str = ""
    store: object = None  # fleet.Store of the (gs) proxy, for the store-alone runs
    keep_from: Path = ROOT / "BENCHMARKS.md"

    def scenario(self, key):
        return next((s for s in self.scenarios if s.key == key), None)


def describe(args, work, wasms):
    lock = ROOT / "bench/noop/Cargo.lock"
    pw = re.search(r'name = "proxy-wasm"\nversion = "([^"]+)"', lock.read_text()) if lock.exists() else None
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    make = "make bench BENCH_QUICK=1" if args.quick else "make bench"
    return {
        "machine": system.machine(),
        "envoy_version": system.version([args.envoy, "--version"]).split("version:")[-1].strip(),
        "wrk_version": " ".join(system.version(["wrk", "-v"]).split()[:2]),
        "commit": commit,
        "guard_wasm": f"callback_guard.wasm, {wasms['guard'].stat().st_size} bytes",
        "noop_wasm": f"noop_filter.wasm, {wasms['noop'].stat().st_size} bytes",
        "baseline_wasm": (f"{args.baseline_label or wasms['baseline'].name}, "
                          f"{wasms['baseline'].stat().st_size} bytes") if "baseline" in wasms else None,
        "proxy_wasm": pw.group(1) if pw else "?",
        "load_start": f"{os.getloadavg()[0]:.2f}",
        "command": f"{make}` → `" + " ".join(["python3", "bench/run.py"]
                                             + [shlex.quote(a) for a in sys.argv[1:]]),
    }


def start_proxies(run, proxies, wasms, upstream, echo, cpus, verifier_bin):
    """Starts `proxies` (name -> Proxy); returns (envoys, verifiers, errors)."""
    envoys, verifiers, errors = {}, [], {}
    store = None
    if any(p.fleet for p in proxies.values()):
        store = fleet.Store(run.work)
        verifiers.append(store)
        run.store = store
    for name, proxy in proxies.items():
        verifier = None
        if proxy.kind == "ext_authz":
            verifier = Verifier(verifier_bin, cpus)
            verifiers.append(verifier)
        cfg = proxy_bootstrap(proxy, wasms, upstream.port, echo.port, verifier and verifier.port,
                              store and store.port)
        envoys[name] = Envoy(run.args.envoy, run.work, name, cfg, cpus)
        if verifier:
            envoys[name].helpers.append(verifier)
    deadline = time.monotonic() + READY_TIMEOUT_S
    for name, e in envoys.items():
        why = e.wait_ready(deadline)
        if why:
            errors[name] = why
            print(f"bench: proxy {name} {why}:\n{e.log_tail()}", flush=True)
    return envoys, verifiers, errors


def measure(run, envoys, proxy_errors, shapes, luas, pins, t_start):
    up_cpus, wrk_cpus, proxy_cpus = pins
    active = []
    for s in run.scenarios:
        if s.key in run.failed:
            continue
        if s.proxy in proxy_errors:
            run.failed[s.key] = f"proxy Envoy {proxy_errors[s.proxy]}"
            continue
        why = probe(s, envoys[s.proxy], shapes[s.shape])
        print(f"bench: probe {s.key}: {why or 'ok'}", flush=True)
        if why:
            run.failed[s.key] = why
        else:
            active.append(s)

    def one(s, seconds):
        return load.run_wrk(envoys[s.proxy], shapes[s.shape], luas[s.shape], seconds,
                            run.args.connections, wrk_cpus, proxy_cpus)

    for s in active:
        one(s, run.args.warmup)
    per_round = len(active) * (run.args.duration + 1)
    for r in range(run.args.rounds):
        if time.monotonic() - t_start + per_round > run.args.budget and run.rounds_done >= 1:
            print(f"bench: time budget reached, stopping after {run.rounds_done} round(s)", flush=True)
            break
        order = active[r % len(active):] + active[:r % len(active)] if active else []
        for s in order:
            res = one(s, run.args.duration)
            run.results.setdefault(s.key, []).append(res)
            print(f"bench: round {r + 1} {s.key:8s} {res['rps']:9.0f} req/s "
                  f"{res['cpu_us']:7.1f} µs/req p99 {res['p99']:.2f} ms busy {res['busy']:.2f}"
                  + (f" errors {res['errors']}" if res["errors"] else ""), flush=True)
        run.rounds_done += 1
    for name, e in envoys.items():
        if name not in proxy_errors and e.proc.poll() is None:
            run.memory[name] = e.memory()
    # Routing really spread the load over the three clusters.
    for name in ("guard-routing", "guard-full"):
        e = envoys.get(name)
        if e is None or name in proxy_errors or e.proc.poll() is not None:
            continue
        got = {c: sum(e.counters(f"cluster.{c}.upstream_rq_total").values())
               for c in scenarios.ROUTE_CLUSTERS}
        print(f"bench: {name} upstream requests per cluster: {got}", flush=True)


def offered_rates(run, keys):
    """The fixed rates, ascending: numbers as given, `half` = 50% of the
    slowest of `keys`' median wrk req/s, rounded to 100."""
    rates = set()
    for item in (r.strip() for r in run.args.rates.split(",") if r.strip()):
        if item == "half":
            measured = [statistics.median(x["rps"] for x in run.results[k]) for k in keys
                        if run.results.get(k)]
            if measured:
                rates.add(max(100, round(min(measured) / 2 / 100) * 100))
        else:
            rates.add(int(item))
    return sorted(rates)


def fixed_rate(run, envoys, proxy_errors, shapes, pins):
    """Issue #15: the fixed-rate scenarios loaded by h2load at offered rates
    below saturation, rounds alternating the scenarios like the wrk runs."""
    _, wrk_cpus, proxy_cpus = pins
    keys = [s.key for s in run.scenarios if s.fixed_rate and s.key not in run.failed
            and s.proxy not in proxy_errors and run.results.get(s.key)]
    if not keys:
        return
    if not shutil.which("h2load"):
        run.rate_failed = "h2load not found (make bench-tools installs it)"
        print(f"bench: fixed rate: {run.rate_failed}", flush=True)
        return
    rates = offered_rates(run, keys)
    run.ctx["h2load_version"] = system.version(["h2load", "--version"])
    # The store alone (webdis and Redis, no proxy) at the same rates: how
    # much of (gs) − (gd) is the store's own round trip on this machine.
    targets = {k: (envoys[run.scenario(k).proxy], shapes[run.scenario(k).shape]) for k in keys}
    if run.store is not None and any(scenarios.PROXIES[run.scenario(k).proxy].fleet for k in keys):
        keys = keys + [scenarios.STORE_ALONE]
        targets[scenarios.STORE_ALONE] = (run.store, fleet.dedup_begin_shape())
    for r in range(run.args.rate_rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for rate in rates:
            for key in order:
                target, shape = targets[key]
                try:
                    res = load.run_h2load(target, shape, run.work / f"{shape.name}.body",
                                          rate, run.args.rate_requests, run.args.rate_clients,
                                          run.work, wrk_cpus, proxy_cpus)
                except (OSError, subprocess.TimeoutExpired, BenchError) as e:
                    run.rate_failed = f"{key} at {rate} req/s: {e}"
                    print(f"bench: fixed rate: {run.rate_failed}", flush=True)
                    return
                run.rate_results.setdefault((key, rate), []).append(res)
                lat = res["lat_us"]
                print(f"bench: rate round {r + 1} {key:4s} {rate:6d} req/s offered, "
                      f"{res['rps']:7.0f} achieved, p50 {load.percentile(lat, 50) / 1e3:.2f} ms "
                      f"p99 {load.percentile(lat, 99) / 1e3:.2f} ms, {res['cpu_us']:.1f} µs/req"
                      + (f" errors {res['errors']}" if res["errors"] else ""), flush=True)


def count_hostcalls(run, count_wasm, wasms, upstream, echo, shapes, pins):
    """Host calls per request of the chosen scenarios that have
    `hostcalls`, and of those a chosen floor reproduces."""
    wanted = {s.key for s in run.scenarios if s.hostcalls} | {s.floor_of for s in run.scenarios
                                                               if s.floor_of}
    counted = [s for s in scenarios.SCENARIOS if s.key in wanted and s.key not in run.failed]
    if not counted:
        return
    if not count_wasm.exists():
        run.hostcalls_skipped = f"{count_wasm.relative_to(ROOT)} missing (make bench builds it)"
        print(f"bench: host calls not counted: {run.hostcalls_skipped}", flush=True)
        return
    proxies = {f"count-{p}": scenarios.PROXIES[p] for p in dict.fromkeys(s.proxy for s in counted)}
    envoys, verifiers, errors = start_proxies(run, proxies, {**wasms, "guard": count_wasm},
                                              upstream, echo, pins[2], None)
    try:
        for s in counted:
            name = f"count-{s.proxy}"
            if name in errors:
                run.hostcall_failed[s.key] = f"proxy Envoy {errors[name]}"
                continue
            try:
                calls = hostcalls.per_request(envoys[name], shapes[s.shape],
                                              run.args.hostcall_requests, s.expect.status)
            except (OSError, BenchError) as e:
                run.hostcall_failed[s.key] = str(e)
                print(f"bench: host calls {s.key}: {e}", flush=True)
                continue
            run.hostcalls[s.key] = calls
            print(f"bench: host calls {s.key}: {sum(calls.values()):.2f}/request "
                  + ", ".join(f"{k.removeprefix('proxy_')} {v:.2f}" for k, v in calls.items()),
                  flush=True)
    finally:
        for e in envoys.values():
            e.stop()
        for v in verifiers:
            v.stop()


def plan_floors(run, proxies):
    """Fills in each floor proxy's plan from the host calls its scenario
    made; a floor without counts fails (and its proxy is not started)."""
    for s in run.scenarios:
        if not s.floor_of:
            continue
        target = scenarios.scenario(s.floor_of)
        calls = run.hostcalls.get(target.key)
        if calls is None:
            why = (run.hostcall_failed.get(target.key) or run.hostcalls_skipped
                   or "not counted")
            run.failed[s.key] = f"no host-call count of ({target.key}): {why}"
            proxies.pop(s.proxy, None)
            continue
        try:
            text = floor.plan(target, calls)
        except ValueError as e:
            run.failed[s.key] = str(e)
            proxies.pop(s.proxy, None)
            continue
        proxies[s.proxy] = replace(proxies[s.proxy], config=text)
        run.floor_plans[s.key] = text
        print(f"bench: floor {s.key}: {text}", flush=True)


def main(argv=None):
    args, work = parse_args(sys.argv[1:] if argv is None else argv)
    only = [k for k in args.only.split(",") if k]
    try:
        chosen, proxies = scenarios.select(only)
    except ValueError as e:
        raise BenchError(str(e)) from None
    if args.baseline_wasm:
        chosen, proxies = scenarios.with_twins(chosen, proxies)
    run = Run(args=args, work=work, scenarios=chosen, proxies=proxies, quick=args.quick)
    t_start = time.monotonic()
    if not shutil.which("wrk"):
        raise BenchError("wrk not found (make bench installs it)")
    wasms = {"guard": Path(args.guard_wasm), "noop": Path(args.noop_wasm)}
    if args.baseline_wasm:
        wasms["baseline"] = Path(args.baseline_wasm)
    needed = [Path(args.envoy), *wasms.values()]
    if any(p.kind == "ext_authz" for p in proxies.values()):
        needed.append(Path(args.verifier))
    for p in needed:
        if not p.exists():
            raise BenchError(f"{p} missing (make bench builds it)")
    work.mkdir(parents=True, exist_ok=True)

    up_cpus, wrk_cpus, proxy_cpus, pin_text = system.pinning()
    if wrk_cpus:
        os.sched_setaffinity(0, {int(wrk_cpus)})
    run.ctx = describe(args, work, wasms)
    run.ctx["pinning"] = pin_text
    print(f"bench: {run.ctx['machine']['nproc']} CPUs; {pin_text}", flush=True)

    shapes = request_shapes(int(time.time()))
    luas = {name: write_lua(work, shape) for name, shape in shapes.items()}

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    upstream, echo, envoys, verifiers = None, None, {}, []
    try:
        echo = EchoServer()
        upstream = Envoy(args.envoy, work, "upstream", upstream_bootstrap(), up_cpus)
        why = upstream.wait_ready(time.monotonic() + READY_TIMEOUT_S)
        if why:
            raise BenchError(f"upstream Envoy {why}:\n{upstream.log_tail()}")
        # Host calls first: the floors are configured from them.
        count_hostcalls(run, Path(args.count_wasm), wasms, upstream, echo, shapes,
                        (up_cpus, wrk_cpus, proxy_cpus))
        proxies = dict(proxies)
        plan_floors(run, proxies)
        envoys, verifiers, proxy_errors = start_proxies(run, proxies, wasms, upstream, echo,
                                                        proxy_cpus, Path(args.verifier))
        measure(run, envoys, proxy_errors, shapes, luas, (up_cpus, wrk_cpus, proxy_cpus), t_start)
        fixed_rate(run, envoys, proxy_errors, shapes, (up_cpus, wrk_cpus, proxy_cpus))
    finally:
        for e in envoys.values():
            e.stop()
        for v in verifiers:
            v.stop()
        if upstream:
            upstream.stop()
        if echo:
            echo.stop()

    run.elapsed = time.monotonic() - t_start
    run.ctx["load_end"] = f"{os.getloadavg()[0]:.2f}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report.write(args.out, run)
    print(f"bench: wrote {args.out} in {run.elapsed:.0f} s", flush=True)
    failed = {**run.failed, **run.hostcall_failed}
    if failed:
        print(f"bench: FAILED scenarios: {failed}", file=sys.stderr)
        return 1
    return 0


def entry():
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
