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
        await c.seek_to_beginning(*tps)
        # Read until the topic stays quiet: the embedded broker (Tansu 0.6) reports as the end
        # offset the first offset of a partition's last record batch, so the reported end is
        # only a lower bound (measured: 9,559 reported for 10,000 records per partition).
        idle = 0
        while idle < 3:
            batch = await c.getmany(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for msgs in batch.values():
                for msg in msgs:
                    obj = orjson.loads(msg.value)
                    for ev in obj["batch"] if isinstance(obj, dict) and "batch" in obj else [obj]:
                        yield ev
    finally:
        await c.stop()


VIEW_PATTERNS = ("rw:entity:*", "rw:rank", "rw:rank:*", "rw:history:*", "rw:spotchecks")


async def rebuild_view(settings: Settings, flush: bool = True) -> dict[str, int]:
    import redis.asyncio as aioredis

    cfg = load_config(settings.config_path)
    view = ViewWriter({t.name: t.ratio for t in cfg.tiers}, settings.history_len)
    r = aioredis.from_url(settings.redis_url)
    if flush:  # the view's keys only: alerts, audit, objections and config are not derived from topics
        keys = [k for pattern in VIEW_PATTERNS async for k in r.scan_iter(pattern, count=1000)]
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
    # the producer may reorder an entity's output messages; its `seq` is the decision order
    latest: dict[str, dict] = {}
    async for o in _each(settings.broker, settings.topic("risk-changes")):
        view.output(pipe, o, None, current=False)
        prev = latest.get(o["entity_id"])
        if prev is None or o["seq"] > prev["seq"]:
            latest[o["entity_id"]] = o
        counts["risk_changes"] += 1
        if len(pipe) > 5000:
            await pipe.execute()
    for eid, o in latest.items():
        view.output(pipe, o, meta.get(eid))
        if len(pipe) > 5000:
            await pipe.execute()
    async for o in _each(settings.broker, settings.topic("spotcheck-changes")):
        view.output(pipe, o, meta.get(o["entity_id"]))
        counts["spotcheck_changes"] = counts.get("spotcheck_changes", 0) + 1
        if len(pipe) > 5000:
            await pipe.execute()
    await pipe.execute()
    await r.aclose()
    return counts
