"""Entra ID: OpenID discovery (v2 + v1), JWKS, and the client-credentials token endpoint.

Shapes follow docs/microsoft-protocols.md §2–4 and the recorded examples in
tests/fixtures/microsoft/entra-*.json.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import jwt

from . import clouds
from .pki import b64url
from .state import GUID, Tenant
from .timefmt import entra_timestamp
from .web import JSON, Request, Response, json_response

if TYPE_CHECKING:
    from .app import DevCloudApp

DEFENDER = "https://api.security.microsoft.com"
GRAPH = "https://graph.microsoft.com"
# Resource App ID URIs (and their appIds) that devcloud issues tokens for.
RESOURCES = {
    DEFENDER: DEFENDER,
    "8ee8fdad-f234-4243-8f3b-15c294843740": DEFENDER,
    "https://api.securitycenter.microsoft.com": "https://api.securitycenter.microsoft.com",
    GRAPH: GRAPH,
    "00000003-0000-0000-c000-000000000000": GRAPH,
}
DEFENDER_AUDIENCES = {a for c in clouds.CLOUDS.values() for a in c.defender}
TENANT_INDEPENDENT = ("common", "organizations", "consumers")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW = 300  # seconds Entra tolerates on client assertions

ENTRA_HEADERS = [
    ("Cache-Control", "no-store, no-cache"),
    ("Pragma", "no-cache"),
    ("Expires", "-1"),
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("X-Content-Type-Options", "nosniff"),
    ("x-ms-ests-server", "devcloud (not Microsoft)"),
]


class EntraError(Exception):
    def __init__(self, status: int, error: str, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.code, self.message = status, error, code, message


def error_response(req: Request, exc: EntraError, extra: list | None = None) -> Response:
    """The one JSON error shape of Entra (§2.3)."""
    trace = str(uuid.uuid4())
    # Entra reports the caller's client-request-id as the correlation ID.
    correlation = req.headers.get("client-request-id") or str(uuid.uuid4())
    stamp = entra_timestamp()
    body = {
        "error": exc.error,
        "error_description": (
            f"AADSTS{exc.code}: {exc.message}\r\nTrace ID: {trace}\r\n"
            f"Correlation ID: {correlation}\r\nTimestamp: {stamp}"
        ),
        "error_codes": [exc.code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"{req.base_url}/error?code={exc.code}",
    }
    headers = [*ENTRA_HEADERS, ("x-ms-request-id", trace), *(extra or [])]
    if req.headers.get("client-request-id"):
        headers.append(("client-request-id", correlation))
    return json_response(exc.status, body, headers)


def tenant_not_found(name: str, *, error: str = "invalid_tenant") -> EntraError:
    return EntraError(
        400,
        error,
        90002,
        f"Tenant '{name}' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
    )


def resolve(app: DevCloudApp, name: str, req: Request | None = None) -> Tenant | None:
    """The tenant `name` names; with `req`, only when it lives in the Entra ID of the
    request's cloud (a GCC High tenant is unknown at login.microsoftonline.com)."""
    tenant = app.store.resolve_tenant(unquote(name))
    if tenant is not None and req is not None and not clouds.same_entra(tenant.cloud, req):
        return None
    return tenant


# --- discovery and keys --------------------------------------------------------------------


def discovery(app: DevCloudApp, req: Request, tenant_name: str, *, v2: bool) -> Response:
    base = app.https_base(req)
    if tenant_name.lower() in TENANT_INDEPENDENT:
        seg, tid = tenant_name.lower(), "{tenantid}"
    else:
        tenant = resolve(app, tenant_name, req)
        if tenant is None:
            return error_response(req, tenant_not_found(unquote(tenant_name)))
        seg = tid = tenant.tenant_id
    # MSAL takes its cache "realm" from the first path segment of token_endpoint: the GUID.
    if v2:
        doc = {
            "token_endpoint": f"{base}/{seg}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{seg}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/{seg}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{seg}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{seg}/oauth2/v2.0/logout",
            "claims_supported": CLAIMS_SUPPORTED,
            "kerberos_endpoint": f"{base}/{seg}/kerberos",
            "tenant_region_scope": "WW",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
    else:
        doc = {
            "token_endpoint": f"{base}/{seg}/oauth2/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{seg}/discovery/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": [
                "code",
                "id_token",
                "code id_token",
                "token id_token",
                "token",
            ],
            "scopes_supported": ["openid"],
            "issuer": clouds.of(req).issuer(tid),
            "microsoft_multi_refresh_token": True,
            "authorization_endpoint": f"{base}/{seg}/oauth2/authorize",
            "device_authorization_endpoint": f"{base}/{seg}/oauth2/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{seg}/oauth2/logout",
            "claims_supported": CLAIMS_SUPPORTED,
            "check_session_iframe": f"{base}/{seg}/oauth2/checksession",
            "userinfo_endpoint": f"{base}/{seg}/openid/userinfo",
            "kerberos_endpoint": f"{base}/{seg}/kerberos",
            "tenant_region_scope": "WW",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
    return json_response(
        200,
        doc,
        [("Cache-Control", "max-age=86400, private"), ("Access-Control-Allow-Origin", "*")],
    )


CLAIMS_SUPPORTED = [
    "sub",
    "iss",
    "cloud_instance_name",
    "cloud_instance_host_name",
    "cloud_graph_host_name",
    "msgraph_host",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "acr",
    "nonce",
    "preferred_username",
    "name",
    "tid",
    "ver",
    "at_hash",
    "c_hash",
    "email",
]


def jwks(app: DevCloudApp, req: Request, tenant_name: str, *, v2: bool) -> Response:
    base = app.https_base(req)
    if tenant_name.lower() in TENANT_INDEPENDENT:
        tid = "{tenantid}"
    else:
        tenant = resolve(app, tenant_name, req)
        if tenant is None:
            return error_response(req, tenant_not_found(unquote(tenant_name)))
        tid = tenant.tenant_id
    issuer = f"{base}/{tid}/v2.0" if v2 else clouds.of(req).issuer(tid)
    return json_response(
        200,
        {"keys": [app.pki.signing.jwk(issuer)]},
        [("Cache-Control", "max-age=86400, private"), ("Access-Control-Allow-Origin", "*")],
    )


# --- token endpoint ------------------------------------------------------------------------


def _missing(name: str) -> EntraError:
    return EntraError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


def _client_auth(req: Request) -> tuple[str | None, str | None]:
    """client_id and client_secret from the form body or HTTP Basic (RFC 6749 §2.3.1)."""
    client_id, secret = req.f("client_id"), req.f("client_secret")
    auth = req.headers.get("Authorization") or ""
    if auth[:6].lower() == "basic ":
        try:
            raw = base64.b64decode(auth[6:].strip()).decode("utf-8")
            basic_id, _, basic_secret = raw.partition(":")
            client_id = client_id or unquote(basic_id.replace("+", " "))
            secret = secret or unquote(basic_secret.replace("+", " "))
        except (ValueError, UnicodeDecodeError):
            raise EntraError(
                401, "invalid_client", 7000215, "Invalid client secret provided."
            ) from None
    return client_id, secret


def _resource_of(scope: str, tenant: Tenant, req: Request) -> str:
    """The single resource of a client-credentials `scope` (§2.1), or an AADSTS error."""
    scopes = scope.split()
    resources = []
    for s in scopes:
        if not s.endswith("/.default"):
            raise EntraError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {s} is not valid. Client credential flows must "
                "have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        resource = s[: -len("/.default")].rstrip("/")
        if resource not in resources:
            resources.append(resource)
    if len(resources) > 1:
        raise EntraError(
            400,
            "invalid_scope",
            700022,
            f"The provided value for the input parameter scope is not valid because it contains "
            f"more than one resource. Scope {scope} is not valid.",
        )
    if not resources:
        raise _missing("scope")
    canonical = clouds.of(req).resources().get(resources[0].lower())
    if canonical is None:
        raise EntraError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resources[0]} was not found in the tenant named "
            f"{tenant.display_name}. This can happen if the application has not been installed "
            "by the administrator of the tenant or consented to by any user in the tenant. You "
            "might have sent your authentication request to the wrong tenant.",
        )
    return canonical


def _roles_for(resource: str, roles: list[str]) -> list[str]:
    if resource in DEFENDER_AUDIENCES:
        return [r for r in roles if r.startswith("Incident.")]
    return [r for r in roles if not r.startswith("Incident.")]


def _check_secret(app_reg, secret: str) -> None:
    matching = [s for s in app_reg.secrets if secrets.compare_digest(s.value, secret)]
    if not matching:
        raise EntraError(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the "
            "client secret value, not the client secret ID, for a secret added to app "
            f"'{app_reg.client_id}'.",
        )
    if all(s.expired() for s in matching):
        raise EntraError(
            401,
            "invalid_client",
            7000222,
            f"The provided client secret keys for app '{app_reg.client_id}' are expired. Visit "
            "the Azure portal to create new keys for your app: "
            "https://aka.ms/NewClientSecret, or consider using certificate credentials for added "
            "security: https://aka.ms/certCreds.",
        )


def _check_assertion(
    app: DevCloudApp, req: Request, app_reg, assertion: str, tenant_seg: str, tenant: Tenant
) -> None:
    """Validate a certificate client assertion (§3)."""

    def bad(code: int, message: str) -> EntraError:
        return EntraError(401, "invalid_client", code, message)

    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise bad(50027, "JWT token is invalid or malformed.") from None
    alg = header.get("alg")
    if alg not in ("PS256", "RS256"):
        raise bad(5002738, f"Invalid JWT token. '{alg}' is not a supported signature algorithm.")
    x5t256, x5t = header.get("x5t#S256"), header.get("x5t")
    if not (x5t256 or x5t):
        raise bad(
            700027,
            "Client assertion failed signature validation. [Reason - The key was not found.]",
        )
    wanted = (x5t256 or x5t).rstrip("=")
    field = "x5t#S256" if x5t256 else "x5t"
    cert = next((c for c in app_reg.certificates if c[field] == wanted), None)
    if cert is None:
        raise bad(
            700027,
            "Client assertion failed signature validation. [Reason - The key was not found., "
            f"Thumbprint of key used by client: '{wanted}', Please visit the Azure Portal, "
            f"Graph Explorer or directly use MS Graph to see configured keys for app Id "
            f"'{app_reg.client_id}'.]",
        )
    try:
        claims = jwt.decode(
            assertion,
            cert["public_key"],
            algorithms=[alg],
            options={
                "verify_aud": False,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_iss": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise bad(
            700027,
            "Client assertion failed signature validation. [Reason - The provided signature "
            "value did not match the expected signature value.]",
        ) from None
    except jwt.PyJWTError as exc:
        raise bad(50027, f"JWT token is invalid or malformed. [Reason - {exc}]") from None
    if claims.get("iss") != app_reg.client_id or claims.get("sub") != app_reg.client_id:
        raise bad(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        )
    aud = claims.get("aud")
    if not _audience_ok(app, req, aud, tenant_seg, tenant):
        raise bad(
            50027,
            f"JWT token is invalid or malformed. [Reason - The audience '{aud}' does not match "
            "the token endpoint of this request.]",
        )
    now = time.time()
    try:
        exp = float(claims["exp"])
    except (KeyError, TypeError, ValueError):
        raise bad(50027, "JWT token is invalid or malformed. [Reason - no 'exp'.]") from None
    if exp + CLOCK_SKEW < now:
        raise bad(
            700024,
            "Client assertion is not within its valid time range. Current time: "
            f"{entra_timestamp(now)}, assertion valid from "
            f"{entra_timestamp(float(claims.get('nbf', claims.get('iat', exp - 600))))}, "
            f"expiry time of assertion {entra_timestamp(exp)}.",
        )
    nbf = claims.get("nbf")
    if nbf is not None and float(nbf) - CLOCK_SKEW > now:
        raise bad(700024, "Client assertion is not within its valid time range.")


def authenticate_client(
    app: DevCloudApp, req: Request, app_reg, secret: str | None, tenant_seg: str, tenant: Tenant
) -> str:
    """Check the client's secret or certificate assertion; its `appidacr` ("1" or "2")."""
    assertion = req.f("client_assertion")
    if assertion:
        if req.f("client_assertion_type") != ASSERTION_TYPE:
            raise EntraError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_assertion_type'.",
            )
        _check_assertion(app, req, app_reg, assertion, tenant_seg, tenant)
        header = jwt.get_unverified_header(assertion)
        thumb = "x5t#S256" if "x5t#S256" in header else "x5t"
        req.note = f"client_assertion {header.get('alg')} {thumb}"
        return "2"
    if secret:
        _check_secret(app_reg, secret)
        req.note = "client_secret"
        return "1"
    raise EntraError(
        401,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or "
        "'client_secret'.",
    )


def _audience_ok(app: DevCloudApp, req: Request, aud, tenant_seg: str, tenant: Tenant) -> bool:
    if not isinstance(aud, str):
        return False
    parts = urlsplit(aud)
    if parts.scheme != "https" or parts.port != app.https_port:
        return False
    if parts.hostname not in ("127.0.0.1", "localhost", app.host):
        return False
    if req.prefix and not parts.path.startswith(req.prefix + "/"):
        return False  # the token endpoint of another cloud
    allowed = {tenant.tenant_id, tenant.domain, tenant_seg.lower()}
    segments = parts.path[len(req.prefix) :].split("/")
    return (
        len(segments) == 5
        and segments[1].lower() in allowed
        and segments[2:] == ["oauth2", "v2.0", "token"]
    ) or (
        len(segments) == 4
        and segments[1].lower() in allowed
        and segments[2:] == ["oauth2", "token"]
    )


def token(app: DevCloudApp, req: Request, tenant_seg: str, *, v1: bool = False) -> Response:
    try:
        body = _token(app, req, tenant_seg, v1=v1)
    except EntraError as exc:
        return error_response(req, exc)
    headers = [*ENTRA_HEADERS, ("x-ms-request-id", str(uuid.uuid4()))]
    if req.headers.get("client-request-id"):
        headers.append(("client-request-id", req.headers["client-request-id"]))
    return json_response(200, body, headers)


def _token(app: DevCloudApp, req: Request, tenant_seg: str, *, v1: bool) -> dict:
    if req.method != "POST":
        raise EntraError(
            400,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests. Received a GET request.",
        )
    grant_type = req.f("grant_type")
    if not grant_type:
        raise _missing("grant_type")
    if grant_type == "authorization_code" and not v1:
        from .signin import redeem_code

        return redeem_code(app, req, tenant_seg)
    if grant_type != "client_credentials":
        raise EntraError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'. devcloud emulates "
            "only client_credentials and authorization_code (v2.0).",
        )
    if tenant_seg.lower() in TENANT_INDEPENDENT:
        # Guessed code: app-only tokens need a tenant; Entra refuses tenant-independent ones.
        raise EntraError(
            400,
            "invalid_request",
            50194,
            "Usage of the /common or /organizations endpoint is not supported for the client "
            "credentials grant. Use a tenant-specific endpoint.",
        )
    tenant = resolve(app, tenant_seg, req)
    if tenant is None:
        raise tenant_not_found(unquote(tenant_seg), error="invalid_request")
    if tenant.blocked:
        # Status and error class are UNCONFIRMED (§2.4); the code and text are real.
        raise EntraError(
            400,
            "invalid_request",
            5000225,
            "This tenant has been blocked due to inactivity. To learn more about tenant "
            "lifecycle policies, see https://aka.ms/TenantLifecycle",
        )
    client_id, secret = _client_auth(req)
    if not client_id:
        raise _missing("client_id")
    if v1:
        resource_param = req.f("resource")
        if not resource_param:
            raise _missing("resource")
        scope = resource_param.rstrip("/") + "/.default"
    else:
        scope = req.f("scope")
        if not scope or not scope.strip():
            raise _missing("scope")
    resource = _resource_of(scope, tenant, req)
    store = app.store
    app_reg = store.apps.get(client_id.lower())
    consent = store.consent(tenant.tenant_id, client_id.lower())
    not_found = EntraError(
        400,
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory "
        f"'{tenant.display_name}'. This can happen if the application has not been installed by "
        "the administrator of the tenant or consented to by any user in the tenant. You may have "
        "sent your authentication request to the wrong tenant.",
    )
    if app_reg is None:
        raise not_found
    if consent.state == "none" and tenant.no_sp_error == "700016":
        raise not_found
    acr = authenticate_client(app, req, app_reg, secret, tenant_seg, tenant)
    # Guessed order: the SP-less block (7000229) applies after the client authenticated.
    if consent.state == "none":
        raise EntraError(
            401,
            "invalid_client",
            7000229,
            f"The client application {app_reg.client_id} is missing service principal in the "
            f"tenant {tenant.tenant_id}. See instructions here: "
            "https://go.microsoft.com/fwlink/?linkid=2225119",
        )
    if consent.state == "disabled":
        raise EntraError(
            400,
            "unauthorized_client",
            7000112,
            f"Application '{app_reg.client_id}'({app_reg.display_name}) is disabled.",
        )
    lifetime = store.limits["token_lifetime"]
    access_token = issue_access_token(
        app,
        tenant=tenant,
        client_id=app_reg.client_id,
        display_name=app_reg.display_name,
        sp_id=consent.sp_id,
        resource=resource,
        roles=_roles_for(resource, consent.roles),
        acr=acr,
        lifetime=lifetime,
        issuer=clouds.of(req).issuer(tenant.tenant_id),
    )
    if v1:
        now = int(time.time()) + store.limits.get("clock_offset", 0)
        return {
            "token_type": "Bearer",
            "expires_in": str(lifetime),
            "ext_expires_in": str(lifetime),
            "expires_on": str(now + lifetime),
            "not_before": str(now),
            "resource": resource,
            "access_token": access_token,
        }
    return {
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    }


def issue_access_token(
    app: DevCloudApp,
    *,
    tenant: Tenant,
    client_id: str,
    display_name: str,
    sp_id: str,
    resource: str,
    roles: list[str],
    acr: str,
    lifetime: int,
    now: int | None = None,
    issuer: str = "",
) -> str:
    """A v1.0 app-only access token, as Entra issues for Graph and Defender (§4.1)."""
    now = int(time.time()) + app.store.limits.get("clock_offset", 0) if now is None else now
    iss = issuer or f"https://sts.windows.net/{tenant.tenant_id}/"
    claims: dict = {
        "aud": resource,
        "iss": iss,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "aio": b64url(secrets.token_bytes(48)),
        "app_displayname": display_name,
        "appid": client_id,
        "appidacr": acr,
        "idp": iss,
        "idtyp": "app",
        "oid": sp_id,
        "rh": "0." + b64url(secrets.token_bytes(40)) + ".",
    }
    if roles:
        claims["roles"] = list(roles)
    claims |= {
        "sub": sp_id,
        "tid": tenant.tenant_id,
        "uti": b64url(secrets.token_bytes(16)),
        "ver": "1.0",
        "xms_tcdt": 1600000000,
    }
    kid = app.pki.signing.kid
    return jwt.encode(
        claims,
        app.pki.signing.private_key,
        algorithm="RS256",
        headers={"typ": "JWT", "x5t": kid, "kid": kid},
    )


def is_guid(text: str) -> bool:
    return bool(GUID.match(text))


__all__ = ["JSON", "discovery", "jwks", "token", "is_guid"]
