"""`riskwatch up --demo` (what `make run` starts) end to end: scored entities on the API within
60 s of the banner, events on the worker's /metrics, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from riskwatch.embedded import free_port


def _get(url: str, token: str | None = None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def _processes_of(data_dir: Path) -> set[int]:
    """Processes started for this data directory: riskwatch children carry it in their environment,
    the broker and Redis run in subdirectories of it."""
    mine = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if f"RISKWATCH_DATA_DIR={data_dir}".encode() in environ or cwd.startswith(str(data_dir)):
            mine.add(int(pid))
    return mine - {os.getpid()}


def test_up_demo_serves_scored_entities_and_ctrl_c_stops_everything(tmp_path):
    data_dir = tmp_path / "run"
    api_port = free_port()  # the ingest gateway takes the next port
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKWATCH_")}
    up = subprocess.Popen([sys.executable, "-m", "riskwatch.cli", "up", "--demo", "--data-dir", str(data_dir),
                           "--api-port", str(api_port)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        banner = []
        for line in up.stdout:
            banner.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(banner)
        assert "riskwatch is up" in text, text
        metrics_port = int(re.search(r"http://127\.0\.0\.1:(\d+)/metrics \(worker\)", text).group(1))
        token = re.search(r"token\s+viewer\s+(\S+)", text).group(1)
        children = _processes_of(data_dir)
        assert len(children) >= 7, children  # broker, Redis, worker, dispatcher, API, ingest, feed, receiver
        deadline = time.monotonic() + 60
        scored = []
        while time.monotonic() < deadline and not scored:
            body = json.loads(_get(f"http://127.0.0.1:{api_port}/v1/entities?limit=5", token))
            scored = [e for e in body["entities"] if e.get("score") is not None and e.get("tier")]
            time.sleep(1)
        assert scored, body
        processed = [float(line.split()[1]) for line in _get(f"http://127.0.0.1:{metrics_port}/metrics").splitlines()
                     if line.startswith("riskwatch_events_processed_total ")]
        assert processed and processed[0] > 0
    finally:
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=90)
    assert up.returncode == 0 and "stopped." in out, out
    time.sleep(0.5)
    left = [pid for pid in children if Path(f"/proc/{pid}").exists()
            and Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"]
    assert not left, left
