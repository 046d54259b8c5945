"""An API client per role against the test's stack (real Redis, real broker)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from riskwatch.api.app import create_api
from riskwatch.api.auth import hash_token

ROLES = ("viewer", "inspector", "ops", "admin")


def api_settings(s, **kw):
    tokens = ",".join(f"{r}-user:{r}:{hash_token('t-' + r)}" for r in ROLES)
    return s.model_copy(update={"api_tokens": tokens, "api_rate_burst": 100_000, **kw})


def auth(role: str) -> dict:
    return {"Authorization": f"Bearer t-{role}"}


def client(s, **kw) -> TestClient:
    return TestClient(create_api(api_settings(s, **kw)))
