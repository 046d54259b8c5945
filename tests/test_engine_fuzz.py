"""Valid but extreme events, mixed at random on a few entities: the engine never raises.

An exception inside ``Engine.process`` dead-letters the event as ``engine_error`` and can leave
the entity's state half-updated (README, "Left out"), so the engine must not raise on anything
validation lets through: times from year 1 to 9999 and every UTC offset, values up to 1e308,
objections to what was never held, resolutions without objections, records expiring before they
start, ids that repeat across kinds. Seeded: a failure names the event and reproduces.
"""

from __future__ import annotations

import random

import orjson

from riskwatch.config import load_config
from riskwatch.engine import Engine
from riskwatch.errors import InvalidEvent
from riskwatch.events import AlertCandidate, RiskChange, SpotcheckChange, parse_event
from riskwatch.uscc import check_character

ENTITIES = ("91350100M000100Y43", "91440300708461136T", "91110108MA01C2YK5" + check_character("91110108MA01C2YK5"))
TIMES = ("0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "2026-01-01T00:00:00+14:00",
         "2026-01-01T00:00:00-12:00", "2026-01-01T08:00:00+08:00", "2026-06-01T12:00:00.999999Z",
         "2026-06-01T12:00:01Z", "2100-01-01T00:00:00Z", "9999-12-31T23:59:59Z")
VALUES = (0.0, -0.0, 1e308, -1e308, 1e-308, 5e-324, 1e15, -1e15, 3.0, 9.0, 1e16)
MODELS = {"risk_change": RiskChange, "spotcheck_change": SpotcheckChange, "alert_candidate": AlertCandidate}


def _event(rnd: random.Random) -> dict:
    kind = rnd.choice(("sensor_reading", "complaint", "inspection", "record", "entity", "objection",
                       "objection_resolution", "tick"))
    ev: dict = {"type": kind, "entity_id": rnd.choice(ENTITIES), "ts": rnd.choice(TIMES)}
    item = f"x{rnd.randint(0, 25)}"  # the same ids across kinds
    if kind == "sensor_reading":
        ev.update(device_id=rnd.choice(("d1", "d2", "d3")), metric=rnd.choice(("temperature", "pm25", "other")),
                  value=rnd.choice(VALUES))
    elif kind == "complaint":
        ev.update(complaint_id=item, category=rnd.choice(("a", "b")), severity=rnd.randint(1, 3),
                  text=rnd.choice((None, "same text", "  ")))
    elif kind == "inspection":
        ev.update(inspection_id=item, kind="routine", outcome=rnd.choice(("pass", "fail", "conditional")),
                  violations={"critical": rnd.choice((0, 1, 10**6)), "major": rnd.randint(0, 3),
                              "minor": rnd.randint(0, 3)})
    elif kind == "record":
        ev.update(record_id=item, kind=rnd.choice(("penalty", "pledge_made", "pledge_kept", "pledge_broken",
                                                   "judicial_default", "restoration")),
                  severity=rnd.randint(1, 3), expires_at=rnd.choice((None,) + TIMES))
    elif kind == "entity":
        del ev["ts"]
        ev.update(name="n", industry=rnd.choice(("food", "other")), region=rnd.choice(("110105", "310104")))
    elif kind in ("objection", "objection_resolution"):
        ev.update(objection_id=f"o{rnd.randint(0, 8)}", target_id=item)
        if kind == "objection":
            ev["target_kind"] = rnd.choice(("complaint", "record"))
        else:
            ev["resolution"] = rnd.choice(("upheld", "corrected", "revoked"))
    return ev


def test_extreme_valid_events_never_make_the_engine_raise():
    rnd = random.Random(20261205)
    eng = Engine(load_config())
    states: dict = {}
    applied = outputs = 0
    for i in range(30_000):
        raw = _event(rnd)
        try:
            ev = parse_event(raw)
        except InvalidEvent:
            continue
        try:
            st, outs = eng.process(states.get(ev.entity_id), ev)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"event {i} raised {type(exc).__name__}: {exc}\n{raw}") from exc
        states[ev.entity_id] = st
        applied += 1
        for o in outs:
            MODELS[o["type"]].model_validate(orjson.loads(orjson.dumps(o)))
            outputs += 1
        assert 0.0 <= st["sc"] <= 100.0
    assert applied > 25_000 and outputs > 100
    for st in states.values():
        assert orjson.loads(orjson.dumps(st)) == st
