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


def test_ports_stay_in_riskwatch_port_range_and_a_malformed_one_is_refused(monkeypatch, tmp_path, capsys):
    """Each `make test` process picks in a slice of its own (tests/conftest.py); ops may give `riskwatch up`
    a firewall's range."""
    from riskwatch.up import up

    monkeypatch.setenv("RISKWATCH_PORT_RANGE", "23000-23099")
    spans = [free_port(span=2) for _ in range(10)]
    assert all(23000 <= p and p + 1 <= 23099 for p in spans), spans
    assert len({q for p in spans for q in (p, p + 1)}) == 20  # each port once
    for bad in ("23000", "23000-23000", "80-8080", "x-y", "30000-70000"):
        monkeypatch.setenv("RISKWATCH_PORT_RANGE", bad)
        with pytest.raises(ValueError, match="RISKWATCH_PORT_RANGE"):
            free_port()
        assert up(tmp_path, demo=False, partitions=1, api_port=8000, rate=1.0, entities=1) == 2
        assert "RISKWATCH_PORT_RANGE" in capsys.readouterr().err
