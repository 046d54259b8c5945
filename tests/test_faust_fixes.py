"""Fix 4 of :mod:`riskwatch.streams.faust_fixes` on Faust's own ``Consumer._new_offset``: commits of a
tracked topic never pass what the application finished, and what the cap holds back is committed later.
(The worker-level test is ``test_a_worker_stopped_while_it_recovers_leaves_its_first_round_to_the_next``.)"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from faust.transport.consumer import Consumer

from riskwatch.streams.faust_fixes import bounded_commits

TP = ("rw.complaints", 0)


def _consumer(bound):
    """The attributes ``_new_offset`` reads, on a stand-in (no broker: the logic alone)."""
    return SimpleNamespace(app=SimpleNamespace(riskwatch_commit_bound=bound), _acked=defaultdict(list),
                           _acked_index=defaultdict(set), _gap=defaultdict(lambda: None),
                           _committed_offset=defaultdict(lambda: None))


def _ack(c, offsets) -> None:
    c._acked[TP].extend(offsets)
    c._acked_index[TP].update(offsets)


def test_nothing_is_committed_past_what_the_application_finished():
    bounded_commits()
    finished = {"next": None}
    c = _consumer(lambda tp: (True, finished["next"]))
    _ack(c, range(10, 21))  # acked by Faust: 10..20
    assert Consumer._new_offset(c, TP) is None  # no round finished yet
    assert c._acked[TP] == list(range(10, 21))
    finished["next"] = 16  # rounds finished 10..15
    assert Consumer._new_offset(c, TP) == 16
    c._committed_offset[TP] = 16
    assert c._acked[TP] == list(range(16, 21))  # held back, not dropped
    _ack(c, range(21, 25))
    finished["next"] = 25
    assert Consumer._new_offset(c, TP) == 25  # the held-back run goes with the next commit
    assert c._acked[TP] == []


def test_untracked_topics_commit_as_faust_does():
    bounded_commits()
    c = _consumer(lambda tp: (False, None))
    _ack(c, range(3, 8))
    assert Consumer._new_offset(c, TP) == 8
