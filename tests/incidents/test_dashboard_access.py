"""Who gets what from the dashboard's pages (list, summary, export, new-since count): sign-in
first, and nothing for a user who sees no tenant."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.incidents import dashboard_data

# The shared fixture (a module, not conftest.py: see dashboard_data).
contoso_and_fabrikam = dashboard_data.contoso_and_fabrikam


def read_csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_every_dashboard_page_sends_anonymous_visitors_to_sign_in(client, contoso_and_fabrikam):
    for name in ("list", "summary", "new_count", "export"):
        response = client.get(reverse(f"incidents:{name}"))
        assert response.status_code == 302, name
        assert response["Location"].startswith("/login/?next="), name


def test_a_user_without_tenants_gets_empty_summary_export_and_count(
    client, charlie, contoso_and_fabrikam
):
    client.force_login(charlie)
    summary = client.get(reverse("incidents:summary")).context["summary"]
    assert summary.open_total == 0 and summary.tenants == []
    assert len(read_csv(client.get(reverse("incidents:export")))) == 1  # the header only
    since = (timezone.now() - timedelta(days=400)).isoformat()
    count = client.get(reverse("incidents:new_count"), {"since": since})
    assert count.content.strip() == b""


def test_each_users_tenant_filter_takes_only_their_tenants_whoever_filtered_before(
    alice, bob, contoso_and_fabrikam, tenant_a, tenant_b
):
    # The filter form's class (and all but its tenant field) is built once per process;
    # each form gets its own user's tenants.
    clients = {}
    for user in (alice, bob):
        clients[user] = Client()
        clients[user].force_login(user)
    url = reverse("incidents:list")
    for _ in range(2):
        for user, own, other, count in (
            (alice, tenant_a, tenant_b, 4),
            (bob, tenant_b, tenant_a, 2),
        ):
            mine = clients[user].get(url, {"tenant": own.pk})
            assert not mine.context["filter"].form.errors
            assert mine.context["count"] == count
            theirs = clients[user].get(url, {"tenant": other.pk})
            assert "tenant" in theirs.context["filter"].form.errors
            assert theirs.context["count"] == 0
            assert list(theirs.context["page"].incidents) == []
