"""Offsets of an input partition that never reach a worker are read directly, or counted.

The embedded broker (Tansu 0.6) numbers a message before it stores it: while several producers write
one partition, a fetch can return offset n+1 before n is stored, and the consumer moves past n
(``bench/broker_skips.py``; README: the embedded broker). With ``RISKWATCH_REPAIR_GAPS`` (set by
``riskwatch up`` with the embedded broker, and by these tests' workers) a worker that gets n+1 after
n-1 reads n directly and processes it first; what it cannot read (1 s of asking) it counts in
``riskwatch_input_offset_gaps_total``, as a worker without the setting counts every gap.

The skip itself cannot be caused on demand. A record batch whose offsets leave a hole can: the
broker assigns the batch's whole offset span, so offsets 2-5 below hold nothing, as after Kafka's
compaction or a transaction marker.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import datetime, timedelta, timezone

import orjson
from aiokafka import AIOKafkaProducer

from riskwatch.streams.codec import partition_for
from riskwatch.uscc import generate

from .conftest import wait_for
from .helpers import changelog_states

T0 = datetime(2026, 3, 1, 9, tzinfo=timezone(timedelta(hours=8)))
HOLE = 4


async def _with_a_hole(broker: str, topic: str, events: list[dict]) -> list[int]:
    """events[0] alone, then events[1] and events[2] in one batch with HOLE offsets between them, then
    the rest one by one, all to partition 0; the offsets they got."""
    p = AIOKafkaProducer(bootstrap_servers=broker)
    await p.start()
    try:
        offsets = [(await p.send_and_wait(topic, orjson.dumps(events[0]), partition=0)).offset]
        batch = p.create_batch()
        batch.append(key=None, value=orjson.dumps(events[1]), timestamp=None)
        batch._relative_offset += HOLE  # aiokafka's next record offset in the batch
        batch.append(key=None, value=orjson.dumps(events[2]), timestamp=None)
        batch.close()
        first = (await (await p.send_batch(batch, topic, partition=0))).offset
        offsets += [first, first + HOLE + 1]
        for ev in events[3:]:
            offsets.append((await p.send_and_wait(topic, orjson.dumps(ev), partition=0)).offset)
        return offsets
    finally:
        await p.stop()


def _complaints(eid: str, n: int) -> list[dict]:
    return [{"type": "complaint", "complaint_id": f"h{i}", "entity_id": eid, "ts": (T0 + timedelta(hours=i)).isoformat(),
             "category": "service"} for i in range(n)]


def test_an_input_offset_that_never_comes_is_asked_for_then_counted_and_the_stream_goes_on(stack):
    s, workers = stack
    rng = random.Random(4)
    eid = next(e for e in (generate(rng, "350100") for _ in range(100)) if partition_for(e.encode(), s.partitions) == 0)
    w = workers.start()
    events = _complaints(eid, 6)
    offsets = asyncio.run(_with_a_hole(s.broker, s.topic("complaints"), events))
    assert offsets[2] - offsets[1] == HOLE + 1  # the broker took the hole
    wait_for(lambda: (changelog_states(s.broker, s.app_id).get(eid) or {}).get("n") == len(events), 90,
             "every complaint counted", workers.logs)
    wait_for(lambda: workers.metric(w, "riskwatch_input_offset_gaps_total") == HOLE, 30, "the hole counted",
             workers.logs)
    assert workers.metric(w, "riskwatch_input_offsets_refetched_total") == 0
    assert f"offsets {offsets[1] + 1}-{offsets[2] - 1} never reached this worker and could not be read" in \
        workers.logs()


async def test_the_alert_intake_reads_candidates_its_consumer_skipped_and_counts_what_never_comes(services, tmp_path):
    """The dispatcher's intake is a consumer of a partition several workers write, so it can be skipped past
    a candidate too (an alert never opened). A skip is made here by committing the intake's consumer group
    past two messages the intake has not applied: with ``repair_gaps`` it reads them first; a hole it
    counts after asking; without the setting it counts the skip."""
    import redis.asyncio as aioredis
    import yaml
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from riskwatch.alerts.config import DEFAULT_ALERTS_PATH, load_alerts_config
    from riskwatch.alerts.dispatcher import _intake_loop
    from riskwatch.alerts.intake import AlertIntake
    from riskwatch.alerts.metrics import AlertMetrics
    from riskwatch.settings import Settings
    from riskwatch.streams.kafka import ensure_topics

    from .test_alerts_flow import _cand

    broker, redis = services
    tag = uuid.uuid4().hex[:8]
    s = Settings(broker=broker.url, redis_url=redis.url, topic_prefix=f"t{tag}.", app_id=f"rw-{tag}", partitions=1,
                 data_dir=tmp_path, repair_gaps=True)
    await ensure_topics(s)
    topic, tp = s.topic("alert-candidates"), TopicPartition(s.topic("alert-candidates"), 0)
    cfg = yaml.safe_load(DEFAULT_ALERTS_PATH.read_text())
    cfg["receivers"] = []
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(cfg))
    r = aioredis.from_url(redis.url)
    await r.flushall()
    m = AlertMetrics()
    intake = AlertIntake(r, load_alerts_config(tmp_path / "alerts.yaml"), ["A", "B", "C", "D"], m)

    def counted(name: str) -> float:
        return m.registry.get_sample_value(name, {"topic": topic}) or 0.0

    async def opened() -> set[str]:
        return {orjson.loads(await r.get(k))["entity_id"] async for k in r.scan_iter("rw:alert:*")}

    async def commit_group_at(settings: Settings, offset: int) -> None:  # as if its consumer had read to there
        c = AIOKafkaConsumer(bootstrap_servers=s.broker, group_id=f"{settings.app_id}-alerts",
                             enable_auto_commit=False)
        await c.start()
        try:
            c.assign([tp])
            await c.commit({tp: offset})
        finally:
            await c.stop()

    async def run_until(settings: Settings, done) -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(_intake_loop(settings, intake, stop, 0.2))
        try:
            for _ in range(150):
                if loop.done() or await done():
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await loop
        assert await done(), (await opened(), counted("riskwatch_input_offset_gaps_total"))

    msgs = [{"batch": [_cand(f"E{i}", "firing")]} for i in range(6)]
    offsets = await _with_a_hole(s.broker, topic, msgs[:3])  # 0, 1, then 2 after a hole of HOLE offsets
    assert offsets == [0, 1, 2 + HOLE]
    p = AIOKafkaProducer(bootstrap_servers=s.broker)
    await p.start()
    for msg in msgs[3:]:
        await p.send_and_wait(topic, orjson.dumps(msg), partition=0)
    await p.stop()  # offsets 7, 8, 9
    try:
        assert await intake.apply_message(topic, 0, 0, orjson.dumps(msgs[0])) == 1
        await commit_group_at(s, offsets[2] + 1)  # skips offset 1 (E1), the hole and offset 6 (E2)
        async def all_six() -> bool:
            return await opened() == {f"E{i}" for i in range(6)}

        await run_until(s, all_six)
        assert counted("riskwatch_input_offsets_refetched_total") == 2  # E1 and E2, read directly
        assert counted("riskwatch_input_offset_gaps_total") == HOLE  # asked for 1 s, then counted

        p = AIOKafkaProducer(bootstrap_servers=s.broker)
        await p.start()
        for i in range(6, 9):
            await p.send_and_wait(topic, orjson.dumps({"batch": [_cand(f"E{i}", "firing")]}), partition=0)
        await p.stop()  # offsets 10, 11, 12
        # a fresh group (the embedded broker refuses a commit from outside a group it has known members of)
        off = s.model_copy(update={"repair_gaps": False, "app_id": f"{s.app_id}-2"})
        await commit_group_at(off, 12)
        async def skip_counted() -> bool:
            return counted("riskwatch_input_offset_gaps_total") == HOLE + 2

        await run_until(off, skip_counted)
        assert await opened() == {f"E{i}" for i in range(6)} | {"E8"}  # E6 and E7 skipped, counted
        assert await intake.applied_offset(topic, 0) == 12
    finally:
        await r.aclose()
