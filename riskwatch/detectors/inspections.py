"""Inspection signals: the predicted probability of a critical or major
violation at the entity's next inspection, and the last result.

The probability comes from a population model (online logistic regression:
river's, written out in ``riskwatch.models``) shared by all entities. At each
inspection the model is first asked and taught with the features the entity
had *before* it (no look-ahead), then the entity's history is updated and the
prediction for the next inspection becomes the signal.

>>> from types import SimpleNamespace as E
>>> from riskwatch.models import PopulationModels
>>> d, m = InspectionDetector(), PopulationModels()
>>> st = d.new_state()
>>> bad = E(inspection_id="i1", outcome="fail", violations=E(critical=2, major=1, minor=0))
>>> sig = d.update(st, bad, 0.0, 0.0, {}, m)
>>> sig["critical_fail"], st["n"]
((1.0, ['i1'], 0.0), 1)
>>> d.update(st, bad, 0.0, 0.0, {}, m) is IGNORED  # the same inspection again changes nothing
True
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from ..config import AlertSpec, SignalSpec
from .base import IGNORED, Detector, ParamsModel, Signals, decay
from .seen import remember, remembers

__all__ = ["InspectionDetector"]

DAY = 86400.0
_OUTCOME = {"pass": 0, "conditional": 1, "fail": 2}


class InspectionParams(ParamsModel):
    history_half_life_days: Annotated[float, Field(gt=0)] = 365.0
    cross_signals: bool = True
    remember_ids: Annotated[int, Field(ge=0, le=32)] = 16  # earlier ones, as fingerprints (seen.py)


class InspectionDetector(Detector):
    """History of inspection outcomes, scored by a shared online model."""

    name = "inspections"
    handles = ("inspection",)
    Params = InspectionParams
    default_signals = {
        "predicted_violation": SignalSpec(weight=30),
        "critical_fail": SignalSpec(weight=20, half_life_days=180,
                                    alert=AlertSpec(at=1.0, clear_at=0.1, severity="critical")),
    }

    def _prepare(self) -> None:
        self._h = self.history_half_life_days * DAY

    def new_state(self) -> dict:
        # n inspections, t last ts, c/m/i decayed critical/major/minor counts, o last outcome, id last id,
        # h fingerprints of the newest ``remember_ids`` earlier ones, to recognise one sent again (a list
        # of up to 7 ids, in arrival order, from 2026-12-04 to 2026-12-05; absent before); ``f`` (absent
        # until the first) how many inspections ever found a critical or major violation, undecayed
        return {"n": 0, "t": 0.0, "c": 0.0, "m": 0.0, "i": 0.0, "o": 0, "id": "", "h": ""}

    def features(self, st: dict, now: float, entity: dict) -> dict[str, float]:
        """What is known about an entity before its next inspection."""
        n = st["n"]
        k = decay(self._h, now - st["t"]) if n else 0.0
        x = {
            "log_inspections": math.log1p(n),
            "never_inspected": 1.0 if n == 0 else 0.0,
            "years_since_last": min((now - st["t"]) / (365 * DAY), 5.0) if n else 0.0,
            "critical": st["c"] * k,
            "major": st["m"] * k,
            "minor": math.log1p(st["i"] * k),
            "last_fail": 1.0 if st["o"] == 2 else 0.0,
            "last_conditional": 1.0 if st["o"] == 1 else 0.0,
            # the long memory: with only decayed counts (half-life a year) the ranking lost to "count every
            # past finding" on Louisville's history, AUC 0.572 against 0.597 (bench/inspections.py)
            "found_ever": math.log1p(st.get("f", 0)),
        }
        if self.cross_signals and entity:
            g = entity.get("g", {})
            x["complaints"] = sum(g[c][0] for c in ("complaints.surprise_own", "complaints.surprise_peer",
                                                   "complaints.burst") if c in g)
            x["records"] = sum(g[c][0] for c in ("records.penalties", "records.judicial",
                                                "records.pledges") if c in g)
        return x

    def update(self, st, ev, at, now, entity, models) -> Signals:
        iid = ev.inspection_id
        earlier = st.get("h") or ""
        if isinstance(earlier, list):  # ids kept in arrival order (2026-12-04): dated at the last one's
            # time, which they are not (a copy sent again is recognised only within that hour)
            ids, earlier = earlier, ""
            for old in ids:
                earlier = remember(earlier, old, st["t"], self.remember_ids)
            st["h"] = earlier
        if iid == st["id"] or remembers(earlier, iid, at):
            # until 2026-12-04 only the last one was recognised; until 2026-12-05 the last 8 as they arrived,
            # so a history sent again in order pushed out each id before its copy came: all counted again
            return IGNORED
        v = ev.violations
        if st["n"] and at < st["t"]:
            # an earlier inspection reported after a later one (a backfill): it joins the history
            # decayed to the last one's time; the last outcome stays, and the model does not learn
            # from it (the entity's features now hold what came after it). Until 2026-11-28 it was
            # dated at the entity's clock and replaced the last outcome.
            k = decay(self._h, st["t"] - at)
            if v.critical + v.major:
                st["f"] = st.get("f", 0) + 1
            st["c"] += v.critical * k
            st["m"] += v.major * k
            st["i"] += v.minor * k
            st["n"] += 1
            st["h"] = remember(earlier, iid, at, self.remember_ids)
            p = models.inspection.predict(self.features(st, now, entity))
            return {"predicted_violation": (p, [st["id"]])}
        x = self.features(st, at, entity)
        models.inspection.learn(x, (v.critical + v.major) > 0)
        k = decay(self._h, at - st["t"]) if st["n"] else 0.0
        st["c"] = st["c"] * k + v.critical
        st["m"] = st["m"] * k + v.major
        st["i"] = st["i"] * k + v.minor
        st["n"] += 1
        if v.critical + v.major:
            st["f"] = st.get("f", 0) + 1
        if st["id"]:  # the last one becomes an earlier one
            st["h"] = remember(earlier, st["id"], st["t"], self.remember_ids)
        st["t"] = at
        st["o"] = _OUTCOME[ev.outcome]
        st["id"] = iid
        p = models.inspection.predict(self.features(st, now, entity))
        crit = 1.0 if (ev.outcome == "fail" and v.critical > 0) else 0.0
        return {"predicted_violation": (p, [ev.inspection_id]), "critical_fail": (crit, [ev.inspection_id], at)}

    def evaluate(self, st, now, entity, models) -> Signals:
        if not st["n"]:
            return {}
        p = models.inspection.predict(self.features(st, now, entity))
        return {"predicted_violation": (p, [st["id"]])}
