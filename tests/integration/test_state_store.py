"""The entity-state store against the real broker: recovery, local resume, ownership changes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

from aiokafka import AIOKafkaProducer

from riskwatch.streams.state_store import StateStore, send_records

PER_STAGE = 3  # changelog records per _write_changes step: two states and the source offsets


class _Ack:
    """What send_records' future gives its callbacks: a result whose last item has the last offset."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def result(self):
        return [self]


async def _write_changes(broker: str, topic: str, store: StateStore, p: int, n: int, one_batch: bool = False,
                         first: int = 0) -> None:
    prod = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=5, acks="all")
    await prod.start()
    try:
        together = []
        for i in range(first, first + n):
            states = {f"e{i % 50}": {"n": i}, f"x{i}": {"n": 1}}
            [(records, _)] = store.stage(p, {"src:1": i}, states)
            if one_batch:
                together += records
            else:
                await send_records(prod, topic, p, records)
        if one_batch:  # exactly one record batch
            batch = prod.create_batch()
            for key, value in together:
                assert batch.append(key=key, value=value, timestamp=None) is not None, "the batch is full"
            await (await prod.send_batch(batch, topic, partition=p))
        await prod.flush()
    finally:
        await prod.stop()


def test_recovery_reads_every_change_and_a_restart_resumes_from_its_local_store(services, tmp_path):
    broker, _ = services
    topic = f"state-{uuid.uuid4().hex[:8]}"

    async def run():
        writer = StateStore(broker.url, topic, None, partitions=2)
        writer.assign([0, 1])
        await writer.ready(1)  # creates the topic; empty
        await _write_changes(broker.url, topic, writer, 1, 3000)  # far past the reported end's batch
        # one record batch only: the embedded broker reports its first offset (0) as the end
        await _write_changes(broker.url, topic, writer, 0, 3, one_batch=True)
        c = StateStore(broker.url, topic, None, partitions=2)
        c.assign([0])
        await c.ready(0)
        assert c.get(0, "e2") == {"n": 2} and c.parts[0].offset == 3 * PER_STAGE - 1
        assert c.count(0) == 6  # e0-e2, x0-x2 (the memory store)
        # a new owner with an on-disk store recovers everything from the changelog
        a = StateStore(broker.url, topic, tmp_path / "a", partitions=2)
        a.assign([1])
        await a.ready(1)
        assert a.get(1, "e49") == {"n": 2999} and a.get(1, "e0") == {"n": 2950}
        assert a.get(1, "x2999") == {"n": 1} and a.get(1, "x0") == {"n": 1}
        assert sum(1 for _ in a.items(1)) == 50 + 3000 == a.count(1)  # RocksDB: counted at recovery
        assert a.parts[1].offset == 3000 * PER_STAGE - 1
        assert a.resumes(1, "src:1", 3000) is None       # states hold every source offset up to 2999
        assert a.resumes(1, "src:9", 5) is None           # unknown source: no claim
        a.close()
        # the same worker restarted: its local store holds the changelog so far; what came since
        # is one record batch, whose first offset (= where b starts) the broker reports as the end
        await _write_changes(broker.url, topic, writer, 1, 5, one_batch=True, first=3000)
        b = StateStore(broker.url, topic, tmp_path / "a", partitions=2)
        assert b._part(1).offset == 3000 * PER_STAGE - 1
        b.assign([1])
        await b.ready(1)
        assert b.get(1, "e49") == {"n": 2999} and b.get(1, "e4") == {"n": 3004}
        assert b.parts[1].offset == 3005 * PER_STAGE - 1
        # a source that resumes past the recovered states is reported, once
        assert b.resumes(1, "src:1", 3010) == 3004
        assert b.resumes(1, "src:1", 3011) is None
        # the state count: recovered (x3000-x3004 are new since a), then + each new state staged
        assert b.count(1) == 3055
        assert b.get(1, "fresh") is None
        b.stage(1, {}, {"fresh": {"n": 1}, "e4": {"n": 3005}})
        b.stage(1, {}, {"fresh": {"n": 2}})
        assert b.count(1) == 3056 and sum(1 for _ in b.items(1)) == 3056
        b.close()

    asyncio.run(run())


def test_the_changelog_is_compacted_and_the_format_before_keyed_records_is_still_read(services):
    """Keyed records on a compacted topic: Kafka keeps the last state per entity and never ages one
    out. A changelog written before (unkeyed messages holding many states) still recovers."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    broker, _ = services
    topic = f"state-{uuid.uuid4().hex[:8]}"

    async def run():
        s = StateStore(broker.url, topic, None, partitions=1)
        s.assign([0])
        await s.ready(0)  # creates the changelog
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.url)
        await admin.start()
        try:
            [resp] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        finally:
            await admin.close()
        assert ("cleanup.policy", "compact") in [(e[0], e[1]) for e in resp.resources[0][4]]
        prod = AIOKafkaProducer(bootstrap_servers=broker.url, acks="all")
        await prod.start()
        try:
            await prod.send_and_wait(topic, b'{"src":{"in:0":5},"states":{"old":{"n":7},"both":{"n":1}}}',
                                     partition=0)
            [(records, _)] = s.stage(0, {"in:0": 6}, {"both": {"n": 2}, "new": {"n": 3}})
            await (await send_records(prod, topic, 0, records))
        finally:
            await prod.stop()
        r = StateStore(broker.url, topic, None, partitions=1)
        r.assign([0])
        await r.ready(0)
        assert (r.get(0, "old"), r.get(0, "both"), r.get(0, "new")) == ({"n": 7}, {"n": 2}, {"n": 3})
        assert r.parts[0].offset == 3 and r.parts[0].src_seen == {"in:0": 6}

    asyncio.run(run())


def test_an_existing_changelog_with_another_cleanup_policy_is_reported(services, caplog):
    from riskwatch.streams.kafka import create_topics
    from riskwatch.streams.state_store import CHANGELOG_CONFIG

    broker, _ = services
    topic = f"state-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topics(broker.url, {topic: 1}))  # created elsewhere, broker's default policy
    with caplog.at_level("WARNING", logger="riskwatch.kafka"):
        asyncio.run(create_topics(broker.url, {topic: 1}, {topic: CHANGELOG_CONFIG}))
    assert any(topic in r.getMessage() and "cleanup.policy" in r.getMessage() and "--add-config" in r.getMessage()
               for r in caplog.records), caplog.text
    caplog.clear()
    ok = f"state-{uuid.uuid4().hex[:8]}"
    with caplog.at_level("WARNING", logger="riskwatch.kafka"):
        asyncio.run(create_topics(broker.url, {ok: 1}, {ok: CHANGELOG_CONFIG}))   # created compacted
        asyncio.run(create_topics(broker.url, {ok: 1}, {ok: CHANGELOG_CONFIG}))   # exists, as wanted
    assert not caplog.records, caplog.text


def test_acks_write_the_local_store_and_late_acks_after_a_revoke_are_ignored(services, tmp_path):
    broker, _ = services
    topic = f"state-{uuid.uuid4().hex[:8]}"

    async def run():
        s = StateStore(broker.url, topic, tmp_path / "s", partitions=1)
        s.assign([0])
        await s.ready(0)
        [(records, ack1)] = s.stage(0, {"in:0": 10}, {"e": {"n": 1}})
        assert records == [(b"e", b'{"n":1}'), (b"\x00src", b'{"in:0":10}')]  # keyed: compactable
        assert s.get(0, "e") == {"n": 1}                # pending: readable before the ack
        assert s.parts[0].local.get(b"e") is None
        ack1(_Ack(1))                                   # the records went to offsets 0 and 1
        assert s.parts[0].local.get(b"e") == b'{"n":1}' and s.parts[0].offset == 1
        assert s.parts[0].pending == {} and s.parts[0].src_seen == {"in:0": 10}
        [(records, _)] = s.stage(0, {"in:1": 3}, {"f": {"n": 1}})
        assert records[-1] == (b"\x00src", b'{"in:0":10,"in:1":3}')  # every source so far: compaction
        [(_, ack2)] = s.stage(0, {"in:0": 11}, {"e": {"n": 2}})  # keeps only the last such record
        s.revoke([0])                                   # ownership lost before the ack came back
        ack2(_Ack(5))
        assert s.parts[0].local.get(b"e") == b'{"n":1}'  # recovery, not the late ack, decides
        assert not s.parts[0].ready.is_set()
        s.close()

    asyncio.run(run())


def test_a_recovery_cancelled_by_a_revoke_starts_again_for_the_partitions_still_owned(services):
    broker, _ = services
    topic = f"state-{uuid.uuid4().hex[:8]}"

    async def run():
        s = StateStore(broker.url, topic, None, partitions=2)
        s.assign([0, 1])   # one recovery task for both
        s.revoke([0])      # cancels it
        await asyncio.wait_for(s.ready(1), 15)
        assert s.parts[1].ready.is_set() and not s.parts[0].ready.is_set()

    asyncio.run(run())


_KILLED_AFTER_RECOVERY = """
import asyncio, os, sys
from pathlib import Path
from riskwatch.streams.state_store import StateStore

async def main():
    s = StateStore(sys.argv[1], sys.argv[2], Path(sys.argv[3]), partitions=2)
    s.assign([1])
    await s.ready(1)
    print(s.parts[1].offset, flush=True)
    os._exit(9)  # no close(): RocksDB's memtable is not flushed and there is no write-ahead log

asyncio.run(main())
"""


def test_a_store_killed_without_closing_recovers_everything_on_its_next_start(services, tmp_path):
    """The local store writes no RocksDB WAL: a killed worker loses its memtable. Its next start
    must find states and offset consistent (whatever reached disk) and read the rest from the changelog."""
    broker, _ = services
    topic = f"state-{uuid.uuid4().hex[:8]}"

    async def fill():
        writer = StateStore(broker.url, topic, None, partitions=2)
        writer.assign([1])
        await writer.ready(1)
        await _write_changes(broker.url, topic, writer, 1, 2000)

    asyncio.run(fill())
    done = subprocess.run([sys.executable, "-c", _KILLED_AFTER_RECOVERY, broker.url, topic, str(tmp_path / "k")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 9 and done.stdout.strip() == str(2000 * PER_STAGE - 1), done.stderr

    async def restart():
        s = StateStore(broker.url, topic, tmp_path / "k", partitions=2)
        assert -1 <= s._part(1).offset <= 2000 * PER_STAGE - 1  # whatever reached disk before the kill
        s.assign([1])
        await s.ready(1)
        assert s.parts[1].offset == 2000 * PER_STAGE - 1
        assert s.get(1, "e49") == {"n": 1999} and s.get(1, "x0") == {"n": 1} and s.get(1, "x1999") == {"n": 1}
        assert sum(1 for _ in s.items(1)) == 50 + 2000
        assert s.resumes(1, "src:1", 2000) is None
        s.close()

    asyncio.run(restart())


_WRITE_THEN_DIE = """
import os, sys, time
from pathlib import Path
from riskwatch.streams import state_store
state_store.FLUSH_SECONDS = float(sys.argv[2])
local = state_store._Local(Path(sys.argv[1]))
local.write({b"first": b"1"})
local.write({b"second": b"2"})   # past FLUSH_SECONDS: asks for a background flush
time.sleep(1.0)                  # (a flush of two keys takes milliseconds)
os._exit(9)                      # no close()
"""


def test_the_local_store_flushes_periodically_so_a_kill_loses_at_most_that_much(tmp_path):
    from riskwatch.streams.state_store import _Local

    for flush_seconds, survives in (("1e9", False), ("0", True)):
        path = tmp_path / f"db-{flush_seconds}"
        done = subprocess.run([sys.executable, "-c", _WRITE_THEN_DIE, str(path), flush_seconds],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 9, done.stderr
        local = _Local(path)
        got = (local.get(b"first"), local.get(b"second"))
        local.close()
        assert got == ((b"1", b"2") if survives else (None, None)), (flush_seconds, got)


def test_a_local_store_ahead_of_its_changelog_is_discarded_and_the_changelog_recovered(services, tmp_path, caplog):
    """A changelog recreated under a kept local store (a new broker, a deleted topic, another app id on
    the same data directory): the store's states and source offsets belong to the old topic; kept,
    they made the worker skip every new event as redelivered (5,468 of 5,468 after a broker restart)."""
    broker, _ = services
    old, empty, short = (f"state-{uuid.uuid4().hex[:8]}" for _ in range(3))

    async def run():
        for topic, n in ((old, 20), (short, 3)):
            writer = StateStore(broker.url, topic, None, partitions=1)
            writer.assign([0])
            await writer.ready(0)
            await _write_changes(broker.url, topic, writer, 0, n)
        for d in ("a", "b"):  # two local stores built from the old changelog
            s = StateStore(broker.url, old, tmp_path / d, partitions=1)
            s.assign([0])
            await s.ready(0)
            assert s.parts[0].offset == 20 * PER_STAGE - 1 and s.get(0, "x10") == {"n": 1}
            s.close()
        caplog.clear()
        # an empty changelog under store a
        a = StateStore(broker.url, empty, tmp_path / "a", partitions=1)
        a.assign([0])
        await a.ready(0)
        assert a.parts[0].offset == -1 and a.get(0, "x10") is None and not list(a.items(0))
        assert a.resumes(0, "src:1", 0) is None  # no source offsets left to skip new events by
        a.close()
        # a shorter one under store b: discarded, then that changelog recovered
        b = StateStore(broker.url, short, tmp_path / "b", partitions=1)
        b.assign([0])
        await b.ready(0)
        assert b.parts[0].offset == 3 * PER_STAGE - 1 and b.get(0, "e2") == {"n": 2} and b.get(0, "x10") is None
        b.close()

    asyncio.run(run())
    warned = [r.getMessage() for r in caplog.records if "ahead of the changelog" in r.getMessage()]
    assert len(warned) == 2 and empty in warned[0] and short in warned[1], warned
