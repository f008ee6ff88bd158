"""Consent fixtures: a tenant to onboard (`customer`), its `link`, settings for the landing page."""

from __future__ import annotations

import pytest


@pytest.fixture
def customer(team_a):
    """A tenant alice sees, not consented yet (tenant_a from the cast is already consented)."""
    from tests.factories import TenantFactory

    return TenantFactory(display_name="Northwind", groups=[team_a])


@pytest.fixture
def link(customer, alice):
    from partner_portal.consent import flow

    return flow.create_link(tenant=customer, created_by=alice)


@pytest.fixture
def consent_settings(settings):
    settings.MICROSOFT_CLIENT_ID = "11111111-2222-3333-4444-555555555555"
    settings.PUBLIC_BASE_URL = "https://portal.example"
    settings.MICROSOFT_LOGIN_BASE_URL = ""
    settings.MICROSOFT_CONSENT_BASE_URL = ""
    settings.MSP_NAME = "Contoso Managed Security"
    return settings


@pytest.fixture
def customer_tenant(devcloud):
    return devcloud.create_tenant(domain="northwind.onmicrosoft.com", display_name="Northwind")
