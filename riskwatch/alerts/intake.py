"""From alert candidates to stored alerts and queued notifications.

:class:`AlertIntake` applies the engine's ``alert_candidate`` outputs (one
Kafka message at a time) through the rules and the lifecycle, stores the
alerts, routes notifying changes to receivers (webhook groups; Alertmanager
receivers get each change at once, Alertmanager groups itself) and puts
notifications in the outbox, all in one Redis transaction with the message's
offset, so a redelivered message is skipped. Alert changes are published as
events (``rw.alerts``) before that transaction: at least once, deduplicable by
``(alert id, version)``. :meth:`tick` runs the clock: cooldowns, expiry,
changes people made, due groups, and the open alerts sent again to each
Alertmanager every ``alertmanager_resend`` (it resolves an alert not sent
again within its ``endsAt``: each send is valid for 4 resends, as Prometheus
sends them).

One intake runs per deployment (it is the only writer of groups): the
dispatcher that holds the intake lease (:mod:`riskwatch.alerts.lease`), whose
commits check that they still hold it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Awaitable, Callable

import orjson
from pydantic import ValidationError

from ..events import AlertCandidate, output_reader
from ..streams.codec import decode
from . import grouping
from .config import AlertsConfig, Rule
from .lease import Lease
from .lifecycle import NOTIFY, OPEN, apply_candidate, dedup_key, due_at, retire, tick
from .metrics import AlertMetrics
from .outbox import Outbox
from .payload import alertmanager_alert, webhook_payload
from .restore import MARK, StoreMark
from .routing import group_key, receivers_for, silenced
from .store import AlertStore, alert_key

__all__ = ["AlertIntake"]

P = "rw:"
RESEND_KEY = f"{P}alerts:am-resend"  # hash: Alertmanager receiver -> when its open alerts are next sent again
_VALID_RESENDS = 4                   # a firing alert sent to an Alertmanager is valid for this many resends
_RESEND_CHUNK = 500                  # alerts per request
log = logging.getLogger("riskwatch.alerts")
_CANDIDATE = output_reader(AlertCandidate)


class _Batch:
    """Changes of one unit of work, committed together."""

    def __init__(self) -> None:
        self.alerts: dict[str, tuple[dict | None, dict, float | None | bool]] = {}  # key -> (first old, new, due)
        self.read: dict[str, bytes | None] = {}      # alert id -> raw as read (optimistic check)
        self.groups: dict[str, dict | None] = {}
        self.notifications: list[dict] = []
        self.events: list[dict] = []
        self.resent: dict[str, float] = {}           # Alertmanager receiver -> when its open alerts are next due


class AlertIntake:
    def __init__(self, redis, config: AlertsConfig, tier_order: list[str], metrics: AlertMetrics,
                 publish: Callable[[list[dict]], Awaitable[None]] | None = None, lease: Lease | None = None) -> None:
        self.r = redis
        self.lease = lease  # commits only while it holds this (see lease.py); None: unchecked
        self.tiers = {t: i for i, t in enumerate(tier_order)}
        self.m = metrics
        self.publish = publish
        self.mark = StoreMark()  # its commits counted in Redis: a count gone back means Redis lost them (restore.py)
        self.silences: dict[str, dict] = {}  # as read at the last tick that committed: written back if Redis
        self._reading: dict[str, dict] = {}  # loses them; the read of the tick under way
        self.next_config: AlertsConfig | None = None  # a reload to take before the next unit of work
        self.use(config)

    def use(self, config: AlertsConfig) -> None:
        """Rules and receivers from now on (between units of work: a reload)."""
        self.cfg = config
        self.store = AlertStore(self.r, config.history_per_entity)
        self.next_config = None

    # ------------------------------------------------------------ candidates
    async def apply_message(self, topic: str, partition: int, offset: int, value: bytes | None) -> int:
        """Apply one message of the candidates topic; returns the number of alert transitions."""
        import redis.exceptions as rex

        tp = f"{topic}:{partition}"
        done = await self.applied_offset(topic, partition)
        if done is not None and offset <= done:
            return 0
        outs, err = decode(value)
        if err:
            self.m.refused.inc()
            log.error("%s@%d passed over: %s", tp, offset, err)
        cands = []
        for i, c in enumerate(o for o in outs if isinstance(o, dict) and o.get("type") == "alert_candidate"):
            try:  # until 2026-12-06 one without an entity stopped the intake, again at each restart
                _CANDIDATE.validate_python(c)
            except ValidationError as exc:
                self.m.refused.inc()
                e = exc.errors()[0]
                log.error("candidate %s@%d#%d passed over: %s: %s", tp, offset, i,
                          ".".join(map(str, e["loc"])), e["msg"])
                continue
            cands.append((i, c))
        while True:
            b = _Batch()
            meta = await self.store.entity_meta({c["entity_id"] for _, c in cands}) if cands else {}
            for i, c in cands:
                self.m.candidates.labels(c.get("signal", "?"), c.get("status", "?")).inc()
                if c.get("current") is False and c.get("status") == "firing":
                    self.m.stale.labels(c.get("signal", "?")).inc()  # over before it was seen: no page
                    continue
                rules = self.cfg.rules_for(c.get("signal", ""))
                if not rules:
                    self.m.unmatched.labels(c.get("signal", "?")).inc()
                for rule in rules:
                    await self._candidate(b, c, rule, meta.get(c["entity_id"], {}), f"{tp}@{offset}#{i}")
            try:
                await self._commit(b, extra=lambda pipe: pipe.hset(f"{P}alerts:offsets", tp, offset))
                return len(b.events)
            except rex.WatchError:  # a person changed one of these alerts meanwhile: redo with theirs
                continue

    async def applied_offset(self, topic: str, partition: int) -> int | None:
        """The offset of the last message of ``topic[partition]`` applied (None: none yet)."""
        done = await self.r.hget(f"{P}alerts:offsets", f"{topic}:{partition}")
        return None if done is None else int(done)

    def _under_tier(self, c: dict, rule: Rule) -> bool:
        if rule.min_tier is None or c.get("status") != "firing":
            return False
        return self.tiers.get(c.get("tier", ""), 0) < self.tiers.get(rule.min_tier, 0)

    async def _current(self, b: _Batch, key: str) -> dict | None:
        if key in b.alerts:
            return b.alerts[key][1]
        aid = await self.r.get(f"{P}alert-key:{key}")
        if not aid:
            return None
        aid = aid.decode() if isinstance(aid, bytes) else aid
        raw = await self.r.get(alert_key(aid))
        b.read[aid] = raw
        return orjson.loads(raw) if raw else None

    async def _candidate(self, b: _Batch, c: dict, rule: Rule, meta: dict, source: str) -> None:
        if self._under_tier(c, rule):
            return
        meta = dict(meta, external_url=self.cfg.external_url)
        key = dedup_key(c, rule, meta)
        old = await self._current(b, key)
        new, transition = apply_candidate(old, c, rule, meta, time.time(), source)
        if transition is None:
            return
        self._record(b, key, old, new, transition, rule)
        await self._route(b, new, transition, old)

    def _record(self, b: _Batch, key: str, old: dict | None, new: dict, transition: str,
                rule: Rule | None) -> None:
        """``rule``: ``None`` for an alert closed because its rule is gone (it is never due again)."""
        first_old = b.alerts[key][0] if key in b.alerts else old
        b.alerts[key] = (first_old, new, None if rule is None else due_at(new, rule))
        b.events.append({"type": "alert_change", "transition": transition, "alert_id": new["id"],
                         "version": new["version"], "alert": new})
        self.m.transitions.labels(new["rule"], new["severity"], transition).inc()

    async def _route(self, b: _Batch, a: dict, transition: str, old: dict | None = None) -> None:
        if transition not in NOTIFY:
            return
        targets = receivers_for(a["labels"], self.cfg.receivers)
        if not targets:
            self.m.unrouted.labels(a["rule"]).inc()
        now = time.time()
        # an escalation changes the label set, which is an alert's identity in Alertmanager: the old one ends
        before = (old if old is not None and old["id"] == a["id"] and old["labels"] != a["labels"]
                  and old["status"] in OPEN else None)
        for r in targets:
            if r.alertmanager_url:
                sent = [alertmanager_alert(a, self.cfg.external_url)]
                if before is not None and receivers_for(before["labels"], [r]):
                    sent.append(alertmanager_alert(dict(before, status="resolved", ends_at=now),
                                                   self.cfg.external_url))
                body = orjson.dumps(sent).decode()
                self._notify(b, r.name, "alertmanager", f"am|{a['id']}|{a['version']}", body, now,
                             valid_for=_VALID_RESENDS * r.alertmanager_resend)
            if r.url:
                gk = group_key(r.name, a["labels"], r.group_by)
                g = b.groups[gk] if gk in b.groups else await self._group(gk)
                b.groups[gk] = grouping.add(g, gk, r, {k: a["labels"].get(k, "") for k in r.group_by},
                                            a["id"], a["version"], now)

    def _notify(self, b: _Batch, receiver: str, kind: str, ident: str, body: str, now: float,
                **extra) -> None:
        """``extra``: ``valid_for`` (seconds: the deliverer gives firing Alertmanager alerts an ``endsAt`` that
        far past the moment it sends them), ``resend`` (True: a resend, dropped rather than retried once the
        next is due, never dead-lettered)."""
        nid = hashlib.sha256(ident.encode()).hexdigest()[:24]
        b.notifications.append({"id": nid, "kind": kind, "receiver": receiver, "body": body, "queued_at": now,
                                **extra})
        self.m.notifications.labels(receiver, kind + ("_resend" if extra.get("resend") else "")).inc()

    async def _group(self, gk: str) -> dict | None:
        raw = await self.r.hget(f"{P}groups", gk)
        return orjson.loads(raw) if raw else None

    async def _commit(self, b: _Batch, extra=None) -> None:
        lease = self.lease
        if b.events and self.publish is not None:
            if lease is not None:
                await lease.check()  # not publish what it cannot commit
            await self.publish(b.events)
        async with self.r.pipeline(transaction=True) as pipe:
            watched = [alert_key(a) for a in b.read] + ([lease.key] if lease is not None else []) + [MARK]
            await pipe.watch(*watched)
            if lease is not None:
                await lease.check(pipe)
            count = await self.mark.check(pipe)  # StoreLost: Redis lost commits of this intake
            for aid, raw in b.read.items():
                if await pipe.get(alert_key(aid)) != raw:
                    import redis.exceptions as rex

                    raise rex.WatchError("alert changed since read")
            pipe.multi()
            pipe.incr(MARK)
            for old, new, due in b.alerts.values():
                if old is not None and old["id"] != new["id"]:
                    old = None
                self.store.save(pipe, old, new, due)
            for gk, g in b.groups.items():
                if g is None:
                    pipe.hdel(f"{P}groups", gk)
                    pipe.zrem(f"{P}groups:due", gk)
                else:
                    pipe.hset(f"{P}groups", gk, orjson.dumps(g))
                    pipe.zadd(f"{P}groups:due", {gk: g["next_flush"]})
            for n in b.notifications:
                Outbox.enqueue(pipe, n)
            if b.resent:
                pipe.hset(RESEND_KEY, mapping=b.resent)
            if extra is not None:
                extra(pipe)
            await pipe.execute()
            self.mark.expected = count + 1

    # ------------------------------------------------------------ the clock
    async def tick(self, now: float | None = None) -> int:
        """Cooldowns and expiry, people's changes, due groups. Returns notifications queued."""
        import redis.exceptions as rex

        now = time.time() if now is None else now
        queued = 0
        # kept once a commit shows the read came from the store this intake writes: a tick that read an emptied
        # Redis (before its commit found the loss) would otherwise have left nothing to write back
        self._reading = {x["id"]: x for x in await self.store.silences()}
        while True:
            b = _Batch()
            await self._due_alerts(b, now)
            notify_ids = await self.r.lrange(f"{P}alerts:notify", 0, 99)
            await self._people(b, notify_ids)
            await self._due_groups(b, now)
            await self._due_resends(b, now)
            try:
                n = len(notify_ids)
                await self._commit(b, extra=(lambda pipe, n=n: pipe.ltrim(f"{P}alerts:notify", n, -1)) if n else None)
            except rex.WatchError:
                continue
            self.silences = self._reading
            queued += len(b.notifications)
            if len(b.notifications) == 0 and not notify_ids:
                return queued

    async def _people(self, b: _Batch, entries: list) -> None:
        """Changes people made (:meth:`AlertStore.act`): each an event on ``rw.alerts`` (until 2026-12-07
        acknowledgements and manual resolutions were not, so a consumer of the topic kept alerts open
        that a person had closed), and routed where it says so, as the alert is now."""
        route = []
        for raw in entries:
            raw = raw.encode() if isinstance(raw, str) else raw
            if raw[:1] == b"{":
                e = orjson.loads(raw)
                a = e["alert"]
                b.events.append({"type": "alert_change", "transition": e["transition"], "alert_id": a["id"],
                                 "version": a["version"], "alert": a})
                if e["route"]:
                    route.append(a["id"])
            else:  # an id: queued by a release before 2026-12-07
                route.append(raw.decode())
        for a in (await self.store.many(route)).values():
            await self._route(b, a, "resolved" if a["status"] not in ("firing", "acknowledged") else "fired")

    async def _due_alerts(self, b: _Batch, now: float) -> None:
        ids = [i.decode() if isinstance(i, bytes) else i
               for i in await self.r.zrangebyscore(f"{P}alerts:due", "-inf", now, start=0, num=500)]
        rules = {r.name: r for r in self.cfg.rules}
        for aid in ids:
            raw = await self.r.get(alert_key(aid))
            b.read[aid] = raw
            a = orjson.loads(raw) if raw else None
            if a is None:
                await self.r.zrem(f"{P}alerts:due", aid)
                continue
            if a["rule"] not in rules:  # removed from the config (since 2026-12-07: until then open for good)
                new, transition = retire(a, now, f"rule {a['rule']!r} is not in alerts config {self.cfg.version}")
                if transition is None:
                    b.alerts[a["key"]] = (a, a, None)
                    continue
                self._record(b, a["key"], a, new, transition, None)
                await self._route(b, new, transition, a)
                continue
            rule = rules[a["rule"]]
            new, transition = tick(a, rule, now)
            if transition is None:
                b.alerts[a["key"]] = (a, a, due_at(a, rule))
                continue
            self._record(b, a["key"], a, new, transition, rule)
            await self._route(b, new, transition, a)

    async def _due_groups(self, b: _Batch, now: float) -> None:
        keys = [k.decode() if isinstance(k, bytes) else k
                for k in await self.r.zrangebyscore(f"{P}groups:due", "-inf", now, start=0, num=200)]
        keys += [k for k, g in b.groups.items() if g is not None and g["next_flush"] <= now and k not in keys]
        if not keys:
            return
        sil = [s for s in self._reading.values() if s["starts_at"] <= now < s["ends_at"]]
        for gk in keys:
            g = b.groups[gk] if gk in b.groups else await self._group(gk)
            if g is None:
                b.groups[gk] = None
                continue
            try:
                r = self.cfg.receiver(g["receiver"])
            except StopIteration:  # receiver removed from config
                b.groups[gk] = None
                continue
            pending = {k: v[1] for k, v in b.alerts.items()}
            current = await self.store.many(list(g["alerts"]))
            for a in pending.values():
                if a["id"] in g["alerts"]:
                    current[a["id"]] = a
            muted = {i for i, a in current.items() if silenced(a["labels"], sil, now)}
            if muted:
                self.m.silenced.labels(r.name).inc(len(muted))
            g2, send = grouping.flush(g, r, {i: a["status"] for i, a in current.items()}, muted, now)
            b.groups[gk] = g2
            if send:
                alerts = [current[i] for i in send]
                ents = await self.store.entity_meta({a["entity_id"] for a in alerts})
                body = orjson.dumps(webhook_payload(r.name, gk, g["labels"], alerts, ents,
                                                    self.cfg.external_url)).decode()
                ident = f"wh|{gk}|" + ",".join(f"{a['id']}:{a['version']}" for a in alerts) + f"|{now}"
                self._notify(b, r.name, "webhook", ident, body, now)

    async def regroup(self, now: float | None = None) -> int:
        """Put each open alert that is in no notification group of a webhook receiver it routes to into
        a new one (Redis lost the groups: :func:`riskwatch.alerts.dispatcher._recover_store` calls this
        after the alerts are back). A new group sends its alerts after ``group_wait`` and repeats them every
        ``repeat_interval``: until 2026-12-08 the team heard nothing more of an alert that was open when
        Redis lost its groups, no reminder, until the alert changed. How many groups were made."""
        now = time.time() if now is None else now
        held = {k.decode() if isinstance(k, bytes) else k for k in await self.r.hkeys(f"{P}groups")}
        made: dict[str, dict] = {}
        alerts = await self.store.many(await self.store.open_ids())
        for a in sorted(alerts.values(), key=lambda a: (a.get("starts_at") or 0, a["id"])):
            if a["status"] not in OPEN:
                continue
            for r in receivers_for(a["labels"], self.cfg.receivers):
                if not r.url:
                    continue
                gk = group_key(r.name, a["labels"], r.group_by)
                if gk in held:
                    continue
                made[gk] = grouping.add(made.get(gk), gk, r, {k: a["labels"].get(k, "") for k in r.group_by},
                                        a["id"], a["version"], now)
        if made:
            pipe = self.r.pipeline(transaction=False)
            for gk, g in made.items():
                pipe.hsetnx(f"{P}groups", gk, orjson.dumps(g))
                pipe.zadd(f"{P}groups:due", {gk: g["next_flush"]}, nx=True)
            await pipe.execute()
        return len(made)

    async def reschedule(self) -> int:
        """Every open alert's next tick under the rules in force (a new ``escalate_after``, a shorter expiry:
        an alert with no candidate since would wait for its old due time). Run when the intake starts and
        after each reload. An open alert whose rule is gone is due now: the next tick resolves it."""
        ids = await self.store.open_ids()
        rules = {r.name: r for r in self.cfg.rules}
        due, gone = {}, {}
        now = time.time()
        for aid, a in (await self.store.many(ids)).items():
            if a["rule"] not in rules:
                due[aid] = now
                gone[a["rule"]] = gone.get(a["rule"], 0) + 1
                continue
            t = due_at(a, rules[a["rule"]])
            if t is not None:
                due[aid] = t
        if gone:
            log.warning("rules no longer in alerts config %s: their open alerts resolve now (%s)",
                        self.cfg.version, ", ".join(f"{r}: {n}" for r, n in sorted(gone.items())))
        if due:
            await self.r.zadd(f"{P}alerts:due", due)
        return len(due)

    async def _due_resends(self, b: _Batch, now: float) -> None:
        """Every open alert again to each Alertmanager receiver whose resend is due, ``_RESEND_CHUNK`` a request.

        Alertmanager keeps an alert active until its ``endsAt`` (or, without one, its ``resolve_timeout``,
        5 minutes by default) and expects its sources to send active alerts again; until 2026-12-06 riskwatch
        sent each change once, and Alertmanager resolved every alert 5 minutes after its last change."""
        ams = [r for r in self.cfg.receivers if r.alertmanager_url]
        if not ams:
            return
        nexts = await self.r.hmget(RESEND_KEY, [r.name for r in ams])
        due = [r for r, t in zip(ams, nexts) if t is None or float(t) <= now]
        if not due:
            return
        alerts = await self.store.many(await self.store.open_ids())
        for _, new, _ in b.alerts.values():  # changed in this unit of work: as it will be stored
            alerts[new["id"]] = new
        alerts = [a for a in alerts.values() if a["status"] in OPEN]
        for r in due:
            mine = [alertmanager_alert(a, self.cfg.external_url) for a in alerts if receivers_for(a["labels"], [r])]
            for i in range(0, len(mine), _RESEND_CHUNK):
                self._notify(b, r.name, "alertmanager", f"amr|{r.name}|{now}|{i}",
                             orjson.dumps(mine[i:i + _RESEND_CHUNK]).decode(), now,
                             valid_for=_VALID_RESENDS * r.alertmanager_resend, resend=True)
            b.resent[r.name] = now + r.alertmanager_resend
