"""schemathesis against the API's own OpenAPI spec, as an admin, on a real Redis and broker."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

from pathlib import Path

import pytest

from riskwatch.embedded import free_port

from .api_helpers import api_settings
from .conftest import wait_for


@pytest.fixture
def api_schema(stack, tmp_path):
    s, workers = stack
    port = free_port()
    s2 = api_settings(s)
    env = dict(workers.env, RISKWATCH_API_TOKENS=s2.api_tokens, RISKWATCH_API_RATE_BURST="1000000",
               RISKWATCH_API_PORT=str(port))
    p = subprocess.Popen([sys.executable, "-m", "riskwatch.cli", "api"], env=env,
                         stdout=(tmp_path / "api.log").open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return urllib.request.urlopen(url + "/healthz", timeout=1).status == 200
        except OSError:
            return False

    wait_for(up, 30, "the API", lambda: (tmp_path / "api.log").read_text())
    yield url
    p.terminate()
    p.wait(10)
    assert "Traceback" not in (tmp_path / "api.log").read_text(), (tmp_path / "api.log").read_text()[-3000:]


CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_api_conforms_to_its_schema(api_schema, tmp_path):
    """No 5xx and no response outside the spec, for every operation (schemathesis' CLI; its pytest plugin
    does not load under pytest 9)."""
    url = api_schema
    n = os.environ.get("RISKWATCH_SCHEMATHESIS_EXAMPLES", "25")
    out = subprocess.run([str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/openapi.json",
                          "--checks", CHECKS, "-H", "Authorization: Bearer t-admin", "--max-examples", n,
                          "--seed", "1", "--request-timeout", "30", "--continue-on-failure", "--no-color"],
                         capture_output=True, text=True, timeout=900, cwd=tmp_path)
    (tmp_path / "schemathesis.txt").write_text(out.stdout + out.stderr)
    assert out.returncode == 0, out.stdout[-12000:] + out.stderr[-2000:]
    assert "operations" in out.stdout.lower() or "passed" in out.stdout.lower(), out.stdout[-2000:]
