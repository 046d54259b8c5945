"""The embedded broker's CPU at a constant load, as its partitions grow.

    python bench/broker_growth.py [--rate 300] [--seconds 30] [--size 3000] [--fetch-wait-ms 10,100,500]

Plain aiokafka, no riskwatch code: a producer sends ``--rate`` messages/s of
``--size`` bytes round-robin to a 4-partition topic, a consumer reads them
with each ``--fetch-wait-ms`` in turn (a fresh broker each), and the broker's
CPU share is printed every 5 s; first without a consumer. Tansu 0.6 (memory
storage) spends more on each fetch the longer the fetched partitions are,
and holds a fetch for its whole wait when no data is there on arrival, so a
short wait means many fetches. This is why ``riskwatch up`` runs the worker
with a 100 ms fetch wait (README: the embedded broker).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.stream import cpu_seconds  # noqa: E402
from riskwatch.embedded import start_broker  # noqa: E402


async def run(url: str, pid: int, rate: float, seconds: float, size: int, wait_ms: int | None) -> list[float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=url)
    await admin.start()
    await admin.create_topics([NewTopic("t", 4, 1)])
    await admin.close()
    prod = AIOKafkaProducer(bootstrap_servers=url, linger_ms=2)
    await prod.start()
    value = b"x" * size
    stop = asyncio.Event()

    async def produce() -> None:
        i, t0 = 0, time.monotonic()
        while not stop.is_set():
            await prod.send("t", value, partition=i % 4)
            i += 1
            ahead = i / rate - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)

    async def consume() -> None:
        c = AIOKafkaConsumer("t", bootstrap_servers=url, fetch_max_wait_ms=wait_ms, auto_offset_reset="earliest",
                             enable_auto_commit=False)
        await c.start()
        try:
            while not stop.is_set():
                await c.getmany(timeout_ms=100)
        finally:
            await c.stop()

    tasks = [asyncio.ensure_future(produce())]
    if wait_ms is not None:
        tasks.append(asyncio.ensure_future(consume()))
    shares = []
    c0, t0 = cpu_seconds(pid), time.monotonic()
    for _ in range(int(seconds // 5)):
        await asyncio.sleep(5)
        c1, t1 = cpu_seconds(pid), time.monotonic()
        shares.append(100 * (c1 - c0) / (t1 - t0))
        c0, t0 = c1, t1
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await prod.stop()
    return shares


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=300.0, help="messages/s")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--size", type=int, default=3000, help="bytes per message (~ a 30-event envelope)")
    ap.add_argument("--fetch-wait-ms", default="10,100,500")
    a = ap.parse_args()
    print(f"{a.rate:.0f} messages/s of {a.size:,} bytes on 4 partitions; broker CPU (% of a core) every 5 s:")
    for wait in [None, *map(int, a.fetch_wait_ms.split(","))]:
        d = Path(tempfile.mkdtemp(prefix="rw-growth-"))
        broker = start_broker(d / "broker")
        try:
            shares = asyncio.run(run(broker.url, broker.proc.pid, a.rate, a.seconds, a.size, wait))
        finally:
            broker.stop()
        what = "no consumer        " if wait is None else f"consumer, wait {wait:4d} ms"
        print(f"{what}: " + " ".join(f"{x:5.1f}" for x in shares), flush=True)


if __name__ == "__main__":
    main()
