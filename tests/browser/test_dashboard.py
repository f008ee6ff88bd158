"""The dashboard in Chromium: filter, search, open an incident, the "new since" indicator,
the back button, a phone-sized screen. Saves screenshots to tests/artifacts/ and the list's
to docs/screenshot-incidents.png (the README's picture) with UPDATE_README_SCREENSHOT=1."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.chromium import sign_in
from tests.factories import AlertFactory, ConsentedTenantFactory
from tests.incidents.dashboard_data import make_incident

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
PASSWORD = "correct horse battery"

# (tenant, incident name, severity, status, assigned to, hours since last update, alerts)
SEED = [
    (
        "Contoso",
        "Ransomware activity on FIN-LT-042",
        "High",
        "Active",
        "",
        0.3,
        ["Ransomware behavior detected in the file system", "File backups were deleted"],
    ),
    (
        "Northwind Traders",
        "Multi-stage incident involving Initial access & Execution",
        "High",
        "InProgress",
        "megan.bowen@msp.example",
        1.2,
        ["Suspicious PowerShell command line", "Malicious macro in Office document"],
    ),
    (
        "Woodgrove Bank",
        "Business email compromise: suspicious inbox rule",
        "High",
        "Active",
        "",
        2.5,
        ["Suspicious inbox forwarding rule", "Unfamiliar sign-in properties"],
    ),
    (
        "Tailspin Toys",
        "Phishing email delivered and clicked",
        "Medium",
        "Active",
        "alex.wilber@msp.example",
        3,
        ["User accessed a link in a phishing email"],
    ),
    (
        "Contoso",
        "Impossible travel activity for adele.vance",
        "Medium",
        "InProgress",
        "megan.bowen@msp.example",
        5,
        ["Impossible travel activity"],
    ),
    (
        "Adventure Works",
        "Password spray attack against Entra ID",
        "Medium",
        "Active",
        "",
        7,
        ["Password spray", "Anonymous IP address sign-in"],
    ),
    (
        "Northwind Traders",
        "Credential theft via LSASS memory access",
        "High",
        "Resolved",
        "alex.wilber@msp.example",
        9,
        ["Possible credential dumping"],
    ),
    (
        "Woodgrove Bank",
        "Mass download by a single user",
        "Low",
        "Active",
        "",
        12,
        ["Mass download"],
    ),
    (
        "Tailspin Toys",
        "Suspicious OAuth app consent",
        "Medium",
        "Resolved",
        "megan.bowen@msp.example",
        20,
        ["Suspicious OAuth app"],
    ),
    (
        "Contoso",
        "Malware detected in a SharePoint file",
        "Low",
        "Resolved",
        "",
        26,
        ["Malware found in a SharePoint file"],
    ),
    (
        "Adventure Works",
        "Emerging threat activity group detected",
        "Informational",
        "Active",
        "",
        30,
        ["Activity group observed"],
    ),
    (
        "Northwind Traders",
        "Suspicious LDAP query from WS-0193",
        "Low",
        "InProgress",
        "alex.wilber@msp.example",
        40,
        ["Suspicious LDAP query"],
    ),
]

VERDICTS = {
    "Credential theft via LSASS memory access": ("TruePositive", "MultiStagedAttack"),
    "Suspicious OAuth app consent": ("FalsePositive", "Clean"),
    "Malware detected in a SharePoint file": ("TruePositive", "Malware"),
    "Impossible travel activity for adele.vance": ("Unknown", "NotAvailable"),
    "Suspicious LDAP query from WS-0193": ("InformationalExpectedActivity", "SecurityTesting"),
}


@pytest.fixture
def seeded(alice, team_a, tenant_a, tenant_b):
    tenants = {"Contoso": tenant_a}
    for name in ("Northwind Traders", "Woodgrove Bank", "Tailspin Toys", "Adventure Works"):
        tenants[name] = ConsentedTenantFactory(display_name=name, groups=[team_a])
    made = {}
    for tenant, name, severity, status, assignee, hours, alerts in SEED:
        classification, determination = VERDICTS.get(name, ("", ""))
        incident = make_incident(
            tenants[tenant],
            name=name,
            severity=severity,
            status=status,
            assigned_to=assignee,
            hours_ago=hours,
            classification=classification,
            determination=determination,
            alert_count=len(alerts),
            search_text=" ".join([name, *alerts]).lower(),
            portal_url="https://security.microsoft.com/incidents/1",
        )
        for title in alerts:
            AlertFactory(
                incident=incident,
                title=title,
                severity=severity,
                category="InitialAccess",
                status="Resolved" if status == "Resolved" else "New",
                first_activity=incident.created_time,
                last_activity=incident.last_update_time,
                detection_source="WindowsDefenderAv",
                service_source="MicrosoftDefenderATP",
                mitre_techniques=["T1566.001"],
                devices=[{"deviceDnsName": "fin-lt-042.contoso.local", "osPlatform": "Windows11"}],
                entities=[{"entityType": "User", "userPrincipalName": "adele.vance@contoso.com"}],
            )
        made[name] = incident
    make_incident(tenant_b, name="Fabrikam ransomware outbreak", severity="High", hours_ago=0.1)
    return made


def table_rows(page):
    return page.locator("#incident-table tbody tr[data-incident]")


def test_staff_filter_search_and_open_an_incident(page, live_server, seeded, artifacts_dir):
    sign_in(page, live_server, "alice", PASSWORD)
    expect(table_rows(page)).to_have_count(12)
    expect(page.locator("#incident-table")).not_to_contain_text("Fabrikam")
    expect(page.locator("#result-count")).to_have_text("1–12 of 12 incidents")
    page.screenshot(path=str(artifacts_dir / "incidents-list.png"), full_page=True)
    if os.environ.get("UPDATE_README_SCREENSHOT") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(artifacts_dir / "incidents-list.png", DOCS / "screenshot-incidents.png")

    page.get_by_label("High").check()
    expect(page).to_have_url(re.compile(r"severity=High"))
    expect(table_rows(page)).to_have_count(4)
    page.get_by_label("Tenant").select_option(label="Northwind Traders")
    expect(table_rows(page)).to_have_count(2)
    page.get_by_label("Search").fill("lsass")
    expect(table_rows(page)).to_have_count(1)
    expect(page).to_have_url(re.compile(r"q=lsass"))
    expect(table_rows(page).first).to_contain_text("Credential theft via LSASS memory access")

    # The back button returns to the previous filters.
    page.go_back()
    expect(table_rows(page)).to_have_count(2)

    page.get_by_label("Search").fill("")
    page.get_by_label("High").uncheck()
    page.get_by_label("Tenant").select_option("")
    expect(table_rows(page)).to_have_count(12)
    page.get_by_role(
        "link", name="Multi-stage incident involving Initial access & Execution"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Multi-stage incident involving Initial access & Execution"
    )
    alerts = page.get_by_role("region", name=re.compile("Alerts"))
    expect(alerts).to_contain_text("Suspicious PowerShell command line")
    expect(alerts).to_contain_text("Malicious macro in Office document")
    expect(page.get_by_text("fin-lt-042.contoso.local")).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "incident-detail.png"), full_page=True)


BUTTONS_ROW = """(() => {
  const box = (el) => el.getBoundingClientRect();
  const form = document.querySelector("form.filters");
  const apply = box(form.querySelector("button[type=submit]"));
  const clear = box(form.querySelector(".actions a"));
  // The bar of the most used filters; Apply and Clear sit under it, beside "More filters".
  const lowest = box(form.querySelector(".bar")).bottom;
  return {
    sameRow: Math.abs(apply.top - clear.top) < 2 && clear.left > apply.right,
    belowFields: apply.top >= lowest,
    inside: clear.right <= box(form).right,
  };
})()"""


@pytest.mark.parametrize("width", [1280, 375])
def test_apply_and_clear_sit_side_by_side_under_the_filter_bar(page, live_server, seeded, width):
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, live_server, "alice", PASSWORD)
    expect(table_rows(page)).to_have_count(12)
    assert page.evaluate(BUTTONS_ROW) == {"sameRow": True, "belowFields": True, "inside": True}


def test_the_new_since_indicator_appears_after_a_sync_writes_incidents(
    page, live_server, seeded, tenant_a, settings
):
    settings.DASHBOARD_POLL_SECONDS = 1
    sign_in(page, live_server, "alice", PASSWORD)
    expect(table_rows(page)).to_have_count(12)
    indicator = page.locator("#new-since")
    expect(indicator).to_be_empty()
    # What a sync does: upsert incidents whose lastUpdateTime is newer than the page.
    make_incident(tenant_a, name="Fresh ransomware alert on HR-07", severity="High", hours_ago=0)
    updated = seeded["Suspicious OAuth app consent"]
    updated.last_update_time = timezone.now()
    updated.status = "Active"
    updated.save()
    expect(indicator).to_contain_text(
        "2 new or updated since you opened this page — show", timeout=10_000
    )
    indicator.get_by_role("link").click()
    expect(table_rows(page).first).to_contain_text("Suspicious OAuth app consent")
    expect(page.locator("#incident-table")).to_contain_text("Fresh ransomware alert on HR-07")
    expect(indicator).to_be_empty()


def test_the_list_fits_a_phone_and_works_with_the_keyboard(
    page, live_server, seeded, artifacts_dir
):
    page.set_viewport_size({"width": 375, "height": 800})
    sign_in(page, live_server, "alice", PASSWORD)
    expect(table_rows(page)).to_have_count(12)
    # Nothing scrolls sideways: on a phone each incident is a card.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.evaluate(
        "(() => { const w = document.querySelector('.table-wrap');"
        " return w.scrollWidth <= w.clientWidth; })()"
    )
    page.screenshot(path=str(artifacts_dir / "incidents-list-375px.png"), full_page=True)

    # Keyboard only: from the search box, Tab through the tenant list to the "Low" box.
    page.get_by_label("Search").focus()
    for _ in range(4):
        page.keyboard.press("Tab")
    expect(page.get_by_label("Low")).to_be_focused()
    page.keyboard.press("Space")
    expect(table_rows(page)).to_have_count(3)
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # :focus-visible after keyboard use


def test_the_summary_draws_the_chart_and_its_numbers_apply_filters(
    page, live_server, seeded, artifacts_dir
):
    sign_in(page, live_server, "alice", PASSWORD)
    page.get_by_role("link", name="Summary and chart").click()
    numbers = page.locator("#open-by-severity")
    # Open (not resolved) among the seed: 3 High, 3 Medium, 2 Low, 1 Informational.
    expect(numbers.locator('[data-severity="High"] .n')).to_have_text("3")
    expect(numbers.locator('[data-severity="Medium"] .n')).to_have_text("3")
    expect(page.locator("#per-tenant")).not_to_contain_text("Fabrikam")
    # Chart.js (vendored) drew on the canvas. Both scripts are synchronous at the end of the
    # body, so the chart exists once the DOM is loaded. (Not wait_for_function: its polling
    # runs the expression through eval, which the page's CSP rightly refuses.)
    page.wait_for_load_state("domcontentloaded")
    assert page.evaluate("Chart.getChart(document.getElementById('created-per-day')) !== undefined")
    page.screenshot(path=str(artifacts_dir / "incidents-summary.png"), full_page=True)
    # Clicking the High part of the latest day's bar lists that day's High incidents.
    point = page.evaluate(
        """(() => {
          const chart = Chart.getChart(document.getElementById("created-per-day"));
          const high = chart.data.datasets.findIndex((d) => d.label === "High");
          const data = chart.data.datasets[high].data;
          const day = data.length - 1 - [...data].reverse().findIndex((n) => n > 0);
          const bar = chart.getDatasetMeta(high).data[day];
          return {x: bar.x, y: (bar.y + bar.base) / 2, n: data[day], label: chart.data.labels[day]};
        })()"""
    )
    canvas = page.locator("#created-per-day")
    canvas.click(position={"x": point["x"], "y": point["y"]})
    expect(page).to_have_url(
        re.compile(rf"created_from={point['label']}&created_to={point['label']}&severity=High")
    )
    expect(table_rows(page)).to_have_count(point["n"])
    expect(page.get_by_label("Created from")).to_have_value(point["label"])
    page.go_back()
    numbers.locator('[data-severity="High"]').click()
    expect(page).to_have_url(re.compile(r"status=open&severity=High"))
    expect(table_rows(page)).to_have_count(3)
    expect(page.get_by_label("Status")).to_have_value("open")
    expect(page.get_by_label("High")).to_be_checked()
