"""Errors people meet: branded pages for mistyped consent links and unknown staff pages
(with DEBUG on, as in the demo, and off), the favicon."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

from partner_portal.consent import flow
from partner_portal.error_pages import bad_request, permission_denied, server_error

TAMPERED = [
    "/consent/not-a-real-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/",
    "/consent/abc%00def/",
    "/consent/abc.def/",
    "/consent/%ED%A0%80/",
    "/consent/a/b/c/d",
]


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize("url", TAMPERED)
def test_a_tampered_consent_link_gets_the_branded_page(client, db, settings, debug, url):
    settings.DEBUG = debug
    response = client.get(url)
    assert response.status_code == 404
    html = response.content.decode()
    assert "This page doesn’t exist" in html
    assert settings.MSP_NAME in html
    # Neither Django's debug page nor its URL patterns, nor the staff navigation.
    assert "Using the URLconf" not in html and "partner_portal.urls" not in html
    assert "Consent links" not in html


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
def test_starting_from_an_unknown_link_gets_the_branded_page(client, db, settings, debug):
    settings.DEBUG = debug
    response = client.post(reverse("consent:start", kwargs={"token": "x" * 43}))
    assert response.status_code == 404
    assert "This page doesn’t exist" in response.content.decode()


def test_a_link_that_lost_its_last_slash_still_opens(client, tenant_a, alice):
    link = flow.create_link(tenant=tenant_a, created_by=alice)
    response = client.get(f"/consent/{link.token}")
    assert response.status_code == 302
    assert response["Location"] == reverse("consent:landing", kwargs={"token": link.token})


def test_a_revoked_link_still_says_so_with_410(client, tenant_a, alice):
    link = flow.create_link(tenant=tenant_a, created_by=alice)
    flow.revoke_link(link=link, actor=alice)
    response = client.get(reverse("consent:landing", kwargs={"token": link.token}))
    assert response.status_code == 410
    assert "withdrawn" in response.content.decode()


@override_settings(DEBUG=False)
def test_an_unknown_staff_page_is_branded_with_the_navigation(alice_client):
    response = alice_client.get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "This page doesn’t exist" in html
    assert "Go to the incident list" in html and "Consent links" in html


@override_settings(DEBUG=False)
def test_another_users_incident_is_the_branded_404(client, bob, tenant_a):
    from tests.incidents.dashboard_data import make_incident

    incident = make_incident(tenant_a)
    client.force_login(bob)
    response = client.get(reverse("incidents:detail", kwargs={"incident_id": incident.pk}))
    assert response.status_code == 404
    assert "This page doesn’t exist" in response.content.decode()


def test_400_403_and_500_are_branded(rf, db):
    request = rf.get("/")
    for view, status in ((bad_request, 400), (permission_denied, 403)):
        response = view(request, Exception())
        assert response.status_code == status
        assert f"Error {status}" in response.content.decode()
    response = server_error(request)
    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()


def test_the_handlers_are_the_branded_ones():
    from partner_portal import urls

    assert urls.handler404 == "partner_portal.error_pages.page_not_found"
    assert urls.handler500 == "partner_portal.error_pages.server_error"


def test_the_favicon_is_served_to_everyone(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert "favicon" in response["Location"] and response["Location"].endswith(".svg")
    page = client.get(reverse("login")).content.decode()
    assert 'rel="icon"' in page
