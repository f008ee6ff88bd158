"""Sign in with Microsoft in Chromium, through devcloud's sign-in page, and out again."""

from __future__ import annotations

import pytest

from tests.entra_fixture import ROLE_A

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def portal(live_server, settings, request):
    # Redirect URIs registered at devcloud must be this live server's.
    settings.PUBLIC_BASE_URL = live_server.url
    settings.MSP_NAME = "Contoso Managed Security"
    entra = request.getfixturevalue("entra")
    # As in the demo: browsers reach devcloud's pages over plain HTTP, MSAL over HTTPS.
    settings.MICROSOFT_CONSENT_BASE_URL = entra.devcloud.http_base_url
    return entra


def test_a_technician_signs_in_with_microsoft_and_out_again(
    page, live_server, portal, tenant_a, artifacts_dir
):
    tech = portal.add_user("ada@msp.onmicrosoft.com", display_name="Ada Lovelace", roles=[ROLE_A])
    page.goto(f"{live_server.url}/tenants/")
    page.get_by_role("link", name="Sign in with Microsoft").click()
    page.wait_for_url(
        f"{portal.devcloud.http_base_url}/{portal.tenant_id}/oauth2/v2.0/authorize?**"
    )
    page.screenshot(path=str(artifacts_dir / "entra-sign-in.png"), full_page=True)
    page.select_option("#account", value=tech["object_id"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/tenants/")
    assert page.get_by_text("ada@msp.onmicrosoft.com").is_visible()
    assert page.get_by_role("link", name="Contoso", exact=True).is_visible()  # team-a's tenant

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="You are signed out of the portal").wait_for()
    page.get_by_role("link", name="Sign out of Microsoft").click()
    page.get_by_role("heading", name="You signed out of your account").wait_for()
    page.get_by_role("link", name="Return to the application").click()
    page.wait_for_url(f"{live_server.url}/login/")


def test_a_technician_whose_role_was_removed_is_refused(page, live_server, portal):
    tech = portal.add_user("grace@msp.onmicrosoft.com", roles=[ROLE_A])
    portal.set_roles(tech, [])
    page.goto(f"{live_server.url}/login/")
    page.get_by_role("link", name="Sign in with Microsoft").click()
    page.select_option("#account", value=tech["object_id"])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="You can't sign in to the portal").wait_for()
    assert page.get_by_text("Ask your administrator").is_visible()
