"""The API's record of each objection in Redis, and putting back what Redis lost of them.

The API keeps an objection's record (who filed it, why, its resolution) in :data:`KEY`, the open ones
per entity in ``{OPEN}{entity id}`` and all by time in :data:`BY_TIME`; the worker's entity state holds
each open dispute (``x``: target -> [detector, objection id, item, since]) and keeps the item out of
the score until the resolution. Until 2026-12-07 a Redis that came back without its data (restarted
without it, replaced, a failover to a replica behind) lost the records while the states kept the
items out: the objection was in no list, the entity showed nothing disputed, its resolution answered
404, and a new objection to the same item was taken.

Two ways back, both written by :data:`PUT_BACK`, which never replaces a record the API wrote:

- from the states (:func:`open_from_state`, the worker when it writes a partition's view back, and
  ``rebuild-view``): every open dispute the state holds, as an open objection with its id, target and
  since when (states before 2026-12-07 did not keep when: none), ``restored: "state"``; not who filed
  it nor why;
- from ``rw.commands`` (:func:`from_commands`, ``rebuild-view``): each objection and resolution the
  topic still holds, with its reason, note, times and authors (the API sends them as message
  headers), ``restored: "rw.commands"``; it replaces a record restored from a state.

An entity's state reset (``POST /v1/entities/<id>/reset-state``) drops its disputes with the rest of
its state: its open objections are then closed (:func:`closed_by_reset`, status ``closed``), by the
API as it sends the reset, and by :func:`from_commands` from the reset command.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from .engine import TARGET_DETECTOR

__all__ = ["BY_TIME", "CLAIM", "KEY", "OPEN", "OPEN_BY_TIME", "PUT_BACK", "closed_by_reset", "from_commands",
           "index_open", "open_from_state", "put_back", "record"]

KEY = "rw:objections"
OPEN = f"{KEY}:open:"
BY_TIME = f"{KEY}:by-time"
OPEN_BY_TIME = f"{KEY}:open-by-time"  # the open ones, by filing time (0: unknown): what is overdue
OPEN_INDEXED = f"{KEY}:open-indexed"  # set once :data:`OPEN_BY_TIME` holds every open record
CLAIM = f"{KEY}:claim:"  # the API's, while it files or resolves one (an objection id, or entity:target)
_KIND = {det: kind for kind, det in TARGET_DETECTOR.items()}  # the detector holding a dispute -> its kind

# KEYS: record hash, the entity's open set, by-time, open by time; ARGV: objection id, record, created_at (or ""),
# target, status, source. Puts a record back unless the API wrote one (a record restored from a state
# gives way to one from the topic), and an open one only if no other open objection names its target.
PUT_BACK = """
local have = redis.call("HGET", KEYS[1], ARGV[1])
if have then
  if ARGV[6] == "state" or cjson.decode(have)["restored"] ~= "state" then return 0 end
end
if ARGV[5] == "open" then
  for _, id in ipairs(redis.call("SMEMBERS", KEYS[2])) do
    if id ~= ARGV[1] then
      local o = redis.call("HGET", KEYS[1], id)
      if o and cjson.decode(o)["target_id"] == ARGV[4] then return 0 end
    end
  end
  redis.call("SADD", KEYS[2], ARGV[1])
  redis.call("ZADD", KEYS[4], tonumber(ARGV[3]) or 0, ARGV[1])
else
  redis.call("SREM", KEYS[2], ARGV[1])
  redis.call("ZREM", KEYS[4], ARGV[1])
end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= "" then
  redis.call("ZADD", KEYS[3], ARGV[3], ARGV[1])
else
  redis.call("ZADD", KEYS[3], "NX", 0, ARGV[1])
end
return 1
"""


async def index_open(r) -> None:
    """Index the open objections by filing time once (:data:`OPEN_BY_TIME`, since 2026-12-07; every write
    keeps it since). A transaction that watches the records, so one resolved meanwhile is not indexed."""
    import redis.exceptions as rex

    if await r.exists(OPEN_INDEXED):
        return
    while True:
        async with r.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(KEY)
                recs = [orjson.loads(v) for v in (await pipe.hgetall(KEY)).values()]
                pipe.multi()
                opened = {o["objection_id"]: o.get("created_at") or 0 for o in recs if o.get("status") == "open"}
                if opened:
                    pipe.zadd(OPEN_BY_TIME, opened)
                pipe.set(OPEN_INDEXED, 1)
                await pipe.execute()
                return
            except rex.WatchError:
                continue


def record(objection_id: str, entity_id: str, target_id: str, target_kind: str, *, reason: str | None = None,
           created_at: float | None = None, created_by: str | None = None, restored: str | None = None) -> dict:
    """An open objection's record, as the API writes it (``restored``: where it was put back from)."""
    rec = {"objection_id": objection_id, "entity_id": entity_id, "target_id": target_id,
           "target_kind": target_kind, "reason": reason, "status": "open", "created_at": created_at,
           "created_by": created_by, "resolution": None, "resolved_at": None, "resolved_by": None, "note": None}
    if restored:
        rec["restored"] = restored
    return rec


def open_from_state(entity_id: str, st: dict) -> list[dict]:
    """The open objections an entity's state holds, as records restored from it.

    >>> [(o["objection_id"], o["target_kind"], o["created_at"]) for o in open_from_state("E1", {"x": {
    ...     "c1": ["complaints", "obj-1", None, 1.5e9], "r1": ["records", "obj-2", {"k": 1}]}})]
    [('obj-1', 'complaint', 1500000000.0), ('obj-2', 'record', None)]
    """
    x = st.get("x")
    if not isinstance(x, dict):
        return []
    return [record(entry[1], entity_id, target, _KIND.get(entry[0], str(entry[0])),
                   created_at=entry[3] if len(entry) > 3 and isinstance(entry[3], (int, float)) else None,
                   restored="state")
            for target, entry in x.items() if isinstance(entry, list) and len(entry) > 2 and isinstance(entry[1], str)]


def closed_by_reset(rec: dict, reset_id: str, author: str | None, at: float | None, reason: str) -> dict:
    """An open objection closed by a reset of its entity's state: moot, as the state no longer holds
    the item (nor anything before the reset); no resolution goes to the worker."""
    return {**rec, "status": "closed", "resolution": None, "resolved_at": at, "resolved_by": author,
            "note": f"closed by {reset_id}: the entity's state was reset ({reason}), and its disputes with it"}


def _epoch(ts: str) -> float | None:
    try:
        return datetime.fromisoformat(ts).timestamp()
    except (TypeError, ValueError):
        return None


def from_commands(commands) -> list[dict]:
    """Records of the objections in ``commands`` (``(event, author)`` in topic order, any commands),
    each with its resolution when one follows; a resolution whose objection is not among them is
    left out (its record, if Redis kept one, is the API's).

    >>> recs = from_commands([({"type": "objection", "objection_id": "o1", "entity_id": "E1", "target_id": "c1",
    ...     "target_kind": "complaint", "reason": "not us", "ts": "2026-12-07T08:00:00+00:00"}, "li"),
    ...     ({"type": "tick"}, None), ({"type": "objection_resolution", "objection_id": "o1", "resolution": "revoked",
    ...     "note": "dup", "ts": "2026-12-07T09:00:00+00:00"}, "wang")])
    >>> [(r["status"], r["created_by"], r["resolution"], r["resolved_by"], r["note"]) for r in recs]
    [('resolved', 'li', 'revoked', 'wang', 'dup')]
    >>> recs = from_commands([(dict(recs[0], type="objection", objection_id="o2"), "li"), ({"type": "state_reset",
    ...     "entity_id": "E1", "reset_id": "reset-1", "author": "zhao", "reason": "bad release"}, None)])
    >>> [(r["objection_id"], r["status"], r["resolved_by"]) for r in recs]
    [('o2', 'closed', 'zhao')]
    """
    out: dict[str, dict] = {}
    for ev, author in commands:
        kind, oid = ev.get("type"), ev.get("objection_id")
        if kind == "state_reset":
            for k, rec in out.items():
                if rec["entity_id"] == ev.get("entity_id") and rec["status"] == "open":
                    out[k] = closed_by_reset(rec, str(ev.get("reset_id")), ev.get("author"), _epoch(ev.get("ts")),
                                             str(ev.get("reason", "")))
        elif kind == "objection" and oid not in out:
            out[oid] = record(oid, ev["entity_id"], ev["target_id"], ev["target_kind"], reason=ev.get("reason", ""),
                              created_at=_epoch(ev.get("ts")), created_by=author, restored="rw.commands")
        elif kind == "objection_resolution" and oid in out and out[oid]["status"] == "open":
            out[oid].update(status="resolved", resolution=ev.get("resolution"), resolved_at=_epoch(ev.get("ts")),
                            resolved_by=author, note=ev.get("note", ""))
    return list(out.values())


async def put_back(pipe, script, rec: dict) -> None:
    """Queue :data:`PUT_BACK` of ``rec`` on a redis.asyncio pipeline (``script``: it registered on the
    pipeline's client; a script call is queued when awaited)."""
    src = rec.get("restored") or ""
    await script(keys=[KEY, OPEN + rec["entity_id"], BY_TIME, OPEN_BY_TIME],
           args=[rec["objection_id"], orjson.dumps(rec), "" if rec["created_at"] is None else rec["created_at"],
                 rec["target_id"], rec["status"], src], client=pipe)
