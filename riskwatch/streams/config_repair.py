"""The config applied through the API when Redis lost it, or lost its latest change.

Redis holds the config change in force (``rw:config:current``), its number (``rw:config:seq``) and
each change's content (``rw:config:versions``); each change also goes to every worker on
``rw.commands``, where a worker takes it in order with its events and ignores one at or below the
number it has applied. Until 2026-12-07 a Redis restarted without its data (or failed over to a
replica that had missed the last change) split the system: the API showed the config file as in
force while the running workers kept the applied config; the next change got number 1 again, which
the running workers ignored while the API answered "sent to workers", and a worker started
afterwards ran it: two configs at once (a test showed it).

Each worker compares, every few seconds, the change in force in Redis with its own:

- Redis holds none, or an older one (by the API's ``at`` time): the worker writes its own back
  (current, its version, and the number raised to it, so the next change is numbered after it);
- Redis holds one made later that the worker did not apply, with a number at or below its own
  (made after Redis lost the numbering): the worker applies it, goes on ignoring commands at or
  below the highest number it has seen, and raises the number;
- Redis holds a higher number: its command is on the way on ``rw.commands``, in order with the
  events (a worker with a backlog takes it when it gets there); unless another worker wrote it
  back (``rw:config:restored``): no command comes then (a worker started while Redis was empty,
  which runs the config file), so the worker applies it.

Every worker applies the same rule, so they agree. The change history comes back with the audit
log, which the API writes back from ``rw.audit`` (:mod:`riskwatch.config_history`).
"""

from __future__ import annotations

import orjson

from ..config import CONFIG_SEQ, CONFIG_VERSIONS, CURRENT_CONFIG

CONFIG_RESTORED = "rw:config:restored"  # the number of a change a worker wrote back (no command comes for it)

__all__ = ["reconcile"]

# KEYS: current, versions, seq, restored. ARGV: the worker's command (JSON; "": it runs the config file), its
# seq, its at, the highest seq the worker has seen. Raises the number to the highest seen; writes the
# worker's command back (and marks it written back) unless Redis holds one at least as recent or a higher
# number. Returns what Redis holds and the number of a change a worker wrote back, or nothing when it
# wrote the worker's back.
_RECONCILE_LUA = """
local seen = tonumber(ARGV[4])
if tonumber(redis.call("GET", KEYS[3]) or "0") < seen then
  redis.call("SET", KEYS[3], seen)
end
local cur = redis.call("GET", KEYS[1])
if cur then
  local c = cjson.decode(cur)
  if ARGV[1] == "" or (tonumber(c.at) or 0) >= tonumber(ARGV[3]) or (tonumber(c.seq) or 0) > tonumber(ARGV[2]) then
    return {cur, redis.call("GET", KEYS[4]) or ""}
  end
elseif ARGV[1] == "" then
  return {"", ""}
end
redis.call("SET", KEYS[1], ARGV[1])
redis.call("HSETNX", KEYS[2], ARGV[2], ARGV[1])
redis.call("SET", KEYS[4], ARGV[2])
return false
"""


async def reconcile(r, mine: dict | None, seen: int) -> tuple[str, dict | None]:
    """Compare Redis's config change in force with the worker's (``mine``: its command; None: the config
    file) and ``seen``, the highest change number it has taken; one of:

    - ``("same", cmd)``, ``("ahead", cmd)``: nothing to do (Redis's is the worker's, or a later
      change whose command is on its way);
    - ``("wrote", None)``: Redis held none or an older one; the worker's is written back;
    - ``("adopt", cmd)``: a change the worker must apply: made later than the worker's but numbered at
      or below it, or numbered above it and written back by another worker (no command comes)."""
    if mine is None:
        args = ("", 0, 0.0)
    else:
        args = (orjson.dumps(mine), int(mine["seq"]), float(mine.get("at") or 0))
    got = await r.eval(_RECONCILE_LUA, 4, CURRENT_CONFIG, CONFIG_VERSIONS, CONFIG_SEQ, CONFIG_RESTORED, *args, seen)
    if got is None:
        return "wrote", None
    raw, restored = got
    if not raw:
        return "same", None
    cur = orjson.loads(raw)
    seq, at = cur.get("seq"), cur.get("at")
    if not isinstance(seq, int) or not isinstance(at, int | float):
        return "same", cur  # not the API's: leave it (the API reads it as it can)
    mine_seq, mine_at = (0, 0.0) if mine is None else (mine["seq"], mine.get("at"))
    if seq == mine_seq and at == mine_at:
        return "same", cur
    if seq > mine_seq:
        return ("adopt", cur) if restored == str(seq).encode() else ("ahead", cur)
    return "adopt", cur  # at or below our number but made later (the Lua left it only then)
