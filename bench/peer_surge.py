"""``complaints.peer_surge`` on simulated populations: outbreaks found, entities named, false alerts.

    python bench/peer_surge.py [--entities 2000] [--events 100000] [--days 90] [--seeds 1,2,3]
    python bench/peer_surge.py --cost [--entities 100000 --events 300000]

Each seed is replayed (``riskwatch replay``'s loop, ticks included) twice: with two staged outbreaks
(``Simulation(outbreaks=2)``: 40% of a peer group, at least 8, one complaint each within 4 hours) and
without. Printed per run: the outbreak entities, how many got an alert of their own, how many were
named in some alert's ``detail.peer_group.entities``, the other members of an outbreak group alerted (they
had a complaint in the surge's window: part of it, though not staged), and false alerts (entities of
groups with no outbreak), with the group-days the run covers (the false alert rate's denominator).
Quality figures, not speed: the simulator's complaint rate (tens a year per entity) is far above a real
register's, which makes a surge harder to see (more expected).

``--cost``: what the surge's work costs the engine, in one process over the same events, alternating
(3 rounds, CPU time): the engine as it is against the engine with the surge switched off (the detector's
``_surge`` answering 0 and the peer model remembering no entity, by monkeypatch). On a shared machine
whose speed drifts between processes this is steadier than ``bench/engine_ab.py``.
"""

from __future__ import annotations

import argparse
import gc
import io
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from riskwatch.config import load_config  # noqa: E402
from riskwatch.engine import Engine  # noqa: E402
from riskwatch.replay import Replay  # noqa: E402
from riskwatch.simulate import INDUSTRIES, REGIONS, Simulation  # noqa: E402

SURGE = "complaints.peer_surge"


def run(entities: int, events: int, days: float, seed: int, outbreaks: int) -> dict:
    sim = Simulation(n_entities=entities, seed=seed, days=days, outbreaks=outbreaks)
    out = io.BytesIO()
    Replay(Engine(load_config()), out=out).run(orjson.dumps(e) for e in sim.events(n_events=events))
    group = {e["id"]: (e["industry"], e["region"]) for e in sim.entities}
    staged = {e["id"] for e in sim.entities if e["outbreak"]}
    hit_groups = {group[e] for e in staged}
    fired, named = set(), set()
    for line in out.getvalue().splitlines():
        o = orjson.loads(line)
        if o["type"] == "alert_candidate" and o["signal"] == SURGE and o["status"] == "firing":
            fired.add(o["entity_id"])
            named.update(o["detail"]["peer_group"]["entities"])
    return {"seed": seed, "outbreaks": outbreaks, "staged": len(staged), "alerted": len(fired & staged),
            "named": len(named & staged),
            "group_alerted": len({e for e in fired - staged if group[e] in hit_groups}),
            "false": len({e for e in fired if group[e] not in hit_groups}),
            "false_groups": len({group[e] for e in fired if group[e] not in hit_groups}),
            "group_days": round(len(INDUSTRIES) * len(REGIONS) * days)}


def cost(entities: int, events: int) -> None:
    from riskwatch.detectors.complaints import ComplaintDetector
    from riskwatch.events import parse_event
    from riskwatch.models import PeerRates

    sim = Simulation(n_entities=entities, seed=42, bad_share=0.05, days=90)
    evs = [parse_event(e) for e in sim.events(n_events=events)]
    surge, remember = ComplaintDetector._surge, PeerRates._remember

    def run(on: bool) -> float:
        ComplaintDetector._surge = surge if on else (lambda self, st, now, key, prate, entity, models: 0.0)
        PeerRates._remember = remember if on else (lambda self, key, entity, ts, start=None: None)
        eng, states = Engine(load_config()), {}
        gc.collect()
        t0 = time.process_time()
        for ev in evs:
            states[ev.entity_id], _ = eng.process(states.get(ev.entity_id), ev)
        return len(evs) / (time.process_time() - t0)

    res: dict[bool, list[float]] = {True: [], False: []}
    for r in range(3):
        for on in (False, True):
            res[on].append(run(on))
            print(f"round {r + 1}  surge {'on ' if on else 'off'}  {res[on][-1]:,.0f} events/s", flush=True)
    on, off = statistics.median(res[True]), statistics.median(res[False])
    print(f"{len(evs):,} events on {entities:,} entities: surge on {on:,.0f}, off {off:,.0f} events/s "
          f"(medians of 3): {on / off:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entities", type=int, default=2000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--days", type=float, default=90.0)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--cost", action="store_true", help="the surge's cost to the engine (see the module's doc)")
    a = ap.parse_args()
    if a.cost:
        cost(a.entities, a.events)
        return 0
    print(f"{a.entities} entities, {a.events} events over {a.days:g} days, "
          f"{len(INDUSTRIES) * len(REGIONS)} peer groups")
    cols = ("seed", "outbreaks", "staged", "alerted", "named", "group_alerted", "false", "false_groups", "group_days")
    print(" ".join(f"{c:>13}" for c in cols))
    total = {"false_groups": 0, "group_days": 0, "staged": 0, "alerted": 0, "named": 0}
    for seed in (int(x) for x in a.seeds.split(",")):
        for n in (2, 0):
            r = run(a.entities, a.events, a.days, seed, n)
            print(" ".join(f"{r[c]:>13}" for c in cols), flush=True)
            for k in total:
                total[k] += r[k]
    print(f"outbreak entities alerted {total['alerted']}/{total['staged']}, named {total['named']}/{total['staged']}; "
          f"groups falsely alerted {total['false_groups']} in {total['group_days']} group-days "
          f"({1000 * total['false_groups'] / max(1, total['group_days']):.2f} per 1,000)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
