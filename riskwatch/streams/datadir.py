"""One worker per data directory, checked at start.

A worker's local state store is RocksDB, which one process may open at a
time. Two workers given the same ``RISKWATCH_DATA_DIR`` (a volume shared by
replicas, say) ran until their first rebalance; then the second crashed with
``IO error: While lock file: .../state/p0/LOCK: Resource temporarily
unavailable`` (2026-11-28). :func:`lock` makes that a clear error at start.
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


def lock(directory: Path) -> IO[str]:
    """Hold ``directory`` for this process (released when the returned file closes or the process ends)."""
    directory.mkdir(parents=True, exist_ok=True)
    f = open(directory / ".lock", "a+")  # noqa: SIM115 - held open for the life of the worker
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise DataDirInUse(f"{directory} is in use by {holder}: each worker needs its own RISKWATCH_DATA_DIR "
                           f"(its local state store is RocksDB, which one process opens at a time)") from None
    f.seek(0)
    f.truncate()
    f.write(f"a worker, pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    return f
