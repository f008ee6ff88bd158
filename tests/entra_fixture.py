"""The MSP's own tenant in devcloud, the portal configured to sign staff in there, and a
helper that signs a devcloud user in through the portal without a browser.

Import `entra` into a conftest.py to use it (tests/accounts, tests/browser).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.urls import reverse

from devcloud.client import DevCloud

ROLE_A = "Portal.TeamA"
ROLE_B = "Portal.TeamB"


@dataclass
class Entra:
    devcloud: DevCloud
    tenant_id: str
    client_id: str

    def add_user(self, upn: str, *, roles: list[str] | None = None, **kw) -> dict:
        """A user of the MSP's tenant, with app roles of the portal's app."""
        if roles is not None:
            kw["app_roles"] = {self.client_id: roles}
        return self.devcloud.create_user(self.tenant_id, upn, **kw)

    def set_roles(self, user: dict, roles: list[str]) -> dict:
        return self.devcloud.update_user(
            self.tenant_id, user["object_id"], app_roles={self.client_id: roles}
        )

    def authorize(self, auth_uri: str, user: dict, action: str = "signin") -> str:
        """What a person does on devcloud's sign-in page; returns where it redirects."""
        session = self.devcloud.session()
        page = urlsplit(auth_uri)
        form = dict(parse_qsl(page.query)) | {"account": user["object_id"], "action": action}
        response = session.post(
            f"{self.devcloud.base_url}{page.path}", data=form, allow_redirects=False
        )
        assert response.status_code == 302, response.text[:500]
        return response.headers["Location"]


@pytest.fixture
def entra(settings, devcloud) -> Entra:
    """SIGN_IN_MODE=both against a devcloud MSP tenant; Portal.TeamA → team-a, Portal.TeamB →
    team-b. Uses settings.PUBLIC_BASE_URL as it is when the fixture is requested."""
    msp = devcloud.create_tenant(domain="msp.onmicrosoft.com", display_name="Contoso MSP")
    secret = secrets.token_urlsafe(24)
    base = settings.PUBLIC_BASE_URL
    app = devcloud.create_app(
        client_id=str(uuid.uuid4()),
        display_name="Partner Portal (tests)",
        secrets=[{"value": secret}],
        redirect_uris=[
            f"{base}/consent/callback/",
            f"{base}/login/entra/callback/",
            f"{base}/login/",
        ],
    )
    settings.MICROSOFT_LOGIN_BASE_URL = devcloud.base_url
    settings.MICROSOFT_DEFENDER_BASE_URL = devcloud.base_url
    settings.MICROSOFT_CA_BUNDLE = devcloud.ca_file
    settings.MICROSOFT_CLIENT_ID = app["client_id"]
    settings.MICROSOFT_CLIENT_SECRET = secret
    settings.SIGN_IN_MODE = "both"
    settings.ENTRA_TENANT_ID = msp["tenant_id"]
    settings.ENTRA_ROLE_GROUPS = {ROLE_A: "team-a", ROLE_B: "team-b"}
    settings.ENTRA_GROUP_GROUPS = {}
    settings.ENTRA_REQUIRE_MFA = False
    return Entra(devcloud=devcloud, tenant_id=msp["tenant_id"], client_id=app["client_id"])


def start(client, **query) -> str:
    """Press "Sign in with Microsoft": the portal's redirect to the authorize page."""
    response = client.get(reverse("entra_login"), query)
    assert response.status_code == 302, response.status_code
    return response["Location"]


def finish(client, location: str):
    """Follow Microsoft's redirect back to the portal's callback."""
    parts = urlsplit(location)
    assert parts.path == reverse("entra_callback"), location
    return client.get(parts.path, dict(parse_qsl(parts.query)))


def sign_in(client, entra: Entra, user: dict):
    return finish(client, entra.authorize(start(client), user))
