"""FastAPI app over the Redis view: health, readiness, entities, metrics.

Token auth, alerts, thresholds and objections come with the API issue.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Annotated

import orjson
from fastapi import FastAPI, HTTPException, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from ..events import validate_entity_id
from ..settings import Settings
from ..view import entity_key, history_key

__all__ = ["create_api"]


def create_api(settings: Settings | None = None, entity_id_scheme: str = "uscc") -> FastAPI:
    s = settings or Settings()
    registry = CollectorRegistry()
    requests = Counter("riskwatch_api_requests_total", "API requests by route and status",
                       ["route", "status"], registry=registry)
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app):
        import redis.asyncio as aioredis

        state["r"] = aioredis.from_url(s.redis_url, decode_responses=True)
        yield
        await state.pop("r").aclose()

    app = FastAPI(title="riskwatch", version="0.1.0", lifespan=lifespan,
                  description="Risk state of supervised entities (derived view; Kafka is the source of truth).")

    def redis():
        return state["r"]

    @app.middleware("http")
    async def count(request, call_next):
        resp = await call_next(request)
        route = request.scope.get("route")
        requests.labels(getattr(route, "path", "unmatched"), str(resp.status_code)).inc()
        return resp

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(response: Response):
        checks = {}
        try:
            checks["redis"] = bool(await redis().ping())
        except Exception as exc:  # report, do not raise: readiness is a status
            checks["redis"] = f"unreachable: {type(exc).__name__}"
        try:
            import asyncio

            host, port = s.broker.rsplit(":", 1)
            _, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
            w.close()
            checks["broker"] = True
        except Exception as exc:
            checks["broker"] = f"unreachable: {type(exc).__name__}"
        ok = all(v is True for v in checks.values())
        response.status_code = 200 if ok else 503
        return {"ready": ok, "checks": checks}

    def _entity(h: dict, eid: str) -> dict:
        out = {"entity_id": eid, "name": h.get("name"), "industry": h.get("industry"), "region": h.get("region"),
               "score": float(h["score"]) if "score" in h else None, "tier": h.get("tier"),
               "spotcheck_ratio": float(h["ratio"]) if "ratio" in h else None, "updated": h.get("updated"),
               "config_version": h.get("config_version")}
        out["reasons"] = orjson.loads(h["reasons"]) if h.get("reasons") else []
        return out

    @app.get("/v1/entities/{entity_id}")
    async def get_entity(entity_id: str):
        try:
            validate_entity_id(entity_id, entity_id_scheme)
        except ValueError as exc:
            raise HTTPException(422, detail=[{"loc": ["path", "entity_id"], "msg": str(exc)}]) from exc
        h = await redis().hgetall(entity_key(entity_id))
        if not h:
            raise HTTPException(404, detail=f"entity {entity_id} has no risk state")
        return _entity(h, entity_id)

    @app.get("/v1/entities/{entity_id}/history")
    async def get_history(entity_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100):
        rows = await redis().zrevrange(history_key(entity_id), 0, limit - 1)
        if not rows and not await redis().exists(entity_key(entity_id)):
            raise HTTPException(404, detail=f"entity {entity_id} has no risk state")
        return {"entity_id": entity_id, "history": [orjson.loads(r) for r in rows]}

    @app.get("/v1/entities")
    async def list_entities(tier: str | None = None, region: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
                            industry: str | None = None, min_score: Annotated[float, Query(ge=0, le=100)] = 0.0,
                            limit: Annotated[int, Query(ge=1, le=500)] = 50):
        key = ("rw:rank:tier:" + tier if tier else "rw:rank:region:" + region if region
               else "rw:rank:industry:" + industry if industry else "rw:rank")
        r = redis()
        ids = await r.zrevrangebyscore(key, 100, min_score, start=0, num=limit, withscores=True)
        pipe = r.pipeline(transaction=False)
        for eid, _ in ids:
            pipe.hgetall(entity_key(eid))
        rows = await pipe.execute()
        items = [_entity(h, eid) for (eid, _), h in zip(ids, rows) if h]
        if tier and (region or industry):
            items = [i for i in items if (not region or i["region"] == region)
                     and (not industry or i["industry"] == industry)]
        return {"count": len(items), "entities": items}

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
