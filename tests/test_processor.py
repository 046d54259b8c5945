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


def test_an_event_the_engine_fails_on_is_dead_lettered_once_and_not_counted_as_applied():
    p = partition_for(EID.encode(), 4)
    proc = BatchProcessor(_FailsOn(Config()), 4, max_future_s=0, clock=lambda: 0.0)
    batch = [_complaint("c1", "2026-11-28T10:00:00+00:00"), _complaint("c-bug", "2026-11-28T10:30:00+00:00"),
             _complaint("c2", "2026-11-28T11:00:00+00:00")]
    res = proc.handle(orjson.dumps({"batch": batch}), "rw.complaints", p, 7, lambda eid: None)
    assert res.applied == 2  # 3 until 2026-12-04: the dead-lettered one was also counted as processed
    [(reason, record)] = res.dead
    dead = orjson.loads(record)
    assert reason == "engine_error" and dead["index"] == 1
    assert "ZeroDivisionError" in dead["errors"][0]["message"]
    assert res.states[EID]["n"] == 2 and res.states[EID]["o"] == {f"rw.complaints:{p}": 7}
