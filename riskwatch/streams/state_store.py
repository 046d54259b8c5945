"""Entity states of the partitions a worker owns: memory over a local store over a changelog.

Why not a Faust Table: a Table writes one changelog message per key set, and
that Faust machinery (~40 us per set, plus a RocksDB put and a get per key)
was half of the worker's time (py-spy, 2026-11-27). Here each round of
source messages (see ``take_max`` in the settings) writes, per partition, one
set of records to the changelog partition equal to the source partition
(entities live on the partition of their id):

- one record per state the round changed: key = entity id, value = the state (JSON);
- then one record keyed ``\x00src`` (entity ids never start with a NUL byte,
  see events.py): every source topic-partition's last applied offset so far,
  ``{"rw.complaints:2": 4711, ...}``.

The changelog is created with ``cleanup.policy=compact``: Kafka keeps the last
record per key, so the changelog stays about as large as the entity register
and no state ages out (under the default delete policy, a state untouched for
the retention time, 7 days by default, would vanish from it, and a worker
recovering without its local store would silently lose it). The embedded
broker accepts the setting but never compacts. A changelog in the earlier
format (one unkeyed ``{"src": ..., "states": {...}}`` message per round, which
a compacted topic would refuse) is still read.

Records go through the worker's producer, so Faust's flush-before-commit
covers them: a source offset is committed only after the states it produced
reached the broker.

Per partition, reads go to the parsed states touched since recovery
(``live``), then to states sent but not yet acknowledged (``pending``), then
to the local store, which holds exactly the acknowledged changelog prefix
(states and that prefix's last offset are written together when the broker
acknowledges): a changelog record and a local store entry are the same key
and value. On (re)assignment a partition is recovered by reading its
changelog from the local store's offset to the end; the agent waits for
that before it processes the partition's messages. A local store that holds
an offset its changelog does not have (the topic was recreated: a new broker,
a deleted topic, another app id on the same data directory) is discarded
first, or its source offsets would make the worker skip new events. ``memory`` keeps the
local store in a dict (tests); ``rocksdb`` uses rocksdict, so a restart
reads only the changelog written since it last ran. The local store writes
no RocksDB write-ahead log (about 10% more worker throughput, 6 runs in
alternation on 2026-11-28): a worker that is killed loses what was still in
RocksDB's memtable, whole batches of states together with the changelog
offset they reached, so its next start reads the changelog from the last
offset that reached disk. A clean stop flushes the memtable first (see
``stopping.py``), and a
running store asks RocksDB for a flush every ``FLUSH_SECONDS`` (in the
background), so a restart after a crash reads at most that much changelog
again (about what the worker wrote in that time, plus what it missed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from ..errors import StateUnreadable
from ..kafka_security import client_options
from ..settings import Settings

__all__ = ["StateStore", "CHANGELOG_CONFIG", "send_records", "decode_change", "latest_states", "read_changelog",
           "parse_state"]

log = logging.getLogger("riskwatch.state")
_OFFSET = b"\x00offset"   # meta keys: entity ids never start with a NUL byte (see events.py)
_SRC = b"\x00src"          # also the key of the source-offsets record in the changelog
CHUNK_BYTES = 512 * 1024   # states per ack (one local store write)
FLUSH_SECONDS = 30.0
CHANGELOG_CONFIG = {"cleanup.policy": "compact"}


def parse_state(eid: str, raw: bytes) -> dict:
    """A stored state; :class:`StateUnreadable` if it is not a JSON object (not a worker's). Until
    2026-12-06 such a record made every message holding the entity's events fail whole, and the tick
    scan, which reads every state, stop the worker."""
    try:
        st = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StateUnreadable(f"the stored state of {eid} is not JSON ({exc})") from None
    if not isinstance(st, dict):
        raise StateUnreadable(f"the stored state of {eid} is not a JSON object")
    return st


def _readable(eid: str, raw: bytes) -> dict | None:
    try:
        return parse_state(eid, raw)
    except StateUnreadable as exc:  # its own events are dead-lettered when they come (BatchProcessor)
        log.error("%s: left out of a scan of its partition (ticks, view repair)", exc)
        return None


def decode_change(value: bytes) -> tuple[dict[str, int], dict[str, dict]]:
    """A changelog message in the earlier format: ``{"src": {...}, "states": {...}}``."""
    obj = orjson.loads(value)
    return obj.get("src") or {}, obj.get("states") or {}


async def read_changelog(broker: Settings | str, changelog: str):
    """``(entity id, serialised state or None for a tombstone)`` of every state record in the changelog,
    oldest first, to its end as it was when the read began: records keyed by entity id, and rounds of
    the earlier, unkeyed format. Not deduplicated: the head of a compacted topic still holds several
    records per entity, and the last one wins."""
    from .kafka import read_messages

    async for msg in read_messages(broker, changelog):
        if msg.key is None:
            for eid, st in decode_change(msg.value)[1].items():
                yield eid, orjson.dumps(st)
        elif msg.key[:1] != b"\x00":  # not the source-offsets record
            yield msg.key.decode(), msg.value


async def latest_states(broker: Settings | str, changelog: str) -> dict[str, bytes]:
    """The last state of every entity in the changelog, serialised."""
    out: dict[str, bytes] = {}
    async for eid, raw in read_changelog(broker, changelog):
        if raw is None:
            out.pop(eid, None)
        else:
            out[eid] = raw
    return out


async def send_records(producer, topic: str, partition: int, records: list[tuple[bytes, bytes]]):
    """Hand keyed records to an aiokafka producer; returns a future of them all, whose result's
    last item is the last record's metadata. (One ``send`` per record, like every other message:
    aiokafka's batch API was no faster here, median 23.0k against 25.6k events/s before the keyed
    changelog in 3 prefilled pairs, and waits, per partition, for the previous batch to leave.)"""
    send = producer.send
    return asyncio.gather(*[await send(topic, value, key=key, partition=partition) for key, value in records])


class _Local:
    """The local store of one partition: bytes -> bytes, batch writes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._closed = False
        if path is None:
            self.db: dict | object = {}
        else:
            from rocksdict import Options, Rdict, WriteOptions

            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = Rdict(str(path), Options(raw_mode=True))
            self._write_options = WriteOptions()  # no write-ahead log: see the module docstring
            self._write_options.disable_wal = True
            self._flushed = time.monotonic()

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def write(self, items: dict[bytes, bytes]) -> None:
        if isinstance(self.db, dict):
            self.db.update(items)
            return
        from rocksdict import WriteBatch

        wb = WriteBatch(raw_mode=True)
        for k, v in items.items():
            wb.put(k, v)
        self.db.write(wb, self._write_options)
        now = time.monotonic()
        if now - self._flushed > FLUSH_SECONDS:
            self._flushed = now
            self.db.flush(False)  # in the background: bounds what a crash loses

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self.db.items())) if isinstance(self.db, dict) else self.db.items()

    def keys(self) -> Iterator[bytes]:
        return iter(list(self.db)) if isinstance(self.db, dict) else self.db.keys()

    def count_states(self) -> int:
        """Entity states held (meta keys start with a NUL byte); reads every key once."""
        return sum(1 for k in self.db.keys() if k[:1] != b"\x00")

    def clear(self) -> int:
        """Delete everything; returns how many keys there were."""
        if isinstance(self.db, dict):
            n = len(self.db)
            self.db.clear()
            return n
        from rocksdict import WriteBatch

        keys = list(self.db.keys())
        wb = WriteBatch(raw_mode=True)
        for k in keys:
            wb.delete(k)
        self.db.write(wb)  # with the write-ahead log: this must not come back after a crash
        self.db.flush()
        return len(keys)

    def flush(self) -> None:
        """Write the memtable to disk (there is no log to replay it from)."""
        if not isinstance(self.db, dict) and not self._closed:
            self.db.flush()

    def close(self) -> None:
        if not isinstance(self.db, dict) and not self._closed:
            self.db.flush()
            self.db.close()
            self._closed = True


class _Partition:
    def __init__(self, local: _Local) -> None:
        self.local = local
        self.gen = 0                       # bumped on revoke: late acks of an old ownership are ignored
        self.ready = asyncio.Event()
        self.live: dict[str, dict] = {}
        self.pending: dict[str, bytes] = {}
        self.unacked = 0
        self.src_seen: dict[str, int] = {}  # last source offset in the store, per source topic-partition
        self.src_sent: dict[str, int] = {}  # the same, over everything staged (what the next record holds)
        self.checked: set[str] = set()
        self.count = 0                     # entity states held: counted at recovery, + new ones staged
        self.absent: set[str] = set()      # ids a read found no state for: new once staged

    @property
    def offset(self) -> int:
        raw = self.local.get(_OFFSET)
        return int(raw) if raw else -1


class StateStore:
    """States of owned partitions; see the module docstring."""

    def __init__(self, broker: Settings | str, changelog: str, directory: Path | None, partitions: int,
                 live_max: int = 200_000) -> None:
        self.broker = broker
        self.changelog = changelog
        self.partitions = partitions
        self._created = False
        self.directory = directory
        self.live_max = live_max
        self.parts: dict[int, _Partition] = {}
        self._recovering: dict[int, asyncio.Task] = {}

    def _part(self, p: int) -> _Partition:
        part = self.parts.get(p)
        if part is None:
            path = None if self.directory is None else self.directory / f"p{p}"
            part = self.parts[p] = _Partition(_Local(path))
        return part

    # ---------------------------------------------------------- ownership
    def revoke(self, partitions) -> None:
        for p in partitions:
            part = self.parts.get(p)
            if part is None:
                continue
            part.gen += 1
            part.ready.clear()
            part.live.clear()
            part.pending.clear()
            part.absent.clear()
            part.count = 0
            part.unacked = 0
            part.src_sent = {}
            task = self._recovering.pop(p, None)
            if task is not None:
                task.cancel()  # it recovered other partitions too: they start over when awaited
                for q in [q for q, t in self._recovering.items() if t is task]:
                    del self._recovering[q]

    def assign(self, partitions) -> None:
        """Start recovering partitions that are not ready (the agent waits in :meth:`ready`)."""
        todo = [p for p in partitions if not self._part(p).ready.is_set() and p not in self._recovering]
        if todo:
            task = asyncio.ensure_future(self._recover(todo))
            for p in todo:
                self._recovering[p] = task

    async def ready(self, p: int) -> None:
        """Wait until partition ``p`` is recovered, (re)starting its recovery when none is running
        (a recovery cancelled by a revoke, or one that failed, is started again)."""
        part = self._part(p)
        while not part.ready.is_set():
            if p not in self._recovering:
                self.assign([p])
            try:
                await asyncio.wait_for(asyncio.shield(part.ready.wait()), 1.0)
            except TimeoutError:
                pass

    async def _recover(self, partitions: list[int]) -> None:
        try:
            await self._recover_once(partitions)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker is away, say: ready() starts it again
            log.warning("recovering state partitions %s failed (%s); retrying", partitions, exc)
            await asyncio.sleep(1.0)
            for p in partitions:
                if self._recovering.get(p) is asyncio.current_task():
                    del self._recovering[p]

    async def _recover_once(self, partitions: list[int]) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if not self._created:
            from .kafka import create_topics

            await create_topics(self.broker, {self.changelog: self.partitions}, {self.changelog: CHANGELOG_CONFIG})
            self._created = True
        tps = {TopicPartition(self.changelog, p): p for p in partitions}
        for p in await self._foreign(tps):
            n = self._part(p).local.clear()
            log.warning("state partition %d: the local store (%d keys) is ahead of the changelog %s, which has "
                        "no record at the offset it holds: the topic was recreated (a new broker, a deleted "
                        "topic, another app id on this data directory). Discarded; recovering from the changelog.",
                        p, n, self.changelog)
        # earliest: a local store older than what the changelog still holds (deleted by a
        # retention policy, say) reads all that is there, not nothing
        c = AIOKafkaConsumer(**client_options(self.broker), enable_auto_commit=False, auto_offset_reset="earliest",
                             max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20)
        await c.start()
        n = 0
        try:
            c.assign(list(tps))
            start = {}
            for tp, p in tps.items():
                start[p] = self._part(p).offset + 1
                c.seek(tp, start[p])
            ends = await c.end_offsets(list(tps))
            log.info("state partitions %s recovering: changelog offsets %s to about %s", partitions, start,
                     {tps[tp]: o for tp, o in ends.items()})
            # read to the reported end, then on until the broker stays quiet: the embedded
            # broker under-reports end offsets (by up to a record batch, measured)
            behind = {tp for tp in tps if ends[tp] > start[tps[tp]]}
            quiet = 0
            while behind or quiet < 2:
                batch = await c.getmany(timeout_ms=200 if not behind else 1000, max_records=5000)
                quiet = 0 if batch else quiet + 1
                for tp, msgs in batch.items():
                    self._apply(tps[tp], msgs)
                    n += len(msgs)
                    if msgs and msgs[-1].offset + 1 >= ends[tp]:
                        behind.discard(tp)
        finally:
            await c.stop()
        for p in partitions:
            part = self._part(p)
            raw = part.local.get(_SRC)
            part.src_seen = orjson.loads(raw) if raw else {}
            part.src_sent = dict(part.src_seen)
            part.checked = set()
            part.absent = set()
            part.count = part.local.count_states()
            part.ready.set()
            self._recovering.pop(p, None)
        log.info("state partitions %s recovered: changelog read from offsets %s (the local store's next), "
                 "%d messages", partitions, start, n)

    async def _foreign(self, tps: dict) -> list[int]:
        """Partitions whose local store says it applied a changelog offset the changelog does not have.

        Their states came from another incarnation of the topic, and their source offsets would
        make the worker skip every new event up to them as redelivered (5,468 of 5,468 skipped after
        a broker restart with the store kept, 2026-11-28). A changelog recreated and grown past
        the store's offset is not detected: the record there exists."""
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import OffsetOutOfRangeError

        held = {tp: self._part(p).offset for tp, p in tps.items()}
        held = {tp: o for tp, o in held.items() if o >= 0}
        if not held:
            return []
        c = AIOKafkaConsumer(**client_options(self.broker), enable_auto_commit=False, auto_offset_reset="none")
        await c.start()
        foreign: list[int] = []
        try:
            c.assign(list(held))
            for tp, o in held.items():
                c.seek(tp, o)
            todo = set(held)
            for _ in range(4):  # a fetch at a valid offset answers at once; out of range raises
                if not todo:
                    break
                try:
                    batch = await c.getmany(*todo, timeout_ms=500, max_records=1)
                except OffsetOutOfRangeError as exc:
                    for tp in exc.args[0]:
                        foreign.append(tps[tp])
                        todo.discard(tp)
                    continue
                todo.difference_update(batch)
            if todo:  # no record at or after the offset: Kafka's last record is never compacted away,
                # so unless the offset is before the end (an answer still on its way) it is not there
                # (the embedded broker answers such a fetch with nothing rather than out of range)
                ends = await c.end_offsets(list(todo))
                foreign += [tps[tp] for tp in todo if ends[tp] <= held[tp]]
        finally:
            await c.stop()
        return sorted(foreign)

    def _apply(self, p: int, msgs) -> None:
        part = self._part(p)
        items: dict[bytes, bytes] = {}
        src_seen = orjson.loads(part.local.get(_SRC) or b"{}")
        for m in msgs:
            try:
                if m.key is None:  # the earlier format
                    srcs, states = decode_change(m.value)
                    for eid, st in states.items():
                        items[eid.encode()] = orjson.dumps(st)
                elif m.key == _SRC:
                    srcs = orjson.loads(m.value)
                else:
                    items[m.key] = m.value
                    continue
                for src, offset in srcs.items():
                    src_seen[src] = max(int(offset), src_seen.get(src, -1))
            except (ValueError, TypeError, AttributeError) as exc:  # not a worker's: it stopped the recovery
                log.error("changelog record %s[%d]@%d passed over: %s: %s", m.topic, m.partition, m.offset,
                          type(exc).__name__, exc)
        if msgs:
            items[_OFFSET] = str(msgs[-1].offset).encode()
            items[_SRC] = orjson.dumps(src_seen)
            part.local.write(items)

    # ------------------------------------------------------------ reads
    def get(self, p: int, eid: str) -> dict | None:
        part = self.parts[p]
        st = part.live.get(eid)
        if st is not None:
            return st
        raw = part.pending.get(eid) or part.local.get(eid.encode())
        if raw is None:
            part.absent.add(eid)
            return None
        st = part.live[eid] = parse_state(eid, raw)
        return st

    def stored(self, p: int, eid: str) -> dict | None:
        """The state as last staged (before this round of messages), read again: not the one
        :meth:`get` gives, which the round may have updated in place."""
        part = self.parts[p]
        raw = part.pending.get(eid) or part.local.get(eid.encode())
        return None if raw is None else parse_state(eid, raw)

    def keep(self, p: int, states: dict[str, dict]) -> None:
        """Make states just computed (not yet staged) what :meth:`get` returns."""
        self.parts[p].live.update(states)

    def resumes(self, p: int, src: str, offset: int) -> int | None:
        """On the first message of a source after recovery: the last offset the states hold, if a gap."""
        part = self.parts[p]
        if src in part.checked:
            return None
        part.checked.add(src)
        last = part.src_seen.get(src)
        return last if last is not None and offset > last + 1 else None

    def items(self, p: int) -> Iterator[tuple[str, dict]]:
        """Every state of an owned partition (for the tick timer)."""
        part = self.parts[p]
        seen = set()
        for eid, st in list(part.live.items()):
            seen.add(eid)
            yield eid, st
        for eid, raw in list(part.pending.items()):
            if eid not in seen:
                seen.add(eid)
                st = _readable(eid, raw)
                if st is not None:
                    yield eid, st
        for k, raw in part.local.items():
            if k[:1] != b"\x00":
                eid = k.decode()
                if eid not in seen:
                    st = _readable(eid, raw)
                    if st is not None:
                        yield eid, st

    def ids(self, p: int) -> list[str]:
        """The ids of every entity state an owned partition holds (its states are not read)."""
        part = self.parts[p]
        ids = set(part.live) | set(part.pending)
        ids.update(k.decode() for k in part.local.keys() if k[:1] != b"\x00")
        return list(ids)

    def current(self, p: int, eid: str) -> dict | None:
        """The state a round would read now (as :meth:`get`, without keeping it in memory)."""
        part = self.parts[p]
        st = part.live.get(eid)
        if st is not None:
            return st
        raw = part.pending.get(eid) or part.local.get(eid.encode())
        return None if raw is None else _readable(eid, raw)

    def owned(self) -> list[int]:
        return [p for p, part in self.parts.items() if part.ready.is_set()]

    def count(self, p: int) -> int:
        """Entity states of an owned partition: those recovered, plus each new one staged since. New
        means a :meth:`get` found no state for it before it was staged, as the worker always reads
        a state before it writes one."""
        return self.parts[p].count

    # ----------------------------------------------------------- writes
    def stage(self, p: int, srcs: dict[str, int],
              states: dict[str, dict]) -> list[tuple[list[tuple[bytes, bytes]], object]]:
        """Serialise changed states once; return changelog chunks (keyed records, about <= 512 KB
        each, for :func:`send_records`) with their ack callbacks. The last chunk ends with the
        source-offsets record, ``srcs`` (source topic-partition -> last offset) merged in."""
        part = self.parts[p]
        blobs = {eid: orjson.dumps(st) for eid, st in states.items()}
        part.pending.update(blobs)
        if part.absent:
            new = part.absent.intersection(blobs)
            part.absent -= new
            part.count += len(new)
        sent = part.src_sent
        for src, offset in srcs.items():
            if offset > sent.get(src, -1):
                sent[src] = offset
        chunks: list[list[tuple[bytes, bytes]]] = [[]]
        size = 0
        for eid, b in blobs.items():
            if size > CHUNK_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append((eid.encode(), b))
            size += len(b) + len(eid)
        if srcs:
            chunks[-1].append((_SRC, orjson.dumps(sent)))
        return [(chunk, self._on_ack(part, chunk)) for chunk in chunks]

    def _on_ack(self, part: _Partition, records: list[tuple[bytes, bytes]]):
        part.unacked += 1
        gen = part.gen

        def on_ack(fut) -> None:
            if part.gen != gen:
                return  # revoked since: recovery reads it from the changelog
            part.unacked -= 1
            try:
                off = fut.result()[-1].offset  # the chunk's last record
            except Exception as exc:  # the send failed: Faust crashes the worker on it; keep memory
                log.error("changelog write failed: %s", exc)
                return
            items = dict(records)
            cur = part.local.get(_OFFSET)
            if cur is None or off > int(cur):
                items[_OFFSET] = str(off).encode()
            raw = items.get(_SRC)
            if raw is not None:
                seen = part.src_seen
                for src, offset in orjson.loads(raw).items():
                    if offset > seen.get(src, -1):
                        seen[src] = offset
                items[_SRC] = orjson.dumps(seen)
            part.local.write(items)
            pending = part.pending
            for key, b in records:
                eid = key.decode()
                if pending.get(eid) is b:
                    del pending[eid]
            if part.unacked == 0 and len(part.live) > self.live_max:
                part.live.clear()  # everything is in the local store now

        return on_ack

    def forget_live(self, p: int) -> None:
        """Drop parsed states (after a failed message may have half-updated some)."""
        part = self.parts.get(p)
        if part is not None:
            part.live.clear()

    def flush(self) -> None:
        """Write every local store's memtable to disk (safe from another thread)."""
        for part in list(self.parts.values()):
            part.local.flush()

    def close(self) -> None:
        """Flush and close the local stores (at the worker's exit: nothing may write after this)."""
        for part in self.parts.values():
            part.local.close()
