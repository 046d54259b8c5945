"""The Redis view for the API: derived from output events, rebuildable, idempotent.

Keys (prefix ``rw:``):

- ``rw:entity:{id}`` hash: score, tier, ratio, reasons (JSON), updated, cause,
  config_version, name, industry, region;
- ``rw:rank`` and ``rw:rank:region:{r}`` / ``rw:rank:industry:{i}`` /
  ``rw:rank:tier:{t}`` sorted sets of entity id by score ("riskiest");
- ``rw:history:{id}`` sorted set of score/tier changes in decision order (``seq``), bounded;
- ``rw:spotchecks`` sorted set of spot-check (tier) changes by decision time, bounded.

Every write is a set operation keyed by content, so applying the same output
twice leaves the same view.
"""

from __future__ import annotations

from datetime import datetime

import orjson

__all__ = ["ViewWriter", "entity_key", "history_key", "SPOTCHECKS"]

P = "rw:"
SPOTCHECKS = f"{P}spotchecks"
SPOTCHECKS_KEPT = 200_000


def entity_key(eid: str) -> str:
    return f"{P}entity:{eid}"


def history_key(eid: str) -> str:
    return f"{P}history:{eid}"


def _iso(ts) -> str:
    return ts if isinstance(ts, str) else ts.isoformat() if isinstance(ts, datetime) else str(ts)


class ViewWriter:
    """Queue view updates on a redis (asyncio) pipeline."""

    def __init__(self, ratios: dict[str, float], history_len: int = 100) -> None:
        self.ratios = ratios
        self.history_len = history_len

    def entity(self, pipe, ent: dict) -> None:
        pipe.hset(entity_key(ent["entity_id"]), mapping={"name": ent["name"], "industry": ent["industry"],
                                                         "region": ent["region"]})

    def output(self, pipe, o: dict, meta: list | None, current: bool = True) -> None:
        """Apply a risk change; ``current=False`` adds it to the history only (an older one)."""
        if o["type"] == "spotcheck_change":
            self._spotcheck(pipe, o, meta)
            return
        if o["type"] != "risk_change":
            return
        if current:
            self._current(pipe, o, meta)
        self._history(pipe, o)

    def outputs(self, pipe, outs: list[dict], meta_of) -> None:
        """Apply many outputs in order, writing each entity's current state and trimming its
        history once (the last risk change wins, as it would one by one): a worker round
        often holds several changes of one entity. ``meta_of(entity_id)`` gives
        [industry, region] or None."""
        last: dict[str, dict] = {}
        spotchecks = False
        for o in outs:
            kind = o["type"]
            if kind == "risk_change":
                last[o["entity_id"]] = o
                pipe.zadd(history_key(o["entity_id"]), {orjson.dumps(
                    {"ts": _iso(o["ts"]), "score": o["score"], "tier": o["tier"],
                     "cause": o["cause_event_id"]}): o["seq"]})
            elif kind == "spotcheck_change":
                self._spotcheck(pipe, o, meta_of(o["entity_id"]), trim=False)
                spotchecks = True
        for eid, o in last.items():
            self._current(pipe, o, meta_of(eid))
            pipe.zremrangebyrank(history_key(eid), 0, -self.history_len - 1)
        if spotchecks:
            pipe.zremrangebyrank(SPOTCHECKS, 0, -SPOTCHECKS_KEPT - 1)

    def _current(self, pipe, o: dict, meta: list | None) -> None:
        eid, tier, score = o["entity_id"], o["tier"], o["score"]
        mapping = {"score": score, "tier": tier, "ratio": self.ratios.get(tier, 0.0),
                   "reasons": orjson.dumps(o["reasons"]), "updated": _iso(o["ts"]),
                   "cause": o["cause_event_id"], "config_version": o["config_version"]}
        if meta:
            mapping["industry"], mapping["region"] = meta[0], meta[1]
        pipe.hset(entity_key(eid), mapping=mapping)
        pipe.zadd(f"{P}rank", {eid: score})
        for t in self.ratios:
            if t != tier:
                pipe.zrem(f"{P}rank:tier:{t}", eid)
        pipe.zadd(f"{P}rank:tier:{tier}", {eid: score})
        if meta:
            pipe.zadd(f"{P}rank:industry:{meta[0]}", {eid: score})
            pipe.zadd(f"{P}rank:region:{meta[1]}", {eid: score})

    def _spotcheck(self, pipe, o: dict, meta: list | None, trim: bool = True) -> None:
        ts = o["ts"]
        t = ts.timestamp() if isinstance(ts, datetime) else datetime.fromisoformat(str(ts)).timestamp()
        rec = {"entity_id": o["entity_id"], "ts": _iso(ts), "from_tier": o["from_tier"], "to_tier": o["to_tier"],
               "from_ratio": o["from_ratio"], "to_ratio": o["to_ratio"], "score": o["score"],
               "cause": o["cause_event_id"], "region": meta[1] if meta else None,
               "industry": meta[0] if meta else None}
        pipe.zadd(SPOTCHECKS, {orjson.dumps(rec): t})
        if trim:
            pipe.zremrangebyrank(SPOTCHECKS, 0, -SPOTCHECKS_KEPT - 1)

    def _history(self, pipe, o: dict) -> None:
        hk = history_key(o["entity_id"])
        pipe.zadd(hk, {orjson.dumps({"ts": _iso(o["ts"]), "score": o["score"], "tier": o["tier"],
                                     "cause": o["cause_event_id"]}): o["seq"]})
        pipe.zremrangebyrank(hk, 0, -self.history_len - 1)
