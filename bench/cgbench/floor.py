"""Host-call floors (issue #17): the plan of bench/noop's floor mode for a
scenario, from the host calls per request its `hostcall-count` run made.

The count gives calls per ABI import, not per phase; the phase each call
goes to follows where callback-guard makes it (src/core/request): the
request headers read, a time read and the request counter in the headers
phase; on a signed channel the admission draw (shared data) waits for the
verified body, on an unsigned one it is made with the headers; the body
read and written back once at its end, with the request headers the filter
adds while it holds them, the other counters and the decision record
(`set_property`); `x-callback-trace-id` (and `x-verified-signature` when
verified) and the `:status` read on the response; the duration histogram
and its time read at the end of the stream; other time reads with the
body. Which phase a call is made in changes little: every phase callback
enters the VM anyway, in the no-op too.

Inside a channel (the body was read) the floor holds the request as the
filter does (`hold=1`: headers paused, body buffered) and does the body
work no filter doing the same job can skip, natively measured by
bench/floor: SHA-256 over the body for a verified signature, a UTF-8 check
and a copy for a rewritten (masked) body. On a routed channel, the first
request-header write of the floor is the route header with the channel's
clusters taken in turn by weight (`route=`), so its requests take the same
route, read the cluster from the header and spread over the same clusters
as callback-guard's: Envoy's share of routing is in the floor.

Not reproduced: `define_metric` (once per VM), `log`, `send_local_response`,
`remove_header_map_value`, `continue_stream`, `http_call` (outgoing calls; none of
them is made per request by the scenarios that have a floor).
"""

from .scenarios import PROXIES, Scenario

# ABI import (without `proxy_`) -> phase, for calls always made in one phase.
PHASE = {
    "get_header_map_pairs": "request_headers",
    "get_property": "request_headers",
    "get_buffer_bytes": "request_body",
    "set_buffer_bytes": "request_body",
    "get_header_map_value": "response_headers",
    "record_metric": "log",
}
# Split over phases by plan() below.
SPLIT = ("get_current_time_nanoseconds", "replace_header_map_value", "get_shared_data",
         "set_shared_data", "increment_metric", "set_property")
NOT_REPRODUCED = ("define_metric", "log", "send_local_response", "remove_header_map_value",
                  "continue_stream", "http_call", "set_tick_period_milliseconds")


def plan(target: Scenario, calls: dict) -> str:
    """bench/noop's configuration for the floor of `target`, whose host
    calls per request (ABI import -> calls) are `calls`."""
    calls = {k.removeprefix("proxy_"): v for k, v in calls.items()}
    unknown = set(calls) - set(PHASE) - set(SPLIT) - set(NOT_REPRODUCED)
    if unknown:
        raise ValueError(f"no phase known for host call(s) {sorted(unknown)} (bench/cgbench/floor.py)")
    per = {}  # (phase, call) -> calls per request

    def add(phase, call, n):
        if n > 0.0005:
            per[(phase, call)] = per.get((phase, call), 0) + n

    for call, phase in PHASE.items():
        add(phase, call, calls.get(call, 0))
    held = calls.get("get_buffer_bytes", 0) > 0
    at_end = "request_body" if held else "request_headers"  # where a held request is decided
    # Shared data: the admission draw waits for the signature when there is one.
    draw = "request_body" if held and target.expect.verified else "request_headers"
    for call in ("get_shared_data", "set_shared_data"):
        add(draw, call, calls.get(call, 0))
    add(at_end, "set_property", calls.get("set_property", 0))
    counts = calls.get("increment_metric", 0)
    add("request_headers", "increment_metric", min(counts, 1))
    add(at_end, "increment_metric", counts - min(counts, 1))
    # Header writes: the answer's trace id (and verified scheme), the rest
    # on the request (in the body phase while it is held).
    writes = calls.get("replace_header_map_value", 0)
    answer = min(writes, 1 + (1 if target.expect.verified else 0))
    add("response_headers", "replace_header_map_value", answer)
    add(at_end, "replace_header_map_value", writes - answer)
    # Time: one read in the headers phase, one at the end of the stream
    # when the filter records there, the rest with the body.
    times = calls.get("get_current_time_nanoseconds", 0)
    first = min(times, 1)
    last = min(times - first, 1) if calls.get("record_metric", 0) else 0
    add("request_headers", "get_current_time_nanoseconds", first)
    add("log", "get_current_time_nanoseconds", last)
    add(at_end, "get_current_time_nanoseconds", times - first - last)
    if held:
        if target.expect.verified:
            add("request_body", "sha256", 1)
        if target.expect.masked:
            add("request_body", "utf8_copy", 1)
    tokens = ["hold=1"] if held else []
    route = routing(target)
    if held and route and per.get((at_end, "replace_header_map_value"), 0) >= 1:
        tokens.append("route=" + "/".join(f"{c['name']}:{c['weight']}" for c in route["clusters"]))
    tokens += [f"{phase}.{call}={n:.3f}".rstrip("0").rstrip(".") for (phase, call), n in per.items()]
    return " ".join(tokens)


def routing(target: Scenario):
    """The routing of the channel `target`'s requests go to, if its proxy
    routes by header."""
    proxy = PROXIES[target.proxy]
    if not proxy.routed or not isinstance(proxy.config, dict):
        return None
    return next((ch["routing"] for ch in proxy.config.get("channels", []) if "routing" in ch), None)
