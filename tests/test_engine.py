import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.config import Config, config_from_dict
from riskwatch.engine import Engine
from riskwatch.events import AlertCandidate, RiskChange, SpotcheckChange, parse_event
from riskwatch.scoring import Scorer

E = "91350100M000100Y43"
OUT_MODELS = {"risk_change": RiskChange, "spotcheck_change": SpotcheckChange, "alert_candidate": AlertCandidate}


def ev(type_, day=0.0, **kw):
    from datetime import datetime, timedelta, timezone
    ts = (datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(days=day)).isoformat()
    return parse_event({"type": type_, "entity_id": E, "ts": ts, **kw})


def run(engine, events, state=None):
    outs = []
    for e in events:
        state, o = engine.process(state, e)
        for x in o:
            OUT_MODELS[x["type"]].model_validate(orjson.loads(orjson.dumps(x)))  # schema-conformant
        outs += o
    return state, outs



def test_risk_changes_say_since_when_the_entity_is_in_its_tier(config):
    """A regulator's third question after who and why. Every risk change carries ``tier_since``: the
    decision that moved the entity into its tier (its first event while it never moved)."""
    eng = Engine(config)
    state, outs = run(eng, [ev("record", record_id="r1", kind="judicial_default", severity=3),
                            ev("record", 1, record_id="r2", kind="penalty", severity=3),
                            ev("record", 2, record_id="r3", kind="pledge_broken", severity=3),
                            ev("record", 3, record_id="r4", kind="penalty", severity=1)])
    risk = [o for o in outs if o["type"] == "risk_change"]
    moved = {o["ts"]: o["to_tier"] for o in outs if o["type"] == "spotcheck_change"}
    assert len(risk) == 4 and len(moved) == 2
    for o in risk:
        entered = max(t for t in moved if t <= o["ts"])
        assert moved[entered] == o["tier"] and o["tier_since"] == entered, o
    assert risk[-1]["tier_since"] < risk[-1]["ts"]  # the fourth record raised the score, not the tier


def test_an_entity_registered_without_a_time_is_in_its_first_tier_since_its_first_timed_event(config):
    """A register export's upserts carry no time: until 2026-12-06 such an entity's risk changes said
    it was in tier A since 1970-01-01 until its tier first changed."""
    from datetime import datetime, timezone

    eng = Engine(config)
    st, _ = eng.process(None, parse_event({"type": "entity", "entity_id": E, "name": "Shop", "industry": "food",
                                           "region": "350100"}))
    st, out = eng.process(st, parse_event({"type": "complaint", "complaint_id": "c1", "entity_id": E,
                                           "ts": "2026-03-01T09:00:00+00:00", "category": "k", "severity": 3}))
    [rc] = [o for o in out if o["type"] == "risk_change"]
    assert rc["tier"] == "A" and rc["tier_since"] == datetime(2026, 3, 1, 9, tzinfo=timezone.utc)
    # a state kept before the fix (tier A "since 1970") takes the time of its next event
    st["tt"] = 0.0
    st, _ = eng.process(st, parse_event({"type": "complaint", "complaint_id": "c2", "entity_id": E,
                                         "ts": "2026-03-02T09:00:00+00:00", "category": "k2"}))
    assert st["tt"] == datetime(2026, 3, 2, 9, tzinfo=timezone.utc).timestamp()


def test_records_raise_tier_and_name_reasons(config):
    eng = Engine(config)
    state, outs = run(eng, [ev("record", record_id="r1", kind="judicial_default", severity=3),
                            ev("record", 1, record_id="r2", kind="penalty", severity=3),
                            ev("record", 2, record_id="r3", kind="pledge_broken", severity=3)])
    changes = [o for o in outs if o["type"] == "spotcheck_change"]
    assert [c["to_tier"] for c in changes] == ["B", "C"]
    assert changes[-1]["to_ratio"] == config.tier_ratio("C")
    codes = {r["code"]: r for r in changes[-1]["reasons"]}
    assert set(codes) == {"records.judicial", "records.penalties", "records.pledges"}
    assert codes["records.judicial"]["event_ids"] == ["r1"]
    assert abs(sum(r["share"] for r in changes[-1]["reasons"]) - 1) < 1e-3
    assert changes[-1]["config_version"] == config.version


def test_redelivered_record_counts_once(config):
    eng = Engine(config)
    r = ev("record", record_id="r1", kind="penalty", severity=3)
    s1, _ = run(eng, [r])
    once = orjson.dumps(s1["d"])
    s2, outs = run(eng, [r], s1)
    assert outs == [] and orjson.dumps(s2["d"]) == once


def test_revoked_complaint_lowers_score_and_tier():
    cfg = config_from_dict({"detectors": {"complaints": {"signals": {"burst": {"weight": 40}}}}})
    eng = Engine(cfg)
    minute = 1 / 1440
    burst = [ev("complaint", i * minute, complaint_id=f"c{i}", category=f"cat{i}") for i in range(4)]
    state, outs = run(eng, burst)
    untouched = orjson.loads(orjson.dumps(state))
    high, tier = state["sc"], eng.tier_of(state)
    assert tier in ("B", "C")
    state, outs = run(eng, [ev("objection", 6 * minute, objection_id="o1", target_id="c3", target_kind="complaint")], state)
    excluded = state["sc"]
    assert excluded < high and "c3" in state["x"]
    state, _ = run(eng, [ev("objection_resolution", 7 * minute, objection_id="o1", target_id="c3", resolution="upheld")], state)
    same_time = Engine(cfg).evaluate(untouched, state["t"])[0]  # no objection, same moment
    assert state["sc"] == pytest.approx(same_time, abs=0.01) and not state["x"]
    changes = []
    for i in range(3):
        state, outs = run(eng, [ev("objection_resolution", 8 * minute, objection_id=f"o{i}", target_id=f"c{i}",
                                   resolution="revoked")], state)
        changes += [o for o in outs if o["type"] == "spotcheck_change"]
    state, outs = run(eng, [ev("objection_resolution", 9 * minute, objection_id="o9", target_id="c3",
                               resolution="revoked")], state)
    # the items behind the tier were revoked: the tier is re-decided at once, not held by the 30-day dwell
    assert state["sc"] < 1.0 and eng.tier_of(state) == "A"
    changes += [o for o in outs if o["type"] == "spotcheck_change"]
    assert changes and changes[-1]["to_tier"] == "A"


def _effect(eng, state, event):
    state, outs = run(eng, [event], state)
    risk = [o for o in outs if o["type"] == "risk_change"]
    assert len(risk) == 1, outs  # every step of a contest shows in the entity's history
    return state, risk[0]["objection"], risk[0]


def test_every_objection_step_says_what_it_did_to_the_score():
    """Until 2026-12-05 an objection to a complaint the entity no longer keeps individually (all but
    its newest 5) was recorded and changed nothing, silently: a regulator who revoked it could not
    tell that it still counted. Each step now forces a risk change that names its effect."""
    eng = Engine(Config())
    hour = 1 / 24
    state, _ = run(eng, [ev("complaint", i * hour, complaint_id=f"c{i}", category=f"k{i}", severity=3)
                         for i in range(8)])
    t = 8 * hour
    state, fx, rc = _effect(eng, state, ev("objection", t, objection_id="o1", target_id="c7", target_kind="complaint"))
    assert (fx["effect"], fx["step"]) == ("excluded", "objection") and rc["score"] < fx["score_before"]
    assert rc["cause_event_id"] == "o1"
    state, fx, _ = _effect(eng, state, ev("objection", t, objection_id="o2", target_id="c7", target_kind="complaint"))
    assert fx["effect"] == "already_disputed"
    state, fx, rc = _effect(eng, state, ev("objection_resolution", t, objection_id="o1", target_id="c7",
                                           resolution="upheld"))
    assert (fx["effect"], fx["resolution"]) == ("restored", "upheld") and rc["score"] > fx["score_before"]
    state, fx, rc = _effect(eng, state, ev("objection", t, objection_id="o3", target_id="c0", target_kind="complaint"))
    assert fx["effect"] == "not_held" and rc["score"] == fx["score_before"]  # c0 is older than the newest 5
    state, fx, rc = _effect(eng, state, ev("objection_resolution", t, objection_id="o3", target_id="c0",
                                           resolution="revoked"))
    assert fx["effect"] == "not_held" and rc["score"] == fx["score_before"]
    state, fx, rc = _effect(eng, state, ev("objection_resolution", t, objection_id="o4", target_id="c6",
                                           resolution="revoked"))  # no objection before: removed at once
    assert fx["effect"] == "removed" and rc["score"] < fx["score_before"]

    lenient = Engine(config_from_dict({"objections": {"exclude_disputed": False}}))
    state, _ = run(lenient, [ev("record", record_id="r1", kind="judicial_default", severity=3)])
    state, fx, rc = _effect(lenient, state, ev("objection", 0.1, objection_id="o", target_id="r1",
                                               target_kind="record"))
    assert fx["effect"] == "counted_while_open" and rc["score"] == fx["score_before"]
    state, fx, _ = _effect(lenient, state, ev("objection_resolution", 0.2, objection_id="o", target_id="r1",
                                              resolution="upheld"))
    assert fx["effect"] == "kept"


def test_revocation_keeps_the_dwell_when_configured():
    cfg = config_from_dict({"detectors": {"complaints": {"signals": {"burst": {"weight": 40}}}},
                            "objections": {"waive_dwell_on_correction": False}})
    eng = Engine(cfg)
    minute = 1 / 1440
    state, _ = run(eng, [ev("complaint", i * minute, complaint_id=f"c{i}", category=f"cat{i}") for i in range(4)])
    tier = eng.tier_of(state)
    assert tier != "A"
    for i in range(4):
        state, _ = run(eng, [ev("objection_resolution", 8 * minute, objection_id=f"o{i}", target_id=f"c{i}",
                                resolution="revoked")], state)
    assert state["sc"] < 1.0 and eng.tier_of(state) == tier  # held by the 30-day dwell
    state, _ = run(eng, [ev("tick", 31)], state)
    assert eng.tier_of(state) == "A"


def test_disputed_counts_when_not_excluded():
    cfg = config_from_dict({"objections": {"exclude_disputed": False}})
    eng = Engine(cfg)
    state, _ = run(eng, [ev("record", record_id="r1", kind="judicial_default", severity=3)])
    before = state["sc"]
    state, _ = run(eng, [ev("objection", 0.1, objection_id="o", target_id="r1", target_kind="record")], state)
    assert state["sc"] == pytest.approx(before, abs=0.01) and "r1" in state["x"]
    state, _ = run(eng, [ev("objection_resolution", 0.2, objection_id="o", target_id="r1", resolution="corrected")], state)
    assert state["sc"] == 0.0


def test_dwell_time_holds_de_escalation(config):
    eng = Engine(config)
    state, _ = run(eng, [ev("complaint", i / 100, complaint_id=f"c{i}", category=f"k{i}", severity=3) for i in range(8)])
    assert eng.tier_of(state) != "A"
    raised = eng.tier_of(state)
    state, _ = run(eng, [ev("tick", 10)], state)  # burst decayed, but dwell is 30 days
    assert eng.tier_of(state) == raised
    state, outs = run(eng, [ev("tick", 45)], state)
    assert eng.tier_of(state) == "A"
    assert [o["to_tier"] for o in outs if o["type"] == "spotcheck_change"] == ["A"]


def test_sensor_breach_and_silence_alerts(config):
    eng = Engine(config)
    evs = [ev("sensor_reading", i * 300 / 86400, device_id="f1", metric="temperature", value=4.0) for i in range(20)]
    evs += [ev("sensor_reading", (20 + i) * 300 / 86400, device_id="f1", metric="temperature", value=11.0)
            for i in range(5)]
    state, outs = run(eng, evs)
    fired = [o for o in outs if o["type"] == "alert_candidate"]
    assert [(o["signal"], o["status"], o["severity"]) for o in fired] == [("sensors.limit_breach", "firing", "critical")]
    assert fired[0]["dedup_key"] == f"{E}:sensors.limit_breach"
    state, outs = run(eng, [ev("tick", 1.0)], state)  # a day without readings
    assert ("sensors.silence", "firing") in [(o["signal"], o["status"]) for o in outs if o["type"] == "alert_candidate"]


def test_config_switch_changes_decisions(config):
    events = [ev("record", record_id="r1", kind="penalty", severity=3)]
    low, _ = run(Engine(config), events)
    data = config.model_dump()
    data["detectors"]["records"]["signals"]["penalties"]["weight"] = 60
    data["version"] = "heavier"
    high, outs = run(Engine(config_from_dict(data)), events)
    assert high["sc"] > low["sc"] and outs[0]["config_version"] == "heavier"


# ------------------------------------------------------------- properties

signals = st.dictionaries(
    st.sampled_from(sorted(Config().signal_specs)),
    st.tuples(st.floats(0, 1), st.floats(0, 1e7)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(signals, st.floats(0, 2e7))
def test_score_bounded(sig, now):
    s = Scorer(Config())
    score, parts = s.score({k: [v, t, []] for k, (v, t) in sig.items()}, now)
    assert 0.0 <= score <= 100.0
    assert all(p[0] >= 0 for p in parts)


@given(signals, st.floats(0, 2e7), st.integers(1, 6))
def test_reasons_add_up_to_the_score(sig, now, max_reasons):
    """Until 2026-12-07 reasons past ``max_reasons`` were left out, and the list summed to less."""
    s = Scorer(Config.model_validate({"scoring": {"max_reasons": max_reasons}}))
    score, parts = s.score({k: [v, t, []] for k, (v, t) in sig.items()}, now)
    reasons = s.reasons(parts, score)
    assert len(reasons) <= max_reasons + 1 and all(r["code"] != "other" for r in reasons[:-1])
    assert abs(sum(r["contribution"] for r in reasons) - score) <= 0.001 * len(reasons) + 1e-9
    if parts:
        assert abs(sum(r["share"] for r in reasons) - 1.0) <= 0.0001 * len(reasons)
    assert sum(len(r.get("codes", [r["code"]])) for r in reasons) == len(parts)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 3), st.floats(0, 100), st.floats(0, 100))
def test_tier_monotone_in_score(prev, a, b):
    s = Scorer(Config())
    lo, hi = min(a, b), max(a, b)
    assert s.next_tier(prev, lo) <= s.next_tier(prev, hi)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 3), st.floats(0, 100))
def test_tier_hysteresis(prev, score):
    s = Scorer(Config())
    k = s.next_tier(prev, score)
    if k > prev:
        assert score >= s.ups[k]
    elif k < prev:
        assert score < s.downs[prev]
    else:
        assert score < (s.ups[prev + 1] if prev + 1 < len(s.ups) else 101) and score >= s.downs[prev]
    assert s.next_tier(k, score) == k  # no flapping: staying put at the same score


def test_an_entity_in_a_tier_the_config_no_longer_has_moves_to_the_highest_one(config):
    """A valid config change can remove tiers. Until 2026-11-28 every later event of an entity in a
    removed tier raised IndexError in the engine: the worker dead-lettered all of them (engine_error),
    and the re-decide pass after the change would have dead-lettered a tick for each."""
    d = config.model_dump(mode="json")
    for t, up in zip(d["tiers"][1:], (1, 2, 3)):
        t.update(up=up, down=up / 2)
    eng = Engine(config_from_dict(d))
    state, _ = run(eng, [ev("record", record_id="r1", kind="judicial_default", severity=3)])
    assert eng.tier_of(state) == "D"
    d3 = dict(d, version="three", tiers=d["tiers"][:3])
    d3["tier_alerts"] = dict(d["tier_alerts"], tiers={k: v for k, v in d["tier_alerts"]["tiers"].items() if k != "D"})
    eng3 = Engine(config_from_dict(d3))
    state, outs = run(eng3, [ev("tick", 1), ev("complaint", 2, complaint_id="c1", category="x")], state)
    assert eng3.tier_of(state) == "C" and state["ti"] == 2
    assert outs and outs[0]["type"] == "risk_change" and outs[0]["tier"] == "C"  # the view leaves "D"
    assert not [o for o in outs if o["type"] == "spotcheck_change"]


def test_objections_for_an_entity_made_before_a_detector_was_enabled(config):
    """A config change can enable a detector: states made before it hold nothing for it. Until
    2026-11-28 an objection or a resolution for such an entity raised KeyError in the engine (the
    worker dead-lettered it, engine_error)."""
    d = config.model_dump(mode="json")
    d["detectors"]["records"] = dict(d["detectors"]["records"], enabled=False)
    state, _ = run(Engine(config_from_dict(dict(d, version="no-records"))),
                   [ev("complaint", complaint_id="c1", category="x")])
    assert "records" not in state["d"]
    eng = Engine(config)
    state, outs = run(eng, [ev("objection", 1, objection_id="o1", target_id="r9", target_kind="record", reason="x"),
                            ev("objection_resolution", 2, objection_id="o1", target_id="r9", resolution="revoked"),
                            ev("objection_resolution", 2, objection_id="o2", target_id="r8", resolution="revoked"),
                            ev("record", 3, record_id="r1", kind="penalty", severity=2)], state)
    assert state["d"]["records"] and any(o["type"] == "risk_change" for o in outs)


def test_a_redecide_tick_shows_the_decision_under_the_config_in_force(config):
    """After a config change the worker ticks every entity with ``redecide``: one with a risk state
    gets a risk change even when its score and tier did not move, so the view names the config in
    force (and a renamed tier by its new name). A plain tick emits nothing then; an entity never
    scored stays silent either way."""
    eng = Engine(config)
    state, _ = run(eng, [ev("record", record_id="r1", kind="judicial_default", severity=3)])
    quiet, _ = run(eng, [ev("entity", name="Shop", industry="food", region="350100")], None)  # registered only
    d = config.model_dump(mode="json")
    d["version"] = "renamed"
    d["tiers"][1]["name"] = "B2"
    eng2 = Engine(config_from_dict(d))
    assert run(eng2, [ev("tick", 0)], state)[1] == []
    state, outs = run(eng2, [ev("tick", 0, redecide=True)], state)
    assert [(o["type"], o["tier"], o["config_version"]) for o in outs] == [("risk_change", "B2", "renamed")]
    assert run(eng2, [ev("tick", 0, redecide=True)], quiet)[1] == []


def test_events_that_arrive_after_a_tick_ahead_of_the_feed_count_at_their_own_time(config):
    """The worker's wall-clock ticks (and a buffered upload, a backfill) can move an entity's clock
    past events still on their way. Until 2026-11-28 such events were taken at the clock: a sensor
    series kept one of them and dropped the rest as stale, and complaints days apart, arriving
    together, became a burst that raised the tier and fired an alert."""
    minute = 1 / 1440
    readings = [ev("sensor_reading", i * minute, device_id="f1", metric="temperature", value=4.0 + 0.1 * (i % 3))
                for i in range(120)]
    eng = Engine(config)
    state, _ = run(eng, readings[:60] + [ev("tick", 90 * minute)] + readings[60:])
    # every reading counted (90 before: 30 of the 31 dated before the tick were dropped as stale)
    assert state["d"]["sensors"]["temperature@f1"][4] == 120

    complaints = [ev("complaint", d, complaint_id=f"c{d}", category=f"cat{d}", severity=2) for d in range(6)]
    in_time, _ = run(Engine(config), complaints + [ev("tick", 10)])
    late, outs_late = run(Engine(config), [ev("tick", 10)] + complaints)
    assert late["d"]["complaints"] == in_time["d"]["complaints"]
    assert "complaints.burst" not in late["g"]  # no burst (1.0 before), no tier change, no alert (both before)
    assert {o["type"] for o in outs_late} <= {"risk_change"} and late["ti"] == in_time["ti"] == 0

    penalty = ev("record", 0, record_id="r1", kind="penalty", severity=3)  # a year old when entered
    fresh, _ = run(Engine(config), [ev("record", 365, record_id="r1", kind="penalty", severity=3)])
    entered_late, _ = run(Engine(config), [ev("tick", 365), penalty])
    assert 0 < entered_late["sc"] < fresh["sc"]  # it decayed for its year (full points before)


def test_events_a_detector_does_not_apply_are_counted(config):
    """Repeats (same id) and a reading not after its series' last change no signal; the engine counts
    them per detector (the worker exports them as riskwatch_events_ignored_total)."""
    eng = Engine(config)
    reading = dict(device_id="d1", metric="temperature")
    events = [ev("sensor_reading", 1, value=4.0, **reading), ev("sensor_reading", 1, value=4.0, **reading),
              ev("sensor_reading", 0.5, value=9.0, **reading),  # before the series' last: stale
              ev("complaint", 1, complaint_id="c1", category="quality"),
              ev("complaint", 1, complaint_id="c1", category="quality"),
              ev("inspection", 1, inspection_id="i1", kind="routine", outcome="pass",
                 violations={"critical": 0, "major": 0, "minor": 0}),
              ev("inspection", 1, inspection_id="i1", kind="routine", outcome="pass",
                 violations={"critical": 0, "major": 0, "minor": 0}),
              ev("record", 1, record_id="r1", kind="penalty", severity=1),
              ev("record", 1, record_id="r1", kind="penalty", severity=1),
              ev("sensor_reading", 2, value=4.1, **reading)]
    state, _ = run(eng, events)
    assert eng.ignored == {"sensors": 2, "complaints": 1, "inspections": 1, "records": 1}
    # an earlier inspection sent again after a later one (until 2026-12-04 only the last was recognised)
    later = ev("inspection", 3, inspection_id="i2", kind="routine", outcome="fail",
               violations={"critical": 1, "major": 0, "minor": 0})
    again = ev("inspection", 1, inspection_id="i1", kind="routine", outcome="pass",
               violations={"critical": 0, "major": 0, "minor": 0})
    state, _ = run(eng, [later], state)
    held = orjson.dumps(state["d"]["inspections"])
    state, _ = run(eng, [again], state)
    assert eng.ignored["inspections"] == 2 and orjson.dumps(state["d"]["inspections"]) == held
    # a restoration sent again scales the penalties once
    restore = ev("record", 4, record_id="r9", kind="restoration")
    state, _ = run(eng, [restore], state)
    held = orjson.dumps(state["d"]["records"])
    state, _ = run(eng, [restore], state)
    assert eng.ignored["records"] == 2 and orjson.dumps(state["d"]["records"]) == held


def test_restorations_sent_again_in_order_scale_the_penalties_once(config):
    """Six restorations, then all six again (a file imported twice): the last 4 kept as they arrived
    did not hold them, and each copy scaled the penalties again (0.3125 -> 0.0049 of their points,
    until 2026-12-05); the fingerprints by event time hold them."""
    eng = Engine(config)
    events = [ev("record", i, record_id=f"p{i}", kind="judicial_default", severity=3) for i in range(3)]
    events += [ev("record", 5 + i, record_id=f"s{i}", kind="restoration") for i in range(6)]
    state, _ = run(eng, events)
    held = orjson.dumps(state["d"]["records"]["r"])
    state, _ = run(eng, events, state)
    assert orjson.dumps(state["d"]["records"]["r"]) == held
    assert eng.ignored["records"] == 9


def test_a_tier_alert_is_current_while_the_score_holds_the_tier():
    """Engine.alert_current for ``tier``: an entity raised by judicial defaults stays current a day later and
    is not current years later, when the records' decay has taken its score under the tier's down threshold."""
    eng, st, fired = Engine(Config.model_validate({"tier_alerts": {"tiers": {"B": "warning"}}})), None, []
    for i in range(4):
        st, out = eng.process(st, parse_event({"type": "record", "record_id": f"r{i}", "entity_id": "91350100M000100Y43",
                                              "ts": f"2026-03-0{i + 1}T09:00:00+08:00", "kind": "judicial_default",
                                              "severity": 3}))
        fired += [o for o in out if o["type"] == "alert_candidate" and o["signal"] == "tier" and o["status"] == "firing"]
    assert fired and st["ti"] == 1, (st["sc"], st["ti"])
    assert eng.alert_current(st, "tier", st["t"] + 86400) is True
    assert eng.alert_current(st, "tier", st["t"] + 10 * 365 * 86400) is False
    assert eng.alert_current(st, "tier", st["t"] - 60) is True  # not after the entity's clock: as emitted
