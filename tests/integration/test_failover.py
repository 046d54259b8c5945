"""Two workers share the partitions; one is SIGKILLed mid-stream; every event counts once."""

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
