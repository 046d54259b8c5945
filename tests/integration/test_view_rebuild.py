"""After Redis lost data, the API rebuilds the view's histories, spot-check list and inspection results
from Kafka without waiting for ops (:mod:`riskwatch.view_rebuild`)."""

from __future__ import annotations

import redis as redis_sync

from riskwatch.simulate import Simulation
from riskwatch.view import SPOTCHECKS
from riskwatch.view_rebuild import LOST

from .api_helpers import client
from .conftest import wait_for
from .helpers import produce

# what the workers' states do not hold: until 2026-12-08 it came back only with rebuild-view run by hand
FROM_TOPICS = ("rw:history:", "rw:inspections:")


def _from_topics(r) -> dict:
    out = {k: r.zrange(k, 0, -1, withscores=True) for p in FROM_TOPICS for k in r.scan_iter(match=p + "*", count=1000)}
    out[SPOTCHECKS] = r.zrange(SPOTCHECKS, 0, -1, withscores=True)
    return out


def test_the_api_rebuilds_what_the_workers_cannot_write_back(stack):
    """A draw's work list and outcomes count an entity as checked by the inspection results in the view:
    until 2026-12-08, after Redis lost its data, every entity showed unchecked, every history was empty
    and the spot-check list too, until ops ran ``riskwatch rebuild-view --no-flush``."""
    s, workers = stack
    r = redis_sync.Redis.from_url(s.redis_url, decode_responses=True)
    events = list(Simulation(n_entities=200, seed=5, bad_share=0.0, days=30).events(n_events=8000))
    workers.start()
    produce(s, events, batch_size=100)
    workers.wait_committed(timeout=120)
    wait_for(lambda: r.hlen("rw:view:parts") == 4, 30, "the worker to mark the view", workers.logs)
    before = _from_topics(r)
    assert len(before[SPOTCHECKS]) > 0 and sum(1 for k in before if k.startswith("rw:history:")) > 100
    assert sum(1 for k in before if k.startswith("rw:inspections:")) > 20
    with client(s) as c:
        r.flushall()  # Redis restarted without its data
        wait_for(lambda: "riskwatch_view_rebuilds_total 1.0" in c.get("/metrics").text, 90,
                 "the view rebuilt", workers.logs)
        assert not r.exists(LOST)
        after = _from_topics(r)
        assert after == before, sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))[:5]
