"""The latency floor of the live path: a bare aiokafka consumer on the same live feed.

    python bench/fetch_lag.py [--rate 4000] [--seconds 15]

Starts the embedded broker, loads the entity register, starts the same live
feed as the latency phase of bench/stream.py (`riskwatch simulate --kafka
--live`, envelopes flushed after 20 ms) and reads the input topics with a
bare aiokafka consumer on uvloop with the worker's fetch wait. Prints how long
after the feed's producer appended a message (its Kafka timestamp) the
consumer had it: what any worker pays before its own code runs. Compare with
the worker's event->output figures from bench/stream.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stream import simulate_to_kafka  # noqa: E402
from riskwatch.aio import use_event_loop  # noqa: E402
from riskwatch.embedded import start_broker  # noqa: E402
from riskwatch.settings import INPUT_TOPICS, Settings  # noqa: E402
from riskwatch.streams.kafka import ensure_topics  # noqa: E402


async def consume(broker: str, topics: list[str], seconds: float, fetch_wait_ms: int) -> list[float]:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(*topics, bootstrap_servers=broker, auto_offset_reset="latest", enable_auto_commit=False,
                         fetch_max_wait_ms=fetch_wait_ms, group_id="fetch-lag")
    await c.start()
    lags: list[float] = []
    stop_at = time.time() + seconds
    try:
        while time.time() < stop_at:
            batch = await c.getmany(timeout_ms=100)
            now = time.time()
            for msgs in batch.values():
                lags.extend(now - m.timestamp / 1000 for m in msgs)
    finally:
        await c.stop()
    return lags


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=4000.0, help="offered events/s")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--entities", type=int, default=20_000)
    a = ap.parse_args()
    s = Settings()
    use_event_loop(s.event_loop)
    d = Path(tempfile.mkdtemp(prefix="rw-fetch-lag-"))
    broker = start_broker(d / "broker")
    try:
        prefix = "rwf."
        asyncio.run(ensure_topics(Settings(broker=broker.url, topic_prefix=prefix)))
        simulate_to_kafka(broker.url, prefix, 0, a.entities, batch=500).wait()
        feed = simulate_to_kafka(broker.url, prefix, int(a.rate * (a.seconds + 2)), a.entities, batch=500,
                                 rate=a.rate, live=True, max_delay=0.02, register=False)
        lags = asyncio.run(consume(broker.url, [prefix + t for t in INPUT_TOPICS], a.seconds, s.fetch_wait_ms))
        feed.terminate()
        feed.wait(20)
        lags = sorted(lags[len(lags) // 5:])  # the feed's start-up apart, as bench/stream.py does
        if not lags:
            raise SystemExit("no messages received")
        q = lambda p: lags[min(len(lags) - 1, int(len(lags) * p))] * 1000  # noqa: E731
        print(f"bare aiokafka consumer, {a.rate:,.0f} events/s offered, {len(lags):,} messages: producer append "
              f"-> received p50 {q(.5):.1f} ms, p90 {q(.9):.1f} ms, p99 {q(.99):.1f} ms "
              f"(fetch wait {s.fetch_wait_ms} ms, {s.event_loop})")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
