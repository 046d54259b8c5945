"""Bearer tokens mapped to roles, stored as SHA-256 hashes; a rate limit per token.

Roles are ordered: ``viewer < inspector < ops < admin``; an endpoint names the
least role it needs. ``ingest`` is separate (event producers: it grants
nothing else). Tokens come from ``RISKWATCH_API_TOKENS``: comma-separated
``name:role:sha256hex`` entries (``riskwatch hash-token`` prints the hash), so
no plaintext token is kept anywhere on the server. A fourth field limits a viewer's,
inspector's or ops token to regions: ``+``-separated prefixes of the 6-digit region code
(``31``: a province, ``3101``: a city, ``310104``: a district): a district bureau's staff
see their district's entities and alerts only (``riskwatch.api.context.SCOPED_ROUTES``).

>>> reg = TokenRegistry.parse("alice:ops:" + hash_token("t-alice") + ",bob:viewer:" + hash_token("t-bob"))
>>> reg.lookup("t-alice").role, reg.lookup("nope") is None
('ops', True)
>>> allows("ops", "inspector"), allows("viewer", "inspector"), allows("ingest", "viewer")
(True, False, False)
>>> TokenRegistry.parse("x:king:" + "0" * 64)
Traceback (most recent call last):
...
ValueError: RISKWATCH_API_TOKENS entry 1: role 'king' is not one of viewer, inspector, ops, admin, ingest
>>> li = TokenRegistry.parse("li:inspector:" + hash_token("t-li") + ":310104+3102").lookup("t-li")
>>> li.regions, li.sees("310104"), li.sees("310201"), li.sees("310105"), li.sees(None)
(('310104', '3102'), True, True, False, False)
>>> TokenRegistry.parse("x:admin:" + "0" * 64 + ":31")
Traceback (most recent call last):
...
ValueError: RISKWATCH_API_TOKENS entry 1: only viewer, inspector and ops tokens can be limited to regions
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

__all__ = ["ROLES", "Principal", "TokenRegistry", "RateLimiter", "hash_token", "token_entry", "allows"]

ROLES = ("viewer", "inspector", "ops", "admin")
ALL_ROLES = ROLES + ("ingest",)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_entry(name: str, role: str, token: str, regions: str | None = None) -> str:
    """The ``RISKWATCH_API_TOKENS`` entry of a token (its hash, never the token)."""
    return f"{name}:{role}:{hash_token(token)}" + (f":{regions}" if regions else "")


def allows(role: str, needed: str) -> bool:
    if needed == "ingest":
        return role in ("ingest", "admin")
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


SCOPABLE = ("viewer", "inspector", "ops")


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    token_hash: str
    regions: tuple[str, ...] | None = None  # prefixes of the region codes it may see; None: every region

    def sees(self, region: str | None) -> bool:
        """Whether this principal may see an entity of ``region`` (one with no region: only unlimited ones)."""
        return self.regions is None or (bool(region) and region.startswith(self.regions))


class TokenRegistry:
    def __init__(self, principals: list[Principal]) -> None:
        self.by_hash = {p.token_hash: p for p in principals}

    @classmethod
    def parse(cls, spec: str) -> "TokenRegistry":
        out = []
        for i, entry in enumerate([e.strip() for e in spec.split(",") if e.strip()], 1):
            parts = entry.split(":")
            if len(parts) not in (3, 4):
                raise ValueError(f"RISKWATCH_API_TOKENS entry {i}: use name:role:sha256hex[:regions]")
            name, role, h = parts[:3]
            regions = None
            if len(parts) == 4:
                regions = tuple(parts[3].split("+"))
                if role not in SCOPABLE:
                    raise ValueError(f"RISKWATCH_API_TOKENS entry {i}: only viewer, inspector and ops tokens can be "
                                     "limited to regions")
                bad = [r for r in regions if len(r) not in (2, 4, 6) or not r.isascii() or not r.isdigit()]
                if bad:
                    raise ValueError(f"RISKWATCH_API_TOKENS entry {i}: regions are '+'-separated prefixes of a "
                                     f"region code, 2, 4 or 6 digits (31, 3101, 310104); not {bad[0]!r}")
            if role not in ALL_ROLES:
                raise ValueError(f"RISKWATCH_API_TOKENS entry {i}: role {role!r} is not one of {', '.join(ALL_ROLES)}")
            if len(h) != 64 or any(c not in "0123456789abcdef" for c in h.lower()):
                raise ValueError(f"RISKWATCH_API_TOKENS entry {i}: the hash must be 64 hex characters (SHA-256)")
            out.append(Principal(name, role, h.lower(), regions))
        return cls(out)

    def lookup(self, token: str) -> Principal | None:
        h = hash_token(token)
        p = self.by_hash.get(h)
        # constant-time confirmation (the dict lookup is on a hash, not the secret itself)
        return p if p is not None and hmac.compare_digest(p.token_hash, h) else None


class RateLimiter:
    """Token bucket per principal: ``per_minute`` sustained, bursts up to ``burst``.

    >>> rl = RateLimiter(per_minute=60, burst=2)
    >>> [rl.take("a", now=0.0) for _ in range(3)], rl.take("a", now=1.0)
    ([None, None, 1.0], None)
    """

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float | None = None) -> float | None:
        """``None`` when allowed, else seconds until the next request would be."""
        now = time.monotonic() if now is None else now
        tokens, last = self.buckets.get(key, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self.buckets[key] = (tokens - 1, now)
            return None
        self.buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate
