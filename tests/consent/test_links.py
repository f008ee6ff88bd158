"""Staff pages for consent links: create, list, detail with the message, revoke."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone

from partner_portal.audit.models import AuditEvent
from partner_portal.consent.models import ConsentLink, hash_token
from tests.factories import ConsentLinkFactory


def test_staff_create_a_link_from_the_tenant_page(alice_client, customer, consent_settings):
    response = alice_client.post(
        f"/consent/links/new/{customer.pk}/",
        {"expected_tenant": "AAAABBBB-0000-CCCC-1111-DDDD2222EEEE"},
    )
    link = ConsentLink.objects.get(tenant=customer)
    assert response.status_code == 302
    assert response["Location"] == f"/consent/links/{link.pk}/"
    assert link.created_by.username == "alice"
    assert link.expected_tenant_id == "aaaabbbb-0000-cccc-1111-dddd2222eeee"
    assert link.expires_at > timezone.now() + timedelta(days=13)
    event = AuditEvent.objects.get(action="consent.link_created")
    assert event.actor.username == "alice" and event.tenant == customer


def test_an_invalid_expected_tenant_is_refused(alice_client, customer, consent_settings):
    response = alice_client.post(
        f"/consent/links/new/{customer.pk}/", {"expected_tenant": "not a domain"}, follow=True
    )
    assert b"Enter a tenant ID" in response.content
    assert not ConsentLink.objects.exists()


def test_the_full_url_and_message_are_shown_once_at_creation(
    alice_client, customer, consent_settings
):
    created = alice_client.post(f"/consent/links/new/{customer.pk}/", follow=True)
    page = created.content.decode()
    link = ConsentLink.objects.get(tenant=customer)
    match = re.search(r"https://portal\.example/consent/([\w-]{40,})/", page)
    assert match, page
    token = match.group(1)
    assert page.count(match.group(0)) >= 2  # the field and the ready-to-send message
    assert 'data-copy="link-url"' in page and "js/copy.js" in page
    assert "Northwind" in page and "Incident.Read.All" in page
    assert "Contoso Managed Security" in page
    # Only the hash is stored…
    assert link.token_hash == hash_token(token) and token not in link.token_hash
    assert not ConsentLink.objects.filter(token_hash=token).exists()
    # …the link works…
    assert alice_client.get(f"/consent/{token}/").status_code == 200
    # …and the detail page never shows it again.
    again = alice_client.get(f"/consent/links/{link.pk}/").content.decode()
    assert token not in again and "Replace this link" in again


def test_a_lost_link_is_replaced_by_a_new_one_shown_once(alice_client, link, consent_settings):
    page = alice_client.post(f"/consent/links/{link.pk}/replace/", follow=True).content.decode()
    new = ConsentLink.objects.exclude(pk=link.pk).get(tenant=link.tenant)
    token = re.search(r"https://portal\.example/consent/([\w-]{40,})/", page).group(1)
    assert new.token_hash == hash_token(token)
    assert new.expected_tenant_id == link.expected_tenant_id
    link.refresh_from_db()
    assert link.status == "revoked"
    assert alice_client.get(f"/consent/{link.token}/").status_code == 410


def test_revoking_a_link_stops_it(alice_client, link, consent_settings):
    response = alice_client.post(f"/consent/links/{link.pk}/revoke/")
    assert response.status_code == 302
    link.refresh_from_db()
    assert link.revoked_at is not None and link.status == "revoked"
    assert alice_client.get(f"/consent/{link.token}/").status_code == 410
    assert AuditEvent.objects.filter(action="consent.link_revoked").count() == 1
    # Revoking again changes nothing.
    alice_client.post(f"/consent/links/{link.pk}/revoke/")
    assert AuditEvent.objects.filter(action="consent.link_revoked").count() == 1


def test_the_list_filters_by_state(alice_client, customer, consent_settings):
    now = timezone.now()
    active = ConsentLinkFactory(tenant=customer)
    used = ConsentLinkFactory(tenant=customer, completed_at=now, outcome="granted")
    expired = ConsentLinkFactory(tenant=customer, expires_at=now - timedelta(days=1))
    revoked = ConsentLinkFactory(tenant=customer, revoked_at=now)
    for status, expected in [
        ("active", active),
        ("used", used),
        ("expired", expired),
        ("revoked", revoked),
    ]:
        page = alice_client.get("/consent/links/", {"status": status})
        shown = list(page.context["page"].object_list)
        assert shown == [expected], status
        assert expected.status == status
    assert len(alice_client.get("/consent/links/").context["page"].object_list) == 4


def test_the_list_shows_only_links_of_visible_tenants(alice_client, tenant_b, customer):
    mine = ConsentLinkFactory(tenant=customer)
    ConsentLinkFactory(tenant=tenant_b)
    assert list(alice_client.get("/consent/links/").context["page"].object_list) == [mine]


def test_the_link_token_is_not_in_the_admin_list(admin_client, link):
    page = admin_client.get("/admin/consent/consentlink/").content.decode()
    assert "Northwind" in page
    assert link.token not in page
    detail = admin_client.get(f"/admin/consent/consentlink/{link.pk}/change/").content.decode()
    assert link.token not in detail
