"""One customer tenant's incident API, as the apps see it: a client per tenant.

A client is built from the tenant's Entra GUID and cloud and owns everything a call needs:
the app-only token (and the one retry after a 401), the call budget shared by every worker,
the HTTP session, and the one host it may call. The sync, incident actions and the access
check call its few methods (`IncidentClient`); nothing else in the apps speaks HTTP to
Microsoft.

`DefenderClient` implements them on the Microsoft 365 Defender API, `GraphClient` on
Microsoft Graph's `/security/incidents`; a tenant's `source` chooses (`Tenant.incident_client`).
Both return incidents in one vocabulary, so the rows they write are the same.

References: https://learn.microsoft.com/en-us/defender-xdr/api-incident,
https://learn.microsoft.com/en-us/graph/api/resources/security-incident
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import requests

from partner_portal.microsoft import budget, errors, tokens
from partner_portal.microsoft.claims import granted_roles
from partner_portal.microsoft.defender import (
    UPDATABLE,
    CheckedItems,
    IncidentData,
    Page,
    format_time,
    parse_incident,
    parse_list_items,
    text_needs_repair,
)
from partner_portal.microsoft.graph import parse_graph_incident, parse_graph_list
from partner_portal.microsoft.http import shared_session
from partner_portal.microsoft.vocabulary import Kind, graph_value

logger = logging.getLogger(__name__)

# Application permissions on the Defender API: singular "Incident" (§0.1); on Graph (§7.2).
READ_ROLE = "Incident.Read.All"
READWRITE_ROLE = "Incident.ReadWrite.All"
GRAPH_READ_ROLE = "SecurityIncident.Read.All"
GRAPH_READWRITE_ROLE = "SecurityIncident.ReadWrite.All"
SOURCES = ("defender", "graph")

PAGE_SIZE = 100  # the documented maximum of $top
GRAPH_PAGE_SIZE = 50  # Graph answers 400 above 50 (§7.3)
DEFAULT_RETRY_AFTER = 60
_RETRY_IN = re.compile(r"in (\d+) seconds?", re.IGNORECASE)
_PERMISSION_WORDS = ("permission", "role", "scope", "Incident.Read", "Incident.ReadWrite")


def required_roles(source: str = "defender", *, updates: bool | None = None) -> list[str]:
    """The permission the portal needs on a source's API, the one place it is derived:
    ReadWrite when it updates incidents (`updates`, by default MICROSOFT_INCIDENT_UPDATES),
    else Read."""
    if updates is None:
        updates = tokens.config().incident_updates
    if source == "graph":
        return [GRAPH_READWRITE_ROLE if updates else GRAPH_READ_ROLE]
    return [READWRITE_ROLE if updates else READ_ROLE]


class IncidentClient(Protocol):
    """What the apps ask of one tenant's incident API."""

    # Requests sent so far (a retried request counts twice: Microsoft counts it too).
    api_calls: int
    # Microsoft's clock at its last answer (its Date header), None before one came.
    microsoft_time: datetime | None

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

    def add_comment(self, incident_id: int, text: str) -> None: ...

    def check_access(self) -> list[str]: ...


class TokenSource(Protocol):
    """Where a client's tokens come from (the broker; a stand-in in parsing tests)."""

    def get(self) -> str: ...

    def renew(self) -> None:
        """Drop the token wherever it is kept: the next `get` asks Entra for a new one."""

    def check(self, token: str, *, required_roles: list[str]) -> dict[str, Any]: ...


class BrokerToken:
    """The tenant's app-only token for one resource from the MSAL broker (`tokens`), shared
    by all workers."""

    def __init__(self, tenant_id: str, cloud: str, resource: str = "") -> None:
        self.tenant_id = tenant_id
        self.cloud = cloud
        self.resource = resource or tokens.resource_of(cloud, "defender")

    def get(self) -> str:
        return tokens.get_access_token(
            tenant_id=self.tenant_id, cloud=self.cloud, resource=self.resource
        )

    def renew(self) -> None:
        # A fresh MSAL app too: the old one may replay a pre-consent 400 for 60 s (§5.5).
        tokens.forget_tenant(tenant_id=self.tenant_id, cloud=self.cloud, drop_cached_tokens=True)

    def check(self, token: str, *, required_roles: list[str]) -> dict[str, Any]:
        checked = tokens.check_token(
            token,
            tenant_id=self.tenant_id,
            cloud=self.cloud,
            required_roles=required_roles,
            resource=self.resource,
        )
        # Access confirmed: every worker's MSAL app for the tenant is renewed, so that none
        # replays a "no consent" answer it cached before (§5.5).
        tokens.renew_everywhere(tenant_id=self.tenant_id, cloud=self.cloud)
        return checked


class _ApiClient:
    """What both sources share: the token, the budget, the one host, errors classified.

    `token`, `base_url` and `session` are for tests; by default the token comes from the
    broker and the rest from settings and the cloud table.
    """

    source = "defender"

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
        cfg = tokens.config(cloud)
        # Calls of each budget period this client leaves to others (see budget.take).
        self.budget_reserve = budget_reserve
        self.tenant_id = tenant_id
        self.cloud = cloud
        self.app_id = cfg.client_id
        host = tokens.api_base_url(cloud, self.source, cfg)
        self.base_url = (base_url or host).rstrip("/")
        resource = tokens.resource_of(cloud, self.source)
        self.token: TokenSource = token or BrokerToken(tenant_id, cloud, resource)
        self._session = session
        self._timeout, self._ca_bundle = cfg.timeout, cfg.ca_bundle
        self.api_calls = 0
        self.microsoft_time: datetime | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.tenant_id} {self.base_url}>"

    @property
    def session(self) -> requests.Session:
        """The calling thread's pooled session (`http.shared_session`: no TCP and TLS
        handshake per run), looked up per call: a listing may be read ahead in a thread."""
        return self._session or shared_session(timeout=self._timeout, ca_bundle=self._ca_bundle)

    def required_roles(self) -> list[str]:
        return required_roles(self.source)

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
        if _origin(url) != _origin(self.base_url) or not urlsplit(url).path.startswith(
            urlsplit(self.base_url).path
        ):
            raise errors.BadResponse(f"Refused to call {urlsplit(url).hostname}: not the API host")

    def _take_budget(self) -> None:
        try:
            budget.take(
                tenant_id=self.tenant_id,
                app_id=self.app_id,
                api=self.source,
                reserve=self.budget_reserve,
            )
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
            self.microsoft_time = _date_header(response) or self.microsoft_time
            if response.status_code == 204 or not response.content:
                return {}
            # Reading .json() after the body: a connection cut mid-body surfaces here.
            body = response.json()
            listed = isinstance(body, dict) and isinstance(body.get("value"), list)
            if listed and not text_needs_repair(response.content):
                body["value"] = CheckedItems(body["value"])  # parsed without the text walk
            return body
        except requests.Timeout as exc:
            raise errors.Transient(f"Timed out: {type(exc).__name__}") from exc
        except requests.ConnectionError as exc:
            raise errors.Transient(f"Connection failed: {type(exc).__name__}") from exc
        except requests.RequestException as exc:  # ChunkedEncodingError, ContentDecodingError…
            raise errors.Transient(f"Transfer failed: {type(exc).__name__}") from exc
        except ValueError as exc:  # truncated or malformed JSON: worth another try
            raise errors.Transient("Malformed JSON in Microsoft's answer") from exc


def _date_header(response: requests.Response) -> datetime | None:
    """When the answer was made, on Microsoft's clock (to the second), or None."""
    try:
        when = parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else None


class DefenderClient(_ApiClient):
    """The Microsoft 365 Defender incidents API of one tenant (see the module docstring)."""

    source = "defender"

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
            # Item by item: an item that cannot be parsed is one of the page's problems.
            incidents, problems, next_link = parse_list_items(body)
            received = len(incidents) + len(problems)
            next_skip = skip + received if url is None and received >= page_size else None
            page = Page(
                number,
                incidents,
                1,
                next_url=next_link,
                next_skip=None if next_link else next_skip,
                problems=problems,
            )
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

    def add_comment(self, incident_id: int, text: str) -> None:
        """Append a comment: the Defender API takes it as `comment` in a PATCH."""
        self.update_incident(incident_id, comment=text)


class GraphClient(_ApiClient):
    """Microsoft Graph's security incidents of one tenant (see the module docstring).

    Reference: https://learn.microsoft.com/en-us/graph/api/security-list-incidents
    """

    source = "graph"

    def incident_pages(
        self,
        *,
        since: datetime | None = None,
        start_url: str | None = None,
        start_skip: int = 0,
        first_page_number: int = 1,
        page_size: int = GRAPH_PAGE_SIZE,
    ) -> Iterator[Page]:
        """Page through `GET /v1.0/security/incidents?$expand=alerts`, `lastUpdateDateTime ge
        since`, following `@odata.nextLink` (only on this client's Graph host: `_call`).

        Graph documents nextLink paging; `$skip` is the fallback for an answer without one
        that is full (`start_skip` resumes it), as for the Defender API.
        """
        base = f"{self.base_url}/v1.0/security/incidents"
        params = {"$expand": "alerts", "$top": str(min(page_size, GRAPH_PAGE_SIZE))}
        if since is not None:
            params["$filter"] = f"lastUpdateDateTime ge {format_time(since)}"
        url: str | None = start_url
        skip = start_skip
        number = first_page_number
        size = int(params["$top"])
        while True:
            if url:
                body = self._call("GET", url)
            else:
                query = {**params, **({"$skip": str(skip)} if skip else {})}
                body = self._call("GET", f"{base}?{_odata_params(query)}")
            incidents, next_link = parse_graph_list(body)
            if next_link:
                page = Page(number, incidents, 1, next_url=next_link, next_skip=None)
            elif url is None and len(incidents) >= size:
                page = Page(number, incidents, 1, next_url=None, next_skip=skip + len(incidents))
            else:
                page = Page(number, incidents, 1, next_url=None, next_skip=None)
            yield page
            if page.is_last:
                return
            url, skip = page.next_url, page.next_skip or 0
            number += 1

    def _incident_url(self, incident_id: int) -> str:
        return f"{self.base_url}/v1.0/security/incidents/{int(incident_id)}"

    def get_incident(self, incident_id: int) -> IncidentData | None:
        """One incident with its alerts, or None on 404."""
        url = f"{self._incident_url(incident_id)}?$expand=alerts"
        body = self._call("GET", url, allow_404=True)
        return None if body is None else parse_graph_incident(body)

    def update_incident(self, incident_id: int, **changes: Any) -> IncidentData | None:
        """PATCH the incident with Graph's names and camelCase values; a `comment` goes
        through `POST …/comments` (Graph's PATCH has no comment). Returns the incident with
        its alerts as Microsoft has it afterwards (None on 404).

        Reference: https://learn.microsoft.com/en-us/graph/api/security-incident-update
        """
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise ValueError(f"Not updatable: {', '.join(sorted(unknown))}")
        comment = changes.pop("comment", None)
        body: dict[str, Any] = {}
        kinds = {"status": Kind.STATUS, "classification": Kind.CLASSIFICATION,
                 "determination": Kind.DETERMINATION}  # fmt: skip
        for name, value in changes.items():
            if name in kinds and isinstance(value, str):
                body[name] = graph_value(kinds[name], value)
            elif name == "tags":
                body["customTags"] = list(value or [])
            else:
                body[name] = value
        url = self._incident_url(incident_id)
        if body and self._call("PATCH", url, body=body, allow_404=True) is None:
            return None
        if comment and not self._post_comment(incident_id, str(comment)):
            return None
        # PATCH answers without the alerts: read the incident back whole.
        return self.get_incident(incident_id)

    def add_comment(self, incident_id: int, text: str) -> None:
        """`POST /security/incidents/{id}/comments`.

        Reference: https://learn.microsoft.com/en-us/graph/api/security-incident-post-comments
        """
        if not self._post_comment(incident_id, text):
            raise errors.BadResponse(f"Incident {int(incident_id)} was not found")

    def _post_comment(self, incident_id: int, text: str) -> bool:
        body = {"@odata.type": "microsoft.graph.security.alertComment", "comment": text}
        url = f"{self._incident_url(incident_id)}/comments"
        return self._call("POST", url, body=body, allow_404=True) is not None


def client_class(source: str) -> type[DefenderClient] | type[GraphClient]:
    """The client of an incident source ("defender" or "graph")."""
    return GraphClient if source == "graph" else DefenderClient


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
