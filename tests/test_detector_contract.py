"""One contract, every registered detector (river's test_estimators.py idea)."""

from collections import defaultdict
from datetime import datetime, timezone

import orjson
import pytest

from riskwatch.detectors import REGISTRY
from riskwatch.detectors.base import IGNORED
from riskwatch.events import parse_event
from riskwatch.models import PopulationModels
from riskwatch.simulate import Simulation


def _stream():
    sim = Simulation(n_entities=40, seed=11, bad_share=0.3, days=30)
    evs = [parse_event(e) for e in sim.events(n_events=6000)]
    by_entity = defaultdict(list)
    for ev in evs:
        by_entity[ev.entity_id].append(ev)
    by_entity[HEAVY] = [parse_event(e) for e in _heavy()]
    return by_entity


HEAVY = "91440300708461136T"


def _heavy():
    """One entity with more of everything than any bound allows: 4 devices, long ids."""
    t0 = 1767225600
    for i in range(400):
        ts = datetime.fromtimestamp(t0 + i * 300, tz=timezone.utc).isoformat()
        yield {"type": "sensor_reading", "entity_id": HEAVY, "device_id": f"cold-room-{i % 4:04d}",
               "metric": "temperature", "value": 3.0 + (i % 13) * 0.37, "ts": ts}
        if i % 10 == 0:
            yield {"type": "complaint", "entity_id": HEAVY, "complaint_id": f"CMP-2026-{i:012d}",
                   "category": f"false_advertising_{i % 3}", "severity": 1 + i % 3, "ts": ts,
                   "text": f"complaint text {i % 4}"}
            yield {"type": "record", "entity_id": HEAVY, "record_id": f"REC-2026-{i:012d}",
                   "kind": ("penalty", "pledge_broken", "judicial_default", "pledge_kept")[i % 4],
                   "severity": 1 + i % 3, "ts": ts}
            yield {"type": "inspection", "entity_id": HEAVY, "inspection_id": f"INS-2026-{i:012d}",
                   "kind": "routine", "outcome": ("pass", "conditional", "fail")[i % 3], "ts": ts,
                   "violations": {"critical": i % 2, "major": i % 3, "minor": i % 5}}


STREAM = _stream()


def _feed(det, events, state=None, models=None, clock=None):
    """Events in order; ``clock``: the entity's clock when they arrive (default: each one's own time)."""
    models = models or PopulationModels()
    state = det.new_state() if state is None else state
    entity = {"m": ["catering", "110105"], "g": {}}
    sigs = []
    for ev in events:
        if ev.type in det.handles:
            t = ev.ts.timestamp()
            sig = det.update(state, ev, t, t if clock is None else max(t, clock), entity, models)
            sigs.append(sig)
    return state, sigs, models


@pytest.fixture(params=sorted(REGISTRY), ids=str)
def det(request):
    return REGISTRY[request.param]()


def _events_for(det):
    out = [(eid, evs) for eid, evs in STREAM.items() if any(e.type in det.handles for e in evs)]
    assert out, f"no events of {det.handles} in the sample stream"
    return out


def test_params_round_trip(det):
    again = type(det)(**det.params.model_dump())
    assert again == det and repr(again) == repr(det)


def test_state_is_plain_json_and_small(det):
    worst = 0
    for _eid, evs in _events_for(det):
        state, _, _ = _feed(det, evs)
        raw = orjson.dumps(state)
        assert orjson.loads(raw) == state
        worst = max(worst, len(raw))
    assert worst <= 512, f"{det.name} state is {worst} bytes"


def test_signals_named_and_bounded(det):
    for _eid, evs in _events_for(det):
        _, sigs, _ = _feed(det, evs)
        for sig in sigs:
            assert set(sig) <= set(det.default_signals)
            for value, ids, *at in sig.values():
                assert 0.0 <= value <= 1.0
                assert all(isinstance(i, str) for i in ids)
                assert len(at) <= 1 and all(isinstance(a, float) for a in at)


def test_deterministic(det):
    eid, evs = max(_events_for(det), key=lambda kv: len(kv[1]))
    a = _feed(det, evs)
    b = _feed(det, evs)
    assert a[0] == b[0] and a[1] == b[1]


def test_resume_from_serialised_state(det):
    """Half the events, a JSON round trip (as a Faust table does), the rest == all at once."""
    eid, evs = max(_events_for(det), key=lambda kv: len(kv[1]))
    half = len(evs) // 2
    whole, sigs_whole, _ = _feed(det, evs)
    models = PopulationModels()
    st, s1, models = _feed(det, evs[:half], models=models)
    st = orjson.loads(orjson.dumps(st))
    st, s2, _ = _feed(det, evs[half:], state=st, models=models)
    assert st == whole and s1 + s2 == sigs_whole


def test_state_depends_on_the_events_times_not_on_when_they_arrive(det):
    """Events that arrive after the entity's clock moved on (a buffered upload, a backfill, a
    wall-clock tick ahead of the feed) leave the state they leave in time: each is placed at its own
    time. Until 2026-11-28 they were taken at the clock: a sensor series kept one reading of them,
    complaints days apart became a burst, old penalties counted as new."""
    for _eid, evs in _events_for(det):
        clock = max(e.ts.timestamp() for e in evs) + 7 * 86400.0
        in_time, _, _ = _feed(det, evs)
        late, _, _ = _feed(det, evs, clock=clock)
        assert late == in_time


def test_minimal_events_work(det):
    """Events with only the required fields (optional ones missing) are handled."""
    minimal = {
        "complaint": {"complaint_id": "c", "category": "x"},
        "sensor_reading": {"device_id": "d", "metric": "temperature", "value": 1.0},
        "inspection": {"inspection_id": "i", "kind": "routine", "outcome": "pass"},
        "record": {"record_id": "r", "kind": "penalty"},
    }
    for etype in det.handles:
        ev = parse_event({"type": etype, "entity_id": "91350100M000100Y43",
                          "ts": "2026-01-01T00:00:00Z", **minimal[etype]})
        state, sigs, _ = _feed(det, [ev])
        assert orjson.loads(orjson.dumps(state)) == state


def test_evaluate_does_not_mutate(det):
    eid, evs = max(_events_for(det), key=lambda kv: len(kv[1]))
    state, _, models = _feed(det, evs)
    before = orjson.dumps(state)
    det.evaluate(state, evs[-1].ts.timestamp() + 86400 * 10, {"m": None, "g": {}}, models)
    assert orjson.dumps(state) == before


# how many of an entity's newest items (by event time) each id-keyed detector recognises when sent again
_MEMORY = {"complaints": lambda d: d.retain + d.remember_ids,
           "inspections": lambda d: 1 + d.remember_ids,
           "records": lambda d: d.remember_ids,
           "sensors": lambda d: 10**9}  # every reading: not after its series' last, or older than every series held


@pytest.mark.parametrize("name", sorted(_MEMORY))
def test_a_history_sent_again_is_recognised(name):
    """Every entity's events sent again in order after all of them (a file imported twice): the
    newest the detector remembers are recognised, and those sent again alone (a retried batch)
    leave the state as it was. Until 2026-12-05 complaints and inspections were matched only
    against the few they keep whole, and each copy, arriving late, pushed out a newer id before
    its own copy came: the heavy entity's 40 inspections sent again counted 79; and a reading of a
    series no longer held (the heavy entity has 4 devices, 2 held) pushed out a live series."""
    det = REGISTRY[name]()
    memory = _MEMORY[name](det)
    assert memory >= 8
    for eid, evs in _events_for(det):
        mine = [e for e in evs if e.type in det.handles]
        clock = max(e.ts.timestamp() for e in mine)
        once, _, models = _feed(det, mine)
        held = orjson.dumps(once)
        _, sigs, _ = _feed(det, mine, state=orjson.loads(held), models=models, clock=clock)
        newest = sorted(range(len(mine)), key=lambda i: -mine[i].ts.timestamp())[:memory]
        assert all(sigs[i] is IGNORED or not sigs[i] for i in newest), eid  # {}: a kind without points
        state, _, _ = _feed(det, [mine[i] for i in sorted(newest)], state=orjson.loads(held), models=models,
                            clock=clock)
        assert orjson.dumps(state) == held, eid
