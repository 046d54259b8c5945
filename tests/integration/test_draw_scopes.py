"""One draw per task, period and region: a draw is binding, not one of several to choose from."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import orjson
import redis as redis_sync

from riskwatch.draw import seed_digest
from riskwatch.draw_scopes import SCOPES
from riskwatch.draw_verify import verify_draw

from .api_helpers import auth, client
from .helpers import seed_view

OPS = auth("ops")
BODY = {"period": "2026-12", "capacity": 10, "control_share": 0.2, "inspectors": ["li", "wang"]}


def test_a_second_draw_for_the_same_checks_is_refused_until_the_first_is_withdrawn(stack):
    """Until 2026-12-07 two draws for December in one district were both taken and both executed, each
    with its own public result: ops could keep the selection they preferred."""
    s, _ = stack
    seed_view(s.redis_url, 60)
    with client(s) as c:
        def commit(**kw):
            return c.post("/v1/spotchecks/draws", json={**BODY, **kw}, headers=OPS)

        first = commit().json()
        assert first["task"] == "routine"
        for kw in ({}, {"region": "310000"}, {"period": "2026-12-15"}):
            again = commit(**kw)
            assert again.status_code == 409, (kw, again.text)
            assert first["id"] in again.text and "withdraw it first" in again.text
        assert commit(task="food safety").status_code == 201  # another task
        assert commit(period="2026-11").status_code == 201  # another period
        assert c.post(f"/v1/spotchecks/draws/{first['id']}/execute", headers=OPS).status_code == 200
        stands = c.post(f"/v1/spotchecks/draws/{first['id']}/withdraw", json={"reason": "capacity was wrong"},
                        headers=OPS)
        assert stands.status_code == 409 and "an executed draw stands" in stands.text
        assert "it is executed" in commit().text

        jan = commit(period="2027-01").json()
        bad = c.post(f"/v1/spotchecks/draws/{jan['id']}/withdraw", json={}, headers=OPS)
        assert bad.status_code == 422 and "reason" in bad.text
        assert c.post(f"/v1/spotchecks/draws/{jan['id']}/withdraw", json={"reason": "the plan changed"},
                      headers=auth("inspector")).status_code == 403
        out = c.post(f"/v1/spotchecks/draws/{jan['id']}/withdraw", json={"reason": "the plan changed"}, headers=OPS)
        assert out.status_code == 200, out.text
        w = out.json()
        assert w["status"] == "withdrawn" and w["withdraw_reason"] == "the plan changed"
        assert seed_digest(w["seed"]) == jan["seed_sha256"]  # disclosed: what it would have drawn is public
        saved = c.get(f"/v1/spotchecks/draws/{jan['id']}", params={"population": "true"}, headers=OPS).json()
        assert [(n, ok) for n, ok, _ in verify_draw(saved)] == [("seed", True), ("population", True)]
        gone = c.post(f"/v1/spotchecks/draws/{jan['id']}/execute", headers=OPS)
        assert gone.status_code == 409 and "withdrawn" in gone.text
        assert c.post(f"/v1/spotchecks/draws/{jan['id']}/withdraw", json={"reason": "again"},
                      headers=OPS).status_code == 409
        assert commit(period="2027-01").status_code == 201  # its scope is free again
        listed = c.get("/v1/spotchecks/draws", params={"status": "withdrawn"}, headers=OPS).json()["draws"]
        assert [d["id"] for d in listed] == [jan["id"]]
        audit = c.get("/v1/audit", params={"action": "draw.withdraw"}, headers=OPS).json()["entries"]
        assert [(e["target"], e["detail"]["reason"]) for e in audit] == [(jan["id"], "the plan changed")]

        # an execution and a withdrawal at once: one of them, and the record says which
        for k in range(5):
            did = commit(period=f"2028-{k + 1:02d}").json()["id"]
            with ThreadPoolExecutor(2) as ex:
                ran = ex.submit(c.post, f"/v1/spotchecks/draws/{did}/execute", headers=OPS)
                out = ex.submit(c.post, f"/v1/spotchecks/draws/{did}/withdraw", json={"reason": "at once"},
                                headers=OPS)
                codes = (ran.result().status_code, out.result().status_code)
            assert sorted(codes) == [200, 409], codes
            rec = c.get(f"/v1/spotchecks/draws/{did}", headers=OPS).json()
            assert rec["status"] == ("executed" if codes[0] == 200 else "withdrawn"), (codes, rec["status"])
            assert ("result" in rec) == (codes[0] == 200)
        # four commitments at once for one scope: one is taken
        with ThreadPoolExecutor(4) as ex:
            rs = list(ex.map(lambda _: commit(period="2027-03", region="310000"), range(4)))
        assert sorted(r.status_code for r in rs) == [201, 409, 409, 409], [r.text for r in rs]


def test_draws_committed_before_scopes_were_kept_take_theirs(stack):
    s, _ = stack
    seed_view(s.redis_url, 20)
    r = redis_sync.Redis.from_url(s.redis_url)
    with client(s) as c:
        old = c.post("/v1/spotchecks/draws", json=BODY, headers=OPS).json()
        rec = orjson.loads(r.hget("rw:draws", old["id"]))
        del rec["task"]  # as a draw of the release before was stored
        r.hset("rw:draws", old["id"], orjson.dumps(rec))
        r.delete(SCOPES)
        again = c.post("/v1/spotchecks/draws", json={**BODY, "region": "310000"}, headers=OPS)
        assert again.status_code == 409 and old["id"] in again.text, again.text


def test_a_redis_that_lost_the_draws_does_not_free_their_scopes(stack):
    """The audit log comes back from rw.audit (test_audit_copy.py); the executed draws in it keep
    their task, period and region taken. Without it, losing Redis let the same checks be drawn again."""
    s, _ = stack
    seed_view(s.redis_url, 20)
    r = redis_sync.Redis.from_url(s.redis_url)
    with client(s) as c:
        done = c.post("/v1/spotchecks/draws", json=BODY, headers=OPS).json()
        assert c.post(f"/v1/spotchecks/draws/{done['id']}/execute", headers=OPS).status_code == 200
        lost = c.post("/v1/spotchecks/draws", json={**BODY, "period": "2027-01"}, headers=OPS).json()
        r.delete("rw:draws", "rw:draws:secret", "rw:draws:by-commit", SCOPES)  # the audit log stays (or is back)
        again = c.post("/v1/spotchecks/draws", json={**BODY, "region": "310000"}, headers=OPS)
        assert again.status_code == 409 and done["id"] in again.text and "audit log" in again.text, again.text
        # the committed one can never execute now (its seed is gone): its period is free
        assert c.post("/v1/spotchecks/draws", json={**BODY, "period": "2027-01"}, headers=OPS).status_code == 201
        assert c.post(f"/v1/spotchecks/draws/{lost['id']}/execute", headers=OPS).status_code == 404
