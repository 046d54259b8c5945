"""Offline replay: the engine over a file of recorded events, no broker.

Reads JSON lines (or CSV rows, mapped as ``riskwatch import`` maps them) in
order, validates each line with the event schemas (invalid lines are reported
with their line numbers and skipped), runs the very same
:class:`~riskwatch.engine.Engine` as the stream workers, and writes outputs, a
per-event trace and entity snapshots at given event times.
"""

from __future__ import annotations

import heapq
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Iterable

import orjson

from . import gc_policy
from .engine import Engine
from .errors import EngineFailed, InvalidEvent
from .events import Tick, event_id, parse_event

__all__ = ["Replay", "ReplaySummary", "parse_times"]


@dataclass
class ReplaySummary:
    lines: int = 0
    events: int = 0
    ticks: int = 0
    outputs: Counter = field(default_factory=Counter)
    invalid: list[tuple[int, str]] = field(default_factory=list)
    entities: int = 0
    ignored: Counter = field(default_factory=Counter)  # events a detector did not apply, by detector

    def render(self) -> str:
        out = [f"lines read: {self.lines}", f"events processed: {self.events}",
               f"ticks: {self.ticks}", f"entities: {self.entities}",
               "outputs: " + (", ".join(f"{k}={v}" for k, v in sorted(self.outputs.items())) or "none"),
               f"ignored (held already, or a reading not after its series' last): {sum(self.ignored.values())}"
               + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(self.ignored.items())) + ")" if self.ignored else ""),
               f"invalid lines: {len(self.invalid)}"]
        out += [f"  line {n}: {msg}" for n, msg in self.invalid[:50]]
        if len(self.invalid) > 50:
            out.append(f"  ... and {len(self.invalid) - 50} more")
        return "\n".join(out)


def parse_times(spec: str) -> list[datetime]:
    """``T1,T2,...`` (ISO-8601; naive times are UTC) sorted ascending."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        t = datetime.fromisoformat(part)
        out.append(t if t.tzinfo else t.replace(tzinfo=timezone.utc))
    return sorted(out)


class Replay:
    """Run an :class:`Engine` over lines; keep entity states in memory."""

    def __init__(self, engine: Engine, *, out: IO[bytes] | None = None, trace: IO[bytes] | None = None,
                 snapshots: IO[str] | None = None, snapshot_at: list[datetime] = (),
                 tick_seconds: float = 3600.0, gc_freeze_every: int = 0) -> None:
        self.engine = engine
        self.freezer = gc_policy.Freezer(gc_freeze_every) if gc_freeze_every else None
        self.states: dict[str, dict] = {}
        # when each entity is next due a tick (Engine.next_tick: it depends on the state alone, so it
        # changes only when the entity is processed), and a heap of (due, first-seen order, entity)
        # with stale entries skipped. Ticks of one instant go out in first-seen order.
        self.order: dict[str, int] = {}
        self.due: dict[str, float] = {}
        self.heap: list[tuple[float, int, str]] = []
        self.out, self.trace, self.snap = out, trace, snapshots
        self.snapshot_at = list(snapshot_at)
        self.tick = tick_seconds
        self.next_tick: float | None = None
        self.summary = ReplaySummary()
        self.scheme = engine.config.entity_id_scheme
        if self.snap is not None:
            self.snap.write("entity_id,at,score,tier\n")

    def run(self, lines: Iterable[bytes]) -> ReplaySummary:
        """JSON lines, numbered from 1."""
        return self.run_items((n, line, None) for n, line in enumerate(lines, 1))

    def run_items(self, items: Iterable[tuple[int, bytes | dict | str, str | list | None]]) -> ReplaySummary:
        """(line number, JSON line or event read from CSV, what was wrong reading it) of each line, as
        :meth:`riskwatch.ingest.reading.FileReading.items` gives them."""
        s = self.summary
        freezer = self.freezer
        for n, raw, err in items:
            if freezer is not None:
                freezer.tick()
            s.lines = n
            if err is not None:  # not JSON, or a CSV cell that is no time
                s.invalid.append((n, err if isinstance(err, str) else
                                  "; ".join(f"{e['field']}: {e['message']} [{e['rule']}]" for e in err)))
                continue
            if not isinstance(raw, dict) and not raw.strip():
                continue
            try:
                ev = parse_event(raw, self.scheme)
            except InvalidEvent as exc:
                s.invalid.append((n, "; ".join(str(e) for e in exc.errors)))
                continue
            ts = getattr(ev, "ts", None)
            if ts is not None:
                self._advance(ts)
            self._apply(ev, n)
        self.finish()
        return s

    def _advance(self, ts: datetime) -> None:
        while self.snapshot_at and self.snapshot_at[0] < ts:
            self._snapshot(self.snapshot_at.pop(0))
        if self.tick:
            now = ts.timestamp()
            if self.next_tick is None:
                self.next_tick = (now // self.tick + 1) * self.tick
            tick, heap = self.tick, self.heap
            while now >= self.next_tick:
                if not heap or heap[0][0] > self.next_tick:  # nobody due: on to the next grid time someone is
                    nxt = -(-heap[0][0] // tick) * tick if heap else now + tick
                    if nxt > now:
                        self.next_tick = (now // tick + 1) * tick
                        break
                    self.next_tick = nxt
                self._tick_all(self.next_tick)
                self.next_tick += tick

    def _tick_all(self, at: float) -> None:
        heap, due = self.heap, self.due
        now: list[tuple[int, str]] = []
        while heap and heap[0][0] <= at:
            t, k, eid = heapq.heappop(heap)
            if due.get(eid) == t:
                del due[eid]
                now.append((k, eid))
        if not now:
            return
        ts = datetime.fromtimestamp(at, tz=timezone.utc)
        eng, states = self.engine, self.states
        for _, eid in sorted(now):
            st = states[eid]
            self.summary.ticks += 1
            try:
                outs = eng.process(st, Tick.model_construct(entity_id=eid, ts=ts))[1]
            except Exception as exc:
                raise EngineFailed(f"a tick of {eid} at {ts.isoformat()}, after line {self.summary.lines}",
                                   exc) from exc
            self._emit(outs)
            self._schedule(eid, st)

    def _schedule(self, eid: str, st: dict) -> None:
        t = self.engine.next_tick(st)
        if t is None:
            self.due.pop(eid, None)
        elif self.due.get(eid) != t:
            self.due[eid] = t
            heapq.heappush(self.heap, (t, self.order[eid], eid))

    def _apply(self, ev, n: int) -> None:
        eid = ev.entity_id
        try:
            st, outs = self.engine.process(self.states.get(eid), ev)
        except Exception as exc:
            raise EngineFailed(f"line {n}, {ev.type} {event_id(ev)} of {eid}", exc) from exc
        self.states[eid] = st
        if eid not in self.order:
            self.order[eid] = len(self.order)
        if self.tick:
            self._schedule(eid, st)
        self.summary.events += 1
        self._emit(outs)
        if self.trace is not None:
            g = st["g"]
            self.trace.write(orjson.dumps({
                "line": n, "type": ev.type, "entity_id": eid, "score": st["sc"],
                "tier": self.engine.tier_of(st),
                "signals": {c: round(v[0], 4) for c, v in sorted(g.items())}}) + b"\n")

    def _emit(self, outs: list[dict]) -> None:
        for o in outs:
            self.summary.outputs[o["type"]] += 1
            if self.out is not None:
                self.out.write(orjson.dumps(o) + b"\n")

    def _snapshot(self, at: datetime) -> None:
        if self.snap is None:
            return
        now = at.timestamp()
        iso = at.isoformat()
        eng = self.engine
        for eid, st in self.states.items():
            score, _ = eng.evaluate(st, now)
            self.snap.write(f"{eid},{iso},{score},{eng.tier_of(st)}\n")

    def finish(self) -> None:
        while self.snapshot_at:
            self._snapshot(self.snapshot_at.pop(0))
        self.summary.entities = len(self.states)
        self.summary.ignored = Counter(self.engine.ignored)


def open_lines(path: str) -> tuple[Iterable[bytes], int | None]:
    """Lines of ``path`` (``-`` for stdin) and the byte size when known."""
    if path == "-":
        return sys.stdin.buffer, None
    f = open(path, "rb")  # noqa: SIM115 - closed at process exit by the CLI
    import os

    return f, os.fstat(f.fileno()).st_size
