"""The strict Content-Security-Policy breaks nothing: Chromium reports no violation on any
page staff or a customer's administrator see (Info, issue 12)."""

from __future__ import annotations

import pytest

from partner_portal.consent import flow
from partner_portal.incidents.models import Incident
from tests.browser.test_dashboard import seeded  # noqa: F401 (fixture)
from tests.chromium import sign_in

pytestmark = pytest.mark.browser

# Injected by Playwright (outside the page's CSP): every violation the page reports.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


def test_no_page_violates_the_content_security_policy(
    page,
    live_server,
    seeded,  # noqa: F811
    alice,
    tenant_a,
    settings,  # noqa: F811
):
    settings.PUBLIC_BASE_URL = live_server.url
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.add_init_script(RECORD_VIOLATIONS)
    sign_in(page, live_server, "alice", "correct horse battery")
    incident = Incident.objects.filter(tenant=tenant_a).first()
    link = flow.create_link(tenant=tenant_a, created_by=alice)
    pages = [
        "/",
        "/?severity=High",
        "/incidents/summary/",
        f"/incidents/{incident.pk}/",
        "/tenants/",
        f"/tenants/{tenant_a.pk}/",
        "/consent/links/",
        f"/consent/links/{link.pk}/",
        f"/consent/{link.token}/",
    ]
    for path in pages:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__csp") == [], path
    # The list's htmx behaviour still works under the policy: a filter applies in place.
    page.goto(f"{live_server.url}/")
    page.get_by_label("High").check()
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**severity=High**")
    assert page.evaluate("window.__csp") == []
    assert not [text for text in console if "Content Security Policy" in text], console
