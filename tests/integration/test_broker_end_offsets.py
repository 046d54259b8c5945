"""Our topic readers must not trust the embedded broker's end offsets.

Tansu 0.6 reports the first offset of a partition's last record batch as the
partition's end; readers in riskwatch read until the topic is quiet instead.
"""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from .helpers import read_topic


async def _fill(broker: str, topic: str, n: int) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 2, 1)])
    await admin.close()
    p = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=20, acks="all")
    await p.start()
    for i in range(n):
        await p.send(topic, b"%d" % i, partition=i % 2)
    await p.flush()
    await p.stop()
    c = AIOKafkaConsumer(bootstrap_servers=broker)
    await c.start()
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    ends = await c.end_offsets(tps)
    await c.stop()
    return {tp.partition: off for tp, off in ends.items()}


def test_reader_gets_every_record_whatever_end_offset_the_broker_reports(services):
    broker, _ = services
    n = 10_000
    ends = asyncio.run(_fill(broker.url, "end-offset-check", n))
    got = read_topic(broker.url, "end-offset-check")
    assert len(got) == n and len({v for _, _, v in got}) == n
    print(f"broker-reported end offsets {ends} for {n // 2} records per partition")
