"""Event times far ahead of the wall clock are refused on the live paths (pure logic, fixed clock).

One complaint dated 2062 instead of 2026 carried its entity's clock forward: every later event was
"late", and 9 of 10 sensor readings of a real excursion were ignored as stale."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson

from riskwatch.config import Config
from riskwatch.engine import Engine
from riskwatch.ingest.plan import validate
from riskwatch.streams.codec import partition_for
from riskwatch.streams.processor import BatchProcessor

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc).timestamp()
EID = "91350100M000100Y43"


def _complaint(cid: str, ts: str) -> dict:
    return {"type": "complaint", "complaint_id": cid, "entity_id": EID, "ts": ts, "category": "hygiene"}


def test_the_worker_dead_letters_an_event_dated_past_the_limit_and_applies_the_rest():
    p = partition_for(EID.encode(), 4)
    proc = BatchProcessor(Engine(Config()), 4, max_future_s=3600, clock=lambda: NOW)
    batch = [_complaint("c-typo", "2062-11-28T10:00:00+00:00"), _complaint("c-ok", "2026-11-28T11:00:00+00:00"),
             _complaint("c-skew", "2026-11-28T12:30:00+00:00")]  # half an hour ahead: a clock skew, allowed
    res = proc.handle(orjson.dumps({"batch": batch}), "rw.complaints", p, 7, lambda eid: None)
    assert res.applied == 2 and len(res.dead) == 1
    reason, record = res.dead[0]
    dead = orjson.loads(record)
    assert reason == "in_future" and dead["index"] == 0
    assert dead["errors"][0]["field"] == "ts" and "RISKWATCH_MAX_EVENT_FUTURE_S" in dead["errors"][0]["message"]
    assert res.states[EID]["t"] == datetime(2026, 11, 28, 12, 30, tzinfo=timezone.utc).timestamp()


def test_no_limit_when_it_is_zero():
    p = partition_for(EID.encode(), 4)
    proc = BatchProcessor(Engine(Config()), 4, max_future_s=0, clock=lambda: NOW)
    res = proc.handle(orjson.dumps(_complaint("c-typo", "2062-11-28T10:00:00+00:00")), "rw.complaints", p, 1,
                      lambda eid: None)
    assert res.applied == 1 and not res.dead


def test_ingest_rejects_it_naming_the_field():
    items = [(0, _complaint("c-typo", "2062-11-28T10:00:00+00:00"), None),
             (1, _complaint("c-ok", "2026-11-28T11:00:00+00:00"), None)]
    ok, bad = validate(items, "uscc", max_future_s=3600, now=NOW)
    assert [i for i, _, _ in ok] == [1]
    assert bad[0][0] == 0 and bad[0][1][0]["field"] == "ts" and bad[0][1][0]["rule"] == "in_future"

