"""Alert lifecycle as pure functions over plain dicts: ``firing → acknowledged →
resolved`` (or ``expired``), one open alert per dedup key.

- A candidate ``firing`` for a key with no open alert opens one (``fired``);
  for an open alert it is a repeat (``count``, ``last_seen``; ``escalated`` when
  the severity rises).
- A candidate ``resolved`` starts the cooldown (``clearing``); only when the
  condition stays clear for the rule's cooldown does the alert resolve. A
  condition that flaps inside the cooldown therefore notifies once.
- An open alert that sees no candidate for ``expire_after`` is ``expired``.
- People ``acknowledge`` and ``resolve`` (with a note).
- An alert still ``firing`` (nobody acknowledged it, its condition holds) the
  rule's ``escalate_after`` after it fired is ``unacknowledged``: it gets the
  labels ``escalated="true"`` and ``escalation="1"``, which receivers route
  on, e.g. to a city bureau when a district team has not answered; each
  later time of the list escalates it again (``escalation="2"``: the
  province).

Transitions in :data:`NOTIFY` produce a notification; the others only update.

>>> from riskwatch.alerts.config import Rule
>>> rule = Rule(name="burst", signals=["burst"], summary="burst at {entity_id}", cooldown=600)
>>> cand = {"entity_id": "E1", "signal": "burst", "status": "firing", "severity": "warning",
...         "value": 0.9, "score": 40.0, "tier": "B", "event_ids": ["c1"], "ts": "2026-01-01T00:00:00+00:00"}
>>> a, t = apply_candidate(None, cand, rule, {}, now=1000.0, source="p0@1")
>>> t, a["status"], a["count"], a["labels"]["alertname"]
('fired', 'firing', 1, 'burst')
>>> a, t = apply_candidate(a, dict(cand, status="resolved"), rule, {}, now=1100.0, source="p0@2")
>>> t, a["status"]
('clearing', 'firing')
>>> a, t = apply_candidate(a, cand, rule, {}, now=1200.0, source="p0@3")   # flaps back: no new alert
>>> t, a["count"], a["clear_since"]
('repeated', 2, None)
>>> a, t = apply_candidate(a, dict(cand, status="resolved"), rule, {}, now=1300.0, source="p0@4")
>>> tick(a, rule, now=1800.0)[1], tick(a, rule, now=1900.0)[1]
(None, 'resolved')
>>> urgent = Rule(name="breach", signals=["limit"], summary="s", escalate_after=1800)
>>> b, _ = apply_candidate(None, cand, urgent, {}, now=1000.0, source="p0@5")
>>> due_at(b, urgent), tick(b, urgent, now=2799.0)[1]
(2800.0, None)
>>> b, t = tick(b, urgent, now=2800.0)
>>> t, b["labels"]["escalated"], b["labels"]["escalation"], b["escalated_at"], due_at(b, urgent) > 2800.0
('unacknowledged', 'true', '1', 2800.0, True)
>>> chain = Rule(name="breach", signals=["limit"], summary="s", escalate_after=["30m", "2h"])
>>> d, _ = apply_candidate(None, cand, chain, {}, now=1000.0, source="p0@7")
>>> d, t1 = tick(d, chain, now=2800.0)
>>> due_at(d, chain), tick(d, chain, now=8199.0)[1]
(8200.0, None)
>>> d, t2 = tick(d, chain, now=8200.0)
>>> t1, t2, d["labels"]["escalation"], d["escalation"], d["escalated_at"], due_at(d, chain)
('unacknowledged', 'unacknowledged', '2', 2, 8200.0, 2593000.0)
>>> c, _ = apply_candidate(None, cand, urgent, {}, now=1000.0, source="p0@6")
>>> c, _ = acknowledge(c, "li", now=1500.0)          # someone is on it: no escalation
>>> due_at(c, urgent), tick(c, urgent, now=9000.0)[1]
(2593000.0, None)
"""

from __future__ import annotations

import hashlib

import orjson

from .. import times
from .config import Rule

__all__ = ["apply_candidate", "tick", "acknowledge", "resolve_manually", "retire", "NOTIFY", "OPEN", "due_at",
           "escalates_at", "escalation_level", "fingerprint", "iso"]

OPEN = ("firing", "acknowledged")
NOTIFY = frozenset({"fired", "escalated", "unacknowledged", "resolved", "expired"})
_SEV = {"info": 0, "warning": 1, "critical": 2}


def iso(t: float) -> str:
    """RFC 3339 with ``Z``, as Alertmanager writes it (the API's answers keep ``+00:00``)."""
    return times.iso(t).replace("+00:00", "Z")


def fingerprint(labels: dict) -> str:
    """Alertmanager's idea of identity: a hash of the sorted label set."""
    return hashlib.sha256(orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


class _Fields(dict):
    def __missing__(self, key):  # templates were checked at config load; be lenient at run time
        return ""


def _render(t: str, fields: dict) -> str:
    return t.format_map(_Fields(fields))


def _fields(cand: dict, rule: Rule, meta: dict, count: int, severity: str) -> dict:
    eid = cand["entity_id"]
    return {"entity_id": eid, "name": meta.get("name", ""), "address": meta.get("address", ""),
            "region": meta.get("region", ""),
            "industry": meta.get("industry", ""), "signal": cand["signal"], "rule": rule.name,
            "severity": severity, "tier": cand.get("tier", ""), "score": cand.get("score", ""),
            "value": cand.get("value", ""), "count": count, "event_ids": ",".join(cand.get("event_ids", [])),
            "api_url": f"{meta.get('external_url', '')}/v1/entities/{eid}"}


def _open(cand: dict, rule: Rule, meta: dict, now: float, source: str) -> dict:
    sev = rule.severity or cand.get("severity") or "warning"
    labels = {"alertname": rule.name, "rule": rule.name, "entity": cand["entity_id"],
              "region": meta.get("region", ""), "industry": meta.get("industry", ""), "severity": sev,
              "signal": cand["signal"], **rule.labels}
    f = _fields(cand, rule, meta, 1, sev)
    key = _render(rule.dedup_key, f)
    aid = hashlib.sha256(f"{key}|{source}".encode()).hexdigest()[:16]
    notes = {"summary": _render(rule.summary, f), "description": _render(rule.description, f),
             "entity_url": f["api_url"]}
    if f["address"]:  # where to go, for Alertmanager's templates too (since 2026-12-06)
        notes["address"] = f["address"]
    return {"id": aid, "key": key, "rule": rule.name, "entity_id": cand["entity_id"], "signal": cand["signal"],
            "status": "firing", "severity": sev, "labels": labels, "fingerprint": fingerprint(labels),
            "annotations": notes,
            "starts_at": now, "ends_at": None, "last_seen": now, "updated_at": now, "count": 1,
            "clear_since": None, "value": cand.get("value"), "score": cand.get("score"), "tier": cand.get("tier"),
            "event_ids": list(cand.get("event_ids", []))[-10:], "event_ts": str(cand.get("ts", "")),
            "ack": None, "resolved_by": None, "note": None, "version": 1, "detail": cand.get("detail")}


def dedup_key(cand: dict, rule: Rule, meta: dict) -> str:
    return _render(rule.dedup_key, _fields(cand, rule, meta, 1, rule.severity or cand.get("severity", "")))


def apply_candidate(alert: dict | None, cand: dict, rule: Rule, meta: dict, now: float,
                    source: str) -> tuple[dict | None, str | None]:
    """Apply one candidate to the key's current alert (``None``: none or closed).

    ``source`` names the candidate uniquely (topic/partition/offset/index) so a
    redelivered candidate opens an alert with the same id."""
    is_open = alert is not None and alert["status"] in OPEN
    if cand["status"] == "firing":
        if not is_open:
            return _open(cand, rule, meta, now, source), "fired"
        a = dict(alert)
        a.update(count=a["count"] + 1, last_seen=now, updated_at=now, clear_since=None, value=cand.get("value"),
                 score=cand.get("score"), tier=cand.get("tier"), version=a["version"] + 1,
                 event_ids=(a["event_ids"] + [e for e in cand.get("event_ids", []) if e not in a["event_ids"]])[-10:])
        if cand.get("detail"):
            a["detail"] = cand["detail"]
        sev = rule.severity or cand.get("severity") or a["severity"]
        if _SEV.get(sev, 0) > _SEV.get(a["severity"], 0):
            a["severity"] = sev
            a["labels"] = dict(a["labels"], severity=sev)
            a["fingerprint"] = fingerprint(a["labels"])
            return a, "escalated"
        return a, "repeated"
    # a cleared condition
    if not is_open or not rule.auto_resolve:
        return alert, None
    a = dict(alert, last_seen=now, updated_at=now, version=alert["version"] + 1, value=cand.get("value"))
    if a["clear_since"] is None:
        a["clear_since"] = now
    if rule.cooldown <= 0:
        return _close(a, now, "resolved", None), "resolved"
    return a, "clearing"


def _close(a: dict, now: float, status: str, by: str | None, note: str | None = None) -> dict:
    return dict(a, status=status, ends_at=now, updated_at=now, resolved_by=by, note=note,
                version=a["version"] + 1)


def escalation_level(alert: dict) -> int:
    """How many times the alert escalated (an escalated alert stored before levels existed: 1)."""
    return alert.get("escalation") or (1 if alert.get("escalated_at") is not None else 0)


def escalates_at(alert: dict, rule: Rule) -> float | None:
    """When this alert escalates next if nobody acknowledges it (``None``: it does not): firing, its
    condition not cleared, and a level of the rule's ``escalate_after`` it has not reached."""
    if rule.escalate_after is None or alert["status"] != "firing" or alert["clear_since"] is not None:
        return None
    level = escalation_level(alert)
    return alert["starts_at"] + rule.escalate_after[level] if level < len(rule.escalate_after) else None


def due_at(alert: dict, rule: Rule) -> float | None:
    """When :func:`tick` may next change this alert (``None``: never)."""
    if alert["status"] not in OPEN:
        return None
    t = alert["last_seen"] + rule.expire_after
    if alert["clear_since"] is not None:
        t = min(t, alert["clear_since"] + rule.cooldown)
    e = escalates_at(alert, rule)
    return t if e is None else min(t, e)


def tick(alert: dict, rule: Rule, now: float) -> tuple[dict, str | None]:
    """Time passes: finish a cooldown (``resolved``), expire a stale alert, or escalate one nobody
    acknowledged (``unacknowledged``)."""
    if alert["status"] not in OPEN:
        return alert, None
    if alert["clear_since"] is not None and now >= alert["clear_since"] + rule.cooldown:
        return _close(alert, now, "resolved", None), "resolved"
    if now >= alert["last_seen"] + rule.expire_after:
        return _close(alert, now, "expired", None), "expired"
    e = escalates_at(alert, rule)
    if e is not None and now >= e:
        level = escalation_level(alert) + 1
        labels = dict(alert["labels"], escalated="true", escalation=str(level))
        return dict(alert, labels=labels, fingerprint=fingerprint(labels), escalated_at=now, escalation=level,
                    updated_at=now, version=alert["version"] + 1), "unacknowledged"
    return alert, None


def acknowledge(alert: dict, actor: str, now: float, note: str | None = None) -> tuple[dict, str | None]:
    if alert["status"] != "firing":
        return alert, None
    return dict(alert, status="acknowledged", ack={"by": actor, "at": now, "note": note}, updated_at=now,
                version=alert["version"] + 1), "acknowledged"


def resolve_manually(alert: dict, actor: str, now: float, note: str | None = None) -> tuple[dict, str | None]:
    if alert["status"] not in OPEN:
        return alert, None
    return _close(alert, now, "resolved", actor, note), "resolved"


def retire(alert: dict, now: float, note: str) -> tuple[dict, str | None]:
    """Resolve an open alert whose rule is no longer in the config: nothing would ever tick it again
    (cooldown, expiry, escalation) or match a candidate to it, so it would stay open for good.
    ``resolved_by`` is ``config``; ``note`` says which rule and which config.

    >>> a = {"status": "acknowledged", "version": 3}
    >>> b, t = retire(a, 50.0, "rule 'old' is not in alerts config alerts-2")
    >>> t, b["status"], b["resolved_by"], b["ends_at"], b["version"]
    ('resolved', 'resolved', 'config', 50.0, 4)
    >>> retire(b, 60.0, "again")[1] is None
    True
    """
    if alert["status"] not in OPEN:
        return alert, None
    return _close(alert, now, "resolved", "config", note), "resolved"
