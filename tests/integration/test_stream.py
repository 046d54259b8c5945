"""The worker on a real Kafka-protocol broker and a real Redis."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime

import orjson
import redis as redis_sync

from riskwatch.config import CURRENT_CONFIG, load_config
from riskwatch.engine import Engine
from riskwatch.events import parse_event
from riskwatch.simulate import Simulation
from riskwatch.view import entity_key

from .conftest import wait_for, worker_env
from .helpers import changelog_states, produce, read_batches, read_topic, send_raw

GOOD = {"type": "complaint", "complaint_id": "c-ok", "entity_id": "91350100M000100Y43",
        "ts": "2026-01-10T10:00:00+08:00", "category": "hygiene"}
MALFORMED = [  # (how it is sent, value, the reason expected in the dead letter)
    ("raw", b'{"type": "complaint", "entity_id": ', "json_invalid"),
    ("event", {**GOOD, "complaint_id": "c-bad-uscc", "entity_id": "91350100M000100Y44"}, "value_error"),
    ("event", {k: v for k, v in GOOD.items() if k != "category"} | {"complaint_id": "c-missing"}, "missing"),
    ("event", {**GOOD, "complaint_id": "c-type", "severity": "very"}, "int_parsing"),
    ("event", {**GOOD, "complaint_id": "c-unknown", "type": "gossip"}, "union_tag_invalid"),
    # valid, but 2062 for 2026: it would carry the entity's clock 36 years ahead (RISKWATCH_MAX_EVENT_FUTURE_S)
    ("event", {**GOOD, "complaint_id": "c-future", "ts": "2062-01-10T10:00:00+08:00"}, "in_future"),
]


def test_stream_decisions_deadletters_and_view(stack):
    s, workers = stack
    sim = Simulation(n_entities=200, seed=3, bad_share=0.15, days=40)
    events = list(sim.events(n_events=12000))
    t_produce = time.time()
    produce(s, [v for kind, v, _ in MALFORMED if kind == "event"] + events,
            raw=[(s.topic("complaints"), v) for kind, v, _ in MALFORMED if kind == "raw"])
    workers.start()
    expected = len(events) + len(MALFORMED)
    wait_for(lambda: workers.metric(0, "riskwatch_events_consumed_total") >= expected, 120,
             f"{expected} events consumed", workers.logs)

    # each message waited, before its round, from its send until the worker was up (a process start,
    # Faust's and a group join: seconds); its Kafka timestamp is in seconds (a unit slip would put them
    # all past the last bucket)
    waited, n = (workers.metric(0, f"riskwatch_input_wait_seconds_{k}") for k in ("sum", "count"))
    assert n >= 2 and time.time() - t_produce > waited / n > 0.5, (waited, n)
    assert workers.metric(0, 'riskwatch_input_wait_seconds_bucket{le="60.0"}') == n

    # every malformed event is dead-lettered with its reason; good ones around them are processed
    dead = [orjson.loads(v) for _, _, v in read_topic(s.broker, s.topic("deadletter"))]
    assert sorted(d["reason"] for d in dead) == sorted(m[2] for m in MALFORMED)
    for d in dead:
        assert d["topic"] in (s.topic("complaints"), s.topic("commands")) and d["errors"] and "offset" in d
    assert workers.metric(0, "riskwatch_events_processed_total") == len(events)
    assert workers.metric(0, "riskwatch_deadlettered_total") == len(MALFORMED)

    # deteriorating entities are escalated, the quiet majority is not
    truth = {t["entity_id"]: t["deteriorating"] for t in sim.truth()}
    wait_for(lambda: read_batches(s.broker, s.topic("spotcheck-changes")), 30, "spot-check changes")
    changes = read_batches(s.broker, s.topic("spotcheck-changes"))
    raised = {c["entity_id"] for c in changes if c["to_tier"] in ("C", "D")}
    bad = [e for e, b in truth.items() if b]
    good = [e for e, b in truth.items() if not b]
    bad_rate = len(raised & set(bad)) / len(bad)
    good_rate = len(raised & set(good)) / len(good)
    assert bad_rate > 0.6 and good_rate < bad_rate / 8, (bad_rate, good_rate)

    # the population model is learned once (training topic) and published to every worker
    wait_for(lambda: workers.metric(0, "riskwatch_model_version") > 0, 30, "a published model snapshot",
             lambda: f"snapshots on {s.topic('models')}: "
                     f"{len(read_topic(s.broker, s.topic('models')))}\n{workers.logs()}")

    # the Redis view is the stored state: last emitted score and current tier of every entity
    states = changelog_states(s.broker, s.app_id)
    assert len(states) == len(truth)
    eng = Engine(load_config())
    r = redis_sync.Redis.from_url(s.redis_url, decode_responses=True)
    checked = 0
    for eid, st in states.items():
        h = r.hgetall(entity_key(eid))
        if st["es"] == 0.0 and not h.get("score"):
            continue  # never scored above zero: nothing to show
        assert float(h["score"]) == st["es"], eid
        assert h["tier"] == eng.tier_of(st), eid
        assert h["industry"] == st["m"][0] and h["region"] == st["m"][1]
        checked += 1
    assert checked > 0.5 * len(states)
    top = r.zrevrange("rw:rank", 0, 0, withscores=True)[0]
    assert top[1] == max(st["es"] for st in states.values())



def _processed(s, workers, seed: int, n_events: int, raw: list[tuple[str, bytes]] = ()) -> list[dict]:
    """A simulated stream of 200 entities produced (of which some close), a worker started, every event
    processed."""
    events = list(Simulation(n_entities=200, seed=seed, bad_share=0.15, days=40,
                             closing_share=0.1).events(n_events=n_events))
    produce(s, events, raw=raw)
    workers.start()
    wait_for(lambda: workers.metric(0, "riskwatch_events_processed_total") >= len(events), 120,
             f"{len(events)} events processed", workers.logs)
    workers.wait_committed()  # the last round's view write (until 2026-12-07 a sleep of 2 s)
    return events


def test_rebuild_view_from_topics_matches(stack):
    s, workers = stack
    # what producers may leave in input topics, which the workers dead-letter and the rebuild must skip
    # (until 2026-12-05 the first stopped it with a JSONDecodeError, the second reached the view)
    junk = [(s.topic("entities"), b"{not json"),
            (s.topic("entities"), orjson.dumps({"type": "entity", "entity_id": "91350100M000100Y43",
                                                "name": "Bad region", "industry": "food", "region": "35"})),
            (s.topic("inspections"), orjson.dumps({"type": "inspection", "entity_id": "91350100M000100Y43"}))]
    _processed(s, workers, seed=3, n_events=12000, raw=junk)
    r = redis_sync.Redis.from_url(s.redis_url, decode_responses=True)
    produced = workers.metric(0, 'riskwatch_outputs_total{kind="risk_change"}')
    in_topic = sum(1 for _ in read_batches(s.broker, s.topic("risk-changes")))
    # the view is derived: wipe it, rebuild it from the topics, get the same thing back
    before = {k: r.hgetall(k) for k in r.scan_iter("rw:entity:*")}
    ranks = r.zrevrange("rw:rank", 0, -1, withscores=True)
    held = r.smembers("rw:entities")
    inspections = {k: r.zrange(k, 0, -1, withscores=True) for k in r.scan_iter("rw:inspections:*")}
    assert len(inspections) > 100  # the worker keeps them for draw outcomes
    names = r.zrange("rw:names", 0, -1)  # the name search
    closed = r.zrange("rw:status:closed", 0, -1, withscores=True)  # businesses the register says closed
    assert len(closed) >= 5 and all(before[f"rw:entity:{e}"]["status"] == "closed" for e, _t in closed)
    assert len(names) >= len(held)
    assert held == {k.removeprefix("rw:entity:") for k in before}  # every entity hash, registered or scored
    r.flushall()
    # records on the output topics no worker wrote: until 2026-12-06 the first two stopped the rebuild
    produce(s, [], raw=[(s.topic("risk-changes"), orjson.dumps({"batch": [{"type": "risk_change", "score": 1}]})),
                        (s.topic("spotcheck-changes"), orjson.dumps([{"type": "spotcheck_change",
                                                                      "entity_id": "E", "to_tier": "Z"}])),
                        (s.topic("risk-changes"), b"{not json")])
    out = subprocess.run([sys.executable, "-m", "riskwatch.cli", "rebuild-view"], env=worker_env(s),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "3 records on the output topics or the state changelog passed over" in out.stdout, out.stdout
    after = {k: r.hgetall(k) for k in r.scan_iter("rw:entity:*")}
    diff = {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert not diff, (f"risk changes the worker produced {produced:.0f}; risk changes in the topic "
                      f"{in_topic}; entities differing {len(diff)}", out.stderr, list(diff.items())[:1])
    assert r.zrevrange("rw:rank", 0, -1, withscores=True) == ranks
    assert r.smembers("rw:entities") == held
    assert {k: r.zrange(k, 0, -1, withscores=True) for k in r.scan_iter("rw:inspections:*")} == inspections
    assert r.zrange("rw:names", 0, -1) == names
    assert r.zrange("rw:status:closed", 0, -1, withscores=True) == closed


def test_rebuild_view_keeps_entities_whose_records_aged_out_of_the_topics(stack):
    """Kafka keeps input and output records for their retention only (7 days by default); the
    state changelog is compacted and keeps every entity. Rebuilt from topics that have lost all
    their records (another topic prefix, the same changelog), the view must still hold every
    entity's register data, score, tier, ratio and time of its last risk change, with the tier
    ratios of the config applied through the API. Before the fix it came back empty, and with
    the file's ratios."""
    s, workers = stack
    r = redis_sync.Redis.from_url(s.redis_url, decode_responses=True)
    applied = load_config().model_dump(mode="json")
    for t in applied["tiers"]:
        t["ratio"] = round(t["ratio"] / 2, 4)  # not the file's ratios
    r.set(CURRENT_CONFIG, orjson.dumps({"type": "config_change", "seq": 1, "config": applied}))
    _processed(s, workers, seed=5, n_events=6000)
    workers.stop_all()
    before = {k: r.hgetall(k) for k in r.scan_iter("rw:entity:*")}
    ranks = {k: r.zrange(k, 0, -1, withscores=True) for k in r.scan_iter("rw:rank*")}
    scored = [h for h in before.values() if "score" in h]
    assert len(before) == 200 and len(scored) > 100
    assert all(h["address"] for h in before.values())  # the simulated register has addresses
    assert sum(h.get("status") == "closed" for h in before.values()) >= 5  # and closures
    assert {h["ratio"] for h in scored} <= {str(t["ratio"]) for t in applied["tiers"]}

    out = subprocess.run([sys.executable, "-m", "riskwatch.cli", "rebuild-view"],
                         env=worker_env(s, RISKWATCH_TOPIC_PREFIX=f"gone{s.topic_prefix}"),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    after = {k: r.hgetall(k) for k in r.scan_iter("rw:entity:*")}
    assert set(after) == set(before), (len(after), len(before), out.stdout)
    for k, h in before.items():
        a = after[k]
        for f in ("name", "address", "industry", "region", "score", "tier", "ratio", "status", "status_since"):
            assert a.get(f) == h.get(f), (k, f, h, a)
        if "score" in h:
            assert datetime.fromisoformat(a["updated"]) == datetime.fromisoformat(h["updated"]), (k, h, a)
            if float(h["score"]) > 0:
                assert orjson.loads(a["reasons"]), (k, a)
    assert {k: r.zrange(k, 0, -1, withscores=True) for k in r.scan_iter("rw:rank*")} == ranks
    assert f"{len(scored)} entities from their state alone" in out.stdout, out.stdout


def test_events_a_detector_already_holds_are_counted_as_ignored(stack):
    """A producer that sends a batch twice (new offsets, so the offset check does not skip it), and
    readings that arrive after a later one of their series: applied to no signal, and counted per
    detector in riskwatch_events_ignored_total (until 2026-12-04 nothing counted them)."""
    s, workers = stack
    sim = Simulation(n_entities=30, seed=12, days=5)
    events = list(sim.events(n_events=400))
    feed = [e for e in events if e["type"] in ("complaint", "sensor_reading", "inspection", "record")]
    again = feed[:60]
    last = {}
    for e in feed:
        if e["type"] == "sensor_reading":
            last[(e["entity_id"], e["metric"], e["device_id"])] = e
    older = [{**e, "ts": "2025-12-01T00:00:00+08:00"} for e in list(last.values())[:10]]  # before its series' last
    workers.start()
    produce(s, events)
    produce(s, again + older)
    total = len(events) + len(again) + len(older)
    wait_for(lambda: workers.metric(0, "riskwatch_events_processed_total") >= total, 90,
             f"{total} events processed", workers.logs)
    counted = {kind: workers.metric(0, f'riskwatch_events_ignored_total{{detector="{kind}"}}')
               for kind in ("sensors", "complaints", "inspections", "records")}
    # what the engine itself says of the same stream, entity by entity in the same order
    engine, states = Engine(load_config()), {}
    for e in events + again + older:
        ev = parse_event(e)
        states[ev.entity_id], _ = engine.process(states.get(ev.entity_id), ev)
    assert {k: v for k, v in counted.items() if v} == dict(engine.ignored), counted
    assert counted["sensors"] == sum(e["type"] == "sensor_reading" for e in again) + len(older), counted


def _lag_samples(workers, i: int) -> dict[tuple[str, str], float]:
    import re
    import urllib.request

    _, port = workers.procs[i]
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    return {(m[1], m[2]): float(m[3]) for m in re.finditer(
        r'riskwatch_consumer_lag_messages\{partition="(\d+)",topic="([^"]+)"\} (\S+)', text)}


def test_consumer_lag_shows_a_backlog_and_falls_to_zero_and_the_state_count_matches_the_changelog(stack):
    """Ops' first question of a stream processor: is it keeping up? Until 2026-12-04 the worker had
    no metric for it (event->output latency shows only where outputs come out), and its "table
    size" gauge, riskwatch_entities_written, was declared but never set (always 0)."""
    s, workers = stack
    events = list(Simulation(n_entities=2000, seed=5, days=10).events(n_events=40000))
    produce(s, events, batch_size=20)  # ~2,000 messages: rounds of at most 200 leave a backlog between them
    i = workers.start()
    seen_max = 0.0
    deadline = time.monotonic() + 120
    while workers.metric(i, "riskwatch_events_processed_total") < len(events) and time.monotonic() < deadline:
        seen_max = max([seen_max, *_lag_samples(workers, i).values()])
        time.sleep(0.05)
    assert workers.metric(i, "riskwatch_events_processed_total") >= len(events), workers.logs()
    assert seen_max >= 20, seen_max  # a backlog of messages was shown while it drained
    lags = wait_for(lambda: (x := _lag_samples(workers, i)) and all(v == 0 for v in x.values()) and x, 20,
                    "every lag at 0", workers.logs)
    partitions = {(p, t) for p, t in lags}
    topics = {t for _, t in partitions}
    assert s.topic("sensor-readings") in topics and s.topic("complaints") in topics, lags
    assert {p for p, t in partitions if t == s.topic("sensor-readings")} == {"0", "1", "2", "3"}, lags
    held = len(changelog_states(s.broker, s.app_id))
    assert held > 1000
    wait_for(lambda: workers.metric(i, "riskwatch_entity_states") == held, 20,
             f"riskwatch_entity_states summing to the {held} states in the changelog", workers.logs)
    workers.stop_all()  # a restart counts the recovered states
    j = workers.start(data_of=0)
    wait_for(lambda: workers.metric(j, "riskwatch_entity_states") == held, 60,
             f"the restarted worker counting {held} recovered states", workers.logs)


def test_a_stored_state_no_worker_wrote_dead_letters_that_entitys_events_only(stack):
    """A state record on the changelog that is not JSON (not a worker's): until 2026-12-06 every message
    holding that entity's events was dead-lettered whole (reason ``worker_error``), every other entity's
    events in it too, and the tick scan, which reads every stored state, stopped the worker."""
    from riskwatch.streams.codec import partition_for

    s, workers = stack
    events = list(Simulation(n_entities=60, seed=8, bad_share=0.2, days=30).events(n_events=3000))
    victim = next(e["entity_id"] for e in events if e["type"] == "complaint")
    p = partition_for(victim.encode(), s.partitions)

    send_raw(s.broker, s.state_changelog, [b"{not a state"], partition=p, key=victim.encode())
    # and a source-offsets record that is not one: until 2026-12-06 the partition's recovery failed on it,
    # retried every 2 s, and the partition was never processed
    send_raw(s.broker, s.state_changelog, [b"[1, 2]"], partition=p, key=b"\x00src")
    produce(s, events)
    workers.start(env={"RISKWATCH_TICK_SECONDS": "1"})  # the tick scan reads every stored state
    theirs = [e for e in events if e["entity_id"] == victim]
    wait_for(lambda: workers.metric(0, "riskwatch_events_processed_total") >= len(events) - len(theirs), 120,
             "every other entity's events processed", workers.logs)
    wait_for(lambda: len(read_topic(s.broker, s.topic("deadletter"))) >= len(theirs), 30, "its events dead-lettered",
             workers.logs)  # (the processed count includes the worker's ticks)
    dead = [orjson.loads(v) for _, _, v in read_topic(s.broker, s.topic("deadletter"))]
    assert {d["reason"] for d in dead} == {"state_unreadable"}
    assert sorted(orjson.loads(d["original"])["entity_id"] for d in dead) == [victim] * len(theirs)
    assert "the stored state of " + victim + " is not JSON" in dead[0]["errors"][0]["message"]
    assert "changelog record" in workers.logs() and "passed over" in workers.logs()
    time.sleep(2)  # more tick scans: until 2026-12-06 the first one stopped the worker
    assert workers.procs[0][0].poll() is None and "left out of a scan of its partition" in workers.logs()

    # the dead-letter listing says which entity's state to look at
    listed = subprocess.run([sys.executable, "-m", "riskwatch.cli", "deadletter"], env=worker_env(s),
                            capture_output=True, text=True, timeout=120)
    assert f"by entity (state_unreadable, engine_error): {victim} {len(theirs)}\n" in listed.stdout, listed.stdout
    # an operator resets the state (POST /v1/entities/{id}/reset-state sends this command), then sends
    # the entity's dead-lettered events back: they are applied to the new state, and none fails again
    reset = {"type": "state_reset", "reset_id": "reset-it", "entity_id": victim, "author": "ops-it",
             "reason": "a state no worker wrote", "ts": datetime.now().astimezone().isoformat()}
    send_raw(s.broker, s.topic("commands"), [orjson.dumps(reset)], partition=p, key=victim.encode())
    wait_for(lambda: any(o.get("reset") and o["entity_id"] == victim for o in read_batches(s.broker, s.topic(
        "risk-changes"))), 30, "the reset's risk change", workers.logs)
    replayed = subprocess.run([sys.executable, "-m", "riskwatch.cli", "deadletter", "--reason", "state_unreadable",
                               "--replay"], env=worker_env(s), capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0 and f"replayed {len(theirs)} events" in replayed.stdout, replayed

    def victims_state() -> dict | None:
        last = [v for _, k, v in read_topic(s.broker, s.state_changelog) if k == victim.encode()][-1]
        if last.startswith(b"{not"):  # the reset's state not on the changelog yet
            return None
        st = orjson.loads(last)
        return st if st.get("n", 0) >= 1 + len(theirs) else None
    st = wait_for(victims_state, 60, "the replayed events applied to the new state", workers.logs)
    assert st["o"].get(f"{s.topic('commands')}:{p}") is not None and st["m"] is not None
    time.sleep(2)
    assert len(read_topic(s.broker, s.topic("deadletter"))) == len(dead), "an event failed again"
