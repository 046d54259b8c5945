"""After Redis lost data, the API rebuilds the view's histories, spot-check list and inspection results
from Kafka without waiting for ops (:mod:`riskwatch.view_rebuild`)."""

from __future__ import annotations

import orjson
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
        # a tier change the worker made before it had the entity's register record (an entity's upsert and
        # its complaints are on different topics) has no region and industry in the worker's list; the
        # rebuild reads the register first and fills them in: the same change, better labelled
        checks_before, checks_after = (_changes(x.pop(SPOTCHECKS)) for x in (before, after))
        assert [(c, t) for c, t, _ in checks_after] == [(c, t) for c, t, _ in checks_before]
        assert all(a == b or b == {"region": None, "industry": None}
                   for (_, _, a), (_, _, b) in zip(checks_after, checks_before))
        differ = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        assert after == before, (differ[:5], [(set(before.get(k, ())) ^ set(after.get(k, ()))) for k in differ[:2]])


def _changes(rows) -> list[tuple[dict, float, dict]]:
    """The spot-check list's changes without their register labels, their scores, and the labels."""
    out = []
    for raw, score in rows:
        c = orjson.loads(raw)
        out.append((c, score, {k: c.pop(k, None) for k in ("region", "industry")}))
    return sorted(out, key=lambda x: (x[1], x[0]["entity_id"]))
