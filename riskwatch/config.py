"""The validated configuration: detectors, signal weights, tiers, spot-check ratios.

Config is data (``config/riskwatch.yaml``). It is validated once at load and
at every change; an invalid config raises :class:`~riskwatch.errors.ConfigError`
naming every bad field, and whatever config was running stays in force.

>>> cfg = load_config_text('''
... version: "t1"
... tiers:
...   - {name: A, ratio: 0.02}
...   - {name: B, up: 30, down: 25, ratio: 0.1}
... ''')
>>> cfg.version, [t.name for t in cfg.tiers], cfg.tier_ratio("B")
('t1', ['A', 'B'], 0.1)
>>> load_config_text("tiers: [{name: A, ratio: 2}]")
Traceback (most recent call last):
...
riskwatch.errors.ConfigError: invalid config: tiers.0.ratio: Input should be less than or equal to 1 [less_than_equal]
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError, FieldError, field_error_from_dict, field_errors_from_pydantic

__all__ = ["Config", "SignalSpec", "AlertSpec", "TierSpec", "load_config", "load_config_text",
           "default_config", "DEFAULT_PATH", "CURRENT_CONFIG", "CONFIG_SEQ", "CONFIG_VERSIONS", "config_from_dict",
           "applied_command", "applied_config"]

CURRENT_CONFIG = "rw:config:current"   # Redis: the last config applied through the API (JSON command)
CONFIG_SEQ = "rw:config:seq"           # Redis: the last change's sequence number (INCR)
CONFIG_VERSIONS = "rw:config:versions"  # Redis hash: seq -> the change's command, its whole config included
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config" / "riskwatch.yaml"
DAY = 86400.0


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AlertSpec(_Strict):
    """Raise an alert candidate when a signal reaches ``at``; clear it below ``clear_at``."""

    at: Annotated[float, Field(gt=0, le=1)]
    clear_at: Annotated[float, Field(ge=0, le=1)] | None = None
    severity: Literal["info", "warning", "critical"] = "warning"

    @model_validator(mode="after")
    def _order(self):
        if self.clear_at is not None and self.clear_at > self.at:
            raise ValueError("clear_at must not exceed at")
        return self

    @property
    def clear(self) -> float:
        return self.at * 0.8 if self.clear_at is None else self.clear_at


class SignalSpec(_Strict):
    """How one named signal (value in [0, 1]) becomes score points."""

    weight: Annotated[float, Field(ge=0, le=100)]
    half_life_days: Annotated[float, Field(gt=0)] | None = None
    alert: AlertSpec | None = None


class DetectorConfig(_Strict):
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict)
    signals: dict[str, SignalSpec] = Field(default_factory=dict)


class TierSpec(_Strict):
    """A tier is entered upward at ``up`` and left downward below ``down`` (hysteresis)."""

    name: Annotated[str, Field(min_length=1, max_length=8)]
    up: Annotated[float, Field(ge=0, le=100)] = 0.0
    down: Annotated[float, Field(ge=0, le=100)] = 0.0
    ratio: Annotated[float, Field(ge=0, le=1)]


class ScoringSpec(_Strict):
    min_delta: Annotated[float, Field(ge=0, le=100)] = 2.0
    max_reasons: Annotated[int, Field(ge=1, le=20)] = 5
    min_dwell_up_days: Annotated[float, Field(ge=0)] = 0.0
    min_dwell_down_days: Annotated[float, Field(ge=0)] = 30.0


class ObjectionSpec(_Strict):
    exclude_disputed: bool = True
    # a corrected/revoked item was never earned: re-decide the tier without the de-escalation dwell
    waive_dwell_on_correction: bool = True
    # how long ops have to resolve one: an open objection older is overdue (API, metrics, alert rule)
    resolve_within_days: Annotated[float, Field(gt=0, le=365)] = 15.0


class TierAlertSpec(_Strict):
    tiers: dict[str, Literal["info", "warning", "critical"]] = Field(default_factory=dict)


def _default_tiers() -> list[TierSpec]:
    return [TierSpec(name="A", ratio=0.03), TierSpec(name="B", up=25, down=20, ratio=0.05),
            TierSpec(name="C", up=50, down=42, ratio=0.15), TierSpec(name="D", up=75, down=65, ratio=0.4)]


class Config(_Strict):
    """The whole engine configuration. Immutable; a change is a new version."""

    version: Annotated[str, Field(min_length=1, max_length=64)] = "default"
    entity_id_scheme: Literal["uscc", "opaque"] = "uscc"
    detectors: dict[str, DetectorConfig] = Field(default_factory=dict)
    tiers: list[TierSpec] = Field(default_factory=_default_tiers, min_length=1)
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    objections: ObjectionSpec = Field(default_factory=ObjectionSpec)
    tier_alerts: TierAlertSpec = Field(default_factory=TierAlertSpec)

    @model_validator(mode="after")
    def _check(self):
        errs: list[FieldError] = []
        t = self.tiers
        if len({x.name for x in t}) != len(t):
            errs.append(FieldError("tiers", "unique", "tier names must be unique"))
        if t[0].up != 0 or t[0].down != 0:
            errs.append(FieldError("tiers.0", "first_tier", "the first tier has up = down = 0"))
        for i in range(1, len(t)):
            if t[i].down > t[i].up:
                errs.append(FieldError(f"tiers.{i}.down", "hysteresis", "down must be <= up"))
            if t[i].up <= t[i - 1].up or t[i].down < t[i - 1].down:
                errs.append(FieldError(f"tiers.{i}.up", "increasing", "up and down must increase with the tier"))
            if t[i].ratio < t[i - 1].ratio:
                errs.append(FieldError(f"tiers.{i}.ratio", "increasing", "riskier tiers are checked at least as often"))
        names = {x.name for x in t}
        for name in self.tier_alerts.tiers:
            if name not in names:
                errs.append(FieldError(f"tier_alerts.tiers.{name}", "unknown_tier", f"no tier named {name!r}"))
        errs += _check_detectors(self.detectors)
        if errs:
            raise _Collected(errs)
        return self

    def tier_ratio(self, name: str) -> float:
        return next(t.ratio for t in self.tiers if t.name == name)

    def ratio_in_force(self, tier: str | None, stored: float | None) -> float | None:
        """The spot-check ratio of an entity in ``tier`` under this config. The view stores the
        ratio at the entity's last risk change (``stored``), which a later ratio change does not
        touch: it is used only for a tier this config no longer has (None: no tier yet)."""
        for t in self.tiers:
            if t.name == tier:
                return t.ratio
        return stored

    @cached_property
    def detector_objects(self) -> dict:
        """Detector specs built from this config, in registry order (enabled ones only)."""
        from .detectors import REGISTRY

        out = {}
        for name, cls in REGISTRY.items():
            dc = self.detectors.get(name, DetectorConfig())
            if dc.enabled:
                out[name] = cls(**dc.params)
        return out

    @cached_property
    def signal_specs(self) -> dict[str, SignalSpec]:
        """Every signal's spec under its reason code ``detector.signal`` (defaults filled in)."""
        from .detectors import REGISTRY

        out = {}
        for name in self.detector_objects:
            dc = self.detectors.get(name, DetectorConfig())
            for sig, default in REGISTRY[name].default_signals.items():
                out[f"{name}.{sig}"] = dc.signals.get(sig, default)
        return out


class _Collected(ValueError):
    """Carries several FieldErrors out of a pydantic validator."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


def _check_detectors(detectors: dict[str, DetectorConfig]) -> list[FieldError]:
    from .detectors import REGISTRY

    errs = []
    for name, dc in detectors.items():
        cls = REGISTRY.get(name)
        if cls is None:
            errs.append(FieldError(f"detectors.{name}", "unknown_detector",
                                   f"no detector {name!r}; known: {', '.join(REGISTRY)}"))
            continue
        try:
            cls.Params.model_validate(dc.params)
        except ValidationError as exc:
            for e in field_errors_from_pydantic(exc):
                errs.append(FieldError(f"detectors.{name}.params.{e.field}", e.rule, e.message))
        for sig, spec in dc.signals.items():
            if sig not in cls.default_signals:
                errs.append(FieldError(f"detectors.{name}.signals.{sig}", "unknown_signal",
                                       f"{name} emits {', '.join(cls.default_signals)}"))
            elif sig in cls.holding and spec.half_life_days is not None:
                errs.append(FieldError(f"detectors.{name}.signals.{sig}.half_life_days", "holds",
                                       f"{sig} holds its value until an event ends it (it does not decay); "
                                       f"remove half_life_days"))
    return errs


def _validate(data: Any) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([FieldError("(root)", "mapping", "the config must be a mapping")])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        errs = []
        for e in exc.errors(include_url=False):
            cause = (e.get("ctx") or {}).get("error")
            if isinstance(cause, _Collected):
                errs += cause.errors
            else:
                errs.append(field_error_from_dict(e))
        raise ConfigError(errs) from exc


def parse_yaml(text: str):
    """YAML text as data; a syntax error is a :class:`ConfigError` naming the line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(yaml)"
        raise ConfigError([FieldError(where, "yaml", str(getattr(exc, "problem", exc)))]) from exc


def read_text(path: Path) -> str:
    """A config file's text; an unreadable file is a :class:`ConfigError`."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([FieldError(str(path), "readable", str(exc))]) from exc


def load_config_text(text: str) -> Config:
    """Parse and validate YAML text."""
    return _validate(parse_yaml(text))


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a YAML file (default: ``config/riskwatch.yaml``)."""
    return load_config_text(read_text(Path(path) if path else DEFAULT_PATH))


def config_from_dict(data: dict) -> Config:
    """Validate a config given as a mapping (API changes, commands topic)."""
    return _validate(data)


def applied_command(settings, wait: bool = False) -> dict | None:
    """The last config change applied through the API (the command kept in Redis), or None.

    Redis unreachable: ``wait`` retries with backoff up to 5 s (a worker must not start on the
    file's thresholds when ops applied others), else None with a warning."""
    import logging
    import time

    import orjson
    import redis
    import redis.exceptions as rex

    log = logging.getLogger("riskwatch.config")
    delay = 0.5
    while True:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
        try:
            raw = client.get(CURRENT_CONFIG)
            return orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError as exc:
            log.error("the applied config in Redis is not JSON (%s); using the file", exc)
            return None
        except (rex.RedisError, OSError) as exc:
            if not wait:
                log.warning("Redis does not answer (%s): using the config file, not a config applied through "
                            "the API", exc)
                return None
            log.warning("Redis does not answer (%s): waiting for it before starting (it holds the config "
                        "applied through the API, and the view)", exc)
        finally:
            client.close()
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def applied_config(settings) -> Config:
    """The config the workers run: the one applied through the API (kept in Redis), else the file.

    For the paths that validate before the worker does (MQTT bridge, file import) and for
    ``rebuild-view``. Until 2026-11-28 the first two read the file only, so after ops switched
    ``entity_id_scheme`` through the API they rejected what the workers accept. Redis unreachable:
    the file, with a warning (the worker validates again with the config in force)."""
    import logging

    cmd = applied_command(settings)
    if cmd:
        try:
            return config_from_dict(cmd.get("config") or {})
        except ConfigError as exc:
            logging.getLogger("riskwatch.config").error("the applied config in Redis is invalid (%s); using the file",
                                                        exc)
    return load_config(settings.config_path)


def default_config() -> Config:
    """The built-in defaults (no file)."""
    return Config()
