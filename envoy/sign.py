#!/usr/bin/env python3
"""Sign a callback the way a provider would and send it (standard library only).

Signs BODY with SECRET for SCHEME, POSTs it to URL and prints the answer:
the status line, the x-* / content-type / retry-after headers, and the body.

  python3 envoy/sign.py standard-webhooks whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \\
      http://127.0.0.1:10000/callbacks/payments '{"type":"payment.succeeded"}'
  python3 envoy/sign.py github demo-github-secret http://127.0.0.1:10000/callbacks/github '{"zen":"hi"}'
  python3 envoy/sign.py hmac my-secret http://127.0.0.1:10000/callbacks/orders '{}' \\
      --header x-signature --algorithm sha512 --encoding base64 --prefix sha512=

Schemes (as in a channel's signature.scheme):
  standard-webhooks, svix  SECRET is whsec_<base64>; webhook-/svix-id, -timestamp, -signature v1,
  stripe                   stripe-signature t=TS,v1=HEX
  github                   x-hub-signature-256 sha256=HEX, x-github-delivery ID
  slack                    x-slack-signature v0=HEX, x-slack-request-timestamp TS
  shopify                  x-shopify-hmac-sha256 BASE64, x-shopify-webhook-id ID
  hmac                     the channel's own header/algorithm/encoding/prefix (--header is required)

Exit status: 0 when an answer came back (whatever its status), 1 when nothing answered.
"""
import argparse
import base64
import hashlib
import hmac
import sys
import time
import urllib.error
import urllib.request
import uuid

SCHEMES = ("standard-webhooks", "svix", "stripe", "github", "slack", "shopify", "hmac")


def sign(scheme, secret, body, msg_id, ts, generic=None):
    if scheme in ("standard-webhooks", "svix"):
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            raise SystemExit(f"sign.py: a {scheme} secret is whsec_ followed by base64")
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
    if scheme == "hmac":
        if not generic.header:
            raise SystemExit("sign.py: scheme hmac needs --header (the channel's signature.header)")
        mac = hmac.new(secret.encode(), body, getattr(hashlib, generic.algorithm)).digest()
        text = mac.hex() if generic.encoding == "hex" else base64.b64encode(mac).decode()
        headers = {generic.header: (generic.prefix or "") + text}
        if generic.id_header:
            headers[generic.id_header] = msg_id
        return headers
    raise SystemExit(f"sign.py: unknown scheme {scheme!r} (one of {', '.join(SCHEMES)})")


def main():
    ap = argparse.ArgumentParser(
        prog="sign.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("scheme", choices=SCHEMES, metavar="SCHEME", help="signature scheme (see above)")
    ap.add_argument("secret", metavar="SECRET", help="the channel's secret")
    ap.add_argument("url", metavar="URL", help="where to POST, e.g. http://127.0.0.1:10000/callbacks/payments")
    ap.add_argument("body", metavar="BODY", help="the body, sent as application/json")
    ap.add_argument("--id", default="msg_" + uuid.uuid4().hex[:12], help="delivery id (reuse it to see dedup)")
    ap.add_argument("--ts", type=int, default=int(time.time()), help="timestamp in seconds (default: now)")
    ap.add_argument("--tamper", action="store_true", help="change the body after signing (to see a 401)")
    ap.add_argument("--unsigned", action="store_true", help="send without the signature headers (to see a 401)")
    g = ap.add_argument_group("scheme hmac (the channel's signature settings)")
    g.add_argument("--header", help="header carrying the signature (signature.header)")
    g.add_argument("--algorithm", default="sha256", choices=("sha256", "sha512", "sha1"))
    g.add_argument("--encoding", default="hex", choices=("hex", "base64"))
    g.add_argument("--prefix", default="", help="text before the signature, e.g. sha256=")
    g.add_argument("--id-header", help="also send --id in this header (dedup.id_header)")
    a = ap.parse_args()
    body = a.body.encode()
    headers = {"content-type": "application/json"}
    if not a.unsigned:
        headers.update(sign(a.scheme, a.secret, body, a.id, a.ts, a))
    if a.tamper:
        body += b" "
    req = urllib.request.Request(a.url, data=body, headers=headers, method="POST")
    try:
        resp = urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        resp = e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        reason = getattr(reason, "strerror", None) or reason
        print(f"sign.py: no answer from {a.url}: {reason} (is `make run` running?)", file=sys.stderr)
        sys.exit(1)
    print(f"HTTP {resp.status}")
    for k, v in resp.headers.items():
        if k.lower().startswith("x-") or k.lower() in ("retry-after", "content-type"):
            print(f"{k}: {v}")
    print()
    print(resp.read().decode("utf-8", "replace"))


if __name__ == "__main__":
    main()
