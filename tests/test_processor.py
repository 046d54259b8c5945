"""BatchProcessor: one message in, states and outputs out (pure logic, an engine with a bug)."""

from __future__ import annotations

import copy

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


class _FailsAfterUpdating(Engine):
    """An engine with a bug that one event hits after it has updated the state (its clock, its count,
    its detector's state, its signals) and queued its model updates."""

    def process(self, state, ev):
        state, outs = super().process(state, ev)
        if getattr(ev, "complaint_id", None) == "c-bug":
            raise ZeroDivisionError("division by zero")
        return state, outs


def _stored(states: dict) -> dict:
    return {eid: orjson.dumps(st) for eid, st in states.items()}


def test_an_event_the_engine_fails_on_after_updating_the_state_leaves_nothing_in_it():
    """The state stored is the one the message gives without that event, and so are the model updates
    sent with it. Until 2026-12-07 the state kept what the event had done before the engine failed:
    here its clock (10:30), its count and its complaint."""
    from riskwatch.streams.shared_models import SharedModels

    p = partition_for(EID.encode(), 4)
    other = _neighbour(p)
    first = [{"type": "entity", "entity_id": e, "name": f"shop {e}", "industry": "catering", "region": "350102"}
             for e in (EID, other)]
    first += [_complaint("c0", "2026-11-28T08:00:00+00:00"), {**_complaint("n0", "2026-11-28T08:00:00+00:00"),
                                                               "entity_id": other}]
    batch = [{**_complaint("n1", "2026-11-28T09:00:00+00:00"), "entity_id": other},
             _complaint("c1", "2026-11-28T10:00:00+00:00"), _complaint("c-bug", "2026-11-28T10:30:00+00:00"),
             {**_complaint("n2", "2026-11-28T10:40:00+00:00"), "entity_id": other},
             _complaint("c2", "2026-11-28T11:00:00+00:00")]
    results = []
    for engine, message in ((_FailsAfterUpdating(Config(), SharedModels()), batch),
                            (Engine(Config(), SharedModels()), [e for e in batch if e["complaint_id"] != "c-bug"])):
        proc = BatchProcessor(engine, 4, max_future_s=0, clock=lambda: 1.8e9)
        before = proc.handle(orjson.dumps({"batch": first}), "rw.complaints", p, 6, lambda eid: None).states
        engine.models.drain()
        stored = _stored(before)
        live = {eid: orjson.loads(b) for eid, b in stored.items()}  # updated in place, as the worker's
        res = proc.handle(orjson.dumps({"batch": message}), "rw.complaints", p, 7, live.get,
                          lambda eid: orjson.loads(stored[eid]) if eid in stored else None)
        results.append((res, engine.models.drain()))
    (bad, bad_updates), (good, good_updates) = results
    assert [r for r, _ in bad.dead] == ["engine_error"] and bad.not_applied == {EID: [2]}
    assert bad.states == good.states and bad.applied == good.applied == 4
    assert bad_updates == good_updates and any(u[0] == "peer_complaint" for u in bad_updates)
    assert bad.states[EID]["n"] == 4  # its upsert, c0, c1, c2
    # without ``restore`` the half-update stays (what every caller got until 2026-12-07)
    engine = _FailsAfterUpdating(Config(), SharedModels())
    proc = BatchProcessor(engine, 4, max_future_s=0, clock=lambda: 1.8e9)
    live = {eid: orjson.loads(b) for eid, b in _stored(
        proc.handle(orjson.dumps({"batch": first}), "rw.complaints", p, 6, lambda eid: None).states).items()}
    res = proc.handle(orjson.dumps({"batch": batch}), "rw.complaints", p, 7, live.get)
    assert res.states[EID]["n"] == 5 and res.states[other] == good.states[other]


def _round(proc: BatchProcessor, p: int, messages) -> tuple[dict, list, list]:
    """Messages ((topic, events) each) handled as one round of the worker's, with its ``restore``:
    nothing staged before the round, and the round's earlier messages applied again, each under the
    engine it ran under. Returns the states, each message's result and the model updates it queued."""
    live: dict = {}
    done = []  # (value, topic, offset, result) of the round's messages so far
    updates = []

    def restore(eid):
        st = None
        for value, topic, off, prev in done:
            if eid in prev.states:
                st = proc.apply_again(st, eid, value, topic, p, off, prev.not_applied.get(eid, ()),
                                      engine=prev.engine)
        return st

    for off, (topic, msg) in enumerate(messages, 10):
        value = orjson.dumps({"batch": msg})
        res = proc.handle(value, topic, p, off, live.get, restore)
        live.update(res.states)
        done.append((value, topic, off, res))
        updates.append(proc.engine.models.drain())
    return live, [res for *_, res in done], updates


def test_a_state_is_built_again_over_the_earlier_messages_of_a_round():
    """The worker's ``restore``: the state staged before the round, with the round's earlier messages
    applied again (the events that failed in them passed over, their model updates not queued twice),
    gives the state this message started from."""
    from riskwatch.streams.shared_models import SharedModels

    p = partition_for(EID.encode(), 4)
    register = {"type": "entity", "entity_id": EID, "name": "a shop", "industry": "catering", "region": "350102"}
    messages = [[register, _complaint("c1", "2026-11-28T10:00:00+00:00"),
                 _complaint("c-bug", "2026-11-28T10:10:00+00:00")],
                [_complaint("c2", "2026-11-28T10:20:00+00:00")],
                [_complaint("c3", "2026-11-28T10:30:00+00:00"), _complaint("c-bug", "2026-11-28T10:40:00+00:00"),
                 _complaint("c4", "2026-11-28T10:50:00+00:00")]]
    finals = []
    for engine, msgs in ((_FailsAfterUpdating(Config(), SharedModels()), messages),
                         (Engine(Config(), SharedModels()),
                          [[e for e in m if e.get("complaint_id") != "c-bug"] for m in messages])):
        proc = BatchProcessor(engine, 4, max_future_s=0, clock=lambda: 1.8e9)
        live, results, updates = _round(proc, p, [("rw.complaints", m) for m in msgs])
        finals.append((live[EID], updates, [r.not_applied for r in results]))
    (bad, bad_updates, not_applied), (good, good_updates, _) = finals
    assert not_applied == [{EID: [2]}, {}, {EID: [1]}]
    assert bad == good and bad["n"] == 5
    assert bad_updates == good_updates and all(any(u[0] == "peer_complaint" for u in us) for us in bad_updates)


def test_a_bug_every_event_hits_logs_its_traceback_once_and_then_fewer_lines(caplog):
    """A line per failed event for the first 100 of a kind, then one per 1,000; the traceback once."""
    class _FailsAll(Engine):
        def process(self, state, ev):
            raise ZeroDivisionError("division by zero")

    p = partition_for(EID.encode(), 4)
    proc = BatchProcessor(_FailsAll(Config()), 4, max_future_s=0, clock=lambda: 1.8e9)
    batch = [_complaint(f"c{i}", f"2026-11-28T10:00:{i % 60:02d}+00:00") for i in range(1000)]
    with caplog.at_level("ERROR", logger="riskwatch.streams.processor"):
        res = proc.handle(orjson.dumps({"batch": batch}), "rw.complaints", p, 1, lambda eid: None)
    assert len(res.dead) == 1000
    lines = [r for r in caplog.records if "engine error on" in r.getMessage()]
    assert len(lines) == 101 and sum(1 for r in lines if r.exc_info) == 1
    assert "(1000 so far from ZeroDivisionError at" in lines[-1].getMessage()


def test_a_state_built_again_applies_each_earlier_message_under_the_config_it_ran_under():
    """A config change between two messages of a round, then an event the engine fails on: the state
    built again applies the first message under the config it ran under. Until 2026-12-07 it applied
    it under the config in force at the failure (here a complaint half-life of 2 days, not 7), so
    the stored state differed from the one the same messages give without the failing event."""
    from riskwatch.config import config_from_dict, load_config
    from riskwatch.streams.shared_models import SharedModels

    base = load_config().model_dump(mode="json")
    changed = copy.deepcopy(base)
    changed["version"] = "shorter-memory"
    changed["detectors"]["complaints"]["params"]["short_half_life_days"] = 2
    p = partition_for(EID.encode(), 4)
    register = {"type": "entity", "entity_id": EID, "name": "a shop", "industry": "catering", "region": "350102"}
    first = [register] + [_complaint(f"c{i}", f"2026-11-2{i}T10:00:00+00:00") for i in range(1, 5)]
    change = [{"type": "config_change", "seq": 1, "config": changed}]
    last = [_complaint("c5", "2026-11-25T10:00:00+00:00"), _complaint("c-bug", "2026-11-25T11:00:00+00:00"),
            _complaint("c6", "2026-11-25T12:00:00+00:00")]
    finals = []
    for kind, msgs in ((_FailsAfterUpdating, [first, change, last]),
                       (Engine, [first, change, [e for e in last if e["complaint_id"] != "c-bug"]])):
        models = SharedModels()
        proc = BatchProcessor(kind(config_from_dict(base), models), 4, max_future_s=0, clock=lambda: 1.8e9,
                              commands_topic="rw.commands")

        def on_config(cmd, proc=proc, kind=kind, models=models):  # as the worker's: a new engine
            proc.engine = kind(config_from_dict(cmd["config"]), models)

        proc.on_config = on_config
        live, _, _ = _round(proc, p, zip(("rw.complaints", "rw.commands", "rw.complaints"), msgs))
        assert proc.engine.version == "shorter-memory"
        finals.append(live[EID])
    bad, good = finals
    assert bad["n"] == good["n"] == 7
    assert bad == good
