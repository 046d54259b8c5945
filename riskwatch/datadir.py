"""One process per data directory, checked at start.

A worker's local state store is RocksDB, which one process may open at a
time. Two workers given the same ``RISKWATCH_DATA_DIR`` (a volume shared by
replicas, say) ran until their first rebalance; then the second crashed with
``IO error: While lock file: .../state/p0/LOCK: Resource temporarily
unavailable`` (2026-11-28). A second ``riskwatch up`` on one ``--data-dir``
deleted the running one's worker store before starting its own. :func:`lock`
makes both a clear error at start.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import IO

__all__ = ["DataDirInUse", "lock"]


class DataDirInUse(RuntimeError):
    """Another process holds the data directory."""


def lock(directory: Path, holder: str = "a worker", advice: str = "each worker needs its own RISKWATCH_DATA_DIR "
         "(its local state store is RocksDB, which one process opens at a time)") -> IO[str]:
    """Hold ``directory`` for this process (released when the returned file closes or the process ends);
    ``holder`` names this process to the next one that tries, ``advice`` is what the error tells it."""
    directory.mkdir(parents=True, exist_ok=True)
    f = open(directory / ".lock", "a+")  # noqa: SIM115 - held open for the life of the process
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        other = f.read().strip() or "another process"
        f.close()
        raise DataDirInUse(f"{directory} is in use by {other}: {advice}") from None
    f.seek(0)
    f.truncate()
    f.write(f"{holder}, pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    return f
