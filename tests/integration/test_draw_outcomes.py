"""``GET /v1/spotchecks/draws/{id}/outcomes``: what a draw's spot checks found, from inspection results
that went through a real worker into the view."""

from __future__ import annotations

import codecs
import csv
import io
from datetime import datetime, timedelta, timezone

import redis as sync_redis

from riskwatch.api.spotchecks import address_order
from riskwatch.simulate import Simulation

from .api_helpers import auth, client
from .conftest import wait_for
from .helpers import produce


def _inspection(eid: str, i: int, at: datetime, found: bool, kind: str = "routine") -> dict:
    return {"type": "inspection", "inspection_id": f"spot-{i}", "entity_id": eid, "ts": at.isoformat(),
            "kind": kind, "outcome": "conditional" if found else "pass",
            "violations": {"critical": 0, "major": 1 if found else 0, "minor": 2}}


def test_outcomes_count_what_each_stratum_found_after_the_draw(stack):
    s, workers = stack
    events = list(Simulation(n_entities=150, seed=4, days=20).events(n_events=3000))
    # three businesses the register then says are closed or suspended (the upsert is the whole record)
    register = {e["entity_id"]: e for e in events if e["type"] == "entity"}
    gone = [dict(e, status=st, ts=events[-1]["ts"])
            for e, st in zip(register.values(), ("closed", "closed", "suspended"))]
    produce(s, events + gone)
    workers.start()
    wait_for(lambda: workers.metric(0, "riskwatch_events_processed_total") >= len(events) + 3, 120,
             f"{len(events) + 3} events processed", workers.logs)
    workers.wait_committed()  # the last round's view write (until 2026-12-07 a sleep of 2 s)
    ops, viewer = auth("ops"), auth("viewer")
    with client(s) as c:
        closed = c.get("/v1/entities", params={"status": "closed", "limit": 500}, headers=viewer).json()["entities"]
        assert sorted(e["entity_id"] for e in closed) == sorted(e["entity_id"] for e in gone[:2])
        first = c.get("/v1/entities", params={"status": "closed", "limit": 1}, headers=viewer).json()
        second = c.get("/v1/entities", params={"status": "closed", "limit": 1, "cursor": first["next_cursor"]},
                       headers=viewer).json()
        assert [e["entity_id"] for e in first["entities"] + second["entities"]] == [e["entity_id"] for e in closed]
        assert second["next_cursor"] is None
        one = c.get(f"/v1/entities/{gone[2]['entity_id']}", headers=viewer).json()
        assert (one["status"], one["status_since"]) == ("suspended", datetime.fromisoformat(gone[2]["ts"]).astimezone(
            timezone.utc).isoformat())
        assert c.get("/v1/entities", params={"status": "gone"}, headers=viewer).json()["detail"][0]["loc"] == \
            ["query", "status"]
        body = {"period": "2026-12", "capacity": 40, "control_share": 0.5, "inspectors": ["li", "wang"]}
        committed = c.post("/v1/spotchecks/draws", json=body, headers=ops).json()
        # a business that is not operating cannot be inspected: not in the draw's frame
        assert committed["not_operating"] == 3
        frame = c.get(f"/v1/spotchecks/draws/{committed['id']}", params={"population": "true"},
                      headers=viewer).json()["population"]
        assert len(frame) == committed["population_size"] and not {p[0] for p in frame} & {e["entity_id"] for e in gone}
        assert c.get(f"/v1/spotchecks/draws/{committed['id']}/outcomes", headers=viewer).status_code == 409
        sel = c.post(f"/v1/spotchecks/draws/{committed['id']}/execute", headers=ops).json()["result"]["selected"]
        did = committed["id"]
        nothing = c.get(f"/v1/spotchecks/draws/{did}/outcomes", headers=viewer).json()
        assert (nothing["inspected"], nothing["outstanding"], nothing["lift"]) == (0, 40, None)

        # inspectors visit 30 of the 40: the risk stratum finds more than the control
        now = datetime.now(timezone.utc)
        visited = sel[:15] + sel[-15:]  # control first in a draw's result, then risk
        found = {x["entity_id"]: (i % 3 != 0 if x["stratum"] == "risk" else i % 3 == 0)
                 for i, x in enumerate(visited)}
        early = sel[20]  # one not visited had an inspection before the draw: it is no spot check
        # one not visited was inspected after the draw on a complaint (it failed): no spot check either, and
        # one visited had a follow-up before its spot check: not the one counted
        prompted, followed = sel[21], visited[0]
        produce(s, [_inspection(x["entity_id"], i, now + timedelta(minutes=1), found[x["entity_id"]])
                    for i, x in enumerate(visited)]
                + [_inspection(early["entity_id"], 99, now - timedelta(days=2), True),
                   _inspection(prompted["entity_id"], 98, now + timedelta(minutes=2), True, "complaint"),
                   _inspection(followed["entity_id"], 97, now + timedelta(seconds=30), not found[followed["entity_id"]],
                               "follow_up")])
        out = wait_for(lambda: (x := c.get(f"/v1/spotchecks/draws/{did}/outcomes", headers=viewer).json())
                       and x["inspected"] == 30 and sum(e["not_counted"] for e in x["entities"]) == 2 and x, 60,
                       "the 30 spot checks and 2 other inspections in the outcomes", workers.logs)
        wider = c.get(f"/v1/spotchecks/draws/{did}/outcomes?kinds=routine&kinds=complaint&kinds=follow_up",
                      headers=viewer).json()
        bad = c.get(f"/v1/spotchecks/draws/{did}/outcomes?kinds=random", headers=viewer)
        assert bad.status_code == 422 and "kinds" in bad.text
        later = c.post("/v1/spotchecks/draws", json={**body, "period": "2027-01"}, headers=ops).json()
        listed = c.get("/v1/spotchecks/draws", headers=viewer).json()["draws"]
        assert [(d["id"], d["status"], d["selected"]) for d in listed] == [(later["id"], "committed", None),
                                                                           (did, "executed", 40)]
        assert "result" not in listed[1] and "population" not in listed[1]
        # draws committed before the list had its index (2026-12-05) are indexed at the first list
        sync_redis.Redis.from_url(s.redis_url).delete("rw:draws:by-commit")
        assert c.get("/v1/spotchecks/draws", headers=viewer).json()["draws"] == listed
        assert [d["id"] for d in c.get("/v1/spotchecks/draws?status=executed&limit=1",
                                       headers=viewer).json()["draws"]] == [did]

        # the work list: each inspector's entities with their register data, which are checked; blind
        work = c.get(f"/v1/spotchecks/draws/{did}/worklist?inspector=li", headers=viewer).json()
        mine = [x for x in sel if x["inspector"] == "li"]
        assert work["count"] == len(mine) > 0 and {e["entity_id"] for e in work["entities"]} == {
            x["entity_id"] for x in mine}
        assert all(set(e) == {"draw_id", "period", "inspector", "entity_id", "name", "address", "industry",
                              "region", "status", "checked_at", "inspection_id"}
                   for e in work["entities"])  # no stratum, tier
        names = {e["entity_id"]: (e["name"], e["address"]) for e in events if e["type"] == "entity"}
        assert all((e["name"], e["address"]) == names[e["entity_id"]] and e["region"] for e in work["entities"])
        routine = {x["entity_id"] for x in visited}
        assert {e["entity_id"] for e in work["entities"] if e["checked_at"]} == routine & {x["entity_id"] for x in mine}
        assert work["checked"] == len(routine & {x["entity_id"] for x in mine})
        # a street's entities together, house numbers as numbers (since 2026-12-06; region and industry before)
        route = [(e["region"], address_order(e["address"]), e["entity_id"]) for e in work["entities"]]
        assert route == sorted(route) and all(e["address"] for e in work["entities"])
        bad = c.get(f"/v1/spotchecks/draws/{did}/worklist?inspector=zhao", headers=viewer)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "inspector"]
        assert "li, wang" in bad.text
        assert c.get(f"/v1/spotchecks/draws/{later['id']}/worklist", headers=viewer).status_code == 409
        assert c.get("/v1/spotchecks/draws/nope/worklist", headers=viewer).status_code == 404
        # a name that a spreadsheet would run as a formula is written as text
        # and one that closed since the draw says so (not worth the drive)
        gone_since = dict(register[sel[2]["entity_id"]], status="注销", ts=now.isoformat())
        produce(s, [{"type": "entity", "entity_id": sel[0]["entity_id"], "name": '=HYPERLINK("http://x","y")',
                     "industry": "food", "region": "310104"}, gone_since])
        sheet = wait_for(lambda: (r := c.get(f"/v1/spotchecks/draws/{did}/worklist?format=csv", headers=viewer))
                         and "HYPERLINK" in r.text and ",closed," in r.text and r, 60,
                         "the renamed and the closed entity in the work list", workers.logs)
        assert sheet.headers["content-type"].startswith("text/csv")
        assert f'filename="{did}-all.csv"' in sheet.headers["content-disposition"]
        assert sheet.content.startswith(codecs.BOM_UTF8)  # Excel reads it as UTF-8, not the system code page
        rows = list(csv.DictReader(io.StringIO(sheet.content.decode("utf-8-sig"))))
        assert len(rows) == 40 and {r["inspector"] for r in rows} == {"li", "wang"}
        by_id = {r["entity_id"]: r for r in rows}
        assert by_id[sel[0]["entity_id"]]["name"] == '\'=HYPERLINK("http://x","y")'
        assert by_id[sel[0]["entity_id"]]["address"] == ""  # its last upsert had none
        assert by_id[sel[1]["entity_id"]]["address"] == names[sel[1]["entity_id"]][1]
        assert [r["entity_id"] for r in rows if r["status"] != "operating"] == [sel[2]["entity_id"]]
        assert by_id[sel[2]["entity_id"]]["status"] == "closed"
        assert sum(1 for r in rows if r["checked_at"]) == len(routine)
        # the board shows what the checks found, as the API counts it
        assert c.post("/board/login", data={"token": "t-viewer"}, follow_redirects=False).status_code == 303
        page = c.get("/board").text
        risk, control = out["strata"]["risk"], out["strata"]["control"]
        assert f"{risk['found']} of {risk['inspected']} ({risk['hit_rate']:.0%})" in page
        assert f"{control['found']} of {control['inspected']} ({control['hit_rate']:.0%})" in page
        assert f"{out['lift']:.2f}x" in page and later["id"] in page
        assert page.count("; 1 inspected otherwise, not counted") == 1
        link = f"/board/draws/{did}/worklist.csv?inspector=wang"
        assert f'href="{link}"' in page
        theirs = c.get(link)
        assert theirs.status_code == 200 and theirs.headers["content-type"].startswith("text/csv")
        assert len(list(csv.DictReader(io.StringIO(theirs.content.decode("utf-8-sig"))))) == sum(1 for x in sel if x["inspector"] == "wang")
        assert c.get(f"/board/draws/{did}/worklist.csv?inspector=zhao").status_code == 422
        # an inspector's name in Chinese names the file too (a header is Latin-1: it answered a 500)
        cn = c.post("/v1/spotchecks/draws", json={**body, "period": "2027-02", "capacity": 3, "inspectors": ["李明"]},
                    headers=ops).json()
        assert c.post(f"/v1/spotchecks/draws/{cn['id']}/execute", headers=ops).status_code == 200
        got = c.get(f"/v1/spotchecks/draws/{cn['id']}/worklist", params={"inspector": "李明", "format": "csv"},
                    headers=viewer)
        assert got.status_code == 200 and "filename*=UTF-8''" in got.headers["content-disposition"]
        assert [r["inspector"] for r in csv.DictReader(io.StringIO(got.content.decode("utf-8-sig")))] == ["李明"] * 3

    assert out["outstanding"] == 10 and out["selected"] == 40
    for stratum in ("risk", "control"):
        rows = [x for x in visited if x["stratum"] == stratum]
        hits = sum(found[x["entity_id"]] for x in rows)
        st = out["strata"][stratum]
        assert (st["inspected"], st["found"]) == (len(rows), hits), (stratum, st)
        assert st["hit_rate"] == round(hits / len(rows), 4)
    assert out["lift"] == round(out["strata"]["risk"]["hit_rate"] / out["strata"]["control"]["hit_rate"], 3) > 1
    by_id = {e["entity_id"]: e for e in out["entities"]}
    assert by_id[early["entity_id"]]["inspection"] is None
    # the complaint-prompted inspection is shown apart, in its stratum; the follow-up is passed over
    assert out["kinds"] == ["routine"]
    assert (by_id[prompted["entity_id"]]["inspection"], by_id[prompted["entity_id"]]["not_counted"]) == (None, 1)
    assert out["strata"][prompted["stratum"]]["inspected_otherwise"] == 1
    assert sum(st["inspected_otherwise"] for st in out["strata"].values()) == 1
    assert by_id[followed["entity_id"]]["inspection"]["inspection_id"] == "spot-0"
    assert by_id[followed["entity_id"]]["not_counted"] == 1
    # counting every kind: the prompted one becomes that entity's check, the follow-up the other's
    wide = {e["entity_id"]: e for e in wider["entities"]}
    assert wider["inspected"] == 31 and wider["outstanding"] == 9
    assert wide[prompted["entity_id"]]["inspection"]["inspection_id"] == "spot-98"
    assert wide[followed["entity_id"]]["found"] is (not found[followed["entity_id"]])
    assert all(by_id[eid]["found"] is f for eid, f in found.items())
    assert sum(t["selected"] for t in out["tiers"].values()) == 40
