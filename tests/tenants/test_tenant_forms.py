"""Creating and editing a tenant: groups (only the user's own, kept when they cannot see
them), names told apart, and the tenant ID (a GUID, never another customer's, changed by a
superuser only, after a confirmation)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from partner_portal.audit.models import AuditEvent
from partner_portal.tenants.models import Tenant
from tests.factories import TenantFactory


@pytest.fixture
def root_client(client, django_user_model):
    root = django_user_model.objects.create_superuser("root", "r@msp.example", "pw-unused-1")
    client.force_login(root)
    return client


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


def test_a_superuser_without_any_group_is_told_groups_are_optional(client, django_user_model):
    # The demo's first screen: a superuser, no group in the database yet.
    root = django_user_model.objects.create_superuser("root", "r@msp.example", "pw-unused-1")
    client.force_login(root)
    page = client.get("/tenants/new/").content.decode()
    assert "As a superuser you see every tenant" in page
    assert "ask an administrator" not in page


@pytest.mark.parametrize("name", ["Customer Dup", "customer dup", "  CUSTOMER   DUP "])
def test_a_second_customer_of_the_same_name_is_refused(alice_client, team_a, name):
    TenantFactory(display_name="Customer Dup", groups=[team_a])
    response = alice_client.post(
        reverse("tenants:create"),
        {"display_name": name, "cloud": "commercial", "groups": [team_a.pk]},
    )
    assert response.status_code == 200
    assert "Another customer already has this name" in response.content.decode()
    assert Tenant.objects.filter(display_name__iexact="customer dup").count() == 1


def test_a_customer_keeps_its_own_name_when_edited(alice_client, tenant_a, team_a):
    response = alice_client.post(
        reverse("tenants:edit", kwargs={"tenant_pk": tenant_a.pk}),
        {
            "display_name": tenant_a.display_name.lower(),
            "cloud": "commercial",
            "groups": [team_a.pk],
        },
    )
    assert response.status_code == 302
