"""Two workers share the partitions; one is SIGKILLed mid-stream; every event counts once.
A worker SIGKILLed and restarted on its own local RocksDB store counts every event once too."""

from __future__ import annotations

import time
from collections import Counter

from riskwatch.simulate import Simulation

from .conftest import wait_for
from .helpers import produce, changelog_states


def test_sigkill_one_of_two_workers_counts_every_event_once(stack):
    s, workers = stack
    sim = Simulation(n_entities=400, seed=9, bad_share=0.1, days=30)
    events = list(sim.events(n_events=40000))
    per_entity = Counter(e["entity_id"] for e in events)
    a = workers.start()
    b = workers.start()
    # small envelopes so there are many messages in flight when the worker dies
    produce(s, events, batch_size=20)
    wait_for(lambda: workers.metric(a, "riskwatch_events_processed_total") > 2000 or
             workers.metric(b, "riskwatch_events_processed_total") > 2000, 90, "both workers busy",
             workers.logs)
    victim = a if workers.metric(a, "riskwatch_events_processed_total") > 0 else b
    workers.kill(victim)
    survivor = b if victim == a else a

    def done():
        st = changelog_states(s.broker, s.app_id)
        return st if sum(x["n"] for x in st.values()) >= len(events) else None

    t0 = time.monotonic()
    def shortfall():
        st = changelog_states(s.broker, s.app_id)
        counted = sum(x["n"] for x in st.values())
        return (f"counted {counted} of {len(events)} events in {len(st)} entity states; survivor consumed "
                f"{workers.metric(survivor, 'riskwatch_events_consumed_total'):.0f}, processed "
                f"{workers.metric(survivor, 'riskwatch_events_processed_total'):.0f}, skipped "
                f"{workers.metric(survivor, 'riskwatch_events_redelivered_total'):.0f}\n" + workers.logs()[-4000:])

    states = wait_for(done, 120, "the survivor to finish the stream", shortfall)
    time.sleep(3)  # anything still in flight would overshoot the count
    states = changelog_states(s.broker, s.app_id)
    counted = {eid: st["n"] for eid, st in states.items()}
    assert counted == dict(per_entity), {e: (counted.get(e), n) for e, n in per_entity.items()
                                         if counted.get(e) != n}
    assert workers.metric(survivor, "riskwatch_events_processed_total") > 0
    assert workers.metric(survivor, "riskwatch_resume_gaps_total") == 0
    print(f"survivor finished {time.monotonic() - t0:.1f}s after the kill; redelivered and skipped: "
          f"{workers.metric(survivor, 'riskwatch_events_redelivered_total'):.0f}")


def test_sigkill_then_restart_on_the_same_local_store_counts_every_event_once(stack):
    """The local store (RocksDB, no write-ahead log) of a killed worker has lost its memtable; the
    restarted worker must rebuild the rest from the changelog and skip what its states already hold."""
    s, workers = stack
    sim = Simulation(n_entities=400, seed=11, bad_share=0.1, days=30)
    events = list(sim.events(n_events=30000))
    per_entity = Counter(e["entity_id"] for e in events)
    rocks = {"RISKWATCH_STORE": "rocksdb://"}
    a = workers.start(rocks)
    produce(s, events, batch_size=20)
    wait_for(lambda: workers.metric(a, "riskwatch_events_processed_total") > 5000, 90, "the worker busy",
             workers.logs)
    workers.kill(a)
    assert any((s.data_dir / "w0").rglob("*.sst")) or any((s.data_dir / "w0").rglob("CURRENT")), \
        "the killed worker had a local RocksDB store"
    b = workers.start(rocks, data_of=a)

    def done():
        st = changelog_states(s.broker, s.app_id)
        return st if sum(x["n"] for x in st.values()) >= len(events) else None

    wait_for(done, 120, "the restarted worker to finish the stream",
             lambda: f"processed {workers.metric(b, 'riskwatch_events_processed_total'):.0f}\n" + workers.logs())
    time.sleep(3)  # anything still in flight would overshoot the count
    counted = {eid: st["n"] for eid, st in changelog_states(s.broker, s.app_id).items()}
    assert counted == dict(per_entity), {e: (counted.get(e), n) for e, n in per_entity.items()
                                         if counted.get(e) != n}
    assert workers.metric(b, "riskwatch_resume_gaps_total") == 0
    recovered = [line for line in (s.data_dir / "worker1.log").read_text(errors="replace").splitlines()
                 if " recovered: " in line]
    print("restarted worker:", *recovered[-4:], sep="\n  ")
