"""The one exception tree of riskwatch.

::

    RiskwatchError
    ├── InvalidEvent          an input event failed validation (field errors attached)
    ├── ConfigError           a config file or change failed validation
    ├── StateUnreadable       a stored entity state is not one a worker writes
    ├── EngineFailed          the engine raised on an event or a tick (a bug): where, and the cause
    └── Backpressure          a sink cannot take more now; retry after ``retry_after`` seconds

Library code raises these; boundaries (CLI, stream agents, API) translate them
into exit codes, dead-letter records and HTTP responses. Errors of third-party
libraries are wrapped with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = ["RiskwatchError", "InvalidEvent", "ConfigError", "EngineFailed", "Backpressure", "FieldError",
           "field_errors_from_pydantic", "field_error_from_dict"]

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field: where (dotted path), which rule, and a message."""

    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message} [{self.rule}]"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


class RiskwatchError(Exception):
    """Root of every error riskwatch raises on purpose."""


class _FieldErrors(RiskwatchError):
    def __init__(self, errors: list[FieldError], what: str) -> None:
        self.errors = errors
        super().__init__(f"{what}: " + "; ".join(str(e) for e in errors))


class InvalidEvent(_FieldErrors):
    """An input event is not valid; ``errors`` names every bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(errors, "invalid event")


class ConfigError(_FieldErrors):
    """A configuration is not valid; ``errors`` names every bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(errors, "invalid config")


class StateUnreadable(RiskwatchError):
    """An entity's stored state is not what a worker writes (not a JSON object): its events are
    dead-lettered (reason ``state_unreadable``), the other entities' go on."""


class EngineFailed(RiskwatchError):
    """The engine raised on an event or a tick: a bug. ``where`` names the input (a replay's line, the
    event's id and entity); the engine's exception is ``__cause__``. ``riskwatch replay`` stops on it
    (exit status 1); the worker dead-letters the event instead (reason ``engine_error``) and goes on."""

    def __init__(self, where: str, exc: BaseException) -> None:
        super().__init__(f"{where}: {type(exc).__name__}: {exc}")
        self.where = where


class Backpressure(RiskwatchError):
    """A sink (the broker behind ingestion) cannot take more now: answer 503 / stop acking, retry later.

    ``reason`` is a short label for metrics."""

    def __init__(self, message: str, retry_after: float, reason: str = "broker") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason


def field_errors_from_pydantic(exc, union_tags: frozenset[str] = frozenset()) -> list[FieldError]:
    """Translate a :class:`pydantic.ValidationError` into :class:`FieldError` s.

    ``union_tags``: the tags of a discriminated union, dropped from the front of locations."""
    return [field_error_from_dict(err, union_tags) for err in exc.errors(include_url=False)]


def field_error_from_dict(err: dict, union_tags: frozenset[str] = frozenset()) -> FieldError:
    """One pydantic error dict as a :class:`FieldError`."""
    parts = list(err.get("loc", ()))
    if parts and parts[0] in union_tags:
        parts = parts[1:]
    loc = ".".join(str(p) for p in parts) or "(root)"
    etype = err.get("type", "invalid")
    if etype in ("union_tag_invalid", "union_tag_not_found"):
        loc = "type"
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    return FieldError(loc, etype, msg)


