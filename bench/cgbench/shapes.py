"""Request shapes: what each scenario sends, and the wrk Lua script per shape."""

import json
from dataclasses import dataclass, field, replace

from .common import BenchError
from .signer import standard_webhooks_headers

CHANNEL_PATH = "/callbacks/bench"
# The identity the Rego scenario's policy reads (wrk presents no client
# certificate, so it comes in a header, as from a trusted front proxy).
SPIFFE_HEADER = "x-bench-spiffe-id"
WEBHOOK_SPIFFE = "spiffe://cluster.local/ns/payments/sa/webhook-processor"


@dataclass(frozen=True)
class Shape:
    name: str
    method: str
    path: str
    headers: dict = field(default_factory=dict)
    body: bytes = b""


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
    if len(body) != size:
        raise BenchError(f"body is {len(body)} bytes, not {size}")
    return body


# Values of json_body that masking must remove from a forwarded body.
PII = (b"alice@example.com", b"+1 415 555 0100", b"4111 1111 1111 1111")


def request_shapes(timestamp):
    """Every shape by name. Signed ones carry a signature over `timestamp`."""
    shapes = {}
    for name, size, items in (("1k", 1024, 3), ("64k", 65536, 430)):
        body = json_body(size, items)
        headers = {"content-type": "application/json",
                   **standard_webhooks_headers(f"msg_bench_{name}", timestamp, body)}
        shapes[name] = Shape(name, "POST", CHANNEL_PATH, headers, body)
    one_k = shapes["1k"]
    shapes["passthrough"] = replace(one_k, name="passthrough", path="/api/orders")
    shapes["empty"] = Shape("empty", "POST", CHANNEL_PATH, {"content-type": "application/json"}, b"{}")
    shapes["1k-high"] = replace(one_k, name="1k-high", headers={
        **one_k.headers, "x-callback-priority": "high", SPIFFE_HEADER: WEBHOOK_SPIFFE})
    return shapes


def write_lua(work, shape):
    """wrk's per-request script for `shape` (the body read from a file)."""
    body_file = work / f"{shape.name}.body"
    body_file.write_bytes(shape.body)
    lines = [f'wrk.method = "{shape.method}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in shape.headers.items()]
    lines += [f'local f = assert(io.open("{body_file}", "rb"))',
              'wrk.body = f:read("*a")',
              "f:close()"]
    path = work / f"{shape.name}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path
