"""Population-level models shared by all entities (not per-entity state).

- :class:`PeerRates` — decayed complaint rates per peer group (industry x region);
- :class:`InspectionModel` — an online logistic model (river) of
  P(critical or major violation at the next inspection).

Both are deterministic in event order and carry a ``version`` that increases
with every update, so a runtime can publish and compare snapshots.
"""

from __future__ import annotations

import math
import pickle

__all__ = ["PeerRates", "InspectionModel", "PopulationModels"]

LN2 = math.log(2.0)


class PeerRates:
    """Complaints per entity per second in each peer group, decayed over event time.

    >>> p = PeerRates(half_life_s=86400.0)
    >>> p.add_entity("food|110105"); p.add_entity("food|110105")
    >>> p.add_complaint("food|110105", 1.0, 0.0)
    >>> round(p.rate("food|110105", 0.0) * 86400, 4)  # per entity per day
    0.3466
    """

    def __init__(self, half_life_s: float = 180 * 86400.0) -> None:
        self.half_life_s = half_life_s
        self.groups: dict[str, list[float]] = {}  # key -> [decayed sum, ts, n_entities]
        self.version = 0

    def _g(self, key: str) -> list[float]:
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = [0.0, 0.0, 0.0]
        return g

    def add_entity(self, key: str, delta: int = 1) -> None:
        g = self._g(key)
        g[2] = max(0.0, g[2] + delta)
        self.version += 1

    def add_complaint(self, key: str, weight: float, ts: float) -> None:
        g = self._g(key)
        if ts >= g[1]:
            g[0] = g[0] * 2.0 ** (-(ts - g[1]) / self.half_life_s) + weight
            g[1] = ts
        else:
            g[0] += weight * 2.0 ** (-(g[1] - ts) / self.half_life_s)
        self.version += 1

    def rate(self, key: str, now: float) -> float:
        """Complaints per entity per second (0 when the group has no entities)."""
        g = self.groups.get(key)
        if not g or g[2] <= 0:
            return 0.0
        s = g[0] * 2.0 ** (-max(0.0, now - g[1]) / self.half_life_s)
        return s * LN2 / self.half_life_s / g[2]


class InspectionModel:
    """Online logistic regression (river) on features known before an inspection."""

    def __init__(self, learning_rate: float = 0.05, l2: float = 1e-4) -> None:
        from river import linear_model, optim, preprocessing

        self.learning_rate = learning_rate
        self.l2 = l2
        self.model = preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.SGD(learning_rate), l2=l2
        )
        self.version = 0

    def predict(self, x: dict[str, float]) -> float:
        return float(self.model.predict_proba_one(x).get(True, 0.0))

    def learn(self, x: dict[str, float], y: bool) -> None:
        self.model.learn_one(x, y)
        self.version += 1


class PopulationModels:
    """The shared models a runtime passes to the engine (one per worker group)."""

    def __init__(self, peer_half_life_s: float = 180 * 86400.0, inspection_lr: float = 0.05) -> None:
        self.peers = PeerRates(peer_half_life_s)
        self.inspection = InspectionModel(inspection_lr)

    @property
    def version(self) -> tuple[int, int]:
        return (self.peers.version, self.inspection.version)

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(data: bytes) -> "PopulationModels":
        obj = pickle.loads(data)
        if not isinstance(obj, PopulationModels):
            raise TypeError("not a PopulationModels snapshot")
        return obj
