"""Spot-check draws anyone can verify ("two randoms, one disclosure").

Two randoms: which entities are inspected (weighted by their tier's spot-check
ratio, plus a uniformly drawn control share), and which inspector goes (at
random from a list, never the entity's last inspector when another is free).
One disclosure: the SHA-256 of the seed and of the population snapshot are
published when the draw is committed, the seed when it is executed; with them
:func:`draw` recomputes the result exactly.

>>> pop = [("E%02d" % i, "D" if i < 5 else "A", 0.4 if i < 5 else 0.03) for i in range(40)]
>>> r1 = draw("seed-1", "2026-12", pop, capacity=6, control_share=0.34, inspectors=["li", "wang", "zhao"])
>>> r1 == draw("seed-1", "2026-12", pop, capacity=6, control_share=0.34, inspectors=["li", "wang", "zhao"])
True
>>> len(r1["selected"]), sum(1 for s in r1["selected"] if s["stratum"] == "control")
(6, 2)
>>> len({s["entity_id"] for s in r1["selected"]})
6
"""

from __future__ import annotations

import hashlib
import math
import random

import orjson

__all__ = ["draw", "population_digest", "seed_digest"]


def seed_digest(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def population_digest(population: list[tuple[str, str, float]]) -> str:
    """SHA-256 of the sorted snapshot ``[[entity_id, tier, ratio], ...]`` as JSON."""
    return hashlib.sha256(orjson.dumps(sorted([list(p) for p in population]))).hexdigest()


def _rng(seed: str, period: str, purpose: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"{seed}|{period}|{purpose}".encode()).digest(), "big"))


def draw(seed: str, period: str, population: list[tuple[str, str, float]], capacity: int, control_share: float,
         inspectors: list[str], last_inspector: dict[str, str] | None = None) -> dict:
    """Select up to ``capacity`` entities and assign inspectors, deterministically from ``seed``."""
    pop = sorted(population)
    capacity = min(capacity, len(pop))
    n_control = min(capacity, round(capacity * control_share))
    rng = _rng(seed, period, "control")
    control = rng.sample(range(len(pop)), n_control) if n_control else []
    taken = set(control)
    rng = _rng(seed, period, "weighted")
    # weighted sampling without replacement (Efraimidis-Spirakis): the k largest u^(1/w)
    keys = []
    for i, (_, _, ratio) in enumerate(pop):
        u = rng.random()
        if i in taken or ratio <= 0:
            continue
        keys.append((math.log(u) / ratio if u > 0 else -math.inf, i))
    keys.sort(reverse=True)
    weighted = [i for _, i in keys[:capacity - n_control]]
    picks = [(i, "control") for i in sorted(control)] + [(i, "risk") for i in weighted]
    rng = _rng(seed, period, "inspectors")
    load = {name: 0 for name in inspectors}
    last = last_inspector or {}
    selected = []
    for i, stratum in picks:
        eid, tier, ratio = pop[i]
        inspector = None
        if inspectors:
            free = [n for n in inspectors if n != last.get(eid)] or list(inspectors)
            least = min(load[n] for n in free)
            inspector = rng.choice([n for n in free if load[n] == least])
            load[inspector] += 1
        selected.append({"entity_id": eid, "tier": tier, "ratio": ratio, "stratum": stratum, "inspector": inspector})
    return {"period": period, "capacity": capacity, "control": n_control, "selected": selected}
