from __future__ import annotations

import os
from pathlib import Path

import pytest

from riskwatch.config import load_config
from riskwatch.embedded import port_range


def _own_ports() -> None:
    """Under pytest-xdist (`make test` runs two processes) each test process, and every server it starts,
    picks ports in a slice of its own: two processes could otherwise pick the same free port and one
    bind it first (a worker binds its metrics port seconds after the test picked it)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not worker or not count or "RISKWATCH_PORT_RANGE" in os.environ:
        return
    whole, n, k = port_range(span=1), int(worker.removeprefix("gw")), int(count)
    size = len(whole) // k
    os.environ["RISKWATCH_PORT_RANGE"] = f"{whole.start + n * size}-{whole.start + (n + 1) * size - 1}"


_own_ports()

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def config():
    return load_config()


def shared_path(rel: str) -> Path:
    """A path under ../shared, or skip the test with the reason."""
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"{p} not found: shared development data is only beside the project checkout")
    return p
