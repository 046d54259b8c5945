"""``riskwatch ingest-mqtt``: sensor readings from an MQTT broker into ``rw.sensor-readings``.

Subscribes to ``RISKWATCH_MQTT_TOPICS`` (default ``rw/+/sensor``) with QoS 1
and a persistent session; each payload (JSON: ``metric``, ``value``, optional
``unit``, ``ts``, ``device_id``, ``entity_id``) becomes a ``sensor_reading``:
the device id defaults to the topic's second level, the entity id to the
device map: ``RISKWATCH_MQTT_DEVICE_MAP`` (YAML ``device: entity``), else the
``devices`` listed in an ``entity`` event's ``attributes`` (the bridge follows
``rw.entities``); the time defaults to the receipt time. Messages are acknowledged to the MQTT broker only after
Kafka acknowledged them (paho's manual acks): while Kafka is down nothing is
acked, the MQTT broker keeps the messages (its in-flight window bounds what
we hold) and redelivers them after a reconnect. Invalid payloads go to
``rw.deadletter`` with their reasons, and are acked.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge

from ..errors import InvalidEvent
from ..events import parse_event, too_far_ahead
from ..kafka_security import client_options
from ..metrics import build_info
from ..settings import Settings
from ..streams.codec import dead_letter, partition_for

__all__ = ["MqttBridge", "to_event", "secure"]

log = logging.getLogger("riskwatch.mqtt")


def to_event(topic: str, payload: bytes, device_map: dict[str, str], now: float) -> dict:
    """The ``sensor_reading`` for one MQTT message (not yet validated).

    >>> to_event("rw/dev-7/sensor", b'{"metric": "temperature", "value": 4.5}', {"dev-7": "E1"}, 0.0)["entity_id"]
    'E1'
    """
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent([_err("(payload)", "json_invalid", str(exc))]) from exc
    if not isinstance(body, dict):
        raise InvalidEvent([_err("(payload)", "dict_type", "payload must be a JSON object")])
    parts = topic.split("/")
    device = body.get("device_id") or (parts[1] if len(parts) > 1 else None)
    ev = {"type": "sensor_reading", "device_id": device, "entity_id": body.get("entity_id") or device_map.get(device),
          "ts": body.get("ts") or datetime.fromtimestamp(now, tz=timezone.utc).isoformat(),
          "metric": body.get("metric"), "value": body.get("value")}
    if body.get("unit") is not None:
        ev["unit"] = body["unit"]
    return {k: v for k, v in ev.items() if v is not None}


def _err(field, rule, msg):
    from ..errors import FieldError

    return FieldError(field, rule, msg)


def secure(client, s: Settings) -> None:
    """The bridge's login and TLS on a paho ``client`` (since 2026-12-06: an IoT platform's broker requires
    a login, and TLS with it); ``riskwatch check-settings --mqtt`` uses it to try them."""
    if s.mqtt_username:
        client.username_pw_set(s.mqtt_username, s.mqtt_password.get_secret_value() or None)
    tls = s.mqtt_tls_context()
    if tls is not None:
        client.tls_set_context(tls)


class MqttBridge:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        from ..config import applied_config

        self.s = settings
        self.scheme = applied_config(settings).entity_id_scheme
        self.device_map = (yaml.safe_load(Path(settings.mqtt_device_map).read_text()) or {}) \
            if settings.mqtt_device_map else {}
        self.from_entities: dict[str, str] = {}  # device -> entity, from entity events' attributes.devices
        r = self.registry = registry or CollectorRegistry()
        build_info(r)
        self.m_received = Counter("riskwatch_mqtt_messages_total", "MQTT messages, by result (produced, invalid)",
                                  ["result"], registry=r)
        self.m_pending = Gauge("riskwatch_mqtt_unacked", "Messages received, not yet acked (waiting for Kafka)",
                               registry=r)
        self.m_retries = Counter("riskwatch_mqtt_kafka_retries_total", "Kafka sends retried", registry=r)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.connected = asyncio.Event()
        self.entities_read = asyncio.Event()  # the entities topic read to its end once (see run)
        self.stop = asyncio.Event()
        self.client = None

    def _client(self, loop):
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.s.mqtt_client_id, clean_session=False,
                        manual_ack=True)
        c.max_inflight_messages_set(self.s.mqtt_inflight)
        secure(c, self.s)

        def on_connect(client, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                log.error("MQTT connect failed: %s", reason_code)
                return
            client.subscribe([(t, 1) for t in self.s.mqtt_topics])
            loop.call_soon_threadsafe(self.connected.set)

        def on_subscribe(client, userdata, mid, reason_codes, properties):
            log.info("MQTT connected to %s:%d%s, subscribed to %s (%s)", self.s.mqtt_host, self.s.mqtt_port,
                     " over TLS" if self.s.mqtt_tls else "", ", ".join(self.s.mqtt_topics),
                     ", ".join(str(rc) for rc in reason_codes))

        def on_connect_fail(client, userdata):
            # paho calls this inside its ``except OSError`` and keeps the error to itself: without this, a
            # certificate the bridge does not trust, or a broker that wants TLS, left no line in its log
            log.error("MQTT connection to %s:%d failed: %s; retrying", self.s.mqtt_host, self.s.mqtt_port,
                      sys.exc_info()[1] or "no reason given")

        def on_message(client, userdata, msg):
            loop.call_soon_threadsafe(self.queue.put_nowait, (msg.topic, msg.payload, msg.mid, msg.qos, time.time()))

        c.on_connect = on_connect
        c.on_connect_fail = on_connect_fail
        c.on_subscribe = on_subscribe
        c.on_message = on_message
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        return c

    async def follow_entities(self) -> None:
        """Keep devices -> entity from the entities topic, read again from the start after a failure."""
        while not self.stop.is_set():
            try:
                await self._follow_entities()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Kafka away: until 2026-12-07 the follower died here, for good
                log.warning("reading the entities topic failed (%s); retrying", exc)
                await asyncio.sleep(2)

    async def _follow_entities(self) -> None:
        """Read every partition of the entities topic (outside any group) and keep devices -> entity;
        set ``entities_read`` once a fetch found every partition read to its high watermark."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from ..streams.codec import decode

        c = AIOKafkaConsumer(**client_options(self.s), enable_auto_commit=False)
        await c.start()
        try:
            topic = self.s.topic("entities")
            await c._client.force_metadata_update()
            parts = sorted(c.partitions_for_topic(topic) or ())
            tps = [TopicPartition(topic, p) for p in parts]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            while not self.stop.is_set():
                batch = await c.getmany(timeout_ms=1000)
                for msgs in batch.values():
                    for m in msgs:
                        evs, _err = decode(m.value)
                        for ev in evs:
                            if isinstance(ev, dict) and ev.get("type") == "entity":
                                devices = (ev.get("attributes") or {}).get("devices") or []
                                for d in devices if isinstance(devices, list) else []:
                                    self.from_entities[str(d)] = ev.get("entity_id")
                # a fetch's high watermark is exact, on the embedded broker too (its listed end offsets are not)
                if not self.entities_read.is_set() and all([
                        (hw := c.highwater(tp)) is not None and await c.position(tp) >= hw for tp in tps]):
                    self.entities_read.set()
                    log.info("entities topic %s read: %d devices mapped by entity events", topic,
                             len(self.from_entities))
        finally:
            await c.stop()

    async def _entities_read(self) -> None:
        """Until the entities topic has been read once (or a stop)."""
        waits = [asyncio.ensure_future(self.entities_read.wait()), asyncio.ensure_future(self.stop.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def run(self) -> None:
        from aiokafka import AIOKafkaProducer

        loop = asyncio.get_running_loop()
        follower = asyncio.create_task(self.follow_entities())
        # a persistent session hands over what it queued as soon as it connects: until 2026-12-07 the
        # bridge took it before it knew the devices entity events map, and dead-lettered their readings
        await self._entities_read()
        self.client = self._client(loop)
        self.client.connect_async(self.s.mqtt_host, self.s.mqtt_port, keepalive=30)
        self.client.loop_start()
        producer = AIOKafkaProducer(**client_options(self.s), acks="all", linger_ms=5)
        while not self.stop.is_set():
            try:
                await producer.start()
                break
            except Exception as exc:  # keep trying; nothing is acked meanwhile
                log.warning("Kafka unavailable (%s); retrying", exc)
                await asyncio.sleep(2)
        try:
            while not self.stop.is_set():
                try:
                    first = await asyncio.wait_for(self.queue.get(), 0.5)
                except asyncio.TimeoutError:
                    continue
                batch = [first]
                while len(batch) < 500 and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                self.m_pending.set(len(batch) + self.queue.qsize())
                await self._forward(producer, batch)
        finally:
            follower.cancel()
            self.client.loop_stop()
            self.client.disconnect()
            await producer.stop()

    async def _forward(self, producer, batch) -> None:
        good: dict[int, list] = {}
        dead = []
        now = time.time()
        for topic, payload, mid, _qos, at in batch:
            try:
                ev = to_event(topic, payload, {**self.from_entities, **self.device_map}, at)
                ahead = too_far_ahead(parse_event(ev, self.scheme), now, self.s.max_event_future_s)
                if ahead is not None:
                    raise InvalidEvent([ahead])
                good.setdefault(partition_for(ev["entity_id"].encode(), self.s.partitions), []).append(ev)
            except InvalidEvent as exc:
                dead.append(dead_letter(payload, f"mqtt:{topic}", -1, mid, exc.errors))
        delay = 0.5
        while not self.stop.is_set():  # do not ack until Kafka has it all
            try:
                sends = [await producer.send(self.s.topic("sensor-readings"), orjson.dumps({"batch": evs}),
                                             partition=p) for p, evs in good.items()]
                sends += [await producer.send(self.s.topic("deadletter"), d, partition=0) for d in dead]
                await asyncio.wait_for(asyncio.gather(*sends), 10)
                break
            except Exception as exc:
                self.m_retries.inc()
                log.warning("Kafka did not acknowledge (%s); retrying in %.1fs, MQTT acks held", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
        else:
            return  # stopping: unacked messages are redelivered to the next session
        for _topic, _payload, mid, qos, _at in batch:
            if qos > 0:
                self.client.ack(mid, qos)
        self.m_received.labels("produced").inc(sum(len(v) for v in good.values()))
        self.m_received.labels("invalid").inc(len(dead))
        self.m_pending.set(self.queue.qsize())
