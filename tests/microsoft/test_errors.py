"""Error classification: every AADSTS code we know, statuses, and odd bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from partner_portal.microsoft import errors

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "microsoft"


def body(code: int, error: str = "invalid_client") -> dict:
    return {
        "error": error,
        "error_description": f"AADSTS{code}: Something happened.\r\nTrace ID: x\r\nCorrelation: y",
        "error_codes": [code],
    }


@pytest.mark.parametrize(("code", "cls"), sorted(errors.AADSTS_ERRORS.items()))
def test_every_known_aadsts_code_is_classified(code, cls):
    exc = errors.from_token_error(body(code), status=400)
    assert type(exc) is cls
    assert exc.code == str(code)
    assert exc.message == f"AADSTS{code}: Something happened."
    assert exc.permanent


@pytest.mark.parametrize("cls", sorted(errors.ALL_ERRORS.values(), key=lambda c: c.__name__))
def test_every_error_class_has_a_title_and_a_fix_for_staff(cls):
    assert cls.title and cls.fix
    assert errors.describe(cls.__name__) is cls


def test_an_unknown_kind_is_described_as_a_generic_error():
    assert errors.describe("NoSuchThing") is errors.MicrosoftError


def test_consent_missing_codes_mean_consent_required():
    assert isinstance(
        errors.from_token_error(body(700016, "unauthorized_client")), errors.ConsentRequired
    )
    assert isinstance(errors.from_token_error(body(7000229), status=401), errors.ConsentRequired)


def test_microsofts_real_error_bodies_are_classified():
    consent = json.loads((FIXTURES / "entra-token-error-aadsts700016.json").read_text())
    secret = json.loads((FIXTURES / "entra-token-error-aadsts7000215.json").read_text())
    tenant = json.loads((FIXTURES / "entra-discovery-error-aadsts90002.json").read_text())
    assert isinstance(errors.from_token_error(consent, status=400), errors.ConsentRequired)
    assert isinstance(errors.from_token_error(secret, status=401), errors.CredentialInvalid)
    assert isinstance(errors.from_token_error(tenant, status=400), errors.TenantNotFound)


def test_the_message_keeps_only_the_first_line_without_trace_ids():
    exc = errors.from_token_error(body(7000215), status=401)
    assert "Trace ID" not in exc.message and "Correlation" not in exc.message


def test_a_429_is_throttled_with_its_retry_after():
    exc = errors.from_token_error({"error": "temporarily_unavailable"}, status=429, retry_after=7)
    assert isinstance(exc, errors.Throttled)
    assert exc.retry_after == 7
    assert not exc.permanent


def test_a_429_without_retry_after_waits_a_minute():
    exc = errors.from_token_error({"error": "x"}, status=429)
    assert isinstance(exc, errors.Throttled) and exc.retry_after == 60


def test_5xx_and_temporarily_unavailable_are_transient():
    assert type(errors.from_token_error({"error": "server_error"}, status=503)) is errors.Transient
    unavailable = errors.from_token_error({"error": "temporarily_unavailable"}, status=400)
    assert type(unavailable) is errors.Transient


def test_an_unknown_code_is_a_permanent_generic_error_with_its_code():
    exc = errors.from_token_error(body(70011, "invalid_scope"), status=400)
    assert type(exc) is errors.MicrosoftError
    assert exc.code == "70011" and exc.permanent


def test_a_code_only_in_the_text_is_still_found():
    exc = errors.from_token_error(
        {"error": "invalid_client", "error_description": "AADSTS7000222: keys are expired."}
    )
    assert isinstance(exc, errors.CredentialInvalid) and exc.code == "7000222"


def test_garbage_error_codes_do_not_crash_the_classifier():
    exc = errors.from_token_error({"error_codes": ["x", None, {}], "error": "weird"})
    assert type(exc) is errors.MicrosoftError
    assert exc.message == "weird"


def test_a_200_without_a_token_or_an_error_is_transient():
    # A truncated answer MSAL could still parse: nothing says consent is missing.
    assert type(errors.from_token_error({"token_type": "Bearer"}, status=200)) is errors.Transient
