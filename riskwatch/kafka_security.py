"""How every riskwatch process connects to Kafka: TLS (server verified, optionally a client certificate)
and SASL (PLAIN or SCRAM), from the ``RISKWATCH_KAFKA_*`` settings. Every aiokafka client takes
:func:`client_options`, the Faust worker :func:`faust_credentials`: one place, so that no process is left
talking plaintext to a cluster that requires TLS (until 2026-12-06 none could connect to one at all).

>>> from riskwatch.settings import Settings
>>> client_options("127.0.0.1:9092")
{'bootstrap_servers': '127.0.0.1:9092'}
>>> opts = client_options(Settings(broker="kafka-1:9093", kafka_security_protocol="SASL_SSL",
...                                kafka_sasl_username="riskwatch", kafka_sasl_password="pw"))
>>> opts["security_protocol"], opts["sasl_mechanism"], opts["ssl_context"].verify_mode.name
('SASL_SSL', 'SCRAM-SHA-512', 'CERT_REQUIRED')
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from .tls import client_context

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["client_options", "faust_credentials"]


def _context(s: Settings) -> ssl.SSLContext:
    return client_context(s.kafka_ssl_cafile, s.kafka_ssl_certfile, s.kafka_ssl_keyfile, s.kafka_ssl_check_hostname)


def client_options(where: Settings | str) -> dict:
    """Keyword arguments for an aiokafka producer, consumer or admin client: ``bootstrap_servers`` and,
    from settings, the security options. A bare address (tests, benchmarks on the embedded broker)
    connects in plaintext."""
    if isinstance(where, str):
        return {"bootstrap_servers": where}
    s = where
    opts: dict = {"bootstrap_servers": s.broker}
    protocol = s.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return opts
    opts["security_protocol"] = protocol
    if protocol.endswith("SSL"):
        opts["ssl_context"] = _context(s)
    if protocol.startswith("SASL"):
        opts.update(sasl_mechanism=s.kafka_sasl_mechanism, sasl_plain_username=s.kafka_sasl_username,
                    sasl_plain_password=s.kafka_sasl_password.get_secret_value())
    return opts


def faust_credentials(s: Settings):
    """The Faust app's ``broker_credentials`` (None: plaintext). Faust hands them to the aiokafka
    clients of its consumer, producer and topic creation."""
    import faust

    protocol = s.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(_context(s))
    return faust.SASLCredentials(username=s.kafka_sasl_username, password=s.kafka_sasl_password.get_secret_value(),
                                 ssl_context=_context(s) if protocol == "SASL_SSL" else None,
                                 mechanism=s.kafka_sasl_mechanism)
