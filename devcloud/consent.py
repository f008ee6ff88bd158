"""The admin-consent pages (§1): `/{tenant}/v2.0/adminconsent`, the older
`/{tenant}/adminconsent` and `/{tenant}/oauth2/authorize?prompt=admin_consent`.

A plain server-rendered page, clearly not Microsoft's, where a simulated user picks who they
sign in as and accepts or cancels. The redirects back are exact (§1.2–1.4).
"""

from __future__ import annotations

import html
import secrets
import uuid
from typing import TYPE_CHECKING
from urllib.parse import quote_plus, unquote, urlsplit

from . import clouds
from .entra import TENANT_INDEPENDENT, resolve
from .timefmt import entra_timestamp
from .web import Request, Response, html_response, redirect

if TYPE_CHECKING:
    from .app import DevCloudApp

PERMISSION_TEXT = {
    "Incident.Read.All": "Read all incidents",
    "Incident.ReadWrite.All": "Read and write all incidents",
    "SecurityIncident.Read.All": "Read all security incidents",
    "SecurityIncident.ReadWrite.All": "Read and write to all security incidents",
}

STYLE = """
body{font-family:system-ui,sans-serif;background:#f2f2f2;margin:0;color:#1b1b1b}
.banner{background:#8a1c1c;color:#fff;padding:.6rem 1rem;font-weight:600}
main{max-width:34rem;margin:2rem auto;background:#fff;padding:1.5rem 2rem;
border:1px solid #ccc}
h1{font-size:1.4rem;margin:.2rem 0 1rem}
.muted{color:#555;font-size:.9rem}
ul{padding-left:1.2rem} li{margin:.3rem 0}
label{display:block;margin:1rem 0 .3rem;font-weight:600}
select{width:100%;padding:.4rem;font-size:1rem}
.buttons{margin-top:1.5rem;display:flex;gap:.7rem;justify-content:flex-end}
button{font-size:1rem;padding:.45rem 1.4rem;border:1px solid #666;background:#fff;cursor:pointer}
button.primary{background:#0b5cad;border-color:#0b5cad;color:#fff}
.error{border-left:4px solid #8a1c1c;padding-left:1rem}
code{background:#eee;padding:0 .2rem}
"""


def _page(title: str, body: str, status: int = 200) -> Response:
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · devcloud — not Microsoft</title>
<style>{STYLE}</style></head>
<body><div class="banner">devcloud — not Microsoft · a local emulator of the Microsoft
sign-in and admin-consent pages, for development and demos only</div>
<main>{body}</main></body></html>"""
    return html_response(status, doc)


def _error_page(code: int, message: str, status: int = 400) -> Response:
    trace, correlation = uuid.uuid4(), uuid.uuid4()
    body = f"""<h1>Sorry, but we’re having trouble signing you in.</h1>
<div class="error"><p><strong>AADSTS{code}</strong>: {html.escape(message)}</p>
<p class="muted">Trace ID: {trace}<br>Correlation ID: {correlation}<br>
Timestamp: {entra_timestamp()}</p></div>"""
    return _page(f"AADSTS{code}", body, status)


def _lower_escapes(encoded: str) -> str:
    pieces = encoded.split("%")
    return pieces[0] + "".join("%" + p[:2].lower() + p[2:] for p in pieces[1:])


def _qs(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={_lower_escapes(quote_plus(v, safe=''))}" for k, v in pairs)


def _append_query(uri: str, pairs: list[tuple[str, str]]) -> str:
    sep = "&" if "?" in uri else "?"
    return f"{uri}{sep}{_qs(pairs)}"


def redirect_uri_matches(registered: list[str], given: str) -> bool:
    """Exact match; for http loopback URIs the port is ignored (§1.6)."""
    if given in registered:
        return True
    g = urlsplit(given)
    if g.scheme != "http" or g.hostname not in ("localhost", "127.0.0.1"):
        return False
    for uri in registered:
        r = urlsplit(uri)
        if (
            r.scheme == "http"
            and r.hostname == g.hostname
            and r.path == g.path
            and r.query == g.query
        ):
            return True
    return False


def _param(req: Request, name: str) -> str | None:
    if req.method == "POST":
        value = req.f(name)
        if value is not None:
            return value
    return req.q(name)


def admin_consent(app: DevCloudApp, req: Request, tenant_seg: str, variant: str) -> Response:
    """variant: "v2" (/v2.0/adminconsent), "v1" (/adminconsent), "authorize"."""
    store = app.store
    seg = unquote(tenant_seg)
    client_id = _param(req, "client_id") or ""
    redirect_uri = _param(req, "redirect_uri")
    state = _param(req, "state")
    scope = _param(req, "scope")
    if variant == "authorize" and (_param(req, "prompt") or "") != "admin_consent":
        return _error_page(
            900144,
            "devcloud emulates only admin consent on this endpoint: add prompt=admin_consent.",
        )
    fixed_tenant = None
    if seg.lower() not in TENANT_INDEPENDENT:
        fixed_tenant = resolve(app, seg, req)
        if fixed_tenant is None:
            return _error_page(
                90002,
                f"Tenant '{seg}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
            )
    app_reg = store.apps.get(client_id.lower()) if client_id else None
    if app_reg is None:
        return _error_page(
            700016,
            f"Application with identifier '{client_id}' was not found in the directory. This "
            "can happen if the application has not been installed by the administrator of the "
            "tenant or consented to by any user in the tenant.",
        )
    if not redirect_uri or not redirect_uri_matches(app_reg.redirect_uris, redirect_uri):
        return _error_page(
            50011,
            f"The redirect URI '{redirect_uri or ''}' specified in the request does not match the "
            f"redirect URIs configured for the application '{app_reg.client_id}'. Make sure the "
            "redirect URI sent in the request matches one added to your application in the "
            "Azure portal.",
        )
    if variant == "v2" and not scope:
        # Guessed: with a valid redirect URI a missing scope is redirected as invalid_request.
        pairs = [
            ("error", "invalid_request"),
            (
                "error_description",
                _description(
                    900144, "The request body must contain the following parameter: 'scope'."
                ),
            ),
            ("error_uri", "https://login.microsoftonline.com/error?code=900144"),
            ("admin_consent", "True"),
        ]
        if state is not None:
            pairs.append(("state", state))
        return redirect(_append_query(redirect_uri, pairs))

    accounts = (
        [fixed_tenant]
        if fixed_tenant
        else sorted(
            (t for t in store.tenants.values() if clouds.same_entra(t.cloud, req)),
            key=lambda t: t.display_name.lower(),
        )
    )
    if req.method == "POST":
        action = req.f("action")
        if action == "cancel":
            return redirect(_cancel_location(variant, redirect_uri, state))
        if action == "accept":
            account = req.f("account") or ""
            tid, _, role = account.partition("|")
            tenant = next((t for t in accounts if t.tenant_id == tid), None)
            if tenant is None:
                return _error_page(
                    50020,
                    "The user account does not exist in the tenant selected for this sign-in.",
                )
            if role != "admin":
                return _need_admin_approval(app_reg.display_name, tenant.display_name)
            store.set_consent(tenant.tenant_id, app_reg.client_id, state="consented")
            return redirect(
                _success_location(variant, redirect_uri, state, scope, tenant.tenant_id)
            )
    return _consent_form(app_reg, accounts, req, variant)


def _description(code: int, message: str) -> str:
    return (
        f"AADSTS{code}: {message}\r\nTrace ID: {uuid.uuid4()}\r\n"
        f"Correlation ID: {uuid.uuid4()}\r\nTimestamp: {entra_timestamp()}"
    )


def _success_location(variant, redirect_uri, state, scope, tenant_id) -> str:
    if variant == "v2":
        pairs = [("admin_consent", "True"), ("tenant", tenant_id)]
        if state is not None:
            pairs.append(("state", state))
        pairs.append(("scope", scope or ""))
    elif variant == "v1":
        pairs = [("tenant", tenant_id)]
        if state is not None:
            pairs.append(("state", state))
        pairs.append(("admin_consent", "True"))
    else:
        # Guessed shape for /oauth2/authorize?prompt=admin_consent (§1.5 is UNCONFIRMED).
        pairs = [("admin_consent", "True"), ("code", secrets.token_urlsafe(32))]
        if state is not None:
            pairs.append(("state", state))
        pairs.append(("session_state", str(uuid.uuid4())))
    return _append_query(redirect_uri, pairs)


def _cancel_location(variant, redirect_uri, state) -> str:
    if variant == "v1":
        pairs = [("error", "access_denied"), ("error_subcode", "cancel")]
        pairs.append(("state", state or ""))
        return _append_query(redirect_uri, pairs)
    pairs = [
        ("error", "access_denied"),
        ("error_description", _description(65004, "User declined to consent to access the app.")),
        ("error_uri", "https://login.microsoftonline.com/error?code=65004"),
        ("admin_consent", "True"),
    ]
    if state is not None:
        pairs.append(("state", state))
    return _append_query(redirect_uri, pairs)


def _need_admin_approval(app_name: str, tenant_name: str) -> Response:
    body = f"""<h1>Need admin approval</h1>
<p><strong>{html.escape(app_name)}</strong></p>
<p>{html.escape(app_name)} needs permission to access resources in your organization
({html.escape(tenant_name)}) that only an admin can grant. Please ask an admin to grant
permission to this app before you can use it.</p>
<p class="muted">devcloud: you signed in as a normal user. Go back and choose a Global
Administrator to grant admin consent.</p>"""
    return _page("Need admin approval", body)


def _consent_form(app_reg, accounts, req: Request, variant: str) -> Response:
    options = []
    for t in accounts:
        name, dom = html.escape(t.display_name), html.escape(t.domain)
        options.append(
            f'<option value="{t.tenant_id}|admin">admin@{dom} — Global Administrator of '
            f"{name}</option>"
        )
        options.append(
            f'<option value="{t.tenant_id}|user">user@{dom} — normal user of {name}</option>'
        )
    if not options:
        options.append('<option value="">(devcloud has no tenants)</option>')
    permissions = "".join(
        f"<li>{html.escape(PERMISSION_TEXT.get(p, p))} <span class='muted'>({html.escape(p)}, "
        "application permission)</span></li>"
        for p in app_reg.required_permissions
    )
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v[0])}">'
        for k, v in req.query.items()
        if k not in ("action", "account")
    )
    body = f"""<p class="muted">Permissions requested · Review for your organization</p>
<h1>{html.escape(app_reg.display_name)}</h1>
<p class="muted">unverified · application (client) ID {html.escape(app_reg.client_id)}</p>
<form method="post">
{hidden}
<label for="account">Sign in as</label>
<select id="account" name="account">{"".join(options)}</select>
<p>This app would like to (Microsoft Threat Protection):</p>
<ul>{permissions}</ul>
<p>If you accept, this app will get access to the specified resources for all users in your
organization. No one else will be prompted to review these permissions.</p>
<p class="muted">Accepting these permissions means that you allow this app to use your data as
specified in their terms of service and privacy statement.</p>
<div class="buttons">
<button type="submit" name="action" value="cancel">Cancel</button>
<button type="submit" name="action" value="accept" class="primary">Accept</button>
</div></form>"""
    return _page("Permissions requested", body)
