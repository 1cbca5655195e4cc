"""Paths, the error type and the loopback HTTP client shared by the modules."""

import http.client
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 60
ADMIN_TIMEOUT_S = 3


class BenchError(Exception):
    pass


def http_request(port, method, path, headers=None, body=None, timeout=ADMIN_TIMEOUT_S):
    """One request on a fresh connection: (status, lower-cased headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def proc_cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15.
    return int(fields[11]) + int(fields[12])
