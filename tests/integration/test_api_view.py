"""The API over the view a real worker wrote (real broker, real Redis)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from riskwatch.api.app import create_api
from riskwatch.simulate import Simulation

from .conftest import wait_for
from .helpers import produce


def test_api_serves_the_workers_view(stack):
    s, workers = stack
    sim = Simulation(n_entities=60, seed=4, bad_share=0.3, days=20)
    events = list(sim.events(n_events=4000))
    produce(s, events, batch_size=100)
    workers.start()
    wait_for(lambda: workers.metric(0, "riskwatch_events_processed_total") >= len(events), 120,
             "events processed", workers.logs)
    with TestClient(create_api(s)) as client:
        _check(client)


def _check(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": True, "broker": True}

    top = client.get("/v1/entities", params={"limit": 5}).json()["entities"]
    assert top and [e["score"] for e in top] == sorted((e["score"] for e in top), reverse=True)
    one = client.get(f"/v1/entities/{top[0]['entity_id']}").json()
    assert one["tier"] in "ABCD" and one["reasons"] and one["reasons"][0]["event_ids"]
    assert one["spotcheck_ratio"] > 0 and one["name"].startswith("Entity ")
    hist = client.get(f"/v1/entities/{top[0]['entity_id']}/history").json()["history"]
    assert hist and hist[0]["score"] == one["score"]

    tier = top[0]["tier"]
    same = client.get("/v1/entities", params={"tier": tier}).json()["entities"]
    assert same and all(e["tier"] == tier for e in same)
    region = top[0]["region"]
    assert all(e["region"] == region for e in client.get("/v1/entities", params={"region": region}).json()["entities"])

    assert client.get("/v1/entities/91350100M000100Y43").status_code == 404
    bad = client.get("/v1/entities/91350100M000100Y44")
    assert bad.status_code == 422 and "check character" in bad.text
    assert client.get("/v1/entities", params={"region": "abc"}).status_code == 422
    assert client.get("/v1/entities", params={"min_score": 101}).status_code == 422
    assert "riskwatch_api_requests_total" in client.get("/metrics").text
