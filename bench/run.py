#!/usr/bin/env python3
"""Envoy benchmark of callback-guard (`make bench`). Standard library only.

One run starts, all on 127.0.0.1 with ephemeral ports:
  * a fast upstream: an Envoy whose only route is a `direct_response` 200;
  * one proxy Envoy (`--concurrency 1`) per configuration: plain (no filter),
    a no-op wasm filter (the control, bench/noop), and callback-guard with one
    plugin configuration per scenario.
Each scenario is first probed with one request whose answer and counters
must show the filter did what the scenario claims (a benchmark of 401s would
look fast). Then wrk (one thread, a Lua script per request shape) loads each
scenario for a warm-up, and for several rounds that alternate the scenarios
(the order rotates each round). Per scenario it reports medians of
requests/s, proxy CPU microseconds per request (utime+stime of the proxy
process from /proc/<pid>/stat over the run / requests), wrk's p50/p99
latency, and the proxies' memory, and writes BENCHMARKS.md.

Signed scenarios use a fresh webhook-timestamp taken when the run starts,
and their channel's tolerance_s is one hour (longer than any run).
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "bench"
OUT = ROOT / "BENCHMARKS.md"

CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 60
ADMIN_TIMEOUT_S = 3

# A fixed Standard Webhooks secret (bench only): whsec_ + base64 of 32 bytes.
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
CHANNEL_PATH = "/callbacks/bench"
TARGETS = {"throughput_min": 0.90, "cpu_max": 1.5}
# Proxy CPU seconds per wall second above which its worker counts as
# saturated by the load alone, so measured req/s ratios are trusted.
SATURATED = 0.85


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- requests


def json_body(size, rows_of_items):
    """A JSON callback of exactly `size` bytes with PII to mask: customer
    email and phone, a card number, and `rows_of_items` line items whose
    strings the detectors scan too."""
    doc = {
        "type": "payment.succeeded",
        "id": "evt_0001",
        "created": 1767225600,
        "customer": {
            "id": "cus_42",
            "name": "Alice Example",
            "email": "alice@example.com",
            "phone": "+1 415 555 0100",
        },
        "payment": {"amount": 4999, "currency": "USD", "card_number": "4111 1111 1111 1111"},
        "items": [
            {
                "sku": f"SKU-{i:05d}",
                "name": f"Widget number {i}",
                "qty": 1 + i % 3,
                "price": "19.99",
                "description": "A sturdy widget for everyday use, shipped in recycled packaging.",
            }
            for i in range(rows_of_items)
        ],
        "note": "",
    }
    base = len(json.dumps(doc, separators=(",", ":")).encode())
    if base > size:
        raise BenchError(f"body template is {base} bytes, more than {size}")
    doc["note"] = "x" * (size - base)
    body = json.dumps(doc, separators=(",", ":")).encode()
    assert len(body) == size, (len(body), size)
    return body


def sign(msg_id, timestamp, body):
    key = base64.b64decode(SECRET[len("whsec_"):])
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def request_shapes(timestamp):
    """Request shapes by name: method, path, headers, body."""
    shapes = {}
    for name, size, items in (("1k", 1024, 3), ("64k", 65536, 430)):
        body = json_body(size, items)
        msg_id = f"msg_bench_{name}"
        shapes[name] = {
            "method": "POST",
            "path": CHANNEL_PATH,
            "headers": {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(msg_id, timestamp, body),
            },
            "body": body,
        }
    shapes["passthrough"] = dict(shapes["1k"], path="/api/orders")
    shapes["empty"] = {
        "method": "POST",
        "path": CHANNEL_PATH,
        "headers": {"content-type": "application/json"},
        "body": b"{}",
    }
    return shapes


def write_lua(name, shape):
    body_file = WORK / f"{name}.body"
    body_file.write_bytes(shape["body"])
    lines = [f'wrk.method = "{shape["method"]}"']
    for k, v in shape["headers"].items():
        lines.append(f'wrk.headers["{k}"] = "{v}"')
    lines.append(f'local f = assert(io.open("{body_file}", "rb"))')
    lines.append("wrk.body = f:read(\"*a\")")
    lines.append("f:close()")
    path = WORK / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- configs

STATS_TAGS = [
    {"tag_name": label, "regex": f"(_{label}=\\.=(.*?);\\.;)"}
    for label in ("channel", "reason", "priority", "decision", "cluster", "scheme")
]
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
LOOPBACK0 = {"socket_address": {"address": "127.0.0.1", "port_value": 0}}


def listener(routes, http_filters):
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": http_filters + [ROUTER],
    }
    return {
        "name": "bench",
        "address": LOOPBACK0,
        "per_connection_buffer_limit_bytes": 1048576,
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm}]}],
    }


def bootstrap(listeners, clusters=()):
    return {
        "admin": {"address": LOOPBACK0},
        "stats_config": {"stats_tags": STATS_TAGS},
        "static_resources": {"listeners": listeners, "clusters": list(clusters)},
    }


def upstream_bootstrap():
    """The fast upstream: `direct_response` 200 "ok". The buffer filter holds
    the request until its body is complete: a direct response sent before
    the body is read makes Envoy close the connection (`connection: close`),
    and the proxy would then open one upstream connection per request."""
    route = {"match": {"prefix": "/"},
             "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}
    buffer = {"name": "envoy.filters.http.buffer",
              "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                               "max_request_bytes": 1048576}}
    return bootstrap([listener([route], [buffer])])


def cluster(name, port):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


def wasm_filter(name, wasm, configuration):
    config = {
        "name": name,
        "root_id": name,
        "allow_on_headers_stop_iteration": True,
        "failure_policy": "FAIL_CLOSED",
        "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": str(wasm)}}},
    }
    if configuration is not None:
        config["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                   "value": json.dumps(configuration)}
    return {"name": "envoy.filters.http.wasm",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                             "config": config}}


ROUTE_CLUSTERS = ["r1", "r2", "r3"]
SIGNATURE = {"scheme": "standard-webhooks", "secrets": [{"value": SECRET}], "tolerance_s": 3600}
MASK = {"fields": ["email", "phone", "payment.card_number"],
        "detectors": ["email", "phone", "card", "cn_id"], "strategy": "redact"}
ADMISSION = {
    # Far above anything one worker can do: it never sheds, it only costs.
    "capacity": {"rps": 1e7, "burst": 1e7},
    "limits": {p: {"rps": 1e7, "burst": 1e7} for p in ("high", "normal", "low")},
}
ROUTING = {"clusters": [{"name": c, "weight": w, "latency_sla_ms": 1000}
                        for c, w in zip(ROUTE_CLUSTERS, (60, 35, 5))]}


def channel(**parts):
    return {"name": "bench", "match": {"path_prefix": CHANNEL_PATH}, **parts}


def plugin(channel_, admission=None):
    cfg = {"channels": [channel_], "routing": {"cluster_header": "x-callback-cluster"}}
    if admission:
        cfg["admission"] = admission
    return cfg


FULL = plugin(channel(signature=SIGNATURE, mask=MASK, routing=ROUTING), ADMISSION)

# Proxy Envoys: name -> (wasm key or None, plugin configuration, routed by header)
PROXIES = {
    "plain": (None, None, False),
    "noop": ("noop", None, False),
    # Outside its channel only the header rules run; admission and routing
    # are there so the request is checked against a realistic policy.
    "guard-pass": ("guard", plugin(channel(routing=ROUTING), ADMISSION), True),
    "guard-empty": ("guard", plugin(channel()), False),
    "guard-sig1k": ("guard", plugin(channel(signature=SIGNATURE, mask=MASK)), False),
    "guard-sig64k": ("guard", plugin(channel(signature=SIGNATURE, mask=MASK)), False),
    "guard-admission": ("guard", plugin(channel(), ADMISSION), False),
    "guard-routing": ("guard", plugin(channel(routing=ROUTING)), True),
    "guard-full": ("guard", FULL, True),
}


def proxy_bootstrap(name, wasms, upstream_port):
    wasm_key, cfg, routed = PROXIES[name]
    filters = [] if wasm_key is None else [
        wasm_filter("callback-guard" if wasm_key == "guard" else "noop", wasms[wasm_key], cfg)]
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "10s"}}]
    clusters = [cluster("upstream", upstream_port)]
    if routed:
        routes.insert(0, {"match": {"prefix": CHANNEL_PATH},
                          "route": {"cluster_header": "x-callback-cluster", "timeout": "10s"}})
        clusters += [cluster(c, upstream_port) for c in ROUTE_CLUSTERS]
    return bootstrap([listener(routes, filters)], clusters)


# ---------------------------------------------------------------- scenarios
# key, label, proxy, request shape, baseline class, needs signature+mask, check

SCENARIOS = [
    ("plain", "plain Envoy, no filter (1 KiB POST)", "plain", "1k", "1k", False),
    ("noop", "no-op wasm filter (1 KiB POST)", "noop", "1k", "1k", False),
    ("a", "(a) pass-through, outside any channel (1 KiB POST)", "guard-pass", "passthrough", "1k", False),
    ("b", "(b) empty callback `{}`, answered 204 by the filter", "guard-empty", "empty", "1k", False),
    ("c", "(c) 1 KiB JSON, standard-webhooks verified + masked", "guard-sig1k", "1k", "1k", True),
    ("e", "(e) admission, limits never shed (1 KiB)", "guard-admission", "1k", "1k", False),
    ("f", "(f) routing over 3 clusters, cluster_header (1 KiB)", "guard-routing", "1k", "1k", False),
    ("g", "(g) full pipeline: verify + mask + admission + routing (1 KiB)", "guard-full", "1k", "1k", True),
    ("plain64", "plain Envoy, no filter (64 KiB POST)", "plain", "64k", "64k", False),
    ("noop64", "no-op wasm filter (64 KiB POST)", "noop", "64k", "64k", False),
    ("d", "(d) 64 KiB JSON, standard-webhooks verified + masked", "guard-sig64k", "64k", "64k", True),
]
BASELINE = {"1k": ("plain", "noop"), "64k": ("plain64", "noop64")}
FULL_PIPELINE = "g"


# ---------------------------------------------------------------- processes


def http_request(port, method, path, headers=None, body=None, timeout=ADMIN_TIMEOUT_S):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class Envoy:
    def __init__(self, envoy_bin, name, config, cpus):
        self.name = name
        self.dir = WORK / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        (self.dir / "envoy.json").write_text(json.dumps(config, indent=1))
        cmd = [str(envoy_bin), "-c", str(self.dir / "envoy.json"), "--use-dynamic-base-id",
               "--concurrency", "1", "--admin-address-path", str(self.dir / "admin.txt"),
               "-l", "warning"]
        if cpus:
            cmd = ["taskset", "-c", cpus] + cmd
        self.log_file = open(self.dir / "envoy.log", "wb")
        # taskset execs envoy: the pid is Envoy's.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log_file,
                                     cwd=ROOT, start_new_session=True)
        self.admin = None
        self.port = None

    def log_tail(self, n=15):
        try:
            lines = (self.dir / "envoy.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def wait_ready(self, deadline):
        """Waits (bounded) for /ready == LIVE; returns None or why it failed."""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"exited with {self.proc.returncode}"
            try:
                if self.admin is None:
                    self.admin = int((self.dir / "admin.txt").read_text().strip().rsplit(":", 1)[1])
                status, _, body = http_request(self.admin, "GET", "/ready")
                if status == 200 and body.strip() == b"LIVE":
                    _, _, body = http_request(self.admin, "GET", "/listeners?format=json")
                    sa = json.loads(body)["listener_statuses"][0]["local_address"]["socket_address"]
                    self.port = sa["port_value"]
                    # CPU and memory are read from /proc/<pid>: the pid must be
                    # Envoy itself (taskset and the PyPI wrapper both exec it).
                    comm = Path(f"/proc/{self.proc.pid}/comm").read_text().strip()
                    if comm != "envoy":
                        return f"pid {self.proc.pid} is {comm!r}, not envoy"
                    return None
            except (OSError, ValueError, IndexError, KeyError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        return f"not ready after {READY_TIMEOUT_S}s"

    def admin_get(self, path):
        status, _, body = http_request(self.admin, "GET", path)
        if status != 200:
            raise BenchError(f"{self.name}: admin {path} answered {status}")
        return body.decode(errors="replace")

    def counters(self, needle):
        """Stats whose name contains `needle`, as {name: value}."""
        out = {}
        for line in self.admin_get("/stats?usedonly&filter=" + needle).splitlines():
            name, _, value = line.rpartition(": ")
            if value.strip().isdigit():
                out[name] = int(value)
        return out

    def cpu_ticks(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): utime is field 14, stime 15.
        return int(fields[11]) + int(fields[12])

    def memory(self):
        mem = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    mem[key] = int(value.split()[0]) * 1024
        try:
            m = json.loads(self.admin_get("/memory"))
            mem["allocated"] = int(m.get("allocated", 0))
        except (BenchError, ValueError, OSError):
            pass
        return mem

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log_file.close()


# ---------------------------------------------------------------- wrk

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def cpu_busy_ticks(cpu):
    """Non-idle ticks of one CPU from /proc/stat (None when not pinned)."""
    if cpu is None:
        return None
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields[0] == f"cpu{cpu}":
                v = [int(x) for x in fields[1:]]
                # user, nice, system, steal: not idle/iowait, and not irq/softirq
                # (loopback packet work for the proxy itself lands there).
                return v[0] + v[1] + v[2] + v[7]
    return None


def run_wrk(args, port, shape_name, lua, cpus, proxy, proxy_cpu):
    url = f"http://127.0.0.1:{port}{SHAPE_PATHS[shape_name]}"
    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "5s",
           "--latency", "-s", str(lua), url]
    if cpus:
        cmd = ["taskset", "-c", cpus] + cmd
    before, core_before = proxy.cpu_ticks(), cpu_busy_ticks(proxy_cpu)
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 20)
    wall = time.monotonic() - t0
    ticks = proxy.cpu_ticks() - before
    core = cpu_busy_ticks(proxy_cpu)
    # Time the proxy's CPU spent on anything but the proxy (other processes
    # on a shared machine): noise, reported so a reader can judge the run.
    other = (max(0, core - core_before - ticks) / CLK_TCK / wall) if core is not None else None
    if out.returncode != 0:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    text = out.stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise BenchError(f"cannot read wrk output:\n{text}")
    requests = int(m.group(1))
    seconds = to_ms(m.group(2) + m.group(3)) / 1e3
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if requests == 0:
        raise BenchError(f"wrk completed no request:\n{text}")
    return {
        "rps": requests / seconds,
        "cpu_us": ticks / CLK_TCK * 1e6 / requests,
        "busy": ticks / CLK_TCK / wall,
        "other": other,
        "p50": to_ms(lat["50"]),
        "p99": to_ms(lat["99"]),
        "errors": (int(non2xx.group(1)) if non2xx else 0)
        + (sum(int(x) for x in sock.groups()) if sock else 0),
        "requests": requests,
    }


SHAPE_PATHS = {}


# ---------------------------------------------------------------- probes


def probe(key, envoy, shape):
    """One request; checks the answer and counters prove the scenario's
    work happened. Returns None, ("skip", why) or ("fail", why)."""
    status, headers, _ = http_request(envoy.port, shape["method"], shape["path"],
                                      shape["headers"], shape["body"], timeout=10)
    stats = envoy.counters("callback_")

    def total(metric):
        return sum(v for k, v in stats.items() if metric in k)

    want = 204 if key == "b" else 200
    if status != want:
        return ("fail", f"answered {status}, expected {want}")
    if key in ("plain", "noop", "plain64", "noop64"):
        return None
    if "x-callback-trace-id" not in headers:
        return ("fail", "no x-callback-trace-id: the filter did not run")
    if key == "a" and total("callback_requests_total"):
        return ("fail", "a pass-through request was counted as a callback")
    if key == "b" and not total("callback_empty_total"):
        return ("fail", "callback_empty_total did not move")
    if key in ("c", "d", "g"):
        if headers.get("x-verified-signature") != "standard-webhooks":
            return ("fail", "no x-verified-signature on the response")
        if not total("callback_masked_fields_total"):
            return ("skip", "masking not built (callback_masked_fields_total stayed 0)")
    if key in ("e", "g") and not total("decision=.=admitted"):
        return ("fail", "callback_admission_total{decision=admitted} did not move")
    if key in ("f", "g") and not total("callback_routed_total"):
        return ("fail", "callback_routed_total did not move")
    return None


# ---------------------------------------------------------------- machine


def machine():
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    return {"nproc": os.cpu_count(), "model": model, "memory": mem,
            "kernel": f"{platform.system()} {platform.release()}"}


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "unknown"


def pinning():
    """(upstream cpus, wrk cpus, proxy cpus, description)."""
    cpus = sorted(os.sched_getaffinity(0))
    if not shutil.which("taskset") or len(cpus) < 2:
        return None, None, None, f"not pinned ({len(cpus)} CPU(s) or no taskset)"
    if len(cpus) == 2:
        load = str(cpus[0])
        return load, load, str(cpus[1]), (
            f"2 CPUs: each proxy Envoy (all its threads) on CPU {cpus[1]}; the upstream Envoy, "
            f"wrk and this driver share CPU {cpus[0]}")
    up, wrk, proxy = str(cpus[-3]), str(cpus[-2]), str(cpus[-1])
    return up, wrk, proxy, (f"upstream Envoy on CPU {up}, wrk and this driver on CPU {wrk}, "
                            f"each proxy Envoy (all its threads) on CPU {proxy}")


# ---------------------------------------------------------------- report


def fmt(x, spec):
    return "–" if x is None else format(x, spec)


def write_report(args, ctx, results, skipped, failed, memory, started, elapsed, rounds_done):
    def median(runs, m):
        values = [r[m] for r in runs if r[m] is not None]
        return statistics.median(values) if values else None

    med = {k: {m: median(runs, m) for m in runs[0]} for k, runs in results.items() if runs}
    lines = ["# Benchmarks", "",
             "Generated by `make bench` (bench/run.py); do not edit by hand, rerun it.", "",
             "Envoy with one worker (`--concurrency 1`) in front of a fast upstream (an Envoy "
             "`direct_response`), loaded by wrk on loopback. Ratios are the headline: absolute "
             "numbers move from machine to machine.", "",
             "## Machine and run", "",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}",
             f"- machine: {ctx['machine']['nproc']} CPUs (`nproc`), {ctx['machine']['model']}, "
             f"{ctx['machine']['memory']} RAM, {ctx['machine']['kernel']}",
             f"- Envoy: `{ctx['envoy_version']}`",
             f"- wrk: `{ctx['wrk_version']}`",
             f"- filter: `{ctx['guard_wasm']}` at commit `{ctx['commit']}`; no-op control "
             f"`{ctx['noop_wasm']}` (bench/noop, proxy-wasm {ctx['proxy_wasm']})",
             f"- command: `make bench` → `{ctx['command']}`",
             f"- load: `wrk -t1 -c{args.connections} -d{args.duration}s --latency` per run, "
             f"{args.warmup}s warm-up per scenario, {rounds_done} round(s) alternating the "
             f"scenarios (order rotated each round); medians over rounds",
             f"- pinning: {ctx['pinning']}",
             "- signed requests: a fresh `webhook-timestamp` taken when the run starts, signature "
             "precomputed by the driver; the channel's `tolerance_s` is 3600",
             f"- load average (1 min) at start / end: {ctx['load_start']} / {ctx['load_end']}",
             f"- wall time of the run (bench/run.py, excluding builds): {elapsed:.0f} s", "",
             "## Results", "",
             "`× plain` and `× no-op` compare with the plain Envoy / no-op filter sending the same "
             "body size (1 KiB rows with the 1 KiB runs, (d) with the 64 KiB runs). CPU is "
             "utime+stime of the whole proxy process per request; `busy` is the proxy's CPU "
             "seconds per wall second (near 1.00 = its one worker saturated; lower = the load "
             "side or a busy machine was the limit); `other` is the CPU time other processes "
             "took on the proxy's CPU per wall second (noise from the rest of the machine). "
             "`cap. × plain` is plain's CPU/request over the scenario's: the throughput ratio of "
             "a saturated single worker, which stays meaningful when `busy` is low because the "
             "machine was shared.", "",
             "| scenario | req/s | × plain | cap. × plain | CPU µs/req | × no-op | p50 ms | p99 ms | busy | other | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, label, *_ in SCENARIOS:
        if key in skipped or key in failed:
            why = f"skipped: {skipped[key]}" if key in skipped else f"FAILED: {failed[key]}"
            lines.append(f"| {label} | {why} | | | | | | | | | |")
            continue
        if key not in med:
            lines.append(f"| {label} | not measured | | | | | | | | | |")
            continue
        r = med[key]
        plain, noop = BASELINE[dict((s[0], s[4]) for s in SCENARIOS)[key]]
        rp = r["rps"] / med[plain]["rps"] if plain in med else None
        cap = med[plain]["cpu_us"] / r["cpu_us"] if plain in med else None
        cn = r["cpu_us"] / med[noop]["cpu_us"] if noop in med else None
        errors = sum(x["errors"] for x in results[key])
        lines.append(f"| {label} | {r['rps']:.0f} | {fmt(rp, '.2f')} | {fmt(cap, '.2f')} | "
                     f"{r['cpu_us']:.1f} | "
                     f"{fmt(cn, '.2f')} | {r['p50']:.2f} | {r['p99']:.2f} | {r['busy']:.2f} | "
                     f"{fmt(r['other'], '.2f')} | {errors} |")
    lines += ["", "Per round, in run order (the spread behind the medians): req/s, CPU µs/req", ""]
    for key, label, *_ in SCENARIOS:
        if results.get(key):
            lines.append(f"- `{key}`: " + ", ".join(f"{x['rps']:.0f}" for x in results[key])
                         + "; " + ", ".join(f"{x['cpu_us']:.1f}" for x in results[key]))
    lines += ["", "## Memory", "",
              "After the run, per proxy Envoy (one worker: the filter runs in two V8 VMs, the "
              "main thread's and the worker's). RSS from `/proc/<pid>/status`; `allocated` is "
              "Envoy's tcmalloc heap from admin `/memory` (V8's heap is outside it).", "",
              "| proxy | RSS MiB | Δ RSS vs plain | peak RSS MiB | Envoy heap MiB |",
              "|---|---:|---:|---:|---:|"]
    plain_rss = memory.get("plain", {}).get("VmRSS")
    for name in PROXIES:
        m = memory.get(name)
        if not m:
            continue
        mib = lambda v: fmt(v / 2**20 if v is not None else None, ".1f")  # noqa: E731
        delta = (m["VmRSS"] - plain_rss) if plain_rss and "VmRSS" in m else None
        lines.append(f"| {name} | {mib(m.get('VmRSS'))} | {mib(delta)} | {mib(m.get('VmHWM'))} | "
                     f"{mib(m.get('allocated'))} |")
    lines += ["", "## Verdict", ""]
    lines += verdict(med, skipped, failed)
    lines += ["", "## Scenarios", "",
              "- plain / no-op: the same requests through a proxy without a filter / with the "
              "no-op wasm filter (bench/noop: an HTTP context that does nothing).",
              f"- (a) callback-guard with a channel at `{CHANNEL_PATH}` plus admission and "
              "routing; the request goes to `/api/orders`, outside the channel: trace header and "
              "anti-spoofing only.",
              "- (b) a channel with defaults; body `{}` → `204` from the filter, never forwarded.",
              "- (c)/(d) a channel with `signature` (standard-webhooks, one secret) and `mask` "
              "(fields email, phone, payment.card_number; detectors email, phone, card, cn_id; "
              "redact); the body carries an email, a phone and a card number, (d) also 430 line "
              "items whose strings the detectors scan.",
              "- (e) a channel plus `admission` with `capacity` and all `limits` at 10⁷ rps: "
              "buckets in shared data are drawn on every request, nothing is shed (no mTLS: "
              "identity absent, priority `normal`).",
              "- (f) a channel with `routing.clusters` r1/r2/r3 (60/35/5), all on the fast "
              "upstream; the route reads `cluster_header: x-callback-cluster`.",
              "- (g) the full pipeline: (c)'s channel plus (e)'s admission and (f)'s routing.",
              "- Every scenario is probed with one request before it is loaded: status, "
              "`x-callback-trace-id`, `x-verified-signature` and the `callback_*` counters must "
              "show the work was done. wrk `errors` counts non-2xx answers and socket errors.",
              ""]
    OUT.write_text("\n".join(lines))


def verdict(med, skipped, failed):
    out = []
    key = FULL_PIPELINE
    if key not in med:
        why = skipped.get(key) or failed.get(key) or "not measured"
        out.append(f"Full pipeline (g) not measured ({why}); the targets cannot be judged on it.")
        candidates = [k for k in ("c", "d", "f", "e", "b", "a") if k in med]
        if candidates:
            out.append("")
            out.append("On the scenarios that ran:")
    else:
        candidates = [key, "c", "d"]
    t_min, c_max = TARGETS["throughput_min"], TARGETS["cpu_max"]
    scen = dict((s[0], s) for s in SCENARIOS)
    if "noop" in med and "plain" in med:
        out.append(f"- For reference, the no-op wasm filter alone: "
                   f"{med['plain']['cpu_us'] / med['noop']['cpu_us']:.2f}× plain from CPU/request, "
                   f"{med['noop']['rps'] / med['plain']['rps']:.2f}× measured req/s.")
    for k in candidates:
        if k not in med:
            continue
        plain, noop = BASELINE[scen[k][4]]
        if plain not in med or noop not in med:
            continue
        measured = med[k]["rps"] / med[plain]["rps"]
        cap = med[plain]["cpu_us"] / med[k]["cpu_us"]
        cn = med[k]["cpu_us"] / med[noop]["cpu_us"]
        busy = min(med[k]["busy"], med[plain]["busy"])
        if busy >= SATURATED:
            rp, how = measured, f"measured req/s (capacity from CPU/request: {cap:.2f}×)"
        else:
            rp, how = cap, (f"from CPU/request, because the proxy did not have its CPU to "
                            f"itself (busy {busy:.2f}); measured req/s gave {measured:.2f}×")
        head = "**Full pipeline (g)**" if k == key else f"({k})" if len(k) == 1 else k
        out.append(
            f"- {head}: throughput {rp:.2f}× plain, {how} — target ≥ {t_min:.2f}: "
            f"**{'PASS' if rp >= t_min else 'FAIL'}**; CPU/request {cn:.2f}× the no-op "
            f"filter — target ≤ {c_max}: **{'PASS' if cn <= c_max else 'FAIL'}**")
    return out


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--envoy", default=str(ROOT / ".venv/bin/envoy"))
    ap.add_argument("--guard-wasm", default=str(ROOT / "target/wasm32-wasip1/release/callback_guard.wasm"))
    ap.add_argument("--noop-wasm", default=str(ROOT / "target/noop/wasm32-wasip1/release/noop_filter.wasm"))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", 5)))
    ap.add_argument("--warmup", type=int, default=int(os.environ.get("BENCH_WARMUP", 2)))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 5)))
    ap.add_argument("--connections", type=int, default=int(os.environ.get("BENCH_CONNECTIONS", 16)))
    ap.add_argument("--budget", type=int, default=int(os.environ.get("BENCH_BUDGET_S", 480)),
                    help="seconds; rounds that would not fit are dropped (and said so)")
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""),
                    help="comma-separated scenario keys (plain,noop,a..g,plain64,noop64); "
                    "default all")
    args = ap.parse_args()
    only = {k for k in args.only.split(",") if k}
    if only - {s[0] for s in SCENARIOS}:
        raise BenchError(f"unknown scenario(s) {sorted(only - {s[0] for s in SCENARIOS})}")
    if only:
        SCENARIOS[:] = [s for s in SCENARIOS if s[0] in only]
        for name in list(PROXIES):
            if name not in {s[2] for s in SCENARIOS}:
                del PROXIES[name]

    started = time.time()
    t_start = time.monotonic()
    for tool in ("wrk",):
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found (make bench installs it)")
    wasms = {"guard": Path(args.guard_wasm), "noop": Path(args.noop_wasm)}
    for p in [Path(args.envoy), *wasms.values()]:
        if not p.exists():
            raise BenchError(f"{p} missing (make bench builds it)")
    WORK.mkdir(parents=True, exist_ok=True)

    up_cpus, wrk_cpus, proxy_cpus, pin_text = pinning()
    if wrk_cpus:
        os.sched_setaffinity(0, {int(wrk_cpus)})

    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    lock = (ROOT / "bench/noop/Cargo.lock").read_text() if (ROOT / "bench/noop/Cargo.lock").exists() else ""
    pw = re.search(r'name = "proxy-wasm"\nversion = "([^"]+)"', lock)
    ctx = {
        "machine": machine(),
        "envoy_version": version([args.envoy, "--version"]).split("version:")[-1].strip(),
        "wrk_version": " ".join(version(["wrk", "-v"]).split()[:2]),
        "commit": commit,
        "guard_wasm": f"callback_guard.wasm, {wasms['guard'].stat().st_size} bytes",
        "noop_wasm": f"noop_filter.wasm, {wasms['noop'].stat().st_size} bytes",
        "proxy_wasm": pw.group(1) if pw else "?",
        "pinning": pin_text,
        "load_start": f"{os.getloadavg()[0]:.2f}",
        "command": " ".join(["python3", "bench/run.py"] + [shlex.quote(a) for a in sys.argv[1:]]),
    }
    print(f"bench: {ctx['machine']['nproc']} CPUs; {pin_text}", flush=True)

    shapes = request_shapes(int(time.time()))
    luas = {}
    for name, shape in shapes.items():
        SHAPE_PATHS[name] = shape["path"]
        luas[name] = write_lua(name, shape)

    envoys = {}
    results = {s[0]: [] for s in SCENARIOS}
    skipped, failed, memory = {}, {}, {}
    rounds_done = 0

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    try:
        upstream = envoys["upstream"] = Envoy(args.envoy, "upstream", upstream_bootstrap(), up_cpus)
        why = upstream.wait_ready(time.monotonic() + READY_TIMEOUT_S)
        if why:
            raise BenchError(f"upstream Envoy {why}:\n{upstream.log_tail()}")
        for name in PROXIES:
            envoys[name] = Envoy(args.envoy, name, proxy_bootstrap(name, wasms, upstream.port),
                                 proxy_cpus)
        deadline = time.monotonic() + READY_TIMEOUT_S
        proxy_error = {}
        for name in PROXIES:
            why = envoys[name].wait_ready(deadline)
            if why:
                proxy_error[name] = why
                print(f"bench: proxy {name} {why}:\n{envoys[name].log_tail()}", flush=True)

        active = []
        for key, label, proxy, shape, _, needs_features in SCENARIOS:
            if proxy in proxy_error:
                log = envoys[proxy].log_tail(40)
                refused = re.search(r"callback-guard: invalid configuration: (.*)", log)
                if needs_features and refused:
                    skipped[key] = f"feature not built (config refused: {refused.group(1).strip()})"
                else:
                    failed[key] = f"proxy Envoy {proxy_error[proxy]}"
                continue
            try:
                verdict_ = probe(key, envoys[proxy], shapes[shape])
            except (OSError, http.client.HTTPException, BenchError) as e:
                verdict_ = ("fail", f"probe: {e}")
            if verdict_ is None:
                active.append(key)
            elif verdict_[0] == "skip" and needs_features:
                skipped[key] = f"feature not built ({verdict_[1]})"
            else:
                failed[key] = verdict_[1]
            print(f"bench: probe {key}: {verdict_ or 'ok'}", flush=True)

        scen = {s[0]: s for s in SCENARIOS}

        def one(key, seconds):
            _, _, proxy, shape, _, _ = scen[key]
            a = argparse.Namespace(**vars(args))
            a.duration = seconds
            return run_wrk(a, envoys[proxy].port, shape, luas[shape], wrk_cpus, envoys[proxy],
                           proxy_cpus)

        for key in active:
            one(key, args.warmup)
        per_round = len(active) * (args.duration + 1)
        for r in range(args.rounds):
            if time.monotonic() - t_start + per_round > args.budget and rounds_done >= 1:
                print(f"bench: time budget reached, stopping after {rounds_done} round(s)", flush=True)
                break
            order = active[r % len(active):] + active[:r % len(active)] if active else []
            for key in order:
                res = one(key, args.duration)
                results[key].append(res)
                print(f"bench: round {r + 1} {key:8s} {res['rps']:9.0f} req/s "
                      f"{res['cpu_us']:7.1f} µs/req p99 {res['p99']:.2f} ms busy {res['busy']:.2f}"
                      + (f" errors {res['errors']}" if res["errors"] else ""), flush=True)
            rounds_done += 1
        for name in PROXIES:
            if name not in proxy_error and envoys[name].proc.poll() is None:
                memory[name] = envoys[name].memory()
        # Routing really spread the load over the three clusters.
        for name in ("guard-routing", "guard-full"):
            e = envoys.get(name)
            if e is None or name in proxy_error or e.proc.poll() is not None:
                continue
            got = {c: sum(v for k, v in e.counters(f"cluster.{c}.upstream_rq_total").items())
                   for c in ROUTE_CLUSTERS}
            print(f"bench: {name} upstream requests per cluster: {got}", flush=True)
    finally:
        for e in envoys.values():
            e.stop()

    elapsed = time.monotonic() - t_start
    ctx["load_end"] = f"{os.getloadavg()[0]:.2f}"
    write_report(args, ctx, results, skipped, failed, memory, started, elapsed, rounds_done)
    print(f"bench: wrote {OUT.relative_to(ROOT)} in {elapsed:.0f} s", flush=True)
    print(OUT.read_text())
    if failed:
        print(f"bench: FAILED scenarios: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
