"""Sign-in with Microsoft against devcloud, through real MSAL over TLS: the round trip, the
role mapping at every sign-in, and what is refused (replayed, tampered or expired codes and
states, wrong nonce, guests, no role, MFA, groups overage)."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from partner_portal.accounts.models import EntraIdentity
from partner_portal.audit.models import AuditEvent
from tests.entra_fixture import ROLE_A, ROLE_B, finish, sign_in, start

pytestmark = pytest.mark.integration

User = get_user_model()


def signed_in_user(client):
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


def refused(response, text: str) -> None:
    assert response.status_code == 403
    html = response.content.decode()
    assert "You can&#x27;t sign in to the portal" in html or "can't sign in" in html
    assert text in html, html
    assert "_auth_user_id" not in response.client.session


@pytest.mark.django_db
def test_a_technician_signs_in_and_is_created_matched_by_oid(client, entra):
    tech = entra.add_user("ada@msp.onmicrosoft.com", display_name="Ada Lovelace", roles=[ROLE_A])
    response = sign_in(client, entra, tech)
    assert response.status_code == 302
    assert response["Location"] == reverse("incidents:list")
    user = signed_in_user(client)
    link = EntraIdentity.objects.get(user=user)
    assert str(link.object_id) == tech["object_id"]
    assert str(link.tenant_id) == entra.tenant_id
    assert (user.first_name, user.last_name, user.email) == ("Ada", "Lovelace", tech["email"])
    assert [g.name for g in user.groups.all()] == ["team-a"]
    assert not user.has_usable_password() and not user.is_staff and not user.is_superuser
    assert client.get(reverse("incidents:list")).status_code == 200
    event = AuditEvent.objects.get(action="signed_in_with_entra")
    assert (event.actor, event.target, event.data) == (
        user,
        tech["user_principal_name"],
        {"roles": [ROLE_A]},
    )

    # The next sign-in finds the same user by oid, even with a new name and e-mail.
    entra.devcloud.update_user(
        entra.tenant_id, tech["object_id"], display_name="Ada King", email="ada.k@msp.example"
    )
    client.logout()
    sign_in(client, entra, tech)
    again = signed_in_user(client)
    assert again.pk == user.pk and User.objects.count() == 1
    assert (again.last_name, again.email) == ("King", "ada.k@msp.example")


@pytest.mark.django_db
def test_a_local_user_with_the_same_name_or_email_is_never_taken_over(client, entra, alice):
    tech = entra.add_user("alice", email=alice.email, roles=[ROLE_B])
    sign_in(client, entra, tech)
    user = signed_in_user(client)
    assert user.pk != alice.pk
    assert user.username == f"entra-{tech['object_id']}"
    assert [g.name for g in alice.groups.all()] == ["team-a"]


@pytest.mark.django_db
def test_the_mapping_is_reapplied_at_every_sign_in(client, entra, tenant_a, tenant_b):
    tech = entra.add_user("grace@msp.onmicrosoft.com", roles=[ROLE_A])
    sign_in(client, entra, tech)
    user = signed_in_user(client)
    assert client.get(reverse("tenants:detail", args=[tenant_a.pk])).status_code == 200
    assert client.get(reverse("tenants:detail", args=[tenant_b.pk])).status_code == 404

    # Moved from team A to team B in Entra: the next sign-in follows.
    entra.set_roles(tech, [ROLE_B])
    client.logout()
    sign_in(client, entra, tech)
    assert [g.name for g in user.groups.all()] == ["team-b"]
    assert client.get(reverse("tenants:detail", args=[tenant_a.pk])).status_code == 404
    assert client.get(reverse("tenants:detail", args=[tenant_b.pk])).status_code == 200

    # Role removed in Entra: refused at the next sign-in, and the groups are gone too.
    entra.set_roles(tech, [])
    client.logout()
    refused(sign_in(client, entra, tech), "Ask your administrator")
    assert list(user.groups.all()) == []
    event = AuditEvent.objects.get(action="entra_sign_in_refused")
    assert (event.target, event.data) == ("grace@msp.onmicrosoft.com", {"reason": "no_role"})
    assert EntraIdentity.objects.get(user=user).roles == []


@pytest.mark.django_db
def test_groups_claims_map_to_portal_groups(client, entra, settings):
    group_id = str(uuid.uuid4())
    settings.ENTRA_GROUP_GROUPS = {group_id.upper(): "team-b"}
    tech = entra.add_user("linus@msp.onmicrosoft.com", groups=[group_id, str(uuid.uuid4())])
    sign_in(client, entra, tech)
    assert [g.name for g in signed_in_user(client).groups.all()] == ["team-b"]


@pytest.mark.django_db
def test_groups_overage_is_refused_when_groups_are_mapped(client, entra, settings):
    many = [str(uuid.uuid4()) for _ in range(201)]  # more than a token carries
    settings.ENTRA_GROUP_GROUPS = {many[0]: "team-a"}
    tech = entra.add_user("many@msp.onmicrosoft.com", groups=many, roles=[ROLE_B])
    refused(sign_in(client, entra, tech), "more Entra groups than fit")

    # Roles alone don't depend on the groups claim: then the overage does not matter.
    settings.ENTRA_GROUP_GROUPS = {}
    assert sign_in(client, entra, tech).status_code == 302
    assert [g.name for g in signed_in_user(client).groups.all()] == ["team-b"]


@pytest.mark.django_db
def test_no_mapped_role_is_refused_with_ask_your_administrator(client, entra):
    tech = entra.add_user("nobody@msp.onmicrosoft.com", roles=["Some.Other.Role"])
    refused(sign_in(client, entra, tech), "Ask your administrator")
    assert not User.objects.exists()


@pytest.mark.django_db
def test_a_guest_of_the_msp_tenant_is_refused(client, entra):
    other = entra.devcloud.create_tenant(domain="fabrikam.onmicrosoft.com")
    guest = entra.add_user(
        "eve_fabrikam.com#EXT#@msp.onmicrosoft.com",
        home_tenant_id=other["tenant_id"],
        roles=[ROLE_A],
    )
    refused(sign_in(client, entra, guest), "Guest accounts cannot sign in")


@pytest.mark.django_db
def test_a_user_of_another_tenant_is_refused(client, entra):
    other = entra.devcloud.create_tenant(domain="fabrikam.onmicrosoft.com")
    stranger = entra.devcloud.create_user(
        other["tenant_id"],
        "mallory@fabrikam.onmicrosoft.com",
        app_roles={entra.client_id: [ROLE_A]},  # the portal's app is multi-tenant
    )
    # The portal's request, completed at the tenant-independent endpoint by someone else.
    auth_uri = start(client).replace(f"/{entra.tenant_id}/", "/organizations/")
    refused(finish(client, entra.authorize(auth_uri, stranger)), "AADSTS9002313")
    assert not User.objects.exists()


@pytest.mark.django_db
def test_mfa_is_required_when_the_setting_says_so(client, entra, settings):
    settings.ENTRA_REQUIRE_MFA = True
    tech = entra.add_user("pwd-only@msp.onmicrosoft.com", roles=[ROLE_A], mfa=False)
    refused(sign_in(client, entra, tech), "did not use multi-factor authentication")
    entra.devcloud.update_user(entra.tenant_id, tech["object_id"], mfa=True)
    assert sign_in(client, entra, tech).status_code == 302


@pytest.mark.django_db
def test_a_replayed_callback_is_refused(client, entra):
    tech = entra.add_user("ada@msp.onmicrosoft.com", roles=[ROLE_A])
    location = entra.authorize(start(client), tech)
    assert finish(client, location).status_code == 302
    client.logout()
    refused(finish(client, location), "not valid any more")


@pytest.mark.django_db
def test_a_replayed_code_with_a_new_state_is_refused_by_microsoft(client, entra):
    tech = entra.add_user("ada@msp.onmicrosoft.com", roles=[ROLE_A])
    first = entra.authorize(start(client), tech)
    assert finish(client, first).status_code == 302
    client.logout()
    # An attacker pairs the used code with a fresh flow of their own.
    second = dict(parse_qsl(urlsplit(entra.authorize(start(client), tech)).query))
    second["code"] = dict(parse_qsl(urlsplit(first).query))["code"]
    refused(client.get(reverse("entra_callback"), second), "AADSTS54005")


@pytest.mark.django_db
def test_a_tampered_state_is_refused(client, entra):
    tech = entra.add_user("ada@msp.onmicrosoft.com", roles=[ROLE_A])
    params = dict(parse_qsl(urlsplit(entra.authorize(start(client), tech)).query))
    params["state"] = params["state"][:-1] + ("A" if params["state"][-1] != "A" else "B")
    refused(client.get(reverse("entra_callback"), params), "not valid any more")


@pytest.mark.django_db
def test_a_callback_without_a_started_sign_in_is_refused(client, entra):
    refused(client.get(reverse("entra_callback"), {"code": "x", "state": "y"}), "not valid")
    assert not AuditEvent.objects.exists()  # anyone can cause this: not worth a row


@pytest.mark.django_db
def test_a_sign_in_that_took_too_long_is_refused(client, entra, settings):
    tech = entra.add_user("ada@msp.onmicrosoft.com", roles=[ROLE_A])
    location = entra.authorize(start(client), tech)
    session = client.session
    for flow in session["entra_flows"].values():
        flow["started"] -= settings.ENTRA_SIGN_IN_MAX_SECONDS + 1
    session.save()
    refused(finish(client, location), "not valid any more")


@pytest.mark.django_db
def test_an_expired_code_is_refused(client, entra):
    tech = entra.add_user("ada@msp.onmicrosoft.com", roles=[ROLE_A])
    location = entra.authorize(start(client), tech)
    entra.devcloud.expire_codes()
    refused(finish(client, location), "AADSTS70008")


@pytest.mark.django_db
def test_a_tampered_code_is_refused(client, entra):
    tech = entra.add_user("ada@msp.onmicrosoft.com", roles=[ROLE_A])
    params = dict(parse_qsl(urlsplit(entra.authorize(start(client), tech)).query))
    params["code"] = params["code"][::-1]
    refused(client.get(reverse("entra_callback"), params), "AADSTS9002313")


@pytest.mark.django_db
def test_a_wrong_nonce_is_refused(client, entra):
    tech = entra.add_user("ada@msp.onmicrosoft.com", roles=[ROLE_A])
    location = entra.authorize(start(client), tech)
    session = client.session
    for flow in session["entra_flows"].values():
        flow["flow"]["nonce"] = "not-the-nonce-we-sent"
    session.save()
    refused(finish(client, location), "did not match this sign-in")


@pytest.mark.django_db
def test_cancel_at_microsoft_is_refused_with_microsofts_reason(client, entra):
    tech = entra.add_user("ada@msp.onmicrosoft.com", roles=[ROLE_A])
    refused(finish(client, entra.authorize(start(client), tech, action="cancel")), "AADSTS65004")


@pytest.mark.django_db
def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(client, entra):
    tech = entra.add_user("ada@msp.onmicrosoft.com", roles=[ROLE_A])
    target = reverse("tenants:list")
    response = finish(client, entra.authorize(start(client, next=target), tech))
    assert response["Location"] == target
    client.logout()
    response = finish(client, entra.authorize(start(client, next="https://evil.example/"), tech))
    assert response["Location"] == reverse("incidents:list")


@pytest.mark.django_db
def test_sign_out_ends_the_session_and_offers_microsofts_sign_out(client, entra):
    tech = entra.add_user("ada@msp.onmicrosoft.com", roles=[ROLE_A])
    sign_in(client, entra, tech)
    response = client.post(reverse("logout"))
    assert response.status_code == 200
    html = response.content.decode()
    assert f"{entra.devcloud.base_url}/{entra.tenant_id}/oauth2/v2.0/logout?" in html
    assert "post_logout_redirect_uri=http%3A%2F%2F" in html
    assert client.get(reverse("incidents:list")).status_code == 302


@pytest.mark.django_db
def test_password_mode_has_no_microsoft_sign_in(client, entra, settings):
    settings.SIGN_IN_MODE = "password"
    assert client.get(reverse("entra_login")).status_code == 404
    assert client.get(reverse("entra_callback"), {"state": "x"}).status_code == 404
    assert "Sign in with Microsoft" not in client.get(reverse("login")).content.decode()


@pytest.mark.django_db
def test_a_microsoft_session_ends_when_the_mode_becomes_password(client, entra, settings):
    tech = entra.add_user("ada@msp.onmicrosoft.com", roles=[ROLE_A])
    sign_in(client, entra, tech)
    assert client.get(reverse("incidents:list")).status_code == 200
    settings.SIGN_IN_MODE = "password"
    assert client.get(reverse("incidents:list")).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 503},
        {"kind": "malformed"},
        {"kind": "reset"},
    ],
)
def test_microsoft_failing_at_redemption_is_a_clear_page_not_an_error(client, entra, fault):
    tech = entra.add_user("ada@msp.onmicrosoft.com", roles=[ROLE_A])
    location = entra.authorize(start(client), tech)
    entra.devcloud.add_fault(endpoint="token", count=1, **fault)
    refused(finish(client, location), "did not answer")
