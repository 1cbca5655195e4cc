"""The fleet-state store for the bench's `state` scenario: redis-server and
webdis on loopback, as tests/support/redis.rs starts them for the e2e tests
(no password here: the bench measures the round trip, not the ACL)."""

import json
import shutil
import socket
import subprocess
import time
import urllib.parse


from .common import ROOT, BenchError, proc_cpu_ticks
from .shapes import Shape

WEBDIS_CLUSTER = "fleet-state"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Store:
    def __init__(self, work):
        for tool in ("redis-server", "webdis"):
            if not shutil.which(tool):
                raise BenchError(f"{tool} not found (make state-tools installs it)")
        self.dir = work / "fleet-state"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.redis_port, self.port = free_port(), free_port()
        self.procs = [subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        conf = self.dir / "webdis.json"
        conf.write_text(json.dumps({
            "redis_host": "127.0.0.1", "redis_port": self.redis_port,
            "http_host": "127.0.0.1", "http_port": self.port, "threads": 2, "daemonize": False,
            "database": 0, "acl": [{"disabled": ["*"]}, {"enabled": ["EVALSHA", "EVAL", "PING"]}],
            "verbosity": 1, "logfile": str(self.dir / "webdis.log")}))
        self.procs.append(subprocess.Popen(["webdis", str(conf)], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while not self.ping():
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError("webdis/redis did not answer PING within 10 s")
            time.sleep(0.05)

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"GET /PING HTTP/1.1\r\nHost: webdis\r\nConnection: close\r\n\r\n")
                return b"PONG" in s.recv(4096)
        except OSError:
            return False

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()


    def cpu_ticks(self):
        """utime + stime of redis-server and webdis (the store alone)."""
        return sum(proc_cpu_ticks(p.pid) for p in self.procs if p.poll() is None)


def dedup_begin_shape():
    """The store's own part of a (gs) request, without the proxy: webdis's
    `GET /EVAL/<dedup_begin.lua>/1/<key>/<token>/<ms>`, the script the filter
    runs for every dedup check, on one key (every call after the first finds
    it in flight: the same answer path as (gs)'s duplicates). The filter
    sends `EVALSHA`; `EVAL` adds the script text to the path, nothing on the
    round trip."""
    script = (ROOT / "src/core/state/dedup_begin.lua").read_text()
    path = "/EVAL/" + "/".join(urllib.parse.quote(part, safe="") for part in
                               (script, "1", "cg:bench:dedup", "token", "30000"))
    return Shape("store", "GET", path, {"host": "webdis"})
