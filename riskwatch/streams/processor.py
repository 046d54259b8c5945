"""One Kafka message in, decisions out: the worker's logic without Faust.

:class:`BatchProcessor` decodes a message (one event or a batch envelope),
validates every event (invalid ones become dead-letter records with field
errors, the rest go on), sends events whose entity lives on another
partition back to be re-keyed, and runs :class:`~riskwatch.engine.Engine`
per entity with the state loaded once and stored once per message.

Redelivery is idempotent: each entity state remembers the last applied
offset per source topic-partition (``state["o"]``) and skips what is at or
below it, so a message seen again after a crash or rebalance counts once.

An event the engine fails on (a bug) is dead-lettered, and its entity's state
is built again without it: from the state before the message (``restore``),
with the message's events before it applied again. The engine updates a
state in place, so until 2026-12-07 a failure left what the event had done
before it failed (its clock, its count, half a detector's update) in the
state that was stored. Nothing is copied before each event: the rebuild
costs only when an event fails.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from ..engine import Engine
from ..errors import FieldError, InvalidEvent, StateUnreadable
from ..events import parse_event, register_status, too_far_ahead
from ..view import inspection_fact
from .codec import dead_letter, decode, partition_for

__all__ = ["BatchProcessor", "BatchResult"]

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    states: dict[str, dict] = field(default_factory=dict)     # entity -> new state (to store)
    outputs: list[dict] = field(default_factory=list)
    dead: list[tuple[str, bytes]] = field(default_factory=list)  # (reason, record)
    misrouted: list[tuple[str, dict]] = field(default_factory=list)  # (entity, raw event)
    entities: list[dict] = field(default_factory=list)         # register data seen (for the view)
    inspections: list[dict] = field(default_factory=list)      # inspection results seen (for the view)
    applied: int = 0
    skipped: int = 0
    ignored: dict[str, int] = field(default_factory=dict)  # by detector: events it did not apply
    updates: list = field(default_factory=list)  # population model updates (the worker fills it in)
    # entity -> places in the message of its events not applied (the engine failed on them, or its
    # stored state was unreadable): a state built again from an earlier one passes over them
    not_applied: dict[str, list[int]] = field(default_factory=dict)
    # the engine (its config) the message's events ran under: a state built again applies them under
    # it, not under a config a later message of the round changed to (until 2026-12-07 it did)
    engine: Engine | None = None


class BatchProcessor:
    """Thin adapter between messages and the engine; holds no risk logic."""

    def __init__(self, engine: Engine, partitions: int,
                 on_config: Callable[[dict], str | None] | None = None, max_future_s: float = 3600.0,
                 clock: Callable[[], float] = time.time, commands_topic: str = "rw.commands") -> None:
        self.engine = engine
        self.commands_topic = commands_topic  # the one topic a state_reset is taken from
        self.partitions = partitions
        self.on_config = on_config  # applies a config_change command; returns an error or None
        self.max_future_s = max_future_s  # event times further ahead of the clock are dead-lettered
        self.clock = clock
        self.bugs_logged: dict[tuple, int] = {}  # (exception type, where raised) -> events it failed

    def _sort(self, raws: list, topic: str, partition: int, offset: int, res: BatchResult,
              apply_config: bool, engine: Engine | None = None) -> dict[str, list]:
        """A message's valid events by entity, as [(place in the message, event)]; the rest into ``res``
        (dead letters, events of another partition's entities). Config changes are applied only if
        ``apply_config`` (not when a message is read again to rebuild a state, under ``engine``'s
        entity id scheme)."""
        scheme = (engine or self.engine).config.entity_id_scheme
        now = self.clock()
        by_entity: dict[str, list] = {}
        for i, raw in enumerate(raws):
            if isinstance(raw, dict) and raw.get("type") == "config_change" and self.on_config is not None:
                if apply_config:
                    err = self.on_config(raw)  # sent to every partition; the first copy seen applies it
                    if err:
                        res.dead.append(("config_invalid", dead_letter(raw, topic, partition, offset, err, i)))
                    scheme = self.engine.config.entity_id_scheme
                continue
            try:
                ev = parse_event(raw, scheme)
            except InvalidEvent as exc:
                res.dead.append((exc.errors[0].rule, dead_letter(raw, topic, partition, offset, exc.errors, i)))
                continue
            if ev.type == "state_reset" and topic != self.commands_topic:  # an operator's, through the API
                res.dead.append(("wrong_topic", dead_letter(raw, topic, partition, offset, [FieldError(
                    "type", "wrong_topic", f"state_reset is read from {self.commands_topic} only")], i)))
                continue
            ahead = too_far_ahead(ev, now, self.max_future_s)
            if ahead is not None:
                res.dead.append((ahead.rule, dead_letter(raw, topic, partition, offset, [ahead], i)))
                continue
            eid = ev.entity_id
            if partition_for(eid.encode(), self.partitions) != partition:
                res.misrouted.append((eid, raw))
                continue
            by_entity.setdefault(eid, []).append((i, ev))
        return by_entity

    def handle(self, value: bytes | None, topic: str, partition: int, offset: int,
               load: Callable[[str], dict | None],
               restore: Callable[[str], dict | None] | None = None) -> BatchResult:
        """``load`` gives an entity's current state (it may be updated in place); ``restore``, its state
        as it was before this message, to build it again after an event the engine fails on. Without
        ``restore`` (or with models that cannot take back their updates: see :meth:`_undoable`), a
        failed event's half-update stays in the state."""
        res = BatchResult()
        raws, err = decode(value)
        if err:
            res.dead.append((err.split(":", 1)[0], dead_letter(value or b"", topic, partition, offset, err)))
            return res
        by_entity = self._sort(raws, topic, partition, offset, res, apply_config=True)
        now = self.clock()
        tp = f"{topic}:{partition}"
        engine = res.engine = self.engine  # after any config change above
        process = engine.process
        ignored_before = dict(engine.ignored)
        undo = self._undoable(restore)
        for eid, evs in by_entity.items():
            reset = False  # its stored state is unreadable: a reset in this message starts it again
            try:
                state = load(eid)
            except StateUnreadable as exc:  # its events wait in the dead letters; the others go on
                # up to an operator's reset, which starts the state again (StateReset)
                k = next((j for j, (_, ev) in enumerate(evs) if ev.type == "state_reset"), len(evs))
                err = f"state_unreadable: {exc}"
                for i, ev in evs[:k]:
                    res.dead.append(("state_unreadable", dead_letter(ev.model_dump(mode="json"), topic, partition,
                                                                     offset, err, i)))
                res.not_applied[eid] = [i for i, _ in evs[:k]]
                if k == len(evs):
                    continue
                evs, state, reset = evs[k:], None, True
            seen = state.get("o", {}).get(tp, -1) if state else -1
            if offset <= seen:
                res.skipped += len(evs)
                continue
            failed: list[int] = []
            mark = undo.mark() if undo is not None else 0
            for j, (i, ev) in enumerate(evs):
                try:
                    state, outs = process(state, ev)
                except Exception as exc:  # a bug must not stop the partition: dead-letter, go on
                    err = f"engine_error: {type(exc).__name__}: {exc}"
                    res.dead.append(("engine_error", dead_letter(ev.model_dump(mode="json"), topic, partition,
                                                                 offset, err, i)))
                    failed.append(i)
                    if undo is not None:  # built again without it (its half-update is in ``state``)
                        undo.rollback(mark)
                        state = self._apply(None if reset else restore(eid), evs[:j], failed)
                    self._log_bug(exc, eid, f"{tp}@{offset} #{i}", undo is not None)
                    continue
                if outs:
                    for o in outs:
                        if o["type"] == "alert_candidate" and o["status"] == "firing":
                            # does it still hold now? (a backfill's alerts do not: Engine.alert_current)
                            try:
                                o["current"] = engine.alert_current(state, o["signal"], now)
                            except Exception:  # the event is applied: left unmarked, it alerts as before
                                pass
                    res.outputs.extend(outs)
                if ev.type == "entity":
                    status, since = register_status(state)
                    res.entities.append({"entity_id": eid, "name": ev.name, "industry": ev.industry,
                                         "region": ev.region, "address": ev.address, "status": status,
                                         "status_since": since})
                elif ev.type == "inspection":  # what a draw's spot check found (GET .../outcomes)
                    res.inspections.append(inspection_fact(ev))
            if failed:
                res.not_applied.setdefault(eid, []).extend(failed)
            if state is None:
                continue
            state.setdefault("o", {})[tp] = offset
            res.states[eid] = state
            res.applied += len(evs) - len(failed)  # dead-lettered ones were counted twice until 2026-12-04
        if engine.ignored != ignored_before:
            res.ignored = {k: n - ignored_before.get(k, 0) for k, n in engine.ignored.items()
                           if n != ignored_before.get(k, 0)}
        return res

    def _log_bug(self, exc: Exception, eid: str, where: str, rebuilt: bool) -> None:
        """A line per failed event, with the traceback the first time per exception type and place
        raised; past the first 100 of a kind, a line per 1,000 (a bug every event hits would flood the
        log: the dead-letter topic and its metric hold each one)."""
        last = None
        for frame, lineno in traceback.walk_tb(exc.__traceback__):  # not extract_tb: it reads the source
            last = frame.f_code.co_filename, lineno
        key = (type(exc).__name__, *last) if last else (type(exc).__name__,)
        n = self.bugs_logged[key] = self.bugs_logged.get(key, 0) + 1
        if n <= 100 or n % 1000 == 0:
            log.error("engine error on %s's event at %s, dead-lettered; %s%s", eid, where,
                      "its state built again without it" if rebuilt else "its state may hold part of it",
                      f" ({n} so far from {key[0]} at {key[1]}:{key[2]})" if n > 100 and len(key) == 3 else "",
                      exc_info=exc if n == 1 else None)

    def _undoable(self, restore):
        """The engine's models if a failed event's state can be built again: ``restore`` given, and
        models that queue their updates and can take them back (a worker's
        :class:`~riskwatch.streams.shared_models.SharedModels`: ``mark``, ``rollback``). Models that
        learn in place cannot, and applying events again would teach them twice."""
        models = self.engine.models
        return models if restore is not None and hasattr(models, "rollback") else None

    def _apply(self, state: dict | None, evs: list, skip, engine: Engine | None = None) -> dict | None:
        """Events applied again to build a state (their outputs were taken the first time) by
        ``engine`` (by default the current one). The engine is deterministic in event time, so this
        gives the state they gave, without the events at the places in ``skip``. What it counts in
        ``engine.ignored`` is taken back."""
        engine = engine or self.engine
        ignored = dict(engine.ignored)
        skip = set(skip)
        try:
            for i, ev in evs:
                if i not in skip:
                    state = engine.process(state, ev)[0]
        finally:
            engine.ignored.clear()
            engine.ignored.update(ignored)
        return state

    def apply_again(self, state: dict | None, eid: str, value: bytes | None, topic: str, partition: int,
                    offset: int, not_applied: list[int] = (), read: dict | None = None,
                    engine: Engine | None = None) -> dict | None:
        """An earlier message's events of ``eid`` applied again to ``state`` (the worker rebuilds a state
        from the one stored before a round of messages, after an event the engine failed on in a later
        message of that round). The models' updates it makes are taken back (they go with that message):
        the worker's models only. Config changes in it are not applied again. ``read``: the messages
        already read again, by (topic, partition, offset): each is decoded and validated once however
        many of its entities are rebuilt (a bug that every event hits rebuilds every entity). ``engine``:
        the one the message ran under (:attr:`BatchResult.engine`), when a config change since
        replaced it; the current one if None."""
        key = (topic, partition, offset)
        by_entity = read.get(key) if read is not None else None
        if by_entity is None:
            raws, err = decode(value)
            by_entity = {} if err else self._sort(raws, topic, partition, offset, BatchResult(), apply_config=False,
                                                  engine=engine)
            if read is not None:
                read[key] = by_entity
        evs = by_entity.get(eid)
        tp = f"{topic}:{partition}"
        if not evs or offset <= (state.get("o", {}).get(tp, -1) if state else -1):
            return state
        models = self.engine.models
        mark = models.mark()
        state = self._apply(state, evs, not_applied, engine)
        models.rollback(mark)
        if state is not None:
            state.setdefault("o", {})[tp] = offset
        return state
