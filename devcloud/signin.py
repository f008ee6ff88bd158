"""User sign-in (OpenID Connect, authorization code flow with PKCE): the v2.0 authorize
page, the `authorization_code` grant at the token endpoint, ID tokens and sign-out.

Reference: https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow
and https://learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference

The page is plain HTML, labelled "devcloud — not Microsoft": pick a user of the tenant and
sign in (no password). Codes are single use and expire (`code_lifetime`, 600 s).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import unquote

import jwt

from .consent import (
    _append_query,
    _description,
    _error_page,
    _page,
    _param,
    redirect_uri_matches,
)
from .entra import (
    TENANT_INDEPENDENT,
    EntraError,
    _client_auth,
    _missing,
    authenticate_client,
    resolve,
    tenant_not_found,
)
from .pki import b64url
from .web import Request, Response, html_response, redirect

if TYPE_CHECKING:
    from .app import DevCloudApp
    from .state import Tenant, User

# A JWT carries at most 200 groups; above that Entra sends the overage claims instead.
# Reference: https://learn.microsoft.com/en-us/security/zero-trust/develop/configure-tokens-group-claims-app-roles
GROUPS_LIMIT = 200
ID_TOKEN_LIFETIME = 3600
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


def _redirect_error(
    redirect_uri: str, state: str | None, error: str, code: int, message: str, **extra: str
) -> Response:
    pairs = [
        ("error", error),
        ("error_description", _description(code, message)),
        ("error_uri", f"https://login.microsoftonline.com/error?code={code}"),
        *extra.items(),
    ]
    if state is not None:
        pairs.append(("state", state))
    return redirect(_append_query(redirect_uri, pairs))


def authorize(app: DevCloudApp, req: Request, tenant_seg: str) -> Response:
    store = app.store
    seg = unquote(tenant_seg)
    fixed: Tenant | None = None
    if seg.lower() not in TENANT_INDEPENDENT:
        fixed = resolve(app, seg)
        if fixed is None:
            return _error_page(
                90002,
                f"Tenant '{seg}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
            )
    client_id = _param(req, "client_id") or ""
    app_reg = store.apps.get(client_id.lower()) if client_id else None
    if app_reg is None:
        return _error_page(
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{fixed.display_name if fixed else seg}'.",
        )
    redirect_uri = _param(req, "redirect_uri") or ""
    # Entra never redirects to an unregistered URI: it shows an error page (§1.6).
    if not redirect_uri or not redirect_uri_matches(app_reg.redirect_uris, redirect_uri):
        return _error_page(
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request does not match the "
            f"redirect URIs configured for the application '{app_reg.client_id}'.",
        )
    state = _param(req, "state")
    response_type = _param(req, "response_type") or ""
    if response_type != "code":
        return _redirect_error(
            redirect_uri,
            state,
            "unsupported_response_type",
            700054,
            f"response_type '{response_type}' is not enabled for the application. devcloud "
            "emulates the authorization code flow only.",
        )
    scope = _param(req, "scope") or ""
    if not scope.strip():
        return _redirect_error(
            redirect_uri,
            state,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        )
    users = (
        store.tenant_users(fixed.tenant_id)
        if fixed
        else [u for t in list(store.tenants.values()) for u in store.tenant_users(t.tenant_id)]
    )
    if req.method == "POST":
        action = req.f("action")
        if action == "cancel":
            return _redirect_error(
                redirect_uri,
                state,
                "access_denied",
                65004,
                "User declined to consent to access the app.",
                error_subcode="cancel",
            )
        if action == "signin":
            user = next((u for u in users if u.object_id == req.f("account")), None)
            if user is None:
                return _error_page(
                    50020, "The user account does not exist in the tenant of this sign-in."
                )
            return _issue_code(app, req, app_reg.client_id, user, redirect_uri, state, scope)
    return _sign_in_form(app_reg, fixed, users, req)


def _issue_code(app, req, client_id, user, redirect_uri, state, scope) -> Response:
    store = app.store
    code = secrets.token_urlsafe(48)
    with store.lock:
        store.codes[code] = _new_code(app, req, client_id, user, redirect_uri, scope)
    pairs = [("code", code)]
    if (_param(req, "client_info") or "") == "1":
        pairs.append(("client_info", client_info(user)))
    if state is not None:
        pairs.append(("state", state))
    pairs.append(("session_state", str(uuid.uuid4())))
    if (_param(req, "response_mode") or "query") == "form_post":
        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in pairs
        )
        return html_response(
            200,
            f'<!doctype html><html><body onload="document.forms[0].submit()"><form method="post" '
            f'action="{html.escape(redirect_uri)}">{fields}<noscript><button>Continue</button>'
            "</noscript></form></body></html>",
        )
    return redirect(_append_query(redirect_uri, pairs))


def _new_code(app, req, client_id, user, redirect_uri, scope):
    from .state import AuthCode

    return AuthCode(
        client_id=client_id,
        tenant_id=user.tenant_id,
        object_id=user.object_id,
        redirect_uri=redirect_uri,
        scope=scope,
        nonce=_param(req, "nonce"),
        code_challenge=_param(req, "code_challenge"),
        code_challenge_method=_param(req, "code_challenge_method") or "plain",
        expires_at=time.time() + app.store.limits["code_lifetime"],
    )


def client_info(user: User) -> str:
    raw = json.dumps({"uid": user.object_id, "utid": user.home_tenant_id}).encode()
    return b64url(raw)


def _sign_in_form(app_reg, tenant: Tenant | None, users: list[User], req: Request) -> Response:
    options = []
    for u in users:
        kind = "guest" if u.is_guest else "member"
        options.append(
            f'<option value="{u.object_id}">{html.escape(u.user_principal_name)} — '
            f"{html.escape(u.display_name)} ({kind})</option>"
        )
    if not options:
        options.append('<option value="">(no users in this tenant)</option>')
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v[0])}">'
        for k, v in req.query.items()
        if k not in ("action", "account")
    )
    where = html.escape(tenant.display_name) if tenant else "any organization"
    body = f"""<p class="muted">Sign in · {where}</p>
<h1>Sign in to {html.escape(app_reg.display_name)}</h1>
<p class="muted">application (client) ID {html.escape(app_reg.client_id)}</p>
<form method="post">
{hidden}
<label for="account">Pick an account</label>
<select id="account" name="account">{"".join(options)}</select>
<p class="muted">devcloud asks for no password: choosing a user signs them in.</p>
<div class="buttons">
<button type="submit" name="action" value="cancel">Cancel</button>
<button type="submit" name="action" value="signin" class="primary">Sign in</button>
</div></form>"""
    return _page("Sign in to your account", body)


# --- the authorization_code grant ----------------------------------------------------------


def _invalid_grant(code: int, message: str) -> EntraError:
    return EntraError(400, "invalid_grant", code, message)


def redeem_code(app: DevCloudApp, req: Request, tenant_seg: str) -> dict:
    store = app.store
    tenant = None
    if tenant_seg.lower() not in TENANT_INDEPENDENT:
        tenant = resolve(app, tenant_seg)
        if tenant is None:
            raise tenant_not_found(unquote(tenant_seg), error="invalid_request")
    client_id, secret = _client_auth(req)
    if not client_id:
        raise _missing("client_id")
    value = req.f("code")
    if not value:
        raise _missing("code")
    app_reg = store.apps.get(client_id.lower())
    if app_reg is None:
        raise EntraError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory.",
        )
    with store.lock:
        code = store.codes.get(value)
    if code is None or code.client_id != app_reg.client_id:
        # Guessed: a code that was never issued (or not to this app) reads as malformed.
        raise _invalid_grant(9002313, "Invalid request. Request is malformed or invalid.")
    code_tenant = store.tenant(code.tenant_id)
    if tenant is not None and tenant.tenant_id != code.tenant_id:
        raise _invalid_grant(
            9002313, "Invalid request. Request is malformed or invalid. (code of another tenant)"
        )
    authenticate_client(app, req, app_reg, secret, tenant_seg, code_tenant)
    with store.lock:
        # Single use: the check and the mark happen under one lock.
        if code.redeemed:
            raise _invalid_grant(
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid "
                "code or use an existing refresh token.",
            )
        if code.expires_at <= time.time():
            raise _invalid_grant(
                70008,
                "The provided authorization code or refresh token has expired due to "
                "inactivity. Send a new interactive authorization request for this user and "
                "resource.",
            )
        if (req.f("redirect_uri") or "") != code.redirect_uri:
            # Guessed error class; the code and text are Entra's.
            raise _invalid_grant(
                500112,
                f"The reply address '{req.f('redirect_uri') or ''}' does not match the reply "
                f"address '{code.redirect_uri}' provided when requesting Authorization code.",
            )
        if code.code_challenge and not _pkce_ok(code, req.f("code_verifier") or ""):
            raise _invalid_grant(
                50148,
                "The code_verifier does not match the code_challenge supplied in the "
                "authorization request for PKCE.",
            )
        code.redeemed = True
        user = store.users.get(code.object_id)
    if user is None:
        raise _invalid_grant(50034, "The user account does not exist in the directory.")
    lifetime = store.limits["token_lifetime"]
    base = app.https_base(req)
    id_token = issue_id_token(
        app, base=base, tenant=code_tenant, user=user, client_id=app_reg.client_id,
        nonce=code.nonce,
    )  # fmt: skip
    scopes = [s for s in code.scope.split() if s in ("openid", "profile", "email")]
    body = {
        "token_type": "Bearer",
        "scope": " ".join(s for s in scopes if s != "openid") or "openid",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": _graph_user_token(app, code_tenant, user, app_reg, scopes, lifetime),
        "id_token": id_token,
        "client_info": client_info(user),
    }
    if "offline_access" in code.scope.split():
        body["refresh_token"] = "0." + b64url(secrets.token_bytes(64))  # opaque, not redeemable
    return body


def _pkce_ok(code, verifier: str) -> bool:
    if code.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    else:
        expected = verifier
    return secrets.compare_digest(expected, code.code_challenge or "")


def issue_id_token(
    app: DevCloudApp,
    *,
    base: str,
    tenant: Tenant,
    user: User,
    client_id: str,
    nonce: str | None,
    now: int | None = None,
) -> str:
    """A v2.0 ID token (RS256, the tenant's signing key)."""
    now = int(time.time()) if now is None else now
    iss = f"{base}/{tenant.tenant_id}/v2.0"
    claims: dict = {
        "aud": client_id,
        "iss": iss,
        "iat": now,
        "nbf": now,
        "exp": now + ID_TOKEN_LIFETIME,
        "amr": ["pwd", "mfa"] if user.mfa else ["pwd"],
    }
    if user.groups:
        if len(user.groups) > GROUPS_LIMIT:
            # The overage form: where to ask for the groups instead of the groups.
            claims["_claim_names"] = {"groups": "src1"}
            claims["_claim_sources"] = {
                "src1": {
                    "endpoint": f"https://graph.windows.net/{tenant.tenant_id}/users/"
                    f"{user.object_id}/getMemberObjects"
                }
            }
        else:
            claims["groups"] = list(user.groups)
    if user.is_guest:
        claims["idp"] = f"https://sts.windows.net/{user.home_tenant_id}/"
    claims |= {
        "email": user.email,
        "name": user.display_name,
        "oid": user.object_id,
        "preferred_username": user.user_principal_name,
        "rh": "0." + b64url(secrets.token_bytes(40)) + ".",
    }
    if nonce is not None:
        claims["nonce"] = nonce
    roles = user.app_roles.get(client_id.lower())
    if roles:
        claims["roles"] = list(roles)
    # `sub` is pairwise: the same user has a different `sub` in every app.
    sub = hashlib.sha256(f"{user.object_id}|{client_id}".encode()).digest()
    claims |= {
        "sub": b64url(sub),
        "tid": tenant.tenant_id,
        "uti": b64url(secrets.token_bytes(16)),
        "ver": "2.0",
    }
    kid = app.pki.signing.kid
    return jwt.encode(
        claims, app.pki.signing.private_key, algorithm="RS256", headers={"typ": "JWT", "kid": kid}
    )


def _graph_user_token(app, tenant, user, app_reg, scopes, lifetime) -> str:
    """The delegated Graph token Entra returns beside the ID token (the portal ignores it)."""
    now = int(time.time())
    claims = {
        "aud": GRAPH_APP_ID,
        "iss": f"https://sts.windows.net/{tenant.tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "appid": app_reg.client_id,
        "idtyp": "user",
        "name": user.display_name,
        "oid": user.object_id,
        "scp": " ".join(scopes) or "openid",
        "tid": tenant.tenant_id,
        "upn": user.user_principal_name,
        "ver": "1.0",
    }
    kid = app.pki.signing.kid
    return jwt.encode(
        claims,
        app.pki.signing.private_key,
        algorithm="RS256",
        headers={"typ": "JWT", "x5t": kid, "kid": kid},
    )


# --- sign-out ------------------------------------------------------------------------------


def logout(app: DevCloudApp, req: Request, tenant_seg: str) -> Response:
    """Entra's end_session_endpoint: signs the browser out, then offers the way back."""
    back = req.q("post_logout_redirect_uri") or ""
    registered = any(redirect_uri_matches(a.redirect_uris, back) for a in app.store.apps.values())
    link = (
        f'<p><a href="{html.escape(back)}" id="back">Return to the application</a></p>'
        if back and registered
        else ""
    )
    body = f"""<h1>You signed out of your account</h1>
<p>It's a good idea to close all browser windows.</p>{link}"""
    return _page("Signed out", body)
