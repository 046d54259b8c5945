"""A webhook receiver for ``riskwatch up --demo``: verifies signatures, dedupes by
``Idempotency-Key``, appends each notification to a JSON-lines file.

It is what a receiving team writes (see the README's verification example),
plus a ``GET /`` that shows how many notifications arrived.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .signing import HEADER, verify

__all__ = ["serve"]


def serve(port: int, secret: str, out_path: str) -> None:
    seen: set[str] = set()
    counts = {"accepted": 0, "duplicates": 0, "bad_signature": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not verify(body, self.headers.get(HEADER, ""), secret):
                counts["bad_signature"] += 1
                self.send_response(401)
            elif self.headers.get("Idempotency-Key") in seen:
                counts["duplicates"] += 1
                self.send_response(200)
            else:
                seen.add(self.headers.get("Idempotency-Key", ""))
                counts["accepted"] += 1
                with open(out_path, "ab") as f:
                    f.write(body + b"\n")
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):  # noqa: N802
            body = json.dumps(counts).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main(argv: list[str] | None = None) -> int:
    port = int((argv or sys.argv[1:])[0])
    serve(port, os.environ["RISKWATCH_DEMO_WEBHOOK_SECRET"], os.environ["RISKWATCH_DEMO_WEBHOOK_OUT"])
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
