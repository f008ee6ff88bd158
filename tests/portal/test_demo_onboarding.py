"""Issues 4 and 5 end to end: with `manage.py demo` running, staff onboard a devcloud tenant
exactly as the README says, in Chromium, and its incidents reach the dashboard by themselves.

Everything goes over real HTTP to the demo's own processes (runserver, Celery worker and beat,
devcloud); the test reads devcloud's ground truth through its control API, never the portal's
database.
"""

from __future__ import annotations

import json
import re

import pytest

from devcloud.client import DevCloud
from tests.portal.demo_process import STARTUP_TIMEOUT, Demo, running_demo
from tests.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CONTOSO = "6f1c2a3e-1b7d-4c55-9a0e-2f4b8c9d0a11"  # devcloud's demo scenario
# The demo syncs every minute; the first sync may wait for beat's first tick.
SYNC_TIMEOUT = 120
CONSENT_TIMEOUT = 60


@pytest.fixture
def demo(tmp_path):
    with running_demo(tmp_path) as demo:
        yield demo


def devcloud_of(demo: Demo) -> DevCloud:
    """devcloud's control API, trusting the CA the demo keeps under VAR_DIR/devcloud."""
    facts = json.loads(demo.output.wait_for(r"devcloud ready (\{.*\})$", STARTUP_TIMEOUT).group(1))
    assert facts["ca_file"].startswith(demo.env["VAR_DIR"])
    return DevCloud(facts["base_url"], facts["ca_file"], timeout=10)


def dashboard_count(page, base_url: str) -> int:
    page.goto(f"{base_url}/")
    # "1–50 of 374 incidents", or "No incidents".
    text = page.locator("#result-count").inner_text()
    total = re.search(r"of ([\d,]+) incident", text)
    return int(total.group(1).replace(",", "")) if total else 0


def test_a_tenant_onboarded_in_the_demo_gets_its_incidents_on_the_dashboard(
    demo, browser, artifacts_dir
):
    username, password = demo.credentials()
    devcloud = devcloud_of(demo)
    base = demo.base_url

    staff = browser.new_context(viewport={"width": 1280, "height": 900})
    page = staff.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{base}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Incidents").wait_for()

    # README "In the demo": Tenants → Add a tenant.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tenants").click()
    page.get_by_role("link", name="Add a tenant").first.click()
    # The demo user is a superuser and the demo has no staff group: the form says why that's
    # fine, and the checkbox sits by its label (not stretched across the form).
    assert page.get_by_text("As a superuser you see every tenant").is_visible()
    assert page.get_by_label("Sync enabled").bounding_box()["width"] < 40
    page.get_by_label("Display name").fill("Contoso")
    page.get_by_role("button", name="Add tenant").click()
    page.get_by_role("heading", name="Contoso").wait_for()
    tenant_url = page.url

    # → Create a consent link → open the link (a private window: another browser context).
    page.get_by_role("button", name="Create a consent link").click()
    link = page.locator("#link-url").input_value()
    customer = browser.new_context(viewport={"width": 1280, "height": 900})
    admin = customer.new_page()
    admin.set_default_timeout(15_000)
    admin.goto(link)
    # → Continue to Microsoft → devcloud's page: Contoso's Global Administrator → Accept.
    admin.get_by_role("button", name="Continue to Microsoft").click()
    admin.get_by_text("devcloud — not Microsoft").wait_for()
    admin.select_option(
        "#account", label="admin@contoso.onmicrosoft.com — Global Administrator of Contoso"
    )
    admin.screenshot(path=str(artifacts_dir / "demo-devcloud-consent.png"), full_page=True)
    admin.get_by_role("button", name="Accept").click()
    admin.get_by_role("heading", name="Thank you: consent was granted").wait_for()
    assert admin.url.startswith(f"{base}/consent/callback/")
    customer.close()

    # Back in the portal: the link expected no tenant, so staff confirm the one that consented.
    page.goto(tenant_url)
    page.get_by_role("button", name=re.compile(r"^Confirm tenant ")).click()

    # Consented, with the permission from a real token.
    def consented() -> bool:
        page.goto(tenant_url)
        card = page.get_by_role("region", name="Consent and permissions")
        return card.get_by_text("Consented", exact=True).count() > 0

    wait_until(consented, timeout=CONSENT_TIMEOUT, interval=1, what="the tenant page: Consented")
    card = page.get_by_role("region", name="Consent and permissions")
    assert card.get_by_text(CONTOSO).is_visible()
    # The demo works incidents too: its app asks for (and gets) the wider permission.
    row = card.get_by_role("row", name="Incident.ReadWrite.All")
    assert row.get_by_text("granted").is_visible()
    page.screenshot(path=str(artifacts_dir / "demo-tenant-consented.png"), full_page=True)

    # The incidents arrive by themselves (beat → worker → devcloud), as many as devcloud has.
    # devcloud keeps evolving (new incidents every minute): compare with its ground truth read
    # just before and just after the dashboard, so that a count between two evolutions counts.
    def in_step() -> int | None:
        before = len(devcloud.incidents(CONTOSO))
        shown = dashboard_count(page, base)
        after = len(devcloud.incidents(CONTOSO))
        return shown if shown == before == after else None

    shown = wait_until(in_step, timeout=SYNC_TIMEOUT, interval=2, what="dashboard = devcloud")
    assert shown >= 240  # the demo scenario starts Contoso with 240
    assert page.get_by_role("row").nth(1).get_by_text("Contoso").first.is_visible()
    page.screenshot(path=str(artifacts_dir / "demo-dashboard.png"))

    # And it keeps flowing: what devcloud adds later arrives with a later scheduled sync.
    # (Beat's next tick: up to SYNC_INTERVAL_MINUTES=1 after the sync above.)
    devcloud.evolve(CONTOSO, changed=2, new=3)

    def caught_up() -> int | None:
        now = in_step()
        return now if now is not None and now >= shown + 3 else None

    wait_until(caught_up, timeout=SYNC_TIMEOUT, interval=2, what="devcloud's new incidents")
    staff.close()
