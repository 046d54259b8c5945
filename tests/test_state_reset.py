"""An operator's state reset (``state_reset`` on the commands topic): the engine starts an entity's
risk state again, the worker's processor takes it even when the stored state cannot be read, and
nothing but the commands topic can carry one (pure logic: the engine, the processor, the ingest plan)."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from riskwatch.config import load_config
from riskwatch.engine import Engine
from riskwatch.errors import InvalidEvent, StateUnreadable
from riskwatch.events import RiskChange, SpotcheckChange, parse_event
from riskwatch.ingest.plan import validate
from riskwatch.simulate import Simulation
from riskwatch.streams.codec import partition_for
from riskwatch.streams.processor import BatchProcessor

CFG = load_config()  # the shipped config: tiers C and D alert
EID = "91350100M000100Y43"
P = partition_for(EID.encode(), 4)


def _reset(ts: str = "2026-03-20T00:00:00+00:00", after_seq: int = 0) -> dict:
    return {"type": "state_reset", "reset_id": "reset-1", "entity_id": EID, "ts": ts, "author": "ops-li",
            "reason": "state written by release 1.4.2", "after_seq": after_seq}


def _feed() -> list[dict]:
    """Register data, then judicial defaults and a complaint burst (a tier above the lowest, open alerts)."""
    evs = [{"type": "entity", "entity_id": EID, "name": "Fuzhou Harbour Foods", "industry": "food",
            "region": "350100"}]
    evs += [{"type": "record", "record_id": f"r{i}", "entity_id": EID, "ts": f"2026-03-0{i + 1}T09:00:00+00:00",
             "kind": "judicial_default", "severity": 3} for i in range(3)]
    evs += [{"type": "complaint", "complaint_id": f"c{i}", "entity_id": EID, "ts": f"2026-03-10T09:0{i}:00+00:00",
             "category": f"k{i}"} for i in range(6)]
    return evs


def _run(eng: Engine, state, raws: list[dict]):
    outs: list[dict] = []
    for raw in raws:
        state, out = eng.process(state, parse_event(raw))
        outs += out
    return state, outs


def _scored():
    eng = Engine(CFG)
    st, _ = _run(eng, None, _feed())
    st["o"] = {f"rw.complaints:{P}": 41}  # the runtime's source offsets
    assert eng.tier_of(st) in ("C", "D") and "tier" in st["al"] and len(st["al"]) >= 2, st["al"]
    return eng, st


def test_a_reset_starts_the_state_again_keeps_the_tier_until_the_dwell_passes_and_says_so():
    """A reset changes what the engine knows, not by itself how closely the entity is watched."""
    eng, st = _scored()
    old_score, old_tier, old_n, old_open = st["es"], eng.tier_of(st), st["n"], list(st["al"])

    st, out = eng.process(st, parse_event(_reset()))
    rc, *cands = out
    RiskChange.model_validate(rc)
    assert (rc["score"], rc["previous_score"], rc["tier"], rc["reasons"]) == (0.0, old_score, old_tier, [])
    assert rc["reset"] == {"reset_id": "reset-1", "author": "ops-li", "reason": "state written by release 1.4.2"}
    assert rc["seq"] == old_n + 1 and rc["cause_event_id"] == "reset-1"
    assert rc["tier_since"] == rc["ts"] == datetime(2026, 3, 20, tzinfo=timezone.utc)  # the dwell starts again
    # the signal alerts resolve (their evidence went with the state); the tier alert stays with the tier
    assert sorted(c["signal"] for c in cands) == sorted(c for c in old_open if c != "tier")
    assert {(c["type"], c["status"], c["event_ids"][0]) for c in cands} == {("alert_candidate", "resolved",
                                                                              "reset-1")}
    assert st["al"] == ["tier"] and eng.tier_of(st) == old_tier
    # what stays: register data, offsets; what goes: every signal and detector state
    assert st["m"][:3] == ["food", "350100", "Fuzhou Harbour Foods"] and st["o"] == {f"rw.complaints:{P}": 41}
    assert (st["g"], st["sc"]) == ({}, 0.0)
    # with nothing new, the tier comes down when the de-escalation dwell has passed since the reset
    due = eng.next_tick(st)
    assert due == st["tt"] + eng.scorer.dwell_down
    early, _ = eng.process(dict(st, al=list(st["al"])), parse_event(
        {"type": "tick", "entity_id": EID, "ts": datetime.fromtimestamp(due - 3600, timezone.utc).isoformat()}))
    assert eng.tier_of(early) == old_tier
    st, out = eng.process(st, parse_event({"type": "tick", "entity_id": EID,
                                           "ts": datetime.fromtimestamp(due, timezone.utc).isoformat()}))
    sc = [o for o in out if o["type"] == "spotcheck_change"]
    assert sc and sc[0]["from_tier"] == old_tier and eng.tier_of(st) != old_tier
    assert [(o["signal"], o["status"]) for o in out if o["type"] == "alert_candidate"] == [("tier", "resolved")]


def test_a_reset_without_keeping_the_tier_goes_to_the_lowest_and_resolves_every_alert():
    eng, st = _scored()
    old_tier, old_open = eng.tier_of(st), list(st["al"])
    st, out = eng.process(st, parse_event({**_reset(), "keep_tier": False}))
    rc, sc, *cands = out
    SpotcheckChange.model_validate(sc)
    assert rc["tier"] == "A" and (sc["from_tier"], sc["to_tier"], sc["cause_event_id"]) == (old_tier, "A", "reset-1")
    assert sorted(c["signal"] for c in cands) == sorted(old_open) and st["al"] == [] and st["ti"] == 0


def test_after_a_reset_the_state_is_a_new_entitys_but_for_register_data_offsets_count_and_clock():
    """So the entity is scored from then on as a new one in its peer group (what the population models
    learned from its past events stays: a reset takes nothing back from them)."""
    eng = Engine(CFG)
    st, _ = _run(eng, None, _feed())
    st["o"] = {f"rw.complaints:{P}": 41}
    n, m, ti = st["n"], st["m"], st["ti"]
    st, _ = eng.process(st, parse_event(_reset()))
    at = datetime(2026, 3, 20, tzinfo=timezone.utc).timestamp()
    assert st == {**eng.new_state(EID), "m": m, "o": {f"rw.complaints:{P}": 41}, "n": n + 1, "t": at, "tt": at,
                  "et": at, "ti": ti, "al": ["tier"]}
    st, out = _run(eng, st, [{"type": "complaint", "complaint_id": "d1", "entity_id": EID,
                              "ts": "2026-03-21T09:00:00+00:00", "category": "m1", "severity": 3}])
    # the group's rate (the entity alone in its group, with its burst 11 days before) stays: one complaint
    # is no surprise against it (until 2026-12-07 the young group's rate was read at 4% and it was one)
    assert [r["code"] for r in out[0]["reasons"]] == ["complaints.burst"]
    assert eng.models.peers.rate(f"{m[0]}|{m[1]}", at) * 86400 > 0.4
    assert out[0]["previous_score"] == 0.0 and [r["event_ids"] for r in out[0]["reasons"]] == [["d1"]]


@pytest.mark.parametrize("old,tier", [(None, "C"), ({}, "C"), ({"t": "x", "al": "tier", "ti": 99, "es": 1e9, "n": -3,
                                                                  "m": 7}, "D"),
                                      ({"v": 1, "id": EID, "al": ["tier", "no.such_signal", 5], "ti": 2, "t": 1.8e9},
                                       "C")],
                         ids=["none", "empty", "wrong-types", "odd-alerts"])
def test_a_reset_never_fails_on_a_state_the_engine_cannot_read(old, tier):
    """What it is for: a state the worker could not read (None: the tier is the command's, the view's)
    or apply events to (engine_error: the tier is its own when it has one)."""
    eng = Engine(CFG)
    st, out = eng.process(old, parse_event({**_reset(after_seq=17), "tier": "C"}))
    assert out[0]["type"] == "risk_change" and RiskChange.model_validate(out[0]).score == 0.0
    assert out[0]["tier"] == tier
    assert st["n"] == 18 and st["id"] == EID
    for o in out[1:]:
        assert o["type"] in ("spotcheck_change", "alert_candidate")
        assert o.get("signal") in (None, "tier") and o.get("status") in (None, "resolved")
    if old and old.get("t") == 1.8e9:  # the clock never goes back: its decisions come after the old ones
        assert st["t"] == 1.8e9
    # and the state it leaves takes events as a new one
    st, _ = _run(eng, st, [{"type": "complaint", "complaint_id": "z1", "entity_id": EID,
                            "ts": "2027-02-01T00:00:00+00:00", "category": "hygiene"}])
    assert st["n"] == 19


def test_a_reset_of_an_unreadable_state_takes_the_views_register_data_and_keeps_the_peer_group_count():
    """Without it the new state had no peer group: its complaints were not compared with its peers' until an
    upsert came, and that upsert counted the entity in its group a second time."""
    eng = Engine(CFG)
    upsert = _feed()[0]
    st, _ = _run(eng, None, [upsert])
    assert eng.models.peers.groups["food|350100"][2] == 1
    register = {"industry": "food", "region": "350100", "name": "Fuzhou Harbour Foods"}
    st, _ = eng.process(None, parse_event({**_reset(), "register_data": register}))  # the worker could not read it
    assert st["m"] == ["food", "350100", "Fuzhou Harbour Foods"]
    st, _ = _run(eng, st, [upsert])
    assert eng.models.peers.groups["food|350100"][2] == 1
    with pytest.raises(InvalidEvent) as exc:
        parse_event({**_reset(), "register_data": {**register, "region": "35"}})
    assert "register_data.region" in str(exc.value)


def test_a_reset_of_an_unreadable_state_resolves_the_signal_alerts_the_alert_store_holds_open():
    eng = Engine(CFG)
    st, out = eng.process(None, parse_event({**_reset(), "tier": "C", "open_alerts": ["complaints.burst", "tier"]}))
    assert [(o["signal"], o["status"]) for o in out if o["type"] == "alert_candidate"] == [("complaints.burst",
                                                                                           "resolved")]
    assert st["al"] == ["tier"]  # kept with tier C, which alerts
    _, out = eng.process(None, parse_event({**_reset(), "tier": "C", "open_alerts": ["tier"], "keep_tier": False}))
    assert [(o["signal"], o["status"]) for o in out if o["type"] == "alert_candidate"] == [("tier", "resolved")]


def test_an_objection_open_across_a_reset_is_resolved_with_nothing_to_change():
    eng, st = _scored()
    st, _ = _run(eng, st, [{"type": "objection", "objection_id": "o1", "entity_id": EID,
                            "ts": "2026-03-11T00:00:00+00:00", "target_id": "r2", "target_kind": "record"}])
    st, _ = eng.process(st, parse_event(_reset()))
    effects = []
    for res in ("revoked", "upheld"):
        st, out = _run(eng, st, [{"type": "objection_resolution", "objection_id": "o1", "entity_id": EID,
                                  "ts": "2026-03-21T00:00:00+00:00", "target_id": "r2", "resolution": res}])
        effects.append((out[0]["objection"]["effect"], out[0]["score"]))
    assert effects == [("not_held", 0.0), ("kept", 0.0)]


def _message(raws: list[dict]) -> bytes:
    return orjson.dumps({"batch": raws})


def test_the_processor_takes_a_reset_for_an_unreadable_state_and_the_events_after_it():
    def unreadable(eid):
        raise StateUnreadable(f"the stored state of {eid} is not JSON")

    before, after = _feed()[1], _feed()[2]
    proc = BatchProcessor(Engine(CFG), 4, max_future_s=0)
    res = proc.handle(_message([before, _reset(), after]), "rw.commands", P, 9, unreadable)
    assert [r for r, _ in res.dead] == ["state_unreadable"]  # before the reset: waits in the dead letters
    assert orjson.loads(orjson.loads(res.dead[0][1])["original"])["record_id"] == before["record_id"]
    st = res.states[EID]
    assert st["n"] == 2 and st["o"] == {f"rw.commands:{P}": 9} and res.applied == 2
    assert [o["type"] for o in res.outputs][:1] == ["risk_change"] and res.outputs[0]["reset"]["author"] == "ops-li"
    # redelivered (a crash before the commit): skipped by the offset the new state keeps
    again = proc.handle(_message([before, _reset(), after]), "rw.commands", P, 9, lambda eid: st)
    assert again.skipped == 3 and not again.outputs and not again.dead


def test_a_reset_on_any_topic_but_commands_is_dead_lettered_and_the_ingest_gateway_refuses_it():
    proc = BatchProcessor(Engine(CFG), 4, max_future_s=0, commands_topic="acme.commands")
    loaded = []
    res = proc.handle(_message([_reset()]), "acme.complaints", P, 3, lambda eid: loaded.append(eid))
    [(reason, record)] = res.dead
    assert reason == "wrong_topic" and "acme.commands only" in orjson.loads(record)["errors"][0]["message"]
    assert not loaded and not res.states and not res.outputs
    ok, bad = validate([(0, _reset(), None)], "uscc")
    assert not ok and bad[0][1][0]["rule"] == "not_ingestible" and "reset-state" in bad[0][1][0]["message"]


def test_replay_of_a_file_with_a_reset_is_deterministic():
    evs = list(Simulation(n_entities=30, seed=3, days=20).events(n_events=1500))
    target = next(e["entity_id"] for e in evs if e["type"] == "complaint")
    mid = len(evs) // 2
    evs.insert(mid, {**_reset(evs[mid - 1]["ts"] if "ts" in evs[mid - 1] else "2026-03-20T00:00:00+00:00"),
                     "entity_id": target})

    def run():
        eng, states, outs = Engine(CFG), {}, []
        for raw in evs:
            ev = parse_event(raw)
            states[ev.entity_id], out = eng.process(states.get(ev.entity_id), ev)
            outs += out
        return orjson.dumps(outs, option=orjson.OPT_SORT_KEYS)
    first = run()
    assert b'"reset":{"author":"ops-li"' in first and first == run()
