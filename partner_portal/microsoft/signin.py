"""Staff sign-in with the MSP's own Entra tenant: OpenID Connect authorization code flow
with PKCE, through MSAL, and the ID token validated in full with PyJWT.

1. `begin()` asks MSAL for the flow (`initiate_auth_code_flow`: state, a nonce and a PKCE
   verifier) against `/{msp tenant}/v2.0`; the caller keeps the flow in the session and
   sends the browser to `flow["auth_uri"]`.
2. `complete()` hands the flow and the redirect's parameters back to MSAL
   (`acquire_token_by_auth_code_flow`: checks `state`, redeems the code with the verifier),
   then validates the ID token: RS256 signature against the tenant's JWKS, `iss`, `aud`,
   `exp`/`nbf`/`iat`, `nonce`, `tid`, guests, and `amr` when MFA is required. MSAL itself
   stopped validating ID tokens in 1.38 (its `decode_id_token` is deprecated).

No token is kept: the ID token's claims become an `Identity`, the rest is dropped.

Reference: https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc
Reference: https://learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
import msal
import requests
from msal.exceptions import MsalServiceError

from partner_portal.microsoft import claims as claims_module
from partner_portal.microsoft.http import new_session
from partner_portal.microsoft.tokens import is_microsoft_login

_UNAVAILABLE = "Microsoft's sign-in service did not answer. Try again in a minute."
_LEEWAY_SECONDS = 120  # clock skew tolerated on exp/nbf/iat (MSAL used 2 minutes too)
# MSAL's own HTTP cache (tenant discovery, throttling), shared by the short-lived apps below.
_http_cache: dict[Any, Any] = {}
_http_cache_lock = threading.Lock()


@dataclass(frozen=True)
class SignInConfig:
    client_id: str
    credential: str | dict[str, str]
    tenant_id: str  # the MSP's own tenant
    login_base_url: str  # e.g. https://login.microsoftonline.com (or devcloud)
    browser_base_url: str = ""  # where browsers reach the login host, when it differs (demo)
    ca_bundle: str = ""
    timeout: float = 30
    require_mfa: bool = False

    @property
    def authority(self) -> str:
        return f"{self.login_base_url}/{self.tenant_id}"

    @property
    def issuer(self) -> str:
        # v2.0 ID tokens: https://login.microsoftonline.com/{tid}/v2.0 (per cloud host).
        return f"{self.login_base_url}/{self.tenant_id}/v2.0"

    @property
    def openid_configuration_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"


@dataclass(frozen=True)
class Identity:
    """Who signed in, from a validated ID token."""

    object_id: str
    tenant_id: str
    username: str  # preferred_username: a UPN or e-mail, display only, may change
    name: str
    email: str
    roles: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    groups_overage: bool = False  # `groups` did not fit in the token (_claim_names)
    amr: list[str] = field(default_factory=list)


class SignInRefused(Exception):
    """The sign-in cannot go on. `reason` picks the page; `message` is safe to show."""

    def __init__(self, reason: str, message: str, *, username: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.username = username  # who Microsoft signed in, when known (the audit log)


def _app(cfg: SignInConfig) -> msal.ConfidentialClientApplication:
    # A new app per step with a throwaway token cache: nothing of the user's tokens outlives
    # the request. The shared http_cache keeps tenant discovery to one GET a day.
    session = new_session(timeout=cfg.timeout, ca_bundle=cfg.ca_bundle)
    with _http_cache_lock:
        try:
            return msal.ConfidentialClientApplication(
                cfg.client_id,
                client_credential=cfg.credential,
                authority=cfg.authority,
                http_client=session,
                token_cache=msal.TokenCache(),
                http_cache=_http_cache,
                # We want an ID token, not a refresh token to look after.
                exclude_scopes=["offline_access"],
                # Instance discovery asks login.microsoftonline.com about the host (§0.5).
                instance_discovery=None if is_microsoft_login(cfg.login_base_url) else False,
            )
        except ValueError as exc:
            raise SignInRefused(
                "config", "The portal's Microsoft sign-in is misconfigured (tenant not found)."
            ) from exc
        except requests.RequestException as exc:
            raise SignInRefused("unavailable", _UNAVAILABLE) from exc


def begin(cfg: SignInConfig, *, redirect_uri: str) -> dict[str, Any]:
    """The MSAL auth-code flow to keep in the session; send the browser to `auth_uri`."""
    app = _app(cfg)
    with warnings.catch_warnings():
        # MSAL recommends form_post. That would be a cross-site POST, which browsers send
        # without our SameSite=Lax session cookie, where the flow waits. In query mode the
        # URL carries only a single-use code that is useless without the PKCE verifier and
        # our client secret.
        warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended")
        flow: dict[str, Any] = app.initiate_auth_code_flow(
            scopes=[],  # MSAL adds openid and profile: an ID token is all we ask for
            redirect_uri=redirect_uri,
            response_mode="query",
        )
    if cfg.browser_base_url and flow["auth_uri"].startswith(cfg.login_base_url + "/"):
        flow["auth_uri"] = cfg.browser_base_url + flow["auth_uri"][len(cfg.login_base_url) :]
    return flow


def complete(cfg: SignInConfig, *, flow: dict[str, Any], params: dict[str, str]) -> Identity:
    """Redeem the code from Microsoft's redirect and return who signed in, or raise
    `SignInRefused`."""
    if not flow or not params.get("state") or params.get("state") != flow.get("state"):
        # A replayed, forged or stale redirect (or a second tab): MSAL would say the same.
        raise SignInRefused("state", "This sign-in link is not valid any more.")
    if params.get("error"):
        raise SignInRefused("microsoft", _first_line(params.get("error_description", "")))
    try:
        result = _app(cfg).acquire_token_by_auth_code_flow(dict(flow), params)
    except (requests.RequestException, MsalServiceError, json.JSONDecodeError) as exc:
        # Unreachable, 5xx, or not JSON: nothing the person did wrong.
        raise SignInRefused("unavailable", _UNAVAILABLE) from exc
    except ValueError as exc:  # state mismatch, no code: MSAL's CSRF checks
        raise SignInRefused("state", "This sign-in link is not valid any more.") from exc
    except RuntimeError as exc:  # MSAL's nonce check
        raise SignInRefused("token", "Microsoft's answer did not match this sign-in.") from exc
    if "error" in result:
        raise SignInRefused("microsoft", _first_line(result.get("error_description", "")))
    id_token = result.get("id_token")
    if not isinstance(id_token, str):
        raise SignInRefused("token", "Microsoft's answer had no ID token.")
    try:
        key = claims_module.jwk_client(
            cfg.openid_configuration_url, cfg.ca_bundle, cfg.timeout
        ).get_signing_key_from_jwt(id_token)
    except jwt.PyJWKClientConnectionError as exc:
        raise SignInRefused("unavailable", "Microsoft's signing keys could not be read.") from exc
    except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
        raise SignInRefused("token", "The ID token is not signed by a key of the tenant.") from exc
    except Exception as exc:  # discovery failed (errors.Transient)
        raise SignInRefused("unavailable", "Microsoft's signing keys could not be read.") from exc
    return validate_id_token(
        id_token,
        key=key.key,
        client_id=cfg.client_id,
        tenant_id=cfg.tenant_id,
        issuer=cfg.issuer,
        nonce=flow.get("nonce", ""),
        require_mfa=cfg.require_mfa,
    )


def nonce_sent(flow_nonce: str) -> str:
    """What MSAL puts in the request (and Entra in the token) for the flow's nonce."""
    return hashlib.sha256(flow_nonce.encode("ascii")).hexdigest()


def validate_id_token(
    token: str,
    *,
    key: Any,
    client_id: str,
    tenant_id: str,
    issuer: str,
    nonce: str,
    require_mfa: bool = False,
) -> Identity:
    """The Identity in a v2.0 ID token, once every check passes; else `SignInRefused`."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=client_id,
            issuer=issuer,
            leeway=_LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "nbf", "iss", "aud", "tid", "oid", "nonce"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise SignInRefused("token", "The ID token has expired.") from exc
    except jwt.ImmatureSignatureError as exc:
        raise SignInRefused("token", "The ID token is not valid yet.") from exc
    except jwt.InvalidAudienceError as exc:
        raise SignInRefused("token", "The ID token was issued to another application.") from exc
    except jwt.InvalidIssuerError as exc:
        raise SignInRefused("token", "The ID token was issued by someone else.") from exc
    except jwt.InvalidSignatureError as exc:
        raise SignInRefused("token", "The ID token's signature is not valid.") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise SignInRefused("token", f"The ID token has no '{exc.claim}' claim.") from exc
    except jwt.InvalidTokenError as exc:
        raise SignInRefused("token", "The ID token could not be read.") from exc

    if not isinstance(claims["nonce"], str) or claims["nonce"] != nonce_sent(nonce or ""):
        raise SignInRefused("token", "The ID token was not issued for this sign-in (nonce).")
    username = _text(claims.get("preferred_username"), 150)
    tid = str(claims["tid"]).lower()
    if tid != tenant_id.lower():
        raise SignInRefused(
            "tenant", "Your account belongs to another organization.", username=username
        )
    # A guest (B2B) user is authenticated by their home tenant, which Entra names in `idp`.
    idp = claims.get("idp")
    if idp and idp not in (issuer, f"https://sts.windows.net/{tid}/"):
        raise SignInRefused(
            "guest", "Guest accounts cannot sign in to the portal.", username=username
        )
    amr = _strings(claims.get("amr"))
    if require_mfa and "mfa" not in amr:
        raise SignInRefused(
            "mfa", "This sign-in did not use multi-factor authentication.", username=username
        )
    overage = "groups" in (claims.get("_claim_names") or {})
    return Identity(
        object_id=str(claims["oid"]).lower(),
        tenant_id=tid,
        username=username,
        name=_text(claims.get("name"), 150),
        email=_text(claims.get("email"), 254),
        roles=_strings(claims.get("roles")),
        groups=[g.lower() for g in _strings(claims.get("groups"))],
        groups_overage=overage,
        amr=amr,
    )


def sign_out_url(cfg: SignInConfig, *, post_logout_redirect_uri: str) -> str:
    """Entra's end_session_endpoint: ends the Microsoft session in this browser."""
    # Reference: https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc#send-a-sign-out-request
    base = cfg.browser_base_url or cfg.login_base_url
    query = urlencode({"post_logout_redirect_uri": post_logout_redirect_uri})
    return f"{base}/{cfg.tenant_id}/oauth2/v2.0/logout?{query}"


def _text(value: Any, limit: int) -> str:
    """A display string fit for the database: no NULs, no lone surrogates, bounded."""
    if not isinstance(value, str):
        return ""
    clean = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return clean[:limit]


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _first_line(description: str) -> str:
    # Entra's error_description: "AADSTS54005: text\r\nTrace ID: …"; the first line is enough.
    line = description.splitlines()[0] if description else ""
    return line[:300] or "Microsoft refused the sign-in."
