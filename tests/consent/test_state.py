"""The signed `state`: bound to one link and its nonce, expiring, single use."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import signing
from django.utils import timezone

from partner_portal.audit.models import AuditEvent
from partner_portal.consent import flow
from partner_portal.consent.models import ConsentLink
from tests.consent.round_trip import callback, start_state
from tests.factories import ConsentLinkFactory

TENANT_ID = "aaaabbbb-0000-cccc-1111-dddd2222eeee"


def rejected(reason: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="consent.callback_rejected", data__reason=reason))


def test_a_state_from_start_verifies_to_its_link(client, link, consent_settings):
    state = start_state(client, link)
    assert flow.verify_state(state) == link


def test_the_nonce_is_made_once_so_two_tabs_share_it(client, link, consent_settings):
    first = start_state(client, link)
    second = start_state(client, link)
    assert flow.verify_state(first) == flow.verify_state(second) == link
    link.refresh_from_db()
    assert len(link.state_nonce) >= 32


def test_a_missing_state_is_rejected_and_recorded(client, link, consent_settings):
    response = callback(client, admin_consent="True", tenant=TENANT_ID)
    assert response.status_code == 400
    assert len(rejected("missing")) == 1
    link.refresh_from_db()
    assert link.completed_at is None and link.outcome == ""


def test_a_forged_state_is_rejected_and_changes_nothing(client, link, consent_settings):
    start_state(client, link)
    forged = signing.dumps({"l": link.pk, "n": "guess"}, key="not-our-key", salt=flow.STATE_SALT)
    response = callback(client, admin_consent="True", tenant=TENANT_ID, state=forged)
    assert response.status_code == 400
    assert b"could not accept" in response.content
    assert len(rejected("forged")) == 1
    link.refresh_from_db()
    link.tenant.refresh_from_db()
    assert link.completed_at is None and link.returned_tenant_id == ""
    assert link.tenant.entra_tenant_id is None


def test_a_validly_signed_state_with_the_wrong_nonce_is_rejected(client, link, consent_settings):
    start_state(client, link)
    state = signing.dumps({"l": link.pk, "n": "another-nonce"}, salt=flow.STATE_SALT)
    assert callback(client, admin_consent="True", tenant=TENANT_ID, state=state).status_code == 400
    assert len(rejected("forged")) == 1


def test_a_state_for_another_link_cannot_complete_this_one(client, link, consent_settings):
    other = ConsentLinkFactory(tenant=link.tenant)
    state = start_state(client, other)
    tampered = signing.dumps(
        {"l": link.pk, "n": signing.loads(state, salt=flow.STATE_SALT)["n"]}, salt=flow.STATE_SALT
    )
    start_state(client, link)
    assert (
        callback(client, admin_consent="True", tenant=TENANT_ID, state=tampered).status_code == 400
    )


def test_a_state_for_a_deleted_link_is_rejected(client, link, consent_settings):
    state = start_state(client, link)
    ConsentLink.objects.filter(pk=link.pk).delete()
    assert callback(client, admin_consent="True", tenant=TENANT_ID, state=state).status_code == 400
    assert len(rejected("unknown_link")) == 1


def test_a_replayed_state_is_rejected(
    client, link, consent_settings, django_capture_on_commit_callbacks
):
    state = start_state(client, link)
    with django_capture_on_commit_callbacks():
        first = callback(client, admin_consent="True", tenant=TENANT_ID, state=state)
    assert first.status_code == 200
    second = callback(client, admin_consent="True", tenant=TENANT_ID, state=state)
    assert second.status_code == 400
    assert b"already been used" in second.content
    assert len(rejected("replayed")) == 1
    assert AuditEvent.objects.filter(action="consent.link_completed").count() == 1


def test_an_expired_state_is_rejected(client, link, consent_settings):
    state = start_state(client, link)
    later = timezone.now() + timedelta(seconds=consent_settings.CONSENT_STATE_MAX_AGE_SECONDS + 5)
    with time_machine.travel(later):
        response = callback(client, admin_consent="True", tenant=TENANT_ID, state=state)
    assert response.status_code == 400
    assert b"took too long" in response.content
    assert len(rejected("expired")) == 1
    link.refresh_from_db()
    assert link.completed_at is None


def test_a_state_just_inside_its_max_age_is_accepted(client, link, consent_settings):
    state = start_state(client, link)
    later = timezone.now() + timedelta(seconds=consent_settings.CONSENT_STATE_MAX_AGE_SECONDS - 30)
    with time_machine.travel(later):
        assert flow.verify_state(state) == link


def test_a_state_for_a_link_revoked_meanwhile_is_rejected(client, link, alice, consent_settings):
    state = start_state(client, link)
    flow.revoke_link(link=link, actor=alice)
    assert callback(client, admin_consent="True", tenant=TENANT_ID, state=state).status_code == 400
    assert len(rejected("revoked")) == 1


def test_a_state_for_a_link_that_expired_meanwhile_is_rejected(client, link, consent_settings):
    state = start_state(client, link)
    ConsentLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert callback(client, admin_consent="True", tenant=TENANT_ID, state=state).status_code == 400
    assert len(rejected("link_expired")) == 1


@pytest.mark.parametrize("garbage", ["", "x", "a" * 600, "eyJsIjoxfQ:1abc:def"])
def test_garbage_states_are_rejected_without_errors(client, link, consent_settings, garbage):
    response = callback(client, admin_consent="True", tenant=TENANT_ID, state=garbage)
    assert response.status_code == 400
