"""What applying a config would do now: every entity's current state, re-decided under it.

A worker that applies a config change re-decides every entity it holds with a
tick at the entity's own clock (``redecide``; see :mod:`riskwatch.streams.app`).
:func:`impact` runs that same tick through :class:`~riskwatch.engine.Engine`
on two copies of each state, one under the config in force and one under the
candidate, and compares the two: tiers by count, the entities that would
change tier at once, those whose new tier the minimum dwell holds back (and
until when), scores raised or lowered, and the alert candidates the pass
would send (``"tier firing"``, ``"records.judicial resolved"``: the
dispatcher then applies its rules, cooldowns and silences). Unlike the preview
(:mod:`riskwatch.preview`, recent events replayed from empty states) it sees
every entity with its whole history, as the change would find it; it does not
say what the candidate would make of events still to come.

The re-decide tick re-evaluates time-dependent detectors (records, sensors)
and re-weighs every signal the state holds; a detector's other parameters (a
complaint burst's size, say) act on the next events only, here as in the
worker.

>>> from riskwatch.config import load_config
>>> from riskwatch.engine import Engine
>>> from riskwatch.events import parse_event
>>> cfg = load_config()
>>> st, _ = Engine(cfg).process(None, parse_event({"type": "record", "record_id": "r1",
...     "entity_id": "91350100M000100Y43", "ts": "2026-03-01T09:00:00+08:00", "kind": "judicial_default",
...     "severity": 3}))
>>> stricter = cfg.model_copy(update={"version": "stricter", "tiers": [
...     t.model_copy(update={"up": 25.0, "down": 22.0}) if t.name == "C" else t for t in cfg.tiers]})
>>> out = impact({"91350100M000100Y43": orjson.dumps(st)}, cfg, stricter)
>>> out["current"]["tiers"], out["candidate"]["tiers"], out["moves"]
({'B': 1}, {'C': 1}, {'B->C': 1})
>>> looser = cfg.model_copy(update={"version": "looser", "tiers": [
...     t.model_copy(update={"up": 30.0, "down": 26.0}) if t.name == "B" else t for t in cfg.tiers]})
>>> out = impact({"91350100M000100Y43": orjson.dumps(st)}, cfg, looser)
>>> out["moves"], out["held_by_dwell"], out["entities"][0]["status"]
({}, {'B->A': 1}, 'held_by_dwell')
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Mapping

import orjson

from .config import Config
from .engine import Engine
from .errors import StateUnreadable
from .events import Tick
from .streams.state_store import parse_state

__all__ = ["impact"]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat()


def impact(states: Mapping[str, bytes], current: Config, candidate: Config, limit: int = 50) -> dict:
    """``states``: entity id -> serialised state (the last of each in the state changelog)."""
    now_eng, new_eng = Engine(current), Engine(candidate)
    scorer = new_eng.scorer
    tiers: tuple[Counter, Counter] = (Counter(), Counter())
    moves: Counter = Counter()
    held: Counter = Counter()
    alerts: tuple[Counter, Counter] = (Counter(), Counter())  # "signal status" of alert candidates
    raised = lowered = entities = 0
    listed: list[tuple[float, dict]] = []
    unreadable = 0
    for eid, raw in states.items():
        try:
            first = parse_state(eid, raw)
        except StateUnreadable:  # not a worker's (the worker dead-letters its events): until 2026-12-06
            unreadable += 1      # one made this a 500
            continue
        t = first.get("t")
        if not first.get("n") or t is None:
            continue
        entities += 1
        # the worker's re-decide tick: at the entity's own clock, so no time passes for it
        tick = Tick.model_construct(entity_id=eid, ts=datetime.fromtimestamp(t, tz=UTC), redecide=True)
        a, outs_a = now_eng.process(first, tick)
        b, outs = new_eng.process(orjson.loads(raw), tick)
        for counter, produced in zip(alerts, (outs_a, outs)):
            for o in produced:
                if o["type"] == "alert_candidate":
                    counter[f"{o['signal']} {o['status']}"] += 1
        ta, tb = now_eng.tier_of(a), new_eng.tier_of(b)
        if "et" in a:
            tiers[0][ta] += 1
        if "et" in b:
            tiers[1][tb] += 1
        sa, sb = a["sc"], b["sc"]
        raised += sb > sa
        lowered += sb < sa
        status = due = None
        if ta != tb:
            status = "moves"
            moves[f"{ta}->{tb}"] += 1
        else:
            ti = b["ti"]
            nxt = scorer.next_tier(ti, sb)
            if nxt != ti:  # the candidate's thresholds say another tier, its minimum dwell not yet
                status = "held_by_dwell"
                held[f"{tb}->{scorer.tier_names[nxt]}"] += 1
                due = b["tt"] + (scorer.dwell_up if nxt > ti else scorer.dwell_down)
        if status is None:
            continue
        m = b.get("m") or [None, None, None]
        reasons = next((o["reasons"] for o in outs if o["type"] == "risk_change"), None)
        if reasons is None:
            reasons = scorer.reasons(scorer.score(b["g"], b["t"])[1], sb)
        listed.append((abs(sb - sa), {
            "entity_id": eid, "name": m[2] if len(m) > 2 else None, "industry": m[0], "region": m[1],
            "status": status, "tier": ta, "candidate_tier": tb if due is None else scorer.tier_names[nxt],
            "score": sa, "candidate_score": sb, "at": _iso(t), "moves_at": _iso(due) if due is not None else None,
            "candidate_reasons": reasons}))
    listed.sort(key=lambda x: (x[1]["status"] != "moves", -x[0], x[1]["entity_id"]))
    return {
        "entities_held": entities,
        "states_unreadable": unreadable,
        "current": {"version": current.version, "tiers": dict(sorted(tiers[0].items())),
                    "alerts": dict(sorted(alerts[0].items()))},
        "candidate": {"version": candidate.version, "tiers": dict(sorted(tiers[1].items())),
                      "alerts": dict(sorted(alerts[1].items()))},
        "moves": dict(sorted(moves.items())), "moved": sum(moves.values()),
        "held_by_dwell": dict(sorted(held.items())),
        "scores": {"raised": raised, "lowered": lowered, "unchanged": entities - raised - lowered},
        "entities": [e for _, e in listed[:limit]], "truncated": len(listed) > limit,
        "note": "every entity's state re-decided at its own clock, as a worker does when the change is applied",
    }
