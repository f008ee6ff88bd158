"""The triage list in Chromium at 1280×800 and on a 375×812 phone: rows above the fold, the
card layout, the sort kept by the form, saved and built-in views, times in the user's own
time zone, keyboard-only triage, and no serious accessibility violations (axe-core)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.browser.test_dashboard import SEED, seeded  # noqa: F401 (a fixture)
from tests.incidents.dashboard_data import make_incident

PASSWORD = "correct horse battery"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
AXE = Path(__file__).resolve().parent / "axe-core-4.10.3.min.js"
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
