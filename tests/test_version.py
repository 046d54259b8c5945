"""One version, from ``riskwatch/__init__.py``: the installed package's metadata (pyproject's dynamic
version), ``riskwatch --version``, both APIs' OpenAPI documents and ``riskwatch_build_info`` agree.
Until 2026-12-07 pyproject said 0.1.0 and both OpenAPI documents 0.2.0, and no process told its version."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import riskwatch
from riskwatch.alerts.metrics import AlertMetrics
from riskwatch.api.app import create_api
from riskwatch.api.context import ApiContext
from riskwatch.ingest.http import create_ingest_api
from riskwatch.metrics import WorkerMetrics
from riskwatch.settings import Settings


def test_the_installed_package_and_the_cli_give_the_version_of_the_source():
    assert importlib.metadata.version("riskwatch") == riskwatch.__version__
    r = subprocess.run([sys.executable, "-m", "riskwatch.cli", "--version"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"riskwatch {riskwatch.__version__}", (r.stdout, r.stderr)


def test_both_apis_document_the_version_of_the_source():
    s = Settings(api_token="t" * 32)
    assert create_api(s).openapi()["info"]["version"] == riskwatch.__version__
    assert create_ingest_api(s).openapi()["info"]["version"] == riskwatch.__version__


def test_every_process_registry_has_the_build_info():
    labels = {"version": riskwatch.__version__, "python": ".".join(map(str, sys.version_info[:3]))}
    for registry in (WorkerMetrics().registry, AlertMetrics().registry, ApiContext(Settings()).registry):
        assert registry.get_sample_value("riskwatch_build_info", labels) == 1.0
