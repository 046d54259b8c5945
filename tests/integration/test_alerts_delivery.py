"""Webhook delivery against a real Redis outbox and a real HTTP receiver."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import orjson
import pytest
import redis as redis_sync
import redis.asyncio as aioredis

from riskwatch.alerts.config import AlertsConfig
from riskwatch.alerts.delivery import Deliverer
from riskwatch.alerts.metrics import AlertMetrics
from riskwatch.alerts.outbox import DEAD, Outbox
from riskwatch.alerts.signing import verify
from riskwatch.embedded import free_port

from .receiver import Receiver


def _config(url: str, **kw) -> AlertsConfig:
    rcv = {"name": "team", "url": url, "secrets": ["s3cret"], "backoff_base": 0.05, "backoff_max": 0.3,
           "max_attempts": 30, "timeout": 2, **kw}
    return AlertsConfig.model_validate({"allow_private": ["127.0.0.1"], "receivers": [rcv]})


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


async def _enqueue(url: str, n: int, receiver: str = "team") -> list[str]:
    r = aioredis.from_url(url)
    ids = []
    pipe = r.pipeline(transaction=True)
    for i in range(n):
        nid = f"n{i:04d}"
        ids.append(nid)
        Outbox.enqueue(pipe, {"id": nid, "kind": "webhook", "receiver": receiver,
                              "body": orjson.dumps({"status": "firing", "i": i}).decode(), "queued_at": time.time()})
    await pipe.execute()
    await r.aclose()
    return ids


async def _deliver_until(url: str, cfg: AlertsConfig, cond, timeout: float = 20.0) -> tuple[Deliverer, Outbox]:
    r = aioredis.from_url(url)
    ob = Outbox(r, "test", claim_idle=2.0)
    d = Deliverer(ob, cfg, AlertMetrics(), seed=1)
    task = asyncio.create_task(d.run())
    deadline = time.monotonic() + timeout
    try:
        while not await cond(ob):
            assert time.monotonic() < deadline, "delivery did not finish in time"
            assert not task.done(), task.exception()
            await asyncio.sleep(0.1)
    finally:
        await d.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return d, ob


async def _empty(ob: Outbox) -> bool:
    return (await ob.depth())[0] == 0


async def test_three_500s_then_200_delivers_once_with_one_key(redis_url, receiver):
    receiver.plan = [500, 500, 500]
    await _enqueue(redis_url, 1)
    d, ob = await _deliver_until(redis_url, _config(receiver.url), _empty)
    assert [r["status"] for r in receiver.requests] == [500, 500, 500, 200]
    assert {r["key"] for r in receiver.requests} == {"n0000"}       # one idempotency key across retries
    assert list(receiver.delivered()) == ["n0000"]
    assert all(receiver.verified(r) for r in receiver.requests)
    assert (await ob.depth()) == (0, 0)
    assert d.m.retries.labels("team")._value.get() == 3


async def test_429_retry_after_is_honoured_and_retried(redis_url, receiver):
    receiver.plan = [429]
    await _enqueue(redis_url, 1)
    await _deliver_until(redis_url, _config(receiver.url), _empty)
    assert [r["status"] for r in receiver.requests] == [429, 200]


async def test_receiver_down_for_a_while_gets_everything_when_back(redis_url):
    port = free_port()
    rcv = Receiver(port=port)
    await _enqueue(redis_url, 20)
    cfg = _config(f"http://127.0.0.1:{port}/hook", max_attempts=100, backoff_max=0.5)

    async def come_back_later():
        await asyncio.sleep(3.0)  # connection refused meanwhile
        rcv.start()

    back = asyncio.create_task(come_back_later())
    try:
        d, ob = await _deliver_until(redis_url, cfg, _empty, timeout=30)
        await back
        assert sorted(rcv.delivered()) == [f"n{i:04d}" for i in range(20)]
        assert d.m.deliveries.labels("team", "retry")._value.get() >= 20  # each one failed at least once
        assert (await ob.depth()) == (0, 0)
    finally:
        rcv.stop()


async def test_400_is_not_retried_and_lands_in_dead_letters_then_redelivers(redis_url, receiver):
    receiver.plan = [400]
    await _enqueue(redis_url, 1)

    async def dead_one(ob):
        return (await ob.depth()) == (0, 1)

    _, ob = await _deliver_until(redis_url, _config(receiver.url), dead_one)
    assert [r["status"] for r in receiver.requests] == [400]
    [rec] = await ob.dead()
    assert rec["notification"]["id"] == "n0000" and "400" in rec["error"] and "not retried" in rec["error"]
    # an operator fixes the receiver and redelivers (CLI: riskwatch alerts redeliver --all)
    env = dict(os.environ, RISKWATCH_REDIS_URL=redis_url)
    out = subprocess.run([sys.executable, "-m", "riskwatch.cli", "alerts", "redeliver", "--all"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "re-queued 1" in out.stdout, out.stderr
    await _deliver_until(redis_url, _config(receiver.url), _empty)
    assert [r["status"] for r in receiver.requests] == [400, 200]
    assert list(receiver.delivered()) == ["n0000"]


async def test_gives_up_after_max_attempts(redis_url, receiver):
    receiver.default = 503
    await _enqueue(redis_url, 1)

    async def dead_one(ob):
        return (await ob.depth()) == (0, 1)

    _, ob = await _deliver_until(redis_url, _config(receiver.url, max_attempts=3), dead_one)
    assert len(receiver.requests) == 3
    [rec] = await ob.dead()
    assert rec["attempts"] == 3 and "503 after 3 attempts" in rec["error"]


async def test_a_url_refused_at_delivery_time_says_so_and_a_name_that_does_not_resolve_is_tried_again(
        redis_url, receiver):
    """The URL is checked again before each request (DNS can change). Refused, the dead letter says why,
    not "HTTP 403" as until 2026-12-07 (no request was made); a name that does not resolve is tried
    again (until then it was dead-lettered at once)."""
    async def dead_one(ob):
        return (await ob.depth()) == (0, 1)

    loaded = _config(receiver.url, max_attempts=3)
    now_private = loaded.model_copy(update={"allow_private": []})  # as if the name now gave a private address
    await _enqueue(redis_url, 1)
    _, ob = await _deliver_until(redis_url, now_private, dead_one)
    [rec] = await ob.dead()
    assert rec["error"].startswith("refused: 127.0.0.1 is not a public address") and "(not retried)" in \
        rec["error"] and rec["attempts"] == 1, rec
    assert receiver.requests == []

    await ob.r.delete(DEAD)
    gone = loaded.model_copy(update={"receivers": [loaded.receivers[0].model_copy(
        update={"url": "http://riskwatch-receiver.invalid/hook"})]})
    await _enqueue(redis_url, 1)
    _, ob = await _deliver_until(redis_url, gone, dead_one)
    [rec] = await ob.dead()
    assert rec["error"].startswith("host riskwatch-receiver.invalid does not resolve") and \
        rec["error"].endswith("after 3 attempts") and rec["attempts"] == 3, rec


def test_sigkill_mid_delivery_then_restart_delivers_pending(redis_url, receiver, tmp_path):
    """A dispatcher dies with requests in flight; its successor (same name) delivers them."""
    n = 12
    asyncio.run(_enqueue(redis_url, n))
    receiver.delay = 1.5  # long enough to be killed mid-request
    cfg = tmp_path / "alerts.yaml"
    cfg.write_text(orjson.dumps({"allow_private": ["127.0.0.1"], "rules": [], "receivers": [
        {"name": "team", "url": receiver.url, "secrets": ["s3cret"], "concurrency": 2, "backoff_base": 0.05,
         "backoff_max": 0.3}]}).decode())
    env = dict(os.environ, RISKWATCH_REDIS_URL=redis_url, RISKWATCH_ALERTS_PATH=str(cfg),
               RISKWATCH_DISPATCHER_NAME="d1", RISKWATCH_OUTBOX_CLAIM_SECONDS="2")

    def start():
        return subprocess.Popen([sys.executable, "-m", "riskwatch.cli", "dispatcher", "--role", "deliver"],
                                env=env, stdout=(tmp_path / "d.log").open("ab"), stderr=subprocess.STDOUT,
                                start_new_session=True)

    p = start()
    deadline = time.monotonic() + 30
    while not receiver.requests and time.monotonic() < deadline:  # wait until one answer went out
        time.sleep(0.05)
    assert receiver.requests, (tmp_path / "d.log").read_text()
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(5)
    before = set(receiver.delivered())
    assert len(before) < n                       # killed mid-way: something was left pending
    pending = redis_sync.Redis.from_url(redis_url).xpending("rw:outbox", "deliver")["pending"]
    assert pending >= 1
    receiver.delay = 0.0
    p = start()
    try:
        deadline = time.monotonic() + 40
        while len(receiver.delivered()) < n and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(15)
    assert sorted(receiver.delivered()) == [f"n{i:04d}" for i in range(n)], (tmp_path / "d.log").read_text()
    assert redis_sync.Redis.from_url(redis_url).xlen("rw:outbox") == 0


async def test_signature_verifies_and_tampered_body_does_not(redis_url, receiver):
    await _enqueue(redis_url, 1)
    await _deliver_until(redis_url, _config(receiver.url), _empty)
    [req] = receiver.requests
    assert verify(req["body"], req["signature"], "s3cret")
    assert not verify(req["body"].replace(b"firing", b"resolved"), req["signature"], "s3cret")
    assert not verify(req["body"], req["signature"], "another-secret")


async def test_rotation_signs_with_every_secret(redis_url, receiver):
    await _enqueue(redis_url, 1)
    await _deliver_until(redis_url, _config(receiver.url, secrets=["old", "new"]), _empty)
    [req] = receiver.requests
    assert verify(req["body"], req["signature"], "old") and verify(req["body"], req["signature"], "new")
    assert "old" not in req["signature"] and "new" not in req["signature"]


async def test_a_burst_of_notifications_is_delivered_without_losing_any(redis_url, receiver):
    """500 queued at once: in-flight work is bounded (unbounded tasks exhausted Redis connections)."""
    await _enqueue(redis_url, 500)
    d, ob = await _deliver_until(redis_url, _config(receiver.url), _empty, timeout=60)
    assert len(receiver.delivered()) == 500 and len(receiver.requests) == 500
    assert d.m.deliveries.labels("team", "ok")._value.get() == 500


async def test_an_https_receiver_signed_by_an_own_ca_that_requires_a_client_certificate(redis_url, tmp_path):
    """A ministry's receiver: its certificate signed by an internal CA, and it requires a client certificate.
    Configured with ``tls_ca_file`` and ``tls_cert_file`` it gets the notification; without them the
    dead letter says why (certificate verification; the handshake refused)."""
    from .pki import mutual_tls  # skips without trustme

    _, server, ca_file, client_file = mutual_tls(tmp_path, "riskwatch-dispatcher")
    rcv = Receiver(tls=server).start()
    assert rcv.url.startswith("https://")

    async def dead(n):
        async def check(ob):
            return (await ob.depth()) == (0, n)
        return check

    try:
        await _enqueue(redis_url, 1)
        await _deliver_until(redis_url, _config(rcv.url, tls_ca_file=str(ca_file), tls_cert_file=str(client_file)),
                             _empty)
        assert list(rcv.delivered()) == ["n0000"] and rcv.verified(rcv.requests[0])
        # httpx's own CA bundle does not know the internal CA
        redis_sync.Redis.from_url(redis_url).flushall()
        await _enqueue(redis_url, 1)
        _, ob = await _deliver_until(redis_url, _config(rcv.url, max_attempts=2), await dead(1))
        [rec] = await ob.dead()
        assert "CERTIFICATE_VERIFY_FAILED" in rec["error"] and "after 2 attempts" in rec["error"], rec["error"]
        # the CA, but no client certificate: the receiver refuses the handshake
        await _enqueue(redis_url, 1)
        _, ob = await _deliver_until(redis_url, _config(rcv.url, max_attempts=2, tls_ca_file=str(ca_file)),
                                     await dead(2))
        [_, rec] = await ob.dead()
        assert rec["error"].startswith("connection error") and "after 2 attempts" in rec["error"], rec["error"]
        assert list(rcv.delivered()) == ["n0000"]  # nothing else got through
    finally:
        rcv.stop()


def _am_config(url: str, **kw) -> AlertsConfig:
    rcv = {"name": "am", "alertmanager_url": url.rsplit("/hook", 1)[0], "backoff_base": 0.05, "backoff_max": 0.2,
           "max_attempts": 100, "timeout": 2, **kw}
    return AlertsConfig.model_validate({"allow_private": ["127.0.0.1"], "receivers": [rcv]})


async def _enqueue_am(url: str, nid: str, alerts: list[dict], **extra) -> None:
    r = aioredis.from_url(url)
    pipe = r.pipeline(transaction=True)
    Outbox.enqueue(pipe, {"id": nid, "kind": "alertmanager", "receiver": "am", "body": orjson.dumps(alerts).decode(),
                          "queued_at": time.time(), **extra})
    await pipe.execute()
    await r.aclose()


async def test_alertmanager_alerts_are_valid_from_when_they_are_sent_and_a_failed_resend_is_dropped(redis_url,
                                                                                                    receiver):
    from datetime import datetime

    firing = {"labels": {"alertname": "x", "entity": "E1"}, "startsAt": "2026-12-06T00:00:00Z"}
    resolved = {"labels": {"alertname": "x", "entity": "E2"}, "startsAt": "2026-12-06T00:00:00Z",
                "endsAt": "2026-12-06T00:05:00Z"}
    # a change, delivered 3 attempts late: its firing alert is valid for 8 s from the 2xx, not from the queueing
    receiver.plan = [503, 503]
    await _enqueue_am(redis_url, "change", [firing, resolved], valid_for=8.0)
    await _deliver_until(redis_url, _am_config(receiver.url, alertmanager_resend="2s"), _empty)
    last = receiver.requests[-1]
    assert last["path"] == "/api/v2/alerts" and last["status"] == 200
    sent = orjson.loads(last["body"])
    ends = datetime.fromisoformat(sent[0]["endsAt"].replace("Z", "+00:00")).timestamp()
    assert last["at"] + 6 < ends <= last["at"] + 8.5
    assert sent[1]["endsAt"] == "2026-12-06T00:05:00Z"   # a resolved alert keeps its end
    # a resend to an Alertmanager that answers 503: dropped once the next resend is due (2 s), not dead-lettered
    receiver.requests.clear()
    receiver.default = 503
    await _enqueue_am(redis_url, "resend", [firing], valid_for=8.0, resend=True)
    t0 = time.time()
    d, ob = await _deliver_until(redis_url, _am_config(receiver.url, alertmanager_resend="2s"), _empty)
    assert 2.0 <= time.time() - t0 < 10 and len(receiver.requests) >= 2
    assert (await ob.depth()) == (0, 0)
    assert d.m.deliveries.labels("am", "dropped")._value.get() == 1
    assert d.m.deliveries.labels("am", "dead")._value.get() == 0


async def test_two_redeliveries_at_once_queue_each_dead_letter_once(redis_url):
    """Ops redelivering from the API and the CLI at once (or a client's retry): until 2026-12-07 each
    read the dead-letter list and queued every record it had read, so each notification was sent twice
    (a receiver that does not honour the idempotency key paged its team twice)."""
    r = aioredis.from_url(redis_url)
    try:
        pipe = r.pipeline()
        for i in range(50):
            pipe.rpush(DEAD, orjson.dumps({"entry_id": f"1-{i}", "notification": {"id": f"n{i:04d}"},
                                           "error": "HTTP 400", "attempts": 1, "at": 1.0}))
        await pipe.execute()
        counts = await asyncio.gather(Outbox(r, "api").redeliver(), Outbox(r, "cli").redeliver(),
                                      Outbox(r, "api").redeliver("n0007"))
        assert sum(counts) == 50, counts
        assert await Outbox(r, "x").depth() == (50, 0)
        ids = [orjson.loads(f[b"n"])["id"] for _, f in await r.xrange("rw:outbox")]
        assert sorted(ids) == [f"n{i:04d}" for i in range(50)]
    finally:
        await r.aclose()
