"""BatchProcessor: one message in, states and outputs out (pure logic, an engine with a bug)."""

from __future__ import annotations

import orjson

from riskwatch.config import Config
from riskwatch.engine import Engine
from riskwatch.streams.codec import partition_for
from riskwatch.streams.processor import BatchProcessor

EID = "91350100M000100Y43"


def _complaint(cid: str, ts: str) -> dict:
    return {"type": "complaint", "complaint_id": cid, "entity_id": EID, "ts": ts, "category": "hygiene"}


class _FailsOn(Engine):
    """An engine with a bug that one event hits."""

    def process(self, state, ev):
        if getattr(ev, "complaint_id", None) == "c-bug":
            raise ZeroDivisionError("division by zero")
        return super().process(state, ev)


def _neighbour(p: int) -> str:
    """Another entity on partition ``p``."""
    import random

    from riskwatch import uscc

    rng = random.Random(1)
    return next(e for e in (uscc.generate(rng) for _ in range(1000)) if e != EID and partition_for(e.encode(), 4) == p)


def test_an_event_the_engine_fails_on_is_dead_lettered_once_and_not_counted_as_applied():
    p = partition_for(EID.encode(), 4)
    proc = BatchProcessor(_FailsOn(Config()), 4, max_future_s=0, clock=lambda: 0.0)
    batch = [{**_complaint("n1", "2026-11-28T09:00:00+00:00"), "entity_id": _neighbour(p)},
             _complaint("c1", "2026-11-28T10:00:00+00:00"), _complaint("c-bug", "2026-11-28T10:30:00+00:00"),
             _complaint("c2", "2026-11-28T11:00:00+00:00")]
    res = proc.handle(orjson.dumps({"batch": batch}), "rw.complaints", p, 7, lambda eid: None)
    assert res.applied == 3  # the dead-lettered one was also counted as processed until 2026-12-04
    [(reason, record)] = res.dead
    dead = orjson.loads(record)
    # its place in the message (until 2026-12-06: in its entity's events, 1 here)
    assert reason == "engine_error" and dead["index"] == 2
    assert "ZeroDivisionError" in dead["errors"][0]["message"]
    assert res.states[EID]["n"] == 2 and res.states[EID]["o"] == {f"rw.complaints:{p}": 7}


def test_firing_candidates_say_whether_they_still_hold_at_the_workers_clock():
    """A burst of complaints: read the hour it happened, its alert is current; read a month later (a
    backfill), it is not, and the dispatcher opens nothing for it. Resolved candidates carry no mark."""
    from datetime import datetime

    p = partition_for(EID.encode(), 4)
    batch = [{**_complaint(f"c{i}", f"2026-11-28T10:0{i}:00+00:00"), "category": f"k{i}"} for i in range(6)]
    at = datetime.fromisoformat("2026-11-28T10:30:00+00:00").timestamp()
    marks = []
    for clock in (at, at + 30 * 86400):
        proc = BatchProcessor(Engine(Config()), 4, max_future_s=0, clock=lambda c=clock: c)
        res = proc.handle(orjson.dumps({"batch": batch}), "rw.complaints", p, 1, lambda eid: None)
        marks.append([(o["signal"], o["status"], o.get("current")) for o in res.outputs if o["type"] == "alert_candidate"])
    assert marks == [[("complaints.burst", "firing", True)], [("complaints.burst", "firing", False)]]


def test_a_failing_currency_check_leaves_the_candidate_unmarked_and_the_event_applied():
    class _CheckFails(Engine):
        def alert_current(self, state, code, at):
            raise KeyError(code)

    p = partition_for(EID.encode(), 4)
    batch = [{**_complaint(f"c{i}", f"2026-11-28T10:0{i}:00+00:00"), "category": f"k{i}"} for i in range(6)]
    proc = BatchProcessor(_CheckFails(Config()), 4, max_future_s=0, clock=lambda: 1.8e9)
    res = proc.handle(orjson.dumps({"batch": batch}), "rw.complaints", p, 1, lambda eid: None)
    [cand] = [o for o in res.outputs if o["type"] == "alert_candidate"]
    assert "current" not in cand and res.applied == 6 and not res.dead
