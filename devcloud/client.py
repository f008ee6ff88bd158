"""A small Python client for devcloud's control API, for tests, the demo and benchmarks.

dc = DevCloud("https://127.0.0.1:8443", "var/devcloud/ca.pem")
tenant = dc.create_tenant(domain="contoso.onmicrosoft.com")
"""

from __future__ import annotations

import time
from typing import Any

import requests


class DevCloudError(Exception):
    """The control API refused a request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class DevCloud:
    def __init__(
        self,
        base_url: str,
        ca_file: str,
        *,
        timeout: float = 30,
        http_base_url: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ca_file = str(ca_file)
        # The plain-HTTP twin when devcloud runs with --http-port (consent page in browsers).
        self.http_base_url = http_base_url.rstrip("/") if http_base_url else None
        self.timeout = timeout
        self._http = self.session()

    def session(self) -> requests.Session:
        """A requests Session that trusts devcloud's CA (also what to give MSAL as
        `http_client`). trust_env is off: REQUESTS_CA_BUNDLE would override `verify`."""
        s = requests.Session()
        s.trust_env = False
        s.verify = self.ca_file
        return s

    def _call(
        self, method: str, path: str, body: dict | None = None, *, data: bytes | None = None, **kw
    ) -> Any:
        resp = self._http.request(
            method,
            f"{self.base_url}/_devcloud{path}",
            json=body,
            data=data,
            headers={"Content-Type": "application/json"} if data is not None else None,
            params={k: v for k, v in kw.items() if v is not None} or None,
            timeout=self.timeout,
        )
        if resp.status_code >= 400:
            try:
                message = resp.json().get("error", resp.text)
            except ValueError:
                message = resp.text
            raise DevCloudError(resp.status_code, message)
        return resp.json()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", "/health")
                return
            except (requests.ConnectionError, requests.Timeout, DevCloudError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    # --- lifecycle -----------------------------------------------------------------------
    def reset(self, scenario: str | None = None) -> dict:
        return self._call("POST", "/reset", {"scenario": scenario} if scenario else None)

    # --- tenants and apps --------------------------------------------------------------
    def create_tenant(self, **kw) -> dict:
        return self._call("POST", "/tenants", kw)

    def update_tenant(self, tid: str, **kw) -> dict:
        """Change display_name, no_sp_error or blocked (AADSTS5000225) of a tenant."""
        return self._call("PATCH", f"/tenants/{tid}", kw)

    def tenants(self) -> list[dict]:
        return self._call("GET", "/tenants")

    def create_app(self, **kw) -> dict:
        return self._call("POST", "/apps", kw)

    def app(self, client_id: str) -> dict:
        return self._call("GET", f"/apps/{client_id}")

    def expire_secrets(self, client_id: str) -> dict:
        return self._call("POST", f"/apps/{client_id}/secrets/expire")

    # --- consent -----------------------------------------------------------------------
    def set_consent(
        self, tid: str, client_id: str, *, state: str = "consented", roles: list | None = None
    ) -> dict:
        body: dict = {"state": state}
        if roles is not None:
            body["roles"] = roles
        return self._call("PUT", f"/tenants/{tid}/apps/{client_id}", body)

    def revoke_consent(self, tid: str, client_id: str) -> dict:
        return self._call("DELETE", f"/tenants/{tid}/apps/{client_id}")

    def consent(self, tid: str, client_id: str) -> dict:
        return self._call("GET", f"/tenants/{tid}/apps/{client_id}")

    # --- users (staff sign-in) ----------------------------------------------------------
    def create_user(self, tid: str, user_principal_name: str, **kw) -> dict:
        """A user in tenant `tid`'s directory: `display_name`, `email`, `groups` (object IDs),
        `app_roles` ({client_id: [role values]}), `mfa` (default true), `object_id`, and
        `home_tenant_id` for a guest."""
        return self._call(
            "POST", f"/tenants/{tid}/users", {"user_principal_name": user_principal_name, **kw}
        )

    def update_user(self, tid: str, object_id: str, **kw) -> dict:
        return self._call("PATCH", f"/tenants/{tid}/users/{object_id}", kw)

    def users(self, tid: str) -> list[dict]:
        return self._call("GET", f"/tenants/{tid}/users")

    def expire_codes(self) -> dict:
        """Make every authorization code issued so far expired (AADSTS70008 when redeemed)."""
        return self._call("POST", "/codes/expire")

    # --- incidents ---------------------------------------------------------------------
    def generate_incidents(
        self, tid: str, count: int, seed: int | None = None, alerts_per_incident: int | None = None
    ) -> dict:
        body: dict = {"count": count}
        if seed is not None:
            body["seed"] = seed
        if alerts_per_incident is not None:
            body["alerts_per_incident"] = alerts_per_incident
        return self._call("POST", f"/tenants/{tid}/incidents/generate", body)

    def evolve(
        self,
        tid: str,
        changed: int = 5,
        new: int = 1,
        seed: int | None = None,
        late_seconds: float = 0,
    ) -> dict:
        """Change `changed` incidents and add `new` ones; `late_seconds`: indexed that late
        (listed from now on, stamped that long ago)."""
        body: dict = {"changed": changed, "new": new}
        if seed is not None:
            body["seed"] = seed
        if late_seconds:
            body["late_seconds"] = late_seconds
        return self._call("POST", f"/tenants/{tid}/incidents/evolve", body)

    def merge_incident(self, tid: str, incident_id: int, into: int) -> dict:
        """Merge an incident into another, as Microsoft does: it becomes `Redirected` with
        `redirectIncidentId`, its alerts move over, and a PATCH of it answers 404.
        Returns `{incident, into}` as the API now serves them."""
        return self._call("POST", f"/tenants/{tid}/incidents/{incident_id}/merge", {"into": into})

    def incidents(self, tid: str) -> list[dict]:
        return self._call("GET", f"/tenants/{tid}/incidents")

    def put_raw_incident(
        self, tid: str, payload: str | bytes, *, updated: str | None = None
    ) -> dict:
        """Store one incident exactly as `payload` (the JSON text of an object) says; the APIs
        serve these bytes verbatim. Write hostile text as JSON escapes (`\\u0000`, `\\ud83d`):
        a Python str with a lone surrogate has no UTF-8 form. `updated` (ISO 8601) is the
        time used for ordering and `$filter`, when the payload's own `lastUpdateTime` is not
        the one to use. Returns `{tenant_id, key, bytes}`; `key` names the incident in
        `GET /api/incidents/{key}`."""
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        return self._call("POST", f"/tenants/{tid}/incidents/raw", data=data, updated=updated)

    # --- request log, faults, limits ---------------------------------------------------
    def requests_log(self, tenant: str | None = None, *, entries: bool = True) -> dict:
        """Counts (exact) and entries (the last 100 000) of the requests devcloud served."""
        return self._call("GET", "/requests", tenant=tenant, entries=None if entries else "false")

    def clear_requests(self) -> dict:
        return self._call("DELETE", "/requests")

    def add_fault(self, **kw) -> str:
        return self._call("POST", "/faults", kw)["fault_id"]

    def faults(self) -> list[dict]:
        return self._call("GET", "/faults")

    def clear_faults(self) -> dict:
        return self._call("DELETE", "/faults")

    def set_limits(self, **kw) -> dict:
        return self._call("PUT", "/limits", kw)

    def limits(self) -> dict:
        return self._call("GET", "/limits")
