"""``riskwatch check-settings``: the settings in force, secrets masked, and with ``--connect`` whether Kafka
and Redis (with ``--mqtt``, the bridge's MQTT broker too) can be reached with them: a TLS handshake, a SASL
login and a password tried before a deployment rather than found out from a worker's retry loop."""

from __future__ import annotations

import asyncio
import logging
import time

from .kafka_security import client_options
from .settings import Settings, redact_url

__all__ = ["reach"]


async def _kafka(s: Settings, timeout: float) -> str:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_options(s), request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        topics = await asyncio.wait_for(admin.list_topics(), timeout)
        mine = sorted(t for t in topics if t.startswith(s.topic_prefix))
        return f"{len(mine)} riskwatch topics"
    finally:
        await admin.close()


async def _redis(s: Settings, timeout: float) -> str:
    import redis.asyncio as aioredis

    r = aioredis.from_url(s.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        info = await r.info("server")
        return f"Redis {info.get('redis_version', '?')}"
    finally:
        await r.aclose()


def _mqtt_blocking(s: Settings, timeout: float) -> str:
    import paho.mqtt.client as mqtt

    answer: list = []
    from .ingest.mqtt import secure

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{s.mqtt_client_id}-check")
    secure(c, s)
    c.on_connect = lambda client, userdata, flags, reason_code, properties: answer.append(reason_code)
    c.connect(s.mqtt_host, s.mqtt_port, keepalive=10)  # raises for a refused connection or a TLS failure
    try:
        deadline = time.monotonic() + timeout
        while not answer and time.monotonic() < deadline:
            c.loop(timeout=0.2)
    finally:
        c.disconnect()
    if not answer:
        raise TimeoutError(f"no answer to the login within {timeout:.0f}s")
    if answer[0].is_failure:
        raise PermissionError(f"refused: {answer[0]}")
    return "logged in" + (" over TLS" if s.mqtt_tls else "")


async def _mqtt(s: Settings, timeout: float) -> str:
    return await asyncio.to_thread(_mqtt_blocking, s, timeout)


class _Last(logging.Handler):
    """The last error aiokafka logged: its "Unable to bootstrap" hides why (a certificate not trusted), which
    only its log says."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()


async def reach(s: Settings, timeout: float = 10.0, mqtt: bool = False) -> dict[str, tuple[bool, str]]:
    """``{"kafka": (ok, what), "redis": (ok, what)}`` and, with ``mqtt``, the MQTT broker of the bridge
    (``"mqtt"``): what was found, or why it could not be reached."""
    out = {}
    last = _Last()
    logging.getLogger("aiokafka").addHandler(last)
    try:
        checks = [("kafka", _kafka, s.broker), ("redis", _redis, redact_url(s.redis_url))]
        if mqtt:
            checks.append(("mqtt", _mqtt, f"{s.mqtt_host}:{s.mqtt_port}"))
        for name, check, where in checks:
            last.message = ""
            try:
                out[name] = (True, f"{where}: {await check(s, timeout)}")
            except Exception as exc:  # a report, not a crash: every kind of failure is the answer
                reason = str(exc) or type(exc).__name__
                cause = exc.__cause__ or exc.__context__
                if cause is not None and str(cause) not in reason:
                    reason += f" ({cause})"
                if last.message:
                    reason += f"; {last.message}"
                kind = type(exc).__name__
                out[name] = (False, f"{where}: {reason if reason.startswith(kind) else f'{kind}: {reason}'}")
    finally:
        logging.getLogger("aiokafka").removeHandler(last)
    return out
