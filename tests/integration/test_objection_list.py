"""The objections list reads its index in pages, as far as the answer needs, in filing order."""

from __future__ import annotations

import orjson
import redis as redis_sync

from riskwatch.objection_records import BY_TIME, KEY

from .api_helpers import auth, client
from .helpers import seed_view

ENTITIES = ("E0000", "E0001", "E0002")


def test_the_list_pages_through_the_index_newest_first(stack):
    s, _ = stack
    seed_view(s.redis_url, 3)
    r = redis_sync.Redis.from_url(s.redis_url)
    recs = [{"objection_id": f"obj-{i:04d}", "entity_id": ENTITIES[i % 3], "target_id": f"c{i}",
             "target_kind": "complaint", "reason": "r", "status": "resolved" if i % 7 == 0 else "open",
             "created_at": 1_796_000_000.0 + i, "created_by": "li"} for i in range(650)]
    pipe = r.pipeline()
    for o in recs:
        pipe.hset(KEY, o["objection_id"], orjson.dumps(o))
        pipe.zadd(BY_TIME, {o["objection_id"]: o["created_at"]})
    pipe.execute()
    newest = list(reversed(recs))
    with client(s) as c:
        def ids(**params):
            got = c.get("/v1/objections", params=params, headers=auth("viewer"))
            assert got.status_code == 200, got.text
            return [o["objection_id"] for o in got.json()["objections"]]

        assert ids(limit=5) == [o["objection_id"] for o in newest[:5]]
        assert ids(limit=500) == [o["objection_id"] for o in newest[:500]]
        resolved = [o["objection_id"] for o in newest if o["status"] == "resolved"]
        assert ids(status="resolved", limit=500) == resolved and len(resolved) == 93  # past two pages of 200
        assert ids(entity_id="E0002", status="resolved", limit=3) == \
            [o["objection_id"] for o in newest if o["status"] == "resolved" and o["entity_id"] == "E0002"][:3]
        assert ids(status="closed") == []
