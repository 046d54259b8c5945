"""A real HTTP webhook receiver for tests: scripted answers, every request recorded."""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from riskwatch.alerts.signing import HEADER, verify

__all__ = ["Receiver"]


class Receiver:
    """``plan``: status codes for the next requests (then ``default``); ``delay``: seconds per answer;
    ``tls``: a server context, for an https receiver."""

    def __init__(self, secret: str = "s3cret", port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.secret = secret
        self.tls = tls
        self.plan: list[int] = []
        self.default = 200
        self.delay = 0.0
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.port = port
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    def start(self) -> "Receiver":
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    status = outer.plan.pop(0) if outer.plan else outer.default
                    delay = outer.delay
                if delay:
                    time.sleep(delay)
                with outer.lock:
                    outer.requests.append({"at": time.time(), "path": self.path, "status": status, "body": body,
                                           "key": self.headers.get("Idempotency-Key"),
                                           "signature": self.headers.get(HEADER)})
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        if self.tls:  # the handshake happens at the first read: a failed one ends that request's thread
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True,
                                                      do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def delivered(self) -> dict[str, dict]:
        """Idempotency key -> the first request the receiver accepted with it (what a deduping receiver keeps)."""
        out: dict[str, dict] = {}
        with self.lock:
            for r in self.requests:
                if 200 <= r["status"] < 300 and r["key"] not in out:
                    out[r["key"]] = r
        return out

    def verified(self, r: dict) -> bool:
        return r["signature"] is not None and verify(r["body"], r["signature"], self.secret)
