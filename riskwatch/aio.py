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

__all__ = ["use_event_loop"]

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
