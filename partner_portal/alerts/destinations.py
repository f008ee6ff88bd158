"""Where an alert may be sent: hosts on the public internet only, unless the operator allows
private networks (ALERTS_ALLOW_PRIVATE_DESTINATIONS).

A webhook URL is typed in by staff, so without this check the portal's workers would POST
wherever they are told: the cloud's metadata service (169.254.169.254), Redis or PostgreSQL
on loopback, anything on the MSP's internal network (server-side request forgery).

Webhooks are checked on the connected socket itself (`public_session`), so a name that
resolves to a public address when checked and to a private one when connecting (DNS
rebinding) is still refused. Chat URLs go through apprise, which makes its own requests:
their host is checked by resolving it just before sending.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from partner_portal.microsoft import http


class PrivateDestination(Exception):
    """The destination is not on the public internet, and private ones are not allowed."""


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id is not an address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback (Python < 3.13 says global)
    return ip.is_global and not ip.is_multicast


def check_address(address: str) -> None:
    if not settings.ALERTS_ALLOW_PRIVATE_DESTINATIONS and not is_public(address):
        raise PrivateDestination(f"{address} is not a public internet address")


def check_host(host: str, port: int | None = None) -> None:
    """Every address the host resolves to must be public. Unresolvable hosts pass here:
    sending to them fails on its own, as a transient error."""
    if settings.ALERTS_ALLOW_PRIVATE_DESTINATIONS:
        return
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return
    for info in infos:
        check_address(str(info[4][0]))


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.hostname:
        check_host(parts.hostname, parts.port)


class _PublicHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        try:
            check_address(sock.getpeername()[0])
        except PrivateDestination:
            sock.close()
            raise
        return sock


class _PublicHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        try:
            check_address(sock.getpeername()[0])
        except PrivateDestination:
            sock.close()
            raise
        return sock


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class _PublicAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PublicHTTPPool,
            "https": _PublicHTTPSPool,
        }


def public_session(*, timeout: float) -> http.TimeoutSession:
    """A session that connects only to public addresses (see the module's docstring)."""
    session = http.new_session(timeout=timeout)
    adapter = _PublicAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
