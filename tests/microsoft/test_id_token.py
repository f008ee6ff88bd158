"""ID token validation for staff sign-in, with keys made here: every claim that can be wrong
is refused, and the identity comes from the claims that are right."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from partner_portal.microsoft.signin import SignInRefused, nonce_sent, validate_id_token

TENANT = str(uuid.uuid4())
CLIENT = str(uuid.uuid4())
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
NONCE = "flow-nonce-kept-in-the-session"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OID = str(uuid.uuid4())


def make_token(key=KEY, **overrides) -> str:
    now = int(time.time())
    claims = {
        "aud": CLIENT,
        "iss": ISSUER,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "amr": ["pwd", "mfa"],
        "name": "Ada Lovelace",
        "nonce": nonce_sent(NONCE),
        "oid": OID,
        "preferred_username": "ada@msp.example",
        "email": "ada@msp.example",
        "roles": ["Portal.TeamA"],
        "groups": ["0F6F1B9E-0000-4000-8000-000000000001"],
        "sub": "pairwise",
        "tid": TENANT,
        "ver": "2.0",
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


def validate(token: str, **kw):
    options = {"client_id": CLIENT, "tenant_id": TENANT, "issuer": ISSUER, "nonce": NONCE}
    return validate_id_token(token, key=KEY.public_key(), **(options | kw))


def test_a_good_token_gives_the_identity():
    identity = validate(make_token())
    assert identity.object_id == OID and identity.tenant_id == TENANT
    assert identity.username == "ada@msp.example" and identity.name == "Ada Lovelace"
    assert identity.roles == ["Portal.TeamA"]
    assert identity.groups == ["0f6f1b9e-0000-4000-8000-000000000001"]
    assert identity.amr == ["pwd", "mfa"] and not identity.groups_overage


@pytest.mark.parametrize(
    ("build", "reason", "text"),
    # Built when the test runs, not at collection: a long run would age the time-based cases.
    [
        (lambda: make_token(key=OTHER_KEY), "token", "signature"),
        (
            lambda: make_token(iss=f"https://login.microsoftonline.com/{uuid.uuid4()}/v2.0"),
            "token",
            "issued by",
        ),
        (lambda: make_token(iss="https://evil.example/v2.0"), "token", "issued by"),
        (lambda: make_token(aud=str(uuid.uuid4())), "token", "another application"),
        (lambda: make_token(nonce=nonce_sent("another sign-in")), "token", "nonce"),
        (lambda: make_token(nonce=NONCE), "token", "nonce"),  # the raw nonce, not what MSAL sent
        (lambda: make_token(nonce=None), "token", "'nonce'"),
        (lambda: make_token(exp=int(time.time()) - 600), "token", "expired"),
        (lambda: make_token(nbf=int(time.time()) + 600), "token", "not valid yet"),
        (lambda: make_token(oid=None), "token", "'oid'"),
        (lambda: make_token(tid=None), "token", "'tid'"),
        (lambda: make_token(tid=str(uuid.uuid4())), "tenant", "another organization"),
        (lambda: make_token(idp=f"https://sts.windows.net/{uuid.uuid4()}/"), "guest", "Guest"),
    ],
    ids=[
        "signed-by-another-key",
        "issuer-of-another-tenant",
        "foreign-issuer",
        "audience-of-another-app",
        "nonce-of-another-sign-in",
        "unhashed-nonce",
        "no-nonce",
        "expired",
        "not-yet-valid",
        "no-oid",
        "no-tid",
        "user-of-another-tenant",
        "guest",
    ],
)
def test_a_wrong_token_is_refused(build, reason, text):
    with pytest.raises(SignInRefused) as refused:
        validate(build())
    assert refused.value.reason == reason
    assert text in refused.value.message


def test_a_token_with_another_algorithm_is_refused():
    token = jwt.encode(
        jwt.decode(make_token(), options={"verify_signature": False}),
        "a-shared-secret-of-32-bytes-or-more!",
        algorithm="HS256",
    )
    with pytest.raises(SignInRefused, match="could not be read|signature"):
        validate(token)


def test_a_tampered_payload_is_refused():
    header, payload, signature = make_token().split(".")
    forged = jwt.encode(
        jwt.decode(make_token(roles=["Portal.Admins"]), options={"verify_signature": False}),
        OTHER_KEY,
        algorithm="RS256",
    ).split(".")[1]
    with pytest.raises(SignInRefused, match="signature"):
        validate(f"{header}.{forged}.{signature}")


def test_mfa_is_checked_only_when_required():
    token = make_token(amr=["pwd"])
    assert validate(token).amr == ["pwd"]
    with pytest.raises(SignInRefused) as refused:
        validate(token, require_mfa=True)
    assert refused.value.reason == "mfa"
    assert validate(make_token(), require_mfa=True)


def test_the_own_tenants_idp_is_not_a_guest():
    assert validate(make_token(idp=f"https://sts.windows.net/{TENANT}/")).object_id == OID


def test_groups_overage_is_reported():
    identity = validate(
        make_token(
            groups=None,
            _claim_names={"groups": "src1"},
            _claim_sources={"src1": {"endpoint": "https://graph.windows.net/x/getMemberObjects"}},
        )
    )
    assert identity.groups_overage and identity.groups == []


@pytest.mark.parametrize(
    ("hostile", "roles"),
    [
        ({"roles": "Portal.TeamA"}, []),  # a string, not a list: no role
        ({"roles": [1, None, {"x": 1}, "Portal.TeamB"]}, ["Portal.TeamB"]),
        ({"name": "\x00\ud800" * 200}, ["Portal.TeamA"]),
        ({"preferred_username": None, "name": None, "email": None}, ["Portal.TeamA"]),
        ({"amr": "mfa"}, ["Portal.TeamA"]),
    ],
)
def test_odd_claim_shapes_neither_break_nor_grant(hostile, roles):
    identity = validate(make_token(**hostile))
    assert identity.roles == roles
    assert len(identity.name) <= 150
    assert "\x00" not in identity.name
    identity.name.encode("utf-8")  # no lone surrogates: PostgreSQL would refuse them
    assert identity.amr in (["pwd", "mfa"], [])


def test_mfa_in_a_string_amr_does_not_count():
    with pytest.raises(SignInRefused):
        validate(make_token(amr="mfa"), require_mfa=True)
