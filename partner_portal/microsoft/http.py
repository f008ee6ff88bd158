"""The one outgoing HTTP session factory: every call to Microsoft goes through it."""

from __future__ import annotations

import threading
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests

USER_AGENT = "PartnerPortal/0.1 (+https://github.com/partner-portal)"


class TimeoutSession(requests.Session):
    """A Session whose every request has a timeout and the configured CA bundle.

    `trust_env` is off because REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment
    silently override `Session.verify` (psf/requests#3829); proxies are not used either.
    """

    def __init__(self, *, timeout: float, ca_bundle: str = "") -> None:
        super().__init__()
        self.trust_env = False
        self.verify = ca_bundle or True
        self.default_timeout = timeout
        self.headers["User-Agent"] = USER_AGENT

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.default_timeout)
        kwargs["verify"] = self.verify
        return super().request(method, url, **kwargs)


def new_session(*, timeout: float, ca_bundle: str = "") -> TimeoutSession:
    return TimeoutSession(timeout=timeout, ca_bundle=ca_bundle)


_local = threading.local()


def shared_session(*, timeout: float, ca_bundle: str = "") -> TimeoutSession:
    """This thread's session for these settings, kept for the thread's life: its pooled
    connections (one per host: Microsoft's login and API hosts serve every tenant) spare
    a TCP and TLS handshake per call. Per thread, because `requests.Session` is not
    documented as thread-safe; so a worker holds threads × hosts connections, however many
    tenants it serves. It keeps no cookies: tenants share it, and an affinity cookie from
    one tenant's answer has no business in another's request."""
    sessions: dict[tuple[float, str], TimeoutSession] = _local.__dict__.setdefault("sessions", {})
    key = (timeout, ca_bundle)
    session = sessions.get(key)
    if session is None:
        session = sessions[key] = new_session(timeout=timeout, ca_bundle=ca_bundle)
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session
