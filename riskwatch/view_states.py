"""An entity's view fields from its state alone: what ``rebuild-view`` takes from the state changelog,
and what a worker writes back when the view lost the entities of a partition it holds
(:mod:`riskwatch.streams.view_repair`)."""

from __future__ import annotations

from datetime import UTC, datetime

from .events import register_status

__all__ = ["current_from_state", "register_from_state"]


def current_from_state(engine, eid: str, st: dict) -> dict | None:
    """The current view fields of an entity, as a risk change, from its state alone; None when
    it never had one (states before 2026-11-28 carry no ``et``: a score above 0 means one). The
    reasons are recomputed from the state's signal cache at the time of that change; its cause and
    config version are not kept in the state (empty)."""
    et = st.get("et")
    if et is None:
        if not st.get("es"):
            return None
        et = st.get("t", 0.0)
    score = st["es"]
    _, parts = engine.scorer.score(st.get("g") or {}, et)
    return {"type": "risk_change", "entity_id": eid, "seq": st.get("n", 0),
            "ts": datetime.fromtimestamp(et, tz=UTC), "score": score, "tier": engine.tier_of(st),
            "tier_since": datetime.fromtimestamp(st["tt"], tz=UTC) if "tt" in st else None,
            "reasons": engine.scorer.reasons(parts, score), "cause_event_id": "", "config_version": ""}


def register_from_state(eid: str, st: dict) -> dict | None:
    """The register data the worker last applied to an entity (industry, region, name, address,
    status), as the view's round script takes it; None when the state holds no name (an entity
    known from its events only, or a state written before 2026-11-28).

    >>> register_from_state("E1", {"m": ["food", "110101", "Shop", None], "rs": ["closed", 1.5e9]})["status"]
    'closed'
    >>> register_from_state("E1", {"m": ["food", "110101"]}) is None
    True
    """
    m = st.get("m")
    if not m or len(m) < 3:
        return None
    status, since = register_status(st)
    return {"entity_id": eid, "industry": m[0], "region": m[1], "name": m[2],
            "address": m[3] if len(m) > 3 else None, "status": status, "status_since": since}
