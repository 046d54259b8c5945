"""Runtime settings: environment ``RISKWATCH_*`` over defaults, validated once, frozen.

>>> s = Settings(broker="127.0.0.1:9092", api_token="secret")
>>> s.topic("complaints"), s.masked()["api_token"]
('rw.complaints', '***')
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "INPUT_TOPICS", "OUTPUT_TOPICS"]

INPUT_TOPICS = ("entities", "complaints", "sensor-readings", "inspections", "records", "commands")
OUTPUT_TOPICS = {"risk_change": "risk-changes", "spotcheck_change": "spotcheck-changes",
                 "alert_candidate": "alert-candidates"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RISKWATCH_", frozen=True, extra="ignore")

    broker: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    config_path: Path | None = None
    topic_prefix: str = "rw."
    partitions: Annotated[int, Field(ge=1, le=256)] = 4
    app_id: str = "riskwatch"
    data_dir: Path = Path(".data")
    store: str = "rocksdb://"  # faust uses rocksdict for it when python-rocksdb is absent
    worker_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    metrics_host: str = "127.0.0.1"                     # where worker/dispatcher serve /metrics (0.0.0.0 in containers)
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=0, le=65535)] = 8000
    api_token: str = ""                                  # one plaintext admin token (development only)
    api_tokens: str = ""                                 # name:role:sha256hex,... (riskwatch hash-token)
    api_rate_per_minute: Annotated[float, Field(gt=0)] = 600.0
    api_rate_burst: Annotated[int, Field(ge=1)] = 100
    api_cors_origins: list[str] = Field(default_factory=list)  # empty: CORS off
    api_ready_max_lag: Annotated[int, Field(ge=0)] = 50_000     # /readyz fails when the worker lags more
    ingest_host: str = "127.0.0.1"
    ingest_port: Annotated[int, Field(ge=0, le=65535)] = 8001
    ingest_max_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    ingest_max_inflight: Annotated[int, Field(ge=1)] = 50_000          # events waiting for the broker, then 503
    ingest_broker_timeout: Annotated[float, Field(gt=0)] = 5.0         # broker ack wait before 503
    ingest_rate_per_minute: Annotated[float, Field(gt=0)] = 60_000.0   # requests per token (feeds post a lot)
    ingest_rate_burst: Annotated[int, Field(ge=1)] = 1_000
    mqtt_host: str = "127.0.0.1"
    mqtt_port: Annotated[int, Field(ge=1, le=65535)] = 1883
    mqtt_topics: list[str] = Field(default_factory=lambda: ["rw/+/sensor"])
    mqtt_client_id: str = "riskwatch-ingest"
    mqtt_device_map: Path | None = None                                # YAML device_id: entity_id
    mqtt_inflight: Annotated[int, Field(ge=1, le=65535)] = 200
    history_len: Annotated[int, Field(ge=1, le=10_000)] = 100
    model_publish_seconds: Annotated[float, Field(gt=0)] = 5.0
    session_timeout: Annotated[float, Field(ge=6, le=60)] = 8.0
    take_max: Annotated[int, Field(ge=1, le=10_000)] = 200       # messages per worker round
    take_within: Annotated[float, Field(gt=0, le=5)] = 0.005       # s a round waits to fill
    fetch_wait_ms: Annotated[int, Field(ge=1, le=5000)] = 10      # longest a worker fetch waits for data
    # read input offsets the consumer skipped directly (on by `up` with the embedded broker, which can skip
    # one; off on Kafka, where a gap is a transaction marker)
    repair_gaps: bool = False
    producer_linger_ms: Annotated[float, Field(ge=0, le=1000)] = 20.0  # worker producer batching delay
    gc_freeze_seconds: Annotated[float, Field(ge=0)] = 5.0        # gc.freeze() period in the worker (0: off)
    stop_timeout_s: Annotated[float, Field(ge=0)] = 20.0          # a worker's stop, then it exits anyway (0: wait)
    max_event_future_s: Annotated[float, Field(ge=0)] = 3600.0    # event times further ahead are refused (0: off)
    tick_seconds: Annotated[float, Field(ge=0)] = 60.0  # wall-clock ticks (silence); 0 = off
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"  # of the worker, feeds and dispatcher (see aio.py)
    alerts_path: Path | None = None                     # default: config/alerts.yaml
    dispatcher_name: str = ""                           # outbox consumer name (default host-pid)
    dispatcher_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    intake_lease_seconds: Annotated[float, Field(ge=1, le=300)] = 10.0  # dispatcher leases (intake, name)
    outbox_claim_seconds: Annotated[float, Field(gt=0)] = 30.0  # reclaim a dead deliverer's entries after
    alert_tick_seconds: Annotated[float, Field(gt=0)] = 0.5     # intake poll / cooldown / grouping clock

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def state_changelog(self) -> str:
        """The entity-state changelog (one message per source message; see streams/state_store.py)."""
        return f"{self.app_id}-entity-state-changelog"

    def masked(self) -> dict:
        d = self.model_dump(mode="json")
        for k in ("api_token", "api_tokens"):
            if d.get(k):
                d[k] = "***"
        return d
