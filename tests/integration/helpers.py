"""Reading topics back and writing raw messages in integration tests (plain aiokafka), and a TCP front
for a broker: it can drop the broker's connections, or add the TLS the embedded broker lacks."""

from __future__ import annotations

import asyncio
import threading

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from riskwatch.streams.kafka import BatchProducer


async def _read(broker: str, topic: str) -> list[tuple[int, bytes | None, bytes]]:
    return [(m.partition, m.key, m.value) for m in await _read_messages(broker, topic)]


async def _read_messages(broker: str, topic: str) -> list:
    c = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await c.start()
    try:
        parts = c.partitions_for_topic(topic)
        if not parts:
            await c._client.force_metadata_update()
            parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        # Tansu reports the first offset of the last record batch as the end: read past every end reported
        # now, then until quiet (1.5 s without a message) for what is still being written. Until 2026-12-07
        # quiet alone ended it, so first fetches slower than 1.5 s (a loaded machine) could read nothing
        ends = await c.end_offsets(tps)
        deadline = asyncio.get_running_loop().time() + 60
        out = []
        idle = 0
        while True:
            batch = await c.getmany(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for tp, msgs in batch.items():
                out += msgs
            if idle >= 3 and all([await c.position(tp) >= ends[tp] for tp in tps]):
                return out
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{topic}: not read to the end offsets {ends} in 60 s")
    finally:
        await c.stop()


def read_topic(broker: str, topic: str) -> list[tuple[int, bytes | None, bytes]]:
    return asyncio.run(_read(broker, topic))


def last_offsets(broker: str, topic: str) -> dict[int, int]:
    """The offset of the last message of each partition that has one."""
    return {p: end - 1 for p, end in high_watermarks(broker, [topic]).get(topic, {}).items() if end > 0}


def high_watermarks(broker: str, topics) -> dict[str, dict[int, int]]:
    """Each partition's end (the offset after its last message) as fetch responses give it: exact on the
    embedded broker, whose listed end offsets stop at the first record of a partition's last batch."""
    async def read() -> dict:
        c = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
        await c.start()
        try:
            await c._client.force_metadata_update()
            tps = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or ())]
            c.assign(tps)
            listed = await c.end_offsets(tps)
            for tp in tps:
                c.seek(tp, max(0, listed[tp] - 1))  # a fetch brings the high watermark, and little else
            deadline = asyncio.get_running_loop().time() + 30
            while any(c.highwater(tp) is None for tp in tps):
                assert asyncio.get_running_loop().time() < deadline, "no fetch response in 30 s"
                await c.getmany(timeout_ms=200)
            out: dict[str, dict[int, int]] = {}
            for tp in tps:
                out.setdefault(tp.topic, {})[tp.partition] = c.highwater(tp)
            return out
        finally:
            await c.stop()

    return asyncio.run(read())


def uncommitted(settings, ends: dict[str, dict[int, int]]) -> dict[str, int]:
    """Messages of ``ends`` (topic -> partition -> end, from :func:`high_watermarks`) the worker group
    has not committed yet, per ``topic[partition]``."""
    async def read() -> dict:
        c = AIOKafkaConsumer(bootstrap_servers=settings.broker, group_id=settings.app_id, enable_auto_commit=False)
        await c.start()
        try:
            return {(t, p): await c.committed(TopicPartition(t, p)) for t, parts in ends.items() for p in parts}
        finally:
            await c.stop()

    done = asyncio.run(read())
    return {f"{t}[{p}]": left for (t, p), off in done.items() if (left := ends[t][p] - (off or 0)) > 0}


def read_batches(broker: str, topic: str) -> list[dict]:
    """Events of an output topic (batch envelopes unpacked)."""
    out = []
    for _, _, v in read_topic(broker, topic):
        obj = orjson.loads(v)
        out += obj["batch"] if isinstance(obj, dict) and "batch" in obj else [obj]
    return out


def changelog_states(broker: str, app_id: str) -> dict[str, dict]:
    """The entity states the changelog holds (last record per entity id)."""
    return {k.decode(): orjson.loads(v) for _, k, v in read_topic(broker, f"{app_id}-entity-state-changelog")
            if k and k[:1] != b"\x00"}


def counted_once(s, workers, events, what: str, detail=lambda: "", settle=None, timeout: float = 120) -> None:
    """Wait until the state changelog counts as many events as were sent, let what is in flight settle
    (``settle``; default 3 s: anything still in flight would overshoot), then require each entity's
    count to be its number of events."""
    import time
    from collections import Counter

    per_entity = Counter(e["entity_id"] for e in events)

    def counted() -> int:
        return sum(x["n"] for x in changelog_states(s.broker, s.app_id).values())

    from .conftest import wait_for

    wait_for(lambda: counted() >= len(events), timeout, what,
             lambda: f"counted {counted()} of {len(events)} events; {detail()}\n" + workers.logs()[-4000:])
    (settle or (lambda: time.sleep(3)))()
    by_entity = {eid: st["n"] for eid, st in changelog_states(s.broker, s.app_id).items()}
    assert by_entity == dict(per_entity), {e: (by_entity.get(e), n) for e, n in per_entity.items()
                                           if by_entity.get(e) != n}


async def _produce(settings, events, batch_size: int, raw: list[tuple[str, bytes]]) -> int:
    async with BatchProducer(settings, batch_size=batch_size) as bp:
        for topic, value in raw:
            await bp.add_raw(topic, value)
        for ev in events:
            await bp.add(ev)
    return bp.sent


def produce(settings, events, batch_size: int = 200, raw: list[tuple[str, bytes]] = ()) -> int:
    """Send raw messages as they are, then events in batch envelopes (acks=all)."""
    return asyncio.run(_produce(settings, events, batch_size, list(raw)))


def send_raw(broker: str, topic: str, values: list[bytes], partition: int = 0, key: bytes | None = None) -> None:
    """Send messages as they are, in order, to one partition (acks=all): what no riskwatch process wrote."""
    async def send():
        p = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
        await p.start()
        try:
            for v in values:
                await p.send_and_wait(topic, v, key=key, partition=partition)
        finally:
            await p.stop()

    asyncio.run(send())


class TcpFront:
    """A TCP front for a broker that advertises it (``start_broker(..., advertised_port=port)``), so that
    every client connection goes through it. :meth:`cut` drops every connection and takes no new one, as
    a broker that goes away does; it cuts itself once clients have sent it ``after`` bytes.

    With ``ssl`` (a server context) it terminates TLS, which the embedded broker does not speak (Tansu
    0.6's ``--cert`` gave no TLS listener here): a context that requires client certificates makes it
    the mutual-TLS broker production runs. ``sessions`` counts connections accepted (TLS: handshake
    done, client certificate included)."""

    def __init__(self, port: int, target: int, after: int = 1 << 62, ssl=None) -> None:
        self.port, self.target, self.after, self.sent, self.sessions = port, target, after, 0, 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="tcp-front")
        self.thread.start()
        self.writers: list = []
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._session, "127.0.0.1", port, ssl=ssl), self.loop).result(10)

    def cut(self) -> None:
        """Call on the front's loop (see :meth:`stop`, which does)."""
        self.server.close()
        for w in self.writers:
            w.transport.abort()

    def stop(self) -> None:
        """Drop every connection (the sockets closed: clients see them end, as when a broker restarts)
        and free the port."""
        async def close() -> None:
            self.cut()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.05)  # the aborted transports' closing callbacks

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _session(self, cr, cw) -> None:
        self.sessions += 1
        try:
            br, bw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            cw.close()
            return
        self.writers += [cw, bw]

        async def pump(r, w, counted: bool) -> None:
            try:
                while data := await r.read(65536):
                    if counted:
                        self.sent += len(data)
                        if self.sent > self.after:
                            self.cut()
                            return
                    w.write(data)
                    await w.drain()
            except OSError:
                pass
            finally:
                w.transport.abort()

        await asyncio.gather(pump(cr, bw, True), pump(br, cw, False))


class FrontedBroker:
    """A broker of its own that clients reach only through a :class:`TcpFront` on the port it
    advertises (``url``): :meth:`down` drops every connection and takes none, as a broker that goes
    away does; :meth:`up` takes them again (``up=False``: nothing answers until then). A context
    manager: it stops the front and the broker on the way out."""

    def __init__(self, data_dir, up: bool = True, after: int = 1 << 62) -> None:
        from riskwatch.embedded import free_port, start_broker

        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.broker = start_broker(data_dir, advertised_port=self.port)
        self.front: TcpFront | None = None
        if up:
            self.up(after)

    def up(self, after: int = 1 << 62) -> None:
        self.front = TcpFront(self.port, self.broker.port, after=after)

    def down(self) -> None:
        if self.front is not None:
            self.front.stop()
            self.front = None

    def __enter__(self) -> "FrontedBroker":
        return self

    def __exit__(self, *exc) -> None:
        self.down()
        self.broker.stop()


class OwnRedis:
    """A Redis of the test's own on one port, to take away and bring back: :meth:`restart` without its data
    (``kill``: SIGKILL, so it comes back from its last ``SAVE`` if there is one: a replica behind)."""

    def __init__(self, data_dir, start: bool = True) -> None:
        from riskwatch.embedded import free_port

        self.dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.svc = None
        if start:
            self.start()

    def start(self) -> None:
        from riskwatch.embedded import start_redis

        self.svc = start_redis(self.dir, port=self.port)

    def stop(self, kill: bool = False) -> None:
        if self.svc is None:
            return
        if kill:
            self.svc.proc.kill()
            self.svc.proc.wait()
        else:
            self.svc.stop()
        self.svc = None

    def restart(self, kill: bool = False) -> None:
        self.stop(kill)
        self.start()

    def __enter__(self) -> "OwnRedis":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def seed_view(redis_url: str, n: int, first: str | None = None) -> None:
    """``n`` entities in the view as a worker writes them, in region 310000: the first 10 in tier D
    (score 80), the next 30 in C, the rest in A (score 10); ids ``E0000``... (``first`` for the first)."""
    import redis.asyncio as aioredis

    from riskwatch.view import ViewWriter

    async def seed() -> None:
        r = aioredis.from_url(redis_url)
        w = ViewWriter({"A": 0.03, "B": 0.05, "C": 0.15, "D": 0.4})
        pipe = r.pipeline()
        for i in range(n):
            eid = first if i == 0 and first else f"E{i:04d}"
            tier = "D" if i < 10 else "C" if i < 40 else "A"
            w.entity(pipe, {"entity_id": eid, "name": f"n{i}", "industry": "food", "region": "310000"})
            w.output(pipe, {"type": "risk_change", "entity_id": eid, "tier": tier, "score": 80 if tier == "D" else 10,
                            "reasons": [], "ts": "2026-03-01T00:00:00+00:00", "cause_event_id": "x",
                            "config_version": "t", "seq": 1}, ["food", "310000"])
        await pipe.execute()
        await r.aclose()

    asyncio.run(seed())
