"""``POST /v1/config/impact`` says what a config change will do to every entity, before it is applied.

A real worker holds the states; the API reads them from the state changelog. The test then
applies the same change and checks that the workers' re-decide pass did exactly what the impact
said, entity by entity.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import redis as redis_sync

from riskwatch.simulate import Simulation

from .api_helpers import auth, client
from .conftest import wait_for
from .helpers import produce, read_batches


def _view_tiers(r) -> dict[str, tuple[str, float]]:
    out = {}
    for k in r.scan_iter("rw:entity:*"):
        h = r.hgetall(k)
        if "tier" in h:
            out[k.removeprefix("rw:entity:")] = (h["tier"], float(h["score"]))
    return out


def test_impact_says_what_applying_a_change_does_to_every_entity(stack):
    s, workers = stack
    events = list(Simulation(n_entities=200, seed=11, bad_share=0.15, days=40).events(n_events=10000))
    produce(s, events)
    workers.start()
    wait_for(lambda: workers.metric(0, "riskwatch_events_processed_total") >= len(events), 120,
             f"{len(events)} events processed", workers.logs)
    workers.wait_committed()  # the last round's view write (until 2026-12-07 a sleep of 2 s)
    r = redis_sync.Redis.from_url(s.redis_url, decode_responses=True)
    before = _view_tiers(r)
    ops = auth("ops")
    with client(s) as c:
        new = c.get("/v1/config", headers=ops).json()["config"]
        new["version"] = "t-impact"
        new["tiers"][1].update(up=32, down=28)   # B harder to enter and easier to leave: held by the dwell
        new["tiers"][2].update(up=40, down=36)   # C easier to enter: entities move up at once
        new["detectors"]["records"]["signals"]["judicial"]["weight"] = 45
        assert c.post("/v1/config/impact", json={"config": {"version": 1}}, headers=ops).status_code == 422
        assert c.post("/v1/config/impact", json={"config": new}, headers=auth("viewer")).status_code == 403
        res = c.post("/v1/config/impact", json={"config": new, "limit": 5000}, headers=ops)
        assert res.status_code == 200, res.text
        out = res.json()
        assert _view_tiers(r) == before  # it changes nothing

        # under the config in force, the re-decide gives the view's tiers back
        assert out["current"]["tiers"] == dict(sorted(Counter(t for t, _ in before.values()).items()))
        assert out["entities_held"] == len(r.smembers("rw:entities"))
        movers = {e["entity_id"]: e for e in out["entities"] if e["status"] == "moves"}
        held = [e for e in out["entities"] if e["status"] == "held_by_dwell"]
        assert not out["truncated"] and len(movers) == out["moved"] > 0, out
        assert len(held) == sum(out["held_by_dwell"].values()) > 0, out
        for e in held:
            assert e["candidate_tier"] < e["tier"] and e["moves_at"] > e["at"]
        for e in movers.values():
            assert e["candidate_tier"] != e["tier"] and e["candidate_reasons"]
            if e["candidate_tier"] < e["tier"]:  # down at once: in its tier longer than the 30-day dwell
                since = datetime.fromisoformat(r.hget(f"rw:entity:{e['entity_id']}", "tier_since"))
                assert datetime.fromisoformat(e["at"]) - since >= timedelta(days=30), e

        assert c.put("/v1/config", json={"config": new, "reason": "pilot"}, headers=ops).status_code == 202

    expected = {eid: ((movers[eid]["candidate_tier"], movers[eid]["candidate_score"]) if eid in movers else tier)
                for eid, (tier, _) in before.items()}

    def applied():
        now = _view_tiers(r)
        got = {eid: ((t, sc) if eid in movers else t) for eid, (t, sc) in now.items()}
        return got == expected and now

    after = wait_for(applied, 60, "the view as the impact said", lambda: str(
        {eid: (expected.get(eid), v) for eid, v in _view_tiers(r).items() if expected.get(eid) not in (v, v[0])}))
    assert dict(sorted(Counter(t for t, _ in after.values()).items())) == out["candidate"]["tiers"]
    # and the alert candidates the pass sent (the tier alert of the entities that moved up to D)
    sent = Counter(f"{a['signal']} {a['status']}" for a in read_batches(s.broker, s.topic("alert-candidates"))
                   if a["config_version"] == "t-impact")
    assert out["candidate"]["alerts"] and dict(sent) == out["candidate"]["alerts"]
    print(f"{out['entities_held']} entities: moves {out['moves']}, held by the dwell {out['held_by_dwell']}, "
          f"took {out['seconds']}")
