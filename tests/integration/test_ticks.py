"""Wall-clock ticks: every entity that can go silent gets them, in envelopes Kafka accepts."""

from __future__ import annotations

from collections import Counter

import orjson

from riskwatch.simulate import Simulation

from .conftest import wait_for
from .helpers import produce, read_topic


def test_ticks_reach_every_entity_in_envelopes_of_at_most_1000(stack):
    """One envelope per partition was 2.05 MB at 100k entities, over Kafka's default 1 MB limit."""
    s, workers = stack
    sim = Simulation(n_entities=6000, seed=31, bad_share=0.05, days=10)
    events = list(sim.events(n_events=30000))
    sensors = {e["entity_id"] for e in events if e["type"] == "sensor_reading"}
    a = workers.start({"RISKWATCH_TICK_SECONDS": "3"})
    produce(s, events, batch_size=500)
    wait_for(lambda: workers.metric(a, "riskwatch_events_processed_total") >= len(events), 120,
             "the worker to process the stream", workers.logs)

    def tick_messages():
        out = []
        for p, _, v in read_topic(s.broker, s.topic("commands")):
            obj = orjson.loads(v)
            batch = obj["batch"] if isinstance(obj, dict) and "batch" in obj else [obj]
            ticks = [e for e in batch if e.get("type") == "tick"]
            if ticks:
                out.append((p, ticks))
        return out

    def a_full_round():
        msgs = tick_messages()
        first = {}  # entity -> partition, from the first timer firing seen (its ts)
        stamps = Counter(t["ts"] for _, ticks in msgs for t in ticks)
        if not stamps:
            return None
        ts = min(stamps)
        for p, ticks in msgs:
            for t in ticks:
                if t["ts"] == ts:
                    first[t["entity_id"]] = p
        return msgs, ts, first if sensors <= set(first) else None

    got = wait_for(lambda: (r := a_full_round()) and r[2] and r, 60, "one tick round to cover every entity with sensors",
                   lambda: f"{len(tick_messages())} tick messages\n" + workers.logs())
    msgs, ts, first = got
    sizes = [len(ticks) for _, ticks in msgs]
    assert max(sizes) <= 1000, sizes
    per_partition = Counter(p for p, ticks in msgs if ticks[0]["ts"] == ts)
    assert max(per_partition.values()) >= 2, per_partition  # a partition needed more than one envelope
