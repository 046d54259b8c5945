"""Prometheus metrics, built on an injected registry (never the global one)."""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from . import __version__

__all__ = ["WorkerMetrics", "build_info"]


def build_info(registry: CollectorRegistry) -> None:
    """``riskwatch_build_info{version, python}`` (value 1) on ``registry``: every riskwatch process has
    it, so a dashboard shows which version each one runs (during a rolling deploy: both).

    >>> r = CollectorRegistry(); build_info(r)
    >>> r.get_sample_value("riskwatch_build_info", {"version": __version__, "python": platform.python_version()})
    1.0
    """
    Info("riskwatch_build", "The riskwatch version this process runs, and its Python", registry=registry).info(
        {"version": __version__, "python": platform.python_version()})


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        build_info(r)
        self.consumed = Counter("riskwatch_events_consumed_total", "Input events read, by topic", ["topic"], registry=r)
        self.processed = Counter("riskwatch_events_processed_total", "Events applied to entity state", registry=r)
        self.skipped = Counter("riskwatch_events_redelivered_total",
                               "Events skipped because their offset was already applied", registry=r)
        self.dead = Counter("riskwatch_deadlettered_total", "Events sent to the dead-letter topic, by reason",
                            ["reason"], registry=r)
        self.ignored = Counter("riskwatch_events_ignored_total",
                               "Events a detector did not apply: one its entity already holds (same id), a reading "
                               "not after its series' last, a record kind the config does not list", ["detector"],
                               registry=r)
        self.misrouted = Counter("riskwatch_rekeyed_total", "Events re-keyed to their entity's partition", registry=r)
        self.outputs = Counter("riskwatch_outputs_total", "Output events, by kind", ["kind"], registry=r)
        self.batch = Histogram("riskwatch_batch_events", "Events per consumed message",
                               buckets=(1, 2, 5, 10, 50, 100, 250, 500, 1000, 2500), registry=r)
        self.round = Histogram("riskwatch_round_messages", "Messages per worker round (written together)",
                               buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=r)
        self.wall = Histogram("riskwatch_round_seconds", "Worker wall time per round of messages",
                              buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5), registry=r)
        self.lag = Histogram("riskwatch_event_to_output_seconds",
                             "Event time to output production (wall clock), per output",
                             buckets=(.005, .01, .02, .03, .04, .05, .075, .1, .15, .2, .3, .5, 1, 2.5, 5, 10,
                                      30, 60), registry=r)
        self.input_wait = Histogram("riskwatch_input_wait_seconds",
                                    "Input message's Kafka timestamp (its producer's send, or the broker's append "
                                    "with LogAppendTime) to the start of the worker round that applies it: the "
                                    "broker, the fetch and the worker's queue; per message",
                                    buckets=(.005, .01, .02, .03, .04, .05, .075, .1, .15, .2, .3, .5, 1, 2.5, 5,
                                             10, 30, 60), registry=r)
        self.entity_states = Gauge("riskwatch_entity_states", "Entity states held, per owned partition (the "
                                   "state table's size)", ["partition"], registry=r)
        self.not_owned = Counter("riskwatch_messages_not_owned_total",
                                 "Messages dropped because their partition was revoked before their round "
                                 "(the new owner processes them)", registry=r)
        self.resume_gaps = Counter("riskwatch_resume_gaps_total",
                                   "Source partitions that resumed past the last offset in the recovered "
                                   "states (events possibly uncounted)", registry=r)
        self.offset_gaps = Counter("riskwatch_input_offset_gaps_total",
                                   "Offsets between two consecutive messages of an owned input partition that "
                                   "never reached this worker (the embedded broker can skip one while several "
                                   "producers write a partition; on Kafka, transactional producers' commit "
                                   "markers count too); with RISKWATCH_REPAIR_GAPS, those it could not read "
                                   "directly either", ["topic"], registry=r)
        self.refetched = Counter("riskwatch_input_offsets_refetched_total",
                                 "Messages of an owned input partition its consumer skipped and the worker read "
                                 "directly (RISKWATCH_REPAIR_GAPS)", ["topic"], registry=r)
        self.view_retries = Counter("riskwatch_view_write_retries_total",
                                    "Redis view writes retried (Redis unreachable)", registry=r)
        self.view_restored = Counter("riskwatch_view_entities_restored_total",
                                     "Entities the view lacked that a worker wrote back from their states "
                                     "(Redis emptied or replaced)", registry=r)
        self.objections_restored = Counter("riskwatch_objections_restored_total",
                                           "Open objections' records Redis had lost that a worker put back from "
                                           "the entities' states", registry=r)
        self.config_repairs = Counter("riskwatch_config_repairs_total",
                                      "Config changes a worker wrote back to Redis (it held none, or an older "
                                      "one) or adopted from it (made after a Redis that lost the numbering)",
                                      ["action"], registry=r)
        self.config_seq = Gauge("riskwatch_config_change", "Sequence number of the config change in force "
                                "(0: the file)", registry=r)
        self.ticks = Counter("riskwatch_ticks_sent_total",
                             "Wall-clock ticks sent to entities due one (RISKWATCH_TICK_SECONDS)", registry=r)
        self.redecide_ticks = Counter("riskwatch_redecide_ticks_total",
                                      "Ticks sent at entities' own clocks to re-decide them under a newly "
                                      "applied config", registry=r)
        self.model_version = Gauge("riskwatch_model_version", "Population model snapshot in use", registry=r)
        self.training_refused = Counter("riskwatch_model_training_refused_total",
                                        "Training messages the trainer could not learn from (not a worker's)",
                                        registry=r)
        self.model_rejected = Counter("riskwatch_model_snapshots_rejected_total",
                                      "Published model snapshots that could not be read (the one in use stays)",
                                      registry=r)
        self.trainer = Gauge("riskwatch_model_trainer", "1 on the worker that owns the training partition "
                             "(learns and publishes the population models)", registry=r)
        self.partitions_split = Gauge("riskwatch_partitions_split", "Partitions this worker was assigned for "
                                      "only some input topics (their entities' states would be held twice; "
                                      "must be 0)", registry=r)
        self.training_skipped = Counter("riskwatch_model_updates_skipped_total",
                                        "Source messages whose model updates the trainer had applied already "
                                        "(processed again after a crash)", registry=r)
        self.training_recovered = Counter("riskwatch_model_training_recovered_total",
                                          "Training messages a trainer read to resume exactly after the last "
                                          "snapshot (its group had committed past it) or that its consumer "
                                          "skipped", registry=r)
        self.training_lost = Counter("riskwatch_model_training_lost_total",
                                     "Training messages a trainer could not read (gone from the topic): their "
                                     "model updates are missing (must be 0)", registry=r)
        self.consumer_lag = Gauge("riskwatch_consumer_lag_messages",
                                  "Messages in an owned input partition after the last one this worker processed "
                                  "(the partition's high watermark as last fetched, minus that offset + 1)",
                                  ["topic", "partition"], registry=r)
