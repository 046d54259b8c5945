"""Webhook URL safety: no requests to addresses that are not public (loopback,
link-local, private, shared, reserved, multicast) unless the config allow-lists
them (SSRF from a config change or a typo).

Checked at config load and again before each request (DNS can change).

>>> check_url("http://127.0.0.1:8080/hook", [])
'127.0.0.1 is not a public address (loopback, private, link-local, shared or reserved); allow it in allow_private to use it'
>>> check_url("http://127.0.0.1:8080/hook", ["127.0.0.1"]) is None
True
>>> check_url("http://169.254.169.254/latest", ["10.0.0.0/8"])  # a cloud's metadata service
'169.254.169.254 is not a public address (loopback, private, link-local, shared or reserved); allow it in allow_private to use it'
>>> check_url("ftp://example.org/x", [])
"scheme 'ftp' is not allowed (http, https)"

The shared address space (100.64.0.0/10, RFC 6598) is neither private nor public to
:mod:`ipaddress`, and Alibaba Cloud's metadata service is in it: until 2026-12-07 a
webhook could be pointed at it.

>>> check_url("http://100.100.100.200/latest/meta-data/ram/security-credentials/", [])[:40]
'100.100.100.200 is not a public address '
>>> check_url("http://100.100.100.200/x", ["100.64.0.0/10"]) is None
True
>>> [check_url(u, []).split(" is not")[0] for u in ("http://[::ffff:127.0.0.1]/x", "http://2130706433/x", "http://[::1]/x")]
['::ffff:7f00:1', '127.0.0.1', '::1']
>>> check_url("http://93.184.215.14/hook", []) is None
True
"""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from urllib.parse import urlsplit

__all__ = ["check_url", "unresolved"]


def _blocked(ip: ipaddress._BaseAddress) -> bool:
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_multicast
            or ip.is_unspecified or not ip.is_global)


@lru_cache(maxsize=256)
def _networks(allow: tuple[str, ...]):
    nets, hosts = [], set()
    for a in allow:
        try:
            nets.append(ipaddress.ip_network(a, strict=False))
        except ValueError:
            hosts.add(a.lower())
    return nets, hosts


def unresolved(problem: str) -> bool:
    """Whether ``problem`` (from :func:`check_url`) is a name that did not resolve: perhaps for a moment.

    >>> unresolved(check_url("http://example.invalid/x", [])), unresolved(check_url("http://10.0.0.5/x", []))
    (True, False)
    """
    return problem.startswith("host ") and " does not resolve: " in problem


def check_url(url: str, allow_private: list[str] | tuple[str, ...]) -> str | None:
    """``None`` when ``url`` may be called, else why not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme!r} is not allowed (http, https)"
    host = parts.hostname
    if not host:
        return "URL has no host"
    nets, hosts = _networks(tuple(allow_private))
    if host.lower() in hosts:
        return None
    try:
        addrs = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            return f"host {host} does not resolve: {exc}"
        addrs = {ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos}
    for ip in addrs:
        if _blocked(ip) and not any(ip in n for n in nets):
            return (f"{ip} is not a public address (loopback, private, link-local, shared or reserved); allow it in "
                    "allow_private to use it")
    return None
