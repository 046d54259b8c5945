"""Writing back the view of a partition's entities when Redis lost them.

The view is derived, but until 2026-12-07 only ``riskwatch rebuild-view`` put it back: a Redis
restarted without its data, a new Redis, a failover to a replica that had not caught up or a
``FLUSHALL`` left out every entity that nothing changed afterwards (39 of 300 in a test), and the API
answered 404 for them, the riskiest lists and spot-check draws left them out, until ops noticed.

Tokens in :data:`PARTS` (a hash: partition -> token) say whether Redis still holds every view write
a worker made for a partition. A worker keeps the last token it set per partition it holds. Each
round's view write sets a new token for each partition it wrote, in the same script call, and only
over the token that worker last set there: Redis without it (lost since) keeps what it has. Every
few seconds, between rounds, the worker reads the tokens of its partitions:

- its own last token: nothing lost;
- another token, or none, where it had set one: Redis lost writes since (restarted without its
  data, replaced, or a failover to a replica that had not caught up);
- none, where it had set none (a new view, or lost before this worker held the partition): it
  writes the partition back too (at a new view: entities the rounds wrote already, cheap);
- another worker's (or an earlier run's) where it had set none: a partition taken over; that
  token becomes its own to write over.

To write a partition back it writes every entity state the partition holds (register data; score,
tier, ratio and time exact; reasons recomputed from the state's signal cache) through the rounds'
script, which never puts an older decision over a newer one, then a new token. A partition revoked
meanwhile is left to its new owner. What is written back has ``seq`` 0 (the decision's own is not
kept in the state), so the same decision read from ``rw.risk-changes`` by a ``rebuild-view`` running
meanwhile, with its exact reasons, cause and config version, replaces it, and is never replaced by
it. The open objections the states hold come back too, where Redis lost their records
(:mod:`riskwatch.objection_records`). Histories, the spot-check list, inspection results and who
filed an objection and why are not in the states: the worker sets ``rw:view:lost``, and an API puts
those back from the topics as ``riskwatch rebuild-view --no-flush`` does (:mod:`riskwatch.view_rebuild`).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid

from ..objection_records import PUT_BACK, open_from_state, put_back
from ..view import ENTITIES
from ..view_states import current_from_state, register_from_state

__all__ = ["PARTS", "Marks", "lost", "write_back"]

PARTS = "rw:view:parts"
CHUNK = 500  # states written per round trip (the round lock is held meanwhile: ~10 ms)


class Marks:
    """The last token this worker set per partition; tokens unique to this process."""

    def __init__(self) -> None:
        self.mine: dict[int, str] = {}
        self._id = uuid.uuid4().hex[:12]
        self._n = itertools.count(1)

    def token(self) -> str:
        return f"{self._id}:{next(self._n)}"

    def round(self, partitions) -> tuple[str, dict[int, tuple[str, str]]]:
        """A round's token, and for each of ``partitions`` where this worker set one: (new, last)."""
        token = self.token()
        return token, {p: (token, self.mine[p]) for p in partitions if p in self.mine}

    def set(self, partitions, token: str) -> None:
        for p in partitions:
            self.mine[p] = token

    def forget(self, partitions) -> None:
        """Partitions revoked: another worker writes them now."""
        for p in partitions:
            self.mine.pop(p, None)


async def lost(r, partitions: list[int], marks: Marks) -> dict[int, bool]:
    """Those of ``partitions`` to write back: partition -> whether this worker had set its token (Redis
    lost its writes) or not (none there). Takes another's token over where this worker set none. Read
    between rounds (under the round lock): a round's write and its token in ``marks`` go together."""
    if not partitions:
        return {}
    out = {}
    for p, held in zip(partitions, await r.hmget(PARTS, [str(p) for p in partitions])):
        held = held.decode() if held is not None else None
        if p in marks.mine:
            if held != marks.mine[p]:
                out[p] = True
        elif held is None:
            out[p] = False
        else:
            marks.mine[p] = held
    return out


async def write_back(r, view, engine_of, store, p: int, lock: asyncio.Lock, timeout: float,
                     marks: Marks) -> tuple[int, int, int] | None:
    """Write every entity state partition ``p`` holds to the view, with a new token; how many entities
    were written, how many of those the view did not hold (a new view's first check finds rounds
    wrote them all already) and how many open objections' records it put back, or None if ``p`` was
    revoked meanwhile (no token written). ``engine_of()``
    gives the engine in force (a config change may come between two chunks); ``lock``: the rounds'
    (the register data is written as is, so no round may write an entity between reading its state
    and writing it)."""
    ids = store.ids(p)
    written = missing = objections = 0
    script = r.register_script(PUT_BACK)
    chunks = [ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK)] or [[]]
    for i, chunk in enumerate(chunks):
        async with lock:
            if p not in store.owned():
                return None
            engine = engine_of()
            current, register, meta, disputes = [], [], {}, []
            for eid in chunk:
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
                if st.get("x"):
                    disputes += open_from_state(eid, st)
            pipe = r.pipeline(transaction=False)
            eids = list({e["entity_id"] for e in (*current, *register)})
            for eid in eids:  # SMISMEMBER would need Redis 6.2
                pipe.sismember(ENTITIES, eid)
            token = marks.token() if i == len(chunks) - 1 else None
            if current or register:
                await view.queue_round(pipe, current, meta.get, history=False, entities=register)
            first = len(pipe)
            for rec in disputes:
                await put_back(pipe, script, rec)
            if token:
                pipe.hset(PARTS, str(p), token)
            async with asyncio.timeout(timeout):
                held = await pipe.execute()
            missing += len(eids) - sum(1 for x in held[:len(eids)] if x)
            objections += sum(held[first:first + len(disputes)])
            if token:
                marks.set([p], token)
        await asyncio.sleep(0)
    return written, missing, objections
