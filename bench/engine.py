"""Events/s of Engine.process on a mixed stream, next to a JSON-parse + dict-update baseline.

    python bench/engine.py [--events 1000000] [--entities 100000] [--runs 3]

Single core, one process. Prints medians over --runs and their ratio, and
the serialised state size per entity.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from riskwatch import gc_policy  # noqa: E402
from riskwatch.config import load_config  # noqa: E402
from riskwatch.engine import Engine  # noqa: E402
from riskwatch.events import parse_event  # noqa: E402
from riskwatch.simulate import Simulation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()

    t = time.perf_counter()
    sim = Simulation(n_entities=a.entities, seed=42, bad_share=0.05, days=90)
    raw = [orjson.dumps(e) for e in sim.events(n_events=a.events)]
    print(f"generated {len(raw):,} events ({sum(map(len, raw)) / len(raw):.0f} B avg) on {a.entities:,} "
          f"entities in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    events = [parse_event(r) for r in raw]
    build_s = time.perf_counter() - t
    mix = {}
    for e in events:
        mix[e.type] = mix.get(e.type, 0) + 1
    print("mix:", ", ".join(f"{k} {v / len(events):.1%}" for k, v in sorted(mix.items())))
    # The pre-built input (1M pydantic objects) is not what a worker holds: move it out of
    # the cyclic GC's sight so both runs below measure their own allocations only.
    gc.collect()
    gc.freeze()

    def baseline():
        d: dict = {}
        for r in raw:
            o = orjson.loads(r)
            k = o["entity_id"]
            c = d.get(k)
            if c is None:
                d[k] = c = {"n": 0, "last": None}
            c["n"] += 1
            c["last"] = o.get("ts")
        return d

    def engine_run(freezer=None):
        eng = Engine(load_config())
        states: dict = {}
        get = states.get
        proc = eng.process
        n_out = 0
        t0 = time.perf_counter()
        for ev in events:
            eid = ev.entity_id
            st, outs = proc(get(eid), ev)
            states[eid] = st
            n_out += len(outs)
            if freezer is not None:
                freezer.tick()
        return time.perf_counter() - t0, states, n_out

    default_gc = gc.get_threshold()
    # Validation as a worker does it: each event validated, used and dropped. Building the list
    # above keeps 1M objects alive, and the cyclic GC's passes over them made that 6x slower per
    # event (66k events/s printed here until 2026-12-04: the GC's cost, not pydantic's).
    gc_policy.apply()
    val = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        for r in raw:
            parse_event(r)
        val.append(time.perf_counter() - t0)
    gc.set_threshold(*default_gc)
    parse_s = statistics.median(val)
    print(f"pydantic validation alone: {len(raw) / parse_s:,.0f} events/s (median of {a.runs}, gc_policy, each "
          f"event dropped after; building the list of all {len(raw):,} took {build_s:.1f}s)")
    base, eng_t, eng_p = [], [], []
    states = n_out = sizes = None
    for _ in range(a.runs):
        gc.collect()
        t0 = time.perf_counter()
        baseline()
        base.append(time.perf_counter() - t0)
        gc.collect()
        dt, states, n_out = engine_run()
        eng_t.append(dt)
        states = None
        gc.collect()
        gc_policy.apply()  # what the worker and `riskwatch replay` run with
        dt, states, n_out = engine_run(gc_policy.Freezer())
        eng_p.append(dt)
        sizes = sorted(len(orjson.dumps(s)) for s in states.values())
        states = None
        gc.set_threshold(*default_gc)
        gc.unfreeze()
        gc.collect()
        gc.freeze()  # the inputs only, as at the start: the next runs see the same heap
    n = len(events)
    b, e, ep = statistics.median(base), statistics.median(eng_t), statistics.median(eng_p)
    print(f"baseline (orjson.loads + dict update): {n / b:,.0f} events/s (median of {a.runs})")
    print(f"engine.process (validated events):     {n / e:,.0f} events/s (median of {a.runs}, Python's default "
          f"GC); {n_out:,} outputs")
    print(f"engine.process, riskwatch.gc_policy:   {n / ep:,.0f} events/s (median of {a.runs}; thresholds "
          f"{gc_policy.THRESHOLDS}, gc.freeze() every 20k events, as the worker and replay run)")
    print(f"engine / baseline: {b / e:.2f}x (default GC), {b / ep:.2f}x (gc_policy) the baseline's throughput")
    print(f"validation + engine end to end:        {n / (ep + parse_s):,.0f} events/s (gc_policy)")
    print(f"state bytes per entity (JSON): median {sizes[len(sizes) // 2]}, p99 {sizes[int(len(sizes) * .99)]}, "
          f"max {sizes[-1]}, total {sum(sizes) / 1e6:.1f} MB for {len(sizes):,} entities")
    per_type(events)


def per_type(events) -> None:
    """One more pass (gc_policy) with a timer around each call: where the time goes by event type,
    against the 5 us an event may cost at the 200k events/s target."""
    from collections import Counter

    gc_policy.apply()
    freezer = gc_policy.Freezer()
    eng = Engine(load_config())
    states: dict = {}
    get = states.get
    proc = eng.process
    clock = time.perf_counter
    spent: Counter = Counter()
    count: Counter = Counter()
    for ev in events:
        eid = ev.entity_id
        t0 = clock()
        st, _ = proc(get(eid), ev)
        spent[ev.type] += clock() - t0
        states[eid] = st
        count[ev.type] += 1
        freezer.tick()
    total = sum(spent.values())
    print("per event type (one more pass, gc_policy, a timer around each call):")
    for k in sorted(count, key=lambda k: -spent[k]):
        print(f"  {k:22s} {count[k] / len(events):6.1%} of events {spent[k] / count[k] * 1e6:7.1f} us each "
              f"{spent[k] / total:6.1%} of the time")
    print(f"  all                    {total / len(events) * 1e6:7.1f} us each (the 200k/s target allows 5.0 us)")


if __name__ == "__main__":
    main()
