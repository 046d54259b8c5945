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
