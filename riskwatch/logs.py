"""Logs of long-running processes: a library's repeated warnings summarised, not flooded.

With its broker away, aiokafka logs each failed connect, metadata update and
fetch: a worker wrote 2,884 error lines in 67 s (2026-11-28), which buries
everything else and fills disks. :func:`limit_repeats`
lets the first warning or error of each kind through, then at most one per
``every`` seconds, carrying the count of those not shown. A kind is the
logger and the message template (``"Unable connect to node with id %s: %s"``),
so a different problem still shows at once. Debug and info records pass.

>>> f = RepeatLimiter(every=10.0, clock=iter([0.0, 1.0, 2.0, 12.0]).__next__)
>>> def rec(node):
...     return logging.LogRecord("aiokafka.client", logging.ERROR, "", 0, "node %s down", (node,), None)
>>> [(f.filter(r), r.getMessage()) for r in map(rec, [1, 2, 3, 4])]  # doctest: +NORMALIZE_WHITESPACE
[(True, 'node 1 down'), (False, 'node 2 down'), (False, 'node 3 down'),
 (True, 'node 4 down (2 more like this in the last 12 s not shown)')]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["RepeatLimiter", "limit_repeats"]

_MAX_KINDS = 1000  # messages built with f-strings make a kind each: forget them all past this


class RepeatLimiter(logging.Filter):
    """Pass a warning or error of one kind at most once per ``every`` seconds."""

    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every = every
        self.clock = clock
        self._shown: dict[tuple[str, object], float] = {}
        self._held: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = self.clock()
        last = self._shown.get(key)
        if last is not None and now - last < self.every:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        if len(self._shown) >= _MAX_KINDS:
            self._shown.clear()
            self._held.clear()
        self._shown[key] = now
        n = self._held.pop(key, 0)
        if n:
            record.msg = f"{record.getMessage()} ({n} more like this in the last {now - last:.0f} s not shown)"
            record.args = ()  # a formatter may wrap None as (None,) and format again
        return True


def limit_repeats(prefix: str = "aiokafka", every: float = 10.0) -> RepeatLimiter:
    """Put one :class:`RepeatLimiter` on the logger ``prefix`` and every logger under it.

    A logger's filters see only what is logged to it, not what its children log, so the
    package is imported first: its modules' loggers exist then."""
    import importlib
    import pkgutil

    limiter = RepeatLimiter(every)
    pkg = importlib.import_module(prefix)
    for mod in pkgutil.walk_packages(pkg.__path__, prefix + "."):
        logging.getLogger(mod.name)  # the name each module logs under (getLogger(__name__))
    for name in [prefix, *logging.Logger.manager.loggerDict]:
        if name == prefix or name.startswith(prefix + "."):
            logging.getLogger(name).addFilter(limiter)
    return limiter
