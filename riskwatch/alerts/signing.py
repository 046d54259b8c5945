"""Webhook signatures: HMAC-SHA256 over ``"{t}." + body``, sent as
``X-Riskwatch-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`` (one ``v1``
per active secret, so receivers keep verifying during a secret rotation).

>>> body = b'{"status":"firing"}'
>>> header = sign(body, ["old", "new"], t=1700000000)
>>> header.count("v1=")
2
>>> verify(body, header, "new", now=1700000010), verify(body + b" ", header, "new", now=1700000010)
(True, False)
>>> verify(body, header, "new", now=1700001000)   # too old: a replay
False
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["sign", "verify", "HEADER"]

HEADER = "X-Riskwatch-Signature"


def _mac(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secrets: list[str], t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    return ",".join([f"t={t}"] + [f"v1={_mac(s, t, body)}" for s in secrets])


def verify(body: bytes, header: str, secret: str, now: float | None = None, tolerance: float = 300) -> bool:
    """What a receiver does: parse, check the timestamp is recent, compare in constant time."""
    try:
        parts = [p.split("=", 1) for p in header.split(",")]
        t = int(next(v for k, v in parts if k == "t"))
        sigs = [v for k, v in parts if k == "v1"]
    except (ValueError, StopIteration):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = _mac(secret, t, body)
    return any(hmac.compare_digest(expected, s) for s in sigs)
