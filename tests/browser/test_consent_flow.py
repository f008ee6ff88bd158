"""The onboarding path in Chromium: staff create a tenant and a link, the customer's
Global Administrator accepts on devcloud's consent page, staff see the tenant consented."""

from __future__ import annotations

import pytest

from partner_portal.tenants.models import Tenant
from tests.chromium import sign_in
from tests.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def portal(live_server, settings, request):
    # The callback URL registered at devcloud must be this live server's.
    settings.PUBLIC_BASE_URL = live_server.url
    settings.MSP_NAME = "Contoso Managed Security"
    app = request.getfixturevalue("devcloud_settings")
    # As in the demo: browsers go to devcloud's plain-HTTP consent page (no CA to trust),
    # while MSAL talks to its HTTPS side.
    devcloud = request.getfixturevalue("devcloud")
    assert devcloud.http_base_url, "devcloud serves plain HTTP for browsers"
    settings.MICROSOFT_CONSENT_BASE_URL = devcloud.http_base_url
    return app


def test_staff_onboard_a_customer_through_the_consent_page(
    page, browser, live_server, portal, devcloud, start_worker, alice, artifacts_dir
):
    start_worker(concurrency=1)
    dc = devcloud.create_tenant(domain="northwind.onmicrosoft.com", display_name="Northwind")

    # Staff: add the tenant, create a link.
    sign_in(page, live_server, "alice", "correct horse battery")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tenants").click()
    page.get_by_role("link", name="Add a tenant").click()
    page.get_by_label("Display name").fill("Northwind Traders")
    page.get_by_label("Primary domain").fill("northwind.onmicrosoft.com")
    page.get_by_label("team-a").check()
    page.get_by_role("button", name="Add tenant").click()
    page.get_by_role("heading", name="Northwind Traders").wait_for()
    page.get_by_role("button", name="Create a consent link").click()
    page.get_by_role("heading", name="Send it to the customer's Global Administrator").wait_for()
    assert page.get_by_role("button", name="Copy link").is_visible()  # JS enhanced it
    page.screenshot(path=str(artifacts_dir / "consent-link.png"), full_page=True)
    url = page.locator("#link-url").input_value()
    assert url.startswith(f"{live_server.url}/consent/")
    assert url in page.locator("#link-message").input_value()

    # The customer's Global Administrator, not signed in to the portal.
    customer = browser.new_context(viewport={"width": 390, "height": 844})
    admin = customer.new_page()
    admin.set_default_timeout(15_000)
    admin.goto(url)
    assert admin.get_by_role(
        "heading", name="Contoso Managed Security asks for access"
    ).is_visible()
    assert admin.get_by_text("Incident.Read.All", exact=True).first.is_visible()
    admin.screenshot(path=str(artifacts_dir / "consent-landing.png"), full_page=True)
    admin.get_by_role("button", name="Continue to Microsoft").click()
    # The domain was resolved to its tenant ID when the link was made (M1).
    admin.wait_for_url(f"{devcloud.http_base_url}/{dc['tenant_id']}/v2.0/adminconsent?**")
    admin.select_option("#account", value=f"{dc['tenant_id']}|admin")
    admin.get_by_role("button", name="Accept").click()
    admin.get_by_role("heading", name="Thank you: consent was granted").wait_for()
    assert admin.url.startswith(f"{live_server.url}/consent/callback/")
    admin.screenshot(path=str(artifacts_dir / "consent-success.png"), full_page=True)
    customer.close()

    # The worker confirms the consent with a real token; staff see it.
    tenant = Tenant.objects.get(display_name="Northwind Traders")
    wait_until(
        lambda: Tenant.objects.get(pk=tenant.pk).consent_state == "consented",
        timeout=60,
        what="the verification task",
    )
    page.goto(f"{live_server.url}/tenants/{tenant.pk}/")
    consent_card = page.get_by_role("region", name="Consent and permissions")
    assert consent_card.get_by_text("Consented").first.is_visible()
    assert consent_card.get_by_text(dc["tenant_id"]).is_visible()
    row = consent_card.get_by_role("row", name="Incident.Read.All")
    assert row.get_by_text("granted").is_visible()
    page.screenshot(path=str(artifacts_dir / "tenant-consented.png"), full_page=True)
    page.get_by_role("link", name="Tenants").first.click()
    page.screenshot(path=str(artifacts_dir / "tenants-list.png"), full_page=True)
