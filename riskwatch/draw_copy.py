"""The spot-check draws kept on Kafka too: copied to ``rw.draws``, written back when Redis lost them.

A draw (:mod:`riskwatch.api.spotchecks`) is the evidence that the entities checked were chosen fairly:
its commitment (the seed's and the population's SHA-256), the population snapshot with each entity's
tier and ratio, and once executed the seed and the selection, from which anyone recomputes it
(``riskwatch verify-draw``). Until 2026-12-08 all of it lived in Redis alone: the audit log came back
from ``rw.audit`` after a Redis loss (:mod:`.audit_topic`), but ``GET /v1/spotchecks/draws/{id}``
answered 404 for every draw made before, the work lists and outcomes with it, and the inspectors'
rotation (who checked each entity last) started over.

Each draw is copied when its audit entry is: the audit copy (:class:`.audit_topic.Shipper`) hands each
batch to :meth:`DrawCopy.before_send` before sending it, which sends the draw's record as Redis holds it
then, and with a ``draw.commit`` its population, to ``rw.draws`` (one partition, kept forever). The
audit entry is marked copied only once its draw is on the topic. The secret seed of a committed draw
is never copied: it is on the topic only once the draw is executed or withdrawn, when the record
discloses it.

A record or a population is one zlib-compressed JSON document, sent in messages of at most
:data:`CHUNK_BYTES` (a population of 100,000 entities is about 4 MB of JSON): each message is a JSON
head line (draw id, part, version digest, index, count) and the chunk's bytes.

:data:`RECONCILED` missing (a new Redis, or a deployment from before the copy), or audit entries written
back (Redis lost writes but kept the mark: a failover to a replica behind), makes the next copy round
:meth:`DrawCopy.reconcile` first: the draws the topic holds and Redis lacks are written back
(:func:`restore`: record, population, index, scope of an executed draw, and the inspectors it assigned
where no later draw did), and the draws Redis holds that the topic lacks or holds in
another state are sent. ``riskwatch rebuild-view`` restores too.

Not covered: a draw committed or executed in the second before Redis lost it (its audit entry is lost
with it); the seed of a committed draw (it can never be executed once Redis lost it: withdraw it).
"""

from __future__ import annotations

import hashlib
import logging
import zlib

import orjson

from .draw_scopes import SCOPES, scope

__all__ = ["CHUNK_BYTES", "DRAWS", "DRAWS_BY_COMMIT", "LAST_INSPECTOR", "RECONCILED", "SECRETS", "DrawCopy",
           "pack", "read_topic", "restore", "unpack"]

log = logging.getLogger("riskwatch.draws")

DRAWS = "rw:draws"  # draw id -> its record (JSON)
DRAWS_BY_COMMIT = "rw:draws:by-commit"  # draw id -> committed_at: the list reads only what it shows
LAST_INSPECTOR = "rw:draws:last-inspector"  # entity id -> the inspector its last draw assigned
SECRETS = "rw:draws:secret"  # draw id -> the seed of a committed draw (never copied)
RECONCILED = "rw:draws:reconciled"  # set once the draws Redis holds and those on rw.draws were compared
CHUNK_BYTES = 256 * 1024
ACTIONS = ("draw.commit", "draw.execute", "draw.withdraw")
_RANK = {"committed": 0, "withdrawn": 1, "executed": 1}  # a later state never gives way to an earlier one


def population_key(draw_id: str) -> str:
    return f"{DRAWS}:{draw_id}:population"


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else x


def pack(draw_id: str, part: str, doc: bytes) -> list[bytes]:
    """The messages carrying one document (``part``: ``record`` or ``population``) of a draw.

    >>> msgs = pack("draw-1", "population", orjson.dumps([["E1", "A", 0.05]] * 3))
    >>> len(msgs), orjson.loads(msgs[0].split(b"\\n", 1)[0])["n"]
    (1, 1)
    >>> unpack(msgs)[1]["draw-1"] == orjson.dumps([["E1", "A", 0.05]] * 3)
    True
    """
    blob = zlib.compress(doc, 6)
    version = hashlib.sha256(blob).hexdigest()[:16]
    n = max(1, -(-len(blob) // CHUNK_BYTES))
    return [orjson.dumps({"draw": draw_id, "part": part, "v": version, "i": i, "n": n}) + b"\n"
            + blob[i * CHUNK_BYTES:(i + 1) * CHUNK_BYTES] for i in range(n)]


def unpack(values) -> tuple[dict[str, bytes], dict[str, bytes], int]:
    """The records and populations whole on the topic (draw id -> JSON bytes), from its message values
    in offset order, and how many messages were passed over (not a draw's, or of a document never
    whole). Of a record sent several times the latest state is kept (executed or withdrawn over
    committed); of a population, the last whole one.

    >>> m = pack("d", "record", b'{"id":"d","status":"executed"}') + pack("d", "record", b'{"id":"d","status":"committed"}')
    >>> unpack(m[:1] + [b"junk"])[0]["d"], unpack(m)[0]["d"], unpack(m)[2]
    (b'{"id":"d","status":"executed"}', b'{"id":"d","status":"executed"}', 0)
    """
    parts: dict[tuple, dict[int, bytes]] = {}
    records: dict[str, bytes] = {}
    pops: dict[str, bytes] = {}
    refused = 0
    for value in values:
        try:
            head, chunk = value.split(b"\n", 1)
            h = orjson.loads(head)
            key, i, n = (h["draw"], h["part"], h["v"]), int(h["i"]), int(h["n"])
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            refused += 1
            continue
        got = parts.setdefault(key, {})
        got[i] = chunk
        if len(got) < n:
            continue
        del parts[key]
        try:
            doc = zlib.decompress(b"".join(got[k] for k in range(n)))
            if key[1] == "record":
                status = orjson.loads(doc)["status"]
                old = records.get(key[0])
                if old is None or _RANK.get(status, 0) >= _RANK.get(orjson.loads(old)["status"], 0):
                    records[key[0]] = doc
            elif key[1] == "population":
                pops[key[0]] = doc
            else:
                refused += n
        except (zlib.error, KeyError, orjson.JSONDecodeError):
            refused += n
    return records, pops, refused + sum(len(p) for p in parts.values())


async def read_topic(broker, topic: str) -> tuple[dict[str, bytes], dict[str, bytes], int]:
    """:func:`unpack` of every message on ``topic``."""
    from .streams.kafka import read_messages

    return unpack([msg.value async for msg in read_messages(broker, topic)])


def _assigned_by(back: list[dict], held: list[dict]) -> dict[str, str]:
    """Each entity's last inspector where a draw of ``back`` assigned it last, of all executed draws
    (``back``, written back, and ``held``, in Redis) in order of execution: an older draw written back
    never takes an entity from a later one, and a later one written back replaces what a Redis gone back
    to an older state holds.

    >>> sel = lambda *p: {"result": {"selected": [{"entity_id": e, "inspector": i} for e, i in p]}}
    >>> back = [{"id": "b", "status": "executed", "executed_at": 2, **sel(("E1", "li"), ("E2", "li"))}]
    >>> held = [{"id": "h", "status": "executed", "executed_at": 3, **sel(("E2", "wang"))},
    ...         {"id": "o", "status": "executed", "executed_at": 1, **sel(("E1", "zhao"), ("E3", "zhao"))}]
    >>> _assigned_by(back, held)
    {'E1': 'li'}
    """
    winner: dict[str, tuple[str, str]] = {}
    for d in sorted((d for d in back + held if d["status"] == "executed"), key=lambda d: d["executed_at"]):
        winner.update({s["entity_id"]: (d["id"], s["inspector"]) for s in d["result"]["selected"] if s["inspector"]})
    ids = {d["id"] for d in back}
    return {eid: who for eid, (did, who) in winner.items() if did in ids}


async def restore(r, records: dict[str, bytes], pops: dict[str, bytes], mark: bool = False) -> list[str]:
    """Write back the draws of ``records`` that Redis does not hold, or holds committed where the record
    is executed or withdrawn, with their populations, index entries, the scopes of the executed ones
    (never over a scope Redis holds; a withdrawn one's freed), the inspectors they assigned
    (:func:`_assigned_by`), and no seed of one no longer committed. One transaction, with
    :data:`RECONCILED` set too when ``mark``. The ids written back, oldest commitment first."""
    import redis.exceptions as rex

    while True:
        async with r.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(DRAWS, RECONCILED, SCOPES)
                held = {_s(k): orjson.loads(v) for k, v in (await pipe.hgetall(DRAWS)).items()}
                scopes = {_s(k): _s(v) for k, v in (await pipe.hgetall(SCOPES)).items()}
                # a draw Redis lacks, or holds committed where the topic has it executed or withdrawn (a
                # replica behind: its seed would let it be executed again)
                back = sorted((d for d in map(orjson.loads, records.values()) if d["id"] not in held
                               or _RANK.get(d["status"], 0) > _RANK.get(held[d["id"]]["status"], 0)),
                              key=lambda d: (d["committed_at"], d["id"]))
                ids = {d["id"] for d in back}
                assigned = _assigned_by(back, [d for k, d in held.items() if k not in ids]) if back else {}
                pipe.multi()
                for d in back:
                    pipe.hset(DRAWS, d["id"], records[d["id"]])
                    pipe.zadd(DRAWS_BY_COMMIT, {d["id"]: d["committed_at"]})
                    if d["id"] in pops:
                        pipe.set(population_key(d["id"]), pops[d["id"]], nx=True)
                    if d["status"] != "committed":
                        pipe.hdel(SECRETS, d["id"])
                    key = scope(d.get("task", "routine"), d["period"], d.get("region"))
                    if d["status"] == "executed" and scopes:  # none: the API derives them all
                        pipe.hsetnx(SCOPES, key, d["id"])  # (spotchecks._scopes_of_older_draws)
                    elif d["status"] == "withdrawn" and scopes.get(key) == d["id"]:
                        pipe.hdel(SCOPES, key)
                if assigned:
                    pipe.hset(LAST_INSPECTOR, mapping=assigned)
                if mark:
                    pipe.set(RECONCILED, "1")
                if back or mark:
                    await pipe.execute()
                return [d["id"] for d in back]
            except rex.WatchError:
                continue  # a draw made meanwhile, or Redis flushed: read again


class DrawCopy:
    """Copies draws to ``rw.draws`` with their audit entries and writes them back (see the module's text).

    ``send(values)`` sends message values in order and returns once the broker has them all; ``read()``
    returns :func:`read_topic`'s answer. Both are the API's."""

    def __init__(self, send, read, copied=None, restored=None) -> None:
        self.send, self.read = send, read
        self.copied, self.restored = copied, restored

    async def _documents(self, r, draw_id: str, population: bool) -> list[bytes]:
        rec = await r.hget(DRAWS, draw_id)
        if rec is None:  # gone with Redis before it was copied (see "Not covered")
            log.warning("draw %s is not in Redis any more: not copied to Kafka", draw_id)
            return []
        out = pack(draw_id, "record", rec if isinstance(rec, bytes) else rec.encode())
        if population:
            pop = await r.get(population_key(draw_id))
            if pop is not None:
                out = pack(draw_id, "population", pop if isinstance(pop, bytes) else pop.encode()) + out
        return out

    async def before_send(self, r, batch: list[tuple[str, bytes]]) -> None:
        """Send the draws of the draw entries among ``batch`` (audit ``[(id, entry JSON)]``), each once, as
        Redis holds them now; with its population where the batch holds its commitment."""
        todo: dict[str, bool] = {}
        for _, raw in batch:
            if b'"draw.' not in raw:
                continue
            e = orjson.loads(raw)
            if e["action"] in ACTIONS:
                todo[e["target"]] = todo.get(e["target"], False) or e["action"] == "draw.commit"
        values = [v for did, pop in todo.items() for v in await self._documents(r, did, pop)]
        if values:
            await self.send(values)
            if self.copied is not None:
                self.copied.inc(len(todo))

    async def reconcile(self, r, force: bool = False) -> tuple[int, int]:
        """When :data:`RECONCILED` is missing, or ``force`` (the audit log was written back: Redis lost
        writes, also where it kept the mark, as a replica behind does): write back the draws only the
        topic holds, send those only Redis holds (or holds in another state). How many were written back
        and sent."""
        if not force and await r.exists(RECONCILED):
            return 0, 0
        records, pops, refused = await self.read()
        held = {_s(k): v for k, v in (await r.hgetall(DRAWS)).items()}
        resend = [did for did, raw in held.items()
                  if did not in records or orjson.loads(records[did]) != orjson.loads(raw)]
        values = [v for did in resend for v in await self._documents(r, did, population=did not in pops)]
        if values:
            await self.send(values)
        sent = len(resend)
        back = await restore(r, records, pops, mark=True)
        if back:
            log.warning("Redis had lost %d spot-check draws: wrote them back from Kafka (%s)%s", len(back),
                        ", ".join(back[:5]) + (" ..." if len(back) > 5 else ""),
                        f"; {refused} messages passed over" if refused else "")
        if self.restored is not None:
            self.restored.inc(len(back))
        if self.copied is not None:
            self.copied.inc(sent)
        return len(back), sent
