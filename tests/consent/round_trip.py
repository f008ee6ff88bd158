"""Drive the consent round trip over HTTP: portal → devcloud's consent page → callback, and
its two ends alone (the `state` the portal sends, a callback as Microsoft would make it)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests


def to_microsoft(client, link) -> str:
    """The customer opens the link and presses "Continue to Microsoft": the URL they land on."""
    landing = client.get(f"/consent/{link.token}/")
    assert landing.status_code == 200, landing.content
    start = client.post(f"/consent/{link.token}/start/")
    assert start.status_code == 302
    return start["Location"]


def answer_consent_page(http: requests.Session, url: str, *, account: str, action: str) -> str:
    """GET devcloud's consent page, submit its form; return the redirect back to the portal."""
    page = http.get(url)
    assert page.status_code == 200, page.text
    assert "Continue" not in page.text  # it is devcloud's page, not ours
    response = http.post(url, data={"account": account, "action": action}, allow_redirects=False)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def back_to_portal(client, location: str, *, public_base_url: str):
    """Follow Microsoft's redirect into the portal (the Django test client)."""
    assert location.startswith(public_base_url + "/consent/callback/"), location
    parts = urlsplit(location)
    return client.get(f"{parts.path}?{parts.query}")


def consent(client, http, link, *, tid: str, public_base_url: str, action: str = "accept"):
    url = to_microsoft(client, link)
    location = answer_consent_page(http, url, account=f"{tid}|admin", action=action)
    return back_to_portal(client, location, public_base_url=public_base_url)


def start_state(client, link) -> str:
    """POST the landing page's button; return the `state` sent to Microsoft."""
    response = client.post(f"/consent/{link.token}/start/")
    assert response.status_code == 302, response.content
    return parse_qs(urlsplit(response["Location"]).query)["state"][0]


def callback(client, **params):
    return client.get("/consent/callback/", params)
