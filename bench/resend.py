"""A history sent twice (a file imported twice): how much of it the engine recognises the second time.

    python bench/resend.py [--entities 2000] [--events 100000] [--days 60] [--repo PATH]

Simulates a file, replays it through one engine once, and through another engine twice in a row,
then compares each entity's score at its own clock and prints what the second pass recognised
(``Engine.ignored``, by detector) against what the file holds. ``--repo`` runs the engine of another
checkout (e.g. a ``git worktree`` of an older commit) on the same file; the file comes from this
checkout's simulator.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=2000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--days", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repo", default=str(HERE))
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from riskwatch.simulate import Simulation

    raw = [orjson.dumps(e) for e in Simulation(n_entities=a.entities, seed=a.seed, days=a.days).events(a.events)]
    for name in [m for m in sys.modules if m == "riskwatch" or m.startswith("riskwatch.")]:
        del sys.modules[name]  # the engine under test may be another checkout's
    sys.path[0] = a.repo
    from riskwatch import gc_policy
    from riskwatch.config import load_config
    from riskwatch.engine import Engine
    from riskwatch.events import parse_event

    gc_policy.apply()
    events = [parse_event(r) for r in raw]
    kinds = Counter(e.type for e in events)

    def run(seq):
        eng = Engine(load_config(Path(a.repo) / "config" / "riskwatch.yaml"))
        states: dict = {}
        for ev in seq:
            states[ev.entity_id], _ = eng.process(states.get(ev.entity_id), ev)
        return states, eng

    once, e1 = run(events)
    twice, e2 = run(events + events)
    s1 = {k: e1.evaluate(s, s["t"])[0] for k, s in once.items()}
    s2 = {k: e2.evaluate(s, s["t"])[0] for k, s in twice.items()}
    diff = [s2[k] - s1[k] for k in once]
    again = Counter(e2.ignored) - Counter(e1.ignored)
    print(f"engine of {a.repo}; {len(events):,} events on {len(once):,} entities, sent twice in a row")
    for det, kind in (("complaints", "complaint"), ("inspections", "inspection"), ("records", "record"),
                      ("sensors", "sensor_reading")):
        print(f"  {kind:15s} recognised the second time: {again[det]:7,} of {kinds[kind]:7,} "
              f"({again[det] / max(1, kinds[kind]):.0%})")
    print(f"  entities with the same score at their clock: {sum(abs(d) < 0.01 for d in diff):,}; higher "
          f"{sum(d >= 0.01 for d in diff):,}; lower {sum(d <= -0.01 for d in diff):,}; in another tier "
          f"{sum(once[k]['ti'] != twice[k]['ti'] for k in once):,}")


if __name__ == "__main__":
    main()
