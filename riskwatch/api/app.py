"""The internal API (FastAPI): entities, alerts, spot checks, config, objections, audit, health.

Roles (bearer tokens, :mod:`.auth`): ``viewer`` reads; ``inspector`` also
acknowledges/resolves alerts and files objections; ``ops`` also tunes config,
silences alerts, resolves objections, runs draws and reads the audit log;
``admin`` may do everything. ``/healthz``, ``/readyz`` and ``/metrics`` need
no token (probes and Prometheus).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Annotated, Literal

import orjson

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import __version__, audit
from ..audit_derived import restore_all
from ..audit_topic import TOPIC_CONFIG, Shipper, read_topic
from ..draw_copy import DrawCopy
from ..draw_copy import read_topic as read_draws
from ..kafka_security import client_options
from ..rebuild import rebuild_view
from ..settings import Settings
from ..times import iso_fields
from ..view_rebuild import AfterLoss, noticed
from . import alerts, board, config_api, entities, objections, spotchecks
from .context import AUTHED, ApiContext, ErrorOut, Ops, count_requests, ctx_of, query_time, redis_outage_is_503
from .csv_files import attachment, csv_text

log = logging.getLogger("riskwatch.api")

__all__ = ["create_api"]

health = APIRouter(tags=["health"])
audit_router = APIRouter(tags=["audit"])


@health.get("/healthz")
async def healthz():
    """The process is up."""
    return {"status": "ok"}


async def _worker_lag(s: Settings) -> int:
    """Messages of the input topics the worker group has not committed yet."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from ..settings import INPUT_TOPICS

    # a consumer of the worker's group that never subscribes: it only fetches the group's commits
    # (aiokafka's admin client fails to decode the embedded broker's group responses)
    c = AIOKafkaConsumer(**client_options(s), group_id=s.app_id, enable_auto_commit=False,
                         request_timeout_ms=3000)
    await c.start()
    try:
        tps = [TopicPartition(s.topic(t), p) for t in INPUT_TOPICS for p in range(s.partitions)]
        ends = await c.end_offsets(tps)
        lag = 0
        for tp in tps:
            done = await c.committed(tp)
            lag += max(0, ends[tp] - (done or 0))
        return lag
    finally:
        await c.stop()


async def _broker_reachable(bootstrap: str):
    """True when one of the bootstrap brokers (``host:port``, comma-separated) takes a TCP connection,
    else what went wrong with the last. Until 2026-12-06 a list of several was read as one address, and a
    cluster's API was never ready."""
    problem = "no broker address"
    for addr in filter(None, (a.strip() for a in bootstrap.split(","))):
        try:
            host, port = addr.rsplit(":", 1)
            _, w = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), 2)
            w.close()
            return True
        except Exception as exc:
            problem = f"unreachable: {type(exc).__name__}"
    return problem


@health.get("/readyz", responses={503: {"description": "not ready: see checks"}})
async def readyz(request: Request, response: Response):
    """Redis and the broker reachable, and the worker group's lag under ``RISKWATCH_API_READY_MAX_LAG``."""
    ctx = ctx_of(request)
    checks: dict = {}
    try:
        checks["redis"] = bool(await ctx.redis.ping())
    except Exception as exc:  # report, do not raise: readiness is a status
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    checks["broker"] = await _broker_reachable(ctx.s.broker)
    if checks["broker"] is True:
        try:
            lag = await asyncio.wait_for(_worker_lag(ctx.s), 8)
            checks["worker_lag"] = lag
            checks["worker"] = lag <= ctx.s.api_ready_max_lag or f"lag {lag} > {ctx.s.api_ready_max_lag}"
        except Exception as exc:
            checks["worker"] = f"lag unknown: {type(exc).__name__}"
    ok = all(checks.get(k) is True for k in ("redis", "broker", "worker"))
    response.status_code = 200 if ok else 503
    return {"ready": ok, "checks": checks}


@health.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}, "description": "Prometheus text"}})
async def metrics(request: Request):
    """Prometheus text: this process's request counts, and the supervision gauges read from Redis."""
    import redis.exceptions as rex

    ctx = ctx_of(request)
    try:
        cfg, _ = await ctx.current_config()
    except (rex.RedisError, OSError):  # Redis down before any config was read: no view to read either
        cfg = None
    await ctx.supervision.refresh(ctx.redis, [t.name for t in cfg.tiers] if cfg else [],
                                  cfg.objections.resolve_within_days if cfg else None)
    return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)


AUDIT_COLUMNS = ("id", "at", "actor", "action", "target", "detail")


@audit_router.get("/v1/audit", responses={
    422: {"model": ErrorOut, "description": "bad filter or cursor"},
    200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}},
          "description": "the entries (JSON, or CSV with format=csv; its next cursor in X-Next-Cursor)"}})
async def get_audit(request: Request, _: Ops, action: Annotated[str | None, Query(max_length=64)] = None,
                    actor: Annotated[str | None, Query(max_length=200)] = None,
                    target: Annotated[str | None, Query(max_length=200)] = None,
                    entity_id: Annotated[str | None, Query(max_length=64)] = None,
                    since: str | None = None, until: str | None = None,
                    cursor: Annotated[str | None, Query(pattern=r"^\d+-\d+$")] = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json"):
    """Every config change, silence, ack/resolve, objection, resolution, reset, draw and file import; newest
    first, append-only. Filters, all optional: ``action`` (a prefix: ``draw.``), ``actor``, ``target``,
    ``entity_id`` (the target, or the entity an entry names), ``since``/``until`` (ISO-8601 with offset).
    ``next_cursor`` goes on where this page stopped (a page may hold fewer than ``limit`` entries and
    still have one: each answer reads at most 20,000 entries); none: nothing more. ``format=csv`` answers
    the page as a CSV file for a report (times in UTC, each entry's detail as JSON; the next cursor in the
    ``X-Next-Cursor`` header)."""
    import redis.exceptions as rex

    filters = {"action": action, "actor": actor, "target": target, "entity_id": entity_id,
               "since": query_time(since, "since"), "until": query_time(until, "until")}
    try:
        entries, nxt = await audit.read(ctx_of(request).redis, limit, cursor, **filters)
    except rex.ResponseError as exc:  # e.g. a cursor before the first entry
        raise HTTPException(422, detail=[{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}]) from exc
    entries = [iso_fields(e) for e in entries]
    if fmt == "csv":
        rows = [e | {"detail": orjson.dumps(e.get("detail") or {}).decode()} for e in entries]
        name = f"audit-{entries[0]['id'] if entries else 'none'}.csv"  # the newest entry's id
        return Response(csv_text(AUDIT_COLUMNS, rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": attachment(name), **({"X-Next-Cursor": nxt} if nxt else {})})
    return {"count": len(entries), "entries": entries, "next_cursor": nxt}


def audit_shipper(ctx: ApiContext) -> Shipper:
    """The copy of the audit log to ``rw.audit`` through the API's producer (:mod:`riskwatch.audit_topic`),
    and what rides on its rounds: the draws' copy (:mod:`riskwatch.draw_copy`), what comes back with the
    audit log (:mod:`riskwatch.audit_derived`) and the view's rebuild after a loss
    (:mod:`riskwatch.view_rebuild`)."""
    from prometheus_client import Counter

    from ..streams.kafka import create_topics

    topic, draws_topic = ctx.s.topic("audit"), ctx.s.topic("draws")
    created = False

    async def producer():
        nonlocal created
        if not created:  # a worker creates every topic, but the API may copy before any worker ran
            await create_topics(ctx.s, {topic: 1, draws_topic: 1}, {topic: TOPIC_CONFIG, draws_topic: TOPIC_CONFIG})
            created = True
        return await ctx.producer()

    async def send(batch: list[tuple[str, bytes]]) -> None:
        p = await producer()
        await asyncio.gather(*[p.send_and_wait(topic, b'{"id":"' + eid.encode() + b'","e":' + e + b"}",
                                               key=eid.encode(), partition=0)
                               for eid, e in batch])

    async def send_draws(values: list[bytes]) -> None:
        p = await producer()
        for v in values:  # in order: a document's chunks, then the record
            await p.send(draws_topic, v, partition=0)
        await p.flush()

    draws = DrawCopy(send_draws, lambda: read_draws(ctx.s, draws_topic),
                     copied=Counter("riskwatch_draws_copied_total", "Spot-check draws copied to the draws topic "
                                    "(once per commitment, execution or withdrawal)", registry=ctx.registry),
                     restored=Counter("riskwatch_draws_restored_total",
                                      "Spot-check draws written back from the draws topic after Redis lost them",
                                      registry=ctx.registry))

    ctx.draw_copy = draws
    ctx.after_loss = AfterLoss(
        lambda: rebuild_view(ctx.s, flush=False),
        rebuilt=Counter("riskwatch_view_rebuilds_total", "View rebuilds from Kafka this API ran after Redis lost "
                        "data", registry=ctx.registry),
        failures=Counter("riskwatch_view_rebuild_failures_total", "View rebuilds after Redis lost data that "
                         "failed (tried again)", registry=ctx.registry))

    async def after_merge(r) -> None:  # what else Redis lost with the audit entries
        back = {k: n for k, n in (await restore_all(r)).items() if n}
        if back:
            log.warning("wrote back from the audit log: %s", ", ".join(f"{n} {k}" for k, n in back.items()))
        await draws.reconcile(r, force=True)
        await noticed(r, "the API (the audit log written back)")

    async def each_round(r) -> None:
        await draws.reconcile(r)
        await ctx.after_loss.check(r)

    return Shipper(send, lambda: read_topic(ctx.s, topic),
                   shipped=Counter("riskwatch_audit_copied_total", "Audit entries copied to the audit topic",
                                   registry=ctx.registry),
                   restored=Counter("riskwatch_audit_restored_total",
                                    "Audit entries written back from the audit topic after Redis lost them",
                                    registry=ctx.registry),
                   failures=Counter("riskwatch_audit_copy_failures_total",
                                    "Rounds of the audit copy that failed (broker or Redis away)",
                                    registry=ctx.registry),
                   after_merge=after_merge, each_round=each_round, before_send=draws.before_send)


def create_api(settings: Settings | None = None) -> FastAPI:
    s = settings or Settings()
    ctx = ApiContext(s)

    @asynccontextmanager
    async def lifespan(app):
        import redis.asyncio as aioredis

        ctx.redis = aioredis.from_url(s.redis_url, decode_responses=True)
        copying = asyncio.create_task(audit_shipper(ctx).run(ctx.redis), name="audit copy")
        yield
        copying.cancel()
        await asyncio.wait([copying], timeout=5)  # never held up by it
        if ctx.after_loss is not None:
            await ctx.after_loss.stop()
        await ctx.close()

    app = FastAPI(title="riskwatch", version=__version__, lifespan=lifespan,
                  description=__doc__.split("\n\n", 1)[1].replace("\n", " "))
    app.state.ctx = ctx
    if s.api_cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=s.api_cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])

    count_requests(app, ctx)
    redis_outage_is_503(app)

    app.include_router(health)
    app.include_router(board.router)

    @app.get("/", include_in_schema=False)
    async def root():
        """A browser at the API's address gets the supervision board."""
        return RedirectResponse("/board", status_code=307)

    for r in (entities.router, alerts.router, spotchecks.router, config_api.router, objections.router, audit_router):
        app.include_router(r, responses=AUTHED)
    return app
