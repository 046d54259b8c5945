"""The inspection model against the river pipeline it writes out, float for float."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest
from river import linear_model, optim, preprocessing

from riskwatch.models import InspectionModel, SnapshotError, legacy_unpickle
from riskwatch.streams.shared_models import Trainer

FIXTURES = Path(__file__).parent / "fixtures"

KEYS = ["log_inspections", "never_inspected", "years_since_last", "critical", "major", "minor", "last_fail",
        "last_conditional", "found_ever", "complaints", "records"]
FLAGS = {"never_inspected", "last_fail", "last_conditional"}


def river_pipeline(learning_rate: float = 0.05, l2: float = 1e-4):
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate),
                                                                            l2=l2)


def examples(seed: int, n: int):
    """Features as the detector makes them: flags, skewed counts, sometimes without the cross signals
    (an entity without them), and labels that depend on them."""
    rnd = random.Random(seed)
    for _ in range(n):
        keys = KEYS if rnd.random() < 0.7 else KEYS[:9]
        x = {k: float(rnd.random() < 0.3) if k in FLAGS else rnd.expovariate(1.0) * rnd.choice([0.1, 1.0, 10.0])
             for k in keys}
        yield x, rnd.random() < 0.15 + 0.1 * x["critical"]


@pytest.mark.parametrize("seed", [0, 1])
def test_the_model_predicts_the_same_floats_as_river_over_a_stream(seed):
    ours, theirs = InspectionModel(), river_pipeline()
    predictions = 0
    for x, y in examples(seed, 20_000):
        assert ours.predict(x) == float(theirs.predict_proba_one(x).get(True, 0.0))
        ours.learn(x, y)
        theirs.learn_one(x, y)
        predictions += 1
    lr = theirs.steps["LogisticRegression"]
    assert ours.intercept == lr.intercept
    assert ours.weights == lr.weights
    assert ours.version == predictions
    x = next(examples(seed + 9, 1))[0]  # it learned that critical findings raise the risk
    assert ours.predict(dict(x, critical=8.0)) > ours.predict(dict(x, critical=0.0)) + 0.2


def test_a_feature_never_learned_from_counts_nothing():
    m = InspectionModel()
    for x, y in examples(3, 200):
        m.learn({k: v for k, v in x.items() if k != "records"}, y)
    x = dict(next(examples(4, 1))[0], records=5.0)
    assert m.predict(x) == m.predict({k: v for k, v in x.items() if k != "records"})


def test_a_snapshot_pickled_before_json_is_read_and_learns_on_as_river():
    """A trainer's snapshot as commit baf88a1 wrote it (a pickle, river's pipeline inside; made by that
    commit's Trainer from ``examples(5, 1000)`` and two peer-group updates)."""
    t = Trainer.decode((FIXTURES / "model_snapshot_baf88a1.bin").read_bytes())
    assert (t.version, t.offset, t.sources) == (1, 41, {"rw.inspections:2": 17})
    assert t.models.peers.groups == {"food|110105": [1.5, 1.7e9, 1.0]}
    m = t.models.inspection
    assert "model" not in vars(m) and m.version == 1_000
    theirs = river_pipeline()
    stream = list(examples(5, 3_000))
    for x, y in stream[:1_000]:
        theirs.learn_one(x, y)
    for x, y in stream[1_000:]:
        assert m.predict(x) == float(theirs.predict_proba_one(x).get(True, 0.0))
        m.learn(x, y)
        theirs.learn_one(x, y)
    again = Trainer.decode(t.encode())  # written back as JSON, read as the same floats
    assert again.encode()[:3] == b"1:{" and again.models.inspection.weights == m.weights
    assert again.models.inspection.stats == m.stats and again.models.peers.groups == t.models.peers.groups


def test_a_pickled_snapshot_that_names_anything_else_is_refused_and_runs_nothing(tmp_path):
    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "ran"), "w"))

    for raw in (pickle.dumps(Boom()), b"1:" + pickle.dumps({"models": Boom(), "offset": 0, "sources": {}})):
        with pytest.raises(SnapshotError, match="may not name io.open"):
            legacy_unpickle(raw) if raw[:2] != b"1:" else Trainer.decode(raw)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("raw, message", [
    (b"1:{not json", "not JSON"),
    (b"1:[]", "snapshot: Input should be a valid dictionary"),
    (b'1:{"models": {"peers": {"half_life_s": 1.0, "groups": {}, "version": 0}}, "offset": 0, "sources": {}}',
     "models.inspection: Field required"),
    (b"x:{}", "version"),
    (b"1:\x80\x05K\x01.", "not a population model snapshot"),
])
def test_a_snapshot_that_is_not_one_is_refused_naming_what_is_wrong(raw, message):
    with pytest.raises(SnapshotError, match=message):
        Trainer.decode(raw)
