"""The trainer of the shared population models: every source message's updates once, and a
snapshot that says where in the training topic it stands (pure logic; the failover against a
real broker is in tests/integration/test_failover.py)."""

from __future__ import annotations

import pickle

import pytest

from riskwatch.models import PopulationModels, SnapshotError
from riskwatch.streams.shared_models import SharedModels, Trainer, TrainingError, decode_snapshot, parse_training


def _entity(key: str) -> list:
    return ["peer_entity", key, 1]


def _members(t: Trainer) -> dict[str, float]:
    return {k: g[2] for k, g in t.models.peers.groups.items()}


def test_a_source_message_processed_again_is_learned_once_and_sources_are_independent():
    t = Trainer()
    assert t.apply(0, {"from": [["rw.entities:0", 5, [_entity("a")]], ["rw.entities:1", 5, [_entity("b")]]]}) == 2
    # a worker that took over processed rw.entities:0 @5 again, then went on; partition 1 is ahead
    assert t.apply(1, {"from": [["rw.entities:0", 5, [_entity("a")]], ["rw.entities:0", 6, [_entity("c")]],
                                ["rw.entities:1", 4, [_entity("b")]]]}) == 1
    assert _members(t) == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert t.sources == {"rw.entities:0": 6, "rw.entities:1": 5}


def test_training_messages_at_or_below_the_position_change_nothing_and_a_gap_is_named():
    t = Trainer()
    assert t.missing(0) is None  # the first message of the topic: nothing missing
    t.apply(0, {"from": [["s:0", 1, [_entity("a")]]]})
    assert t.missing(1) is None and t.missing(4) == range(1, 4)
    assert t.apply(0, {"from": [["s:0", 2, [_entity("b")]]]}) == 0  # offset 0 again: ignored whole
    assert _members(t) == {"a": 1.0}


def test_the_snapshot_carries_the_position_so_a_new_trainer_resumes_exactly_after_it():
    t = Trainer()
    t.apply(0, {"from": [["s:0", 1, [_entity("a")]]]})
    t.apply(1, {"from": [["s:0", 2, [_entity("b")]]]})
    raw = t.publish()
    assert t.publish() is None  # nothing learned since
    u = Trainer.decode(raw)
    assert (u.version, u.offset, u.sources, _members(u)) == (1, 1, {"s:0": 2}, {"a": 1.0, "b": 1.0})
    assert u.missing(5) == range(2, 5)  # what its consumer group committed past: read first
    # every worker installs the same models from it
    sm = SharedModels()
    assert sm.install(raw) and sm.version == 1 and sm.peers.rate("a", 0.0) == 0.0


def test_formats_from_before_the_trainer_kept_its_position_are_still_read():
    old = b"7:" + pickle.dumps(PopulationModels())  # a snapshot: the bare models, pickled
    t = Trainer.decode(old)
    assert (t.version, t.offset, t.sources) == (7, -1, {})
    assert t.missing(40) is None  # no position: from where the group is, not from 0 (learned again)
    assert decode_snapshot(old)[0] == 7
    assert t.apply(3, [_entity("a"), _entity("a")]) == 1  # a training message: bare updates, applied as they are
    assert _members(t) == {"a": 2.0} and t.missing(5) == range(4, 5)  # positioned from then on
    with pytest.raises(SnapshotError, match="not a population model snapshot"):
        Trainer.decode(b"1:" + pickle.dumps({"something": "else"}))


@pytest.mark.parametrize("raw, message", [
    (b"not json", "message: Invalid JSON"),
    (b"5", "message: neither"),
    (b'{"from": 3}', "from: Input should be a valid array"),
    (b'{"from": [["rw.records:1", "seven", []]]}', "from.0.1: Input should be a valid integer"),
    (b'{"from": [["rw.records:1", 7, [["inspection", {"critical": 1e999}, true]]]]}', "from.0.2.0: not an update"),
    (b'{"from": [["rw.records:1", 7, [["forget", "everything"]]]]}', "from.0.2.0: not an update"),
    (b'{"from": [], "and": 1}', "and: Extra inputs are not permitted"),
])
def test_a_training_message_that_is_not_a_workers_is_refused_naming_the_field(raw, message):
    with pytest.raises(TrainingError, match=message):
        parse_training(raw)


def test_a_refused_training_message_is_passed_over_not_read_again_as_missing():
    t = Trainer()
    t.apply(0, parse_training(b'{"from": [["rw.records:1", 7, [["peer_entity", "food|110105", 1]]]]}'))
    t.refuse(1)
    assert t.offset == 1 and t.missing(2) is None and t.missing(3) == range(2, 3)
    assert t.apply(2, parse_training(b'[["peer_entity", "food|110105", 1]]')) == 1  # the old form, checked too
    assert _members(t) == {"food|110105": 2.0}
