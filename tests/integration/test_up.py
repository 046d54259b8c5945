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
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import riskwatch
from riskwatch.embedded import free_port

from .up_process import start_up


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


def _left(pids) -> list[int]:
    """Those of ``pids`` still running (not zombies). A process that exits while its stat is read is gone:
    ``exists()`` then ``read_text()`` raised ProcessLookupError in that window (a CI run, 2026-12-06)."""
    out = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z":
                out.append(pid)
        except OSError:
            pass
    return out


def test_up_demo_serves_scored_entities_and_ctrl_c_stops_everything(tmp_path):
    data_dir = tmp_path / "run"
    api_port = free_port(span=2)  # the ingest gateway takes the next port
    up, text = start_up(data_dir, api_port)
    try:
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
        # the demo's district inspector sees the Beijing districts (1101) only, and no route that spans regions
        district = re.search(r"token\s+district\s+(\S+)\s+\(inspector, limited to regions 1101\)", text).group(1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until entities of other regions are scored too
            every = json.loads(_get(f"http://127.0.0.1:{api_port}/v1/entities?limit=500", token))["entities"]
            if any(not e["region"].startswith("1101") for e in every):
                break
            time.sleep(1)
        mine = json.loads(_get(f"http://127.0.0.1:{api_port}/v1/entities?limit=500", district))["entities"]
        assert any(not e["region"].startswith("1101") for e in every), every
        assert all(e["region"].startswith("1101") for e in mine), mine
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(f"http://127.0.0.1:{api_port}/v1/audit", district)
        assert refused.value.code == 403
        processed = [float(line.split()[1]) for line in _get(f"http://127.0.0.1:{metrics_port}/metrics").splitlines()
                     if line.startswith("riskwatch_events_processed_total ")]
        assert processed and processed[0] > 0
        # each process says which version it runs (a rolling deploy shows both)
        urls = re.findall(r"(http://127\.0\.0\.1:\d+/metrics) \((\w+)\)", text)
        assert [name for _, name in urls] == ["worker", "dispatcher", "API"], text
        info = f'version="{riskwatch.__version__}"'
        for url, name in urls:
            built = [line for line in _get(url).splitlines() if line.startswith("riskwatch_build_info{")]
            assert len(built) == 1 and info in built[0] and built[0].endswith(" 1.0"), (name, built)
    finally:
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=90)
    assert up.returncode == 0 and "stopped." in out, out
    time.sleep(0.5)
    left = _left(children)
    assert not left, left


def _up(args: list[str], env: dict | None = None, timeout: float = 60) -> tuple[int, str, float]:
    t = time.monotonic()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RISKWATCH_")}
    r = subprocess.run([sys.executable, "-m", "riskwatch.cli", "up", *args], env=dict(clean, **(env or {})),
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stderr, time.monotonic() - t


def test_up_refuses_a_busy_port_or_a_data_dir_in_use_at_once_and_says_which(tmp_path):
    import socket

    from riskwatch.datadir import lock

    with socket.socket() as other:  # someone else's server on the ingest gateway's port (api + 1)
        api = free_port(span=2)
        other.bind(("127.0.0.1", api + 1))
        other.listen()
        code, err, took = _up(["--data-dir", str(tmp_path / "a"), "--api-port", str(api)])
    assert code == 2 and f"port {api + 1} (ingest gateway) in use" in err and "--api-port" in err, err
    assert took < 10 and not _processes_of(tmp_path / "a")
    held = lock(tmp_path / "b", holder="riskwatch up")  # a running `riskwatch up` on that directory
    try:
        code, err, took = _up(["--data-dir", str(tmp_path / "b"), "--api-port", str(free_port(span=2))])
    finally:
        held.close()
    assert code == 2 and f"{tmp_path / 'b'} is in use by riskwatch up, pid {os.getpid()}" in err, err
    assert took < 10


def test_up_reports_a_process_that_fails_to_start_with_its_log_and_stops_the_rest(tmp_path):
    d = tmp_path / "up"
    code, err, took = _up(["--data-dir", str(d), "--api-port", str(free_port(span=2))],
                          env={"RISKWATCH_API_TOKENS": "not-a-token-spec"})
    assert code == 1, err
    assert "exited with 1 while starting" in err and "RISKWATCH_API_TOKENS entry 1: use name:role:sha256hex" in err
    assert took < 30, took  # it waited 30 s for /healthz, then printed a traceback
    assert not _processes_of(d)


def _up_without_demo(data_dir: Path) -> subprocess.Popen:
    """`riskwatch up` on free ports, returned once its banner is printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKWATCH_")}
    up = subprocess.Popen([sys.executable, "-m", "riskwatch.cli", "up", "--data-dir", str(data_dir),
                           "--api-port", str(free_port(span=2))], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    for line in up.stdout:
        seen.append(line)
        if "Ctrl-C stops everything" in line:
            return up
    up.wait(10)
    raise AssertionError(f"riskwatch up exited with {up.returncode} before its banner:\n{''.join(seen)}")


def test_a_closed_terminal_sighup_stops_everything_too(tmp_path):
    """SIGHUP (a closed terminal, a dropped SSH session) killed up at once and left 7 processes running."""
    data_dir = tmp_path / "hup"
    up = _up_without_demo(data_dir)
    try:
        children = _processes_of(data_dir)
        assert len(children) >= 5, children  # broker, Redis, worker, dispatcher, API, ingest
        up.send_signal(signal.SIGHUP)
        out, _ = up.communicate(timeout=90)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0 and "stopped." in out, out
    time.sleep(0.5)
    left = _left(children)
    assert not left, left


def test_up_killed_with_sigkill_still_leaves_no_process_behind(tmp_path):
    """The OOM killer or `kill -9` gives up no chance to stop its children: until 2026-11-28 the
    broker, Redis, the worker, the dispatcher, the API and the ingest gateway kept running, holding
    the ports and the data directory. They now get SIGTERM when up dies (Linux PR_SET_PDEATHSIG)."""
    data_dir = tmp_path / "kill9"
    up = _up_without_demo(data_dir)
    children: set[int] = set()
    try:
        children = _processes_of(data_dir)
        assert len(children) >= 5, children  # broker, Redis, worker, dispatcher, API, ingest
        up.kill()
        up.wait(10)

        def left() -> list[int]:
            return _left(children)

        deadline = time.monotonic() + 40  # the worker stops within RISKWATCH_STOP_TIMEOUT_S (20 s)
        while left() and time.monotonic() < deadline:
            time.sleep(0.5)
        still = left()
        assert not still, [Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in still]
    finally:
        for pid in children:  # what the assertion found running must not outlive the test
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _pid_of(data_dir: Path, *words: str) -> int:
    """The process of ``up`` whose command line holds every one of ``words``."""
    for pid in _processes_of(data_dir):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if all(w in cmd for w in words):
            return pid
    raise AssertionError(f"no process with {words} under {data_dir}")


def _lines(up: subprocess.Popen) -> list[str]:
    """Everything up prints from now on, read in the background."""
    import threading

    got: list[str] = []
    threading.Thread(target=lambda: got.extend(up.stdout), daemon=True).start()
    return got


def _wait_line(got: list[str], text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(text in line for line in got):
        time.sleep(0.2)
    assert any(text in line for line in got), "".join(got)


def test_a_worker_that_dies_is_started_again_and_resumes(tmp_path):
    """Until 2026-12-04 a worker killed after start-up (the OOM killer, say) stopped every process,
    and up exited 0: a regulator's screen went stale with nothing but a line in the terminal."""
    data_dir = tmp_path / "restart"
    up = _up_without_demo(data_dir)
    got = _lines(up)
    try:
        worker = _pid_of(data_dir, "riskwatch.cli", "worker")
        os.kill(worker, signal.SIGKILL)
        _wait_line(got, "worker exited with -9; starting it again in 1s (restart 1 of at most 5", 10)
        _wait_line(got, "worker started again", 10)
        again = _pid_of(data_dir, "riskwatch.cli", "worker")
        assert again != worker
        port = int(re.search(r"RISKWATCH_WORKER_METRICS_PORT=(\d+)", Path(f"/proc/{again}/environ").read_bytes()
                             .replace(b"\0", b" ").decode()).group(1))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if "riskwatch_events_processed_total" in _get(f"http://127.0.0.1:{port}/metrics"):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("the restarted worker's /metrics did not answer")
        children = _processes_of(data_dir)
        up.send_signal(signal.SIGINT)
        up.wait(90)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, "".join(got)
    time.sleep(0.5)
    assert not _left(children)


def test_the_embedded_broker_dying_stops_everything_with_exit_status_1(tmp_path):
    """It holds the whole stream in memory: a new empty one would not hold what the offsets point into."""
    data_dir = tmp_path / "nobroker"
    up = _up_without_demo(data_dir)
    got = _lines(up)
    try:
        children = _processes_of(data_dir)
        os.kill(_pid_of(data_dir, "broker", "--listener-url"), signal.SIGKILL)
        up.wait(90)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 1, "".join(got)
    assert any("broker exited with -9; it holds everything in memory, so everything stops" in line
               for line in got), "".join(got)
    time.sleep(0.5)
    assert not _left(children)


def test_the_embedded_redis_dying_is_started_again_and_gets_the_view_and_alerts_back(tmp_path):
    """Until 2026-12-07 it stopped everything (exit status 1): nothing wrote back what it held. Now the
    workers write the view back and the alert intake the alerts, from rw.alerts."""
    import redis as redis_sync

    data_dir = tmp_path / "redis-dies"
    api_port = free_port(span=2)
    up, text = start_up(data_dir, api_port)
    got = _lines(up)
    try:
        token = re.search(r"token\s+viewer\s+(\S+)", text).group(1)
        r = redis_sync.Redis.from_url(re.search(r"redis (redis://\S+)", text).group(1))

        def alerts() -> int:
            return json.loads(_get(f"http://127.0.0.1:{api_port}/v1/alerts?limit=500", token))["count"]

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (r.scard("rw:entities") >= 500 and alerts() > 0):
            time.sleep(1)
        held, opened = r.scard("rw:entities"), alerts()
        assert held >= 500 and opened > 0, (held, opened)
        pid = _pid_of(data_dir, "redis-server")
        os.kill(pid, signal.SIGKILL)
        _wait_line(got, "redis exited with -9; starting it again in 1s", 10)
        _wait_line(got, "redis started again", 20)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if r.scard("rw:entities") >= held and alerts() >= 1:
                    break
            except (OSError, redis_sync.RedisError, urllib.error.HTTPError):
                pass
            time.sleep(1)
        assert r.scard("rw:entities") >= held and alerts() >= 1, (r.scard("rw:entities"), held, "".join(got))
        assert _pid_of(data_dir, "redis-server") != pid and up.poll() is None
        body = json.loads(_get(f"http://127.0.0.1:{api_port}/readyz"))
        assert body["ready"], body
        children = _processes_of(data_dir)
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(90)
    assert up.returncode == 0, "".join(got)
    time.sleep(0.5)
    assert not _left(children)
