"""Administrative-record signals: penalties, judicial defaults and credit
pledges, each worth points that decay with a half-life per kind and vanish
at ``expires_at``. Kept pledges earn points back; a restoration record
(credit repair) scales down every active penalty.

>>> from types import SimpleNamespace as E
>>> d = RecordDetector()
>>> st = d.new_state()
>>> pen = E(record_id="r1", kind="penalty", severity=2, expires_at=None)
>>> round(d.update(st, pen, 0.0, 0.0, {}, None)["penalties"][0], 3)
0.451
>>> round(d.evaluate(st, 365 * 86400.0, {}, None)["penalties"][0], 3)  # one half-life later
0.259
>>> item, sig = d.retract(st, "r1", 0.0, {}, None)
>>> sig["penalties"]
(0.0, [])
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from ..config import AlertSpec, SignalSpec
from .base import IGNORED, Detector, ParamsModel, Signals, decay
from .seen import remember, remembers

__all__ = ["RecordDetector"]

DAY = 86400.0
GROUPS = ("penalties", "judicial", "pledges")


class KindSpec(ParamsModel):
    points: float
    half_life_days: Annotated[float, Field(gt=0)] = 365.0
    group: Literal["penalties", "judicial", "pledges"] | None = None


def _default_kinds() -> dict[str, KindSpec]:
    return {
        "penalty": KindSpec(points=4.0, half_life_days=365, group="penalties"),
        "judicial_default": KindSpec(points=8.0, half_life_days=730, group="judicial"),
        "pledge_broken": KindSpec(points=5.0, half_life_days=365, group="pledges"),
        "pledge_kept": KindSpec(points=-2.0, half_life_days=365, group="pledges"),
        "pledge_made": KindSpec(points=0.0, group=None),
        "restoration": KindSpec(points=0.0, group=None),
    }


class RecordParams(ParamsModel):
    kinds: dict[str, KindSpec] = Field(default_factory=_default_kinds)
    severity_multipliers: Annotated[list[float], Field(min_length=3, max_length=3)] = [1.0, 1.5, 2.5]
    scale_points: Annotated[float, Field(gt=0)] = 10.0
    restoration_factor: Annotated[float, Field(ge=0, le=1)] = 0.5
    max_items: Annotated[int, Field(ge=1, le=16)] = 8
    remember_ids: Annotated[int, Field(ge=0, le=16)] = 8  # dropped items, as fingerprints (seen.py)


class RecordDetector(Detector):
    """Penalties, judicial defaults and pledges with decaying weight."""

    name = "records"
    handles = ("record",)
    Params = RecordParams
    time_dependent = True
    drifts = True  # items decay between events
    default_signals = {
        "penalties": SignalSpec(weight=25, half_life_days=365),
        "judicial": SignalSpec(weight=30, half_life_days=730,
                               alert=AlertSpec(at=0.5, clear_at=0.2, severity="warning")),
        "pledges": SignalSpec(weight=20, half_life_days=365,
                              alert=AlertSpec(at=0.35, clear_at=0.1, severity="warning")),
    }

    def _prepare(self) -> None:
        names = sorted(self.kinds)
        self._kind_index = {k: i for i, k in enumerate(names)}
        self._kind_spec = [self.kinds[k] for k in names]

    def new_state(self) -> dict:
        # r: items [id, kind index, ts, points, expires ts (0 = never)]; s (once one is applied): the ids
        # of the last 4 restorations; h (once an item was dropped or revoked, or a restoration applied):
        # fingerprints of the newest ``remember_ids`` of those, to recognise one sent again
        return {"r": []}

    def update(self, st, ev, at, now, entity, models) -> Signals:
        # a record's points decay from its own time ``at``: a penalty of last year entered today is
        # worth what it is worth a year on (until 2026-11-28 it was dated at the entity's clock)
        items = st["r"]
        if any(x[0] == ev.record_id for x in items) or remembers(st.get("h"), ev.record_id, at):
            return IGNORED
        spec = self.kinds.get(ev.kind)
        if spec is None:
            return IGNORED  # a kind the config does not list
        if ev.kind == "restoration":
            done = st.setdefault("s", [])  # restorations applied (not items: they hold no points)
            if ev.record_id in done:  # (and h, above)
                return IGNORED  # until 2026-12-04 one sent again scaled the penalties down again
            done.append(ev.record_id)
            del done[:-4]
            # and by event time: the last 4 as they arrived did not hold a history of 5 sent again
            self._forget(st, [ev.record_id, 0, at])
            for it in items:
                if it[3] > 0 and it[2] <= at:  # what came before the restoration
                    it[3] = round(it[3] * self.restoration_factor, 6)
            return self.evaluate(st, now, entity, models)
        if spec.group is None or spec.points == 0:
            return {}
        pts = spec.points * self.severity_multipliers[ev.severity - 1]
        exp = ev.expires_at.timestamp() if ev.expires_at is not None else 0.0
        items.append([ev.record_id, self._kind_index[ev.kind], at, pts, exp])
        if len(items) > 1 and at < items[-2][2]:
            items.sort(key=lambda it: it[2])  # in time order: the signals name the latest ones
        if len(items) > self.max_items:  # drop what weighs least now
            least = min(items, key=lambda it: abs(self._value(it, now)))
            items.remove(least)
            self._forget(st, least)
        return self.evaluate(st, now, entity, models)

    def _value(self, it: list, now: float) -> float:
        if it[4] and now >= it[4]:
            return 0.0
        return it[3] * decay(self._kind_spec[it[1]].half_life_days * DAY, now - it[2])

    def evaluate(self, st, now, entity, models) -> Signals:
        sums = dict.fromkeys(GROUPS, 0.0)
        ids: dict[str, list] = {g: [] for g in GROUPS}
        for it in st["r"]:
            g = self._kind_spec[it[1]].group
            v = self._value(it, now)
            sums[g] += v
            if v > 0:
                ids[g].append(it[0])
        return {g: (1.0 - math.exp(-max(0.0, sums[g]) / self.scale_points), ids[g][-3:]) for g in GROUPS}

    def wants_tick(self, st) -> bool:
        return bool(st and st["r"])  # an empty state is {"r": []}, which is truthy

    def next_change(self, st, now, entity) -> float | None:
        # the next expiry (or now for one passed since its group's signal was evaluated); now where a
        # kept pledge (negative points) decays at another half-life than the group's other items, so
        # that its decay can raise the group's signal (at one half-life the sum only shrinks towards
        # zero). Decay alone is the engine's: see half_lives
        g = entity["g"]
        due = None
        live = [it for it in st["r"] if not (it[4] and now >= it[4])] if st else []
        for grp in {self._kind_spec[it[1]].group for it in live if it[3] < 0}:
            if len({self._kind_spec[it[1]].half_life_days for it in live
                    if self._kind_spec[it[1]].group == grp}) > 1:
                return now
        for it in st["r"] if st else ():
            exp = it[4]
            if not exp:
                continue
            if exp <= now:
                c = g.get(f"records.{self._kind_spec[it[1]].group}")
                if c is None or c[1] >= exp:
                    continue  # evaluated since it expired
                exp = now
            if due is None or exp < due:
                due = exp
        return due

    def half_lives(self, st) -> dict[str, float]:
        # a group's signal 1 - exp(-sum / scale) falls no faster than its fastest-decaying item (nor
        # faster than the configured half-life: the engine takes the shorter of the two)
        out: dict[str, float] = {}
        for it in st["r"] if st else ():
            spec = self._kind_spec[it[1]]
            h = spec.half_life_days * DAY
            if spec.group is not None and h < out.get(spec.group, float("inf")):
                out[spec.group] = h
        return out

    def holds(self, st, item_id: str) -> bool:
        return any(x[0] == item_id for x in st["r"])

    def _forget(self, st: dict, it: list) -> None:
        # an item dropped, revoked or holding no points (a restoration): until 2026-12-05 a dropped item
        # sent again was taken as new, and pushed out a held one
        if self.remember_ids:
            st["h"] = remember(st.get("h"), it[0], it[2], self.remember_ids)

    def retract(self, st, item_id, now, entity, models):
        for i, it in enumerate(st["r"]):
            if it[0] == item_id:
                del st["r"][i]
                self._forget(st, it)  # revoked, or disputed: sent again, it is not counted
                return it, self.evaluate(st, now, entity, models)
        return None, {}

    def restore(self, st, item, now, entity, models) -> Signals:
        st["r"].append(item)
        st["r"].sort(key=lambda it: it[2])
        return self.evaluate(st, now, entity, models)
