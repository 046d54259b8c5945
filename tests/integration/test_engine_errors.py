"""An event the engine fails on, in a real worker: dead-lettered, and nothing of it left in the state."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta

import orjson

from riskwatch.config import load_config
from riskwatch.engine import Engine
from riskwatch.events import parse_event
from riskwatch.simulate import Simulation

from .conftest import wait_for
from .helpers import changelog_states, produce, read_topic

# a bug put into the worker's engine (a ``sitecustomize`` module on its PYTHONPATH): it fails on the
# complaints this test marks, after it has updated the state and queued the model updates
FAULT = '''
    import riskwatch.engine as _engine

    _process = _engine.Engine.process


    def process(self, state, ev):
        state, outs = _process(self, state, ev)
        if str(getattr(ev, "complaint_id", "")).startswith("bug-"):
            raise ZeroDivisionError("a bug the test put in")
        return state, outs


    _engine.Engine.process = process

    import riskwatch.streams.processor as _processor

    _fact = _processor.inspection_fact


    def inspection_fact(ev):  # after the engine applied the event: the whole message fails
        if ev.inspection_id.startswith("boom-"):
            raise RuntimeError("a bug outside the engine the test put in")
        return _fact(ev)


    _processor.inspection_fact = inspection_fact
'''


def _latest(events: list[dict]) -> dict[str, str]:
    """Each entity's newest event time."""
    last: dict[str, str] = {}
    for e in events:
        if e.get("ts"):
            last[e["entity_id"]] = max(last.get(e["entity_id"], e["ts"]), e["ts"], key=datetime.fromisoformat)
    return last


def _count_and_clock(events: list[dict]) -> dict[str, tuple]:
    """Each entity's count of applied events and clock, by the engine (neither depends on the models)."""
    engine, states = Engine(load_config()), {}
    for e in events:
        states[e["entity_id"]] = engine.process(states.get(e["entity_id"]), parse_event(e))[0]
    return {eid: (st["n"], st["t"]) for eid, st in states.items()}


def _start_with_bugs(tmp_path, workers) -> None:
    (tmp_path / "fault").mkdir()
    (tmp_path / "fault" / "sitecustomize.py").write_text(textwrap.dedent(FAULT))
    workers.start(env={"PYTHONPATH": str(tmp_path / "fault")})


def test_a_failed_event_leaves_nothing_in_the_state_the_worker_stores(stack, tmp_path):
    """Each entity's count of applied events and clock are what a replay without the failed events
    gives, and no state names them. The failed events are the newest of their entities, placed early,
    midway and late in the feed: until 2026-12-07 each one stayed in its entity's state (its clock
    moved to the failed event's time, its count and its complaint kept)."""
    s, workers = stack
    events = list(Simulation(n_entities=60, seed=11, bad_share=0.2, days=30).events(n_events=4000))
    last = _latest(events)
    victims = sorted({e["entity_id"] for e in events if e["type"] == "complaint"})[:6]
    feed = list(events)
    for k, eid in enumerate(victims):
        at = (datetime.fromisoformat(last[eid]) + timedelta(hours=1)).isoformat()
        bug = {"type": "complaint", "complaint_id": f"bug-{k}", "entity_id": eid, "ts": at, "category": "hygiene"}
        feed.insert(len(feed) * (1 + 3 * k) // 20, bug)
    produce(s, feed)
    _start_with_bugs(tmp_path, workers)
    wait_for(lambda: len(read_topic(s.broker, s.topic("deadletter"))) >= len(victims), 120,
             "the failed events dead-lettered", workers.logs)
    wait_for(lambda: workers.metric(0, "riskwatch_events_processed_total") >= len(events), 120,
             "every other event applied", workers.logs)
    dead = [orjson.loads(v) for _, _, v in read_topic(s.broker, s.topic("deadletter"))]
    assert sorted(orjson.loads(d["original"])["complaint_id"] for d in dead) == [f"bug-{k}" for k in range(6)]
    assert {d["reason"] for d in dead} == {"engine_error"}
    assert "a bug the test put in" in dead[0]["errors"][0]["message"]

    expected = _count_and_clock(events)
    stored = wait_for(lambda: (st := changelog_states(s.broker, s.app_id)) and all(
        st.get(eid, {}).get("n") == expected[eid][0] for eid in victims) and st, 60,
        "the victims' states stored", lambda: str({eid: changelog_states(s.broker, s.app_id).get(eid, {}).get("n")
                                                   for eid in victims}) + workers.logs())
    assert {eid: (st["n"], st["t"]) for eid, st in stored.items()} == expected
    assert not [eid for eid, st in stored.items() if b"bug-" in orjson.dumps(st)]
    # the log says so for each, with the bug's traceback once (not once per event it fails on)
    logs = workers.logs()
    assert logs.count("dead-lettered; its state built again without it") == len(victims), logs
    assert logs.count("ZeroDivisionError: a bug the test put in") == 1, logs


def test_a_message_that_fails_whole_leaves_nothing_and_the_rounds_other_messages_stand(stack, tmp_path):
    """A failure outside the engine fails its whole message (dead-lettered, ``worker_error``): the
    states are as if none of its events came, and what the round's earlier messages applied stands.
    Until 2026-12-07 the states this round's earlier messages had updated were kept as the failed
    message left them (its events there applied, and so applied twice when the dead letter came back).
    The failing inspections come after other events of their entities in the feed, so the messages
    read before theirs in a round hold the same entities."""
    s, workers = stack
    events = list(Simulation(n_entities=40, seed=12, bad_share=0.2, days=30).events(n_events=4000))
    last = _latest(events)
    feed = list(events)
    booms = sorted({e["entity_id"] for e in events if e["type"] == "inspection"})[:3]
    for k, eid in enumerate(booms):
        at = (datetime.fromisoformat(last[eid]) + timedelta(hours=1)).isoformat()
        boom = {"type": "inspection", "inspection_id": f"boom-{k}", "entity_id": eid, "ts": at, "kind": "routine",
                "outcome": "pass", "violations": {"critical": 0, "major": 0, "minor": 0}}
        feed.insert(len(feed) * (2 + k) // 5, boom)
    produce(s, feed, batch_size=50)  # small messages: many in a round
    _start_with_bugs(tmp_path, workers)
    wait_for(lambda: len(read_topic(s.broker, s.topic("deadletter"))) >= len(booms), 120,
             "the failed messages dead-lettered", workers.logs)
    dead = [orjson.loads(v) for _, _, v in read_topic(s.broker, s.topic("deadletter"))]
    assert {d["reason"] for d in dead} == {"worker_error"}
    lost = [e for d in dead for e in orjson.loads(d["original"])["batch"]]  # every event of those messages
    assert sorted(e["inspection_id"] for e in lost if str(e.get("inspection_id", "")).startswith("boom-")) == [
        f"boom-{k}" for k in range(3)]
    kept = [e for e in events if e not in lost]
    wait_for(lambda: workers.metric(0, "riskwatch_events_processed_total") >= len(kept), 120,
             "every event of the other messages applied", workers.logs)
    expected = _count_and_clock(kept)
    stored = wait_for(lambda: (st := changelog_states(s.broker, s.app_id)) and all(
        st.get(eid, {}).get("n") == expected[eid][0] for eid in booms) and st, 60,
        "their entities' states stored", lambda: str({eid: changelog_states(s.broker, s.app_id).get(eid, {}).get(
            "n") for eid in booms}) + str({eid: expected[eid] for eid in booms}) + workers.logs())
    assert {eid: (st["n"], st["t"]) for eid, st in stored.items() if eid in expected} == expected
    assert not [eid for eid, st in stored.items() if b"boom-" in orjson.dumps(st)]
