"""The inspection model against the river pipeline it writes out, float for float."""

from __future__ import annotations

import pickle
import random

import pytest
from river import linear_model, optim, preprocessing

from riskwatch.models import InspectionModel, PopulationModels

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


def test_a_snapshot_pickled_with_rivers_pipeline_inside_is_read_and_learns_on_as_river():
    theirs = river_pipeline()
    stream = list(examples(5, 3_000))
    for x, y in stream[:1_000]:
        theirs.learn_one(x, y)
    old = PopulationModels()
    old.inspection.__dict__ = {"learning_rate": 0.05, "l2": 1e-4, "model": pickle.loads(pickle.dumps(theirs)),
                               "version": 1_000}  # what InspectionModel held until 2026-12-06
    m = PopulationModels.loads(old.dumps()).inspection
    assert "model" not in vars(m) and m.version == 1_000
    for x, y in stream[1_000:]:
        assert m.predict(x) == float(theirs.predict_proba_one(x).get(True, 0.0))
        m.learn(x, y)
        theirs.learn_one(x, y)
