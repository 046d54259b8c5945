"""Notification grouping with Alertmanager's timing semantics, as pure functions.

A group is one receiver × the values of its ``group_by`` labels. Its first
notification waits ``group_wait`` (so alerts that fire together arrive
together); later changes are sent at most every ``group_interval``; an
unchanged group with firing alerts is re-sent every ``repeat_interval``.
Every notification carries all the group's alerts; resolved ones are sent once
more as resolved and then leave the group; an empty group is dropped.

>>> from riskwatch.alerts.config import Receiver
>>> r = Receiver(name="ops", url="http://h/x", secrets=["k"], group_wait=30, group_interval=300,
...              repeat_interval=3600)
>>> g = add(None, "ops:{}", r, {}, "a1", 1, now=0)
>>> g["next_flush"]
30.0
>>> g = add(g, "ops:{}", r, {}, "a2", 1, now=10)       # joins, same first notification
>>> g, ids = flush(g, r, {"a1": "firing", "a2": "firing"}, set(), now=30)
>>> sorted(ids), g["next_flush"]
(['a1', 'a2'], 3630.0)
>>> g = add(g, "ops:{}", r, {}, "a1", 2, now=40)       # a1 resolved: waits for group_interval
>>> g["next_flush"]
330.0
>>> g, ids = flush(g, r, {"a1": "resolved", "a2": "firing"}, set(), now=330)
>>> sorted(ids), sorted(g["alerts"])
(['a1', 'a2'], ['a2'])
"""

from __future__ import annotations

from .config import Receiver
from .lifecycle import OPEN

__all__ = ["add", "flush", "is_due"]


def add(group: dict | None, key: str, receiver: Receiver, group_labels: dict, alert_id: str, version: int,
        now: float) -> dict:
    """An alert of this group changed in a way that notifies (fired, escalated, resolved, expired)."""
    if group is None:
        group = {"key": key, "receiver": receiver.name, "labels": group_labels, "alerts": {}, "sent": {},
                 "created": now, "last_flush": None, "next_flush": now + receiver.group_wait}
    g = dict(group, alerts=dict(group["alerts"]))
    g["alerts"][alert_id] = version
    soon = now + receiver.group_wait if g["last_flush"] is None else max(now, g["last_flush"] + receiver.group_interval)
    g["next_flush"] = soon if g["next_flush"] is None else min(g["next_flush"], soon)
    return g


def is_due(group: dict, now: float) -> bool:
    return group["next_flush"] is not None and now >= group["next_flush"]


def flush(group: dict, receiver: Receiver, statuses: dict[str, str], silenced: set[str],
          now: float) -> tuple[dict | None, list[str]]:
    """The alert ids to notify now (possibly none) and the group's next state (``None``: drop it).

    ``statuses``: each group alert's current status (missing: forgotten, dropped)."""
    alerts = {a: v for a, v in group["alerts"].items() if a in statuses}
    changed = any(group["sent"].get(a) != v for a, v in alerts.items() if a not in silenced)
    firing = [a for a in alerts if statuses[a] == "firing" and a not in silenced]
    repeat = (group["last_flush"] is not None and now >= group["last_flush"] + receiver.repeat_interval
              and bool(firing))
    send = [a for a in alerts if a not in silenced] if (changed or repeat) else []
    if send and not any(statuses[a] in OPEN or group["sent"].get(a) != alerts[a] for a in send):
        send = []
    remaining = {a: v for a, v in alerts.items() if statuses[a] in OPEN or (not send and a in silenced)}
    if not remaining:
        return None, send
    g = dict(group, alerts=remaining, sent={a: v for a, v in alerts.items() if a in send or a in group["sent"]})
    if send:
        g["last_flush"] = now
        g["next_flush"] = now + receiver.repeat_interval
    else:
        base = g["last_flush"] if g["last_flush"] is not None else now
        g["next_flush"] = max(now, base + receiver.repeat_interval)
    return g, send
