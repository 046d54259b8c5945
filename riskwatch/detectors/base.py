"""The one interface every detector implements.

A detector is an immutable *spec* (its constructor arguments are its config,
validated by its ``Params`` model and stored under the same names) plus a
per-entity *state*: a small plain JSON value the engine keeps for it.

- ``update(state, event, at, now, entity, models)`` learns from one event
  that happened at ``at`` (mutating ``state``) and returns the signals it
  changed, valued at ``now``, the entity's clock (the latest event time seen,
  so ``now >= at``). An event reported late (``at < now``: a buffered
  upload, a backfill, a wall-clock tick ahead of the feed) is placed at its
  own time in the detector's history, not counted as happening now;
- ``evaluate(state, now, entity, models)`` recomputes every signal at event
  time ``now`` without an event (ticks: silence, decay, expiry);
- ``retract(state, item_id, now)`` / ``restore(state, item, now)`` take an
  item's contribution out (objection, revocation) and put it back (upheld).

A signal is ``name -> (value, event_ids)`` with value in [0, 1]; higher means
riskier. A value that belongs to one event (one reading's anomaly score, one
inspection's result) is ``(value, event_ids, at)`` when ``update`` returns it:
it holds at ``at`` and decays from there, not from the entity's clock.
``entity`` is the whole entity state (read its ``"m"`` metadata or ``"g"``
signal cache, never write it); ``models`` are the shared population models
(:class:`riskwatch.models.PopulationModels`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import MappingProxyType
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ..config import SignalSpec

__all__ = ["Detector", "IGNORED", "Signals", "ParamsModel", "clamp01", "decay"]

Signals = dict[str, tuple]  # (value, event_ids) or (value, event_ids, at)
#: what ``update`` returns for an event it does not apply: one the state already holds (same id), a
#: reading not after its series' last, a record kind the config does not know. The engine counts them
#: (``Engine.ignored``; the worker's ``riskwatch_events_ignored_total``, replay's summary)
IGNORED: Signals = MappingProxyType({})  # type: ignore[assignment]


class ParamsModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Detector(ABC):
    """Base class: stores validated params as attributes and gives a round-tripping repr."""

    name: ClassVar[str]
    handles: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[ParamsModel]] = ParamsModel
    default_signals: ClassVar[dict[str, SignalSpec]] = {}
    #: whether :meth:`evaluate` can change signals with time alone (silence, expiry)
    time_dependent: ClassVar[bool] = False
    #: signals that hold their value until an event changes it (steps such as silence): no half-life
    holding: ClassVar[tuple[str, ...]] = ()
    #: whether :meth:`evaluate` changes between events other than at :meth:`next_change` deadlines (a
    #: record's decay): the engine then re-evaluates the detector before every decision
    drifts: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        p = self.Params.model_validate(params)
        self.params = p
        for k in type(p).model_fields:
            setattr(self, k, getattr(p, k))
        self._prepare()

    def _prepare(self) -> None:
        """Precompute derived constants (seconds, lookup tables)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in type(self.params).model_fields)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.params == other.params  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    # -- the interface ---------------------------------------------------
    def new_state(self) -> Any:
        return {}

    @abstractmethod
    def update(self, state: Any, event: Any, at: float, now: float, entity: dict, models: Any) -> Signals:
        """Learn from one event of a type in ``handles`` that happened at ``at``; return the signals it
        changed, valued at the entity's clock ``now`` (>= ``at``)."""

    def evaluate(self, state: Any, now: float, entity: dict, models: Any) -> Signals:
        return {}

    def wants_tick(self, state: Any) -> bool:
        """Whether time alone can change this state's signals (read for time-dependent detectors)."""
        return bool(state)

    def next_change(self, state: Any, now: float, entity: dict) -> float | None:
        """For a time-dependent detector, or one with :meth:`recheck`: the earliest event time at which
        :meth:`evaluate` (or :meth:`recheck`) can give signals other than those in the entity's signal
        cache (``entity["g"]``, stamped when last evaluated) decayed by their half-lives: a deadline
        (silence, a breach's minimum duration, an expiry, a look again), or ``now`` for one passed since
        the cache was stamped, or when it cannot tell; None when time alone changes nothing. An early
        answer costs a tick that changes nothing, a late one a late decision: when unsure, answer early."""
        return now if self.wants_tick(state) else None

    def recheck(self, state: Any, now: float, entity: dict, models: Any) -> Signals:
        """For a detector that is not time-dependent but reads shared models that move without the entity
        (a peer group's surge): the signals a tick at ``now`` changes (may be none), when
        :meth:`next_change` says; it may note in ``state`` that it looked. Not called by read-only
        evaluations. A detector that defines it is asked :meth:`next_change` for its ticks."""
        return {}

    def alert_detail(self, signal: str, state: Any, now: float, entity: dict, models: Any) -> dict | None:
        """What an alert of ``signal`` firing now should show beyond the entity's own events (a peer
        group's surge: the group's other entities); None for nothing. Read once per firing candidate."""
        return None

    def registered(self, state: Any, now: float, entity: dict, models: Any, before: list | None = None) -> None:
        """The entity's register data named its peer group (``entity["m"]``) after events of its own: for
        the first time (a feed's topics are not ordered with each other, so a complaint can come before
        its entity's upsert), or a new one (``before``: the old register data; an industry or region
        changed). Give the population models what those events would have given them had this group
        been known, and take it from the old one. By default nothing."""

    def half_lives(self, state: Any) -> dict[str, float]:
        """Signals whose value at a tick can fall faster than their configured half-life:
        {signal: half-life in s}. Read by :meth:`Engine.next_tick`."""
        return {}

    def holds(self, state: Any, item_id: str) -> bool:
        return False

    def retract(self, state: Any, item_id: str, now: float, entity: dict, models: Any):
        """Remove an item's contribution; return ``(item, signals)`` or ``(None, {})``."""
        return None, {}

    def restore(self, state: Any, item: Any, now: float, entity: dict, models: Any) -> Signals:
        return {}

    def resume(self, state: Any, since: float, now: float) -> None:
        """The detector was switched off by a config change at event time ``since`` and is on again at
        ``now``: events of its types in between were not applied. A detector whose signals measure
        time since an event (a silence) cuts that interval out of its state; by default nothing
        changes (a record's expiry, a complaint's decay run in real time)."""


def clamp01(x: float) -> float:
    return 0.0 if x <= 0.0 else 1.0 if x >= 1.0 else x


def decay(half_life_s: float, dt: float) -> float:
    """Weight left after ``dt`` seconds with half-life ``half_life_s`` (1 for dt <= 0)."""
    return 1.0 if dt <= 0.0 else 2.0 ** (-dt / half_life_s)
