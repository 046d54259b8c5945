"""Ports for the servers that `riskwatch up` and the tests start (riskwatch.embedded.free_port)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from riskwatch.embedded import free_port

RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


@pytest.mark.skipif(not RANGE.exists(), reason="no /proc/sys/net/ipv4/ip_local_port_range (not Linux)")
def test_ports_are_below_the_ephemeral_range_bindable_and_never_handed_out_twice():
    """A port from bind(0) is in the ephemeral range, where an outgoing connection can take it before
    the server binds it: `riskwatch up` failed to start so once in a CI run (2026-12-04)."""
    low = int(RANGE.read_text().split()[0])
    spans = [free_port(span=2) for _ in range(200)]
    assert all(10_000 <= p and p + 1 < low for p in spans), (low, [p for p in spans if p + 1 >= low])
    taken = [q for p in spans for q in (p, p + 1)]
    assert len(set(taken)) == len(taken)  # no port in two spans
    for p in spans[:10]:
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", p))
            b.bind(("127.0.0.1", p + 1))
