"""A/B of Engine.process between two checkouts, in alternation (this machine's speed drifts).

    git worktree add /tmp/before <commit>
    python bench/engine_ab.py /tmp/before .
    python bench/engine_ab.py /tmp/before . --worker   # the worker's handling, BatchProcessor.handle

Each round runs every checkout once in its own process over the same
simulated events (200k on 20k entities by default, the GC policy the worker
uses) and prints events/s; the summary is the median per checkout and their
ratio. Each checkout runs with its own code and its own config/riskwatch.yaml.

``--worker``: each checkout's ``BatchProcessor.handle`` instead, the worker's handling of a message
without Faust (decoding, validation, the engine, dead letters, outputs), over the same events in
batch envelopes of 500 per partition (4 partitions), with the worker's models (queued updates,
drained after each message) and a dict as the state store.

``--in-process``: when the checkouts differ in ``riskwatch/engine.py`` only (checked: any other
file of the package that differs is refused), one process loads each checkout's engine module
beside the first checkout's package and runs them in alternation on the same events, timing CPU
time. On a shared machine whose speed drifts by a quarter between runs, this is the steadier
comparison: the per-round ratios are printed too.
"""

from __future__ import annotations

import argparse
import filecmp
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


CHILD_WORKER = r"""
import gc, inspect, sys, time
root = sys.argv[1]
sys.path.insert(0, root)
import orjson
from riskwatch.config import load_config
from riskwatch.engine import Engine
from riskwatch.gc_policy import apply
from riskwatch.simulate import Simulation
from riskwatch.streams.codec import partition_for
from riskwatch.streams.processor import BatchProcessor
from riskwatch.streams.shared_models import SharedModels

sim = Simulation(n_entities=int(sys.argv[3]), seed=42, bad_share=0.05, days=90)
events = list(sim.events(n_events=int(sys.argv[2])))
parts = [[] for _ in range(4)]
for e in events:
    parts[partition_for(e["entity_id"].encode(), 4)].append(e)
msgs = [(p, orjson.dumps({"batch": es[i:i + 500]})) for p, es in enumerate(parts) for i in range(0, len(es), 500)]
apply()
gc.collect()
gc.freeze()
proc = BatchProcessor(Engine(load_config(root + "/config/riskwatch.yaml"), SharedModels()), 4, max_future_s=1e12)
stores = [{} for _ in range(4)]
restore = "restore" in inspect.signature(proc.handle).parameters  # since 2026-12-07
t = time.perf_counter()
for off, (p, value) in enumerate(msgs):
    st = stores[p]
    res = proc.handle(value, "rw.bench", p, off, st.get, st.get) if restore else proc.handle(value, "rw.bench", p, off,
                                                                                            st.get)
    st.update(res.states)
    proc.engine.models.drain()
print(len(events) / (time.perf_counter() - t))
"""


def differing(a: Path, b: Path) -> list[str]:
    """Files of the ``riskwatch`` package that differ between two checkouts (``__pycache__`` aside)."""
    out = []
    for f in sorted({p.relative_to(a) for p in (a / "riskwatch").rglob("*.py")}
                    | {p.relative_to(b) for p in (b / "riskwatch").rglob("*.py")}):
        if not ((a / f).exists() and (b / f).exists() and filecmp.cmp(a / f, b / f, shallow=False)):
            out.append(str(f))
    return out


def in_process(checkouts: list[Path], n_events: int, n_entities: int, rounds: int) -> None:
    import gc
    import importlib.util
    import time

    import orjson

    root = checkouts[0].resolve()
    for c in checkouts[1:]:
        extra = [f for f in differing(root, c.resolve()) if f != "riskwatch/engine.py"]
        if extra:
            sys.exit(f"--in-process compares engine.py only; {c} differs also in {', '.join(extra[:5])}")
    sys.path.insert(0, str(root))
    from riskwatch.config import load_config
    from riskwatch.events import parse_event
    from riskwatch.gc_policy import apply
    from riskwatch.simulate import Simulation

    engines = []
    for i, c in enumerate(checkouts):
        name = f"riskwatch._engine_ab{i}"
        spec = importlib.util.spec_from_file_location(name, c.resolve() / "riskwatch" / "engine.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        engines.append(mod.Engine)
    sim = Simulation(n_entities=n_entities, seed=42, bad_share=0.05, days=90)
    events = [parse_event(orjson.dumps(e)) for e in sim.events(n_events=n_events)]
    apply()
    gc.collect()
    gc.freeze()
    cfg = load_config(str(root / "config" / "riskwatch.yaml"))
    rates: list[list[float]] = [[] for _ in checkouts]
    for r in range(rounds):
        order = list(range(len(checkouts)))
        if r % 2:
            order.reverse()  # neither goes first every round
        for i in order:
            engine = engines[i](cfg)
            states: dict = {}
            get, process = states.get, engine.process
            t = time.process_time()
            for ev in events:
                st, _ = process(get(ev.entity_id), ev)
                states[ev.entity_id] = st
            rates[i].append(len(events) / (time.process_time() - t))
            del states, engine
            gc.collect()
        print(f"round {r + 1}  " + "  ".join(f"{c}: {rates[i][-1]:,.0f}/s" for i, c in enumerate(checkouts)), flush=True)
    base = statistics.median(rates[0])
    for i, c in enumerate(checkouts):
        ratios = [x / b for x, b in zip(rates[i], rates[0])]
        print(f"{c}: median {statistics.median(rates[i]):,.0f} events/s = {statistics.median(rates[i]) / base:.3f}x "
              f"{checkouts[0]}; per-round ratios {', '.join(f'{x:.3f}' for x in ratios)} "
              f"(median {statistics.median(ratios):.3f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkouts", nargs="+", type=Path, help="repository roots to compare (the first is the baseline)")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--entities", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--worker", action="store_true",
                    help="time BatchProcessor.handle (the worker's handling of a message without Faust)")
    ap.add_argument("--in-process", action="store_true",
                    help="one process, each checkout's engine.py in alternation (they may differ in it only)")
    a = ap.parse_args()
    if a.in_process and a.worker:
        ap.error("--worker runs each checkout in its own process: not with --in-process")
    if a.in_process:
        in_process(a.checkouts, a.events, a.entities, a.rounds)
        return
    rates: dict[Path, list[float]] = {c: [] for c in a.checkouts}
    for r in range(a.rounds):
        for c in (a.checkouts if r % 2 == 0 else a.checkouts[::-1]):  # neither goes first every round
            out = subprocess.run([sys.executable, "-c", CHILD_WORKER if a.worker else CHILD, str(c.resolve()),
                                  str(a.events), str(a.entities)],
                                 capture_output=True, text=True, check=True)
            rates[c].append(float(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}  {c}: {rates[c][-1]:,.0f} events/s", flush=True)
    base = statistics.median(rates[a.checkouts[0]])
    for c in a.checkouts:
        med = statistics.median(rates[c])
        print(f"{c}: median {med:,.0f} events/s = {med / base:.2f}x {a.checkouts[0]}")


if __name__ == "__main__":
    main()
