"""``riskwatch deadletter``: what the dead-letter topic holds, and sending it back.

Every event the live paths refuse (worker, HTTP ingest, MQTT bridge) lands on
``rw.deadletter`` with its original, where it came from and why. Without a
way to read it back, "nothing is lost" was true only for someone with kcat.
This lists the dead letters (counts by reason and source topic, then the
latest ones), and ``--replay`` sends the originals of the selected ones back
to their input topics once their cause is fixed: after ops switched
``entity_id_scheme`` to ``opaque``, after an engine fix for an
``engine_error``, after a producer's clock was corrected. The worker validates
them again: what is still invalid is dead-lettered again (a new entry),
the rest is processed.

Only events can go back: a message that is not a JSON object with a ``type``
(bad JSON, a bad envelope) is listed as not replayable. Dead letters are
never deleted (a topic is append-only), so a replay prints the next offset to
start from; ``--from-offset`` takes it, and a second replay of the same
selection sends the events again (the newest complaints, records and
inspections of an entity are recognised by id, sensor readings by time; an
``engine_error`` event may have been applied in part before the error).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import orjson

from .settings import INPUT_TOPICS, Settings
from .streams.kafka import BatchProducer, read_messages, topic_for
from .times import iso_seconds

__all__ = ["DeadLetter", "event_of", "read_dead_letters", "render", "replay", "select"]


@dataclass(frozen=True)
class DeadLetter:
    offset: int          # in the dead-letter topic
    record: dict         # original, topic, partition, offset, index, errors, reason, at


async def read_dead_letters(settings: Settings, from_offset: int = 0) -> list[DeadLetter]:
    """The dead letters from ``from_offset`` on: the consumer seeks there (until 2026-12-04 the whole
    topic was read and then filtered, which grows with every dead letter ever written)."""
    out = []
    async for msg in read_messages(settings, settings.topic("deadletter"), from_offset):
        try:
            rec = orjson.loads(msg.value)
        except orjson.JSONDecodeError:
            rec = {"reason": "unreadable", "errors": [{"message": "not a dead-letter record"}]}
        out.append(DeadLetter(msg.offset, rec if isinstance(rec, dict) else {"reason": "unreadable"}))
    return sorted(out, key=lambda d: d.offset)


def select(letters: list[DeadLetter], reasons: list[str] | None = None, topic: str | None = None,
           since: datetime | None = None, from_offset: int = 0) -> list[DeadLetter]:
    t0 = since.timestamp() if since else None
    return [d for d in letters
            if d.offset >= from_offset
            and (not reasons or d.record.get("reason") in reasons)
            and (topic is None or d.record.get("topic") == topic)
            and (t0 is None or (d.record.get("at") or 0) >= t0)]


_STATE_REASONS = ("state_unreadable", "engine_error")


def event_of(rec: dict) -> dict | None:
    """The original event of a dead letter, or None when it is not one (bad JSON, an envelope)."""
    raw = rec.get("original")
    if not isinstance(raw, str):
        return None
    try:
        ev = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return ev if isinstance(ev, dict) and isinstance(ev.get("type"), str) and "batch" not in ev else None


async def replay(settings: Settings, letters: list[DeadLetter]) -> tuple[Counter, int]:
    """Send the events of ``letters`` back to their input topics; (sent per topic, not replayable)."""
    inputs = {settings.topic(t) for t in INPUT_TOPICS}
    sent: Counter = Counter()
    skipped = 0
    async with BatchProducer(settings) as bp:
        for d in letters:
            ev = event_of(d.record)
            if ev is None:
                skipped += 1
                continue
            src = d.record.get("topic")
            topic = src if src in inputs else topic_for(ev, settings)  # mqtt:..., rekey: by its type
            await bp.add(ev, topic)
            sent[topic] += 1
    return sent, skipped


def _when(ts) -> str:
    return iso_seconds(ts) if ts else "-"


def render(letters: list[DeadLetter], shown: list[DeadLetter], limit: int, from_offset: int = 0) -> str:
    where = f"{len(letters)} in the topic" if not from_offset else f"{len(letters)} from offset {from_offset} on"
    lines = [f"{len(shown)} dead letters selected ({where})"]
    if shown:
        lines.append("by reason: " + ", ".join(f"{k} {v}" for k, v in Counter(
            d.record.get("reason", "?") for d in shown).most_common()))
        lines.append("by source: " + ", ".join(f"{k} {v}" for k, v in Counter(
            str(d.record.get("topic", "?")) for d in shown).most_common()))
        stuck = Counter((ev or {}).get("entity_id") for d in shown if d.record.get("reason") in _STATE_REASONS
                        for ev in [event_of(d.record)])
        stuck.pop(None, None)
        if stuck:  # which entities' states to look at (and reset, when the state is at fault)
            lines.append("by entity (state_unreadable, engine_error): " + ", ".join(
                f"{k} {v}" for k, v in stuck.most_common(10)) + (f", and {len(stuck) - 10} more" if len(stuck) > 10
                                                                 else ""))
            lines.append("  a state the worker cannot read or apply events to: POST /v1/entities/<id>/reset-state, "
                         "then --replay")
        lines.append(f"latest {min(limit, len(shown))}:")
        for d in shown[-limit:]:
            r = d.record
            err = (r.get("errors") or [{}])[0]
            where = f"{r.get('topic')}[{r.get('partition')}]@{r.get('offset')}" + (
                f"#{r['index']}" if r.get("index") is not None else "")
            msg = f"{err.get('field', '')}: {err.get('message', '')}".strip(": ")
            orig = r.get("original") or r.get("original_b64") or ""
            lines.append(f"  {d.offset:>8}  {_when(r.get('at'))}  {r.get('reason', '?'):<18} {where}  {msg[:120]}")
            lines.append(f"            {'' if event_of(r) else '(not replayable) '}{orig[:160]}")
        lines.append(f"next: --from-offset {shown[-1].offset + 1}")
    return "\n".join(lines)
