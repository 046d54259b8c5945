"""What a worker does with a model snapshot that no trainer wrote: it runs nothing, uses nothing, counts it."""

from __future__ import annotations

import asyncio
import pickle

from aiokafka import AIOKafkaProducer

from riskwatch.simulate import Simulation

from .conftest import wait_for
from .helpers import produce, read_topic


class _Payload:
    """A pickle that creates a file when it is loaded: what anyone who can write to the models topic
    could have sent every worker until 2026-12-06, when snapshots were unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _publish(s, *values: bytes) -> None:
    async def send():
        p = AIOKafkaProducer(bootstrap_servers=s.broker, acks="all")
        await p.start()
        try:
            for v in values:
                await p.send_and_wait(s.topic("models"), v, partition=0)
        finally:
            await p.stop()

    asyncio.run(send())


def test_a_snapshot_no_trainer_wrote_is_refused_and_counted_and_the_worker_goes_on(stack, tmp_path):
    s, workers = stack
    ran = tmp_path / "payload-ran"
    _publish(s, b"5:" + pickle.dumps({"models": _Payload(str(ran)), "offset": 0, "sources": {}}))
    workers.start()  # the latest snapshot, read at start, is the payload
    wait_for(lambda: workers.metric(0, "riskwatch_model_snapshots_rejected_total") == 1, 60,
             "the payload refused", workers.logs)
    assert not ran.exists()
    assert workers.metric(0, "riskwatch_model_version") == 0

    events = list(Simulation(n_entities=100, seed=5, bad_share=0.2, days=40).events(n_events=4000))
    assert any(e["type"] == "inspection" for e in events)
    produce(s, events)
    wait_for(lambda: workers.metric(0, "riskwatch_events_processed_total") >= len(events), 120,
             f"{len(events)} events processed", workers.logs)
    wait_for(lambda: workers.metric(0, "riskwatch_model_version") > 0, 30, "the trainer's snapshot in use",
             workers.logs)
    trained = read_topic(s.broker, s.topic("models"))[-1][2]
    head, _, body = trained.partition(b":")
    assert body[:1] == b"{" and int(head) == workers.metric(0, "riskwatch_model_version")  # JSON

    version = workers.metric(0, "riskwatch_model_version")
    _publish(s, b"999:{\"models\": {\"peers\": {}}, \"offset\": 0, \"sources\": {}}")  # newer, and not one
    wait_for(lambda: workers.metric(0, "riskwatch_model_snapshots_rejected_total") == 2, 30,
             "the invalid snapshot refused", workers.logs)
    assert workers.metric(0, "riskwatch_model_version") == version
    assert "model snapshot 999 at " in workers.logs() and "(models.peers.half_life_s: Field required)" in workers.logs()
    more = list(Simulation(n_entities=100, seed=6, bad_share=0.2, days=40).events(n_events=1000))
    produce(s, more)  # and it goes on
    wait_for(lambda: workers.metric(0, "riskwatch_events_processed_total") >= len(events) + len(more), 60,
             "the events after it processed", workers.logs)
