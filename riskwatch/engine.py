"""The pure risk pipeline: ``process(state, event) -> (state, outputs)``.

No I/O, deterministic in event time and in event order. The state of one
entity is a small JSON-able dict; ``process`` takes ownership of it (updates
it in place and returns it). Outputs are plain dicts shaped like
:mod:`riskwatch.events`' output models (``risk_change``,
``spotcheck_change``, ``alert_candidate``). Population models are passed in
and updated as events arrive.

>>> from riskwatch.config import Config
>>> from riskwatch.events import parse_event
>>> eng = Engine(Config())
>>> st, out = eng.process(None, parse_event({"type": "record", "record_id": "r1",
...     "entity_id": "91350100M000100Y43", "ts": "2026-03-01T09:00:00+08:00",
...     "kind": "judicial_default", "severity": 3}))
>>> [o["type"] for o in out], st["sc"], eng.tier_of(st)
(['risk_change', 'spotcheck_change', 'alert_candidate'], 25.94, 'B')
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from math import log2

from .detectors.base import IGNORED, Detector
from .events import OPERATING, register_status
from .events import event_id as _event_id
from .models import PopulationModels, peer_key

__all__ = ["Engine", "process", "STATE_VERSION"]

STATE_VERSION = 1
TARGET_DETECTOR = {"complaint": "complaints", "record": "records"}  # an objection's target kind -> its detector


class Engine:
    """The risk logic for one config and one set of population models."""

    def __init__(self, config, models: PopulationModels | None = None) -> None:
        self.models = models or PopulationModels()
        self.ignored: Counter = Counter()  # events a detector did not apply (IGNORED), by detector
        self.set_config(config)

    def set_config(self, config) -> None:
        """Switch to another validated config (states and models are kept)."""
        from .scoring import Scorer

        self.config = config
        self.version = config.version
        self.detectors = config.detector_objects
        self.scorer = Scorer(config)
        self.routes = {}
        self.codes = {}
        self.details = {}  # code -> (detector name, detector, signal): detectors that add to their alerts
        for name, det in self.detectors.items():
            self.codes[name] = {s: f"{name}.{s}" for s in det.default_signals}
            if type(det).alert_detail is not Detector.alert_detail:
                self.details.update({code: (name, det, s) for s, code in self.codes[name].items()})
            for etype in det.handles:
                self.routes[etype] = (name, det)
        self.names = frozenset(self.detectors)
        self.timed = [(n, det) for n, det in self.detectors.items() if det.time_dependent]
        # looked at again at ticks without being time-dependent (a peer surge that grew since the
        # entity's complaint): their deadlines (next_change) count for next_tick too
        self.rechecked = [(n, det) for n, det in self.detectors.items()
                          if type(det).recheck is not Detector.recheck]
        self.deadlines = self.timed + [x for x in self.rechecked if x not in self.timed]
        # refreshed before each decision: time-dependent detectors whose signals drift between events
        # (a record's decay), not those that change only at deadlines (sensors' silence: a tick is due)
        self.refreshed = [(n, det) for n, det in self.timed if det.drifts]
        self.others = {n: [(tn, td) for tn, td in self.refreshed if tn != n] for n in self.detectors}
        self.min_delta = config.scoring.min_delta
        self.exclude_disputed = config.objections.exclude_disputed
        self.waive_dwell = config.objections.waive_dwell_on_correction
        self.tier_alerts = config.tier_alerts.tiers

    # ------------------------------------------------------------ state
    def new_state(self, entity_id: str) -> dict:
        """A fresh entity state. Keys: ``id``; ``m`` [industry, region, name]; ``d`` per-detector
        states; ``g`` signal cache {code: [value, ts, ids]}; ``sc`` score; ``es`` last emitted
        score and ``et`` when (absent before the first risk change); ``ti``/``tt`` tier index and
        since when; ``t`` entity clock; ``al`` open alert codes; ``x`` disputed items {target:
        [detector, objection_id, item, the objection's time]} (the time since 2026-12-07: an objection
        record Redis lost is put back from it); ``n`` events; ``p`` detectors switched off {name:
        since} (absent while none is); ``rs`` register status [status, since] (absent while it has
        only ever been operating: :func:`riskwatch.events.register_status`)."""
        return {"v": STATE_VERSION, "id": entity_id, "m": None,
                "d": {n: det.new_state() for n, det in self.detectors.items()},
                "g": {}, "sc": 0.0, "es": 0.0, "ti": 0, "tt": 0.0, "t": 0.0, "al": [], "x": {}, "n": 0}

    def tier_of(self, state: dict) -> str:
        return self.scorer.tier_names[min(state["ti"], len(self.scorer.tier_names) - 1)]

    # ---------------------------------------------------------- process
    def process(self, state: dict | None, ev) -> tuple[dict, list[dict]]:
        """Apply one validated input event to an entity's state; return (state, outputs)."""
        etype = ev.type
        if etype == "state_reset":  # before the state is read: it may be one the engine cannot apply events to
            return self._reset(state, ev)
        if state is None:
            state = self.new_state(ev.entity_id)
        ts = ev.ts
        before = state["t"]  # the clock as the last event left it
        at = now = ts.timestamp() if ts is not None else before
        if now < before:
            now = before  # late event: the entity's clock never runs backwards (detectors get ``at``)
        elif not state["tt"]:  # its first timed event: in its first tier since then (not since an
            state["tt"] = now  # upsert without a time, which left 1970-01-01 there until 2026-12-06)
        state["t"] = now
        state["n"] += 1
        d = state["d"]
        if "p" in state or not self.names.issuperset(d):  # a detector switched off, or on again
            self._pauses(state, d, before if state["n"] > 1 else now, now)
        g = state["g"]
        models = self.models
        route = self.routes.get(etype)
        if route is not None:
            name, det = route
            ds = d.get(name)
            if ds is None:
                ds = d[name] = det.new_state()
            check: list[str] = []
            # before the update: its features may read them
            moved = self._refresh(state, now, name, check) if self.others[name] else False
            changed = det.update(ds, ev, at, now, state, models)
            if not changed:
                if changed is IGNORED:
                    self.ignored[name] += 1
                return state, (self._decide(state, ev, now, check) if moved else [])
            codes = self.codes[name]
            for s, sig in changed.items():
                code = codes[s]
                v = sig[0]
                if not v:
                    old = g.get(code)
                    if old is None or not old[0]:
                        continue  # zero stays zero: nothing to store, score or alert
                g[code] = [v, sig[2] if len(sig) > 2 else now, sig[1]]  # a one-event value decays from its time
                check.append(code)
        elif etype == "tick":
            check = self._evaluate_all(state, now)
        elif etype == "entity":
            if not self._upsert(state, ev, now):
                return state, []
            # open, suspended or closed: its time-dependent signals as they are now (a closed entity's
            # devices are not silent, they are off), and the alerts they moved
            check = self._evaluate_all(state, now)
        elif etype in ("objection", "objection_resolution"):
            check = []
            if self.refreshed:
                self._refresh(state, now, None, check)
            before = self.scorer.score(state["g"], now)[0]
            codes, effect = self._objection(state, ev, now)
            check += codes
            return state, self._decide(state, ev, now, check, {
                "objection_id": ev.objection_id, "target_id": ev.target_id, "step": etype,
                "resolution": getattr(ev, "resolution", None), "effect": effect, "score_before": before})
        else:
            return state, []
        return state, self._decide(state, ev, now, check)

    def _refresh(self, state: dict, now: float, skip: str | None, check: list[str]) -> bool:
        """Signals of drifting detectors (other than ``skip``, just updated) as they are at ``now``: a
        decision takes a record's decay as it is at its time, not as the last tick left it. With
        steps that hold (silence, a full breach) and ticks due at every deadline, a tick that changes
        no output then changes nothing later either, which lets ticks go only where due
        (:meth:`next_tick`). Returns whether a value moved (those go to ``check``)."""
        d = state["d"]
        g = state["g"]
        moved = False
        for name, det in self.others[skip] if skip else self.refreshed:
            ds = d.get(name)
            if not ds or not det.wants_tick(ds):
                continue
            codes = self.codes[name]
            for sig, (v, ids) in det.evaluate(ds, now, state, self.models).items():
                code = codes[sig]
                old = g.get(code)
                if old is None:
                    if not v:
                        continue
                elif old[0] == v:  # the same value, evaluated now (its alert was checked when it moved)
                    old[1] = now
                    continue
                g[code] = [v, now, ids]
                check.append(code)
                moved = True
        return moved

    def _pauses(self, state: dict, d: dict, since: float, now: float) -> None:
        """``p`` {detector: since}: detectors with state that a config change switched off, and since
        when: the entity's clock before the first event seen without them (in the worker, the re-decide
        tick after the change, at the entity's own clock; an earlier bound only makes a resume cut out
        more). One switched on again resumes (:meth:`Detector.resume`). Until 2026-12-04 a pause was
        seen only when the entity held more detector states than the config had detectors: one
        detector switched off and another on in the same change went unseen."""
        paused = state.get("p") or {}
        for name in d:
            if name not in self.detectors and name not in paused:
                paused[name] = since
        for name in [n for n in paused if n in self.detectors]:
            off_since = paused.pop(name)
            ds = d.get(name)
            if ds:
                self.detectors[name].resume(ds, off_since, now)
        if paused:
            state["p"] = paused
        else:
            state.pop("p", None)

    def _evaluate_all(self, state: dict, now: float) -> list[str]:
        """At a tick or an upsert: time-dependent signals as they are at ``now``, and what rechecks find."""
        g = state["g"]
        self._reevaluate(state, g, now, time_dependent_only=True)
        for name, det in self.rechecked:
            ds = state["d"].get(name)
            if ds:
                codes = self.codes[name]
                for s, (v, ids) in det.recheck(ds, now, state, self.models).items():
                    g[codes[s]] = [v, now, ids]
        return list(g)

    def _reevaluate(self, state: dict, g: dict, now: float, time_dependent_only: bool) -> None:
        """Write every detector's signals at ``now`` into the signal cache ``g``."""
        for name, det in self.detectors.items():
            ds = state["d"].get(name)
            if not ds or (time_dependent_only and not det.time_dependent):
                continue
            codes = self.codes[name]
            for s, (v, ids) in det.evaluate(ds, now, state, self.models).items():
                code = codes[s]
                old = g.get(code)
                # a value that did not move keeps the events named when it did (a reading's id, not
                # its series'): what a tick that changes nothing writes must not show in later reasons
                g[code] = [v, now, old[2] if old is not None and old[0] == v else ids]

    def _upsert(self, state: dict, ev, now: float) -> bool:
        """Register data: ``m`` = [industry, region, name], and the address when the upsert has one
        (since 2026-12-06). Name and address are kept so that the state changelog alone can rebuild
        the view of an entity whose upsert has aged out of the input topic (states before 2026-11-28
        hold [industry, region]). The register status goes to ``rs`` (:func:`register_status`); only
        an operating entity is counted in its peer group. Returns whether the status changed."""
        old = state["m"]
        was, _since = register_status(state)
        status = ev.status
        counted_before = bool(old) and was == OPERATING
        counted_now = status == OPERATING
        moved = not old or old[0] != ev.industry or old[1] != ev.region  # a new peer group
        if counted_before and (moved or not counted_now):
            self.models.peers.add_entity(peer_key(old[0], old[1]), -1)
        if counted_now and (moved or not counted_before):
            self.models.peers.add_entity(peer_key(ev.industry, ev.region), +1)
        state["m"] = [ev.industry, ev.region, ev.name] if ev.address is None else \
            [ev.industry, ev.region, ev.name, ev.address]
        if moved and state["n"] > 1:  # events before: now in this group (Detector.registered)
            for name, det in self.detectors.items():
                ds = state["d"].get(name)
                if ds:
                    det.registered(ds, now, state, self.models, old)
        if status == was:
            return False
        state["rs"] = [status, now]  # an entity open again keeps when: its silence counts from then
        return True

    def _objection(self, state: dict, ev, now: float) -> tuple[list[str], str]:
        """Apply an objection or its resolution; returns the signal codes it moved and its effect, which
        the risk change it forces names (:data:`riskwatch.events.OBJECTION_EFFECTS`): until 2026-12-05
        an objection to an item the entity no longer holds individually changed nothing and said
        nothing, so neither the entity nor the regulator who revoked it could tell."""
        target = ev.target_id
        disputed = state["x"]
        if ev.type == "objection":
            if target in disputed:
                return [], "already_disputed"
            name = TARGET_DETECTOR[ev.target_kind]
            item, changed = None, {}
            det = self.detectors.get(name)
            ds = state["d"].get(name)  # None: a detector enabled since this state was made
            held = det is not None and ds is not None and det.holds(ds, target)
            if self.exclude_disputed and held:
                item, changed = det.retract(ds, target, now, state, self.models)
            disputed[target] = [name, ev.objection_id, item, ev.ts.timestamp()]
            effect = "not_held" if not held else "excluded" if item is not None else "counted_while_open"
        else:
            entry = disputed.pop(target, None)
            name = entry[0] if entry else self._holder(state, target)
            det = self.detectors.get(name) if name else None
            ds = state["d"].get(name) if name else None
            if det is None or ds is None:
                return [], "kept" if ev.resolution == "upheld" else "not_held"
            changed = {}
            excluded = bool(entry and entry[2] is not None)
            if ev.resolution == "upheld":
                effect = "restored" if excluded else "kept"
                if excluded:
                    changed = det.restore(ds, entry[2], now, state, self.models)
            elif excluded:
                effect = "removed"  # out while disputed, and now for good
            else:  # corrected / revoked, still counted
                item, changed = det.retract(ds, target, now, state, self.models)
                effect = "removed" if item is not None else "not_held"
        if not changed:
            return [], effect
        codes = self.codes[name]
        for s, (v, ids) in changed.items():
            state["g"][codes[s]] = [v, now, ids]
        return [codes[s] for s in changed], effect

    def _reset(self, old: dict | None, ev) -> tuple[dict, list[dict]]:
        """An operator's :class:`~riskwatch.events.StateReset`: a fresh state in place of ``old`` (which
        may lack any key, or be None when the runtime could not read it). The register data ``m`` (else
        the command's ``register_data``: the view's) and the runtime's source offsets ``o`` stay; the event
        count goes on from the larger of the old one and ``after_seq``, so the entity's ``seq`` only
        grows. The tier stays (the old state's, else the command's ``tier``: the view's), with its dwell
        starting again, so a reset does not by itself lower an entity's scrutiny: a score that stays low
        brings it down after the de-escalation dwell, as any. With ``keep_tier`` false the entity goes
        to the lowest tier. Outputs: a risk change to score 0 naming the reset, a spot-check change when
        the tier moved, and a resolution of each signal alert the old state held open (their evidence
        went with it; for an unreadable state, the command's ``open_alerts``: the alert store's).

        >>> from riskwatch.config import Config
        >>> from riskwatch.events import parse_event
        >>> eng, eid = Engine(Config()), "91350100M000100Y43"
        >>> st, _ = eng.process(None, parse_event({"type": "record", "record_id": "r1", "entity_id": eid,
        ...     "ts": "2026-03-01T09:00:00+08:00", "kind": "judicial_default", "severity": 3}))
        >>> reset = {"type": "state_reset", "reset_id": "rs-1", "entity_id": eid, "ts": "2026-03-02T09:00:00+08:00",
        ...          "author": "ops-li", "reason": "state written by a bad release"}
        >>> st2, out = eng.process(dict(st, al=list(st["al"])), parse_event(reset))
        >>> [(o["type"], o.get("status") or o["tier"]) for o in out], st2["sc"], eng.tier_of(st2), st2["n"]
        ([('risk_change', 'B'), ('alert_candidate', 'resolved')], 0.0, 'B', 2)
        >>> st3, out = eng.process(st, parse_event(dict(reset, keep_tier=False)))
        >>> [(o["type"], o.get("status") or o.get("to_tier") or o["tier"]) for o in out], eng.tier_of(st3)
        ([('risk_change', 'A'), ('spotcheck_change', 'A'), ('alert_candidate', 'resolved')], 'A')
        """
        old = old if isinstance(old, dict) else {}

        def kept(key, types, default):
            v = old.get(key)
            return v if isinstance(v, types) and not isinstance(v, bool) else default

        now = max(ev.ts.timestamp(), kept("t", (int, float), 0.0))
        st = self.new_state(ev.entity_id)
        m, o, rs = old.get("m"), old.get("o"), old.get("rs")
        if isinstance(m, list) and len(m) >= 2:
            st["m"] = m
            if isinstance(rs, list) and len(rs) == 2:
                st["rs"] = rs
        elif ev.register_data is not None:  # unreadable: the view's, so it stays counted once in its peer group
            r = ev.register_data
            st["m"] = [r.industry, r.region, r.name] + ([r.address] if r.address is not None else [])
            if r.status != OPERATING:  # and out of it, and not drawn, while not operating
                st["rs"] = [r.status, r.status_since.timestamp() if r.status_since else now]
        if isinstance(o, dict):
            st["o"] = o
        st["n"] = max(kept("n", int, 0), ev.after_seq) + 1
        st["t"] = st["tt"] = st["et"] = now
        scorer = self.scorer
        names = scorer.tier_names
        if "ti" in old:
            prev = min(max(kept("ti", int, 0), 0), len(names) - 1)
            al = old.get("al") if isinstance(old.get("al"), list) else []
        else:  # unreadable: the view's tier; the alert store's open alerts, else only a tier alert can be known
            prev = names.index(ev.tier) if ev.tier in names else 0
            al = list(ev.open_alerts) if ev.open_alerts is not None else ["tier"]
        tier = st["ti"] = prev if ev.keep_tier else 0
        if tier > 0 and "tier" in al and names[tier] in self.tier_alerts:
            st["al"] = ["tier"]  # its tier alert stays open with the tier, and resolves when the tier falls
        ts = _decision_time(ev, now)
        previous = min(max(float(kept("es", (int, float), 0.0)), 0.0), 100.0)
        out = [self._risk_change(st, ts, 0.0, previous, tier, now, [], ev.reset_id)]
        out[0]["reset"] = {"reset_id": ev.reset_id, "author": ev.author, "reason": ev.reason}
        if tier != prev:
            out.append(self._spotcheck_change(st, ts, prev, tier, 0.0, [], ev.reset_id))
        for code in al:
            if code in st["al"]:
                continue
            spec = scorer.alerts.get(code) if isinstance(code, str) else None
            if code == "tier" or spec is not None:
                out.append(self._candidate(st, ev, code, "resolved", spec.severity if spec else "info", 0.0, 0.0,
                                           [ev.reset_id]))
        return st, out

    def _holder(self, state: dict, target: str) -> str | None:
        for name in ("complaints", "records"):
            det = self.detectors.get(name)
            ds = state["d"].get(name)
            if det is not None and ds is not None and det.holds(ds, target):
                return name
        return None

    # ----------------------------------------------------------- decide
    def _decide(self, state: dict, ev, now: float, check: list[str], objection: dict | None = None) -> list[dict]:
        """Score, tier and outputs after an event. ``objection``: what an objection or its resolution
        did, which always gets a risk change naming it (the entity's history then says what a contest
        did, even when the score did not move)."""
        scorer = self.scorer
        score, parts = scorer.score(state["g"], now)
        state["sc"] = score
        prev = state["ti"]
        force = prev >= len(scorer.tier_names)  # a risk change even when nothing moved
        if force:  # its tier was removed by a config change: it is in the highest one left
            prev = state["ti"] = len(scorer.tier_names) - 1
        elif ev.type == "tick" and ev.redecide:  # after a config change: the view shows the one in force
            force = "et" in state or prev > 0
        elif objection is not None:
            force = True
        if self.waive_dwell and ev.type == "objection_resolution" and ev.resolution != "upheld":
            tier = min(prev, scorer.next_tier(prev, score))  # only ever down: the item was not earned
        else:
            tier = scorer.decide_tier(prev, score, state["tt"], now)
        out: list[dict] = []
        reasons = None
        ts = None  # computed only when there is an output (most events change no output)
        if tier != prev or force or abs(score - state["es"]) >= self.min_delta:
            ts = _decision_time(ev, now)
            reasons = scorer.reasons(parts, score)
            # since when the entity is in this tier: what a regulator asks after "who" and "why"
            since = now if tier != prev else state["tt"]
            out.append(self._risk_change(state, ts, score, state["es"], tier, since, reasons, _event_id(ev)))
            if objection is not None:
                out[-1]["objection"] = objection
            state["es"] = score
            state["et"] = now
        if tier != prev:
            if ts is None:
                ts = _decision_time(ev, now)
            state["ti"] = tier
            state["tt"] = now
            out.append(self._spotcheck_change(state, ts, prev, tier, score, reasons, _event_id(ev)))
            self._tier_alert(state, ev, score, prev, tier, out)
        alerts = scorer.alerts
        if alerts:
            for code in check:
                spec = alerts.get(code)
                if spec is not None:
                    self._signal_alert(state, ev, now, code, spec, score, out)
        return out

    def _risk_change(self, state, ts, score, previous, tier, since, reasons, cause) -> dict:
        return {"type": "risk_change", "entity_id": state["id"], "ts": ts, "seq": state["n"], "score": score,
                "previous_score": previous, "tier": self.scorer.tier_names[tier],
                "tier_since": datetime.fromtimestamp(since, tz=timezone.utc), "reasons": reasons,
                "cause_event_id": cause, "config_version": self.version}

    def _spotcheck_change(self, state, ts, prev, tier, score, reasons, cause) -> dict:
        scorer = self.scorer
        return {"type": "spotcheck_change", "entity_id": state["id"], "ts": ts, "from_tier": scorer.tier_names[prev],
                "to_tier": scorer.tier_names[tier], "from_ratio": scorer.ratios[prev], "to_ratio": scorer.ratios[tier],
                "score": score, "reasons": reasons, "cause_event_id": cause, "config_version": self.version}

    def _candidate(self, state, ev, code, status, severity, value, score, ids) -> dict:
        return {"type": "alert_candidate", "entity_id": state["id"], "ts": _decision_time(ev, state["t"]),
                "signal": code, "status": status, "severity": severity, "value": round(value, 4),
                "dedup_key": f"{state['id']}:{code}", "score": score,
                "tier": self.tier_of(state), "event_ids": list(ids), "config_version": self.version}

    def _signal_alert(self, state, ev, now, code, spec, score, out) -> None:
        cached = state["g"][code]
        v = self.scorer.value(code, cached, now)
        open_ = state["al"]
        if code not in open_ and v >= spec.at:
            open_.append(code)
            out.append(self._candidate(state, ev, code, "firing", spec.severity, v, score, cached[2]))
            d = self.details.get(code)
            ds = state["d"].get(d[0]) if d else None
            detail = d[1].alert_detail(d[2], ds, now, state, self.models) if ds else None
            if detail:
                out[-1]["detail"] = detail
        elif code in open_ and v < spec.clear:
            open_.remove(code)
            out.append(self._candidate(state, ev, code, "resolved", spec.severity, v, score, cached[2]))

    def _tier_alert(self, state, ev, score, prev, tier, out) -> None:
        names = self.scorer.tier_names
        sev = self.tier_alerts.get(names[tier])
        open_ = state["al"]
        if sev is not None and tier > prev:
            if "tier" not in open_:
                open_.append("tier")
            out.append(self._candidate(state, ev, "tier", "firing", sev, tier, score, [_event_id(ev)]))
        elif sev is None and "tier" in open_:
            open_.remove("tier")
            out.append(self._candidate(state, ev, "tier", "resolved", "info", tier, score, [_event_id(ev)]))

    # --------------------------------------------------------- read-only
    def alert_current(self, state: dict, code: str, at: float) -> bool:
        """Whether the condition of an alert candidate just emitted (``code``: a signal, or ``tier``) still
        holds at ``at``, a wall clock later than the entity's: its signal, evaluated then, at or above the
        alert's clear level; for ``tier``, the score then not under the tier's down threshold. The worker
        marks candidates with it (``current``) and the dispatcher opens no alert for one that is not: a
        backfill of last year's complaints sets risk states, it does not page inspectors about bursts long
        over (until 2026-12-05 it did, and the worker's next tick then resolved each). An inspection
        entered ten days late still alerts: its ``critical_fail`` takes 600 days to fall under 0.1.

        >>> from riskwatch.config import Config
        >>> from riskwatch.events import parse_event
        >>> eng, st, cands = Engine(Config()), None, []
        >>> for i in range(6):
        ...     st, out = eng.process(st, parse_event({"type": "complaint", "complaint_id": f"c{i}",
        ...         "entity_id": "91350100M000100Y43", "ts": f"2025-03-01T09:0{i}:00+08:00", "category": f"k{i}"}))
        ...     cands += [(o["signal"], o["status"]) for o in out if o["type"] == "alert_candidate"]
        >>> cands
        [('complaints.burst', 'firing')]
        >>> eng.alert_current(st, "complaints.burst", st["t"] + 3600), eng.alert_current(st, "complaints.burst",
        ...                                                                              st["t"] + 30 * 86400)
        (True, False)
        """
        if at <= state["t"]:
            return True
        g = dict(state["g"])
        self._reevaluate(state, g, at, time_dependent_only=True)
        scorer = self.scorer
        if code == "tier":
            ti = state["ti"]
            return ti >= len(scorer.tier_names) or scorer.next_tier(ti, scorer.score(g, at)[0]) >= ti
        spec = scorer.alerts.get(code)
        c = g.get(code)
        if spec is None or c is None:
            return True
        return scorer.value(code, c, at) >= spec.clear

    def evaluate(self, state: dict, now: float) -> tuple[float, list]:
        """Score of an entity at event time ``now`` without changing its state."""
        g = dict(state["g"])
        self._reevaluate(state, g, now, time_dependent_only=False)
        return self.scorer.score(g, max(now, state["t"]))

    def next_tick(self, state: dict) -> float | None:
        """The earliest event time at which a tick can change this entity's outputs, or None if time
        alone changes nothing: a detector's deadline (silence, a breach's minimum duration, an expiry, a
        look again at a peer surge), an open signal alert decaying to its clear level, the score
        falling ``min_delta`` below the last one emitted or under its tier's down threshold, a tier
        change held back by its dwell. Never later than the first such time; often earlier (a tick
        there changes nothing, and the next is asked for). Replay and the worker's timer tick an entity
        only once it is due: before 2026-12-04 every entity with a sensor, a record, an open alert, a
        tier above the lowest or a decaying signal got one each interval, 24.6M ticks for 318k events
        in a 60-day replay of 20,000 entities (49,295 since).
        """
        t = state["t"]
        scorer = self.scorer
        ti = state["ti"]
        if ti >= len(scorer.tier_names):
            return t  # its tier was removed by a config change
        due = None
        faster: dict[str, float] = {}  # signals that can fall faster than configured: their half-life
        d = state["d"]
        for name, det in self.deadlines:
            ds = d.get(name)
            if not ds:
                continue
            c = det.next_change(ds, t, state)
            if c is not None and (due is None or c < due):
                due = c
            hl = det.half_lives(ds)
            if hl:
                codes = self.codes[name]
                for sig, h in hl.items():
                    code = codes[sig]
                    w = scorer.weights.get(code)
                    if h and w and w[1] and w[1] < h:
                        h = w[1]  # the faster of the two
                    faster[code] = h
        g = state["g"]
        for code in state["al"]:
            spec = scorer.alerts.get(code)
            c = g.get(code)
            if spec is None or c is None:
                continue  # the tier alert moves with the tier
            h = faster.get(code, scorer.weights[code][1])
            if c[0] < spec.clear:
                return t
            if h:
                at = c[1] + h * log2(c[0] / spec.clear)
                if due is None or at < due:
                    due = at
        score = scorer.score(g, t)[0]
        target = state["es"] - self.min_delta
        if target > 0:
            at = scorer.falls_to(g, t, target, faster)
            if at is not None and (due is None or at < due):
                due = at
        if ti > 0:
            at = scorer.falls_to(g, t, scorer.downs[ti], faster)
            if at is not None:
                at = max(at, state["tt"] + scorer.dwell_down)
                if due is None or at < due:
                    due = at
        if scorer.next_tier(ti, score) > ti:  # held back by the dwell
            at = state["tt"] + scorer.dwell_up
            if due is None or at < due:
                due = at
        return due


def _decision_time(ev, now: float):
    """When a decision was taken: the event's time, or the entity's clock for a late event
    (an entity's outputs are then in time order even when its feeds arrive out of order)."""
    ts = ev.ts
    if ts is not None and ts.timestamp() == now:
        return ts
    return datetime.fromtimestamp(now, tz=timezone.utc)


def process(state: dict | None, event, config, models: PopulationModels | None = None):
    """Functional form: ``process(state, event, config) -> (state, outputs)``.

    Builds an :class:`Engine` per call; runtimes keep one :class:`Engine` instead."""
    return Engine(config, models).process(state, event)
