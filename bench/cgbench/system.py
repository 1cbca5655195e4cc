"""The machine a run is on, tool versions, and CPU pinning."""

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path


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
            f"2 CPUs: each proxy Envoy (all its threads, and the ext_authz verifier) on CPU "
            f"{cpus[1]}; the upstream Envoy, wrk and this driver share CPU {cpus[0]}")
    up, wrk, proxy = str(cpus[-3]), str(cpus[-2]), str(cpus[-1])
    return up, wrk, proxy, (f"upstream Envoy on CPU {up}, wrk and this driver on CPU {wrk}, "
                            f"each proxy Envoy (all its threads, and the ext_authz verifier) "
                            f"on CPU {proxy}")
