"""The config history back from the audit log when Redis lost it.

Each config change through the API is kept three ways in Redis: the history of changes
(``rw:config:history``: who, why, the diff, the config before), each change's whole config
(``rw:config:versions``) and the last number (``rw:config:seq``). The workers write back the change in
force (:mod:`.streams.config_repair`), but until 2026-12-07 a Redis that lost its data lost the rest:
``GET /v1/config/history`` listed nothing before the loss, and ``GET /v1/config/history/{seq}``
answered 404 for every older change, so nobody could say which thresholds a decision's
``config_version`` stood for.

Since then each change's audit entry (``config.change``) carries the whole command (the config, its
time) and the config it replaced (``previous``), and the audit log is kept on Kafka
(:mod:`.audit_topic`). When the audit log is written back, :func:`restore` puts back each change
Redis lacks: its whole config (never over one Redis holds), its row in the history (in number order
among the rows written since), and the number, raised to the highest change. Changes audited before
2026-12-07 carry no config and are not put back.
"""

from __future__ import annotations

import orjson

from . import audit
from .config import CONFIG_SEQ, CONFIG_VERSIONS

__all__ = ["HISTORY", "audit_detail", "from_audit", "restore"]

HISTORY = "rw:config:history"  # newest first: each change without its config, with its diff and the one before


def audit_detail(cmd: dict, diff: list, previous: dict) -> dict:
    """The ``config.change`` audit entry's detail: enough to put the change back (:func:`from_audit`)."""
    detail = {"seq": cmd["seq"], "reason": cmd["reason"], "diff": diff, "previous": previous,
              "config": cmd["config"], "command_at": cmd["at"]}
    if "rollback_to" in cmd:
        detail["rollback_to"] = cmd["rollback_to"]
    return detail


def history_row(cmd: dict, diff: list, previous: dict) -> dict:
    """A change's row in :data:`HISTORY`."""
    return {k: v for k, v in cmd.items() if k != "config"} | {"diff": diff, "previous": previous}


def from_audit(entries: list[dict]) -> list[tuple[dict, dict]]:
    """``(command, history row)`` of each ``config.change`` entry that carries its config.

    >>> e = {"at": 5.1, "actor": "li", "action": "config.change", "target": "v2",
    ...      "detail": {"seq": 2, "reason": "pilot", "diff": [["a", 1, 2]], "previous": {"seq": 1},
    ...                 "config": {"version": "v2"}, "command_at": 5.0}}
    >>> cmd, row = from_audit([e, dict(e, detail={"seq": 1})])[0]
    >>> cmd
    {'type': 'config_change', 'seq': 2, 'version': 'v2', 'config': {'version': 'v2'}, 'actor': 'li', 'reason': 'pilot', 'at': 5.0}
    >>> row["diff"], row["previous"], "config" in row
    ([['a', 1, 2]], {'seq': 1}, False)
    """
    out = []
    for e in entries:
        d = e.get("detail") or {}
        if e.get("action") != "config.change" or "config" not in d:
            continue
        cmd = {"type": "config_change", "seq": d["seq"], "version": e["target"], "config": d["config"],
               "actor": e["actor"], "reason": d["reason"], "at": d["command_at"]}
        if "rollback_to" in d:
            cmd["rollback_to"] = d["rollback_to"]
        out.append((cmd, history_row(cmd, d["diff"], d["previous"])))
    return out


async def restore(r, entries: list[dict] | None = None) -> int:
    """Put back the audited changes Redis lacks (see the module's text); how many history rows.
    ``entries``: the audit log, oldest first, if read already."""
    import redis.exceptions as rex

    if entries is None:
        entries = [e async for e in audit.each(r)]
    changes = from_audit([e for e in entries if e.get("action") == "config.change"])
    if not changes:
        return 0
    while True:
        async with r.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(HISTORY, CONFIG_VERSIONS, CONFIG_SEQ)
                rows = [orjson.loads(x) for x in await pipe.lrange(HISTORY, 0, -1)]
                held = {row.get("seq") for row in rows}
                missing = [row for _, row in changes if row["seq"] not in held]
                top = max(cmd["seq"] for cmd, _ in changes)
                seq = int(await pipe.get(CONFIG_SEQ) or 0)
                pipe.multi()
                for cmd, _ in changes:
                    pipe.hsetnx(CONFIG_VERSIONS, str(cmd["seq"]), orjson.dumps(cmd))
                if missing:
                    pipe.delete(HISTORY)
                    pipe.rpush(HISTORY, *[orjson.dumps(row) for row in
                                          sorted(rows + missing, key=lambda x: (x.get("seq", 0), x.get("at", 0)),
                                                 reverse=True)])
                if seq < top:
                    pipe.set(CONFIG_SEQ, top)
                await pipe.execute()
                return len(missing)
            except rex.WatchError:
                continue
