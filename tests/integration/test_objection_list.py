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


def test_overdue_objections_are_listed_oldest_first_and_counted(stack):
    """An entity contested an item of its record and nobody decided: until 2026-12-07 nothing said how long
    an objection had waited, nor which were past the time ops have to resolve them."""
    import random

    from riskwatch.objection_records import OPEN_BY_TIME, OPEN_INDEXED
    from riskwatch.uscc import generate

    s, _ = stack
    ents = [generate(random.Random(k)) for k in range(3)]
    for e in ents:
        seed_view(s.redis_url, 1, first=e)
    r = redis_sync.Redis.from_url(s.redis_url)
    ins, ops, viewer = auth("inspector"), auth("ops"), auth("viewer")
    day = 86400
    with client(s) as c:
        ids = []
        for k, eid in enumerate(ents):
            got = c.post("/v1/objections", json={"entity_id": eid, "target_id": f"c{k}", "target_kind": "complaint",
                                                 "reason": "not ours"}, headers=ins)
            assert got.status_code == 202, got.text
            ids.append(got.json()["objection_id"])
        # filed 20, 16 and 1 days ago (the default gives ops 15)
        for oid, age in zip(ids, (20, 16, 1)):
            o = orjson.loads(r.hget(KEY, oid))
            o["created_at"] -= age * day
            r.hset(KEY, oid, orjson.dumps(o))
            r.zadd(BY_TIME, {oid: o["created_at"]})
            r.zadd(OPEN_BY_TIME, {oid: o["created_at"]})

        def overdue():
            got = c.get("/v1/objections", params={"overdue": "true"}, headers=viewer).json()["objections"]
            return [o["objection_id"] for o in got]

        def metric(name):
            line = next(x for x in c.get("/metrics").text.splitlines() if x.startswith(name + " "))
            return float(line.split()[1])

        assert overdue() == ids[:2]  # oldest first
        first = c.get(f"/v1/objections/{ids[0]}", headers=viewer).json()
        assert first["overdue"] is True and first["due_at"].endswith("+00:00")
        assert c.get(f"/v1/objections/{ids[2]}", headers=viewer).json()["overdue"] is False
        assert (metric("riskwatch_objections_open"), metric("riskwatch_objections_overdue")) == (3, 2)

        # resolved, and closed by a reset of its entity: neither is open any more
        assert c.post(f"/v1/objections/{ids[0]}/resolve", json={"resolution": "upheld"}, headers=ops).status_code == 200
        reset = c.post(f"/v1/entities/{ents[1]}/reset-state", json={"reason": "a bad release"}, headers=ops)
        assert reset.status_code == 202 and reset.json()["objections_closed"] == [ids[1]], reset.text
        assert overdue() == []
        assert (metric("riskwatch_objections_open"), metric("riskwatch_objections_overdue")) == (1, 0)
        assert [o["overdue"] for o in c.get("/v1/objections", headers=viewer).json()["objections"]] == [False] * 3

        # a deployment from before the index: it is built once from the records (open ones only)
        r.delete(OPEN_BY_TIME, OPEN_INDEXED)
        o = orjson.loads(r.hget(KEY, ids[2]))
        o["created_at"] -= 30 * day
        r.hset(KEY, ids[2], orjson.dumps(o))
        assert overdue() == [ids[2]]
        assert (metric("riskwatch_objections_open"), metric("riskwatch_objections_overdue")) == (1, 1)
