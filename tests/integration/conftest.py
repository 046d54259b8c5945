"""Real services for integration tests: one Tansu broker and one Redis per session (per test process
under `make test`, which runs two: pytest-xdist gives each its own session).

Each test gets its own topic prefix and Faust app id, so tests share the
broker without seeing each other's data. Workers run as real processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from riskwatch.embedded import die_with_parent, free_port, start_broker, start_redis
from riskwatch.settings import INPUT_TOPICS, Settings
from riskwatch.streams.kafka import ensure_topics


@pytest.fixture(scope="session")
def services(tmp_path_factory):
    d = tmp_path_factory.mktemp("services")
    broker = start_broker(d / "broker")
    redis = start_redis(d / "redis")
    yield broker, redis
    broker.stop()
    redis.stop()


@pytest.fixture
def redis_url(services):
    """The test process's Redis, emptied (tests that need Redis alone, no broker topics)."""
    import redis as redis_sync

    url = services[1].url
    redis_sync.Redis.from_url(url).flushall()
    return url


class Workers:
    def __init__(self, settings: Settings, env: dict, d: Path) -> None:
        self.settings, self.env, self.d = settings, env, d
        self.procs: list[tuple[subprocess.Popen, int]] = []

    def start(self, env: dict | None = None, data_of: int | None = None) -> int:
        """Start a worker (``env`` on top of the stack's); ``data_of``: reuse that worker's data directory."""
        port = free_port()
        env = dict(self.env, **(env or {}), RISKWATCH_WORKER_METRICS_PORT=str(port),
                   RISKWATCH_DATA_DIR=str(self.d / f"w{len(self.procs) if data_of is None else data_of}"))
        log = (self.d / f"worker{len(self.procs)}.log").open("wb")
        p = subprocess.Popen([sys.executable, "-m", "riskwatch.cli", "worker", "--loglevel", "info"], env=env,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             preexec_fn=die_with_parent())  # noqa: PLW1509 (a killed pytest leaves no worker)
        self.procs.append((p, port))
        return len(self.procs) - 1

    def metrics_text(self, i: int) -> str:
        """Worker ``i``'s /metrics page ("" while it is not up yet)."""
        _, port = self.procs[i]
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            return ""

    def metric(self, i: int, name: str) -> float:
        """Sum of a worker metric's samples (0 while it is not up yet)."""
        return sum(float(line.rsplit(" ", 1)[1]) for line in self.metrics_text(i).splitlines()
                   if line.startswith(name) and not line.startswith("#") and "_created" not in line)

    def kill(self, i: int) -> None:
        os.killpg(self.procs[i][0].pid, signal.SIGKILL)
        self.procs[i][0].wait(10)

    def stop(self, i: int, timeout: float = 30) -> int:
        """Stop worker ``i`` as a deploy does (SIGTERM); its exit status."""
        os.killpg(self.procs[i][0].pid, signal.SIGTERM)
        return self.procs[i][0].wait(timeout)

    def stop_all(self) -> None:
        for p, _ in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)

    def log(self, i: int) -> str:
        """Worker ``i``'s whole log so far."""
        return (self.d / f"worker{i}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(self.log(i)[-3000:] for i in range(len(self.procs)))

    def wait_committed(self, topics=None, timeout: float = 60) -> None:
        """Until the group has committed every message the input ``topics`` (default: all) hold now.
        A worker counts events processed as it applies them, before its round writes the view, the
        outputs and the states and commits: a test that stopped a worker or read the view right after
        the count found the last round missing under load (2026-12-07; a sleep of 1.5-2 s before)."""
        from .helpers import high_watermarks, uncommitted

        s = self.settings
        ends = high_watermarks(s.broker, [s.topic(t) for t in (topics or INPUT_TOPICS)])
        wait_for(lambda: not uncommitted(s, ends), timeout, "the worker group to commit its input",
                 lambda: f"not committed: {uncommitted(s, ends)}\n{self.logs()}")

    def process(self, events: list[dict], batch_size: int = 200, timeout: float = 120) -> None:
        """Produce ``events``, start a worker, and wait until it has applied them all."""
        from .helpers import produce

        produce(self.settings, events, batch_size=batch_size)
        self.start()
        wait_for(lambda: self.metric(0, "riskwatch_events_processed_total") >= len(events), timeout,
                 f"{len(events)} events processed", self.logs)


def worker_env(s: Settings, **extra: str) -> dict:
    """The environment of a worker process for settings ``s`` (``extra``: more RISKWATCH_* variables)."""
    env = dict(os.environ, RISKWATCH_BROKER=s.broker, RISKWATCH_REDIS_URL=s.redis_url,
               RISKWATCH_TOPIC_PREFIX=s.topic_prefix, RISKWATCH_APP_ID=s.app_id,
               RISKWATCH_PARTITIONS=str(s.partitions), RISKWATCH_TICK_SECONDS=str(s.tick_seconds),
               RISKWATCH_STORE=s.store, RISKWATCH_REPAIR_GAPS="1")  # the embedded broker, as `up` runs it
    env.update(extra)
    return env


@pytest.fixture
def stack(services, tmp_path):
    broker, redis = services
    tag = uuid.uuid4().hex[:8]
    s = Settings(broker=broker.url, redis_url=redis.url, topic_prefix=f"t{tag}.", app_id=f"rw-{tag}",
                 partitions=4, data_dir=tmp_path, tick_seconds=0, store="memory://")
    asyncio.run(ensure_topics(s))
    import redis as redis_sync

    redis_sync.Redis.from_url(redis.url).flushall()
    w = Workers(s, worker_env(s), tmp_path)
    yield s, w
    w.stop_all()


def own_redis_stack(services, red, tmp_path, tag: str) -> tuple[Settings, Workers]:
    """Settings and workers on the session's broker (topics ``{tag}.``) and ``red``, a Redis of the test's
    own (:class:`helpers.OwnRedis`), for tests that take their Redis away."""
    broker, _ = services
    s = Settings(broker=broker.url, redis_url=red.url, topic_prefix=f"{tag}.", app_id=f"rw-{tag}", partitions=4,
                 data_dir=tmp_path, tick_seconds=0, store="memory://")
    asyncio.run(ensure_topics(s))
    return s, Workers(s, worker_env(s), tmp_path)


def wait_for(cond, timeout: float, what: str, on_fail=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.5)
    extra = on_fail() if on_fail else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{extra}")
