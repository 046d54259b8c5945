"""What every API route shares: settings, Redis, a Kafka producer for commands, auth."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

import orjson
import redis.exceptions as rex
from fastapi import Depends, HTTPException, Request
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel

from ..claims import RELEASE
from ..config import CURRENT_CONFIG, Config, config_from_dict, load_config
from ..kafka_security import client_options
from ..metrics import build_info
from ..settings import Settings
from ..streams.codec import partition_for
from ..view import entity_key
from .auth import Principal, RateLimiter, TokenRegistry, allows, hash_token
from .supervision import SupervisionGauges

__all__ = ["ApiContext", "claim", "need", "ctx_of", "count_requests", "field_errors", "errors", "AUTHED", "ErrorOut",
           "query_time", "redis_outage_is_503", "REDIS_OUTAGES", "SCOPED_ROUTES", "visible_entity",
           "visible_entities"]

#: Redis unreachable, loading its data after a restart, or a read-only replica after a failover
REDIS_OUTAGES = (rex.ConnectionError, rex.TimeoutError, rex.ReadOnlyError)


class ApiContext:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.names_current = False  # rw:names checked against view.NAMES_FORMAT (entities.py)
        self.regions_indexed = False  # rw:registered:* checked against view_regions.REGIONS_FORMAT (board.py)
        spec = settings.api_tokens
        if settings.api_token:  # a single plaintext admin token from the environment (development)
            spec = ",".join(x for x in (spec, f"env-admin:admin:{hash_token(settings.api_token)}") if x)
        self.tokens = TokenRegistry.parse(spec)
        self.limiter = RateLimiter(settings.api_rate_per_minute, settings.api_rate_burst)
        self.registry = CollectorRegistry()
        build_info(self.registry)
        self.requests = Counter("riskwatch_api_requests_total", "API requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.denied = Counter("riskwatch_api_denied_total", "Requests refused by auth or rate limit, by reason",
                              ["reason"], registry=self.registry)
        self.supervision = SupervisionGauges(self.registry)
        self.redis = None
        self.draw_copy = None  # the draws' copy on Kafka (riskwatch.draw_copy.DrawCopy), set by api.app
        self.after_loss = None  # the view rebuilt after Redis lost data (riskwatch.view_rebuild), set by api.app
        self._config: tuple | None = None  # (raw in Redis, Config, meta) last parsed
        self._producer = None
        self._lock = asyncio.Lock()

    # ----------------------------------------------------------- config in force
    async def current_config(self) -> tuple[Config, dict]:
        """The config in force; parsed and validated only when it changed (called on every request).

        With Redis unavailable, the last one read (none yet: the error goes on, a 503): the ingest
        gateway needs it for every request, and events go to Kafka, not to Redis."""
        import redis.exceptions as rex

        cached = self._config
        try:
            raw = await self.redis.get(CURRENT_CONFIG)
        except (rex.ConnectionError, rex.TimeoutError):
            if cached is None:
                raise
            return cached[1], cached[2]
        if cached is not None and cached[0] == raw:
            return cached[1], cached[2]
        if raw:
            cmd = orjson.loads(raw)
            cfg, meta = config_from_dict(cmd["config"]), {k: v for k, v in cmd.items() if k != "config"}
        else:
            cfg = load_config(self.s.config_path)
            meta = {"seq": 0, "version": cfg.version, "source": str(self.s.config_path or "config/riskwatch.yaml")}
        self._config = (raw, cfg, meta)
        return cfg, meta

    # ----------------------------------------------------------- commands to Kafka
    async def producer(self):
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        async with self._lock:
            if self._producer is None:
                p = AIOKafkaProducer(**client_options(self.s), acks="all", request_timeout_ms=10_000)
                try:
                    await asyncio.wait_for(p.start(), 10)
                except (KafkaError, OSError, asyncio.TimeoutError) as exc:
                    await p.stop()
                    raise HTTPException(503, detail=f"broker unavailable: {type(exc).__name__}",
                                        headers={"Retry-After": "5"}) from exc
                self._producer = p
        return self._producer

    async def send_command(self, event: dict, entity_id: str | None = None, author: str | None = None) -> None:
        """To the commands topic: an entity's partition, or every partition (config changes). ``author``
        goes as the message header ``author`` (``rebuild-view`` reads it back: the workers do not)."""
        from aiokafka.errors import KafkaError

        p = await self.producer()
        topic = self.s.topic("commands")
        value = orjson.dumps(event)
        headers = [("author", author.encode())] if author else None
        try:
            if entity_id is not None:
                await p.send_and_wait(topic, value, key=entity_id.encode(), headers=headers,
                                      partition=partition_for(entity_id.encode(), self.s.partitions))
            else:
                await asyncio.gather(*[p.send_and_wait(topic, value, partition=i) for i in range(self.s.partitions)])
        except KafkaError as exc:
            raise HTTPException(503, detail=f"broker did not accept the command: {type(exc).__name__}",
                                headers={"Retry-After": "5"}) from exc

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self.redis is not None:
            await self.redis.aclose()


def count_requests(app, ctx: ApiContext) -> None:
    """Count every response by route and status (``riskwatch_api_requests_total``); time it in a header."""

    @app.middleware("http")
    async def count(request, call_next):
        t0 = time.perf_counter()
        resp = await call_next(request)
        route = request.scope.get("route")
        ctx.requests.labels(getattr(route, "path", "unmatched"), str(resp.status_code)).inc()
        resp.headers["X-Response-Time-Ms"] = f"{(time.perf_counter() - t0) * 1000:.1f}"
        return resp


def redis_outage_is_503(app) -> None:
    """Redis unreachable, loading its data after a restart, or a read-only replica after a failover:
    503 with ``Retry-After``, as for the broker (until 2026-11-28: a bare 500 and a traceback)."""
    import logging

    from fastapi.responses import JSONResponse

    log = logging.getLogger("riskwatch.api")

    async def outage(request: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis unavailable (%s: %s): 503 for %s", type(exc).__name__, exc, request.url.path)
        return JSONResponse({"detail": f"Redis unavailable ({type(exc).__name__}); retry later"}, status_code=503,
                            headers={"Retry-After": "5"})

    for exc_type in REDIS_OUTAGES:
        app.add_exception_handler(exc_type, outage)


def ctx_of(request: Request) -> ApiContext:
    return request.app.state.ctx


#: What a token limited to regions may call: each of these keeps to the token's regions (entities, their
#: history and alerts, tier changes, objections, a draw's work list) or holds no entity's data (the config
#: in force, the list of draws). Every other route serves every region (a draw, silences, config changes,
#: audit, imports) and answers such a token 403: a route is closed to it until it is added here, after it
#: keeps to the regions (tests/integration/test_scoped_tokens.py calls every route with one).
SCOPED_ROUTES = frozenset({
    ("GET", "/v1/entities"), ("GET", "/v1/entities/{entity_id}"), ("GET", "/v1/entities/{entity_id}/history"),
    ("GET", "/v1/alerts"), ("GET", "/v1/alerts/{alert_id}"), ("POST", "/v1/alerts/{alert_id}/ack"),
    ("POST", "/v1/alerts/{alert_id}/resolve"),
    ("GET", "/v1/spotchecks/changes"), ("GET", "/v1/spotchecks/draws/{draw_id}/worklist"),
    ("GET", "/v1/spotchecks/draws"),  # the draws' commitments, no entity: which work lists there are
    ("GET", "/v1/objections"), ("POST", "/v1/objections"), ("GET", "/v1/objections/{objection_id}"),
    ("POST", "/v1/objections/{objection_id}/resolve"),
    ("GET", "/v1/config"),
})


async def visible_entity(r, who: Principal, entity_id: str) -> bool:
    """Whether ``who`` may see the entity: its region (the view's, from its register data) is in the
    principal's regions. An entity with no register data has no region: only unlimited tokens see it."""
    return entity_id in await visible_entities(r, who, {entity_id})


async def visible_entities(r, who: Principal, entity_ids: set[str]) -> set[str]:
    """Those of ``entity_ids`` that ``who`` may see (:func:`visible_entity`), in one pipelined read."""
    if who.regions is None:
        return set(entity_ids)
    ids = sorted(entity_ids)
    pipe = r.pipeline(transaction=False)
    for eid in ids:
        pipe.hget(entity_key(eid), "region")
    return {eid for eid, region in zip(ids, await pipe.execute())
            if who.sees(region.decode() if isinstance(region, bytes) else region)}


def need(role: str):
    """A dependency: the caller's principal, if its token is valid, within its rate, and its role suffices."""

    async def dep(request: Request) -> Principal:
        ctx = ctx_of(request)
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            ctx.denied.labels("no_token").inc()
            raise HTTPException(401, detail="missing bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})
        p = ctx.tokens.lookup(token.strip())
        if p is None:
            ctx.denied.labels("bad_token").inc()
            raise HTTPException(401, detail="invalid token", headers={"WWW-Authenticate": "Bearer"})
        wait = ctx.limiter.take(p.token_hash)
        if wait is not None:
            ctx.denied.labels("rate_limited").inc()
            raise HTTPException(429, detail="rate limit exceeded for this token",
                                headers={"Retry-After": str(max(1, round(wait)))})
        if not allows(p.role, role):
            ctx.denied.labels("forbidden").inc()
            raise HTTPException(403, detail=f"role {p.role!r} may not do this; it needs {role!r} or higher")
        if p.regions is not None and (request.method, getattr(request.scope.get("route"), "path", None)) \
                not in SCOPED_ROUTES:
            ctx.denied.labels("regions").inc()
            raise HTTPException(403, detail=f"a token limited to regions {'+'.join(p.regions)} may not use this "
                                            "route: it serves every region")
        return p

    return Depends(dep)


Viewer = Annotated[Principal, need("viewer")]
Inspector = Annotated[Principal, need("inspector")]
Ops = Annotated[Principal, need("ops")]


def field_errors(errors, prefix: tuple = ("body",)) -> list[dict]:
    """:class:`~riskwatch.errors.FieldError` s as FastAPI-style 422 details (``loc`` names the field)."""
    return [{"loc": [*prefix, *e.field.split(".")], "msg": e.message, "type": e.rule} for e in errors]


class ErrorOut(BaseModel):
    """Every error: ``detail`` is a message, or a list of field errors (``loc`` names the field)."""

    detail: str | list[dict]


_DESCRIPTIONS = {400: "the body is not valid JSON", 401: "no valid bearer token", 403: "the token's role may not",
                 404: "not found", 409: "conflicts with the current state",
                 412: "If-Match names a config that is no longer in force (the ETag says which is)",
                 429: "rate limit (see Retry-After)",
                 503: "broker or Redis unavailable (see Retry-After)"}


def errors(*codes: int) -> dict:
    """OpenAPI ``responses`` for these error codes."""
    return {c: {"model": ErrorOut, "description": _DESCRIPTIONS[c]} for c in codes}


def query_time(v: str | None, name: str) -> float | None:
    """A query parameter's ISO-8601 time with offset as epoch seconds; 422 naming it otherwise."""
    if v is None:
        return None
    try:
        d = datetime.fromisoformat(v)
        if d.tzinfo is None:
            raise ValueError("needs a UTC offset")
        return d.timestamp()
    except ValueError as exc:
        raise HTTPException(422, detail=[{"loc": ["query", name], "msg": f"ISO-8601 time with offset: {exc}",
                                          "type": "datetime_parsing"}]) from exc


AUTHED = errors(400, 401, 403, 429, 503)  # 503: Redis (every route) or the broker (commands)


@asynccontextmanager
async def claim(r, key: str, busy: str, headers: dict | None = None, seconds: int = 60):
    """Hold ``key`` in Redis while a step is checked, its command sent and its record written, where the
    command cannot go inside a transaction: of two requests at once for the same step (a double click,
    two people, a client's retry), the second gets 409 ``busy``. The claim expires after ``seconds`` if
    the API dies holding it, and is released only by its holder (one that outlived its expiry does not
    release a claim taken since)."""
    token = uuid.uuid4().hex
    if not await r.set(key, token, nx=True, ex=seconds):
        raise HTTPException(409, detail=busy, headers=headers)
    try:
        yield
    finally:
        await r.eval(RELEASE, 1, key, token)
