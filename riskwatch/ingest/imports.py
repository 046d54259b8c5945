"""Files imported before, by content: ``riskwatch import`` refuses the same file twice.

An entity recognises a complaint, inspection or record sent again only among its newest
(``remember_ids``, see ``riskwatch/detectors/seen.py``): the same backfill imported twice counts
the older part of every long history again. So each import is kept in Redis, in the
hash ``rw:imports`` (SHA-256 of the file -> when, what, how many) and in the audit log, and a
second import of the same bytes is refused unless ``--again`` is given. A Redis that lost
``rw:imports`` gets it back from the audit log (:func:`imports_of`, :mod:`riskwatch.audit_derived`; since 2026-12-08). An import that stopped
(the broker away, Ctrl-C) is kept with the line it stopped at (``next_line``): the same file is
then accepted with ``--from-line`` that line, which sends the rest. A file that differs by
one byte is another file: rows that overlap an earlier import are left to the detectors.
Redis not answering: the import goes ahead with a warning (as its config falls back to the file).

An import in progress holds ``rw:imports:running:<sha256>`` (:class:`Running`): the record above is
written when an import ends, so until 2026-12-07 the same file started again meanwhile (a long
backfill someone thought had failed, two hosts' cron jobs) was sent twice. The claim is renewed
while the import runs and expires two minutes after a process that died holding it.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import orjson

from .. import audit
from ..claims import RELEASE, RENEW

__all__ = ["IMPORTS", "Running", "digest", "earlier", "imports_of", "record"]

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
            "sha256", "accepted", "rejected", "again", "next_line", "from_line")} | {"imported_at": entry["at"]})
        pipe.execute()
    finally:
        client.close()
    return entry


def imports_of(entries) -> dict[str, dict]:
    """The imports the audit log's entries (oldest first) record: SHA-256 -> the last import of those
    bytes, as :func:`record` keeps it.

    >>> log = [{"at": 5.0, "actor": "cli:li@h", "action": "import", "target": "a.csv",
    ...         "detail": {"sha256": "ab", "accepted": 9, "rejected": 1, "again": False, "next_line": 11,
    ...                    "from_line": 1}},
    ...        {"at": 6.0, "actor": "cli:li@h", "action": "import", "target": "a.csv",
    ...         "detail": {"sha256": "ab", "accepted": 5, "rejected": 0, "again": False, "next_line": None,
    ...                    "from_line": 11}}]
    >>> imports_of(log)["ab"]["from_line"], imports_of(log)["ab"]["file"], imports_of(log[:1])["ab"]["next_line"]
    (11, 'a.csv', 11)
    """
    out: dict[str, dict] = {}
    for e in entries:
        d = e.get("detail") or {}
        if e["action"] == "import" and "sha256" in d:
            out[d["sha256"]] = {"at": d.get("imported_at", e["at"]), "file": e["target"], "sha256": d["sha256"], "accepted": d["accepted"],
                                "rejected": d["rejected"], "actor": e["actor"], "again": d.get("again", False),
                                "next_line": d.get("next_line"), "from_line": d.get("from_line", 1)}
    return out


class Running:
    """The claim of an import in progress on a file's bytes: :meth:`take` answers the holder's entry
    (who, since when, where) when another import holds it, else takes it and renews it every
    ``ttl / 4`` seconds in a thread until :meth:`release`."""

    def __init__(self, settings, sha256: str, ttl: int = 120) -> None:
        self.settings, self.key, self.ttl = settings, f"{IMPORTS}:running:{sha256}", ttl
        self.token = orjson.dumps({"id": uuid.uuid4().hex, "actor": actor(), "pid": os.getpid(), "at": time.time()})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self) -> dict | None:
        """None when taken; the holder's entry when another import holds it. Raises redis' errors."""
        client = _client(self.settings)
        try:
            if not client.set(self.key, self.token, nx=True, ex=self.ttl):
                held = client.get(self.key)
                return orjson.loads(held) if held else self.take()  # expired meanwhile: take it
        finally:
            client.close()
        self._thread = threading.Thread(target=self._renew, name="import-claim", daemon=True)
        self._thread.start()
        return None

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                client = _client(self.settings)
                try:
                    client.eval(RENEW, 1, self.key, self.token, self.ttl)
                finally:
                    client.close()
            except Exception:  # noqa: BLE001 - Redis away a moment: the next renewal tries again
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            client = _client(self.settings)
            try:
                client.eval(RELEASE, 1, self.key, self.token)
            finally:
                client.close()
        except Exception:  # noqa: BLE001 - it expires by itself
            pass
