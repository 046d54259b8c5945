"""What comes back from the audit log when Redis lost it.

The audit log outlives Redis (:mod:`.audit_topic`). Some records are audited whole, so when the log is
written back, they are too, each never over what Redis holds:

- the config history and each change's whole config (:func:`.config_history.restore`);
- the silences, ended ones too (:func:`.alerts.restore.silences_of`; since 2026-12-08: a Redis lost
  while no dispatcher ran lost them all, so nobody could say who had silenced what, and alerts meant
  to be quiet were sent once a dispatcher started);
- the file imports, so the same file is refused again (:func:`.ingest.imports.imports_of`; since
  2026-12-08: the same backfill was taken again without a word, and every long history's older part
  counted twice).

The API runs them after each write-back of the audit log, and ``riskwatch rebuild-view`` too. A record
kept in a Redis hash adds one line to :data:`HASHES`.
"""

from __future__ import annotations

import orjson

from . import audit, config_history
from .alerts.restore import silences_of
from .alerts.store import SILENCES
from .ingest.imports import IMPORTS, imports_of

__all__ = ["HASHES", "restore_all"]

HASHES = {  # name -> (the Redis hash, audit entries oldest first -> {field: record}), written back with HSETNX
    "silences": (SILENCES, silences_of),
    "imports": (IMPORTS, imports_of),
}


async def _put_back(r, key: str, found: dict[str, dict]) -> int:
    """HSETNX each of ``found`` into ``key``; how many Redis lacked."""
    if not found:
        return 0
    pipe = r.pipeline(transaction=False)
    for field, rec in found.items():
        pipe.hsetnx(key, field, orjson.dumps(rec))
    return sum(1 for added in await pipe.execute() if added)


async def restore_all(r) -> dict[str, int]:
    """Everything above over the audit log, read once; how many of each were written back."""
    entries = [e async for e in audit.each(r)]
    out = {"config_history": await config_history.restore(r, entries)}
    for name, (key, of) in HASHES.items():
        out[name] = await _put_back(r, key, of(entries))
    return out
