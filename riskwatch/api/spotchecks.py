"""Spot checks: tier changes with their ratios, and verifiable draws (:mod:`riskwatch.draw`).

A draw is two calls: ``POST /v1/spotchecks/draws`` commits (a fresh secret
seed and a snapshot of the population with their tiers; the SHA-256 of both
is returned and audited); ``POST /v1/spotchecks/draws/{id}/execute`` draws,
reveals the seed and stores the result. ``GET /v1/spotchecks/draws/{id}``
gives everything needed to recompute the draw with :func:`riskwatch.draw.draw`.
``GET /v1/spotchecks/draws/{id}/outcomes`` says what the checks found so far
(:mod:`riskwatch.spotcheck_outcomes`), from the inspection results the
workers keep in the view. ``GET /v1/spotchecks/draws/{id}/worklist`` is what
to hand to the inspectors: each one's entities with name, industry and
region, which are checked already, as JSON or CSV, blind to the stratum.

A draw names its inspection task, and one draw per task, period and region is
taken (:mod:`riskwatch.draw_scopes`): a committed draw may be withdrawn, with a
reason, before it is executed; an executed one stands.

Draws are listed newest first from an index sorted by commitment time
(``rw:draws:by-commit``), so a list reads only the draws it shows.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from datetime import datetime, timezone
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .. import audit
from ..draw import draw, population_digest, seed_digest
from ..draw_copy import DRAWS, DRAWS_BY_COMMIT, LAST_INSPECTOR, RECONCILED, SECRETS, population_key
from ..draw_scopes import SCOPES, overlapping, scope
from ..events import OPERATING, InspectionKind
from ..spotcheck_outcomes import SPOT_CHECK_KINDS, outcomes
from ..times import iso_fields, utc
from ..view import SPOTCHECKS, entity_key, inspections_key
from .context import Ops, Viewer, ctx_of, errors, query_time
from .csv_files import attachment, csv_text

router = APIRouter(prefix="/v1/spotchecks", tags=["spot checks"])


class DrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])(-[0-3]\d)?$", description="YYYY-MM or YYYY-MM-DD")]
    capacity: Annotated[int, Field(ge=1, le=100_000, description="number of inspections available")]
    control_share: Annotated[float, Field(ge=0, le=1, description="share drawn uniformly, ignoring tiers")] = 0.1
    inspectors: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=1000)] = []
    region: Annotated[str | None, Field(pattern=r"^\d{6}$")] = None
    task: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^|]+$",
                               description="the inspection task drawn for: one draw per task, period and region "
                                           "(riskwatch.draw_scopes)")] = "routine"

    @field_validator("inspectors")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("inspectors must be unique")
        return v


@router.get("/changes")
async def changes(request: Request, who: Viewer, since: str | None = None, until: str | None = None,
                  region: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
                  to_tier: Annotated[str | None, Query(min_length=1, max_length=8)] = None,
                  limit: Annotated[int, Query(ge=1, le=5000)] = 500):
    """Tier changes (from/to tier and spot-check ratio), newest first, by decision time."""
    lo, hi = query_time(since, "since"), query_time(until, "until")
    r = ctx_of(request).redis
    out: list[dict] = []
    pos = 0
    page = limit if not (region or to_tier or who.regions) else max(limit, 1000)
    # in pages, newest first: until 2026-12-05 every change in the range was read and parsed (up to
    # the 200,000 kept) to return the first ``limit``
    while len(out) < limit:
        rows = await r.zrevrangebyscore(SPOTCHECKS, hi if hi is not None else "+inf", lo if lo is not None else "-inf",
                                        start=pos, num=page)
        pos += len(rows)
        page_rows = await _labelled([orjson.loads(raw) for raw in rows], r)
        for c in page_rows:
            if (region and c.get("region") != region) or (to_tier and c["to_tier"] != to_tier) or \
                    not who.sees(c.get("region")):
                continue
            c["ts"] = utc(c.get("ts"))
            out.append(c)
            if len(out) == limit:
                break
        if len(rows) < page:
            break
    return {"count": len(out), "changes": out}


async def _labelled(rows: list[dict], r) -> list[dict]:
    """Tier changes with the region and industry of their entity's register where the worker had none yet
    (a change made before the entity's register record reached it: until 2026-12-08 ``?region=`` and
    tokens limited to regions never saw it)."""
    bare = [c for c in rows if not c.get("region")]
    if bare:
        pipe = r.pipeline(transaction=False)
        for c in bare:
            pipe.hmget(entity_key(c["entity_id"]), "region", "industry")
        for c, (reg, ind) in zip(bare, await pipe.execute()):
            c["region"] = reg.decode() if isinstance(reg, bytes) else reg
            c["industry"] = c.get("industry") or (ind.decode() if isinstance(ind, bytes) else ind)
    return rows


async def _population(r, region: str | None) -> tuple[list[tuple[str, str, float]], int]:
    """The draw's frame: the view's entities (of ``region``) whose register status is operating, and how
    many were left out as suspended or closed (a closed business cannot be inspected: until 2026-12-06
    every entity ever registered stayed in the frame)."""
    pop = []
    left_out = 0
    keys = [k async for k in r.scan_iter("rw:entity:*", count=1000)]
    for i in range(0, len(keys), 1000):
        pipe = r.pipeline(transaction=False)
        for k in keys[i:i + 1000]:
            pipe.hmget(k, "tier", "ratio", "region", "status")
        for k, (tier, ratio, reg, status) in zip(keys[i:i + 1000], await pipe.execute()):
            if region and reg != region:
                continue
            if status and status != OPERATING:
                left_out += 1
                continue
            eid = (k.decode() if isinstance(k, bytes) else k).removeprefix("rw:entity:")
            pop.append((eid, tier, float(ratio) if ratio is not None else None))
    return pop, left_out


@router.post("/draws", status_code=201, responses=errors(409, 503))
async def commit_draw(request: Request, body: DrawIn, who: Ops):
    """Commit to a draw: publishes the seed's and the population's SHA-256 (the seed stays secret).
    One draw per task, period and region (:mod:`riskwatch.draw_scopes`): 409 while another covers them."""
    import redis.exceptions as rex

    ctx = ctx_of(request)
    key = scope(body.task, body.period, body.region)
    await _draws_compared(ctx)
    await _scopes_of_older_draws(ctx.redis)
    await _refuse_overlap(ctx.redis, key)  # before the population's read; again in the transaction
    cfg, _ = await ctx.current_config()
    lowest = cfg.tiers[0]  # an entity never scored is in the lowest tier
    frame, not_operating = await _population(ctx.redis, body.region)
    pop = [(e, t or lowest.name, cfg.ratio_in_force(t or lowest.name, r if r is not None else lowest.ratio))
           for e, t, r in frame]
    if not pop:
        raise HTTPException(409, detail="no entities to draw from (the view has none operating"
                                        + (f" in region {body.region})" if body.region else ")"))
    seed = secrets.token_hex(32)
    did = "draw-" + uuid.uuid4().hex[:12]
    rec = {"id": did, **body.model_dump(), "status": "committed", "committed_at": time.time(),
           "committed_by": who.name, "seed_sha256": seed_digest(seed), "population_sha256": population_digest(pop),
           "population_size": len(pop), "not_operating": not_operating, "config_version": cfg.version}
    r = ctx.redis
    while True:
        async with r.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(SCOPES)
                await _refuse_overlap(pipe, key)
                pipe.multi()
                pipe.hset(DRAWS, did, orjson.dumps(rec))
                pipe.zadd(DRAWS_BY_COMMIT, {did: rec["committed_at"]})
                pipe.hset(SECRETS, did, seed)
                pipe.set(population_key(did), orjson.dumps(sorted([list(p) for p in pop])))
                pipe.hset(SCOPES, key, did)
                audit.record(pipe, who.name, "draw.commit", did, {k: rec[k] for k in (
                    "task", "period", "region", "capacity", "control_share", "seed_sha256", "population_sha256")})
                await pipe.execute()
                return iso_fields(rec)
            except rex.WatchError:
                continue  # another draw committed or withdrawn meanwhile: check again


async def _draws_compared(ctx) -> None:
    """A Redis without ``rw:draws:reconciled`` (new, or it lost its data and the copy round has not
    written the draws back yet) gets the draws from ``rw.draws`` now (:mod:`riskwatch.draw_copy`), so a
    draw it lost still holds its task, period and region: until 2026-12-08 a commitment in the second
    after the loss could take them. 503 while the broker is away."""
    if ctx.draw_copy is None or await ctx.redis.exists(RECONCILED):
        return
    try:
        await ctx.draw_copy.reconcile(ctx.redis)
    except HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - the broker's errors are many (aiokafka, OSError, timeouts)
        raise HTTPException(503, detail="the draws Redis may have lost cannot be compared with their copy on "
                                        f"Kafka now ({type(exc).__name__}): a draw cannot be committed until "
                                        "they are", headers={"Retry-After": "5"}) from exc


async def _refuse_overlap(conn, key: str) -> None:
    """409 when a draw already covers an overlapping task, period and region, naming it."""
    clash = overlapping(key, await conn.hgetall(SCOPES))
    if clash:
        did = clash[0][1]
        did = did.decode() if isinstance(did, bytes) else did
        raw = await conn.hget(DRAWS, did)
        if not raw:  # Redis lost the draws; the audit log, back from rw.audit, still has it
            t, p, g = clash[0][0].decode().split("|") if isinstance(clash[0][0], bytes) else clash[0][0].split("|")
            raise HTTPException(409, detail=f"draw {did} (executed; its record is not in Redis any more: see the "
                                            f"audit log) already covers task {t}, period {p}, "
                                            + ("the whole jurisdiction" if g == "*" else f"region {g}")
                                            + ": one draw per task, period and region; an executed draw stands")
        other = orjson.loads(raw)
        where = f"region {other['region']}" if other.get("region") else "the whole jurisdiction"
        then = ("it is executed, and an executed draw stands" if other["status"] == "executed" else
                f"withdraw it first (POST /v1/spotchecks/draws/{other['id']}/withdraw with a reason)")
        raise HTTPException(409, detail=f"draw {other['id']} ({other['status']}) already covers task "
                                        f"{other.get('task', 'routine')}, period {other['period']}, {where}: one draw "
                                        f"per task, period and region; {then}")


async def _scopes_of_older_draws(r) -> None:
    """Where no scope is kept: draws committed before scopes were (2026-12-07) take theirs once, as
    ``routine`` draws, and so do the executed draws of the audit log that Redis no longer holds (a
    Redis that lost its data gets the audit log back from ``rw.audit``: without this, losing Redis
    freed every scope for another draw). A committed draw whose seed Redis lost (one written back from
    ``rw.draws``: :mod:`riskwatch.draw_copy`) can never execute, so it holds none."""
    if await r.exists(SCOPES):
        return
    live: dict[str, str] = {}
    commits: dict[str, dict] = {}
    async for e in audit.each(r):
        d = e.get("detail") or {}
        if e["action"] == "draw.commit" and "task" in d:  # scopes are audited since 2026-12-07
            commits[e["target"]] = d
        elif e["action"] == "draw.execute" and e["target"] in commits:
            c = commits[e["target"]]
            live[scope(c["task"], c["period"], c.get("region"))] = e["target"]
    held = [orjson.loads(x) for x in (await r.hgetall(DRAWS)).values()]
    seeded = {k.decode() if isinstance(k, bytes) else k for k in await r.hkeys(SECRETS)}
    live.update({scope(d.get("task", "routine"), d["period"], d.get("region")): d["id"] for d in
                 sorted(held, key=lambda d: d["committed_at"])
                 if d["status"] == "executed" or (d["status"] == "committed" and d["id"] in seeded)})
    if live:
        await r.hset(SCOPES, mapping=live)


async def _load_draw(r, draw_id: str) -> dict:
    raw = await r.hget(DRAWS, draw_id)
    if not raw:
        raise HTTPException(404, detail=f"no draw {draw_id}")
    return orjson.loads(raw)


async def _committed(pipe, draw_id: str) -> tuple[dict, str | None]:
    """A draw still committed (404 unknown, 409 executed or withdrawn), read on a watching pipeline, and
    its secret seed (None when Redis no longer holds it)."""
    rec = await _load_draw(pipe, draw_id)
    if rec["status"] != "committed":
        raise HTTPException(409, detail=f"draw {draw_id} was already {rec['status']}"
                                        + (": an executed draw stands" if rec["status"] == "executed" else ""))
    seed = await pipe.hget(SECRETS, draw_id)
    return rec, seed.decode() if isinstance(seed, bytes) else seed


@router.post("/draws/{draw_id}/execute", responses=errors(404, 409))
async def execute_draw(request: Request, draw_id: str, who: Ops):
    """Draw with the committed seed and population; the seed is disclosed with the result.

    An optimistic transaction on the draws and the entities' last inspectors: of two requests at once
    (a double click, two people, a client's retry), one executes and the other gets 409. Until
    2026-12-07 each did: in a probe of 4 requests at once, 2 to 4 answered 200, with up to 3 different
    inspector assignments (each read the last inspectors the other had just written), and the stored
    draw was the last one written, not the one an earlier answer showed."""
    import redis.exceptions as rex

    r = ctx_of(request).redis
    while True:
        async with r.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(DRAWS, LAST_INSPECTOR)
                rec, seed = await _committed(pipe, draw_id)
                frame = await pipe.get(population_key(draw_id))
                if not seed or frame is None:  # until 2026-12-07 a missing seed drew with the seed "None"
                    raise HTTPException(409, detail=f"draw {draw_id} cannot be executed: its "
                                        + ("secret seed" if not seed else "population snapshot")
                                        + " is not in Redis any more; withdraw it (POST /v1/spotchecks/draws/"
                                        + f"{draw_id}/withdraw with a reason) and commit a new draw")
                pop = [tuple(p) for p in orjson.loads(frame)]
                last = {}
                if rec["inspectors"]:
                    vals = await pipe.hmget(LAST_INSPECTOR, [p[0] for p in pop])
                    last = {p[0]: (v.decode() if isinstance(v, bytes) else v) for p, v in zip(pop, vals) if v}
                result = draw(seed, rec["period"], pop, rec["capacity"], rec["control_share"], rec["inspectors"], last)
                rec.update(status="executed", executed_at=time.time(), executed_by=who.name, seed=seed,
                           last_inspector=last, result=result)
                pipe.multi()
                pipe.hset(DRAWS, draw_id, orjson.dumps(rec))
                pipe.hdel(SECRETS, draw_id)
                assigned = {s["entity_id"]: s["inspector"] for s in result["selected"] if s["inspector"]}
                if assigned:
                    pipe.hset(LAST_INSPECTOR, mapping=assigned)
                audit.record(pipe, who.name, "draw.execute", draw_id,
                             {"seed": seed, "selected": len(result["selected"])})
                await pipe.execute()
                return iso_fields(rec)
            except rex.WatchError:
                continue  # a draw committed or executed meanwhile: read again


class WithdrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=3, max_length=2000)]


@router.post("/draws/{draw_id}/withdraw", responses=errors(404, 409))
async def withdraw_draw(request: Request, draw_id: str, body: WithdrawIn, who: Ops):
    """Withdraw a committed draw, with a reason, before it is executed: its task, period and region are
    free for a new draw, and its seed is disclosed (anyone can see what it would have drawn). An
    executed draw stands (409)."""
    import redis.exceptions as rex

    r = ctx_of(request).redis
    while True:
        async with r.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(DRAWS, SCOPES)
                rec, seed = await _committed(pipe, draw_id)
                key = scope(rec.get("task", "routine"), rec["period"], rec.get("region"))
                held = await pipe.hget(SCOPES, key)
                rec.update(status="withdrawn", withdrawn_at=time.time(), withdrawn_by=who.name,
                           withdraw_reason=body.reason, seed=seed)
                pipe.multi()
                pipe.hset(DRAWS, draw_id, orjson.dumps(rec))
                pipe.hdel(SECRETS, draw_id)
                if (held.decode() if isinstance(held, bytes) else held) == draw_id:
                    pipe.hdel(SCOPES, key)
                audit.record(pipe, who.name, "draw.withdraw", draw_id, {"reason": body.reason, "seed": rec["seed"]})
                await pipe.execute()
                return iso_fields(rec)
            except rex.WatchError:
                continue


async def latest_draws(r, limit: int, status: str | None = None) -> list[dict]:
    """Whole draw records, newest commitment first. Reads the newest ids from the index and only those
    records (until 2026-12-05 every call, the board's every 30 s too, read every draw ever made, with
    each one's selection: megabytes after a few years of monthly draws)."""
    pipe = r.pipeline(transaction=False)
    pipe.hlen(DRAWS)
    pipe.zcard(DRAWS_BY_COMMIT)
    held, indexed = await pipe.execute()
    if indexed < held:  # draws committed before the index existed: index them once
        recs = [orjson.loads(x) for x in (await r.hgetall(DRAWS)).values()]
        await r.zadd(DRAWS_BY_COMMIT, {d["id"]: d["committed_at"] for d in recs})
    out: list[dict] = []
    start, step = 0, limit if status is None else max(limit, 50)
    while len(out) < limit:
        ids = await r.zrevrange(DRAWS_BY_COMMIT, start, start + step - 1)
        if not ids:
            break
        recs = sorted((orjson.loads(x) for x in await r.hmget(DRAWS, ids) if x),
                      key=lambda d: (-d["committed_at"], d["id"]))
        out += [d for d in recs if not status or d["status"] == status]
        start += step
    return out[:limit]


def draw_summary(rec: dict) -> dict:
    """A draw record without its selection and inspectors' history (``GET /draws/{id}`` has them)."""
    d = {k: v for k, v in rec.items() if k not in ("result", "last_inspector")}
    d["selected"] = len(rec["result"]["selected"]) if rec.get("result") else None
    return iso_fields(d)


@router.get("/draws")
async def list_draws(request: Request, _: Viewer, status: Literal["committed", "executed", "withdrawn"] | None = None,
                     limit: Annotated[int, Query(ge=1, le=200)] = 20):
    """Draws, newest commitment first, without their populations and selections (``GET /draws/{id}``)."""
    draws = [draw_summary(d) for d in await latest_draws(ctx_of(request).redis, limit, status)]
    return {"count": len(draws), "draws": draws}


@router.get("/draws/{draw_id}", responses=errors(404))
async def get_draw(request: Request, draw_id: str, _: Viewer, population: bool = False):
    """The commitment (and, once executed, the seed and result); ``population=true`` adds the snapshot
    (null when Redis lost it and it never reached ``rw.draws``: until 2026-12-08 that was a 500)."""
    r = ctx_of(request).redis
    rec = await _load_draw(r, draw_id)
    if population:
        frame = await r.get(population_key(draw_id))
        rec["population"] = orjson.loads(frame) if frame is not None else None
    return iso_fields(rec)


@router.get("/draws/{draw_id}/outcomes", responses=errors(404, 409))
async def draw_outcomes(request: Request, draw_id: str, _: Viewer, since: str | None = None,
                        kinds: Annotated[list[InspectionKind], Query()] = sorted(SPOT_CHECK_KINDS)):  # noqa: B008
    """What the draw's checks found: each selected entity's first inspection of a kind in ``kinds``
    (``routine`` by default: the spot check; ``?kinds=routine&kinds=complaint`` counts more) at or after
    ``since`` (by default when the draw was executed), and per stratum (risk-weighted, control) and tier
    the share of those that found a failure or a critical or major violation; ``lift`` = the risk
    stratum's hit rate over the control's. Entities inspected since only by other kinds are counted
    apart (``inspected_otherwise``), with each entity's ``not_counted``."""
    r = ctx_of(request).redis
    rec = await _load_draw(r, draw_id)
    if rec["status"] != "executed":
        raise HTTPException(409, detail=f"draw {draw_id} is not executed yet: nothing was selected")
    return await outcomes_of(r, rec, query_time(since, "since") if since is not None else rec["executed_at"],
                             frozenset(kinds))


async def _first_checks(r, selected: list[dict], start: float,
                        kinds: frozenset[str]) -> tuple[dict[str, dict], dict[str, int]]:
    """Per selected entity, its first inspection of ``kinds`` at or after ``start`` (epoch s), and how many
    inspections of other kinds came before it (or since, when there is none)."""
    pipe = r.pipeline(transaction=False)
    for s in selected:
        pipe.zrangebyscore(inspections_key(s["entity_id"]), start, "+inf")
    first, others = {}, {}
    for s, rows in zip(selected, await pipe.execute()):
        eid = s["entity_id"]
        for raw in rows:  # oldest first
            insp = orjson.loads(raw)
            if insp["kind"] in kinds:
                insp["ts"] = utc(insp["ts"])
                first[eid] = insp
                break
            others[eid] = others.get(eid, 0) + 1
    return first, others


async def outcomes_of(r, rec: dict, start: float, kinds: frozenset[str] = SPOT_CHECK_KINDS) -> dict:
    """:func:`riskwatch.spotcheck_outcomes.outcomes` of an executed draw record, from ``start`` (epoch s),
    counting inspections of ``kinds``."""
    first, others = await _first_checks(r, rec["result"]["selected"], start, kinds)
    out = outcomes(rec["result"]["selected"], first, others)
    return {"draw_id": rec["id"], "period": rec["period"], "kinds": sorted(kinds),
            "since": datetime.fromtimestamp(start, tz=timezone.utc).isoformat(), **out}


WORKLIST_COLUMNS = ("draw_id", "period", "inspector", "entity_id", "name", "address", "industry", "region",
                    "status", "checked_at", "inspection_id")


async def worklist_of(r, rec: dict, inspector: str | None = None) -> list[dict]:
    """An executed draw's selection as inspectors work it: by inspector, region, address (a street's
    entities together; since 2026-12-06), industry and entity id,
    with each entity's register data (its register status as of the request: a business that closed
    since the draw is not worth the drive; since 2026-12-06) and its spot check if it had one (a routine
    inspection since the draw). Blind: no stratum, tier, score or ratio (an inspector who knows a visit is
    the random control, or a high-risk pick, may not look as hard; the comparison of the two strata rests
    on it)."""
    selected = [s for s in rec["result"]["selected"] if inspector is None or s["inspector"] == inspector]
    first, _ = await _first_checks(r, selected, rec["executed_at"], SPOT_CHECK_KINDS)
    pipe = r.pipeline(transaction=False)
    for s in selected:
        pipe.hmget(entity_key(s["entity_id"]), "name", "address", "industry", "region", "status")
    rows = []
    for s, reg in zip(selected, await pipe.execute()):
        name, address, industry, region, status = (v.decode() if isinstance(v, bytes) else v for v in reg)
        insp = first.get(s["entity_id"])
        rows.append({"draw_id": rec["id"], "period": rec["period"], "inspector": s["inspector"],
                     "entity_id": s["entity_id"], "name": name, "address": address, "industry": industry,
                     "region": region, "status": status or OPERATING,
                     "checked_at": insp["ts"] if insp else None,
                     "inspection_id": insp["inspection_id"] if insp else None})
    rows.sort(key=lambda x: (x["inspector"] or "", x["region"] or "", address_order(x["address"]),
                             x["industry"] or "", x["entity_id"]))
    return rows


def address_order(address: str | None) -> tuple:
    """Sort key of an address for a route: by street, house numbers as numbers (学院路87号 before
    学院路154号); entities with no address last.

    >>> sorted(["北京市东城区学院路154号", None, "北京市东城区学院路87号", "北京市东城区人民路3号"], key=address_order)
    ['北京市东城区人民路3号', '北京市东城区学院路87号', '北京市东城区学院路154号', None]
    """
    if not address:
        return (1, ())
    return (0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _DIGITS.split(address) if p))


_DIGITS = re.compile(r"(\d+)")


def worklist_csv(rows: list[dict]) -> str:
    """The work list as CSV (:func:`.csv_files.csv_text`)."""
    return csv_text(WORKLIST_COLUMNS, rows)


def worklist_response(rows: list[dict], draw_id: str, inspector: str | None) -> Response:
    return Response(worklist_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": attachment(f"{draw_id}-{inspector or 'all'}.csv")})


async def executed_draw(r, draw_id: str, inspector: str | None) -> dict:
    """An executed draw's record, checked for a work list: 404, 409 (not executed) or 422 (``inspector``
    not one of the draw's)."""
    rec = await _load_draw(r, draw_id)
    if rec["status"] != "executed":
        raise HTTPException(409, detail=f"draw {draw_id} is not executed yet: nothing was selected")
    if inspector is not None and inspector not in rec["inspectors"]:
        who = ", ".join(rec["inspectors"]) or "none (the draw assigned no inspectors)"
        raise HTTPException(422, detail=[{"loc": ["query", "inspector"], "type": "value_error",
                                          "msg": f"not one of this draw's inspectors: {who}"}])
    return rec


@router.get("/draws/{draw_id}/worklist", responses={
    **errors(404, 409), 200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}},
                              "description": "the work list (JSON, or CSV with format=csv)"}})
async def draw_worklist(request: Request, draw_id: str, who: Viewer,
                        inspector: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
                        fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json"):
    """What to hand to the inspectors: the draw's selected entities by inspector (``inspector=`` for one),
    region, industry and id, with name, address, industry and region from the register and, once checked, the
    routine inspection that was the spot check (``checked_at``). Blind: no stratum, tier or score.
    ``format=csv`` answers a CSV file (cells that would start a spreadsheet formula get an apostrophe).
    A token limited to regions gets the entities of its regions only (a city's draw, a district's part)."""
    r = ctx_of(request).redis
    rec = await executed_draw(r, draw_id, inspector)
    rows = [x for x in await worklist_of(r, rec, inspector) if who.sees(x["region"])]
    if fmt == "csv":
        return worklist_response(rows, draw_id, inspector)
    return {"draw_id": draw_id, "period": rec["period"], "inspector": inspector, "count": len(rows),
            "checked": sum(1 for x in rows if x["checked_at"] is not None), "entities": rows}
