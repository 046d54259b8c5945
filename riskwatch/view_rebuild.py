"""The view rebuilt from Kafka once Redis lost data, without waiting for ops.

A Redis that lost its data gets the entities' current state back from the workers within seconds
(:mod:`.streams.view_repair`), and the audit log, config history, silences, imports and draws from
the API (:mod:`.audit_topic`, :mod:`.audit_derived`, :mod:`.draw_copy`). The entities' histories, the
spot-check list, the inspection results (what a draw's outcomes and work lists count as checked) and
the objections' records are not in the states: they came back only when ops ran ``riskwatch
rebuild-view --no-flush``, which ``RiskwatchRedisLostData`` asked for. Until then a draw executed
last month showed every entity unchecked and its outcomes empty (until 2026-12-08).

Whoever notices a loss sets :data:`LOST` (:func:`noticed`): a worker that finds the view's marks of
its partitions gone or changed, the API when the audit log had to be written back. The API's copy
round (:meth:`AfterLoss.check`) then runs :func:`.rebuild.rebuild_view` without flushing, as a task of
its event loop, holding the claim :data:`REBUILDING` (one API at a time). It runs beside the workers (an
entity's current fields are written only where the view holds no later decision). When it ends,
:data:`LOST` is cleared if no loss was noticed meanwhile; else the next round runs it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from .claims import RELEASE, RENEW

__all__ = ["LOST", "REBUILDING", "AfterLoss", "noticed"]

log = logging.getLogger("riskwatch.rebuild")

LOST = "rw:view:lost"  # when a loss was last noticed, and by whom
REBUILDING = "rw:view:rebuilding"  # the claim of the API process rebuilding
CLAIM_SECONDS = 60
# KEYS: LOST; ARGV: the value the rebuild started from: cleared only if no loss was noticed since
CLEAR = """
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
"""


async def noticed(r, who: str) -> None:
    """Say that Redis lost data: the next copy round of an API rebuilds the view."""
    await r.set(LOST, f"{time.time():.6f} {who}")


class AfterLoss:
    """Runs ``rebuild()`` (an awaitable's factory: :func:`.rebuild.rebuild_view` of the API's settings,
    without flush) when :data:`LOST` is set, one at a time (see the module's text)."""

    def __init__(self, rebuild, rebuilt=None, failures=None) -> None:
        self.rebuild, self.rebuilt, self.failures = rebuild, rebuilt, failures
        self.task: asyncio.Task | None = None

    async def check(self, r) -> bool:
        """Start a rebuild if a loss was noticed and none runs; whether one started."""
        if self.task is not None and not self.task.done():
            return False
        since = await r.get(LOST)
        if since is None:
            return False
        token = uuid.uuid4().hex
        if not await r.set(REBUILDING, token, nx=True, ex=CLAIM_SECONDS):
            return False  # another API rebuilds
        self.task = asyncio.create_task(self._run(r, since, token), name="view rebuild")
        return True

    async def _run(self, r, since, token: str) -> None:
        t = time.monotonic()
        renew = asyncio.create_task(self._renew(r, token))
        try:
            log.warning("Redis lost data (noticed %s): rebuilding the view's histories, spot-check list, "
                        "inspection results and objections from Kafka", since.decode() if isinstance(since, bytes)
                        else since)
            counts = await self.rebuild()
            await r.eval(CLEAR, 1, LOST, since)
            if self.rebuilt is not None:
                self.rebuilt.inc()
            log.warning("rebuilt the view after Redis lost data in %.1f s: %s", time.monotonic() - t,
                        ", ".join(f"{k} {v}" for k, v in counts.items() if v))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - tried again at the next round (LOST stays set)
            if self.failures is not None:
                self.failures.inc()
            log.warning("rebuilding the view after Redis lost data failed (%s: %s); the next round tries again",
                        type(exc).__name__, exc)
        finally:
            renew.cancel()
            with contextlib.suppress(Exception):
                await r.eval(RELEASE, 1, REBUILDING, token)

    @staticmethod
    async def _renew(r, token: str) -> None:
        while True:
            await asyncio.sleep(CLAIM_SECONDS / 3)
            with contextlib.suppress(Exception):
                await r.eval(RENEW, 1, REBUILDING, token, CLAIM_SECONDS)

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait([self.task], timeout=5)
