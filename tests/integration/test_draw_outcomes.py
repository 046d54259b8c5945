"""``GET /v1/spotchecks/draws/{id}/outcomes``: what a draw's spot checks found, from inspection results
that went through a real worker into the view."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from riskwatch.simulate import Simulation

from .api_helpers import auth, client
from .conftest import wait_for
from .helpers import produce


def _inspection(eid: str, i: int, at: datetime, found: bool) -> dict:
    return {"type": "inspection", "inspection_id": f"spot-{i}", "entity_id": eid, "ts": at.isoformat(),
            "kind": "routine", "outcome": "conditional" if found else "pass",
            "violations": {"critical": 0, "major": 1 if found else 0, "minor": 2}}


def test_outcomes_count_what_each_stratum_found_after_the_draw(stack):
    s, workers = stack
    events = list(Simulation(n_entities=150, seed=4, days=20).events(n_events=3000))
    produce(s, events)
    workers.start()
    wait_for(lambda: workers.metric(0, "riskwatch_events_processed_total") >= len(events), 120,
             f"{len(events)} events processed", workers.logs)
    time.sleep(2)
    ops, viewer = auth("ops"), auth("viewer")
    with client(s) as c:
        body = {"period": "2026-12", "capacity": 40, "control_share": 0.5, "inspectors": ["li", "wang"]}
        committed = c.post("/v1/spotchecks/draws", json=body, headers=ops).json()
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
        produce(s, [_inspection(x["entity_id"], i, now + timedelta(minutes=1), found[x["entity_id"]])
                    for i, x in enumerate(visited)]
                + [_inspection(early["entity_id"], 99, now - timedelta(days=2), True)])
        out = wait_for(lambda: (x := c.get(f"/v1/spotchecks/draws/{did}/outcomes", headers=viewer).json())
                       and x["inspected"] == 30 and x, 60, "the 30 inspections in the outcomes", workers.logs)
        later = c.post("/v1/spotchecks/draws", json={**body, "period": "2027-01"}, headers=ops).json()
        listed = c.get("/v1/spotchecks/draws", headers=viewer).json()["draws"]
        assert [(d["id"], d["status"], d["selected"]) for d in listed] == [(later["id"], "committed", None),
                                                                           (did, "executed", 40)]
        assert "result" not in listed[1] and "population" not in listed[1]
        # the board shows what the checks found, as the API counts it
        assert c.post("/board/login", data={"token": "t-viewer"}, follow_redirects=False).status_code == 303
        page = c.get("/board").text
        risk, control = out["strata"]["risk"], out["strata"]["control"]
        assert f"{risk['found']} of {risk['inspected']} ({risk['hit_rate']:.0%})" in page
        assert f"{control['found']} of {control['inspected']} ({control['hit_rate']:.0%})" in page
        assert f"{out['lift']:.2f}x" in page and later["id"] in page

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
    assert all(by_id[eid]["found"] is f for eid, f in found.items())
    assert sum(t["selected"] for t in out["tiers"].values()) == 40
