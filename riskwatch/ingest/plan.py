"""Pure parts of ingestion: parsing request bodies, validating, and grouping per partition.

>>> items, fatal = parse_body("application/x-ndjson", b'{"type": "tick"}\\nnot json\\n\\n')
>>> fatal, [(i, e is None) for i, _, e in items]
(None, [(0, True), (1, False)])
>>> parse_body("application/json", b"[1, ")[1]
'body is not valid JSON: unexpected end of data: line 1 column 5 (char 4)'
>>> TOPIC_FOR_TYPE["sensor_reading"], TOPIC_FOR_TYPE["objection"]
('sensor-readings', 'commands')
"""

from __future__ import annotations

import time
from collections import defaultdict

import orjson

from ..errors import FieldError, InvalidEvent
from ..events import parse_event, too_far_ahead
from ..streams.codec import partition_for

__all__ = ["TOPIC_FOR_TYPE", "parse_body", "validate", "group", "Rejected"]

TOPIC_FOR_TYPE = {"entity": "entities", "complaint": "complaints", "sensor_reading": "sensor-readings",
                  "inspection": "inspections", "record": "records", "objection": "commands",
                  "objection_resolution": "commands"}

Rejected = tuple[int, list[dict]]  # (index in the request, field errors)


def parse_body(content_type: str, body: bytes) -> tuple[list[tuple[int, object, str | None]], str | None]:
    """Items ``(index, raw, parse error)`` of one event, a JSON array, or JSON lines; or a fatal error."""
    ct = (content_type or "").split(";")[0].strip().lower()
    if not body.strip():
        return [], "body is empty"
    if ct in ("application/x-ndjson", "application/jsonl", "application/json-lines"):
        items = []
        for i, line in enumerate(x for x in body.split(b"\n") if x.strip()):
            try:
                items.append((i, orjson.loads(line), None))
            except orjson.JSONDecodeError as exc:
                items.append((i, None, f"line is not valid JSON: {exc}"))
        if items and all(e for _, _, e in items):
            return [], "no line of the body is valid JSON"
        return items, None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return [], f"body is not valid JSON: {exc}"
    if isinstance(obj, list):
        return [(i, x, None) for i, x in enumerate(obj)], None
    return [(0, obj, None)], None


def validate(items, scheme: str, max_future_s: float = 0.0,
             now: float | None = None) -> tuple[list[tuple[int, object, dict]], list[Rejected]]:
    """Accepted ``(index, event model, raw dict)`` and rejected ``(index, errors)``; event times more
    than ``max_future_s`` after ``now`` (default: the clock) are rejected (0: no limit)."""
    ok, bad = [], []
    now = time.time() if now is None else now
    for i, raw, err in items:
        if isinstance(err, list):  # field errors found while reading the line (a CSV cell's time)
            bad.append((i, err))
            continue
        if err:
            bad.append((i, [FieldError("(line)", "json_invalid", err).as_dict()]))
            continue
        if isinstance(raw, dict) and raw.get("type") in ("tick", "config_change", "state_reset"):
            bad.append((i, [FieldError("type", "not_ingestible", f"{raw['type']} events are internal"
                                       + (" (POST /v1/entities/{id}/reset-state)" if raw["type"] == "state_reset"
                                          else "")).as_dict()]))
            continue
        try:
            ev = parse_event(raw, scheme)
        except InvalidEvent as exc:
            bad.append((i, [e.as_dict() for e in exc.errors]))
            continue
        ahead = too_far_ahead(ev, now, max_future_s)
        if ahead is not None:
            bad.append((i, [ahead.as_dict()]))
            continue
        ok.append((i, ev, raw))
    return ok, bad


def group(accepted, partitions: int, max_batch: int = 500) -> dict[tuple[str, int], list[list[dict]]]:
    """Events per (topic suffix, partition of their entity), in request order, chunked into envelopes."""
    out: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for _, ev, raw in accepted:
        out[(TOPIC_FOR_TYPE[ev.type], partition_for(ev.entity_id.encode(), partitions))].append(raw)
    return {k: [v[j:j + max_batch] for j in range(0, len(v), max_batch)] for k, v in out.items()}
