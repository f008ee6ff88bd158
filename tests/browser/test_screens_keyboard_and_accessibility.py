"""The pages at 1280×800 and on a 375×812 phone, in Chromium: the incident list (rows above the
fold, the card layout, the sort kept by the form, saved and built-in views, times in the
user's own time zone, paging), keyboard-only triage, the tenant pages, the branded 404 and the
favicon, and no serious accessibility violations (axe-core)."""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.test_dashboard import SEED, seeded  # noqa: F401 (a fixture)
from tests.chromium import sign_in
from tests.incidents.dashboard_data import make_incident

PASSWORD = "correct horse battery"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
AXE = Path(__file__).resolve().parent / "axe-core-4.11.0.min.js"
DOCS = Path(__file__).resolve().parent.parent.parent / "docs"


@pytest.fixture
def many(seeded, tenant_a):  # noqa: F811 (the fixture imported above)
    """The dashboard's twelve plus enough older ones to fill more than a screen."""
    for i in range(30):
        make_incident(
            tenant_a,
            name=f"Suspicious sign-in from an unfamiliar location number {i}",
            severity=["High", "Medium", "Low"][i % 3],
            status="Active",
            hours_ago=50 + i,
            microsoft_id=900000 + i,
        )
    return seeded


def open_page(browser, live_server, viewport, **context):
    ctx = browser.new_context(viewport=viewport, **context)
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, live_server, "alice", PASSWORD)
    return page


def rows(page):
    return page.locator("#incident-table tbody tr[data-incident]")


def rows_above_the_fold(page) -> int:
    return page.evaluate(
        """() => [...document.querySelectorAll('#incident-table tbody tr[data-incident]')]
            .filter((row) => row.getBoundingClientRect().bottom <= window.innerHeight).length"""
    )


def sideways_scroll(page) -> int:
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


def test_a_desktop_screen_shows_at_least_twelve_rows_above_the_fold(
    browser, live_server, many, artifacts_dir
):
    page = open_page(browser, live_server, DESKTOP)
    expect(rows(page)).to_have_count(42)
    visible = rows_above_the_fold(page)
    print(f"rows above the fold at 1280x800: {visible}")
    page.screenshot(path=str(artifacts_dir / "triage-1280.png"))
    assert visible >= 12
    # Less used filters wait behind "More filters".
    expect(page.get_by_label("Classification")).to_be_hidden()
    page.get_by_text("More filters").click()
    expect(page.get_by_label("Classification")).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "triage-1280.png"))
    if os.environ.get("UPDATE_README_SCREENSHOT") == "1":
        page.get_by_text("More filters").click()
        page.screenshot(path=str(artifacts_dir / "triage-1280.png"))
        shutil.copyfile(artifacts_dir / "triage-1280.png", DOCS / "screenshot-incidents.png")
    page.context.close()


def test_a_phone_shows_cards_with_severity_tenant_name_and_age_and_no_sideways_scroll(
    browser, live_server, many, artifacts_dir
):
    page = open_page(browser, live_server, PHONE, is_mobile=True, has_touch=True)
    expect(rows(page)).to_have_count(42)
    assert sideways_scroll(page) <= 0
    first = rows(page).first
    for cell in ("td.sev", "td.tenant", "td.name", "td.updated"):
        expect(first.locator(cell)).to_be_visible()
        box = first.locator(cell).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    expect(first).to_contain_text("High")
    expect(first).to_contain_text("Contoso")
    expect(first).to_contain_text("Ransomware activity on FIN-LT-042")
    expect(first.locator("td.updated")).to_contain_text("minutes ago")
    top = first.bounding_box()["y"]
    print(f"first incident card starts {top:.0f} px down on a phone")
    assert top < PHONE["height"]
    page.screenshot(path=str(artifacts_dir / "triage-375.png"), full_page=False)
    page.context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_a_column_header_sort_survives_a_filter_change(browser, live_server, many, viewport):
    page = open_page(browser, live_server, viewport)
    if viewport is PHONE:
        # The phone's cards hide the header row: the Sort box is the way there.
        page.get_by_label("Sort by").select_option("-severity")
    else:
        page.locator("#incident-table thead").get_by_role("link", name="Severity").click()
    expect(page).to_have_url(re.compile(r"sort=-severity"))
    expect(page.get_by_label("Sort by")).to_have_value("-severity")
    page.get_by_label("Status").select_option("open")
    expect(page).to_have_url(re.compile(r"status=open"))
    expect(page).to_have_url(re.compile(r"sort=-severity"))
    expect(rows(page).first.locator("td.sev")).to_have_text("High")
    if viewport is DESKTOP:
        # Sorting again from the header (ascending) keeps the status filter and the box.
        page.locator("#incident-table thead").get_by_role("link", name="Severity").click()
        expect(page).to_have_url(re.compile(r"sort=severity"))
        expect(page).to_have_url(re.compile(r"status=open"))
        expect(page.get_by_label("Sort by")).to_have_value("severity")
    page.context.close()


def test_a_saved_view_round_trip(browser, live_server, many, bob, team_a):
    page = open_page(browser, live_server, DESKTOP)
    page.get_by_label("High").check()
    expect(page).to_have_url(re.compile(r"severity=High"))
    page.get_by_label("Status").select_option("open")
    expect(page).to_have_url(re.compile(r"status=open"))
    expect(rows(page)).to_have_count(13)
    page.get_by_text("Save view").click()
    page.get_by_label("Name", exact=True).fill("Open and high")
    page.get_by_label("Open by default").check()
    page.get_by_role("button", name="Save", exact=True).click()
    views = page.get_by_role("navigation", name="Views")
    saved = views.get_by_role("link", name=re.compile("Open and high"))
    expect(saved).to_have_attribute("aria-current", "page")
    expect(saved).to_contain_text("13")
    shared_url = page.url
    # The default opens on a bare visit to the list.
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"severity=High"))
    expect(rows(page)).to_have_count(13)
    # "Clear" shows everything, and the saved view is one click away.
    page.get_by_role("link", name="Clear").click()
    expect(rows(page)).to_have_count(42)
    saved.click()
    expect(rows(page)).to_have_count(13)
    page.context.close()
    # Shared by its URL: Bob, who sees the same tenants, gets the same list.
    bob.groups.set([team_a])
    ctx = browser.new_context(viewport=PHONE)
    other = ctx.new_page()
    sign_in(other, live_server, "bob", PASSWORD)
    other.goto(shared_url)
    expect(rows(other)).to_have_count(13)
    ctx.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_built_in_views_show_their_counts(browser, live_server, many, viewport):
    page = open_page(browser, live_server, viewport)
    views = page.get_by_role("navigation", name="Views")
    # Open, High and unassigned: Contoso's ransomware, Woodgrove's inbox rule, and 10 of the
    # 30 older ones (every third is High).
    attention = views.get_by_role("link", name=re.compile("Needs attention"))
    expect(attention).to_contain_text("12")
    expect(views.get_by_role("link", name=re.compile("Changed in the last hour"))).to_contain_text(
        "1"
    )
    attention.click()
    expect(rows(page)).to_have_count(12)
    expect(attention).to_have_attribute("aria-current", "page")
    page.context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_times_are_shown_in_the_browsers_time_zone(browser, live_server, many, viewport):
    page = open_page(browser, live_server, viewport, timezone_id="Asia/Tokyo")
    # The first page sends the browser's zone once; the next pages show local times.
    expect(page.locator("body")).to_have_attribute("data-time-zone-known", "1")
    incident = many["Ransomware activity on FIN-LT-042"]
    page.goto(f"{live_server.url}/incidents/{incident.pk}/")
    updated = page.locator("dd time").nth(1)
    expect(updated).to_contain_text("JST")
    utc = incident.last_update_time.astimezone(UTC)
    expect(updated).to_have_attribute("title", f"{utc:%Y-%m-%d %H:%M:%S} UTC")
    page.goto(f"{live_server.url}/preferences/")
    expect(page.get_by_label("Show times in")).to_have_value("Asia/Tokyo")
    page.get_by_label("Show times in").select_option("Europe/London")
    page.get_by_role("button", name="Save").click()
    page.goto(f"{live_server.url}/incidents/{incident.pk}/")
    expect(page.locator("dd time").nth(1)).to_contain_text(re.compile(r"GMT|BST"))
    page.context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_keyboard_only_triage_tab_to_an_incident_and_open_it(browser, live_server, many, viewport):
    page = open_page(browser, live_server, viewport)
    page.get_by_label("Search").fill("ransomware")
    expect(rows(page)).to_have_count(1)
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("() => !!document.activeElement.closest('td.name')"):
            break
    else:
        pytest.fail("Tab never reached an incident")
    # The focused row is highlighted, and Enter opens it.
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Ransomware activity on FIN-LT-042")
    # Its back link returns to the search.
    page.get_by_role("link", name="← Incidents").click()
    expect(page.get_by_label("Search")).to_have_value("ransomware")
    expect(rows(page)).to_have_count(1)
    page.context.close()


def axe_violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ["violations"]});
            return r.violations.map((v) => ({id: v.id, impact: v.impact,
                nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" "))}));
        }"""
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_the_list_and_detail_pass_axe_core(browser, live_server, many, viewport):
    # bypass_csp: axe is injected by the test, not served by the portal.
    page = open_page(browser, live_server, viewport, bypass_csp=True)
    expect(rows(page)).to_have_count(42)
    page.get_by_text("More filters").click()
    violations = axe_violations(page)
    assert violations == [], json.dumps(violations, indent=1)
    incident = many["Multi-stage incident involving Initial access & Execution"]
    page.goto(f"{live_server.url}/incidents/{incident.pk}/")
    violations = axe_violations(page)
    assert violations == [], json.dumps(violations, indent=1)
    page.goto(f"{live_server.url}/tenants/")
    violations = axe_violations(page)
    assert violations == [], json.dumps(violations, indent=1)
    page.context.close()


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_a_tampered_consent_link_shows_the_branded_404(
    browser, live_server, settings, tenant_a, alice, debug, viewport
):
    from partner_portal.consent import flow

    settings.DEBUG = debug
    link = flow.create_link(tenant=tenant_a, created_by=alice)
    ctx = browser.new_context(viewport=viewport)
    page = ctx.new_page()
    for tampered in (f"{link.token[:-3]}xyz", f"{link.token[:20]}.{link.token[21:]}"):
        response = page.goto(f"{live_server.url}/consent/{tampered}/")
        assert response.status == 404
        expect(page.get_by_role("heading", level=1)).to_have_text("This page doesn’t exist")
        expect(page.locator("body")).not_to_contain_text("URLconf")
        expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
        assert sideways_scroll(page) <= 0
    # The real link still works.
    page.goto(f"{live_server.url}/consent/{link.token}/")
    expect(page.get_by_role("heading", level=1)).not_to_have_text("This page doesn’t exist")
    ctx.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_the_tenant_pages_for_triage(
    browser, live_server, many, tenant_a, team_a, viewport, monkeypatch
):
    from partner_portal.incidents import tasks
    from partner_portal.incidents.models import SyncOutcome, SyncRun
    from tests.factories import TenantFactory

    # No worker here: the run is written by the test, as a worker would write it.
    monkeypatch.setattr(tasks.sync_tenant, "delay_on_commit", lambda **kw: None)
    waiting = TenantFactory(display_name="Waiting Ltd", groups=[team_a])
    page = open_page(browser, live_server, viewport)
    # The list: open High and Medium counts per tenant, linked to those incidents.
    page.goto(f"{live_server.url}/tenants/")
    row = page.locator("tr", has=page.get_by_role("link", name="Contoso", exact=True))
    # Contoso: the ransomware and ten of the thirty older ones.
    expect(row.get_by_role("link", name=re.compile("open High incidents"))).to_have_text(
        re.compile(r"^11")
    )
    assert sideways_scroll(page) <= 0
    # A tenant that can't sync: the buttons look disabled and say why.
    page.goto(f"{live_server.url}/tenants/{waiting.pk}/")
    sync_now = page.get_by_role("button", name="Sync now")
    expect(sync_now).to_be_disabled()
    expect(sync_now).to_have_accessible_description(
        "Not until the customer's consent is confirmed."
    )
    assert sync_now.evaluate("(b) => getComputedStyle(b).cursor") == "not-allowed"
    enabled_color = page.get_by_role("link", name="Edit").evaluate(
        "(a) => getComputedStyle(a).color"
    )
    assert sync_now.evaluate("(b) => getComputedStyle(b).color") != enabled_color
    # Sync now on a consented tenant: the box polls until the run ends, then stops.
    page.goto(f"{live_server.url}/tenants/{tenant_a.pk}/")
    page.get_by_role("button", name="Sync now").click()
    box = page.locator("#sync-status")
    expect(box).to_contain_text("waiting for a worker")
    expect(box).to_have_attribute("data-polling", "1")
    # A live run holds its tenant's lease (one without is a dead worker's, closed as such).
    assert tenant_a.take_sync_lease(now=timezone.now())
    run = SyncRun.objects.create(
        tenant=tenant_a, started_at=timezone.now(), outcome=SyncOutcome.RUNNING, pages=2
    )
    expect(box).to_contain_text("page 2", timeout=10_000)
    run.outcome, run.finished_at = SyncOutcome.SUCCESS, timezone.now()
    run.save()
    expect(box).to_contain_text("Last sync", timeout=10_000)
    expect(box).not_to_have_attribute("data-polling", "1")
    # The activity log says who pressed it, in words.
    expect(page.get_by_role("region", name="Activity")).to_contain_text("alice pressed Sync now.")
    page.context.close()


def test_the_favicon_is_found(browser, live_server, db):
    ctx = browser.new_context()
    page = ctx.new_page()
    response = page.goto(f"{live_server.url}/favicon.ico")
    assert response.status == 200
    assert "svg" in response.headers["content-type"]
    ctx.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_paging_says_where_it_is_and_keeps_full_pages(
    browser, live_server, many, tenant_a, viewport
):
    for i in range(70):  # 42 + 70 = 112 rows: pages of 50, 50 and 12
        make_incident(tenant_a, name=f"Older incident {i}", hours_ago=100 + i)
    page = open_page(browser, live_server, viewport)
    count = page.locator("#result-count")
    expect(count).to_have_text("1–50 of 112 incidents")
    page.get_by_role("link", name="Last »").click()
    expect(count).to_have_text("101–112 of 112 incidents")
    expect(rows(page)).to_have_count(12)
    page.get_by_role("link", name="‹ Previous").click()
    expect(count).to_have_text("51–100 of 112 incidents")
    page.get_by_role("link", name="‹ Previous").click()
    expect(count).to_have_text("1–50 of 112 incidents")
    expect(rows(page)).to_have_count(50)
    # An incident number finds its incident.
    page.get_by_label("Search").fill("900007")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("unfamiliar location number 7")
    page.context.close()
