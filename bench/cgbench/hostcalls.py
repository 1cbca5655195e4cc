"""Host calls per request, from the `hostcall-count` build of the filter.

That build counts every call through src/host/abi.rs in Envoy counters
`cg_hostcall.<ABI import>`; a proxy running it gets `requests` requests of
the scenario's shape, one keep-alive connection, and the counters' deltas
are divided by the requests. Calls the filter makes on a timer (`on_tick`)
during those requests are included; configuration-time calls are not.
"""

import http.client

from .common import BenchError

PREFIX = "cg_hostcall."


def counts(envoy):
    return {name.split(PREFIX, 1)[1]: v for name, v in envoy.counters(PREFIX).items()}


def per_request(envoy, shape, requests, want_status):
    """{ABI import: calls per request} for `requests` requests of `shape`."""
    before = counts(envoy)
    conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
    try:
        for _ in range(requests):
            conn.request(shape.method, shape.path, body=shape.body, headers=shape.headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != want_status:
                raise BenchError(f"{envoy.name}: answered {resp.status}, expected {want_status}")
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
    finally:
        conn.close()
    after = counts(envoy)
    if not after:
        raise BenchError(f"{envoy.name}: no {PREFIX}* stats: is this the hostcall-count build?")
    return {name: (v - before.get(name, 0)) / requests for name, v in sorted(after.items())
            if v - before.get(name, 0)}
