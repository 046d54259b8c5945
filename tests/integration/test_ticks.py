"""Wall-clock ticks: every entity due one gets it, in envelopes Kafka accepts."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime

import orjson

from riskwatch import uscc
from riskwatch.config import load_config
from riskwatch.engine import Engine
from riskwatch.simulate import Simulation

from .conftest import wait_for
from .helpers import changelog_states, produce, read_topic


def test_ticks_reach_every_entity_in_envelopes_of_at_most_1000(stack):
    """One envelope per partition was 2.05 MB at 100k entities, over Kafka's default 1 MB limit."""
    s, workers = stack
    # about 1,500-1,700 entities due a tick per partition (6,000 and 30,000 gave 1,005-1,045)
    sim = Simulation(n_entities=8000, seed=31, bad_share=0.05, days=10)
    events = list(sim.events(n_events=40000))
    sensors = {e["entity_id"] for e in events if e["type"] == "sensor_reading"}
    # the stream first, with ticks off, then a worker with ticks on the same states: every entity due is
    # due at its first tick (with ticks on from the start, a tick could come while the stream was half
    # done and split the entities over two rounds of under 1,000 per partition, and this test failed)
    first = workers.start()
    produce(s, events, batch_size=500)
    wait_for(lambda: workers.metric(first, "riskwatch_events_processed_total") >= len(events), 120,
             "the worker to process the stream", workers.logs)
    # and its work stored: a worker counts events before it stores their round's states and commits,
    # so one stopped at once (a loaded machine) left rounds to its successor, which did them again
    # while its ticks ran: the first tick round then found 1,765 of 2,030 states on a partition, or a
    # few hundred due, and the due entities went out over two rounds of under 1,000 each (failed at
    # 85bab5c and 4160917; reproduced with the worker's tick log, 2026-12-07)
    workers.wait_committed()
    assert workers.stop(first) == 0
    workers.start({"RISKWATCH_TICK_SECONDS": "3"}, data_of=first)

    def tick_messages():
        out = []
        for p, _, v in read_topic(s.broker, s.topic("commands")):
            obj = orjson.loads(v)
            batch = obj["batch"] if isinstance(obj, dict) and "batch" in obj else [obj]
            ticks = [e for e in batch if e.get("type") == "tick"]
            if ticks:
                out.append((p, ticks))
        return out

    engine = Engine(load_config())

    def all_due_ticked():  # each entity is ticked once due (next_tick); most of these went silent long ago
        msgs = tick_messages()
        left = sensors - {t["entity_id"] for _, ticks in msgs for t in ticks}
        if len(left) > 0.05 * len(sensors):
            return None
        states, now = changelog_states(s.broker, s.app_id), time.time()
        return msgs if all((t := engine.next_tick(states[e])) is None or t > now for e in left) else None

    msgs = wait_for(all_due_ticked, 60, "ticks to reach every entity with sensors that is due one",
                    lambda: f"{len(tick_messages())} tick messages\n" + workers.logs())
    sizes = [len(ticks) for _, ticks in msgs]
    assert max(sizes) <= 1000, sizes
    per_round = Counter((p, ticks[0]["ts"]) for p, ticks in msgs)
    by_round: dict = {}  # (partition, tick time) -> envelope sizes: what a failure needs to be understood
    for p, ticks in msgs:
        by_round.setdefault((p, ticks[0]["ts"]), []).append(len(ticks))
    assert 1000 in sizes and max(per_round.values()) >= 2, (by_round, _story(workers))  # a partition's ticks were split


def _story(workers) -> str:
    """What a worker's log says of its group, its recovery and its tick rounds."""
    keep = ("Joined group", "Revoking", "newly assigned", "recovered", "ticks at", "resumes at", "ERROR", "WARNING")
    return "\n".join(line for i in range(len(workers.procs))
                     for line in workers.log(i).splitlines()
                     if any(k in line for k in keep))


def test_readings_that_trail_the_ticks_are_all_counted(stack):
    """Devices upload buffered readings: their event times trail the worker's wall-clock ticks, so each
    tick moves an entity's clock past readings still on their way. Until 2026-11-28 such a reading
    was taken at the clock, and every series kept about one reading per tick of them: the rest were
    dropped as stale, without a dead letter or a metric."""
    s, workers = stack
    rng = random.Random(5)
    ids = [uscc.generate(rng, "110105") for _ in range(20)]
    a = workers.start({"RISKWATCH_TICK_SECONDS": "0.5"})
    t0 = time.time() - 30.0  # the feed trails the wall clock by 30 s
    per_round, rounds = 5, 12
    for k in range(rounds):
        batch = [{"type": "sensor_reading", "entity_id": e, "device_id": "d1", "metric": "temperature",
                  "value": 4.0 + 0.1 * (j % 3),
                  "ts": datetime.fromtimestamp(t0 + 0.2 * j, tz=UTC).isoformat()}
                 for j in range(k * per_round, (k + 1) * per_round) for e in ids]
        produce(s, batch)
        time.sleep(1.0)  # ticks run meanwhile
    total = len(ids) * per_round * rounds
    wait_for(lambda: workers.metric(a, "riskwatch_events_processed_total") >= total, 60,
             f"{total} readings processed", workers.logs)
    workers.wait_committed(["sensor-readings"])  # their states stored (until 2026-12-07 a sleep of 1.5 s)
    workers.stop_all()  # (topics read back "until quiet" never are while ticks run every 0.5 s)
    ticks = [t for _, _, v in read_topic(s.broker, s.topic("commands")) for t in orjson.loads(v)["batch"]]
    # the scenario happened: ticks ran ahead of the feed (each entity's is due once it has learnt its
    # series' interval from 5 readings, and its clock then leads the 30-s-late feed for good)
    assert {t["entity_id"] for t in ticks} == set(ids), len(ticks)
    counts = {eid: st["d"]["sensors"]["temperature@d1"][4] for eid, st in changelog_states(s.broker, s.app_id).items()}
    assert counts == dict.fromkeys(ids, per_round * rounds), sorted(Counter(counts.values()).items())


def test_ticks_give_the_first_entities_of_an_outbreak_an_alert_of_their_own(stack, tmp_path):
    """A complaint surge over one peer group: the first entities complained before their group showed a
    surge, so at their own complaints ``complaints.peer_surge`` was low. The worker's ticks look at the
    surge again (``surge_recheck_minutes`` after the complaint, 1 here, then 2, 4, 8... minutes, while it
    is in the window), with the group as the trainer has seen it since: every entity of the outbreak
    gets an alert of its own, some at a tick. All the feed is produced at once, so a worker also judges
    the later ones against a snapshot that lags the outbreak. The outbreak was 14 hours ago, so the
    looks that passed come one per tick (2 s apart here: about 20 s for the snapshot to catch up).
    With ticks off (the alerts-flow test) only the later ones alert; with ``surge_recheck_minutes: 0``
    here, none did (checked). Replayed: tests/test_peer_surge.py."""
    import yaml

    from riskwatch.config import DEFAULT_PATH

    from .helpers import read_batches

    s, workers = stack
    cfg = yaml.safe_load(DEFAULT_PATH.read_text())
    cfg["detectors"]["complaints"]["params"]["surge_recheck_minutes"] = 1
    path = tmp_path / "riskwatch.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    start = datetime.now(UTC).timestamp() - 60 * 86400  # the outbreak about 14 hours ago: still in its window
    sim = Simulation(n_entities=600, seed=2, bad_share=0.0, days=60, start=datetime.fromtimestamp(start, UTC),
                     outbreaks=1, outbreak_at=(0.99, 0.99))
    now = datetime.now(UTC).isoformat()
    events = [e for e in sim.events(n_events=8000) if e["ts"] <= now]  # a Poisson feed can overrun its span
    outbreak = {e["id"] for e in sim.entities if e["outbreak"]}
    assert len(outbreak) >= 5
    own = {(e["entity_id"], datetime.fromisoformat(e["ts"]).timestamp()) for e in events if e["type"] == "complaint"}
    w = workers.start({"RISKWATCH_TICK_SECONDS": "2", "RISKWATCH_CONFIG_PATH": str(path),
                       "RISKWATCH_MODEL_PUBLISH_SECONDS": "0.5"})
    produce(s, events, batch_size=500)
    wait_for(lambda: workers.metric(w, "riskwatch_events_processed_total") >= len(events), 120,
             f"{len(events)} events processed", workers.logs)

    def fired():
        return [c for c in read_batches(s.broker, s.topic("alert-candidates"))
                if c["signal"] == "complaints.peer_surge" and c["status"] == "firing"]

    got = wait_for(lambda: (f := fired()) and outbreak <= {c["entity_id"] for c in f} and f, 150,
                   "a peer_surge alert for every entity of the outbreak",
                   lambda: f"{sorted({c['entity_id'][-4:] for c in fired()})} of "
                           f"{sorted(e[-4:] for e in outbreak)}\n{workers.logs()}")
    at_ticks = [c for c in got if (c["entity_id"], datetime.fromisoformat(c["ts"]).timestamp()) not in own]
    assert at_ticks, "every alert came at the entity's own complaint: no recheck was needed or made"
    assert all(c["event_ids"] and c["entity_id"] in c["detail"]["peer_group"]["entities"] for c in at_ticks)
