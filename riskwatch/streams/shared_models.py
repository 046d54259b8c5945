"""Population models shared by N workers.

Workers predict with the latest published snapshot and never learn locally:
every update (a training example, a peer-group count) is queued and sent to a
single-partition training topic. One trainer (whichever worker owns that
partition) applies updates in order and publishes a pickled snapshot, with a
version, to a single-partition ``models`` topic that every worker reads in
full, outside the consumer group (a GlobalTable's own changelog writes are
not seen by the worker that is active for it, so it did not work for this). So every
worker uses the same model, learned once from every partition's events;
predictions lag learning by at most the publish interval.

>>> m = SharedModels()
>>> m.peers.add_entity("food|110105"); m.inspection.learn({"a": 1.0}, True)
>>> [u[0] for u in m.drain()], m.drain()
(['peer_entity', 'inspection'], [])
"""

from __future__ import annotations

from ..models import PopulationModels

__all__ = ["SharedModels", "apply_update", "encode_snapshot", "decode_snapshot"]


class _Peers:
    def __init__(self, owner: "SharedModels") -> None:
        self._o = owner

    def add_entity(self, key: str, delta: int = 1) -> None:
        self._o.pending.append(["peer_entity", key, delta])

    def add_complaint(self, key: str, weight: float, ts: float) -> None:
        self._o.pending.append(["peer_complaint", key, weight, ts])

    def rate(self, key: str, now: float) -> float:
        return self._o.current.peers.rate(key, now)


class _Inspection:
    def __init__(self, owner: "SharedModels") -> None:
        self._o = owner

    def learn(self, x: dict, y: bool) -> None:
        self._o.pending.append(["inspection", x, bool(y)])

    def predict(self, x: dict) -> float:
        return self._o.current.inspection.predict(x)


class SharedModels:
    """What a worker's engine sees as its ``models``."""

    def __init__(self) -> None:
        self.current = PopulationModels()
        self.version = 0
        self.pending: list[list] = []
        self.peers = _Peers(self)
        self.inspection = _Inspection(self)

    def drain(self) -> list[list]:
        out, self.pending = self.pending, []
        return out

    def install(self, raw: bytes) -> bool:
        """Use a published snapshot if it is newer than the one in use."""
        version, models = decode_snapshot(raw)
        if version <= self.version:
            return False
        self.current, self.version = models, version
        return True


def apply_update(models: PopulationModels, u: list) -> None:
    kind = u[0]
    if kind == "inspection":
        models.inspection.learn(u[1], u[2])
    elif kind == "peer_complaint":
        models.peers.add_complaint(u[1], u[2], u[3])
    elif kind == "peer_entity":
        models.peers.add_entity(u[1], u[2])


def encode_snapshot(version: int, models: PopulationModels) -> bytes:
    return b"%d:" % version + models.dumps()


def decode_snapshot(raw: bytes) -> tuple[int, PopulationModels]:
    head, _, body = raw.partition(b":")
    return int(head), PopulationModels.loads(body)
