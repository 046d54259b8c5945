"""A seedable population of entities and their feeds, with a hidden minority
that deteriorates: complaint bursts, cold-chain excursions, silent sensors,
failed inspections and penalties. Used by ``riskwatch simulate``, the demo,
the benchmarks and the tests. Ground truth is returned separately.

>>> sim = Simulation(n_entities=50, seed=3)
>>> evs = list(sim.events(n_events=500))
>>> evs[0]["type"], sum(e["type"] == "entity" for e in evs), len(evs)
('entity', 50, 550)
>>> evs == list(Simulation(n_entities=50, seed=3).events(n_events=500))
True
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone

from . import uscc

__all__ = ["Simulation"]

INDUSTRIES = ("catering", "food_retail", "cold_chain", "pharmacy", "cosmetics", "childcare")
REGIONS = ("110101", "110105", "310104", "330106", "440305", "510107")
CATEGORIES = ("food_safety", "hygiene", "false_advertising", "pricing", "quality", "service")
TZ = timezone(timedelta(hours=8))

# business names as a register shows them: place, trade name, trade, legal form (上海 | 鑫源 | 餐饮 | 有限公司)
_CITY = {"11": "北京", "31": "上海", "33": "杭州", "44": "深圳", "51": "成都"}
_TRADE_CHARS = "鑫源华盛恒泰瑞祥福康佳美誉德兴隆永安宏达金银丰和新益嘉信润昌海天宝利顺豪明辉众荣"
_TRADE_WORDS = {"catering": ("餐饮", "饭店", "小吃", "酒家"), "food_retail": ("食品", "超市", "便利店", "商行"),
                "cold_chain": ("冷链物流", "冷链", "冻品", "供应链"), "pharmacy": ("大药房", "医药", "药店", "药业"),
                "cosmetics": ("化妆品", "美妆", "日化", "美容用品"), "childcare": ("托育", "幼教", "儿童之家", "托管")}
_FORMS = ("有限公司", "有限公司", "有限公司", "有限责任公司", "股份有限公司", "经营部")
# addresses as a register shows them: city, district (of the region code), road, number
_DISTRICT = {"110101": "北京市东城区", "110105": "北京市朝阳区", "310104": "上海市徐汇区", "330106": "杭州市西湖区",
             "440305": "深圳市南山区", "510107": "成都市武侯区"}
_ROADS = ("人民路", "建设路", "解放路", "中山路", "和平路", "文化路", "光明街", "新华街", "长安街", "滨河路",
          "科技园路", "学院路")


def business_name(entity_id: str, industry: str, region: str) -> str:
    """A made-up business name, the same for the same entity (from a hash of its id: the feed's random
    sequence is not touched, so a seed gives the same events as before names were made).

    >>> business_name("91110101MA01ABCD3X", "catering", "110101")
    '北京恒宝酒家有限责任公司'
    """
    h = int.from_bytes(hashlib.blake2b(entity_id.encode(), digest_size=8).digest(), "big")
    chars = _TRADE_CHARS
    n = len(chars)
    words = _TRADE_WORDS.get(industry, ("商贸",))
    return (_CITY.get(region[:2], "") + chars[h % n] + chars[h // n % n] + words[h // n // n % len(words)]
            + _FORMS[h // n // n // len(words) % len(_FORMS)])


def business_address(entity_id: str, region: str) -> str:
    """A made-up address in the entity's district, the same for the same entity (a hash of its id).

    >>> business_address("91110101MA01ABCD3X", "110101")
    '北京市东城区新华街218号'
    """
    h = int.from_bytes(hashlib.blake2b(entity_id.encode(), digest_size=8, person=b"address").digest(), "big")
    return f"{_DISTRICT.get(region, '')}{_ROADS[h % len(_ROADS)]}{h // len(_ROADS) % 300 + 1}号"


class Simulation:
    """``n_entities`` entities, of which ``bad_share`` deteriorate from a random onset."""

    def __init__(self, n_entities: int = 1000, seed: int = 0, bad_share: float = 0.05,
                 days: float = 60.0, start: datetime | None = None, id_scheme: str = "uscc",
                 onset: tuple[float, float] = (0.3, 0.6), mix: tuple[float, float] | None = None,
                 closing_share: float = 0.0, closing: tuple[float, float] = (0.1, 0.9),
                 outbreaks: int = 0, outbreak_at: tuple[float, float] = (0.7, 0.9)) -> None:
        """``mix``: (share of sensor readings, share of events that go to any entity) of the feed; the
        rest go to deteriorating entities once their onset passed (readings before). None: 70% readings,
        and a quarter of the rest to deteriorating ones (the benchmarks' and tests' mix).
        ``closing_share`` of the entities that do not deteriorate close at a time in ``closing`` (shares
        of the span): an upsert with status ``closed``, and no event of theirs after it (their devices
        are off). Drawn from a generator of its own: with 0 the feed is what it was before.
        ``outbreaks`` peer groups (industry x region, of 10 entities or more) have an outbreak at a time
        in ``outbreak_at``: 40% of the group (at least 8, at most 40) get one food-safety complaint
        each within 4 hours, as a shared supplier's problem gives; no entity bursts. Its own generator
        too."""
        self.mix = mix
        self.rng = rng = random.Random(seed)
        self.start = start or datetime(2026, 1, 1, tzinfo=TZ)
        self.span = days * 86400.0
        self.entities = []
        for i in range(n_entities):
            region = rng.choice(REGIONS)
            eid = uscc.generate(rng, region) if id_scheme == "uscc" else f"E{i:07d}"
            bad = rng.random() < bad_share
            at = rng.uniform(*onset) * self.span if bad else None
            self.entities.append({"id": eid, "industry": rng.choice(INDUSTRIES), "region": region,
                                  "onset": at, "silent": bad and rng.random() < 0.3})
        self.bad = [e for e in self.entities if e["onset"] is not None]
        crng = random.Random(f"closing:{seed}")
        for e in self.entities:
            e["closed"] = None
            if e["onset"] is None and closing_share and crng.random() < closing_share:
                e["closed"] = crng.uniform(*closing) * self.span
        self.closing = sorted((e for e in self.entities if e["closed"] is not None), key=lambda e: e["closed"])
        self.outbreak = self._outbreaks(seed, outbreaks, outbreak_at)

    def _outbreaks(self, seed: int, n: int, at: tuple[float, float]) -> list[tuple[float, dict]]:
        """The outbreaks' complaints: (time, entity), in time order; each entity's ``outbreak`` time."""
        for e in self.entities:
            e["outbreak"] = None
        orng = random.Random(f"outbreak:{seed}")
        groups: dict[tuple[str, str], list[dict]] = {}
        for e in self.entities:
            groups.setdefault((e["industry"], e["region"]), []).append(e)
        big = sorted(k for k, v in groups.items() if len(v) >= 10)
        out = []
        for key in orng.sample(big, min(n, len(big))):
            t0 = orng.uniform(*at) * self.span
            members = [e for e in groups[key] if not _closed(e, t0 + 4 * 3600)]
            for e in orng.sample(members, min(len(members), 40, max(8, round(0.4 * len(members))))):
                e["outbreak"] = t0 + orng.uniform(0, 4 * 3600)
                out.append((e["outbreak"], e))
        return sorted(out, key=lambda x: x[0])

    def truth(self) -> list[dict]:
        """Ground truth: which entities deteriorate and from when."""
        return [{"entity_id": e["id"], "deteriorating": e["onset"] is not None,
                 "onset": self._ts(e["onset"]) if e["onset"] is not None else None,
                 "silent": e["silent"],
                 "closed": self._ts(e["closed"]) if e["closed"] is not None else None,
                 "outbreak": self._ts(e["outbreak"]) if e["outbreak"] is not None else None}
                for e in self.entities]

    def _ts(self, t: float) -> str:
        return (self.start + timedelta(seconds=t)).isoformat()

    def events(self, n_events: int = 10000, register: bool = True):
        """Entity upserts (unless ``register`` is false), then ``n_events`` feed events in event-time order."""
        rng = self.rng
        for e in self.entities if register else ():
            yield self._register(e, 0.0)
        # a Poisson process over the span, generated lazily (no list of n_events times)
        rate = n_events / self.span

        def times():
            t = 0.0
            for _ in range(n_events):
                t += rng.expovariate(rate)
                yield t
        ents, bad = self.entities, self.bad
        ents_by_id = {e["id"]: e for e in ents}
        act: list[dict] = []
        by_onset = sorted(bad, key=lambda b: b["onset"])
        nxt = closes = 0
        closing = self.closing
        sensored = [e for e in ents if e["industry"] in ("cold_chain", "food_retail", "catering", "pharmacy")]
        rr = 0  # sensor readings go round-robin, so each device reports at a steady pace
        mix = self.mix
        outbreak, ob = self.outbreak, 0
        for k, t in enumerate(times()):
            while ob < len(outbreak) and outbreak[ob][0] <= t:
                yield self._outbreak_complaint(outbreak[ob][1], outbreak[ob][0], ob)
                ob += 1
            while nxt < len(by_onset) and by_onset[nxt]["onset"] <= t:
                act.append(by_onset[nxt])
                nxt += 1
            while closes < len(closing) and closing[closes]["closed"] <= t:
                yield self._register(closing[closes], closing[closes]["closed"], "closed")
                closes += 1
            r = rng.random()
            if mix is not None:
                event, turn = self._mixed(r, mix, t, k, act, ents, sensored, rr)
                rr += turn
                if event is not None and not _closed(ents_by_id[event["entity_id"]], t):
                    yield event
                continue
            if r < 0.70 and sensored:
                e = sensored[rr % len(sensored)]
                rr += 1
                if _closed(e, t):
                    continue
                if e["onset"] is not None and t >= e["onset"]:
                    if e["silent"]:
                        continue
                    yield self._reading(e, t, True, k)
                else:
                    yield self._reading(e, t, False, k)
                continue
            pick_bad = act and rng.random() < 0.25
            e = rng.choice(act) if pick_bad else rng.choice(ents)
            deteriorating = e["onset"] is not None and t >= e["onset"]
            if r < 0.70 or _closed(e, t):
                continue
            elif r < 0.88:
                yield self._complaint(e, t, deteriorating, k)
            elif r < 0.95:
                yield self._inspection(e, t, deteriorating, k)
            else:
                yield self._record(e, t, deteriorating, k)

    def _mixed(self, r: float, mix: tuple[float, float], t: float, k: int, act: list, ents: list, sensored: list,
               rr: int) -> tuple[dict | None, int]:
        """One event of a ``mix`` feed (see the constructor; None: a silent device's turn), and whether
        it was a device's turn (devices report round-robin)."""
        rng = self.rng
        readings, anyone = mix
        if sensored and (r < readings or (r >= readings + anyone and not act)):
            e = sensored[rr % len(sensored)]
            bad = e["onset"] is not None and t >= e["onset"]
            return (None if bad and e["silent"] else self._reading(e, t, bad, k)), 1
        e = rng.choice(ents) if r < readings + anyone or not act else rng.choice(act)
        bad = e["onset"] is not None and t >= e["onset"]
        u = rng.random()  # as the default mix: 60% complaints, 23% inspections, 17% records
        if u < 0.6:
            return self._complaint(e, t, bad, k), 0
        if u < 0.83:
            return self._inspection(e, t, bad, k), 0
        return self._record(e, t, bad, k), 0

    def _register(self, e, t: float, status: str | None = None) -> dict:
        out = {"type": "entity", "entity_id": e["id"], "name": business_name(e["id"], e["industry"], e["region"]),
               "industry": e["industry"], "region": e["region"],
               "address": business_address(e["id"], e["region"]), "ts": self._ts(t)}
        if status is not None:
            out["status"] = status
        return out

    def _reading(self, e, t, bad, k) -> dict:
        v = self.rng.gauss(4.0, 0.8)
        if bad:
            v += min(9.0, 1.0 + (t - e["onset"]) / 86400.0 * 2.0)
        return {"type": "sensor_reading", "entity_id": e["id"], "device_id": f"fridge-{e['id'][-4:]}",
                "ts": self._ts(t), "metric": "temperature", "value": round(v, 2), "unit": "C"}

    def _complaint(self, e, t, bad, k) -> dict:
        rng = self.rng
        return {"type": "complaint", "complaint_id": f"C{k:09d}", "entity_id": e["id"], "ts": self._ts(t),
                "category": "food_safety" if bad and rng.random() < 0.7 else rng.choice(CATEGORIES),
                "severity": rng.choice((2, 3)) if bad else 1}

    def _outbreak_complaint(self, e, t, j) -> dict:
        return {"type": "complaint", "complaint_id": f"O{j:09d}", "entity_id": e["id"], "ts": self._ts(t),
                "category": "food_safety", "severity": 2}

    def _inspection(self, e, t, bad, k) -> dict:
        rng = self.rng
        crit = rng.randint(1, 3) if bad and rng.random() < 0.7 else int(rng.random() < 0.03)
        major = rng.randint(0, 3) if bad else int(rng.random() < 0.15)
        outcome = "fail" if crit else "conditional" if major else "pass"
        return {"type": "inspection", "inspection_id": f"I{k:09d}", "entity_id": e["id"], "ts": self._ts(t),
                "kind": "routine", "outcome": outcome,
                "violations": {"critical": crit, "major": major, "minor": rng.randint(0, 4)}}

    def _record(self, e, t, bad, k) -> dict:
        rng = self.rng
        if bad:
            kind = rng.choice(("penalty", "pledge_broken", "judicial_default"))
        else:
            kind = rng.choice(("pledge_made", "pledge_kept", "penalty")) if rng.random() < 0.3 else "pledge_made"
        return {"type": "record", "record_id": f"R{k:09d}", "entity_id": e["id"], "ts": self._ts(t),
                "kind": kind, "severity": rng.choice((1, 2, 3)) if bad else 1}


def _closed(e: dict, t: float) -> bool:
    """Whether simulated entity ``e`` has closed by time ``t`` (it then sends nothing)."""
    return e["closed"] is not None and t >= e["closed"]
