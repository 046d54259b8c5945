"""HTTP ingest on a real broker and Redis: validation, exactly-once acceptance, idempotency, back-pressure."""

from __future__ import annotations

import signal
import threading
import time

import orjson
from fastapi.testclient import TestClient

from riskwatch.ingest.http import create_ingest_api
from riskwatch.simulate import Simulation

from .api_helpers import api_settings, auth
from .helpers import read_batches

GOOD = Simulation(n_entities=30, seed=9, bad_share=0.0, days=10)


def _client(s, **kw) -> TestClient:
    from riskwatch.api.auth import hash_token

    st = api_settings(s, **kw)
    st = st.model_copy(update={"api_tokens": st.api_tokens + f",feed:ingest:{hash_token('t-ingest')}"})
    return TestClient(create_ingest_api(st))


ING = {"Authorization": "Bearer t-ingest"}


def _on_topics(s) -> list[dict]:
    out = []
    for t in ("entities", "complaints", "sensor-readings", "inspections", "records", "commands"):
        out += read_batches(s.broker, s.topic(t))
    return out


def _key(ev: dict) -> str:
    return orjson.dumps(ev, option=orjson.OPT_SORT_KEYS).decode()


def test_mixed_batches_are_validated_per_event_and_land_once(stack):
    s, _ = stack
    good = list(GOOD.events(n_events=300))
    bad = [{"type": "complaint", "entity_id": good[1]["entity_id"]},                       # missing fields
           {"type": "gossip", "entity_id": "x"},                                          # unknown type
           {**next(e for e in good if e["type"] == "complaint"), "severity": "very"},     # wrong type
           {"type": "tick", "entity_id": good[1]["entity_id"], "ts": "2026-01-01T00:00:00+00:00"},  # internal
           {**next(e for e in good if e["type"] == "complaint"), "ts": "2062-01-01T00:00:00+00:00"}]  # 2062
    body = good[:100] + bad + good[100:200]
    with _client(s) as c:
        assert c.post("/v1/events", json=good[:1]).status_code == 401
        assert c.post("/v1/events", json=good[:1], headers=auth("viewer")).status_code == 403
        r = c.post("/v1/events", json=body, headers=ING)
        assert r.status_code == 207, r.text
        out = r.json()
        assert out["accepted"] == 200
        assert [x["index"] for x in out["rejected"]] == [100, 101, 102, 103, 104]
        fields = [{e["field"] for e in x["errors"]} for x in out["rejected"]]
        assert "complaint_id" in fields[0] and "type" in fields[1] and "severity" in fields[2] and "type" in fields[3]
        assert out["rejected"][4]["errors"][0]["field"] == "ts" and out["rejected"][4]["errors"][0]["rule"] == "in_future"
        # JSON lines with a broken line; one event alone
        nd = b"\n".join(orjson.dumps(e) for e in good[200:250]) + b"\n{broken\n" + orjson.dumps(good[250])
        r = c.post("/v1/events", content=nd, headers={**ING, "Content-Type": "application/x-ndjson"})
        assert r.status_code == 207 and r.json()["accepted"] == 51 and r.json()["rejected"][0]["index"] == 50
        r = c.post("/v1/events", json=good[251], headers=ING)
        assert r.status_code == 200 and r.json() == {"accepted": 1, "rejected": []}
        assert c.post("/v1/events", content=b"[{", headers={**ING, "Content-Type": "application/json"}).status_code == 400
        assert c.post("/v1/events", content=b"", headers=ING).status_code == 400
    sent = good[:200] + good[200:252]
    landed = _on_topics(s)
    assert sorted(map(_key, landed)) == sorted(map(_key, sent))  # every accepted event exactly once


def test_size_limit(stack):
    s, _ = stack
    with _client(s, ingest_max_bytes=2048) as c:
        r = c.post("/v1/events", json=list(GOOD.events(n_events=200)), headers=ING)
        assert r.status_code == 413 and "split" in r.text


def test_retry_with_idempotency_key_does_not_duplicate(stack):
    s, _ = stack
    evs = list(GOOD.events(n_events=120))
    with _client(s) as c:
        h = {**ING, "Idempotency-Key": "batch-0001"}
        r1 = c.post("/v1/events", json=evs + [{"type": "nope"}], headers=h)
        r2 = c.post("/v1/events", json=evs + [{"type": "nope"}], headers=h)
        assert r1.status_code == r2.status_code == 207 and r1.json() == r2.json()
        assert r2.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in r1.headers
    assert sorted(map(_key, _on_topics(s))) == sorted(map(_key, evs))


def test_broker_stopped_mid_load_answers_503_and_loses_nothing(stack, services):
    """The broker is paused (SIGSTOP: unreachable, its memory kept): requests get 503 + Retry-After and
    are retried with their Idempotency-Key until accepted; afterwards every accepted event is on a topic."""
    s, _ = stack
    broker = services[0]
    evs = list(GOOD.events(n_events=2000))
    batches = [evs[i:i + 100] for i in range(0, len(evs), 100)]
    seen_503 = []
    accepted_batches = set()
    with _client(s, ingest_broker_timeout=1.5) as c:
        def pause_later():
            time.sleep(0.3)
            broker.proc.send_signal(signal.SIGSTOP)
            time.sleep(4)
            broker.proc.send_signal(signal.SIGCONT)

        t = threading.Thread(target=pause_later)
        t.start()
        try:
            for i, b in enumerate(batches):
                deadline = time.monotonic() + 60
                while True:
                    r = c.post("/v1/events", json=b, headers={**ING, "Idempotency-Key": f"load-{i}"})
                    if r.status_code == 200:
                        accepted_batches.add(i)
                        break
                    assert r.status_code == 503, r.text
                    assert int(r.headers["Retry-After"]) >= 1
                    seen_503.append(i)
                    assert time.monotonic() < deadline, "the broker never came back"
                    time.sleep(0.5)
                time.sleep(0.05)
        finally:
            broker.proc.send_signal(signal.SIGCONT)
            t.join()
    assert seen_503, "the pause was not noticed"
    assert accepted_batches == set(range(len(batches)))
    landed = {_key(e) for e in _on_topics(s)}
    assert {_key(e) for e in evs} <= landed  # nothing accepted is lost (a batch that timed out may land twice)


def test_events_keep_flowing_while_redis_is_down(stack, tmp_path):
    """Kafka is where events go; Redis only holds the config applied through the API and idempotency
    keys. Until 2026-11-28 the gateway read the config from Redis on every request, so with Redis
    restarting every sensor feed got a bare 500. It now keeps the last config it read; only a request
    with an Idempotency-Key, which needs Redis, is refused, with 503 and Retry-After."""
    from riskwatch.embedded import start_redis

    s, _ = stack
    events = list(GOOD.events(n_events=3))
    red = start_redis(tmp_path / "redis")
    try:
        with _client(s, redis_url=red.url) as c:
            assert c.post("/v1/events", json=events[:1], headers=ING).status_code == 200
            red.stop()
            r = c.post("/v1/events", json=events[1:2], headers=ING)
            assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
            r = c.post("/v1/events", json=events[2:], headers={**ING, "Idempotency-Key": "k1"})
            assert r.status_code == 503 and r.headers["Retry-After"] == "5" and "Redis" in r.json()["detail"]
    finally:
        red.stop()
    landed = {_key(e) for e in _on_topics(s)}
    assert {_key(e) for e in events[:2]} <= landed and _key(events[2]) not in landed
