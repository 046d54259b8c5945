"""Prometheus metrics of the dispatcher, on an injected registry (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..metrics import build_info

__all__ = ["AlertMetrics"]


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        build_info(r)
        self.candidates = Counter("riskwatch_alert_candidates_total", "Alert candidates read, by signal and status",
                                  ["signal", "status"], registry=r)
        self.stale = Counter("riskwatch_alert_candidates_stale_total",
                             "Firing candidates whose condition no longer held at the worker's clock (old events, "
                             "a backfill): no alert opened, by signal", ["signal"], registry=r)
        self.refused = Counter("riskwatch_alert_candidates_refused_total",
                               "Messages and candidates on the candidates topic that no worker wrote (not JSON, "
                               "or not a candidate's form): logged and passed over", registry=r)
        self.unmatched = Counter("riskwatch_alert_candidates_unmatched_total",
                                 "Candidates no rule takes (by signal)", ["signal"], registry=r)
        self.transitions = Counter("riskwatch_alerts_total", "Alert lifecycle transitions, by rule/severity/state",
                                   ["rule", "severity", "state"], registry=r)
        self.open = Gauge("riskwatch_alerts_open", "Open alerts (firing or acknowledged)", registry=r)
        self.unrouted = Counter("riskwatch_alerts_unrouted_total", "Notifying changes no receiver matches",
                                ["rule"], registry=r)
        self.silenced = Counter("riskwatch_alerts_silenced_total", "Alerts left out of a notification by a silence",
                                ["receiver"], registry=r)
        self.notifications = Counter("riskwatch_notifications_queued_total", "Notifications put in the outbox",
                                     ["receiver", "kind"], registry=r)
        self.deliveries = Counter("riskwatch_deliveries_total", "Delivery attempts by receiver and result "
                                  "(ok, retry, dead; dropped: an Alertmanager resend superseded by the next)", ["receiver", "result"], registry=r)
        self.retries = Counter("riskwatch_delivery_retries_total", "Retries scheduled, by receiver", ["receiver"],
                               registry=r)
        self.latency = Histogram("riskwatch_delivery_seconds", "Outbox enqueue to receiver's 2xx, by receiver",
                                 ["receiver"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60,
                                                        300, 1800), registry=r)
        self.outbox_depth = Gauge("riskwatch_outbox_depth", "Notifications in the outbox (queued or in flight)",
                                  registry=r)
        self.intake_leader = Gauge("riskwatch_alert_intake_leader", "1 while this dispatcher holds the intake "
                                   "lease and runs the intake (one per deployment), else 0", registry=r)
        self.intake_takeovers = Counter("riskwatch_alert_intake_takeovers_total",
                                        "Times this dispatcher took the intake lease", registry=r)
        self.restored = Counter("riskwatch_alerts_restored_total",
                                "Alerts the intake wrote back to Redis from rw.alerts (Redis had lost them, or "
                                "their last changes)", registry=r)
        self.offset_gaps = Counter("riskwatch_input_offset_gaps_total",
                                   "Offsets of the alert candidates topic that never reached the intake (the "
                                   "embedded broker can skip one while several workers write a partition)",
                                   ["topic"], registry=r)
        self.refetched = Counter("riskwatch_input_offsets_refetched_total",
                                 "Messages of the alert candidates topic its consumer skipped and the intake read "
                                 "directly (RISKWATCH_REPAIR_GAPS)", ["topic"], registry=r)
        self.reloads = Counter("riskwatch_alerts_config_reloads_total",
                               "Alerts config reloads on SIGHUP: applied, or refused (invalid; the running config "
                               "stays in force)", ["result"], registry=r)
        self.reload_ok = Gauge("riskwatch_alerts_config_last_reload_successful",
                               "0 while the alerts config file holds a change the dispatcher refused at its last "
                               "reload (the running config is the one before), else 1", registry=r)
        self.reload_ok.set(1)
        self.dead_size = Gauge("riskwatch_outbox_dead", "Notifications in the dead-letter list", registry=r)
