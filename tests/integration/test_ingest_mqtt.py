"""MQTT readings through a real mosquitto and the bridge process to the worker: a sensor alert candidate."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from riskwatch.embedded import free_port

from .conftest import wait_for
from .helpers import produce, read_batches, read_topic

MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed "
                                "(Debian: apt-get install -y mosquitto; .ci/run installs it)")
E = "91350100M000100Y43"


@pytest.fixture
def mqtt_broker(tmp_path):
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_inflight_messages 200\n")
    p = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=(tmp_path / "mosquitto.log").open("wb"),
                         stderr=subprocess.STDOUT)
    import socket

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            return False

    wait_for(up, 15, "mosquitto", lambda: (tmp_path / "mosquitto.log").read_text())
    yield port
    p.terminate()
    p.wait(5)


def _subscribed(log) -> None:
    """Wait until the bridge's subscription is granted (until 2026-12-06 the tests slept 2 s for it)."""
    wait_for(lambda: log.exists() and "MQTT connected to" in log.read_text(), 30, "the bridge to subscribe",
             log.read_text)


def _bridge(env: dict, log: Path) -> subprocess.Popen:
    """``riskwatch ingest-mqtt`` at info level, its output to ``log``."""
    return subprocess.Popen([sys.executable, "-m", "riskwatch.cli", "ingest-mqtt", "--loglevel", "info"], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def test_mqtt_readings_reach_the_worker_and_raise_a_sensor_alert(stack, mqtt_broker, tmp_path):
    import paho.mqtt.client as mqtt

    s, workers = stack
    (tmp_path / "devices.yaml").write_text(f"fridge-7: {E}\n")
    env = dict(workers.env, RISKWATCH_MQTT_PORT=str(mqtt_broker), RISKWATCH_MQTT_DEVICE_MAP=str(tmp_path / "devices.yaml"),
               RISKWATCH_MQTT_CLIENT_ID=f"rw-test-{mqtt_broker}")
    bridge = _bridge(env, tmp_path / "bridge.log")
    produce(s, [{"type": "entity", "entity_id": E, "name": "Cold Store", "industry": "food", "region": "350100",
                 "attributes": {"devices": ["freezer-9"]}}])  # a device mapped by the entity event itself
    workers.start()
    try:
        _subscribed(tmp_path / "bridge.log")  # its persistent session then keeps what is published
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sensor-gw")
        pub.connect("127.0.0.1", mqtt_broker)
        pub.loop_start()
        start = datetime.now(timezone.utc) - timedelta(minutes=40)
        infos = []
        for i in range(9):  # 20 degrees (limit 8) for 40 minutes: over the 15-minute minimum duration
            ts = (start + timedelta(minutes=5 * i)).isoformat()
            infos.append(pub.publish("rw/fridge-7/sensor", orjson.dumps({"metric": "temperature", "value": 20.0,
                                                                         "unit": "C", "ts": ts}), qos=1))
        time.sleep(2)  # the bridge has read the entity event by now (it follows rw.entities)
        infos.append(pub.publish("rw/freezer-9/sensor", orjson.dumps({"metric": "temperature", "value": -20.0}),
                                 qos=1))
        infos.append(pub.publish("rw/fridge-7/sensor", b"{not json", qos=1))
        infos.append(pub.publish("rw/unknown-dev/sensor", orjson.dumps({"metric": "temperature", "value": 3}), qos=1))
        for info in infos:
            info.wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()

        def breach():
            return [c for c in read_batches(s.broker, s.topic("alert-candidates"))
                    if c["entity_id"] == E and c["signal"] == "sensors.limit_breach" and c["status"] == "firing"]

        wait_for(breach, 90, "a limit_breach alert candidate",
                 lambda: (tmp_path / "bridge.log").read_text()[-3000:] + workers.logs())
        readings = [e for e in read_batches(s.broker, s.topic("sensor-readings")) if e["entity_id"] == E]
        assert len(readings) == 10 and {r["device_id"] for r in readings} == {"fridge-7", "freezer-9"}
        dead = [orjson.loads(v) for _, _, v in read_topic(s.broker, s.topic("deadletter"))]
        reasons = sorted(d["reason"] for d in dead if d["topic"].startswith("mqtt:"))
        assert reasons == ["json_invalid", "missing"], dead  # bad JSON; a device with no entity
    finally:
        os.killpg(bridge.pid, signal.SIGTERM)
        bridge.wait(15)


def test_kafka_paused_holds_mqtt_acks_and_loses_nothing(stack, services, mqtt_broker, tmp_path):
    """Kafka unreachable (SIGSTOP) while readings arrive: the bridge acks nothing to MQTT until Kafka has
    them; after SIGCONT every reading is on the topic."""
    import paho.mqtt.client as mqtt

    s, workers = stack
    broker = services[0]
    (tmp_path / "devices.yaml").write_text(f"fridge-7: {E}\n")
    env = dict(workers.env, RISKWATCH_MQTT_PORT=str(mqtt_broker), RISKWATCH_MQTT_DEVICE_MAP=str(tmp_path / "devices.yaml"),
               RISKWATCH_MQTT_CLIENT_ID=f"rw-pause-{mqtt_broker}")
    bridge = _bridge(env, tmp_path / "bridge.log")
    try:
        _subscribed(tmp_path / "bridge.log")
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sensor-gw-2")
        pub.connect("127.0.0.1", mqtt_broker)
        pub.loop_start()
        now = datetime.now(timezone.utc)

        def send(i):
            return pub.publish("rw/fridge-7/sensor", orjson.dumps(
                {"metric": "temperature", "value": 4.0, "ts": (now + timedelta(seconds=i)).isoformat()}), qos=1)

        for i in range(50):
            send(i).wait_for_publish(10)
        broker.proc.send_signal(signal.SIGSTOP)
        try:
            for i in range(50, 150):
                send(i).wait_for_publish(10)  # mosquitto takes them; the bridge cannot forward them
            wait_for(lambda: "MQTT acks held" in (tmp_path / "bridge.log").read_text(), 30,
                     "the bridge to notice Kafka is gone", lambda: (tmp_path / "bridge.log").read_text())
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        pub.loop_stop()
        pub.disconnect()

        def all_there():
            got = [e for e in read_batches(s.broker, s.topic("sensor-readings")) if e["entity_id"] == E]
            return len({e["ts"] for e in got}) == 150 and got

        got = wait_for(all_there, 90, "all 150 readings on the topic", lambda: (tmp_path / "bridge.log").read_text())
        assert len({e["ts"] for e in got}) == 150  # none lost (a redelivered one may appear twice)
    finally:
        os.killpg(bridge.pid, signal.SIGTERM)
        bridge.wait(15)


def test_readings_queued_while_the_bridge_was_away_find_devices_that_entity_events_map(stack, mqtt_broker, tmp_path):
    """A bridge that starts again gets what its persistent MQTT session queued meanwhile at once. Until
    2026-12-07 it took those readings before it had read the entities topic, so a device that only an
    entity event maps (``attributes.devices``) was unknown, and its queued readings were dead-lettered
    (no entity id)."""
    import paho.mqtt.client as mqtt

    s, workers = stack
    env = dict(workers.env, RISKWATCH_MQTT_PORT=str(mqtt_broker), RISKWATCH_MQTT_CLIENT_ID=f"rw-again-{mqtt_broker}")

    bridge = _bridge(env, tmp_path / "first.log")
    try:
        _subscribed(tmp_path / "first.log")  # its session (and subscription) now lives in the MQTT broker
    finally:
        os.killpg(bridge.pid, signal.SIGTERM)
        bridge.wait(15)
    produce(s, [{"type": "entity", "entity_id": E, "name": "Cold Store", "industry": "food", "region": "350100",
                 "attributes": {"devices": ["freezer-9"]}}])
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sensor-gw-3")
    pub.connect("127.0.0.1", mqtt_broker)
    pub.loop_start()
    now = datetime.now(timezone.utc)
    for i in range(20):  # queued for the bridge's session while it is away
        pub.publish("rw/freezer-9/sensor", orjson.dumps({"metric": "temperature", "value": -20.0,
                                                          "ts": (now + timedelta(seconds=i)).isoformat()}),
                    qos=1).wait_for_publish(10)
    pub.loop_stop()
    pub.disconnect()
    bridge = _bridge(env, tmp_path / "again.log")
    try:
        def forwarded():
            got = [e for e in read_batches(s.broker, s.topic("sensor-readings")) if e.get("device_id") == "freezer-9"]
            dead = [orjson.loads(v) for _, _, v in read_topic(s.broker, s.topic("deadletter"))]
            return (got, dead) if len(got) + len(dead) >= 20 else None

        got, dead = wait_for(forwarded, 60, "the queued readings forwarded",
                             lambda: (tmp_path / "again.log").read_text())
        assert not dead, dead[:2]
        assert len({e["ts"] for e in got}) == 20 and {e["entity_id"] for e in got} == {E}
        assert "devices mapped by entity events" in (tmp_path / "again.log").read_text()
    finally:
        os.killpg(bridge.pid, signal.SIGTERM)
        bridge.wait(15)


@pytest.fixture
def mqtt_tls_broker(tmp_path):
    """(port, CA file, client certificate file) of a mosquitto that takes only TLS with a client certificate
    and a login (user ``gateway``, password ``pw-7``)."""
    from .pki import mutual_tls  # skips without trustme

    ca, _, ca_file, client_file = mutual_tls(tmp_path, "riskwatch-bridge")
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b", "-c",
                    str(tmp_path / "passwd"), "gateway", "pw-7"], check=True, capture_output=True)
    port = free_port()
    conf = tmp_path / "mosquitto-tls.conf"
    conf.write_text(f"user root\nlistener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
                    f"password_file {tmp_path / 'passwd'}\ncafile {ca_file}\ncertfile {tmp_path / 'server.crt'}\n"
                    f"keyfile {tmp_path / 'server.key'}\nrequire_certificate true\n")
    log = tmp_path / "mosquitto-tls.log"
    p = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    import socket

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            return p.poll() is not None and pytest.fail(f"mosquitto exited: {log.read_text()}")

    wait_for(up, 15, "mosquitto", log.read_text)
    yield port, ca_file, client_file
    p.terminate()
    p.wait(5)


def test_the_bridge_logs_in_over_mutual_tls_and_a_wrong_password_or_ca_is_refused(stack, mqtt_tls_broker, tmp_path):
    """An IoT platform's broker: TLS with a client certificate and a login. The bridge configured with
    ``RISKWATCH_MQTT_TLS``, the CA, its certificate and the login forwards a gateway's readings; with a wrong
    password the broker refuses it, without the CA it does not trust the broker, and its log says which."""
    import paho.mqtt.client as mqtt

    from riskwatch.tls import client_context

    s, workers = stack
    port, ca_file, client_file = mqtt_tls_broker
    (tmp_path / "devices.yaml").write_text(f"fridge-7: {E}\n")
    env = dict(workers.env, RISKWATCH_MQTT_PORT=str(port), RISKWATCH_MQTT_DEVICE_MAP=str(tmp_path / "devices.yaml"),
               RISKWATCH_MQTT_CLIENT_ID=f"rw-tls-{port}", RISKWATCH_MQTT_TLS="1", RISKWATCH_MQTT_CA_FILE=str(ca_file),
               RISKWATCH_MQTT_CERT_FILE=str(client_file), RISKWATCH_MQTT_USERNAME="gateway")

    def bridge(log, **extra):
        return _bridge({**env, "RISKWATCH_MQTT_PASSWORD": "pw-7", **extra}, log)

    refused_log, untrusted_log = tmp_path / "bridge-refused.log", tmp_path / "bridge-ca.log"
    ok_log = tmp_path / "bridge.log"
    no_ca = {k: v for k, v in env.items() if k != "RISKWATCH_MQTT_CA_FILE"}
    refused, ok = bridge(refused_log, RISKWATCH_MQTT_PASSWORD="wrong"), bridge(ok_log)
    untrusted = subprocess.Popen([sys.executable, "-m", "riskwatch.cli", "ingest-mqtt"],  # the system's CAs
                                 env=dict(no_ca, RISKWATCH_MQTT_PASSWORD="pw-7", RISKWATCH_MQTT_CLIENT_ID="rw-ca"),
                                 stdout=untrusted_log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "MQTT connect failed: Not authorized" in refused_log.read_text(), 30,
                 "the broker to refuse the wrong password", refused_log.read_text)
        wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in untrusted_log.read_text(), 30,
                 "the bridge to say it does not trust the broker", untrusted_log.read_text)
        _subscribed(ok_log)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sensor-gw-tls")
        pub.username_pw_set("gateway", "pw-7")
        pub.tls_set_context(client_context(ca_file, client_file, None))
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        now = datetime.now(timezone.utc)
        for i in range(5):
            pub.publish("rw/fridge-7/sensor", orjson.dumps({"metric": "temperature", "value": 4.0,
                                                            "ts": (now + timedelta(seconds=i)).isoformat()}),
                        qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()

        def all_there():
            got = [e for e in read_batches(s.broker, s.topic("sensor-readings")) if e["entity_id"] == E]
            return len({e["ts"] for e in got}) == 5 and got

        wait_for(all_there, 60, "the 5 readings on the topic", lambda: ok_log.read_text()[-3000:])
        assert "pw-7" not in ok_log.read_text() + refused_log.read_text() + untrusted_log.read_text()
    finally:
        for b in (refused, ok, untrusted):
            os.killpg(b.pid, signal.SIGTERM)
            b.wait(15)


def test_check_settings_connect_mqtt_logs_in_as_the_bridge_would(stack, mqtt_tls_broker):
    """`riskwatch check-settings --connect --mqtt`: the bridge's login and TLS tried before it runs."""
    port, ca_file, client_file = mqtt_tls_broker
    env = dict(stack[1].env, RISKWATCH_MQTT_PORT=str(port), RISKWATCH_MQTT_TLS="1", RISKWATCH_MQTT_CA_FILE=str(ca_file),
               RISKWATCH_MQTT_CERT_FILE=str(client_file), RISKWATCH_MQTT_USERNAME="gateway")

    def check(password: str) -> dict[str, str]:
        r = subprocess.run([sys.executable, "-m", "riskwatch.cli", "check-settings", "--connect", "--mqtt",
                            "--timeout", "5"], env=dict(env, RISKWATCH_MQTT_PASSWORD=password),
                           capture_output=True, text=True, timeout=60)
        assert "pw-7" not in r.stdout + r.stderr
        lines = {line.split()[0]: line for line in r.stderr.splitlines() if line.startswith(("kafka ", "redis ", "mqtt "))}
        return {"rc": r.returncode, **lines}

    good = check("pw-7")
    assert good["rc"] == 0 and "ok" in good["mqtt"] and "logged in over TLS" in good["mqtt"], good
    bad = check("wrong")
    assert bad["rc"] == 1 and "FAILED" in bad["mqtt"] and "Not authorized" in bad["mqtt"], bad
    assert "ok" in bad["kafka"] and "ok" in bad["redis"], bad  # only the failing one fails
