from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from partner_portal.accounts import signin
from partner_portal.audit import events
from partner_portal.microsoft import signin as microsoft

FLOWS = "entra_flows"  # session: state → {"flow", "next", "started"}
SIGNED_IN_WITH = "signed_in_with"
MAX_PENDING = 5  # sign-ins started in other tabs that may still come back
ENTRA_BACKEND = "partner_portal.accounts.backends.EntraBackend"

# What to tell the person, per refusal reason (templates/registration/entra_refused.html).
ADVICE = {
    "no_role": "Ask your administrator to give your account a portal role in Microsoft "
    "Entra ID (an app role of the portal's app registration, or a mapped group).",
    "tenant": "Only accounts of {msp} can sign in. Sign out of Microsoft, then sign in with "
    "your work account.",
    "guest": "Only members of {msp}'s own directory can sign in, not guests.",
    "mfa": "Sign in again with multi-factor authentication, or ask your administrator to "
    "require it in Conditional Access.",
    "overage": "Ask your administrator to map app roles instead of groups, or to emit only "
    "the groups assigned to the application in the token configuration.",
    "disabled": "Ask your administrator to enable your portal account.",
}


def _redirect_uri() -> str:
    return settings.PUBLIC_BASE_URL + reverse("entra_callback")


# Refusals of a person Microsoft did sign in (the others need no Microsoft account to cause,
# so they are not written to the audit log).
AUDITED_REFUSALS = {"tenant", "guest", "mfa", "no_role", "overage", "disabled"}


def _refused(request: HttpRequest, exc: microsoft.SignInRefused) -> HttpResponse:
    if exc.reason in AUDITED_REFUSALS:
        events.record(
            "entra_sign_in_refused",
            target=exc.username,
            ip_address=events.client_ip(request),
            reason=exc.reason,
        )
    advice = ADVICE.get(exc.reason, "Try signing in again.").format(msp=settings.MSP_NAME)
    context = {"reason": exc.reason, "message": exc.message, "advice": advice}
    return render(request, "registration/entra_refused.html", context, status=403)


@login_not_required
@never_cache
@require_GET
def entra_login(request: HttpRequest) -> HttpResponse:
    """Start a sign-in with Microsoft: keep MSAL's flow in the session, go to Entra."""
    if settings.SIGN_IN_MODE == "password":
        raise Http404
    try:
        flow = microsoft.begin(signin.sign_in_config(), redirect_uri=_redirect_uri())
    except microsoft.SignInRefused as exc:
        return _refused(request, exc)
    pending = request.session.get(FLOWS, {})
    pending = dict(sorted(pending.items(), key=lambda kv: kv[1]["started"])[-(MAX_PENDING - 1) :])
    pending[flow["state"]] = {
        "flow": flow,
        "next": request.GET.get("next", ""),
        "started": time.time(),
    }
    request.session[FLOWS] = pending
    return redirect(flow["auth_uri"])


@login_not_required
@never_cache
@require_GET
def entra_callback(request: HttpRequest) -> HttpResponse:
    """Microsoft's redirect back: redeem the code, validate the ID token, sign in."""
    if settings.SIGN_IN_MODE == "password":
        raise Http404
    pending = request.session.get(FLOWS, {})
    # Single use: the flow leaves the session before anything else happens.
    entry = pending.pop(request.GET.get("state", ""), None)
    request.session[FLOWS] = pending
    try:
        if entry is None or time.time() - entry["started"] > settings.ENTRA_SIGN_IN_MAX_SECONDS:
            raise microsoft.SignInRefused("state", "This sign-in link is not valid any more.")
        identity = microsoft.complete(
            signin.sign_in_config(), flow=entry["flow"], params=request.GET.dict()
        )
        user = signin.user_for_identity(identity)
    except microsoft.SignInRefused as exc:
        return _refused(request, exc)
    login(request, user, backend=ENTRA_BACKEND)
    events.record(
        "signed_in_with_entra",
        actor=user,
        target=identity.username,
        ip_address=events.client_ip(request),
        roles=identity.roles,
    )
    request.session[SIGNED_IN_WITH] = "entra"
    target = entry["next"]
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = resolve_url(settings.LOGIN_REDIRECT_URL)
    return redirect(target)


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    """End the portal session; after a Microsoft sign-in, offer Entra's sign-out too."""
    with_entra = request.session.get(SIGNED_IN_WITH) == "entra"
    logout(request)
    if with_entra and settings.SIGN_IN_MODE != "password":
        url = microsoft.sign_out_url(
            signin.sign_in_config(),
            post_logout_redirect_uri=settings.PUBLIC_BASE_URL + reverse("login"),
        )
        return render(request, "registration/signed_out.html", {"microsoft_sign_out_url": url})
    return redirect(settings.LOGOUT_REDIRECT_URL)
