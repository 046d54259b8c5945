"""Entities: risk state with reasons, open alerts and disputed items; history; the riskiest list, and
a search by name (``q``) that finds entities with no risk state yet too."""

from __future__ import annotations

import base64
import time
import uuid
from datetime import datetime, timezone
from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .. import audit
from ..alerts.store import AlertStore
from ..events import OPERATING, EntityStatus, ResetRegister, validate_entity_id
from ..objection_records import KEY as OBJECTIONS
from ..objection_records import OPEN as OPEN_OBJECTIONS
from ..objection_records import OPEN_BY_TIME
from ..objection_records import closed_by_reset
from ..times import iso, utc
from ..view import (NAMES, OBJECTION_EFFECTS, entity_key, history_key, name_form, name_keys, name_lookup,
                    reindex_names, status_key)
from .context import Ops, Viewer, ctx_of, errors, visible_entity
from .objections import attach_effects, effect_fields, open_objections

router = APIRouter(prefix="/v1/entities", tags=["entities"])


def _entity(h: dict, eid: str, cfg) -> dict:
    """An entity's view hash for the API; the spot-check ratio is its tier's under ``cfg``, the config
    in force (the hash keeps the one at its last risk change)."""
    ratio = cfg.ratio_in_force(h.get("tier"), float(h["ratio"]) if "ratio" in h else None)
    out = {"entity_id": eid, "name": h.get("name"), "industry": h.get("industry"), "region": h.get("region"),
           "address": h.get("address"), "status": h.get("status") or OPERATING,
           "status_since": utc(h.get("status_since")),
           "score": float(h["score"]) if "score" in h else None, "tier": h.get("tier"),
           "tier_since": utc(h.get("tier_since")),
           "spotcheck_ratio": ratio, "updated": utc(h.get("updated")), "config_version": h.get("config_version")}
    out["reasons"] = orjson.loads(h["reasons"]) if h.get("reasons") else []
    return out


async def _checked_id(request: Request, entity_id: str) -> str:
    cfg, _ = await ctx_of(request).current_config()
    try:
        validate_entity_id(entity_id, cfg.entity_id_scheme)
    except ValueError as exc:
        raise HTTPException(422, detail=[{"loc": ["path", "entity_id"], "msg": str(exc), "type": "value_error"}]) from exc
    return entity_id


@router.get("/{entity_id}", responses=errors(404))
async def get_entity(request: Request, entity_id: str, who: Viewer):
    """Score, tier, spot-check ratio, reasons (with the event ids behind them), open alerts, disputed items."""
    await _checked_id(request, entity_id)
    r = ctx_of(request).redis
    # the entity and its disputes' effects in one transaction: a worker round writes a score and the
    # effect that made it in one script, and until 2026-12-07 a round between two reads here gave an
    # answer whose dispute had taken an item out while its score still counted it
    objections = await open_objections(r, entity_id)
    pipe = r.pipeline(transaction=True)
    pipe.hgetall(entity_key(entity_id))
    if objections:
        pipe.hmget(OBJECTION_EFFECTS, effect_fields(objections))
    h, *raws = await pipe.execute()
    if not h or not who.sees(h.get("region")):  # outside a limited token's regions: as if unknown
        raise HTTPException(404, detail=f"entity {entity_id} has no risk state")
    out = _entity(h, entity_id, (await ctx_of(request).current_config())[0])
    store = AlertStore(r)
    alerts = await store.many(await store.open_ids(entity=entity_id))
    out["open_alerts"] = [{"id": a["id"], "rule": a["rule"], "severity": a["severity"], "status": a["status"],
                           "summary": a["annotations"]["summary"], "count": a["count"]} for a in alerts.values()]
    out["disputed"] = [{"objection_id": o["objection_id"], "target_id": o["target_id"],
                        "target_kind": o["target_kind"],
                        "since": iso(o["created_at"]) if o["created_at"] is not None else None,
                        "effect": o["effects"]["objection"]["effect"] if "objection" in o["effects"] else None}
                       for o in attach_effects(objections, raws[0] if raws else [])]
    return out


@router.get("/{entity_id}/history", responses=errors(404))
async def get_history(request: Request, entity_id: str, who: Viewer,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 100):
    """Score and tier over time, newest first."""
    await _checked_id(request, entity_id)
    r = ctx_of(request).redis
    if not await visible_entity(r, who, entity_id):
        raise HTTPException(404, detail=f"entity {entity_id} has no risk state")
    rows = await r.zrevrange(history_key(entity_id), 0, limit - 1)
    if not rows and not await r.exists(entity_key(entity_id)):
        raise HTTPException(404, detail=f"entity {entity_id} has no risk state")
    return {"entity_id": entity_id, "history": [_utc_ts(orjson.loads(x)) for x in rows]}


class ResetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    keep_tier: bool = Field(True, description="the entity keeps its tier and spot-check ratio until a low score "
                                              "outlasts the de-escalation dwell from the reset; false: the "
                                              "lowest tier at once")

    @field_validator("reason")
    @classmethod
    def _stripped(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a reason is required (it goes on the risk change and the audit log)")
        return v.strip()


@router.post("/{entity_id}/reset-state", status_code=202, responses=errors(503))
async def reset_state(request: Request, entity_id: str, body: ResetIn, who: Ops):
    """Throw the entity's risk state away: the worker starts it again from nothing (register data
    stays; its tier too, unless ``keep_tier`` is false) and writes a risk change to 0 naming the reset,
    resolving its open signal alerts. For a state the worker cannot read or apply
    events to; its dead-lettered events then go back with ``riskwatch deadletter --reason
    state_unreadable --replay``. Audited."""
    await _checked_id(request, entity_id)
    ctx = ctx_of(request)
    r = ctx.redis
    # What the view and the alert store know stands in for a state the worker cannot read: its tier,
    # register data and open alerts. And the new state's decisions come after the view's last one, in
    # order (seq) and in time (an entity's clock can be ahead of this one), or the view keeps the old.
    seq, at, tier, industry, region, name, address, status, status_since = await r.hmget(
        entity_key(entity_id), ["seq", "at", "tier", "industry", "region", "name", "address", "status",
                                "status_since"])
    ts = max(time.time(), float(at) if at else 0.0)
    store = AlertStore(r)
    signals = sorted({a["signal"] for a in (await store.many(await store.open_ids(entity=entity_id))).values()})
    try:
        register = ResetRegister(industry=industry, region=region, name=name, address=address or None,
                                 status=status or OPERATING, status_since=status_since or None).model_dump(mode="json")
    except ValidationError:  # no register data in the view (no upsert yet)
        register = None
    rid = "reset-" + uuid.uuid4().hex[:12]
    cmd = {"type": "state_reset", "reset_id": rid, "entity_id": entity_id,
           "ts": datetime.fromtimestamp(ts, timezone.utc).isoformat(), "author": who.name, "reason": body.reason,
           "after_seq": int(float(seq)) if seq else 0, "keep_tier": body.keep_tier, "tier": tier or None,
           "open_alerts": signals, "register_data": register}
    await ctx.send_command(cmd, entity_id=entity_id)
    # its open objections are moot: the new state holds none of its disputes (until 2026-12-07 they stayed
    # open, listed as disputed on an entity whose score no longer left anything out)
    moot = await open_objections(r, entity_id)
    pipe = r.pipeline(transaction=True)
    for o in moot:
        pipe.hset(OBJECTIONS, o["objection_id"], orjson.dumps(closed_by_reset(o, rid, who.name, ts, body.reason)))
        pipe.srem(OPEN_OBJECTIONS + entity_id, o["objection_id"])
        pipe.zrem(OPEN_BY_TIME, o["objection_id"])
    audit.record(pipe, who.name, "entity.reset_state", rid, {"entity_id": entity_id, "reason": body.reason,
                                                             "keep_tier": body.keep_tier,
                                                             "objections_closed": [o["objection_id"] for o in moot]})
    await pipe.execute()
    return {"reset_id": rid, "entity_id": entity_id, "status": "sent",
            "objections_closed": [o["objection_id"] for o in moot],
            "detail": "the worker applies it with the entity's partition; the entity's history shows it then"}


def _utc_ts(row: dict) -> dict:
    row["ts"] = utc(row.get("ts"))
    return row


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        tag, n = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        if tag != "o" or int(n) < 0:
            raise ValueError
        return int(n)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(422, detail=[{"loc": ["query", "cursor"], "msg": "not a cursor this API returned",
                                          "type": "value_error"}]) from exc


STATUS_HELP = ("the register status: operating, suspended or closed (those not operating are not drawn for "
               "spot checks; suspended or closed lists them scored or not, the latest to close first)")
SEARCH_MAX = 1000  # entities a name search looks at; more: ``truncated``, a longer query narrows it
Q_HELP = ("name search: the start of the name or of a word in it, any case (in Chinese and Japanese, any part "
          "of the name); finds entities with no risk state yet too")


@router.get("")
async def list_entities(request: Request, who: Viewer, tier: str | None = None,
                        region: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
                        industry: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
                        min_score: Annotated[float, Query(ge=0, le=100)] = 0.0,
                        limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None,
                        q: Annotated[str | None, Query(min_length=2, max_length=100, description=Q_HELP)] = None,
                        status: Annotated[EntityStatus | None, Query(description=STATUS_HELP)] = None):
    """Riskiest first (by score); filters combine; ``next_cursor`` pages on. With ``q``: the entities whose
    name matches, riskiest first, those with no risk state yet last (``matched``: how many in all). With
    ``status=suspended`` or ``closed``: those entities, scored or not, the latest to close first."""
    ctx = ctx_of(request)
    cfg, _meta = await ctx.current_config()
    tiers = [t.name for t in cfg.tiers]
    if tier is not None and tier not in tiers:
        raise HTTPException(422, detail=[{"loc": ["query", "tier"], "msg": f"unknown tier; one of {tiers}",
                                          "type": "enum"}])
    start = _offset(cursor)
    if q is not None:
        keep = _wanted(who, tier, region, industry, min_score, status)
        return await _search(ctx, cfg, q, keep, limit, start)
    r = ctx.redis
    step = limit * 2 if who.regions is None else max(limit * 2, 1000)  # a limited token filters more out
    if status is not None and status != OPERATING:
        # suspended or closed (rw:status:{status}, by since when): most have no risk state (a business that
        # stopped trading has few events), so the riskiest list does not hold them; a register holds many
        key = status_key(status)
        items, pos = await _walk(r, cfg, lambda pos: r.zrevrange(key, pos, pos + step - 1),
                                 _wanted(who, tier, region, industry, min_score, status), limit, start)
        more = len(items) == limit and pos < await r.zcard(key)
        return {"count": len(items), "entities": items, "next_cursor": _cursor(pos) if more else None}
    key = ("rw:rank:tier:" + tier if tier else "rw:rank:region:" + region if region
           else "rw:rank:industry:" + industry if industry else "rw:rank")
    # min_score is the index's range; the other filters beyond the index used are applied after it
    items, pos = await _walk(r, cfg, lambda pos: r.zrevrangebyscore(key, 100, min_score, start=pos, num=step),
                             _wanted(who, tier, region, industry, 0.0, status), limit, start)
    more = len(items) == limit and bool(await r.zrevrangebyscore(key, 100, min_score, start=pos, num=1))
    return {"count": len(items), "entities": items, "next_cursor": _cursor(pos) if more else None}


def _wanted(who, tier, region, industry, min_score: float, status):
    """The list filters, and a limited token's regions, as one test of an entity (as :func:`_entity` gives it)."""
    def keep(e: dict) -> bool:
        return not ((region and e["region"] != region) or (industry and e["industry"] != industry)
                    or (tier and e["tier"] != tier) or (min_score and (e["score"] or 0.0) < min_score)
                    or (status and e["status"] != status) or not who.sees(e["region"]))
    return keep


async def _walk(r, cfg, read, keep, limit: int, start: int) -> tuple[list[dict], int]:
    """Entities of an index in its order from position ``start`` that ``keep`` takes, up to ``limit``, and
    the position after the last one looked at (the next page's cursor). ``read(pos)``: the next ids."""
    items: list[dict] = []
    pos = start
    while len(items) < limit:
        ids = await read(pos)
        if not ids:
            break
        pipe = r.pipeline(transaction=False)
        for eid in ids:
            pipe.hgetall(entity_key(eid))
        for eid, h in zip(ids, await pipe.execute()):
            pos += 1
            if not h:
                continue
            e = _entity(h, eid, cfg)
            if keep(e):
                items.append(e)
                if len(items) == limit:
                    break
    return items, pos


async def _search(ctx, cfg, q: str, keep, limit: int, start: int) -> dict:
    """Entities whose name has a word starting with ``q``, or in Chinese or Japanese any place in a word
    (see :func:`riskwatch.view.name_keys`)."""
    form = name_form(q)
    if len(form) < 2:
        raise HTTPException(422, detail=[{"loc": ["query", "q"], "type": "string_too_short",
                                          "msg": "at least 2 characters besides spaces"}])
    key = name_lookup(form).encode()
    r = ctx.redis
    if not ctx.names_current:  # an index written by an older release: brought up to date once per process
        await reindex_names(r)
        ctx.names_current = True
    members = await r.zrangebylex(NAMES, b"[" + key, b"[" + key + b"\xff", start=0, num=SEARCH_MAX * 8)
    ids = list(dict.fromkeys(m.rsplit("\0", 1)[1] for m in members))  # str: decode_responses
    truncated = len(ids) > SEARCH_MAX or len(members) == SEARCH_MAX * 8
    ids = ids[:SEARCH_MAX]
    pipe = r.pipeline(transaction=False)
    for eid in ids:
        pipe.hgetall(entity_key(eid))
    rows = []
    for eid, h in zip(ids, await pipe.execute()):
        if not h or not any(k.startswith(form) for k in name_keys(h.get("name") or "", cut=None)):
            continue  # gone, renamed since, or matched on a cut key only
        e = _entity(h, eid, cfg)
        if keep(e):
            rows.append(e)
    rows.sort(key=lambda e: (e["score"] is None, -(e["score"] or 0.0), e["name"] or "", e["entity_id"]))
    page = rows[start:start + limit]
    return {"count": len(page), "entities": page,
            "next_cursor": _cursor(start + limit) if len(rows) > start + limit else None,
            "matched": len(rows), "truncated": truncated}
