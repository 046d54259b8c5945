"""``riskwatch verify-draw``: check a published spot-check draw without trusting riskwatch's servers.

An auditor, a supervised business or a journalist saves an executed draw as the API publishes it
(``GET /v1/spotchecks/draws/<id>?population=true``) and runs ``riskwatch verify-draw draw.json``:

- the disclosed seed hashes to the commitment published before the draw (``seed_sha256``);
- the population snapshot hashes to its commitment (``population_sha256``) and has its size;
- the selection and the inspectors recompute exactly from the seed, the population and the draw's
  parameters (:func:`riskwatch.draw.draw`).

A withdrawn draw (withdrawn before it was executed, with its seed disclosed) is checked for its seed and
population: that the seed it would have drawn with was the one committed.

The inspectors' assignment also depends on each entity's last inspector (``last_inspector``), which is
published with the result, not committed before it: it should match the assignments of the draws
executed before (checked by hand against them).
"""

from __future__ import annotations

from .draw import draw, population_digest, seed_digest

__all__ = ["Unverifiable", "verify_draw"]

_PARAMS = ("period", "capacity", "control_share", "inspectors", "seed", "seed_sha256", "population_sha256", "result")


class Unverifiable(ValueError):
    """The record is not an executed draw with its population: nothing to check."""


def verify_draw(rec: object) -> list[tuple[str, bool, str]]:
    """``(check, holds, what was compared)`` for each check of an executed draw record.

    >>> pop = [["E1", "D", 0.4], ["E2", "A", 0.03], ["E3", "A", 0.03]]
    >>> res = draw("s3cret", "2026-12", [tuple(p) for p in pop], 2, 0.5, ["li", "wang"])
    >>> rec = {"id": "draw-1", "status": "executed", "period": "2026-12", "capacity": 2, "control_share": 0.5,
    ...        "inspectors": ["li", "wang"], "seed": "s3cret", "seed_sha256": seed_digest("s3cret"),
    ...        "population_sha256": population_digest([tuple(p) for p in pop]), "population_size": 3,
    ...        "population": pop, "last_inspector": {}, "result": res}
    >>> [(name, ok) for name, ok, _ in verify_draw(rec)]
    [('seed', True), ('population', True), ('result', True)]
    >>> [(name, ok) for name, ok, _ in verify_draw(dict(rec, seed="guessed"))]
    [('seed', False), ('population', True), ('result', False)]
    """
    if not isinstance(rec, dict):
        raise Unverifiable("not a draw record (a JSON object as GET /v1/spotchecks/draws/<id> gives)")
    withdrawn = rec.get("status") == "withdrawn"
    if rec.get("status") not in ("executed", "withdrawn") or not rec.get("seed"):
        raise Unverifiable(f"draw {rec.get('id', '?')} is {rec.get('status', 'not a draw')}: the seed is disclosed "
                           "only when it is executed or withdrawn")
    if "population" not in rec:
        raise Unverifiable("the record has no population: save it with ?population=true "
                           "(GET /v1/spotchecks/draws/<id>?population=true)")
    missing = [k for k in _PARAMS if k not in rec and not (withdrawn and k == "result")]
    if missing:
        raise Unverifiable(f"the record lacks {', '.join(missing)}")
    pop = rec["population"]
    if not isinstance(pop, list) or not all(isinstance(p, list) and len(p) == 3 for p in pop):
        raise Unverifiable("population: not a list of [entity_id, tier, ratio]")
    pop = [tuple(p) for p in pop]  # as published: the digest is over these values
    out = []
    seed = str(rec["seed"])
    got = seed_digest(seed)
    out.append(("seed", got == rec["seed_sha256"],
                f"SHA-256 of the disclosed seed {got} against the commitment {rec['seed_sha256']}"))
    got = population_digest(pop)
    size = rec.get("population_size", len(pop))
    out.append(("population", got == rec["population_sha256"] and size == len(pop),
                f"SHA-256 of the {len(pop)} entities {got} against the commitment {rec['population_sha256']}"
                f" ({size} committed)"))
    if withdrawn:  # withdrawn before it was executed: it drew nothing, and its seed was the committed one
        return out
    try:
        again = draw(seed, rec["period"], pop, int(rec["capacity"]), float(rec["control_share"]),
                     list(rec["inspectors"] or []), rec.get("last_inspector") or {})
    except (TypeError, ValueError) as exc:
        raise Unverifiable(f"the draw's parameters cannot be used ({exc})") from None
    published = rec["result"].get("selected") if isinstance(rec["result"], dict) else None
    same = again == rec["result"]
    if same:
        what = f"{len(again['selected'])} entities and their inspectors recomputed exactly"
    elif published is None:
        what = "the record's result holds no selection"
    else:
        theirs = [(s.get("entity_id"), s.get("inspector")) for s in published if isinstance(s, dict)]
        ours = [(s["entity_id"], s["inspector"]) for s in again["selected"]]
        diff = [f"{o} where the record has {t}" for o, t in zip(ours, theirs) if o != t]
        what = (f"recomputed {len(ours)} selections, the record has {len(theirs)}; first differences: "
                + "; ".join(diff[:3]) if diff else f"recomputed {len(ours)} selections, the record has {len(theirs)}")
        if not diff and len(ours) == len(theirs):
            what = "the selections match, other fields of the result differ (strata, tiers, ratios or counts)"
    out.append(("result", same, what))
    return out
