"""One customer tenant's incident API, as the apps see it: a client per tenant.

A client is built from the tenant's Entra GUID and cloud and owns everything a call needs:
the app-only token (and the one retry after a 401), the call budget shared by every worker,
the HTTP session, and the one host it may call. The sync, incident actions and the access
check call its few methods (`IncidentClient`); nothing else in the apps speaks HTTP to
Microsoft.

`DefenderClient` implements them on the Microsoft 365 Defender API. Graph's
`/security/incidents` can be a second class with the same methods: the parsing in
`defender.py` already reads Graph's field names.

Reference: https://learn.microsoft.com/en-us/defender-xdr/api-incident
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import requests

from partner_portal.microsoft import budget, errors, tokens
from partner_portal.microsoft.claims import granted_roles
from partner_portal.microsoft.clouds import get_cloud
from partner_portal.microsoft.defender import (
    UPDATABLE,
    IncidentData,
    Page,
    format_time,
    parse_incident,
    parse_list,
)
from partner_portal.microsoft.http import new_session

logger = logging.getLogger(__name__)

# Application permissions on the Defender API: singular "Incident" (§0.1).
READ_ROLE = "Incident.Read.All"
READWRITE_ROLE = "Incident.ReadWrite.All"

PAGE_SIZE = 100  # the documented maximum of $top
DEFAULT_RETRY_AFTER = 60
_RETRY_IN = re.compile(r"in (\d+) seconds?", re.IGNORECASE)
_PERMISSION_WORDS = ("permission", "role", "scope", "Incident.Read", "Incident.ReadWrite")


def required_roles() -> list[str]:
    """The permission the portal needs on the Defender API, the one place it is derived:
    ReadWrite when it updates incidents (MICROSOFT_INCIDENT_UPDATES), else Read."""
    return [READWRITE_ROLE if tokens.config().incident_updates else READ_ROLE]


class IncidentClient(Protocol):
    """What the apps ask of one tenant's incident API."""

    # Requests sent so far (a retried request counts twice: Microsoft counts it too).
    api_calls: int

    def required_roles(self) -> list[str]: ...

    def incident_pages(
        self,
        *,
        since: datetime | None = None,
        start_url: str | None = None,
        start_skip: int = 0,
        first_page_number: int = 1,
    ) -> Iterator[Page]: ...

    def get_incident(self, incident_id: int) -> IncidentData | None: ...

    def update_incident(self, incident_id: int, **changes: Any) -> IncidentData | None: ...

    def check_access(self) -> list[str]: ...


class TokenSource(Protocol):
    """Where a client's tokens come from (the broker; a stand-in in parsing tests)."""

    def get(self) -> str: ...

    def renew(self) -> None:
        """Drop the token wherever it is kept: the next `get` asks Entra for a new one."""

    def check(self, token: str, *, required_roles: list[str]) -> dict[str, Any]: ...


class BrokerToken:
    """The tenant's app-only token from the MSAL broker (`tokens`), shared by all workers."""

    def __init__(self, tenant_id: str, cloud: str) -> None:
        self.tenant_id = tenant_id
        self.cloud = cloud

    def get(self) -> str:
        return tokens.get_access_token(tenant_id=self.tenant_id, cloud=self.cloud)

    def renew(self) -> None:
        # A fresh MSAL app too: the old one may replay a pre-consent 400 for 60 s (§5.5).
        tokens.forget_tenant(tenant_id=self.tenant_id, cloud=self.cloud, drop_cached_tokens=True)

    def check(self, token: str, *, required_roles: list[str]) -> dict[str, Any]:
        return tokens.check_token(
            token, tenant_id=self.tenant_id, cloud=self.cloud, required_roles=required_roles
        )


class DefenderClient:
    """The Microsoft 365 Defender incidents API of one tenant (see the module docstring).

    `token`, `base_url` and `session` are for tests; by default the token comes from the
    broker and the rest from settings and the cloud table.
    """

    def __init__(
        self,
        tenant_id: str,
        cloud: str = "commercial",
        *,
        token: TokenSource | None = None,
        base_url: str = "",
        session: requests.Session | None = None,
        budget_reserve: int = 0,
    ) -> None:
        cfg = tokens.config()
        # Calls of each budget period this client leaves to others (see budget.take).
        self.budget_reserve = budget_reserve
        self.tenant_id = tenant_id
        self.cloud = cloud
        self.app_id = cfg.client_id
        host = get_cloud(cloud, defender_base_url=cfg.defender_base_url).defender_base_url
        self.base_url = (base_url or host).rstrip("/")
        self.token: TokenSource = token or BrokerToken(tenant_id, cloud)
        self.session = session or new_session(timeout=cfg.timeout, ca_bundle=cfg.ca_bundle)
        self.api_calls = 0

    def __repr__(self) -> str:
        return f"<DefenderClient {self.tenant_id} {self.base_url}>"

    def required_roles(self) -> list[str]:
        return required_roles()

    # --- the API ----------------------------------------------------------------------------

    def incident_pages(
        self,
        *,
        since: datetime | None = None,
        start_url: str | None = None,
        start_skip: int = 0,
        first_page_number: int = 1,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[Page]:
        """Page through `GET /api/incidents` (newest first), `lastUpdateTime ge since`.

        Follows `@odata.nextLink` when present; otherwise pages with `$skip` until a page is
        shorter than `$top`. `start_url` / `start_skip` resume a listing where a previous,
        interrupted one stopped (the cursor of the last Page it yielded).

        Reference: https://learn.microsoft.com/en-us/defender-xdr/api-list-incidents
        """
        base = f"{self.base_url}/api/incidents"
        params = {"$top": str(page_size)}
        if since is not None:
            # Unquoted datetime literal, as in Microsoft's own SIEM example.
            params["$filter"] = f"lastUpdateTime ge {format_time(since)}"
        url: str | None = start_url
        skip = start_skip
        number = first_page_number
        while True:
            if url:
                body = self._call("GET", url)
            else:
                query = {**params, **({"$skip": str(skip)} if skip else {})}
                body = self._call("GET", f"{base}?{_odata_params(query)}")
            incidents, next_link = parse_list(body)
            if next_link:
                page = Page(number, incidents, 1, next_url=next_link, next_skip=None)
            elif url is None and len(incidents) >= page_size:
                page = Page(number, incidents, 1, next_url=None, next_skip=skip + len(incidents))
            else:
                page = Page(number, incidents, 1, next_url=None, next_skip=None)
            yield page
            if page.is_last:
                return
            url, skip = page.next_url, page.next_skip or 0
            number += 1

    def get_incident(self, incident_id: int) -> IncidentData | None:
        """One incident, or None when Microsoft answers 404.

        Reference: https://learn.microsoft.com/en-us/defender-xdr/api-get-incident
        """
        url = f"{self.base_url}/api/incidents/{int(incident_id)}"
        body = self._call("GET", url, allow_404=True)
        return None if body is None else parse_incident(body)

    def update_incident(self, incident_id: int, **changes: Any) -> IncidentData | None:
        """PATCH an incident; returns it as Microsoft answers (None on 404). `comment` is a
        single string that Microsoft appends as a new comment.

        Reference: https://learn.microsoft.com/en-us/defender-xdr/api-update-incidents
        """
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise ValueError(f"Not updatable: {', '.join(sorted(unknown))}")
        url = f"{self.base_url}/api/incidents/{int(incident_id)}"
        body = self._call("PATCH", url, body=changes, allow_404=True)
        if body is None:
            return None
        if not isinstance(body, dict):
            raise errors.BadResponse("The updated incident is not a JSON object")
        if "incidentId" not in body and "id" not in body:
            # The documented response example is partial (no incidentId): add the one we sent.
            body = {"incidentId": int(incident_id), **body}
        if "lastUpdateTime" not in body and "lastUpdateDateTime" not in body:
            # Keep what it has, stamped with our clock. Never use it for a watermark: the
            # next sync re-reads the incident.
            now = format_time(datetime.now(UTC))
            body = {**body, "incidentId": int(incident_id), "lastUpdateTime": now}
        return parse_incident(body)

    def check_access(self) -> list[str]:
        """The roles a brand-new token grants, once its claims prove it is this tenant's
        (`tid`, `aud`, expiry, signature) and it holds `required_roles()`.

        A new token on purpose: a cached one keeps the roles it was issued with for up to an
        hour, so a check right after the customer granted a missing role would still find
        it missing. Raises MissingPermissions (with `granted`), TokenMismatch, or what the
        token request raised.
        """
        self.token.renew()
        token = self.token.get()
        return granted_roles(self.token.check(token, required_roles=self.required_roles()))

    # --- one request --------------------------------------------------------------------------

    def _call(
        self, method: str, url: str, *, body: dict[str, Any] | None = None, allow_404: bool = False
    ) -> Any:
        """One API call → the decoded JSON body (None for an allowed 404). Raises classified
        errors; the token's own errors pass through unchanged.

        A 401 says nothing yet about consent: the token may have been revoked or expired on
        the way. So the request is sent once more with a new token (a new budget unit too:
        it is a new call); a second 401 is Forbidden. A 403 (a role missing) is never
        retried: a new token would carry the same roles.
        """
        self._check_host(url)
        try:
            return self._send(method, url, body=body, allow_404=allow_404)
        except errors.Forbidden as exc:
            if exc.status != 401:
                raise
        logger.info("Microsoft refused tenant %s's token (401): retrying with a new one", self)
        self.token.renew()
        return self._send(method, url, body=body, allow_404=allow_404)

    def _check_host(self, url: str) -> None:
        # The bearer token goes only to this client's API host: a nextLink elsewhere (a
        # hostile or broken answer) is refused before anything is sent.
        if _origin(url) != _origin(self.base_url):
            raise errors.BadResponse(f"Refused to call {urlsplit(url).hostname}: not the API host")

    def _take_budget(self) -> None:
        try:
            budget.take(tenant_id=self.tenant_id, app_id=self.app_id, reserve=self.budget_reserve)
        except errors.Throttled:
            raise
        except Exception:  # the cache (Redis) is down: Microsoft's own 429s still protect us
            logger.warning("Call budget unavailable; calling without it", exc_info=True)
        self.api_calls += 1

    def _send(self, method: str, url: str, *, body: dict[str, Any] | None, allow_404: bool) -> Any:
        # The token first: when it fails (consent revoked…) no budget unit is spent on it.
        token = self.token.get()
        self._take_budget()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        try:
            response = self.session.request(method, url, json=body, headers=headers)
            if response.status_code == 404 and allow_404:
                return None
            if response.status_code >= 400:
                raise classify(response)
            # Reading .json() after the body: a connection cut mid-body surfaces here.
            return response.json()
        except requests.Timeout as exc:
            raise errors.Transient(f"Timed out: {type(exc).__name__}") from exc
        except requests.ConnectionError as exc:
            raise errors.Transient(f"Connection failed: {type(exc).__name__}") from exc
        except requests.RequestException as exc:  # ChunkedEncodingError, ContentDecodingError…
            raise errors.Transient(f"Transfer failed: {type(exc).__name__}") from exc
        except ValueError as exc:  # truncated or malformed JSON: worth another try
            raise errors.Transient("Malformed JSON in Microsoft's answer") from exc


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _odata_params(params: dict[str, str]) -> str:
    # `requests` would encode the `$` and the spaces; Microsoft's own example keeps `$` and
    # uses `+`. Either works on the real API; keep `$` literal and encode the rest.
    return "&".join(f"{k}={quote(v, safe=':-.')}" for k, v in params.items())


# --- error answers -----------------------------------------------------------------------------


def retry_after_seconds(response: requests.Response) -> int:
    """Retry-After header (seconds), else the body's "…again in 8 seconds.", else 60."""
    header = response.headers.get("Retry-After", "").strip()
    if header.isdigit():
        return max(1, int(header))
    match = _RETRY_IN.search(response.text or "")
    if match:
        return max(1, int(match.group(1)))
    return DEFAULT_RETRY_AFTER


def _error_detail(response: requests.Response) -> tuple[str, str]:
    """(code, message) from `{"error": {"code", "message"}}`, tolerating anything else."""
    try:
        body = response.json()
    except ValueError:
        return "", (response.text or "")[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        return ("" if code is None else str(code)), ("" if message is None else str(message))[:500]
    return "", ""


def classify(response: requests.Response) -> errors.MicrosoftError:
    """The error for a non-2xx answer of the Defender API.

    Reference: https://learn.microsoft.com/en-us/defender-xdr/api-error-codes
    """
    status = response.status_code
    code, message = _error_detail(response)
    text = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if status == 429:
        return errors.Throttled(
            text, retry_after=retry_after_seconds(response), code=code, status=status
        )
    if status >= 500:
        return errors.Transient(text, code=code, status=status)
    if status in (401, 403):
        if status == 403 and any(w.lower() in message.lower() for w in _PERMISSION_WORDS):
            return errors.MissingPermissions(text, code=code, status=status)
        return errors.Forbidden(text, code=code, status=status)
    return errors.BadResponse(text, code=code, status=status)
