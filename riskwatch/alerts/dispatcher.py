"""``riskwatch dispatcher``: alert intake (candidates topic → alerts → outbox) and delivery.

SIGHUP reloads the alerts config (rules and receivers) without a restart,
as Alertmanager does: a file that fails validation is refused, logged with
every bad field, and the running config stays in force; a valid one is used
by the deliverer at once and by the intake from its next unit of work, which
computes every open alert's due time again under the new rules.

``--role all`` (default) runs a deliverer and, while it holds the intake
lease (:mod:`riskwatch.alerts.lease`), the intake and its clock: run two or
more for a standby that takes the intake over within
``RISKWATCH_INTAKE_LEASE_SECONDS`` of the holder's death. ``--role deliver``
runs only a deliverer (scale delivery out: the outbox is a consumer group).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid

from ..config import load_config
from ..errors import ConfigError
from ..kafka_security import client_options
from ..settings import Settings
from ..streams.codec import encode_batch
from ..streams.kafka import read_skipped, started
from .config import AlertsConfig, load_alerts_config
from .delivery import Deliverer
from .intake import AlertIntake
from .lease import LEASE_KEY, Lease, LeaseLost
from .metrics import AlertMetrics
from .outbox import Outbox
from .restore import MARK, StoreLost, latest_alerts, write_back, write_back_silences

__all__ = ["run_dispatcher"]

log = logging.getLogger("riskwatch.dispatcher")
REDIS_TIMEOUT = 10.0  # seconds for one Redis reply (the outbox's blocking read waits 0.5 s)


def _away() -> tuple[type[BaseException], ...]:
    """What Redis or the broker not answering raises: the intake starts again once they answer."""
    import redis.exceptions as rex
    from aiokafka.errors import KafkaError

    return rex.ConnectionError, rex.TimeoutError, OSError, KafkaError


async def _intake_loop(s: Settings, intake: AlertIntake, stop: asyncio.Event, tick_seconds: float) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    # no broker: raised, and _lead gives the lease up (a standby that reaches one may take it) and tries again
    producer = await started(lambda: AIOKafkaProducer(**client_options(s), acks="all", linger_ms=5))
    alerts_topic = s.topic("alerts")

    async def publish(events: list[dict]) -> None:
        by_entity: dict[str, list] = {}
        for e in events:
            by_entity.setdefault(e["alert"]["entity_id"], []).append(e)
        await asyncio.gather(*[producer.send_and_wait(alerts_topic, encode_batch(evs), key=eid.encode())
                               for eid, evs in by_entity.items()])

    intake.publish = publish
    try:
        await _recover_store(s, intake)  # before the consumer group's join, which can take seconds
    except BaseException:
        await producer.stop()
        raise
    try:
        consumer = await started(lambda: AIOKafkaConsumer(
            s.topic("alert-candidates"), **client_options(s), group_id=f"{s.app_id}-alerts",
            enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=int(s.session_timeout * 1000),
            heartbeat_interval_ms=1000, fetch_max_wait_ms=100))  # the broker's 500 ms default is felt in alert latency
    except BaseException:
        await producer.stop()
        raise
    await intake.reschedule()  # the rules may have changed since the open alerts' due times were set
    candidates = s.topic("alert-candidates")
    gaps, refetched = intake.m.offset_gaps.labels(candidates), intake.m.refetched.labels(candidates)
    applied: dict = {}  # partition -> offset of the last message applied (or known applied)
    try:
        while not stop.is_set():
            if intake.next_config is not None:  # a reload (SIGHUP), taken between units of work
                intake.use(intake.next_config)
                await intake.reschedule()
            batches = await consumer.getmany(timeout_ms=int(tick_seconds * 1000), max_records=500)
            for tp, msgs in batches.items():
                for msg in msgs:
                    prev = applied.get(tp)
                    if prev is None:
                        prev = await intake.applied_offset(msg.topic, msg.partition)
                    if prev is not None and msg.offset > prev + 1:  # offsets the consumer never delivered
                        for rec in await read_skipped(s, msg.topic, msg.partition,
                                                      range(prev + 1, msg.offset), gaps, refetched,
                                                      "the alert intake", s.repair_gaps):
                            await intake.apply_message(rec.topic, rec.partition, rec.offset, rec.value)
                    await intake.apply_message(msg.topic, msg.partition, msg.offset, msg.value)
                    applied[tp] = msg.offset if prev is None else max(prev, msg.offset)
            if batches:
                await consumer.commit()
            await intake.tick()
            intake.m.open.set(await intake.r.zcard("rw:alerts:open"))
    finally:
        await consumer.stop()
        await producer.stop()


async def _recover_store(s: Settings, intake: AlertIntake) -> None:
    """Before the intake runs: the alerts back from ``rw.alerts`` if Redis lost the intake's commits (or
    holds none); else take the commit count as found (see :mod:`riskwatch.alerts.restore`)."""
    r = intake.r
    raw = await r.get(MARK)
    held = int(raw) if raw is not None else None
    if not intake.mark.lost(held):
        intake.mark.expected = held
        return
    t = time.monotonic()
    latest, refused = await latest_alerts(s)
    written, opened = await write_back(r, intake.store, latest)
    silences = await write_back_silences(r, intake.silences, time.time())
    regrouped = await intake.regroup()
    count = max(held or 0, intake.mark.expected or 0) + 1
    await r.set(MARK, count)
    intake.mark.expected = count
    intake.m.restored.inc(written)
    if written or silences or held is not None:
        log.warning("the alert store in Redis had lost the intake's commits (%s at %s): wrote back %d alerts "
                    "(%d open) of %d on %s and %d silences, and made %d notification groups for the open alerts, "
                    "in %.1f s; %d records there passed over", MARK, held, written, opened, len(latest),
                    s.topic("alerts"), silences, regrouped, time.monotonic() - t, refused)
    else:
        log.info("no alerts in Redis (%s not set) and none newer on %s to write back (%d read)", MARK,
                 s.topic("alerts"), len(latest))


async def _lead(s: Settings, intake: AlertIntake, lease: Lease, stop: asyncio.Event, m: AlertMetrics) -> None:
    """Run the intake while this dispatcher holds the lease; stand by otherwise. Redis or the broker not
    answering stops the intake (the lease is given up), and it is taken up again once they answer:
    until 2026-12-07 it ended the dispatcher, its deliverer with it."""
    standing_by = False
    delay = 1.0
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            if await lease.acquire():
                standing_by = False
                await _hold(s, intake, lease, stop, m)
                delay = 1.0
                continue
            if not standing_by:
                log.info("intake lease held by %s: this dispatcher delivers and stands by for the intake",
                         await lease.holder())
                standing_by = True
            wait = lease.renew_every
        except _away() as exc:
            delay = 1.0 if time.monotonic() - t0 > 60 else delay  # it had run a while: a new outage
            log.warning("intake stopped: %s (%s); taken up again once it answers (next try in %.0f s)",
                        "Redis does not answer" if type(exc).__module__.startswith("redis") else "Kafka does not answer",
                        exc, delay)
            wait, delay = delay, min(delay * 2, 30.0)
        try:
            await asyncio.wait_for(stop.wait(), wait)
        except TimeoutError:
            pass


async def _hold(s: Settings, intake: AlertIntake, lease: Lease, stop: asyncio.Event, m: AlertMetrics) -> None:
    """Run the intake while the lease is this dispatcher's."""
    m.intake_leader.set(1)
    m.intake_takeovers.inc()
    log.info("intake lease taken (%s): this dispatcher runs the intake", lease.token)
    run = asyncio.create_task(_intake_loop(s, intake, stop, s.alert_tick_seconds), name="intake-loop")
    failed = False
    try:
        while not run.done():
            await asyncio.wait([run], timeout=lease.renew_every)
            if not run.done() and not await lease.renew():
                log.warning("intake lease lost (expired or taken over): stopping the intake")
                run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        exc = None if run.cancelled() else run.exception()
        if isinstance(exc, LeaseLost):
            log.warning("intake stopped: %s", exc)
        elif isinstance(exc, StoreLost):  # restored from rw.alerts when it starts again (at once)
            log.warning("intake stopped: %s; the alerts come back from %s first", exc, s.topic("alerts"))
        elif exc is not None:
            failed = True
            raise exc
    finally:
        m.intake_leader.set(0)
        if not run.done():
            run.cancel()
        await asyncio.gather(run, return_exceptions=True)  # its error retrieved: a renewal may have failed first
        if stop.is_set() or failed:  # a stop, or an intake that failed: a standby need not wait
            await lease.release()


async def _claim_name(lease: Lease, stop: asyncio.Event) -> bool:
    """Take this dispatcher's name (its outbox consumer). A previous run of the same name that was killed
    holds it until its lease expires: wait that long. False if another live dispatcher holds it."""
    deadline = time.monotonic() + lease.ttl_ms / 1000 + 1
    said = away = False
    while True:
        try:
            if await lease.acquire():
                return True
        except _away() as exc:  # Redis not up yet: wait for it (the deadline is for a holder, not for Redis)
            if not away:
                log.warning("Redis does not answer (%s): waiting for it", exc)
                away = True
            deadline = time.monotonic() + lease.ttl_ms / 1000 + 1
            if stop.is_set():
                return False
            await asyncio.sleep(1.0)
            continue
        if stop.is_set() or time.monotonic() > deadline:
            return False
        if not said:
            log.info("%s is held (a run killed before this one?): waiting up to %.0f s", lease.key,
                     deadline - time.monotonic())
            said = True
        await asyncio.sleep(0.5)


async def _keep_name(lease: Lease, stop: asyncio.Event) -> None:
    """Renew the name's lease. Redis away is waited out; a name found free again after it (a Redis
    restarted without its data, or an outage past the lease) is taken again; a name another
    dispatcher has taken meanwhile ends this one."""
    while True:
        try:
            await asyncio.wait_for(stop.wait(), lease.renew_every)
            return
        except TimeoutError:
            pass
        try:
            held = await lease.renew() or await lease.acquire()
        except _away() as exc:
            log.warning("could not renew %s: Redis does not answer (%s)", lease.key, exc)
            continue
        if not held:
            raise RuntimeError(f"{lease.key} is held by another dispatcher: two are running under one name")


async def run_dispatcher(s: Settings, role: str = "all", alerts_config: AlertsConfig | None = None,
                         metrics: AlertMetrics | None = None) -> None:
    import redis.asyncio as aioredis
    from prometheus_client import start_http_server

    cfg = alerts_config or load_alerts_config(s.alerts_path)
    m = metrics or AlertMetrics()
    if s.dispatcher_metrics_port:
        start_http_server(s.dispatcher_metrics_port, addr=s.metrics_host, registry=m.registry)
    # a Redis that hangs (SIGSTOP, a partition) times out and is waited out as one that is away. redis-py
    # 8 times out after 5 s by default; 5-7 (which pyproject allows) wait for ever, and the dispatcher with them
    r = aioredis.from_url(s.redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
    consumer = s.dispatcher_name or f"{socket.gethostname()}-{os.getpid()}"
    outbox = Outbox(r, consumer, claim_idle=s.outbox_claim_seconds)
    deliverer = Deliverer(outbox, cfg, m)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    intake: AlertIntake | None = None

    def reload() -> None:
        try:
            new = load_alerts_config(s.alerts_path)
        except Exception as exc:  # ConfigError names every bad field; anything else (a file gone) too
            m.reloads.labels("refused").inc()
            m.reload_ok.set(0)
            why = "; ".join(str(e) for e in exc.errors) if isinstance(exc, ConfigError) else str(exc)
            log.error("alerts config %s refused; version %s stays in force: %s", s.alerts_path or "(default)",
                      deliverer.config.version, why)
            return
        m.reloads.labels("applied").inc()
        m.reload_ok.set(1)
        from .cli import unknown_signals

        for u in unknown_signals(new):  # not fatal, as at start: the engine config may change at run time
            log.warning("%s", u)
        deliverer.config = new
        if intake is not None:
            intake.next_config = new
        log.info("alerts config reloaded: version %s, %d rules, %d receivers", new.version, len(new.rules),
                 len(new.receivers))

    loop.add_signal_handler(signal.SIGHUP, reload)
    # two dispatchers under one name would deliver each other's pending notifications again
    token = f"{consumer}-{uuid.uuid4().hex[:8]}"  # this run: the same name may run again after a kill
    name = Lease(r, f"rw:dispatchers:{consumer}", token, s.intake_lease_seconds)
    if not await _claim_name(name, stop):
        if stop.is_set():  # stopped while it waited
            await r.aclose()
            return
        log.error("another dispatcher named %s is running: give each its own RISKWATCH_DISPATCHER_NAME "
                  "(a dispatcher resumes its pending deliveries by name)", consumer)
        await r.aclose()
        raise SystemExit(2)
    tasks = [asyncio.create_task(deliverer.run(), name="deliver"),
             asyncio.create_task(_keep_name(name, stop), name="name")]
    if role == "all":
        tiers = [t.name for t in load_config(s.config_path).tiers]
        lease = Lease(r, LEASE_KEY, token, s.intake_lease_seconds)
        intake = AlertIntake(r, cfg, tiers, m, lease=lease)
        tasks.append(asyncio.create_task(_lead(s, intake, lease, stop, m), name="intake"))
    log.info("dispatcher %s up: role %s, %d rules, %d receivers", consumer, role, len(cfg.rules),
             len(cfg.receivers))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    await deliverer.close()
    for t in tasks:
        if t.done() and t.exception():
            log.error("dispatcher task %s failed", t.get_name(), exc_info=t.exception())
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await name.release()
    await r.aclose()
    failed = [t for t in done if t is not stopper and t.exception()]
    if failed:
        raise SystemExit(1)

