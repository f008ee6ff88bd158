"""The admin-consent workflow, as plain functions: views and tasks call these, tests too.

Link → landing page → `start_consent` (signed state, redirect to Microsoft) → Microsoft's
redirect → `handle_callback` (state checked, outcome recorded, single use) → the verification
task → `verify_access` (a real token whose `tid` and `roles` prove the consent) → the
tenant's first incident sync.

Reference: https://learn.microsoft.com/en-us/entra/identity-platform/v2-admin-consent
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from celery import current_app
from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from partner_portal.audit.events import record
from partner_portal.consent.models import ConsentLink, hash_token, new_link_token
from partner_portal.microsoft import discovery, errors, tokens
from partner_portal.microsoft.errors import RetryLater
from partner_portal.tenants.models import Tenant

STATE_SALT = "partner_portal.consent.state"
# Tasks are sent by name: imports flow incidents → consent, never back, and consent's own
# tasks module imports this one.
SYNC_TASK = "partner_portal.incidents.tasks.sync_tenant"
VERIFY_TASK = "partner_portal.consent.tasks.verify_tenant_access"
CALLBACK_PATH = "/consent/callback/"
# Microsoft's parameters are short; anything longer is not from Microsoft.
MAX_PARAM_LENGTH = {"state": 512, "tenant": 64, "error": 64, "admin_consent": 8}
MAX_OTHER_PARAM_LENGTH = 2048
MAX_QUERY_LENGTH = 8192
_PRINTABLE = re.compile(r"^[\x20-\x7e\r\n\t\u00a0-\uffff]*$")


def is_guid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except (ValueError, AttributeError, TypeError):
        return False


# --- Links ---------------------------------------------------------------------------------


def public_url(link: ConsentLink, token: str = "") -> str:
    """The customer's URL; needs the raw token (only known when the link is created)."""
    return f"{settings.PUBLIC_BASE_URL}/consent/{token or link.token}/"


def _create_link(**fields: Any) -> ConsentLink:
    link = ConsentLink(**fields)
    link.token = new_link_token()  # the setter keeps only its hash
    link.save()
    return link


def link_for_token(token: str) -> ConsentLink | None:
    """The link a public token opens (looked up by its hash)."""
    return ConsentLink.objects.select_related("tenant").filter(token_hash=hash_token(token)).first()


def replace_link(*, link: ConsentLink, actor: Any, ip_address: str | None = None) -> ConsentLink:
    """A new link for a lost one (its token cannot be shown again): same tenant and
    expectation; the old one is revoked if still unused."""
    new = _create_link(
        tenant=link.tenant,
        created_by=actor,
        expected_tenant_id=link.expected_tenant_id,
        expected_domain=link.expected_domain,
    )
    revoke_link(link=link, actor=actor, ip_address=ip_address)
    record(
        "consent.link_created",
        actor=actor,
        tenant=link.tenant,
        target=f"consentlink:{new.pk}",
        ip_address=ip_address,
        expected_tenant_id=new.expected_tenant_id,
        expected_domain=new.expected_domain,
        expires_at=new.expires_at.isoformat(),
        replaces=f"consentlink:{link.pk}",
    )
    return new


class ExpectationRefused(Exception):
    """The expected tenant cannot be used for this link; `message` says why (for staff)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def resolve_expected_tenant(value: str, *, tenant: Tenant) -> tuple[str, str]:
    """(tenant ID, domain) for what staff typed: a GUID as is, a domain resolved through
    Microsoft's public discovery document, so that it is enforced like a GUID (M1)."""
    value = value.strip().lower()
    if not value or is_guid(value):
        tenant_id, domain = value, ""
    else:
        try:
            tenant_id = discovery.tenant_id_for_domain(
                value,
                login_base_url=tokens.login_base_url(tenant.cloud),
                ca_bundle=settings.MICROSOFT_CA_BUNDLE,
                timeout=settings.MICROSOFT_HTTP_TIMEOUT,
            )
        except errors.TenantNotFound:
            raise ExpectationRefused(
                f"Microsoft knows no tenant with the domain {value} (AADSTS90002): check the "
                "spelling, or enter the customer's tenant ID."
            ) from None
        except errors.MicrosoftError as exc:
            raise ExpectationRefused(
                f"Could not ask Microsoft which tenant {value} belongs to ({exc.message}). "
                "Try again, or enter the customer's tenant ID."
            ) from None
        domain = value
    known = str(tenant.entra_tenant_id) if tenant.entra_tenant_id else ""
    if known and tenant_id and tenant_id != known:
        raise ExpectationRefused(
            f"This customer's tenant ID is {known}; a link for another tenant would be "
            "refused. Only a superuser can change the tenant ID."
        )
    return tenant_id, domain


def create_link(
    *,
    tenant: Tenant,
    created_by: Any,
    expected_tenant: str = "",
    ip_address: str | None = None,
) -> ConsentLink:
    """A new link. `expected_tenant` is what staff typed, a tenant ID or a domain: a domain
    is resolved to its tenant ID first (ExpectationRefused when it cannot be), and the link
    keeps the ID as `expected_tenant_id`."""
    tenant_id, domain = resolve_expected_tenant(expected_tenant, tenant=tenant)
    # The raw token stays on this instance only (the database keeps its hash): the caller
    # shows the link once.
    link = _create_link(
        tenant=tenant,
        created_by=created_by,
        expected_tenant_id=tenant_id,
        expected_domain=domain,
    )
    record(
        "consent.link_created",
        actor=created_by,
        tenant=tenant,
        target=f"consentlink:{link.pk}",
        ip_address=ip_address,
        expected_tenant_id=link.expected_tenant_id,
        expected_domain=domain,
        expires_at=link.expires_at.isoformat(),
    )
    return link


def revoke_link(*, link: ConsentLink, actor: Any, ip_address: str | None = None) -> bool:
    """Revoke an unused link; False when it was already used or revoked."""
    now = timezone.now()
    changed = ConsentLink.objects.filter(pk=link.pk, completed_at=None, revoked_at=None).update(
        revoked_at=now
    )
    if changed:
        link.revoked_at = now
        record(
            "consent.link_revoked",
            actor=actor,
            tenant=link.tenant,
            target=f"consentlink:{link.pk}",
            ip_address=ip_address,
        )
    return bool(changed)


def record_open(*, link: ConsentLink, ip_address: str | None = None) -> None:
    """Count a visit of the landing page (F() so concurrent visits all count)."""
    now = timezone.now()
    ConsentLink.objects.filter(pk=link.pk).update(
        opened_count=F("opened_count") + 1,
        first_opened_at=Coalesce(F("first_opened_at"), now),
        last_opened_at=now,
    )
    record(
        "consent.link_opened",
        tenant=link.tenant,
        target=f"consentlink:{link.pk}",
        ip_address=ip_address,
    )


# --- State and the redirect to Microsoft ----------------------------------------------------


class StateRejected(Exception):
    """The callback's `state` does not belong to a usable link."""

    def __init__(self, reason: str, link: ConsentLink | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.link = link


def authority(link: ConsentLink) -> str:
    """The tenant segment of the consent URL: the expected tenant ID, else `organizations`."""
    return expected_tenant_id(link) or "organizations"


def sign_state(link: ConsentLink) -> str:
    # "a": the authority the admin was sent to. A state is good only for that authority, so
    # an expectation that changed while the admin was at Microsoft cannot be bypassed.
    return signing.dumps(
        {"l": link.pk, "n": link.state_nonce, "a": authority(link)}, salt=STATE_SALT
    )


def verify_state(raw: str) -> ConsentLink:
    """The link a `state` was signed for, or StateRejected(reason) saying why not."""
    if not raw:
        raise StateRejected("missing")
    try:
        data = signing.loads(raw, salt=STATE_SALT, max_age=settings.CONSENT_STATE_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        raise StateRejected("expired") from None
    except signing.BadSignature:
        raise StateRejected("forged") from None
    if not isinstance(data, dict) or not isinstance(data.get("l"), int):
        raise StateRejected("forged")
    link = ConsentLink.objects.select_related("tenant").filter(pk=data["l"]).first()
    if link is None:
        raise StateRejected("unknown_link")
    nonce = data.get("n")
    if not link.state_nonce or not isinstance(nonce, str):
        raise StateRejected("forged", link)
    if not secrets.compare_digest(nonce, link.state_nonce):
        raise StateRejected("forged", link)
    if data.get("a") != authority(link):
        raise StateRejected("authority_changed", link)
    if link.completed_at is not None:
        raise StateRejected("replayed", link)
    if link.revoked_at is not None:
        raise StateRejected("revoked", link)
    if link.is_expired:
        raise StateRejected("link_expired", link)
    return link


def consent_base_url(tenant: Tenant) -> str:
    """Where browsers go for consent: MICROSOFT_CONSENT_BASE_URL, else the login host of the
    tenant's cloud (login.microsoftonline.us for GCC High and DoD)."""
    if settings.MICROSOFT_CONSENT_BASE_URL:
        return settings.MICROSOFT_CONSENT_BASE_URL.replace("{cloud}", tenant.cloud).rstrip("/")
    return tokens.login_base_url(tenant.cloud)


def expected_tenant_id(link: ConsentLink) -> str:
    """The tenant the customer must consent with: the link's, else the tenant's known ID."""
    if link.expected_tenant_id:
        return link.expected_tenant_id
    if link.tenant.entra_tenant_id:
        return str(link.tenant.entra_tenant_id)
    return ""


def start_consent(*, link: ConsentLink) -> str:
    """The admin-consent URL at Microsoft for this link (the nonce is made on first use)."""
    if not link.state_nonce:
        nonce = secrets.token_urlsafe(24)
        # Conditional, so two tabs opened at once end up with the same nonce.
        ConsentLink.objects.filter(pk=link.pk, state_nonce="").update(state_nonce=nonce)
        link.refresh_from_db(fields=["state_nonce"])
    # Reference: https://learn.microsoft.com/en-us/entra/identity-platform/v2-admin-consent
    # `organizations`, never `common`: personal accounts cannot give admin consent (§1.1).
    path_tenant = authority(link)
    query = urlencode(
        {
            # The app registration of the tenant's cloud, for its source's API there.
            "client_id": tokens.config(link.tenant.cloud).client_id,
            "redirect_uri": settings.PUBLIC_BASE_URL + CALLBACK_PATH,
            "scope": f"{tokens.resource_of(link.tenant.cloud, link.tenant.source)}/.default",
            "state": sign_state(link),
        }
    )
    return f"{consent_base_url(link.tenant)}/{path_tenant}/v2.0/adminconsent?{query}"


# --- The callback ----------------------------------------------------------------------------


@dataclass
class CallbackResult:
    """What happened to Microsoft's redirect. `consent/result.html` tells the customer's
    administrator, in words chosen by `kind` and `reason`."""

    kind: str  # granted | tenant_mismatch | denied | error | rejected
    status: int
    link: ConsentLink | None = None
    # rejected: why (replayed, revoked, link_expired, expired…); error: wrong_account,
    # not_admin or "" (errors.CONSENT_PAGE_ERRORS).
    reason: str = ""
    code: str = ""  # error: the code to quote to the MSP (AADSTS…, else Microsoft's error)
    can_retry: bool = False


REJECTION_COUNT_SECONDS = 3600


def count_rejection(ip_address: str | None) -> tuple[bool, int]:
    """Count a rejected callback per source address in the cache (L4): anyone can call the
    callback, and an audit row per request let them fill the audit table. Returns whether
    to audit this one (at most once per CONSENT_REJECTION_AUDIT_SECONDS per address) and
    how many were rejected from that address since its last audit row."""
    address = ip_address or "unknown"
    counter = f"consent:rejected:{address}"
    cache.add(counter, 0, timeout=REJECTION_COUNT_SECONDS)
    try:
        rejected = cache.incr(counter)
    except ValueError:  # expired between add() and incr()
        cache.set(counter, 1, timeout=REJECTION_COUNT_SECONDS)
        rejected = 1
    interval = settings.CONSENT_REJECTION_AUDIT_SECONDS
    if interval > 0 and not cache.add(f"consent:rejected-audited:{address}", 1, timeout=interval):
        return False, rejected
    cache.set(counter, 0, timeout=REJECTION_COUNT_SECONDS)
    return True, rejected


def _rejected(
    reason: str,
    *,
    link: ConsentLink | None = None,
    ip_address: str | None = None,
    detail: str = "",
) -> CallbackResult:
    audit, rejected = count_rejection(ip_address)
    if audit:
        record(
            "consent.callback_rejected",
            tenant=link.tenant if link else None,
            target=f"consentlink:{link.pk}" if link else "",
            ip_address=ip_address,
            reason=reason,
            detail=detail[:200],
            rejected_since_last_audit=rejected,
        )
    return CallbackResult("rejected", 400, link, reason=reason)


def reject_callback(reason: str, *, link: ConsentLink | None, ip_address: str | None):
    """The rejected-state page (counted and audited like a rejected callback)."""
    return _rejected(reason, link=link, ip_address=ip_address)


def _param(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name, "")
    return value if isinstance(value, str) else ""


def _malformed(params: Mapping[str, Any], query_length: int) -> str:
    """Why the parameters cannot come from Microsoft ('' when they look sane)."""
    if query_length > MAX_QUERY_LENGTH:
        return "query too long"
    getlist = getattr(params, "getlist", None)
    for name in params:
        values = getlist(name) if getlist else [params[name]]
        if len(values) > 1 and name in MAX_PARAM_LENGTH:
            return f"{name} repeated"
        for value in values:
            limit = MAX_PARAM_LENGTH.get(name, MAX_OTHER_PARAM_LENGTH)
            if not isinstance(value, str) or len(value) > limit:
                return f"{name} too long"
            if not _PRINTABLE.match(value):
                return f"{name} has control characters"
    return ""


def handle_callback(
    *, params: Mapping[str, Any], query_length: int = 0, ip_address: str | None = None
) -> CallbackResult:
    """Microsoft's redirect after the admin-consent page: check state, record the outcome.

    1. Parameters that cannot come from Microsoft, or a state that is missing, forged,
       replayed, expired or for an unusable link → rejected (400), audited, nothing changed.
    2. `error` is checked first: error redirects also carry admin_consent=True (§1.3).
    3. Success: the link completes once (conditional UPDATE). The returned tenant ID is
       recorded but not trusted: it is attached only if it is the expected one and free,
       and the tenant is `consented` only after a token with that `tid` and the role.
    """
    problem = _malformed(params, query_length)
    if problem:
        return _rejected("malformed", ip_address=ip_address, detail=problem)
    try:
        link = verify_state(_param(params, "state"))
    except StateRejected as exc:
        return _rejected(exc.reason, link=exc.link, ip_address=ip_address)

    error = _param(params, "error")
    if error:
        return _record_error(link, params, ip_address=ip_address)

    returned_tenant_id = _param(params, "tenant").strip().lower()
    if _param(params, "admin_consent").lower() != "true" or not is_guid(returned_tenant_id):
        return _rejected("malformed", link=link, ip_address=ip_address, detail="no outcome")
    return _record_success(link, returned_tenant_id, ip_address=ip_address)


def _record_error(
    link: ConsentLink, params: Mapping[str, Any], *, ip_address: str | None
) -> CallbackResult:
    error = _param(params, "error")
    description = _param(params, "error_description")
    number = errors.aadsts_code(description)
    code = f"AADSTS{number}" if number is not None else ""
    cancelled = error == "access_denied" and (
        number in (None, errors.CONSENT_CANCELLED) or _param(params, "error_subcode") == "cancel"
    )
    outcome = ConsentLink.Outcome.DENIED if cancelled else ConsentLink.Outcome.ERROR
    first_line = description.splitlines()[0] if description else ""
    # The link stays usable: the administrator may have clicked Cancel by mistake, or signed
    # in with the wrong account, and can simply try again.
    ConsentLink.objects.filter(pk=link.pk, completed_at=None).update(
        outcome=outcome,
        error_code=(code or error)[:128],
        error_description=first_line[:1000],
    )
    record(
        "consent.link_declined",
        tenant=link.tenant,
        target=f"consentlink:{link.pk}",
        ip_address=ip_address,
        outcome=outcome,
        error=error,
        code=code,
    )
    if cancelled:
        return CallbackResult("denied", 200, link, can_retry=True)
    reason = errors.CONSENT_PAGE_ERRORS.get(number, "") if number is not None else ""
    return CallbackResult("error", 200, link, reason=reason, code=code or error, can_retry=True)


def _record_success(
    link: ConsentLink, returned_tenant_id: str, *, ip_address: str | None
) -> CallbackResult:
    tenant = link.tenant
    expected = expected_tenant_id(link)
    mismatch = ""
    if is_guid(expected) and expected != returned_tenant_id:
        mismatch = "expected another tenant"
    elif Tenant.objects.filter(entra_tenant_id=returned_tenant_id).exclude(pk=tenant.pk).exists():
        mismatch = "tenant belongs to another customer"
    # No tenant ID to hold the answer against: record it, bind nothing until staff confirm.
    unconfirmed = not mismatch and not is_guid(expected)
    now = timezone.now()
    with transaction.atomic():
        outcome = ConsentLink.Outcome.TENANT_MISMATCH if mismatch else ConsentLink.Outcome.GRANTED
        completed = ConsentLink.objects.filter(
            pk=link.pk, completed_at=None, revoked_at=None, expires_at__gt=now
        ).update(
            completed_at=now,
            outcome=outcome,
            returned_tenant_id=returned_tenant_id,
            error_code="",
            error_description="",
            awaiting_confirmation=unconfirmed,
        )
        if completed != 1:
            # Two callbacks raced for the same link and the other one won (or the link was
            # revoked or expired a moment ago).
            return _rejected("replayed", link=link, ip_address=ip_address)
        if unconfirmed:
            record(
                "consent.binding_unconfirmed",
                tenant=tenant,
                target=f"consentlink:{link.pk}",
                ip_address=ip_address,
                returned_tenant_id=returned_tenant_id,
            )
        elif not mismatch:
            try:
                with transaction.atomic():
                    tenant.attach_entra_tenant(returned_tenant_id)
            except IntegrityError:
                # Another tenant took this ID between our check and the update.
                mismatch = "tenant belongs to another customer"
                outcome = ConsentLink.Outcome.TENANT_MISMATCH
                ConsentLink.objects.filter(pk=link.pk).update(outcome=outcome)
        record(
            "consent.link_completed",
            tenant=tenant,
            target=f"consentlink:{link.pk}",
            ip_address=ip_address,
            outcome=outcome,
            returned_tenant_id=returned_tenant_id,
            reason=mismatch,
        )
        if not mismatch and not unconfirmed:
            _send_after_commit(VERIFY_TASK, tenant_pk=tenant.pk)
    link.refresh_from_db()
    if mismatch:
        return CallbackResult("tenant_mismatch", 200, link)
    return CallbackResult("granted", 200, link)


def confirm_binding(*, link: ConsentLink, actor: Any, ip_address: str | None = None) -> str:
    """A staff member confirms the tenant a link without expectation returned: it is bound
    to the link's customer and checked. Returns '' on success, else why not (for staff).
    The confirmation is single-use (conditional UPDATE)."""
    returned_tenant_id = link.returned_tenant_id
    tenant = link.tenant
    with transaction.atomic():
        taken = ConsentLink.objects.filter(
            pk=link.pk, awaiting_confirmation=True, outcome=ConsentLink.Outcome.GRANTED
        ).update(awaiting_confirmation=False)
        if taken != 1:
            return "This consent was already confirmed or is not waiting for a confirmation."
        tenant.refresh_from_db()
        problem = ""
        if not is_guid(returned_tenant_id):
            problem = "Microsoft returned no usable tenant ID."
        elif (
            tenant.entra_tenant_id is not None and str(tenant.entra_tenant_id) != returned_tenant_id
        ):
            problem = "This customer already has another tenant ID."
        else:
            try:
                with transaction.atomic():
                    tenant.attach_entra_tenant(returned_tenant_id)
            except IntegrityError:
                # Neutral: staff may not see the tenant that holds this ID (L5).
                problem = "This tenant ID cannot be attached to this customer."
        if problem:
            ConsentLink.objects.filter(pk=link.pk).update(
                outcome=ConsentLink.Outcome.TENANT_MISMATCH
            )
        record(
            "consent.binding_confirmed" if not problem else "consent.binding_refused",
            actor=actor,
            tenant=tenant,
            target=f"consentlink:{link.pk}",
            ip_address=ip_address,
            returned_tenant_id=returned_tenant_id,
            reason=problem,
        )
        if not problem:
            _send_after_commit(VERIFY_TASK, tenant_pk=tenant.pk)
    return problem


# --- Verification ------------------------------------------------------------------------------


# Right after a consent Entra may answer 700016/7000229 for a few minutes while the service
# principal propagates. These waits add up to about 10 minutes before we call it failed.
BACKOFF_SECONDS = (10, 20, 40, 60, 90, 120, 120, 120)
MAX_ATTEMPTS = len(BACKOFF_SECONDS)


def retry_countdown(exc: errors.MicrosoftError, attempt: int) -> int:
    """Seconds before the next attempt: Retry-After for a 429, else the backoff schedule."""
    if isinstance(exc, errors.Throttled):
        return max(1, min(exc.retry_after, 3600))
    return BACKOFF_SECONDS[min(attempt, MAX_ATTEMPTS - 1)]


def verify_access(*, tenant: Tenant, attempt: int | None = None) -> Tenant:
    """Get a new token for the tenant, check its claims, and store what is really granted.
    A tenant that becomes `consented` (from any other state) gets its first sync queued.

    `attempt` is the task's count (from 0). While it is below MAX_ATTEMPTS, an error worth
    retrying (Transient; ConsentRequired while the tenant is `pending`, as Entra may still
    answer 700016/7000229 for a few minutes right after consent) is noted on the tenant and
    raised as RetryLater (countdown, cursor `{"attempt": n}`). Without it (the management
    command) every outcome is final.
    """
    if tenant.entra_tenant_id is None:
        tenant.record_access_check(
            state=Tenant.ConsentState.NOT_CONSENTED,
            error_class="ConsentRequired",
            error_message="The tenant ID is not known yet: send a consent link first.",
        )
        _audit_check(tenant, outcome="not_consented")
        return tenant
    was_consented = tenant.consent_state == Tenant.ConsentState.CONSENTED
    try:
        roles = tenant.incident_client().check_access()
    except errors.MissingPermissions as exc:
        tenant.record_access_check(
            state=Tenant.ConsentState.MISSING_PERMISSIONS,
            roles=exc.granted,
            error_class=exc.kind,
            error_message=exc.message,
        )
    except errors.MicrosoftError as exc:
        pending = tenant.consent_state == Tenant.ConsentState.PENDING
        retryable = not exc.permanent or (isinstance(exc, errors.ConsentRequired) and pending)
        if retryable and attempt is not None and attempt < MAX_ATTEMPTS:
            # Keep the state; say what we are waiting for, and let the caller retry.
            tenant.record_consent_error(error_class=exc.kind, error_message=exc.message)
            countdown = retry_countdown(exc, attempt)
            raise RetryLater(countdown, {"attempt": attempt + 1}, cause=exc) from exc
        # A passing outage does not undo an earlier consent; the error is still shown.
        failed = exc.permanent or pending
        state = Tenant.ConsentState.FAILED if failed else tenant.consent_state
        tenant.record_access_check(state=state, error_class=exc.kind, error_message=exc.message)
    else:
        tenant.record_access_check(state=Tenant.ConsentState.CONSENTED, roles=roles)
        if not was_consented and tenant.is_syncable:
            _start_first_sync(tenant_pk=tenant.pk)
    _audit_check(tenant, outcome=tenant.consent_state)
    return tenant


def _start_first_sync(*, tenant_pk: int) -> None:
    """Queue the tenant's sync once the new state is committed, instead of leaving its
    incidents to the next scheduled run (up to SYNC_INTERVAL_MINUTES later). Robust: with
    the broker down, the consent still stands and the schedule syncs later."""
    _send_after_commit(SYNC_TASK, robust=True, tenant_pk=tenant_pk)


def _send_after_commit(task: str, *, robust: bool = False, **kwargs: Any) -> None:
    def send() -> None:
        current_app.send_task(task, kwargs=kwargs)

    transaction.on_commit(send, robust=robust)


def _audit_check(tenant: Tenant, *, outcome: str) -> None:
    record(
        "tenant.access_checked",
        tenant=tenant,
        target=f"tenant:{tenant.pk}",
        outcome=outcome,
        roles=tenant.granted_roles,
        error=tenant.consent_error_class,
        message=tenant.consent_error_message[:300],
    )
