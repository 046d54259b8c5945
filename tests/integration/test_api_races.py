"""Requests at once for the same step (a double click, two people, a client's retry while the first
is still running): one goes through, the others get 409, and the worker gets one command."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import orjson

from .api_helpers import auth, client
from .helpers import read_topic, seed_view

E = "91350100M000100Y43"  # a valid USCC
OPS = auth("ops")
ROUNDS = 10  # the code before let more than one through in most rounds: all 10 passing by chance is < 1%


def _at_once(calls) -> list:
    with ThreadPoolExecutor(len(calls)) as ex:
        return list(ex.map(lambda f: f(), calls))


def test_a_draw_executes_once(stack):
    """Until 2026-12-07 two to four of four requests at once answered 200, with up to three different
    inspector assignments (each read the last inspectors another had just written), and the stored
    draw was whichever was written last."""
    s, _ = stack
    seed_view(s.redis_url, 300)
    body = {"period": "2026-12", "capacity": 40, "control_share": 0.25, "inspectors": ["li", "wang", "zhao"]}
    with client(s) as c:
        first = c.post("/v1/spotchecks/draws", json=body, headers=OPS).json()
        assert c.post(f"/v1/spotchecks/draws/{first['id']}/execute", headers=OPS).status_code == 200
        for k in range(ROUNDS):
            did = c.post("/v1/spotchecks/draws", json={**body, "period": f"2027-{k + 1:02d}"}, headers=OPS).json()["id"]
            rs = _at_once([lambda: c.post(f"/v1/spotchecks/draws/{did}/execute", headers=OPS)] * 4)
            codes = sorted(r.status_code for r in rs)
            assert codes == [200, 409, 409, 409], (k, codes, [r.text for r in rs])
            done = next(r.json() for r in rs if r.status_code == 200)
            stored = c.get(f"/v1/spotchecks/draws/{did}", headers=OPS).json()
            assert stored["result"] == done["result"] and stored["executed_at"] == done["executed_at"]
        audit = c.get("/v1/audit", params={"action": "draw.execute", "limit": 100}, headers=OPS).json()["entries"]
        assert len(audit) == ROUNDS + 1
        # a committed draw whose secret seed is gone is not drawn with a guessable one (until 2026-12-07: "None")
        import redis as redis_sync

        did = c.post("/v1/spotchecks/draws", json={**body, "period": "2028-01"}, headers=OPS).json()["id"]
        redis_sync.Redis.from_url(s.redis_url).hdel("rw:draws:secret", did)
        lost = c.post(f"/v1/spotchecks/draws/{did}/execute", headers=OPS)
        assert lost.status_code == 409 and "secret seed is not in Redis" in lost.text, lost.text


def test_an_objection_is_filed_and_resolved_once(stack):
    """Until 2026-12-07 two resolutions of one objection at once (upheld and revoked) both answered
    200 in 2 of 5 tries; both went to the worker, which applied both, and the record kept whichever
    was written last. Two objections to one item at once both went through too."""
    s, _ = stack
    seed_view(s.redis_url, 1, first=E)
    ins = auth("inspector")
    with client(s) as c:
        for k in range(ROUNDS):
            filed = _at_once([lambda: c.post("/v1/objections", json={
                "entity_id": E, "target_id": f"c{k}", "target_kind": "complaint", "reason": "not us"},
                headers=ins)] * 2)
            assert sorted(r.status_code for r in filed) == [202, 409], (k, [r.text for r in filed])
            oid = next(r.json()["objection_id"] for r in filed if r.status_code == 202)
            rs = _at_once([lambda res=res: c.post(f"/v1/objections/{oid}/resolve", json={"resolution": res},
                                                  headers=OPS) for res in ("upheld", "revoked")])
            assert sorted(r.status_code for r in rs) == [200, 409], (k, [r.text for r in rs])
            done = next(r.json() for r in rs if r.status_code == 200)
            assert c.get(f"/v1/objections/{oid}", headers=OPS).json()["resolution"] == done["resolution"]
        listed = c.get("/v1/objections", params={"limit": 500}, headers=OPS).json()["objections"]
        assert len(listed) == ROUNDS and all(o["status"] == "resolved" for o in listed)
    sent = [orjson.loads(v) for _, _, v in read_topic(s.broker, s.topic("commands"))]
    assert sorted(x["type"] for x in sent) == ["objection"] * ROUNDS + ["objection_resolution"] * ROUNDS


def test_a_config_change_made_from_an_older_config_is_refused_with_if_match(stack):
    """Two people tune from the same GET. Until 2026-12-07 the second change silently put back what the
    first had moved (both answered 202; If-Match was not read), and two changes at once both went
    through, numbered and recorded in any order."""
    s, _ = stack
    with client(s) as c:
        got = c.get("/v1/config", headers=OPS)
        base, tag = got.json(), got.headers["ETag"]
        assert tag == '"0"'
        a = {**base["config"], "version": "li"}
        a["scoring"] = {**a["scoring"], "min_delta": 2.5}
        b = {**base["config"], "version": "wang"}
        b["tiers"] = [{**t, "ratio": min(1.0, t["ratio"] * 2)} for t in b["tiers"]]
        first = c.put("/v1/config", json={"config": a, "reason": "less churn"}, headers={**OPS, "If-Match": tag})
        assert first.status_code == 202, first.text
        stale = c.put("/v1/config", json={"config": b, "reason": "more checks"}, headers={**OPS, "If-Match": tag})
        assert stale.status_code == 412, stale.text
        assert "change 1 by ops-user (less churn) came since" in stale.json()["detail"]
        assert stale.headers["ETag"] == '"1"'
        now = c.get("/v1/config", headers=OPS)
        assert now.json()["version"] == "li" and now.json()["config"]["scoring"]["min_delta"] == 2.5
        again = c.post("/v1/config/rollback", json={"to_seq": 0, "reason": "undo"}, headers={**OPS, "If-Match": tag})
        assert again.status_code == 412
        assert c.put("/v1/config", json={"config": b, "reason": "more checks"},
                     headers={**OPS, "If-Match": "three"}).status_code == 412
        b["scoring"] = now.json()["config"]["scoring"]  # made again from the config in force
        ok = c.put("/v1/config", json={"config": b, "reason": "more checks"},
                   headers={**OPS, "If-Match": now.headers["ETag"]})
        assert ok.status_code == 202 and ok.json()["seq"] == 2

        # one change at a time: while one is being applied (another API process), the next gets 409
        import redis as redis_sync

        sync = redis_sync.Redis.from_url(s.redis_url)
        sync.set("rw:config:applying", "zhao", ex=60)
        busy = c.put("/v1/config", json={"config": {**b, "version": "zhao"}, "reason": "at once"}, headers=OPS)
        assert busy.status_code == 409 and busy.headers["Retry-After"] == "1", busy.text
        sync.delete("rw:config:applying")
        applied = 3
        for k in range(ROUNDS):  # at once, without If-Match: the last one numbered is the one in force
            cur = c.get("/v1/config", headers=OPS).json()["config"]
            rs = _at_once([lambda v=v: c.put("/v1/config", json={"config": {**cur, "version": f"r{k}-{v}"},
                                                                 "reason": "at once"}, headers=OPS)
                           for v in range(3)])
            seqs = [r.json()["seq"] for r in rs if r.status_code == 202]
            assert seqs and all(r.status_code in (202, 409) for r in rs), [r.text for r in rs]
            assert c.get("/v1/config", headers=OPS).json()["seq"] == max(seqs)
            applied += len(seqs)
    sent = [orjson.loads(v) for _, _, v in read_topic(s.broker, s.topic("commands"))]
    changes = [x["seq"] for x in sent if x["type"] == "config_change"]
    assert sorted(set(changes)) == list(range(1, applied)) and len(changes) == (applied - 1) * s.partitions
