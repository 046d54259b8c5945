"""Fixes to faust-streaming 0.15, installed by the worker.

1. **Flush before commit really drains** (at-least-once state depends on it). Faust flushes its producer before it
commits source offsets, so changelog writes land before the offsets that
produced them. But ``ProducerBuffer.flush`` gives up when no message leaves
the buffer within 0.1 s, and does not count a message it is still handing to
aiokafka; the commit then goes ahead of changelog writes, and a worker killed
right after loses them (its successor resumes after events whose state never
reached the changelog). :func:`install` makes ``flush`` wait until the buffer
is empty and nothing is in hand.

2. **A short fetch wait.** Faust creates its consumer with
``fetch_max_wait_ms=1500`` (hard-coded). The embedded broker holds a fetch
for that long when no data was there at the moment it arrived, so events
waited up to 1.5 s before the worker saw them (measured: p50 event->output
1.5 s at 2,000 events/s). :func:`install` sets the wait to
``fetch_wait_ms`` (default 10 ms) on the consumer Faust creates.

3. **Co-partitioned assignment.** An entity's events arrive on the same
partition number of several input topics, and its state lives with that
partition, so one worker must own partition *p* of every input topic.
Faust's own assignor does that (topics with the same partition count that
the same workers subscribe to are assigned together), but faust-streaming
uses it only for apps with changelog tables or standby replicas; this app
has neither (its states live in :mod:`riskwatch.streams.state_store`), so
Faust fell back to aiokafka's round-robin assignor, which deals out every
topic-partition in name order. With two workers the single-partition
``model-training`` topic shifted the deal: worker 1 got ``complaints`` 0
and 2 but ``records`` 1 and 3, both workers held the states of every
partition, and each overwrote the other's (measured 2026-12-05: 27,687 of
30,400 events counted after a failover; with three workers no topic
lined up at all). :func:`install` makes the consumer use Faust's assignor.

4. **Commit only what the application finished.** Faust commits the offsets
of acknowledged messages, and at a stop it acknowledges messages the agent
never finished: ``take_events`` acks a round cancelled half-way, and the
stream's background reader, once ``take_events`` has closed, acks the next
message it pulls (it reads ``enable_acks`` again for each message, and
``take_events`` sets it back on its way out). The consumer then commits them
as it stops, and the next owner begins after events that were never applied
(2026-12-05: 80 of 36,400 events lost by a worker stopped while it
recovered). :func:`install` caps every commit of a topic the application
tracks at the bound it gives (``app.riskwatch_commit_bound``: TP -> next
offset to read, or None to commit nothing yet).

(An earlier second patch raised Faust's table-recovery highwater past the
embedded broker's under-reported end offsets; entity states no longer live in
a Faust Table, and :mod:`riskwatch.streams.state_store` reads its changelog
past the reported end until the broker stays quiet.)
"""

from __future__ import annotations

__all__ = ["install", "drain_flush", "short_fetch_wait", "bounded_commits"]

_installed: dict = {}


def drain_flush() -> None:
    """Make ``ProducerBuffer.flush`` wait until every buffered message was handed to aiokafka."""
    import asyncio

    from faust.transport.producer import ProducerBuffer

    if _installed.get("flush"):
        return
    send_pending = ProducerBuffer._send_pending

    async def _send_pending(self, fut) -> None:
        self._rw_in_hand = getattr(self, "_rw_in_hand", 0) + 1
        try:
            await send_pending(self, fut)
        finally:
            self._rw_in_hand -= 1

    async def flush(self) -> None:
        while self.size or getattr(self, "_rw_in_hand", 0):
            if self.state != "running":
                raise RuntimeError("Cannot flush: Producer not Running")
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
            except asyncio.TimeoutError:
                continue  # keep waiting: committing offsets ahead of the changelog loses state

    ProducerBuffer._send_pending = _send_pending
    ProducerBuffer.flush = flush
    _installed["flush"] = True


def short_fetch_wait(ms: int) -> None:
    """Make the consumer Faust creates for its agents wait at most ``ms`` per fetch, and assign
    partitions with Faust's co-partitioning assignor (fixes 2 and 3)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    _installed["fetch_wait_ms"] = ms
    if _installed.get("fetch"):
        return
    create = AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self, transport):
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = _installed["fetch_wait_ms"]  # read by start() for its Fetcher
        # read by start() for its group coordinator: Faust's co-partitioning assignor, not round-robin
        consumer._partition_assignment_strategy = [self.app.assignor]
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer
    _installed["fetch"] = True


def bounded_commits() -> None:
    """Cap the offsets Faust commits at what the application says it finished (fix 4)."""
    from faust.transport.consumer import Consumer

    if _installed.get("bounded"):
        return
    new_offset = Consumer._new_offset  # the next offset to commit, from the acked run it takes off its list

    def _new_offset(self, tp):
        bound = getattr(self.app, "riskwatch_commit_bound", None)
        tracked, limit = bound(tp) if bound is not None else (False, None)
        if not tracked:
            return new_offset(self, tp)
        if limit is None:
            return None  # no round finished yet: the acked list stays as it is
        acked = self._acked[tp]
        above = [o for o in acked if o >= limit]
        if not above:
            return new_offset(self, tp)
        acked[:] = [o for o in acked if o < limit]  # Faust sees only what the application finished ...
        try:
            return new_offset(self, tp)
        finally:  # ... and the rest waits on its list for a later commit
            acked.extend(above)
            acked.sort()

    Consumer._new_offset = _new_offset
    _installed["bounded"] = True


def install(fetch_wait_ms: int = 10) -> None:
    """Patch Faust once per process (idempotent)."""
    drain_flush()
    short_fetch_wait(fetch_wait_ms)
    bounded_commits()
