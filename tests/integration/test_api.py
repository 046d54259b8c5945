"""The API against the running stack: a real worker, broker and Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import orjson
import redis as sync_redis
import redis.asyncio as aioredis

from riskwatch.alerts.config import load_alerts_config
from riskwatch.alerts.intake import AlertIntake
from riskwatch.alerts.metrics import AlertMetrics
from riskwatch.config import load_config
from riskwatch.draw import draw, population_digest, seed_digest
from riskwatch.simulate import Simulation
from riskwatch.streams.codec import partition_for

from .api_helpers import auth, client
from .conftest import wait_for, worker_env
from .helpers import produce, read_batches, read_topic, seed_view, send_raw

E = "91350100M000100Y43"  # a valid USCC


def _utc(v: str) -> datetime:
    """An API time: ISO-8601 in UTC (not epoch seconds)."""
    t = datetime.fromisoformat(v)
    assert t.utcoffset() == timedelta(0), v
    return t


def _intake_alerts(s) -> int:
    """Apply the worker's alert candidates with the dispatcher's intake (real Redis), as the dispatcher does."""
    msgs = read_topic(s.broker, s.topic("alert-candidates"))

    async def go():
        r = aioredis.from_url(s.redis_url)
        intake = AlertIntake(r, load_alerts_config(), [t.name for t in load_config().tiers], AlertMetrics())
        n = 0
        for off, (part, _k, v) in enumerate(msgs):
            n += await intake.apply_message(s.topic("alert-candidates"), part, off, v)
        await r.aclose()
        return n
    return asyncio.run(go())


def test_endpoints_happy_and_error_paths(stack):
    s, workers = stack
    # ending now: the alerts of a stream long over are not opened (Engine.alert_current)
    sim = Simulation(n_entities=80, seed=4, bad_share=0.3, days=20,
                     start=datetime.now(timezone.utc) - timedelta(days=21), closing_share=0.15)
    events = list(sim.events(n_events=5000))
    workers.process(events, batch_size=100)
    assert _intake_alerts(s) > 0
    with client(s) as c:
        # health without a token; readiness includes the worker's lag
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz").json()
        assert ready["checks"]["redis"] is True and ready["checks"]["broker"] is True
        # the worker commits offsets every few seconds: its lag reaches 0 shortly after it processed all
        ready = wait_for(lambda: (r := c.get("/readyz").json())["checks"]["worker_lag"] == 0 and r, 20,
                         "worker lag 0 in /readyz", lambda: str(c.get("/readyz").json()))
        assert ready["checks"]["worker"] is True and ready["ready"] is True, ready
        assert "riskwatch_api_requests_total" in c.get("/metrics").text
        # supervision gauges: entities per tier and open alerts per severity, as the API lists them
        gauges = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in c.get("/metrics").text.splitlines()
                  if line.startswith(("riskwatch_view_entities{", "riskwatch_view_open_alerts{", "riskwatch_view_readable",
                                     "riskwatch_view_registered", "riskwatch_view_not_operating{"))}
        assert gauges["riskwatch_view_readable"] == 1.0
        for tier in ("A", "B", "C", "D"):
            listed = c.get("/v1/entities", params={"tier": tier, "limit": 500}, headers=auth("viewer")).json()
            assert gauges[f'riskwatch_view_entities{{tier="{tier}"}}'] == listed["count"], (tier, gauges)
        for sev in ("info", "warning", "critical"):
            listed = c.get("/v1/alerts", params={"severity": sev, "limit": 1000}, headers=auth("viewer")).json()
            assert gauges[f'riskwatch_view_open_alerts{{severity="{sev}"}}'] == listed["count"], (sev, gauges)
        assert sum(v for k, v in gauges.items() if k.startswith("riskwatch_view_entities")) > 0
        held = sum(1 for _ in sync_redis.Redis.from_url(s.redis_url).scan_iter("rw:entity:*", count=1000))
        assert gauges["riskwatch_view_registered"] == held > 0  # registered or scored: every entity hash
        assert held >= sum(v for k, v in gauges.items() if k.startswith("riskwatch_view_entities"))
        assert sum(v for k, v in gauges.items() if k.startswith("riskwatch_view_open_alerts")) > 0
        closed = c.get("/v1/entities", params={"status": "closed", "limit": 500}, headers=auth("viewer")).json()
        assert gauges['riskwatch_view_not_operating{status="closed"}'] == closed["count"] > 0
        assert gauges['riskwatch_view_not_operating{status="suspended"}'] == 0

        # auth: 401 without or with a bad token, 403 for a role that may not
        assert c.get("/v1/entities").status_code == 401
        assert c.get("/v1/entities", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/v1/audit", headers=auth("inspector")).status_code == 403
        assert c.put("/v1/config", json={"config": {}, "reason": "x" * 5}, headers=auth("viewer")).status_code == 403

        # entities: riskiest first, filters, cursor pagination, one entity, history
        v = auth("viewer")
        page1 = c.get("/v1/entities", params={"limit": 5}, headers=v).json()
        top = page1["entities"]
        assert len(top) == 5 and [e["score"] for e in top] == sorted((e["score"] for e in top), reverse=True)
        page2 = c.get("/v1/entities", params={"limit": 5, "cursor": page1["next_cursor"]}, headers=v).json()
        assert page2["entities"] and not {e["entity_id"] for e in top} & {e["entity_id"] for e in page2["entities"]}
        assert page2["entities"][0]["score"] <= top[-1]["score"]
        one = c.get(f"/v1/entities/{top[0]['entity_id']}", headers=v).json()
        assert one["tier"] in "ABCD" and one["reasons"][0]["event_ids"] and "open_alerts" in one
        assert "disputed" in one
        hist = c.get(f"/v1/entities/{top[0]['entity_id']}/history", headers=v).json()["history"]
        assert hist and hist[0]["score"] == one["score"]
        tier = top[0]["tier"]
        assert all(e["tier"] == tier for e in c.get("/v1/entities", params={"tier": tier}, headers=v).json()["entities"])
        region = top[0]["region"]
        both = c.get("/v1/entities", params={"tier": tier, "region": region}, headers=v).json()["entities"]
        assert both and all(e["tier"] == tier and e["region"] == region for e in both)
        assert c.get(f"/v1/entities/{E}", headers=v).status_code == 404
        bad = c.get("/v1/entities/91350100M000100Y44", headers=v)
        assert bad.status_code == 422 and "check character" in bad.text and "entity_id" in bad.text
        for params, field in (({"region": "abc"}, "region"), ({"min_score": 101}, "min_score"),
                              ({"tier": "Z"}, "tier"), ({"cursor": "garbage"}, "cursor")):
            r = c.get("/v1/entities", params=params, headers=v)
            assert r.status_code == 422 and field in r.text, (params, r.text)

        # alerts: list with filters, get, ack, resolve (with a note), 404/409/422
        alerts = c.get("/v1/alerts", headers=v).json()["alerts"]
        assert alerts
        a = alerts[0]
        assert c.get(f"/v1/alerts/{a['id']}", headers=v).json()["key"] == a["key"]
        crit = c.get("/v1/alerts", params={"severity": "critical"}, headers=v).json()["alerts"]
        assert all(x["severity"] == "critical" for x in crit)
        assert c.get("/v1/alerts", params={"severity": "loud"}, headers=v).status_code == 422
        assert c.get("/v1/alerts", params={"state": "all"}, headers=v).status_code == 422
        # one escalated (as the dispatcher's clock marks an alert nobody acknowledged): ?escalated= filters
        rs = sync_redis.Redis.from_url(s.redis_url)
        esc = orjson.loads(rs.get(f"rw:alert:{alerts[-1]['id']}"))
        group = {"peer_group": {"industry": "catering", "region": "440305", "window_hours": 24.0,
                                "entities_with_complaints": 6, "expected": 0.51, "entities": [esc["entity_id"]]}}
        rs.set(f"rw:alert:{esc['id']}", orjson.dumps(dict(esc, escalated_at=time.time(), detail=group,
                                                          labels=dict(esc["labels"], escalated="true"))))
        only = c.get("/v1/alerts", params={"escalated": "true"}, headers=v).json()["alerts"]
        assert [x["id"] for x in only] == [esc["id"]] and _utc(only[0]["escalated_at"])
        assert only[0]["detail"] == group  # a peer surge's group and its entities (most alerts: null)
        rest = c.get("/v1/alerts", params={"escalated": "false", "limit": 1000}, headers=v).json()["alerts"]
        every = c.get("/v1/alerts", params={"limit": 1000}, headers=v).json()["alerts"]
        assert esc["id"] not in {x["id"] for x in rest} and len(rest) == len(every) - 1
        assert c.get("/v1/alerts", params={"escalated": "maybe"}, headers=v).status_code == 422
        assert c.post(f"/v1/alerts/{a['id']}/ack", json={}, headers=v).status_code == 403
        ins = auth("inspector")
        acked = c.post(f"/v1/alerts/{a['id']}/ack", json={"note": "on my way"}, headers=ins).json()
        assert acked["status"] == "acknowledged" and acked["ack"]["by"] == "inspector-user"
        # times are ISO-8601 in UTC, as entities give them (epoch seconds until 2026-12-04)
        assert _utc(acked["ack"]["at"]) >= _utc(acked["starts_at"]) and _utc(acked["last_seen"])
        assert c.post(f"/v1/alerts/{a['id']}/resolve", json={}, headers=ins).status_code == 422  # note required
        done = c.post(f"/v1/alerts/{a['id']}/resolve", json={"note": "fixed"}, headers=ins).json()
        assert done["status"] == "resolved" and done["resolved_by"] == "inspector-user"
        assert c.post(f"/v1/alerts/{a['id']}/resolve", json={"note": "again"}, headers=ins).status_code == 409
        assert c.post("/v1/alerts/nope/ack", json={}, headers=ins).status_code == 404
        hist = c.get("/v1/alerts", params={"state": "all", "entity_id": a["entity_id"]}, headers=v).json()
        assert a["id"] in [x["id"] for x in hist["alerts"]]

        # silences: create (ops), list, expire; invalid matcher -> 422 naming the field
        ops = auth("ops")
        sil = c.post("/v1/silences", json={"matchers": [{"name": "region", "op": "=", "value": region}],
                                            "duration": "2h", "reason": "planned outage"}, headers=ops)
        assert sil.status_code == 201 and sil.json()["author"] == "ops-user"
        assert (_utc(sil.json()["ends_at"]) - _utc(sil.json()["starts_at"])).total_seconds() == 7200
        later = c.post("/v1/silences", json={"matchers": [{"name": "region", "op": "=", "value": region}],
                                              "starts_at": "2030-01-01T08:00:00+08:00", "reason": "next audit"},
                       headers=ops)
        assert later.status_code == 201 and later.json()["starts_at"] == "2030-01-01T00:00:00+00:00", later.text
        naive = c.post("/v1/silences", json={"matchers": [{"name": "region", "value": region}],
                                              "starts_at": "2030-01-01T08:00:00", "reason": "x"}, headers=ops)
        assert naive.status_code == 422 and "starts_at" in naive.text
        bad = c.post("/v1/silences", json={"matchers": [{"name": "region", "op": "=~", "value": "("}],
                                            "reason": "x"}, headers=ops)
        assert bad.status_code == 422 and "matchers" in bad.text
        bad = c.post("/v1/silences", json={"matchers": [{"name": "r", "value": "x"}], "duration": "soon",
                                            "reason": "x"}, headers=ops)
        assert bad.status_code == 422 and "duration" in bad.text
        assert [x["id"] for x in c.get("/v1/silences", params={"active": True}, headers=v).json()["silences"]] == \
            [sil.json()["id"]]
        assert c.delete(f"/v1/silences/{sil.json()['id']}", headers=ops).status_code == 200
        assert c.get("/v1/silences", params={"active": True}, headers=v).json()["count"] == 0
        assert c.delete("/v1/silences/nope", headers=ops).status_code == 404

        # dead-lettered notifications
        assert c.get("/v1/notifications/dead", headers=ops).json()["count"] == 0
        assert c.post("/v1/notifications/dead/redeliver", json={}, headers=ops).status_code == 422
        assert c.post("/v1/notifications/dead/redeliver", json={"notification_id": "x"}, headers=ops).status_code == 404

        # spot-check changes (the worker's view), filters, bad time
        resp = c.get("/v1/spotchecks/changes", headers=v)
        assert resp.status_code == 200, resp.text
        ch = resp.json()["changes"]
        sc = read_batches(s.broker, s.topic("spotcheck-changes"))
        assert len(ch) == len(sc) and {"from_ratio", "to_ratio", "region"} <= set(ch[0])
        r0 = next(x["region"] for x in ch if x["region"])
        by_region = c.get("/v1/spotchecks/changes", params={"region": r0}, headers=v)
        assert by_region.status_code == 200, (r0, by_region.text)
        assert by_region.json()["changes"] and all(x["region"] == r0 for x in by_region.json()["changes"])
        assert c.get("/v1/spotchecks/changes", params={"since": "yesterday"}, headers=v).status_code == 422

        # audit: what happened above, with actors, newest first
        entries = c.get("/v1/audit", headers=ops).json()["entries"]
        actions = [e["action"] for e in entries]
        assert actions[:2] == ["silence.expire", "silence.create"] and "alert.ack" in actions
        assert all(e["actor"] and _utc(e["at"]) for e in entries)


def test_rate_limit_per_token(stack):
    s, _ = stack
    with client(s, api_rate_per_minute=60, api_rate_burst=3) as c:
        codes = [c.get("/v1/entities", headers=auth("viewer")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.get("/v1/entities", headers=auth("viewer"))
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert c.get("/v1/entities", headers=auth("ops")).status_code == 200  # another token, its own bucket


def _ts(minutes: float) -> str:
    return (datetime(2026, 3, 1, tzinfo=timezone.utc) + timedelta(minutes=minutes)).isoformat()


def _recent(minutes_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).isoformat()


def _entity_state(c, eid):
    r = c.get(f"/v1/entities/{eid}", headers=auth("viewer"))
    return r.json() if r.status_code == 200 else None


def _one_complaint_in_tier_a(s, workers, c) -> dict:
    """Entity E registered with one complaint, a worker started; E's state once it shows, in tier A."""
    produce(s, [{"type": "entity", "entity_id": E, "name": "Shop", "industry": "food", "region": "350100"},
                {"type": "complaint", "complaint_id": "c0", "entity_id": E, "ts": _ts(0), "category": "a",
                 "severity": 3}])
    workers.start()
    st = wait_for(lambda: (x := _entity_state(c, E)) and x["score"] is not None and x, 60,
                  "the entity's risk state", workers.logs)
    assert st["tier"] == "A" and 0 < st["score"] < 25
    return st


def test_entities_are_found_by_name_scored_or_not(stack):
    """``GET /v1/entities?q=``: an inspector or a hotline operator knows a business by its name, not its
    credit code. Until 2026-12-05 the API could only list entities by score or fetch one by id."""
    from riskwatch.uscc import generate

    s, workers = stack
    rng = __import__("random").Random(11)
    coffee, shop, cn, cn2 = E, generate(rng, "350100"), generate(rng, "310101"), generate(rng, "510104")
    art = generate(rng, "110105")
    produce(s, [{"type": "entity", "entity_id": coffee, "name": "Blue Bottle Coffee (Oakland)", "industry": "food",
                 "region": "350100"},
                {"type": "complaint", "complaint_id": "c0", "entity_id": coffee, "ts": _ts(0), "category": "a",
                 "severity": 3},
                {"type": "entity", "entity_id": shop, "name": "Bottle Shop", "industry": "retail", "region": "350100"},
                {"type": "entity", "entity_id": cn, "name": "上海星巴克咖啡有限公司", "industry": "food",
                 "region": "310101", "address": "上海市黄浦区淮海中路300号"},
                {"type": "entity", "entity_id": cn2, "name": "四川海底捞餐饮股份有限公司成都第一分店",
                 "industry": "food", "region": "510104"},
                {"type": "entity", "entity_id": art, "name": "北京798艺术区文化发展有限公司", "industry": "retail",
                 "region": "110105"}])
    workers.start()
    viewer = auth("viewer")
    with client(s) as c:
        def found(q: str, **kw) -> list[str]:
            got = c.get("/v1/entities", params={"q": q, **kw}, headers=viewer)
            assert got.status_code == 200, got.text
            return [e["entity_id"] for e in got.json()["entities"]]

        wait_for(lambda: found("bott") == [coffee, shop] and _entity_state(c, coffee)["score"], 60,
                 "both bottles, the scored one first", workers.logs)
        hit = c.get("/v1/entities", params={"q": "bott"}, headers=viewer).json()
        assert (hit["matched"], hit["truncated"], hit["next_cursor"]) == (2, False, None)
        assert hit["entities"][0]["tier"] == "A" and hit["entities"][1]["score"] is None  # registered, not scored
        assert found("BLUE   bottle") == found("coffee (oak") == found("oakland") == [coffee]
        assert found("ＢＯＴＴＬＥ ｓｈｏｐ") == [shop]  # full-width letters, as NFKC reads them
        # Chinese is written without spaces: any part of the name (since 2026-12-06; the start only before)
        assert found("上海星巴克") == found("星巴克") == found("巴克咖啡") == [cn]
        # where to find it (since 2026-12-06): the register's address, when its upsert had one
        assert c.get("/v1/entities", params={"q": "星巴克"}, headers=viewer).json()["entities"][0]["address"] == \
            "上海市黄浦区淮海中路300号"
        assert hit["entities"][0]["address"] is None
        assert found("星巴克上海") == [] and found("咖啡有限公司") == [cn]
        # not from inside a trailing legal form (every company has one): 有限公司 is inside cn2's name only
        assert found("有限公司") == [cn2]
        assert found("海底捞餐饮股份有限公司成都第一") == [cn2]  # longer than the 12 characters a key keeps
        assert found("海底捞餐饮股份有限公司成都第二") == []
        # a key inside a Chinese word can start with a digit, and a query longer than the key finds it
        assert found("798艺术区") == found("798艺术区文化发展有限公司") == [art]
        assert found("bott", tier="A") == [coffee] and found("bott", min_score=1) == [coffee]
        assert found("bott", industry="retail") == [shop] and found("ottle") == []
        page = c.get("/v1/entities", params={"q": "bott", "limit": 1}, headers=viewer).json()
        assert [e["entity_id"] for e in page["entities"]] == [coffee] and page["next_cursor"]
        rest = c.get("/v1/entities", params={"q": "bott", "limit": 1, "cursor": page["next_cursor"]},
                     headers=viewer).json()
        assert [e["entity_id"] for e in rest["entities"]] == [shop] and rest["next_cursor"] is None
        for bad in (" a ", "x"):
            r = c.get("/v1/entities", params={"q": bad}, headers=viewer)
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "q"], bad
        # renamed: found by the new name only
        produce(s, [{"type": "entity", "entity_id": shop, "name": "Corner Store", "industry": "retail",
                     "region": "350100"}])
        wait_for(lambda: found("corner") == [shop], 60, "the new name", workers.logs)
        assert found("bott") == [coffee]
        # the board searches the same way, and shows the query escaped
        assert c.post("/board/login", data={"token": "t-viewer"}, follow_redirects=False).status_code == 303
        page = c.get("/board", params={"q": "<b>blue"}).text
        assert "&lt;b&gt;blue" in page and "<b>blue" not in page
        page = c.get("/board", params={"q": "blue bot"}).text
        assert "Blue Bottle Coffee (Oakland)" in page and "Corner Store" not in page
        assert c.get("/board", params={"q": "x"}).status_code == 422


def test_threshold_change_applies_to_the_next_events_without_restart(stack):
    s, workers = stack
    with client(s) as c:
        st = _one_complaint_in_tier_a(s, workers, c)
        ops = auth("ops")
        cfg = c.get("/v1/config", headers=ops).json()
        assert cfg["seq"] == 0
        new = cfg["config"]
        new["version"] = "t-lowered"
        new["tiers"][1].update(up=st["score"] / 4, down=st["score"] / 8)
        new["tiers"][2].update(up=st["score"] / 3, down=st["score"] / 3.5)
        # invalid changes: 422 naming every bad field, running config unchanged
        broken = orjson.loads(orjson.dumps(new))
        broken["tiers"][1]["ratio"] = 7
        broken["scoring"]["min_delta"] = -1
        r = c.put("/v1/config", json={"config": broken, "reason": "tune"}, headers=ops)
        assert r.status_code == 422
        locs = {".".join(map(str, d["loc"])) for d in r.json()["detail"]}
        assert {"body.config.tiers.1.ratio", "body.config.scoring.min_delta"} <= locs, locs
        assert c.post("/v1/config/validate", json={"config": broken}, headers=ops).status_code == 422
        assert c.get("/v1/config", headers=ops).json()["seq"] == 0
        ok = c.post("/v1/config/validate", json={"config": new}, headers=ops).json()
        assert ok["valid"] and any(d["path"] == "tiers.1.up" for d in ok["diff"])
        preview = c.post("/v1/config/preview", json={"config": new}, headers=ops).json()
        assert preview["events"] >= 1 and preview["candidate"]["version"] == "t-lowered"
        assert preview["candidate"]["tier_changes"] >= preview["current"]["tier_changes"]
        r = c.put("/v1/config", json={"config": new, "reason": "pilot: stricter tiers"}, headers=ops)
        assert r.status_code == 202 and r.json()["seq"] == 1
        wait_for(lambda: workers.metric(0, "riskwatch_config_change") == 1, 60, "the worker to apply the change",
                 workers.logs)
        # the same instant as _ts(1), written in Beijing time: the API answers in UTC
        beijing = datetime.fromisoformat(_ts(1)).astimezone(timezone(timedelta(hours=8))).isoformat()
        produce(s, [{"type": "complaint", "complaint_id": "c1", "entity_id": E, "ts": beijing, "category": "b"}])

        def raised():
            ch = [x for x in read_batches(s.broker, s.topic("spotcheck-changes")) if x["entity_id"] == E]
            return ch if ch and ch[-1]["config_version"] == "t-lowered" else None

        ch = wait_for(raised, 60, "a tier change under the new thresholds",
                      lambda: str([x for x in read_batches(s.broker, s.topic("risk-changes"))]) + workers.logs())
        assert ch[-1]["from_tier"] == "A" and ch[-1]["to_tier"] in ("B", "C")
        assert workers.procs[0][0].poll() is None  # same worker process, no restart
        # decision times in UTC, like every API time (the event's own +08:00 until 2026-12-05)
        st = wait_for(lambda: (x := _entity_state(c, E)) and x["tier"] != "A" and x, 30, "the view", workers.logs)
        assert st["updated"] == _ts(1), st["updated"]
        hist = c.get(f"/v1/entities/{E}/history", headers=auth("viewer")).json()["history"]
        assert hist[0]["ts"] == _ts(1) and all(_utc(h["ts"]) for h in hist)
        changes = c.get("/v1/spotchecks/changes", headers=auth("viewer")).json()["changes"]
        # the re-decide tick at E's own clock (_ts(0)) may have raised it already; c1 may raise it again
        assert {x["ts"] for x in changes if x["entity_id"] == E} <= {_ts(0), _ts(1)}, changes
        got = c.get("/v1/config", headers=auth("viewer")).json()
        assert got["seq"] == 1 and got["version"] == "t-lowered" and got["actor"] == "ops-user"
        hist = c.get("/v1/config/history", headers=auth("viewer")).json()["changes"]
        assert hist[0]["reason"] == "pilot: stricter tiers" and any(d["path"] == "tiers.1.up" for d in hist[0]["diff"])
        audit = c.get("/v1/audit", params={"action": "config."}, headers=ops).json()["entries"]
        assert audit[0]["actor"] == "ops-user" and audit[0]["detail"]["reason"] == "pilot: stricter tiers"
        assert c.put("/v1/config", json={"config": new, "reason": "again"}, headers=ops).status_code == 409

        # every change's whole config is kept: ops undo the pilot in one call
        viewer, file_version = auth("viewer"), load_config().version
        kept = c.get("/v1/config/history/1", headers=viewer).json()
        assert (kept["version"], kept["reason"], kept["config"]) == ("t-lowered", "pilot: stricter tiers", new)
        assert _utc(kept["at"]) and c.get("/v1/config/history/0", headers=viewer).json()["version"] == file_version
        missing = c.get("/v1/config/history/5", headers=viewer)
        assert missing.status_code == 404 and "the last is 1" in missing.text
        undo = {"to_seq": 0, "reason": "undo the pilot: too many tier changes"}
        assert c.post("/v1/config/rollback", json=undo, headers=auth("inspector")).status_code == 403
        bad = c.post("/v1/config/rollback", json={**undo, "to_seq": -1}, headers=ops)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "to_seq"]
        assert c.post("/v1/config/rollback", json={**undo, "to_seq": 1}, headers=ops).status_code == 409  # in force
        before = len(read_batches(s.broker, s.topic("risk-changes")))
        r = c.post("/v1/config/rollback", json=undo, headers=ops)
        assert r.status_code == 202 and r.json()["seq"] == 2 and r.json()["version"] == file_version
        assert any(d["path"] == "tiers.1.up" and d["to"] == load_config().tiers[1].up for d in r.json()["diff"])
        wait_for(lambda: workers.metric(0, "riskwatch_config_change") == 2, 60, "the worker to apply the rollback",
                 workers.logs)
        # the worker re-decides E (in a higher tier) under the file's config again: its risk change says so
        wait_for(lambda: any(x["entity_id"] == E and x["config_version"] == file_version
                             for x in read_batches(s.broker, s.topic("risk-changes"))[before:]), 60,
                 "a risk change under the file's config", workers.logs)
        got = c.get("/v1/config", headers=viewer).json()
        assert (got["seq"], got["version"], got["rollback_to"]) == (2, file_version, 0)
        assert c.get("/v1/config", headers=viewer).json()["config"] == c.get("/v1/config/history/0",
                                                                              headers=viewer).json()["config"]
        hist = c.get("/v1/config/history", headers=viewer).json()["changes"]
        assert (hist[0]["seq"], hist[0]["rollback_to"], hist[0]["reason"]) == (2, 0, undo["reason"])
        audit = c.get("/v1/audit", params={"action": "config."}, headers=ops).json()["entries"]
        assert audit[0]["detail"]["rollback_to"] == 0
        # a change made before the contents were kept (2026-12-05) says so
        sync_redis.Redis.from_url(s.redis_url).hdel("rw:config:versions", "1")
        old = c.get("/v1/config/history/1", headers=viewer)
        assert old.status_code == 404 and "was not kept" in old.text
        assert c.post("/v1/config/rollback", json={**undo, "to_seq": 1}, headers=ops).status_code == 404


def test_revoked_complaints_lower_score_and_tier(stack):
    s, workers = stack
    produce(s, [{"type": "entity", "entity_id": E, "name": "Shop", "industry": "food", "region": "350100"}] +
            [{"type": "complaint", "complaint_id": f"c{i}", "entity_id": E, "ts": _recent(30 - i), "category": f"k{i}",
              "severity": 3} for i in range(3)])  # recent: objections are filed (and timed) now
    workers.start()
    with client(s) as c:
        st = wait_for(lambda: (x := _entity_state(c, E)) and x["tier"] != "A" and x, 60, "tier above A",
                      workers.logs)
        high_score, high_tier = st["score"], st["tier"]
        ins, ops = auth("inspector"), auth("ops")
        objs = []
        for i in range(3):
            r = c.post("/v1/objections", json={"entity_id": E, "target_id": f"c{i}", "target_kind": "complaint",
                                                "reason": "not our shop"}, headers=ins)
            assert r.status_code == 202, r.text
            objs.append(r.json()["objection_id"])
        assert c.post("/v1/objections", json={"entity_id": E, "target_id": "c0", "target_kind": "complaint",
                                               "reason": "again"}, headers=ins).status_code == 409
        bad = c.post("/v1/objections", json={"entity_id": E, "target_id": "c0", "target_kind": "rumour",
                                              "reason": "x"}, headers=ins)
        assert bad.status_code == 422 and "target_kind" in bad.text
        st = wait_for(lambda: (x := _entity_state(c, E)) and len(x["disputed"]) == 3 and x["score"] < high_score
                      and all(d["effect"] for d in x["disputed"]) and x, 60, "the disputed complaints excluded",
                      workers.logs)
        assert st["tier"] == high_tier  # disputed: excluded from the score, tier waits for the resolution
        assert all(_utc(x["since"]) for x in st["disputed"])  # epoch seconds until 2026-12-05
        assert {x["effect"] for x in st["disputed"]} == {"excluded"}
        # an item the entity does not hold (never received, or older than its newest complaints): until
        # 2026-12-05 nothing said that contesting it changed nothing
        unheld = c.post("/v1/objections", json={"entity_id": E, "target_id": "c99", "target_kind": "complaint",
                                                 "reason": "never heard of it"}, headers=ins).json()["objection_id"]
        fx = wait_for(lambda: c.get(f"/v1/objections/{unheld}", headers=auth("viewer")).json()["effects"], 60,
                      "the unheld objection's effect", workers.logs)
        assert fx["objection"]["effect"] == "not_held" and "does not change" in fx["objection"]["meaning"]
        assert fx["objection"]["score"] == fx["objection"]["score_before"]
        objs.append(unheld)
        assert c.post(f"/v1/objections/{objs[0]}/resolve", json={"resolution": "revoked"},
                      headers=ins).status_code == 403
        for o in objs:
            r = c.post(f"/v1/objections/{o}/resolve", json={"resolution": "revoked", "note": "duplicate"},
                       headers=ops)
            assert r.status_code == 200 and r.json()["status"] == "resolved"
        assert c.post(f"/v1/objections/{objs[0]}/resolve", json={"resolution": "upheld"}, headers=ops).status_code == 409
        assert c.post("/v1/objections/nope/resolve", json={"resolution": "upheld"}, headers=ops).status_code == 404
        st = wait_for(lambda: (x := _entity_state(c, E)) and x["tier"] == "A" and x, 60, "the tier back to A",
                      workers.logs)
        assert st["score"] < 1 and st["disputed"] == []
        hist = c.get(f"/v1/entities/{E}/history", headers=auth("viewer")).json()["history"]
        assert hist[0]["tier"] == "A" and max(h["score"] for h in hist) == high_score
        listed = wait_for(lambda: (x := c.get("/v1/objections", params={"entity_id": E, "status": "resolved"},
                                               headers=auth("viewer")).json())
                          and all("resolution" in o["effects"] for o in x["objections"]) and x, 60,
                          "every resolution applied", workers.logs)
        assert listed["count"] == 4 and {o["resolution"] for o in listed["objections"]} == {"revoked"}
        effects = {o["target_id"]: (o["effects"]["objection"]["effect"], o["effects"]["resolution"]["effect"])
                   for o in listed["objections"]}
        assert effects == {"c0": ("excluded", "removed"), "c1": ("excluded", "removed"),
                           "c2": ("excluded", "removed"), "c99": ("not_held", "not_held")}
        assert c.get("/v1/objections/nope", headers=auth("viewer")).status_code == 404
        audit = [e["action"] for e in c.get("/v1/audit", headers=ops).json()["entries"]]
        assert audit.count("objection.create") == 4 and audit.count("objection.resolve") == 4


def test_ops_reset_an_entitys_state_and_its_history_says_who_and_why(stack):
    """For a state the worker cannot read or apply events to (its events wait in the dead letters):
    until 2026-12-06 nothing but a hand-written changelog record could replace it."""
    s, workers = stack
    produce(s, [{"type": "entity", "entity_id": E, "name": "Shop", "industry": "food", "region": "350100"}] +
            [{"type": "complaint", "complaint_id": f"c{i}", "entity_id": E, "ts": _recent(30 - i), "category": f"k{i}",
              "severity": 3} for i in range(3)])
    workers.start()
    with client(s) as c:
        wait_for(lambda: (x := _entity_state(c, E)) and x["tier"] != "A" and x, 60, "tier above A", workers.logs)
        # an objection open when the state is reset: moot then (the new state holds none of its disputes)
        obj = c.post("/v1/objections", json={"entity_id": E, "target_id": "c0", "target_kind": "complaint",
                                              "reason": "not our shop"}, headers=auth("inspector")).json()["objection_id"]
        high = wait_for(lambda: (x := _entity_state(c, E)) and x["disputed"] and x["disputed"][0]["effect"] and x, 60,
                        "the objection applied", workers.logs)
        # the state becomes one no worker can read: a new worker recovers it from the changelog
        workers.stop_all()
        send_raw(s.broker, s.state_changelog, [b"{not a state"], partition=partition_for(E.encode(), s.partitions),
                 key=E.encode())
        workers.start()
        produce(s, [{"type": "complaint", "complaint_id": "c8", "entity_id": E, "ts": _recent(1), "category": "k8",
                     "severity": 3}])
        wait_for(lambda: any(orjson.loads(v)["reason"] == "state_unreadable"
                             for _, _, v in read_topic(s.broker, s.topic("deadletter"))), 60, "c8 dead-lettered",
                 workers.logs)
        url = f"/v1/entities/{E}/reset-state"
        for role in ("viewer", "inspector"):
            assert c.post(url, json={"reason": "x"}, headers=auth(role)).status_code == 403
        for body in ({"reason": "  "}, {}):
            bad = c.post(url, json=body, headers=auth("ops"))
            assert bad.status_code == 422 and "reason" in bad.text, bad.text
        bad_id = c.post("/v1/entities/91350100M000100Y44/reset-state", json={"reason": "x"}, headers=auth("ops"))
        assert bad_id.status_code == 422 and "entity_id" in bad_id.text
        view = sync_redis.Redis.from_url(s.redis_url)
        seq_before = int(view.hget(f"rw:entity:{E}", "seq"))
        r = c.post(url, json={"reason": "state written by release 1.4.2"}, headers=auth("ops"))
        assert r.status_code == 202 and r.json()["reset_id"].startswith("reset-"), r.text
        # its open objection is closed with it: until 2026-12-07 it stayed open and listed as disputed
        assert r.json()["objections_closed"] == [obj]
        closed = c.get(f"/v1/objections/{obj}", headers=auth("viewer")).json()
        assert (closed["status"], closed["resolution"], closed["resolved_by"]) == ("closed", None, "ops-user")
        assert r.json()["reset_id"] in closed["note"] and "release 1.4.2" in closed["note"]
        assert _entity_state(c, E)["disputed"] == []
        again = c.post(f"/v1/objections/{obj}/resolve", json={"resolution": "revoked"}, headers=auth("ops"))
        assert again.status_code == 409 and "already closed" in again.text
        assert [o["objection_id"] for o in c.get("/v1/objections", params={"status": "closed"},
                                                 headers=auth("viewer")).json()["objections"]] == [obj]
        # the tier and its spot-check ratio stay (the view's: the worker could not read the state), until a
        # low score outlasts the de-escalation dwell from the reset: a reset does not by itself lower scrutiny
        st = wait_for(lambda: (x := _entity_state(c, E)) and x["score"] == 0 and x, 60, "the reset applied",
                      workers.logs)
        assert (st["tier"], st["spotcheck_ratio"]) == (high["tier"], high["spotcheck_ratio"])
        assert st["reasons"] == [] and st["name"] == "Shop"
        # the entity's seq goes on from the view's (the unreadable state's count is lost): it only grows
        assert int(view.hget(f"rw:entity:{E}", "seq")) == seq_before + 1
        # the new state has the view's register data: its peer group, counted once
        last = wait_for(lambda: (v := [v for _, k, v in read_topic(s.broker, s.state_changelog)
                                       if k == E.encode()][-1]) and v[:1] == b"{" and v != b"{not a state" and v,
                        30, "the new state on the changelog", workers.logs)
        assert orjson.loads(last)["m"] == ["food", "350100", "Shop"]
        hist = c.get(f"/v1/entities/{E}/history", headers=auth("viewer")).json()["history"]
        assert hist[0]["reset"] == {"author": "ops-user", "reason": "state written by release 1.4.2"}
        assert hist[0]["cause"] == r.json()["reset_id"] and hist[1]["score"] == high["score"]
        # its dead-lettered event goes back, and the new state's changes come after the old state's in the
        # history
        replayed = subprocess.run([sys.executable, "-m", "riskwatch.cli", "deadletter", "--reason", "state_unreadable",
                                   "--replay"], env=worker_env(s), capture_output=True, text=True, timeout=120)
        assert replayed.returncode == 0 and "replayed 1 events" in replayed.stdout, replayed
        hist = wait_for(lambda: (h := c.get(f"/v1/entities/{E}/history", headers=auth("viewer")).json()["history"])
                        and h[0]["cause"] == "c8" and h, 60, "the replayed event's change", workers.logs)
        assert "reset" in hist[1] and hist[2]["score"] == high["score"]
        # ops may also take it to the lowest tier at once
        r2 = c.post(url, json={"reason": "escalated by the faulty release", "keep_tier": False}, headers=auth("ops"))
        assert r2.status_code == 202
        st = wait_for(lambda: (x := _entity_state(c, E)) and x["tier"] == "A" and x, 60, "the second reset applied",
                      workers.logs)
        assert st["score"] == 0
        changes = c.get("/v1/spotchecks/changes", headers=auth("viewer")).json()
        assert any(x["cause"] == r2.json()["reset_id"] and (x["from_tier"], x["to_tier"]) == (high["tier"], "A")
                   for x in changes["changes"]), changes
        audit = c.get("/v1/audit", headers=auth("ops")).json()["entries"]
        assert [(e["detail"]["entity_id"], e["detail"]["keep_tier"]) for e in audit
                if e["action"] == "entity.reset_state"] == [(E, False), (E, True)]


def test_draw_is_reproducible_from_the_published_seed(stack):
    s, _ = stack
    seed_view(s.redis_url, 300)
    with client(s) as c:
        ops = auth("ops")
        body = {"period": "2026-12", "capacity": 40, "control_share": 0.25, "inspectors": ["li", "wang", "zhao"]}
        bad = c.post("/v1/spotchecks/draws", json={**body, "control_share": 2}, headers=ops)
        assert bad.status_code == 422 and "control_share" in bad.text
        assert c.post("/v1/spotchecks/draws", json={**body, "inspectors": ["li", "li"]}, headers=ops).status_code == 422
        assert c.post("/v1/spotchecks/draws", json=body, headers=auth("inspector")).status_code == 403
        committed = c.post("/v1/spotchecks/draws", json=body, headers=ops).json()
        assert "seed" not in committed and len(committed["seed_sha256"]) == 64
        public = c.get(f"/v1/spotchecks/draws/{committed['id']}", headers=auth("viewer")).json()
        assert "seed" not in public and public["status"] == "committed"
        done = c.post(f"/v1/spotchecks/draws/{committed['id']}/execute", headers=ops).json()
        assert c.post(f"/v1/spotchecks/draws/{committed['id']}/execute", headers=ops).status_code == 409
        # anyone can verify: the revealed seed matches the commitment and recomputes the same draw
        full = c.get(f"/v1/spotchecks/draws/{committed['id']}", params={"population": True},
                     headers=auth("viewer")).json()
        assert seed_digest(full["seed"]) == committed["seed_sha256"]
        pop = [tuple(p) for p in full["population"]]
        assert population_digest(pop) == committed["population_sha256"] and len(pop) == 300
        again = draw(full["seed"], "2026-12", pop, 40, 0.25, ["li", "wang", "zhao"], full["last_inspector"])
        assert again == done["result"]
        # and without Python: riskwatch verify-draw on the record as published
        published = c.get(f"/v1/spotchecks/draws/{committed['id']}", params={"population": True},
                          headers=auth("viewer")).content
        out = subprocess.run([sys.executable, "-m", "riskwatch.cli", "verify-draw", "-"], input=published,
                             capture_output=True, timeout=60)
        assert out.returncode == 0 and b"the draw verifies" in out.stdout, out.stdout + out.stderr
        sel = done["result"]["selected"]
        assert len(sel) == 40 and len({x["entity_id"] for x in sel}) == 40
        assert sum(1 for x in sel if x["stratum"] == "control") == 10
        risky = [x for x in sel if x["stratum"] == "risk"]
        # weighted toward high tiers: uniform picks would hold 1 D on average; weighted ones 5.7
        # (3,000 seeds: 0 D in 0.03% of draws; the weighting itself is tested over many seeds in test_draw.py)
        assert sum(1 for x in risky if x["tier"] == "D") >= 1
        # a second draw never sends an entity's last inspector when another is free
        second = c.post("/v1/spotchecks/draws", json={**body, "period": "2027-01", "capacity": 300,
                                                      "control_share": 0}, headers=ops).json()
        res2 = c.post(f"/v1/spotchecks/draws/{second['id']}/execute", headers=ops).json()
        last = {x["entity_id"]: x["inspector"] for x in sel}
        repeats = [x for x in res2["result"]["selected"] if x["entity_id"] in last
                   and x["inspector"] == last[x["entity_id"]]]
        assert len(res2["result"]["selected"]) == 300 - sum(1 for p in pop if p[2] <= 0) and not repeats
        assert c.get("/v1/spotchecks/draws/nope", headers=auth("viewer")).status_code == 404
        actions = [e["action"] for e in c.get("/v1/audit", params={"action": "draw."}, headers=ops).json()["entries"]]
        assert actions == ["draw.execute", "draw.commit", "draw.execute", "draw.commit"]
    time.sleep(0)  # nothing left running


def test_spotcheck_ratios_follow_a_ratio_change_for_entities_not_scored_since(stack):
    """A tier's spot-check ratio comes from the config in force. The view keeps the ratio an entity
    had at its last risk change; until 2026-11-28 the entity endpoint, the riskiest list and the
    draws went on using it after ops changed the ratios, for every entity whose score had not
    moved since (in a supervised population, most of them)."""
    s, _ = stack
    from riskwatch.uscc import generate
    from riskwatch.view import ViewWriter

    quiet, risky = E, generate(__import__("random").Random(7), "350100")
    file_ratios = {t.name: t.ratio for t in load_config().tiers}

    async def seed_view():
        r = aioredis.from_url(s.redis_url)
        w = ViewWriter(file_ratios)
        pipe = r.pipeline()
        for eid, tier, score in ((quiet, "A", 3.0), (risky, "D", 85.0)):
            w.entity(pipe, {"entity_id": eid, "name": "n", "industry": "food", "region": "350100"})
            w.output(pipe, {"type": "risk_change", "entity_id": eid, "tier": tier, "score": score, "reasons": [],
                            "ts": "2026-03-01T00:00:00+00:00", "cause_event_id": "x", "config_version": "t",
                            "seq": 1}, ["food", "350100"])
        await pipe.execute()
        await r.aclose()

    asyncio.run(seed_view())
    with client(s) as c:
        ops, viewer = auth("ops"), auth("viewer")
        assert c.get(f"/v1/entities/{risky}", headers=viewer).json()["spotcheck_ratio"] == file_ratios["D"]
        new = c.get("/v1/config", headers=ops).json()["config"]
        new["version"] = "t-ratios"
        new["tiers"][0]["ratio"], new["tiers"][3]["ratio"] = 0.01, 0.8
        assert c.put("/v1/config", json={"config": new, "reason": "more checks in D"},
                     headers=ops).status_code == 202
        assert c.get(f"/v1/entities/{risky}", headers=viewer).json()["spotcheck_ratio"] == 0.8
        assert c.get(f"/v1/entities/{quiet}", headers=viewer).json()["spotcheck_ratio"] == 0.01
        top = c.get("/v1/entities", headers=viewer).json()
        assert {e["entity_id"]: e["spotcheck_ratio"] for e in top["entities"]} == {risky: 0.8, quiet: 0.01}
        committed = c.post("/v1/spotchecks/draws", json={"period": "2026-12", "capacity": 1}, headers=ops).json()
        full = c.get(f"/v1/spotchecks/draws/{committed['id']}", params={"population": True}, headers=viewer).json()
        assert {p[0]: p[2] for p in full["population"]} == {risky: 0.8, quiet: 0.01}


def test_a_lowered_threshold_re_tiers_quiet_entities_without_new_events(stack):
    """Ops lower tier B's threshold below an entity's score; the entity gets no further event. Until
    2026-11-28 it stayed in tier A (a config change reached an entity only with its next event); now
    the worker re-decides every entity it holds at the entity's own clock."""
    s, workers = stack
    with client(s) as c:
        st = _one_complaint_in_tier_a(s, workers, c)
        ops = auth("ops")
        new = c.get("/v1/config", headers=ops).json()["config"]
        new["version"] = "t-lowered-quiet"
        new["tiers"][1].update(up=st["score"] / 4, down=st["score"] / 8)
        assert c.put("/v1/config", json={"config": new, "reason": "stricter"}, headers=ops).status_code == 202

        def raised():
            ch = [x for x in read_batches(s.broker, s.topic("spotcheck-changes")) if x["entity_id"] == E]
            return ch if ch and ch[-1]["config_version"] == "t-lowered-quiet" else None

        ch = wait_for(raised, 60, "a tier change under the new threshold, with no new event", workers.logs)
        assert (ch[-1]["from_tier"], ch[-1]["to_tier"]) == ("A", "B")
        assert datetime.fromisoformat(ch[-1]["ts"]) == datetime.fromisoformat(_ts(0))  # its own clock: no time passed
        st = wait_for(lambda: (x := _entity_state(c, E)) and x["tier"] == "B" and x, 30, "tier B in the view")
        assert st["spotcheck_ratio"] == new["tiers"][1]["ratio"]
        assert workers.metric(0, "riskwatch_redecide_ticks_total") == 1


def test_a_threshold_lowered_while_no_worker_runs_re_tiers_quiet_entities_when_one_starts(stack):
    """Ops change the config during a deploy, with every worker stopped. A worker that starts
    loads the applied config from Redis; until 2026-12-04 it then took the change's commands as
    already applied and re-decided nothing, so quiet entities kept tiers of the old thresholds."""
    s, workers = stack
    with client(s) as c:
        st = _one_complaint_in_tier_a(s, workers, c)
        workers.stop_all()  # SIGTERM: a clean stop, offsets committed
        ops = auth("ops")
        new = c.get("/v1/config", headers=ops).json()["config"]
        new["version"] = "t-lowered-offline"
        new["tiers"][1].update(up=st["score"] / 4, down=st["score"] / 8)
        assert c.put("/v1/config", json={"config": new, "reason": "stricter"}, headers=ops).status_code == 202
        i = workers.start(data_of=0)

        def raised():
            ch = [x for x in read_batches(s.broker, s.topic("spotcheck-changes")) if x["entity_id"] == E]
            return ch if ch and ch[-1]["config_version"] == "t-lowered-offline" else None

        ch = wait_for(raised, 60, "a tier change under the config applied while no worker ran", workers.logs)
        assert (ch[-1]["from_tier"], ch[-1]["to_tier"]) == ("A", "B")
        assert datetime.fromisoformat(ch[-1]["ts"]) == datetime.fromisoformat(_ts(0))
        assert workers.metric(i, "riskwatch_redecide_ticks_total") == 1
        # a restart with no change in between re-decides nothing (no forced outputs on every start)
        workers.stop_all()
        i = workers.start(data_of=0)
        produce(s, [{"type": "entity", "entity_id": E, "name": "Shop", "industry": "food", "region": "350100"}])
        wait_for(lambda: workers.metric(i, "riskwatch_events_processed_total") >= 1, 60,
                 "the restarted worker processing", workers.logs)
        time.sleep(3)  # the re-decide timer runs every second
        assert workers.metric(i, "riskwatch_config_change") == 1
        assert workers.metric(i, "riskwatch_redecide_ticks_total") == 0


def test_without_redis_the_api_answers_503_with_retry_after(stack):
    """Redis restarting or failing over is an outage of the view, not a bug in the request. Until
    2026-11-28 every /v1 route answered it with a bare 500 and a traceback in the log."""
    s, _ = stack
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with client(s, redis_url=f"redis://127.0.0.1:{port}/0") as c:
        for path in (f"/v1/entities/{E}", "/v1/entities", "/v1/alerts", "/v1/config"):
            r = c.get(path, headers=auth("ops"))
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.headers["Retry-After"] == "5" and "Redis" in r.json()["detail"], r.text
        assert c.get("/healthz").status_code == 200
        text = c.get("/metrics").text
        assert 'riskwatch_api_requests_total{route="/v1/entities/{entity_id}",status="503"} 1.0' in text
        assert "riskwatch_view_readable 0.0" in text  # /metrics still answers, and says the view was not read
