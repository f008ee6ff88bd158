from __future__ import annotations

from urllib.parse import parse_qs, urlsplit


def start_state(client, link) -> str:
    """POST the landing page's button; return the `state` sent to Microsoft."""
    response = client.post(f"/consent/{link.token}/start/")
    assert response.status_code == 302, response.content
    return parse_qs(urlsplit(response["Location"]).query)["state"][0]


def callback(client, **params):
    return client.get("/consent/callback/", params)
