"""Pydantic models of every input and output event.

Input events are JSON objects told apart by ``type``. Entity ids are Unified
Social Credit Codes (check character verified) unless the validation context
says ``entity_id_scheme="opaque"``.

>>> ev = parse_event(b'{"type": "complaint", "complaint_id": "c1", '
...     b'"entity_id": "91350100M000100Y43", "ts": "2026-01-05T10:00:00+08:00", '
...     b'"category": "food_safety"}')
>>> ev.type, ev.channel, ev.severity
('complaint', '12315', 1)
>>> parse_event(b'{"type": "complaint", "entity_id": "91350100M000100Y44"}')
Traceback (most recent call last):
...
riskwatch.errors.InvalidEvent: invalid event: entity_id: check character is '4', expected '3' [value_error]; complaint_id: Field required [missing]; ts: Field required [missing]; category: Field required [missing]
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    AwareDatetime,
    BeforeValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from . import uscc
from .errors import FieldError, InvalidEvent, field_errors_from_pydantic

__all__ = [
    "Entity", "Complaint", "SensorReading", "Violations", "Inspection", "Record",
    "Objection", "ObjectionResolution", "StateReset", "ResetRegister", "Tick", "InputEvent", "parse_event",
    "validate_entity_id", "RiskChange", "SpotcheckChange", "AlertCandidate",
    "Reason", "ObjectionEffect", "OBJECTION_EFFECTS", "ResetNote", "OutputEvent", "output_reader", "INPUT_TYPES",
    "event_id", "too_far_ahead", "EntityStatus", "OPERATING", "NOT_OPERATING", "register_status",
]

Id = Annotated[str, Field(min_length=1, max_length=128)]
Score = Annotated[float, Field(ge=0, le=100)]


def validate_entity_id(value: str, scheme: str = "uscc") -> str:
    """Check an entity id under ``scheme`` (``uscc`` or ``opaque``)."""
    if scheme == "opaque":
        if not value or len(value) > 64:
            raise ValueError("opaque entity id must be 1-64 characters")
        return value
    return uscc.validate(value)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    entity_id: str

    @field_validator("entity_id")
    @classmethod
    def _entity_id(cls, v: str, info: ValidationInfo) -> str:
        scheme = (info.context or {}).get("entity_id_scheme", "uscc")
        return validate_entity_id(v, scheme)


OPERATING = "operating"
# A register export's status words (the SAMR register's 登记状态, as 国家企业信用信息公示系统 shows it):
# checked in this order, so 吊销，未注销 (licence revoked, not deregistered) is closed, not operating
_STATUS_WORDS = (("注销", "closed"), ("吊销", "closed"), ("撤销", "closed"), ("停业", "suspended"),
                 ("歇业", "suspended"), ("存续", OPERATING), ("在业", OPERATING), ("在营", OPERATING),
                 ("开业", OPERATING), ("在册", OPERATING))


def _status_word(v: Any) -> Any:
    """A register's own word for its status, as riskwatch's.

    >>> [_status_word(w) for w in ("存续（在营、开业、在册）", "吊销，未注销", "歇业", "closed", "bankrupt")]
    ['operating', 'closed', 'suspended', 'closed', 'bankrupt']
    """
    if isinstance(v, str) and not v.isascii():
        for word, status in _STATUS_WORDS:
            if word in v:
                return status
    return v


EntityStatus = Annotated[Literal["operating", "suspended", "closed"], BeforeValidator(_status_word)]
NOT_OPERATING = tuple(s for s in get_args(get_args(EntityStatus)[0]) if s != OPERATING)


def register_status(state: dict | None) -> tuple[str, float]:
    """An entity state's register status and since when (epoch seconds; 0.0: since it was first seen).
    The state holds ``rs`` = [status, since] only once an upsert has said other than ``operating``; an
    entity open again keeps ``["operating", since]``, from when its sensors' silence counts again.

    >>> register_status({}), register_status({"rs": ["closed", 1.5e9]})
    (('operating', 0.0), ('closed', 1500000000.0))
    """
    rs = state.get("rs") if state else None
    return (rs[0], rs[1]) if rs else (OPERATING, 0.0)


class Entity(_Event):
    """Upsert of an entity's register data: the whole record (a field left out is not kept from the last
    upsert; no ``status`` is ``operating``)."""

    type: Literal["entity"] = "entity"
    name: Annotated[str, Field(min_length=1, max_length=200)]
    industry: Annotated[str, Field(min_length=1, max_length=64)]
    region: Annotated[str, Field(pattern=r"^\d{6}$", description="6-digit administrative division code")]
    address: Annotated[str, Field(min_length=1, max_length=200,
                                  description="where inspectors find it (the register's address)")] | None = None
    status: EntityStatus = Field(
        OPERATING, description="the register's status: operating (存续/在业), suspended (停业/歇业) or closed "
                               "(注销/吊销); the register's own words are read too (吊销，未注销 is closed). An entity "
                               "not operating is left out of spot-check draws and of its peer group, and its "
                               "devices' silence is not a signal")
    ts: AwareDatetime | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class Complaint(_Event):
    """A consumer complaint (12315 hotline or another channel)."""

    type: Literal["complaint"] = "complaint"
    complaint_id: Id
    ts: AwareDatetime
    category: Annotated[str, Field(min_length=1, max_length=64)]
    severity: Annotated[int, Field(ge=1, le=3)] = 1
    channel: Annotated[str, Field(min_length=1, max_length=32)] = "12315"
    text: Annotated[str, Field(max_length=10_000)] | None = None


class SensorReading(_Event):
    """One reading of one metric from one device."""

    type: Literal["sensor_reading"] = "sensor_reading"
    device_id: Id
    ts: AwareDatetime
    metric: Annotated[str, Field(min_length=1, max_length=64)]
    value: Annotated[float, Field(allow_inf_nan=False)]
    unit: Annotated[str, Field(max_length=16)] | None = None


class Violations(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    critical: Annotated[int, Field(ge=0)] = 0
    major: Annotated[int, Field(ge=0)] = 0
    minor: Annotated[int, Field(ge=0)] = 0


InspectionKind = Literal["routine", "complaint", "follow_up"]  # a spot check is ``routine``


class Inspection(_Event):
    """The result of an on-site inspection."""

    type: Literal["inspection"] = "inspection"
    inspection_id: Id
    ts: AwareDatetime
    kind: InspectionKind
    outcome: Literal["pass", "conditional", "fail"]
    violations: Violations = Field(default_factory=Violations)


RecordKind = Literal[
    "penalty", "pledge_made", "pledge_kept", "pledge_broken", "judicial_default", "restoration"
]


class Record(_Event):
    """An administrative record: penalty, credit pledge, judicial default, restoration."""

    type: Literal["record"] = "record"
    record_id: Id
    ts: AwareDatetime
    kind: RecordKind
    severity: Annotated[int, Field(ge=1, le=3)] = 1
    expires_at: AwareDatetime | None = None


class Objection(_Event):
    """The entity contests a record or complaint (by its id)."""

    type: Literal["objection"] = "objection"
    objection_id: Id
    ts: AwareDatetime
    target_id: Id
    target_kind: Literal["record", "complaint"]
    reason: Annotated[str, Field(max_length=2000)] = ""


class ObjectionResolution(_Event):
    """The outcome of an objection."""

    type: Literal["objection_resolution"] = "objection_resolution"
    objection_id: Id
    ts: AwareDatetime
    target_id: Id
    resolution: Literal["upheld", "corrected", "revoked"]
    note: Annotated[str, Field(max_length=2000)] = ""


class ResetRegister(BaseModel):
    """An entity's register data as the view holds it, for a reset of a state the worker cannot read."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    industry: Annotated[str, Field(min_length=1, max_length=64)]
    region: Annotated[str, Field(pattern=r"^\d{6}$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    address: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    status: EntityStatus = OPERATING
    status_since: AwareDatetime | None = None


class StateReset(_Event):
    """An operator throws an entity's risk state away: the engine starts it again from nothing (its
    register data, the offsets already applied and, unless ``keep_tier`` is false, its tier stay), and
    says so in a risk change. For a state no worker can read or apply events to (dead-lettered as
    ``state_unreadable`` or ``engine_error``), whose events then go back with ``riskwatch deadletter
    --replay``. Read from ``rw.commands`` only; ``POST /v1/entities/{id}/reset-state`` (ops) sends it
    and audits it."""

    type: Literal["state_reset"] = "state_reset"
    reset_id: Id
    ts: AwareDatetime
    author: Annotated[str, Field(min_length=1, max_length=200)]
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    after_seq: Annotated[int, Field(ge=0, description="the entity's last risk change (the view's ``seq``): "
                                                      "the new state counts on from it")] = 0
    keep_tier: bool = Field(True, description="the entity stays in its tier (and spot-check ratio) until the "
                                              "de-escalation dwell passes from the reset; false: the lowest tier")
    tier: Annotated[str, Field(min_length=1, max_length=32)] | None = Field(
        None, description="the entity's tier as the view shows it: kept when the stored state cannot be read")
    open_alerts: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        None, max_length=200, description="the signals of the entity's open alerts (``tier`` for the tier alert), "
                                          "as the alert store holds them: resolved when the stored state cannot "
                                          "be read (absent: only the tier alert's is known to be possible)")
    register_data: ResetRegister | None = Field(
        None, description="its register data as the view shows it: its peer group when the stored state cannot "
                          "be read (else its complaints are not compared with its peers' until an upsert comes, "
                          "and that upsert counts it in its peer group a second time)")


class Tick(_Event):
    """Event-time clock for one entity: re-evaluates time-based signals (silence, decay).

    ``redecide``: sent by a worker after a config change (at the entity's own clock): an entity
    with a risk state gets a risk change even when nothing moved, so the view shows its tier,
    ratio, reasons and config version under the config in force."""

    type: Literal["tick"] = "tick"
    ts: AwareDatetime
    redecide: bool = False


InputEvent = Annotated[
    Union[Entity, Complaint, SensorReading, Inspection, Record, Objection, ObjectionResolution, StateReset, Tick],
    Field(discriminator="type"),
]
INPUT_TYPES = ("entity", "complaint", "sensor_reading", "inspection", "record", "objection",
               "objection_resolution", "state_reset", "tick")
_TAGS = frozenset(INPUT_TYPES)
_ADAPTER: TypeAdapter = TypeAdapter(InputEvent)
_CONTEXTS = {s: {"entity_id_scheme": s} for s in ("uscc", "opaque")}


def parse_event(raw: bytes | str | dict, entity_id_scheme: str = "uscc"):
    """Validate one input event from JSON (bytes/str) or a dict; raise :class:`InvalidEvent`."""
    ctx = _CONTEXTS[entity_id_scheme]
    try:
        if isinstance(raw, dict):
            return _ADAPTER.validate_python(raw, context=ctx)
        return _ADAPTER.validate_json(raw, context=ctx)
    except ValidationError as exc:
        raise InvalidEvent(field_errors_from_pydantic(exc, _TAGS)) from exc


def too_far_ahead(ev, now: float, max_future_s: float) -> FieldError | None:
    """The error for an event time more than ``max_future_s`` after ``now`` (a live path's wall clock;
    0: no limit), else None.

    An entity's clock never runs backwards, so one event dated 2062 instead of 2026 made every later
    event of that entity "late": 9 of 10 sensor readings of a real excursion were then ignored as
    stale (2026-11-28). The engine itself never reads a clock; the worker and the ingest paths do.

    >>> from datetime import datetime, timezone
    >>> from types import SimpleNamespace as E
    >>> now = datetime(2026, 11, 28, tzinfo=timezone.utc).timestamp()
    >>> print(too_far_ahead(E(ts=datetime(2062, 11, 3, tzinfo=timezone.utc)), now, 3600))  # doctest: +ELLIPSIS
    ts: 2062-11-03T00:00:00+00:00 is 1133913600 s after this process's clock; at most 3600 s ... [in_future]
    >>> too_far_ahead(E(ts=datetime(2026, 11, 28, 0, 30, tzinfo=timezone.utc)), now, 3600) is None
    True
    """
    ts = getattr(ev, "ts", None)
    if not max_future_s or ts is None:
        return None
    ahead = ts.timestamp() - now
    if ahead <= max_future_s:
        return None
    return FieldError("ts", "in_future", f"{ts.isoformat()} is {ahead:.0f} s after this process's clock; at most "
                                          f"{max_future_s:.0f} s is allowed (RISKWATCH_MAX_EVENT_FUTURE_S)")


_ID_FIELD = {"complaint": "complaint_id", "inspection": "inspection_id", "record": "record_id",
             "objection": "objection_id", "objection_resolution": "objection_id", "state_reset": "reset_id"}


def event_id(ev) -> str:
    """A stable id of an input event (sensor readings: ``device@epoch``)."""
    f = _ID_FIELD.get(ev.type)
    if f:
        return getattr(ev, f)
    if ev.type == "sensor_reading":
        return f"{ev.device_id}@{int(ev.ts.timestamp())}"
    return f"{ev.type}:{ev.entity_id}"


# ---------------------------------------------------------------- outputs


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Reason(_Out):
    """One named contribution to a score; ``other`` sums those past ``scoring.max_reasons`` (their
    ``codes``; signal 0, no event ids)."""

    code: str
    contribution: float
    share: Annotated[float, Field(ge=0, le=1)]
    signal: float
    event_ids: list[str] = Field(default_factory=list)
    codes: list[str] | None = Field(None, description="other: the codes it sums (since 2026-12-07)")


OBJECTION_EFFECTS = {
    "excluded": "the disputed item is out of the score while the objection is open",
    "counted_while_open": "the item still counts while the objection is open (objections.exclude_disputed is off)",
    "not_held": "the item is not among those the entity keeps individually (its newest complaints and records), "
                "or never arrived: recorded, the score does not change",
    "already_disputed": "the item already has an open objection: nothing changes",
    "restored": "upheld: the item counts again",
    "kept": "upheld: the item was counted throughout",
    "removed": "corrected or revoked: the item no longer counts",
}


class ObjectionEffect(_Out):
    """What an objection or its resolution did to the entity's score (on the risk change it forces)."""

    objection_id: str
    target_id: str
    step: Literal["objection", "objection_resolution"]
    resolution: Literal["upheld", "corrected", "revoked"] | None = None
    effect: Literal[tuple(OBJECTION_EFFECTS)]  # type: ignore[valid-type]
    score_before: Score = Field(description="the entity's score just before (``score`` on the risk change: after)")


class ResetNote(_Out):
    """Who reset an entity's state, and why (on the risk change the reset makes)."""

    reset_id: str
    author: str
    reason: str


class RiskChange(_Out):
    type: Literal["risk_change"] = "risk_change"
    entity_id: str
    ts: datetime
    seq: int = Field(description="the entity's event count when decided: orders its changes")
    score: Score
    previous_score: Score
    tier: str
    tier_since: datetime | None = Field(None, description="since when the entity is in this tier (absent in "
                                                          "risk changes before 2026-12-05)")
    reasons: list[Reason]
    cause_event_id: str
    config_version: str
    objection: ObjectionEffect | None = Field(None, description="set when an objection or its resolution caused "
                                                               "this change (since 2026-12-05)")
    reset: ResetNote | None = Field(None, description="set when an operator's state reset made this change "
                                                      "(since 2026-12-06)")


class SpotcheckChange(_Out):
    type: Literal["spotcheck_change"] = "spotcheck_change"
    entity_id: str
    ts: datetime
    from_tier: str
    to_tier: str
    from_ratio: float
    to_ratio: float
    score: Score
    reasons: list[Reason]
    cause_event_id: str
    config_version: str


class AlertCandidate(_Out):
    type: Literal["alert_candidate"] = "alert_candidate"
    entity_id: str
    ts: datetime
    signal: str
    status: Literal["firing", "resolved"]
    severity: str
    value: float
    dedup_key: str
    score: Score
    tier: str
    event_ids: list[str] = Field(default_factory=list)
    config_version: str
    current: bool | None = Field(None, description=(
        "firing candidates from a worker: whether the condition still holds at the worker's clock; false for "
        "one from old events (a backfill), for which the dispatcher opens no alert; absent from replay"))
    detail: dict | None = Field(None, description=(
        "firing candidates of some signals: what the alert shows beyond the entity's own events, e.g. "
        "complaints.peer_surge's peer_group {industry, region, window_hours, entities_with_complaints, expected, "
        "entities}"))


OutputEvent = Annotated[Union[RiskChange, SpotcheckChange, AlertCandidate], Field(discriminator="type")]


def output_reader(model: type[BaseModel]) -> TypeAdapter:
    """A check of ``model`` for a reader of an output topic (the dispatcher, ``rebuild-view``): top-level
    fields it does not know are let through, for a writer newer than the reader in a rolling upgrade."""
    lenient = type(model.__name__, (model,), {"model_config": ConfigDict(frozen=True, extra="ignore"),
                                              "__module__": __name__})
    return TypeAdapter(lenient)
