"""An entity's register status (operating, suspended, closed) in the engine: a business that closed is
not silent, it is off; it leaves its peer group; its silence counts again from when it reopens."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from riskwatch.engine import Engine
from riskwatch.events import InvalidEvent, parse_event, register_status

E = "91350100M000100Y43"
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
GROUP = "food|350100"


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def upsert(minutes: float | None, status: str | None = None, region: str = "350100") -> object:
    raw = {"type": "entity", "entity_id": E, "name": "Fuzhou Cold Store", "industry": "food", "region": region}
    if minutes is not None:
        raw["ts"] = at(minutes)
    if status is not None:
        raw["status"] = status
    return parse_event(raw)


def reading(minutes: float) -> object:
    return parse_event({"type": "sensor_reading", "entity_id": E, "device_id": "pm1", "metric": "pm25",
                        "value": 20.0, "ts": at(minutes)})


def tick(minutes: float) -> object:
    return parse_event({"type": "tick", "entity_id": E, "ts": at(minutes)})


def run(eng: Engine, events, state=None):
    outs = []
    for e in events:
        state, o = eng.process(state, e)
        outs += o
    return state, outs


def alerts(outs) -> list[tuple[str, str]]:
    return [(o["signal"], o["status"]) for o in outs if o["type"] == "alert_candidate"]


def peers(eng: Engine, key: str = GROUP) -> float:
    g = eng.models.peers.groups.get(key)
    return g[2] if g else 0.0


def test_a_closed_business_s_silent_device_resolves_its_silence_alert_and_raises_none(config):
    """pm25 expects a reading every 600 s; silence is 3 x that. A business that closes switches its
    devices off: the silence alert it raised resolves when the register says so, and no tick after that
    raises one. Before 2026-12-06 a closed business kept its silence (+20 points) and its alert forever."""
    eng = Engine(config)
    st, _ = run(eng, [upsert(0)] + [reading(m) for m in range(0, 60, 10)])
    st, outs = run(eng, [tick(120)], st)  # 70 minutes after its last reading
    assert alerts(outs) == [("sensors.silence", "firing")]
    silent = st["sc"]
    st, outs = run(eng, [upsert(130, "closed")], st)
    assert alerts(outs) == [("sensors.silence", "resolved")]
    [rc] = [o for o in outs if o["type"] == "risk_change"]
    assert rc["score"] < silent and rc["cause_event_id"] == f"entity:{E}"
    assert register_status(st) == ("closed", (T0 + timedelta(minutes=130)).timestamp())
    st, outs = run(eng, [tick(m) for m in (200, 600, 6000)], st)
    assert alerts(outs) == [] and "sensors.silence" not in {c for c, v in st["g"].items() if v[0]}
    assert eng.next_tick(st) is None or eng.next_tick(st) > (T0 + timedelta(minutes=6000)).timestamp()


def test_a_breach_ends_with_the_closure_unless_the_device_goes_on_reporting(config):
    """pm25 above 150 for an hour is a breach (critical alert). Its devices off, a closed business's
    breach would have held for good (a step ended only by a reading): it ends with the closure. A device
    that still reports after it shows a business trading though closed: its breach counts again."""
    eng = Engine(config)
    high = [parse_event({"type": "sensor_reading", "entity_id": E, "device_id": "pm1", "metric": "pm25",
                         "value": 200.0, "ts": at(m)}) for m in range(0, 80, 10)]
    st, outs = run(eng, [upsert(0)] + high)
    assert alerts(outs) == [("sensors.limit_breach", "firing")]
    st, outs = run(eng, [upsert(75, "closed")], st)
    assert alerts(outs) == [("sensors.limit_breach", "resolved")]
    st, outs = run(eng, [tick(200), tick(3000)], st)
    assert alerts(outs) == [] and not st["g"]["sensors.limit_breach"][0]
    st, outs = run(eng, [parse_event({"type": "sensor_reading", "entity_id": E, "device_id": "pm1", "metric": "pm25",
                                      "value": 210.0, "ts": at(3010)})], st)
    assert alerts(outs) == [("sensors.limit_breach", "firing")]


def test_silence_counts_from_the_reopening_not_from_the_last_reading_before_the_closure(config):
    eng = Engine(config)
    st, _ = run(eng, [upsert(0)] + [reading(m) for m in range(0, 60, 10)] + [upsert(60, "suspended")])
    st, outs = run(eng, [upsert(10_000, "operating")], st)  # a week later: open again
    assert alerts(outs) == [] and register_status(st) == ("operating", (T0 + timedelta(minutes=10_000)).timestamp())
    st, outs = run(eng, [tick(10_020)], st)  # 20 minutes: not yet 3 x 600 s since it opened
    assert alerts(outs) == []
    st, outs = run(eng, [tick(10_031)], st)  # 31 minutes without a reading since it opened: silent
    assert alerts(outs) == [("sensors.silence", "firing")]
    st, outs = run(eng, [reading(10_032)], st)
    assert alerts(outs) == [("sensors.silence", "resolved")]


def test_only_operating_entities_count_in_their_peer_group(config):
    """The peer group's complaint rate is per operating entity: a closed one would dilute it."""
    eng = Engine(config)
    st, _ = run(eng, [upsert(0)])
    assert peers(eng) == 1
    st, _ = run(eng, [upsert(1, "closed")], st)
    assert peers(eng) == 0
    st, _ = run(eng, [upsert(2, "closed", region="350102")], st)  # moves while closed: counted nowhere
    assert peers(eng) == 0 and peers(eng, "food|350102") == 0
    st, _ = run(eng, [upsert(3)], st)  # no status: the register record says operating again
    assert peers(eng) == 1 and peers(eng, "food|350102") == 0 and register_status(st)[0] == "operating"
    st, _ = run(eng, [upsert(4), upsert(5)], st)  # the same record again: counted once
    assert peers(eng) == 1
    fresh = Engine(config)
    run(fresh, [upsert(0, "closed")])  # first seen closed: never counted
    assert peers(fresh) == 0


def test_a_closed_business_s_complaints_still_count(config):
    """A complaint about a business the register says is closed may be one operating without a licence:
    it is scored as any other."""
    eng = Engine(config)
    st, _ = run(eng, [upsert(0, "closed")])
    st, outs = run(eng, [parse_event({"type": "complaint", "complaint_id": f"c{i}", "entity_id": E, "ts": at(i),
                                      "category": "food_safety", "severity": 3}) for i in range(5)], st)
    assert st["sc"] > 0 and any(o["type"] == "risk_change" for o in outs)


def test_a_state_reset_keeps_the_register_status(config):
    """A readable state keeps its status through a reset; an unreadable one takes the view's."""
    eng = Engine(config)
    st, _ = run(eng, [upsert(0), upsert(5, "closed")])
    reset = {"type": "state_reset", "entity_id": E, "reset_id": "reset-1", "ts": at(10), "author": "ops",
             "reason": "stuck"}
    st2, _ = eng.process(st, parse_event(reset))
    assert register_status(st2) == register_status(st)
    st3, _ = eng.process("not a state", parse_event(dict(reset, register_data={
        "industry": "food", "region": "350100", "name": "Fuzhou Cold Store", "status": "suspended",
        "status_since": at(5)})))
    assert register_status(st3) == ("suspended", (T0 + timedelta(minutes=5)).timestamp())


def test_an_unknown_status_is_refused_with_the_field_named():
    with pytest.raises(InvalidEvent, match=r"status: Input should be 'operating', 'suspended' or 'closed'"):
        parse_event({"type": "entity", "entity_id": E, "name": "n", "industry": "food", "region": "350100",
                     "status": "bankrupt"})


def test_the_simulator_closes_businesses_that_then_go_quiet_and_the_engine_raises_no_silence_for_them(config):
    """``simulate --closing-share`` (the demo's 1%): a closing upsert, then nothing from the entity. After the
    feed, a tick a day later finds every closed one without silence; open ones with devices are silent."""
    from riskwatch.simulate import Simulation

    sim = Simulation(n_entities=300, seed=11, days=10, closing_share=0.15)
    raws = list(sim.events(n_events=20_000))
    closed_at = {r["entity_id"]: r["ts"] for r in raws if r["type"] == "entity" and r.get("status") == "closed"}
    assert len(closed_at) >= 20
    assert {t["entity_id"] for t in sim.truth() if t["closed"]} == set(closed_at)
    assert not [r for r in raws if r["entity_id"] in closed_at and r["type"] != "entity"
                and r["ts"] >= closed_at[r["entity_id"]]]
    eng = Engine(config)
    states: dict = {}
    for r in raws:
        ev = parse_event(r)
        states[ev.entity_id], _ = eng.process(states.get(ev.entity_id), ev)
    end = datetime.fromisoformat(max(r["ts"] for r in raws)) + timedelta(days=1)
    silent = {}
    for eid, st in states.items():
        st, _ = eng.process(st, parse_event({"type": "tick", "entity_id": eid, "ts": end.isoformat()}))
        silent[eid] = st["g"].get("sensors.silence", [0.0])[0] > 0
    with_devices = {r["entity_id"] for r in raws if r["type"] == "sensor_reading"}
    assert with_devices & set(closed_at) and not any(silent[e] for e in closed_at)
    assert all(silent[e] for e in with_devices - set(closed_at))  # the control: a day without readings is silence
