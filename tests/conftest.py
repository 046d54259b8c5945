from __future__ import annotations

from pathlib import Path

import pytest

from riskwatch.config import load_config

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
