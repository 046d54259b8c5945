"""What workers do with messages on the model topics that no riskwatch process wrote: a snapshot is
not run, not used, and counted; a training message is not learned from, counted, and learning goes on."""

from __future__ import annotations

import pickle

from riskwatch.simulate import Simulation
from riskwatch.streams.shared_models import Trainer

from .conftest import wait_for
from .helpers import produce, read_topic, send_raw


class _Payload:
    """A pickle that creates a file when it is loaded: what anyone who can write to the models topic
    could have sent every worker until 2026-12-06, when snapshots were unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _publish(s, *values: bytes, topic: str = "models") -> None:
    send_raw(s.broker, s.topic(topic), list(values))


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


def test_a_training_message_no_worker_wrote_is_refused_and_learning_goes_on(stack):
    s, workers = stack
    _publish(s, b"not json", b'{"from": [["rw.records:0", 1, [["inspection", 5, true]]]]}', topic="model-training")
    workers.start()
    events = list(Simulation(n_entities=100, seed=7, bad_share=0.2, days=40).events(n_events=4000))
    inspections = sum(e["type"] == "inspection" for e in events)
    assert inspections > 20
    produce(s, events)
    wait_for(lambda: workers.metric(0, "riskwatch_events_processed_total") >= len(events), 120,
             f"{len(events)} events processed", workers.logs)
    # until 2026-12-06 the trainer's agent stopped at the first of them at every retry: nothing was learned
    wait_for(lambda: workers.metric(0, "riskwatch_model_version") > 0, 30, "a snapshot learned after them",
             workers.logs)
    assert workers.metric(0, "riskwatch_model_training_refused_total") == 2
    assert "training message " in workers.logs() and "from.0.2.0: not an update" in workers.logs()

    def learned():
        t = Trainer.decode(read_topic(s.broker, s.topic("models"))[-1][2])
        return t.models.inspection.version if t.offset >= 2 else 0

    wait_for(lambda: learned() >= inspections * 0.9, 30, "the inspections learned from", workers.logs)
