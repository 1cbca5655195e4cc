"""Envoy bootstraps for the bench and the Envoy process.

The bench's one bootstrap builder (JSON, as tests/support/envoy.rs builds
for the e2e tests): listeners on 127.0.0.1 port 0, a dynamic admin port read
back from `--admin-address-path`, `--use-dynamic-base-id`, so a run needs
no free port and can share the host.
"""

import http.client
import json
import shutil
import subprocess
import time
from pathlib import Path

from .common import READY_TIMEOUT_S, BenchError, http_request, proc_cpu_ticks
from .scenarios import ROUTE_CLUSTERS
from .shapes import CHANNEL_PATH

# Label names the filter encodes in stat names (src/core/metrics.rs LABELS).
LABELS = ("channel", "reason", "priority", "decision", "cluster", "result", "op")
STATS_TAGS = [{"tag_name": label, "regex": f"(_{label}=\\.=(.*?);\\.;)"} for label in LABELS]
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
LOOPBACK0 = {"socket_address": {"address": "127.0.0.1", "port_value": 0}}
# A probe request with this header goes to the echo upstream, which answers
# with the body it received: how a probe sees what the proxy forwarded.
ECHO_HEADER = "x-bench-echo"


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


def cluster(name, port):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


def wasm_filter(name, wasm, configuration_json):
    config = {
        "name": name,
        "root_id": name,
        "allow_on_headers_stop_iteration": True,
        "failure_policy": "FAIL_CLOSED",
        "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": str(wasm)}}},
    }
    if configuration_json is not None:
        config["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                   "value": configuration_json}
    return {"name": "envoy.filters.http.wasm",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                             "config": config}}


# The Lua peer (issue #17), written as people write it: count empty
# callbacks (a per-worker global; the count goes out on the 204), and mask
# the fields with string patterns over the buffered body.
LUA_PEER = """
local PREFIX = "%s"
local FIELDS = { "email", "phone", "card_number" }
empty_callbacks = 0

function envoy_on_request(request_handle)
  local path = request_handle:headers():get(":path") or ""
  if path:sub(1, #PREFIX) ~= PREFIX then
    return
  end
  local body = request_handle:body()
  local text = ""
  if body ~= nil and body:length() > 0 then
    text = body:getBytes(0, body:length())
  end
  local trimmed = text:gsub("%%s", "")
  if trimmed == "" or trimmed == "{}" then
    empty_callbacks = empty_callbacks + 1
    request_handle:respond({ [":status"] = "204", ["x-empty-callbacks"] = tostring(empty_callbacks) }, "")
    return
  end
  local masked, total = text, 0
  for _, name in ipairs(FIELDS) do
    local n
    masked, n = masked:gsub('("' .. name .. '"%%s*:%%s*)"[^"]*"', '%%1"[REDACTED]"')
    total = total + n
  end
  if total > 0 then
    body:setBytes(masked)
  end
end
""" % CHANNEL_PATH


def lua_filter():
    return {"name": "envoy.filters.http.lua",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                             "default_source_code": {"inline_string": LUA_PEER}}}


def ext_authz_filter():
    """ext_authz in HTTP service mode: the verifier gets the callback's
    signature headers and its whole body (`with_request_body`)."""
    return {"name": "envoy.filters.http.ext_authz",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                "transport_api_version": "V3",
                "failure_mode_allow": False,
                "with_request_body": {"max_request_bytes": 1048576, "allow_partial_message": False},
                "http_service": {
                    "server_uri": {"uri": "http://127.0.0.1", "cluster": "verifier", "timeout": "1s"},
                    "authorization_request": {"allowed_headers": {"patterns": [
                        {"exact": h} for h in ("webhook-id", "webhook-timestamp", "webhook-signature")]}},
                }}}


def proxy_bootstrap(proxy, wasms, upstream_port, echo_port, verifier_port=None, fleet_port=None):
    """The bootstrap of one proxy Envoy (a scenarios.Proxy)."""
    filters = {
        "plain": [],
        "noop": lambda: [wasm_filter("noop", wasms["noop"], None)],
        "floor": lambda: [wasm_filter("floor", wasms["noop"], proxy.config_json())],
        "guard": lambda: [wasm_filter("callback-guard", wasms["guard"], proxy.config_json())],
        "baseline": lambda: [wasm_filter("callback-guard", wasms["baseline"], proxy.config_json())],
        "lua": lambda: [lua_filter()],
        "ext_authz": lambda: [ext_authz_filter()],
    }[proxy.kind]
    filters = filters() if callable(filters) else filters
    routes = [
        {"match": {"prefix": "/", "headers": [{"name": ECHO_HEADER, "present_match": True}]},
         "route": {"cluster": "echo", "timeout": "10s"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "10s"}},
    ]
    clusters = [cluster("upstream", upstream_port), cluster("echo", echo_port)]
    if proxy.routed:
        routes.insert(1, {"match": {"prefix": CHANNEL_PATH},
                          "route": {"cluster_header": "x-callback-cluster", "timeout": "10s"}})
        clusters += [cluster(c, upstream_port) for c in ROUTE_CLUSTERS]
    if proxy.kind == "ext_authz":
        clusters.append(cluster("verifier", verifier_port))
    if proxy.fleet:
        clusters.append(cluster("fleet-state", fleet_port))
    return bootstrap([listener(routes, filters)], clusters)


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


class Envoy:
    """One Envoy process (`--concurrency 1`), its files under work/<name>."""

    def __init__(self, envoy_bin, work, name, config, cpus):
        self.name = name
        self.dir = work / name
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
                                     start_new_session=True)
        self.admin = None
        self.port = None
        # Other processes whose CPU counts as this proxy's (the ext_authz verifier).
        self.helpers = []

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
        """utime + stime of Envoy and its helper processes."""
        return proc_cpu_ticks(self.proc.pid) + sum(proc_cpu_ticks(p.pid) for p in self.helpers)

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
