"""What can go wrong talking to Microsoft, classified once.

`Transient` errors are retried (429 with `retry_after`, 5xx, timeouts, resets). Everything
else is permanent: it is recorded on the tenant with a plain-language `fix` for MSP staff,
and nothing retries it until someone acts.
"""

from __future__ import annotations

import re
from typing import Any


class MicrosoftError(Exception):
    """Base class. `message` is safe to show staff (never contains a secret or a token)."""

    permanent = True
    title = "Microsoft returned an error"
    fix = "Check the details below; if it persists, contact the portal's administrators."

    def __init__(self, message: str = "", *, code: str = "", status: int | None = None) -> None:
        super().__init__(message or self.title)
        self.message = message or self.title
        self.code = code  # AADSTS number or API error code, when known
        self.status = status

    @property
    def kind(self) -> str:
        return type(self).__name__


class Transient(MicrosoftError):
    permanent = False
    title = "Microsoft is temporarily unavailable"
    fix = "Nothing to do: the portal retries automatically."


class Throttled(Transient):
    title = "Microsoft asked us to slow down"
    fix = "Nothing to do: the portal waits as long as Microsoft asks and resumes."

    def __init__(self, message: str = "", *, retry_after: int = 60, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RetryLater(Exception):
    """Not Microsoft's error: a workflow (the sync, the access check) was interrupted by a
    `Transient` one and wants to be called again. The caller waits `countdown` seconds (a
    task's retry, a command's sleep) and calls again with `cursor`; `cause` says why."""

    def __init__(self, countdown: float, cursor: dict[str, Any], *, cause: MicrosoftError) -> None:
        super().__init__(f"Again in {countdown:.0f}s: {cause}")
        self.countdown = countdown
        self.cursor = cursor
        self.cause = cause


class ConsentRequired(MicrosoftError):
    """AADSTS700016 / 7000229: the app has no service principal in the tenant."""

    title = "Admin consent is missing"
    fix = (
        "The customer's Global Administrator has not granted consent (or removed the app). "
        "Create a new consent link and send it to them."
    )


class CredentialInvalid(MicrosoftError):
    """AADSTS7000215 / 7000222 / 700027 / 7000218: our own app credentials are wrong."""

    title = "The portal's app credentials were rejected"
    fix = (
        "The client secret or certificate configured for the portal is wrong or expired. "
        "Create a new one on the app registration and update MICROSOFT_CLIENT_SECRET "
        "(or the certificate settings)."
    )


class TenantNotFound(MicrosoftError):
    """AADSTS90002: no such tenant in this cloud."""

    title = "Tenant not found"
    fix = "Check the tenant ID and cloud on the tenant's page; the tenant may have been deleted."


class ResourceNotProvisioned(MicrosoftError):
    """AADSTS500011: the Defender API (Microsoft Threat Protection) is not in the tenant."""

    title = "Microsoft 365 Defender is not available in this tenant"
    fix = "The customer needs a Microsoft 365 Defender licence, or Defender must be set up first."


class AppDisabled(MicrosoftError):
    """AADSTS7000112: an administrator disabled the app in their tenant."""

    title = "The portal's app is disabled in this tenant"
    fix = (
        "Ask the customer's administrator to enable the portal's enterprise application "
        "(Entra admin centre → Enterprise applications → Properties → Enabled for users)."
    )


class MissingPermissions(MicrosoftError):
    """A token was issued but its `roles` lack what we need (consent without the role)."""

    title = "Permissions missing"
    fix = (
        "Consent was given but the required permission is not granted. Send a new consent "
        "link so the customer's Global Administrator grants it."
    )

    def __init__(
        self,
        message: str = "",
        *,
        missing: list[str] | None = None,
        granted: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.missing = missing or []
        self.granted = granted or []


class Forbidden(MicrosoftError):
    """The API answered 403, or 401 twice (the second time to a brand-new token)."""

    title = "Access denied by Microsoft"
    fix = (
        "Run 'Check access' on the tenant page; if permissions were removed, "
        "send a new consent link."
    )


class TokenMismatch(MicrosoftError):
    """The token's `tid`, `aud`, expiry or signature is not what we asked for."""

    title = "The token Microsoft issued does not match this tenant"
    fix = (
        "Check the tenant ID and cloud on this page, then run 'Check access' again. If the "
        "customer consented from another tenant, send them a new consent link."
    )


class TokenAudienceMismatch(TokenMismatch):
    """The token's `aud` is not the API we call: for a v2.0 token, an application's GUID
    instead of the API's App ID URI (a token requested for the wrong scope or resource)."""

    title = "The token Microsoft issued is for another API"
    fix = (
        "The token was issued for a different API (or as a v2.0 token for an application ID) "
        "than the API the portal calls. Check the tenant's cloud on its page and the MICROSOFT_* "
        "base URLs; if they are right, contact the portal's administrators with the details."
    )


class TenantBlocked(MicrosoftError):
    """AADSTS5000225: Microsoft blocked the tenant (usually for inactivity)."""

    title = "The customer's tenant is blocked"
    fix = (
        "Microsoft has blocked this tenant, usually after a long period of inactivity. "
        "The customer must contact Microsoft support to reactivate it."
    )


class BlockedByPolicy(MicrosoftError):
    """AADSTS53003: a Conditional Access policy for workload identities blocks the app."""

    title = "A Conditional Access policy blocks the portal's app"
    fix = (
        "Ask the customer's administrator to exclude the portal's app from their Conditional "
        "Access policies for workload identities (Entra admin centre → Protection → "
        "Conditional Access)."
    )


class AppNotMultiTenant(MicrosoftError):
    """AADSTS50194: the app registration is single-tenant."""

    title = "The portal's app registration is not multitenant"
    fix = (
        "On the app registration (Entra admin centre → App registrations → Authentication), "
        "set 'Supported account types' to accounts in any organizational directory."
    )


class BadResponse(MicrosoftError):
    """Microsoft answered something we could not understand."""

    title = "Unexpected answer from Microsoft"
    fix = "The portal retries on the next schedule; if it persists, report it with the details."


# AADSTS code → class, for token-endpoint and discovery errors.
AADSTS_ERRORS: dict[int, type[MicrosoftError]] = {
    700016: ConsentRequired,
    7000229: ConsentRequired,
    65001: ConsentRequired,
    7000215: CredentialInvalid,
    7000222: CredentialInvalid,
    7000218: CredentialInvalid,
    700027: CredentialInvalid,
    50012: CredentialInvalid,
    50013: CredentialInvalid,
    500133: CredentialInvalid,
    90002: TenantNotFound,
    500011: ResourceNotProvisioned,
    7000112: AppDisabled,
    5000225: TenantBlocked,
    53003: BlockedByPolicy,
    50194: AppNotMultiTenant,
}

# AADSTS codes in the admin-consent redirect (not the token endpoint's), and what they say
# about the administrator's attempt. 65004 is the Cancel button.
CONSENT_CANCELLED = 65004
CONSENT_PAGE_ERRORS: dict[int, str] = {
    50020: "wrong_account",  # signed in with an account of another organisation
    90094: "not_admin",  # not allowed to grant admin consent
    90008: "not_admin",
    65001: "not_admin",
    90099: "not_admin",
}

ALL_ERRORS: dict[str, type[MicrosoftError]] = {
    cls.__name__: cls
    for cls in (
        MicrosoftError,
        Transient,
        Throttled,
        ConsentRequired,
        CredentialInvalid,
        TenantNotFound,
        ResourceNotProvisioned,
        AppDisabled,
        MissingPermissions,
        Forbidden,
        TokenMismatch,
        TokenAudienceMismatch,
        TenantBlocked,
        BlockedByPolicy,
        AppNotMultiTenant,
        BadResponse,
    )
}


def describe(kind: str) -> type[MicrosoftError]:
    """The class recorded under `kind` (a stored class name), for its title and fix."""
    return ALL_ERRORS.get(kind, MicrosoftError)


_AADSTS = re.compile(r"AADSTS(\d{4,7})")


def aadsts_code(text: str) -> int | None:
    """The first AADSTS number in Entra's text ("AADSTS700016: ..."), None when it has none."""
    match = _AADSTS.search(text)
    return int(match.group(1)) if match else None


def from_token_error(
    body: dict[str, Any], *, status: int | None = None, retry_after: int | None = None
) -> MicrosoftError:
    """Classify an Entra error body: {"error", "error_description", "error_codes", ...}."""
    codes = _codes(body.get("error_codes"))
    description = str(body.get("error_description") or body.get("error") or "")
    # Keep the first line: the AADSTS sentence, without trace and correlation IDs.
    message = description.splitlines()[0][:500] if description else "Token request failed"
    if not codes:
        # Some bodies carry the number only in the text ("AADSTS700016: ...").
        number = aadsts_code(description)
        codes = [number] if number is not None else []
    code = str(codes[0]) if codes else ""
    if status == 429:
        return Throttled(message, retry_after=retry_after or 60, code=code, status=status)
    for number in codes:
        cls = AADSTS_ERRORS.get(number)
        if cls:
            return cls(message, code=str(number), status=status)
    if status is not None and status >= 500:
        return Transient(message, code=code, status=status)
    if body.get("error") == "temporarily_unavailable":
        return Transient(message, code=code, status=status)
    if not codes and ((status is not None and status < 400) or not body.get("error")):
        # No token and no error either (a truncated or garbled 200): a passing fault.
        return Transient(message or "The token endpoint answered nothing usable.", status=status)
    return MicrosoftError(message, code=code, status=status)


def _codes(raw: object) -> list[int]:
    if not isinstance(raw, list):
        return []
    codes = []
    for item in raw:
        try:
            codes.append(int(item))
        except (TypeError, ValueError):
            continue
    return codes
