"""Alert rules and receivers as validated data (``config/alerts.yaml``).

A *rule* turns the engine's ``alert_candidate`` events of some signals into
alerts: severity, labels, annotation templates, a dedup key template, a
cooldown (a cleared condition must stay clear this long before the alert
resolves, so flapping notifies once) and an expiry. A *receiver* is a webhook
(and/or an Alertmanager) with label matchers, Alertmanager-style grouping and
a retry policy. Invalid files raise :class:`~riskwatch.errors.ConfigError`
naming every bad field.

>>> cfg = load_alerts_config_text('''
... allow_private: [127.0.0.1]
... rules:
...   - {name: burst, signals: [burst], summary: "burst at {entity_id}", cooldown: 10m}
... receivers:
...   - {name: ops, url: "http://127.0.0.1:9/hook", secrets: [s3cret], group_wait: 5s}
... ''')
>>> cfg.rules[0].cooldown, cfg.receivers[0].group_wait, cfg.receivers[0].secrets[0]
(600.0, 5.0, SecretStr('**********'))
>>> load_alerts_config_text('rules: [{name: x, signals: [burst], summary: "{nope}"}]')
Traceback (most recent call last):
...
riskwatch.errors.ConfigError: invalid config: rules.0.summary: unknown placeholder {nope}; known: ... [value_error]
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, field_validator,
                      model_validator)

from ..config import parse_yaml, read_text
from ..errors import ConfigError, FieldError, field_errors_from_pydantic
from .safety import check_url

__all__ = ["AlertsConfig", "Rule", "Receiver", "load_alerts_config", "load_alerts_config_text",
           "DEFAULT_ALERTS_PATH", "TEMPLATE_FIELDS", "parse_duration"]

DEFAULT_ALERTS_PATH = Path(__file__).resolve().parent.parent.parent / "config" / "alerts.yaml"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
TEMPLATE_FIELDS = ("entity_id", "name", "address", "region", "industry", "signal", "rule", "severity", "tier",
                   "score", "value", "count", "api_url", "event_ids")


def parse_duration(v) -> float:
    """Seconds from a number or ``"90s"``, ``"5m"``, ``"2h"``, ``"7d"``, ``"250ms"``.

    >>> parse_duration("5m"), parse_duration(2), parse_duration("250ms")
    (300.0, 2.0, 0.25)
    """
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*", str(v))
    if not m:
        raise ValueError(f"not a duration: {v!r} (use e.g. 30s, 5m, 2h, 7d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Severity = Literal["info", "warning", "critical"]


def _check_template(t: str) -> str:
    for _, name, _, _ in string.Formatter().parse(t):
        if name is not None and name not in TEMPLATE_FIELDS:
            raise ValueError(f"unknown placeholder {{{name}}}; known: {', '.join(TEMPLATE_FIELDS)}")
    return t


Template = Annotated[str, BeforeValidator(lambda v: _check_template(str(v)))]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rule(_Strict):
    """Alerts from candidates of ``signals`` (engine signal codes, ``tier`` for tier changes)."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    signals: Annotated[list[str], Field(min_length=1)]
    min_tier: str | None = None               # only for entities at this tier or above
    severity: Severity | None = None          # override the candidate's
    summary: Template
    description: Template = "{signal} on {entity_id} ({name}); score {score}, tier {tier}"
    dedup_key: Template = "{entity_id}:{rule}"
    cooldown: Duration = 900.0                # cleared this long before resolving
    expire_after: Duration = 30 * 86400.0     # open without any candidate this long -> expired
    auto_resolve: bool = True                 # a cleared candidate resolves; False: only people do
    # still firing (nobody acknowledged it) this long after it fired -> labels escalated="true" and
    # escalation="1", notified again; a list escalates again at each later time (escalation="2", ...): a
    # district team, then the city (match: {escalation: ["1"]}), then the province (match: {escalation: ["2"]})
    escalate_after: Annotated[list[Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]],
                              BeforeValidator(lambda v: v if isinstance(v, list) else [v]),
                              Field(min_length=1, max_length=5)] | None = None
    labels: dict[str, str] = Field(default_factory=dict)


    @field_validator("escalate_after")
    @classmethod
    def _ascending(cls, v):
        if v is not None and any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("each level must come later than the one before")
        return v


class Receiver(_Strict):
    """Where notifications go: a signed webhook and/or an Alertmanager."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    url: str | None = None
    secrets: list[SecretStr] = Field(default_factory=list)  # all sign (rotation); "env:NAME", "file:PATH" read there
    alertmanager_url: str | None = None
    # how often open alerts are sent to the Alertmanager again (Prometheus' resend delay: 1m); each send is
    # valid for 4 of these, so Alertmanager resolves them that long after riskwatch stops sending
    alertmanager_resend: Annotated[float, BeforeValidator(parse_duration), Field(gt=0, le=3600)] = 60.0
    match: dict[str, list[str]] = Field(default_factory=dict)  # label -> allowed values; empty: all
    group_by: list[str] = Field(default_factory=lambda: ["rule", "region"])
    group_wait: Duration = 30.0
    group_interval: Duration = 300.0
    repeat_interval: Duration = 4 * 3600.0
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    timeout: Duration = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 12
    backoff_base: Duration = 1.0
    backoff_max: Duration = 300.0
    # TLS to the receiver (https URLs): the CA that signed its certificate when that is an operator's own
    # (default: httpx's bundle, certifi), and a client certificate for a receiver that requires one
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None   # PEM; may hold the key
    tls_key_file: Path | None = None

    @field_validator("secrets", mode="before")
    @classmethod
    def _env_secrets(cls, v):
        out = []
        for s in v or []:
            raw = s.get_secret_value() if isinstance(s, SecretStr) else str(s)
            if raw.startswith("env:"):
                name = raw[4:]
                if not os.environ.get(name):
                    raise ValueError(f"environment variable {name} is not set")
                raw = os.environ[name]
            elif raw.startswith("file:"):  # a Docker or Kubernetes secret (since 2026-12-06)
                path = Path(raw[5:])
                try:
                    raw = path.read_text().strip()
                except OSError as exc:
                    raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from exc
                if not raw:
                    raise ValueError(f"secret file {path} is empty")
            out.append(raw)
        return out

    @model_validator(mode="after")
    def _target(self):
        if not self.url and not self.alertmanager_url:
            raise ValueError("a receiver needs url and/or alertmanager_url")
        if self.url and not self.secrets:
            raise ValueError("a webhook receiver needs at least one secret (it signs every notification)")
        return self

    @model_validator(mode="after")
    def _tls(self):
        files = {"tls_ca_file": self.tls_ca_file, "tls_cert_file": self.tls_cert_file,
                 "tls_key_file": self.tls_key_file}
        given = [k for k, v in files.items() if v is not None]
        if not given:
            return self
        if not all(u.lower().startswith("https://") for u in (self.url, self.alertmanager_url) if u):
            raise ValueError(f"{given[0]} is set but the receiver's URLs are not all https://")
        from ..tls import check_files

        check_files(files, "tls_cert_file", "tls_key_file", self.ssl_context)
        return self

    def ssl_context(self):
        """The TLS context for this receiver's connections, or None for httpx's default verification."""
        if self.tls_ca_file is None and self.tls_cert_file is None:
            return None
        from ..tls import client_context

        return client_context(self.tls_ca_file, self.tls_cert_file, self.tls_key_file)


class AlertsConfig(_Strict):
    version: str = "alerts-1"
    external_url: str = "http://127.0.0.1:8000"   # the API, for links in annotations
    allow_private: list[str] = Field(default_factory=list)  # hosts / IPs / CIDRs allowed despite being private
    history_per_entity: Annotated[int, Field(ge=1, le=10_000)] = 50
    rules: list[Rule] = Field(default_factory=list)
    receivers: list[Receiver] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checks(self):
        names = [r.name for r in self.rules]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"rule names must be unique: {sorted(dup)}")
        rnames = [r.name for r in self.receivers]
        if len(set(rnames)) != len(rnames):
            raise ValueError("receiver names must be unique")
        return self

    def rules_for(self, signal: str) -> list[Rule]:
        return [r for r in self.rules if signal in r.signals]

    def receiver(self, name: str) -> Receiver:
        return next(r for r in self.receivers if r.name == name)


def _validate(data) -> AlertsConfig:
    try:
        cfg = AlertsConfig.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(field_errors_from_pydantic(exc)) from exc
    errors = []
    for i, r in enumerate(cfg.receivers):
        for fld in ("url", "alertmanager_url"):
            url = getattr(r, fld)
            if url:
                problem = check_url(url, cfg.allow_private)
                if problem:
                    errors.append(FieldError(f"receivers.{i}.{fld}", "url_refused", problem))
    if errors:
        raise ConfigError(errors)
    return cfg


def load_alerts_config_text(text: str) -> AlertsConfig:
    return _validate(parse_yaml(text))


def load_alerts_config(path: str | Path | None = None) -> AlertsConfig:
    return load_alerts_config_text(read_text(Path(path) if path else DEFAULT_ALERTS_PATH))
