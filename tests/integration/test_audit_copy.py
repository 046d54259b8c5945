"""The audit log outlives Redis: the API copies it to ``rw.audit`` and writes it back from there."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime, timezone

import orjson
import redis as redis_sync

from riskwatch.audit import AUDIT
from riskwatch.audit_topic import SHIPPED, merge

from .api_helpers import auth, client
from .conftest import wait_for
from .helpers import read_topic, seed_view

OPS = auth("ops")
DRAW = {"period": "2026-12", "capacity": 10, "control_share": 0.2, "inspectors": ["li", "wang"]}


def _entries(c, **params) -> list[dict]:
    out, cursor = [], None
    while True:
        page = c.get("/v1/audit", params={"limit": 7, **params, **({"cursor": cursor} if cursor else {})},
                     headers=OPS).json()
        out += page["entries"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def test_the_audit_log_comes_back_after_redis_lost_it(stack):
    """Until 2026-12-07 the audit log was in Redis alone: a Redis restarted without its data lost who
    drew, changed and silenced what, and why, with nothing to say so."""
    s, _ = stack
    r = redis_sync.Redis.from_url(s.redis_url, decode_responses=True)
    seed_view(s.redis_url, 50)
    with client(s) as c:
        for k in range(6):
            did = c.post("/v1/spotchecks/draws", json={**DRAW, "period": f"2026-{k + 1:02d}"}, headers=OPS).json()["id"]
            if k % 2 == 0:
                assert c.post(f"/v1/spotchecks/draws/{did}/execute", headers=OPS).status_code == 200
        before = _entries(c)
        assert len(before) == 9
        last = before[0]["id"]
        wait_for(lambda: r.get(SHIPPED) == last, 15, f"the copy up to {last}")
        on_topic = [orjson.loads(v) for _, _, v in read_topic(s.broker, s.topic("audit"))]
        assert [e["id"] for e in on_topic] == [e["id"] for e in reversed(before)]

        r.flushall()  # Redis restarted without its data
        seed_view(s.redis_url, 50)
        did = c.post("/v1/spotchecks/draws", json={**DRAW, "period": "2027-01"}, headers=OPS).json()["id"]
        after = wait_for(lambda: (lambda x: x if len(x) == 10 else None)(_entries(c)), 15,
                         "the audit log back", on_fail=lambda: str(_entries(c)))
        assert after[1:] == before  # the same entries, ids and all, and the new one above them
        assert after[0]["action"] == "draw.commit" and after[0]["target"] == did
        # a cursor from before the loss pages the same
        assert c.get("/v1/audit", params={"cursor": before[3]["id"], "limit": 3}, headers=OPS).json()["entries"] \
            == before[4:7]
        assert _entries(c, action="draw.execute") == [e for e in before if e["action"] == "draw.execute"]
        m = c.get("/metrics").text
        assert "riskwatch_audit_restored_total 9.0" in m, m
        # and the new entry is copied after the old ones
        wait_for(lambda: r.get(SHIPPED) == after[0]["id"], 15, "the new entry copied")
        ids = [orjson.loads(v)["id"] for _, _, v in read_topic(s.broker, s.topic("audit"))]
        assert ids == [e["id"] for e in reversed(after)]


def test_the_merge_keeps_what_is_written_while_it_runs(stack):
    """The stream is rebuilt beside the one in use and renamed over it in a transaction that watches
    it: entries an API writes meanwhile are neither lost nor put out of order."""
    s, _ = stack

    async def go():
        import redis.asyncio as aioredis

        r = aioredis.from_url(s.redis_url)
        old = {f"{1_600_000_000_000 + i}-0": orjson.dumps({"actor": "a", "action": "x", "n": i}) for i in range(3000)}
        written = []

        async def writer():
            for i in range(40):
                eid = await r.xadd(AUDIT, {"e": orjson.dumps({"actor": "b", "action": "y", "n": i})})
                written.append(eid.decode())
                await asyncio.sleep(0.002)

        n, _ = await asyncio.gather(merge(r, old), writer())
        held = [(eid.decode(), orjson.loads(f[b"e"])) for eid, f in await r.xrange(AUDIT)]
        assert n == 3000
        assert [eid for eid, _ in held] == [*old, *written]
        assert [e for eid, e in held[:3000]] == [orjson.loads(v) for v in old.values()]
        assert (await r.get(SHIPPED)).decode() == f"{1_600_000_000_000 + 2999}-0"
        assert await merge(r, old) == 0  # again: nothing missing, nothing written
        assert await r.xlen(AUDIT) == 3040
        await r.aclose()

    asyncio.run(go())


def test_rebuild_view_writes_the_audit_log_back(stack):
    """With no API running (Redis lost while it was down), ``rebuild-view`` writes it back, and the draws
    from ``rw.draws`` (:mod:`riskwatch.draw_copy`)."""
    s, _ = stack
    r = redis_sync.Redis.from_url(s.redis_url, decode_responses=True)
    seed_view(s.redis_url, 20)
    with client(s) as c:
        did = c.post("/v1/spotchecks/draws", json=DRAW, headers=OPS).json()["id"]
        c.post(f"/v1/spotchecks/draws/{did}/execute", headers=OPS)
        before = _entries(c)
        drawn = c.get(f"/v1/spotchecks/draws/{did}", params={"population": "true"}, headers=OPS).json()
        wait_for(lambda: r.get(SHIPPED) == before[0]["id"], 15, "the copy")
    r.flushall()
    from riskwatch.rebuild import rebuild_view

    counts = asyncio.run(rebuild_view(s, flush=False))
    assert counts["audit"] == 2 and counts["draws"] == 1, counts
    with client(s) as c:
        assert _entries(c) == before
        assert c.get(f"/v1/spotchecks/draws/{did}", params={"population": "true"}, headers=OPS).json() == drawn


def test_the_audit_log_filters_and_pages_on_past_entries_that_do_not_match(stack):
    """Until 2026-12-07 the API read ``limit`` entries and filtered them: with 100 newer entries of
    other actions, ``?action=draw.withdraw`` answered nothing and no cursor, though one was logged."""
    s, _ = stack
    r = redis_sync.Redis.from_url(s.redis_url)
    t0 = 1_796_000_000.0  # epoch s; entry k at t0 + k s, ids in step
    pipe = r.pipeline(transaction=False)

    def put(k: int, actor: str, action: str, target: str, detail: dict) -> None:
        pipe.xadd(AUDIT, {"e": orjson.dumps({"at": t0 + k, "actor": actor, "action": action, "target": target,
                                             "detail": detail})}, id=f"{int((t0 + k) * 1000)}-0")

    put(0, "zhao", "draw.withdraw", "draw-1", {"reason": "the plan changed"})
    put(1, "li", "objection.create", "obj-1", {"entity_id": "E1"})
    for k in range(2, 25_002):
        put(k, "wang", "alert.ack", f"a-{k}", {})
    put(25_002, "li", "entity.reset_state", "reset-1", {"entity_id": "E1"})
    pipe.execute()
    with client(s) as c:
        def get(**params):
            out = c.get("/v1/audit", params=params, headers=OPS)
            assert out.status_code == 200, out.text
            return out.json()

        first = get(action="draw.withdraw")
        assert first["entries"] == [] and first["next_cursor"]  # 20,000 read, none matched: go on
        assert [e["target"] for e in get(action="draw.withdraw", cursor=first["next_cursor"])["entries"]] \
            == ["draw-1"]
        assert [e["target"] for e in _entries(c, entity_id="E1")] == ["reset-1", "obj-1"]
        assert [e["target"] for e in _entries(c, actor="li")] == ["reset-1", "obj-1"]
        def iso(k: int) -> str:
            return datetime.fromtimestamp(t0 + k, timezone.utc).isoformat()

        window = get(since=iso(100), until=iso(104), limit=1000)["entries"]
        assert [e["target"] for e in window] == [f"a-{k}" for k in range(104, 99, -1)]
        # for a report: the same page as a CSV file Excel opens right
        sheet = c.get("/v1/audit", params={"since": iso(0), "until": iso(3), "format": "csv"}, headers=OPS)
        assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/csv")
        assert "attachment" in sheet.headers["content-disposition"] and "x-next-cursor" not in sheet.headers
        lines = list(csv.reader(io.StringIO(sheet.content.decode("utf-8"))))
        assert lines[0] == ["\ufeffid", "at", "actor", "action", "target", "detail"]
        assert [(x[2], x[3], x[4], orjson.loads(x[5])) for x in lines[1:]] == [
            ("wang", "alert.ack", "a-3", {}), ("wang", "alert.ack", "a-2", {}),
            ("li", "objection.create", "obj-1", {"entity_id": "E1"}),
            ("zhao", "draw.withdraw", "draw-1", {"reason": "the plan changed"})]
        assert lines[3][1] == datetime.fromtimestamp(t0 + 1, timezone.utc).isoformat()
        paged = c.get("/v1/audit", params={"action": "draw.withdraw", "format": "csv"}, headers=OPS)
        assert paged.headers["x-next-cursor"] == first["next_cursor"]
        bad = c.get("/v1/audit", params={"since": "yesterday"}, headers=OPS)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "since"]


def test_the_config_history_comes_back_with_the_audit_log(stack):
    """Until 2026-12-07 a Redis that lost its data lost the config history: every change's whole
    config (``/v1/config/history/{seq}``: 404) and its row (who, why, the diff)."""
    s, _ = stack
    r = redis_sync.Redis.from_url(s.redis_url, decode_responses=True)
    with client(s) as c:
        cfg = c.get("/v1/config", headers=OPS).json()["config"]
        for k, up in enumerate((40, 45), start=1):
            cfg = {**cfg, "version": f"t-{k}"}
            cfg["tiers"][1]["up"] = up
            assert c.put("/v1/config", json={"config": cfg, "reason": f"pilot {k}"}, headers=OPS).status_code == 202
        assert c.post("/v1/config/rollback", json={"to_seq": 1, "reason": "back to the first"},
                      headers=OPS).status_code == 202
        history = c.get("/v1/config/history", headers=OPS).json()
        versions = [c.get(f"/v1/config/history/{k}", headers=OPS).json() for k in (1, 2, 3)]
        assert [v["version"] for v in versions] == ["t-1", "t-2", "t-1"]
        wait_for(lambda: r.get(SHIPPED) == _entries(c)[0]["id"], 15, "the copy")

        r.flushall()
        wait_for(lambda: len(_entries(c)) == 3, 15, "the audit log back")
        # the history is put back just after the log, in the same round
        wait_for(lambda: c.get("/v1/config/history", headers=OPS).json() == history, 5, "the history back")
        assert [c.get(f"/v1/config/history/{k}", headers=OPS).json() for k in (1, 2, 3)] == versions
        # the next change is numbered after them (no worker ran here to write the one in force back)
        cfg["tiers"][1]["up"] = 42
        out = c.put("/v1/config", json={"config": {**cfg, "version": "t-4"}, "reason": "after the loss"}, headers=OPS)
        assert out.status_code == 202 and out.json()["seq"] == 4, out.text


def test_a_redis_lost_while_entries_are_copied_is_noticed(stack):
    """The copy mark moves only over the one read before the send: a Redis that lost its data in
    between holds none, and the next round writes the log back (setting it there would have hidden
    the loss from every later round)."""
    s, _ = stack

    async def go():
        import redis.asyncio as aioredis

        from riskwatch.api.app import audit_shipper
        from riskwatch.api.context import ApiContext
        from riskwatch.audit import record

        ctx = ApiContext(s)
        ctx.redis = r = aioredis.from_url(s.redis_url, decode_responses=True)
        shipper = audit_shipper(ctx)
        pipe = r.pipeline(transaction=True)
        for k in range(3):
            record(pipe, "li", "alert.ack", f"a-{k}")
        await pipe.execute()
        assert await shipper.round(r) == 3
        held = await r.xrange(AUDIT)
        sent = shipper.send

        async def send_then_lose(batch):
            await sent(batch)
            await r.flushall()  # Redis restarted without its data while the broker took the batch

        shipper.send = send_then_lose
        pipe = r.pipeline(transaction=True)
        record(pipe, "li", "alert.ack", "a-3")
        await pipe.execute()
        try:
            await shipper.round(r)
            raise AssertionError("the round went on over a lost Redis")
        except RuntimeError as exc:
            assert "moved or went" in str(exc)
        assert await r.get(SHIPPED) is None
        shipper.send = sent
        derived, restore = [], shipper.after_merge

        async def fails_once(conn):  # what is derived from the log (the config history) fails once
            derived.append(len(derived))
            if len(derived) == 1:
                raise ConnectionError("Redis loading")
            await restore(conn)

        shipper.after_merge = fails_once
        try:
            await shipper.round(r)
            raise AssertionError("the failure went unsaid")
        except ConnectionError:
            pass
        back = await r.xrange(AUDIT)
        assert back[:3] == held and len(back) == 4
        assert await shipper.round(r) == 0 and derived == [0, 1]  # tried again, though nothing was merged
        assert await shipper.round(r) == 0 and derived == [0, 1]  # and only until it ran
        await ctx.close()

    asyncio.run(go())


def test_audit_check_says_what_redis_lacks_or_holds_otherwise_than_the_copy(stack):
    """Anyone who can write to Redis can delete or rewrite an audit entry; the copy on Kafka shows it."""
    import subprocess
    import sys

    from .conftest import worker_env

    s, _ = stack
    seed_view(s.redis_url, 20)
    r = redis_sync.Redis.from_url(s.redis_url)
    with client(s) as c:
        for k in range(3):
            c.post("/v1/spotchecks/draws", json={**DRAW, "period": f"2026-0{k + 1}"}, headers=OPS)
        ids = [e["id"] for e in _entries(c)]
        wait_for(lambda: r.get(SHIPPED) == ids[0].encode(), 15, "the copy")

    def check():
        return subprocess.run([sys.executable, "-m", "riskwatch.cli", "audit-check"], env=worker_env(s),
                              capture_output=True, text=True, timeout=120)

    ok = check()
    assert ok.returncode == 0 and "3 entries in Redis, 3 on the topic" in ok.stdout, ok.stdout + ok.stderr
    # one entry deleted, one rewritten in place (the stream rebuilt with the same ids)
    entries = r.xrange(AUDIT)
    r.delete(AUDIT)
    for eid, f in entries:
        if eid.decode() == ids[1]:
            continue
        e = orjson.loads(f[b"e"])
        if eid.decode() == ids[2]:
            e["actor"] = "someone-else"
        r.xadd(AUDIT, {"e": orjson.dumps(e)}, id=eid)
    bad = check()
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"1 on the topic, not in Redis (deleted, or lost with Redis and not written back yet: the API writes " \
           f"them back): {ids[1]}" in bad.stdout
    assert f"1 in both, with other content in Redis: {ids[2]}" in bad.stdout


def test_silences_come_back_with_the_audit_log(stack):
    """Until 2026-12-08 a Redis lost while no dispatcher ran lost every silence: who silenced what, and
    why, was gone from ``GET /v1/silences``, and the alerts meant to be quiet were sent once a dispatcher
    started. The audit log holds each creation whole and each expiry."""
    s, _ = stack
    r = redis_sync.Redis.from_url(s.redis_url, decode_responses=True)
    with client(s) as c:
        made = [c.post("/v1/silences", json={"matchers": [{"name": "region", "value": f"31010{k}"}],
                                              "duration": "3h", "reason": f"drill {k}"}, headers=OPS).json()
                for k in range(3)]
        assert c.delete(f"/v1/silences/{made[1]['id']}", headers=OPS).status_code == 200
        before = c.get("/v1/silences", headers=OPS).json()
        active = c.get("/v1/silences", params={"active": "true"}, headers=OPS).json()
        assert before["count"] == 3 and active["count"] == 2
        last = _entries(c)[0]["id"]
        wait_for(lambda: r.get(SHIPPED) == last, 15, "the copy")
        r.flushall()
        wait_for(lambda: c.get("/v1/silences", headers=OPS).json()["count"] == 3, 15, "the silences back")
        assert c.get("/v1/silences", headers=OPS).json() == before
        assert c.get("/v1/silences", params={"active": "true"}, headers=OPS).json() == active


def test_a_file_imported_before_is_still_refused_after_redis_lost_it(stack, tmp_path):
    """``riskwatch import`` refuses a file imported before (an entity recognises items sent again only
    among its newest, so a backfill imported twice counts every long history's older part again). Until
    2026-12-08 that record was in Redis alone: after a loss the same file was taken again without a word.
    The import's audit entry holds it whole."""
    import subprocess
    import sys

    from riskwatch.ingest.imports import IMPORTS

    s, workers = stack
    r = redis_sync.Redis.from_url(s.redis_url, decode_responses=True)
    f = tmp_path / "backfill.jsonl"
    f.write_text('{"type": "entity", "entity_id": "91350100M000100Y43", "name": "A", "industry": "food", '
                 '"region": "350102"}\n')

    def run(*args):
        return subprocess.run([sys.executable, "-m", "riskwatch.cli", "import", str(f), "--topic-from-type", *args],
                              env=dict(workers.env), capture_output=True, text=True, timeout=120)

    assert run().returncode == 0
    held = r.hgetall(IMPORTS)
    with client(s) as c:
        last = _entries(c)[0]["id"]
        wait_for(lambda: r.get(SHIPPED) == last, 15, "the copy")
        r.flushall()
        wait_for(lambda: r.hgetall(IMPORTS), 15, "the imports back")
        assert r.hgetall(IMPORTS) == held
    again = run()
    assert again.returncode == 2 and "was imported before" in again.stderr, again
