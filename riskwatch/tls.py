"""TLS contexts. Clients: connections riskwatch makes to servers that an operator's own CA may have
signed, and that may require a client certificate: Kafka brokers (:mod:`riskwatch.kafka_security`)
and webhook receivers (:class:`riskwatch.alerts.config.Receiver`). Servers: the API and the ingest
gateway over https (``RISKWATCH_HTTPS_CERTFILE``).

>>> client_context(None, None, None).verify_mode.name
'CERT_REQUIRED'
"""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path
from typing import Callable

__all__ = ["client_context", "server_context", "check_files"]


@lru_cache(maxsize=16)
def client_context(cafile: Path | None, certfile: Path | None, keyfile: Path | None,
                   check_hostname: bool = True) -> ssl.SSLContext:
    """A client context that verifies the server's certificate against ``cafile`` (None: the system's
    CAs) and, with ``certfile``, presents a client certificate (mutual TLS; ``keyfile`` when the key is
    not in it). Raises ``ssl.SSLError`` / ``OSError`` for a file that is not what it should be: config
    and settings call it when they load, so such a file is refused there, not at the first connection."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile else None)
    ctx.check_hostname = check_hostname
    if certfile is not None:
        ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    return ctx


def server_context(certfile: Path, keyfile: Path | None) -> ssl.SSLContext:
    """The context an https server (the API, the ingest gateway) would use: raises as
    :func:`client_context` does for files that cannot be used. Settings call it when they load; uvicorn
    is given the files."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    return ctx


def check_files(files: dict[str, Path | None], cert: str, key: str, build: Callable[[], object]) -> None:
    """Refuse TLS files that cannot work, with ``ValueError`` naming the setting (``files``: setting name ->
    path or None; ``cert``, ``key``: the names of the certificate and its key among them): a file that
    does not exist, a key without its certificate, or files ``build`` (the context they make) cannot use.

    >>> check_files({"ca": Path("/nonexistent/ca.pem"), "cert": None, "key": None}, "cert", "key", object)
    Traceback (most recent call last):
    ...
    ValueError: ca: no such file: /nonexistent/ca.pem
    """
    given = [name for name, f in files.items() if f is not None]
    for name in given:
        if not files[name].is_file():
            raise ValueError(f"{name}: no such file: {files[name]}")
    if files[key] is not None and files[cert] is None:
        raise ValueError(f"{key} is set without {cert}")
    try:
        build()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ValueError(f"{', '.join(given)} cannot be used: {exc}") from exc
