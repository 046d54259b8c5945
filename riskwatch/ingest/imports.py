"""Files imported before, by content: ``riskwatch import`` refuses the same file twice.

An entity recognises a complaint, inspection or record sent again only among its newest
(``remember_ids``, see ``riskwatch/detectors/seen.py``): the same backfill imported twice counts
the older part of every long history again. So each import is kept in Redis, in the
hash ``rw:imports`` (SHA-256 of the file -> when, what, how many) and in the audit log, and a
second import of the same bytes is refused unless ``--again`` is given. An import that stopped
(the broker away, Ctrl-C) is kept with the line it stopped at (``next_line``): the same file is
then accepted with ``--from-line`` that line, which sends the rest. A file that differs by
one byte is another file: rows that overlap an earlier import are left to the detectors.
Redis not answering: the import goes ahead with a warning (as its config falls back to the file).
"""

from __future__ import annotations

import getpass
import hashlib
import socket
import time
from pathlib import Path

import orjson

from .. import audit

__all__ = ["IMPORTS", "digest", "earlier", "record"]

IMPORTS = "rw:imports"


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _client(settings):
    import redis

    return redis.Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)


def earlier(settings, sha256: str) -> dict | None:
    """The import of these bytes on record, or None. Raises redis' errors and OSError."""
    client = _client(settings)
    try:
        raw = client.hget(IMPORTS, sha256)
    finally:
        client.close()
    return orjson.loads(raw) if raw else None


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def record(settings, sha256: str, path: Path, accepted: int, rejected: int, again: bool,
           next_line: int | None = None, from_line: int = 1) -> dict:
    """Keep an import (and audit it, in one transaction); returns the entry. ``next_line``: the import
    stopped there (every line before it is in), to be sent with ``--from-line``; None when complete.
    ``from_line``: where this run began (above 1: it sent the rest of an import that stopped)."""
    entry = {"at": time.time(), "file": path.name, "sha256": sha256, "accepted": accepted, "rejected": rejected,
             "actor": actor(), "again": again, "next_line": next_line, "from_line": from_line}
    client = _client(settings)
    try:
        pipe = client.pipeline(transaction=True)
        pipe.hset(IMPORTS, sha256, orjson.dumps(entry))
        audit.record(pipe, entry["actor"], "import", path.name, {k: entry[k] for k in (
            "sha256", "accepted", "rejected", "again", "next_line", "from_line")})
        pipe.execute()
    finally:
        client.close()
    return entry
