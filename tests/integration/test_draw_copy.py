"""Spot-check draws outlive Redis: the API copies each to ``rw.draws`` with its audit entry and writes it
back from there (:mod:`riskwatch.draw_copy`)."""

from __future__ import annotations

import asyncio
import hashlib

import orjson
import redis as redis_sync

from riskwatch.audit_topic import SHIPPED
from riskwatch.draw_copy import DRAWS, LAST_INSPECTOR, RECONCILED, DrawCopy, population_key
from riskwatch.draw_copy import read_topic as read_draws
from riskwatch.draw_verify import verify_draw

from .api_helpers import auth, client
from .conftest import wait_for
from .helpers import read_topic, seed_view

OPS = auth("ops")
DRAW = {"period": "2026-01", "capacity": 12, "control_share": 0.25, "inspectors": ["li", "wang", "zhao"]}


def _last_audit_id(c) -> str:
    return c.get("/v1/audit", params={"limit": 1}, headers=OPS).json()["entries"][0]["id"]


def _draws(c) -> dict[str, dict]:
    listed = c.get("/v1/spotchecks/draws", params={"limit": 50}, headers=OPS).json()["draws"]
    return {d["id"]: c.get(f"/v1/spotchecks/draws/{d['id']}", params={"population": "true"}, headers=OPS).json()
            for d in listed}


def test_draws_come_back_after_redis_lost_them(stack):
    """Until 2026-12-08 a Redis restarted without its data lost every draw: 404 for each, no work list,
    no outcomes, nothing for ``verify-draw``, the draw's task and period free for another draw, and the
    inspectors' rotation started over."""
    s, _ = stack
    r = redis_sync.Redis.from_url(s.redis_url, decode_responses=True)
    seed_view(s.redis_url, 60)
    with client(s) as c:
        first = c.post("/v1/spotchecks/draws", json=DRAW, headers=OPS).json()["id"]
        assert c.post(f"/v1/spotchecks/draws/{first}/execute", headers=OPS).status_code == 200
        second = c.post("/v1/spotchecks/draws", json={**DRAW, "period": "2026-02"}, headers=OPS).json()["id"]
        assert c.post(f"/v1/spotchecks/draws/{second}/execute", headers=OPS).status_code == 200
        withdrawn = c.post("/v1/spotchecks/draws", json={**DRAW, "period": "2026-03"}, headers=OPS).json()["id"]
        assert c.post(f"/v1/spotchecks/draws/{withdrawn}/withdraw", json={"reason": "wrong capacity"},
                      headers=OPS).status_code == 200
        pending = c.post("/v1/spotchecks/draws", json={**DRAW, "period": "2026-04"}, headers=OPS).json()["id"]
        before = _draws(c)
        assert set(before) == {first, second, withdrawn, pending}
        work = c.get(f"/v1/spotchecks/draws/{second}/worklist", headers=OPS).json()
        inspectors = r.hgetall(LAST_INSPECTOR)
        assert len(inspectors) > 12  # two draws' assignments, the second's over the first's
        last = _last_audit_id(c)
        wait_for(lambda: r.get(SHIPPED) == last, 15, f"the copy up to {last}")

        r.flushall()  # Redis restarted without its data
        seed_view(s.redis_url, 60)
        # at once, before a copy round wrote the draws back: an executed draw's task and period are still taken
        again = c.post("/v1/spotchecks/draws", json=DRAW, headers=OPS)
        assert again.status_code == 409 and f"draw {first} (executed)" in again.json()["detail"], again.text
        after = wait_for(lambda: (lambda d: d if len(d) == 4 else None)(_draws(c)), 20, "the draws back",
                         on_fail=lambda: str(list(_draws(c))))
        assert after == before  # records, results and populations, as published before
        assert all(ok for _, ok, _ in verify_draw(after[first]))
        assert c.get(f"/v1/spotchecks/draws/{second}/worklist", headers=OPS).json() == work
        assert r.hgetall(LAST_INSPECTOR) == inspectors
        assert "riskwatch_draws_restored_total 4.0" in c.get("/metrics").text
        # the committed draw's seed was never copied: it cannot execute, holds no scope, and can be withdrawn
        no = c.post(f"/v1/spotchecks/draws/{pending}/execute", headers=OPS)
        assert no.status_code == 409 and "secret seed" in no.json()["detail"] and "withdraw it" in no.json()["detail"]
        assert c.post("/v1/spotchecks/draws", json={**DRAW, "period": "2026-04"}, headers=OPS).status_code == 201
        assert c.post(f"/v1/spotchecks/draws/{pending}/withdraw", json={"reason": "its seed was lost"},
                      headers=OPS).status_code == 200


def test_the_secret_seed_is_never_on_the_topic(stack):
    """A committed draw's record goes to the topic without its seed; the seed follows only once the
    draw is executed and the record discloses it."""
    s, _ = stack
    r = redis_sync.Redis.from_url(s.redis_url, decode_responses=True)
    seed_view(s.redis_url, 30)
    with client(s) as c:
        did = c.post("/v1/spotchecks/draws", json=DRAW, headers=OPS).json()["id"]
        seed = r.hget("rw:draws:secret", did)
        last = _last_audit_id(c)
        wait_for(lambda: r.get(SHIPPED) == last, 15, "the commitment copied")
        raw = b"".join(v for _, _, v in read_topic(s.broker, s.topic("draws")))
        records, pops, refused = asyncio.run(read_draws(s, s.topic("draws")))
        assert refused == 0 and orjson.loads(records[did])["status"] == "committed"
        assert seed.encode() not in raw and seed not in records[did].decode()
        assert pops[did] == r.get(population_key(did)).encode()
        assert c.post(f"/v1/spotchecks/draws/{did}/execute", headers=OPS).status_code == 200
        last = _last_audit_id(c)
        wait_for(lambda: r.get(SHIPPED) == last, 15, "the execution copied")
        records, _, _ = asyncio.run(read_draws(s, s.topic("draws")))
        assert orjson.loads(records[did])["seed"] == seed


def test_draws_made_before_the_copy_are_sent_and_a_large_population_comes_back_whole(stack):
    """Draws Redis holds that the topic lacks (made before 2026-12-08) are sent once, the first round on
    a Redis without :data:`RECONCILED`; a population of 100,000 entities goes in several messages and
    comes back byte for byte."""
    s, _ = stack

    async def go():
        import redis.asyncio as aioredis

        from riskwatch.api.app import audit_shipper
        from riskwatch.api.context import ApiContext
        from riskwatch.streams.kafka import create_topics, read_messages

        r = aioredis.from_url(s.redis_url)
        pop = orjson.dumps(sorted([hashlib.sha1(str(i).encode()).hexdigest()[:18].upper(), "ABCD"[i % 4],
                                   0.05 * (1 + i % 4)] for i in range(100_000)))  # 3.5 MB, 1.1 MB compressed
        old = {"id": "draw-old", "status": "committed", "period": "2025-11", "committed_at": 1.7e9, "task": "routine"}
        await r.hset(DRAWS, "draw-old", orjson.dumps(old))
        await r.set(population_key("draw-old"), pop)
        topic = s.topic("draws")
        await create_topics(s, {topic: 1}, {})
        ctx = ApiContext(s)
        try:
            shipper = audit_shipper(ctx)
            await shipper.round(r)
            sent = len([m async for m in read_messages(s, topic)])
            records, pops, refused = await read_draws(s, topic)
            assert refused == 0 and records == {"draw-old": orjson.dumps(old)} and pops["draw-old"] == pop
            assert sent == 1 + 5  # the record, and the population in 5 messages of at most 256 KiB
            assert await r.get(RECONCILED)
            await shipper.round(r)  # nothing new to send
            assert len([m async for m in read_messages(s, topic)]) == sent

            await r.flushall()
            back = await DrawCopy(None, lambda: read_draws(s, topic)).reconcile(r)
            assert back == (1, 0)
            assert await r.get(population_key("draw-old")) == pop
            assert orjson.loads(await r.hget(DRAWS, "draw-old")) == old
        finally:
            await ctx.close()
            await r.aclose()

    asyncio.run(go())


def test_a_redis_gone_back_to_an_older_state_gets_the_newer_draws(stack):
    """A failover to a replica behind keeps :data:`RECONCILED` but lacks the last changes of the draws
    (here an execution: the replica holds the draw committed, with its seed): the audit entries written
    back say Redis lost writes, and the draws are compared then too."""
    s, _ = stack
    r = redis_sync.Redis.from_url(s.redis_url)
    seed_view(s.redis_url, 40)
    with client(s) as c:
        first = c.post("/v1/spotchecks/draws", json=DRAW, headers=OPS).json()["id"]
        assert c.post(f"/v1/spotchecks/draws/{first}/execute", headers=OPS).status_code == 200
        last = _last_audit_id(c)
        wait_for(lambda: r.get(SHIPPED) == last.encode() and r.get(RECONCILED), 15, "the first draw copied")
        later = c.post("/v1/spotchecks/draws", json={**DRAW, "period": "2026-02"}, headers=OPS).json()["id"]
        last = _last_audit_id(c)
        wait_for(lambda: r.get(SHIPPED) == last.encode(), 15, "the later draw's commitment copied")
        snapshot = {k: (r.dump(k), r.pttl(k)) for k in r.scan_iter(count=1000)}  # the replica, behind from here
        assert c.post(f"/v1/spotchecks/draws/{later}/execute", headers=OPS).status_code == 200
        before = _draws(c)
        inspectors = r.hgetall(LAST_INSPECTOR)
        last = _last_audit_id(c)
        wait_for(lambda: r.get(SHIPPED) == last.encode(), 15, "the later draw copied")

        r.restore("scratch:draws", 0, snapshot[DRAWS.encode()][0])
        r.restore("scratch:rotation", 0, snapshot[LAST_INSPECTOR.encode()][0])
        assert {k: orjson.loads(v)["status"] for k, v in r.hgetall("scratch:draws").items()} == {
            first.encode(): "executed", later.encode(): "committed"}  # what the replica holds
        replica = r.hgetall("scratch:rotation")  # and its assignments only
        r.flushall()  # the failover: Redis as it was before the later draw
        for k, (v, ttl) in snapshot.items():
            r.restore(k, max(ttl, 0), v)
        after = wait_for(lambda: (lambda d: d if d[later]["status"] == "executed" else None)(_draws(c)), 20,
                         "the later draw's execution back", on_fail=lambda: str(_draws(c)[later]["status"]))
        assert after == before
        # the rotation as the later draw left it, not as the replica held it
        assert r.hgetall(LAST_INSPECTOR) == inspectors != replica
        # and the replica's seed of the later draw is gone: it cannot be executed a second time
        assert not r.hexists("rw:draws:secret", later)
        again = c.post(f"/v1/spotchecks/draws/{later}/execute", headers=OPS)
        assert again.status_code == 409 and "already executed" in again.json()["detail"], again.text


def test_no_draw_is_committed_while_the_draws_cannot_be_compared(stack):
    """A Redis that may have lost draws, with the broker away: the commitment answers 503 and says why,
    rather than take a task and period a lost draw may hold; once compared, it is taken."""
    s, _ = stack
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there
    r = redis_sync.Redis.from_url(s.redis_url)
    seed_view(s.redis_url, 20)
    with client(s, broker=nowhere) as c:
        no = c.post("/v1/spotchecks/draws", json=DRAW, headers=OPS)
        assert no.status_code == 503 and "cannot be compared" in no.json()["detail"], no.text
        assert no.headers["Retry-After"] == "5" and not r.exists(DRAWS)
    with client(s) as c:
        did = c.post("/v1/spotchecks/draws", json=DRAW, headers=OPS).json()["id"]
        assert r.get(RECONCILED)
        r.delete(population_key(did))  # a snapshot Redis lost and the topic never had: null, not a 500
        got = c.get(f"/v1/spotchecks/draws/{did}", params={"population": "true"}, headers=OPS)
        assert got.status_code == 200 and got.json()["population"] is None, got.text
