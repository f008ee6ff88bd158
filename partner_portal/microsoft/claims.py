"""Decode an app-only access token and check it is the one we need.

"Got a token" is not "consented": Entra issues a token without `roles` when the app is in
the tenant but nothing was granted (§2.4 of microsoft-protocols.md). So we check `tid`
(the tenant Microsoft really issued it for — the consent callback's `tenant` parameter is
attacker-controllable), `aud`, expiry, and that `roles` holds the permission we need.
"""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any

import jwt
from jwt.types import Options

from partner_portal.microsoft import errors
from partner_portal.microsoft.http import new_session

# A role that includes another one: ReadWrite may do everything Read may.
IMPLIED_ROLES: dict[str, set[str]] = {
    "Incident.ReadWrite.All": {"Incident.Read.All"},
    "SecurityIncident.ReadWrite.All": {"SecurityIncident.Read.All"},
}
# Clock skew allowed on exp/nbf/iat: 5 minutes, as Microsoft's own libraries allow.
_LEEWAY_SECONDS = 300
_DISCOVERY_TTL_SECONDS = 24 * 3600  # keys rotate; Microsoft suggests refetching daily (§4.2)

# Per OpenID configuration (one a tenant, or a cloud's "organizations"), the oldest first;
# at most this many, so that a worker's memory stays flat in the tenants it has seen.
_MAX_JWK_CLIENTS = 256
_jwk_clients: dict[str, tuple[float, jwt.PyJWKClient]] = {}
_jwk_lock = threading.Lock()


def granted_roles(claims: dict[str, Any]) -> list[str]:
    roles = claims.get("roles") or []
    return sorted({str(r) for r in roles}) if isinstance(roles, list) else []


def missing_roles(granted: list[str], required: list[str]) -> list[str]:
    have = set(granted)
    for role in granted:
        have |= IMPLIED_ROLES.get(role, set())
    return [role for role in required if role not in have]


def _audience_error(token: str, resource: str) -> errors.TokenMismatch:
    """Say what the audience is: a v2.0 token names an application by its GUID, which is no
    sign of another tenant (the title would mislead whoever reads it)."""
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        unverified = {}
    aud = unverified.get("aud")
    aud = ", ".join(map(str, aud)) if isinstance(aud, list) else str(aud or "(none)")
    version = f"a v{unverified['ver']} token" if unverified.get("ver") else "a token"
    return errors.TokenAudienceMismatch(
        f"The access token is {version} for {aud[:200]}, not for {resource}."
    )


def check_token(
    token: str,
    *,
    tenant_id: str,
    resource: str,
    required_roles: list[str],
    verify_signature: bool,
    openid_configuration_url: str = "",
    ca_bundle: str = "",
    timeout: float = 30,
) -> dict[str, Any]:
    """The token's claims, once `tid`, `aud`, expiry (and maybe the signature) check out.

    Raises `errors.MissingPermissions` (with `missing` and `granted`) when `roles` lacks a
    required role, `errors.TokenMismatch` when the token is not for this tenant/resource or
    has expired, `errors.Transient` when the signing keys cannot be fetched.
    """
    audiences = [resource.rstrip("/"), resource.rstrip("/") + "/"]
    options: Options = {"verify_exp": True, "verify_aud": True, "require": ["exp", "tid"]}
    try:
        if verify_signature:
            key = _signing_key(token, openid_configuration_url, ca_bundle, timeout)
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=audiences,
                leeway=_LEEWAY_SECONDS,
                options=options,
            )
        else:
            # Real Entra: tokens for Microsoft's own APIs are not meant to be validated by
            # clients (a proprietary format that may change), and Graph tokens carry a header
            # `nonce` that makes a standard RS256 check fail (§4.2). We obtained this token
            # ourselves over TLS from Entra, so these checks are sanity checks, not security.
            claims = jwt.decode(
                token,
                options={**options, "verify_signature": False},
                audience=audiences,
                leeway=_LEEWAY_SECONDS,
            )
    except jwt.ExpiredSignatureError as exc:
        raise errors.TokenMismatch("The access token has already expired.") from exc
    except jwt.InvalidAudienceError as exc:
        raise _audience_error(token, resource) from exc
    except jwt.MissingRequiredClaimError as exc:
        raise errors.TokenMismatch(f"The access token has no '{exc.claim}' claim.") from exc
    except jwt.PyJWKClientConnectionError as exc:
        raise errors.Transient("Could not fetch the token signing keys.") from exc
    except (jwt.PyJWKClientError, jwt.InvalidSignatureError) as exc:
        raise errors.TokenMismatch("The access token's signature is not valid.") from exc
    except (jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError) as exc:
        # Issued "in the future": Microsoft's clock and ours disagree by more than the
        # leeway. Clocks get corrected; the token itself is fine. Retry, never Failed.
        raise errors.Transient(
            f"The access token is not valid yet by our clock ({exc}); clocks disagree."
        ) from exc
    except jwt.InvalidTokenError as exc:
        raise errors.BadResponse(f"The access token could not be read ({exc}).") from exc

    for claim in ("iat", "nbf"):
        # Checked here whatever PyJWT's version and options check: same verdict as above.
        value = claims.get(claim)
        if isinstance(value, (int, float)) and value > time.time() + _LEEWAY_SECONDS:
            raise errors.Transient(f"The access token's {claim} is ahead of us; clocks disagree.")
    tid = str(claims.get("tid", "")).lower()
    if tid != tenant_id.lower():
        raise errors.TokenMismatch(
            f"The access token was issued for tenant {tid or '(none)'}, not {tenant_id}."
        )
    granted = granted_roles(claims)
    missing = missing_roles(granted, required_roles)
    if missing:
        raise errors.MissingPermissions(
            f"The token grants {', '.join(granted) or 'no permissions'}; "
            f"{', '.join(missing)} is required.",
            missing=missing,
            granted=granted,
        )
    return claims


def _signing_key(token: str, configuration_url: str, ca_bundle: str, timeout: float) -> Any:
    if not configuration_url:
        raise ValueError("verify_signature needs openid_configuration_url")
    return jwk_client(configuration_url, ca_bundle, timeout).get_signing_key_from_jwt(token).key


def jwk_client(configuration_url: str, ca_bundle: str, timeout: float) -> jwt.PyJWKClient:
    with _jwk_lock:
        cached = _jwk_clients.get(configuration_url)
        if cached and cached[0] > time.monotonic():
            return cached[1]
    # Reference: https://learn.microsoft.com/en-us/entra/identity-platform/access-tokens
    session = new_session(timeout=timeout, ca_bundle=ca_bundle)
    try:
        response = session.get(configuration_url)
        response.raise_for_status()
        jwks_uri = response.json()["jwks_uri"]
    except Exception as exc:
        raise errors.Transient("Could not fetch the OpenID configuration.") from exc
    finally:
        session.close()
    # PyJWKClient uses urllib, which ignores requests' CA settings: give it the CA explicitly.
    context = ssl.create_default_context(cafile=ca_bundle or None)
    client = jwt.PyJWKClient(jwks_uri, timeout=timeout, ssl_context=context, lifespan=3600)
    _remember(configuration_url, client)
    return client


def _remember(configuration_url: str, client: jwt.PyJWKClient) -> None:
    now = time.monotonic()
    with _jwk_lock:
        _jwk_clients.pop(configuration_url, None)  # re-inserted: the newest
        _jwk_clients[configuration_url] = (now + _DISCOVERY_TTL_SECONDS, client)
        for url in [url for url, (until, _) in _jwk_clients.items() if until <= now]:
            del _jwk_clients[url]
        while len(_jwk_clients) > _MAX_JWK_CLIENTS:
            del _jwk_clients[next(iter(_jwk_clients))]
