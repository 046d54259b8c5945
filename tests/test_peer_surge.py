"""A complaint surge spread over one peer group (industry x region): ``complaints.peer_surge``.

Replayed through the engine over simulated populations with a staged outbreak (the simulator's ground
truth says which entities had one); no service involved (the same through the broker and two workers:
tests/integration/test_stream.py)."""

import io
from datetime import datetime

import orjson

from riskwatch.config import config_from_dict, load_config
from riskwatch.engine import Engine
from riskwatch.events import parse_event
from riskwatch.replay import Replay
from riskwatch.models import PopulationModels
from riskwatch.simulate import Simulation
from riskwatch.streams.shared_models import SharedModels, Trainer, apply_update, parse_training

SURGE = "complaints.peer_surge"


def _replay(sim: Simulation | list, n_events: int = 0, extra=(), config=None):
    """``riskwatch replay`` over the simulated feed (ticks included), or over a list of its events (a
    simulation's feed differs from one call to the next): outputs and entity states."""
    out = io.BytesIO()
    r = Replay(Engine(config or load_config()), out=out)
    feed = sim if isinstance(sim, list) else sim.events(n_events=n_events)
    r.run(orjson.dumps(e) for e in [*feed, *extra])
    return [orjson.loads(x) for x in out.getvalue().splitlines()], r.states


def _fired(outs):
    return [o for o in outs if o["type"] == "alert_candidate" and o["signal"] == SURGE and o["status"] == "firing"]


def _group_of(sim: Simulation, eid: str) -> tuple[str, str]:
    e = next(e for e in sim.entities if e["id"] == eid)
    return e["industry"], e["region"]


def test_an_outbreak_alerts_and_its_alerts_name_every_entity_in_it():
    sim = Simulation(n_entities=600, seed=2, bad_share=0.0, days=60, outbreaks=1)
    outbreak = {e["id"] for e in sim.entities if e["outbreak"]}
    assert len(outbreak) == 8
    [group] = {_group_of(sim, e) for e in outbreak}
    feed = list(sim.events(n_events=8000))
    outs, states = _replay(feed)
    fired = _fired(outs)
    assert fired, "no peer_surge alert for the outbreak"
    assert {_group_of(sim, o["entity_id"]) for o in fired} == {group}  # nobody outside the group
    listed = set()
    for o in fired:
        g = o["detail"]["peer_group"]
        assert (g["industry"], g["region"]) == group and g["window_hours"] == 24
        assert g["entities_with_complaints"] >= 5 and g["expected"] < g["entities_with_complaints"] / 4
        assert o["entity_id"] in g["entities"]
        listed |= set(g["entities"])
    assert outbreak <= listed
    # every one has an alert of its own: the first ones complained before the surge showed, and a tick
    # (the surge looked at again 1, 2, 4, 8 and 16 hours after their complaint) found it later
    assert {o["entity_id"] for o in fired} == outbreak
    own_times = {(ev["entity_id"], datetime.fromisoformat(ev["ts"])) for ev in feed if ev["type"] == "complaint"}
    at_ticks = [o for o in fired if (o["entity_id"], datetime.fromisoformat(o["ts"])) not in own_times]
    assert at_ticks and all(o["event_ids"] for o in at_ticks)  # its own complaints behind it
    # the signal counts in the score, with the entity's own complaint behind it
    e = fired[0]["entity_id"]
    assert states[e]["g"][SURGE][0] >= 0.5 and fired[0]["event_ids"]
    # as before 2026-12-07, with no rechecks: the first ones have no alert of their own, only a mention
    no_rechecks = config_from_dict({"detectors": {"complaints": {"params": {"surge_recheck_minutes": 0}}}})
    before = {o["entity_id"] for o in _fired(_replay(feed, config=no_rechecks)[0])}
    assert before < outbreak


def test_the_alert_resolves_as_the_surge_decays():
    sim = Simulation(n_entities=600, seed=2, bad_share=0.0, days=60, outbreaks=1, outbreak_at=(0.6, 0.6))
    outs, _ = _replay(sim, 8000)
    fired = {o["entity_id"] for o in _fired(outs)}
    resolved = {o["entity_id"] for o in outs if o["type"] == "alert_candidate" and o["signal"] == SURGE
                and o["status"] == "resolved"}
    assert fired and fired == resolved  # 24 days of feed after it: every one cleared (2-day half-life)


def test_one_entity_s_burst_is_not_a_group_surge():
    sim = Simulation(n_entities=600, seed=2, bad_share=0.0, days=60)
    eid = sim.entities[0]["id"]
    end = sim.start.timestamp() + 60 * 86400
    burst = [{"type": "complaint", "complaint_id": f"B{i}", "entity_id": eid, "category": "food_safety",
              "severity": 2, "ts": _iso(end + 600 * i)} for i in range(12)]
    outs, _ = _replay(sim, 8000, burst)
    mine = [o for o in outs if o["type"] == "alert_candidate" and o["entity_id"] == eid]
    assert ("complaints.burst", "firing") in [(o["signal"], o["status"]) for o in mine]
    assert not _fired(outs)


def test_a_young_group_has_no_surge_yet():
    """Before 30 days of a group's history its long-run rate is not known: an outbreak in the first
    week alerts no one (the complaints still count for each entity's own signals)."""
    sim = Simulation(n_entities=600, seed=2, bad_share=0.0, days=60, outbreaks=1, outbreak_at=(0.1, 0.1))
    outs, _ = _replay(sim, 8000)
    assert any(e["outbreak"] for e in sim.entities) and not _fired(outs)


def _iso(t: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


def test_workers_send_the_entity_to_the_trainer_and_snapshots_carry_the_group_s_entities():
    shared = SharedModels()
    shared.peers.add_complaint("food|110105", 1.0, 1000.0, "E1")
    shared.peers.add_complaint("food|110105", 1.0, 1100.0)  # an update from a worker before 2026-12-06
    t = Trainer()
    raw = ('{"from": [["rw.complaints:0", 5, %s]]}' % __import__("json").dumps(shared.drain())).encode()
    assert t.apply(0, parse_training(raw)) == 1
    snap = Trainer.decode(t.publish())
    assert snap.models.peers.recent["food|110105"][2] == {"E1": 1000.0}
    # a snapshot from before 2026-12-06 has no "recent": read, and nothing is remembered
    old = PopulationModels().to_dict()
    del old["peers"]["recent"]
    m = PopulationModels.from_dict(old)
    assert m.peers.complainers("food|110105", 0.0, 86400) == 0 and m.peers.entities("food|110105", 0.0, 86400) == []


def test_a_group_remembers_its_newest_entities_within_three_days_only():
    m = PopulationModels()
    for i in range(300):
        apply_update(m, ["peer_complaint", "food|110105", 1.0, float(i), f"E{i}"])
    r = m.peers.recent["food|110105"]
    assert 224 <= len(r[2]) <= 256 and "E299" in r[2] and "E0" not in r[2]
    apply_update(m, ["peer_complaint", "food|110105", 1.0, 4 * 86400.0, "late"])  # 2 days past the oldest
    assert list(m.peers.recent["food|110105"][2]) == ["late"]


def test_the_remembered_entities_of_all_groups_stay_bounded_so_a_snapshot_fits_a_kafka_message():
    """Kafka refuses a message over 1 MB by default; a snapshot is one. 60 groups of 256 complainers
    (15,360) are cut to the newest 8,000 or fewer, whichever groups they are in; the snapshot read
    back counts them again."""
    t = Trainer()
    for i in range(60 * 256):
        apply_update(t.models, ["peer_complaint", f"food|{110100 + i % 60}", 1.0, 1000.0 + i,
                                f"9111010{i:011d}"])
    held = sum(len(r[2]) for r in t.models.peers.recent.values())
    assert 7000 <= held <= 8000 and t.models.peers._held == held
    newest = max(t for r in t.models.peers.recent.values() for t in r[2].values())
    assert newest == 1000.0 + 60 * 256 - 1  # the newest kept
    raw = t.encode()
    assert len(raw) < 500_000, len(raw)
    assert Trainer.decode(raw).models.peers._held == held


def _with_revocations(events, ids):
    """The feed with each complaint in ``ids`` revoked right after it arrived."""
    for e in events:
        yield e
        if e["type"] == "complaint" and e["complaint_id"] in ids:
            yield {"type": "objection_resolution", "objection_id": f"X{e['complaint_id']}", "ts": e["ts"],
                   "entity_id": e["entity_id"],
                   "target_id": e["complaint_id"], "resolution": "revoked"}


def test_revoked_complaints_leave_the_group_so_an_outbreak_of_revoked_complaints_alerts_no_one():
    """Until 2026-12-07 a revoked complaint still counted among its group's complainers for 24 hours
    (and in the group's rate): revoking the outbreak's complaints as they came still raised the surge
    over the entities whose complaints were left."""
    sim = Simulation(n_entities=600, seed=2, bad_share=0.0, days=60, outbreaks=1)
    events = list(sim.events(n_events=8000))
    outbreak = [e for e in events if e["type"] == "complaint" and e["complaint_id"].startswith("O")]
    assert len(outbreak) == 8
    events = events[:events.index(outbreak[-1]) + 1]  # up to the outbreak's last complaint
    revoked = {e["complaint_id"] for e in outbreak[:-3]}  # five of eight: three left, under surge_min_entities
    runs = {}
    for name, ids in (("kept", set()), ("revoked", revoked)):
        out = io.BytesIO()
        r = Replay(Engine(load_config()), out=out)
        r.run(orjson.dumps(e) for e in _with_revocations(events, ids))
        runs[name] = [orjson.loads(x) for x in out.getvalue().splitlines()], r.engine.models.peers
    assert _fired(runs["kept"][0]) and not _fired(runs["revoked"][0])
    industry, region = _group_of(sim, outbreak[0]["entity_id"])
    left = runs["revoked"][1].entities(f"{industry}|{region}", _ts(outbreak[-1]["ts"]), 86400.0)
    assert {e["entity_id"] for e in outbreak[-3:]} <= set(left)
    # a revoked one's entity stays only by a complaint of its own kept in the window
    end = _ts(outbreak[-1]["ts"])
    kept = {e["entity_id"] for e in events if e["type"] == "complaint" and e["complaint_id"] not in revoked
            and end - 86400.0 <= _ts(e["ts"])}
    stayed = {e["entity_id"] for e in outbreak[:-3]} & set(left)
    assert stayed <= kept and len(stayed) < 5 - 3, stayed


def _ts(iso: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(iso).timestamp()


def test_a_disputed_complaint_leaves_the_group_while_disputed_and_comes_back_when_upheld():
    eid, key, T0 = "91350100M000100Y43", "food|350100", 1_780_000_000.0
    eng = Engine(load_config())
    st, _ = eng.process(None, parse_event({"type": "entity", "entity_id": eid, "name": "Fuzhou Cold Store",
                                           "industry": "food", "region": "350100", "ts": _iso(T0)}))
    peers = eng.models.peers

    def step(ev):
        nonlocal st
        st, _ = eng.process(st, parse_event(ev))
        return peers.entities(key, T0 + 7200.0, 86400.0), round(peers.rate(key, T0 + 7200.0) * 86400 * 365, 3)

    c = {"type": "complaint", "entity_id": eid, "category": "food_safety", "severity": 1}
    step(dict(c, complaint_id="C1", ts=_iso(T0)))
    held = step(dict(c, complaint_id="C2", ts=_iso(T0 + 3600)))
    assert held[0] == [eid]
    dispute = {"objection_id": "J1", "ts": _iso(T0 + 7200), "target_id": "C2", "entity_id": eid}
    # C2 out: C1 (the older) keeps the entity in the group's window
    during = step(dict(dispute, type="objection", target_kind="complaint"))
    assert during[0] == [eid] and 0 < during[1] < held[1]
    assert peers.recent[key][2][eid] == T0
    upheld = step(dict(dispute, type="objection_resolution", resolution="upheld"))
    assert upheld == held and peers.recent[key][2][eid] == T0 + 3600
    gone = step(dict(dispute, objection_id="J2", type="objection_resolution", resolution="revoked"))
    assert gone[0] == [eid] and gone[1] == during[1]


def test_a_worker_s_retraction_reaches_the_trainer_in_the_update_form_every_trainer_reads():
    """A retraction is a ``peer_complaint`` of negative weight, then one of weight 0 for the entity's
    latest complaint left: a trainer from before 2026-12-07 reads both (its rate is corrected)."""
    shared = SharedModels()
    shared.peers.add_complaint("food|110105", 1.0, 1000.0, "E1")
    shared.peers.add_complaint("food|110105", 1.0, 2000.0, "E1")
    shared.peers.add_complaint("food|110105", -1.0, 2000.0, "E1")
    shared.peers.add_complaint("food|110105", 0.0, 1000.0, "E1")
    t = Trainer()
    raw = ('{"from": [["rw.complaints:0", 5, %s]]}' % __import__("json").dumps(shared.drain())).encode()
    assert t.apply(0, parse_training(raw)) == 1
    assert Trainer.decode(t.publish()).models.peers.recent["food|110105"][2] == {"E1": 1000.0}


def test_a_group_older_than_the_memory_of_its_complainers_is_not_read_as_young():
    """A trainer upgraded from before 2026-12-06 has groups with a long decayed history and no first
    complaint time: the first complaint with an entity must not start the group's history, or the
    young-group correction would read its rate hundreds of times too high (and no complaint in it
    would be a surprise against its peers)."""
    old = PopulationModels()
    for i in range(50):
        old.peers.add_entity("food|110105")
    for d in range(0, 720, 2):  # two years, a complaint every two days, from workers without the entity
        old.peers.add_complaint("food|110105", 1.0, d * 86400.0)
    snap = old.to_dict()
    del snap["peers"]["recent"]
    m = PopulationModels.from_dict(snap)
    now = 720 * 86400.0
    before = m.peers.rate("food|110105", now)
    m.peers.add_complaint("food|110105", 1.0, now, "E1")
    assert 1.0 <= m.peers.rate("food|110105", now) / before < 1.05
    assert m.peers.expected("food|110105", now, 86400.0, 30 * 86400.0, 0.0) > 0  # no warm-up to wait for


def test_complaints_before_the_entity_s_register_data_count_in_its_group_once_it_arrives():
    """A feed's topics are not ordered with each other: a worker can apply an entity's complaints before
    its register upsert (which names the group). Until 2026-12-07 those complaints never reached the
    group; an integration run under load lost the first half of a group's history so (its surge then
    had no 30 days of history to judge by, and nobody was alerted)."""
    eid, T0 = "91350100M000100Y43", 1_780_000_000.0
    upsert = {"type": "entity", "entity_id": eid, "name": "Fuzhou Cold Store", "industry": "food",
              "region": "350100", "ts": _iso(T0)}
    complaints = [{"type": "complaint", "complaint_id": f"C{d}", "entity_id": eid, "category": f"c{d % 3}",
                   "severity": 1 + d % 3, "ts": _iso(T0 + d * 86400.0)} for d in range(0, 40, 4)]
    peers = {}
    for order, evs in (("register first", [upsert, *complaints]), ("complaints first", [*complaints, upsert])):
        eng = Engine(load_config())
        st = None
        for ev in evs:
            st, _ = eng.process(st, parse_event(ev))
        peers[order] = eng.models.peers
    key, now = "food|350100", T0 + 40 * 86400.0
    a, b = peers["register first"], peers["complaints first"]
    assert abs(b.rate(key, now) / a.rate(key, now) - 1) < 1e-9
    assert b.recent[key][0] == a.recent[key][0] == T0  # the group's history starts at the first complaint
    assert b.entities(key, T0 + 36 * 86400.0, 86400.0) == a.entities(key, T0 + 36 * 86400.0, 86400.0) == [eid]


def test_an_entity_that_changes_group_takes_its_complaints_to_the_new_one():
    """Its entity count moves to the new group at the upsert; until 2026-12-07 its complaints stayed in the
    old group's rate and complainers (read per entity there: too high), and the new group's too low."""
    eid, T0 = "91350100M000100Y43", 1_780_000_000.0
    other = "91350100MA0000001L"  # keeps each group's entity count above 0 when ours leaves it

    def upsert(e, region, t):
        return {"type": "entity", "entity_id": e, "name": f"Shop {e[-4:]}", "industry": "food", "region": region,
                "ts": _iso(t)}

    complaints = [{"type": "complaint", "complaint_id": f"C{d}", "entity_id": eid, "category": f"c{d % 3}",
                   "severity": 1 + d % 3, "ts": _iso(T0 + d * 86400.0)} for d in range(0, 40, 4)]
    runs = {}
    for name, first in (("moved", "350100"), ("there from the start", "350200")):
        eng = Engine(load_config())
        states = {}
        for ev in [upsert(other, "350100", T0), upsert(other.replace("MA", "MB"), "350200", T0),
                   upsert(eid, first, T0), *complaints, upsert(eid, "350200", T0 + 37 * 86400.0)]:
            ev = parse_event(ev, "opaque")
            states[ev.entity_id], _ = eng.process(states.get(ev.entity_id), ev)
        runs[name] = eng.models.peers
    now = T0 + 40 * 86400.0
    moved, direct = runs["moved"], runs["there from the start"]
    day = T0 + 36.5 * 86400.0  # the last complaint's day
    assert moved.rate("food|350100", now) < 1e-12 and moved.entities("food|350100", day, 86400.0) == []
    assert abs(moved.rate("food|350200", now) / direct.rate("food|350200", now) - 1) < 1e-9
    assert moved.entities("food|350200", day, 86400.0) == direct.entities("food|350200", day, 86400.0) == [eid]


def test_the_surge_is_looked_at_again_1_2_4_8_16_hours_after_a_complaint_and_a_backfill_gets_one_tick():
    """The looks (ticks) that give an outbreak's first entities their own signal: timed from the newest
    complaint, one per tick, none after the 24-hour window; a new complaint starts them again; a
    complaint a year old (a backfill, ticked at the worker's clock) gets the one tick and no more."""
    from riskwatch.events import Tick

    eid = Simulation(n_entities=1, seed=4).entities[0]["id"]
    eng = Engine(load_config())
    det = eng.detectors["complaints"]
    t0 = datetime(2026, 3, 1, 12, 0).timestamp()

    def at(t):
        return datetime.fromtimestamp(t).astimezone().isoformat()

    def complaint(i, t):
        return parse_event({"type": "complaint", "complaint_id": f"c{i}", "entity_id": eid, "ts": at(t),
                            "category": "hygiene"})

    st, _ = eng.process(None, parse_event({"type": "entity", "entity_id": eid, "name": "n", "industry": "food",
                                           "region": "110105"}))
    st, _ = eng.process(st, complaint(1, t0))

    def looks(st):
        out = []
        while (t := det.next_change(st["d"]["complaints"], st["t"], st)) is not None:
            out.append(round((t - t0) / 3600, 2))
            st, _ = eng.process(st, Tick(entity_id=eid, ts=at(t)))
        return out, st

    seen, st = looks(st)
    assert seen == [1, 2, 4, 8, 16]
    st, _ = eng.process(st, complaint(2, t0 + 20 * 3600))  # a new newest complaint: looks from it
    seen, st = looks(st)
    assert seen == [21, 22, 24, 28, 36]
    # ticks more often than the looks change nothing: a tick between two looks does not look
    st, _ = eng.process(st, complaint(3, t0 + 48 * 3600))
    st, _ = eng.process(st, Tick(entity_id=eid, ts=at(t0 + 48.5 * 3600)))
    assert det.next_change(st["d"]["complaints"], st["t"], st) == t0 + 49 * 3600
    # a backfill: the worker's first tick comes a year later, and no look is due after it
    st, _ = eng.process(st, Tick(entity_id=eid, ts=at(t0 + 365 * 86400)))
    assert det.next_change(st["d"]["complaints"], st["t"], st) is None
