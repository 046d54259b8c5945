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

__all__ = ["record", "read", "each", "matches", "entry_id", "AUDIT"]

AUDIT = "rw:audit"


def record(pipe, actor: str, action: str, target: str, detail: dict | None = None) -> None:
    """Queue an audit entry on a pipeline (the caller's transaction)."""
    pipe.xadd(AUDIT, {"e": orjson.dumps({"at": time.time(), "actor": actor, "action": action, "target": target,
                                          "detail": detail or {}})})


PAGE = 500
SCAN = 20_000  # entries read at most for one answer: a rare filter pages on with the cursor
MARGIN_MS = 60_000  # stream ids are Redis's clock, ``at`` the API's: read this much wider, then filter on ``at``


def entry_id(eid: str) -> tuple[int, int]:
    """A stream entry id as a number pair, to order and compare them.

    >>> sorted(["1700000000000-10", "1700000000000-9", "999-0"], key=entry_id)
    ['999-0', '1700000000000-9', '1700000000000-10']
    """
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)


def matches(e: dict, action: str | None = None, actor: str | None = None, target: str | None = None,
            entity_id: str | None = None, since: float | None = None, until: float | None = None) -> bool:
    """Whether an entry passes every filter given: ``action`` is a prefix (``draw.``), ``entity_id`` the
    entry's target or its detail's entity, ``since``/``until`` bound ``at`` (epoch s, inclusive).

    >>> e = {"at": 100.0, "actor": "li", "action": "objection.create", "target": "obj-1",
    ...      "detail": {"entity_id": "E1"}}
    >>> matches(e, action="objection."), matches(e, entity_id="E1"), matches(e, actor="wang"), matches(e, until=99)
    (True, True, False, False)
    """
    return ((action is None or e["action"].startswith(action)) and (actor is None or e["actor"] == actor)
            and (target is None or e["target"] == target)
            and (entity_id is None or entity_id in (e["target"], (e.get("detail") or {}).get("entity_id")))
            and (since is None or e["at"] >= since) and (until is None or e["at"] <= until))


async def each(r):
    """Every entry, oldest first, with its ``id``, read in pages (what derives from the whole log: the
    config history, the draws' scopes)."""
    start = "-"
    while True:
        page = await r.xrange(AUDIT, start, "+", count=PAGE)
        for eid, f in page:
            e = orjson.loads(f[b"e"] if b"e" in f else f["e"])
            e["id"] = eid.decode() if isinstance(eid, bytes) else eid
            yield e
        if len(page) < PAGE:
            return
        start = f"({e['id']}"


async def read(r, count: int = 100, before: str | None = None, **filters) -> tuple[list[dict], str | None]:
    """Newest first, up to ``count`` entries that pass :func:`matches` with ``filters``; ``before`` is the
    cursor (an entry id) returned by the previous page, None when the log holds no more.

    It reads the stream in pages until ``count`` entries match, or :data:`SCAN` were read: the cursor
    then points past the last one read, so the next call goes on from there (an answer may hold fewer
    than ``count`` entries and a cursor). Until 2026-12-07 it read ``count`` entries and filtered them,
    and a page where none matched ended the listing: with 100 newer entries of other actions,
    ``?action=draw.withdraw`` answered no entry and no cursor though withdrawals were logged."""
    since, until = filters.get("since"), filters.get("until")
    hi = f"({before}" if before else "+"
    if until is not None and (before is None or entry_id(before) > (int(until * 1000) + MARGIN_MS, 0)):
        hi = f"{int(until * 1000) + MARGIN_MS}"
    lo = f"{max(0, int(since * 1000) - MARGIN_MS)}" if since is not None else "-"
    out: list[dict] = []
    scanned = 0
    while True:
        page = await r.xrevrange(AUDIT, max=hi, min=lo, count=PAGE)
        for eid, f in page:
            scanned += 1
            e = orjson.loads(f[b"e"] if b"e" in f else f["e"])
            e["id"] = eid.decode() if isinstance(eid, bytes) else eid
            if matches(e, **filters):
                out.append(e)
            if len(out) == count or scanned >= SCAN:
                return out, e["id"]
        if len(page) < PAGE:
            return out, None
        hi = f"({e['id']}"
