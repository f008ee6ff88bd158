"""Which tenant a domain belongs to: the public OpenID discovery document names it.

`GET {login}/{domain}/v2.0/.well-known/openid-configuration` needs no credentials; its
`issuer` is `{login}/{tenant-guid}/v2.0`. An unknown domain is 400 + AADSTS90002.

Reference: https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc#find-your-apps-openid-configuration-document-uri
"""

from __future__ import annotations

import re
from urllib.parse import quote

import requests

from partner_portal.microsoft import errors
from partner_portal.microsoft.http import new_session

_ISSUER_TENANT = re.compile(
    r"/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/v2\.0/?$", re.I
)


def tenant_id_for_domain(
    domain: str, *, login_base_url: str, ca_bundle: str = "", timeout: float = 30
) -> str:
    """The tenant ID (lower-case GUID) of a verified domain, or a classified error:
    TenantNotFound for an unknown domain, Transient for outages, BadResponse otherwise."""
    base = login_base_url.rstrip("/")
    url = f"{base}/{quote(domain, safe='')}/v2.0/.well-known/openid-configuration"
    session = new_session(timeout=timeout, ca_bundle=ca_bundle)
    try:
        response = session.get(url, allow_redirects=False)
    except requests.Timeout:
        raise errors.Transient("Microsoft's sign-in service did not answer in time.") from None
    except requests.exceptions.SSLError as exc:
        raise errors.BadResponse(f"TLS verification failed: {type(exc).__name__}.") from None
    except requests.ConnectionError:
        raise errors.Transient("Could not connect to Microsoft's sign-in service.") from None
    finally:
        session.close()
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        if isinstance(body, dict):
            raise errors.from_token_error(body, status=response.status_code)
        if response.status_code >= 500:
            raise errors.Transient(
                f"Microsoft's sign-in service answered HTTP {response.status_code}.",
                status=response.status_code,
            )
        raise errors.BadResponse(
            f"Discovery answered HTTP {response.status_code}.", status=response.status_code
        )
    issuer = body.get("issuer") if isinstance(body, dict) else None
    match = _ISSUER_TENANT.search(issuer) if isinstance(issuer, str) else None
    if not match:
        raise errors.BadResponse("The discovery document names no tenant in its issuer.")
    return match.group(1).lower()
