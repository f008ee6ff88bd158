"""Claim checks on decoded tokens (no signature: the real-Microsoft path)."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from partner_portal.microsoft import claims, errors

TENANT = str(uuid.uuid4())
RESOURCE = "https://api.security.microsoft.com"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_token(**overrides) -> str:
    now = int(time.time())
    payload = {
        "aud": RESOURCE,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "tid": TENANT,
        "roles": ["Incident.Read.All"],
        "idtyp": "app",
        "ver": "1.0",
    }
    payload.update(overrides)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, KEY, algorithm="RS256")


def check(token: str, required=("Incident.Read.All",), tenant_id: str = TENANT) -> dict:
    return claims.check_token(
        token,
        tenant_id=tenant_id,
        resource=RESOURCE,
        required_roles=list(required),
        verify_signature=False,
    )


def test_a_good_token_returns_its_claims():
    assert check(make_token())["tid"] == TENANT


def test_the_tenant_id_is_compared_case_insensitively():
    assert check(make_token(tid=TENANT.upper()))["roles"] == ["Incident.Read.All"]


def test_a_token_for_another_tenant_is_a_mismatch():
    with pytest.raises(errors.TokenMismatch, match="issued for tenant"):
        check(make_token(tid=str(uuid.uuid4())))


def test_a_token_without_tid_is_a_mismatch():
    with pytest.raises(errors.TokenMismatch, match="tid"):
        check(make_token(tid=None))


def test_a_token_for_another_resource_is_a_mismatch():
    with pytest.raises(errors.TokenMismatch, match="not for"):
        check(make_token(aud="https://graph.microsoft.com"))


def test_a_v2_token_for_an_app_guid_says_so_not_that_the_tenant_differs():
    app = str(uuid.uuid4())
    with pytest.raises(errors.TokenAudienceMismatch) as info:
        check(make_token(aud=app, ver="2.0"))
    assert info.value.message == f"The access token is a v2.0 token for {app}, not for {RESOURCE}."
    assert "tenant" not in info.value.title
    assert errors.describe("TokenAudienceMismatch").title == info.value.title


def test_an_audience_with_a_trailing_slash_is_accepted():
    assert check(make_token(aud=RESOURCE + "/"))


def test_an_expired_token_is_a_mismatch():
    past = int(time.time()) - 3600
    with pytest.raises(errors.TokenMismatch, match="expired"):
        check(make_token(exp=past, iat=past - 3600, nbf=past - 3600))


def test_a_token_without_roles_misses_the_required_permission():
    with pytest.raises(errors.MissingPermissions) as info:
        check(make_token(roles=None))
    assert info.value.missing == ["Incident.Read.All"]
    assert info.value.granted == []


def test_a_token_with_other_roles_misses_the_required_permission():
    with pytest.raises(errors.MissingPermissions) as info:
        check(make_token(roles=["User.Read.All"]))
    assert info.value.missing == ["Incident.Read.All"]
    assert info.value.granted == ["User.Read.All"]


def test_the_plural_typo_does_not_count_as_the_permission():
    with pytest.raises(errors.MissingPermissions):
        check(make_token(roles=["Incidents.Read.All"]))


def test_readwrite_satisfies_read_but_read_does_not_satisfy_readwrite():
    assert check(make_token(roles=["Incident.ReadWrite.All"]))
    with pytest.raises(errors.MissingPermissions) as info:
        check(make_token(roles=["Incident.Read.All"]), required=["Incident.ReadWrite.All"])
    assert info.value.missing == ["Incident.ReadWrite.All"]


def test_garbage_is_a_bad_response():
    with pytest.raises(errors.BadResponse):
        check("not-a-jwt")


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_microsofts_clock_up_to_five_minutes_ahead_is_accepted(claim):
    ahead = int(time.time()) + 280
    assert check(make_token(**{claim: ahead}))["tid"] == TENANT


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_a_token_from_further_in_the_future_is_transient_clock_skew(claim):
    ahead = int(time.time()) + 900
    with pytest.raises(errors.Transient, match="clocks disagree"):
        check(make_token(**{claim: ahead}))


def test_signing_key_clients_are_kept_for_the_newest_configurations_only(monkeypatch):
    monkeypatch.setattr(claims, "_jwk_clients", {})
    monkeypatch.setattr(claims, "_MAX_JWK_CLIENTS", 3)
    made = {}
    for n in range(5):
        url = f"https://login.example/{n}/v2.0/.well-known/openid-configuration"
        made[url] = jwt.PyJWKClient(f"https://login.example/{n}/keys")
        claims._remember(url, made[url])
    assert list(claims._jwk_clients) == list(made)[2:]
    # One used again is the newest: the oldest other one goes first.
    claims._remember(list(made)[2], made[list(made)[2]])
    claims._remember("https://login.example/5/conf", jwt.PyJWKClient("https://login.example/k"))
    assert list(claims._jwk_clients) == [
        list(made)[4],
        list(made)[2],
        "https://login.example/5/conf",
    ]


def test_expired_signing_key_clients_are_dropped(monkeypatch):
    monkeypatch.setattr(claims, "_jwk_clients", {})
    claims._remember("https://login.example/old", jwt.PyJWKClient("https://login.example/k"))
    later = time.monotonic() + claims._DISCOVERY_TTL_SECONDS + 1
    monkeypatch.setattr(claims.time, "monotonic", lambda: later)
    claims._remember("https://login.example/new", jwt.PyJWKClient("https://login.example/k"))
    assert list(claims._jwk_clients) == ["https://login.example/new"]
