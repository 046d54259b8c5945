"""Entity states outlive config changes: every valid change must keep them working.

Ops change the config while the system runs, and states made under the old config
stay. Three valid changes crashed the engine on existing states until 2026-11-28
(tiers removed, a detector enabled, the anomaly score's ``slots``): every later
event of the entities concerned was dead-lettered as ``engine_error``. These tests
change each numeric setting, toggle each detector and remove or add a tier between
two halves of a simulated stream."""

from __future__ import annotations

import copy

import pytest

from riskwatch.config import config_from_dict, load_config
from riskwatch.engine import Engine
from riskwatch.errors import ConfigError
from riskwatch.events import parse_event
from riskwatch.simulate import Simulation

BASE = load_config().model_dump(mode="json")
EVENTS = [parse_event(e) for e in Simulation(n_entities=20, seed=2, bad_share=0.3, days=40).events(n_events=2400)]
HALF = len(EVENTS) // 2


def _numbers(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, (*path, i))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def _changed(path, factor) -> dict | None:
    d = copy.deepcopy(BASE)
    o = d
    for k in path[:-1]:
        o = o[k]
    v = o[path[-1]] * factor
    o[path[-1]] = round(v) if isinstance(o[path[-1]], int) else v
    d["version"] = "changed"
    try:
        config_from_dict(d)
    except ConfigError:
        return None  # not a valid change: refused at change, nothing to survive
    return d


def _disputes(eid: str) -> list:
    """An objection and a resolution per kind of item, for items the entity may not have."""
    out = []
    for kind in ("complaint", "record"):
        out.append({"type": "objection", "objection_id": f"o-{kind}", "entity_id": eid, "target_kind": kind,
                    "target_id": f"x-{kind}", "ts": "2027-01-01T00:00:00+08:00", "reason": "not ours"})
        out.append({"type": "objection_resolution", "objection_id": f"o-{kind}", "entity_id": eid,
                    "target_id": f"x-{kind}", "resolution": "revoked", "ts": "2027-01-02T00:00:00+08:00"})
    return [parse_event(e) for e in out]


def _run_across(before: dict, after: dict) -> None:
    states: dict = {}
    for engine, events in ((Engine(config_from_dict(before)), EVENTS[:HALF]),
                           (Engine(config_from_dict(after)), EVENTS[HALF:])):
        for ev in events:
            states[ev.entity_id], _ = engine.process(states.get(ev.entity_id), ev)
    for eid in list(states):
        for ev in _disputes(eid):
            states[eid], _ = engine.process(states[eid], ev)


CHANGES = [(".".join(map(str, p)), f, d) for p, _ in _numbers(BASE) for f in (0.5, 2.0)
           if (d := _changed(p, f)) is not None]


def test_there_are_many_valid_numeric_changes():
    assert len(CHANGES) > 100


@pytest.mark.parametrize("where,factor,after", CHANGES, ids=[f"{w}*{f}" for w, f, _ in CHANGES])
def test_states_outlive_a_numeric_change(where, factor, after):
    _run_across(BASE, after)


@pytest.mark.parametrize("name", list(BASE["detectors"]))
def test_states_outlive_a_detector_turned_on_or_off(name):
    off = copy.deepcopy(BASE)
    off["detectors"][name]["enabled"] = False
    _run_across(off, BASE)
    _run_across(BASE, off)


def test_states_outlive_a_tier_removed_or_added():
    low = copy.deepcopy(BASE)
    for t, up in zip(low["tiers"][1:], (1, 2, 3)):  # most entities end in the top tier
        t.update(up=up, down=up / 2)
    three = copy.deepcopy(BASE)
    three["tiers"] = three["tiers"][:3]
    three["tier_alerts"]["tiers"] = {k: v for k, v in three["tier_alerts"]["tiers"].items() if k != "D"}
    _run_across(low, three)
    _run_across(three, BASE)


def test_a_half_life_on_a_signal_that_holds_is_refused_naming_it():
    """Silence and a full breach hold until a reading ends them; a half-life for them would be
    ignored, so it is refused at load (and so at change) rather than silently."""
    d = copy.deepcopy(BASE)
    d["detectors"]["sensors"]["signals"]["silence"]["half_life_days"] = 1
    with pytest.raises(ConfigError) as exc:
        config_from_dict(d)
    assert [(e.field, e.rule) for e in exc.value.errors] == [
        ("detectors.sensors.signals.silence.half_life_days", "holds")]


@pytest.mark.parametrize("swapped", [False, True], ids=["alone", "records-on-in-the-same-change"])
@pytest.mark.parametrize("redecided", [True, False], ids=["re-decide-tick", "first-seen-by-a-reading"])
def test_sensors_switched_off_and_on_again_raise_no_silence_for_the_pause_but_a_real_one_after(redecided, swapped):
    """Readings that came while the sensors detector was off were not applied. Until 2026-12-04
    every series then looked silent since the pause began: switching sensors back on raised a
    silence alert (+20 points) for every entity with a sensor, at its first tick. The worker's
    re-decide pass ticks each entity after a change; without it, the first reading marks the pause.
    ``swapped``: the change that switches sensors off switches records on (a pause was seen only
    when an entity held more detector states than the config had detectors, until 2026-12-04)."""
    from datetime import datetime, timedelta, timezone

    start = copy.deepcopy(BASE)
    start["detectors"]["records"]["enabled"] = not swapped
    off = copy.deepcopy(BASE)
    off["version"], off["detectors"]["sensors"]["enabled"] = "sensors-off", False
    on = copy.deepcopy(BASE)
    on["version"] = "sensors-on"
    eid = "91350100M000100Y43"
    t = datetime(2026, 3, 1, tzinfo=timezone.utc)

    def reading(at):
        return parse_event({"type": "sensor_reading", "device_id": "d1", "entity_id": eid, "ts": at.isoformat(),
                            "metric": "pm25", "value": 20.0})

    def tick(at):
        return parse_event({"type": "tick", "entity_id": eid, "ts": at.isoformat(), "redecide": True})

    engine, st = Engine(config_from_dict(start)), None
    for _ in range(50):
        st, _out = engine.process(st, reading(t))
        t += timedelta(minutes=10)
    engine = Engine(config_from_dict(off))
    if redecided:
        st, out = engine.process(st, tick(t))  # the re-decide pass after the change
        assert out == [] and "sensors" in st["p"]
    t += timedelta(hours=5)  # the feed pauses too, before the change took effect on this entity
    for _ in range(500):  # 3.5 days of readings, not applied
        st, _out = engine.process(st, reading(t))
        t += timedelta(minutes=10)
    assert "sensors" in st["p"]
    engine = Engine(config_from_dict(on))
    st, out = engine.process(st, tick(t))
    assert out == [] and "p" not in st and st["sc"] == 0.0
    # the feed then really stops: silence once 3 x 600 s have passed since the last reading
    due = engine.next_tick(st)
    assert due is not None and due - st["t"] <= 1800
    st, out = engine.process(st, tick(datetime.fromtimestamp(st["t"] + 1801, tz=timezone.utc)))
    assert [(o["signal"], o["status"]) for o in out if o["type"] == "alert_candidate"] == [
        ("sensors.silence", "firing")]


def test_the_impact_counts_stored_states_no_worker_wrote_and_goes_on():
    """Until 2026-12-06 one state record that was not JSON made ``POST /v1/config/impact`` a 500."""
    import orjson

    from riskwatch.impact import impact

    cfg = load_config()
    eng = Engine(cfg)
    st = None
    for e in Simulation(n_entities=1, seed=2, bad_share=0.0, days=5).events(n_events=40):
        st, _ = eng.process(st, parse_event(e))
    out = impact({st["id"]: orjson.dumps(st), "B": b"{not a state", "C": b"[1, 2]"}, cfg, cfg)
    assert out["states_unreadable"] == 2 and out["entities_held"] == 1
