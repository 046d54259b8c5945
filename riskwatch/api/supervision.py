"""Supervision gauges on the API's ``/metrics``: what a regulator's dashboard watches.

Read from the Redis view and the alert store at each scrape (one pipelined round trip of
one ``ZCARD`` per tier and per register status other than operating, one ``SCARD`` per severity,
one for the view's entities, and the open and overdue objections), so they
need no worker and no dispatcher to be up, and every API replica reports the same values (a
dashboard takes ``max``). The tier gauges count entities with a risk decision; registered
entities never scored are in none of them (the draws count them in the lowest tier), and in
``riskwatch_view_registered``.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Gauge

from ..events import NOT_OPERATING
from ..objection_records import OPEN_BY_TIME, index_open
from ..view import ENTITIES, status_key

__all__ = ["SupervisionGauges", "SEVERITIES"]

SEVERITIES = ("info", "warning", "critical")


class SupervisionGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.entities = Gauge("riskwatch_view_entities", "Entities with a risk decision in the view, by tier of "
                              "the config in force", ["tier"], registry=registry)
        self.alerts = Gauge("riskwatch_view_open_alerts", "Open alerts (firing or acknowledged), by severity",
                            ["severity"], registry=registry)
        self.registered = Gauge("riskwatch_view_registered", "Entities in the view, registered or scored (those "
                                "never scored are in the lowest tier for the draws)", registry=registry)
        self.not_operating = Gauge("riskwatch_view_not_operating", "Entities the register says are not "
                                   "operating, by status (suspended, closed): out of the draws", ["status"],
                                   registry=registry)
        self.objections_open = Gauge("riskwatch_objections_open", "Open objections (filed, not resolved)",
                                     registry=registry)
        self.objections_overdue = Gauge("riskwatch_objections_overdue", "Open objections past their due time "
                                        "(filed more than objections.resolve_within_days ago)", registry=registry)
        self.readable = Gauge("riskwatch_view_readable", "1 when this scrape read the view from Redis; 0 when "
                              "Redis did not answer (the gauges above are then the last values read)",
                              registry=registry)

    async def refresh(self, r, tiers: list[str], resolve_within_days: float | None = None) -> None:
        import redis.exceptions as rex

        try:
            await index_open(r)  # once per Redis: the open objections by filing time
        except (rex.RedisError, OSError):
            self.readable.set(0)
            return
        pipe = r.pipeline(transaction=False)
        for t in tiers:
            pipe.zcard(f"rw:rank:tier:{t}")
        for s in SEVERITIES:
            pipe.scard(f"rw:alerts:open:severity:{s}")
        for st in NOT_OPERATING:
            pipe.zcard(status_key(st))
        pipe.scard(ENTITIES)
        pipe.zcard(OPEN_BY_TIME)
        pipe.zcount(OPEN_BY_TIME, "(0", time.time() - (resolve_within_days or 15.0) * 86400)
        try:
            counts = await pipe.execute()
        except (rex.RedisError, OSError):
            self.readable.set(0)
            return
        self.entities.clear()  # a tier a config change removed leaves the series
        for t, n in zip(tiers, counts):
            self.entities.labels(t).set(n)
        for s, n in zip(SEVERITIES, counts[len(tiers):]):
            self.alerts.labels(s).set(n)
        for st, n in zip(NOT_OPERATING, counts[len(tiers) + len(SEVERITIES):]):
            self.not_operating.labels(st).set(n)
        self.registered.set(counts[-3])
        self.objections_open.set(counts[-2])
        self.objections_overdue.set(counts[-1])
        self.readable.set(1)
