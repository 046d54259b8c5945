"""Sensor signals: hard-limit breaches with a minimum duration, an online
anomaly score per reading, and silence (a feed that stops is a signal).

Each entity tracks up to ``max_series`` series (``metric@device``); the least
recent in event time is dropped for a new one, and a new one whose reading is
not after every held series' last is ignored (it would be the least recent).
Limits and expected reporting intervals come per metric from config; without
a configured interval the detector learns the typical gap between readings.

>>> from types import SimpleNamespace as E
>>> d = SensorDetector(limits={"temp": {"max": 8.0, "min_duration_s": 600, "expected_interval_s": 600}})
>>> st = d.new_state()
>>> ev = lambda v: E(device_id="f1", metric="temp", value=v)
>>> d.update(st, ev(9.0), 0.0, 0.0, {}, None)["limit_breach"][0]
0.0
>>> d.update(st, ev(9.5), 600.0, 600.0, {}, None)["limit_breach"]
(1.0, ['f1@600'])
>>> d.evaluate(st, 600.0 + 4 * 3600, {}, None)["silence"][0]  # 600 s gaps, 4 h quiet
1.0
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ..config import AlertSpec, SignalSpec
from ..events import OPERATING
from .anomaly import AnomalyParams, AnomalyScorer
from .base import IGNORED, Detector, ParamsModel, Signals

__all__ = ["SensorDetector", "Limit", "SCORE"]


class Limit(ParamsModel):
    min: float | None = None
    max: float | None = None
    min_duration_s: Annotated[float, Field(ge=0)] = 0.0
    expected_interval_s: Annotated[float, Field(gt=0)] | None = None


class SensorParams(ParamsModel):
    limits: dict[str, Limit] = Field(default_factory=dict)
    silence_factor: Annotated[float, Field(gt=1)] = 3.0
    max_series: Annotated[int, Field(ge=1, le=8)] = 2
    anomaly: AnomalyParams = Field(default_factory=AnomalyParams)


# per-series state: [last_ts, gap_ewma, breach_start (-1 = none), last anomaly score, readings, anomaly state]
LAST, GAP, BREACH, SCORE, COUNT, ANOMALY = range(6)


class SensorDetector(Detector):
    """Readings of devices at an entity: limits, anomalies, silence."""

    name = "sensors"
    handles = ("sensor_reading",)
    Params = SensorParams
    time_dependent = True
    # a breach and a silence are steps: full while they last, ended by a reading (until 2026-12-04 they
    # had a 1-day half-life, which only made them fade between two ticks and come back at the next)
    holding = ("limit_breach", "silence")
    default_signals = {
        "limit_breach": SignalSpec(weight=35, alert=AlertSpec(at=1.0, clear_at=0.5, severity="critical")),
        "anomaly": SignalSpec(weight=15, half_life_days=0.5),
        "silence": SignalSpec(weight=20, alert=AlertSpec(at=1.0, clear_at=0.5, severity="warning")),
    }

    def _prepare(self) -> None:
        self._scorer = AnomalyScorer(**self.anomaly.model_dump())

    def new_state(self) -> dict:
        return {}

    def update(self, st, ev, at, now, entity, models) -> Signals:
        # A series lives in its readings' own times: a reading that arrives after the entity's clock
        # moved on (a buffered upload, a tick ahead of the feed) is scored in its place, and only a
        # reading not after the series' last one is stale. Until 2026-11-28 a late reading was taken
        # at the clock, so after one wall-clock tick ahead of a feed every later reading of the
        # series bar one was dropped as stale.
        key = f"{ev.metric}@{ev.device_id}"
        s = st.get(key)
        if s is None:
            if len(st) >= self.max_series:
                lru = min(st, key=lambda k: st[k][LAST])
                if at <= st[lru][LAST]:
                    # least recent in event time itself: held, it would be the one dropped. Until
                    # 2026-12-05 it pushed out a live series (a device's old readings sent again, a
                    # third device's buffered upload), which the next live reading then started afresh
                    return IGNORED
                del st[lru]
            s = st[key] = [at, 0.0, -1.0, 0.0, 0, self._scorer.new_state()]
        elif at <= s[LAST] and s[COUNT] > 0:
            return IGNORED  # redelivered, or not after the series' last reading
        else:
            if len(s) != ANOMALY + 1:  # a series kept by the one-view score (before 2026-11-28)
                s[:] = [s[LAST], s[GAP], s[BREACH], s[SCORE], 0, self._scorer.new_state()]
            gap = at - s[LAST]
            s[GAP] = round(gap if s[GAP] == 0.0 else s[GAP] + 0.1 * (gap - s[GAP]), 1)
            s[LAST] = at
        lim = self.limits.get(ev.metric)
        x = ev.value
        if lim is not None and ((lim.max is not None and x > lim.max) or (lim.min is not None and x < lim.min)):
            if s[BREACH] < 0:
                s[BREACH] = at
        else:
            s[BREACH] = -1.0
        score = self._scorer.score(s[ANOMALY], s[COUNT], x, at)
        s[COUNT] += 1
        s[SCORE] = round(score, 4)
        rid = f"{ev.device_id}@{int(at)}"
        out = self.evaluate(st, now, entity, models)
        prev = entity.get("g", {}).get("sensors.anomaly") if entity else None
        if prev is None or score >= prev[0] or prev[1] < at - 86400:
            out["anomaly"] = (score, [rid], at)
        if out["limit_breach"][0] > 0 and s[BREACH] >= 0:
            out["limit_breach"] = (out["limit_breach"][0], [rid])
        return out

    def evaluate(self, st, now, entity, models) -> Signals:
        breach = silence = 0.0
        b_ids: list[str] = []
        s_ids: list[str] = []
        quiet_since, off_since = _operation(entity)
        for key, s in st.items():
            metric = key.split("@", 1)[0]
            lim = self.limits.get(metric)
            if s[BREACH] >= 0 and lim is not None and now - s[BREACH] >= lim.min_duration_s and \
                    (off_since is None or s[LAST] >= off_since):
                breach = 1.0
                b_ids.append(key)
            expected = lim.expected_interval_s if lim is not None and lim.expected_interval_s else None
            if expected is None and s[COUNT] >= 5:
                expected = s[GAP]
            if expected and quiet_since is not None and \
                    now - max(s[LAST], quiet_since) > self.silence_factor * expected:
                silence = 1.0
                s_ids.append(key)
        return {"limit_breach": (breach, b_ids), "silence": (silence, s_ids)}

    def resume(self, st, since, now) -> None:
        # readings that came while the detector was off were not applied: without this, every series
        # looked silent since then, and switching sensors back on raised a silence alert (+20 points)
        # for every entity with a sensor (measured: the first tick after a 3.5-day pause, 2026-12-04)
        off = now - since
        if off <= 0:
            return
        for s in st.values():
            s[LAST] += off
            if s[BREACH] >= 0:
                s[BREACH] += off

    def next_change(self, st, now, entity) -> float | None:
        # the signals are steps: a breach turns full after its minimum duration, a series silent after
        # silence_factor x its interval; both end only with a reading (an event, not a tick). A
        # deadline that passed after the cached signal was last evaluated (a complaint came first) is due now
        g = entity["g"]
        due = None
        quiet_since, off_since = _operation(entity)
        for key, s in st.items():
            lim = self.limits.get(key.split("@", 1)[0])
            if s[BREACH] >= 0 and lim is not None and (off_since is None or s[LAST] >= off_since):
                t = s[BREACH] + lim.min_duration_s
                if t <= now:
                    c = g.get("sensors.limit_breach")
                    t = now if c is None or c[1] < t else None
                if t is not None and (due is None or t < due):
                    due = t
            expected = lim.expected_interval_s if lim is not None and lim.expected_interval_s else None
            if expected is None and s[COUNT] >= 5:
                expected = s[GAP]
            if expected and quiet_since is not None:
                t = max(s[LAST], quiet_since) + self.silence_factor * expected
                if t < now:
                    c = g.get("sensors.silence")
                    t = now if c is None or c[1] <= t else None
                if t is not None and (due is None or t < due):
                    due = t
        return due


def _operation(entity: dict | None) -> tuple[float | None, float | None]:
    """(from when a device's silence counts, since when the entity is not operating). Operating: (0.0,
    None), or (when it opened again, None) for one that was suspended or closed. Not operating: (None,
    since when): no silence (its devices are off, and a closed business's silent freezer is not a case
    for an inspector), and a breach holds only on a series that reported since (a closed business
    whose freezer still reports is trading: its breach counts)."""
    rs = entity.get("rs") if entity else None
    if rs is None:
        return 0.0, None
    return (rs[1], None) if rs[0] == OPERATING else (None, rs[1])
