"""A tier change the worker listed before the entity's register record reached it carries no region:
the API labels it from the register when it answers (since 2026-12-08)."""

from __future__ import annotations

import time

import orjson
import redis as redis_sync

from riskwatch.api.auth import hash_token
from riskwatch.view import SPOTCHECKS

from .api_helpers import ROLES, auth, client
from .helpers import seed_view

TOKENS = ",".join([f"{r}-user:{r}:{hash_token('t-' + r)}" for r in ROLES]
                  + [f"sh-viewer:viewer:{hash_token('t-sh-viewer')}:31", f"bj-viewer:viewer:{hash_token('t-bj-viewer')}:11"])


def test_a_change_listed_without_region_is_found_by_region_and_by_a_district_token(stack):
    """Until then ``?region=`` and a token limited to regions never saw such a change (an entity's upsert
    and its complaints are on different topics, so a worker may score it first)."""
    s, _ = stack
    seed_view(s.redis_url, 3)  # E0000.. in region 310000
    r = redis_sync.Redis.from_url(s.redis_url)
    change = {"entity_id": "E0000", "ts": "2026-12-01T10:00:00+08:00", "from_tier": "A", "to_tier": "B",
              "from_ratio": 0.03, "to_ratio": 0.05, "score": 35.0, "cause": "c1", "region": None, "industry": None}
    r.zadd(SPOTCHECKS, {orjson.dumps(change): time.time()})
    with client(s, api_tokens=TOKENS) as c:
        found = c.get("/v1/spotchecks/changes", params={"region": "310000"}, headers=auth("viewer")).json()
        assert [x["entity_id"] for x in found["changes"]] == ["E0000"] and found["changes"][0]["region"] == "310000"
        assert c.get("/v1/spotchecks/changes", headers=auth("sh-viewer")).json()["count"] == 1
        assert c.get("/v1/spotchecks/changes", headers=auth("bj-viewer")).json()["count"] == 0
