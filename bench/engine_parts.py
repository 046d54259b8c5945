"""Where Engine.process spends its time, by taking parts away one after the other.

    python bench/engine_parts.py [--events 200000] [--entities 20000]

A profiler inflates small Python functions by their call overhead; this runs the
same events (the GC policy the worker uses, a timer around each call) with
successive parts of the engine replaced by constants, so the differences
between the lines are what those parts cost. The outputs are wrong from the
second line on: this measures time, nothing else. The last lines show the
floor of the design: one Python call per event that reads and writes a state.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from riskwatch import gc_policy  # noqa: E402
from riskwatch.config import load_config  # noqa: E402
from riskwatch.detectors.anomaly import AnomalyScorer  # noqa: E402
from riskwatch.detectors.sensors import SensorDetector  # noqa: E402
from riskwatch.engine import Engine  # noqa: E402
from riskwatch.events import parse_event  # noqa: E402
from riskwatch.simulate import Simulation  # noqa: E402

TYPES = ("sensor_reading", "complaint", "inspection", "record", "entity")


def run(events: list, label: str) -> None:
    gc_policy.apply()
    freezer = gc_policy.Freezer()
    eng = Engine(load_config())
    states: dict = {}
    spent: dict = {}
    count: dict = {}
    clock = time.perf_counter
    for ev in events:
        eid = ev.entity_id
        t0 = clock()
        st, _ = eng.process(states.get(eid), ev)
        dt = clock() - t0
        states[eid] = st
        spent[ev.type] = spent.get(ev.type, 0.0) + dt
        count[ev.type] = count.get(ev.type, 0) + 1
        freezer.tick()
    per = "  ".join(f"{t.split('_')[0]} {spent[t] / count[t] * 1e6:5.1f}" for t in TYPES if t in count)
    print(f"{label:44s} all {sum(spent.values()) / len(events) * 1e6:5.1f} us  {per}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--entities", type=int, default=20_000)
    a = ap.parse_args()
    sim = Simulation(n_entities=a.entities, seed=42, bad_share=0.05, days=90)
    events = [parse_event(orjson.dumps(e)) for e in sim.events(n_events=a.events)]
    gc.collect()
    gc.freeze()
    print(f"{len(events):,} events on {a.entities:,} entities; microseconds per event, by type (a timer around each "
          f"call); the 200k events/s target allows 5.0 us")
    run(events, "the engine as it is")
    AnomalyScorer.score = lambda self, st, n, x, now: 0.1
    run(events, "- the sensor anomaly score")
    Engine._decide = lambda self, state, ev, now, check: []
    run(events, "- deciding (score, tier, outputs, alerts)")
    Engine._refresh = lambda self, state, now, skip, check: False
    run(events, "- refreshing drifting signals before each")
    SensorDetector.evaluate = lambda self, st, now, entity, models: {"limit_breach": (0.0, []),
                                                                      "silence": (0.0, [])}
    run(events, "- sensor limits and silence")
    SensorDetector.update = lambda self, st, ev, at, now, entity, models: {}
    run(events, "- the rest of a sensor reading's update")

    def count_only(self, state, ev):
        if state is None:
            state = self.new_state(ev.entity_id)
        state["n"] += 1
        return state, []

    Engine.process = count_only
    run(events, "floor: a call that counts in the state")


if __name__ == "__main__":
    main()
