"""Runtime settings: environment ``RISKWATCH_*`` over defaults, validated once, frozen.

>>> s = Settings(broker="127.0.0.1:9092", api_token="secret")
>>> s.topic("complaints"), s.masked()["api_token"]
('rw.complaints', '***')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "INPUT_TOPICS", "OUTPUT_TOPICS", "redact_url"]

INPUT_TOPICS = ("entities", "complaints", "sensor-readings", "inspections", "records", "commands")
OUTPUT_TOPICS = {"risk_change": "risk-changes", "spotcheck_change": "spotcheck-changes",
                 "alert_candidate": "alert-candidates"}


class Settings(BaseSettings):
    """Each setting from ``RISKWATCH_<NAME>`` in the environment, else from a file ``riskwatch_<name>`` in
    ``RISKWATCH_SECRETS_DIR`` (Docker and Kubernetes secrets: a password in a file is not in every process's
    environment, ``/proc/<pid>/environ``, nor in ``docker inspect``), else its default."""

    # an empty variable (compose's `RISKWATCH_X:` with nothing after it) is unset: until 2026-12-06 an empty file
    # setting was read as the current directory, "."
    model_config = SettingsConfigDict(env_prefix="RISKWATCH_", frozen=True, extra="ignore", env_ignore_empty=True)

    def __init__(self, **values) -> None:
        where = os.environ.get("RISKWATCH_SECRETS_DIR")
        if where and "_secrets_dir" not in values:
            if not Path(where).is_dir():  # pydantic-settings would only warn, and read nothing
                raise ValidationError.from_exception_data("Settings", [
                    {"type": "value_error", "loc": ("secrets_dir",), "input": where,
                     "ctx": {"error": ValueError(f"no such directory: {where}")}}])
            values["_secrets_dir"] = where
        super().__init__(**values)

    broker: str = "127.0.0.1:9092"
    # Kafka security (a production cluster; the embedded broker is plaintext on loopback): see kafka_security.py
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: Path | None = None      # CA of the brokers' certificates (unset: the system's CAs)
    kafka_ssl_certfile: Path | None = None    # client certificate (PEM, may hold the key), for mutual TLS
    kafka_ssl_keyfile: Path | None = None     # its key, when not in the certificate file
    kafka_ssl_check_hostname: bool = True
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
    https_certfile: Path | None = None  # the API and the ingest gateway serve https with it (PEM, chain first)
    https_keyfile: Path | None = None   # its key, when not in the certificate file
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
    mqtt_username: str = ""                   # a broker that requires a login (with mqtt_password)
    mqtt_password: SecretStr = SecretStr("")
    mqtt_tls: bool = False                    # TLS to the MQTT broker (port 8883 as a rule)
    mqtt_ca_file: Path | None = None          # the CA of its certificate (unset: the system's CAs)
    mqtt_cert_file: Path | None = None        # a client certificate (PEM, may hold the key), for mutual TLS
    mqtt_key_file: Path | None = None
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

    @model_validator(mode="after")
    def _kafka_security(self):
        """Kafka security settings that cannot work are refused at load, naming the variable, rather
        than at a worker's first connection (which aiokafka reports as "Unable to bootstrap")."""
        protocol = self.kafka_security_protocol
        password = self.kafka_sasl_password.get_secret_value()
        if protocol.startswith("SASL") and not (self.kafka_sasl_username and password):
            raise ValueError(f"RISKWATCH_KAFKA_SECURITY_PROTOCOL={protocol} needs RISKWATCH_KAFKA_SASL_USERNAME "
                             "and RISKWATCH_KAFKA_SASL_PASSWORD")
        files = {"RISKWATCH_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile, "RISKWATCH_KAFKA_SSL_CERTFILE":
                 self.kafka_ssl_certfile, "RISKWATCH_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile}
        given = [name for name, f in files.items() if f is not None]
        if not protocol.endswith("SSL"):
            if given:
                raise ValueError(f"{given[0]} is set but RISKWATCH_KAFKA_SECURITY_PROTOCOL is {protocol} "
                                 "(SSL or SASL_SSL uses it)")
            return self
        from .tls import check_files, client_context

        check_files(files, "RISKWATCH_KAFKA_SSL_CERTFILE", "RISKWATCH_KAFKA_SSL_KEYFILE",
                    lambda: client_context(self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile,
                                           self.kafka_ssl_check_hostname))
        return self

    @model_validator(mode="after")
    def _https(self):
        from .tls import check_files, server_context

        files = {"RISKWATCH_HTTPS_CERTFILE": self.https_certfile, "RISKWATCH_HTTPS_KEYFILE": self.https_keyfile}
        if any(files.values()):
            check_files(files, "RISKWATCH_HTTPS_CERTFILE", "RISKWATCH_HTTPS_KEYFILE",
                        lambda: server_context(self.https_certfile, self.https_keyfile))
        return self

    @model_validator(mode="after")
    def _mqtt_security(self):
        if self.mqtt_password.get_secret_value() and not self.mqtt_username:
            raise ValueError("RISKWATCH_MQTT_PASSWORD is set without RISKWATCH_MQTT_USERNAME")
        files = {"RISKWATCH_MQTT_CA_FILE": self.mqtt_ca_file, "RISKWATCH_MQTT_CERT_FILE": self.mqtt_cert_file,
                 "RISKWATCH_MQTT_KEY_FILE": self.mqtt_key_file}
        given = [name for name, f in files.items() if f is not None]
        if given and not self.mqtt_tls:
            raise ValueError(f"{given[0]} is set but RISKWATCH_MQTT_TLS is off")
        if self.mqtt_tls:
            from .tls import check_files

            check_files(files, "RISKWATCH_MQTT_CERT_FILE", "RISKWATCH_MQTT_KEY_FILE", self.mqtt_tls_context)
        return self

    def mqtt_tls_context(self):
        """The MQTT bridge's TLS context (None: plain MQTT)."""
        if not self.mqtt_tls:
            return None
        from .tls import client_context

        return client_context(self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file)

    def uvicorn_tls(self) -> dict:
        """``uvicorn.run`` options for https (none: plain http)."""
        if self.https_certfile is None:
            return {}
        return {"ssl_certfile": str(self.https_certfile),
                **({"ssl_keyfile": str(self.https_keyfile)} if self.https_keyfile else {})}

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
        d["redis_url"] = redact_url(self.redis_url)
        return d


def redact_url(url: str) -> str:
    """``url`` with its password, if any, shown as ``***`` (a Redis URL printed or logged).

    >>> redact_url("redis://:s3cret@10.0.0.5:6379/0"), redact_url("rediss://rw:s3cret@redis:6380/0")
    ('redis://:***@10.0.0.5:6379/0', 'rediss://rw:***@redis:6380/0')
    >>> redact_url("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{parts.netloc.rsplit('@', 1)[1]}").geturl()
