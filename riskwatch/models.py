"""Population-level models shared by all entities (not per-entity state).

- :class:`PeerRates` — decayed complaint rates per peer group (industry x region), and which of
  a group's entities had a complaint in the last day (:meth:`PeerRates.complainers` against
  :meth:`PeerRates.expected`: a complaint surge spread over a group, one complaint per entity, that
  no entity's own signals show);
- :class:`InspectionModel` — an online logistic model (river's, written out) of
  P(critical or major violation at the next inspection).

Both are deterministic in event order and carry a ``version`` that increases
with every update, so a runtime can publish and compare snapshots.

A snapshot is JSON (:meth:`PopulationModels.to_dict`), validated when read. Until
2026-12-06 it was a pickle, which runs whatever code its bytes name: anyone who
could write to the models topic could run code in every worker. A pickled
snapshot is still read, for an upgrade, but only if it names nothing beyond the
classes such snapshots hold (:func:`legacy_unpickle`).
"""

from __future__ import annotations

import io
import math
import pickle
from collections import OrderedDict
from math import exp
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import RiskwatchError

__all__ = ["PeerRates", "InspectionModel", "PopulationModels", "SnapshotError", "Finite", "legacy_unpickle",
           "peer_key", "snapshot_error"]

LN2 = math.log(2.0)
RECENT_S = 25 * 3600.0  # how long a group remembers which entities had a complaint (a surge window's
# bound, 24 h, and an hour for an entity whose clock is behind its group's latest complaint)
RECENT_MAX = 256  # entities remembered per group (the newest)
RECENT_TOTAL = 8000  # and in all (about 300 kB of a snapshot's JSON)


def peer_key(industry: str, region: str) -> str:
    """A peer group's key in :class:`PeerRates`: industry x region."""
    return f"{industry}|{region}"


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
        # key -> [first complaint ts (the group's history starts there: rate, expected; 20 half-lives
        # earlier for a group whose rate predates this memory), latest complaint ts, OrderedDict
        # {entity_id: its latest complaint ts (whole seconds)}, oldest first]: the entities with a
        # complaint in the RECENT_S before the latest, at most RECENT_MAX a group (the newest) and
        # RECENT_TOTAL in all (a snapshot is one Kafka message: Kafka refuses one over 1 MB)
        self.recent: dict[str, list] = {}
        self._held = 0  # entities held in ``recent`` (not in snapshots: counted when read)
        self.version = 0

    def __setstate__(self, state: dict) -> None:
        """A pickled PeerRates (snapshots before 2026-12-06, :func:`legacy_unpickle`) may have no memory
        of complainers: it gets an empty one here, once, rather than a check at every use."""
        self.__dict__.update(state)
        self._set_recent(state.get("recent", {}))

    def _set_recent(self, recent: dict) -> None:
        """The memory of complainers as a snapshot or a pickle holds it, each group's in time order."""
        self.recent = {k: [r[0], r[1], OrderedDict(sorted(r[2].items(), key=lambda x: x[1]))]
                       for k, r in recent.items()}
        self._held = sum(len(r[2]) for r in self.recent.values())

    def _g(self, key: str) -> list[float]:
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = [0.0, 0.0, 0.0]
        return g

    def add_entity(self, key: str, delta: int = 1) -> None:
        g = self._g(key)
        g[2] = max(0.0, g[2] + delta)
        self.version += 1

    def add_complaint(self, key: str, weight: float, ts: float, entity: str | None = None) -> None:
        """A complaint of ``weight`` at ``ts``; a negative weight takes one back (revoked, corrected, or
        disputed and excluded while it is): its decayed weight leaves the group's sum, and ``entity``
        leaves the group's recent complainers if that complaint was its latest there. The entity's
        latest remaining complaint is then sent as one of weight 0 (:meth:`ComplaintDetector.retract`).
        A trainer from before 2026-12-07 reads a negative weight too: the sum is corrected, the
        complainers are not.

        >>> p = PeerRates(half_life_s=86400.0)
        >>> p.add_entity("food|110105")
        >>> p.add_complaint("food|110105", 1.0, 0.0, "E1"); p.add_complaint("food|110105", 2.0, 3600.0, "E1")
        >>> p.add_complaint("food|110105", -2.0, 3600.0, "E1")  # the second is revoked
        >>> q = PeerRates(half_life_s=86400.0)  # as if only the first had come
        >>> q.add_entity("food|110105"); q.add_complaint("food|110105", 1.0, 0.0, "E1")
        >>> round(p.rate("food|110105", 3600.0) / q.rate("food|110105", 3600.0), 9)
        1.0
        >>> p.complainers("food|110105", 3600.0, 86400.0)  # E1's latest there was the one revoked
        0
        >>> p.add_complaint("food|110105", 0.0, 0.0, "E1")  # its latest remaining complaint
        >>> p.complainers("food|110105", 3600.0, 86400.0)
        1
        """
        g = self._g(key)
        known = g[0] != 0.0 or g[1] != 0.0  # complaints before this one
        if ts >= g[1]:
            g[0] = max(0.0, g[0] * 2.0 ** (-(ts - g[1]) / self.half_life_s) + weight)
            g[1] = ts
        else:
            g[0] = max(0.0, g[0] + weight * 2.0 ** (-(g[1] - ts) / self.half_life_s))
        self.version += 1
        if entity is not None:
            if weight < 0.0:
                self._forget(key, entity, float(int(ts)))
            elif known and key not in self.recent:
                # a group whose rate predates the memory of its complainers (a trainer or snapshot from
                # before 2026-12-06): its history is long, not starting now, or its rate would be read
                # hundreds of times too high (rate's correction for a young group)
                self._remember(key, entity, float(int(ts)), start=min(ts, g[1]) - 20 * self.half_life_s)
            else:
                self._remember(key, entity, float(int(ts)))

    def _forget(self, key: str, entity: str, ts: float) -> None:
        seen = self.recent.get(key, (None, None, {}))[2]
        if seen.get(entity) == ts:
            del seen[entity]
            self._held -= 1

    def _remember(self, key: str, entity: str, ts: float, start: float | None = None) -> None:
        """Each group's entities in the order of their latest complaint's time (oldest first), so that
        pruning pops from the front and a count of the window skips only what is before it."""
        r = self.recent.get(key)
        if r is None:
            r = self.recent[key] = [ts if start is None else float(int(start)), ts, OrderedDict()]
        r[0] = min(r[0], ts)
        seen = r[2]
        old = seen.get(entity)
        if old is None:
            if ts < r[1] - RECENT_S:
                return  # too late to count
            self._held += 1
        elif ts <= old:
            return
        else:
            del seen[entity]
        seen[entity] = ts
        if ts >= r[1]:
            r[1] = ts
        else:  # a late complaint: back to time order (rare in a live feed)
            seen = r[2] = OrderedDict(sorted(seen.items(), key=lambda x: x[1]))
        horizon = r[1] - RECENT_S
        while seen and (len(seen) > RECENT_MAX or next(iter(seen.values())) < horizon):
            seen.popitem(last=False)
            self._held -= 1
        if self._held > RECENT_TOTAL:
            self._prune_all()

    def _prune_all(self) -> None:
        """Over RECENT_TOTAL in all: keep the newest nine tenths of it, whichever groups they are in."""
        every = sorted(t for r in self.recent.values() for t in r[2].values())
        horizon = every[len(every) - RECENT_TOTAL * 9 // 10]
        for r in self.recent.values():
            seen = r[2]
            while seen and next(iter(seen.values())) < horizon:
                seen.popitem(last=False)
                self._held -= 1

    def to_dict(self) -> dict:
        return {"half_life_s": self.half_life_s, "groups": self.groups, "recent": self.recent,
                "version": self.version}

    def rate(self, key: str, now: float) -> float:
        """Complaints per entity per second (0 when the group has no entities), corrected for a history
        shorter than the half-life: a decayed sum over ``age`` seconds of a steady rate holds only ``1 -
        2^(-age/half-life)`` of what the rate gives (30 days of 180: 11%), so until 2026-12-07 a young
        group's peers looked up to nine times quieter than they were, and every complaint in it was a
        surprise against them (``surprise_peer``). ``age`` runs from the group's first complaint with
        an entity (none before 2026-12-06: no correction), at least a day; early on this estimate is
        k / (n age), a little above the true rate (the first complaint starts the clock).

        >>> p = PeerRates(half_life_s=180 * 86400.0)
        >>> for i in range(100):
        ...     p.add_entity("food|110105")
        >>> for d in range(30):  # a complaint a day in the group: 3.65 a year per entity (uncorrected: 0.40)
        ...     p.add_complaint("food|110105", 1.0, d * 86400.0, f"E{d}")
        >>> round(p.rate("food|110105", 30 * 86400.0) * 365 * 86400, 2)
        3.64
        """
        g = self.groups.get(key)
        if not g or g[2] <= 0:
            return 0.0
        s = g[0] * 2.0 ** (-max(0.0, now - g[1]) / self.half_life_s)
        r = self.recent.get(key)
        if r is not None:
            s /= 1.0 - 2.0 ** (-max(86400.0, now - r[0]) / self.half_life_s)
        return s * LN2 / self.half_life_s / g[2]

    # a surge over a group: how many of its entities had a complaint in a window (complainers), against
    # how many its long-run rate expects (expected); the doctest of expected shows both
    def expected(self, key: str, now: float, window_s: float, warmup_s: float, floor: float,
                 rate: float | None = None) -> float:
        """How many of the group's entities would have a complaint in ``window_s``: ``n (1 -
        exp(-rate * window))`` over its ``n`` entities, with the long-run rate per entity (never under
        ``floor`` per second) corrected for a history shorter than its half-life: a decayed sum over
        ``age`` seconds of a steady rate holds only ``1 - 2^(-age/half-life)`` of what the rate gives
        (30 days of a 180-day half-life: 11%), so an uncorrected rate would find a surge in every young
        group. 0.0 (nothing to judge by) before ``warmup_s`` of the group's history, or with no
        entities known.

        >>> p = PeerRates(half_life_s=180 * 86400.0)
        >>> for i in range(200):
        ...     p.add_entity("food|110105")
        >>> DAY = 86400.0
        >>> for d in range(0, 360, 3):  # a complaint every 3 days in the group: 0.6 a year per entity
        ...     p.add_complaint("food|110105", 1.0, d * DAY, f"E{d}")
        >>> now = 360 * DAY
        >>> p.complainers("food|110105", now, DAY), round(p.expected("food|110105", now, DAY, 30 * DAY, 0.0), 2)
        (0, 0.33)
        >>> for i in range(6):  # six entities, one complaint each, within 3 hours
        ...     p.add_complaint("food|110105", 1.0, now + i * 1800, f"S{i}")
        >>> now += 3 * 3600
        >>> p.complainers("food|110105", now, DAY, "S6"), round(p.expected("food|110105", now, DAY, 30 * DAY, 0), 2)
        (7, 0.36)
        >>> p.entities("food|110105", now, DAY)[:3]
        ['S5', 'S4', 'S3']
        """
        r = self.recent.get(key)
        g = self.groups.get(key)
        if not g or g[2] <= 0 or not r or now - r[0] < warmup_s:
            return 0.0
        if rate is None:  # the caller's :meth:`rate` at ``now``, if it has it (a complaint's evaluation does)
            rate = self.rate(key, now)
        return g[2] * -math.expm1(-max(rate, floor) * window_s)

    def complainers(self, key: str, now: float, window_s: float, entity: str | None = None) -> int:
        """How many of the group's entities had a complaint in the ``window_s`` up to ``now`` (``entity``,
        which just had one, counted even if the snapshot in use does not hold it yet)."""
        r = self.recent.get(key)
        seen = r[2] if r else {}
        start = now - window_s
        n = len(seen)
        for t in seen.values():  # oldest first: only those before the window are looked at
            if t >= start:
                break
            n -= 1
        if entity is not None:
            t = seen.get(entity)
            if t is None or t < start:
                n += 1
        return n

    def entities(self, key: str, now: float, window_s: float) -> list[str]:
        """The group's entities with a complaint in the ``window_s`` up to ``now``, newest first."""
        r = self.recent.get(key)
        start = now - window_s
        out = []
        for e, t in reversed(r[2].items()) if r else ():
            if t < start:
                break
            out.append(e)
        return out


class InspectionModel:
    """Online logistic regression on standardised features known before an inspection.

    It is river's ``preprocessing.StandardScaler() | linear_model.LogisticRegression(
    optimizer=optim.SGD(learning_rate), l2=l2)`` (intercept learning rate 0.01, log loss)
    written out over plain dicts, step for step in river's order of operations, so its
    predictions are the same floats (``tests/test_models.py`` checks them against river
    over 20,000 examples). Written out because river's pipeline cost 10-22 µs a learning
    step and 2.5-6 µs a prediction in the engine (an inspection took 59 µs, three times a
    complaint); this takes 4.4 and 1.4 µs. A snapshot pickled with river's pipeline inside
    (before 2026-12-06) is read into this form.

    >>> m = InspectionModel()
    >>> m.learn({"critical": 2.0}, True); m.learn({"critical": 0.0}, False)
    >>> m.predict({"critical": 2.0}) > 0.5 > m.predict({"critical": 0.0})
    True
    """

    INTERCEPT_LR = 0.01  # river's GLM default, constant

    def __init__(self, learning_rate: float = 0.05, l2: float = 1e-4) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2
        self.stats: dict[str, list] = {}  # feature -> [count, mean, variance] (Welford, as river's scaler)
        self.weights: dict[str, float] = {}
        self.intercept = 0.0
        self.version = 0

    def predict(self, x: dict[str, float]) -> float:
        stats, w = self.stats, self.weights
        z = 0.0
        for k, xi in x.items():
            s = stats.get(k)
            if s is not None and s[2]:
                wk = w.get(k)
                if wk is not None:
                    z += wk * ((xi - s[1]) / s[2] ** 0.5)
        z += self.intercept
        if z < -30:
            return 0.0
        if z > 30:
            return 1.0
        return 1 / (1 + exp(-z))

    def learn(self, x: dict[str, float], y: bool) -> None:
        stats, w = self.stats, self.weights
        xt = {}
        for k, xi in x.items():  # the scaler learns, then standardises
            s = stats.get(k)
            if s is None:
                s = stats[k] = [0, 0.0, 0.0]
            n = s[0] = s[0] + 1
            old = s[1]
            m = s[1] = old + (xi - old) / n
            v = s[2] = s[2] + ((xi - old) * (xi - m) - s[2]) / n
            xt[k] = (xi - m) / v ** 0.5 if v else 0.0
        z = 0.0
        for k, xk in xt.items():
            z += w.setdefault(k, 0.0) * xk
        z += self.intercept
        # the log loss's gradient in the raw score (river's optim.losses.Log)
        if y:
            g = -exp(-z) if z > 18.0 else (-1.0 if z < -18.0 else -1.0 / (exp(z) + 1.0))
        else:
            z = -z
            g = exp(-z) if z > 18.0 else (1.0 if z < -18.0 else 1.0 / (exp(z) + 1.0))
        self.intercept -= self.INTERCEPT_LR * g
        lr, l2 = self.learning_rate, self.l2
        for k, xk in xt.items():
            wk = w[k]
            w[k] = wk - lr * (xk * g + wk * l2)
        self.version += 1

    def to_dict(self) -> dict:
        return {"learning_rate": self.learning_rate, "l2": self.l2, "stats": self.stats, "weights": self.weights,
                "intercept": self.intercept, "version": self.version}

    def __setstate__(self, state: dict) -> None:
        pipeline = state.pop("model", None)
        if pipeline is not None:  # a snapshot from before 2026-12-06: river's pipeline inside
            scaler, lr = pipeline.steps["StandardScaler"], pipeline.steps["LogisticRegression"]
            state["stats"] = {k: [scaler.counts[k], scaler.means[k], scaler.vars[k]] for k in scaler.counts}
            state["weights"] = dict(lr.weights)
            state["intercept"] = lr.intercept
        self.__dict__.update(state)


class PopulationModels:
    """The shared models a runtime passes to the engine (one per worker group)."""

    def __init__(self, peer_half_life_s: float = 180 * 86400.0, inspection_lr: float = 0.05) -> None:
        self.peers = PeerRates(peer_half_life_s)
        self.inspection = InspectionModel(inspection_lr)

    @property
    def version(self) -> tuple[int, int]:
        return (self.peers.version, self.inspection.version)

    def to_dict(self) -> dict:
        return {"peers": self.peers.to_dict(), "inspection": self.inspection.to_dict()}

    @staticmethod
    def from_dict(data, where: tuple = ()) -> "PopulationModels":
        """The models of a snapshot's JSON (:meth:`to_dict`); :class:`SnapshotError` naming the field
        (under ``where``) if it is not one. Snapshots are read whole by ``Trainer.decode``.

        >>> m = PopulationModels()
        >>> m.inspection.learn({"critical": 1.0}, True)
        >>> PopulationModels.from_dict(m.to_dict()).inspection.weights == m.inspection.weights
        True
        >>> PopulationModels.from_dict({"peers": {}})
        Traceback (most recent call last):
        riskwatch.models.SnapshotError: peers.half_life_s: Field required
        """
        try:
            form = _ModelsForm.model_validate(data)
        except ValidationError as exc:
            raise snapshot_error(exc, where) from exc
        m = PopulationModels.__new__(PopulationModels)
        p, i = form.peers, form.inspection
        m.peers = PeerRates(p.half_life_s)
        m.peers.groups = {k: list(v) for k, v in p.groups.items()}
        m.peers._set_recent(p.recent)
        m.peers.version = p.version
        m.inspection = InspectionModel(i.learning_rate, i.l2)
        m.inspection.stats = {k: list(v) for k, v in i.stats.items()}
        m.inspection.weights = dict(i.weights)
        m.inspection.intercept = i.intercept
        m.inspection.version = i.version
        return m


class SnapshotError(RiskwatchError, ValueError):
    """A model snapshot that cannot be read; the message names the field or the reason."""


Finite = Annotated[float, Field(allow_inf_nan=False)]


def snapshot_error(exc: ValidationError, where: tuple = ()) -> SnapshotError:
    """The first of pydantic's errors as a :class:`SnapshotError` naming its field (under ``where``)."""
    e = exc.errors()[0]
    return SnapshotError(f"{'.'.join(map(str, (*where, *e['loc']))) or 'snapshot'}: {e['msg']}")


class _PeersForm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    half_life_s: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    groups: dict[str, tuple[Finite, Finite, Annotated[float, Field(ge=0, allow_inf_nan=False)]]]
    recent: dict[str, tuple[Finite, Finite, dict[str, Finite]]] = {}  # none in snapshots before 2026-12-06
    version: Annotated[int, Field(ge=0)]


class _InspectionForm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    learning_rate: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    l2: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    stats: dict[str, tuple[Annotated[int, Field(ge=0)], Finite, Finite]]  # count, mean, variance
    weights: dict[str, Finite]
    intercept: Finite
    version: Annotated[int, Field(ge=0)]


class _ModelsForm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    peers: _PeersForm
    inspection: _InspectionForm


# every class a pickled snapshot (before 2026-12-06) names, and nothing else
_PICKLED = {("builtins", "float"), ("collections", "Counter"), ("collections", "OrderedDict"),
            ("collections", "defaultdict"), ("riskwatch.models", "InspectionModel"),
            ("riskwatch.models", "PeerRates"), ("riskwatch.models", "PopulationModels"),
            ("river._river_rust.vectordict", "VectorDict"), ("river.compose.pipeline", "Pipeline"),
            ("river.linear_model.log_reg", "LogisticRegression"), ("river.optim.initializers", "Zeros"),
            ("river.optim.losses", "Log"), ("river.optim.schedulers", "Constant"), ("river.optim.sgd", "SGD"),
            ("river.preprocessing.scale", "StandardScaler")}


class _SnapshotUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLED:
            raise SnapshotError(f"a pickled snapshot may not name {module}.{name}")
        return super().find_class(module, name)


def legacy_unpickle(data: bytes):
    """Unpickle a snapshot from before 2026-12-06, refusing any class such snapshots do not hold.

    >>> import os
    >>> legacy_unpickle(pickle.dumps(os.system))
    Traceback (most recent call last):
    riskwatch.models.SnapshotError: a pickled snapshot may not name posix.system
    """
    try:
        return _SnapshotUnpickler(io.BytesIO(data)).load()
    except SnapshotError:
        raise
    except Exception as exc:  # a truncated or foreign pickle raises anything from EOFError to KeyError
        raise SnapshotError(f"not a snapshot: {type(exc).__name__}: {exc}") from exc
