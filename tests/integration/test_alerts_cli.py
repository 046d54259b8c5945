"""`riskwatch alerts silence | dead | redeliver | list` and `riskwatch check-alerts`, as ops run them, against a
real Redis. Until 2026-12-07 no test ran these commands: a value holding an operator was split at the wrong
one, an unknown notification id was "re-queued 0", an empty list said nothing, and an invalid silence printed
pydantic's text with its links instead of each field and rule."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson
import yaml

from riskwatch.alerts.outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, redis_url: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKWATCH_")}
    if redis_url:
        env["RISKWATCH_REDIS_URL"] = redis_url
    return subprocess.run([sys.executable, "-m", "riskwatch.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def _with_redis(url: str, fn):
    """``fn(client)`` on an asyncio Redis client of ``url``, run to its end."""
    async def go():
        import redis.asyncio as aioredis

        r = aioredis.from_url(url)
        try:
            return await fn(r)
        finally:
            await r.aclose()

    return asyncio.run(go())


def _silences(url: str) -> list[dict]:
    from riskwatch.alerts.store import AlertStore

    return _with_redis(url, lambda r: AlertStore(r).silences())


def test_a_silence_from_the_cli_is_stored_and_a_wrong_one_names_each_field(redis_url):
    r = _cli("alerts", "silence", "--match", "region=110105", "--match", "summary=a=~b", "--match", "team!~^fi",
             "--for", "2h", "--author", "li", "--reason", "road works", redis_url=redis_url)
    assert r.returncode == 0, r.stderr
    made = orjson.loads(r.stdout)
    assert made["matchers"] == [{"name": "region", "op": "=", "value": "110105"},
                                {"name": "summary", "op": "=", "value": "a=~b"},
                                {"name": "team", "op": "!~", "value": "^fi"}]
    assert [s["id"] for s in _silences(redis_url)] == [made["id"]]

    r = _cli("alerts", "silence", "--match", "region=~[11", "--for", "2h", "--author", "", "--reason", "x",
             redis_url=redis_url)
    assert r.returncode == 2
    assert "matchers.0: value is not a valid regular expression" in r.stderr, r.stderr
    assert "author: String should have at least 1 character [string_too_short]" in r.stderr, r.stderr
    assert "errors.pydantic.dev" not in r.stderr
    for bad, said in ((["--match", "region"], "--match 'region': use label=value"),
                      (["--match", "region!1101"], "--match 'region!1101'"),
                      (["--match", "region=1", "--for", "forever"], "--for: not a duration: 'forever'")):
        args = ["alerts", "silence", *bad] + ([] if "--for" in bad else ["--for", "1h"])
        r = _cli(*args, "--author", "li", "--reason", "x", redis_url=redis_url)
        assert r.returncode == 2 and said in r.stderr, (bad, r.stderr)
    assert len(_silences(redis_url)) == 1  # nothing stored by the refused ones


def test_dead_lettered_notifications_are_listed_and_redelivered_by_id(redis_url):
    notification = {"id": "n-7", "receiver": "city-team", "kind": "alert", "idempotency_key": "k-7"}

    async def queued(r):
        ob = Outbox(r, "test")
        await ob.ensure_group()
        return await ob.depth(), [n for _, n in await ob.read(block_ms=10)]

    _with_redis(redis_url, lambda r: Outbox(r, "test").dead_letter(
        "0-1", notification, "HTTPStatusError 500 after 8 attempts", 8))
    r = _cli("alerts", "list", redis_url=redis_url)
    assert r.returncode == 0 and r.stdout == "" and "0 open alert(s)" in r.stderr, r
    r = _cli("alerts", "dead", redis_url=redis_url)
    assert r.returncode == 0, r.stderr
    assert "n-7" in r.stdout and "city-team" in r.stdout and "attempts=8" in r.stdout, r.stdout
    assert "1 dead-lettered notification(s)" in r.stderr

    r = _cli("alerts", "redeliver", "n-8", redis_url=redis_url)
    assert r.returncode == 1 and "no dead-lettered notification n-8" in r.stderr, r
    r = _cli("alerts", "redeliver", redis_url=redis_url)
    assert r.returncode == 2 and "give a notification id or --all" in r.stderr
    r = _cli("alerts", "redeliver", "n-7", redis_url=redis_url)
    assert r.returncode == 0 and "re-queued 1 notification(s)" in r.stdout, r
    depth, back = _with_redis(redis_url, queued)
    assert depth == (1, 0)
    assert back == [notification]  # the same notification, so the same idempotency key for the receiver


def test_check_alerts_names_each_wrong_field_and_signals_the_engine_never_raises(tmp_path):
    r = _cli("check-alerts")
    assert r.returncode == 0 and r.stdout.startswith("ok: version "), r
    cfg = yaml.safe_load((ROOT / "config" / "alerts.yaml").read_text())
    cfg["rules"][0]["cooldown"] = "soon"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    r = _cli("check-alerts", str(tmp_path / "bad.yaml"))
    assert r.returncode == 2 and "rules.0.cooldown" in r.stderr, r.stderr
    cfg["rules"][0]["cooldown"] = "1h"
    cfg["rules"][1]["signals"] = ["sensors.limit_breech"]
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(cfg))
    r = _cli("check-alerts", str(tmp_path / "typo.yaml"))
    assert r.returncode == 2 and "rules.1.signals: 'sensors.limit_breech' is not an alerting engine signal" in r.stderr, \
        r.stderr
