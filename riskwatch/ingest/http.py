"""``riskwatch ingest``: ``POST /v1/events`` into the input topics.

The body is one event, a JSON array of events, or JSON lines
(``application/x-ndjson``). Every event is validated with the engine's
schemas; valid ones are produced (batch envelopes per topic and partition,
acks=all) and acknowledged only after the broker acknowledged them. The
answer lists the accepted count and, per rejected event, its index and field
errors: 200 when all were accepted, 207 when some were rejected, 400 only when
nothing could be parsed, 413 over the size limit, 503 with ``Retry-After``
when the broker is slow or down (then nothing of the request was
acknowledged: retry it, with the same ``Idempotency-Key``).

``Idempotency-Key`` (per token): the first complete answer is stored for 24 h
and returned again for a retry, without producing anything twice.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import Annotated

import orjson
from fastapi import FastAPI, Header, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from .. import __version__
from ..api.auth import Principal, RateLimiter
from ..api.context import ApiContext, count_requests, errors, need, redis_outage_is_503
from ..errors import Backpressure
from ..settings import Settings
from .plan import group, parse_body, validate
from .producer import IngestProducer

__all__ = ["create_ingest_api"]

IDEM_TTL = 86400


def create_ingest_api(settings: Settings | None = None) -> FastAPI:
    s = settings or Settings()
    ctx = ApiContext(s)
    ctx.limiter = RateLimiter(s.ingest_rate_per_minute, s.ingest_rate_burst)  # feeds, not people
    producer = IngestProducer(s, max_inflight=s.ingest_max_inflight, timeout=s.ingest_broker_timeout)
    r = ctx.registry
    m_events = Counter("riskwatch_ingest_events_total", "Events received, by result (accepted, rejected)",
                       ["result"], registry=r)
    m_rejected = Counter("riskwatch_ingest_rejected_total", "Rejected events by rule", ["rule"], registry=r)
    m_backpressure = Counter("riskwatch_ingest_backpressure_total", "Requests answered 503, by reason", ["reason"],
                             registry=r)
    m_inflight = Gauge("riskwatch_ingest_inflight_events", "Accepted events waiting for the broker's ack",
                       registry=r)
    m_inflight.set_function(lambda: producer.inflight)
    m_ack = Histogram("riskwatch_ingest_ack_seconds", "Request received to broker acknowledged",
                      buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10), registry=r)

    @asynccontextmanager
    async def lifespan(app):
        import redis.asyncio as aioredis

        ctx.redis = aioredis.from_url(s.redis_url, decode_responses=True)
        yield
        await producer.close()
        await ctx.close()

    app = FastAPI(title="riskwatch ingest", version=__version__, lifespan=lifespan,
                  description=__doc__.split("\n\n", 1)[1].replace("\n", " "))
    app.state.ctx = ctx

    count_requests(app, ctx)
    redis_outage_is_503(app)  # idempotency keys need Redis; plain requests go on (see current_config)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}, "description": "Prometheus text"}})
    async def metrics():
        return Response(generate_latest(r), media_type=CONTENT_TYPE_LATEST)

    async def _scheme() -> str:
        cfg, _ = await ctx.current_config()
        return cfg.entity_id_scheme

    @app.post("/v1/events", responses={**errors(400, 401, 403, 409, 429, 503),
                                       207: {"description": "some events rejected (see rejected[])"},
                                       413: {"description": "body over RISKWATCH_INGEST_MAX_BYTES"}})
    async def post_events(request: Request, who: Annotated[Principal, need("ingest")],
                          idempotency_key: Annotated[str | None, Header(max_length=200)] = None):
        """One event, a JSON array, or JSON lines; per-event validation; acknowledged after the broker's ack."""
        t0 = time.perf_counter()
        size = int(request.headers.get("content-length") or 0)
        if size > s.ingest_max_bytes:
            raise HTTPException(413, detail=f"body over {s.ingest_max_bytes} bytes; split it")
        body = await request.body()
        if len(body) > s.ingest_max_bytes:
            raise HTTPException(413, detail=f"body over {s.ingest_max_bytes} bytes; split it")
        idem = f"rw:ingest:idem:{who.name}:{idempotency_key}" if idempotency_key else None
        if idem:
            prev = await ctx.redis.get(idem)
            if prev == "pending":
                raise HTTPException(409, detail="a request with this Idempotency-Key is in progress")
            if prev:
                saved = orjson.loads(prev)
                return Response(orjson.dumps(saved["body"]), status_code=saved["status"],
                                media_type="application/json", headers={"Idempotent-Replayed": "true"})
            if not await ctx.redis.set(idem, "pending", nx=True, ex=60):
                raise HTTPException(409, detail="a request with this Idempotency-Key is in progress")
        try:
            items, fatal = parse_body(request.headers.get("content-type", ""), body)
            if fatal:
                raise HTTPException(400, detail=fatal)
            ok, bad = validate(items, await _scheme(), s.max_event_future_s)
            try:
                await producer.send(group(ok, s.partitions), len(ok))
            except Backpressure as exc:
                m_backpressure.labels(exc.reason).inc()
                raise HTTPException(503, detail=str(exc), headers={"Retry-After": str(max(1, round(exc.retry_after)))}) \
                    from exc
            m_events.labels("accepted").inc(len(ok))
            m_events.labels("rejected").inc(len(bad))
            for _, errs in bad:
                m_rejected.labels(errs[0]["rule"] if errs else "invalid").inc()
            out = {"accepted": len(ok), "rejected": [{"index": i, "errors": errs} for i, errs in bad]}
            status = 207 if bad else 200
            if idem:
                await ctx.redis.set(idem, orjson.dumps({"status": status, "body": out}), ex=IDEM_TTL)
                idem = None
            m_ack.observe(time.perf_counter() - t0)
            return Response(orjson.dumps(out), status_code=status, media_type="application/json")
        finally:
            if idem:  # failed before a complete answer: the client may retry with the same key
                await ctx.redis.delete(idem)

    return app
