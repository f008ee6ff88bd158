"""What the demo says to devcloud, the Microsoft emulator: its start-up line and its control API,
over plain HTTP. The portal imports nothing from devcloud (a foreign system: shared code would
hide protocol mistakes), so the few calls it needs are written here.

devcloud's control API is described in devcloud/README.md ("Control API").
"""

from __future__ import annotations

import json
from typing import Any

import requests

# devcloud's last start-up line: `devcloud ready {"base_url": …, "ca_file": …, …}`.
READY_PREFIX = "devcloud ready "
TIMEOUT = 30
MSP_DOMAIN = "msp-demo.onmicrosoft.com"


class ControlError(Exception):
    """devcloud refused a control-API call (its status and message), or could not be reached."""


def ready_facts(line: str) -> dict[str, str] | None:
    """The facts devcloud prints when it serves (base_url, ca_file, http_base_url…), or None."""
    if not line.startswith(READY_PREFIX):
        return None
    try:  # a garbled line must not kill the thread that drains the pipe
        facts = json.loads(line[len(READY_PREFIX) :])
    except ValueError:
        return None
    return facts if isinstance(facts, dict) and "base_url" in facts else None


def register_app(
    *,
    base_url: str,
    ca_file: str,
    client_id: str,
    secret: str,
    display_name: str,
    redirect_uris: list[str],
    required_permissions: list[str],
    consented_tenants: list[str],
    msp_tenant: str | None = None,
) -> None:
    """Register the demo's app in devcloud and grant it again the consents in
    `consented_tenants` (Entra tenant IDs) that devcloud knows.

    devcloud keeps consents in memory only, Microsoft keeps them: without this, the tenants
    onboarded before a restart would fail once their cached tokens expire. `msp_tenant` is
    the MSP's own tenant, made with one technician, for staff sign-in with Microsoft.
    """
    with requests.Session() as http:
        http.trust_env = False  # no proxy for loopback, and REQUESTS_CA_BUNDLE must not win
        http.verify = ca_file

        def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
            try:
                response = http.request(
                    method, f"{base_url}/_devcloud{path}", json=body, timeout=TIMEOUT
                )
            except requests.RequestException as exc:
                raise ControlError(f"devcloud did not answer {method} {path}: {exc}") from exc
            if response.status_code >= 400:
                try:
                    message = response.json().get("error", response.text)
                except ValueError:
                    message = response.text
                raise ControlError(f"{method} {path}: {response.status_code} {message}")
            return response.json()

        call(
            "POST",
            "/apps",
            {
                "client_id": client_id,
                "display_name": display_name,
                "secrets": [{"value": secret}],
                "redirect_uris": redirect_uris,
                "required_permissions": required_permissions,
            },
        )
        known = {tenant["tenant_id"] for tenant in call("GET", "/tenants")}
        for tenant_id in consented_tenants:
            if tenant_id in known:
                call("PUT", f"/tenants/{tenant_id}/apps/{client_id}", {"state": "consented"})
        if msp_tenant and msp_tenant not in known:
            call("POST", "/tenants", {"tenant_id": msp_tenant, "domain": MSP_DOMAIN})
            call(
                "POST",
                f"/tenants/{msp_tenant}/users",
                {
                    "user_principal_name": f"technician@{MSP_DOMAIN}",
                    "app_roles": {client_id: ["Portal.Technician"]},
                },
            )
