"""The consent round trip against devcloud: real HTTP, real MSAL over TLS, real Redis cache."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from partner_portal.audit.models import AuditEvent
from partner_portal.consent import flow
from partner_portal.consent.models import ConsentLink
from partner_portal.microsoft import errors, tokens
from partner_portal.tenants.models import Tenant
from tests.consent.round_trip import (
    answer_consent_page,
    back_to_portal,
    consent,
    to_microsoft,
)
from tests.factories import ConsentedTenantFactory

pytestmark = pytest.mark.integration


@pytest.fixture
def link(portal, customer, alice, customer_tenant):
    """The usual link: it expects the customer's domain, which devcloud resolves."""
    return flow.create_link(
        tenant=customer, created_by=alice, expected_tenant="northwind.onmicrosoft.com"
    )


def test_the_full_round_trip_ends_with_the_tenant_consented_and_its_roles(
    client, http, portal, link, customer_tenant, settings, django_capture_on_commit_callbacks
):
    tid = customer_tenant["tenant_id"]
    url = to_microsoft(client, link)
    # The domain was resolved when the link was made: the admin goes to that tenant's ID.
    assert url.startswith(f"{settings.MICROSOFT_LOGIN_BASE_URL}/{tid}/v2.0/adminconsent?")
    assert link.expected_tenant_id == tid and link.expected_domain == "northwind.onmicrosoft.com"
    location = answer_consent_page(http, url, account=f"{tid}|admin", action="accept")
    with django_capture_on_commit_callbacks() as enqueued:
        page = back_to_portal(client, location, public_base_url=settings.PUBLIC_BASE_URL)
    assert page.status_code == 200 and b"consent was granted" in page.content
    assert len(enqueued) == 1
    tenant = Tenant.objects.get(pk=link.tenant_id)
    assert tenant.consent_state == Tenant.ConsentState.PENDING
    assert str(tenant.entra_tenant_id) == tid

    flow.verify_access(tenant=tenant)  # what the enqueued task runs

    tenant.refresh_from_db()
    assert tenant.consent_state == Tenant.ConsentState.CONSENTED
    assert tenant.granted_roles == ["Incident.Read.All"]
    assert tenant.consent_error_class == "" and tenant.consent_checked_at is not None
    link.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.GRANTED and link.returned_tenant_id == tid


def test_cancel_on_microsofts_page_records_denied_and_grants_nothing(
    client, http, portal, link, customer_tenant, settings, devcloud
):
    tid = customer_tenant["tenant_id"]
    page = consent(
        client, http, link, tid=tid, public_base_url=settings.PUBLIC_BASE_URL, action="cancel"
    )
    assert page.status_code == 200 and b"You cancelled" in page.content
    link.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.DENIED and link.error_code == "AADSTS65004"
    assert link.is_usable
    assert Tenant.objects.get(pk=link.tenant_id).entra_tenant_id is None
    assert devcloud.consent(tid, portal["client_id"])["state"] == "none"


def test_a_consent_from_a_tenant_of_another_customer_is_a_mismatch(
    client, http, portal, link, customer_tenant, settings, team_b
):
    tid = customer_tenant["tenant_id"]
    ConsentedTenantFactory(entra_tenant_id=uuid.UUID(tid), groups=[team_b])
    page = consent(client, http, link, tid=tid, public_base_url=settings.PUBLIC_BASE_URL)
    assert b"different organisation" in page.content
    link.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.TENANT_MISMATCH
    assert Tenant.objects.get(pk=link.tenant_id).entra_tenant_id is None


def test_a_link_expecting_a_tenant_sends_the_admin_to_that_tenant(
    client, http, portal, customer, alice, customer_tenant, devcloud
):
    devcloud.create_tenant(domain="other.onmicrosoft.com")
    link = flow.create_link(
        tenant=customer, created_by=alice, expected_tenant="northwind.onmicrosoft.com"
    )
    page = http.get(to_microsoft(client, link)).text
    # Microsoft (devcloud) offers only accounts of the expected tenant.
    assert customer_tenant["tenant_id"] in page and "other.onmicrosoft.com" not in page


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_a_link_revoked_or_expired_while_at_microsoft_is_refused(
    client, http, portal, link, customer_tenant, settings, how
):
    url = to_microsoft(client, link)
    location = answer_consent_page(
        http, url, account=f"{customer_tenant['tenant_id']}|admin", action="accept"
    )
    change = (
        {"revoked_at": timezone.now()}
        if how == "revoked"
        else {"expires_at": timezone.now() - timedelta(seconds=1)}
    )
    ConsentLink.objects.filter(pk=link.pk).update(**change)
    page = back_to_portal(client, location, public_base_url=settings.PUBLIC_BASE_URL)
    assert page.status_code == 400
    assert Tenant.objects.get(pk=link.tenant_id).entra_tenant_id is None
    assert client.get(f"/consent/{link.token}/").status_code == 410


def test_consent_without_roles_is_missing_permissions(
    client, http, portal, link, customer_tenant, settings, devcloud
):
    tid = customer_tenant["tenant_id"]
    consent(client, http, link, tid=tid, public_base_url=settings.PUBLIC_BASE_URL)
    devcloud.set_consent(tid, portal["client_id"], state="no_roles")
    tenant = flow.verify_access(tenant=Tenant.objects.get(pk=link.tenant_id))
    tenant.refresh_from_db()
    assert tenant.consent_state == Tenant.ConsentState.MISSING_PERMISSIONS
    assert tenant.granted_roles == []
    assert tenant.consent_error_class == "MissingPermissions"


def test_a_wrong_secret_fails_and_the_tenant_page_shows_the_fix(
    client, http, portal, link, customer_tenant, settings, alice
):
    tid = customer_tenant["tenant_id"]
    consent(client, http, link, tid=tid, public_base_url=settings.PUBLIC_BASE_URL)
    settings.MICROSOFT_CLIENT_SECRET = "not-the-secret"
    tenant = flow.verify_access(tenant=Tenant.objects.get(pk=link.tenant_id))
    assert tenant.consent_state == Tenant.ConsentState.FAILED
    assert tenant.consent_error_class == "CredentialInvalid"
    assert "7000215" in tenant.consent_error_message
    client.force_login(alice)
    page = client.get(f"/tenants/{tenant.pk}/").content.decode()
    assert "The portal&#x27;s app credentials were rejected" in page
    assert "update MICROSOFT_CLIENT_SECRET" in page
    assert "not-the-secret" not in page


def test_certificate_credentials_work(
    client, http, portal, link, customer_tenant, settings, devcloud, tmp_path
):
    from tests.devcloud.registration import make_certificate

    key_pem, cert_pem = make_certificate()
    app = devcloud.create_app(
        display_name="Partner Portal (certificate)",
        certificates=[{"pem": cert_pem}],
        redirect_uris=[settings.PUBLIC_BASE_URL + "/consent/callback/"],
        required_permissions=["Incident.Read.All"],
    )
    (tmp_path / "cert.pem").write_text(cert_pem)
    (tmp_path / "key.pem").write_text(key_pem)
    settings.MICROSOFT_CLIENT_ID = app["client_id"]
    settings.MICROSOFT_CLIENT_SECRET = ""
    settings.MICROSOFT_CERTIFICATE_PATH = str(tmp_path / "cert.pem")
    settings.MICROSOFT_PRIVATE_KEY_PATH = str(tmp_path / "key.pem")
    tid = customer_tenant["tenant_id"]
    consent(client, http, link, tid=tid, public_base_url=settings.PUBLIC_BASE_URL)
    tenant = flow.verify_access(tenant=Tenant.objects.get(pk=link.tenant_id))
    assert tenant.consent_state == Tenant.ConsentState.CONSENTED
    assert tenant.granted_roles == ["Incident.Read.All"]


def test_right_after_consent_a_missing_service_principal_is_retried_then_fails(
    portal, customer, customer_tenant
):
    Tenant.objects.filter(pk=customer.pk).update(
        entra_tenant_id=customer_tenant["tenant_id"], consent_state="pending"
    )
    customer.refresh_from_db()
    with pytest.raises(errors.RetryLater) as info:
        flow.verify_access(tenant=customer, attempt=0)
    assert isinstance(info.value.cause, errors.ConsentRequired)
    assert info.value.cursor == {"attempt": 1}
    customer.refresh_from_db()
    assert customer.consent_state == Tenant.ConsentState.PENDING
    assert customer.consent_error_class == "ConsentRequired"
    flow.verify_access(tenant=customer, attempt=flow.MAX_ATTEMPTS)
    customer.refresh_from_db()
    assert customer.consent_state == Tenant.ConsentState.FAILED


def test_a_fresh_app_object_sees_a_consent_msal_would_hide_for_60_seconds(
    portal, devcloud, customer
):
    # A tenant whose "no consent" answer is AADSTS700016: an HTTP 400, which MSAL replays
    # from its own HTTP cache for 60 s without asking again (§5.5).
    dc_tenant = devcloud.create_tenant(no_sp_error="700016")
    tid = dc_tenant["tenant_id"]
    with pytest.raises(errors.ConsentRequired):
        tokens.get_access_token(tenant_id=tid)
    devcloud.set_consent(tid, portal["client_id"], state="consented")
    with pytest.raises(errors.ConsentRequired):
        tokens.get_access_token(tenant_id=tid)  # the same app object: the cached 400
    Tenant.objects.filter(pk=customer.pk).update(entra_tenant_id=tid, consent_state="pending")
    customer.refresh_from_db()
    flow.verify_access(tenant=customer)  # forgets the app first
    customer.refresh_from_db()
    assert customer.consent_state == Tenant.ConsentState.CONSENTED


def test_a_disabled_app_is_classified_with_its_fix(portal, devcloud, customer, customer_tenant):
    tid = customer_tenant["tenant_id"]
    devcloud.set_consent(tid, portal["client_id"], state="disabled")
    Tenant.objects.filter(pk=customer.pk).update(entra_tenant_id=tid, consent_state="consented")
    customer.refresh_from_db()
    flow.verify_access(tenant=customer)
    assert customer.consent_state == Tenant.ConsentState.FAILED
    assert customer.consent_error_class == "AppDisabled"


def test_an_unknown_tenant_is_tenant_not_found(portal, customer):
    Tenant.objects.filter(pk=customer.pk).update(entra_tenant_id=uuid.uuid4())
    customer.refresh_from_db()
    flow.verify_access(tenant=customer)
    assert customer.consent_state == Tenant.ConsentState.FAILED
    assert customer.consent_error_class == "TenantNotFound"


def test_a_blocked_tenant_is_classified_with_its_fix(
    portal, devcloud, customer, customer_tenant, client, alice
):
    tid = customer_tenant["tenant_id"]
    devcloud.set_consent(tid, portal["client_id"], state="consented")
    devcloud.update_tenant(tid, blocked=True)
    Tenant.objects.filter(pk=customer.pk).update(entra_tenant_id=tid, consent_state="consented")
    customer.refresh_from_db()
    flow.verify_access(tenant=customer)
    assert customer.consent_state == Tenant.ConsentState.FAILED
    assert customer.consent_error_class == "TenantBlocked"
    client.force_login(alice)
    page = client.get(f"/tenants/{customer.pk}/").content.decode()
    assert "contact Microsoft support" in page


def test_a_check_right_after_a_missing_role_is_granted_sees_the_role(
    portal, devcloud, customer, customer_tenant
):
    tid = customer_tenant["tenant_id"]
    devcloud.set_consent(tid, portal["client_id"], state="no_roles", roles=[])
    Tenant.objects.filter(pk=customer.pk).update(entra_tenant_id=tid)
    customer.refresh_from_db()
    flow.verify_access(tenant=customer)
    assert customer.consent_state == Tenant.ConsentState.MISSING_PERMISSIONS
    devcloud.set_consent(tid, portal["client_id"], state="consented")
    # The token without the role is still cached (for an hour): the check must not use it.
    flow.verify_access(tenant=customer)
    assert customer.consent_state == Tenant.ConsentState.CONSENTED
    assert customer.granted_roles == ["Incident.Read.All"]
    assert devcloud.requests_log(tenant=tid)["by_endpoint"]["token"] == 2


def queued_tasks(redis_url: str) -> list[tuple[str, dict]]:
    """(task name, kwargs) of every message waiting on the broker's default queue."""
    import base64
    import json

    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.lrange("celery", 0, -1)
    finally:
        client.close()
    messages = [json.loads(item) for item in raw]
    return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[1]) for m in messages]


@pytest.mark.parametrize("before", ["pending", "missing_permissions", "revoked"])
def test_a_confirmed_consent_queues_exactly_one_sync(
    portal,
    celery_broker,
    devcloud,
    customer,
    customer_tenant,
    before,
    django_capture_on_commit_callbacks,
):
    tid = customer_tenant["tenant_id"]
    devcloud.set_consent(tid, portal["client_id"], state="consented")
    Tenant.objects.filter(pk=customer.pk).update(entra_tenant_id=tid, consent_state=before)
    customer.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        flow.verify_access(tenant=customer)
    assert customer.consent_state == Tenant.ConsentState.CONSENTED
    sync = [(flow.SYNC_TASK, {"tenant_pk": customer.pk})]
    assert queued_tasks(celery_broker) == sync

    # "Check access" on a tenant that is consented already: no second sync.
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        flow.verify_access(tenant=Tenant.objects.get(pk=customer.pk))
    assert callbacks == []
    assert queued_tasks(celery_broker) == sync


def test_no_sync_is_queued_when_the_check_fails_or_sync_is_off(
    portal, celery_broker, devcloud, customer, customer_tenant, django_capture_on_commit_callbacks
):
    tid = customer_tenant["tenant_id"]
    devcloud.set_consent(tid, portal["client_id"], state="no_roles", roles=[])
    Tenant.objects.filter(pk=customer.pk).update(
        entra_tenant_id=tid, consent_state="pending", sync_enabled=False
    )
    customer.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        flow.verify_access(tenant=customer)
        assert customer.consent_state == Tenant.ConsentState.MISSING_PERMISSIONS
        devcloud.set_consent(tid, portal["client_id"], state="consented")
        flow.verify_access(tenant=customer)
        assert customer.consent_state == Tenant.ConsentState.CONSENTED
    # Consented, but its sync is switched off: the schedule would skip it, and so do we.
    assert callbacks == []
    assert queued_tasks(celery_broker) == []


def test_a_domain_link_refuses_a_consent_from_another_tenant_via_organizations(
    client, http, portal, link, customer_tenant, devcloud, settings
):
    # M1: the admin edits the path segment to /organizations/ and accepts as the admin of
    # another tenant. The domain was resolved to its tenant ID, so this is a mismatch.
    other = devcloud.create_tenant(domain="fabrikam.onmicrosoft.com", display_name="Fabrikam")
    url = to_microsoft(client, link)
    tid = customer_tenant["tenant_id"]
    assert f"/{tid}/v2.0/adminconsent" in url
    tampered = url.replace(f"/{tid}/v2.0/", "/organizations/v2.0/")
    location = answer_consent_page(
        http, tampered, account=f"{other['tenant_id']}|admin", action="accept"
    )
    page = back_to_portal(client, location, public_base_url=settings.PUBLIC_BASE_URL)
    assert b"different organisation" in page.content
    link.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.TENANT_MISMATCH
    assert link.returned_tenant_id == other["tenant_id"]
    tenant = Tenant.objects.get(pk=link.tenant_id)
    assert tenant.entra_tenant_id is None and not tenant.is_syncable
    assert AuditEvent.objects.filter(
        action="consent.link_completed", data__reason="expected another tenant"
    ).exists()


def test_an_unknown_domain_is_refused_when_the_link_is_created(
    alice_client, portal, customer, devcloud
):
    page = alice_client.post(
        f"/consent/links/new/{customer.pk}/",
        {"expected_tenant": "nobody-here.onmicrosoft.com"},
        follow=True,
    )
    assert b"AADSTS90002" in page.content
    assert not ConsentLink.objects.filter(tenant=customer).exists()


def test_a_domain_typed_on_the_tenant_page_is_stored_as_its_tenant_id(
    alice_client, portal, customer, customer_tenant
):
    alice_client.post(
        f"/consent/links/new/{customer.pk}/", {"expected_tenant": "Northwind.onmicrosoft.com"}
    )
    link = ConsentLink.objects.get(tenant=customer)
    assert link.expected_tenant_id == customer_tenant["tenant_id"]
    assert link.expected_domain == "northwind.onmicrosoft.com"
