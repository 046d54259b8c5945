"""Garbage-collector settings for riskwatch processes that hold many entity states.

Entity states are JSON-like dicts and lists: acyclic, freed by reference
counting alone. CPython's cyclic collector still tracks and rescans them, and
with 100k states its collections took about a third of the engine's time
(``bench/engine.py``, same events, same run: ~52k events/s with the default
collector, ~78k with it off) and stalled a worker for 100-400 ms at a time.
So riskwatch collects young objects every 50,000 allocations instead of 700,
and every so often moves what has survived so far out of the collector's
sight (:func:`gc.freeze`). Cyclic garbage is still collected while young; a
cycle that becomes garbage after a freeze is kept (none of ours do).

>>> import gc
>>> old = gc.get_threshold(); apply(); gc.get_threshold() == THRESHOLDS
True
>>> gc.set_threshold(*old)
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "apply", "Freezer"]

THRESHOLDS = (50_000, 20, 20)


def apply() -> None:
    """Set the collection thresholds for this process."""
    gc.set_threshold(*THRESHOLDS)


class Freezer:
    """Call :meth:`tick` per unit of work; every ``every`` ticks it freezes what survived."""

    def __init__(self, every: int = 20_000) -> None:
        self.every = every
        self.n = 0

    def tick(self) -> None:
        self.n += 1
        if self.n >= self.every:
            self.n = 0
            gc.freeze()
