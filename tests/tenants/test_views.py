"""Tenant pages: list (search, filters, attention first, pages), health page, create, edit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from partner_portal.audit.models import AuditEvent
from partner_portal.consent.tasks import verify_tenant_access
from partner_portal.incidents.models import SyncRun
from partner_portal.tenants.models import Tenant
from tests.factories import ConsentedTenantFactory, TenantFactory


def names(response) -> list[str]:
    return [t.display_name for t in response.context["page"].object_list]


@pytest.fixture
def fleet(team_a):
    """Four tenants alice sees, one per health."""
    return {
        "ok": ConsentedTenantFactory(display_name="Alpha", groups=[team_a]),
        "attention": ConsentedTenantFactory(
            display_name="Bravo",
            consent_state=Tenant.ConsentState.MISSING_PERMISSIONS,
            groups=[team_a],
        ),
        "waiting": TenantFactory(display_name="Charlie Corp", groups=[team_a]),
        "sync-failed": ConsentedTenantFactory(
            display_name="Delta", last_sync_outcome="failed", groups=[team_a]
        ),
        "disabled": ConsentedTenantFactory(display_name="Echo", is_active=False, groups=[team_a]),
    }


def test_tenants_needing_attention_come_first(alice_client, fleet, tenant_a, tenant_b):
    response = alice_client.get("/tenants/")
    assert names(response) == ["Bravo", "Delta", "Charlie Corp", "Alpha", "Contoso", "Echo"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"q": "brav"}, ["Bravo"]),
        ({"q": "customer"}, []),  # no domain matches: factories use customerN.onmicrosoft.com
        ({"consent_state": "missing_permissions"}, ["Bravo"]),
        ({"consent_state": "not_consented"}, ["Charlie Corp"]),
        ({"health": "attention"}, ["Bravo", "Delta"]),
        ({"health": "waiting"}, ["Charlie Corp"]),
        ({"health": "ok"}, ["Alpha", "Contoso"]),
        ({"health": "disabled"}, ["Echo"]),
    ],
)
def test_the_list_filters(alice_client, fleet, tenant_a, query, expected):
    if query.get("q") == "customer":
        Tenant.objects.update(primary_domain="")
    assert names(alice_client.get("/tenants/", query)) == expected


def test_search_finds_a_domain_and_a_tenant_id(alice_client, fleet):
    Tenant.objects.filter(pk=fleet["ok"].pk).update(primary_domain="alpha.onmicrosoft.com")
    assert names(alice_client.get("/tenants/", {"q": "ALPHA.onmicrosoft"})) == ["Alpha"]
    tid = str(fleet["sync-failed"].entra_tenant_id)
    assert names(alice_client.get("/tenants/", {"q": tid})) == ["Delta"]
    assert names(alice_client.get("/tenants/", {"q": tid[:8]})) == ["Delta"]


def test_the_list_is_paginated_and_keeps_the_filters(alice_client, team_a):
    for i in range(30):
        TenantFactory(display_name=f"Tenant {i:02}", groups=[team_a])
    first = alice_client.get("/tenants/", {"q": "Tenant"})
    assert len(names(first)) == 25
    assert 'href="?q=Tenant&amp;page=2"' in first.content.decode()
    second = alice_client.get("/tenants/", {"q": "Tenant", "page": 2})
    assert names(second) == [f"Tenant {i:02}" for i in range(25, 30)]


def test_the_list_shows_only_the_users_tenants(alice_client, tenant_a, tenant_b):
    assert names(alice_client.get("/tenants/")) == ["Contoso"]


def test_the_health_page_shows_consent_permissions_and_the_fix(alice_client, tenant_a):
    tenant_a.record_access_check(
        state=Tenant.ConsentState.FAILED,
        roles=[],
        error_class="CredentialInvalid",
        error_message="AADSTS7000215: Invalid client secret provided.",
    )
    page = alice_client.get(f"/tenants/{tenant_a.pk}/").content.decode()
    assert "The portal&#x27;s app credentials were rejected" in page
    assert "update MICROSOFT_CLIENT_SECRET" in page
    assert "AADSTS7000215: Invalid client secret provided." in page
    assert "Incident.Read.All" in page and "missing" in page
    assert "Sync status and" not in page  # the include is a template comment
    assert "Check access" in page


def test_the_health_page_shows_the_last_sync_and_recent_runs(alice_client, tenant_a):
    now = timezone.now()
    SyncRun.objects.create(
        tenant=tenant_a,
        started_at=now - timedelta(minutes=10),
        finished_at=now - timedelta(minutes=10) + timedelta(seconds=4.2),
        outcome="success",
        created_count=12,
        updated_count=3,
    )
    SyncRun.objects.create(
        tenant=tenant_a,
        started_at=now - timedelta(minutes=5),
        finished_at=now - timedelta(minutes=5) + timedelta(seconds=1),
        outcome="failed",
        error_class="Forbidden",
    )
    Tenant.objects.filter(pk=tenant_a.pk).update(
        last_sync_at=now - timedelta(minutes=5),
        last_sync_outcome="failed",
        last_sync_error_class="Forbidden",
        last_sync_error_message="403 from the API",
    )
    response = alice_client.get(f"/tenants/{tenant_a.pk}/")
    page = response.content.decode()
    assert [r.outcome for r in response.context["sync_runs"]] == ["failed", "success"]
    assert "12" in page and "4.2 s" in page
    assert "Access denied by Microsoft" in page and "403 from the API" in page
    assert "Needs attention" in page


def test_the_next_sync_says_why_not_when_the_tenant_cannot_sync(alice_client, tenant_a):
    Tenant.objects.filter(pk=tenant_a.pk).update(sync_enabled=False)
    page = alice_client.get(f"/tenants/{tenant_a.pk}/").content.decode()
    assert "Sync is turned off for this tenant." in page


def test_staff_create_a_tenant_in_their_group(alice_client, team_a, team_b):
    form = alice_client.get("/tenants/new/").context["form"]
    assert list(form.fields["groups"].queryset) == [team_a]  # not team-b
    response = alice_client.post(
        "/tenants/new/",
        {
            "display_name": "Woodgrove",
            "primary_domain": "Woodgrove.onmicrosoft.com",
            "entra_tenant_id": "",
            "cloud": "commercial",
            "groups": [team_a.pk],
            "sync_enabled": "on",
        },
    )
    tenant = Tenant.objects.get(display_name="Woodgrove")
    assert response["Location"] == f"/tenants/{tenant.pk}/"
    assert tenant.primary_domain == "woodgrove.onmicrosoft.com"
    assert list(tenant.groups.all()) == [team_a]
    assert tenant.consent_state == Tenant.ConsentState.NOT_CONSENTED
    assert AuditEvent.objects.get(action="tenant.created").data["groups"] == ["team-a"]


def test_a_group_the_user_is_not_in_is_refused(alice_client, team_a, team_b):
    response = alice_client.post(
        "/tenants/new/",
        {"display_name": "Sneaky", "cloud": "commercial", "groups": [team_b.pk]},
    )
    assert response.status_code == 200
    assert "groups" in response.context["form"].errors
    assert not Tenant.objects.filter(display_name="Sneaky").exists()


def test_staff_must_give_the_tenant_a_group(alice_client, team_a):
    response = alice_client.post("/tenants/new/", {"display_name": "Orphan", "cloud": "commercial"})
    assert "groups" in response.context["form"].errors


@pytest.fixture
def root_client(client, django_user_model):
    root = django_user_model.objects.create_superuser("root", "r@msp.example", "pw-unused-1")
    client.force_login(root)
    return client


@pytest.mark.parametrize("bad", ["not-a-guid", "1234", "72f988bf-86f1-41af-91ab-2d7cd011db4"])
def test_the_tenant_id_must_be_a_guid(root_client, team_a, bad):
    response = root_client.post(
        "/tenants/new/",
        {"display_name": "X", "cloud": "commercial", "groups": [team_a.pk], "entra_tenant_id": bad},
    )
    assert "Enter a tenant ID such as" in str(response.context["form"].errors["entra_tenant_id"])


def test_staff_cannot_attach_another_groups_tenant_id_nor_learn_it_exists(
    alice_client, team_a, tenant_b
):
    # M2 + L5: the ID of a tenant alice may not see (tenant_b is team-b's, consented).
    response = alice_client.post(
        "/tenants/new/",
        {
            "display_name": "Copy",
            "cloud": "commercial",
            "groups": [team_a.pk],
            "entra_tenant_id": str(tenant_b.entra_tenant_id),
        },
        follow=True,
    )
    page = response.content.decode()
    assert "Another customer" not in page and tenant_b.display_name not in page
    copy = Tenant.objects.get(display_name="Copy")
    assert copy.entra_tenant_id is None  # the field is not even in the form
    assert "entra_tenant_id" not in alice_client.get("/tenants/new/").context["form"].fields


def test_staff_cannot_change_a_tenant_id_by_editing(alice_client, tenant_a, team_a):
    known = tenant_a.entra_tenant_id
    alice_client.post(
        f"/tenants/{tenant_a.pk}/edit/",
        {
            "display_name": "Contoso",
            "cloud": "commercial",
            "groups": [team_a.pk],
            "entra_tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "sync_enabled": "on",
        },
    )
    tenant_a.refresh_from_db()
    assert tenant_a.entra_tenant_id == known
    assert tenant_a.consent_state == Tenant.ConsentState.CONSENTED


def test_a_superuser_sees_which_tenant_already_has_the_id(root_client, team_a, tenant_b):
    response = root_client.post(
        "/tenants/new/",
        {
            "display_name": "Copy",
            "cloud": "commercial",
            "entra_tenant_id": str(tenant_b.entra_tenant_id),
        },
    )
    assert f"{tenant_b.display_name} already has this tenant ID" in str(
        response.context["form"].errors
    )


def test_a_superuser_changes_a_tenant_id_after_a_confirmation_that_clears_the_old_data(
    root_client, tenant_a, team_a
):
    from tests.factories import IncidentFactory

    IncidentFactory(tenant=tenant_a)
    Tenant.objects.filter(pk=tenant_a.pk).update(
        incidents_watermark=timezone.now(), granted_roles=["Incident.Read.All"]
    )
    new_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    data = {
        "display_name": "Contoso",
        "cloud": "commercial",
        "groups": [team_a.pk],
        "entra_tenant_id": new_id,
        "sync_enabled": "on",
    }
    page = root_client.post(f"/tenants/{tenant_a.pk}/edit/", data)
    # First a confirmation that says what goes; nothing changed yet.
    assert page.status_code == 200
    assert b"1 incident " in page.content and b"Change the tenant ID" in page.content
    tenant_a.refresh_from_db()
    assert str(tenant_a.entra_tenant_id) != new_id and tenant_a.incidents.count() == 1

    confirmed = root_client.post(
        f"/tenants/{tenant_a.pk}/edit/", {**data, "confirm_tenant_id": "yes"}
    )
    assert confirmed.status_code == 302
    tenant_a.refresh_from_db()
    assert str(tenant_a.entra_tenant_id) == new_id
    assert tenant_a.consent_state == Tenant.ConsentState.NOT_CONSENTED
    assert tenant_a.granted_roles == [] and tenant_a.incidents_watermark is None
    assert tenant_a.incidents.count() == 0 and not tenant_a.is_syncable
    event = AuditEvent.objects.get(action="tenant.changed")
    assert event.data["changes"]["incidents_deleted"] == 1


def test_editing_keeps_groups_the_user_cannot_see(alice_client, tenant_a, team_a, team_b):
    tenant_a.groups.add(team_b)
    response = alice_client.post(
        f"/tenants/{tenant_a.pk}/edit/",
        {
            "display_name": "Contoso Ltd",
            "cloud": "commercial",
            "groups": [team_a.pk],
            "entra_tenant_id": str(tenant_a.entra_tenant_id),
            "sync_enabled": "on",
        },
    )
    assert response.status_code == 302
    tenant_a.refresh_from_db()
    assert tenant_a.display_name == "Contoso Ltd"
    assert set(tenant_a.groups.all()) == {team_a, team_b}
    event = AuditEvent.objects.get(action="tenant.changed")
    assert event.data["changes"]["display_name"] == ["Contoso", "Contoso Ltd"]


def test_a_superuser_may_give_any_group(client, django_user_model, team_a, team_b):
    root = django_user_model.objects.create_superuser("root", "r@msp.example", "pw-unused-1")
    client.force_login(root)
    form = client.get("/tenants/new/").context["form"]
    assert set(form.fields["groups"].queryset) == {team_a, team_b}
    assert not form.fields["groups"].required


def test_disable_and_enable_are_posts_and_audited(alice_client, tenant_a):
    assert alice_client.get(f"/tenants/{tenant_a.pk}/toggle/").status_code == 405
    alice_client.post(f"/tenants/{tenant_a.pk}/toggle/")
    tenant_a.refresh_from_db()
    assert not tenant_a.is_active and not tenant_a.is_syncable
    alice_client.post(f"/tenants/{tenant_a.pk}/toggle/")
    tenant_a.refresh_from_db()
    assert tenant_a.is_active
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", flat=True))
    assert actions == ["tenant.disabled", "tenant.enabled"]


def test_check_access_enqueues_the_verification_after_commit(
    alice_client, tenant_a, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(verify_tenant_access, "delay", lambda **kw: sent.append(kw))
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(f"/consent/tenants/{tenant_a.pk}/check-access/")
    assert response.status_code == 302
    assert sent == [{"tenant_pk": tenant_a.pk}]


def test_check_access_without_a_tenant_id_asks_for_consent_first(alice_client, team_a):
    tenant = TenantFactory(groups=[team_a])
    response = alice_client.post(f"/consent/tenants/{tenant.pk}/check-access/", follow=True)
    assert b"send a consent link first" in response.content


def test_the_admin_shows_the_lease_and_the_watermark(admin_client, tenant_a):
    lease = timezone.now() + timedelta(minutes=3)
    Tenant.objects.filter(pk=tenant_a.pk).update(sync_lease_until=lease)
    listing = admin_client.get("/admin/tenants/tenant/").content.decode()
    assert "Sync lease until" in listing
    change = admin_client.get(f"/admin/tenants/tenant/{tenant_a.pk}/change/").content.decode()
    assert "incidents_watermark" in change and "sync_lease_until" in change


def test_the_audit_log_is_read_only_in_the_admin(admin_client, tenant_a):
    from partner_portal.audit.events import record

    event = record("tenant.changed", tenant=tenant_a)
    assert admin_client.get("/admin/audit/auditevent/").status_code == 200
    assert admin_client.get("/admin/audit/auditevent/add/").status_code == 403
    response = admin_client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403


def test_a_pending_tenant_says_the_portal_is_still_confirming(alice_client, tenant_a):
    Tenant.objects.filter(pk=tenant_a.pk).update(
        consent_state=Tenant.ConsentState.PENDING,
        consent_error_class="ConsentRequired",
        consent_error_message="AADSTS7000229: missing service principal",
    )
    page = alice_client.get(f"/tenants/{tenant_a.pk}/").content.decode()
    assert "keeps trying for about 10 minutes" in page
    assert "AADSTS7000229: missing service principal" in page
    assert "Create a new consent link and send it" not in page


def test_a_superuser_without_any_group_is_told_groups_are_optional(client, django_user_model):
    # The demo's first screen: a superuser, no group in the database yet.
    root = django_user_model.objects.create_superuser("root", "r@msp.example", "pw-unused-1")
    client.force_login(root)
    page = client.get("/tenants/new/").content.decode()
    assert "As a superuser you see every tenant" in page
    assert "ask an administrator" not in page


def test_the_next_sync_of_a_one_minute_schedule_is_in_the_singular(
    alice_client, tenant_a, settings
):
    settings.SYNC_INTERVAL_MINUTES = 1  # as in the demo
    page = alice_client.get(f"/tenants/{tenant_a.pk}/").content.decode()
    assert "within 1 minute of the scheduler starting" in page
    assert "1 minutes" not in page


def test_the_tenant_page_counts_its_incidents_and_links_to_them(alice_client, tenant_a, tenant_b):
    from tests.factories import IncidentFactory

    IncidentFactory.create_batch(3, tenant=tenant_a)
    IncidentFactory(tenant=tenant_b)
    page = alice_client.get(f"/tenants/{tenant_a.pk}/").content.decode()
    assert f'href="/?tenant={tenant_a.pk}">3 synced</a>' in page
