"""Thresholds and config, changed safely while the system runs.

``PUT /v1/config`` validates (422 naming every bad field; the running config
stays), then writes a ``config_change`` command with a new sequence number to
every partition of ``rw.commands`` (each worker applies the first copy it
sees, without a restart), records it as the current config in Redis (workers
start from it) and in the history, and audits actor, reason and diff.

Every change's whole config is kept (``rw:config:versions``, since 2026-12-05):
``GET /v1/config/history/{seq}`` shows what was in force after change ``seq``
(0: the file), and ``POST /v1/config/rollback`` applies it again as a new
change (a threshold change that misbehaves is undone in one call, with its
own reason in the history and the audit log).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from .. import audit
from ..config import CONFIG_SEQ as SEQ
from ..config_history import HISTORY, audit_detail, history_row
from ..config import CONFIG_VERSIONS as VERSIONS
from ..config import CURRENT_CONFIG, Config, config_from_dict, load_config
from ..errors import ConfigError
from ..impact import impact
from ..preview import recent_events, shadow
from ..settings import INPUT_TOPICS
from ..times import iso_fields
from .context import Ops, Viewer, claim, ctx_of, errors, field_errors

router = APIRouter(prefix="/v1/config", tags=["config"])
APPLYING = "rw:config:applying"  # held while a change is checked, numbered, sent and recorded


def etag(seq: int) -> str:
    """The ``ETag`` of the config in force: its change number. ``If-Match`` with it on a change or a
    rollback makes it apply only over that config (412 when another change came since)."""
    return f'"{seq}"'


class ConfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any] = Field(description="a whole config, as in config/riskwatch.yaml")


class ConfigChangeIn(ConfigIn):
    reason: Annotated[str, Field(min_length=3, max_length=2000)]


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to_seq: Annotated[int, Field(ge=0, description="the change whose config to apply again (0: the file's)")]
    reason: Annotated[str, Field(min_length=3, max_length=2000)]


class PreviewIn(ConfigIn):
    events_per_partition: Annotated[int, Field(ge=1, le=50_000)] = 2_000


class ImpactIn(ConfigIn):
    limit: Annotated[int, Field(ge=0, le=5_000, description="entities listed, those that move first")] = 50


def _validated(body: ConfigIn) -> Config:
    try:
        return config_from_dict(body.config)
    except ConfigError as exc:
        raise HTTPException(422, detail=field_errors(exc.errors, ("body", "config"))) from exc


def diff(old: Any, new: Any, path: str = "") -> list[dict]:
    """Changed leaves as ``{"path", "from", "to"}``.

    >>> diff({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 4})
    [{'path': 'a.c', 'from': 2, 'to': 3}, {'path': 'd', 'from': None, 'to': 4}]
    >>> diff({"t": [{"up": 1}, {"up": 2}]}, {"t": [{"up": 1}, {"up": 5}]})
    [{'path': 't.1.up', 'from': 2, 'to': 5}]
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += diff(old.get(k), new.get(k), f"{path}.{k}" if path else str(k))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in diff(a, b, f"{path}.{i}")]
    return [] if old == new else [{"path": path, "from": old, "to": new}]


@router.get("")
async def get_config(request: Request, response: Response, _: Viewer):
    """The config in force: its version, change sequence (0 = the file) and content; ``ETag`` is the
    sequence, for ``If-Match`` on the change made from it."""
    cfg, meta = await ctx_of(request).current_config()
    response.headers["ETag"] = etag(meta["seq"])
    return {**iso_fields(meta), "config": cfg.model_dump(mode="json")}


@router.post("/validate")
async def validate_config(request: Request, body: ConfigIn, _: Ops):
    cfg = _validated(body)
    current, _meta = await ctx_of(request).current_config()
    return {"valid": True, "version": cfg.version,
            "diff": diff(current.model_dump(mode="json"), cfg.model_dump(mode="json"))}


IfMatch = Annotated[str | None, Header(description="the ETag of GET /v1/config the change was made from: "
                                                  "412 if another change came since")]


@router.put("", status_code=202, responses=errors(409, 412, 503))
async def put_config(request: Request, body: ConfigChangeIn, who: Ops, if_match: IfMatch = None):
    """Apply a new config to every worker (no restart). 202: accepted by the broker."""
    return await _apply(ctx_of(request), _validated(body), who.name, body.reason, if_match=if_match)


def _seq_of(if_match: str) -> int:
    try:
        return int(if_match.strip().removeprefix("W/").strip('"'))
    except ValueError:
        raise HTTPException(412, detail=f"If-Match {if_match!r} is not an ETag of GET /v1/config "
                                        '(a change number in quotes, as "3")') from None


async def _apply(ctx, cfg: Config, actor: str, reason: str, rollback_to: int | None = None,
                 if_match: str | None = None) -> dict:
    """Send a config change to every worker, then record it: current, history, its content, audit.

    One change at a time: a change holds :data:`APPLYING` from its check to its record, and another
    made meanwhile gets 409. With ``If-Match``, only over the config the change was made from. Until
    2026-12-07 a change made from an older GET silently put back what a change made since had moved
    (two people tuning at once: the first one's change undone, both answered 202), and two changes
    at once could leave Redis showing the first as in force while the workers ran the second."""
    async with claim(ctx.redis, APPLYING, "another config change is being applied; GET /v1/config and try again",
                     headers={"Retry-After": "1"}):
        return await _apply_one(ctx, cfg, actor, reason, rollback_to, if_match)


async def _apply_one(ctx, cfg: Config, actor: str, reason: str, rollback_to: int | None,
                     if_match: str | None) -> dict:
    current, meta = await ctx.current_config()
    if if_match is not None and if_match.strip() != "*" and _seq_of(if_match) != meta["seq"]:
        by = f" by {meta['actor']} ({meta.get('reason', '')})" if meta.get("actor") else ""
        raise HTTPException(412, detail=f"the config in force is no longer the one this change was made from "
                                        f"(If-Match {if_match.strip()}): change {meta['seq']}{by} came since; "
                                        "GET /v1/config and make the change again from it",
                            headers={"ETag": etag(meta["seq"])})
    changes = diff(current.model_dump(mode="json"), cfg.model_dump(mode="json"))
    if not changes:
        raise HTTPException(409, detail="the config is the one in force; nothing to change")
    r = ctx.redis
    seq = int(await r.incr(SEQ))
    cmd = {"type": "config_change", "seq": seq, "version": cfg.version, "config": cfg.model_dump(mode="json"),
           "actor": actor, "reason": reason, "at": time.time()}
    if rollback_to is not None:
        cmd["rollback_to"] = rollback_to
    await ctx.send_command(cmd)  # every partition: every worker sees it in order with its events
    pipe = r.pipeline(transaction=True)
    pipe.set(CURRENT_CONFIG, orjson.dumps(cmd))
    pipe.hset(VERSIONS, str(seq), orjson.dumps(cmd))
    pipe.lpush(HISTORY, orjson.dumps(history_row(cmd, changes, meta)))
    # the whole change, so that a Redis that lost the history gets it back from rw.audit (config_history)
    audit.record(pipe, actor, "config.change", cfg.version, audit_detail(cmd, changes, meta))
    await pipe.execute()
    return {"seq": seq, "version": cfg.version, "diff": changes, "status": "sent to workers"}


@router.get("/history")
async def config_history(request: Request, _: Viewer, limit: Annotated[int, Query(ge=1, le=500)] = 50):
    rows = await ctx_of(request).redis.lrange(HISTORY, 0, limit - 1)
    return {"count": len(rows), "changes": [iso_fields(orjson.loads(x)) for x in rows]}


async def _version(ctx, seq: int) -> dict:
    """Change ``seq``'s command, its whole config included; 0: the file's config. 404 when unknown."""
    if seq == 0:
        cfg = load_config(ctx.s.config_path)
        return {"seq": 0, "version": cfg.version, "source": str(ctx.s.config_path or "config/riskwatch.yaml"),
                "config": cfg.model_dump(mode="json")}
    raw = await ctx.redis.hget(VERSIONS, str(seq))
    if raw:
        return orjson.loads(raw)
    last = int(await ctx.redis.get(SEQ) or 0)
    if seq > last:
        raise HTTPException(404, detail=f"no config change {seq}: the last is {last}")
    raise HTTPException(404, detail=f"the config of change {seq} was not kept: changes made before 2026-12-05 "
                                    f"kept only their diff (GET /v1/config/history), and a change the broker "
                                    f"refused (a 503) was never made")


@router.get("/history/{seq}", responses=errors(404))
async def config_version(request: Request, seq: Annotated[int, Path(ge=0)], _: Viewer):
    """The whole config that change ``seq`` applied, with who, when and why (0: the config file)."""
    return iso_fields(await _version(ctx_of(request), seq))


@router.post("/rollback", status_code=202, responses=errors(404, 409, 412, 503))
async def rollback_config(request: Request, body: RollbackIn, who: Ops, if_match: IfMatch = None):
    """Apply the config of an earlier change (``to_seq``; 0: the file) again, as a new change with its
    own sequence number, reason and audit entry. 409 when it is the one in force, or no longer valid."""
    ctx = ctx_of(request)
    old = await _version(ctx, body.to_seq)
    try:
        cfg = config_from_dict(old["config"])
    except ConfigError as exc:  # kept by an older riskwatch whose config model differed
        raise HTTPException(409, detail=f"the config of change {body.to_seq} is not valid any more: "
                                        + "; ".join(str(e) for e in exc.errors)) from exc
    return await _apply(ctx, cfg, who.name, body.reason, rollback_to=body.to_seq, if_match=if_match)


@router.post("/preview", responses=errors(503))
async def preview_config(request: Request, body: PreviewIn, _: Ops):
    """Shadow evaluation: the last events of every input partition through the current and the candidate config."""
    cfg = _validated(body)
    ctx = ctx_of(request)
    current, _meta = await ctx.current_config()
    topics = [ctx.s.topic(t) for t in INPUT_TOPICS if t != "commands"]
    from aiokafka.errors import KafkaError

    try:
        events = await asyncio.wait_for(recent_events(ctx.s, topics, body.events_per_partition), 60)
    except (KafkaError, OSError, asyncio.TimeoutError) as exc:
        raise HTTPException(503, detail=f"could not read recent events: {type(exc).__name__}",
                            headers={"Retry-After": "5"}) from exc
    return await asyncio.to_thread(shadow, events, current, cfg)


@router.post("/impact", responses=errors(503))
async def config_impact(request: Request, body: ImpactIn, _: Ops):
    """What applying the candidate would do now: every entity's state (the state changelog's last of
    each) re-decided at its own clock under the config in force and under the candidate, as a worker
    does when a change is applied: tiers, entities that move, and those the minimum dwell holds back."""
    cfg = _validated(body)
    ctx = ctx_of(request)
    current, _meta = await ctx.current_config()
    from aiokafka.errors import KafkaError

    from ..streams.state_store import latest_states

    t0 = time.monotonic()
    try:
        states = await asyncio.wait_for(latest_states(ctx.s, ctx.s.state_changelog), 120)
    except (KafkaError, OSError, asyncio.TimeoutError) as exc:
        raise HTTPException(503, detail=f"could not read the entity states: {type(exc).__name__}",
                            headers={"Retry-After": "5"}) from exc
    read_s = time.monotonic() - t0
    out = await asyncio.to_thread(impact, states, current, cfg, body.limit)
    out["seconds"] = {"read_states": round(read_s, 2), "re_decide": round(time.monotonic() - t0 - read_s, 2)}
    return out
