"""Writing back the view of a partition's entities when Redis lost them.

The view is derived, but until 2026-12-07 only ``riskwatch rebuild-view`` put it back: a Redis
restarted without its data, a new Redis, a failover to a replica that had not caught up or a
``FLUSHALL`` left out every entity that nothing changed afterwards (39 of 300 in a test), and the API
answered 404 for them, the riskiest lists and spot-check draws left them out, until ops noticed.

Each worker marks, per input partition it holds, that the view holds that partition's entities
(:data:`PARTS`, a hash: partition -> when it was marked). Every few seconds it reads the marks of
its partitions; for each one without a mark it writes every entity state of the partition back to
the view (register data; score, tier, ratio and time exact; reasons recomputed from the state's
signal cache), through the rounds' script, which never puts an older decision over a newer one,
and then marks it. What it writes has ``seq`` 0 (the decision's own is not kept in the state), so
the same decision read from ``rw.risk-changes`` by a ``rebuild-view`` running meanwhile, with its
exact reasons, cause and config version, replaces it, and it never replaces that one. A partition revoked meanwhile is left unmarked for its new owner. Histories,
the spot-check list and inspection results are not in the states: ``riskwatch rebuild-view`` puts
those back from the topics.
"""

from __future__ import annotations

import asyncio
import time

from ..view import ENTITIES
from ..view_states import current_from_state, register_from_state

__all__ = ["PARTS", "unmarked", "write_back"]

PARTS = "rw:view:parts"
CHUNK = 500  # states written per round trip (the round lock is held meanwhile: ~10 ms)


async def unmarked(r, partitions: list[int]) -> list[int]:
    """Those of ``partitions`` whose entities the view is not known to hold."""
    if not partitions:
        return []
    marks = await r.hmget(PARTS, [str(p) for p in partitions])
    return [p for p, mark in zip(partitions, marks) if mark is None]


async def write_back(r, view, engine_of, store, p: int, lock: asyncio.Lock,
                     timeout: float) -> tuple[int, int] | None:
    """Write every entity state partition ``p`` holds to the view, then mark it; how many entities
    were written and how many of those the view did not hold (at a new view's first check, rounds
    may have written every one already), or None if ``p`` was revoked meanwhile (not marked). ``engine_of()`` gives the engine in force
    (a config change may come between two chunks); ``lock``: the rounds' (the register data is
    written as is, so no round may write an entity between reading its state and writing it)."""
    ids = store.ids(p)
    written = missing = 0
    for i in range(0, len(ids), CHUNK):
        async with lock:
            if p not in store.owned():
                return None
            engine = engine_of()
            current, register, meta = [], [], {}
            for eid in ids[i:i + CHUNK]:
                st = store.current(p, eid)
                if st is None:
                    continue
                m = st.get("m")
                if m:
                    meta[eid] = m[:2]
                reg = register_from_state(eid, st)
                cur = current_from_state(engine, eid, st)
                if reg is not None:
                    register.append(reg)
                if cur is not None:
                    cur["seq"] = 0  # below the decision's own (not kept): rebuild-view's exact one wins
                    current.append(cur)
                if reg is not None or cur is not None:
                    written += 1
            if current or register:
                pipe = r.pipeline(transaction=False)
                eids = list({e["entity_id"] for e in (*current, *register)})
                for eid in eids:  # SMISMEMBER would need Redis 6.2
                    pipe.sismember(ENTITIES, eid)
                await view.queue_round(pipe, current, meta.get, history=False, entities=register)
                async with asyncio.timeout(timeout):
                    held = await pipe.execute()
                missing += len(eids) - sum(1 for x in held[:len(eids)] if x)
        await asyncio.sleep(0)
    async with asyncio.timeout(timeout):
        await r.hset(PARTS, str(p), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return written, missing
