"""The one outgoing HTTP session factory: every call to Microsoft goes through it."""

from __future__ import annotations

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
