"""Times in API answers and CLI output: ISO-8601 in UTC.

Alerts, silences, objections, draws, config changes, the audit log and dead-lettered
notifications are stored with epoch seconds; the view keeps decision times as the deciding
event gave them (its own offset). Until 2026-12-04 the API answered with those
(``"at": 1796424351.577203``) next to ISO strings elsewhere, which an inspector or an
auditor reading an answer could not read without converting.

>>> utc("2026-12-05T08:00:00+08:00"), iso_seconds(60.5)
('2026-12-05T00:00:00+00:00', '1970-01-01T00:01:00Z')
>>> iso_fields({"id": "a1", "starts_at": 0.0, "ends_at": None, "ack": {"by": "x", "at": 1.5}, "value": 3.0})
{'id': 'a1', 'starts_at': '1970-01-01T00:00:00+00:00', 'ends_at': None, 'ack': {'by': 'x', 'at': '1970-01-01T00:00:01.500000+00:00'}, 'value': 3.0}
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["iso", "iso_fields", "iso_seconds", "utc", "TIME_FIELDS"]

TIME_FIELDS = ("at", "starts_at", "ends_at", "last_seen", "created_at", "updated_at", "resolved_at", "committed_at",
               "executed_at", "queued_at", "escalated_at", "withdrawn_at", "due_at")
_NESTED = ("ack", "detail", "previous")  # an alert's ack, an audit entry's detail, a config change's predecessor


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


def iso_seconds(t: float) -> str:
    """Epoch seconds as a short UTC time for terminal listings (whole seconds, ``Z``)."""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc(v):
    """An ISO-8601 time as stored in the view (the deciding event's own offset) in UTC; anything
    else as it is. An entity's ``updated``, its history and tier changes carried the event's offset
    (``+08:00``) until 2026-12-05."""
    if not isinstance(v, str):
        return v
    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        return v
    return t.astimezone(timezone.utc).isoformat() if t.tzinfo is not None else v


def iso_fields(rec: dict, nested: bool = True) -> dict:
    """A copy of a stored record with its epoch-second time fields as ISO-8601 strings: at the top
    level and at the top of its ack, detail or previous record. Nothing deeper: a config holds
    fields named ``at`` (an alert's firing level) that are not times."""
    out = dict(rec)
    for k in TIME_FIELDS:
        v = out.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = iso(v)
    if nested:
        for k in _NESTED:
            v = out.get(k)
            if isinstance(v, dict):
                out[k] = iso_fields(v, nested=False)
    return out
