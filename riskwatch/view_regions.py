"""Registered entities per region in the Redis view: what a board limited to regions counts as "not
scored yet" (since 2026-12-07; before, only the unlimited board had that count, from ``rw:entities``).

Keys (written by the workers' round script, :data:`riskwatch.view.ROUND_LUA`, at each register upsert):

- ``rw:registered:region:{r}`` set of the entity ids whose register data names region ``r`` (an entity
  that moves leaves its old region's set);
- ``rw:registered:regions`` set of the region codes that have had such a set;
- ``rw:registered:format``: set once the sets hold every entity of ``rw:entities`` that has register
  data (:func:`index_regions` fills them in for a view written before 2026-12-07; ``rebuild-view``
  writes them whole).
"""

from __future__ import annotations

from typing import Callable

import orjson

__all__ = ["REGIONS", "REGIONS_FORMAT", "REGIONS_FORMAT_KEY", "index_regions", "registered_count",
           "registered_key", "regions_in"]

REGIONS = "rw:registered:regions"
REGIONS_FORMAT = "1"
REGIONS_FORMAT_KEY = "rw:registered:format"


def registered_key(region: str) -> str:
    """The set of registered entities of a region.

    >>> registered_key("110101")
    'rw:registered:region:110101'
    """
    return f"rw:registered:region:{region}"


# each entity's region read and indexed in one step: an upsert that moves it meanwhile cannot be undone
INDEX_REGIONS_LUA = """
local n = 0
for _, eid in ipairs(cjson.decode(ARGV[1])) do
  local region = redis.call("HGET", "rw:entity:" .. eid, "region")
  if region then
    redis.call("SADD", "rw:registered:region:" .. region, eid)
    redis.call("SADD", "rw:registered:regions", region)
    n = n + 1
  end
end
return n
"""


async def index_regions(r, batch: int = 500) -> int | None:
    """Fill in the per-region sets from ``rw:entities`` for a view written before they existed; returns
    how many entities it indexed, None when the sets were complete. Idempotent; API replicas may run it
    at once."""
    if await r.get(REGIONS_FORMAT_KEY) in (REGIONS_FORMAT, REGIONS_FORMAT.encode()):
        return None
    script = r.register_script(INDEX_REGIONS_LUA)
    cursor, n = 0, 0
    while True:
        cursor, ids = await r.sscan("rw:entities", cursor, count=batch)
        if ids:
            n += int(await script(args=[orjson.dumps([i.decode() if isinstance(i, bytes) else i for i in ids])]))
        if int(cursor) == 0:
            break
    await r.set(REGIONS_FORMAT_KEY, REGIONS_FORMAT)
    return n


async def regions_in(r, sees: Callable[[str], bool]) -> list[str]:
    """The region codes with registered entities that ``sees`` accepts (a limited principal's ``sees``):
    a read of ``rw:registered:regions``, not a scan of the keyspace."""
    regions = [x.decode() if isinstance(x, bytes) else x for x in await r.smembers(REGIONS)]
    return sorted(x for x in regions if sees(x))


async def registered_count(r, regions: list[str]) -> int:
    """Registered entities in ``regions`` (as :func:`regions_in` gives them)."""
    if not regions:
        return 0
    pipe = r.pipeline(transaction=False)
    for x in regions:
        pipe.scard(registered_key(x))
    return sum(await pipe.execute())
