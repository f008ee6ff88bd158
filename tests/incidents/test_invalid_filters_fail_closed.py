"""Invalid filters fail closed (nothing listed, counted or exported but the error), and dates
out of range are a form error, never a 500 (L3)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.incidents import dashboard_data

contoso_and_fabrikam = dashboard_data.contoso_and_fabrikam

INVALID = [
    {"severity": "high"},  # Microsoft's spelling is "High"
    {"tenant": "999"},
    {"tenant": "not-a-number"},
    {"status": "Open"},
    {"created_to": "9999-12-31"},
    {"updated_to": "9999-12-31"},
    {"created_from": "0001-01-01"},
    {"updated_from": "31-12-2026"},
    {"created_to": "99999-01-01"},
]
IDS = ["-".join(f"{k}={v}" for k, v in params.items()) for params in INVALID]


@pytest.mark.parametrize("params", INVALID, ids=IDS)
def test_an_invalid_filter_lists_nothing_but_the_error(alice_client, contoso_and_fabrikam, params):
    response = alice_client.get(reverse("incidents:list"), params)
    assert response.status_code == 200
    assert response.context["filter"].form.errors
    assert list(response.context["page"].incidents) == []
    assert response.context["count"] == 0
    assert b'role="alert"' in response.content or b"error" in response.content


@pytest.mark.parametrize("params", INVALID, ids=IDS)
def test_an_invalid_filter_exports_nothing_but_the_error(
    alice_client, contoso_and_fabrikam, params
):
    response = alice_client.get(reverse("incidents:export"), params)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert b"Invalid filter" in response.content
    assert b"Ransomware" not in response.content


@pytest.mark.parametrize("params", INVALID, ids=IDS)
def test_an_invalid_filter_counts_nothing_new(alice_client, contoso_and_fabrikam, params):
    since = (timezone.now() - timedelta(days=3650)).isoformat()
    response = alice_client.get(reverse("incidents:new_count"), {**params, "since": since})
    assert response.status_code == 200
    assert response.content.strip() == b""


def test_the_last_valid_day_still_filters(alice_client, contoso_and_fabrikam):
    response = alice_client.get(reverse("incidents:list"), {"created_to": "9998-12-31"})
    assert not response.context["filter"].form.errors
    assert response.context["count"] == 4
