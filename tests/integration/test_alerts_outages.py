"""The dispatcher when the broker is not there yet at its start, when it goes away for a while (a
Kafka rolling restart), and when Redis restarts: it keeps running, and the alerts reach their
receiver."""

from __future__ import annotations

import asyncio
import signal
import time

import orjson
import yaml

from riskwatch.alerts.config import DEFAULT_ALERTS_PATH
from riskwatch.settings import Settings
from riskwatch.streams.kafka import ensure_topics

from .conftest import wait_for, worker_env
from .helpers import FrontedBroker, OwnRedis, read_batches
from .receiver import Receiver
from .test_alerts_flow import Dispatcher, _cand, _notifications, _send


def _dispatcher(s: Settings, rcv: Receiver, tmp_path, cooldown: str | None = None, **env: str) -> Dispatcher:
    """A dispatcher process with the default rules (``cooldown``: every rule's) and one webhook receiver,
    ``rcv``, grouping by entity."""
    cfg = yaml.safe_load(DEFAULT_ALERTS_PATH.read_text())
    if cooldown is not None:
        for rule in cfg["rules"]:
            rule["cooldown"] = cooldown
    cfg["receivers"] = [{"name": "team", "url": rcv.url, "secrets": ["team-secret"], "group_by": ["entity"],
                         "group_wait": "0.2s", "group_interval": "0.5s", "backoff_base": 0.05}]
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return Dispatcher(dict(worker_env(s), RISKWATCH_ALERTS_PATH=str(path), RISKWATCH_ALERT_TICK_SECONDS="0.2",
                           **env), tmp_path).start()


def _entities(rcv: Receiver) -> set:
    """The entities of the alerts the receiver has been told of."""
    return {a["labels"]["entity"] for n in _notifications(rcv) for a in n["alerts"]}


def test_the_dispatcher_waits_for_its_broker_and_rides_out_its_going_away(redis_url, tmp_path):
    """Until 2026-12-07 a dispatcher started before its broker answered exited at once (status 1,
    ``Unable to bootstrap``), its webhook deliveries with it."""
    rcv = Receiver(secret="team-secret").start()
    d = None
    with FrontedBroker(tmp_path / "broker", up=False) as fb:  # nothing answers on its port yet
        try:
            s = Settings(broker=fb.url, redis_url=redis_url, topic_prefix="dab.", app_id="rw-dab",
                         partitions=4, data_dir=tmp_path, tick_seconds=0)
            d = _dispatcher(s, rcv, tmp_path)
            time.sleep(6)
            assert d.p.poll() is None, d.log()
            assert "intake stopped: Kafka does not answer" in d.text(), d.log()
            fb.up()
            asyncio.run(ensure_topics(s))
            topic = s.topic("alert-candidates")
            _send(s, topic, [[_cand("E1", "firing")]])
            wait_for(lambda: "E1" in _entities(rcv), 60, "E1's alert before the broker goes away", d.log)
            fb.down()
            time.sleep(8)
            assert d.p.poll() is None, d.log()
            fb.up()
            _send(s, topic, [[_cand("E2", "firing")]])
            wait_for(lambda: "E2" in _entities(rcv), 90, "E2's alert after the broker came back", d.log)
            assert d.p.poll() is None, d.log()
        finally:
            if d is not None:
                d.stop()
            rcv.stop()


def test_the_dispatcher_waits_for_redis_and_rides_out_its_restart(services, tmp_path):
    """Started before Redis, then Redis restarted without its data (``up`` and the tests run it so;
    compose keeps an AOF): the outbox's consumer group, the name and intake leases and the applied
    offsets are gone. Until 2026-12-07 the first Redis error ended the dispatcher (status 1)."""
    broker, _ = services
    redis = OwnRedis(tmp_path / "redis", start=False)  # nothing on its port yet
    rcv = Receiver(secret="team-secret").start()
    d = None
    try:
        s = Settings(broker=broker.url, redis_url=redis.url, topic_prefix="drr.",
                     app_id="rw-drr", partitions=4, data_dir=tmp_path, tick_seconds=0)
        asyncio.run(ensure_topics(s))
        d = _dispatcher(s, rcv, tmp_path, RISKWATCH_INTAKE_LEASE_SECONDS="3")  # nothing on Redis's port yet
        time.sleep(5)
        assert d.p.poll() is None, d.log()
        assert "Redis does not answer" in d.text(), d.log()
        redis.start()
        topic = s.topic("alert-candidates")
        _send(s, topic, [[_cand("E1", "firing")]])
        wait_for(lambda: "E1" in _entities(rcv), 60, "E1's alert once Redis answered", d.log)
        redis.stop()
        time.sleep(5)
        assert d.p.poll() is None, d.log()
        redis.start()
        _send(s, topic, [[_cand("E2", "firing")]])
        wait_for(lambda: "E2" in _entities(rcv), 90, "E2's alert after Redis restarted", d.log)
        assert d.p.poll() is None, d.log()
        assert "intake stopped: Redis does not answer" in d.text(), d.log()

        # a Redis that hangs (a partition): it times out, and the intake is no longer shown as held
        said = d.text().count("intake stopped: Redis does not answer")
        redis.svc.proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: d.text().count("intake stopped: Redis does not answer") > said, 60,
                     "the hung Redis noticed", d.log)
            assert "Timeout" in d.log()[-3000:], d.log()
        finally:
            redis.svc.proc.send_signal(signal.SIGCONT)
        _send(s, topic, [[_cand("E3", "firing")]])
        wait_for(lambda: "E3" in _entities(rcv), 90, "E3's alert once Redis answered again", d.log)
        assert d.p.poll() is None, d.log()
        assert "never retrieved" not in d.text(), d.log()
    finally:
        if d is not None:
            d.stop()
        rcv.stop()
        redis.stop()


def _alerts(r) -> dict:
    """The alert store as the API reads it: each alert, the open indexes, the dedup keys' alerts, the
    entities' histories."""
    out = {}
    for key in r.scan_iter(match="rw:alert*", count=1000):
        k = key.decode()
        if k.startswith(("rw:alerts:due", "rw:alerts:offsets", "rw:alerts:intake-lease", "rw:alerts:mark",
                         "rw:alerts:notify", "rw:alerts:am-resend")):
            continue
        t = r.type(key)
        out[k] = (orjson.loads(r.get(key)) if k.startswith("rw:alert:") else r.get(key)) if t == b"string" else \
            sorted(r.smembers(key)) if t == b"set" else r.zrange(key, 0, -1, withscores=True) if t == b"zset" else \
            r.lrange(key, 0, -1)
    return out


def test_the_intake_writes_back_the_alerts_a_redis_lost(services, tmp_path):
    """Until 2026-12-07 the open alerts went with Redis's data: the board and the API lost them, and a
    condition that cleared afterwards found no alert to resolve, so the team was never told. Redis
    restarted without its data, then started from an older snapshot (a failover to a replica behind)."""
    import redis as redis_sync

    from riskwatch.alerts.routing import SilenceSpec
    from riskwatch.alerts.store import AlertStore

    broker, _ = services
    red = OwnRedis(tmp_path / "redis")
    rcv = Receiver(secret="team-secret").start()
    d = None
    try:
        s = Settings(broker=broker.url, redis_url=red.url, topic_prefix="dal.",
                     app_id="rw-dal", partitions=4, data_dir=tmp_path, tick_seconds=0)
        asyncio.run(ensure_topics(s))
        d = _dispatcher(s, rcv, tmp_path, cooldown="1s")  # E1's resolution comes soon after it fired
        r = redis_sync.Redis.from_url(s.redis_url)
        topic = s.topic("alert-candidates")
        _send(s, topic, [[_cand("E1", "firing"), _cand("E2", "firing"), _cand("E3", "firing", severity="critical")]])
        wait_for(lambda: _entities(rcv) == {"E1", "E2", "E3"}, 60, "three alerts", d.log)
        e2 = r.smembers("rw:alerts:open:entity:E2").pop().decode()

        async def ack_and_silence() -> None:
            import redis.asyncio as aioredis

            ar = aioredis.from_url(s.redis_url)
            await AlertStore(ar).act(e2, "ack", "inspector-7", "on my way")
            now = time.time()
            await AlertStore(ar).add_silence(SilenceSpec(
                matchers=[{"name": "entity", "value": "E9"}], starts_at=now, ends_at=now + 3600,
                author="ops-li", reason="planned outage"))
            await AlertStore(ar).add_silence(SilenceSpec(  # over soon: not written back
                matchers=[{"name": "entity", "value": "E8"}], starts_at=now, ends_at=now + 0.5, author="ops-li",
                reason="a short one"))
            await ar.aclose()

        asyncio.run(ack_and_silence())
        wait_for(lambda: any(c["alert_id"] == e2 and c["transition"] == "acknowledged"
                             for c in read_batches(s.broker, s.topic("alerts"))), 30, "the ack on rw.alerts", d.log)
        before = _alerts(r)
        assert len(before["rw:alerts:open"]) == 3 and before[f"rw:alert:{e2}"]["status"] == "acknowledged"

        time.sleep(1)  # the short silence is over
        told = len(_notifications(rcv))
        red.restart()  # without its data
        wait_for(lambda: "wrote back 3 alerts (3 open)" in d.text(), 60, "the alerts written back", d.log)
        assert "made 3 notification groups" in d.text(), d.log()
        # the team is told again of the alerts still open (until 2026-12-08: nothing until they changed)
        wait_for(lambda: {"E2", "E3"} <= {a["labels"]["entity"] for n in _notifications(rcv)[told:]
                                          for a in n["alerts"] if a["status"] == "firing"}, 30,
                 "the open alerts notified again", d.log)
        # the silence still in force comes back with them (the intake had read it at its last tick)
        assert [orjson.loads(x)["reason"] for x in r.hvals("rw:silences")] == ["planned outage"], d.log()
        after = _alerts(r)
        assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                                 if before.get(k) != after.get(k)}
        _send(s, topic, [[_cand("E1", "resolved")]])  # the team hears E1 is over
        wait_for(lambda: any(n["status"] == "resolved" and n["alerts"][0]["labels"]["entity"] == "E1"
                             for n in _notifications(rcv)), 60, "E1's resolution", d.log)

        r.save()  # Redis comes back from this snapshot: without what follows
        _send(s, topic, [[_cand("E4", "firing")], [_cand("E3", "resolved")]])
        wait_for(lambda: "E4" in _entities(rcv) and not r.smembers("rw:alerts:open:entity:E3"), 60,
                 "E4 fired and E3 resolved", d.log)
        before = _alerts(r)
        red.restart(kill=True)
        wait_for(lambda: d.text().count("wrote back") == 2, 60, "the alerts written back again", d.log)
        assert "wrote back 2 alerts (1 open)" in d.text(), d.log()  # E4 open, E3 resolved
        after = _alerts(r)
        assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                                 if before.get(k) != after.get(k)}
        assert d.p.poll() is None and "Traceback" not in d.text(), d.log()
    finally:
        if d is not None:
            d.stop()
        rcv.stop()
        red.stop()
