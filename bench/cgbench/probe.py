"""The probe: one request per scenario before any load, checked against the
scenario's `expect` (answer, headers, counters, the forwarded body)."""

import base64
import http.client

from .common import BenchError, http_request
from .envoy import ECHO_HEADER
from .shapes import PII

FORGED_SIGNATURE = "v1," + base64.b64encode(bytes(32)).decode()


def probe(scenario, envoy, shape):
    """None when the scenario does what it claims, else why not."""
    try:
        return _probe(scenario, envoy, shape)
    except (OSError, http.client.HTTPException, BenchError) as e:
        return f"probe: {e}"


def _probe(scenario, envoy, shape):
    e = scenario.expect
    status, headers, _ = http_request(envoy.port, shape.method, shape.path, shape.headers,
                                      shape.body, timeout=10)
    if status != e.status:
        return f"answered {status}, expected {e.status}"
    if e.filter_ran and "x-callback-trace-id" not in headers:
        return "no x-callback-trace-id: the filter did not run"
    if e.verified and headers.get("x-verified-signature") != "standard-webhooks":
        return "no x-verified-signature on the answer"
    if e.answer_header and e.answer_header not in headers:
        return f"no {e.answer_header} on the answer"
    for needle in e.stats_set:
        if not envoy.counters(needle):
            return f"no stat matching {needle!r} was set"
    if e.counters_moved or e.counters_zero:
        stats = envoy.counters("callback_")
        total = lambda needle: sum(v for k, v in stats.items() if needle in k)  # noqa: E731
        for needle in e.counters_moved:
            if not total(needle):
                return f"no callback-guard stat matching {needle!r} moved"
        for needle in e.counters_zero:
            if total(needle):
                return f"{needle} moved, it should not have"
    if e.masked:
        status, _, forwarded = http_request(envoy.port, shape.method, shape.path,
                                            {**shape.headers, ECHO_HEADER: "1"}, shape.body,
                                            timeout=10)
        if status != 200:
            return f"the echo probe answered {status}"
        left = [p.decode() for p in PII if p in forwarded]
        if left or len(forwarded) < len(shape.body) // 2:
            return f"the forwarded body was not masked ({left or 'truncated'})"
    if e.forged_status is not None:
        forged = {**shape.headers, "webhook-signature": FORGED_SIGNATURE}
        status, _, _ = http_request(envoy.port, shape.method, shape.path, forged, shape.body,
                                    timeout=10)
        if status != e.forged_status:
            return f"a forged signature was answered {status}, expected {e.forged_status}"
    return None
