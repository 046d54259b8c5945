"""What receivers get: Alertmanager's webhook payload (version "4") plus a
``riskwatch`` section per alert, and the Alertmanager API v2 alert shape.

>>> a = {"id": "a1", "status": "firing", "labels": {"alertname": "burst", "region": "310000", "entity": "E"},
...      "annotations": {"summary": "s"}, "starts_at": 0.0, "ends_at": None, "fingerprint": "f",
...      "entity_id": "E", "rule": "burst", "severity": "warning", "score": 40.0, "tier": "B", "count": 1,
...      "event_ids": ["c1"], "key": "E:burst", "signal": "burst"}
>>> now = {"score": "80.5", "tier": "D", "ratio": 0.4, "updated": "2026-12-07T09:00:00+08:00"}
>>> p = webhook_payload("ops", "ops:{}", {"region": "310000"}, [a], {"E": now}, "http://api")
>>> p["version"], p["status"], p["commonLabels"]["alertname"], p["alerts"][0]["endsAt"]
('4', 'firing', 'burst', '0001-01-01T00:00:00Z')
>>> rw = p["alerts"][0]["riskwatch"]
>>> rw["score"], rw["tier"], rw["spotcheck_ratio"], rw["risk_updated"], rw["at_alert"]
(80.5, 'D', 0.4, '2026-12-07T01:00:00+00:00', {'score': 40.0, 'tier': 'B'})

The entity's score, tier, spot-check ratio and reasons are one snapshot: the view's when the
notification is made (the alert's own, with no ratio or reasons, when the view has no risk decision
for the entity). Until 2026-12-07 the score and tier were the alert's, as of its last change, and the
ratio and reasons the view's at sending: in the first minutes of ``make run``, 25 of the 99 alerts
sent said a tier with another tier's ratio (``"tier": "A", "spotcheck_ratio": 0.4``), the reasons
summing to another score. The alert's own are in ``at_alert``.
"""

from __future__ import annotations

from ..times import utc
from .lifecycle import OPEN, escalation_level, iso

__all__ = ["webhook_payload", "alertmanager_alert", "ZERO_TIME"]

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "no end" in webhook payloads


def _am_status(a: dict) -> str:
    return "firing" if a["status"] in OPEN else "resolved"


def _common(dicts: list[dict]) -> dict:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def _alert(a: dict, entity: dict, external_url: str) -> dict:
    return {
        "status": _am_status(a),
        "labels": a["labels"],
        "annotations": a["annotations"],
        "startsAt": iso(a["starts_at"]),
        "endsAt": iso(a["ends_at"]) if a.get("ends_at") else ZERO_TIME,
        "generatorURL": f"{external_url}/v1/alerts/{a['id']}",
        "fingerprint": a["fingerprint"],
        "riskwatch": {
            "alert_id": a["id"], "dedup_key": a["key"], "state": a["status"], "rule": a["rule"],
            "signal": a["signal"], "severity": a["severity"], "count": a["count"],
            "entity": {"id": a["entity_id"], "name": entity.get("name"), "address": entity.get("address"),
                       "status": entity.get("status") or "operating", "region": entity.get("region"),
                       "industry": entity.get("industry"), "url": f"{external_url}/v1/entities/{a['entity_id']}"},
            **_risk_now(a, entity), "tier_change": a.get("tier_change"),
            "event_ids": a.get("event_ids", []), "acknowledged": a.get("ack"),
            "escalated_at": iso(a["escalated_at"]) if a.get("escalated_at") else None,
            "escalation": escalation_level(a),
            "resolved_by": a.get("resolved_by"), "resolved_note": a.get("note"), "detail": a.get("detail"),
        },
    }


def _risk_now(a: dict, entity: dict) -> dict:
    """The entity's score, tier, ratio and reasons as one snapshot (see the module's doc)."""
    at_alert = {"score": a.get("score"), "tier": a.get("tier")}
    if not entity.get("tier"):
        return {**at_alert, "spotcheck_ratio": None, "reasons": [], "risk_updated": None, "at_alert": at_alert}
    try:
        score = float(entity["score"])
    except (KeyError, TypeError, ValueError):
        score = None
    return {"score": score, "tier": entity["tier"], "spotcheck_ratio": entity.get("ratio"),
            "reasons": entity.get("reasons", []), "risk_updated": utc(entity.get("updated")), "at_alert": at_alert}


def webhook_payload(receiver: str, group_key: str, group_labels: dict, alerts: list[dict],
                    entities: dict[str, dict], external_url: str) -> dict:
    out = [_alert(a, entities.get(a["entity_id"], {}), external_url) for a in alerts]
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing" if any(x["status"] == "firing" for x in out) else "resolved",
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": _common([x["labels"] for x in out]),
        "commonAnnotations": _common([x["annotations"] for x in out]),
        "externalURL": external_url,
        "alerts": out,
    }


def alertmanager_alert(a: dict, external_url: str) -> dict:
    """One alert for ``POST /api/v2/alerts``: a resolved alert carries its ``endsAt``; a firing one gets
    its ``endsAt`` from the deliverer (``valid_for``). Alertmanager has no acknowledgement: an acknowledged
    alert says who took it in its annotations (which, unlike labels, are not its identity there).

    >>> a = {"id": "a1", "status": "acknowledged", "labels": {"alertname": "x"}, "annotations": {"summary": "s"},
    ...      "starts_at": 0.0, "ack": {"by": "li", "at": 60.0, "note": "on my way"}}
    >>> alertmanager_alert(a, "http://api")["annotations"]
    {'summary': 's', 'acknowledged_by': 'li', 'acknowledged_at': '1970-01-01T00:01:00Z', 'acknowledged_note': 'on my way'}
    """
    notes = a["annotations"]
    ack = a.get("ack")
    if ack:
        notes = dict(notes, acknowledged_by=ack["by"], acknowledged_at=iso(ack["at"]))
        if ack.get("note"):
            notes["acknowledged_note"] = ack["note"]
    body = {"labels": a["labels"], "annotations": notes, "startsAt": iso(a["starts_at"]),
            "generatorURL": f"{external_url}/v1/alerts/{a['id']}"}
    if a["status"] not in OPEN:
        body["endsAt"] = iso(a["ends_at"] or a["updated_at"])
    return body
