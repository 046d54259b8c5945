"""Alert delivery throughput and candidate→webhook latency, on a real Redis and broker.

    python bench/alerts.py [--notifications 3000] [--rate 40] [--seconds 20] [--runs 3]

1. baseline: bare httpx posting the same bodies to the same local receiver with
   the same concurrency (no outbox, no signing): what HTTP here allows;
2. riskwatch deliverer: the same notifications through the Redis outbox
   (consumer group, attempts, HMAC signature, ack+delete per entry);
3. latency: alert candidates produced to Kafka at a fixed rate (one new entity
   each), through the dispatcher's intake (rules, lifecycle, grouping with
   group_wait 0) and delivery, to the receiver: p50/p99 from produce to receipt.

Medians of --runs; ratios against the baseline of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from riskwatch.alerts.config import AlertsConfig  # noqa: E402
from riskwatch.alerts.delivery import Deliverer  # noqa: E402
from riskwatch.alerts.intake import AlertIntake  # noqa: E402
from riskwatch.alerts.metrics import AlertMetrics  # noqa: E402
from riskwatch.alerts.outbox import Outbox  # noqa: E402
from riskwatch.embedded import start_broker, start_redis  # noqa: E402

CONCURRENCY = 16
FETCH_WAIT_MS = 100  # as the dispatcher's consumer


class Sink:
    """Threaded local receiver: records arrival time per request."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.arrivals.append((time.time(), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def _config(url: str, **kw) -> AlertsConfig:
    return AlertsConfig.model_validate({
        "allow_private": ["127.0.0.1"],
        "rules": [{"name": "burst", "signals": ["complaints.burst"], "summary": "burst at {entity_id}"}],
        "receivers": [{"name": "r", "url": url, "secrets": ["k1"], "concurrency": CONCURRENCY,
                       "group_by": ["entity"], "group_wait": 0, "group_interval": 1, **kw}]})


def _bodies(n: int) -> list[bytes]:
    return [orjson.dumps({"version": "4", "status": "firing", "alerts": [{"labels": {"entity": f"E{i}"}}]})
            for i in range(n)]


async def baseline(url: str, n: int) -> float:
    import httpx

    bodies = _bodies(n)
    sem = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient() as client:
        async def post(b):
            async with sem:
                (await client.post(url, content=b, headers={"Content-Type": "application/json"})).raise_for_status()
        t0 = time.perf_counter()
        await asyncio.gather(*[post(b) for b in bodies])
        return n / (time.perf_counter() - t0)


async def deliverer(redis_url: str, sink: Sink, n: int) -> float:
    import redis.asyncio as aioredis

    r = aioredis.from_url(redis_url)
    await r.flushall()
    pipe = r.pipeline(transaction=False)
    for i, b in enumerate(_bodies(n)):
        Outbox.enqueue(pipe, {"id": f"n{i}", "kind": "webhook", "receiver": "r", "body": b.decode(),
                              "queued_at": time.time()})
    await pipe.execute()
    before = len(sink.arrivals)
    d = Deliverer(Outbox(r, "bench"), _config(sink.url), AlertMetrics(), seed=1)
    t0 = time.perf_counter()
    task = asyncio.create_task(d.run())
    while len(sink.arrivals) - before < n:
        await asyncio.sleep(0.01)
    dt = time.perf_counter() - t0
    await d.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await r.aclose()
    return n / dt


async def latency(broker: str, redis_url: str, sink: Sink, rate: float, seconds: float) -> list[float]:
    import redis.asyncio as aioredis
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"bench-cands-{time.time_ns()}"
    r = aioredis.from_url(redis_url)
    await r.flushall()
    cfg = _config(sink.url)
    m = AlertMetrics()
    intake = AlertIntake(r, cfg, ["A", "B", "C", "D"], m)
    d = Deliverer(Outbox(r, "bench"), cfg, m, seed=1)
    deliver_task = asyncio.create_task(d.run())
    prod = AIOKafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=0)
    cons = AIOKafkaConsumer(topic, bootstrap_servers=broker, group_id=topic, auto_offset_reset="earliest",
                            enable_auto_commit=False, fetch_max_wait_ms=FETCH_WAIT_MS)
    await prod.start()
    await prod.send_and_wait(topic, b'{"batch": []}')  # creates the topic
    await cons.start()
    sent: dict[str, float] = {}
    stop = asyncio.Event()

    async def run_intake():  # what the dispatcher's intake loop does
        while not stop.is_set():
            batches = await cons.getmany(timeout_ms=50)
            for msgs in batches.values():
                for msg in msgs:
                    await intake.apply_message(msg.topic, msg.partition, msg.offset, msg.value)
            await intake.tick()

    intake_task = asyncio.create_task(run_intake())
    await asyncio.sleep(3)  # group join
    before = len(sink.arrivals)
    n = int(rate * seconds)
    t_start = time.perf_counter()
    for i in range(n):
        eid = f"E{i}"
        cand = {"type": "alert_candidate", "entity_id": eid, "ts": "2026-01-01T00:00:00+00:00", "signal": "complaints.burst",
                "status": "firing", "severity": "warning", "value": 0.9, "dedup_key": f"{eid}:burst",
                "score": 40.0, "tier": "B", "event_ids": [], "config_version": "b"}
        sent[eid] = time.time()
        await prod.send_and_wait(topic, orjson.dumps({"batch": [cand]}))
        await asyncio.sleep(max(0.0, t_start + (i + 1) / rate - time.perf_counter()))
    deadline = time.monotonic() + 30
    while len(sink.arrivals) - before < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await intake_task
    await d.close()
    deliver_task.cancel()
    await asyncio.gather(deliver_task, return_exceptions=True)
    await cons.stop()
    await prod.stop()
    await r.aclose()
    lat = []
    for at, body in sink.arrivals[before:]:
        for a in orjson.loads(body)["alerts"]:
            lat.append(at - sent[a["labels"]["entity"]])
    if len(lat) < n:
        print(f"  warning: {n - len(lat)} of {n} alerts not received within 30 s")
    return lat


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notifications", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=40.0, help="candidates/s for the latency run")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="rw-bench-alerts-"))
    broker, redis = start_broker(d / "broker"), start_redis(d / "redis")
    sink = Sink()
    try:
        base, ours = [], []
        for run in range(a.runs):
            base.append(asyncio.run(baseline(sink.url, a.notifications)))
            ours.append(asyncio.run(deliverer(redis.url, sink, a.notifications)))
            print(f"run {run + 1}: bare httpx {base[-1]:,.0f}/s  riskwatch deliverer {ours[-1]:,.0f}/s")
        b, o = statistics.median(base), statistics.median(ours)
        print(f"\nnotifications/s to a local receiver (concurrency {CONCURRENCY}, medians of {a.runs}):")
        print(f"  bare httpx (baseline)      {b:10,.0f}/s")
        print(f"  riskwatch deliverer        {o:10,.0f}/s   ratio {o / b:.2f}x")
        lat = asyncio.run(latency(broker.url, redis.url, sink, a.rate, a.seconds))
        print(f"\ncandidate produced -> webhook received, {a.rate:.0f} candidates/s for {a.seconds:.0f} s "
              f"({len(lat)} alerts, group_wait 0):")
        print(f"  p50 {pct(lat, 0.5) * 1000:7.1f} ms   p99 {pct(lat, 0.99) * 1000:7.1f} ms   "
              f"max {max(lat) * 1000:7.1f} ms")
    finally:
        sink.server.shutdown()
        broker.stop()
        redis.stop()


if __name__ == "__main__":
    main()
