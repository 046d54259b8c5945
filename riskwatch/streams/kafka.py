"""Plain aiokafka helpers outside the worker: topic creation, batched producing, reading a topic back.

Producers put many events of one input topic and one partition into one
batch envelope (``{"batch": [...]}``) and send it to that partition, which
is what lets a Faust worker keep up (see :mod:`riskwatch.streams.codec`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Iterable, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ..kafka_security import client_options
from ..settings import INPUT_TOPICS, OUTPUT_TOPICS, Settings
from .codec import encode_batch, partition_for

__all__ = ["BatchProducer", "PartitionMismatch", "check_partitions", "create_topics", "ensure_topics", "read_messages",
           "read_range", "read_skipped", "read_to_end", "started", "topic_for", "until_reachable"]

log = logging.getLogger("riskwatch.kafka")

_TOPIC_OF_TYPE = {"entity": "entities", "complaint": "complaints", "sensor_reading": "sensor-readings",
                  "inspection": "inspections", "record": "records", "objection": "commands",
                  "objection_resolution": "commands", "tick": "commands"}


def topic_for(event: dict, settings: Settings) -> str:
    """The input topic of an event by its type (unknown types go to ``commands``)."""
    t = event.get("type") if isinstance(event, dict) else None
    return settings.topic(_TOPIC_OF_TYPE.get(t, "commands"))


T = TypeVar("T")
_SAY_EVERY = 30.0  # seconds between the lines of one wait for the broker


async def until_reachable(attempt: Callable[[], Awaitable[T]], what: str, retry_every: float = 2.0) -> T:
    """``attempt()``, again every ``retry_every`` s for as long as the broker does not answer
    (``KafkaError``, ``OSError``). The first failure is logged, then one line every 30 s with the
    count, then the wait's length once the broker answers. Other errors (a :class:`PartitionMismatch`)
    are raised.

    Until 2026-12-07 a worker started while the broker did not answer (a broker restarting, a compose
    stack starting in another order) exited at once with status 1."""
    from aiokafka.errors import KafkaError

    first = said = None
    n = 0
    while True:
        try:
            out = await attempt()
        except (KafkaError, OSError) as exc:
            n += 1
            now = time.monotonic()
            first = now if first is None else first
            if said is None or now - said >= _SAY_EVERY:
                log.warning("%s: the broker does not answer (%s); trying again every %.0f s (attempt %d)",
                            what, exc, retry_every, n)
                said = now
        else:
            if first is not None:
                log.info("%s: the broker answers (after %.0f s, %d attempts)", what, time.monotonic() - first, n + 1)
            return out
        await asyncio.sleep(retry_every)


async def started(make: Callable[[], T]) -> T:
    """A client from ``make()``, started; stopped again when its start fails (aiokafka logs an
    unclosed client otherwise)."""
    client = make()
    try:
        await client.start()  # type: ignore[attr-defined]
    except BaseException:
        await client.stop()  # type: ignore[attr-defined]
        raise
    return client


class PartitionMismatch(RuntimeError):
    """Existing keyed topics whose partition count is not ``RISKWATCH_PARTITIONS``."""


def _keyed_topics(settings: Settings) -> list[str]:
    """Topics whose partition of an entity is ``partition_for(entity_id, settings.partitions)``."""
    return ([settings.topic(t) for t in INPUT_TOPICS] + [settings.topic(t) for t in OUTPUT_TOPICS.values()]
            + [settings.state_changelog, settings.topic("rekey"), settings.topic("alerts")])


async def ensure_topics(settings: Settings) -> None:
    """Create every riskwatch topic that does not exist yet; raise :class:`PartitionMismatch` when
    existing keyed topics have another partition count than the settings."""
    n = settings.partitions
    want = dict.fromkeys(_keyed_topics(settings), n)
    want.update({settings.topic("deadletter"): 1, settings.topic("model-training"): 1, settings.topic("models"): 1,
                 settings.topic("audit"): 1, settings.topic("draws"): 1})
    from ..audit_topic import TOPIC_CONFIG
    from .state_store import CHANGELOG_CONFIG

    await create_topics(settings, want,
                        {settings.state_changelog: CHANGELOG_CONFIG, settings.topic("audit"): TOPIC_CONFIG,
                         settings.topic("draws"): TOPIC_CONFIG})
    await check_partitions(settings)


async def check_partitions(settings: Settings) -> None:
    """Raise :class:`PartitionMismatch` when an existing keyed topic's partition count differs from
    ``settings.partitions``. A worker places an entity by ``murmur2(entity_id) mod partitions`` and
    re-keys an event that arrives elsewhere: with the wrong count the re-keyed events came back to the
    same wrong partition forever (a worker set to 8 on 4-partition topics consumed 48,634 messages for
    5,468 events in 20 s and was still going, 2026-11-28)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        topics = await admin.describe_topics(_keyed_topics(settings))
    finally:
        await admin.close()
    wrong = {t["topic"]: len(t["partitions"]) for t in topics
             if not t["error_code"] and t["partitions"] and len(t["partitions"]) != settings.partitions}
    if wrong:
        counts = sorted(set(wrong.values()))
        fix = f"RISKWATCH_PARTITIONS={counts[0]}" if len(counts) == 1 else "one partition count for all of them"
        names = sorted(wrong)
        listed = ", ".join(f"{t} ({wrong[t]})" for t in names[:3])
        if names[3:]:
            listed += f" and {len(names) - 3} more"
        raise PartitionMismatch(
            f"RISKWATCH_PARTITIONS is {settings.partitions} but topics have other partition counts: {listed}; "
            f"set {fix} (an entity's partition is murmur2(entity_id) mod the partition count; adding partitions "
            f"to topics that hold data moves entities away from their state, see README: Scaling out)")


async def create_topics(broker: Settings | str, want: dict[str, int],
                        configs: dict[str, dict[str, str]] | None = None) -> None:
    """Create the topics (name -> partitions) that do not exist yet, with ``configs`` (name -> topic
    configs); an existing topic whose configs differ is logged (the operator alters it, not us)."""
    configs = configs or {}
    admin = AIOKafkaAdminClient(**client_options(broker))
    await admin.start()
    try:
        have = set(await admin.list_topics())
        new = [NewTopic(name, p, 1, topic_configs=configs.get(name, {})) for name, p in want.items()
               if name not in have]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another process was quicker
        old = [name for name in configs if name in have and name in want]
        if old:
            await _check_configs(admin, {name: configs[name] for name in old})
    finally:
        await admin.close()


async def _check_configs(admin: AIOKafkaAdminClient, configs: dict[str, dict[str, str]]) -> None:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in configs])
    except Exception as exc:  # a broker without DescribeConfigs: nothing to check
        log.info("could not read topic configs (%s)", exc)
        return
    for resp in responses:
        for res in resp.resources:  # (error code, message, resource type, name, config entries)
            name, entries = res[3], {e[0]: e[1] for e in res[4]}
            for key, value in configs.get(name, {}).items():
                if entries.get(key) != value:
                    log.warning("topic %s has %s=%s, riskwatch needs %s: alter it (kafka-configs.sh --alter "
                                "--entity-type topics --entity-name %s --add-config %s=%s)",
                                name, key, entries.get(key), value, name, key, value)


class BatchProducer:
    """Group events per (topic, partition of entity) and send batch envelopes, acks=all."""

    def __init__(self, settings: Settings, batch_size: int = 500, linger_ms: int = 20) -> None:
        self.s = settings
        self.batch_size = batch_size
        self.producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=linger_ms,
                                         max_batch_size=1 << 20, max_request_size=8 << 20)
        self.pending: dict[tuple[str, int], list] = {}
        self.sent = 0

    async def __aenter__(self):
        await self.producer.start()
        return self

    async def __aexit__(self, *exc):
        await self.flush()
        await self.producer.stop()

    async def add(self, event: dict, topic: str | None = None) -> None:
        """Queue an event for ``topic`` (default: the input topic of its type), on its entity's partition."""
        eid = event.get("entity_id", "")
        key = (topic or topic_for(event, self.s), partition_for(str(eid).encode(), self.s.partitions))
        buf = self.pending.setdefault(key, [])
        buf.append(event)
        if len(buf) >= self.batch_size:
            await self._send(key)

    async def add_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Send one message as it is (tests: malformed input)."""
        await self.producer.send_and_wait(topic, value, key=key)

    async def _send(self, key) -> None:
        events = self.pending.pop(key)
        await self.producer.send(key[0], encode_batch(events), partition=key[1])
        self.sent += len(events)

    async def flush(self, wait: bool = True) -> None:
        """Send every pending envelope; with ``wait``, also wait for the broker's acks."""
        for key in list(self.pending):
            await self._send(key)
        if wait:
            await self.producer.flush()


async def produce(settings: Settings, events: Iterable[dict], rate: float | None = None,
                  batch_size: int = 500, max_delay: float = 0.2, live: bool = False) -> int:
    """Send events; nothing waits in a batch longer than ``max_delay`` s.

    ``rate`` paces by count (events/s); ``live`` sends each event when the wall
    clock reaches its ``ts`` (a recorded or simulated live feed)."""
    from datetime import datetime

    # envelopes are the batching (flushed when full or after max_delay); a long linger on top only
    # adds latency (records queue behind an in-flight request per partition anyway)
    async with BatchProducer(settings, batch_size, linger_ms=2) as bp:
        t0 = time.monotonic()
        oldest: float | None = None  # when the oldest event still pending was added

        async def wait_until(deadline: float) -> None:
            """Sleep until ``deadline`` (monotonic), flushing what is pending when its max_delay is up
            (flushing before every sleep instead made envelopes of 2-3 events under live load)."""
            nonlocal oldest
            while True:
                now = time.monotonic()
                if oldest is not None and oldest + max_delay <= min(deadline, now + 0.0005):
                    await asyncio.sleep(max(0.0, oldest + max_delay - now))
                    await bp.flush(wait=False)  # linger/acks proceed in the background
                    oldest = None
                    continue
                if deadline - now <= 0.0005:
                    return
                await asyncio.sleep(deadline - now if oldest is None else min(deadline, oldest + max_delay) - now)

        i = 0
        for i, ev in enumerate(events, 1):
            if live and isinstance(ev.get("ts"), str):
                due = datetime.fromisoformat(ev["ts"]).timestamp() - time.time()
                if due > 0.001:
                    await wait_until(time.monotonic() + due)
            await bp.add(ev)
            now = time.monotonic()
            if oldest is None:
                oldest = now
            elif now - oldest >= max_delay:
                await bp.flush(wait=False)
                oldest = None
            if rate and not live:
                ahead = i / rate - (now - t0)
                if ahead > 0.001:
                    await wait_until(now + ahead)
        return i


async def read_messages(broker: Settings | str, topic: str, start: int = 0):
    """Every message of ``topic`` from offset ``start`` (all partitions; 0: the beginning) up to its
    end as it was when the read began (see :func:`read_to_end`)."""
    c = AIOKafkaConsumer(**client_options(broker), enable_auto_commit=False)
    await c.start()
    try:
        await c._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        if not tps:
            return
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        if start > 0:
            first = await c.beginning_offsets(tps)
            for tp in tps:
                c.seek(tp, max(start, first[tp]))
        async for msg in read_to_end(c, tps):
            yield msg
    finally:
        await c.stop()


async def read_to_end(c: AIOKafkaConsumer, tps: list[TopicPartition], wait_ms: int = 500):
    """The messages of ``tps`` (assigned to ``c`` and positioned) up to the end each partition had when
    the read began; what producers write meanwhile may come too, but does not keep the read going.

    Until 2026-12-05 the readers read until a topic stayed quiet for 1.5 s. A topic written all the
    time never does: ``riskwatch rebuild-view`` beside a live worker (which writes the state changelog
    every round) read the changelog for as long as the feed ran (`make run`: still reading after 60 s).
    Kafka's end offset is exact; the embedded broker (Tansu 0.6) reports the first offset of a
    partition's last record batch (9,559 for 10,000 records), so a partition at its reported end is
    done only once a fetch brings nothing more for it, or once it reaches an end asked for again that
    has moved past the first (new batches came after the one under-reported)."""
    target = await c.end_offsets(tps)
    asked_again: set = set()
    todo = set(tps)
    quiet = 0
    while todo and quiet < 3:  # 1.5 s with nothing at all: the rule before, kept as a last resort
        batch = await c.getmany(*todo, timeout_ms=wait_ms)
        quiet = 0 if batch else quiet + 1
        for msgs in batch.values():
            for msg in msgs:
                yield msg
        for tp in list(todo):
            if await c.position(tp) < target[tp]:
                continue
            if tp not in batch or tp in asked_again:
                todo.discard(tp)
                continue
            end = (await c.end_offsets([tp]))[tp]
            if end > target[tp]:
                target[tp] = end
                asked_again.add(tp)


async def read_range(broker: Settings | str, tp: TopicPartition, wanted: range, on_gone, gap_wait: float = 3.0,
                     timeout: float = 60.0, fetch_wait_ms: int = 100):
    """The messages of offsets ``wanted`` of one partition, in order, each once. An offset not
    there is asked for again for ``gap_wait`` s, then reported as ``on_gone(first, last)`` and
    passed; the offsets not read by ``timeout`` are reported so too.

    Why ask again: the embedded broker (Tansu 0.6) numbers a message before it stores it, so with
    several producers on one partition a fetch can return offset n+1 while n is not stored yet
    (a consumer that follows the partition then skips n: 1 to 3 of 4,500 messages with 3
    producers, ``bench/broker_skips.py``). Its log start is not trusted either: once it said 1
    with offset 0 still to come. On Kafka an offset not there is below the log start (retention),
    and the consumer resets to the earliest that is."""
    c = AIOKafkaConsumer(**client_options(broker), enable_auto_commit=False, auto_offset_reset="earliest",
                         fetch_max_wait_ms=fetch_wait_ms)
    await c.start()
    try:
        c.assign([tp])
        want = wanted.start
        c.seek(tp, want)
        deadline = time.monotonic() + timeout
        gap_since = None
        while want < wanted.stop and time.monotonic() < deadline:
            for msg in (await c.getmany(tp, timeout_ms=500)).get(tp, []):
                if msg.offset < want:
                    continue
                if msg.offset > want:
                    now = time.monotonic()
                    gap_since = gap_since or now
                    if now - gap_since < gap_wait:
                        await asyncio.sleep(0.1)
                        c.seek(tp, want)
                        break
                    on_gone(want, min(msg.offset, wanted.stop) - 1)
                    want = msg.offset
                gap_since = None
                if want >= wanted.stop:
                    break
                yield msg
                want += 1
        if want < wanted.stop:
            on_gone(want, wanted.stop - 1)
    finally:
        await c.stop()


SKIPPED_WAIT = 1.0  # how long an offset a consumer skipped is asked for before it counts as a gap


async def read_skipped(broker: Settings | str, topic: str, partition: int, missing: range, gaps, refetched,
                       reader: str, repair: bool = True) -> list:
    """The messages of ``missing`` (offsets a consumer passed over between two messages it got), read
    directly: for a consumer that must not skip one (``RISKWATCH_REPAIR_GAPS``; see :func:`read_range`
    for why the embedded broker lets one skip). ``gaps`` and ``refetched`` are counters (labelled for
    the topic) of what could not be read within ``SKIPPED_WAIT`` s and of what was; ``reader`` names
    the consumer in the log. ``repair=False`` (Kafka, where a gap is a transaction marker or
    compaction): counted and logged, none read."""
    if not repair:
        gaps.inc(len(missing))
        log.warning("%s[%d]: offsets %d-%d never reached %s", topic, partition, missing.start, missing.stop - 1,
                    reader)
        return []

    def gone(first: int, last: int) -> None:
        gaps.inc(last - first + 1)
        log.error("%s[%d]: offsets %d-%d never reached %s and could not be read", topic, partition, first, last,
                  reader)

    got = [rec async for rec in read_range(broker, TopicPartition(topic, partition), missing, gone,
                                           gap_wait=SKIPPED_WAIT, timeout=SKIPPED_WAIT + 5.0, fetch_wait_ms=10)]
    if got:
        refetched.inc(len(got))
        log.warning("%s[%d]: read %d of offsets %d-%d directly: %s had skipped them", topic, partition, len(got),
                    missing.start, missing.stop - 1, reader)
    return got
