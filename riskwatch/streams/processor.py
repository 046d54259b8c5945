"""One Kafka message in, decisions out: the worker's logic without Faust.

:class:`BatchProcessor` decodes a message (one event or a batch envelope),
validates every event (invalid ones become dead-letter records with field
errors, the rest go on), sends events whose entity lives on another
partition back to be re-keyed, and runs :class:`~riskwatch.engine.Engine`
per entity with the state loaded once and stored once per message.

Redelivery is idempotent: each entity state remembers the last applied
offset per source topic-partition (``state["o"]``) and skips what is at or
below it, so a message seen again after a crash or rebalance counts once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from ..engine import Engine
from ..errors import FieldError, InvalidEvent, StateUnreadable
from ..events import parse_event, register_status, too_far_ahead
from ..view import inspection_fact
from .codec import dead_letter, decode, partition_for

__all__ = ["BatchProcessor", "BatchResult"]


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

    def handle(self, value: bytes | None, topic: str, partition: int, offset: int,
               load: Callable[[str], dict | None]) -> BatchResult:
        res = BatchResult()
        raws, err = decode(value)
        if err:
            res.dead.append((err.split(":", 1)[0], dead_letter(value or b"", topic, partition, offset, err)))
            return res
        scheme = self.engine.config.entity_id_scheme
        now = self.clock()
        by_entity: dict[str, list] = {}  # entity -> [(index in the message, event)]
        for i, raw in enumerate(raws):
            if isinstance(raw, dict) and raw.get("type") == "config_change" and self.on_config is not None:
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
        tp = f"{topic}:{partition}"
        engine = self.engine  # after any config change above
        process = engine.process
        ignored_before = dict(engine.ignored)
        for eid, evs in by_entity.items():
            try:
                state = load(eid)
            except StateUnreadable as exc:  # its events wait in the dead letters; the others go on
                # up to an operator's reset, which starts the state again (StateReset)
                k = next((j for j, (_, ev) in enumerate(evs) if ev.type == "state_reset"), len(evs))
                err = f"state_unreadable: {exc}"
                for i, ev in evs[:k]:
                    res.dead.append(("state_unreadable", dead_letter(ev.model_dump(mode="json"), topic, partition,
                                                                     offset, err, i)))
                if k == len(evs):
                    continue
                evs, state = evs[k:], None
            seen = state.get("o", {}).get(tp, -1) if state else -1
            if offset <= seen:
                res.skipped += len(evs)
                continue
            failed = 0
            for i, ev in evs:
                try:
                    state, outs = process(state, ev)
                except Exception as exc:  # a bug must not stop the partition: dead-letter, go on
                    err = f"engine_error: {type(exc).__name__}: {exc}"
                    res.dead.append(("engine_error", dead_letter(ev.model_dump(mode="json"), topic, partition,
                                                                 offset, err, i)))
                    failed += 1
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
            if state is None:
                continue
            state.setdefault("o", {})[tp] = offset
            res.states[eid] = state
            res.applied += len(evs) - failed  # dead-lettered ones were counted twice until 2026-12-04
        if engine.ignored != ignored_before:
            res.ignored = {k: n - ignored_before.get(k, 0) for k, n in engine.ignored.items()
                           if n != ignored_before.get(k, 0)}
        return res

