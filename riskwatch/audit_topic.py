"""The audit log kept on Kafka too: copied to ``rw.audit``, written back when Redis lost it.

The audit log (:mod:`.audit`) is a Redis Stream, written in the same transaction as the change it
records. Until 2026-12-07 it lived in Redis alone: a Redis restarted without its data, replaced, or
failed over to a replica that had not caught up lost who changed the thresholds, drew, silenced,
acknowledged and resolved, and why, with nothing to say so. A regulator's audit trail is the one
record that must outlive an outage.

The API copies it (:class:`Shipper`, a task of each API process): every second, holding the claim
:data:`SHIPPING` (one API at a time), it reads the entries after :data:`SHIPPED` (the id of the last
entry copied), sends each to ``rw.audit`` (one partition, kept forever: ``retention.ms=-1``) with
its id, and sets :data:`SHIPPED` once the broker has them all. An entry is on Kafka within about a
second of its change, and is sent again (same id) when the API dies between the send and the mark.

:data:`SHIPPED` missing (a new Redis: one that lost everything, or a new deployment), or below the
last id this process set (Redis lost its last writes), makes the shipper :func:`merge` the topic back
first: every entry the topic holds and the stream lacks is written back with its own id (so the
cursors of ``GET /v1/audit`` stay valid), in id order, among the entries written since. The stream is
rebuilt beside it and put in place with ``RENAME`` in a transaction that watches it, so no entry an
API writes meanwhile is lost. ``riskwatch rebuild-view`` merges too.

Not covered: entries written in the second before Redis lost them and not yet copied; a Redis that
went back (a replica behind) while no API ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import orjson

from .audit import AUDIT, entry_id
from .claims import RELEASE

__all__ = ["SHIPPED", "SHIPPING", "TOPIC_CONFIG", "Shipper", "compare", "entry_id", "merge", "read_topic"]

log = logging.getLogger("riskwatch.audit")

SHIPPED = "rw:audit:shipped"  # the id of the last entry on rw.audit
SHIPPING = "rw:audit:shipping"  # the claim of the API process copying now
MERGING = "rw:audit:merging"  # the stream being rebuilt, renamed over rw:audit when whole
TOPIC_CONFIG = {"retention.ms": "-1", "cleanup.policy": "delete"}
# KEYS: SHIPPED; ARGV: the mark read before the entries were sent, the new one. A Redis that lost its data
# between the read and the send holds no mark: setting one then would hide the loss from the next round
MOVE_MARK = """
if redis.call("GET", KEYS[1]) == ARGV[1] then redis.call("SET", KEYS[1], ARGV[2]) return 1 end
return 0
"""
CHUNK = 500


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else x


def _b(x) -> bytes:
    return x.encode() if isinstance(x, str) else x


async def read_topic(broker, topic: str) -> tuple[dict[str, bytes], int]:
    """Each entry on ``topic`` (id -> its stored JSON, as the stream held it), and how many records were
    passed over (not an audit entry)."""
    from .streams.kafka import read_messages

    held: dict[str, bytes] = {}
    refused = 0
    async for msg in read_messages(broker, topic):
        try:
            rec = orjson.loads(msg.value)
            eid, e = rec["id"], rec["e"]
            entry_id(eid)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            refused += 1
            continue
        held[eid] = orjson.dumps(e)
    return held, refused


async def merge(r, topic_entries: dict[str, bytes]) -> int:
    """Write back each of ``topic_entries`` that the stream lacks, with its id, in order among the
    stream's own; set :data:`SHIPPED` to the last id on the topic where it is missing or lower. How many
    were written back."""
    import redis.exceptions as rex

    last = max(topic_entries, key=entry_id, default="0-0")
    while True:
        async with r.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(AUDIT, SHIPPED)
                held = {_s(eid): f for eid, f in await pipe.xrange(AUDIT, "-", "+")}
                missing = [eid for eid in topic_entries if eid not in held]
                cursor = _s(await pipe.get(SHIPPED))
                if not missing:
                    if cursor is None or entry_id(cursor) < entry_id(last):
                        pipe.multi()
                        pipe.set(SHIPPED, last)
                        await pipe.execute()
                    return 0
                both = {**{eid: {"e": e} for eid, e in topic_entries.items()}, **held}
                await r.delete(MERGING)
                ids = sorted(both, key=entry_id)
                for i in range(0, len(ids), CHUNK):
                    build = r.pipeline(transaction=False)
                    for eid in ids[i:i + CHUNK]:
                        build.xadd(MERGING, both[eid], id=eid)
                    await build.execute()
                pipe.multi()
                pipe.rename(MERGING, AUDIT)
                if cursor is None or entry_id(cursor) < entry_id(last):
                    pipe.set(SHIPPED, last)
                await pipe.execute()
                return len(missing)
            except rex.WatchError:
                continue  # an entry written meanwhile: read again


async def compare(r, topic_entries: dict[str, bytes]) -> dict:
    """The audit log in Redis against its copy on the topic (``riskwatch audit-check``): ids of entries the
    copy holds and Redis does not (deleted, or lost with Redis and not yet written back), of entries whose
    content differs (edited), of entries Redis holds at or below the copy's last id that the copy lacks
    (added afterwards, or copies lost), and how many are newer than the copy (not copied yet)."""
    held = {_s(eid): orjson.loads(f[b"e"] if b"e" in f else f["e"]) for eid, f in await r.xrange(AUDIT, "-", "+")}
    last = entry_id(max(topic_entries, key=entry_id, default="0-0"))
    return {"held": len(held), "on_topic": len(topic_entries),
            "missing": sorted((eid for eid in topic_entries if eid not in held), key=entry_id),
            "edited": sorted((eid for eid, e in held.items() if eid in topic_entries
                              and orjson.loads(topic_entries[eid]) != e), key=entry_id),
            "not_on_topic": sorted((eid for eid in held if eid not in topic_entries and entry_id(eid) <= last),
                                   key=entry_id),
            "not_copied_yet": sum(1 for eid in held if entry_id(eid) > last)}


class Shipper:
    """Copies the audit log to ``rw.audit`` and writes it back from there (see the module's text).

    ``send(entries)`` sends ``[(id, entry JSON)]`` and returns once the broker has them all; ``read()``
    returns :func:`read_topic`'s answer. Both are the API's (its Kafka producer and settings).
    ``after_merge(r)`` runs when entries were written back (the config history:
    :func:`riskwatch.config_history.restore`). ``each_round(r)`` runs in every round, after the merge
    and before the copy; ``before_send(r, batch)`` before each batch is sent, which is marked copied only
    once it returned (the draws: :class:`riskwatch.draw_copy.DrawCopy`)."""

    def __init__(self, send, read, shipped=None, restored=None, failures=None, after_merge=None,
                 each_round=None, before_send=None) -> None:
        self.send, self.read, self.after_merge = send, read, after_merge
        self.each_round, self.before_send = each_round, before_send
        self.shipped, self.restored, self.failures = shipped, restored, failures
        self.last: str | None = None  # the last id this process set in SHIPPED
        self.derive_due = False  # entries were written back and after_merge has not run since
        self.token = uuid.uuid4().hex

    async def round(self, r) -> int:
        """One copy round, under the claim; how many entries were sent (0 also when another API holds
        the claim)."""
        if not await r.set(SHIPPING, self.token, nx=True, ex=60):
            return 0
        try:
            cursor = _s(await r.get(SHIPPED))
            if cursor is None or (self.last is not None and entry_id(cursor) < entry_id(self.last)):
                topic, refused = await self.read()
                n = await merge(r, topic)
                if n or cursor is not None:
                    log.warning("the audit log in Redis had lost entries (%s is %s, this API had copied up to "
                                "%s): wrote back %d of the %d on the topic%s", SHIPPED, cursor, self.last, n,
                                len(topic), f" ({refused} records passed over)" if refused else "")
                if self.restored is not None:
                    self.restored.inc(n)
                self.derive_due = self.derive_due or bool(n)
                cursor = _s(await r.get(SHIPPED))
            if self.derive_due and self.after_merge is not None:  # what else is derived from the audit log
                await self.after_merge(r)  # (tried again each round until it ran once)
            self.derive_due = False
            if self.each_round is not None:
                await self.each_round(r)
            sent = 0
            while True:
                entries = await r.xrange(AUDIT, f"({cursor}", "+", count=CHUNK)
                if not entries:
                    break
                batch = [(_s(eid), _b(f[b"e"] if b"e" in f else f["e"])) for eid, f in entries]
                if self.before_send is not None:
                    await self.before_send(r, batch)
                await self.send(batch)
                if not await r.eval(MOVE_MARK, 1, SHIPPED, cursor, batch[-1][0]):
                    raise RuntimeError(f"{SHIPPED} moved or went while entries were copied (Redis lost data?): "
                                       "the next round checks")
                cursor = batch[-1][0]
                self.last = cursor
                sent += len(batch)
                if self.shipped is not None:
                    self.shipped.inc(len(batch))
            if self.last is None:
                self.last = cursor
            return sent
        finally:
            with contextlib.suppress(Exception):  # Redis away: the claim expires (an error here would
                await r.eval(RELEASE, 1, SHIPPING, self.token)  # replace a cancellation in flight)

    async def run(self, r, every: float = 1.0) -> None:
        """Rounds until cancelled; a failed round (broker or Redis away) is logged and counted, and the
        next waits longer, up to 30 s."""
        wait = every
        while True:
            try:
                await self.round(r)
                wait = every
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the copy goes on when its broker or Redis is back
                if asyncio.current_task().cancelling():  # an error raised while being cancelled
                    raise asyncio.CancelledError from exc
                if self.failures is not None:
                    self.failures.inc()
                log.warning("copying the audit log to Kafka failed (%s: %s); again in %.0f s",
                            type(exc).__name__, getattr(exc, "detail", exc), wait)
                wait = min(wait * 2, 30.0)
            await asyncio.sleep(wait)
