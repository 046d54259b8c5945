"""Which receivers an alert goes to, and whether a silence mutes it.

Receivers match on label values (``match: {region: [310000], severity:
[critical]}``; an empty matcher takes everything); an alert goes to every
receiver that matches. Silences are matchers plus a time window, with an
author and a reason (Alertmanager's model: ``=``, ``!=``, ``=~``, ``!~``).

>>> from riskwatch.alerts.config import Receiver
>>> r = Receiver(name="sh", url="http://h/x", secrets=["k"], match={"region": ["310000"]})
>>> [x.name for x in receivers_for({"region": "310000"}, [r])], receivers_for({"region": "110000"}, [r])
(['sh'], [])
>>> s = {"matchers": [{"name": "region", "op": "=", "value": "310000"}], "starts_at": 0, "ends_at": 100}
>>> silenced({"region": "310000"}, [s], now=50), silenced({"region": "310000"}, [s], now=150)
(True, False)
>>> group_key("sh", {"rule": "burst", "region": "310000", "entity": "E"}, ["rule", "region"])
'sh:{region="310000",rule="burst"}'
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .config import Receiver

__all__ = ["receivers_for", "silenced", "group_key", "Matcher", "SilenceSpec"]


def receivers_for(labels: dict, receivers: list[Receiver]) -> list[Receiver]:
    return [r for r in receivers if all(labels.get(k) in vs for k, vs in r.match.items())]


class Matcher(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1)
    op: Literal["=", "!=", "=~", "!~"] = "="
    value: str

    @model_validator(mode="after")
    def _regex(self):
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"value is not a valid regular expression: {exc}") from exc
        return self


class SilenceSpec(BaseModel):
    """A silence as people submit it (API / CLI)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    matchers: list[Matcher] = Field(min_length=1)
    starts_at: float
    ends_at: float
    author: str = Field(min_length=1)
    reason: str = Field(min_length=1)

    @field_validator("ends_at")
    @classmethod
    def _after(cls, v, info):
        if "starts_at" in info.data and v <= info.data["starts_at"]:
            raise ValueError("ends_at must be after starts_at")
        return v


def _matches(m: dict, labels: dict) -> bool:
    v = labels.get(m["name"], "")
    op = m.get("op", "=")
    if op == "=":
        return v == m["value"]
    if op == "!=":
        return v != m["value"]
    hit = re.fullmatch(m["value"], v) is not None
    return hit if op == "=~" else not hit


def silenced(labels: dict, silences: list[dict], now: float) -> bool:
    return any(s["starts_at"] <= now < s["ends_at"] and all(_matches(m, labels) for m in s["matchers"])
               for s in silences)


def group_key(receiver: str, labels: dict, group_by: list[str]) -> str:
    inner = ",".join(f'{k}="{labels.get(k, "")}"' for k in sorted(group_by))
    return f"{receiver}:{{{inner}}}"
