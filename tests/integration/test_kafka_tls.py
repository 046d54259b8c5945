"""riskwatch on secured services: a Kafka cluster that requires TLS with client certificates (mutual
TLS) and a Redis that requires a password. `riskwatch up --demo` pointed at them with
``RISKWATCH_KAFKA_*`` and a ``RISKWATCH_REDIS_URL`` holding the password runs the worker, the API, the
ingest gateway, the alert dispatcher and the demo feed, end to end, with the API and the gateway on https
(``RISKWATCH_HTTPS_CERTFILE``); a plaintext client and a TLS client without a certificate are refused by
the broker, a client without the password by Redis. The broker is
the real embedded one behind a TLS front (``helpers.TcpFront``); the certificates come from a throwaway CA
(trustme)."""

from __future__ import annotations

import asyncio
import json
import re
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from riskwatch.embedded import free_port, start_broker, start_redis
from riskwatch.kafka_security import client_options
from riskwatch.settings import Settings

from .conftest import wait_for
from .pki import mutual_tls
from .helpers import TcpFront
from .up_process import start_up


@pytest.fixture
def tls_broker(tmp_path):
    """(bootstrap address, CA, CA file, client certificate file, proxy) of a broker that requires mutual TLS."""
    ca, server, ca_file, client_file = mutual_tls(tmp_path, "riskwatch-worker")
    port = free_port()
    broker = start_broker(tmp_path / "broker", advertised_port=port)
    proxy = TcpFront(port, broker.port, ssl=server)
    yield f"127.0.0.1:{port}", ca, ca_file, client_file, proxy
    proxy.stop()
    broker.stop()


async def _connects(options: dict) -> bool:
    p = AIOKafkaProducer(**options, request_timeout_ms=3000, connections_max_idle_ms=5000)
    try:
        await asyncio.wait_for(p.start(), 10)
        return True
    except (KafkaConnectionError, asyncio.TimeoutError):
        return False
    finally:
        await p.stop()


def _get(url: str, token: str | None = None, tls: ssl.SSLContext | None = None) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=tls) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:  # /readyz answers 503 until ready
        return json.loads(exc.read())
    except OSError:  # not up (any more): the wait names what did not happen, with the logs
        return {}


@pytest.fixture
def password_redis(tmp_path):
    svc = start_redis(tmp_path / "redis", password="rw-test-pw")
    yield svc
    svc.stop()


def test_up_runs_every_process_over_mutual_tls_kafka_and_a_password_redis(tls_broker, password_redis, tmp_path):
    bootstrap, ca, ca_file, client_file, proxy = tls_broker
    https_file = tmp_path / "api.pem"  # the API's and the gateway's certificate, from the same CA
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(https_file))
    trust = ssl.create_default_context(cafile=str(ca_file))
    tls = Settings(broker=bootstrap, kafka_security_protocol="SSL", kafka_ssl_cafile=ca_file,
                   kafka_ssl_certfile=client_file)
    no_cert = Settings(broker=bootstrap, kafka_security_protocol="SSL", kafka_ssl_cafile=ca_file)
    assert not asyncio.run(_connects(client_options(bootstrap)))  # plaintext
    assert not asyncio.run(_connects(client_options(no_cert)))   # TLS without a client certificate
    assert asyncio.run(_connects(client_options(tls)))

    import redis as redis_sync

    redis = password_redis
    with pytest.raises(redis_sync.AuthenticationError):
        redis_sync.Redis(port=redis.port).ping()  # no password: refused
    data_dir = tmp_path / "run"
    api_port = free_port(span=2)
    env = dict(RISKWATCH_BROKER=bootstrap, RISKWATCH_REDIS_URL=redis.url, RISKWATCH_KAFKA_SECURITY_PROTOCOL="SSL",
               RISKWATCH_KAFKA_SSL_CAFILE=str(ca_file), RISKWATCH_KAFKA_SSL_CERTFILE=str(client_file),
               RISKWATCH_HTTPS_CERTFILE=str(https_file))
    before = proxy.sessions
    up, text = start_up(data_dir, api_port, env)
    try:
        assert "riskwatch is up" in text, text
        assert "rw-test-pw" not in text and f":***@127.0.0.1:{redis.port}" in text  # the banner hides it
        viewer = re.search(r"token\s+viewer\s+(\S+)", text).group(1)
        ingest = re.search(r"token\s+ingest\s+(\S+)", text).group(1)
        api = f"https://127.0.0.1:{api_port}"
        assert f"API       {api}/v1/entities" in text and f"https://127.0.0.1:{api_port + 1}/v1/events" in text

        def logs() -> str:
            return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                             for p in sorted(data_dir.glob("*.log"))) + f"\n--- up\n{text}"

        # the demo feed -> the worker -> the view: scored entities
        wait_for(lambda: any(e.get("score") is not None for e in
                             _get(f"{api}/v1/entities?limit=5", viewer, trust).get("entities", [])), 90, "scored entities", logs)
        # the ingest gateway's producer: one entity of our own, then its complaint, scored
        eid = "91350100M000100Y43"  # not one of the demo's
        events = [{"type": "entity", "entity_id": eid, "name": "TLS Test Bakery", "industry": "catering",
                   "region": "350100"},
                  {"type": "complaint", "complaint_id": "tls-c1", "entity_id": eid,
                   "ts": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), "category": "food_safety",
                   "severity": 3}]
        req = urllib.request.Request(f"https://127.0.0.1:{api_port + 1}/v1/events", data=json.dumps(events).encode(),
                                     headers={"Authorization": f"Bearer {ingest}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10, context=trust) as r:
            assert json.loads(r.read()) == {"accepted": 2, "rejected": []}  # acked by the broker, over TLS
        # the upsert can reach the view a round before the complaint: the entity is there, unscored
        wait_for(lambda: (_get(f"{api}/v1/entities/{eid}", viewer, trust).get("score") or 0) > 0, 60,
                 "the ingested complaint scored", logs)
        # the API's readiness reads the worker group's lag over TLS too
        wait_for(lambda: _get(f"{api}/readyz", tls=trust).get("ready"), 60, "/readyz ready", logs)
        # the board's sign-in cookie is Secure on https
        login = urllib.request.Request(f"{api}/board/login", data=f"token={viewer}".encode(),
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **kw):
                return None

        opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=trust))
        with pytest.raises(urllib.error.HTTPError) as seen:  # the 303 to /board, not followed
            opener.open(login, timeout=10)
        cookie = seen.value.headers["set-cookie"]
        assert seen.value.code == 303 and "Secure" in cookie and "HttpOnly" in cookie, cookie
        # the dispatcher: alert candidates read over TLS, delivered to the demo webhook
        hooks = data_dir / "webhooks.jsonl"
        wait_for(lambda: hooks.exists() and hooks.read_text().strip(), 180, "a delivered webhook", logs)
        assert proxy.sessions - before >= 5, proxy.sessions  # worker, API, ingest, dispatcher, feed at least
    finally:
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=90)
    assert up.returncode == 0 and "stopped." in out, out
    leaked = [p.name for p in data_dir.glob("*.log") if "rw-test-pw" in p.read_text(errors="replace")]
    assert not leaked, leaked


def test_check_settings_connect_says_whether_kafka_and_redis_take_these_settings(tls_broker, password_redis):
    """`riskwatch check-settings --connect`: a preflight before a deployment. With the CA, a client
    certificate and the Redis password, both are reached (exit 0); without the client certificate and with a
    wrong password, each is reported failed with why (exit 1); the password is never printed."""
    bootstrap, _, ca_file, client_file, _ = tls_broker
    redis = password_redis
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKWATCH_")}
    env.update(RISKWATCH_BROKER=bootstrap, RISKWATCH_KAFKA_SECURITY_PROTOCOL="SSL",
               RISKWATCH_KAFKA_SSL_CAFILE=str(ca_file), RISKWATCH_KAFKA_SSL_CERTFILE=str(client_file),
               RISKWATCH_REDIS_URL=redis.url)

    def check(**extra) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "riskwatch.cli", "check-settings", "--connect", "--timeout", "5"],
                              env=dict(env, **extra), capture_output=True, text=True, timeout=60)

    ok = check()
    assert ok.returncode == 0, ok.stderr
    shown = json.loads(ok.stdout)
    assert shown["kafka_security_protocol"] == "SSL" and shown["redis_url"] == f"redis://:***@127.0.0.1:{redis.port}/0"
    assert "kafka  ok" in ok.stderr and "redis  ok" in ok.stderr and "Redis 6" in ok.stderr, ok.stderr
    bad = check(RISKWATCH_KAFKA_SSL_CERTFILE="", RISKWATCH_REDIS_URL=f"redis://:wrong@127.0.0.1:{redis.port}/0")
    assert bad.returncode == 1, bad.stderr
    lines = {line.split()[0]: line for line in bad.stderr.splitlines() if line.startswith(("kafka ", "redis "))}
    assert "FAILED" in lines["kafka"] and "FAILED" in lines["redis"], bad.stderr
    assert "invalid username-password pair" in lines["redis"] or "WRONGPASS" in lines["redis"], lines["redis"]
    assert "rw-test-pw" not in ok.stdout + ok.stderr + bad.stdout + bad.stderr
    untrusted = check(RISKWATCH_KAFKA_SSL_CAFILE="")  # the system's CAs do not know the broker's
    assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in \
        next(line for line in untrusted.stderr.splitlines() if line.startswith("kafka ")), untrusted.stderr
