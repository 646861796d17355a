#!/usr/bin/env python3
"""A tiny Standard Webhooks receiver for trying Raincast's subscriptions.

    python3 scripts/webhook-receiver.py --secret whsec_... [--port 9000]

Listens on 127.0.0.1, checks each delivery's `webhook-signature` (HMAC-SHA256
of `{webhook-id}.{webhook-timestamp}.{body}` keyed with the base64-decoded
part of the secret, as the Standard Webhooks convention says) and that its
timestamp is within 5 minutes, prints the event, and answers 204 (or 401 for
a bad signature, which Raincast then retries). Standard library only.
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

TOLERANCE_S = 300


def verify(key: bytes, headers, body: bytes) -> str:
    """Returns "" when the delivery is authentic, else the reason."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not (msg_id and ts and sigs):
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        if abs(time.time() - int(ts)) > TOLERANCE_S:
            return f"timestamp {ts} is more than {TOLERANCE_S} s off"
    except ValueError:
        return f"timestamp {ts!r} is not a number"
    signed = f"{msg_id}.{ts}.".encode() + body
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    # The header may hold several space-separated signatures ("v1,..." each).
    for sig in sigs.split():
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, want):
            return ""
    return "no matching v1 signature"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--secret", required=True, help="the subscription's whsec_... secret")
    p.add_argument("--port", type=int, default=9000)
    args = p.parse_args()
    if not args.secret.startswith("whsec_"):
        p.error("--secret must start with whsec_")
    key = base64.b64decode(args.secret[len("whsec_"):])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(min(n, 1 << 20))
            problem = verify(key, self.headers, body)
            if problem:
                print(f"REFUSED {self.headers.get('webhook-id')}: {problem}", flush=True)
                self.send_response(401)
            else:
                event = json.loads(body)
                data = event.get("data", {})
                print(f"verified {self.headers.get('webhook-id')}: {event.get('type')}: "
                      f"{data.get('summary', '')}", flush=True)
                print(json.dumps(event, indent=2, ensure_ascii=False), flush=True)
                self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    print(f"listening on http://127.0.0.1:{args.port}/", flush=True)
    HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
