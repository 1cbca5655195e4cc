"""wrk runs (saturation), h2load runs (a fixed offered rate), and the CPU
accounting around each one."""

import re
import subprocess
import time

from .common import CLK_TCK, BenchError

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


def run_wrk(proxy, shape, lua, seconds, connections, wrk_cpus, proxy_cpus):
    """Loads `proxy` (an envoy.Envoy) with `shape` for `seconds`; returns the
    run's req/s, proxy CPU µs per request, busy, other, p50/p99, errors."""
    url = f"http://127.0.0.1:{proxy.port}{shape.path}"
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
           "--latency", "-s", str(lua), url]
    if wrk_cpus:
        cmd = ["taskset", "-c", wrk_cpus] + cmd
    before, core_before = proxy.cpu_ticks(), cpu_busy_ticks(proxy_cpus)
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 20)
    wall = time.monotonic() - t0
    ticks = proxy.cpu_ticks() - before
    core = cpu_busy_ticks(proxy_cpus)
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
    if requests == 0:
        raise BenchError(f"wrk completed no request:\n{text}")
    elapsed_s = to_ms(m.group(2) + m.group(3)) / 1e3
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "rps": requests / elapsed_s,
        "cpu_us": ticks / CLK_TCK * 1e6 / requests,
        "busy": ticks / CLK_TCK / wall,
        "other": other,
        "p50": to_ms(lat["50"]),
        "p99": to_ms(lat["99"]),
        "errors": (int(non2xx.group(1)) if non2xx else 0)
        + (sum(int(x) for x in sock.groups()) if sock else 0),
        "requests": requests,
    }


def percentile(sorted_values, q):
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def run_h2load(proxy, shape, body_file, rate, requests, clients, work, wrk_cpus, proxy_cpus):
    """Offers `rate` req/s of `shape` to `proxy` (an envoy.Envoy) from
    `clients` HTTP/1.1 connections (h2load `--rps` per client, one request
    in flight per connection) until `requests` are done; returns the
    achieved req/s, per-request latencies (µs, ascending, from h2load's
    `--log-file`), proxy CPU µs per request and errors."""
    log = work / "h2load.log"
    log.unlink(missing_ok=True)
    cmd = ["h2load", "--h1", "-c", str(clients), "-m", "1", "--rps", f"{rate / clients:.3f}",
           "-n", str(requests), "--log-file", str(log)]
    headers = dict(shape.headers)
    if shape.body:
        cmd += ["-d", str(body_file)]
        headers.pop("content-length", None)
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(f"http://127.0.0.1:{proxy.port}{shape.path}")
    if wrk_cpus:
        cmd = ["taskset", "-c", wrk_cpus] + cmd
    before = proxy.cpu_ticks()
    out = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=requests / rate * 3 + 30)
    ticks = proxy.cpu_ticks() - before
    text = out.stdout
    if out.returncode != 0:
        raise BenchError(f"h2load failed ({out.returncode}): {out.stderr.strip() or text[-500:]}")
    m = re.search(r"finished in ([\d.]+)(us|ms|s|m), ([\d.]+) req/s", text)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                     r"(\d+) errored, (\d+) timeout", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not m or not done or not codes:
        raise BenchError(f"cannot read h2load output:\n{text[-1500:]}")
    lat = []
    try:
        for line in log.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) >= 3:
                lat.append(int(fields[2]))
    except (OSError, ValueError) as e:
        raise BenchError(f"cannot read h2load's log {log}: {e}") from None
    if not lat:
        raise BenchError(f"h2load logged no request:\n{text[-1500:]}")
    lat.sort()
    return {
        "rps": float(m.group(3)),
        "lat_us": lat,
        "cpu_us": ticks / CLK_TCK * 1e6 / max(1, len(lat)),
        "errors": int(done.group(3)) + int(done.group(4)) + int(done.group(5))
        + int(codes.group(3)) + int(codes.group(4)),
        "requests": len(lat),
    }
