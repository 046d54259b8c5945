"""Webhook URL safety: no requests to loopback, link-local or private networks
unless the config allow-lists them (SSRF from a config change or a typo).

Checked at config load and again before each request (DNS can change).

>>> check_url("http://127.0.0.1:8080/hook", [])
'127.0.0.1 is a loopback/private/link-local address; allow it in allow_private to use it'
>>> check_url("http://127.0.0.1:8080/hook", ["127.0.0.1"]) is None
True
>>> check_url("http://169.254.169.254/latest", ["10.0.0.0/8"])
'169.254.169.254 is a loopback/private/link-local address; allow it in allow_private to use it'
>>> check_url("ftp://example.org/x", [])
"scheme 'ftp' is not allowed (http, https)"
"""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from urllib.parse import urlsplit

__all__ = ["check_url"]


def _blocked(ip: ipaddress._BaseAddress) -> bool:
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_multicast
            or ip.is_unspecified)


@lru_cache(maxsize=256)
def _networks(allow: tuple[str, ...]):
    nets, hosts = [], set()
    for a in allow:
        try:
            nets.append(ipaddress.ip_network(a, strict=False))
        except ValueError:
            hosts.add(a.lower())
    return nets, hosts


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
            return f"{ip} is a loopback/private/link-local address; allow it in allow_private to use it"
    return None
