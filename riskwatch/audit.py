"""The audit log: an append-only Redis Stream ``rw:audit`` of who did what, when.

Config changes, silences, acknowledgements and resolutions, objections and
their resolutions, spot-check draws, file imports (``riskwatch import``).
Written in the same transaction as the change it records; never edited or
trimmed by riskwatch. Copied to Kafka (``rw.audit``) and written back from there when Redis
lost it: :mod:`.audit_topic`.
"""

from __future__ import annotations

import time

import orjson

__all__ = ["record", "read", "AUDIT"]

AUDIT = "rw:audit"


def record(pipe, actor: str, action: str, target: str, detail: dict | None = None) -> None:
    """Queue an audit entry on a pipeline (the caller's transaction)."""
    pipe.xadd(AUDIT, {"e": orjson.dumps({"at": time.time(), "actor": actor, "action": action, "target": target,
                                          "detail": detail or {}})})


async def read(r, count: int = 100, before: str | None = None, action: str | None = None) -> tuple[list[dict], str | None]:
    """Newest first; ``before`` is the cursor (an entry id) returned by the previous page."""
    entries = await r.xrevrange(AUDIT, max=f"({before}" if before else "+", min="-", count=count)
    out = []
    for eid, f in entries:
        e = orjson.loads(f[b"e"] if b"e" in f else f["e"])
        e["id"] = eid.decode() if isinstance(eid, bytes) else eid
        if action is None or e["action"].startswith(action):
            out.append(e)
    nxt = out[-1]["id"] if len(entries) == count and out else None
    return out, nxt
