"""Messages a consumer following a partition never sees, with several producers writing to it.

    python bench/broker_skips.py [--producers 1,3] [--messages 300] [--trials 5]

Plain aiokafka, no riskwatch code. Each trial: a fresh one-partition topic,
``--producers`` producers (separate connections) each send ``--messages``
messages of 2 kB to it concurrently, one at a time, while a consumer follows
the partition from offset 0 with a short fetch wait. Printed per producer
count: offsets the consumer never got (end offset minus distinct offsets
seen), summed over the trials, and how many a second read of the finished
partition from 0 gets (all of them: nothing is lost, the follower skipped).

The embedded broker (Tansu 0.6, memory storage) numbers a message before it
stores it, so a fetch can return offset n+1 while n is not there yet, and a
consumer then moves past n. Kafka does not. Every worker produces to the one
partition of ``model-training``; the trainer therefore reads a gap in what its
consumer got directly (``riskwatch.streams.kafka.read_range``), and input
partitions written by several producers at once can lose an event to a
worker on the embedded broker (README: the embedded broker).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from riskwatch.embedded import start_broker  # noqa: E402


async def trial(url: str, topic: str, producers: int, messages: int) -> tuple[int, int, int]:
    """(end offset, distinct offsets the follower saw, offsets a read from 0 afterwards gets)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    tp = TopicPartition(topic, 0)
    prods = [AIOKafkaProducer(bootstrap_servers=url) for _ in range(producers)]
    for p in prods:
        await p.start()
    await prods[0].send_and_wait(topic, b"first", partition=0)
    follower = AIOKafkaConsumer(bootstrap_servers=url, enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=5)
    await follower.start()
    follower.assign([tp])
    follower.seek(tp, 0)
    seen: set[int] = set()

    async def follow() -> None:
        while True:
            for msg in (await follower.getmany(tp, timeout_ms=50)).get(tp, []):
                seen.add(msg.offset)

    async def produce(p) -> None:
        for _ in range(messages):
            await p.send_and_wait(topic, os.urandom(2000), partition=0)

    task = asyncio.ensure_future(follow())
    await asyncio.gather(*(produce(p) for p in prods))
    await asyncio.sleep(2.0)
    task.cancel()
    end = (await follower.end_offsets([tp]))[tp]
    await follower.stop()
    for p in prods:
        await p.stop()
    again = AIOKafkaConsumer(bootstrap_servers=url, enable_auto_commit=False, auto_offset_reset="earliest")
    await again.start()
    again.assign([tp])
    again.seek(tp, 0)
    got: set[int] = set()
    for _ in range(20):
        for msg in (await again.getmany(tp, timeout_ms=200)).get(tp, []):
            got.add(msg.offset)
        if len(got) >= end:
            break
    await again.stop()
    return end, len(seen), len(got)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--producers", default="1,3", help="producer counts to compare (comma-separated)")
    ap.add_argument("--messages", type=int, default=300, help="messages per producer per trial")
    ap.add_argument("--trials", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_broker(Path(tmp) / "broker")
        try:
            for n in (int(x) for x in a.producers.split(",")):
                sent = skipped = reread = 0
                for t in range(a.trials):
                    end, seen, got = asyncio.run(trial(broker.url, f"skips-{n}-{t}", n, a.messages))
                    sent += end
                    skipped += end - seen
                    reread += got
                print(f"{n} producer(s): {sent} messages in {a.trials} trials; the follower skipped {skipped} "
                      f"({skipped / sent:.3%}); a read from 0 afterwards got {reread}")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
