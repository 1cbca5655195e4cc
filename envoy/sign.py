#!/usr/bin/env python3
"""Send a signed demo callback to `make run` (standard library only).

  python3 envoy/sign.py standard-webhooks whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \\
      http://127.0.0.1:10000/callbacks/payments '{"type":"payment.succeeded"}'
  python3 envoy/sign.py github my-github-secret http://127.0.0.1:10000/callbacks/github '{"zen":"hi"}'

Options: --id ID (delivery id; reuse it to see dedup), --ts SECONDS (timestamp),
--tamper (change the body after signing, to see a 401).
"""
import argparse
import base64
import hashlib
import hmac
import time
import urllib.error
import urllib.request
import uuid


def sign(scheme, secret, body, msg_id, ts):
    if scheme in ("standard-webhooks", "svix"):
        key = base64.b64decode(secret.removeprefix("whsec_"))
        mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        p = "webhook" if scheme == "standard-webhooks" else "svix"
        return {f"{p}-id": msg_id, f"{p}-timestamp": str(ts), f"{p}-signature": "v1," + base64.b64encode(mac).decode()}
    if scheme == "stripe":
        mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        return {"stripe-signature": f"t={ts},v1={mac}"}
    if scheme == "github":
        mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return {"x-hub-signature-256": "sha256=" + mac, "x-github-delivery": msg_id}
    if scheme == "slack":
        mac = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        return {"x-slack-signature": "v0=" + mac, "x-slack-request-timestamp": str(ts)}
    if scheme == "shopify":
        mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        return {"x-shopify-hmac-sha256": base64.b64encode(mac).decode(), "x-shopify-webhook-id": msg_id}
    raise SystemExit(f"unknown scheme {scheme}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scheme")
    ap.add_argument("secret")
    ap.add_argument("url")
    ap.add_argument("body")
    ap.add_argument("--id", default="msg_" + uuid.uuid4().hex[:12])
    ap.add_argument("--ts", type=int, default=int(time.time()))
    ap.add_argument("--tamper", action="store_true")
    a = ap.parse_args()
    body = a.body.encode()
    headers = {"content-type": "application/json", **sign(a.scheme, a.secret, body, a.id, a.ts)}
    if a.tamper:
        body += b" "
    req = urllib.request.Request(a.url, data=body, headers=headers, method="POST")
    try:
        resp = urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        resp = e
    print(f"HTTP {resp.status}")
    for k, v in resp.headers.items():
        if k.lower().startswith("x-") or k.lower() in ("retry-after", "content-type"):
            print(f"{k}: {v}")
    print()
    print(resp.read().decode("utf-8", "replace"))


if __name__ == "__main__":
    main()
