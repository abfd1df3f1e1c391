"""A real webhook receiver for the notification tests and benchmark (a process of its own).

    python tests/webhook_receiver.py --port 8099 --secret S --out received.jsonl [--delay 5]

Every POST is checked against ``X-Collabadmin-Signature`` (HMAC-SHA256 of the body with
the secret) and appended to ``--out`` as one JSON line: the delivery id header, whether
the signature verified, the time it arrived, the body. It answers 204 when the signature
verifies, 401 otherwise; ``--delay`` makes it a slow receiver (it waits before answering).
Kill it and start it again on the same port to play a receiver that is down for a while.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def verified(secret: str, body: bytes, header: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ok = verified(args.secret, body, self.headers.get("X-Collabadmin-Signature", ""))
            record = {
                "delivery_id": self.headers.get("X-Collabadmin-Delivery"),
                "verified": ok,
                "received_at": time.time(),
                "body": json.loads(body or b"null"),
            }
            if args.delay:
                time.sleep(args.delay)
            with lock, open(args.out, "a") as out:
                out.write(json.dumps(record) + "\n")
            self.send_response(204 if ok else 401)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
