"""The Faust app: topics, tables and agents around the engine. Nothing else.

- ``process``: every input topic (plus ``rekey``) -> :class:`BatchProcessor`
  in rounds of messages -> entity states in the :class:`StateStore` (one
  keyed record per changed state on a compacted changelog, local RocksDB),
  output envelopes on the output topics (same partition), dead letters, the Redis view (one
  Lua call per round), and queued model updates on the single-partition
  ``model-training``.
- ``train``: applies model updates in order, once per source message (see
  :class:`~riskwatch.streams.shared_models.Trainer`); a timer publishes snapshots to
  the single-partition ``models`` topic, which every worker reads in full.
- a timer sends ``tick`` events (wall clock) for entities whose signals can
  change with time alone (sensor silence, record expiry); after a live config
  change, one tick per held entity at its own clock re-decides it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime

import faust
import orjson

from .. import gc_policy
from ..aio import keep_running
from ..config import CURRENT_CONFIG, applied_command, config_from_dict, load_config
from ..engine import Engine
from ..errors import ConfigError, StateUnreadable
from ..kafka_security import client_options, faust_credentials
from ..metrics import WorkerMetrics
from ..models import SnapshotError
from ..settings import INPUT_TOPICS, OUTPUT_TOPICS, Settings
from ..view import ViewWriter
from ..view_rebuild import noticed
from .codec import dead_letter, encode_batch
from .config_repair import reconcile
from .kafka import read_range, read_skipped
from .processor import BatchProcessor
from .shared_models import SharedModels, Trainer, TrainingError, parse_training
from .state_store import CHANGELOG_CONFIG, StateStore, send_records
from .view_repair import Marks, lost, write_back

__all__ = ["create_app", "Worker"]

log = logging.getLogger("riskwatch.worker")
VIEW_TIMEOUT = 10.0  # s for one round's view write before it is retried
OUTPUTS_PER_MESSAGE = 1000  # output events (and ticks) per envelope (keeps messages well under 1 MB)
TICK_SCAN_SLICE = 2000  # states the tick timer reads before it lets the agent run
REDIS_CHECK_SECONDS = 5.0  # how often a worker checks what Redis lost: its partitions' view, the config in force
TRAINING_GAP_WAIT = 3.0  # s a trainer asks again for a training message not there before it goes on without


class Worker:
    """Holds what the agents share: engine, processor, Redis, metrics."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.config = load_config(settings.config_path)
        self.config_seq = 0    # the change in force (0: the file)
        self.applied: dict | None = None  # its command
        self.seen_seq = 0      # the highest change number taken: a command at or below it is not applied
        self.models = SharedModels()
        self.engine = Engine(self.config, self.models)  # type: ignore[arg-type]
        self.processor = BatchProcessor(self.engine, settings.partitions, self.apply_config,
                                        max_future_s=settings.max_event_future_s,
                                        commands_topic=settings.topic("commands"))
        self.metrics = metrics or WorkerMetrics()
        self.view = ViewWriter({t.name: t.ratio for t in self.config.tiers}, settings.history_len)
        self.redis = None
        self.trainer = Trainer()  # used while this worker owns the training partition
        self.models_loaded = asyncio.Event()  # the latest snapshot read at start (the trainer resumes from it)
        self.redecided_seq = 0  # the last config change whose commands started a re-decide pass here
        self._load_applied_config()
        self.redecide = False  # set by a config change's command: every held entity is re-decided under it

    def _load_applied_config(self) -> None:
        """A config changed through the API outlives worker restarts: start from the last applied one.

        Waits for Redis: a worker started while Redis was away ran on the config file's thresholds,
        not the ones ops had applied, for good (the changes before its committed offsets are not
        read again), with one warning at start. It could not do much else meanwhile: every round
        waits for its Redis view write."""
        cmd = applied_command(self.settings, wait=True)
        if cmd:
            err = self.apply_config(cmd, redecide=False)
            if err:
                log.error("the applied config in Redis is invalid (%s); using the file", err)

    def apply_config(self, cmd: dict, redecide: bool = True) -> str | None:
        """Swap the engine's config (validated; an invalid one is refused and the running one stays).

        ``redecide``: a change's command read from ``rw.commands`` (not the applied config loaded from
        Redis at start) starts a re-decide pass, also when the config itself is already in force: a
        worker that starts after ops changed the config while none ran loads it from Redis first,
        then reads the change's commands (until 2026-12-04 it took them as done and re-decided
        nothing). A restart with no change in between reads no command again (its offsets were
        committed), so it re-decides nothing; a command redelivered after a crash re-decides again."""
        seq = cmd.get("seq", 0)
        if not isinstance(seq, int):
            return None
        if seq <= self.seen_seq:  # already applied (each copy goes to every partition), or older
            if redecide and seq == self.config_seq and seq > self.redecided_seq:
                self.redecided_seq = seq
                self.redecide = True
            return None
        return self._swap(cmd, seq, redecide)

    def adopt(self, cmd: dict) -> str | None:
        """Apply a change found in Redis that was made after the one in force but numbered at or below
        it (Redis had lost the numbering: :mod:`.config_repair`); re-decides every held entity."""
        return self._swap(cmd, cmd["seq"], True)

    def _swap(self, cmd: dict, seq: int, redecide: bool) -> str | None:
        try:
            cfg = config_from_dict(cmd.get("config") or {})
        except ConfigError as exc:
            return "; ".join(str(e) for e in exc.errors)
        self.config, self.config_seq, self.applied = cfg, seq, cmd
        self.seen_seq = max(self.seen_seq, seq)
        self.engine = Engine(cfg, self.models)  # type: ignore[arg-type]
        self.processor.engine = self.engine
        self.view.ratios = {t.name: t.ratio for t in cfg.tiers}
        if redecide:
            self.redecided_seq = seq
            self.redecide = True
        self.metrics.config_seq.set(seq)
        log.info("config %s (change %d) applied", cfg.version, seq)
        return None


def _drop_sample(gauge, *labels: str) -> None:
    """Remove one labelled sample (a partition moved to another worker); none yet is fine."""
    try:
        gauge.remove(*labels)
    except KeyError:
        pass


def create_app(settings: Settings | None = None, worker: Worker | None = None) -> faust.App:
    s = settings or Settings()
    w = worker or Worker(s)
    n = s.partitions
    (s.data_dir / "worker").mkdir(parents=True, exist_ok=True)
    from .faust_fixes import install as fix_faust

    fix_faust(s.fetch_wait_ms)  # flush-before-commit that drains; a short fetch wait
    app = faust.App(
        s.app_id,
        broker=f"kafka://{s.broker}",
        broker_credentials=faust_credentials(s),  # TLS / SASL (kafka_security.py)
        store=s.store,
        datadir=str(s.data_dir / "worker"),
        topic_partitions=n,
        topic_replication_factor=1,
        broker_session_timeout=s.session_timeout,
        broker_heartbeat_interval=1.0,
        producer_linger=s.producer_linger_ms / 1000.0,
        producer_max_batch_size=1 << 20,  # output envelopes are often >16 KB (the default)
        producer_max_request_size=8 << 20,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        web_enabled=False,
        stream_wait_empty=False,
        table_standby_replicas=0,
    )
    app.riskwatch = w  # type: ignore[attr-defined]
    # bytes in, bytes out: we decode ourselves (faust.Schema(...) on a topic was not honoured
    # and Faust decoded values as JSON; explicit serializers on topics and bytes types on tables are)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    inputs = app.topic(*[s.topic(t) for t in INPUT_TOPICS], s.topic("rekey"), partitions=n, **raw)
    outputs = {kind: app.topic(s.topic(name), partitions=n, **raw) for kind, name in OUTPUT_TOPICS.items()}
    deadletter = app.topic(s.topic("deadletter"), partitions=1, **raw)
    rekey = app.topic(s.topic("rekey"), partitions=n, **raw)
    training_name = s.topic("model-training")
    training = app.topic(training_name, partitions=1, **raw)
    changelog = app.topic(s.state_changelog, partitions=n, config=CHANGELOG_CONFIG, **raw)
    store = StateStore(s, s.state_changelog,
                       None if s.store.startswith("memory") else s.data_dir / "worker" / "state", n)
    models_topic = app.topic(s.topic("models"), partitions=1, **raw)
    m = w.metrics
    app.riskwatch_store = store  # type: ignore[attr-defined]
    input_names = set(inputs.topics)
    for t in sorted(input_names):  # "must be 0" shows 0 from the start, not nothing
        m.offset_gaps.labels(t)
        m.refetched.labels(t)

    def _partitions(tps) -> set[int]:
        return {tp.partition for tp in tps if tp.topic in input_names}

    round_lock = asyncio.Lock()  # held by the agent for a whole round
    marks = Marks()  # the last view write's token per held partition (view_repair)
    owned: set[int] = set()       # input partitions assigned to this worker now
    processed_at: dict = {}       # input TP -> offset of the last message processed here (for the lag)

    def commit_bound(tp) -> tuple[bool, int | None]:
        """For Faust's commits (faust_fixes, fix 4): whether ``tp`` is an input this worker tracks,
        and the next offset after the last message a finished round processed (None: none yet)."""
        if tp.topic not in input_names:
            return False, None
        last = processed_at.get(tp)
        return True, (None if last is None else last + 1)

    app.riskwatch_commit_bound = commit_bound  # type: ignore[attr-defined]

    def report_lag(tps) -> None:
        """Consumer lag per input partition: what a worker falling behind shows first."""
        for tp in tps:
            hw = app.consumer.highwater(tp)
            off = processed_at.get(tp)
            if hw is not None and off is not None:
                m.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - off - 1))

    @app.on_partitions_revoked.connect
    async def on_revoked(app, revoked, **kwargs):
        # Faust does not wait for a round in flight (stream_wait_empty is off): wait for it here and
        # flush what it sent, or its changelog writes would land after the next owner's ("zombie"
        # writes: a SIGKILL test run lost 3,296 of 39,719 events that way)
        gone = _partitions(revoked)
        owned.difference_update(gone)
        if any(tp.topic == training_name for tp in revoked):
            m.trainer.set(0)
        for p in gone:
            _drop_sample(m.entity_states, str(p))
        async with round_lock:
            await app.producer.flush()
            store.revoke(gone)
            marks.forget(gone)
            done = {tp: processed_at.pop(tp) for tp in [tp for tp in processed_at if tp.partition in gone]}
            for tp in done:  # its lag and its states are the new owner's to report
                _drop_sample(m.consumer_lag, tp.topic, str(tp.partition))
            await commit_revoked(done)

    async def commit_revoked(offsets: dict) -> None:
        """Commit what was processed of partitions going to another worker (``offsets``: TP -> last
        offset processed). Faust commits nothing on a revoke (it drops its acked offsets of the revoked
        partitions before our handler runs), so the next owner started from the last periodic commit,
        up to 2.8 s back, and read that again: 9,376 of 40,000 events in the three rebalances of a
        rolling restart until 2026-12-05 (skipped, as its states held them, but fetched and decoded)."""
        if not offsets:
            return
        try:
            await app.consumer._commit({tp: off + 1 for tp, off in offsets.items()})
        except Exception as exc:  # the next owner then skips what its states hold, as after a crash
            log.warning("could not commit the revoked partitions' offsets (%s): their next owner reads "
                        "back to the last commit", exc)

    @app.on_partitions_assigned.connect
    async def on_assigned(app, assigned, **kwargs):
        mine = _partitions(assigned)
        m.trainer.set(1 if any(tp.topic == training_name for tp in assigned) else 0)
        topics_of: dict[int, set] = defaultdict(set)
        for tp in assigned:
            if tp.topic in input_names:
                topics_of[tp.partition].add(tp.topic)
        split = sorted(p for p, topics in topics_of.items() if topics != input_names)
        m.partitions_split.set(len(split))
        if split:  # another worker holds the same entities' states (see faust_fixes: co-partitioned assignment)
            log.error("partitions %s assigned for only some input topics: %s", split,
                      {p: sorted(topics_of[p]) for p in split})
        async with round_lock:
            if mine - owned:
                await catch_up_config()
            store.revoke(set(store.parts) - mine)
            owned.clear()
            owned.update(mine)
            store.assign(mine)

    async def catch_up_config() -> None:
        """Before processing partitions it takes over: the config applied through the API, if newer
        than the one in force. A worker that held no partition when ops changed the config (more
        workers than partitions: a standby) saw no copy of the change's command, and the previous
        owner had committed past it, so until 2026-12-05 it went on with the config it started with."""
        try:
            raw = await asyncio.wait_for((await redis()).get(CURRENT_CONFIG), 3.0)
        except Exception as exc:  # Redis away: the rounds wait for it anyway (the view)
            log.warning("could not read the applied config from Redis (%s); keeping change %d", exc, w.config_seq)
            return
        cmd = orjson.loads(raw) if raw else None
        if cmd and isinstance(cmd.get("seq"), int) and cmd["seq"] > w.seen_seq:
            err = w.apply_config(cmd, redecide=False)  # the previous owner re-decided its entities
            if err:
                log.error("the applied config in Redis is invalid (%s); keeping change %d", err, w.config_seq)

    async def redis():
        if w.redis is None:
            import redis.asyncio as aioredis

            # no per-reply socket timeout (a timer per command was ~5% of the worker's time):
            # one timeout per round's view write in write_view instead
            w.redis = aioredis.from_url(s.redis_url, socket_timeout=None)
        return w.redis

    @app.task
    async def follow_models():
        """Every worker reads every published snapshot (no consumer group) and uses the newest. The
        broker away (at start, or later) is waited out: until 2026-12-07 a broker that did not answer
        when this started crashed the worker (``Unable to bootstrap``), which then exited."""
        await keep_running(read_snapshots, f"reading model snapshots from {s.topic('models')}",
                           lambda exc: True, logger=log)  # KafkaConnectionError, KafkaTimeoutError, OSError

    async def read_snapshots() -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        tp = TopicPartition(s.topic("models"), 0)
        c = AIOKafkaConsumer(**client_options(s), enable_auto_commit=False)
        try:
            await c.start()
            c.assign([tp])
            end = (await c.end_offsets([tp]))[tp]
            if end > 0:
                c.seek(tp, end - 1)  # the latest snapshot is all we need
            else:
                w.models_loaded.set()
            while True:
                batch = await c.getmany(tp, timeout_ms=1000)
                msgs = batch.get(tp)
                if not msgs:
                    continue
                raw_models = msgs[-1].value
                try:
                    if w.models.install(raw_models):
                        m.model_version.set(w.models.version)
                    if w.trainer.version < w.models.version:  # a trainer taking over resumes from it
                        w.trainer = Trainer.decode(raw_models)
                except SnapshotError as exc:  # not a trainer's (until 2026-12-06 it crashed the worker at each start)
                    m.model_rejected.inc()
                    log.error("model snapshot %s at %s@%d not used (%s); version %d stays in use",
                              raw_models.partition(b":")[0][:20].decode(errors="replace"), tp.topic,
                              msgs[-1].offset, exc, w.models.version)
                if msgs[-1].offset >= end - 1:
                    w.models_loaded.set()
        finally:
            await c.stop()

    async def write_view(results, partitions) -> None:
        """The view is required: retry Redis with backoff (blocking the worker) until it answers. Each
        of ``partitions`` (those the round wrote) gets the write's token (see :mod:`.view_repair`)."""
        import redis.exceptions as rex

        delay = 0.2
        token, round_marks = marks.round(partitions)
        while True:
            try:
                r = await redis()
                states: dict = {}
                outs: list = []
                ents: list = []
                insp: list = []
                for res in results:
                    ents += res.entities
                    insp += res.inspections
                    states.update(res.states)
                    outs += res.outputs
                async with asyncio.timeout(VIEW_TIMEOUT):
                    kept = await w.view.write_round(r, outs, lambda eid: (states.get(eid) or {}).get("m"), ents,
                                                    insp, round_marks)
                marks.set(kept, token)
                return
            except (rex.ConnectionError, rex.TimeoutError, OSError, TimeoutError) as exc:
                m.view_retries.inc()
                log.warning("Redis view write failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def send_dead(msg, exc: Exception) -> None:
        m.dead.labels("worker_error").inc()
        await deadletter.send(value=dead_letter(msg.value or b"", msg.topic, msg.partition, msg.offset,
                                                f"worker_error: {type(exc).__name__}: {exc}"))

    async def apply(msgs, handled: list) -> list:
        """Run the engine over each message; a message that fails is dead-lettered, the rest go on.
        ``handled`` gets every message processed or dead-lettered here (not those left to a new owner)."""
        done: list = []
        last_at: dict = {}
        read_again: dict = {}  # messages of this round read again to rebuild a state (apply_one)
        for msg in msgs:
            p = msg.partition
            if p not in owned:
                m.not_owned.inc()  # taken before a revoke: its new owner processes it
                continue
            handled.append(msg)
            prev = last_at.get(msg.tp, processed_at.get(msg.tp))
            if prev is not None and msg.offset > prev + 1:  # offsets the consumer never delivered
                for rec in await read_skipped(s, msg.topic, p, range(prev + 1, msg.offset),
                                              m.offset_gaps.labels(msg.topic), m.refetched.labels(msg.topic),
                                              "this worker", s.repair_gaps):
                    await apply_one(rec, p, done, read_again)
            last_at[msg.tp] = msg.offset
            await apply_one(msg, p, done, read_again)
        return done

    async def apply_one(msg, p: int, done: list, read_again: dict) -> None:
        await store.ready(p)
        src = f"{msg.topic}:{p}"
        last = store.resumes(p, src, msg.offset)
        if last is not None:
            m.resume_gaps.inc()
            log.warning("%s resumes at offset %d but the recovered states end at %d", src, msg.offset, last)
        def earlier() -> list:  # only on a failure: not per message
            return [(prev_msg, prev) for prev_msg, prev in done if prev_msg.partition == p]

        def restore(eid: str) -> dict | None:
            """The state before this message: as staged before the round, with the round's earlier
            messages applied again (a state is updated in place: the one ``store.get`` gives may hold
            half of an event the engine failed on)."""
            try:
                st = store.stored(p, eid)
            except StateUnreadable:  # an earlier message of the round reset it: applied again, its
                st = None            # reset starts the state again (the events before it were passed over)
            for prev_msg, prev in earlier():
                if eid in prev.states:
                    st = w.processor.apply_again(st, eid, prev_msg.value, prev_msg.topic, p, prev_msg.offset,
                                                 prev.not_applied.get(eid, ()), read_again, prev.engine)
            return st

        try:
            res = w.processor.handle(msg.value, msg.topic, p, msg.offset, lambda k: store.get(p, k), restore)
        except Exception as exc:  # never let the agent die quietly (faust #175, #416)
            log.exception("message %s[%d]@%d failed", msg.topic, p, msg.offset)
            w.models.drain()  # its model updates go with its states
            # states it may have half-updated are read again, with what this round applied before it
            # (until 2026-12-07 this round's states were kept as the failed message left them)
            before = earlier()
            try:
                rebuilt = {eid: restore(eid) for _, prev in before for eid in prev.states}
            except Exception:
                log.exception("the states of %s[%d] before offset %d not built again", msg.topic, p, msg.offset)
                rebuilt = {}
            for _, prev in before:
                prev.states.update((eid, rebuilt[eid]) for eid in prev.states if rebuilt.get(eid) is not None)
            store.forget_live(p)
            for _, prev in before:
                store.keep(p, prev.states)
            await send_dead(msg, exc)
            return
        store.keep(p, res.states)  # new states too: the round's next message must see them
        res.updates = w.models.drain()  # sent with their source message (see shared_models.Trainer)
        n_events = res.applied + res.skipped + len(res.dead) + len(res.misrouted)
        m.consumed.labels(msg.topic).inc(n_events)
        m.batch.observe(n_events)
        m.processed.inc(res.applied)
        m.skipped.inc(res.skipped)
        for name, n in res.ignored.items():
            m.ignored.labels(name).inc(n)
        done.append((msg, res))

    out_names = {kind: s.topic(name) for kind, name in OUTPUT_TOPICS.items()}

    def log_failure(fut) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            log.error("output send failed: %s", fut.exception())  # as Faust's Topic.send does

    async def send_now(topic: str, value: bytes, partition: int) -> None:
        """Hand a message to the producer and go on. Not Faust's ``Topic.send``: that cost about
        1 ms a call here (a live round of 50 events spent 3-15 ms in it). The offsets are still
        committed only after these are delivered: Faust flushes the producer before each commit."""
        fut = await app.producer.send(topic, None, value, partition, None, None)
        fut.add_done_callback(log_failure)

    async def emit(done) -> None:
        """Everything the applied messages produce, batched per partition; entity states last."""
        # model updates first, straight to the producer like the states (through Faust's buffer they
        # lagged the states by rounds, and a worker killed then lost updates of states it had stored)
        learned = [[f"{msg.topic}:{msg.partition}", msg.offset, res.updates] for msg, res in done if res.updates]
        if learned:
            await send_now(training_name, orjson.dumps({"from": learned}), 0)
        by_kind = defaultdict(list)
        for msg, res in done:
            for reason, record in res.dead:
                m.dead.labels(reason).inc()
                await deadletter.send(value=record)
            for eid, raw_ev in res.misrouted:
                m.misrouted.inc()
                await rekey.send(key=eid.encode(), value=orjson.dumps(raw_ev))
            for o in res.outputs:
                by_kind[(o["type"], msg.partition)].append(o)
        now = time.time()
        for (kind, p), outs in by_kind.items():
            m.outputs.labels(kind).inc(len(outs))
            for i in range(0, len(outs), OUTPUTS_PER_MESSAGE):
                await send_now(out_names[kind], encode_batch(outs[i:i + OUTPUTS_PER_MESSAGE]), p)
            for o in outs:
                m.lag.observe(max(0.0, now - o["ts"].timestamp()))
        viewed = [(msg.partition, res) for msg, res in done if res.outputs or res.entities or res.inspections]
        if viewed:
            await write_view([res for _, res in viewed], {p for p, _ in viewed})
        # entity states: committed only after they reach the broker (Faust flushes before commits)
        states: dict[int, dict] = defaultdict(dict)
        srcs: dict[int, dict] = defaultdict(dict)
        for msg, res in done:
            if res.states:
                states[msg.partition].update(res.states)
                srcs[msg.partition][f"{msg.topic}:{msg.partition}"] = msg.offset
        producer = app.producer._ensure_producer()  # the aiokafka producer under Faust's
        for p, changed in states.items():
            for records, on_ack in store.stage(p, srcs[p], changed):
                fut = await send_records(producer, s.state_changelog, p, records)
                fut.add_done_callback(on_ack)

    @app.agent(inputs, name="process")
    async def process(stream):
        # a round = the messages that arrived within take_within (at most take_max): Redis, the
        # output topics and the changelog are written once per round, not once per message
        for topic in (*outputs.values(), changelog, training):
            await topic.maybe_declare()  # send_now and send_records bypass Topic.send, which would declare them
        async for events in stream.take_events(s.take_max, within=s.take_within):
            msgs = [e.message for e in events]
            t0 = time.perf_counter()
            now = time.time()
            for msg in msgs:  # Faust gives the Kafka timestamp in seconds (none: -0.001)
                if msg.timestamp and msg.timestamp > 0:
                    m.input_wait.observe(max(0.0, now - msg.timestamp))
            handled: list = []
            async with round_lock:
                done = await apply(msgs, handled)
                try:
                    await emit(done)
                except Exception as exc:  # never let the agent die quietly (faust #175, #416)
                    log.exception("writing the results of %d messages failed", len(done))
                    for msg, _ in done:
                        store.forget_live(msg.partition)
                        await send_dead(msg, exc)
                for msg in handled:  # the bound of what Faust may commit (a round cut short moves nothing)
                    processed_at[msg.tp] = msg.offset
            m.round.observe(len(msgs))
            m.wall.observe(time.perf_counter() - t0)
            report_lag({msg.tp for msg in msgs})
            report_states({msg.partition for msg in msgs})

    async def repair_view(r) -> None:
        """Write back the entities of a held partition the view has lost (see :mod:`.view_repair`)."""
        async with round_lock, asyncio.timeout(VIEW_TIMEOUT):  # a revoke takes the lock too
            gone = await lost(r, sorted(p for p in store.owned() if p in owned), marks)
        for p, had_set in gone.items():
            t = time.monotonic()
            done = await write_back(r, w.view, lambda: w.engine, store, p, round_lock, VIEW_TIMEOUT, marks)
            if done is None:
                continue  # revoked meanwhile: its new owner writes it back
            n, missing, objections = done
            m.view_restored.inc(n if had_set else missing)
            if had_set or missing:
                log.warning("the view had lost writes for partition %d, and lacked %d of its %d entities "
                            "(Redis restarted without its data, replaced, or failed over to a replica "
                            "behind?): wrote them all back from their states in %.1f s; their histories "
                            "and the spot-check list come back with the API's rebuild (riskwatch.view_rebuild)",
                            p, missing, n, time.monotonic() - t)
                await noticed(r, f"a worker, partition {p}")
            if objections:
                m.objections_restored.inc(objections)
                log.warning("restored %d open objection(s) of partition %d from the entities' states (Redis "
                            "had lost their records); who filed them and why come back with the API's rebuild "
                            "(riskwatch.view_rebuild)", objections, p)

    refused: dict = {}  # a change in Redis this worker could not apply: said once

    async def repair_config(r) -> None:
        """Redis's config change in force against this worker's (see :mod:`.config_repair`)."""
        async with asyncio.timeout(VIEW_TIMEOUT):
            what, cmd = await reconcile(r, w.applied, w.seen_seq)
        if what == "wrote":
            m.config_repairs.labels("written_back").inc()
            log.warning("Redis held no config change in force, or one older than this worker's: wrote back "
                        "change %d (config %s)", w.config_seq, w.config.version)
        elif what == "adopt" and refused.get("at") != cmd.get("at"):
            was = w.config_seq
            async with round_lock:
                err = w.adopt(cmd)
            if err:
                refused["at"] = cmd.get("at")
                log.error("the config change in force in Redis (change %s) is invalid (%s); keeping change %d",
                          cmd.get("seq"), err, w.config_seq)
                return
            m.config_repairs.labels("adopted").inc()
            log.warning("config %s (change %d) was applied through the API after change %d in force here, but "
                        "numbered below it (Redis had lost the numbering): applied it now; changes numbered "
                        "%d or less are not applied again", cmd.get("version"), cmd["seq"], was, w.seen_seq)

    @app.timer(interval=REDIS_CHECK_SECONDS)
    async def check_redis():
        """What Redis lost of what this worker holds: its partitions' view, the config change in force."""
        import redis.exceptions as rex

        for what, repair in (("the view's lost partitions", repair_view), ("the config in force", repair_config)):
            try:
                await repair(await redis())
            except (rex.ConnectionError, rex.TimeoutError, OSError, TimeoutError) as exc:
                log.debug("Redis check skipped: Redis does not answer (%s)", exc)  # the rounds report it
                return
            except Exception:  # never end the worker for it: the next check tries again
                log.exception("checking %s in Redis failed", what)

    def report_states(partitions) -> None:
        ready = store.owned()
        for p in partitions:
            if p in owned and p in ready:
                m.entity_states.labels(str(p)).set(store.count(p))

    @app.timer(interval=5.0)
    async def refresh_gauges():
        """Partitions without a round lately: their high watermark may have moved (a worker whose
        rounds stall shows a growing lag, not the last round's); states recovered but not touched."""
        report_lag(list(processed_at))
        report_states(list(owned))

    async def read_training(missing: range) -> None:
        """Training messages between the trainer's position and the one its consumer just got: after
        a snapshot its group had committed past, or one the consumer skipped (the embedded broker
        can make a consumer skip a message while several workers produce: see kafka.read_range)."""
        from aiokafka import TopicPartition

        def gone(first: int, last: int) -> None:
            log.error("training messages %d-%d of %s could not be read (gone?): the models miss them",
                      first, last, training_name)
            m.training_lost.inc(last - first + 1)

        async for msg in read_range(s, TopicPartition(training_name, 0), missing, gone, TRAINING_GAP_WAIT):
            learn(msg.offset, msg.value)
            m.training_recovered.inc()

    def learn(offset: int, value: bytes) -> None:
        try:
            payload = parse_training(value)
        except TrainingError as exc:  # not a worker's: until 2026-12-06 it stopped all learning
            if offset > w.trainer.offset:
                m.training_refused.inc()
                log.error("training message %s@%d not learned from (%s)", training_name, offset, exc)
            w.trainer.refuse(offset)
            return
        fresh = offset > w.trainer.offset  # not in the model as a whole already
        n = w.trainer.apply(offset, payload)
        if fresh and isinstance(payload, dict):
            m.training_skipped.inc(len(payload["from"]) - n)

    @app.agent(training, name="train")
    async def train(stream):
        async for event in stream.events():
            await w.models_loaded.wait()  # resume from the latest snapshot, not from an empty model
            off = event.message.offset
            missing = w.trainer.missing(off)
            if missing:
                await read_training(missing)
            learn(off, event.message.value)

    @app.timer(interval=s.model_publish_seconds)
    async def publish_models():
        if not any(tp.topic == training_name for tp in app.consumer.assignment()):
            return  # only the owner of the training partition publishes
        raw = w.trainer.publish()
        if raw is not None:
            await models_topic.send(value=raw)

    async def send_ticks(ts_of, redecide: bool = False) -> dict[int, tuple[int, int]]:
        """A tick to every held entity for which ``ts_of(state)`` gives a time (ISO), else none; per
        partition, how many states were read and how many ticks sent.

        In envelopes of at most OUTPUTS_PER_MESSAGE ticks: one envelope per partition was 2.05 MB at
        100k entities, over Kafka's default 1 MB message limit. The scan reads every state (4 us each:
        0.4 s at 100k), so it lets rounds run every TICK_SCAN_SLICE states."""
        counts = {}
        for p in list(store.owned()):
            ticks: list[dict] = []
            sent = i = 0
            for i, (eid, st) in enumerate(store.items(p), 1):
                ts = ts_of(st)
                if ts is not None:
                    ticks.append({"type": "tick", "entity_id": eid, "ts": ts, "redecide": True} if redecide
                                 else {"type": "tick", "entity_id": eid, "ts": ts})
                    if len(ticks) == OUTPUTS_PER_MESSAGE:
                        await commands.send(value=encode_batch(ticks), partition=p)
                        sent += len(ticks)
                        ticks = []
                if i % TICK_SCAN_SLICE == 0:
                    await asyncio.sleep(0)
            if ticks:
                await commands.send(value=encode_batch(ticks), partition=p)
                sent += len(ticks)
            counts[p] = (i, sent)
        return counts

    async def tick_entities():
        """Wall-clock ticks for entities due one (Engine.next_tick: a silence or breach deadline, an
        expiry, a decaying score or alert about to cross a threshold, a look again at a peer surge);
        until 2026-12-04 every entity with a sensor or a record got one each interval."""
        now = time.time()
        iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))
        next_tick = w.engine.next_tick

        def due(st: dict) -> str | None:
            t = next_tick(st)
            return iso if t is not None and t <= now else None

        counts = await send_ticks(due)
        n = sum(sent for _, sent in counts.values())
        m.ticks.inc(n)
        if n:
            log.info("ticks at %s: %d entities due one (partition: ticks/states read %s)", iso, n,
                     ", ".join(f"{p}: {sent}/{read}" for p, (read, sent) in sorted(counts.items())))

    @app.timer(interval=1.0)
    async def redecide_entities():
        """After a live config change, a tick to every held entity at its own clock: its score and tier
        are decided again under the new weights and thresholds, without moving its clock. Before
        2026-11-28 a change reached an entity only with its next event, so lowering a tier threshold
        left every quiet entity above it in its old tier, and in the draws' old stratum."""
        if not w.redecide:
            return
        w.redecide = False
        version = w.config.version
        # every assigned partition recovered first: at start, the change's command on one partition can
        # be read while another partition's states are still being read back from the changelog
        while any(p not in store.owned() for p in owned):
            await asyncio.sleep(0.2)

        def at_own_clock(st: dict) -> str | None:
            t = st.get("t")
            return datetime.fromtimestamp(t, tz=UTC).isoformat() if t else None

        n = sum(sent for _, sent in (await send_ticks(at_own_clock, redecide=True)).values())
        m.redecide_ticks.inc(n)
        log.info("config %s: %d entities to re-decide (ticks at their own clocks)", version, n)

    gc_policy.apply()
    if s.gc_freeze_seconds:
        @app.timer(interval=s.gc_freeze_seconds)
        async def freeze_old_objects():
            """See :mod:`riskwatch.gc_policy` (full collections stalled the worker 100-400 ms)."""
            gc.freeze()

    commands = app.topic(s.topic("commands"), partitions=n, **raw)
    if s.tick_seconds:
        app.timer(interval=s.tick_seconds)(tick_entities)
    return app

