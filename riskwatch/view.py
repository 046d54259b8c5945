"""The Redis view for the API: derived from output events, rebuildable (``riskwatch/rebuild.py``), idempotent.

Keys (prefix ``rw:``):

- ``rw:entity:{id}`` hash: score, tier, ratio, reasons (JSON), updated, cause,
  config_version, at and seq (decision time in epoch seconds and the entity's
  event count: an older decision never replaces a newer one), name, industry, region, and
  address when its last upsert had one (since 2026-12-06), status and status_since while its register
  status is not ``operating`` (``suspended`` or ``closed``; since 2026-12-06, twenty-third session);
- ``rw:rank`` and ``rw:rank:region:{r}`` / ``rw:rank:industry:{i}`` /
  ``rw:rank:tier:{t}`` sorted sets of entity id by score ("riskiest");
- ``rw:history:{id}`` sorted set of score/tier changes in decision order (:func:`history_rank`: time,
  then ``seq``; by ``seq`` alone until 2026-12-06, which put a new state's changes below the old
  state's: a recreated changelog, a state reset), bounded;
- ``rw:spotchecks`` sorted set of spot-check (tier) changes by decision time, bounded;
- ``rw:status:suspended`` and ``rw:status:closed`` sorted sets of entity id by since when, the entities
  whose register status is not operating (``GET /v1/entities?status=closed``);
- ``rw:entities`` set of every entity id in the view, registered or scored (since 2026-12-04: a
  view written before holds those written since, until ``rebuild-view``);
- ``rw:inspections:{id}`` sorted set of an entity's latest inspection results by event time (bounded;
  since 2026-12-05: what a spot-check draw found, ``GET /v1/spotchecks/draws/{id}/outcomes``);
- ``rw:names`` sorted set (all at score 0, searched by lexical range) of ``{name key}\\0{id}``: where a
  name search can start in each entity's name (:func:`name_keys`; the entity hash's ``nk`` field keeps
  its keys, so a rename removes the old ones; since 2026-12-05: ``GET /v1/entities?q=``), and
  ``rw:names:format``, the :func:`name_keys` it was written by (:func:`reindex_names`);
- ``rw:registered:region:{r}`` and ``rw:registered:regions``: registered entities per region
  (:mod:`riskwatch.view_regions`; since 2026-12-07);
- ``rw:objections:effects`` hash ``{objection id}:{step}`` -> what an objection and its resolution did
  (the risk change they forced: effect, score before and after, tier, time; since 2026-12-05);
- ``rw:view:parts`` hash: input partition -> the token of the last write its worker made for it
  (:mod:`riskwatch.streams.view_repair`; since 2026-12-07).

Every write is a set operation keyed by content, so applying the same output
twice leaves the same view.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import datetime, timezone

import orjson

from .events import NOT_OPERATING, OPERATING
from .view_regions import REGIONS, registered_key

__all__ = ["ENTITIES", "INSPECTIONS_KEPT", "NAMES", "NAMES_FORMAT", "NAMES_FORMAT_KEY", "NAME_KEY_CHARS",
           "OBJECTION_EFFECTS", "REINDEX_NAMES_LUA", "ROUND_LUA", "SPOTCHECKS", "ViewWriter", "entity_key",
           "history_key", "history_rank", "NOT_OPERATING", "status_key", "inspection_fact", "inspections_key",
           "name_form", "name_keys", "name_lookup", "reindex_names"]

P = "rw:"
SPOTCHECKS = f"{P}spotchecks"
ENTITIES = f"{P}entities"
OBJECTION_EFFECTS = f"{P}objections:effects"
NAMES = f"{P}names"
NAME_KEYS_MAX = 8     # search starts kept per name at its words
NAME_KEY_CHARS = 32   # characters kept of each (a lookup uses 12: name_lookup; matches are checked against the whole name)
NAME_INNER_MAX = 24   # more starts inside words of scripts written without spaces (Chinese, Japanese)
NAME_INNER_CHARS = 12  # characters kept of each of those
NAMES_FORMAT = "2"    # rw:names:format; "2": the inner starts (2026-12-06); before: word starts only
NAMES_FORMAT_KEY = f"{P}names:format"
SPOTCHECKS_KEPT = 200_000
INSPECTIONS_KEPT = 20  # per entity


# One worker round in one call (see ViewWriter.outputs). Values arrive as strings, formatted as
# redis-py formats them, so both paths store the same bytes. ARGV[1] is JSON:
# e: [[id, name, industry, region, [name keys], the keys as JSON (as ViewWriter.entity stores them),
#      address ("" when the upsert has none: the field is removed), register status ("" when operating:
#      status and status_since are removed), status_since (ISO), status_since (epoch seconds, for
#      rw:status:{status})]],
# h: [[id, member, seq]], s: [[member, t]], o: [[field, effect]],
# i: [[id, member, t]] (inspection results), ik (inspections kept per entity),
# c: [[id, score, tier, ratio, reasons, updated, cause, config_version, industry, region, at, seq, tier_since]]
# (industry/region "" when unknown), tiers, hl (history kept), sk (spot checks kept).
# An entity's current fields are written only when (at, seq) is not below the pair they hold:
# `rebuild-view` runs beside workers and must not put an older decision back over a newer one. Time
# first: an entity's decision time never goes back within its state, while seq restarts with a new
# state (a new deployment), which must not freeze the view at the old deployment's counts.
# Register data of an entity already scored moves it to its industry's and region's rankings:
# its first risk change can come before its upsert (another topic), and an entity can move.
# An entity's name keys in rw:names: the old ones (JSON, as kept in the hash's nk) out, the new in, one
# ZREM and one ZADD (each redis.call costs). Shared by the round script and the reindex.
_NAME_KEYS_LUA = """
local function set_name_keys(key, id, old_nk, keys, nk)
  if old_nk then
    local gone = {}
    for i, k in ipairs(cjson.decode(old_nk)) do
      gone[i] = k .. "\\0" .. id
    end
    if #gone > 0 then
      redis.call("ZREM", "rw:names", unpack(gone))
    end
  end
  local add = {}
  for i, k in ipairs(keys) do
    add[2 * i - 1] = 0
    add[2 * i] = k .. "\\0" .. id
  end
  if #add > 0 then
    redis.call("ZADD", "rw:names", unpack(add))
  end
  redis.call("HSET", key, "nk", nk)
end
"""
ROUND_LUA = _NAME_KEYS_LUA + "local NOT_OPERATING = {" + ", ".join(f'"{s}"' for s in NOT_OPERATING) + "}" + """
local p = cjson.decode(ARGV[1])
local P = "rw:"
for _, e in ipairs(p.e) do
  local key = P .. "entity:" .. e[1]
  local old = redis.call("HMGET", key, "industry", "region", "score", "nk")
  if e[7] ~= "" then
    redis.call("HSET", key, "name", e[2], "industry", e[3], "region", e[4], "address", e[7])
  else
    redis.call("HSET", key, "name", e[2], "industry", e[3], "region", e[4])
    redis.call("HDEL", key, "address")
  end
  for _, s in ipairs(NOT_OPERATING) do
    if s ~= e[8] then
      redis.call("ZREM", P .. "status:" .. s, e[1])
    end
  end
  if e[8] ~= "" then
    redis.call("HSET", key, "status", e[8], "status_since", e[9])
    redis.call("ZADD", P .. "status:" .. e[8], e[10], e[1])
  else
    redis.call("HDEL", key, "status", "status_since")
  end
  redis.call("SADD", P .. "entities", e[1])
  if old[2] and old[2] ~= e[4] then  -- registered per region (view_regions.py)
    redis.call("SREM", P .. "registered:region:" .. old[2], e[1])
  end
  redis.call("SADD", P .. "registered:region:" .. e[4], e[1])
  redis.call("SADD", P .. "registered:regions", e[4])
  if old[4] ~= e[6] then  -- a new name (most upserts send the same one again: nothing to do)
    set_name_keys(key, e[1], old[4], e[5], e[6])
  end
  if old[3] then
    if old[1] and old[1] ~= e[3] then
      redis.call("ZREM", P .. "rank:industry:" .. old[1], e[1])
    end
    if old[2] and old[2] ~= e[4] then
      redis.call("ZREM", P .. "rank:region:" .. old[2], e[1])
    end
    redis.call("ZADD", P .. "rank:industry:" .. e[3], old[3], e[1])
    redis.call("ZADD", P .. "rank:region:" .. e[4], old[3], e[1])
  end
end
for _, h in ipairs(p.h) do
  redis.call("ZADD", P .. "history:" .. h[1], h[3], h[2])
end
for _, s in ipairs(p.s) do
  redis.call("ZADD", P .. "spotchecks", s[2], s[1])
end
if #p.s > 0 then
  redis.call("ZREMRANGEBYRANK", P .. "spotchecks", 0, -p.sk - 1)
end
for _, o in ipairs(p.o) do
  redis.call("HSET", P .. "objections:effects", o[1], o[2])
end
for _, i in ipairs(p.i) do
  redis.call("ZADD", P .. "inspections:" .. i[1], i[3], i[2])
  redis.call("ZREMRANGEBYRANK", P .. "inspections:" .. i[1], 0, -p.ik - 1)
end
for _, c in ipairs(p.c) do
  local eid, score, tier = c[1], c[2], c[3]
  local key = P .. "entity:" .. eid
  local held = redis.call("HMGET", key, "at", "seq")
  redis.call("SADD", P .. "entities", eid)
  local at, seq, hat = tonumber(c[11]), tonumber(c[12]), tonumber(held[1])
  if (not hat) or at > hat or (at == hat and seq >= (tonumber(held[2]) or 0)) then
    redis.call("HSET", key, "score", score, "tier", tier, "ratio", c[4], "reasons", c[5], "updated", c[6],
               "cause", c[7], "config_version", c[8], "at", c[11], "seq", c[12])
    if c[13] ~= "" then
      redis.call("HSET", key, "tier_since", c[13])
    else
      redis.call("HDEL", key, "tier_since")
    end
    if c[9] ~= "" then
      redis.call("HSET", key, "industry", c[9], "region", c[10])
    end
    redis.call("ZADD", P .. "rank", score, eid)
    for _, t in ipairs(p.tiers) do
      if t ~= tier then
        redis.call("ZREM", P .. "rank:tier:" .. t, eid)
      end
    end
    redis.call("ZADD", P .. "rank:tier:" .. tier, score, eid)
    if c[9] ~= "" then
      redis.call("ZADD", P .. "rank:industry:" .. c[9], score, eid)
      redis.call("ZADD", P .. "rank:region:" .. c[10], score, eid)
    end
  end
  redis.call("ZREMRANGEBYRANK", P .. "history:" .. eid, 0, -p.hl - 1)
end
local kept = {}
for _, m in ipairs(p.pm) do  -- a partition's new token, only over the one its worker last wrote
  if redis.call("HGET", P .. "view:parts", m[1]) == m[3] then
    redis.call("HSET", P .. "view:parts", m[1], m[2])
    kept[#kept + 1] = m[1]
  end
end
return kept
"""


def inspections_key(eid: str) -> str:
    return f"{P}inspections:{eid}"


def inspection_fact(ev) -> dict:
    """What the view keeps of an inspection event: when, which kind, what it found."""
    v = ev.violations
    return {"entity_id": ev.entity_id, "inspection_id": ev.inspection_id, "ts": ev.ts.isoformat(),
            "t": ev.ts.timestamp(), "kind": ev.kind, "outcome": ev.outcome,
            "violations": {"critical": v.critical, "major": v.major, "minor": v.minor}}


def _inspection_member(f: dict) -> bytes:
    return orjson.dumps({k: f[k] for k in ("inspection_id", "ts", "kind", "outcome", "violations")})


def entity_key(eid: str) -> str:
    return f"{P}entity:{eid}"


def name_form(name: str) -> str:
    """A name as it is searched: Unicode NFKC (full-width letters as ASCII), case-folded, each run of
    whitespace one space.

    >>> name_form("  Blue   BOTTLE  Ｃｏｆｆｅｅ ")
    'blue bottle coffee'
    """
    if not name.isascii():  # NFKC leaves ASCII as it is
        name = unicodedata.normalize("NFKC", name)
    return " ".join(name.casefold().split())


def name_keys(name: str, cut: int | None = NAME_KEY_CHARS) -> list[str]:
    """Where a name search can start: the name and each of its words (a letter or digit after a space or
    punctuation), at most ``NAME_KEYS_MAX``, each cut to ``cut`` characters; and, in Chinese and Japanese,
    which are written without spaces, each character inside a word too (and a letter or digit right after
    one), at most ``NAME_INNER_MAX``, each cut to ``NAME_INNER_CHARS``: a Chinese business is known by its
    trade name, which comes after the place (上海 | 星巴克 | 咖啡 | 有限公司). ``cut=None``: whole.

    >>> name_keys("Blue Bottle Coffee (Oakland)")
    ['blue bottle coffee (oakland)', 'bottle coffee (oakland)', 'coffee (oakland)', 'oakland)']
    >>> name_keys("上海星巴克咖啡有限公司")  # none inside the legal form (有限公司): every company has one
    ['上海星巴克咖啡有限公司', '海星巴克咖啡有限公司', '星巴克咖啡有限公司', '巴克咖啡有限公司', '克咖啡有限公司', '咖啡有限公司', '啡有限公司']
    >>> name_keys("北京798艺术区 Cafe", cut=None)
    ['北京798艺术区 cafe', 'cafe', '京798艺术区 cafe', '798艺术区 cafe', '艺术区 cafe', '术区 cafe', '区 cafe']
    """
    f = name_form(name)
    keys: list[str] = []
    for m in _WORD_START.finditer(f):
        i = m.start()
        k = f[i:] if cut is None else f[i:i + cut]
        if k not in keys:
            keys.append(k)
            if len(keys) == NAME_KEYS_MAX:
                break
    if _CJK.search(f) is None:
        return keys
    inner_cut = None if cut is None else min(cut, NAME_INNER_CHARS)
    end = len(f) - next((len(x) for x in _LEGAL_FORMS if f.endswith(x)), 0)
    n = 0
    for m in _INNER_START.finditer(f, 0, end):  # none inside a trailing legal form: every company has one
        i = m.start()
        k = f[i:] if inner_cut is None else f[i:i + inner_cut]
        if len(k) > 1 and k not in keys:  # a query has 2 characters at least
            keys.append(k)
            n += 1
            if n == NAME_INNER_MAX:
                break
    return keys


def name_lookup(form: str) -> str:
    """The part of a query (in :func:`name_form`) to look up in ``rw:names``: no longer than the shortest
    key that could start with it. A key inside a Chinese or Japanese word keeps ``NAME_INNER_CHARS``, and
    may start with any letter or digit (北京798艺术区: ``798艺术区``), so every query is looked up by its first
    ``NAME_INNER_CHARS`` characters; the whole query is then checked against each name found."""
    return form[:NAME_INNER_CHARS]


# trailing legal forms of Chinese business names (longest first): an inner key starting inside one would
# match every company (``公司``) and cost Redis ~140 bytes a key
_LEGAL_FORMS = ("股份有限公司", "有限责任公司", "有限公司", "分公司", "经营部", "合伙企业", "个体工商户", "株式会社")
_WORD_START = re.compile(r"(?<![^\W_])[^\W_]")  # a letter or digit not after one (str.isalnum, in C)
# Han (with extensions and compatibility ideographs), hiragana and katakana: scripts without spaces
_CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_CJK = re.compile(f"[{_CJK_CLASS}]")
# inside a word (after a letter or digit), a CJK character or anything right after one
_INNER_START = re.compile(f"(?<=[^\\W_])(?:(?=[{_CJK_CLASS}])|(?<=[{_CJK_CLASS}]))[^\\W_]")


@functools.lru_cache(maxsize=65536)
def _name_entry(name: str) -> tuple[list[str], str]:
    """A name's keys, and as JSON, for the round script (an entity upserted again brings the same name)."""
    keys = name_keys(name)
    return keys, orjson.dumps(keys).decode()


# Keys of the register data as they are now, for entities whose keys were written by an older
# name_keys: only where the name is still the one read (a worker may have renamed it since).
REINDEX_NAMES_LUA = _NAME_KEYS_LUA + """
local n = 0
for _, e in ipairs(cjson.decode(ARGV[1])) do
  local key = "rw:entity:" .. e[1]
  local h = redis.call("HMGET", key, "name", "nk")
  if h[1] == e[2] and h[2] ~= e[4] then
    set_name_keys(key, e[1], h[2], e[3], e[4])
    n = n + 1
  end
end
return n
"""


async def reindex_names(r, batch: int = 500) -> int | None:
    """Bring ``rw:names`` to :data:`NAMES_FORMAT` if it is older: each registered entity's keys as
    :func:`name_keys` gives them now (entities upserted since are so already). Returns how many entities
    it rewrote, None when the index was current. Idempotent; API replicas may run it at once."""
    fmt = await r.get(NAMES_FORMAT_KEY)
    if fmt in (NAMES_FORMAT, NAMES_FORMAT.encode()):
        return None
    script = r.register_script(REINDEX_NAMES_LUA)
    cursor, n = 0, 0
    while True:
        cursor, ids = await r.sscan(ENTITIES, cursor, count=batch)
        if ids:
            ids = [i.decode() if isinstance(i, bytes) else i for i in ids]
            pipe = r.pipeline(transaction=False)
            for eid in ids:
                pipe.hget(f"{P}entity:{eid}", "name")
            names = [x.decode() if isinstance(x, bytes) else x for x in await pipe.execute()]
            rows = [[eid, name, *_name_entry(name)] for eid, name in zip(ids, names) if name is not None]
            if rows:
                n += int(await script(args=[orjson.dumps(rows)]))
        if int(cursor) == 0:
            break
    await r.set(NAMES_FORMAT_KEY, NAMES_FORMAT)
    return n


def history_key(eid: str) -> str:
    return f"{P}history:{eid}"


def _epoch(ts) -> float:
    return ts.timestamp() if isinstance(ts, datetime) else datetime.fromisoformat(str(ts)).timestamp()


def history_rank(o: dict) -> int:
    """A risk change's place in its entity's history: its decision time in milliseconds, then its
    event count (last three digits) for changes in the same millisecond. Exact in a double until
    the year 2255. Time first: a state started again (a changelog recreated under a kept view, a
    state reset) counts from 1 again, and by count alone its changes sorted below the old state's and
    were the first trimmed.

    >>> history_rank({"ts": "2026-03-01T09:00:00+08:00", "seq": 1}) > history_rank(
    ...     {"ts": "2026-03-01T08:59:59.999+08:00", "seq": 412})
    True
    """
    return int(_epoch(o["ts"]) * 1000.0) * 1000 + o["seq"] % 1000


def status_key(status: str) -> str:
    """Sorted set of the entities in a register status other than operating, by since when."""
    return f"{P}status:{status}"


def _status_fields(ent: dict) -> tuple[str, str, str]:
    """An entity's register status as the view keeps it: ("", "", "") while operating (the fields are
    removed), else the status and since when (ISO, UTC; and epoch seconds as redis-py writes a float)."""
    status = ent.get("status") or OPERATING
    if status == OPERATING:
        return "", "", ""
    since = ent.get("status_since") or 0.0
    if isinstance(since, (int, float)):  # the worker's and the state's; rebuild-view's topic pass: a datetime
        since = datetime.fromtimestamp(since, timezone.utc)
    return status, since.isoformat(), repr(since.timestamp())


def _iso(ts) -> str:
    return ts if isinstance(ts, str) else ts.isoformat() if isinstance(ts, datetime) else str(ts)


class ViewWriter:
    """Queue view updates on a redis (asyncio) pipeline."""

    def __init__(self, ratios: dict[str, float], history_len: int = 100) -> None:
        self.ratios = ratios
        self.history_len = history_len
        self._script = None  # (client, its registered ROUND_LUA) for write_round

    def entity(self, pipe, ent: dict) -> None:
        """Register data (a pipeline cannot read the hash: write it before the entity's current
        fields, as ``rebuild-view`` does; a worker round moves rankings too, see ROUND_LUA)."""
        keys, keys_json = _name_entry(ent["name"])  # as the round script gets them
        key = entity_key(ent["entity_id"])
        fields = {"name": ent["name"], "industry": ent["industry"], "region": ent["region"], "nk": keys_json}
        if ent.get("address"):
            fields["address"] = ent["address"]
        else:
            pipe.hdel(key, "address")
        status, since, epoch = _status_fields(ent)
        for other in NOT_OPERATING:
            if other != status:
                pipe.zrem(status_key(other), ent["entity_id"])
        if status:
            fields["status"], fields["status_since"] = status, since
            pipe.zadd(status_key(status), {ent["entity_id"]: float(epoch)})
        else:
            pipe.hdel(key, "status", "status_since")
        pipe.hset(key, mapping=fields)
        pipe.sadd(ENTITIES, ent["entity_id"])
        pipe.sadd(registered_key(ent["region"]), ent["entity_id"])  # a move: see ROUND_LUA
        pipe.sadd(REGIONS, ent["region"])
        if keys:  # a fresh entry: the old name's keys of a renamed entity are removed by the round script only
            pipe.zadd(NAMES, {f"{k}\0{ent['entity_id']}": 0 for k in keys})

    def inspection(self, pipe, f: dict) -> None:
        """An inspection result (:func:`inspection_fact`), one by one (the round script does the same)."""
        key = inspections_key(f["entity_id"])
        pipe.zadd(key, {_inspection_member(f): f["t"]})
        pipe.zremrangebyrank(key, 0, -INSPECTIONS_KEPT - 1)

    def output(self, pipe, o: dict, meta: list | None, current: bool = True) -> None:
        """Apply a risk change; ``current=False`` adds it to the history only (an older one)."""
        if o["type"] == "spotcheck_change":
            self._spotcheck(pipe, o, meta)
            return
        if o["type"] != "risk_change":
            return
        if current:
            self._current(pipe, o, meta)
        self._history(pipe, o)
        if o.get("objection"):
            pipe.hset(OBJECTION_EFFECTS, *self._objection_effect(o))

    def outputs(self, pipe, outs: list[dict], meta_of, entities: list[dict] = (), inspections: list[dict] = ()) -> None:
        """Queue :meth:`round_payload` as one script call on a (sync) pipeline."""
        payload = self.round_payload(outs, meta_of, entities, inspections=inspections)
        if payload is not None:
            pipe.register_script(ROUND_LUA)(keys=[], args=[payload], client=pipe)

    async def queue_round(self, pipe, outs: list[dict], meta_of, history: bool = True,
                          entities: list[dict] = ()) -> None:
        """:meth:`outputs` on a redis.asyncio pipeline (a script call on it is queued when awaited)."""
        payload = self.round_payload(outs, meta_of, entities, history)
        if payload is not None:
            await pipe.register_script(ROUND_LUA)(keys=[], args=[payload], client=pipe)

    async def write_round(self, r, outs: list[dict], meta_of, entities: list[dict] = (),
                          inspections: list[dict] = (), marks: dict[int, tuple[str, str]] | None = None) -> list:
        """Run :meth:`round_payload` as one script call on a redis.asyncio client: one round trip.

        Not through a pipeline: a pipeline with a script asks ``SCRIPT EXISTS`` first, a second
        round trip every worker round. ``EVALSHA`` here; redis-py loads the script and retries
        when Redis does not know it (a restarted server). Returns the partitions of ``marks`` whose
        token it set."""
        payload = self.round_payload(outs, meta_of, entities, inspections=inspections, marks=marks)
        if payload is None:
            return []
        if self._script is None or self._script[0] is not r:
            self._script = (r, r.register_script(ROUND_LUA))
        return [int(p) for p in await self._script[1](keys=[], args=[payload])]

    def round_payload(self, outs: list[dict], meta_of, entities: list[dict] = (),
                      history: bool = True, inspections: list[dict] = (),
                      marks: dict[int, tuple[str, str]] | None = None) -> bytes | None:
        """A round's register data and outputs as the argument of one :data:`ROUND_LUA` call.

        Same result as :meth:`entity` then :meth:`output` one by one (tested), but each
        entity's current state and history trim are written once (the last risk change
        wins), and the per-command work runs in Redis, not in the worker: command by
        command, the view was a quarter of the worker's time. ``meta_of(entity_id)``
        gives [industry, region] or None. ``history=False``: current fields only (``rebuild-view``).
        ``marks``: partition -> (this write's token, the token its worker last wrote there): the new
        one is set in ``rw:view:parts`` only over the last (:mod:`riskwatch.streams.view_repair`)."""
        last: dict[str, dict] = {}
        hist, spots, effects = [], [], []
        for o in outs:
            kind = o["type"]
            if kind == "risk_change":
                last[o["entity_id"]] = o
                if history:
                    hist.append([o["entity_id"], self._history_member(o).decode(), repr(history_rank(o))])
                if o.get("objection"):
                    effects.append([x.decode() for x in self._objection_effect(o)])
            elif kind == "spotcheck_change":
                rec, t = self._spotcheck_record(o, meta_of(o["entity_id"]))
                spots.append([rec.decode(), repr(t)])
        cur = []
        ratios = self.ratios
        for eid, o in last.items():
            meta = meta_of(eid) or ("", "")
            tier = o["tier"]
            cur.append([eid, repr(o["score"]), tier, repr(ratios.get(tier, 0.0)),
                        orjson.dumps(o["reasons"]).decode(), _iso(o["ts"]), o["cause_event_id"],
                        o["config_version"], meta[0], meta[1], repr(_epoch(o["ts"])), repr(o["seq"]),
                        _iso(o["tier_since"]) if o.get("tier_since") is not None else ""])
        ents = [[e["entity_id"], e["name"], e["industry"], e["region"], *_name_entry(e["name"]),
                 e.get("address") or "", *_status_fields(e)] for e in entities]
        insp = [[f["entity_id"], _inspection_member(f).decode(), repr(f["t"])] for f in inspections]
        if not (cur or hist or spots or ents or effects or insp):
            return None
        return orjson.dumps({"e": ents, "h": hist, "s": spots, "c": cur, "o": effects, "i": insp,
                             "pm": [[str(p), new, last] for p, (new, last) in (marks or {}).items()],
                             "tiers": list(ratios), "hl": self.history_len, "sk": SPOTCHECKS_KEPT,
                             "ik": INSPECTIONS_KEPT})

    def _current(self, pipe, o: dict, meta: list | None) -> None:
        eid, tier, score = o["entity_id"], o["tier"], o["score"]
        mapping = {"score": score, "tier": tier, "ratio": self.ratios.get(tier, 0.0),
                   "reasons": orjson.dumps(o["reasons"]), "updated": _iso(o["ts"]),
                   "cause": o["cause_event_id"], "config_version": o["config_version"],
                   "at": _epoch(o["ts"]), "seq": o["seq"]}
        if meta:
            mapping["industry"], mapping["region"] = meta[0], meta[1]
        pipe.hset(entity_key(eid), mapping=mapping)
        if o.get("tier_since") is not None:  # risk changes before 2026-12-05 carry none
            pipe.hset(entity_key(eid), "tier_since", _iso(o["tier_since"]))
        else:
            pipe.hdel(entity_key(eid), "tier_since")
        pipe.sadd(ENTITIES, eid)
        pipe.zadd(f"{P}rank", {eid: score})
        for t in self.ratios:
            if t != tier:
                pipe.zrem(f"{P}rank:tier:{t}", eid)
        pipe.zadd(f"{P}rank:tier:{tier}", {eid: score})
        if meta:
            pipe.zadd(f"{P}rank:industry:{meta[0]}", {eid: score})
            pipe.zadd(f"{P}rank:region:{meta[1]}", {eid: score})

    def _spotcheck(self, pipe, o: dict, meta: list | None) -> None:
        rec, t = self._spotcheck_record(o, meta)
        pipe.zadd(SPOTCHECKS, {rec: t})
        pipe.zremrangebyrank(SPOTCHECKS, 0, -SPOTCHECKS_KEPT - 1)

    @staticmethod
    def _spotcheck_record(o: dict, meta: list | None) -> tuple[bytes, float]:
        ts = o["ts"]
        t = _epoch(ts)
        rec = {"entity_id": o["entity_id"], "ts": _iso(ts), "from_tier": o["from_tier"], "to_tier": o["to_tier"],
               "from_ratio": o["from_ratio"], "to_ratio": o["to_ratio"], "score": o["score"],
               "cause": o["cause_event_id"], "region": meta[1] if meta else None,
               "industry": meta[0] if meta else None}
        return orjson.dumps(rec), t

    def _history(self, pipe, o: dict) -> None:
        hk = history_key(o["entity_id"])
        pipe.zadd(hk, {self._history_member(o): history_rank(o)})
        pipe.zremrangebyrank(hk, 0, -self.history_len - 1)

    @staticmethod
    def _history_member(o: dict) -> bytes:
        h = {"ts": _iso(o["ts"]), "score": o["score"], "tier": o["tier"], "cause": o["cause_event_id"]}
        if o.get("objection"):
            h["objection"] = o["objection"]["effect"]
        if o.get("reset"):  # an operator's state reset: who and why
            h["reset"] = {"author": o["reset"]["author"], "reason": o["reset"]["reason"]}
        return orjson.dumps(h)

    @staticmethod
    def _objection_effect(o: dict) -> tuple[bytes, bytes]:
        """(field, value) of :data:`OBJECTION_EFFECTS` for a risk change an objection step forced."""
        ob = o["objection"]
        step = "objection" if ob["step"] == "objection" else "resolution"
        return (f"{ob['objection_id']}:{step}".encode(),
                orjson.dumps({"effect": ob["effect"], "resolution": ob.get("resolution"), "ts": _iso(o["ts"]),
                              "score_before": ob["score_before"], "score": o["score"], "tier": o["tier"],
                              "target_id": ob["target_id"]}))
