"""Objections: an entity contests a record or complaint; a regulator resolves it.

Both are commands on ``rw.commands`` (the entity's partition): the worker
takes a disputed item out of the score while it is open (config
``objections.exclude_disputed``) and applies the resolution (``upheld``
restores it; ``corrected`` / ``revoked`` remove it), so the effect shows in
the entity and history endpoints once processed. The API keeps the
objection's record (:mod:`riskwatch.objection_records`, which puts back what Redis lost of them) and
audits both steps; its author goes with the command as a message header. Each step's
effect on the score, as the worker applied it, is listed with the objection
(``effects``: ``rw:objections:effects``, written by the worker's view writer).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .. import audit
from ..events import OBJECTION_EFFECTS, validate_entity_id
from ..objection_records import BY_TIME, CLAIM, KEY, OPEN, OPEN_BY_TIME, index_open, record
from ..times import iso, iso_fields
from ..view import OBJECTION_EFFECTS as EFFECTS_KEY
from .context import Inspector, Ops, Viewer, claim, ctx_of, errors, visible_entities, visible_entity

router = APIRouter(prefix="/v1/objections", tags=["objections"])


class ObjectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entity_id: Annotated[str, Field(min_length=1, max_length=64)]
    target_id: Annotated[str, Field(min_length=1, max_length=128)]
    target_kind: Literal["record", "complaint"]
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class ResolutionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resolution: Literal["upheld", "corrected", "revoked"]
    note: Annotated[str, Field(max_length=2000)] = ""

    @field_validator("note")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()


async def open_objections(r, entity_id: str) -> list[dict]:
    ids = await r.smembers(OPEN + entity_id)
    if not ids:
        return []
    raws = await r.hmget(KEY, sorted(ids))
    return [orjson.loads(x) for x in raws if x]


async def with_effects(r, objections: list[dict]) -> list[dict]:
    """Each objection with ``effects``: {step: what it did} for the steps the worker has applied (the
    effect, its meaning, the score just before and after, the tier, when), ``{}`` before that."""
    if not objections:
        return objections
    return attach_effects(objections, await r.hmget(EFFECTS_KEY, effect_fields(objections)))


def effect_fields(objections: list[dict]) -> list[str]:
    """The fields of :data:`EFFECTS_KEY` that hold ``objections``' effects (read them with the entity in one
    transaction: the worker writes an effect and the score it made in one script)."""
    return [f"{o['objection_id']}:{step}" for o in objections for step in ("objection", "resolution")]


def attach_effects(objections: list[dict], raws: list) -> list[dict]:
    """``objections`` with their ``effects`` from ``raws``, the values of :func:`effect_fields`."""
    for i, o in enumerate(objections):
        o["effects"] = {}
        for step, raw in zip(("objection", "resolution"), raws[2 * i:2 * i + 2]):
            if raw:
                fx = orjson.loads(raw)
                fx["meaning"] = OBJECTION_EFFECTS.get(fx["effect"], "")
                o["effects"][step] = fx
    return objections


@router.post("", status_code=202, responses=errors(409, 503))
async def create_objection(request: Request, body: ObjectionIn, who: Inspector):
    """Record an objection and send it to the worker; the item stops counting once processed."""
    ctx = ctx_of(request)
    cfg, _ = await ctx.current_config()
    try:
        validate_entity_id(body.entity_id, cfg.entity_id_scheme)
    except ValueError as exc:
        raise HTTPException(422, detail=[{"loc": ["body", "entity_id"], "msg": str(exc),
                                          "type": "value_error"}]) from exc
    r = ctx.redis
    if not await visible_entity(r, who, body.entity_id):
        raise HTTPException(404, detail=f"no entity {body.entity_id} in this token's regions")
    # one objection per item, for requests at once too: until 2026-12-07 two at once both went through
    async with claim(r, f"{CLAIM}{body.entity_id}:{body.target_id}",
                      f"an objection to {body.target_id} is being filed; see it in a moment"):
        for o in await open_objections(r, body.entity_id):
            if o["target_id"] == body.target_id:
                raise HTTPException(409, detail=f"{body.target_id} already has an open objection "
                                                f"({o['objection_id']})")
        return await _file(ctx, body, who)


async def _file(ctx, body: ObjectionIn, who) -> dict:
    r = ctx.redis
    oid = "obj-" + uuid.uuid4().hex[:12]
    rec = record(oid, body.entity_id, body.target_id, body.target_kind, reason=body.reason, created_at=time.time(),
                 created_by=who.name)
    await ctx.send_command({"type": "objection", "objection_id": oid, "entity_id": body.entity_id,
                            "ts": iso(rec["created_at"]), "target_id": body.target_id,
                            "target_kind": body.target_kind, "reason": body.reason},
                           entity_id=body.entity_id, author=who.name)
    pipe = r.pipeline(transaction=True)
    pipe.hset(KEY, oid, orjson.dumps(rec))
    pipe.sadd(OPEN + body.entity_id, oid)
    pipe.zadd(OPEN_BY_TIME, {oid: rec["created_at"]})
    pipe.zadd(BY_TIME, {oid: rec["created_at"]})
    audit.record(pipe, who.name, "objection.create", oid, {"entity_id": body.entity_id, "target_id": body.target_id,
                                                            "reason": body.reason})
    await pipe.execute()
    return iso_fields(rec)


def with_due(o: dict, within_days: float, now: float) -> dict:
    """``o`` with when ops must resolve it by (``due_at``: its filing time + ``objections.resolve_within_days``;
    none when the filing time is unknown, as for one put back from a state) and whether it is ``overdue``
    (open past it)."""
    due = o["created_at"] + within_days * 86400 if o.get("created_at") else None
    return {**o, "due_at": due, "overdue": o["status"] == "open" and due is not None and now > due}


@router.get("")
async def list_objections(request: Request, who: Viewer, entity_id: str | None = None,
                          status: Literal["open", "resolved", "closed"] | None = None,
                          overdue: bool = False, limit: Annotated[int, Query(ge=1, le=500)] = 100):
    """Objections, newest first; ``overdue=true``: the open ones past their ``due_at``, oldest first (the
    most urgent). Read from an index by filing time in pages, only as far as the answer needs (until
    2026-12-07 every call read every objection ever filed, with its record)."""
    ctx = ctx_of(request)
    r = ctx.redis
    within = (await ctx.current_config())[0].objections.resolve_within_days
    now = time.time()
    if overdue:
        await index_open(r)
    out: list[dict] = []
    start, step = 0, max(limit, 200)
    while len(out) < limit:
        if overdue:  # filing time 0: unknown, never counted overdue
            ids = await r.zrangebyscore(OPEN_BY_TIME, "(0", now - within * 86400, start=start, num=step)
        else:
            ids = await r.zrevrange(BY_TIME, start, start + step - 1)
        if not ids:
            break
        start += len(ids)
        recs = [orjson.loads(raw) for raw in await r.hmget(KEY, ids) if raw]
        seen = await visible_entities(r, who, {o["entity_id"] for o in recs})
        for o in recs:
            if (entity_id and o["entity_id"] != entity_id) or (status and o["status"] != status) or \
                    o["entity_id"] not in seen or (overdue and o["status"] != "open"):
                continue
            out.append(iso_fields(with_due(o, within, now)))
            if len(out) == limit:
                break
    return {"count": len(out), "objections": await with_effects(r, out)}


@router.get("/{objection_id}", responses=errors(404))
async def get_objection(request: Request, objection_id: str, who: Viewer):
    """One objection, with what each of its steps did to the entity's score once the worker applied it."""
    r = ctx_of(request).redis
    raw = await r.hget(KEY, objection_id)
    if not raw or not await visible_entity(r, who, orjson.loads(raw)["entity_id"]):
        raise HTTPException(404, detail=f"no objection {objection_id}")
    within = (await ctx_of(request).current_config())[0].objections.resolve_within_days
    return (await with_effects(r, [iso_fields(with_due(orjson.loads(raw), within, time.time()))]))[0]


@router.post("/{objection_id}/resolve", responses=errors(404, 409, 503))
async def resolve_objection(request: Request, objection_id: str, body: ResolutionIn, who: Ops):
    """``upheld``: the item counts again; ``corrected`` / ``revoked``: it no longer counts."""
    ctx = ctx_of(request)
    r = ctx.redis
    raw = await r.hget(KEY, objection_id)
    if not raw or not await visible_entity(r, who, orjson.loads(raw)["entity_id"]):
        raise HTTPException(404, detail=f"no objection {objection_id}")
    # one resolution per objection: until 2026-12-07 two at once (upheld and revoked) both answered 200 in
    # 2 of 5 tries, the worker applied both, and the record kept whichever was written last
    async with claim(r, CLAIM + objection_id, f"objection {objection_id} is being resolved; see it in a moment"):
        raw = await r.hget(KEY, objection_id)  # again, under the claim
        if not raw:
            raise HTTPException(404, detail=f"no objection {objection_id}")
        o = orjson.loads(raw)
        if o["status"] != "open":
            raise HTTPException(409, detail=f"objection {objection_id} is already {o['status']} "
                                            f"({o['resolution'] or o.get('note') or ''})")
        return await _resolve(ctx, o, body, who)


async def _resolve(ctx, o: dict, body: ResolutionIn, who) -> dict:
    r, objection_id = ctx.redis, o["objection_id"]
    now = time.time()
    await ctx.send_command({"type": "objection_resolution", "objection_id": objection_id,
                            "entity_id": o["entity_id"], "ts": iso(now), "target_id": o["target_id"],
                            "resolution": body.resolution, "note": body.note}, entity_id=o["entity_id"],
                           author=who.name)
    o.update(status="resolved", resolution=body.resolution, resolved_at=now, resolved_by=who.name, note=body.note)
    pipe = r.pipeline(transaction=True)
    pipe.hset(KEY, objection_id, orjson.dumps(o))
    pipe.srem(OPEN + o["entity_id"], objection_id)
    pipe.zrem(OPEN_BY_TIME, objection_id)
    audit.record(pipe, who.name, "objection.resolve", objection_id,
                 {"entity_id": o["entity_id"], "resolution": body.resolution, "note": body.note})
    await pipe.execute()
    return iso_fields(o)
