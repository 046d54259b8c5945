"""What comes back from the audit log when Redis lost it.

The audit log outlives Redis (:mod:`.audit_topic`). Some records are audited whole, so when the log is
written back, they are too, each never over what Redis holds:

- the config history and each change's whole config (:func:`.config_history.restore`);
- the silences, ended ones too (:func:`.alerts.restore.silences_from_audit`);
- the file imports, so the same file is refused again (:func:`.ingest.imports.imports_from_audit`).

The API runs them after each write-back of the audit log, and ``riskwatch rebuild-view`` too. A new
kind adds one line to :data:`RESTORERS`.
"""

from __future__ import annotations

from . import audit, config_history
from .alerts.restore import silences_from_audit
from .ingest.imports import imports_from_audit

__all__ = ["RESTORERS", "restore_all"]

RESTORERS = {  # name -> async (redis, audit entries oldest first) -> how many written back
    "config_history": config_history.restore,
    "silences": silences_from_audit,
    "imports": imports_from_audit,
}


async def restore_all(r) -> dict[str, int]:
    """Each of :data:`RESTORERS` over the audit log, read once; how many each wrote back."""
    entries = [e async for e in audit.each(r)]
    return {name: await restore(r, entries) for name, restore in RESTORERS.items()}
