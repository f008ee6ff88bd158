"""Fixtures for devcloud's own tests: a tenant and a registered app, consented or not."""

from __future__ import annotations

import secrets

import pytest

from tests.devcloud.registration import REDIRECT_URI, Setup


@pytest.fixture
def setup(devcloud) -> Setup:
    tenant = devcloud.create_tenant(domain="contoso.onmicrosoft.com", display_name="Contoso")
    secret = secrets.token_urlsafe(16)
    app = devcloud.create_app(
        display_name="Partner Portal",
        secrets=[{"value": secret}],
        redirect_uris=[REDIRECT_URI],
        required_permissions=["Incident.Read.All"],
    )
    return Setup(tenant["tenant_id"], tenant["domain"], app["client_id"], secret, devcloud.base_url)


@pytest.fixture
def consented(devcloud, setup) -> Setup:
    devcloud.set_consent(setup.tenant_id, setup.client_id, state="consented")
    return setup
