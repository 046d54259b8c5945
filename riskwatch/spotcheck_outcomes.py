"""What a spot-check draw found: does risk-based selection find more than chance?

A draw (:mod:`riskwatch.draw`) selects a control share uniformly and the rest
weighted by each tier's spot-check ratio. Once inspectors have been, each
selected entity's first inspection after the draw of a counted kind
(``routine`` by default: the spot check itself) says whether the check found
something: a ``fail`` outcome, or a critical or major violation (what the
inspections detector predicts). Inspections of other kinds (one prompted by
a complaint, a follow-up) are not the draw's checks: riskier entities get
more complaints, so counting them would inflate the risk stratum's hit rate,
the very figure the comparison is for. Until 2026-12-05 any kind counted;
they are now shown apart (``inspected_otherwise``). Per stratum and per tier this gives the
hit rate, and the risk stratum's hit rate over the control's (the lift) is
the evidence a regulator needs that tiering targets inspections better than
picking at random. Counts come with the rates: a draw of 50 says little on
its own, and the lift is left out until the control stratum has a hit.

>>> sel = [{"entity_id": "E1", "tier": "D", "stratum": "risk", "inspector": "li"},
...        {"entity_id": "E2", "tier": "C", "stratum": "risk", "inspector": "wang"},
...        {"entity_id": "E3", "tier": "A", "stratum": "control", "inspector": "li"},
...        {"entity_id": "E4", "tier": "A", "stratum": "control", "inspector": "wang"},
...        {"entity_id": "E5", "tier": "B", "stratum": "control", "inspector": "li"}]
>>> def insp(outcome, critical=0, major=0):
...     return {"inspection_id": "i", "ts": "2026-12-09T10:00:00+08:00", "kind": "routine", "outcome": outcome,
...             "violations": {"critical": critical, "major": major, "minor": 0}}
>>> out = outcomes(sel, {"E1": insp("fail"), "E2": insp("pass", major=1), "E3": insp("pass"),
...                      "E4": insp("conditional", critical=1)})
>>> out["strata"]["risk"], out["strata"]["control"]["hit_rate"], out["lift"]
({'selected': 2, 'inspected': 2, 'found': 2, 'hit_rate': 1.0, 'inspected_otherwise': 0}, 0.5, 2.0)
>>> out["outstanding"], [e["found"] for e in out["entities"]]
(1, [True, True, False, True, None])

E5 had only an inspection prompted by a complaint: not its spot check, shown apart.

>>> out = outcomes(sel, {"E1": insp("fail")}, {"E5": 1})
>>> out["strata"]["control"], out["outstanding"]
({'selected': 3, 'inspected': 0, 'found': 0, 'hit_rate': None, 'inspected_otherwise': 1}, 4)
"""

from __future__ import annotations

__all__ = ["SPOT_CHECK_KINDS", "found_something", "outcomes"]

SPOT_CHECK_KINDS = frozenset({"routine"})  # the inspections that are a draw's checks, by default


def found_something(inspection: dict) -> bool:
    """A failed inspection, or one with a critical or major violation."""
    v = inspection["violations"]
    return inspection["outcome"] == "fail" or v["critical"] > 0 or v["major"] > 0


def _rates(rows: list[dict]) -> dict:
    inspected = [r for r in rows if r["inspection"] is not None]
    found = sum(1 for r in inspected if r["found"])
    return {"selected": len(rows), "inspected": len(inspected), "found": found,
            "hit_rate": round(found / len(inspected), 4) if inspected else None,
            "inspected_otherwise": sum(1 for r in rows if r["inspection"] is None and r["not_counted"])}


def outcomes(selected: list[dict], first: dict[str, dict | None], not_counted: dict[str, int] | None = None) -> dict:
    """``selected``: a draw's result; ``first``: entity id -> its first inspection of a counted kind after
    the draw (or absent); ``not_counted``: entity id -> its inspections after the draw of other kinds.
    Rates over the entities checked so far; ``outstanding``: selected, not checked yet."""
    rows = []
    not_counted = not_counted or {}
    for s in selected:
        insp = first.get(s["entity_id"])
        rows.append({**s, "inspection": insp, "found": found_something(insp) if insp is not None else None,
                     "not_counted": not_counted.get(s["entity_id"], 0)})
    strata = {name: _rates([r for r in rows if r["stratum"] == name]) for name in ("risk", "control")}
    tiers = {t: _rates([r for r in rows if r["tier"] == t]) for t in sorted({r["tier"] for r in rows})}
    risk, control = strata["risk"]["hit_rate"], strata["control"]["hit_rate"]
    return {"selected": len(rows), "inspected": sum(1 for r in rows if r["inspection"] is not None),
            "outstanding": sum(1 for r in rows if r["inspection"] is None),
            "strata": strata, "tiers": tiers,
            "lift": round(risk / control, 3) if risk is not None and control else None,
            "entities": rows}
