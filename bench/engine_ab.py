"""A/B of Engine.process between two checkouts, in alternation (this machine's speed drifts).

    git worktree add /tmp/before <commit>
    python bench/engine_ab.py /tmp/before .

Each round runs every checkout once in its own process over the same
simulated events (200k on 20k entities by default, the GC policy the worker
uses) and prints events/s; the summary is the median per checkout and their
ratio. Each checkout runs with its own code and its own config/riskwatch.yaml.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import gc, sys, time
root = sys.argv[1]
sys.path.insert(0, root)
import orjson
from riskwatch.config import load_config
from riskwatch.engine import Engine
from riskwatch.events import parse_event
from riskwatch.gc_policy import apply
from riskwatch.simulate import Simulation

sim = Simulation(n_entities=int(sys.argv[3]), seed=42, bad_share=0.05, days=90)
events = [parse_event(orjson.dumps(e)) for e in sim.events(n_events=int(sys.argv[2]))]
apply()
gc.collect()
gc.freeze()
engine = Engine(load_config(root + "/config/riskwatch.yaml"))
states = {}
get = states.get
process = engine.process
t = time.perf_counter()
for ev in events:
    st, _ = process(get(ev.entity_id), ev)
    states[ev.entity_id] = st
print(len(events) / (time.perf_counter() - t))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkouts", nargs="+", type=Path, help="repository roots to compare (the first is the baseline)")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--entities", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    rates: dict[Path, list[float]] = {c: [] for c in a.checkouts}
    for r in range(a.rounds):
        for c in a.checkouts:
            out = subprocess.run([sys.executable, "-c", CHILD, str(c.resolve()), str(a.events), str(a.entities)],
                                 capture_output=True, text=True, check=True)
            rates[c].append(float(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}  {c}: {rates[c][-1]:,.0f} events/s", flush=True)
    base = statistics.median(rates[a.checkouts[0]])
    for c in a.checkouts:
        med = statistics.median(rates[c])
        print(f"{c}: median {med:,.0f} events/s = {med / base:.2f}x {a.checkouts[0]}")


if __name__ == "__main__":
    main()
