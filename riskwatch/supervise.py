"""What ``riskwatch up`` does when one of its processes exits after start-up.

Until 2026-12-04 any child that exited (a worker killed by the OOM killer, a
bug that ends the API) stopped everything, and ``up`` still exited 0. Now,
as compose's ``restart: unless-stopped`` does for the same processes:

- a riskwatch process (worker, dispatcher, API, ingest gateway, demo
  receiver, a demo feed that failed) is started again after a backoff of
  1, 2, 4 ... up to 30 s, with its exit status and the end of its log on
  stderr. A worker resumes from its local store and the state changelog, as
  after any crash. More than ``MAX_RESTARTS`` restarts of one process within
  ``WINDOW_S`` is a crash loop: everything stops, exit status 1;
- the embedded Redis too (since 2026-12-07), on its port and empty: the
  workers write the view and the config in force back, and the alert intake
  the alerts from ``rw.alerts`` and the silences in force (README: "Losing
  Redis"); notification groups and the audit log of the run so far are lost. Until then
  it stopped everything, as nothing wrote those back;
- the embedded broker exiting stops everything, exit status 1: it keeps the
  stream in memory, and a new empty one would not hold what the worker's
  committed offsets point into.

>>> r = Restarts(max_restarts=3, window_s=60)
>>> [r.delay(t) for t in (0.0, 1.0, 2.0)], r.delay(3.0)
([1.0, 2.0, 4.0], None)
>>> r.delay(100.0)  # the window has passed: a fresh count
1.0
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Restarts", "Child", "supervise", "MAX_RESTARTS", "WINDOW_S"]

MAX_RESTARTS = 5
WINDOW_S = 600.0
MAX_DELAY_S = 30.0


@dataclass
class Restarts:
    """Backoff and crash-loop limit for one process."""

    max_restarts: int = MAX_RESTARTS
    window_s: float = WINDOW_S
    times: deque = field(default_factory=deque)

    def delay(self, now: float) -> float | None:
        """Seconds to wait before the next start, or None for a crash loop (no more starts)."""
        while self.times and now - self.times[0] > self.window_s:
            self.times.popleft()
        if len(self.times) >= self.max_restarts:
            return None
        self.times.append(now)
        return min(MAX_DELAY_S, 2.0 ** (len(self.times) - 1))


@dataclass
class Child:
    name: str
    spawn: Callable[[], subprocess.Popen]
    proc: subprocess.Popen
    restarts: Restarts = field(default_factory=Restarts)
    due: float | None = None  # when it is started again (monotonic), while it is down

    def finished(self) -> bool:
        """A demo feed that sent all its events is done, not failed."""
        return self.name == "demo" and self.proc.returncode == 0


def supervise(children: list[Child], services: list, stopping: Callable[[], bool],
              log_tail: Callable[[str], str], tick: float = 0.5,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Run until ``stopping()`` (0) or a failure that stops everything (1); restarts children."""
    while not stopping():
        now = clock()
        for svc in services:
            if not svc.alive():
                print(f"{svc.name} exited with {svc.proc.returncode}; it holds everything in memory, so "
                      f"everything stops (see {svc.log})", file=sys.stderr, flush=True)
                return 1
        for c in children:
            if c.due is None:
                if c.proc.poll() is None or c.finished():
                    continue
                wait = c.restarts.delay(now)
                if wait is None:
                    print(f"{c.name} exited with {c.proc.returncode}, its {c.restarts.max_restarts + 1}th exit "
                          f"within {c.restarts.window_s:.0f}s: a crash loop, so everything stops; the end of its "
                          f"log:\n{log_tail(c.name)}", file=sys.stderr, flush=True)
                    return 1
                c.due = now + wait
                print(f"{c.name} exited with {c.proc.returncode}; starting it again in {wait:.0f}s (restart "
                      f"{len(c.restarts.times)} of at most {c.restarts.max_restarts} within "
                      f"{c.restarts.window_s:.0f}s); the end of its log:\n{log_tail(c.name)}",
                      file=sys.stderr, flush=True)
            elif now >= c.due:
                try:
                    c.proc = c.spawn()
                except Exception as exc:  # the embedded Redis that did not come up on its port, say
                    wait = c.restarts.delay(now)
                    if wait is None:
                        print(f"{c.name} could not be started again ({exc}): everything stops", file=sys.stderr,
                              flush=True)
                        return 1
                    c.due = now + wait
                    print(f"{c.name} could not be started again ({exc}); trying again in {wait:.0f}s",
                          file=sys.stderr, flush=True)
                    continue
                c.due = None
                print(f"{c.name} started again (pid {c.proc.pid})", file=sys.stderr, flush=True)
        sleep(tick)
    return 0
