"""Population models shared by N workers.

Workers predict with the latest published snapshot and never learn locally:
every update (a training example, a peer-group count) is queued and sent to a
single-partition training topic. One trainer (whichever worker owns that
partition) applies updates in order and publishes a snapshot (JSON), with a
version, to a single-partition ``models`` topic that every worker reads in
full, outside the consumer group (a GlobalTable's own changelog writes are
not seen by the worker that is active for it, so it did not work for this). So every
worker uses the same model, learned once from every partition's events;
predictions lag learning by at most the publish interval.

Redelivery and trainer failover (:class:`Trainer`). A training message says
which source message each update came from (``[topic:partition, offset,
updates]``); the trainer applies a source message's updates only if its
offset is above the last one it applied for that source, so a message that a
worker processes again after a crash (its states were not yet stored) is not
learned twice. A snapshot carries the trainer's position in the training
topic and those per-source offsets, so a trainer that takes over resumes
exactly after the last snapshot: it skips training messages at or below that
position and reads any it would otherwise miss (the consumer group may have
committed past the snapshot). Until 2026-12-05 a trainer that took over
started from the last snapshot but at the group's committed offset (updates
in between were lost, or learned twice), and updates re-sent after a crash
were learned twice.

>>> m = SharedModels()
>>> m.peers.add_entity("food|110105"); m.inspection.learn({"a": 1.0}, True)
>>> [u[0] for u in m.drain()], m.drain()
(['peer_entity', 'inspection'], [])
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..errors import RiskwatchError
from ..models import Finite, PopulationModels, SnapshotError, legacy_unpickle, snapshot_error

__all__ = ["SharedModels", "Trainer", "TrainingError", "apply_update", "decode_snapshot", "parse_training"]


class _Peers:
    def __init__(self, owner: "SharedModels") -> None:
        self._o = owner

    def add_entity(self, key: str, delta: int = 1) -> None:
        self._o.pending.append(["peer_entity", key, delta])

    def add_complaint(self, key: str, weight: float, ts: float, entity: str | None = None) -> None:
        self._o.pending.append(["peer_complaint", key, weight, ts] + ([entity] if entity is not None else []))

    def rate(self, key: str, now: float) -> float:
        return self._o.current.peers.rate(key, now)

    def expected(self, key: str, now: float, window_s: float, warmup_s: float, floor: float,
                 rate: float | None = None) -> float:
        return self._o.current.peers.expected(key, now, window_s, warmup_s, floor, rate)

    def complainers(self, key: str, now: float, window_s: float, entity: str | None = None) -> int:
        return self._o.current.peers.complainers(key, now, window_s, entity)

    def entities(self, key: str, now: float, window_s: float) -> list[str]:
        return self._o.current.peers.entities(key, now, window_s)


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

    def mark(self) -> int:
        """Where the queued updates stand now, for :meth:`rollback`."""
        return len(self.pending)

    def rollback(self, mark: int) -> None:
        """Take back the updates queued since ``mark`` (an event the engine failed on: its state is
        built again, and the events applied again queue theirs again)."""
        del self.pending[mark:]

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
        models.peers.add_complaint(u[1], u[2], u[3], u[4] if len(u) > 4 else None)  # no entity before 2026-12-06
    elif kind == "peer_entity":
        models.peers.add_entity(u[1], u[2])


class Trainer:
    """The one trainer's models, its snapshot version, its position in the training topic
    (``offset``: the last training message applied) and, per source topic-partition, the last
    source offset whose updates it applied (``sources``).

    >>> t = Trainer()
    >>> t.apply(0, {"from": [["rw.records:1", 7, [["peer_entity", "food|110105", 1]]]]})
    1
    >>> t.apply(1, {"from": [["rw.records:1", 7, [["peer_entity", "food|110105", 1]]],  # processed again
    ...                      ["rw.records:1", 8, [["peer_entity", "food|110106", 1]]]]})
    1
    >>> t.apply(1, {"from": []})  # at or below the position: in the model already
    0
    >>> t.missing(5)  # training messages between the position and this one
    range(2, 5)
    >>> u = Trainer.decode(t.publish())
    >>> (u.version, u.offset, u.sources, u.models.peers.groups["food|110106"][2])
    (1, 1, {'rw.records:1': 8}, 1.0)
    """

    def __init__(self, models: PopulationModels | None = None, version: int = 0, offset: int = -1,
                 sources: dict[str, int] | None = None) -> None:
        self.models = models or PopulationModels()
        self.version = version
        self.offset = offset
        self.sources: dict[str, int] = sources or {}
        self.dirty = False
        self.positioned = True  # False: from a snapshot without a position; resume where the group is

    def missing(self, offset: int) -> range | None:
        """The training offsets between the position and ``offset`` not applied yet, if any."""
        if not self.positioned:
            return None  # reading from 0 would learn again what the snapshot holds
        return range(self.offset + 1, offset) if offset > self.offset + 1 else None

    def apply(self, offset: int, payload) -> int:
        """Apply training message ``offset``; returns how many source messages' updates it applied.
        ``payload`` is ``{"from": [[source, source offset, updates], ...]}``, or a bare list of
        updates (the format before 2026-12-05, applied as it is), as :func:`parse_training` gives it."""
        if offset <= self.offset:
            return 0
        self.offset = offset
        self.positioned = True
        if isinstance(payload, list):  # before 2026-12-05: updates without their source
            for u in payload:
                apply_update(self.models, u)
            self.dirty = self.dirty or bool(payload)
            return 1 if payload else 0
        n = 0
        for src, src_offset, updates in payload["from"]:
            if src_offset <= self.sources.get(src, -1):
                continue
            self.sources[src] = src_offset
            for u in updates:
                apply_update(self.models, u)
            n += 1
        self.dirty = self.dirty or n > 0
        return n

    def refuse(self, offset: int) -> None:
        """Training message ``offset`` could not be read (:func:`parse_training`): passed over, so
        that it is not read again as missing."""
        if offset > self.offset:
            self.offset = offset
            self.positioned = True

    def publish(self) -> bytes | None:
        """The next snapshot, if anything was learned since the last one."""
        if not self.dirty:
            return None
        self.dirty = False
        self.version += 1
        return self.encode()

    def encode(self) -> bytes:
        """``<version>:`` then JSON (a pickle until 2026-12-06: see :mod:`riskwatch.models`)."""
        return b"%d:" % self.version + orjson.dumps({"models": self.models.to_dict(), "offset": self.offset,
                                                     "sources": self.sources})

    @staticmethod
    def decode(raw: bytes) -> "Trainer":
        """A published snapshot; :class:`~riskwatch.models.SnapshotError` naming what is wrong if it is not one."""
        head, _, body = raw.partition(b":")
        try:
            version = int(head)
        except ValueError:
            raise SnapshotError(f"no version before the snapshot: {head[:20]!r}") from None
        if body[:1] == b"{" or body[:1] == b"[":
            try:
                obj = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise SnapshotError(f"not JSON: {exc}") from exc
            try:
                form = _Position.model_validate(obj)
            except ValidationError as exc:
                raise snapshot_error(exc) from exc
            models = PopulationModels.from_dict(form.models, ("models",))
            return Trainer(models, version, form.offset, dict(form.sources))
        obj = legacy_unpickle(body)
        if isinstance(obj, PopulationModels):  # a snapshot from before 2026-12-05: no position
            t = Trainer(obj, version)
            t.positioned = False
            return t
        if not isinstance(obj, dict) or not isinstance(obj.get("models"), PopulationModels):
            raise SnapshotError("not a population model snapshot")
        return Trainer(obj["models"], version, int(obj["offset"]), dict(obj["sources"]))


# tried in this order, the most frequent first: 0.5 µs an update, against 1.4 in pydantic's smart mode
_Update = Annotated[Union[tuple[Literal["peer_complaint"], str, Finite, Finite],
                          tuple[Literal["peer_complaint"], str, Finite, Finite, str],  # with the entity
                          tuple[Literal["peer_entity"], str, int],
                          tuple[Literal["inspection"], dict[str, Finite], bool]], Field(union_mode="left_to_right")]


class _Training(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_: list[tuple[str, int, list[_Update]]] = Field(alias="from")


_TRAINING = TypeAdapter(Union[_Training, list[_Update]])


class TrainingError(RiskwatchError, ValueError):
    """A training message that cannot be learned from; the message names the field."""


def parse_training(raw: bytes) -> dict | list:
    """A training message's payload, checked whole before any of it is learned: until 2026-12-06 one
    that was not JSON, or not of this form, stopped the trainer's agent at every retry, and no
    update after it was learned.

    >>> parse_training(b'{"from": [["rw.records:1", 7, [["peer_entity", "food|110105", 1]]]]}')
    {'from': [['rw.records:1', 7, [('peer_entity', 'food|110105', 1)]]]}
    >>> parse_training(b'{"from": [["rw.records:1", 7, [["inspection", {"critical": "x"}, true]]]]}')
    Traceback (most recent call last):
    riskwatch.streams.shared_models.TrainingError: from.0.2.0: not an update (inspection, peer_complaint or peer_entity)
    """
    try:
        v = _TRAINING.validate_json(raw)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = [str(x) for x in e["loc"][1:]]  # the first names the form tried: {"from": ...}
        if not loc:
            raise TrainingError('message: neither {"from": [[source, offset, updates], ...]} nor a list of '
                                'updates' if e["type"] != "json_invalid" else f"message: {e['msg']}") from exc
        if len(loc) >= 4 and loc[0] == "from" and loc[2] == "2":  # one update: name it, not each form tried
            raise TrainingError(f"{'.'.join(loc[:4])}: not an update (inspection, peer_complaint or "
                                f"peer_entity)") from exc
        raise TrainingError(f"{'.'.join(loc) or 'message'}: {e['msg']}") from exc
    if isinstance(v, list):
        return v
    return {"from": [[src, off, ups] for src, off, ups in v.from_]}


class _Position(BaseModel):
    """A snapshot's JSON around its models (validated by :meth:`PopulationModels.from_dict`)."""

    model_config = ConfigDict(extra="forbid")
    models: dict
    offset: Annotated[int, Field(ge=-1)]
    sources: dict[str, Annotated[int, Field(ge=-1)]]


def decode_snapshot(raw: bytes) -> tuple[int, PopulationModels]:
    t = Trainer.decode(raw)
    return t.version, t.models
