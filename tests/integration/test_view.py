"""The Redis view written per round (one Lua call, coalesced per entity) equals the view written
command by command, output by output, and so does the worker's way (one EVALSHA per round)."""

from __future__ import annotations

import asyncio

import orjson
import redis

from riskwatch.config import load_config
from riskwatch.engine import Engine
from riskwatch.events import parse_event
from riskwatch.simulate import Simulation
from riskwatch.view import INSPECTIONS_KEPT, ViewWriter, inspection_fact


def _snapshot(r: redis.Redis) -> dict:
    out = {}
    for key in r.scan_iter(match="rw:*", count=1000):
        t = r.type(key)
        if t == b"hash":
            out[key] = r.hgetall(key)
        elif t == b"zset":
            out[key] = r.zrange(key, 0, -1, withscores=True)
        elif t == b"set":
            out[key] = r.smembers(key)
    return out


def test_round_writes_equal_one_by_one_writes(services):
    _, rs = services
    cfg = load_config()
    eng = Engine(cfg)
    states: dict = {}
    outs: list = []
    raws = list(Simulation(n_entities=60, seed=5, bad_share=0.3, days=30).events(n_events=6000))
    complaints = {r["entity_id"]: r for r in raws if r["type"] == "complaint"}  # each entity's last
    for i, c in enumerate(list(complaints.values())[:12]):  # contests: their effects are kept too
        base = {"entity_id": c["entity_id"], "ts": c["ts"], "objection_id": f"o{i}", "target_id": c["complaint_id"]}
        raws += [dict(base, type="objection", target_kind="complaint"),
                 dict(base, type="objection_resolution", resolution=("upheld", "revoked")[i % 2])]
    facts: list = []  # inspection results, as the worker hands them to the view
    for raw in raws:
        ev = parse_event(raw)
        states[ev.entity_id], o = eng.process(states.get(ev.entity_id), ev)
        outs += o
        if ev.type == "inspection":
            facts.append(inspection_fact(ev))
    assert len(facts) > 25 * 60 // 10  # some entities have more than the view keeps
    assert sum(o["type"] == "risk_change" for o in outs) > 3 * len(states)  # several per entity
    assert any(o["type"] == "spotcheck_change" for o in outs)
    assert sum(1 for o in outs if o.get("objection")) == 24
    view = ViewWriter({t.name: t.ratio for t in cfg.tiers}, history_len=5)  # small: trimming matters
    meta = {eid: st["m"] for eid, st in states.items()}
    ents = [{"entity_id": eid, "name": f"n{eid[-4:]}", "industry": m[0], "region": m[1]}
            for eid, m in meta.items() if m]
    for i, e in enumerate(ents[:9]):  # register statuses: the fields are there only while not operating
        e["status"], e["status_since"] = ("operating", "suspended", "closed")[i % 3], 1.77e9 + i
    snaps = []
    for db in (5, 6, 7):
        r = redis.Redis.from_url(rs.url.rsplit("/", 1)[0] + f"/{db}")
        r.flushdb()
        pipe = r.pipeline(transaction=False)
        if db == 5:
            for e in ents:
                view.entity(pipe, e)
            for o in outs:
                view.output(pipe, o, meta[o["entity_id"]])
            for f in facts:
                view.inspection(pipe, f)
        elif db == 6:
            for i in range(0, len(outs), 700):  # rounds
                view.outputs(pipe, outs[i:i + 700], meta.get, ents if i == 0 else (), _share(facts, outs, i))
        else:  # as the worker writes: one EVALSHA per round on the asyncio client
            asyncio.run(_write_rounds(view, rs.url.rsplit("/", 1)[0] + f"/{db}", outs, meta, ents, facts))
        pipe.execute()
        snaps.append(_snapshot(r))
        r.flushdb()
    assert snaps[0] and snaps[0] == snaps[1] == snaps[2]
    status = {e["entity_id"]: snaps[0][f"rw:entity:{e['entity_id']}".encode()].get(b"status") for e in ents}
    assert [status[e["entity_id"]] for e in ents[:9]] == [None, b"suspended", b"closed"] * 3
    assert snaps[0][f"rw:entity:{ents[2]['entity_id']}".encode()][b"status_since"] == b"2026-02-02T02:40:02+00:00"
    assert not any(status[e["entity_id"]] for e in ents[9:])
    assert len(snaps[0][b"rw:objections:effects"]) == 24
    kept = [v for k, v in snaps[0].items() if k.startswith(b"rw:inspections:")]
    assert max(len(v) for v in kept) == INSPECTIONS_KEPT


def _share(facts: list, outs: list, i: int) -> list:
    """The inspection results of the round of outputs ``outs[i:i + 700]`` (every one in some round)."""
    rounds = -(-len(outs) // 700)
    per = -(-len(facts) // rounds)
    k = i // 700
    return facts[k * per:(k + 1) * per]


async def _write_rounds(view: ViewWriter, url: str, outs: list, meta: dict, ents: list, facts: list) -> None:
    import redis.asyncio as aioredis

    r = aioredis.from_url(url)
    try:
        for i in range(0, len(outs), 700):
            await view.write_round(r, outs[i:i + 700], meta.get, ents if i == 0 else (), _share(facts, outs, i))
            if i == 0:
                await r.script_flush()  # as after a Redis restart: the next round reloads the script
    finally:
        await r.aclose()


EID = "91350100M000100Y43"


def _empty_db(services, db: int):
    """(url, sync client, view writer) of an emptied Redis database of the session's server."""
    url = services[1].url.rsplit("/", 1)[0] + f"/{db}"
    r = redis.Redis.from_url(url)
    r.flushdb()
    return url, r, ViewWriter({t.name: t.ratio for t in load_config().tiers})


def test_an_entity_open_again_loses_its_closed_status_in_both_writers(services):
    """The round script and ``ViewWriter.entity`` (``rebuild-view``) write a status only while an
    entity is not operating, and remove it when it operates again."""
    url, r, view = _empty_db(services, 8)
    reg = {"entity_id": EID, "name": "Xiamen Foods", "industry": "catering", "region": "350203"}
    closed = dict(reg, status="closed", status_since=1.77e9)

    async def rounds() -> None:
        import redis.asyncio as aioredis

        ar = aioredis.from_url(url)
        try:
            await view.write_round(ar, [], lambda _: None, [closed])
            assert r.hmget(f"rw:entity:{EID}", "status", "status_since") == [b"closed", b"2026-02-02T02:40:00+00:00"]
            assert r.zscore("rw:status:closed", EID) == 1.77e9  # the closed ones, by since when
            await view.write_round(ar, [], lambda _: None, [dict(closed, status="suspended")])
            assert r.zscore("rw:status:closed", EID) is None and r.zscore("rw:status:suspended", EID) == 1.77e9
            await view.write_round(ar, [], lambda _: None, [dict(reg, status="operating", status_since=1.78e9)])
        finally:
            await ar.aclose()

    asyncio.run(rounds())
    assert r.hmget(f"rw:entity:{EID}", "status", "status_since") == [None, None]
    assert not r.exists("rw:status:closed") and not r.exists("rw:status:suspended")
    for ent, want in ((closed, b"closed"), (dict(closed, status="suspended"), b"suspended"), (reg, None)):
        pipe = r.pipeline(transaction=False)
        view.entity(pipe, ent)
        pipe.execute()
        assert r.hget(f"rw:entity:{EID}", "status") == want
        assert [s for s in (b"closed", b"suspended") if r.zscore(b"rw:status:" + s, EID)] == ([want] if want else [])
    assert r.hget(f"rw:entity:{EID}", "status_since") is None


def test_register_data_after_the_first_score_moves_the_entity_into_its_rankings(services):
    """An entity's first risk change can be processed before its upsert (they come on different
    topics), and an entity can move to another region. Before 2026-11-28 the per-region and
    per-industry rankings missed the first until its next risk change and kept the second in
    its old region's ranking for good."""
    url, r, view = _empty_db(services, 8)
    eid = EID
    change = {"type": "risk_change", "entity_id": eid, "ts": "2026-03-01T09:00:00+08:00", "seq": 1,
              "score": 42.0, "tier": "C", "reasons": [], "cause_event_id": "c1", "config_version": "v"}
    reg = {"entity_id": eid, "name": "Xiamen Foods", "industry": "catering", "region": "350203"}

    async def rounds() -> None:
        import redis.asyncio as aioredis

        ar = aioredis.from_url(url)
        try:
            await view.write_round(ar, [change], lambda _: None)  # before the register data
            assert r.zscore("rw:rank:region:350203", eid) is None
            await view.write_round(ar, [], lambda _: None, [reg])
            assert r.zscore("rw:rank:region:350203", eid) == 42.0
            assert r.zscore("rw:rank:industry:catering", eid) == 42.0
            await view.write_round(ar, [], lambda _: None, [dict(reg, region="350206")])  # moved
        finally:
            await ar.aclose()

    asyncio.run(rounds())
    assert r.zscore("rw:rank:region:350203", eid) is None
    assert r.zscore("rw:rank:region:350206", eid) == 42.0
    assert r.hget(f"rw:entity:{eid}", "region") == b"350206"
    r.flushdb()


def test_a_renamed_entity_is_found_by_its_new_name_only(services):
    """The name search index (``rw:names``): each word start of the name, and a rename through a
    round drops the old name's keys."""
    url, r, view = _empty_db(services, 9)
    reg = {"entity_id": EID, "name": "Blue Bottle Coffee", "industry": "catering", "region": "350203"}

    async def rounds() -> None:
        import redis.asyncio as aioredis

        ar = aioredis.from_url(url)
        try:
            await view.write_round(ar, [], lambda _: None, [reg])
            assert r.zrange("rw:names", 0, -1) == [f"{k}\0{EID}".encode() for k in (
                "blue bottle coffee", "bottle coffee", "coffee")]
            # the same name again: the script leaves the keys alone (one taken away here stays away)
            r.zrem("rw:names", f"coffee\0{EID}")
            await view.write_round(ar, [], lambda _: None, [dict(reg, industry="retail")])
            assert r.zcard("rw:names") == 2 and r.hget(f"rw:entity:{EID}", "industry") == b"retail"
            r.zadd("rw:names", {f"coffee\0{EID}": 0})
            await view.write_round(ar, [], lambda _: None, [dict(reg, name="Corner Store")])
        finally:
            await ar.aclose()

    asyncio.run(rounds())
    assert r.zrange("rw:names", 0, -1) == [f"corner store\0{EID}".encode(), f"store\0{EID}".encode()]
    r.flushdb()


def test_names_indexed_by_an_older_release_are_brought_up_to_date_once(services):
    """Chinese names are found by any part since 2026-12-06 (``view.NAMES_FORMAT`` "2"). An index
    written before holds their start only: ``reindex_names`` (run by the API before its first name
    search) rewrites the keys of each entity whose keys differ, but not of one renamed since it read
    the name, and marks the index current."""
    from riskwatch.view import NAMES_FORMAT_KEY, REINDEX_NAMES_LUA, name_keys, reindex_names

    url, r, view = _empty_db(services, 9)
    other = "913502037JH4BXKFLA"
    regs = [{"entity_id": EID, "name": "上海星巴克咖啡有限公司", "industry": "catering", "region": "310101"},
            {"entity_id": other, "name": "Blue Bottle Coffee", "industry": "catering", "region": "350203"}]

    def keys_of(eid: str) -> set[str]:
        return {m.decode().split("\0")[0] for m in r.zrange("rw:names", 0, -1) if m.decode().endswith(eid)}

    async def run() -> tuple:
        import redis.asyncio as aioredis

        ar = aioredis.from_url(url)
        try:
            await view.write_round(ar, [], lambda _: None, regs)
            assert keys_of(EID) == set(name_keys(regs[0]["name"])) and len(keys_of(EID)) == 7
            # as an older release left it: the name's start only, no format mark
            r.zrem("rw:names", *[f"{k}\0{EID}" for k in name_keys(regs[0]["name"])[1:]])
            r.hset(f"rw:entity:{EID}", "nk", orjson.dumps(name_keys(regs[0]["name"])[:1]))
            assert keys_of(EID) == {"上海星巴克咖啡有限公司"} and r.get(NAMES_FORMAT_KEY) is None
            first = await reindex_names(ar, batch=1)
            again = await reindex_names(ar)
            return first, again
        finally:
            await ar.aclose()

    assert asyncio.run(run()) == (1, None)  # one entity rewritten (the other's keys were current); then nothing
    assert keys_of(EID) == set(name_keys(regs[0]["name"])) and "星巴克咖啡有限公司" in keys_of(EID)
    assert keys_of(other) == {"blue bottle coffee", "bottle coffee", "coffee"}
    assert r.get(NAMES_FORMAT_KEY) == b"2"
    # renamed after the reindex read the name: the script leaves that entity alone
    r.delete(NAMES_FORMAT_KEY)
    r.hset(f"rw:entity:{EID}", "nk", "[]")
    r.hset(f"rw:entity:{EID}", "name", "Corner Store")
    rows = [[EID, regs[0]["name"], name_keys(regs[0]["name"]), orjson.dumps(name_keys(regs[0]["name"])).decode()]]
    assert r.eval(REINDEX_NAMES_LUA, 0, orjson.dumps(rows)) == 0 and r.hget(f"rw:entity:{EID}", "nk") == b"[]"
    r.flushdb()


def test_an_older_decision_never_replaces_a_newer_one(services):
    """``rebuild-view`` runs beside workers: what it read from Kafka can be older than what a worker
    writes meanwhile. Until 2026-11-28 the last write won, so a rebuild could put an entity back to
    an older score and tier (until its next change). Current fields now carry the decision's time and
    ``seq``; time comes first, so a new deployment, whose counts start again, is not frozen out."""
    url, r, view = _empty_db(services, 9)
    eid = EID

    def change(seq, score, tier):
        return {"type": "risk_change", "entity_id": eid, "ts": f"2026-03-01T09:{seq:02d}:00+08:00", "seq": seq,
                "score": score, "tier": tier, "reasons": [], "cause_event_id": f"c{seq}", "config_version": "v"}

    async def rounds() -> None:
        import redis.asyncio as aioredis

        ar = aioredis.from_url(url)
        try:
            await view.write_round(ar, [change(10, 60.0, "C")], lambda _: ["food", "350203"])  # a worker
            pipe = ar.pipeline(transaction=False)  # a rebuild that read an older state
            await view.queue_round(pipe, [change(7, 30.0, "B")], lambda _: ["food", "350203"], history=False)
            await pipe.execute()
            h = r.hgetall(f"rw:entity:{eid}")
            assert (h[b"score"], h[b"tier"], h[b"seq"]) == (b"60.0", b"C", b"10")
            assert r.zscore("rw:rank:tier:C", eid) == 60.0 and r.zscore("rw:rank:tier:B", eid) is None
            await view.write_round(ar, [change(11, 20.0, "A")], lambda _: ["food", "350203"])  # newer: applies
            # a new deployment (fresh states: its counts start again) with a later decision also applies
            await view.write_round(ar, [change(2, 45.0, "B") | {"ts": "2026-03-02T09:00:00+08:00"}],
                                   lambda _: ["food", "350203"])
        finally:
            await ar.aclose()

    asyncio.run(rounds())
    h = r.hgetall(f"rw:entity:{eid}")
    assert (h[b"score"], h[b"tier"], h[b"seq"]) == (b"45.0", b"B", b"2")
    assert r.zscore("rw:rank", eid) == 45.0 and r.zscore("rw:rank:tier:B", eid) == 45.0
    assert r.zscore("rw:rank:tier:A", eid) is None and r.zscore("rw:rank:tier:C", eid) is None
    assert r.zcard(f"rw:history:{eid}") == 3  # the rebuild's current-only write adds no history
    # and the new deployment's change is the newest in the history (until 2026-12-06 it was ordered by
    # seq alone: below the old deployment's, and the first trimmed)
    assert [orjson.loads(m)["cause"] for m in r.zrevrange(f"rw:history:{eid}", 0, -1)] == ["c2", "c11", "c10"]
    r.flushdb()


def test_registered_entities_per_region_follow_moves_and_an_older_view_is_indexed_once(services):
    """``rw:registered:region:{r}`` (what a board limited to regions counts as not scored yet): a
    register upsert through a round puts the entity in its region's set and takes it out of the one it
    left. A view written before 2026-12-07 has no such sets: ``index_regions`` (run by the API before
    a limited board's first count) fills them in from ``rw:entities`` once."""
    from riskwatch.view_regions import REGIONS_FORMAT_KEY, index_regions, regions_in, registered_count

    url, r, view = _empty_db(services, 9)
    other = "913502037JH4BXKFLA"
    regs = [{"entity_id": EID, "name": "a shop", "industry": "catering", "region": "110101"},
            {"entity_id": other, "name": "b shop", "industry": "catering", "region": "110105"}]

    async def run() -> tuple:
        import redis.asyncio as aioredis

        async def registered_in(r, sees) -> int:  # a limited board's registered count
            return await registered_count(r, await regions_in(r, sees))

        ar = aioredis.from_url(url)
        try:
            await view.write_round(ar, [], lambda _: None, regs)
            beijing = await registered_in(ar, lambda x: x.startswith("11"))
            await view.write_round(ar, [], lambda _: None, [dict(regs[0], region="310104")])  # moves out
            after = (await registered_in(ar, lambda x: x.startswith("11")),
                     await registered_in(ar, lambda x: x.startswith("31")))
            # as an older release left it: no per-region sets, no format mark
            r.delete(*r.keys("rw:registered:*"))
            none = await registered_in(ar, lambda x: True)
            first = await index_regions(ar, batch=1)
            again = await index_regions(ar)
            return beijing, after, none, first, again, await registered_in(ar, lambda x: x.startswith("11"))
        finally:
            await ar.aclose()

    assert asyncio.run(run()) == (2, (1, 1), 0, 2, None, 1)
    assert r.smembers("rw:registered:region:310104") == {EID.encode()} and r.get(REGIONS_FORMAT_KEY) == b"1"
    r.flushdb()
