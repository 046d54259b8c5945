"""Tiers on simulated populations: who is escalated to C or D, and how soon after it deteriorates.

    python bench/tiers.py [--entities 2000] [--events 200000] [--days 180] [--seeds 7,8,9] [--tick 3600]

Each seed's feed (``Simulation``, 5% of the entities deteriorating from a random onset) runs through
``Engine.process`` in order (no ticks: tiers move at each entity's own events; with ``--tick``, through
``riskwatch replay``'s loop, where ticks move tiers too: decay, the peer surge's looks again). Printed
per seed: the entities that do not deteriorate but were escalated to tier C or D at some point (false
scrutiny), the deteriorating ones escalated after their onset (found) with the median days from onset,
and those escalated before it (false scrutiny too). Quality figures, not speed; the simulator's rates are its
own, far above a real register's, so the figures compare versions of the engine rather than predict
a deployment's. Compare a commit with ``git worktree add /tmp/before REV`` and ``--root /tmp/before``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path


def run(seed: int, n_entities: int, n_events: int, days: int, tick: float = 0.0) -> dict:
    from riskwatch.config import load_config
    from riskwatch.engine import Engine
    from riskwatch.events import parse_event
    from riskwatch.simulate import Simulation

    sim = Simulation(n_entities=n_entities, seed=seed, bad_share=0.05, days=days)
    t0 = sim.start.timestamp()
    onset = {e["id"]: t0 + e["onset"] for e in sim.entities if e["onset"] is not None}
    eng, states, first_up = Engine(load_config()), {}, {}

    def escalated(outs) -> None:
        for o in outs:
            eid = o["entity_id"]
            if o["type"] == "spotcheck_change" and o["to_tier"] in ("C", "D") and eid not in first_up:
                first_up[eid] = o["ts"].timestamp()  # the decision's time (a tick's, or the event's)

    if tick:  # `riskwatch replay`'s loop: ticks where due (silence, decay, a peer surge's looks again)
        import orjson

        from riskwatch.replay import Replay

        class Watched(Replay):
            def _emit(self, outs):
                escalated(outs)
                super()._emit(outs)

        Watched(eng, tick_seconds=tick).run(orjson.dumps(raw) for raw in sim.events(n_events=n_events))
    else:
        for raw in sim.events(n_events=n_events):
            ev = parse_event(raw)
            eid = getattr(ev, "entity_id", None)
            states[eid], outs = eng.process(states.get(eid), ev)
            escalated(outs)
    found = [first_up[e] - onset[e] for e in onset if e in first_up and first_up[e] >= onset[e]]
    early = sum(e in onset and first_up[e] < onset[e] for e in first_up)
    return {"good": n_entities - len(onset), "good_up": sum(e not in onset for e in first_up),
            "bad": len(onset), "found": len(found), "early": early,
            "delay_days": statistics.median(found) / 86400 if found else float("nan")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=2000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--seeds", default="7,8,9")
    ap.add_argument("--tick", type=float, default=0.0,
                    help="event-time seconds between ticks, as `riskwatch replay --tick` (default 0: no ticks)")
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent),
                    help="the checkout whose engine and config/riskwatch.yaml run (default: this one)")
    a = ap.parse_args(argv)
    sys.path.insert(0, a.root)  # that checkout's package, and its config/riskwatch.yaml
    total = {"good": 0, "good_up": 0, "bad": 0, "found": 0, "early": 0}
    for seed in (int(s) for s in a.seeds.split(",")):
        r = run(seed, a.entities, a.events, a.days, a.tick)
        for k in total:
            total[k] += r[k]
        print(f"seed {seed}: not deteriorating, escalated to C/D: {r['good_up']} of {r['good']}; deteriorating, "
              f"escalated after onset: {r['found']} of {r['bad']} (median {r['delay_days']:.1f} days), before "
              f"onset: {r['early']}", flush=True)
    print(f"all: false escalations {total['good_up'] + total['early']} ({total['good_up']} never deteriorating, "
          f"{total['early']} before onset); found {total['found']} of {total['bad']}")


if __name__ == "__main__":
    main()
