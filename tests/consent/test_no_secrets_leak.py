"""The client secret and access tokens never reach logs, pages or the database.

A whole onboarding and a sync run against devcloud with every logger at DEBUG; then the
logs, the staff pages and a dump of every table are searched for the secret and the token.
"""

from __future__ import annotations

import io
import logging

import pytest
from django.core.management import call_command

from partner_portal.consent import flow
from partner_portal.incidents.sync import sync_tenant
from partner_portal.microsoft import tokens
from partner_portal.tenants.models import Tenant
from tests.consent.round_trip import consent

pytestmark = pytest.mark.integration


@pytest.fixture
def link(portal, customer, alice, customer_tenant):
    return flow.create_link(
        tenant=customer, created_by=alice, expected_tenant="northwind.onmicrosoft.com"
    )


def test_no_secret_or_token_in_logs_pages_or_database(
    client, http, portal, link, customer_tenant, settings, devcloud, caplog, admin_client
):
    # Our loggers at DEBUG; msal and urllib3 at the levels settings.LOGGING gives them.
    caplog.set_level(logging.DEBUG)
    tid = customer_tenant["tenant_id"]
    devcloud.generate_incidents(tid, 30, seed=7)
    page = consent(client, http, link, tid=tid, public_base_url=settings.PUBLIC_BASE_URL)
    assert page.status_code == 200
    tenant = Tenant.objects.get(pk=link.tenant_id)
    flow.verify_access(tenant=tenant)
    tenant.refresh_from_db()
    assert tenant.consent_state == Tenant.ConsentState.CONSENTED
    run = sync_tenant(tenant=tenant)
    assert run.outcome == "success" and run.created_count == 30

    secret = settings.MICROSOFT_CLIENT_SECRET
    token = tokens.get_access_token(tenant_id=tid)
    assert secret and token.count(".") == 2
    # The token's signature is what makes it usable: it must appear nowhere.
    signature = token.rsplit(".", 1)[1]

    pages = [
        admin_client.get(url).content.decode()
        for url in (
            f"/tenants/{tenant.pk}/",
            f"/consent/links/{link.pk}/",
            "/",
            f"/admin/tenants/tenant/{tenant.pk}/change/",
            f"/admin/consent/consentlink/{link.pk}/change/",
            "/admin/audit/auditevent/",
        )
    ]
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    for where, text in [
        ("logs", caplog.text),
        ("database", dump.getvalue()),
        *(("page", p) for p in pages),
    ]:
        assert secret not in text, f"the client secret is in the {where}"
        assert signature not in text, f"an access token is in the {where}"
    assert caplog.records, "logging was captured"
