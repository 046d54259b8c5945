"""Alerts, groups, silences and the audit log in Redis (for the dispatcher and the API).

Keys (prefix ``rw:``):

- ``rw:alert:{id}`` the alert (JSON); ``rw:alert-key:{dedup_key}`` the id of the key's latest alert;
- ``rw:alerts:open`` (zset id → start) and ``rw:alerts:open:{label}:{value}`` for region,
  severity, entity and rule: open alerts by what people filter on;
- ``rw:alerts:history:{entity}`` the entity's alert ids, newest first, bounded;
- ``rw:alerts:due`` (zset id → when) alerts whose cooldown or expiry is pending;
- ``rw:alerts:offsets`` last applied candidate offset per topic-partition (redelivery is skipped);
- ``rw:alerts:notify`` changes people made (API/CLI), for the dispatcher to publish on ``rw.alerts``
  and to route (resolved, or acknowledged after they escalated): ``{"alert", "transition", "route"}``
  (JSON; an alert id alone, from a release before 2026-12-07: routed only);
- ``rw:groups`` (hash) and ``rw:groups:due`` (zset) notification groups;
- ``rw:silences`` (hash id → JSON); ``rw:audit`` (stream, append-only).
"""

from __future__ import annotations

import time
import uuid

import orjson

from .. import audit
from .lifecycle import OPEN, acknowledge, resolve_manually
from .routing import SilenceSpec

__all__ = ["AlertStore", "alert_key", "INDEXED", "SILENCES"]

P = "rw:"
INDEXED = ("region", "severity", "entity", "rule")
SILENCES = f"{P}silences"
CLOSED_TTL = 90 * 86400


def alert_key(aid: str) -> str:
    return f"{P}alert:{aid}"


def _open_index(label: str, value: str) -> str:
    return f"{P}alerts:open:{label}:{value}"


class AlertStore:
    def __init__(self, redis, history_len: int = 50) -> None:
        self.r = redis
        self.history_len = history_len

    # ------------------------------------------------------------ reads
    async def get(self, aid: str) -> dict | None:
        raw = await self.r.get(alert_key(aid))
        return orjson.loads(raw) if raw else None

    async def by_key(self, dedup_key: str) -> dict | None:
        aid = await self.r.get(f"{P}alert-key:{dedup_key}")
        return await self.get(aid.decode() if isinstance(aid, bytes) else aid) if aid else None

    async def many(self, ids: list[str]) -> dict[str, dict]:
        if not ids:
            return {}
        raws = await self.r.mget([alert_key(i) for i in ids])
        return {i: orjson.loads(x) for i, x in zip(ids, raws) if x}

    async def open_ids(self, **filters: str) -> list[str]:
        keys = [_open_index(k, v) for k, v in filters.items() if v is not None and k in INDEXED]
        if not keys:
            ids = await self.r.zrevrange(f"{P}alerts:open", 0, -1)
        elif len(keys) == 1:
            ids = await self.r.smembers(keys[0])
        else:
            ids = await self.r.sinter(keys)
        return sorted((i.decode() if isinstance(i, bytes) else i) for i in ids)

    async def history(self, entity_id: str) -> list[dict]:
        ids = [i.decode() if isinstance(i, bytes) else i
               for i in await self.r.lrange(f"{P}alerts:history:{entity_id}", 0, -1)]
        found = await self.many(ids)
        return [found[i] for i in ids if i in found]

    async def entity_meta(self, entity_ids: set[str]) -> dict[str, dict]:
        pipe = self.r.pipeline(transaction=False)
        order = sorted(entity_ids)
        for e in order:
            pipe.hgetall(f"{P}entity:{e}")
        out = {}
        for e, h in zip(order, await pipe.execute()):
            d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                 for k, v in (h or {}).items()}
            if "reasons" in d:
                d["reasons"] = orjson.loads(d["reasons"])
            if "ratio" in d:
                d["ratio"] = float(d["ratio"])
            out[e] = d
        return out

    # ------------------------------------------------------------ writes (on a pipeline)
    def save(self, pipe, old: dict | None, new: dict, due: float | None | bool = False) -> None:
        """Store ``new``; ``due``: when its lifecycle next needs a tick (``None``: never, ``False``: unchanged)."""
        aid = new["id"]
        pipe.set(alert_key(aid), orjson.dumps(new))
        pipe.set(f"{P}alert-key:{new['key']}", aid)
        vals = {"region": new["labels"].get("region", ""), "severity": new["severity"],
                "entity": new["entity_id"], "rule": new["rule"]}
        if old is not None and old["id"] == aid and old["severity"] != new["severity"]:
            pipe.srem(_open_index("severity", old["severity"]), aid)
        if new["status"] in OPEN:
            pipe.zadd(f"{P}alerts:open", {aid: new["starts_at"]})
            for k, v in vals.items():
                pipe.sadd(_open_index(k, v), aid)
        else:
            pipe.zrem(f"{P}alerts:open", aid)
            for k, v in vals.items():
                pipe.srem(_open_index(k, v), aid)
            pipe.expire(alert_key(aid), CLOSED_TTL)
        if old is None or old["id"] != aid:
            hk = f"{P}alerts:history:{new['entity_id']}"
            pipe.lpush(hk, aid)
            pipe.ltrim(hk, 0, self.history_len - 1)
        if due is False and new["status"] in OPEN:
            pass
        elif due is None or due is False:
            pipe.zrem(f"{P}alerts:due", aid)
        else:
            pipe.zadd(f"{P}alerts:due", {aid: due})

    @staticmethod
    def audit(pipe, actor: str, action: str, target: str, detail: dict | None = None) -> None:
        audit.record(pipe, actor, action, target, detail)

    # ------------------------------------------------------------ people's actions
    async def act(self, aid: str, action: str, actor: str, note: str | None = None) -> tuple[dict | None, str | None]:
        """Acknowledge or resolve an alert (optimistic transaction; audited). Returns (alert, transition)."""
        import redis.exceptions as rex

        fn = {"ack": acknowledge, "resolve": resolve_manually}[action]
        while True:
            async with self.r.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(alert_key(aid))
                    raw = await pipe.get(alert_key(aid))
                    if not raw:
                        return None, None
                    old = orjson.loads(raw)
                    new, transition = fn(old, actor, time.time(), note)
                    if transition is None:
                        return old, None
                    pipe.multi()
                    self.save(pipe, old, new)
                    self.audit(pipe, actor, f"alert.{action}", aid, {"note": note, "key": new["key"],
                                                                     "entity_id": new.get("entity_id")})
                    # for the dispatcher: the change goes on rw.alerts (until 2026-12-07 people's changes did
                    # not), and it is routed when resolved, or acknowledged after it escalated (whoever it
                    # escalated to learns it is taken)
                    route = transition == "resolved" or new.get("escalated_at") is not None
                    pipe.rpush(f"{P}alerts:notify", orjson.dumps({"alert": new, "transition": transition,
                                                                  "route": route}))
                    await pipe.execute()
                    return new, transition
                except rex.WatchError:
                    continue

    async def add_silence(self, spec: SilenceSpec) -> dict:
        sid = uuid.uuid4().hex[:12]
        rec = {"id": sid, **spec.model_dump(), "created_at": time.time()}
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(SILENCES, sid, orjson.dumps(rec))
        self.audit(pipe, spec.author, "silence.create", sid, {"matchers": rec["matchers"], "reason": spec.reason,
                                                              "starts_at": spec.starts_at, "ends_at": spec.ends_at,
                                                              "created_at": rec["created_at"]})
        await pipe.execute()
        return rec

    async def expire_silence(self, sid: str, actor: str) -> dict | None:
        raw = await self.r.hget(SILENCES, sid)
        if not raw:
            return None
        rec = orjson.loads(raw)
        rec["ends_at"] = min(rec["ends_at"], time.time())
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(SILENCES, sid, orjson.dumps(rec))
        self.audit(pipe, actor, "silence.expire", sid, {"ends_at": rec["ends_at"]})
        await pipe.execute()
        return rec

    async def silences(self) -> list[dict]:
        return [orjson.loads(v) for v in (await self.r.hgetall(SILENCES)).values()]

    async def audit_log(self, count: int = 100) -> list[dict]:
        return (await audit.read(self.r, count))[0]
