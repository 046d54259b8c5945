"""One alert intake per deployment, enforced: a lease in Redis.

The intake is the only writer of notification groups (its transactions
watch the alerts they read, not the groups), so two intakes at once lose
group updates: notifications go missing or out twice. Before 2026-12-05 the
README asked for exactly one ``--role all`` dispatcher and nothing checked.
Now every ``--role all`` dispatcher competes for this lease; the holder runs
the intake and renews it every third of its time to live, the others deliver
and wait. A holder that dies (SIGKILL, a lost host) leaves the lease to
expire, and a waiting dispatcher takes the intake over; one that stops
cleanly, or whose intake fails, gives it up at once (and takes the intake up again later when
Redis or the broker not answering was the failure: another dispatcher that reaches them may take it
first).

The lease also *fences* the intake: its commits watch the lease key and
check that it still names this holder (:meth:`AlertIntake._commit`), so a
holder that was paused past its lease (a long GC pause, a frozen VM) and
comes back cannot commit over its successor. It stops its intake instead.

Every dispatcher also holds its *name* this way (``rw:dispatchers:<name>``,
:func:`riskwatch.alerts.dispatcher.run_dispatcher`): it resumes its pending
deliveries by name, so a second one under the same name would deliver the
first one's in-flight notifications again.

>>> lease = Lease(None, LEASE_KEY, "dispatcher-1", 10.0)
>>> lease.ttl_ms, round(lease.renew_every, 2)
(10000, 3.33)
"""

from __future__ import annotations

import logging

__all__ = ["Lease", "LeaseLost", "LEASE_KEY"]

log = logging.getLogger("riskwatch.alerts")

LEASE_KEY = "rw:alerts:intake-lease"

# renew or release only a lease this holder still has (PEXPIRE and DEL after a GET, atomically)
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class LeaseLost(Exception):
    """The intake lease names another holder (or none): this dispatcher must stop its intake."""


class Lease:
    """A named lease in Redis held by ``token`` for ``ttl_s`` seconds at a time."""

    def __init__(self, redis, key: str, token: str, ttl_s: float) -> None:
        self.r = redis
        self.key = key
        self.token = token
        self.raw = token.encode()
        self.ttl_ms = int(ttl_s * 1000)
        self.renew_every = ttl_s / 3

    async def acquire(self) -> bool:
        """Take the lease if it is free (or already ours)."""
        if await self.r.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return True
        return await self.renew()

    async def renew(self) -> bool:
        """Extend the lease; False when another holder has it (or it expired and nobody took it)."""
        return bool(await self.r.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))

    async def release(self) -> None:
        """Give the lease up at once (a clean stop, a failed intake). Redis away: it expires on its own."""
        try:
            await self.r.eval(_RELEASE, 1, self.key, self.token)
        except Exception as exc:
            log.warning("could not release %s (it expires on its own): %s", self.key, exc)

    async def holder(self) -> str | None:
        raw = await self.r.get(self.key)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def check(self, conn=None) -> None:
        """Raise :class:`LeaseLost` unless this holder has the lease, read on ``conn`` (default: its own
        client). Inside a WATCH on :attr:`key` (``conn`` a pipeline in immediate mode), a renewal between
        this and EXEC aborts the transaction (PEXPIRE touches the key), and the caller retries it."""
        if await (conn or self.r).get(self.key) != self.raw:
            raise LeaseLost(f"{self.key} is not held by {self.token}")
