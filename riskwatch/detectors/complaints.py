"""Complaint signals: rate surprise (own baseline, peer group), bursts, damped floods, and a surge
spread over the peer group (``peer_surge``: many of its entities with a complaint in a day, one each,
as a shared supplier's outbreak gives, which no entity's own signals show).

Counts are exponentially decayed sums over event time, so a complaint's
contribution at any later time is exact and can be subtracted again when the
complaint is revoked. Rate surprise uses the variance-stabilised Poisson
statistic ``z = 2 (sqrt(observed) - sqrt(expected))``.

>>> from riskwatch.models import PopulationModels
>>> d = ComplaintDetector(burst_count=3)
>>> st, ent, m = d.new_state(), {"m": ["food", "110105"]}, PopulationModels()
>>> class C:  # a stand-in complaint event
...     def __init__(s, i, ts): s.complaint_id, s.ts_, s.category, s.severity, s.text = i, ts, "hygiene", 1, None
>>> sig = {}
>>> for i in range(4):
...     sig = d.update(st, C(f"c{i}", 0), 1000.0 + 60 * i, 1000.0 + 60 * i, ent, m)
>>> round(sig["burst"][0], 2), sig["burst"][1]  # same-category repeats are damped
(0.76, ['c3', 'c2', 'c1'])
"""

from __future__ import annotations

import math
import zlib
from typing import Annotated

from pydantic import Field

from ..config import AlertSpec, SignalSpec
from ..models import RECENT_S, peer_key
from .base import IGNORED, Detector, ParamsModel, Signals, clamp01, decay
from .seen import remember, remembers

__all__ = ["ComplaintDetector"]

LN2 = math.log(2.0)
DAY = 86400.0


class ComplaintParams(ParamsModel):
    short_half_life_days: Annotated[float, Field(gt=0)] = 7.0
    long_half_life_days: Annotated[float, Field(gt=0)] = 180.0
    burst_half_life_minutes: Annotated[float, Field(gt=0)] = 60.0
    burst_count: Annotated[float, Field(gt=1)] = 4.0
    duplicate_window_hours: Annotated[float, Field(gt=0)] = 24.0
    duplicate_weight: Annotated[float, Field(ge=0, le=1)] = 0.2
    flood_damping: Annotated[float, Field(ge=0)] = 0.5
    severity_weights: Annotated[list[float], Field(min_length=3, max_length=3)] = [1.0, 1.5, 2.5]
    floor_per_year: Annotated[float, Field(gt=0)] = 0.5
    warmup_days: Annotated[float, Field(ge=0)] = 90.0
    z_low: float = 1.5
    z_high: float = 5.0
    retain: Annotated[int, Field(ge=1, le=16)] = 5
    remember_ids: Annotated[int, Field(ge=0, le=16)] = 8  # older ids, as fingerprints (seen.py)
    surge_window_hours: Annotated[float, Field(gt=0, le=RECENT_S / 3600 - 1)] = 24.0  # at most 24 (models.RECENT_S)
    surge_min_entities: Annotated[int, Field(ge=2)] = 5
    surge_warmup_days: Annotated[float, Field(ge=0)] = 30.0
    # while its newest complaint is in the window, the surge is looked at again (a tick) this many minutes
    # after it, then at twice, 4 and 8 times that...: 0 = only at the entity's own complaints (until 2026-12-07)
    surge_recheck_minutes: Annotated[float, Field(ge=0, le=1440)] = 60.0


class ComplaintDetector(Detector):
    """Complaints against an entity compared with its own past and its peers'."""

    name = "complaints"
    handles = ("complaint",)
    Params = ComplaintParams
    default_signals = {
        "surprise_own": SignalSpec(weight=20, half_life_days=14),
        "surprise_peer": SignalSpec(weight=20, half_life_days=14),
        "burst": SignalSpec(weight=25, half_life_days=3,
                            alert=AlertSpec(at=0.75, clear_at=0.2, severity="warning")),
        "peer_surge": SignalSpec(weight=10, half_life_days=2,
                                 alert=AlertSpec(at=0.5, clear_at=0.2, severity="warning")),
    }

    def _prepare(self) -> None:
        self._hs = self.short_half_life_days * DAY
        self._hl = self.long_half_life_days * DAY
        self._hb = self.burst_half_life_minutes * 60.0
        self._win = self.duplicate_window_hours * 3600.0
        self._floor = self.floor_per_year / (365.0 * DAY)
        self._zspan = max(1e-9, self.z_high - self.z_low)
        self._sw = self.surge_window_hours * 3600.0
        self._swarm = self.surge_warmup_days * DAY
        self._step = self.surge_recheck_minutes * 60.0

    def new_state(self) -> dict:
        # s/l/b: short, long and burst decayed sums at time t; f: first seen;
        # r: retained [id, ts, weight, category crc, text crc] (newest first); h (once one has left r):
        # fingerprints of the newest ``remember_ids`` that left it, to recognise one sent again;
        # k (after a recheck): how many times the surge was looked at again since the newest complaint
        return {"s": 0.0, "l": 0.0, "b": 0.0, "t": 0.0, "f": None, "r": []}

    def _add(self, st: dict, w: float, ts: float) -> None:
        t = st["t"]
        if ts >= t:
            dt = ts - t
            st["s"] = max(0.0, st["s"] * decay(self._hs, dt) + w)
            st["l"] = max(0.0, st["l"] * decay(self._hl, dt) + w)
            st["b"] = max(0.0, st["b"] * decay(self._hb, dt) + w)
            st["t"] = ts
        else:  # late event: add its already-decayed weight
            dt = t - ts
            st["s"] = max(0.0, st["s"] + w * decay(self._hs, dt))
            st["l"] = max(0.0, st["l"] + w * decay(self._hl, dt))
            st["b"] = max(0.0, st["b"] + w * decay(self._hb, dt))

    def _weight(self, st: dict, ev, ts: float) -> tuple[float, int, int] | None:
        """The complaint's weight (None for a redelivery) and its category/text checksums."""
        cat = zlib.crc32(ev.category.encode())
        txt = zlib.crc32(" ".join(ev.text.lower().split()).encode()) if ev.text else 0
        cid = ev.complaint_id
        r = st["r"]
        # the id first: until 2026-12-05 a copy of a held complaint whose text repeated another's within
        # the window was weighed as a same-text repeat before its own entry was reached, and counted
        if any(x[0] == cid for x in r) or remembers(st.get("h"), cid, ts):
            return None  # sent again
        same_cat = 0
        for _id, rts, _w, rcat, rtxt in r:
            if abs(ts - rts) <= self._win:
                if txt and rtxt == txt:
                    return self.duplicate_weight, cat, txt
                if rcat == cat:
                    same_cat += 1
        return self.severity_weights[ev.severity - 1] / (1.0 + self.flood_damping * same_cat), cat, txt

    def update(self, st, ev, at, now, entity, models) -> Signals:
        # counted at its own time ``at``: complaints a day apart that arrive together (a backfill, a
        # batch from another hotline) are not a burst (until 2026-11-28 they were taken at the clock)
        ts = at
        got = self._weight(st, ev, ts)
        if got is None:
            return IGNORED  # held already (same id)
        w, cat, txt = got
        if st["f"] is None or ts < st["f"]:
            st["f"] = ts
        self._add(st, w, ts)
        r = st["r"]
        before = r[0][1] if r else None
        i = 0
        while i < len(r) and r[i][1] > ts:  # newest first: a late one goes to its place in time
            i += 1
        r.insert(i, [ev.complaint_id, ts, round(w, 4), cat, txt])
        self._trim(st)
        self._newest_changed(st, before)
        meta = entity.get("m")
        if meta:
            models.peers.add_complaint(peer_key(meta[0], meta[1]), w, ts, entity.get("id"))
        return self.evaluate(st, now, entity, models)

    def evaluate(self, st, now, entity, models) -> Signals:
        if st["f"] is None:
            return {}
        dt = now - st["t"]
        obs = st["s"] * decay(self._hs, dt)
        long_ = st["l"] * decay(self._hl, dt)
        window = self._hs / LN2  # expected decayed sum = rate * window
        ids = [x[0] for x in st["r"][:3]]
        own = peer = 0.0
        if now - st["f"] >= self.warmup_days * DAY:
            rate = max(self._floor, max(0.0, long_ - obs) * LN2 / self._hl)
            own = self._z(obs, rate * window)
        meta = entity.get("m")
        key, prate = None, 0.0
        if meta:
            key = peer_key(meta[0], meta[1])
            prate = models.peers.rate(key, now)
            if prate > 0:
                peer = self._z(obs, max(self._floor, prate) * window)
        burst = clamp01((st["b"] * decay(self._hb, dt) - 1.0) / (self.burst_count - 1.0))
        return {"surprise_own": (own, ids), "surprise_peer": (peer, ids), "burst": (burst, ids),
                "peer_surge": (self._surge(st, now, key, prate, entity, models), ids)}

    def _surge(self, st: dict, now: float, key: str | None, prate: float, entity: dict, models) -> float:
        """The peer group's surge, for an entity that is part of it (its newest complaint in the
        window): the Poisson z of the group's entities with a complaint in the window against the
        expected number (:meth:`PeerRates.expected`), mapped as the rate surprises; 0 under
        ``surge_min_entities``."""
        r = st["r"]
        if key is None or not r or r[0][1] < now - self._sw:
            return 0.0
        expected = models.peers.expected(key, now, self._sw, self._swarm, self._floor, prate)
        if expected <= 0.0:
            return 0.0
        obs = models.peers.complainers(key, now, self._sw, entity.get("id"))
        return self._z(obs, expected) if obs >= self.surge_min_entities else 0.0

    def next_change(self, st, now, entity) -> float | None:
        """The next look at the peer surge while the entity's newest complaint is in the surge window:
        ``surge_recheck_minutes`` after it, then 2, 4, 8... times that (``now`` if one passed unlooked at).
        The first entities of an outbreak complain before their group shows a surge; until 2026-12-07
        their ``peer_surge`` was valued at their own complaints only, so they got no signal and no alert
        of their own (later ones named them). Times from the complaint's, not from the ticks', so that
        ticking an entity more often changes nothing."""
        nxt = self._next_look(st, entity, now)
        if nxt is None:
            return None
        return nxt if nxt > now else now

    def recheck(self, st, now, entity, models) -> Signals:
        """At a tick, once a look of :meth:`next_change` is due: ``peer_surge`` as the group is now, if above
        the value held (a surge that grew since the entity's complaint); else nothing. The entity's other
        complaint signals keep the values of its complaints, decaying from there (the detector is not
        ``time_dependent``). One look per tick: looks that passed unlooked at (a feed caught up with, a worker
        that was down) come one tick after another, so a model snapshot that lags the feed at the first
        is caught up with by the later ones."""
        nxt = self._next_look(st, entity, now)
        if nxt is None or now < nxt:
            return {}
        st["k"] = st.get("k", 0) + 1
        meta = entity["m"]
        key = peer_key(meta[0], meta[1])
        surge = self._surge(st, now, key, models.peers.rate(key, now), entity, models)
        held = entity["g"].get(f"{self.name}.peer_surge")
        if surge <= (held[0] if held is not None else 0.0):
            return {}
        return {"peer_surge": (surge, [x[0] for x in st["r"][:3]])}

    def _next_look(self, st: dict, entity: dict, now: float) -> float | None:
        """None once the looks or the window are over at ``now`` (the entity's clock, or a tick's time: a
        backfill's complaints, a year old at the worker's first tick, get that one tick and no more)."""
        step, r = self._step, st["r"]
        if not step or not r or not entity.get("m"):
            return None
        end = r[0][1] + self._sw
        t = r[0][1] + step * (1 << st.get("k", 0))
        return t if t <= end and now <= end else None

    @staticmethod
    def _newest_changed(st: dict, before: float | None) -> None:
        """The looks again count from the newest complaint: a new newest one starts them again."""
        r = st["r"]
        if "k" in st and (not r or r[0][1] != before):
            del st["k"]

    def alert_detail(self, signal, st, now, entity, models) -> dict | None:
        """A peer surge's alert names the group, how many of its entities had complaints in the window
        against how many were expected, and which (newest first, at most 50): those whose complaints
        came before the surge showed get an alert of their own only at a later look (:meth:`recheck`)."""
        meta = entity.get("m")
        if signal != "peer_surge" or not meta:
            return None
        key, eid = peer_key(meta[0], meta[1]), entity.get("id")
        ids = models.peers.entities(key, now, self._sw)
        if eid not in ids:
            ids = [eid] + ids
        return {"peer_group": {"industry": meta[0], "region": meta[1], "window_hours": self.surge_window_hours,
                               "entities_with_complaints": models.peers.complainers(key, now, self._sw, eid),
                               "expected": round(models.peers.expected(key, now, self._sw, self._swarm,
                                                                       self._floor), 2),
                               "entities": ids[:50]}}

    def registered(self, st, now, entity, models, before=None) -> None:
        """Complaints that came before the entity's register data count in its peer group now, and those
        of an entity that changed group count in the new one instead of the old: until 2026-12-07 the
        first never reached a group, and the second stayed in the old one (whose entity count the
        entity had left). The entity joins the group's complainers at its first and its newest
        complaint, and its long decayed sum (half-life ``long_half_life_days``) joins the group's at the
        entity's clock: exact when that half-life is the peer model's (180 days both by default), close
        otherwise; from the old group both leave the same way."""
        if st["f"] is None or not st["r"]:
            return
        meta, eid = entity["m"], entity.get("id")
        if before:
            models.peers.add_complaint(peer_key(before[0], before[1]), -st["l"], st["t"], eid)
        key = peer_key(meta[0], meta[1])
        models.peers.add_complaint(key, 0.0, st["f"], eid)  # the group's history starts no later
        models.peers.add_complaint(key, 0.0, st["r"][0][1], eid)
        models.peers.add_complaint(key, st["l"], st["t"])

    def _z(self, obs: float, expected: float) -> float:
        z = 2.0 * (math.sqrt(obs) - math.sqrt(expected))
        return clamp01((z - self.z_low) / self._zspan)

    def _trim(self, st: dict) -> None:
        """Keep the newest ``retain`` whole; those that leave are remembered by fingerprint."""
        r = st["r"]
        for item in r[self.retain:]:
            self._forget(st, item)
        del r[self.retain:]

    def _forget(self, st: dict, item: list) -> None:
        if self.remember_ids:
            st["h"] = remember(st.get("h"), item[0], item[1], self.remember_ids)

    def holds(self, st, item_id: str) -> bool:
        return any(x[0] == item_id for x in st["r"])

    def retract(self, st, item_id, now, entity, models):
        """Take a held complaint back, here and from its peer group: until 2026-12-07 a revoked complaint
        still counted in its group's rate (``surprise_peer`` of every entity in the group) and, for 24
        hours, among the group's complainers (``peer_surge``)."""
        for i, item in enumerate(st["r"]):
            if item[0] == item_id:
                before = st["r"][0][1]
                del st["r"][i]
                self._newest_changed(st, before)
                self._add(st, -item[2], item[1])
                self._forget(st, item)  # revoked, or disputed: sent again, it is not counted
                meta = entity.get("m")
                if meta:
                    key, eid = peer_key(meta[0], meta[1]), entity.get("id")
                    models.peers.add_complaint(key, -item[2], item[1], eid)
                    r = st["r"]
                    if r and item[1] >= r[0][1]:  # it was the newest: the group keeps the entity's latest left
                        models.peers.add_complaint(key, 0.0, r[0][1], eid)
                return item, self.evaluate(st, now, entity, models)
        return None, {}

    def restore(self, st, item, now, entity, models) -> Signals:
        self._add(st, item[2], item[1])
        before = st["r"][0][1] if st["r"] else None
        st["r"].insert(0, item)
        st["r"].sort(key=lambda x: -x[1])
        self._trim(st)
        self._newest_changed(st, before)
        meta = entity.get("m")
        if meta:
            models.peers.add_complaint(peer_key(meta[0], meta[1]), item[2], item[1], entity.get("id"))
        return self.evaluate(st, now, entity, models)
