"""The event loop riskwatch's long-running async processes run on.

uvloop (libuv) by default: the worker's live path spends much of its time in
the event loop itself (task switches, socket reads and writes for every fetch,
produce request and Redis call), and uvloop does that work in C. On
2026-11-28 it took the worker's steady-state p99 event->output latency at
6,000 live events/s from 180 and 183 ms to 116 and 96 ms (runs in
alternation; README, Benchmarks). ``RISKWATCH_EVENT_LOOP=asyncio`` keeps the
standard loop; without the uvloop package the standard loop is used and said.

>>> use_event_loop("asyncio")
'asyncio'
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

__all__ = ["keep_running", "use_event_loop"]

log = logging.getLogger("riskwatch")


def use_event_loop(name: str = "uvloop") -> str:
    """Make ``name`` the loop of every ``asyncio.run`` / new loop in this process; return what is in use.

    Call before any loop is created (Faust creates its loop when the app is built)."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: running on the standard asyncio loop")
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            return "uvloop"
    asyncio.set_event_loop_policy(None)
    return "asyncio"


async def keep_running(run: Callable[[], Awaitable[None]], what: str, transient: Callable[[BaseException], bool],
                       first: float = 1.0, cap: float = 30.0, stopped: Callable[[], bool] = lambda: False,
                       logger: logging.Logger = log) -> None:
    """Run ``run()`` until it returns (or ``stopped()``); an error ``transient`` says will pass (Redis or
    the broker not answering) is logged and ``run()`` started again after ``first`` s, doubling up to
    ``cap``, and from ``first`` again after a run that lasted a minute (a new outage). Other errors
    are raised.

    >>> calls = []
    >>> async def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionError("down")
    >>> asyncio.run(keep_running(flaky, "test", lambda e: isinstance(e, ConnectionError), first=0.01))
    >>> len(calls)
    3
    """
    delay = first
    while not stopped():
        t0 = time.monotonic()
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not transient(exc):
                raise
            delay = first if time.monotonic() - t0 > 60 else delay
            logger.warning("%s failed (%s); again in %.1f s", what, exc if str(exc) else type(exc).__name__, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, cap)
