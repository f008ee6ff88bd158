"""Microsoft's redirect back: errors first, single-use success, mismatches, garbage."""

from __future__ import annotations

import uuid

import pytest

from partner_portal.audit.models import AuditEvent
from partner_portal.consent import flow
from partner_portal.consent.models import ConsentLink
from partner_portal.tenants.models import Tenant
from tests.consent.round_trip import callback, start_state
from tests.factories import ConsentedTenantFactory

TENANT_ID = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
CANCEL = (
    "AADSTS65004: User declined to consent to access the app.\r\nTrace ID: 1\r\n"
    "Correlation ID: 2\r\nTimestamp: 2026-11-25 11:25:19Z"
)


@pytest.fixture
def expecting_link(customer, alice):
    """A link that expects TENANT_ID (a GUID, or a domain resolved to it)."""
    return flow.create_link(tenant=customer, created_by=alice, expected_tenant=TENANT_ID)


def test_success_completes_the_link_and_waits_for_a_token(
    client, expecting_link, consent_settings, django_capture_on_commit_callbacks
):
    link = expecting_link
    state = start_state(client, link)
    with django_capture_on_commit_callbacks() as enqueued:
        response = callback(
            client,
            admin_consent="True",
            tenant=TENANT_ID,
            state=state,
            scope="https://api.security.microsoft.com/.default",
        )
    assert response.status_code == 200
    assert b"consent was granted" in response.content
    link.refresh_from_db()
    assert link.completed_at is not None
    assert link.outcome == ConsentLink.Outcome.GRANTED
    assert link.returned_tenant_id == TENANT_ID
    tenant = link.tenant
    tenant.refresh_from_db()
    # Recorded but not trusted: consented only after a token with this tid and the role.
    assert str(tenant.entra_tenant_id) == TENANT_ID
    assert tenant.consent_state == Tenant.ConsentState.PENDING
    assert len(enqueued) == 1  # the verification task, after commit
    event = AuditEvent.objects.get(action="consent.link_completed")
    assert event.data["outcome"] == "granted" and event.tenant == tenant


def test_the_parameter_order_and_case_do_not_matter(
    client, expecting_link, consent_settings, django_capture_on_commit_callbacks
):
    link = expecting_link
    state = start_state(client, link)
    with django_capture_on_commit_callbacks():
        response = client.get(
            f"/consent/callback/?state={state}&scope=x&tenant={TENANT_ID.upper()}&admin_consent=true"
        )
    assert response.status_code == 200
    link.refresh_from_db()
    assert link.returned_tenant_id == TENANT_ID


def test_cancel_is_checked_before_admin_consent_and_records_denied(client, link, consent_settings):
    state = start_state(client, link)
    response = callback(
        client,
        error="access_denied",
        error_description=CANCEL,
        error_uri="https://login.microsoftonline.com/error?code=65004",
        admin_consent="True",
        state=state,
    )
    assert response.status_code == 200
    assert b"You cancelled" in response.content
    assert b"Open the consent page again" in response.content
    link.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.DENIED
    assert link.error_code == "AADSTS65004"
    assert link.error_description == "AADSTS65004: User declined to consent to access the app."
    # Not used up: the administrator may have cancelled by mistake.
    assert link.completed_at is None and link.is_usable
    link.tenant.refresh_from_db()
    assert link.tenant.consent_state == Tenant.ConsentState.NOT_CONSENTED
    assert AuditEvent.objects.filter(action="consent.link_declined").count() == 1


def test_the_old_endpoints_cancel_is_denied_too(client, link, consent_settings):
    state = start_state(client, link)
    callback(client, error="access_denied", error_subcode="cancel", state=state)
    link.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.DENIED


def test_a_user_from_another_directory_is_told_what_to_do(client, link, consent_settings):
    state = start_state(client, link)
    response = callback(
        client,
        error="access_denied",
        error_description="AADSTS50020: User account from identity provider does not exist.",
        admin_consent="True",
        state=state,
    )
    assert b"different organisation" in response.content
    link.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.ERROR
    assert link.error_code == "AADSTS50020"


def test_other_errors_show_the_code_to_send_to_the_msp(client, link, consent_settings):
    state = start_state(client, link)
    response = callback(
        client,
        error="server_error",
        error_description="AADSTS90033: A transient error.",
        state=state,
    )
    assert b"AADSTS90033" in response.content
    assert b"Contoso Managed Security" in response.content
    link.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.ERROR


def test_a_cancel_then_an_accept_with_the_same_link_grants(
    client, expecting_link, consent_settings, django_capture_on_commit_callbacks
):
    link = expecting_link
    state = start_state(client, link)
    callback(client, error="access_denied", error_description=CANCEL, state=state)
    with django_capture_on_commit_callbacks():
        callback(client, admin_consent="True", tenant=TENANT_ID, state=start_state(client, link))
    link.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.GRANTED
    assert link.error_code == "" and link.error_description == ""


def test_a_link_expecting_another_tenant_is_a_mismatch_and_attaches_nothing(
    client, customer, alice, consent_settings, django_capture_on_commit_callbacks
):
    expected = str(uuid.uuid4())
    link = flow.create_link(tenant=customer, created_by=alice, expected_tenant=expected)
    state = start_state(client, link)
    with django_capture_on_commit_callbacks() as enqueued:
        response = callback(client, admin_consent="True", tenant=TENANT_ID, state=state)
    assert b"different organisation" in response.content
    link.refresh_from_db()
    customer.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.TENANT_MISMATCH
    assert link.returned_tenant_id == TENANT_ID and link.completed_at is not None
    assert customer.entra_tenant_id is None
    assert customer.consent_state == Tenant.ConsentState.NOT_CONSENTED
    assert enqueued == []


def test_a_tenant_id_that_belongs_to_another_customer_is_a_mismatch(
    client, link, consent_settings, team_b
):
    other = ConsentedTenantFactory(entra_tenant_id=uuid.UUID(TENANT_ID), groups=[team_b])
    state = start_state(client, link)
    callback(client, admin_consent="True", tenant=TENANT_ID, state=state)
    link.refresh_from_db()
    link.tenant.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.TENANT_MISMATCH
    assert link.tenant.entra_tenant_id is None
    other.refresh_from_db()
    assert other.consent_state == Tenant.ConsentState.CONSENTED


def test_a_tenant_with_a_known_id_rejects_a_consent_from_another(
    client, customer, alice, consent_settings
):
    known = uuid.uuid4()
    Tenant.objects.filter(pk=customer.pk).update(entra_tenant_id=known)
    link = flow.create_link(tenant=customer, created_by=alice)
    state = start_state(client, link)
    callback(client, admin_consent="True", tenant=TENANT_ID, state=state)
    link.refresh_from_db()
    customer.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.TENANT_MISMATCH
    assert customer.entra_tenant_id == known


def test_without_an_expectation_nothing_is_bound_until_staff_confirm(
    client, link, consent_settings, alice, alice_client, django_capture_on_commit_callbacks
):
    # M1: a link without any expectation used to bind whichever tenant consented.
    with django_capture_on_commit_callbacks() as enqueued:
        page = callback(
            client, admin_consent="True", tenant=TENANT_ID, state=start_state(client, link)
        )
    assert b"consent was granted" in page.content
    assert enqueued == []  # no access check, so no sync either
    link.refresh_from_db()
    customer = Tenant.objects.get(pk=link.tenant_id)
    assert link.outcome == ConsentLink.Outcome.GRANTED and link.awaiting_confirmation
    assert customer.entra_tenant_id is None and not customer.is_syncable
    assert AuditEvent.objects.filter(action="consent.binding_unconfirmed").count() == 1

    # The tenant page shows what Microsoft returned and when, with a button to confirm it.
    detail = alice_client.get(f"/tenants/{customer.pk}/").content.decode()
    assert TENANT_ID in detail and f"/consent/links/{link.pk}/confirm/" in detail
    with django_capture_on_commit_callbacks() as enqueued:
        alice_client.post(f"/consent/links/{link.pk}/confirm/")
    customer.refresh_from_db()
    link.refresh_from_db()
    assert str(customer.entra_tenant_id) == TENANT_ID
    assert customer.consent_state == Tenant.ConsentState.PENDING
    assert not link.awaiting_confirmation and len(enqueued) == 1
    event = AuditEvent.objects.get(action="consent.binding_confirmed")
    assert event.actor == alice and event.data["returned_tenant_id"] == TENANT_ID
    # Single use: a second confirmation does nothing.
    with django_capture_on_commit_callbacks() as enqueued:
        alice_client.post(f"/consent/links/{link.pk}/confirm/")
    assert enqueued == []


def test_a_confirmation_cannot_attach_another_customers_tenant(
    client, link, consent_settings, alice_client, team_b
):
    callback(client, admin_consent="True", tenant=TENANT_ID, state=start_state(client, link))
    ConsentedTenantFactory(entra_tenant_id=uuid.UUID(TENANT_ID), groups=[team_b])
    page = alice_client.post(f"/consent/links/{link.pk}/confirm/", follow=True)
    assert b"cannot be attached" in page.content
    assert Tenant.objects.get(pk=link.tenant_id).entra_tenant_id is None
    link.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.TENANT_MISMATCH
    assert AuditEvent.objects.filter(action="consent.binding_refused").count() == 1


def test_a_state_is_bound_to_the_authority_the_admin_was_sent_to(client, link, consent_settings):
    # The admin was sent to /organizations/; meanwhile the customer's tenant ID became known.
    state = start_state(client, link)
    Tenant.objects.filter(pk=link.tenant_id).update(entra_tenant_id=uuid.uuid4())
    response = callback(client, admin_consent="True", tenant=TENANT_ID, state=state)
    assert response.status_code == 400
    assert AuditEvent.objects.filter(
        action="consent.callback_rejected", data__reason="authority_changed"
    ).exists()
    link.refresh_from_db()
    assert link.completed_at is None


@pytest.mark.parametrize(
    "params",
    [
        {"admin_consent": "True", "tenant": "not-a-guid"},
        {"admin_consent": "True"},
        {"tenant": TENANT_ID},
        {"admin_consent": "False", "tenant": TENANT_ID},
        {"admin_consent": "True", "tenant": TENANT_ID, "error_description": "x" * 5000},
        {"admin_consent": "True", "tenant": TENANT_ID + "\x00"},
    ],
    ids=["bad-tenant", "no-tenant", "no-admin-consent", "false", "oversized", "control-chars"],
)
def test_garbage_parameters_get_a_400_and_record_nothing_wrongly(
    client, link, consent_settings, params
):
    state = start_state(client, link)
    response = callback(client, state=state, **params)
    assert response.status_code == 400
    link.refresh_from_db()
    assert link.completed_at is None and link.outcome == "" and link.returned_tenant_id == ""
    link.tenant.refresh_from_db()
    assert link.tenant.entra_tenant_id is None
    assert AuditEvent.objects.filter(action="consent.callback_rejected").count() == 1


def test_a_huge_query_string_is_rejected(client, link, consent_settings):
    state = start_state(client, link)
    response = client.get(
        "/consent/callback/", {"state": state, **{f"p{i}": "x" * 100 for i in range(100)}}
    )
    assert response.status_code == 400


def test_a_repeated_state_is_rejected(client, link, consent_settings):
    state = start_state(client, link)
    response = client.get(f"/consent/callback/?state={state}&state={state}&tenant={TENANT_ID}")
    assert response.status_code == 400


def test_the_callback_needs_no_sign_in_and_is_not_cached(client, link, consent_settings):
    response = callback(client, error="access_denied", state=start_state(client, link))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


def test_consenting_again_for_the_same_tenant_rechecks_it(
    client, customer, alice, consent_settings, django_capture_on_commit_callbacks
):
    Tenant.objects.filter(pk=customer.pk).update(
        entra_tenant_id=TENANT_ID, consent_state=Tenant.ConsentState.MISSING_PERMISSIONS
    )
    link = flow.create_link(tenant=customer, created_by=alice)
    with django_capture_on_commit_callbacks() as enqueued:
        callback(client, admin_consent="True", tenant=TENANT_ID, state=start_state(client, link))
    customer.refresh_from_db()
    assert customer.consent_state == Tenant.ConsentState.PENDING
    assert len(enqueued) == 1


def test_open_the_consent_page_again_goes_back_to_microsoft_with_a_fresh_state(
    client, link, consent_settings
):
    state = start_state(client, link)
    page = callback(client, error="access_denied", error_description=CANCEL, state=state)
    assert b'action="/consent/callback/retry/"' in page.content
    again = client.post("/consent/callback/retry/", {"state": state})
    assert again.status_code == 302
    assert "/v2.0/adminconsent?" in again["Location"]
    # A forged state gets the rejection page, nothing else.
    assert client.post("/consent/callback/retry/", {"state": "forged"}).status_code == 400
