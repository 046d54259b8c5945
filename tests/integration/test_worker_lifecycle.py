"""A worker's start and stop: one worker per data directory; a clean stop leaves its local store at
the changelog's end; a stop that cannot finish (the broker gone) ends after RISKWATCH_STOP_TIMEOUT_S
with the local store flushed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
from rocksdict import Options, Rdict

from riskwatch.embedded import start_broker
from riskwatch.settings import Settings
from riskwatch.simulate import Simulation
from riskwatch.streams.kafka import ensure_topics
from riskwatch.streams.stopping import EXIT_STOP_TIMEOUT

from .conftest import Workers, wait_for, worker_env
from .helpers import FrontedBroker, changelog_states, counted_once, last_offsets, produce

ROCKS = {"RISKWATCH_STORE": "rocksdb://"}


def _local_offsets(data_dir: Path, partitions: int) -> dict[int, int]:
    """The changelog offset each partition's local store holds (-1: none on disk)."""
    out = {}
    for p in range(partitions):
        db = Rdict(str(data_dir / "worker" / "state" / f"p{p}"), Options(raw_mode=True))
        try:
            raw = db.get(b"\x00offset")
        finally:
            db.close()
        out[p] = int(raw) if raw else -1
    return out


def _sigterm(workers: Workers, i: int, timeout: float) -> tuple[int, float]:
    p = workers.procs[i][0]
    t = time.monotonic()
    os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker was still running {timeout:.0f}s after SIGTERM\n{workers.logs()}")
    return p.returncode, time.monotonic() - t


def test_a_clean_stop_leaves_the_local_store_at_the_end_of_the_changelog(stack):
    s, workers = stack
    events = list(Simulation(n_entities=300, seed=21, bad_share=0.1, days=20).events(n_events=6000))
    a = workers.start(ROCKS)
    produce(s, events, batch_size=50)
    wait_for(lambda: sum(x["n"] for x in changelog_states(s.broker, s.app_id).values()) >= len(events), 90,
             "the worker to write every state to the changelog", workers.logs)
    code, took = _sigterm(workers, a, 30)
    assert code == 0, workers.logs()
    # the run was shorter than the store's periodic flush (30 s): only the stop can have written it
    ends = last_offsets(s.broker, s.state_changelog)
    assert ends and _local_offsets(s.data_dir / "w0", s.partitions) == {p: ends.get(p, -1) for p in range(4)}
    print(f"stopped in {took:.1f}s; local store offsets = changelog ends {ends}")


def test_a_worker_whose_broker_is_gone_exits_after_the_stop_timeout_with_its_store_flushed(services, tmp_path):
    _, redis = services
    broker = start_broker(tmp_path / "broker")  # its own broker: this test stops it
    try:
        s = Settings(broker=broker.url, redis_url=redis.url, topic_prefix="stop.", app_id="rw-stop",
                     partitions=4, data_dir=tmp_path, tick_seconds=0)
        asyncio.run(ensure_topics(s))
        workers = Workers(s, worker_env(s, RISKWATCH_STOP_TIMEOUT_S="4", **ROCKS), tmp_path)
        events = list(Simulation(n_entities=300, seed=22, bad_share=0.1, days=20).events(n_events=4000))
        a = workers.start()
        produce(s, events, batch_size=50)
        wait_for(lambda: workers.metric(a, "riskwatch_events_processed_total") >= len(events), 90,
                 "the worker to process the stream", workers.logs)
        time.sleep(1)  # the last acks
        broker.stop()
        time.sleep(2)
        code, took = _sigterm(workers, a, 30)  # it took 62 s before the deadline
        log = workers.logs()
        assert code == EXIT_STOP_TIMEOUT, log
        assert 4 <= took < 12, took
        assert "did not stop within 4 s" in log
        # the run was shorter than the store's periodic flush (30 s) and os._exit runs no destructor:
        # states on disk mean the deadline flushed them
        offsets = _local_offsets(tmp_path / "w0", 4)
        assert all(o >= 0 for o in offsets.values()), offsets
        print(f"exited {code} {took:.1f}s after SIGTERM; local store offsets {offsets}")
    finally:
        broker.stop()


def test_a_worker_rides_out_its_broker_dropping_every_connection_for_a_while(services, tmp_path):
    """A broker restart as Kafka's rolling restarts do it (the data kept, every connection dropped, none
    taken for some seconds) in the middle of a stream: the worker keeps running and, once the broker is
    back, counts every event once, those sent while it was away included."""
    _, redis = services
    with FrontedBroker(tmp_path / "broker") as fb:
        s = Settings(broker=fb.url, redis_url=redis.url, topic_prefix="blip.", app_id="rw-blip",
                     partitions=4, data_dir=tmp_path, tick_seconds=0)
        asyncio.run(ensure_topics(s))
        workers = Workers(s, worker_env(s, **ROCKS), tmp_path)
        try:
            events = list(Simulation(n_entities=300, seed=31, bad_share=0.1, days=20).events(n_events=16000))
            half = len(events) // 2
            a = workers.start()
            produce(s, events[:half], batch_size=50)
            wait_for(lambda: workers.metric(a, "riskwatch_events_processed_total") >= half // 2, 90,
                     "the worker busy", workers.logs)
            fb.down()  # the broker goes away
            time.sleep(8)
            assert workers.procs[a][0].poll() is None, workers.logs()
            fb.up()  # and comes back
            produce(s, events[half:], batch_size=50)
            counted_once(s, workers, events, "every event counted after the broker came back",
                         settle=workers.wait_committed, timeout=180)
            assert workers.procs[a][0].poll() is None and workers.metric(a, "riskwatch_resume_gaps_total") == 0
            print(f"redelivered and skipped: {workers.metric(a, 'riskwatch_events_redelivered_total'):.0f}")
        finally:
            workers.stop_all()


def test_a_worker_whose_broker_goes_away_while_it_recovers_its_states_recovers_them_all(services, tmp_path):
    """A worker that takes over partitions reads their states back from the changelog before it
    processes anything. The broker drops every connection for 6 s in the middle of that read: the
    recovery goes on once it is back (or starts again), and every event is counted once."""
    _, redis = services
    with FrontedBroker(tmp_path / "broker") as fb:
        s = Settings(broker=fb.url, redis_url=redis.url, topic_prefix="rec.", app_id="rw-rec",
                     partitions=4, data_dir=tmp_path, tick_seconds=0, store="memory://")
        asyncio.run(ensure_topics(s))
        workers = Workers(s, worker_env(s), tmp_path)
        try:
            events = list(Simulation(n_entities=2000, seed=37, bad_share=0.1, days=20).events(n_events=40000))
            half = len(events) * 3 // 4
            a = workers.start()
            produce(s, events[:half], batch_size=10)  # many small rounds: a long changelog to read back
            wait_for(lambda: workers.metric(a, "riskwatch_events_processed_total") >= half, 180,
                     "the first worker to process the first part", workers.logs)
            workers.wait_committed()
            assert workers.stop(a) == 0
            b = workers.start()  # memory store: it reads every state back from the changelog
            deadline = time.monotonic() + 90
            while "recovering:" not in workers.log(b):
                assert time.monotonic() < deadline, workers.logs()
                time.sleep(0.02)
            fb.down()  # the broker goes away in the middle of the recovery
            cut_during = "recovered:" not in workers.log(b)
            time.sleep(6)
            fb.up()  # and comes back
            assert cut_during, "the recovery was over before the cut: make the changelog longer\n" + workers.log(b)
            produce(s, events[half:], batch_size=50)
            counted_once(s, workers, events, "every event counted after the broker came back",
                         settle=workers.wait_committed, timeout=180)
            assert workers.metric(b, "riskwatch_entity_states") == len({e["entity_id"] for e in events})
            assert workers.procs[b][0].poll() is None and workers.metric(b, "riskwatch_resume_gaps_total") == 0
            print([line for line in workers.log(b).splitlines() if "recover" in line])
        finally:
            workers.stop_all()


def test_a_worker_started_before_its_broker_waits_for_it(services, tmp_path):
    """A compose stack or a host starting in another order: until 2026-12-07 the worker exited at
    once (status 1, Faust's ``Unable to bootstrap``)."""
    _, redis = services
    with FrontedBroker(tmp_path / "broker", up=False) as fb:
        s = Settings(broker=fb.url, redis_url=redis.url, topic_prefix="late.", app_id="rw-late",
                     partitions=4, data_dir=tmp_path, tick_seconds=0, store="memory://")
        workers = Workers(s, worker_env(s), tmp_path)
        try:
            a = workers.start()  # nothing answers on the broker's port yet
            time.sleep(6)
            assert workers.procs[a][0].poll() is None, workers.log(a)
            assert "the broker does not answer" in workers.log(a), workers.log(a)
            fb.up()
            events = list(Simulation(n_entities=100, seed=41, days=10).events(n_events=2000))
            produce(s, events)
            wait_for(lambda: workers.metric(a, "riskwatch_events_processed_total") >= len(events), 90,
                     "the events processed once the broker answered", workers.logs)
        finally:
            workers.stop_all()


def test_a_second_worker_on_the_same_data_directory_refuses_to_start(stack):
    s, workers = stack
    a = workers.start(ROCKS)
    wait_for(lambda: "recovered" in workers.logs(), 60, "the first worker to own its partitions", workers.logs)
    b = workers.start(ROCKS, data_of=a)
    p = workers.procs[b][0]
    try:
        code = p.wait(60)
    except subprocess.TimeoutExpired:
        raise AssertionError("the second worker kept running on a data directory in use\n" + workers.logs())
    log = workers.log(b)
    assert code == 2, log
    assert "is in use by a worker, pid" in log and "each worker needs its own RISKWATCH_DATA_DIR" in log
    assert workers.procs[a][0].poll() is None  # the first one is unaffected
    # before the check, the second ran until the first rebalance gave it a partition, then crashed
    # on RocksDB's LOCK file: "IO error: While lock file: .../state/p0/LOCK"


def test_a_worker_and_create_topics_refuse_topics_with_another_partition_count(stack):
    """Before the check, a worker set to 8 partitions on 4-partition topics re-keyed events back to the
    same wrong partition forever (48,634 messages consumed for 5,468 events in 20 s)."""
    s, workers = stack  # its topics have 4 partitions
    a = workers.start({"RISKWATCH_PARTITIONS": "8"})
    try:
        code = workers.procs[a][0].wait(60)
    except subprocess.TimeoutExpired:
        raise AssertionError("the worker ran on topics with another partition count\n" + workers.logs())
    log = workers.log(a)
    assert code == 2, log
    assert "RISKWATCH_PARTITIONS is 8 but topics have other partition counts" in log
    assert f"{s.state_changelog} (4)" in log and "and 9 more" in log  # 12 keyed topics, 3 named
    assert "set RISKWATCH_PARTITIONS=4" in log
    r = subprocess.run([sys.executable, "-m", "riskwatch.cli", "create-topics"], capture_output=True, text=True,
                       env=dict(workers.env, RISKWATCH_PARTITIONS="8"), timeout=60)
    assert r.returncode == 2 and "set RISKWATCH_PARTITIONS=4" in r.stderr, r.stderr


def test_a_worker_on_a_broker_without_its_topics_creates_the_changelog_compacted(services, tmp_path):
    """Something asked for the changelog before the state store created it, and the embedded broker
    (like Kafka with auto.create.topics.enable) made it with the default policy: the store's check
    then logged 'has cleanup.policy=None, riskwatch needs compact'."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    broker, redis = services
    s = Settings(broker=broker.url, redis_url=redis.url, topic_prefix="fresh.", app_id="rw-fresh",
                 partitions=4, data_dir=tmp_path, tick_seconds=0, store="memory://")
    workers = Workers(s, worker_env(s), tmp_path)
    try:
        workers.start()
        wait_for(lambda: "recovered" in workers.logs(), 60, "the worker to own its partitions", workers.logs)

        async def policy():
            admin = AIOKafkaAdminClient(bootstrap_servers=broker.url)
            await admin.start()
            try:
                [resp] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, s.state_changelog)])
            finally:
                await admin.close()
            return dict((e[0], e[1]) for e in resp.resources[0][4]).get("cleanup.policy")

        assert asyncio.run(policy()) == "compact"
        assert "riskwatch needs compact" not in workers.logs()
    finally:
        workers.stop_all()


def test_a_worker_started_while_redis_is_away_waits_and_then_runs_the_applied_config(services, tmp_path):
    """Before, it warned once and ran on the config file's thresholds for good."""
    import redis as redis_sync

    from riskwatch.embedded import free_port, start_redis

    broker, _ = services
    port = free_port()  # Redis will come up here later
    url = f"redis://127.0.0.1:{port}/0"
    s = Settings(broker=broker.url, redis_url=url, topic_prefix="noredis.", app_id="rw-noredis", partitions=4,
                 data_dir=tmp_path, tick_seconds=0, store="memory://")
    asyncio.run(ensure_topics(s))
    workers = Workers(s, worker_env(s), tmp_path)
    redis = None
    try:
        a = workers.start()
        # the worker starts while Redis is away (a sleep of 4 s was too short once, with three test
        # processes: the worker had not asked Redis yet when it came up)
        wait_for(lambda: "Redis does not answer" in workers.log(a), 60,
                 "the worker to find Redis away", workers.logs)
        redis = start_redis(tmp_path / "redis", port=port)
        from riskwatch.config import default_config

        cfg = default_config().model_dump(mode="json")
        cfg["version"] = "applied-by-ops"
        redis_sync.Redis.from_url(url).set("rw:config:current", orjson.dumps({"seq": 7, "config": cfg}))
        wait_for(lambda: workers.metric(a, "riskwatch_config_change") == 7, 60,
                 "the worker to start on the applied config", workers.logs)
    finally:
        workers.stop_all()
        if redis is not None:
            redis.stop()
