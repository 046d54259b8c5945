"""``riskwatch up``: broker, Redis, worker, dispatcher, API (and a demo feed) as one process tree.

With ``--demo`` a local webhook receiver (signatures verified, notifications
in ``webhooks.jsonl``) is added as the alerts' receiver.

Children run in their own process groups and are stopped in reverse order on
Ctrl-C / SIGTERM, so nothing is left behind; one that exits once up is started
again (:mod:`riskwatch.supervise`). ``RISKWATCH_BROKER`` /
``RISKWATCH_REDIS_URL`` in the environment use existing services instead of
the embedded ones.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .api.auth import token_entry
from .embedded import Service, die_with_parent, free_port, port_range, start_broker, start_redis
from .settings import redact_url
from .supervise import Child, supervise

__all__ = ["up"]

# The embedded broker (Tansu, memory storage) spends more CPU on each fetch as a partition grows
# (README: the embedded broker), so `up` asks for fewer fetches and fewer, larger messages: the
# worker waits up to 100 ms for data (10 ms by default), the demo feed flushes its envelopes each
# second (0.2 s by default). Both add latency, which a demo can afford.
EMBEDDED_FETCH_WAIT_MS = 100
DEMO_MAX_DELAY = 1.0


def _spawn(name: str, args: list[str], env: dict, data_dir: Path, module: str = "riskwatch.cli") -> subprocess.Popen:
    log = (data_dir / f"{name}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=die_with_parent())  # noqa: PLW1509 (two system calls; see embedded.py)


_DEMO_SECRET = "demo-" + os.urandom(8).hex()


# the demo's tokens: one per role, and an inspector limited to the demo's Beijing districts (110101, 110105)
DEMO_TOKENS = {"viewer": ("viewer", None), "inspector": ("inspector", None), "ops": ("ops", None),
               "admin": ("admin", None), "ingest": ("ingest", None), "district": ("inspector", "1101")}


def _role_tokens() -> dict[str, str]:
    import secrets

    return {name: secrets.token_urlsafe(24) for name in DEMO_TOKENS}


def _write_env_file(path: Path, env: dict, tokens: dict[str, str]) -> None:
    """A file to source: the services' addresses and the demo tokens (mode 600)."""
    keys = ("RISKWATCH_BROKER", "RISKWATCH_REDIS_URL", "RISKWATCH_PARTITIONS", "RISKWATCH_API_PORT")
    lines = [f"export {k}={env[k]}" for k in keys if k in env]
    lines += [f"export RW_{r.upper()}={t}" for r, t in tokens.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def _demo_alerts_config(data_dir: Path, port: int, api_url: str) -> Path:
    """The default rules with the local demo webhook as two receivers: a team that gets every alert, and a
    city bureau that gets only those nobody acknowledged in their rule's ``escalate_after``."""
    import yaml

    from .alerts.config import DEFAULT_ALERTS_PATH

    cfg = yaml.safe_load(DEFAULT_ALERTS_PATH.read_text())
    cfg["external_url"] = api_url
    cfg["receivers"] = [{"name": "demo-webhook", "url": f"http://127.0.0.1:{port}/hook", "secrets": [_DEMO_SECRET],
                         "group_by": ["rule", "region"], "group_wait": "5s", "group_interval": "30s",
                         "repeat_interval": "4h"},
                        {"name": "demo-city-bureau", "url": f"http://127.0.0.1:{port}/hook", "secrets": [_DEMO_SECRET],
                         "match": {"escalated": ["true"]}, "group_by": ["rule", "region"], "group_wait": "5s",
                         "group_interval": "30s", "repeat_interval": "4h"}]
    path = data_dir / "alerts.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o600)  # it holds the demo secret
    return path


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def _port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as s:
        # as uvicorn binds: a port left in TIME_WAIT by the last run is free, a listener is not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _exited(children: list[Child]) -> tuple[str, int] | None:
    """(name, exit status) of a child that has stopped, other than a demo feed that finished."""
    for c in children:
        if c.proc.poll() is not None and not c.finished():
            return c.name, c.proc.returncode
    return None


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


def up(data_dir: Path, demo: bool, partitions: int, api_port: int, rate: float, entities: int) -> int:
    from .datadir import DataDirInUse, lock

    data_dir = data_dir.resolve()
    try:
        port_range()  # a malformed RISKWATCH_PORT_RANGE: refused before anything starts
    except ValueError as exc:
        print(f"riskwatch up: {exc}", file=sys.stderr)
        return 2
    try:
        held = lock(data_dir, holder="riskwatch up", advice="stop it first, or give this one another --data-dir")
    except DataDirInUse as exc:
        print(f"riskwatch up: {exc}", file=sys.stderr)
        return 2
    busy = [f"port {port} ({what})" for port, what in ((api_port, "API"), (api_port + 1, "ingest gateway"))
            if _port_in_use(port)]
    if busy:
        print(f"riskwatch up: {' and '.join(busy)} in use on 127.0.0.1: free it, or choose other ports "
              f"with --api-port N (the ingest gateway takes N+1; make run API_PORT=N)", file=sys.stderr)
        held.close()
        return 2
    services: list[Service] = []
    children: list[Child] = []  # their processes change when the supervisor starts one again

    def start(name: str, args: list[str], child_env: dict, module: str = "riskwatch.cli") -> None:
        def spawn() -> subprocess.Popen:
            return _spawn(name, args, child_env, data_dir, module=module)

        children.append(Child(name, spawn, spawn()))

    env = dict(os.environ)
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # a closed terminal or a dropped SSH session: without this, up died at once and left the broker,
    # Redis, worker, dispatcher, API and ingest gateway running (7 processes, 2026-11-28)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        if "RISKWATCH_BROKER" not in env:
            services.append(start_broker(data_dir / "broker"))
            env["RISKWATCH_BROKER"] = services[-1].url
            # the embedded broker keeps nothing across restarts: neither may the worker's store
            shutil.rmtree(data_dir / "worker", ignore_errors=True)
            # its fetches cost more as partitions grow (README: the embedded broker): fewer of them
            env.setdefault("RISKWATCH_FETCH_WAIT_MS", str(EMBEDDED_FETCH_WAIT_MS))
            # a consumer of a partition several producers write can skip a message there (README)
            env.setdefault("RISKWATCH_REPAIR_GAPS", "1")
        if "RISKWATCH_REDIS_URL" not in env:
            # supervised as the processes are: one that exits is started again on its port, empty, and the
            # workers and the alert intake write back what they hold (README: "Losing Redis")
            red = start_redis(data_dir / "redis")
            env["RISKWATCH_REDIS_URL"] = red.url
            children.append(Child("redis", lambda port=red.port: start_redis(data_dir / "redis", port=port).proc,
                                  red.proc))
        metrics_port = free_port()
        env.update(RISKWATCH_DATA_DIR=str(data_dir), RISKWATCH_PARTITIONS=str(partitions),
                   RISKWATCH_WORKER_METRICS_PORT=str(metrics_port), RISKWATCH_API_PORT=str(api_port))
        tokens = {}
        if "RISKWATCH_API_TOKENS" not in env:  # one fresh token per role, stored hashed by the API
            tokens = _role_tokens()
            env["RISKWATCH_API_TOKENS"] = ",".join(token_entry(f"demo-{n}", DEMO_TOKENS[n][0], t, DEMO_TOKENS[n][1])
                                                   for n, t in tokens.items())
        ingest_port = api_port + 1
        scheme = "https" if env.get("RISKWATCH_HTTPS_CERTFILE") else "http"  # the API's and the gateway's
        api = f"{scheme}://127.0.0.1:{api_port}"
        env["RISKWATCH_INGEST_PORT"] = str(ingest_port)
        _write_env_file(data_dir / "env", env, tokens)
        from .settings import Settings
        from .streams.kafka import PartitionMismatch, ensure_topics

        try:
            asyncio.run(ensure_topics(Settings(broker=env["RISKWATCH_BROKER"], partitions=partitions)))
        except PartitionMismatch as exc:
            print(f"riskwatch up: {exc} (here: --partitions)", file=sys.stderr)
            return 2
        if demo and "RISKWATCH_ALERTS_PATH" not in env:
            hook_port = free_port()
            env["RISKWATCH_ALERTS_PATH"] = str(_demo_alerts_config(data_dir, hook_port, api))
            hook_env = dict(env, RISKWATCH_DEMO_WEBHOOK_SECRET=_DEMO_SECRET,
                            RISKWATCH_DEMO_WEBHOOK_OUT=str(data_dir / "webhooks.jsonl"))
            start("webhook", [str(hook_port)], hook_env, module="riskwatch.alerts.demo_receiver")
        dispatcher_port = free_port()
        env["RISKWATCH_DISPATCHER_METRICS_PORT"] = str(dispatcher_port)
        for name in ("worker", "dispatcher", "api", "ingest"):
            start(name, [name], env)
        if demo:
            # at realistic rates: complaints, inspections and records at each entity every 2 hours;
            # the deteriorating 5% (onsets in the first 3 minutes) get 0.5% of the feed on top; readings
            # the rest. Until 2026-12-05 the demo fed every entity about 120 of them an hour (the batch
            # mix, 30% of 300 events/s over 2,000 entities): after 5 minutes 1,590 of 2,000 entities
            # were in tier C or D, where a regulator expects a few percent. 1% of the others close in the
            # first minutes (their devices then go quiet: no silence, and out of the draws' frame)
            start("demo", ["simulate", "--kafka", "--live", "--rate", str(rate), "--entities", str(entities),
                           "--events", str(int(rate * 86400)), "--seed", "7", "--max-delay", str(DEMO_MAX_DELAY),
                           "--quiet-per-hour", "0.5", "--closing-share", "0.01"],
                  env)
        failed = _wait_http(f"{api}/healthz", 30, children, data_dir)
        if failed:
            print(f"riskwatch up: {failed}", file=sys.stderr)
            return 1
        print(f"riskwatch is up (data and logs in {data_dir})")
        print(f"  board     {api}/board   (in a browser; sign in with a token below)")
        print(f"  API       {api}/v1/entities   (docs: /docs, health: /healthz)")
        for name, tok in tokens.items():
            role, regions = DEMO_TOKENS[name]
            print(f"  token     {name:<10} {tok}" + (f"   ({role}, limited to regions {regions})" if regions else ""))
        print(f"  ingest    {scheme}://127.0.0.1:{ingest_port}/v1/events   (POST; token role ingest or admin)")
        print(f"  shell     . {data_dir / 'env'}   "
              "(RW_VIEWER, RW_INSPECTOR, RW_OPS, RW_ADMIN, RW_INGEST, RW_DISTRICT, RISKWATCH_*)")
        print(f"  metrics   http://127.0.0.1:{metrics_port}/metrics (worker), "
              f"http://127.0.0.1:{dispatcher_port}/metrics (dispatcher), {api}/metrics (API)")
        if demo and "RISKWATCH_DEMO_WEBHOOK_SECRET" not in os.environ:
            print(f"  webhooks  {data_dir / 'webhooks.jsonl'} (signed, verified by a demo receiver)")
        print(f"  broker    {env['RISKWATCH_BROKER']}   redis {redact_url(env['RISKWATCH_REDIS_URL'])}")
        print("Ctrl-C stops everything; a process that exits is started again (see riskwatch/supervise.py).",
              flush=True)
        return supervise(children, services, lambda: stopping,
                         lambda name: _log_tail(data_dir / "redis" / "redis.log" if name == "redis"
                                                else data_dir / f"{name}.log"))
    finally:
        for c in reversed(children):
            _stop(c.proc)
        for svc in reversed(services):
            svc.stop()
        held.close()
        print("stopped.", flush=True)


def _wait_http(url: str, timeout: float, children: list[Child], data_dir: Path) -> str | None:
    """Wait for ``url`` to answer; None, or why it did not (with the log of a process that exited)."""
    deadline = time.monotonic() + timeout
    any_cert = None
    if url.startswith("https:"):  # our own child on loopback: that it answers is the check, not its
        any_cert = ssl.create_default_context()  # certificate, which may name the host's public name
        any_cert.check_hostname = False
        any_cert.verify_mode = ssl.CERT_NONE
    while time.monotonic() < deadline:
        gone = _exited(children)
        if gone:
            log = data_dir / f"{gone[0]}.log"
            return f"{gone[0]} exited with {gone[1]} while starting; the end of {log}:\n{_log_tail(log)}"
        try:
            with urllib.request.urlopen(url, timeout=1, context=any_cert):
                return None
        except OSError:
            time.sleep(0.2)
    return f"{url} did not answer within {timeout:.0f}s (logs in {data_dir})"
