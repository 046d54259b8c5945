"""The supervision board (/board): sign-in, the overview and an entity page, against a real Redis view."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from html.parser import HTMLParser

import orjson
import redis as sync_redis
import redis.asyncio as aioredis

from riskwatch.alerts.config import load_alerts_config
from riskwatch.alerts.intake import AlertIntake
from riskwatch.alerts.metrics import AlertMetrics
from riskwatch.config import load_config
from riskwatch.engine import Engine
from riskwatch.events import parse_event
from riskwatch.simulate import Simulation
from riskwatch.view import ViewWriter

from .api_helpers import auth, client

HOSTILE = '<script>alert("x")</script> & Co'


class _Tables(HTMLParser):
    """Each table's rows (cell texts), under the text of the heading before it."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.heading = ""
        self._in_h = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts += 1
        if tag in ("h1", "h2"):
            self._in_h, self.heading = True, ""
        elif tag == "table":
            self.tables[self.heading] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("h1", "h2"):
            self._in_h = False
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self.heading].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._in_h:
            self.heading += data
        if self._cell is not None:
            self._cell.append(data)


def _tables(html: str) -> _Tables:
    p = _Tables()
    p.feed(html)
    return p


def _seed(s) -> str:
    """Simulated events through the engine; its outputs into the view (as a worker writes them) and
    its alert candidates through the dispatcher's intake. The riskiest entity gets a hostile name
    (names come from producers); returns its id."""
    cfg = load_config()
    eng = Engine(cfg)
    events = [parse_event(e) for e in Simulation(n_entities=60, seed=9, bad_share=0.3, days=20).events(n_events=4000)]
    states: dict = {}
    outs, meta = [], {}
    for ev in events:
        st, o = eng.process(states.get(ev.entity_id), ev)
        states[ev.entity_id] = st
        outs += o
        if ev.type == "entity":
            meta[ev.entity_id] = {"entity_id": ev.entity_id, "name": ev.name, "industry": ev.industry,
                                  "region": ev.region}
    hostile, closed = sorted((k for k in meta), key=lambda k: states[k]["es"])[-1:-3:-1]
    meta[hostile]["name"] = HOSTILE
    meta[closed].update(status="closed", status_since=1.77e9)  # the register says so

    async def go():
        r = aioredis.from_url(s.redis_url)
        w = ViewWriter({t.name: t.ratio for t in cfg.tiers})
        pipe = r.pipeline()
        for m in meta.values():
            w.entity(pipe, m)
        for o in outs:
            m = meta.get(o["entity_id"])
            w.output(pipe, o, [m["industry"], m["region"]] if m else None)
        await pipe.execute()
        intake = AlertIntake(r, load_alerts_config(), [t.name for t in cfg.tiers], AlertMetrics())
        cands = [o for o in outs if o["type"] == "alert_candidate"]
        for i in range(0, len(cands), 50):
            await intake.apply_message("cands", 0, i, orjson.dumps({"batch": cands[i:i + 50]}))
        await intake.tick(now=time.time() + 9 * 3600)  # nobody acknowledged them: breaches and failures escalate
        await r.aclose()

    asyncio.run(go())
    # one alert as a peer group's surge gives it (tests/test_peer_surge.py makes real ones)
    rs = sync_redis.Redis.from_url(s.redis_url)
    aid = sorted(rs.zrange("rw:alerts:open", 0, -1))[0].decode()
    a = orjson.loads(rs.get(f"rw:alert:{aid}"))
    rs.set(f"rw:alert:{aid}", orjson.dumps(dict(a, detail={"peer_group": {
        "industry": "catering", "region": "440305", "window_hours": 24.0, "entities_with_complaints": 9,
        "expected": 0.51, "entities": [a["entity_id"]]}})))
    return hostile, closed


def test_the_board_shows_what_the_api_holds_to_a_signed_in_viewer(stack):
    s, _ = stack
    hostile, closed = _seed(s)
    with client(s) as c:
        v = auth("viewer")
        # a browser at the API's address is sent to the board; not signed in, to the sign-in form
        assert c.get("/", follow_redirects=False).headers["location"] == "/board"
        r = c.get("/board", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/board/login"
        for token, why in (("", "no token given"), ("nope", "not a valid token")):
            r = c.post("/board/login", data={"token": token})
            assert r.status_code == 401 and why in r.text, r.text
        r = c.post("/board/login", data={"token": "t-viewer"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/board"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/board" in cookie

        page = c.get("/board")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        t = _tables(page.text)
        assert t.scripts == 0
        # entities per tier: the API's counts
        per_tier = {row[0]: int(row[1]) for row in t.tables["Entities per tier"][1:]}
        unscored = per_tier.pop("not scored yet")
        assert unscored == len(sync_redis.Redis.from_url(s.redis_url).smembers("rw:entities")) - sum(per_tier.values())
        for tier, n in per_tier.items():
            assert c.get("/v1/entities", params={"tier": tier, "limit": 500}, headers=v).json()["count"] == n
        assert sum(per_tier.values()) > 0
        # the riskiest, in the API's order, with their top reason
        api = c.get("/v1/entities", params={"limit": 50}, headers=v).json()["entities"]
        rows = t.tables["Riskiest entities"][1:]
        assert [row[0] for row in rows] == [e["entity_id"] for e in api]
        assert [row[8] for row in rows] == [e["reasons"][0]["code"] if e["reasons"] else "" for e in api]
        assert all(e["tier_since"] for e in api) and all(row[6] for row in rows)
        # a name from a feed is text, never markup
        assert {row[0]: row[1] for row in rows}[hostile] == HOSTILE
        assert {row[0]: row[1] for row in rows}[closed].endswith(" (closed)")
        facts = dict(_tables(c.get(f"/board/entities/{closed}").text).tables[
            c.get(f"/v1/entities/{closed}", headers=v).json()["name"]])
        assert facts["register status"] == "closed since 2026-02-02 02:40:00Z"
        assert "<script>" not in page.text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in page.text
        # open alerts and the latest tier changes, as the API lists them
        alerts = c.get("/v1/alerts", params={"limit": 50}, headers=v).json()["alerts"]
        assert alerts and [row[2] for row in t.tables["Open alerts"][1:]] == [a["rule"] for a in alerts]
        assert [row[1] for row in t.tables["Open alerts"][1:]] == [
            a["status"] + (f" (escalated, level {a['escalation']})" if a.get("escalated_at") else "") for a in alerts]
        assert any(a.get("escalated_at") for a in alerts)
        summaries = [row[4] for row in t.tables["Open alerts"][1:]]
        assert [x for x in summaries if x.endswith("(9 of the group with complaints in 24 h, 0.51 expected)")] \
            == [a["annotations"]["summary"] + " (9 of the group with complaints in 24 h, 0.51 expected)"
                for a in alerts if a.get("detail")]
        latest = c.get("/v1/spotchecks/changes", params={"limit": 20}, headers=v).json()["changes"]
        assert latest and [row[1] for row in t.tables["Latest tier changes"][1:]] == [x["entity_id"] for x in latest]
        # which the API reads in pages now (it read and parsed every change kept, up to 200,000, for any limit)
        every = c.get("/v1/spotchecks/changes", params={"limit": 5000}, headers=v).json()["changes"]
        assert len(every) > 20 and latest == every[:20]
        to_tier = every[-1]["to_tier"]
        for limit in (1, 3, 5000):
            got = c.get("/v1/spotchecks/changes", params={"limit": limit, "to_tier": to_tier}, headers=v).json()
            assert got["changes"] == [x for x in every if x["to_tier"] == to_tier][:limit]

        # filters: a tier; a bad region is a 422 page naming the field
        tier = api[0]["tier"]
        only = _tables(c.get("/board", params={"tier": tier}).text).tables["Riskiest entities (filtered)"][1:]
        assert only and all(row[5] == tier for row in only)
        bad = c.get("/board", params={"region": "abc"})
        assert bad.status_code == 422 and "region" in bad.text
        assert c.get("/board", params={"tier": "Z"}).status_code == 422

        # one entity: its facts, reasons with their events, history, as the API gives them
        eid = api[0]["entity_id"]
        one = c.get(f"/v1/entities/{eid}", headers=v).json()
        hist = c.get(f"/v1/entities/{eid}/history", params={"limit": 50}, headers=v).json()["history"]
        et = _tables(c.get(f"/board/entities/{eid}").text)
        facts = {row[0]: row[1] for row in et.tables[one["name"] or eid]}
        assert facts["entity id"] == eid and facts["tier"] == one["tier"]
        # since when: the last history entry in another tier is before it, the first in this tier at it
        since = datetime.fromisoformat(one["tier_since"])
        assert facts["in tier since"] == since.strftime("%Y-%m-%d %H:%M:%SZ")
        moved = [h for h in hist if h["tier"] != one["tier"]]
        stay = [h for h in hist if datetime.fromisoformat(h["ts"]) >= since]
        assert stay and all(h["tier"] == one["tier"] for h in stay)
        assert not moved or datetime.fromisoformat(moved[0]["ts"]) < since
        assert [(row[0], row[4]) for row in et.tables["Why: reasons"][1:]] == \
            [(x["code"], ", ".join(x["event_ids"])) for x in one["reasons"]]
        assert len(et.tables["History (newest first)"]) - 1 == len(hist)
        assert c.get("/board/entities/91350100M000100Y43").status_code == 404
        bad = c.get("/board/entities/91350100M000100Y44")
        assert bad.status_code == 422 and "check character" in bad.text

        # signing out ends it
        r = c.post("/board/logout", follow_redirects=False)
        assert r.status_code == 303 and c.get("/board", follow_redirects=False).status_code == 303


def test_the_board_keeps_to_the_tokens_rate_limit(stack):
    s, _ = stack
    with client(s, api_rate_burst=2, api_rate_per_minute=1) as c:
        assert c.post("/board/login", data={"token": "t-viewer"}, follow_redirects=False).status_code == 303
        assert [c.get("/board/login").status_code for _ in range(2)] == [200, 200]  # the form: no token needed
        got = [c.get("/board") for _ in range(3)]
        assert [r.status_code for r in got] == [200, 200, 429]
        assert "rate limit" in got[2].text and int(got[2].headers["retry-after"]) >= 1


def test_without_redis_the_board_is_a_503_page_that_tries_again(stack):
    import socket

    s, _ = stack
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with client(s, redis_url=f"redis://127.0.0.1:{port}/0") as c:
        assert c.post("/board/login", data={"token": "t-viewer"}, follow_redirects=False).status_code == 303
        for path in ("/board", "/board/entities/91350100M000100Y43"):
            r = c.get(path)
            assert r.status_code == 503 and r.headers["retry-after"] == "5", (path, r.text)
            assert r.headers["content-type"].startswith("text/html") and "Redis unavailable" in r.text
            assert 'http-equiv="refresh"' in r.text


def test_the_board_lists_each_draw_with_its_task_and_what_became_of_it(stack):
    from .helpers import seed_view

    s, _ = stack
    seed_view(s.redis_url, 60)
    ops = auth("ops")
    body = {"period": "2026-12", "capacity": 10, "control_share": 0.2, "inspectors": ["li"]}
    with client(s) as c:
        gone = c.post("/v1/spotchecks/draws", json=body, headers=ops).json()["id"]
        assert c.post(f"/v1/spotchecks/draws/{gone}/withdraw", json={"reason": "the plan changed"},
                      headers=ops).status_code == 200
        done = c.post("/v1/spotchecks/draws", json=body, headers=ops).json()["id"]
        assert c.post(f"/v1/spotchecks/draws/{done}/execute", headers=ops).status_code == 200
        food = c.post("/v1/spotchecks/draws", json={**body, "task": "food safety"}, headers=ops).json()["id"]
        assert c.post("/board/login", data={"token": "t-viewer"}, follow_redirects=False).status_code == 303
        rows = {row[0]: row[1:6] for row in
                _tables(c.get("/board").text).tables["Spot-check draws: what the checks found"][1:]}
        assert rows == {food: ["food safety", "2026-12", "all", "committed", "capacity 10"],
                        done: ["routine", "2026-12", "all", "executed", "10"],
                        gone: ["routine", "2026-12", "all", "withdrawn", "the plan changed"]}, rows
