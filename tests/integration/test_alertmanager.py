"""riskwatch → a real Prometheus Alertmanager (API v2) → Alertmanager's own webhook."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request
from datetime import datetime

import orjson
import pytest
import redis as redis_sync
import redis.asyncio as aioredis
import yaml

from riskwatch.alerts.store import AlertStore
from riskwatch.embedded import free_port

from .conftest import wait_for
from .receiver import Receiver
from .test_alerts_flow import Dispatcher, _cand, _send

AM = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.skipif(AM is None, reason="prometheus-alertmanager is not installed "
                                "(Debian: apt-get install -y prometheus-alertmanager; .ci/run installs it)")


RESOLVE_TIMEOUT = 3  # seconds: Alertmanager resolves an alert not sent again within this (default 5m)


@pytest.fixture
def alertmanager(tmp_path):
    hook = Receiver().start()
    port = free_port()
    cfg = {"global": {"resolve_timeout": f"{RESOLVE_TIMEOUT}s"},
           "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s",
                     "repeat_interval": "1h"},
           "receivers": [{"name": "hook", "webhook_configs": [{"url": hook.url, "send_resolved": True}]}]}
    (tmp_path / "am.yml").write_text(yaml.safe_dump(cfg))
    p = subprocess.Popen([AM, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am'}",
                          f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                         stdout=(tmp_path / "am.log").open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready():
        try:
            return urllib.request.urlopen(f"{url}/-/ready", timeout=1).status == 200
        except OSError:
            return False

    wait_for(ready, 30, "Alertmanager to be ready", lambda: (tmp_path / "am.log").read_text())
    yield url, hook
    p.terminate()
    p.wait(10)
    hook.stop()


def _am_alerts(url: str) -> list[dict]:
    return json.loads(urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5).read())


def _act(redis_url: str, aid: str, action: str):
    async def go():
        r = aioredis.from_url(redis_url)
        try:
            return await AlertStore(r).act(aid, action, "inspector-li")
        finally:
            await r.aclose()

    return asyncio.run(go())


def _active(url: str) -> list[dict]:
    return [a for a in _am_alerts(url) if a["status"]["state"] == "active"]


def test_alerts_pushed_to_alertmanager_show_and_forward(stack, alertmanager, tmp_path):
    s, workers = stack
    am_url, hook = alertmanager
    cfg = {"allow_private": ["127.0.0.1"], "external_url": "http://riskwatch.test",
           "rules": [{"name": "complaint_burst", "signals": ["complaints.burst"], "summary": "burst at {entity_id}",
                      "cooldown": 0, "escalate_after": "2s"}],
           "receivers": [{"name": "am", "alertmanager_url": am_url, "backoff_base": 0.05,
                          "alertmanager_resend": "1s", "match": {"region": ["440300"]}}]}
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = redis_sync.Redis.from_url(s.redis_url)
    r.hset("rw:entity:E9", mapping={"name": "Nine", "region": "440300", "industry": "food"})
    r.hset("rw:entity:E8", mapping={"name": "Eight", "region": "110101", "industry": "food"})  # not this receiver's
    d = Dispatcher(dict(workers.env, RISKWATCH_ALERTS_PATH=str(path), RISKWATCH_ALERT_TICK_SECONDS="0.2"),
                   tmp_path).start()
    try:
        _send(s, s.topic("alert-candidates"), [[_cand("E8", "firing"), _cand("E9", "firing")]])
        wait_for(lambda: _am_alerts(am_url), 30, "the alert in Alertmanager", d.log)
        [a] = _am_alerts(am_url)
        assert a["labels"]["alertname"] == "complaint_burst" and a["labels"]["entity"] == "E9"
        assert a["labels"]["region"] == "440300" and a["status"]["state"] == "active"
        assert a["annotations"]["summary"] == "burst at E9"
        assert a["generatorURL"].startswith("http://riskwatch.test/v1/alerts/")

        # Alertmanager routes it on to its own webhook receiver
        wait_for(lambda: hook.requests, 30, "Alertmanager's webhook notification")
        body = orjson.loads(hook.requests[0]["body"])  # Alertmanager's own payload (no idempotency key)
        assert body["status"] == "firing" and body["alerts"][0]["labels"]["entity"] == "E9"

        # an alert open for longer than Alertmanager's resolve_timeout stays active there: riskwatch sends its
        # open alerts again (until 2026-12-06 it sent each change once, and Alertmanager resolved every alert
        # 5 minutes after its last change while riskwatch still had it open)
        t0 = time.time()
        while time.time() - t0 < 3 * RESOLVE_TIMEOUT:
            assert [a["labels"]["entity"] for a in _active(am_url)] == ["E9"], d.log()
            time.sleep(0.5)
        # acknowledged, it is still open: still active there (Alertmanager has no acknowledgement)
        [aid] = [i.decode() for i in r.smembers("rw:alerts:open:entity:E9")]
        assert _act(s.redis_url, aid, "ack")[1] == "acknowledged"
        t0 = time.time()
        while time.time() - t0 < 2 * RESOLVE_TIMEOUT:
            assert [a["labels"]["entity"] for a in _active(am_url)] == ["E9"], d.log()
            time.sleep(0.5)
        # and who took it shows there, from the next resend (annotations are not an alert's identity)
        [a] = _active(am_url)
        assert a["annotations"]["acknowledged_by"] == "inspector-li", a["annotations"]
        assert not any(orjson.loads(r["body"])["status"] == "resolved" for r in hook.requests)
        # nobody acknowledged it within 2 s: escalated, a new label set there, and the one before it ended
        # (without that, both were active until the old one's endsAt)
        assert _active(am_url)[0]["labels"]["escalated"] == "true"
        [a] = _am_alerts(am_url)
        ends = datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")).timestamp()
        assert time.time() < ends <= time.time() + 4 * 1.0 + 2  # valid for 4 resends, as Prometheus does

        # the condition clears: riskwatch sends endsAt, Alertmanager resolves and notifies
        _send(s, s.topic("alert-candidates"), [[_cand("E9", "resolved")]])
        wait_for(lambda: any(orjson.loads(r["body"])["status"] == "resolved" for r in hook.requests),
                 30, "the resolved notification from Alertmanager", d.log)
    finally:
        d.stop()
