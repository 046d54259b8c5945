"""`riskwatch up --demo` started as a user starts it, for the tests that drive it end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def start_up(data_dir: Path, api_port: int, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`riskwatch up --demo` in its own session, with no ``RISKWATCH_*`` of this process's but ``env``'s; returns
    the process and its banner, once printed (the caller stops it with SIGINT)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RISKWATCH_")}
    up = subprocess.Popen([sys.executable, "-m", "riskwatch.cli", "up", "--demo", "--data-dir", str(data_dir),
                           "--api-port", str(api_port)], env=dict(clean, **(env or {})), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    banner = []
    for line in up.stdout:
        banner.append(line)
        if "Ctrl-C stops everything" in line:
            break
    return up, "".join(banner)
