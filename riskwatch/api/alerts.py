"""Alerts for inspection teams: list, get, acknowledge, resolve; silences; dead-lettered notifications."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from ..alerts.config import parse_duration
from ..alerts.outbox import Outbox
from ..alerts.routing import Matcher, SilenceSpec
from ..alerts.store import AlertStore
from ..times import iso_fields
from .context import Inspector, Ops, Viewer, ctx_of, errors

router = APIRouter(tags=["alerts"])


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[str, Field(max_length=2000)] = ""


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[str, Field(min_length=1, max_length=2000)]


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matchers: Annotated[list[Matcher], Field(min_length=1, max_length=20)]
    duration: Annotated[str, Field(description="e.g. 30m, 2h, 7d")] = "2h"
    starts_at: Annotated[AwareDatetime | None, Field(description="ISO-8601 with offset, or epoch seconds; "
                                                                "default now")] = None
    reason: Annotated[str, Field(min_length=1, max_length=2000)]

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: str) -> str:
        seconds = parse_duration(v)
        if not 0 < seconds <= 90 * 86400:
            raise ValueError("duration must be between 1s and 90d")
        return v


class RedeliverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notification_id: str | None = None
    all: bool = False


def _summary(a: dict) -> dict:
    return iso_fields({k: a.get(k) for k in ("id", "key", "rule", "entity_id", "signal", "status", "severity",
                                             "labels", "annotations", "starts_at", "ends_at", "last_seen", "count",
                                             "score", "tier", "event_ids", "ack", "escalated_at", "escalation",
                                             "resolved_by", "note", "version", "detail")})


@router.get("/v1/alerts")
async def list_alerts(request: Request, who: Viewer, region: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
                      severity: Literal["info", "warning", "critical"] | None = None,
                      entity_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
                      rule: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]*$")] = None,
                      state: Literal["open", "all"] = "open", limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                      escalated: Annotated[bool | None, Query(description="true: only alerts escalated because "
                                                              "nobody acknowledged them in their rule's "
                                                              "escalate_after; false: only the others")] = None):
    """Open alerts (``state=all`` with ``entity_id``: the entity's history too), newest first."""
    store = AlertStore(ctx_of(request).redis)
    if state == "all":
        if not entity_id:
            raise HTTPException(422, detail=[{"loc": ["query", "entity_id"], "type": "missing",
                                              "msg": "state=all needs entity_id (history is kept per entity)"}])
        alerts = await store.history(entity_id)
    else:
        alerts = list((await store.many(await store.open_ids(region=region, severity=severity, entity=entity_id,
                                                             rule=rule))).values())
    alerts = [a for a in alerts if (not region or a["labels"].get("region") == region)
              and (not severity or a["severity"] == severity) and (not rule or a["rule"] == rule)
              and who.sees(a["labels"].get("region"))
              and (escalated is None or escalated == (a.get("escalated_at") is not None))]
    alerts.sort(key=lambda a: a["starts_at"], reverse=True)
    return {"count": len(alerts[:limit]), "alerts": [_summary(a) for a in alerts[:limit]]}


@router.get("/v1/alerts/{alert_id}", responses=errors(404))
async def get_alert(request: Request, alert_id: str, who: Viewer):
    a = await AlertStore(ctx_of(request).redis).get(alert_id)
    if a is None or not who.sees(a["labels"].get("region")):  # outside a limited token's regions: unknown
        raise HTTPException(404, detail=f"no alert {alert_id}")
    return _summary(a)


async def _act(request: Request, alert_id: str, action: str, who, note: str | None):
    store = AlertStore(ctx_of(request).redis)
    if who.regions is not None:
        a = await store.get(alert_id)
        if a is None or not who.sees(a["labels"].get("region")):
            raise HTTPException(404, detail=f"no alert {alert_id}")
    a, transition = await store.act(alert_id, action, who.name, note)
    if a is None:
        raise HTTPException(404, detail=f"no alert {alert_id}")
    if transition is None:
        raise HTTPException(409, detail=f"alert {alert_id} is {a['status']}; cannot {action}")
    return _summary(a)


@router.post("/v1/alerts/{alert_id}/ack", responses=errors(404, 409))
async def ack_alert(request: Request, alert_id: str, body: NoteIn, who: Inspector):
    """Firing → acknowledged (someone is on it; no more repeat notifications)."""
    return await _act(request, alert_id, "ack", who, body.note or None)


@router.post("/v1/alerts/{alert_id}/resolve", responses=errors(404, 409))
async def resolve_alert(request: Request, alert_id: str, body: ResolveIn, who: Inspector):
    """Close an open alert with a note; receivers get it as resolved."""
    return await _act(request, alert_id, "resolve", who, body.note)


@router.get("/v1/silences")
async def list_silences(request: Request, _: Viewer, active: bool = False):
    sil = await AlertStore(ctx_of(request).redis).silences()
    now = time.time()
    if active:
        sil = [s for s in sil if s["starts_at"] <= now < s["ends_at"]]
    return {"count": len(sil), "silences": [iso_fields(s) for s in sorted(sil, key=lambda s: s["created_at"],
                                                                            reverse=True)]}


@router.post("/v1/silences", status_code=201)
async def create_silence(request: Request, body: SilenceIn, who: Ops):
    start = body.starts_at.timestamp() if body.starts_at is not None else time.time()
    spec = SilenceSpec(matchers=body.matchers, starts_at=start, ends_at=start + parse_duration(body.duration),
                       author=who.name, reason=body.reason)
    return iso_fields(await AlertStore(ctx_of(request).redis).add_silence(spec))


@router.delete("/v1/silences/{silence_id}", responses=errors(404))
async def expire_silence(request: Request, silence_id: str, who: Ops):
    rec = await AlertStore(ctx_of(request).redis).expire_silence(silence_id, who.name)
    if rec is None:
        raise HTTPException(404, detail=f"no silence {silence_id}")
    return iso_fields(rec)


@router.get("/v1/notifications/dead")
async def dead_notifications(request: Request, _: Ops):
    """Notifications that ran out of attempts or met a 4xx (bodies included, secrets never)."""
    recs = await Outbox(ctx_of(request).redis, "api").dead()
    return {"count": len(recs), "dead": [iso_fields(x) for x in recs]}


@router.post("/v1/notifications/dead/redeliver", responses=errors(404))
async def redeliver(request: Request, body: RedeliverIn, who: Ops):
    if not body.all and not body.notification_id:
        raise HTTPException(422, detail=[{"loc": ["body", "notification_id"], "type": "missing",
                                          "msg": "give notification_id or all=true"}])
    r = ctx_of(request).redis
    n = await Outbox(r, "api").redeliver(None if body.all else body.notification_id)
    if n == 0 and body.notification_id:
        raise HTTPException(404, detail=f"no dead-lettered notification {body.notification_id}")
    from .. import audit

    pipe = r.pipeline(transaction=True)
    audit.record(pipe, who.name, "notification.redeliver", body.notification_id or "*", {"count": n})
    await pipe.execute()
    return {"requeued": n}
