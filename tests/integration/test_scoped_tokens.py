"""Tokens limited to regions (``name:role:hash:11``): a district bureau's staff see their district only.

Against a real worker, Redis and the dispatcher's intake: every API route is called with a limited token.
A route in ``SCOPED_ROUTES`` must not name an entity outside the token's regions in its answer; every other
route must refuse the token (a route added later is closed to it until it keeps to the regions). The board
shows such a token its regions only, with their registered entities not scored yet."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone

from riskwatch import uscc
from riskwatch.api.app import create_api
from riskwatch.api.auth import hash_token
from riskwatch.api.context import SCOPED_ROUTES
from riskwatch.simulate import Simulation

from .api_helpers import ROLES, api_settings, auth, client
from .test_api import _intake_alerts
from .test_board import _tables

SCOPE = "11"  # Beijing: the simulated regions 110101 and 110105
LIMITED = {"bj-viewer": "viewer", "bj-inspector": "inspector", "bj-ops": "ops"}
TOKENS = ",".join([f"{r}-user:{r}:{hash_token('t-' + r)}" for r in ROLES]
                  + [f"{n}:{role}:{hash_token('t-' + n)}:{SCOPE}" for n, role in LIMITED.items()])


def test_a_token_limited_to_regions_sees_its_regions_only_and_may_not_use_routes_that_span_them(stack):
    s, workers = stack
    sim = Simulation(n_entities=90, seed=8, bad_share=0.3, days=20,
                     start=datetime.now(timezone.utc) - timedelta(days=21))
    events = list(sim.events(n_events=5000))
    # registered in Beijing and never scored: three that stay, one that moves to Shanghai
    rng = random.Random(3)
    quiet = [uscc.generate(rng) for _ in range(4)]
    extra = [{"type": "entity", "entity_id": e, "name": f"北京静安{i}号店", "industry": "catering", "region": "110105"}
             for i, e in enumerate(quiet)]
    extra.append({**extra[-1], "region": "310104"})
    workers.process(events + extra, batch_size=100)
    assert _intake_alerts(s) > 0
    region = {e["entity_id"]: e["region"] for e in events + extra if e["type"] == "entity"}  # the last upsert's
    inside = {e for e, r in region.items() if r.startswith(SCOPE)}
    outside = set(region) - inside
    assert inside and outside
    bj = {"Authorization": "Bearer t-bj-inspector"}
    with client(s, api_tokens=TOKENS) as c:
        v, ops = auth("viewer"), auth("ops")
        everyone = c.get("/v1/entities", params={"limit": 500}, headers=v).json()["entities"]
        scored_in = [e["entity_id"] for e in everyone if e["entity_id"] in inside]
        scored_out = [e["entity_id"] for e in everyone if e["entity_id"] in outside]
        assert scored_in and scored_out
        alerts = c.get("/v1/alerts", params={"limit": 1000}, headers=v).json()["alerts"]
        alert_out = next(a["id"] for a in alerts if a["entity_id"] in outside)
        alert_in = next(a["id"] for a in alerts if a["entity_id"] in inside)
        # an objection on each side, and a city-wide draw executed by unlimited ops
        obj = {}
        for eid in (scored_in[0], scored_out[0]):
            r = c.post("/v1/objections", json={"entity_id": eid, "target_id": "c-x", "target_kind": "complaint",
                                                "reason": "not ours"}, headers=auth("inspector"))
            assert r.status_code == 202, r.text
            obj[eid] = r.json()["objection_id"]
        draw = c.post("/v1/spotchecks/draws", json={"period": "2026-12", "capacity": 40, "control_share": 0.5,
                                                     "inspectors": ["li", "wang"]}, headers=ops).json()
        assert c.post(f"/v1/spotchecks/draws/{draw['id']}/execute", headers=ops).status_code == 200
        city = c.get(f"/v1/spotchecks/draws/{draw['id']}/worklist", headers=v).json()["entities"]
        assert {x["entity_id"] for x in city} & outside

        # every GET a limited token may use: nothing of an entity outside its regions in any answer
        pattern = re.compile("|".join(sorted(outside)))
        fill = {"entity_id": scored_in[0], "alert_id": alert_in, "objection_id": obj[scored_in[0]],
                "draw_id": draw["id"]}
        queries = {"/v1/entities": [{"limit": 500}, {"q": "北京"}, {"q": "上海"}, {"status": "closed"},
                                    {"region": "310104"}],
                   "/v1/alerts": [{"limit": 1000}], "/v1/spotchecks/changes": [{"limit": 5000}],
                   "/v1/objections": [{}], "/v1/spotchecks/draws/{draw_id}/worklist": [{}, {"format": "csv"}]}
        for method, path in sorted(SCOPED_ROUTES):
            if method != "GET":
                continue
            url = path.format(**fill)
            for params in queries.get(path, [{}]):
                r = c.get(url, params=params, headers=bj)
                assert r.status_code == 200, (url, params, r.text)
                assert not pattern.search(r.text), (url, params, pattern.search(r.text).group())
        listed = c.get("/v1/entities", params={"limit": 500}, headers=bj).json()["entities"]
        assert {e["entity_id"] for e in listed} == set(scored_in)  # all of its regions', none else
        mine = c.get(f"/v1/spotchecks/draws/{draw['id']}/worklist", headers=bj).json()["entities"]
        assert mine == [x for x in city if x["entity_id"] in inside]  # the district's part of a city's draw
        # one outside is as if unknown: entity, history, alert, objection; acting on it changes nothing
        for url in (f"/v1/entities/{scored_out[0]}", f"/v1/entities/{scored_out[0]}/history",
                    f"/v1/alerts/{alert_out}", f"/v1/objections/{obj[scored_out[0]]}"):
            assert c.get(url, headers=bj).status_code == 404, url
        assert c.post(f"/v1/alerts/{alert_out}/ack", json={}, headers=bj).status_code == 404
        assert c.get(f"/v1/alerts/{alert_out}", headers=v).json()["status"] == "firing"
        assert c.post(f"/v1/objections/{obj[scored_out[0]]}/resolve", json={"resolution": "upheld"},
                      headers={"Authorization": "Bearer t-bj-ops"}).status_code == 404
        r = c.post("/v1/objections", json={"entity_id": scored_out[1], "target_id": "c-y", "target_kind": "complaint",
                                            "reason": "x"}, headers=bj)
        assert r.status_code == 404 and "regions" in r.json()["detail"]
        # inside: the same calls work
        assert c.post(f"/v1/alerts/{alert_in}/ack", json={}, headers=bj).status_code == 200
        assert c.post("/v1/objections", json={"entity_id": scored_in[0], "target_id": "c-y",
                                              "target_kind": "complaint", "reason": "x"}, headers=bj).status_code == 202

        # every other route serves every region: refused before it reads anything, whatever the role
        api_routes = [(m.upper(), path) for path, ops_ in create_api(api_settings(s)).openapi()["paths"].items()
                      if path.startswith("/v1/") for m in ops_]
        closed = [(m, p) for m, p in api_routes if (m, p) not in SCOPED_ROUTES]
        assert len(closed) >= 15 and set(SCOPED_ROUTES) <= set(api_routes)  # no stale entries
        for method, path in closed:
            url = re.sub(r"\{[a-z_]+\}", "x", path)
            r = c.request(method, url, json={}, headers={"Authorization": "Bearer t-bj-ops"})
            assert r.status_code == 403 and "limited to regions 11" in r.text, (method, path, r.status_code, r.text)
        # the board: its regions only. Entities per tier counts its regions' scored entities (the list above)
        assert c.post("/board/login", data={"token": "t-bj-viewer"}, follow_redirects=False).status_code == 303
        page = c.get("/board")
        assert page.status_code == 200 and "regions 11" in page.text
        assert not pattern.search(page.text), pattern.search(page.text).group()
        per_tier = {row[0]: int(row[1]) for row in _tables(page.text).tables["Entities per tier"][1:]}
        # and its regions' registered entities not scored yet: the three quiet ones (the one that moved
        # out is not counted); until 2026-12-07 a limited board had no such row
        assert set(quiet[:3]) <= inside and quiet[3] in outside
        assert per_tier.pop("not scored yet") == len(inside) - len(scored_in) >= 3
        assert per_tier == {t: sum(1 for e in listed if e["tier"] == t) for t in per_tier} and sum(per_tier.values())
        one = c.get(f"/board/entities/{scored_in[0]}")
        assert one.status_code == 200 and not pattern.search(one.text)
        assert c.get(f"/board/entities/{scored_out[0]}").status_code == 404
        sheet = c.get(f"/board/draws/{draw['id']}/worklist.csv")
        assert sheet.status_code == 200 and not pattern.search(sheet.text)
        assert {x["entity_id"] for x in mine} <= set(re.findall(r"9\d{5}[0-9A-Z]{12}", sheet.text))
