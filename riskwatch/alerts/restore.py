"""The alert store back from ``rw.alerts`` when Redis lost it.

Every alert change is an event on ``rw.alerts`` (the alert whole, with its version), so the alerts
in Redis can be read back from it. Until 2026-12-07 a Redis restarted without its data, replaced, or
failed over to a replica that had not caught up lost the open alerts, or their last changes: the
board and the API no longer showed them, an inspector could not acknowledge them, and when their
condition cleared the intake found no alert to resolve, so the team was never told.

The intake counts its commits in :data:`MARK` (one ``INCR`` in each commit's transaction, which
watches it) and keeps the count it last set. A count in Redis below it, or none, means Redis lost
its writes: the commit is refused (:class:`StoreLost`), the intake stops, and when it starts again
it reads ``rw.alerts`` from the beginning and writes back each alert whose version there is newer
than Redis's (or that Redis lacks), with its open-alert indexes and entity history, then computes
every open alert's due time again. A dispatcher that takes the intake over takes the count as it
finds it; none at all (a new Redis, or one that lost everything) also starts a restore, which finds
nothing to write in a new deployment.

Silences are not on ``rw.alerts``: the intake reads them at every tick, and writes back those it last
read that have not ended (:func:`write_back_silences`), so ops' silences outlive a Redis lost while a
dispatcher ran. Since 2026-12-08 they also come back from the audit log, which holds each silence's
creation whole and its expiry, when the API writes that back from ``rw.audit``
(:func:`silences_of`, :mod:`riskwatch.audit_derived`): a Redis lost while no dispatcher ran lost every silence, ended ones
too, so ``GET /v1/silences`` no longer said who had silenced what, and alerts meant to be quiet were
sent when a dispatcher started.

Notification groups are not kept anywhere else either; since 2026-12-08 the intake makes a new one for
each open alert in none (:meth:`.intake.AlertIntake.regroup`): the team is told again which alerts are
open, after ``group_wait``, and reminded every ``repeat_interval`` (until then it heard nothing of them
until they changed). Not restored, because nothing else holds it: the outbox (in-flight
notifications are lost; an open alert is notified again with its group) and the applied candidate offsets (the intake applies again the candidates since its consumer
group's last commit: a firing one counts once more). Alerts older than the topic's retention (7 days
by default) with no change since are not there to restore.
"""

from __future__ import annotations

import orjson

from ..settings import Settings
from ..streams.codec import decode
from ..streams.kafka import read_messages
from .lifecycle import OPEN
from .store import SILENCES, AlertStore, alert_key

__all__ = ["MARK", "StoreLost", "StoreMark", "latest_alerts", "silences_of", "write_back",
           "write_back_silences"]

MARK = "rw:alerts:mark"
CHUNK = 500


class StoreLost(Exception):
    """Redis no longer holds the intake's last commit: the alert store is restored before it goes on."""


class StoreMark:
    """The commit count this intake last set in :data:`MARK` (None: none yet in this process)."""

    def __init__(self) -> None:
        self.expected: int | None = None

    async def check(self, conn) -> int:
        """The count in Redis (read on ``conn``, inside the commit's WATCH); :class:`StoreLost` if it is
        below this intake's last."""
        raw = await conn.get(MARK)
        held = int(raw) if raw is not None else None
        if self.expected is not None and (held is None or held < self.expected):
            raise StoreLost(f"{MARK} is {held}, this intake's last commit set {self.expected}")
        return held or 0

    def lost(self, held: int | None) -> bool:
        """At the intake's start: restore first? (none in Redis, or below this intake's last)."""
        return held is None or (self.expected is not None and held < self.expected)


async def latest_alerts(settings: Settings) -> tuple[dict[str, dict], int]:
    """Each alert on ``rw.alerts`` at its highest version, and how many records were passed over (not
    an ``alert_change`` a dispatcher wrote)."""
    latest: dict[str, dict] = {}
    refused = 0
    async for msg in read_messages(settings, settings.topic("alerts")):
        events, err = decode(msg.value)
        if err is not None:
            refused += 1
            continue
        for e in events:
            a = e.get("alert") if isinstance(e, dict) and e.get("type") == "alert_change" else None
            if not isinstance(a, dict) or not isinstance(a.get("id"), str) or not isinstance(a.get("version"), int):
                refused += 1
                continue
            held = latest.get(a["id"])
            if held is None or a["version"] > held["version"]:
                latest[a["id"]] = a
    return latest, refused


async def write_back(r, store: AlertStore, latest: dict[str, dict]) -> tuple[int, int]:
    """Write each alert of ``latest`` newer than Redis's copy (or missing there), oldest first (an
    entity's history lists the newest first); how many were written, and how many of those are open."""
    ordered = sorted(latest.values(), key=lambda a: (a.get("starts_at") or 0, a["version"]))
    written = opened = 0
    for i in range(0, len(ordered), CHUNK):
        chunk = ordered[i:i + CHUNK]
        held = await r.mget([alert_key(a["id"]) for a in chunk])
        pipe = r.pipeline(transaction=False)
        for a, raw in zip(chunk, held):
            old = orjson.loads(raw) if raw else None
            if old is not None and old.get("version", 0) >= a["version"]:
                continue
            store.save(pipe, old, a, due=None)  # due times: reschedule, after
            written += 1
            opened += a["status"] in OPEN
        await pipe.execute()
    return written, opened


def silences_of(entries) -> dict[str, dict]:
    """The silences the audit log's entries (oldest first) record: id -> the silence as the store holds it.

    >>> log = [{"at": 10.5, "actor": "ops-li", "action": "silence.create", "target": "s1",
    ...         "detail": {"matchers": [{"name": "region", "value": "310000"}], "reason": "drill",
    ...                    "starts_at": 10.0, "ends_at": 99.0, "created_at": 10.4}},
    ...        {"at": 20.0, "actor": "ops-wang", "action": "silence.expire", "target": "s1", "detail": {}}]
    >>> silences_of(log)["s1"]["ends_at"], silences_of(log[:1])["s1"]["author"]
    (20.0, 'ops-li')
    """
    out: dict[str, dict] = {}
    for e in entries:
        d = e.get("detail") or {}
        if e["action"] == "silence.create" and "matchers" in d:
            out[e["target"]] = {"id": e["target"], "matchers": d["matchers"], "starts_at": d["starts_at"],
                                "ends_at": d["ends_at"], "author": e["actor"], "reason": d["reason"],
                                "created_at": d.get("created_at", e["at"])}
        elif e["action"] == "silence.expire" and e["target"] in out:
            x = out[e["target"]]
            x["ends_at"] = min(x["ends_at"], d.get("ends_at", e["at"]))
    return out


async def write_back_silences(r, silences: dict[str, dict], now: float) -> int:
    """Write back each of ``silences`` (id -> silence, as the intake last read them) that has not ended and
    that Redis lacks; how many."""
    pipe = r.pipeline(transaction=False)
    live = [x for x in silences.values() if x["ends_at"] > now]
    for x in live:
        pipe.hsetnx(SILENCES, x["id"], orjson.dumps(x))
    return sum(1 for added in await pipe.execute() if added) if live else 0
