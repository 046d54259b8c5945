"""Several workers: each partition of every input topic on one worker; one SIGKILLed mid-stream
and every event counted once; a worker restarted on its own local RocksDB store counting every
event once too; the population models' trainer SIGKILLed and every update learned once; a standby
taking over under the config applied meanwhile; a worker stopped (SIGTERM) in the middle of a backlog,
a worker joining mid-stream, and a rolling restart, counting every event once."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import orjson
import redis as redis_sync

from riskwatch.config import CURRENT_CONFIG, load_config
from riskwatch.engine import Engine
from riskwatch.errors import InvalidEvent
from riskwatch.events import parse_event
from riskwatch.models import PopulationModels
from riskwatch.settings import Settings
from riskwatch.simulate import Simulation
from riskwatch.streams.kafka import ensure_topics
from riskwatch.streams.shared_models import decode_snapshot

from .conftest import Workers, wait_for, worker_env
from .helpers import counted_once, produce, read_batches, read_topic


def _state_partitions(workers, i: int) -> set[str]:
    """The partitions whose entity states worker ``i`` holds (its ``riskwatch_entity_states`` samples)."""
    return {line.split('partition="', 1)[1].split('"', 1)[0] for line in workers.metrics_text(i).splitlines()
            if line.startswith("riskwatch_entity_states{")}


def test_each_partition_is_one_workers_for_every_input_topic(stack):
    """Three workers: each partition number, of every input topic, goes to one worker, so each
    entity's state is held once. Until 2026-12-05 Faust's fallback (aiokafka's round-robin
    assignor) dealt topic-partitions out in name order: with three workers every worker held states
    of partitions whose events partly went to another, and each overwrote the other's."""
    s, workers = stack
    ids = [workers.start() for _ in range(3)]

    def settled():
        held = [_state_partitions(workers, i) for i in ids]
        return held if sum(map(len, held)) == s.partitions and all(held) else None

    held = wait_for(settled, 90, "the partitions shared out", lambda: f"{[_state_partitions(workers, i) for i in ids]}"
                    f"\n{workers.logs()[-3000:]}")
    assert set.union(*held) == {str(p) for p in range(s.partitions)}, held
    assert all(workers.metric(i, "riskwatch_partitions_split") == 0 for i in ids)


def test_sigkill_one_of_two_workers_counts_every_event_once(stack):
    s, workers = stack
    sim = Simulation(n_entities=400, seed=9, bad_share=0.1, days=30)
    events = list(sim.events(n_events=40000))
    a = workers.start()
    b = workers.start()
    # small envelopes so there are many messages in flight when the worker dies
    produce(s, events, batch_size=20)
    wait_for(lambda: workers.metric(a, "riskwatch_events_processed_total") > 2000 or
             workers.metric(b, "riskwatch_events_processed_total") > 2000, 90, "both workers busy",
             workers.logs)
    assert not _state_partitions(workers, a) & _state_partitions(workers, b)  # each state held once
    victim = a if workers.metric(a, "riskwatch_events_processed_total") > 0 else b
    workers.kill(victim)
    survivor = b if victim == a else a

    t0 = time.monotonic()
    counted_once(s, workers, events, "the survivor to finish the stream",
                  lambda: f"survivor consumed {workers.metric(survivor, 'riskwatch_events_consumed_total'):.0f}, "
                          f"processed {workers.metric(survivor, 'riskwatch_events_processed_total'):.0f}, skipped "
                          f"{workers.metric(survivor, 'riskwatch_events_redelivered_total'):.0f}")
    assert workers.metric(survivor, "riskwatch_events_processed_total") > 0
    assert workers.metric(survivor, "riskwatch_resume_gaps_total") == 0
    print(f"survivor finished {time.monotonic() - t0:.1f}s after the kill; redelivered and skipped: "
          f"{workers.metric(survivor, 'riskwatch_events_redelivered_total'):.0f}")


def test_sigkill_then_restart_on_the_same_local_store_counts_every_event_once(stack):
    """The local store (RocksDB, no write-ahead log) of a killed worker has lost its memtable; the
    restarted worker must rebuild the rest from the changelog and skip what its states already hold."""
    s, workers = stack
    sim = Simulation(n_entities=400, seed=11, bad_share=0.1, days=30)
    events = list(sim.events(n_events=30000))
    rocks = {"RISKWATCH_STORE": "rocksdb://"}
    a = workers.start(rocks)
    produce(s, events, batch_size=20)
    wait_for(lambda: workers.metric(a, "riskwatch_events_processed_total") > 5000, 90, "the worker busy",
             workers.logs)
    workers.kill(a)
    assert any((s.data_dir / "w0").rglob("*.sst")) or any((s.data_dir / "w0").rglob("CURRENT")), \
        "the killed worker had a local RocksDB store"
    b = workers.start(rocks, data_of=a)

    counted_once(s, workers, events, "the restarted worker to finish the stream",
                  lambda: f"processed {workers.metric(b, 'riskwatch_events_processed_total'):.0f}")
    assert workers.metric(b, "riskwatch_resume_gaps_total") == 0
    recovered = [line for line in (s.data_dir / "worker1.log").read_text(errors="replace").splitlines()
                 if " recovered: " in line]
    print("restarted worker:", *recovered[-4:], sep="\n  ")


def test_sigterm_in_the_middle_of_a_backlog_then_restart_counts_every_event_once(stack):
    """A worker stopped as a deploy stops it (SIGTERM) while it works through a backlog stops in
    the middle of a round; the restarted worker must count every event once. (It passed with
    faust_fixes' fix 4 switched off as well: the loss that fix prevents needs a cancelled round
    holding new messages, which the test above makes likely and a busy backlog does not.)"""
    s, workers = stack
    sim = Simulation(n_entities=400, seed=19, bad_share=0.1, days=30)
    events = list(sim.events(n_events=30000))
    rocks = {"RISKWATCH_STORE": "rocksdb://"}
    produce(s, events, batch_size=20)
    a = workers.start(rocks)
    wait_for(lambda: workers.metric(a, "riskwatch_events_processed_total") > 8000, 90, "the worker busy",
             workers.logs)
    assert workers.stop(a) == 0, workers.logs()
    b = workers.start(rocks, data_of=a)

    counted_once(s, workers, events, "the restarted worker to finish the backlog",
                  lambda: f"resume gaps {workers.metric(b, 'riskwatch_resume_gaps_total'):.0f}")
    assert workers.metric(b, "riskwatch_resume_gaps_total") == 0


def test_a_worker_stopped_while_it_recovers_leaves_its_first_round_to_the_next(stack):
    """SIGTERM at a worker's start, while it recovers its states from the changelog and its first
    round (new events) waits for that: the round is cancelled, and its messages must not be
    committed. Faust acks a cancelled round's messages, and the next message its background reader
    pulls, and commits them as it stops: until 2026-12-05 the next worker began after them
    (faust_fixes, fix 4)."""
    s, workers = stack
    sim = Simulation(n_entities=400, seed=23, bad_share=0.0, days=30)
    events = list(sim.events(n_events=36000))
    produce(s, events[:30000], batch_size=20)
    a = workers.start()  # memory store: the next worker recovers everything from the changelog
    wait_for(lambda: workers.metric(a, "riskwatch_events_processed_total") >= 30000, 120, "the first worker done",
             workers.logs)
    assert workers.stop(a) == 0, workers.logs()
    produce(s, events[30000:], batch_size=20)
    b = workers.start()
    log_b = s.data_dir / f"worker{b}.log"
    wait_for(lambda: "Worker ready" in log_b.read_text(errors="replace"), 60, "the second worker assigned",
             workers.logs)
    recovering = " recovered: " not in log_b.read_text(errors="replace")
    workers.stop(b)
    c = workers.start()

    counted_once(s, workers, events, "the third worker to finish",
                  lambda: f"resume gaps {workers.metric(c, 'riskwatch_resume_gaps_total'):.0f}")
    assert workers.metric(c, "riskwatch_resume_gaps_total") == 0
    print("the second worker was stopped", "while recovering" if recovering else "after its recovery")


def test_scale_out_and_a_rolling_restart_count_every_event_once(stack):
    """The everyday operations, with no kill: a second worker joins mid-stream (the first hands
    half its partitions over), the first is stopped as a deploy stops it (SIGTERM; the second takes
    everything) and started again on its own local store (and takes half back). Every event is
    counted once, no source resumes past its recovered states, and each partition's states end on
    one worker."""
    s, workers = stack
    sim = Simulation(n_entities=400, seed=17, bad_share=0.1, days=30)
    events = list(sim.events(n_events=40000))
    rocks = {"RISKWATCH_STORE": "rocksdb://"}
    joined, restarted = threading.Event(), threading.Event()

    def feed():  # a live feed in small envelopes: messages in flight at every rebalance
        for i in range(0, len(events), 500):
            if i >= len(events) // 2:  # the second half once the second worker holds partitions: on a
                joined.wait(180)       # loaded machine it joined after the first had done 3/4 of the
            if i >= 3 * len(events) // 4:  # stream, and had nothing left to take over (ci195, 7e34a8d)
                restarted.wait(180)
            produce(s, events[i:i + 500], batch_size=20)
            time.sleep(0.25)

    a = workers.start(rocks)
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        wait_for(lambda: workers.metric(a, "riskwatch_events_processed_total") > 3000, 90, "the first worker busy",
                 workers.logs)
        b = workers.start(rocks)
        wait_for(lambda: "recovered:" in workers.log(b), 90,
                 "the second worker to take partitions over", workers.logs)
        joined.set()
        wait_for(lambda: workers.metric(b, "riskwatch_events_processed_total") > 1000, 90,
                 "the second worker to process its partitions", workers.logs)
        assert workers.stop(a) == 0, workers.logs()
        wait_for(lambda: len(_state_partitions(workers, b)) == s.partitions, 60,
                 "the second worker to take every partition", workers.logs)
        c = workers.start(rocks, data_of=a)
        wait_for(lambda: "recovered:" in workers.log(c), 90,
                 "the restarted worker to take partitions back", workers.logs)
    finally:
        joined.set()
        restarted.set()
    feeder.join()

    counted_once(s, workers, events, "the stream finished")
    held_b, held_c = _state_partitions(workers, b), _state_partitions(workers, c)
    assert held_b and held_c and not held_b & held_c, (held_b, held_c)
    assert held_b | held_c == {str(p) for p in range(s.partitions)}
    for i in (b, c):
        assert workers.metric(i, "riskwatch_resume_gaps_total") == 0
        assert workers.metric(i, "riskwatch_partitions_split") == 0
    print("partitions at the end:", sorted(held_b), sorted(held_c), "; redelivered and skipped:",
          sum(workers.metric(i, "riskwatch_events_redelivered_total") for i in (b, c)))


def _expected_model_updates(events) -> tuple[int, int]:
    """What the population models learn from these events, each once, whatever the order of
    topics: (inspection-model examples, entities in peer groups). The engine over the events offline
    gives the examples (which inspections teach the model depends on each entity's inspections
    only, and they come in order on one topic); each entity registers in its peer group once.
    (Peer-group complaint updates are left out: a complaint processed before its entity's
    register data, which comes on another topic, updates no peer group.)"""
    models = PopulationModels()
    eng = Engine(load_config(), models)
    states: dict = {}
    for e in events:
        try:
            ev = parse_event(e)
        except InvalidEvent:
            continue
        states[ev.entity_id] = eng.process(states.get(ev.entity_id), ev)[0]
    return models.inspection.version, round(sum(g[2] for g in models.peers.groups.values()))


def _latest_snapshot(s) -> tuple[int, tuple[int, int]] | None:
    """(version, (inspection-model examples, entities in peer groups)) of the last published snapshot."""
    snaps = read_topic(s.broker, s.topic("models"))
    if not snaps:
        return None
    version, models = decode_snapshot(snaps[-1][2])
    return version, (models.inspection.version, round(sum(g[2] for g in models.peers.groups.values())))


def test_sigkill_of_the_trainer_learns_every_model_update_once(stack):
    """The worker that owns the training partition (and publishes the population models) is
    SIGKILLed mid-stream: the survivor takes over from the last snapshot, reads the training
    messages its group had committed past it, and skips the updates of source messages it
    processes again. The last snapshot holds every update once: as many peer-group and
    inspection-model updates as the engine makes over the same events offline."""
    s, workers = stack
    sim = Simulation(n_entities=400, seed=13, bad_share=0.0, days=30)
    events = list(sim.events(n_events=30000))
    expected = _expected_model_updates(events)
    # snapshots far apart: the trainer dies between two, after its group committed training offsets
    env = {"RISKWATCH_MODEL_PUBLISH_SECONDS": "15"}
    a = workers.start(env)
    b = workers.start(env)

    killed = threading.Event()

    def feed():  # traffic in small envelopes, a third of it after the kill: many messages in flight at it
        for i in range(0, len(events), 1000):
            if i >= 2 * len(events) // 3:
                killed.wait(120)
            produce(s, events[i:i + 1000], batch_size=20)
            time.sleep(0.5)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    wait_for(lambda: min(workers.metric(a, "riskwatch_events_processed_total"),
                         workers.metric(b, "riskwatch_events_processed_total")) > 500, 90, "both workers busy",
             workers.logs)
    wait_for(lambda: workers.metric(a, "riskwatch_model_trainer") + workers.metric(b, "riskwatch_model_trainer")
             == 1, 30, "one trainer", workers.logs)
    trainer = a if workers.metric(a, "riskwatch_model_trainer") == 1 else b
    survivor = b if trainer == a else a
    wait_for(lambda: workers.metric(trainer, "riskwatch_events_processed_total") > 3000, 60, "the trainer busy",
             workers.logs)
    time.sleep(4)  # past Faust's commit interval (2.8 s): the group has committed training offsets
    workers.kill(trainer)
    killed.set()
    feeder.join()

    counted_once(s, workers, events, "the survivor to finish the stream")
    assert workers.metric(survivor, "riskwatch_model_trainer") == 1

    def all_learned():
        snap = _latest_snapshot(s)
        return snap if snap and snap[1] == expected else None

    wait_for(all_learned, 60, f"a snapshot with every update once, {expected} (inspections, peer entities)",
             lambda: f"latest snapshot (version, updates): {_latest_snapshot(s)}; survivor skipped "
                     f"{workers.metric(survivor, 'riskwatch_model_updates_skipped_total'):.0f} source messages, "
                     f"read {workers.metric(survivor, 'riskwatch_model_training_recovered_total'):.0f} training "
                     f"messages to resume\n" + workers.logs()[-3000:])
    time.sleep(2)  # nothing more arrives later (an update learned twice would)
    assert _latest_snapshot(s)[1] == expected
    print(f"survivor skipped {workers.metric(survivor, 'riskwatch_model_updates_skipped_total'):.0f} source "
          f"messages already learned, read {workers.metric(survivor, 'riskwatch_model_training_recovered_total'):.0f}"
          f" training messages to resume; updates {expected}")


def test_a_standby_worker_that_takes_over_runs_the_config_applied_meanwhile(services, tmp_path):
    """One partition, two workers: one processes, the other stands by. Ops change the config (the
    API's way: the command on rw.commands, the applied command in Redis); only the active worker
    sees the command. It is SIGKILLed after committing past it; the standby takes over and must
    decide under the new config, not the one it started with (it did until 2026-12-05)."""
    broker, redis = services
    tag = uuid.uuid4().hex[:8]
    s = Settings(broker=broker.url, redis_url=redis.url, topic_prefix=f"t{tag}.", app_id=f"rw-{tag}",
                 partitions=1, data_dir=tmp_path, tick_seconds=0, store="memory://")
    asyncio.run(ensure_topics(s))
    r = redis_sync.Redis.from_url(redis.url)
    r.delete(CURRENT_CONFIG)
    workers = Workers(s, worker_env(s), tmp_path)
    try:
        active = workers.start()
        wait_for(lambda: "recovered" in workers.logs(), 60, "the first worker to own the partition", workers.logs)
        standby = workers.start()

        def assignments(i: int) -> int:
            return workers.log(i).count("Executing _on_partitions_assigned")

        # the standby joined the group (and got nothing: one partition), and the first worker rebalanced for it
        wait_for(lambda: assignments(standby) >= 1 and assignments(active) >= 2, 90, "the standby in the group",
                 workers.logs)
        produce(s, [{"type": "entity", "entity_id": "91350100M000100Y43", "name": "Shop", "industry": "food",
                     "region": "350100"}])
        wait_for(lambda: workers.metric(active, "riskwatch_events_processed_total") >= 1
                 or workers.metric(standby, "riskwatch_events_processed_total") >= 1, 60, "the first event",
                 workers.logs)
        if workers.metric(standby, "riskwatch_events_processed_total") >= 1:
            active, standby = standby, active  # the group gave the partition to the later one
        applied = load_config().model_dump(mode="json") | {"version": "applied-meanwhile"}
        cmd = {"type": "config_change", "seq": 1, "config": applied}
        produce(s, [], raw=[(s.topic("commands"), orjson.dumps(cmd))])
        r.set(CURRENT_CONFIG, orjson.dumps(cmd))
        wait_for(lambda: workers.metric(active, "riskwatch_config_change") == 1, 60, "the active worker to apply it",
                 workers.logs)
        assert workers.metric(standby, "riskwatch_config_change") == 0  # it never saw the command
        time.sleep(4)  # past the commit interval: the command's offset is committed
        workers.kill(active)
        produce(s, [{"type": "complaint", "complaint_id": "c1", "entity_id": "91350100M000100Y43",
                     "ts": "2026-03-01T09:00:00+08:00", "category": "a", "severity": 3}])
        changes = wait_for(lambda: [x for x in read_batches(s.broker, s.topic("risk-changes"))], 90,
                           "the standby's decision", workers.logs)
        assert changes[-1]["config_version"] == "applied-meanwhile", changes[-1]
        assert workers.metric(standby, "riskwatch_config_change") == 1
    finally:
        workers.stop_all()
        r.delete(CURRENT_CONFIG)


def test_events_sent_to_any_partition_reach_their_entitys_worker_and_count_once(stack):
    """Producers may key events as they like (a device id, none at all): a worker re-keys an event
    that is not its entity's partition's to ``rekey``, and that partition's owner applies it. Two
    workers, so most re-keyed events change worker. Envelopes here mix entities and go to a partition
    chosen at random: about 3 in 4 events are on the wrong one. Until 2026-12-07 no test sent an event
    to a partition other than its entity's."""
    import random

    from aiokafka import AIOKafkaProducer

    from riskwatch.streams.codec import partition_for
    from riskwatch.streams.kafka import topic_for

    s, workers = stack
    events = list(Simulation(n_entities=300, seed=21, bad_share=0.15, days=30).events(n_events=12000))
    rng = random.Random(5)
    messages, wrong = [], 0
    by_topic: dict[str, list] = {}
    for ev in events:
        by_topic.setdefault(topic_for(ev, s), []).append(ev)
    for topic, evs in by_topic.items():
        for i in range(0, len(evs), 40):
            part = rng.randrange(s.partitions)
            chunk = evs[i:i + 40]
            wrong += sum(partition_for(e["entity_id"].encode(), s.partitions) != part for e in chunk)
            messages.append((topic, part, orjson.dumps({"batch": chunk})))

    async def send() -> None:
        p = AIOKafkaProducer(bootstrap_servers=s.broker, acks="all", linger_ms=5)
        await p.start()
        try:
            await asyncio.gather(*[p.send_and_wait(t, v, partition=part) for t, part, v in messages])
        finally:
            await p.stop()

    a, b = workers.start(), workers.start()
    asyncio.run(send())
    assert 0.6 * len(events) < wrong < 0.9 * len(events), wrong
    counted_once(s, workers, events, "every event applied by its entity's worker",
                  lambda: f"re-keyed {[workers.metric(i, 'riskwatch_rekeyed_total') for i in (a, b)]} of {wrong}")
    rekeyed = sum(workers.metric(i, "riskwatch_rekeyed_total") for i in (a, b))
    assert rekeyed >= wrong, (rekeyed, wrong)  # more only if a round was redelivered
    rekey_topic = read_topic(s.broker, s.topic("rekey"))
    assert len(rekey_topic) == rekeyed
    assert all(partition_for(k, s.partitions) == p for p, k, _ in rekey_topic)  # keyed to the owner
    assert sum(workers.metric(i, "riskwatch_deadlettered_total") for i in (a, b)) == 0
