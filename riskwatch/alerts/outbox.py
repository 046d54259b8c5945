"""The webhook outbox: a Redis Stream with a consumer group, and a dead-letter list.

- ``enqueue`` adds a notification (done in the same transaction as the alert
  change that caused it, so a change is never stored without its notification);
- deliverers read with ``XREADGROUP``; an entry stays *pending* until it is
  delivered or dead-lettered, so a deliverer killed mid-request leaves it for
  the next one (``XAUTOCLAIM`` after ``claim_idle`` seconds, or its own
  pending entries when it restarts under the same name);
- a long retry keeps its entry by touching it (``XCLAIM`` resets the idle time);
- ``dead`` / ``redeliver`` inspect and re-queue dead-lettered notifications.

Keys (prefix ``rw:``): ``rw:outbox`` (stream), ``rw:outbox:attempts`` (hash),
``rw:outbox:dead`` (list of JSON records).
"""

from __future__ import annotations

import time

import orjson

__all__ = ["Outbox", "STREAM", "GROUP"]

STREAM = "rw:outbox"
ATTEMPTS = "rw:outbox:attempts"
DEAD = "rw:outbox:dead"
GROUP = "deliver"
# KEYS: dead-letter list, stream; ARGV: the record as listed, its notification: queued if taken off
_REDELIVER = """
if redis.call("LREM", KEYS[1], 1, ARGV[1]) == 1 then
  redis.call("XADD", KEYS[2], "*", "n", ARGV[2])
  return 1
end
return 0
"""


class Outbox:
    def __init__(self, redis, consumer: str, claim_idle: float = 60.0) -> None:
        self.r = redis
        self.consumer = consumer
        self.claim_idle_ms = int(claim_idle * 1000)

    async def ensure_group(self) -> None:
        import redis.exceptions as rex

        try:
            await self.r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except rex.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @staticmethod
    def enqueue(pipe, notification: dict) -> None:
        """Queue on a pipeline (the caller's transaction)."""
        pipe.xadd(STREAM, {"n": orjson.dumps(notification)})

    async def read(self, count: int = 100, block_ms: int = 1000, pending: bool = False) -> list[tuple[str, dict]]:
        res = await self.r.xreadgroup(GROUP, self.consumer, {STREAM: "0" if pending else ">"}, count=count,
                                      block=None if pending else block_ms)
        return [(_s(eid), orjson.loads(f[b"n"] if b"n" in f else f["n"])) for _, entries in res or []
                for eid, f in entries if f]

    async def reclaim(self, count: int = 100) -> list[tuple[str, dict]]:
        """Entries another (dead) deliverer left pending for longer than ``claim_idle``."""
        res = await self.r.xautoclaim(STREAM, GROUP, self.consumer, min_idle_time=self.claim_idle_ms,
                                      start_id="0-0", count=count)
        entries = res[1]
        return [(_s(eid), orjson.loads(f[b"n"] if b"n" in f else f["n"])) for eid, f in entries if f]

    async def touch(self, entry_id: str) -> None:
        await self.r.xclaim(STREAM, GROUP, self.consumer, min_idle_time=0, message_ids=[entry_id], justid=True)

    async def attempt(self, entry_id: str) -> int:
        return int(await self.r.hincrby(ATTEMPTS, entry_id, 1))

    async def done(self, entry_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(STREAM, GROUP, entry_id)
        pipe.xdel(STREAM, entry_id)
        pipe.hdel(ATTEMPTS, entry_id)
        await pipe.execute()

    async def dead_letter(self, entry_id: str, notification: dict, error: str, attempts: int) -> None:
        rec = {"entry_id": entry_id, "notification": notification, "error": error, "attempts": attempts,
               "at": time.time()}
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(DEAD, orjson.dumps(rec))
        pipe.xack(STREAM, GROUP, entry_id)
        pipe.xdel(STREAM, entry_id)
        pipe.hdel(ATTEMPTS, entry_id)
        await pipe.execute()

    async def depth(self) -> tuple[int, int]:
        """(entries in the stream, entries in the dead-letter list)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.xlen(STREAM)
        pipe.llen(DEAD)
        n, d = await pipe.execute()
        return int(n), int(d)

    async def dead(self) -> list[dict]:
        return [orjson.loads(x) for x in await self.r.lrange(DEAD, 0, -1)]

    async def redeliver(self, notification_id: str | None = None) -> int:
        """Re-queue dead-lettered notifications (all, or the one with this id); same idempotency key.

        A record is queued only by the call that takes it off the list (one script call each): until
        2026-12-07 two redeliveries at once (the API and the CLI, a retried request) each queued every
        record they had read, and each notification was sent twice (98 queued for 50 in a test)."""
        script = self.r.register_script(_REDELIVER)
        n = 0
        for raw in await self.r.lrange(DEAD, 0, -1):
            rec = orjson.loads(raw)
            if notification_id and rec["notification"]["id"] != notification_id:
                continue
            n += int(await script(keys=[DEAD, STREAM], args=[raw, orjson.dumps(rec["notification"])]))
        return n


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else x
