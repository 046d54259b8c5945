"""Objections when Redis loses their records: the disputed item stays out of the entity's score (its
state holds the dispute), so the open objection must stay listed and resolvable."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import redis as redis_sync

from riskwatch.rebuild import rebuild_view

from .api_helpers import auth, client
from .conftest import own_redis_stack, wait_for
from .helpers import OwnRedis, produce

E = "91350100M000100Y43"  # a valid USCC
INS, OPS, VIEWER = auth("inspector"), auth("ops"), auth("viewer")


def _recent(minutes_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).isoformat()


def _entity(c) -> dict | None:
    r = c.get(f"/v1/entities/{E}", headers=VIEWER)
    return r.json() if r.status_code == 200 else None


def _near(a: str, b: str) -> bool:
    """Two API times within a millisecond (one read back from the command's ISO time)."""
    return abs((datetime.fromisoformat(a) - datetime.fromisoformat(b)).total_seconds()) < 1e-3


def _objections(c, **params) -> dict[str, dict]:
    got = c.get("/v1/objections", params={"entity_id": E, **params}, headers=VIEWER).json()
    return {o["target_id"]: o for o in got["objections"]}


def test_an_open_objection_outlives_a_redis_that_lost_it(services, tmp_path):
    """Until 2026-12-07 a Redis restarted without its data lost every objection's record while the
    entity's state kept the contested complaint out of its score: the objection was in no list, the
    entity showed nothing disputed, its resolution answered 404, and a new objection to the same
    complaint was taken, so nothing said why the score left that complaint out, nor could ops end it."""
    red = OwnRedis(tmp_path / "redis")
    s, workers = own_redis_stack(services, red, tmp_path, "obr")
    try:
        produce(s, [{"type": "entity", "entity_id": E, "name": "Shop", "industry": "food", "region": "350100"}] +
                [{"type": "complaint", "complaint_id": f"c{i}", "entity_id": E, "ts": _recent(30 - i),
                  "category": f"k{i}", "severity": 3} for i in range(3)])
        a = workers.start()
        with client(s) as c:
            wait_for(lambda: (x := _entity(c)) and x["tier"] != "A", 60, "tier above A", workers.logs)
            ids = {}
            for t in ("c0", "c1"):
                r = c.post("/v1/objections", json={"entity_id": E, "target_id": t, "target_kind": "complaint",
                                                    "reason": f"{t} is not our shop"}, headers=INS)
                assert r.status_code == 202, r.text
                ids[t] = r.json()["objection_id"]
            assert c.post(f"/v1/objections/{ids['c1']}/resolve", json={"resolution": "upheld", "note": "it is"},
                          headers=OPS).status_code == 200
            wait_for(lambda: "resolution" in _objections(c, status="resolved")["c1"]["effects"], 60,
                     "c1's resolution applied", workers.logs)
            before = _entity(c)
            assert len(before["disputed"]) == 1 and before["disputed"][0]["effect"] == "excluded"
            assert before["disputed"][0]["target_id"] == "c0"
            score = before["score"]

            red.restart()  # without its data
            r = redis_sync.Redis.from_url(red.url, decode_responses=True)
            wait_for(lambda: r.hlen("rw:view:parts") == 4, 60, "the worker to write the view back", workers.logs)
            after = _entity(c)
            assert after["score"] == score  # the state still leaves c0 out ...
            # ... and says so: the open objection is back, with its id and since when
            since = before["disputed"][0]["since"]
            assert [(d["objection_id"], d["target_id"]) for d in after["disputed"]] == [(ids["c0"], "c0")]
            assert _near(after["disputed"][0]["since"], since)
            listed = _objections(c)
            assert list(listed) == ["c0"] and listed["c0"]["status"] == "open"
            assert listed["c0"]["restored"] == "state" and listed["c0"]["reason"] is None
            assert "restored 1 open objection(s)" in workers.log(a)
            assert workers.metric(a, "riskwatch_objections_restored_total") == 1
            # one objection per item still
            assert c.post("/v1/objections", json={"entity_id": E, "target_id": "c0", "target_kind": "complaint",
                                                   "reason": "again"}, headers=INS).status_code == 409

            # rebuild-view puts back what the states do not hold, from rw.commands: the reason, and the
            # resolved objection with its note
            counts = asyncio.run(rebuild_view(s, flush=False))
            assert counts["objections"] == 2, counts
            listed = _objections(c)
            assert (listed["c0"]["reason"], listed["c0"]["created_by"], listed["c0"]["restored"]) == \
                ("c0 is not our shop", "inspector-user", "rw.commands")
            assert (listed["c1"]["status"], listed["c1"]["resolution"], listed["c1"]["note"],
                    listed["c1"]["resolved_by"]) == ("resolved", "upheld", "it is", "ops-user")
            assert _near(listed["c0"]["created_at"], since)
            now = _entity(c)["disputed"]  # its effect too, from rw.risk-changes
            assert [{**d, "since": None} for d in now] == [{**d, "since": None} for d in before["disputed"]]
            assert _near(now[0]["since"], since)

            # and ops can end it
            res = c.post(f"/v1/objections/{ids['c0']}/resolve", json={"resolution": "revoked"}, headers=OPS)
            assert res.status_code == 200, res.text
            wait_for(lambda: "resolution" in c.get(f"/v1/objections/{ids['c0']}", headers=VIEWER).json()["effects"],
                     60, "the resolution applied", workers.logs)
            got = c.get(f"/v1/objections/{ids['c0']}", headers=VIEWER).json()
            assert got["effects"]["resolution"]["effect"] == "removed"  # out while disputed, and now for good
            done = _entity(c)
            assert done["disputed"] == [] and done["score"] <= score
    finally:
        workers.stop_all()
        red.stop()


def test_put_back_never_replaces_what_the_api_wrote(redis_url):
    """Each rule of :data:`riskwatch.objection_records.PUT_BACK` against a real Redis."""
    import orjson
    import redis.asyncio as aioredis

    from riskwatch.objection_records import BY_TIME, KEY, OPEN, OPEN_BY_TIME, PUT_BACK, put_back, record

    async def run() -> tuple[list[int], dict, set, list, list]:
        r = aioredis.from_url(redis_url)
        try:
            script = r.register_script(PUT_BACK)
            api = record("o-api", "E1", "c1", "complaint", reason="the API's", created_at=100.0, created_by="li")
            await r.hset(KEY, "o-api", orjson.dumps(api))
            await r.sadd(OPEN + "E1", "o-api")
            stub = record("o-2", "E1", "c2", "complaint", created_at=200.0, restored="state")
            full = {**record("o-2", "E1", "c2", "complaint", reason="why", created_at=200.0, created_by="li",
                             restored="rw.commands"), "status": "resolved", "resolution": "revoked"}
            cases = [
                record("o-api", "E1", "c1", "complaint", restored="state"),  # the API's record: kept
                {**api, "reason": "older", "restored": "rw.commands"},  # the API's record: kept
                record("o-old", "E1", "c1", "complaint", restored="rw.commands"),  # c1 has an open objection
                stub,  # put back, open
                record("o-2", "E1", "c2", "complaint", restored="state"),  # there already
                full,  # replaces the stub, no longer open
                {**full, "reason": "again"},  # not over one from the topic
                record("o-3", "E2", "r1", "record", restored="state"),  # no time known: listed last
            ]
            done = []
            for rec in cases:
                pipe = r.pipeline(transaction=False)
                await put_back(pipe, script, rec)
                done += await pipe.execute()
            recs = {k.decode(): orjson.loads(v) for k, v in (await r.hgetall(KEY)).items()}
            return (done, recs, await r.smembers(OPEN + "E1") | await r.smembers(OPEN + "E2"),
                    await r.zrange(BY_TIME, 0, -1, withscores=True),
                    await r.zrange(OPEN_BY_TIME, 0, -1, withscores=True))
        finally:
            await r.aclose()

    done, recs, open_ids, by_time, open_by_time = asyncio.run(run())
    assert done == [0, 0, 0, 1, 0, 1, 0, 1]
    assert recs["o-api"]["reason"] == "the API's" and "restored" not in recs["o-api"]
    assert (recs["o-2"]["status"], recs["o-2"]["reason"], recs["o-2"]["restored"]) == ("resolved", "why", "rw.commands")
    assert "o-old" not in recs and recs["o-3"]["created_at"] is None
    assert open_ids == {b"o-api", b"o-3"}
    assert by_time == [(b"o-3", 0.0), (b"o-2", 200.0)]
    assert open_by_time == [(b"o-3", 0.0)]  # o-2 put back open, then resolved; the API's own is the API's to index
