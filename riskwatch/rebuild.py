"""``riskwatch rebuild-view``: rebuild the Redis view from Kafka (the source of truth).

Reads the ``entities`` input topic (register data) and the ``risk-changes``
output topic from the beginning and applies the same :class:`ViewWriter`
the workers use; every write is idempotent, so it can run beside workers.
"""

from __future__ import annotations

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from .config import load_config
from .settings import Settings
from .view import ViewWriter

__all__ = ["rebuild_view"]


async def _each(broker: str, topic: str):
    c = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await c.start()
    try:
        await c._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        if not tps:
            return
        c.assign(tps)
        end = await c.end_offsets(tps)
        await c.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await c.getmany(*remaining, timeout_ms=1000)
            for tp, msgs in batch.items():
                for msg in msgs:
                    obj = orjson.loads(msg.value)
                    for ev in obj["batch"] if isinstance(obj, dict) and "batch" in obj else [obj]:
                        yield ev
                if await c.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await c.stop()


async def rebuild_view(settings: Settings, flush: bool = True) -> dict[str, int]:
    import redis.asyncio as aioredis

    cfg = load_config(settings.config_path)
    view = ViewWriter({t.name: t.ratio for t in cfg.tiers}, settings.history_len)
    r = aioredis.from_url(settings.redis_url)
    if flush:
        keys = [k async for k in r.scan_iter("rw:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await r.delete(*keys[i:i + 1000])
    meta: dict[str, list] = {}
    counts = {"entities": 0, "risk_changes": 0}
    pipe = r.pipeline(transaction=False)
    async for ev in _each(settings.broker, settings.topic("entities")):
        if isinstance(ev, dict) and ev.get("type") == "entity" and {"entity_id", "name", "industry", "region"} <= ev.keys():
            view.entity(pipe, ev)
            meta[ev["entity_id"]] = [ev["industry"], ev["region"]]
            counts["entities"] += 1
    async for o in _each(settings.broker, settings.topic("risk-changes")):
        view.output(pipe, o, meta.get(o["entity_id"]))
        counts["risk_changes"] += 1
        if len(pipe) > 5000:
            await pipe.execute()
    await pipe.execute()
    await r.aclose()
    return counts
