"""Certificates for TLS tests from a throwaway CA (trustme, a dev dependency): a server on 127.0.0.1 that
requires a client certificate signed by the same CA (mutual TLS)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

trustme = pytest.importorskip("trustme", reason="trustme (a dev dependency) makes the test CA")


def mutual_tls(d: Path, client: str) -> tuple[object, ssl.SSLContext, Path, Path]:
    """(the CA, a server context for 127.0.0.1 that requires a client certificate, the CA's PEM file, the
    PEM file of a certificate and key for ``client``), the files written in ``d``."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    ca_file, client_file = d / "ca.pem", d / f"{client}.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert(client).private_key_and_cert_chain_pem.write_to_path(str(client_file))
    return ca, server, ca_file, client_file
