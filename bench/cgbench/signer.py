"""Standard Webhooks signing for the bench's requests.

There is one Python signer in the repository, envoy/sign.py (the demo's
"sign and send" tool, every scheme the filter verifies); this module loads
its `sign` function instead of carrying a copy. The Rust e2e tests have
their own, written from the providers' documentation and checked against
their published vectors: tests/support/sign.rs.
"""

import base64
import importlib.util

from .common import ROOT

# A fixed Standard Webhooks secret (bench only): whsec_ + base64 of 32 bytes.
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def _load_sign():
    spec = importlib.util.spec_from_file_location("cg_envoy_sign", ROOT / "envoy" / "sign.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sign


_sign = _load_sign()


def standard_webhooks_headers(msg_id, timestamp, body, secret=SECRET):
    """webhook-id / webhook-timestamp / webhook-signature for `body`."""
    return _sign("standard-webhooks", secret, body, msg_id, timestamp)
