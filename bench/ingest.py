"""Ingestion throughput on the embedded broker: HTTP, MQTT, and ingest -> worker -> outputs.

    python bench/ingest.py [--events 100000] [--batch 500] [--mqtt 20000]

1. HTTP: a load generator in its own process POSTs batches to `riskwatch ingest`
   (concurrency 4); events/s accepted (acknowledged by the broker);
2. end to end: the same through a riskwatch worker; events/s from the first POST
   until the worker processed everything;
3. baseline: the bare Faust agent of bench/stream.py over the same number of
   single-event messages (the streaming-runtime issue's baseline), in this run;
4. MQTT (when mosquitto is installed): a publisher process sends QoS 1 readings
   to mosquitto, `riskwatch ingest-mqtt` forwards them; messages/s forwarded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.stream import _up, bare_faust, metric, produce_single, worker_env  # noqa: E402
from riskwatch.api.auth import hash_token  # noqa: E402
from riskwatch.embedded import free_port, start_broker, start_redis  # noqa: E402
from riskwatch.settings import Settings  # noqa: E402
from riskwatch.simulate import Simulation  # noqa: E402
from riskwatch.streams.kafka import ensure_topics  # noqa: E402

PY = sys.executable
TOKEN = "bench-ingest-token"


def loadgen(url: str, n: int, batch: int, concurrency: int) -> None:
    """Child process: POST n simulated events in batches; print events/s accepted."""
    import httpx

    evs = list(Simulation(n_entities=max(1000, n // 20), seed=3, bad_share=0.0, days=30).events(n_events=n))
    bodies = [orjson.dumps(evs[i:i + batch]) for i in range(0, len(evs), batch)]

    async def main():
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {TOKEN}",
                                                          "Content-Type": "application/json"}) as c:
            async def post(b):
                async with sem:
                    while True:
                        r = await c.post(url, content=b)
                        if r.status_code in (429, 503):
                            await asyncio.sleep(float(r.headers.get("Retry-After", 1)))
                            continue
                        r.raise_for_status()
                        return r.json()["accepted"]
            t0 = time.perf_counter()
            got = sum(await asyncio.gather(*[post(b) for b in bodies]))
            dt = time.perf_counter() - t0
        print(orjson.dumps({"accepted": got, "seconds": dt}).decode(), flush=True)

    asyncio.run(main())


def mqtt_publisher(port: int, n: int) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.perf_counter()
    infos = [c.publish(f"rw/dev-{i % 500}/sensor", orjson.dumps({"metric": "temperature", "value": 4.0 + i % 3}),
                       qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(120)
    print(orjson.dumps({"published": n, "seconds": time.perf_counter() - t0}).decode(), flush=True)
    c.loop_stop()


def _ingest(env: dict, d: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    p = subprocess.Popen([PY, "-m", "riskwatch.cli", "ingest"], env=dict(env, RISKWATCH_INGEST_PORT=str(port)),
                         stdout=(d / "ingest.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    import urllib.request

    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    return p, f"http://127.0.0.1:{port}/v1/events"


def _run_loadgen(url: str, n: int, batch: int) -> dict:
    out = subprocess.run([PY, __file__, "--loadgen", url, str(n), str(batch)], capture_output=True, text=True,
                         timeout=1800)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return orjson.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--mqtt", type=int, default=20_000)
    ap.add_argument("--loadgen", nargs=3, metavar=("URL", "N", "BATCH"), help=argparse.SUPPRESS)
    ap.add_argument("--publisher", nargs=2, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.loadgen:
        loadgen(a.loadgen[0], int(a.loadgen[1]), int(a.loadgen[2]), 4)
        return
    if a.publisher:
        mqtt_publisher(int(a.publisher[0]), int(a.publisher[1]))
        return
    d = Path(tempfile.mkdtemp(prefix="rw-bench-ingest-"))
    broker, redis = start_broker(d / "broker"), start_redis(d / "redis")
    procs: list[subprocess.Popen] = []
    try:
        base_env = dict(os.environ, RISKWATCH_BROKER=broker.url, RISKWATCH_REDIS_URL=redis.url,
                        RISKWATCH_API_TOKENS=f"bench:ingest:{hash_token(TOKEN)}")
        # 1. HTTP alone (no worker)
        s1 = Settings(broker=broker.url, topic_prefix="h1.")
        asyncio.run(ensure_topics(s1))
        p, url = _ingest(dict(base_env, RISKWATCH_TOPIC_PREFIX="h1."), d)
        procs.append(p)
        r = _run_loadgen(url, a.events, a.batch)
        http_rate = r["accepted"] / r["seconds"]
        print(f"HTTP ingest: {r['accepted']:,} events in batches of {a.batch}: {http_rate:,.0f} events/s accepted")
        # 2. end to end through a worker
        s2 = Settings(broker=broker.url, topic_prefix="e2e.")
        asyncio.run(ensure_topics(s2))
        p2, url2 = _ingest(dict(base_env, RISKWATCH_TOPIC_PREFIX="e2e."), d)
        procs.append(p2)
        wport = free_port()
        w = subprocess.Popen([PY, "-m", "riskwatch.cli", "worker"],
                             env=worker_env(broker.url, redis.url, "e2e.", d, wport),
                             stdout=(d / "worker.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(w)
        while not _up(wport):  # metrics up, then give the group time to assign partitions
            time.sleep(0.5)
            if w.poll() is not None:
                raise RuntimeError("worker died; see " + str(d / "worker.log"))
        time.sleep(10)
        t0 = time.perf_counter()
        r2 = _run_loadgen(url2, a.events, a.batch)
        while metric(wport, "riskwatch_events_processed_total") < r2["accepted"]:
            time.sleep(0.1)
        e2e = r2["accepted"] / (time.perf_counter() - t0)
        print(f"ingest -> worker -> outputs: {e2e:,.0f} events/s end to end "
              f"(HTTP side alone in that run: {r2['accepted'] / r2['seconds']:,.0f}/s)")
        # 3. the bare Faust baseline, same number of events
        topic = "bf.events"
        asyncio.run(produce_single(broker.url, topic, a.events, max(1000, a.events // 20)))
        base = bare_faust(broker.url, topic, a.events, d)
        print(f"bare Faust agent (baseline): {base:,.0f} events/s;  end to end / baseline = {e2e / base:.2f}x")
        # 4. MQTT
        mosq = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
        if mosq is None:
            print("MQTT: skipped (mosquitto not installed)")
            return
        mport = free_port()
        (d / "m.conf").write_text(f"listener {mport} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                                  "max_inflight_messages 1000\nmax_queued_messages 100000\n")
        procs.append(subprocess.Popen([mosq, "-c", str(d / "m.conf")], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        s3 = Settings(broker=broker.url, topic_prefix="mq.")
        asyncio.run(ensure_topics(s3))
        (d / "devices.yaml").write_text("".join(f"dev-{i}: E{i:05d}\n" for i in range(500)))
        bport = free_port()
        procs.append(subprocess.Popen([PY, "-m", "riskwatch.cli", "ingest-mqtt", "--metrics-port", str(bport)],
                                      env=dict(base_env, RISKWATCH_TOPIC_PREFIX="mq.", RISKWATCH_MQTT_PORT=str(mport),
                                               RISKWATCH_MQTT_DEVICE_MAP=str(d / "devices.yaml"),
                                               RISKWATCH_MQTT_INFLIGHT="1000",
                                               RISKWATCH_CONFIG_PATH=str(_opaque_config(d))),
                                      stdout=(d / "bridge.log").open("wb"), stderr=subprocess.STDOUT))
        time.sleep(2)
        t0 = time.perf_counter()
        pub = subprocess.run([PY, __file__, "--publisher", str(mport), str(a.mqtt)], capture_output=True, text=True,
                             timeout=1800)
        if pub.returncode:
            raise RuntimeError(pub.stderr[-2000:])
        while metric(bport, "riskwatch_mqtt_messages_total") < a.mqtt:
            time.sleep(0.1)
            if time.perf_counter() - t0 > 600:
                raise RuntimeError("bridge too slow; see " + str(d / "bridge.log"))
        dt = time.perf_counter() - t0
        print(f"MQTT -> Kafka: {a.mqtt:,} QoS 1 readings forwarded at {a.mqtt / dt:,.0f} messages/s")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
        redis.stop()


def _opaque_config(d: Path) -> Path:
    """The default config with opaque entity ids (the MQTT bench maps devices to E00001-style ids)."""
    import yaml

    from riskwatch.config import DEFAULT_PATH

    cfg = yaml.safe_load(DEFAULT_PATH.read_text())
    cfg["entity_id_scheme"] = "opaque"
    p = d / "opaque.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


if __name__ == "__main__":
    main()
